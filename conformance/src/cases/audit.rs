//! The HMAC-chained audit log: rows for security-relevant actions,
//! `z4j audit verify` clean on an intact chain and naming the first broken
//! row after tampering, rotation through `Z4J_PREVIOUS_SECRETS`, and the
//! retention sweep keeping the chain verifiable (grey box: rows are read
//! and tampered with in the z4j-rs schema).

use super::{client, ensure, ensure_eq, owned, R};
use crate::agent::{self, ADMIN_EMAIL};
use crate::brain::{run_cli, Home};
use crate::runner::Ctx;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OLD: &str = "audit-old-master-secret-0123456789abcdef0123456789abcdef";
const NEW: &str = "audit-new-master-secret-0123456789abcdef0123456789abcdef";

async fn sql_i64(ctx: &Ctx, home: &Home, pg: Option<&str>, stmt: &str) -> Result<i64, String> {
    super::grey::connect(ctx, &home.path, pg)
        .await?
        .i64(stmt)
        .await
}

async fn sql_exec(ctx: &Ctx, home: &Home, pg: Option<&str>, stmt: &str) -> Result<(), String> {
    super::grey::connect(ctx, &home.path, pg)
        .await?
        .exec(stmt)
        .await
}

/// `z4j audit verify` with `env`: (exit status, stdout + stderr).
fn verify(ctx: &Ctx, home: &Home, env: &[(String, String)]) -> Result<(i32, String), String> {
    let out = run_cli(&ctx.target, &home.path, env, &["audit", "verify"])?;
    Ok((out.code, format!("{}{}", out.stdout, out.stderr)))
}

fn with_secret(
    base: &[(String, String)],
    secret: &str,
    previous: Option<&str>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| k != "Z4J_SECRET" && k != "Z4J_PREVIOUS_SECRETS")
        .cloned()
        .collect();
    env.push(("Z4J_SECRET".into(), secret.into()));
    if let Some(p) = previous {
        env.push(("Z4J_PREVIOUS_SECRETS".into(), p.into()));
    }
    env
}

/// What an attacker with DDL rights can do: lift the append-only trigger
/// and alter row `id`'s content.
async fn tamper(ctx: &Ctx, home: &Home, pg: Option<&str>, id: i64) -> R {
    let disable = if pg.is_some() {
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"
    } else {
        "DROP TRIGGER audit_log_no_update"
    };
    sql_exec(ctx, home, pg, disable).await?;
    sql_exec(
        ctx,
        home,
        pg,
        &format!("UPDATE audit_log SET target_id = 'tampered' WHERE id = {id}"),
    )
    .await
}

pub async fn chain(ctx: Arc<Ctx>) -> R {
    let (mut base, pg) = ctx.pinned_admin_env(&[]).await?;
    base.push(("Z4J_LOGIN_MIN_DURATION_MS".into(), "0".into()));
    let pg = pg.as_deref();
    // Signed under OLD: a failed and a good login, an agent minted and revoked.
    let env_old = with_secret(&base, OLD, None);
    let brain = ctx.start_env(env_old.clone(), None).await?;
    let resp = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": "wrong-password"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(resp.status().as_u16(), 401, "failed login")?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "audited").await?;
    ensure_eq(op.revoke(&brain, &creds.agent_id).await?, 204, "revoke")?;
    let home = brain.stop_keep_home().await;
    for action in ["auth.login", "agent.token.minted", "agent.token.revoked"] {
        let n = sql_i64(
            &ctx,
            &home,
            pg,
            &format!("SELECT count(*) FROM audit_log WHERE action = '{action}'"),
        )
        .await?;
        ensure(n >= 1, format!("no audit row for {action}"))?;
    }
    let failed = sql_i64(
        &ctx,
        &home,
        pg,
        "SELECT count(*) FROM audit_log WHERE action = 'auth.login' AND result = 'failed'",
    )
    .await?;
    ensure_eq(failed, 1, "the failed login is recorded as failed")?;
    let (code, out) = verify(&ctx, &home, &env_old)?;
    ensure_eq(code, 0, &format!("verify an intact chain: {out}"))?;

    // Rotation: NEW signs, OLD still verifies.
    let env_new = with_secret(&base, NEW, Some(OLD));
    let brain = ctx.start_env(env_new.clone(), Some(home)).await?;
    agent::login(&brain).await?;
    let home = brain.stop_keep_home().await;
    let (code, out) = verify(&ctx, &home, &env_new)?;
    ensure_eq(
        code,
        0,
        &format!("rows under OLD and NEW with OLD as a previous secret: {out}"),
    )?;
    let (code, out) = verify(&ctx, &home, &with_secret(&base, NEW, None))?;
    ensure(
        code != 0 && out.contains("neither Z4J_SECRET nor in Z4J_PREVIOUS_SECRETS"),
        format!("OLD rows without OLD configured must not verify: {code} {out}"),
    )?;

    // Append-only: a plain UPDATE is refused by the database.
    let second = sql_i64(&ctx, &home, pg, "SELECT min(id) + 1 FROM audit_log").await?;
    let refused = sql_exec(
        &ctx,
        &home,
        pg,
        &format!("UPDATE audit_log SET action = 'x' WHERE id = {second}"),
    )
    .await;
    ensure(
        refused.as_ref().is_err_and(|e| e.contains("append-only")),
        format!("UPDATE on audit_log must be refused: {refused:?}"),
    )?;
    // An attacker with DDL rights: tamper a row, then remove one.
    tamper(&ctx, &home, pg, second).await?;
    let (code, out) = verify(&ctx, &home, &env_new)?;
    ensure(
        code != 0 && out.contains(&format!("row {second}")) && out.contains("content altered"),
        format!("a tampered row is named: {code} {out}"),
    )?;
    sql_exec(
        &ctx,
        &home,
        pg,
        &format!("DELETE FROM audit_log WHERE id = {}", second + 1),
    )
    .await?;
    let (code, out) = verify(&ctx, &home, &env_new)?;
    ensure(
        code != 0 && out.contains("broken"),
        format!("tampering still reported: {out}"),
    )?;
    Ok(())
}

async fn old_rows(ctx: &Ctx, home: &Home, pg: Option<&str>) -> Result<i64, String> {
    let cutoff = (chrono::Utc::now() - chrono::Duration::hours(24)).format("%Y-%m-%d %H:%M:%S%.6f");
    let suffix = if pg.is_some() { "+00" } else { "" };
    sql_i64(
        ctx,
        home,
        pg,
        &format!("SELECT count(*) FROM audit_log WHERE occurred_at < '{cutoff}{suffix}'"),
    )
    .await
}

/// Rows written two days ago (testing clock offset) are pruned with
/// `Z4J_AUDIT_RETENTION_DAYS=1`: the boot pass stops at
/// `Z4J_AUDIT_RETENTION_SWEEP_MAX_PER_PASS`, the next pass one interval
/// later removes the rest, newer rows stay, and the chain still verifies.
pub async fn retention(ctx: Arc<Ctx>) -> R {
    let (mut base, pg) = ctx.pinned_admin_env(&[]).await?;
    base.extend(owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ("Z4J_METRICS_PUBLIC", "true"),
    ]));
    let env = with_secret(&base, OLD, None);
    let pg = pg.as_deref();
    let mut past = env.clone();
    past.push(("Z4J_TESTING_CLOCK_OFFSET_SECONDS".into(), "-172800".into()));
    let brain = ctx.start_env(past, None).await?;
    let op = agent::login(&brain).await?;
    // More old rows than one pass may delete (the cap's minimum is 1000).
    for i in 0..1020 {
        op.mint(&brain, &format!("old-{i}")).await?;
    }
    let home = brain.stop_keep_home().await;
    let before = old_rows(&ctx, &home, pg).await?;
    ensure(
        before > 1000,
        format!("rows written two days ago: {before}"),
    )?;
    let mut now = env.clone();
    now.extend(owned(&[
        ("Z4J_AUDIT_RETENTION_DAYS", "1"),
        ("Z4J_AUDIT_RETENTION_SWEEP_INTERVAL_SECONDS", "60"),
        ("Z4J_AUDIT_RETENTION_SWEEP_BATCH_SIZE", "100"),
        ("Z4J_AUDIT_RETENTION_SWEEP_MAX_PER_PASS", "1000"),
    ]));
    let brain = ctx.start_env(now.clone(), Some(home.clone())).await?;
    // The boot pass stops at the cap; the rest waits for the next pass.
    let deadline = Instant::now() + ctx.scaled(15.0);
    while old_rows(&ctx, &home, pg).await? != before - 1000 {
        if Instant::now() > deadline {
            let left = old_rows(&ctx, &home, pg).await?;
            return Err(format!(
                "after the boot pass {left} of {before} old rows remain, want {}",
                before - 1000
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    agent::login(&brain).await?;
    let scrape = || async {
        let text = client()
            .get(brain.url("/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let get = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        Ok::<_, String>((
            get("z4j_audit_retention_last_run_timestamp "),
            get("z4j_audit_retention_pruned_total "),
        ))
    };
    let (first_run, pruned) = scrape().await?;
    ensure_eq(
        pruned,
        Some(1000.0),
        "rows pruned by the boot pass (the cap)",
    )?;
    let first_run = first_run.ok_or("no last-run timestamp after the boot pass")?;
    // The next pass comes one interval (60 s) later.
    tokio::time::sleep(ctx.scaled(58.0)).await;
    ensure_eq(
        scrape().await?.0,
        Some(first_run),
        "no second pass before the interval",
    )?;
    let deadline = Instant::now() + ctx.scaled(10.0);
    loop {
        if scrape().await?.0.is_some_and(|t| t > first_run) {
            break;
        }
        if Instant::now() > deadline {
            return Err("no second retention pass one interval after the first".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure_eq(
        old_rows(&ctx, &home, pg).await?,
        0,
        "the second pass removed the rest",
    )?;
    let home = brain.stop_keep_home().await;
    let (code, out) = verify(&ctx, &home, &now)?;
    ensure_eq(code, 0, &format!("the pruned chain still verifies: {out}"))
}

/// The project's audit listing (filters, cursor) and its export capped by
/// `Z4J_TASKS_EXPORT_MAX_ROWS` (422 naming the cap beyond it).
pub async fn listing_and_export(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_TASKS_EXPORT_MAX_ROWS", "100"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    for i in 0..100 {
        op.mint(&brain, &format!("a-{i}")).await?;
    }
    let revoked = op.mint(&brain, "short-lived").await?;
    ensure_eq(op.revoke(&brain, &revoked.agent_id).await?, 204, "revoke")?;
    let base = "/api/v1/projects/default/audit";
    let (status, page) = op.get(&brain, &format!("{base}?limit=50")).await?;
    ensure_eq(status, 200, &format!("listing: {page}"))?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    ensure_eq(items.len(), 50, "a full page")?;
    // Action names are the implementation's; the newest row is the revoke,
    // the one before it the last mint.
    let revoke_action = items[0]["action"].as_str().unwrap_or_default().to_owned();
    let mint_action = items[1]["action"].as_str().unwrap_or_default().to_owned();
    ensure(
        revoke_action.contains("revoke") && mint_action != revoke_action,
        format!("newest first: the revoke, then the mint ({revoke_action:?}, {mint_action:?})"),
    )?;
    let cursor = page["next_cursor"]
        .as_str()
        .ok_or("a full page has a cursor")?
        .to_owned();
    let (_, next) = op
        .get(&brain, &format!("{base}?limit=50&cursor={cursor}"))
        .await?;
    let ids = |p: &serde_json::Value| -> Vec<String> {
        p["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["id"].to_string())
            .collect()
    };
    let (first_ids, next_ids) = (ids(&page), ids(&next));
    ensure(
        next_ids.len() == 50 && next_ids.iter().all(|i| !first_ids.contains(i)),
        "the cursor advances to 50 older rows",
    )?;
    let (_, mints) = op
        .get(
            &brain,
            &format!("{base}?action_prefix={mint_action}&limit=500"),
        )
        .await?;
    ensure_eq(
        mints["items"].as_array().map(Vec::len),
        Some(101),
        "action_prefix filter",
    )?;
    let (status, body) = op.get(&brain, &format!("{base}?format=json")).await?;
    ensure(
        status == 422
            && body["details"]["cap"] == 100
            && body["message"]
                .as_str()
                .is_some_and(|m| m.contains("Z4J_TASKS_EXPORT_MAX_ROWS")),
        format!("export over the cap: {status} {body}"),
    )?;
    let (status, body) = op
        .get(
            &brain,
            &format!("{base}?format=json&action_prefix={revoke_action}"),
        )
        .await?;
    ensure(
        status == 200 && body.as_array().is_some_and(|a| a.len() == 1),
        format!("narrowed export: {status} {body}"),
    )?;
    let (_, latest) = op.get(&brain, &format!("{base}?limit=1")).await?;
    ensure(
        latest["items"][0]["action"]
            .as_str()
            .is_some_and(|a| a.contains("export")),
        format!("the served export is audited: newest row {latest}"),
    )
}

/// An audited action and its row commit together: once the chain's signed
/// state is altered (no row can be appended), a mint, a user creation and
/// a login are refused with 503 `audit_chain_broken` and none of them is
/// stored; a read still works. `z4j audit reseal --confirm` recovers.
pub async fn atomic(ctx: Arc<Ctx>) -> R {
    let (mut env, pg) = ctx.pinned_admin_env(&[]).await?;
    env.push(("Z4J_LOGIN_MIN_DURATION_MS".into(), "0".into()));
    // A fixed secret, so the CLI and a restarted brain sign alike.
    let cli_env = with_secret(&env, OLD, None);
    let pg = pg.as_deref();
    let brain = ctx.start_env(cli_env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let count = |table: &'static str, filter: String| {
        let (ctx, home) = (ctx.clone(), brain.home.clone());
        async move {
            super::grey::connect(&ctx, &home, pg)
                .await?
                .i64(&format!("SELECT count(*) FROM {table} WHERE {filter}"))
                .await
        }
    };
    let rows_before = count("audit_log", "1 = 1".into()).await?;
    super::grey::connect(&ctx, &brain.home, pg)
        .await?
        .exec("UPDATE audit_chain_state SET row_count = row_count + 7")
        .await?;
    let refused = |what: &str, (status, body): (u16, serde_json::Value)| {
        ensure(
            status == 503 && body["error"] == "audit_chain_broken",
            format!("{what} with an unverifiable chain: want 503 audit_chain_broken, got {status} {body}"),
        )
    };
    let post = reqwest::Method::POST;
    refused(
        "agent mint",
        op.send(
            &brain,
            post.clone(),
            "/api/v1/projects/default/agents",
            Some(json!({"name": "unaudited"})),
        )
        .await?,
    )?;
    ensure_eq(
        count("agents", "name = 'unaudited'".into()).await?,
        0,
        "agents stored by the refused mint",
    )?;
    refused(
        "user creation",
        op.send(
            &brain,
            post.clone(),
            "/api/v1/users",
            Some(json!({"email": "ghost@example.com", "password": "a-long-enough-passphrase-41"})),
        )
        .await?,
    )?;
    ensure_eq(
        count("users", "email = 'ghost@example.com'".into()).await?,
        0,
        "users stored by the refused creation",
    )?;
    let sessions_before = count("sessions", "1 = 1".into()).await?;
    let resp = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": agent::ADMIN_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let has_cookie = resp.headers().get("set-cookie").is_some();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    refused("login", (status, body))?;
    ensure(!has_cookie, "a refused login must not set cookies")?;
    ensure_eq(
        count("sessions", "1 = 1".into()).await?,
        sessions_before,
        "sessions stored by the refused login",
    )?;
    ensure_eq(
        count("audit_log", "1 = 1".into()).await?,
        rows_before,
        "audit rows written meanwhile",
    )?;
    let (status, _) = op.get(&brain, "/api/v1/projects/default").await?;
    ensure_eq(status, 200, "a read is not audited and still works")?;

    // Recovery: `z4j audit reseal --confirm` re-signs the state over the
    // rows as they are (recorded as a row itself); writes work again.
    let home = brain.stop_keep_home().await;
    let out = run_cli(&ctx.target, &home.path, &cli_env, &["audit", "reseal"])?;
    ensure_eq(out.code, 2, "reseal without --confirm")?;
    let out = run_cli(
        &ctx.target,
        &home.path,
        &cli_env,
        &["audit", "reseal", "--confirm"],
    )?;
    ensure_eq(
        out.code,
        0,
        &format!("reseal --confirm: {}{}", out.stdout, out.stderr),
    )?;
    let (code, out) = verify(&ctx, &home, &cli_env)?;
    ensure_eq(code, 0, &format!("verify after the reseal: {out}"))?;
    let brain = ctx.start_env(cli_env.clone(), Some(home)).await?;
    let op = agent::login(&brain).await?;
    let (status, body) = op
        .send(
            &brain,
            post,
            "/api/v1/projects/default/agents",
            Some(json!({"name": "audited-again"})),
        )
        .await?;
    ensure_eq(status, 201, &format!("a mint after the reseal: {body}"))?;
    let home = brain.stop_keep_home().await;
    let resealed = sql_i64(
        &ctx,
        &home,
        pg,
        "SELECT count(*) FROM audit_log WHERE action = 'audit.resealed'",
    )
    .await?;
    ensure_eq(resealed, 1, "the reseal is itself recorded")?;
    let (code, out) = verify(&ctx, &home, &cli_env)?;
    ensure_eq(code, 0, &format!("verify after more rows: {out}"))
}

/// Audit rows between `from_days` and `to_days` days old (grey box).
async fn rows_aged(
    ctx: &Ctx,
    home: &Home,
    pg: Option<&str>,
    from_days: f64,
    to_days: f64,
) -> Result<i64, String> {
    let at = |d: f64| {
        (chrono::Utc::now() - chrono::Duration::seconds((d * 86_400.0) as i64))
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
    };
    let suffix = if pg.is_some() { "+00" } else { "" };
    sql_i64(
        ctx,
        home,
        pg,
        &format!(
            "SELECT count(*) FROM audit_log WHERE occurred_at <= '{}{suffix}' AND occurred_at > '{}{suffix}'",
            at(from_days),
            at(to_days)
        ),
    )
    .await
}

/// `Z4J_AUDIT_RETENTION_DAYS` unset: rows written 90 days and an hour ago
/// are pruned by the boot pass, rows 89 days and 23 hours old stay.
pub async fn retention_default(ctx: Arc<Ctx>) -> R {
    let (mut env, pg) = ctx.pinned_admin_env(&[]).await?;
    env.extend(owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]));
    let pg = pg.as_deref();
    let mut home: Option<Home> = None;
    for (offset, name) in [
        (-(90 * 86_400 + 3_600), "older"),
        (-(90 * 86_400 - 3_600), "younger"),
    ] {
        let mut e = env.clone();
        e.push((
            "Z4J_TESTING_CLOCK_OFFSET_SECONDS".into(),
            offset.to_string(),
        ));
        let brain = ctx.start_env(e, home.take()).await?;
        let op = agent::login(&brain).await?;
        for i in 0..3 {
            op.mint(&brain, &format!("{name}-{i}")).await?;
        }
        home = Some(brain.stop_keep_home().await);
    }
    let home = home.ok_or("no home")?;
    let older = rows_aged(&ctx, &home, pg, 90.0, 91.0).await?;
    let younger = rows_aged(&ctx, &home, pg, 89.0, 90.0).await?;
    ensure(
        older > 0 && younger > 0,
        format!("rows written in the past: {older} over 90 days, {younger} just under"),
    )?;
    let _brain = ctx.start_env(env, Some(home.clone())).await?;
    let deadline = Instant::now() + ctx.scaled(15.0);
    loop {
        let left = rows_aged(&ctx, &home, pg, 90.0, 91.0).await?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{left} of {older} rows over 90 days old remain 15 s after boot"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let kept = rows_aged(&ctx, &home, pg, 89.0, 90.0).await?;
    ensure_eq(kept, younger, "rows just under 90 days old kept")
}

/// `Z4J_TASKS_EXPORT_MAX_ROWS` unset: an export of exactly 50 000 rows is
/// served whole, one more row makes it a 422 naming the cap. The rows are
/// copies of a real one, written in the brain's schema (grey box).
pub async fn export_cap_default(ctx: Arc<Ctx>) -> R {
    let (env, pg) = ctx.pinned_admin_env(&[]).await?;
    let brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    op.mint(&brain, "seed").await?;
    let home = Home::at(brain.home.clone());
    let pg = pg.as_deref();
    let in_project = "SELECT count(*) FROM audit_log WHERE project_id = \
                      (SELECT id FROM projects WHERE slug = 'default')";
    let have = sql_i64(&ctx, &home, pg, in_project).await?;
    let add = 50_000 - have;
    let cols = "occurred_at, project_id, user_id, action, target_type, target_id, result, \
                outcome, source_ip, metadata, prev_row_hmac, row_hmac, user_agent, hmac_key_id";
    // Copies carry no chain links (unique, and nothing here verifies them).
    let copied = "occurred_at, project_id, user_id, action, target_type, target_id, result, \
                  outcome, source_ip, metadata, NULL, NULL, user_agent, hmac_key_id";
    let one = format!(
        "(SELECT {copied} FROM audit_log WHERE project_id = (SELECT id FROM projects WHERE slug = 'default') \
         ORDER BY id DESC LIMIT 1)"
    );
    let stmt = if pg.is_some() {
        format!("INSERT INTO audit_log ({cols}) SELECT a.* FROM generate_series(1, {add}), {one} a")
    } else {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {add}) \
             INSERT INTO audit_log ({cols}) SELECT a.* FROM n, {one} a"
        )
    };
    sql_exec(&ctx, &home, pg, &stmt).await?;
    ensure_eq(
        sql_i64(&ctx, &home, pg, in_project).await?,
        50_000,
        "audit rows of the project",
    )?;
    let export = || async {
        let r = client()
            .get(brain.url("/api/v1/projects/default/audit?format=json"))
            .header("cookie", &op.cookie)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        Ok::<_, String>((status, body))
    };
    let (status, body) = export().await?;
    ensure_eq(
        (status, body.as_array().map(Vec::len)),
        (200, Some(50_000)),
        "an export of exactly 50 000 rows",
    )?;
    // That export is itself audited: 50 001 rows now match.
    let (status, body) = export().await?;
    ensure_eq(
        (status, body["details"]["cap"].as_i64()),
        (422, Some(50_000)),
        &format!(
            "an export of 50 001 rows: {}",
            body.to_string().chars().take(300).collect::<String>()
        ),
    )
}

/// Audit rows written 90 days ago or earlier by the real clock (the
/// campaign's brains run on shifted ones).
async fn expired(ctx: &Ctx, home: &Home, pg: Option<&str>) -> Result<i64, String> {
    rows_aged(ctx, home, pg, 90.0, 100_000.0).await
}

/// Campaign (about 70 minutes; `--case campaign.audit-sweep-defaults`):
/// the audit retention sweep at its defaults, 200 000 rows a pass and a
/// pass every 3 600 s, both unset. A brain whose clock runs 90 days and
/// three hours behind writes audit rows (profile edits) until the database
/// holds 200 001; one whose clock runs 90 days less ten minutes behind
/// writes a few more. A brain with the defaults then boots: its first pass
/// deletes exactly 200 000 of the expired rows, oldest first (one is left);
/// the newer rows expire ten minutes later, yet they and the leftover stay
/// until 0.9 × 3 600 s after boot, and all are gone by 1.1 × 3 600 s.
pub async fn sweep_defaults_campaign(ctx: Arc<Ctx>) -> R {
    const CAP: i64 = 200_000;
    let (mut env, pg) = ctx.pinned_admin_env(&[]).await?;
    env.extend(owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]));
    let pg = pg.as_deref();
    let at_offset = |secs: i64| {
        let mut e = env.clone();
        e.push(("Z4J_TESTING_CLOCK_OFFSET_SECONDS".into(), secs.to_string()));
        e
    };
    let all = "SELECT count(*) FROM audit_log";

    let old = ctx
        .start_env(at_offset(-(90 * 86_400 + 3 * 3_600)), None)
        .await?;
    let op = Arc::new(agent::login(&old).await?);
    let home = Home::at(old.home.clone());
    let missing = CAP + 1 - sql_i64(&ctx, &home, pg, all).await?;
    let url = Arc::new(agent::Target::from_url(&old.url(""))?);
    let next = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (op, next, url) = (op.clone(), next.clone(), url.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= missing {
                    return Ok::<(), String>(());
                }
                let body = json!({"display_name": format!("campaign {i}")});
                let (st, b) = op
                    .send(&*url, reqwest::Method::PATCH, "/api/v1/auth/me", Some(body))
                    .await?;
                if st != 200 {
                    return Err(format!("profile edit {i}: {st} {b}"));
                }
            }
        }));
    }
    for w in writers {
        w.await.map_err(|e| e.to_string())??;
    }
    let home = old.stop_keep_home().await;
    // Its workers may have written a row or two more than counted.
    let written = expired(&ctx, &home, pg).await?;
    ensure(
        (CAP + 1..=CAP + 10).contains(&written),
        format!("{written} expired rows written by the brain 90 days and 3 hours behind, want 200 001 or a few more"),
    )?;

    let newer = ctx
        .start_env(at_offset(-(90 * 86_400 - 600)), Some(home))
        .await?;
    let op = agent::login(&newer).await?;
    for i in 0..2 {
        let body = json!({"display_name": format!("newer {i}")});
        op.send(
            &newer,
            reqwest::Method::PATCH,
            "/api/v1/auth/me",
            Some(body),
        )
        .await?;
    }
    let home = newer.stop_keep_home().await;
    let young = sql_i64(&ctx, &home, pg, all).await? - written;
    ensure(
        young >= 3,
        format!("{young} rows written 10 minutes short of 90 days"),
    )?;

    let brain = ctx.start_env(env.clone(), Some(home.clone())).await?;
    let booted = Instant::now();
    // The boot pass: wait until the expired count stops moving.
    let (mut last, mut still_since) = (-1, Instant::now());
    let left = loop {
        let n = expired(&ctx, &home, pg).await?;
        if n != last {
            (last, still_since) = (n, Instant::now());
        } else if still_since.elapsed() > Duration::from_secs(15)
            && (n < written || booted.elapsed() > ctx.scaled(60.0))
        {
            break n;
        }
        if booted.elapsed() > ctx.scaled(600.0) {
            return Err(format!(
                "the boot pass was still deleting after 600 s ({n} left)"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    ensure_eq(
        left,
        written - CAP,
        &format!("expired rows left by the boot pass over {written} (a pass deletes 200 000)"),
    )?;
    // The next pass: not before 0.9 × 3 600 s, done by 1.1 × 3 600 s.
    let (lower, upper) = (3_240.0, ctx.scaled(3_960.0).as_secs_f64());
    // Watched all along, so a pass that comes early fails at once.
    // Counted as rows over 89 days old: the ten-minute rows are in it
    // before they expire too.
    while booted.elapsed().as_secs_f64() < lower {
        let waiting = rows_aged(&ctx, &home, pg, 89.0, 100_000.0).await?;
        if waiting < written - CAP + young {
            return Err(format!(
                "a second pass deleted expired rows {:.0} s after boot ({waiting} left of {}), before 0.9 × 3 600 s",
                booted.elapsed().as_secs_f64(),
                written - CAP + young
            ));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    loop {
        let n = expired(&ctx, &home, pg).await?;
        if n == 0 {
            break;
        }
        if booted.elapsed().as_secs_f64() > upper {
            return Err(format!(
                "{n} expired rows still there {upper} s after boot: no second pass"
            ));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    drop(brain);
    Ok(())
}

/// `/metrics` as text, with the metrics cases' token.
async fn metrics_text(brain: &crate::brain::Brain) -> Result<String, String> {
    let auth = format!("Bearer {}", super::metrics::TOKEN);
    let (status, _, text) = super::metrics::scrape(brain, Some(&auth)).await?;
    ensure_eq(status, 200, "scrape /metrics")?;
    Ok(text)
}

/// Verifications counted after a few more seconds of running.
async fn settled_count(ctx: &Ctx, brain: &crate::brain::Brain) -> Result<f64, String> {
    tokio::time::sleep(ctx.scaled(3.0)).await;
    let text = metrics_text(brain).await?;
    Ok(super::metrics::sum(
        &text,
        "z4j_audit_chain_verifications_total",
    ))
}

/// Polls `/metrics` until `outcome` has been counted once (10 s at most);
/// returns the scrape.
async fn verified(ctx: &Ctx, brain: &crate::brain::Brain, outcome: &str) -> Result<String, String> {
    let line = format!("z4j_audit_chain_verifications_total{{outcome=\"{outcome}\"}}");
    let started = Instant::now();
    loop {
        let text = metrics_text(brain).await?;
        if super::metrics::value(&text, &line).is_some_and(|n| n >= 1.0) {
            return Ok(text);
        }
        if started.elapsed() > ctx.scaled(10.0) {
            let seen: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("z4j_audit_chain"))
                .collect();
            return Err(format!(
                "no {outcome} chain verification counted within 10 s of start: {seen:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The scheduled chain verification (reference variables
/// `Z4J_AUDIT_CHAIN_VERIFY_ENABLED`, `..._INTERVAL_SECONDS`): off by
/// default; on, it walks the chain at start and counts the outcome; the
/// interval is 900..=604 800 s; a tampered row is counted as failed while
/// the brain keeps serving, and (with the HTML dashboard) the system page
/// says so, naming the row.
pub async fn chain_verifier(ctx: Arc<Ctx>) -> R {
    let (mut base, pg) = ctx
        .pinned_admin_env(&[("Z4J_METRICS_AUTH_TOKEN", super::metrics::TOKEN)])
        .await?;
    base.push(("Z4J_LOGIN_MIN_DURATION_MS".into(), "0".into()));
    let pg = pg.as_deref();

    // Off by default: rows are written, nothing walks them.
    let brain = ctx.start_env(base.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let (status, feed) = op.get(&brain, "/api/v1/activity?limit=200").await?;
    ensure_eq(status, 200, "the admin's activity feed")?;
    let written = feed["items"].as_array().map_or(0, Vec::len) as f64;
    ensure_eq(
        settled_count(&ctx, &brain).await?,
        0.0,
        "chain verifications counted with Z4J_AUDIT_CHAIN_VERIFY_ENABLED unset",
    )?;
    let home = brain.stop_keep_home().await;

    // The interval's bounds.
    for bad in ["899", "604801"] {
        let (code, err, _) = super::expect_refusal(
            &ctx,
            &[
                ("Z4J_AUDIT_CHAIN_VERIFY_ENABLED", "true"),
                ("Z4J_AUDIT_CHAIN_VERIFY_INTERVAL_SECONDS", bad),
            ],
        )
        .await?;
        ensure(
            code != 0
                && (err.contains("Z4J_AUDIT_CHAIN_VERIFY_INTERVAL_SECONDS")
                    || err.contains("audit_chain_verify_interval_seconds")),
            format!("interval {bad} must be refused naming the variable: exit {code} {err}"),
        )?;
    }
    let on = |interval: &str| {
        let mut env = base.clone();
        env.extend(owned(&[
            ("Z4J_AUDIT_CHAIN_VERIFY_ENABLED", "true"),
            ("Z4J_AUDIT_CHAIN_VERIFY_INTERVAL_SECONDS", interval),
        ]));
        env
    };
    let edge = ctx.start_env(on("604800"), None).await?;
    verified(&ctx, &edge, "clean").await?;
    drop(edge);

    // On: one clean walk at start over every row, none again before the interval.
    let brain = ctx.start_env(on("900"), Some(home)).await?;
    let text = verified(&ctx, &brain, "clean").await?;
    let walked = super::metrics::value(&text, "z4j_audit_chain_rows_verified").unwrap_or(-1.0);
    ensure(
        written >= 1.0 && walked == written,
        format!("rows walked by the first verification: {walked}, want the {written} rows written before"),
    )?;
    ensure_eq(
        settled_count(&ctx, &brain).await?,
        1.0,
        "verifications within seconds of start at a 900 s interval",
    )?;
    if ctx.target.has("html_dashboard") {
        // The interval unset: the documented day, as the system page says
        // (after the row count above: on PostgreSQL the brains share rows).
        let mut env = base.clone();
        env.extend(owned(&[("Z4J_AUDIT_CHAIN_VERIFY_ENABLED", "true")]));
        let daily = ctx.start_env(env, None).await?;
        verified(&ctx, &daily, "clean").await?;
        let op = agent::login(&daily).await?;
        let (status, _, html) = super::dashboard::page(&daily, Some(&op.cookie), "/system").await?;
        ensure(
            status == 200 && html.contains("Next walk within 86400 s"),
            format!("the system page with the interval unset: {status}"),
        )?;
        let (status, _, html) =
            super::dashboard::page(&daily, Some(&op.cookie), "/projects/default/audit").await?;
        ensure(
            status == 200 && html.contains("rows, intact. Next walk within 86400 s"),
            format!("the audit page shows the clean walk: {status}"),
        )?;
    }
    if !ctx.target.has("schema_z4j_rs") {
        return Ok(());
    }
    let home = brain.stop_keep_home().await;

    // A tampered row: counted as failed, the brain still serves.
    let first = sql_i64(&ctx, &home, pg, "SELECT min(id) FROM audit_log").await?;
    tamper(&ctx, &home, pg, first).await?;
    let brain = ctx.start_env(on("900"), Some(home)).await?;
    verified(&ctx, &brain, "failed").await?;
    let op = agent::login(&brain).await?;
    let (status, _) = op.get(&brain, "/api/v1/projects").await?;
    ensure_eq(status, 200, "the brain serves with a broken chain")?;
    if ctx.target.has("html_dashboard") {
        let (status, _, html) = super::dashboard::page(&brain, Some(&op.cookie), "/system").await?;
        ensure(
            status == 200
                && html.contains("did not verify")
                && html.contains(&format!("row {first}")),
            format!("the system page names the broken row {first}: {status}"),
        )?;
        let (status, _, html) =
            super::dashboard::page(&brain, Some(&op.cookie), "/projects/default/audit").await?;
        ensure(
            status == 200
                && html.contains("did not verify")
                && html.contains(&format!("row {first}")),
            format!("the audit page warns of the broken row {first}: {status}"),
        )?;
    }
    Ok(())
}
