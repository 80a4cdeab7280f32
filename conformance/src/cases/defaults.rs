//! Documented defaults observed with their variables unset: each case
//! starts the brain without the variables it names and checks the
//! documented effect on both sides of the boundary. Defaults measured in
//! minutes or days are reached through `Z4J_TESTING_CLOCK_OFFSET_SECONDS`
//! across restarts on one database (state that matters is persisted).

use super::auth::{attempt, me};
use super::{client, ensure, ensure_eq, R};
use crate::agent::{self, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::brain::{Brain, Home};
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A restart on the same home and database with the brain's clock shifted
/// by `offset` seconds.
pub(super) async fn at_offset(
    ctx: &Ctx,
    env: &[(String, String)],
    home: Home,
    offset: f64,
) -> Result<Brain, String> {
    let mut env = env.to_vec();
    env.push((
        "Z4J_TESTING_CLOCK_OFFSET_SECONDS".into(),
        format!("{}", offset.round() as i64),
    ));
    ctx.start_env(env, Some(home)).await
}

/// Dev posture (for the testing clock), the suite's admin, one database
/// kept across restarts.
pub(super) async fn clock_env(ctx: &Ctx) -> Result<Vec<(String, String)>, String> {
    let (mut env, _) = ctx.pinned_admin_env(&[]).await?;
    env.push(("Z4J_ENVIRONMENT".into(), "dev".into()));
    Ok(env)
}

/// Each attempt claims its own client address (through a trusted loopback
/// proxy) so the per-IP login bucket stays out of the way.
async fn try_login(
    brain: &Brain,
    email: &str,
    password: &str,
) -> Result<(u16, Json, Duration), String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    attempt(brain, email, password, Some(&ip)).await
}

/// Login defaults: the 300 ms floor, the 0.5 s backoff doubling to 5 s,
/// the lockout on the 10th failure (not the 9th) for 900 s, re-armed by a
/// refused attempt, the attempted address kept out of the log, and the
/// session cookie's `SameSite=Lax`.
pub async fn login(ctx: Arc<Ctx>) -> R {
    let mut env = clock_env(&ctx).await?;
    env.push((
        "Z4J_TRUSTED_PROXIES".into(),
        r#"["127.0.0.1/32", "::1/128"]"#.into(),
    ));
    let brain = ctx.start_env(env.clone(), None).await?;
    let slack = ctx.scaled(0.6).as_secs_f64();
    // The same login on a brain without a floor: what the password hash
    // costs on this machine now. A success waits out the floor and no
    // more, so it takes the longer of the two: where hashing is slower
    // than 300 ms the floor hides behind it, and a floor added after the
    // work (instead of around it) still shows.
    let mut bare_env = env.clone();
    bare_env.push(("Z4J_LOGIN_MIN_DURATION_MS".into(), "0".into()));
    let bare = ctx.start_env(bare_env, None).await?;
    // Interleaved, so both see the same load; the fastest of three (a
    // longer floor slows all three, a busy machine only some).
    let (mut fastest, mut work) = (f64::MAX, f64::MAX);
    for i in 0..3 {
        let (status, _, took) = try_login(&brain, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        let t = took.as_secs_f64();
        fastest = fastest.min(t);
        if status != 200 || t < 0.299 {
            ctx.fail_clause(
                "Z4J_LOGIN_MIN_DURATION_MS",
                format!("success {i}: {status} in {t:.3} s, want 200 after the 0.300 s floor"),
            );
        }
        let (status, _, took) = try_login(&bare, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        ensure_eq(status, 200, "a success without a floor")?;
        work = work.min(took.as_secs_f64());
    }
    drop(bare);
    if fastest > work.max(0.3) + ctx.scaled(0.2).as_secs_f64() {
        ctx.fail_clause(
            "Z4J_LOGIN_MIN_DURATION_MS",
            format!(
                "the fastest of three successes took {fastest:.3} s, want the 0.300 s floor \
                 (or the {work:.3} s a success takes without one, if longer)"
            ),
        );
    }
    let resp = client()
        .post(brain.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "10.255.0.1")
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let session_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("HttpOnly"))
        .map(str::to_owned)
        .unwrap_or_default();
    let attrs: Vec<String> = session_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    if !attrs.iter().any(|a| a == "samesite=lax") {
        ctx.fail_clause(
            "Z4J_SESSION_COOKIE_SAMESITE",
            format!("the session cookie is not SameSite=Lax: {session_cookie:?}"),
        );
    }
    // The k-th failure of a streak waits floor + min(5, 0.5 * 2^(k-1)),
    // unknown account or not; the unknown address stays out of the log.
    let ghost = "ghost-defaults@example.com";
    let (status, _, took) = try_login(&brain, ghost, "wrong-password").await?;
    ensure_eq(status, 401, "unknown account")?;
    let t = took.as_secs_f64();
    if t < 0.79 || t > 0.8 + slack {
        ctx.fail_clause(
            "Z4J_LOGIN_MIN_DURATION_MS",
            format!("an unknown account's first failure took {t:.3} s, want 0.8 (0.3 floor + 0.5 backoff)"),
        );
    }
    let timed = |k: usize, t: f64| {
        let extra = (0.5 * 2f64.powi(k as i32)).min(5.0);
        let want = 0.3 + extra;
        if t < want - 0.01 || t > want + slack {
            let clause = if extra < 5.0 {
                "Z4J_LOGIN_BACKOFF_BASE_SECONDS"
            } else {
                "Z4J_LOGIN_BACKOFF_MAX_SECONDS"
            };
            ctx.fail_clause(
                clause,
                format!("failure {} took {t:.3} s, want {want:.1} s", k + 1),
            );
        }
    };
    for k in 0..9 {
        let (status, _, took) = try_login(&brain, ADMIN_EMAIL, "wrong-password").await?;
        ensure_eq(status, 401, "wrong password")?;
        timed(k, took.as_secs_f64());
    }
    let (status, body, _) = try_login(&brain, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    if status != 200 {
        ctx.fail_clause(
            "Z4J_LOGIN_LOCKOUT_THRESHOLD",
            format!("locked after 9 failures (the threshold is 10): {status} {body}"),
        );
    }
    let mut locked_at = Instant::now();
    for k in 0..10 {
        locked_at = Instant::now();
        let (status, _, _) = try_login(&brain, ADMIN_EMAIL, "wrong-password").await?;
        ensure_eq(status, 401, "wrong password")?;
        let _ = k;
    }
    let (status, _, _) = try_login(&brain, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    if status != 401 {
        ctx.fail_clause(
            "Z4J_LOGIN_LOCKOUT_THRESHOLD",
            format!("not locked after 10 failures: the right password answered {status}"),
        );
    }
    if brain.output().contains(ghost) {
        ctx.fail_clause(
            "Z4J_LOG_LOGIN_EMAIL",
            "the attempted address is in the log with Z4J_LOG_LOGIN_EMAIL unset",
        );
    }
    // The lock lasts 900 s from the 10th failure; each refused attempt
    // re-arms it from its own time. Brain time = offset + real time since
    // the lock.
    let home = brain.stop_keep_home().await;
    let probe = |offset: f64, home: Home| {
        let env = env.clone();
        let ctx = ctx.clone();
        async move {
            let b = at_offset(&ctx, &env, home, offset).await?;
            let sent = locked_at.elapsed().as_secs_f64() + offset;
            let (status, _, _) = try_login(&b, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
            Ok::<_, String>((status, sent, b.stop_keep_home().await))
        }
    };
    let since = locked_at.elapsed().as_secs_f64();
    let (status, first, home) = probe(885.0 - since, home).await?;
    if status != 401 {
        ctx.fail_clause(
            "Z4J_LOGIN_LOCKOUT_DURATION_SECONDS",
            format!("unlocked {first:.0} s after the lock (900 s): {status}"),
        );
    }
    // Past the first lock's end, inside the one re-armed at `first`.
    let since = locked_at.elapsed().as_secs_f64();
    let (status, second, home) = probe(first + 800.0 - since, home).await?;
    if status != 401 {
        ctx.fail_clause(
            "Z4J_LOGIN_LOCKOUT_DURATION_SECONDS",
            format!(
                "a refused attempt while locked did not re-arm the lock: unlocked at {second:.0} s \
                 ({:.0} s after the re-arming attempt)",
                second - first
            ),
        );
    }
    let since = locked_at.elapsed().as_secs_f64();
    let (status, third, _) = probe(second + 910.0 - since, home).await?;
    if status != 200 {
        ctx.fail_clause(
            "Z4J_LOGIN_LOCKOUT_DURATION_SECONDS",
            format!(
                "still locked {:.0} s after the last refused attempt (900 s): {status}",
                third - second
            ),
        );
    }
    Ok(())
}

/// Session defaults: idle 1800 s (sliding), absolute 604 800 s, and no
/// User-Agent pinning.
pub async fn sessions(ctx: Arc<Ctx>) -> R {
    let env = clock_env(&ctx).await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let t0 = Instant::now();
    if me(&brain, &op, Some("another-client/1.0")).await? != 200 {
        ctx.fail_clause(
            "Z4J_SESSION_PIN_USER_AGENT",
            "another User-Agent ended the session with pinning unset",
        );
    }
    // Brain time since login = offset + real time since login.
    let mut home = brain.stop_keep_home().await;
    let mut last_seen = 0.0;
    for (at, want, what) in [
        (1790.0, 200, "1790 s idle"),
        (3580.0, 200, "1790 s idle after a request"),
        (5400.0, 401, "1820 s idle"),
    ] {
        let b = at_offset(&ctx, &env, home, at - t0.elapsed().as_secs_f64()).await?;
        let status = me(&b, &op, None).await?;
        if status != want {
            ctx.fail_clause(
                "Z4J_SESSION_IDLE_TIMEOUT_SECONDS",
                format!("{what} (since the previous request at {last_seen:.0} s): {status}, want {want}"),
            );
        }
        last_seen = at;
        home = b.stop_keep_home().await;
    }
    // The absolute lifetime alone: an idle timeout long enough not to
    // interfere, and a fresh database.
    let mut env = clock_env(&ctx).await?;
    env.push(("Z4J_SESSION_IDLE_TIMEOUT_SECONDS".into(), "2592000".into()));
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let t0 = Instant::now();
    let mut home = brain.stop_keep_home().await;
    for (at, want) in [(604_700.0, 200), (604_830.0, 401)] {
        let b = at_offset(&ctx, &env, home, at - t0.elapsed().as_secs_f64()).await?;
        let status = me(&b, &op, None).await?;
        if status != want {
            ctx.fail_clause(
                "Z4J_SESSION_ABSOLUTE_LIFETIME_SECONDS",
                format!("{at:.0} s after login (lifetime 604800 s): {status}, want {want}"),
            );
        }
        home = b.stop_keep_home().await;
    }
    Ok(())
}

async fn send_host(brain: &Brain, host: &str) -> Result<(u16, Json), String> {
    let r = client()
        .get(brain.url("/api/v1/setup/status"))
        .header("host", host)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Json::Null)))
}

/// HTTP defaults on one brain with nothing configured: loopback names are
/// the allowed hosts and others are refused; `X-Forwarded-For` from a
/// direct peer is not trusted (the per-IP login bucket still counts the
/// peer); the project list stops at 500.
pub async fn http(ctx: Arc<Ctx>) -> R {
    let brain = ctx.start(&agent::admin_env()).await?;
    for (host, accepted) in [("localhost", true), ("evil.example.net", false)] {
        let (status, body) = send_host(&brain, host).await?;
        let refused = status == 400 && body["error"] == "invalid_host";
        if refused == accepted {
            ctx.fail_clause(
                "Z4J_ALLOWED_HOSTS",
                format!(
                    "Host {host} with no list configured: {status} {body} (want it {})",
                    if accepted {
                        "accepted"
                    } else {
                        "refused as invalid_host"
                    }
                ),
            );
        }
    }
    let op = agent::login(&brain).await?;
    // 499 more projects make 500 with `default`; the listing shows them all,
    // and one more is not listed.
    let create = |i: usize| {
        let op = op.clone();
        let url = brain.url("/api/v1/projects");
        async move {
            let r = client()
                .post(url)
                .header("cookie", &op.cookie)
                .header("x-csrf-token", &op.csrf)
                .json(&json!({"slug": format!("cap-{i:03}"), "name": format!("Cap {i}")}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            ensure_eq(r.status().as_u16(), 201, &format!("create project {i}"))
        }
    };
    let mut next = 0;
    while next < 499 {
        let batch: Vec<_> = (next..(next + 8).min(499)).map(create).collect();
        next = (next + 8).min(499);
        for r in futures_util::future::join_all(batch).await {
            r?;
        }
    }
    let listed = |brain: &Brain| {
        let op = op.clone();
        let url = brain.url("/api/v1/projects");
        async move {
            let r = client()
                .get(url)
                .header("cookie", &op.cookie)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body: Json = r.json().await.unwrap_or(Json::Null);
            Ok::<_, String>(body.as_array().map(Vec::len))
        }
    };
    let at_cap = listed(&brain).await?;
    create(499).await?;
    let over = listed(&brain).await?;
    if (at_cap, over) != (Some(500), Some(500)) {
        ctx.fail_clause(
            "Z4J_ADMIN_PROJECT_LIST_CAP",
            format!("500 projects listed as {at_cap:?}, 501 as {over:?}; want 500 and 500"),
        );
    }
    // Twenty failed logins each claiming another client address use up the
    // one bucket of the real peer (a brain of its own: the bucket is fresh).
    let brain = ctx.start(&[]).await?;
    let spoofed = |i: usize| {
        let brain = &brain;
        async move {
            let ip = format!("203.0.113.{}", i + 1);
            attempt(brain, &format!("spoof-{i}@example.com"), "x", Some(&ip)).await
        }
    };
    for chunk in 0..4 {
        let batch: Vec<_> = (chunk * 5..chunk * 5 + 5).map(spoofed).collect();
        for r in futures_util::future::join_all(batch).await {
            let (status, _, _) = r?;
            ensure_eq(status, 401, "failed login")?;
        }
    }
    let (status, body, _) =
        attempt(&brain, "spoof-x@example.com", "x", Some("198.51.100.7")).await?;
    if status != 429 {
        ctx.fail_clause(
            "Z4J_TRUSTED_PROXIES",
            format!(
                "with no trusted proxy a spoofed X-Forwarded-For got its own login bucket: \
                 the 21st attempt from one peer answered {status} {body}"
            ),
        );
    }
    Ok(())
}

/// A failed login with a client that waits longer than the brain's budget.
async fn slow_login(brain: &Brain) -> Result<(u16, Json, Duration), String> {
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let r = c
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": "wrong"}))
        .send()
        .await
        .map_err(|e| format!("login: {e}"))?;
    let status = r.status().as_u16();
    let body: Json = r.json().await.unwrap_or(Json::Null);
    Ok((status, body, started.elapsed()))
}

/// `Z4J_REQUEST_TIMEOUT_SECONDS` at 30 s: a login held 20 s by its backoff
/// is answered, one held 40 s is cut at 30 s with 504.
pub async fn request_timeout(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "10"),
        ("Z4J_LOGIN_BACKOFF_MAX_SECONDS", "60"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    for want in [10, 20] {
        let (status, _, took) = slow_login(&brain).await?;
        ensure(
            status == 401 && took >= Duration::from_secs(want),
            format!("a {want} s request: {status} after {took:?}, want 401 after {want} s"),
        )?;
    }
    let (status, body, took) = slow_login(&brain).await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (504, Some("request_timeout")),
        &format!("a 40 s request: {body}"),
    )?;
    ensure(
        took >= Duration::from_millis(29_900) && took <= ctx.scaled(31.5),
        format!("cut after {took:?}, want 30 s"),
    )
}

/// List pages: 50 rows by default, at most 500 (a larger `limit` is
/// capped), with 501 tasks stored.
pub async fn pages(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = super::gateway::setup(&ctx, &[]).await?;
    let mut s = agent::connect(&brain, &creds, Some("pages-1")).await?;
    for b in 0..6 {
        let events: Vec<Json> = (b * 100..((b + 1) * 100).min(501))
            .map(|i| {
                agent::task_event(
                    &format!("p-{i:03}"),
                    "task.received",
                    json!({"task_name": "jobs.page", "queue": "default"}),
                )
            })
            .collect();
        let id = format!("ev_pages_{b}");
        s.send_events(&id, &events).await?;
        let ack = s.expect_ack(&id, ctx.scaled(30.0)).await?;
        ensure_eq(
            ack["accepted"].as_u64(),
            Some(events.len() as u64),
            "events stored",
        )?;
    }
    for (query, want) in [
        ("", 50),
        ("?limit=499", 499),
        ("?limit=500", 500),
        ("?limit=501", 500),
    ] {
        let (status, body) = op
            .get(&brain, &format!("/api/v1/projects/default/tasks{query}"))
            .await?;
        let n = body["items"].as_array().map(Vec::len);
        let clause = if query.is_empty() {
            "Z4J_REST_DEFAULT_PAGE_SIZE"
        } else {
            "Z4J_REST_MAX_PAGE_SIZE"
        };
        if (status, n) != (200, Some(want)) {
            ctx.fail_clause(
                clause,
                format!("GET tasks{query} with 501 stored: {status} with {n:?} rows, want {want}"),
            );
        }
    }
    Ok(())
}
