//! First boot: secrets, the setup URL and API, the bootstrap admin.

use super::{client, ensure, ensure_eq, expect_refusal, file_mode, get_json, secret_env, R};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const STRONG: &str = "Tr0ub4dor&3xyz-conformance";

pub async fn secrets_minted(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let entries = secret_env(&b);
    for key in ["Z4J_SECRET", "Z4J_SESSION_SECRET"] {
        let v = super::secret_env_value(&b, key)
            .ok_or_else(|| format!("{key} not minted into secret.env\n{}", b.output()))?;
        ensure(
            v.len() >= 32,
            format!("{key} is {} bytes; at least 32 required", v.len()),
        )?;
    }
    ensure_eq(
        file_mode(&b.z4j_home().join("secret.env")),
        Some(0o600),
        "secret.env mode",
    )?;
    ensure_eq(file_mode(&b.z4j_home()), Some(0o700), "~/.z4j mode")?;
    let before = entries;
    let b = super::restart(&ctx, b).await?;
    ensure_eq(
        secret_env(&b),
        before,
        "secret.env after a restart (nothing re-minted)",
    )?;
    // Supplied secrets are not minted.
    let b = ctx
        .start(&[("Z4J_SECRET", "operator-master-secret-0123456789abcdef-x")])
        .await?;
    ensure(
        !secret_env(&b).iter().any(|(k, _)| k == "Z4J_SECRET"),
        "Z4J_SECRET was minted although the environment supplies it",
    )
}

/// PostgreSQL replicas share a database, so none may mint its own secret.
pub async fn postgres_needs_secrets(ctx: Arc<Ctx>) -> R {
    let (_, url) = ctx.new_pg_database().await?;
    let (code, err, _b) = expect_refusal(&ctx, &[("Z4J_DATABASE_URL", &url)]).await?;
    ensure(code != 0, "exit 0 on PostgreSQL without Z4J_SECRET")?;
    ensure(
        // As the variable, or as the settings field a validation error names.
        err.contains("Z4J_SECRET") || err.lines().any(|l| l.trim() == "secret"),
        format!("the refusal does not name Z4J_SECRET: {err}"),
    )
}

/// The token of the setup URL printed on stderr, and the expiry line.
pub(super) fn setup_url(b: &Brain) -> Option<(String, String)> {
    let err = b.stderr.text();
    let at = err.find("/setup?token=")?;
    let token: String = err[at + "/setup?token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let expires = err
        .lines()
        .find_map(|l| l.split("Token expires at:").nth(1))
        .map(|s| s.trim().trim_end_matches('║').trim().to_owned())
        .unwrap_or_default();
    Some((token, expires))
}

pub(super) async fn wait_setup_url(b: &Brain) -> Result<(String, String), String> {
    for _ in 0..100 {
        if let Some(v) = setup_url(b) {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("no setup URL on stderr\n{}", b.output()))
}

async fn post_setup(b: &Brain, body: &Value) -> Result<reqwest::Response, String> {
    client()
        .post(b.url("/api/v1/setup/complete"))
        .json(body)
        .send()
        .await
        .map_err(|e| format!("POST setup/complete: {e}"))
}

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("z4j_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

pub async fn setup_flow(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let (token, expires) = wait_setup_url(&b).await?;
    ensure(
        token.len() >= 32,
        "the setup token is too short to be unguessable",
    )?;
    // The banner's expiry is boot + 900 s by default.
    let expires_at = chrono::DateTime::parse_from_rfc3339(expires.split(' ').next().unwrap_or(""))
        .map_err(|e| format!("unparseable expiry {expires:?}: {e}"))?;
    let in_secs = (expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    ensure(
        (860..=905).contains(&in_secs),
        format!("token expires in {in_secs} s; the default TTL is 900"),
    )?;

    let (s, body) = get_json(&b, "/api/v1/setup/status", None).await?;
    ensure_eq(
        (s, body),
        (200, json!({"first_boot": true})),
        "setup/status before setup",
    )?;

    let wrong = post_setup(
        &b,
        &json!({"token": "x".repeat(43), "email": "admin@example.com", "password": STRONG}),
    )
    .await?;
    ensure_eq(wrong.status().as_u16(), 404, "wrong token")?;
    let wrong: Value = wrong.json().await.map_err(|e| e.to_string())?;
    ensure_eq(
        wrong["details"]["reason"].as_str(),
        Some("invalid_token"),
        "wrong-token reason",
    )?;

    let weak = post_setup(
        &b,
        &json!({"token": token, "email": "admin@example.com", "password": "password1234"}),
    )
    .await?;
    ensure_eq(weak.status().as_u16(), 422, "weak password")?;
    let weak: Value = weak.json().await.map_err(|e| e.to_string())?;
    ensure_eq(
        weak["error"].as_str(),
        Some("validation_error"),
        "weak password error",
    )?;

    let schema = post_setup(
        &b,
        &json!({"email": "admin@example.com", "password": STRONG}),
    )
    .await?;
    ensure_eq(schema.status().as_u16(), 422, "missing token")?;
    let schema_text = schema.text().await.unwrap_or_default();
    if schema_text.contains(STRONG) {
        ctx.fail_clause("first-boot.setup-complete", "a 422 echoed the password");
    }

    let ok = post_setup(&b, &json!({"token": token, "email": " Admin@Example.com ", "display_name": "Admin", "password": STRONG})).await?;
    ensure_eq(
        ok.status().as_u16(),
        200,
        "setup/complete with the printed token",
    )?;
    let cookie = session_cookie(&ok).ok_or("setup/complete set no session cookie")?;
    let body: Value = ok.json().await.map_err(|e| e.to_string())?;
    ensure_eq(
        body["user"]["email"].as_str(),
        Some("admin@example.com"),
        "canonical email",
    )?;
    ensure_eq(body["user"]["is_admin"].as_bool(), Some(true), "is_admin")?;
    ensure(body["project_id"].is_string(), "no project_id")?;

    let (s, _) = get_json(&b, "/api/v1/setup/status", None).await?;
    ensure_eq(s, 401, "anonymous setup/status after setup")?;
    let (s, body) = get_json(&b, "/api/v1/setup/status", Some(&cookie)).await?;
    ensure_eq(
        (s, body),
        (200, json!({"first_boot": false})),
        "setup/status with the session",
    )?;
    let (s, body) = get_json(&b, "/api/v1/health/system", Some(&cookie)).await?;
    ensure_eq(s, 200, "health/system with the session")?;
    ensure(
        body["z4j_version"].is_string(),
        format!("no z4j_version: {body}"),
    )?;

    let again = post_setup(
        &b,
        &json!({"token": token, "email": "second@example.com", "password": STRONG}),
    )
    .await?;
    ensure_eq(again.status().as_u16(), 409, "a second setup")?;

    // A restart with a user prints no setup URL (SQLite: the database
    // lives in the home; PostgreSQL restarts get a fresh database).
    if ctx.db == crate::runner::Database::Sqlite {
        let b = super::restart(&ctx, b).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure(
            setup_url(&b).is_none(),
            "a setup URL was printed although an admin exists",
        )?;
    }
    Ok(())
}

pub async fn token_expiry(ctx: Arc<Ctx>) -> R {
    let b = ctx
        .start(&[("Z4J_FIRST_BOOT_TOKEN_TTL_SECONDS", "60")])
        .await?;
    let (token, _) = wait_setup_url(&b).await?;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let r = post_setup(
        &b,
        &json!({"token": token, "email": "admin@example.com", "password": STRONG}),
    )
    .await?;
    ensure_eq(r.status().as_u16(), 404, "setup/complete after the TTL")?;
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    ensure_eq(
        body["details"]["reason"].as_str(),
        Some("expired"),
        "reason",
    )
}

async fn exhaust(b: &Brain, failures: usize) -> R {
    for i in 0..failures {
        let r = post_setup(b, &json!({"token": format!("wrong-token-{i:04}"), "email": "admin@example.com", "password": STRONG})).await?;
        ensure_eq(
            r.status().as_u16(),
            404,
            &format!("failed attempt {}", i + 1),
        )?;
    }
    Ok(())
}

async fn expect_budget_spent(b: &Brain) -> R {
    let (token, _) = setup_url(b).ok_or("no setup URL")?;
    // Even the right token is refused once the budget is spent.
    let r = post_setup(
        b,
        &json!({"token": token, "email": "admin@example.com", "password": STRONG}),
    )
    .await?;
    ensure_eq(r.status().as_u16(), 429, "attempt past the budget")?;
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("429 without a numeric Retry-After")?;
    ensure(
        (1..=900).contains(&retry),
        format!("Retry-After {retry} outside the 15-minute window"),
    )?;
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    ensure_eq(body["error"].as_str(), Some("rate_limited"), "error code")
}

pub async fn attempt_budget_default(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    wait_setup_url(&b).await?;
    exhaust(&b, 30).await?;
    expect_budget_spent(&b).await
}

pub async fn attempt_budget_configured(ctx: Arc<Ctx>) -> R {
    let b = ctx
        .start(&[("Z4J_FIRST_BOOT_ATTEMPTS_PER_IP", "2")])
        .await?;
    wait_setup_url(&b).await?;
    exhaust(&b, 2).await?;
    expect_budget_spent(&b).await
}

pub async fn bootstrap_admin(ctx: Arc<Ctx>) -> R {
    let password = "Bootstrap-Pa55word-conformance";
    let b = ctx
        .start(&[
            ("Z4J_BOOTSTRAP_ADMIN_EMAIL", "Boot@Example.com"),
            ("Z4J_BOOTSTRAP_ADMIN_PASSWORD", password),
        ])
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure(
        setup_url(&b).is_none(),
        "a setup URL was printed although the bootstrap admin was provisioned",
    )?;
    let (s, _) = get_json(&b, "/api/v1/setup/status", None).await?;
    ensure_eq(s, 401, "setup/status after bootstrap (provisioned)")?;
    // The password is gone from the process environment. "Popped from
    // os.environ" leaves /proc/<pid>/environ untouched in a Python brain, so
    // only targets claiming to scrub their initial environment are held to
    // what another process of the same user can read.
    let scrubs = ctx.target.has("scrubs_process_environ");
    if let Some(pid) = b.pid().filter(|_| scrubs) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let text = String::from_utf8_lossy(&environ);
        ensure(
            !text.contains(password),
            "Z4J_BOOTSTRAP_ADMIN_PASSWORD is still in the process environment",
        )?;
    }
    drop(b);
    // A weak password falls back to the setup URL.
    let b = ctx
        .start(&[
            ("Z4J_BOOTSTRAP_ADMIN_EMAIL", "boot@example.com"),
            ("Z4J_BOOTSTRAP_ADMIN_PASSWORD", "weak"),
        ])
        .await?;
    wait_setup_url(&b).await?;
    drop(b);
    // An email without a password is refused ("Required when ... is set").
    let refused = expect_refusal(&ctx, &[("Z4J_BOOTSTRAP_ADMIN_EMAIL", "boot@example.com")]).await;
    let problem = match refused {
        Err(e) => Some(e.lines().next().unwrap_or_default().to_owned()),
        Ok((0, _, _)) => Some("exit 0 with an email but no password".to_owned()),
        Ok((_, err, _)) if !err.contains("Z4J_BOOTSTRAP_ADMIN_PASSWORD") => Some(format!(
            "the refusal does not name the password variable: {err}"
        )),
        Ok(_) => None,
    };
    if let Some(p) = problem {
        ctx.fail_clause("Z4J_BOOTSTRAP_ADMIN_PASSWORD", p);
    }
    Ok(())
}

/// `Z4J_PASSWORD_MIN_LENGTH`: 8 by default (the seed), configurable; the
/// refusal names the minimum.
pub async fn password_min_length(ctx: Arc<Ctx>) -> R {
    for (min, short, ok) in [
        (None, "Ab1!xyz", "Ab1!xyzw"),
        (Some("16"), "Tr0ub4dor&3xyz", "correct horse battery staple"),
    ] {
        let env: Vec<(&str, &str)> = min
            .map(|m| ("Z4J_PASSWORD_MIN_LENGTH", m))
            .into_iter()
            .collect();
        let b = ctx.start(&env).await?;
        let (token, _) = wait_setup_url(&b).await?;
        let want = min.unwrap_or("8");
        let r = post_setup(
            &b,
            &json!({"token": token, "email": "admin@example.com", "password": short}),
        )
        .await?;
        ensure_eq(
            r.status().as_u16(),
            422,
            &format!("min {want}: {} characters", short.len()),
        )?;
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        // Under 8 the request schema refuses first (a validation list);
        // above it the policy names the configured minimum.
        if min.is_some() {
            ensure_eq(
                (body["details"]["reason"].as_str(), body["message"].as_str()),
                (
                    Some("password_too_short"),
                    Some(format!("password must be at least {want} characters").as_str()),
                ),
                "refusal names the minimum",
            )?;
        }
        let r = post_setup(
            &b,
            &json!({"token": token, "email": "admin@example.com", "password": ok}),
        )
        .await?;
        ensure_eq(
            r.status().as_u16(),
            200,
            &format!("min {want}: {} characters accepted", ok.len()),
        )?;
    }
    Ok(())
}

/// `z4j reset-setup` on a brain nobody has set up: refused without
/// `--force`; with it the pending setup URL stops working and the next
/// start prints a new one that works.
pub async fn reset_setup(ctx: Arc<Ctx>) -> R {
    let (env, _) = ctx.pinned_database().await?;
    let b = ctx.start_env(env.clone(), None).await?;
    let (first, _) = wait_setup_url(&b).await?;
    let home = b.stop_keep_home().await;
    let cli = |args: &[&str]| crate::brain::run_cli(&ctx.target, &home.path, &env, args);
    ensure(
        cli(&["reset-setup"])?.code != 0,
        "reset-setup without --force",
    )?;
    let out = cli(&["reset-setup", "--force"])?;
    ensure_eq(out.code, 0, &format!("reset-setup --force: {}", out.stderr))?;
    let b = ctx.start_env(env.clone(), Some(home)).await?;
    let (second, _) = wait_setup_url(&b).await?;
    ensure(second != first, "the same setup token was printed again")?;
    let body = |t: &str| json!({"token": t, "email": "admin@example.com", "password": STRONG});
    let old = post_setup(&b, &body(&first)).await?;
    ensure_eq(old.status().as_u16(), 404, "the discarded setup token")?;
    let new = post_setup(&b, &body(&second)).await?;
    ensure_eq(new.status().as_u16(), 200, "the new setup token")
}
