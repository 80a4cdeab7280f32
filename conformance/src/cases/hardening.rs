//! Protective layers (http-api 0.1, 6.1-6.8): security headers and HSTS,
//! the REST body cap, Host validation with the live-managed list, the
//! per-request timeout, CORS.

use super::{client, ensure, ensure_eq, R};
use crate::agent::{self, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::brain::{run_cli, Brain};
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BASELINE: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn get(brain: &Brain, path: &str, host: Option<&str>) -> Result<reqwest::Response, String> {
    let mut req = client().get(brain.url(path));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    req.send().await.map_err(|e| format!("GET {path}: {e}"))
}

/// Baseline headers on successes and errors alike; `no-store` on auth;
/// HSTS only in production posture behind an https public URL.
pub async fn security_headers(ctx: Arc<Ctx>) -> R {
    let brain = ctx.start(&[]).await?;
    for (path, status) in [
        ("/api/v1/health", 200),
        ("/api/v1/auth/me", 401),
        ("/api/v1/no-such-route", 404),
    ] {
        let r = get(&brain, path, None).await?;
        ensure_eq(r.status().as_u16(), status, path)?;
        for (name, want) in BASELINE {
            ensure_eq(
                header(&r, name).as_deref(),
                Some(*want),
                &format!("{path}: {name}"),
            )?;
        }
        ensure(
            header(&r, "permissions-policy").is_some_and(|p| p.contains("camera=()")),
            format!("{path}: permissions-policy"),
        )?;
        ensure_eq(
            header(&r, "strict-transport-security"),
            None,
            &format!("{path}: no HSTS without an https public URL"),
        )?;
        ensure_eq(
            header(&r, "server"),
            None,
            &format!("{path}: no Server header"),
        )?;
    }
    let r = get(&brain, "/api/v1/auth/me", None).await?;
    ensure_eq(
        header(&r, "cache-control").as_deref(),
        Some("no-store"),
        "auth responses are not cached",
    )?;
    let r = get(&brain, "/api/v1/setup/status", None).await?;
    ensure_eq(
        header(&r, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "setup referrer policy",
    )?;
    for (extra, want) in [
        (vec![], "max-age=31536000; includeSubDomains"),
        (
            vec![
                ("Z4J_HSTS_MAX_AGE_SECONDS", "123"),
                ("Z4J_HSTS_INCLUDE_SUBDOMAINS", "false"),
            ],
            "max-age=123",
        ),
    ] {
        // Production posture said explicitly: the reference's SQLite CLI
        // picks `dev` itself unless allowed hosts are configured too.
        let mut env = vec![
            ("Z4J_PUBLIC_URL", "https://z4j.example.com"),
            ("Z4J_ENVIRONMENT", "production"),
        ];
        env.extend(extra);
        let b = ctx.start(&env).await?;
        let r = get(&b, "/api/v1/health", None).await?;
        ensure_eq(
            header(&r, "strict-transport-security").as_deref(),
            Some(want),
            "HSTS value",
        )?;
    }
    let dev = ctx
        .start(&[
            ("Z4J_PUBLIC_URL", "https://z4j.example.com"),
            ("Z4J_ENVIRONMENT", "dev"),
        ])
        .await?;
    let r = get(&dev, "/api/v1/health", None).await?;
    ensure_eq(
        header(&r, "strict-transport-security"),
        None,
        "no HSTS in dev posture",
    )
}

const LOGIN: &str = "/api/v1/auth/login";

async fn post_raw(
    brain: &Brain,
    path: &str,
    body: reqwest::Body,
    content_length: Option<usize>,
) -> Result<(u16, Json, Option<String>), String> {
    let mut req = client()
        .post(brain.url(path))
        .header("content-type", "application/json")
        .body(body);
    if path.starts_with("/api/v1/agent/") {
        req = req.bearer_auth("not-a-token");
    }
    if let Some(n) = content_length {
        req = req.header("content-length", n.to_string());
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let id = header(&r, "x-request-id");
    Ok((status, r.json().await.unwrap_or(Json::Null), id))
}

/// The long-poll agent route is under `Z4J_MAX_PAYLOAD_SIZE_BYTES` like
/// every body (specs/decisions.md G5): one byte over is 413 family E before
/// authentication; exactly the cap reaches the token check.
pub async fn body_cap_longpoll(ctx: Arc<Ctx>) -> R {
    for (cap, env) in [
        (8192usize, vec![]),
        (1024, vec![("Z4J_MAX_PAYLOAD_SIZE_BYTES", "1024")]),
    ] {
        let brain = ctx.start(&env).await?;
        let events_pad = |n: usize| {
            let mut s = String::from(r#"{"frames":[""#);
            s.push_str(&"x".repeat(n.saturating_sub(s.len() + 3)));
            s.push_str("\"]}");
            s
        };
        const EVENTS: &str = "/api/v1/agent/events";
        let (got, body, id) = post_raw(&brain, EVENTS, events_pad(cap + 1).into(), None).await?;
        ensure_eq(
            (got, body, id),
            (
                413,
                json!({"error": "payload_too_large", "message": "request body exceeds the configured maximum",
                       "request_id": null, "details": {"reason": "content_length_exceeded"}}),
                None,
            ),
            &format!("cap {cap}: a long-poll body one byte over"),
        )?;
        let (got, body, _) = post_raw(&brain, EVENTS, events_pad(cap).into(), None).await?;
        ensure_eq(
            got,
            401,
            &format!("cap {cap}: a long-poll body of exactly the cap with a bogus token: {body}"),
        )?;
    }
    Ok(())
}

/// `Z4J_MAX_PAYLOAD_SIZE_BYTES`: 413 family E by Content-Length and for a
/// streamed (chunked) body, before routing, without a request id.
pub async fn body_cap(ctx: Arc<Ctx>) -> R {
    for (cap, env) in [
        (8192usize, vec![]),
        (1024, vec![("Z4J_MAX_PAYLOAD_SIZE_BYTES", "1024")]),
    ] {
        let brain = ctx.start(&env).await?;
        let pad = |n: usize| {
            let mut s = String::from(r#"{"email":"a@example.com","password":"x","p":""#);
            s.push_str(&"x".repeat(n.saturating_sub(s.len() + 2)));
            s.push_str("\"}");
            s
        };
        let (status, body, id) = post_raw(&brain, LOGIN, pad(cap + 1).into(), None).await?;
        ensure_eq(status, 413, &format!("cap {cap}: one byte over"))?;
        ensure_eq(
            body,
            json!({"error": "payload_too_large", "message": "request body exceeds the configured maximum",
                   "request_id": null, "details": {"reason": "content_length_exceeded"}}),
            "413 body",
        )?;
        ensure_eq(id, None, "a 413 carries no request id")?;
        let (status, _, _) = post_raw(&brain, LOGIN, pad(cap).into(), None).await?;
        ensure_eq(status, 401, &format!("cap {cap}: exactly the cap passes"))?;
        // Chunked: no Content-Length, counted while read.
        let big = pad(cap + 500).into_bytes();
        let stream = futures_util::stream::iter(
            big.chunks(256)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        let (status, body, _) =
            post_raw(&brain, LOGIN, reqwest::Body::wrap_stream(stream), None).await?;
        ensure_eq(
            (status, body["details"]["reason"].as_str()),
            (413, Some("streamed_body_exceeded")),
            &format!("cap {cap}: chunked body over the cap: {body}"),
        )?;
    }
    Ok(())
}

/// `Z4J_ALLOWED_HOSTS`: a foreign Host is 400 `invalid_host` (with a request
/// id); health stays reachable; malformed hosts are refused everywhere;
/// `z4j allowed-hosts add` takes effect without a restart.
pub async fn allowed_hosts(ctx: Arc<Ctx>) -> R {
    let brain = ctx
        .start(&[("Z4J_ALLOWED_HOSTS", r#"["127.0.0.1", "z4j.example.com"]"#)])
        .await?;
    let r = get(&brain, "/api/v1/setup/status", Some("evil.example.net")).await?;
    let status = r.status().as_u16();
    let id = header(&r, "x-request-id");
    let body: Json = r.json().await.unwrap_or(Json::Null);
    ensure_eq(
        (status, body["error"].as_str(), body["message"].as_str()),
        (
            400,
            Some("invalid_host"),
            Some("Bad Request: invalid Host header."),
        ),
        &format!("foreign host: {body}"),
    )?;
    ensure(
        id.is_some()
            && body["request_id"].as_str() == id.as_deref()
            && body.get("details").is_none(),
        format!("invalid_host carries its request id and no details: {body}"),
    )?;
    for (host, want, what) in [
        (
            "Z4J.example.com:443",
            200,
            "listed host, any case, with a port",
        ),
        ("evil.example.net", 200, "health is exempt"),
        ("evil.com/admin", 400, "malformed host, even on health"),
        ("127.0.0.1:abc", 400, "non-numeric port"),
    ] {
        let path = if want == 200 && what.starts_with("health") {
            "/api/v1/health"
        } else if what.starts_with("listed") {
            "/api/v1/setup/status"
        } else {
            "/api/v1/health"
        };
        let status = get(&brain, path, Some(host)).await?.status().as_u16();
        ensure_eq(status, want, what)?;
    }
    // Added live through the CLI on the brain's home.
    let out = run_cli(
        &ctx.target,
        &brain.home,
        &[],
        &["allowed-hosts", "add", "new.example.org"],
    )?;
    ensure_eq(out.code, 0, &format!("allowed-hosts add: {}", out.stderr))?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let status = get(&brain, "/api/v1/setup/status", Some("new.example.org"))
            .await?
            .status()
            .as_u16();
        if status == 200 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "a host added with `z4j allowed-hosts add` is still refused ({status})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `Z4J_REQUEST_TIMEOUT_SECONDS`: a request still running at the budget is
/// answered 504 `request_timeout` (login held to a 2 s floor, 1 s budget).
pub async fn request_timeout(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_REQUEST_TIMEOUT_SECONDS", "1"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "2000"),
    ]);
    let brain = ctx.start(&env).await?;
    let started = Instant::now();
    let r = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let status = r.status().as_u16();
    let body: Json = r.json().await.unwrap_or(Json::Null);
    ensure_eq(
        (status, body["error"].as_str()),
        (504, Some("request_timeout")),
        &format!("slow request: {body}"),
    )?;
    ensure(
        took >= Duration::from_millis(950) && took <= ctx.scaled(1.8),
        format!("answered after {took:?}, want about 1 s"),
    )
}

/// CORS for `Z4J_CORS_ORIGINS` with and without credentials; nothing when
/// the list is empty.
pub async fn cors(ctx: Arc<Ctx>) -> R {
    const DASH: &str = "https://dash.example.com";
    let preflight = |brain: &Brain, origin: &str, headers: &str| {
        client()
            .request(reqwest::Method::OPTIONS, brain.url("/api/v1/projects"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let brain = ctx
        .start(&[("Z4J_CORS_ORIGINS", r#"["https://dash.example.com"]"#)])
        .await?;
    let r = preflight(&brain, DASH, "content-type, x-csrf-token")
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(r.status().as_u16(), 200, "allowed preflight")?;
    ensure_eq(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(DASH),
        "allow-origin",
    )?;
    ensure_eq(
        header(&r, "access-control-allow-credentials").as_deref(),
        Some("true"),
        "credentials",
    )?;
    ensure_eq(
        header(&r, "access-control-max-age").as_deref(),
        Some("600"),
        "max-age",
    )?;
    ensure_eq(
        header(&r, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "security headers on preflights",
    )?;
    let r = preflight(&brain, "https://evil.example.net", "content-type")
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(r.status().as_u16(), 400, "preflight from another origin")?;
    ensure_eq(
        r.text().await.unwrap_or_default(),
        "Disallowed CORS origin".to_owned(),
        "refusal text",
    )?;
    let r = preflight(&brain, DASH, "x-evil")
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(r.status().as_u16(), 400, "disallowed request header")?;
    let r = client()
        .get(brain.url("/api/v1/health"))
        .header("origin", DASH)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(DASH),
        "actual request",
    )?;
    let r = client()
        .get(brain.url("/api/v1/health"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        (
            r.status().as_u16(),
            header(&r, "access-control-allow-origin"),
        ),
        (200, None),
        "other origin: served, no CORS",
    )?;
    let no_creds = ctx
        .start(&[
            ("Z4J_CORS_ORIGINS", r#"["https://dash.example.com"]"#),
            ("Z4J_CORS_ALLOW_CREDENTIALS", "false"),
        ])
        .await?;
    let r = preflight(&no_creds, DASH, "content-type")
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        (
            r.status().as_u16(),
            header(&r, "access-control-allow-credentials"),
        ),
        (200, None),
        "credentials off",
    )?;
    let plain = ctx.start(&[]).await?;
    let r = preflight(&plain, DASH, "content-type")
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        (
            r.status().as_u16(),
            header(&r, "access-control-allow-origin"),
        ),
        (405, None),
        "no CORS without origins",
    )
}

/// `Z4J_ADMIN_PROJECT_LIST_CAP`: the project listing stops at the cap.
pub async fn admin_project_list_cap(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_ADMIN_PROJECT_LIST_CAP", "10"));
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    for i in 0..11 {
        let (status, body) = op
            .send(
                &brain,
                reqwest::Method::POST,
                "/api/v1/projects",
                Some(json!({"slug": format!("proj-{i:02}"), "name": format!("P{i}")})),
            )
            .await?;
        ensure_eq(status, 201, &format!("create project {i}: {body}"))?;
    }
    let (status, list) = op.get(&brain, "/api/v1/projects").await?;
    ensure_eq(
        (status, list.as_array().map(Vec::len)),
        (200, Some(10)),
        "12 projects listed under a cap of 10",
    )
}

/// `Z4J_ALLOW_HTTP_PUBLIC_URL`: a plaintext public URL is refused in
/// production unless the escape hatch is set.
pub async fn allow_http_public_url(ctx: Arc<Ctx>) -> R {
    let url = ("Z4J_PUBLIC_URL", "http://z4j.example.com");
    // Production posture said explicitly (the reference's SQLite CLI would
    // pick `dev`, where http is allowed).
    let production = ("Z4J_ENVIRONMENT", "production");
    let (code, err, _b) =
        super::expect_refusal_observing(&ctx, &[url, production], &["Z4J_ALLOW_HTTP_PUBLIC_URL"])
            .await?;
    ensure(
        code != 0 && (err.contains("Z4J_PUBLIC_URL") || err.contains("public_url")),
        format!("http:// public URL accepted or refusal unnamed: {code} {err}"),
    )?;
    let b = ctx
        .start(&[url, production, ("Z4J_ALLOW_HTTP_PUBLIC_URL", "true")])
        .await?;
    let (status, _) = super::get_json(&b, "/api/v1/health", None).await?;
    ensure_eq(status, 200, "starts with Z4J_ALLOW_HTTP_PUBLIC_URL=true")
}

/// REST bodies are JSON: a login posted as a form or as `text/plain` is
/// refused with 415 naming the type (and sets no cookie), while JSON with
/// parameters, or a body without a Content-Type, is read.
pub async fn json_bodies(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let brain = ctx.start(&env).await?;
    let creds = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string();
    let login = |content_type: Option<&'static str>, body: String| {
        let brain = &brain;
        async move {
            let mut req = client().post(brain.url("/api/v1/auth/login")).body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            req.send().await.map_err(|e| format!("login: {e}"))
        }
    };
    let form = format!(
        "email={}&password={}",
        ADMIN_EMAIL.replace('@', "%40"),
        ADMIN_PASSWORD
    );
    for (ct, body) in [
        ("application/x-www-form-urlencoded", form),
        ("text/plain", creds.clone()),
        ("multipart/form-data; boundary=xyz", creds.clone()),
    ] {
        let r = login(Some(ct), body).await?;
        let status = r.status().as_u16();
        let cookie = r.headers().get("set-cookie").is_some();
        let body: Json = r.json().await.unwrap_or_default();
        ensure(
            status == 415
                && body["error"] == "unsupported_media_type"
                && body["details"]["content_type"] == ct
                && body["request_id"].is_string()
                && !cookie,
            format!("a login sent as {ct}: {status} {body} (cookie set: {cookie})"),
        )?;
    }
    for ct in [Some("application/json; charset=utf-8"), None] {
        let r = login(ct, creds.clone()).await?;
        ensure_eq(
            r.status().as_u16(),
            200,
            &format!("a JSON login with Content-Type {ct:?}"),
        )?;
    }
    Ok(())
}
