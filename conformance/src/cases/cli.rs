//! The `z4j` command line (targets that claim `cli_commands`).

use super::{ensure, ensure_eq, secret_env_value, R};
use crate::agent::login_as;
use crate::brain::{run_cli, run_cli_input};
use crate::runner::Ctx;
use std::sync::Arc;

pub async fn version(ctx: Arc<Ctx>) -> R {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = run_cli(&ctx.target, home.path(), &[], &["--version"])?;
    ensure_eq(out.code, 0, "`z4j --version` exit status")?;
    ensure(
        out.stdout.contains("1.13.0"),
        format!("`z4j --version` printed {:?}", out.stdout),
    )
}

/// `allowed-hosts add` validates before writing; list/remove round-trip.
pub async fn allowed_hosts(ctx: Arc<Ctx>) -> R {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cli = |args: &[&str]| run_cli(&ctx.target, home.path(), &[], args);
    let bad = cli(&["allowed-hosts", "add", "z4j.example.com", "bad host/x"])?;
    ensure(bad.code != 0, "a malformed host was accepted")?;
    ensure(
        bad.stderr.contains("bad host/x"),
        format!("the refusal does not name the host: {}", bad.stderr),
    )?;
    ensure_eq(
        cli(&["allowed-hosts", "list"])?.stdout.trim().to_owned(),
        String::new(),
        "list after a refused add (nothing half-written)",
    )?;
    ensure_eq(
        cli(&[
            "allowed-hosts",
            "add",
            "Z4J.example.com",
            "*.ops.example.com",
        ])?
        .code,
        0,
        "add",
    )?;
    let listed = cli(&["allowed-hosts", "list"])?.stdout;
    ensure(
        listed.lines().any(|l| l == "z4j.example.com"),
        format!("list: {listed}"),
    )?;
    ensure(
        listed.lines().any(|l| l == "*.ops.example.com"),
        format!("list: {listed}"),
    )?;
    ensure_eq(
        cli(&["allowed-hosts", "remove", "z4j.example.com"])?.code,
        0,
        "remove",
    )?;
    let listed = cli(&["allowed-hosts", "list"])?.stdout;
    ensure(
        !listed.contains("z4j.example.com\n") && listed.contains("*.ops.example.com"),
        format!("list after remove: {listed}"),
    )
}

/// `metrics-token --rotate` writes a new token that `metrics-token` prints.
pub async fn metrics_token_rotate(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let before = secret_env_value(&b, "Z4J_METRICS_AUTH_TOKEN").ok_or("no token minted")?;
    let home = b.stop_keep_home().await;
    let rotated = run_cli(&ctx.target, &home.path, &[], &["metrics-token", "--rotate"])?;
    ensure_eq(rotated.code, 0, "`z4j metrics-token --rotate` exit status")?;
    let new = rotated.stdout.trim().to_owned();
    ensure(
        new != before && new.len() >= 32,
        "rotation did not produce a new token",
    )?;
    let shown = run_cli(&ctx.target, &home.path, &[], &["metrics-token"])?;
    ensure_eq(
        shown.stdout.trim(),
        new.as_str(),
        "`z4j metrics-token` after rotation",
    )?;
    // A token set in the environment is not the CLI's to rotate.
    let env = [(
        "Z4J_METRICS_AUTH_TOKEN".to_owned(),
        "operator-set-token-0123456789abcdef".to_owned(),
    )];
    let refused = run_cli(
        &ctx.target,
        &home.path,
        &env,
        &["metrics-token", "--rotate"],
    )?;
    ensure(
        refused.code != 0,
        "rotated a token that the environment sets",
    )
}

/// Audit rows of `action` written from the command line (grey box: the
/// z4j-rs schema; other targets are not asked).
pub(super) async fn cli_audit_rows(
    ctx: &Ctx,
    home: &std::path::Path,
    pg: Option<&str>,
    action: &str,
) -> Result<Option<i64>, String> {
    if !ctx.target.has("schema_z4j_rs") {
        return Ok(None);
    }
    let mut c = super::grey::connect(ctx, home, pg).await?;
    c.i64(&format!(
        "SELECT count(*) FROM audit_log WHERE action = '{action}' \
         AND (CAST(metadata AS TEXT) LIKE '%\"via\":\"cli\"%' OR CAST(metadata AS TEXT) LIKE '%\"via\": \"cli\"%')"
    ))
    .await
    .map(Some)
}

/// Account recovery from the shell, against a running brain:
/// `createsuperuser` makes a global admin (a duplicate or a weak password
/// is refused, naming it), `changepassword` ends the user's sessions and
/// lifts a login lock, `reset-setup` is refused once users exist, and
/// every change is audited with the chain still intact.
pub async fn account_recovery(ctx: Arc<Ctx>) -> R {
    let (env, pg) = ctx
        .pinned_admin_env(&[
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
            ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0"),
            ("Z4J_LOGIN_LOCKOUT_THRESHOLD", "3"),
        ])
        .await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let cli = |args: &[&str], input: Option<&str>| {
        run_cli_input(&ctx.target, &brain.home, &env, args, input)
    };
    const OPS: &str = "ops2@example.com";
    let made = cli(
        &[
            "createsuperuser",
            "--email",
            "Ops2@Example.com",
            "--password-stdin",
        ],
        Some("Recovery-pass-42\n"),
    )?;
    ensure_eq(made.code, 0, &format!("createsuperuser: {}", made.stderr))?;
    let ops = login_as(&brain, OPS, "Recovery-pass-42").await?;
    let (status, me) = ops.get(&brain, "/api/v1/auth/me").await?;
    ensure_eq(
        (status, me["email"].as_str(), me["is_admin"].as_bool()),
        (200, Some(OPS), Some(true)),
        &format!("the new admin signs in: {me}"),
    )?;
    let again = cli(
        &[
            "createsuperuser",
            "--email",
            OPS,
            "--password",
            "Another-pass-44",
        ],
        None,
    )?;
    ensure(
        again.code != 0 && again.stderr.contains(OPS),
        format!(
            "a second createsuperuser for {OPS}: exit {} {}",
            again.code, again.stderr
        ),
    )?;
    let weak = cli(
        &[
            "createsuperuser",
            "--email",
            "weak@example.com",
            "--password",
            "short",
        ],
        None,
    )?;
    ensure(
        weak.code != 0 && weak.stderr.to_lowercase().contains("password"),
        format!("a weak password: exit {} {}", weak.code, weak.stderr),
    )?;
    ensure(
        login_as(&brain, "weak@example.com", "short").await.is_err(),
        "the refused user exists",
    )?;
    // Lock the account: three failures, then the right password is refused.
    for _ in 0..3 {
        let _ = login_as(&brain, OPS, "wrong-password-1").await;
    }
    ensure(
        login_as(&brain, OPS, "Recovery-pass-42").await.is_err(),
        "the account is not locked after three failures (Z4J_LOGIN_LOCKOUT_THRESHOLD=3)",
    )?;
    let changed = cli(
        &["changepassword", OPS, "--password-stdin"],
        Some("Changed-pass-43\n"),
    )?;
    ensure_eq(
        changed.code,
        0,
        &format!("changepassword: {}", changed.stderr),
    )?;
    ensure_eq(
        ops.get(&brain, "/api/v1/auth/me").await?.0,
        401,
        "the user's session after changepassword",
    )?;
    ensure(
        login_as(&brain, OPS, "Recovery-pass-42").await.is_err(),
        "the old password still signs in",
    )?;
    login_as(&brain, OPS, "Changed-pass-43")
        .await
        .map_err(|e| format!("the new password on the locked account: {e}"))?;
    let unknown = cli(
        &[
            "changepassword",
            "nobody@example.com",
            "--password",
            "Whatever-pass-1",
        ],
        None,
    )?;
    ensure(
        unknown.code != 0 && unknown.stderr.contains("nobody@example.com"),
        format!(
            "changepassword for an unknown user: exit {} {}",
            unknown.code, unknown.stderr
        ),
    )?;
    let reset = cli(&["reset-setup", "--force"], None)?;
    ensure(
        reset.code != 0,
        format!(
            "reset-setup with users: exit {} {}",
            reset.code, reset.stdout
        ),
    )?;
    for action in ["user.created", "user.password.changed_by_cli"] {
        if let Some(n) = cli_audit_rows(&ctx, &brain.home, pg.as_deref(), action).await? {
            ensure_eq(
                n,
                1,
                &format!("{action} audit rows written from the command line"),
            )?;
        }
    }
    let verify = cli(&["audit", "verify"], None)?;
    ensure_eq(
        verify.code,
        0,
        &format!("audit verify: {}{}", verify.stdout, verify.stderr),
    )
}

/// `z4j backup` while an agent streams, then `z4j restore`: refused while
/// the brain serves the database, then the database is what the backup
/// held: every event acknowledged before the backup began is there, none
/// sent after it is, each batch whole; the audit chain verifies and the
/// restore is audited.
pub async fn backup_restore(ctx: Arc<Ctx>) -> R {
    use crate::agent::{self, task_event};
    use serde_json::json;
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(15);
    let (env, pg) = ctx.pinned_admin_env(&[]).await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "backed-up").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    // One batch (one transaction) per task: both events, acknowledged.
    async fn send(s: &mut agent::Session, id: String) -> R {
        let batch = [
            task_event(&id, "task.received", json!({"task_name": "jobs.keep"})),
            task_event(&id, "task.succeeded", json!({"result": 1})),
        ];
        s.send_events(&format!("b-{id}"), &batch).await?;
        s.expect_ack(&format!("b-{id}"), WAIT).await.map(|_| ())
    }
    for i in 0..40 {
        send(&mut s, format!("pre-{i}")).await?;
    }
    let file = brain.home.join("z4j-backup.file");
    let (target, home_dir, cli_env) = (ctx.target.clone(), brain.home.clone(), env.clone());
    let file_arg = file.display().to_string();
    let backup = tokio::task::spawn_blocking(move || {
        run_cli(
            &target,
            &home_dir,
            &cli_env,
            &["backup", "--output", &file_arg],
        )
    });
    // At least a few batches race the backup, however quick it is.
    let mut during = 0;
    while during < 5 || (!backup.is_finished() && during < 2000) {
        send(&mut s, format!("during-{during}")).await?;
        during += 1;
    }
    let out = backup.await.map_err(|e| e.to_string())??;
    ensure_eq(out.code, 0, &format!("backup under ingest: {}", out.stderr))?;
    for i in 0..10 {
        send(&mut s, format!("post-{i}")).await?;
    }
    drop(s);
    let cli = |home: &std::path::Path, args: &[&str]| run_cli(&ctx.target, home, &env, args);
    let file_arg = file.display().to_string();
    let live = cli(&brain.home, &["restore", &file_arg, "--force"])?;
    ensure(
        live.code != 0,
        format!(
            "restore while the brain serves the database: exit 0 {}",
            live.stdout
        ),
    )?;
    let home = brain.stop_keep_home().await;
    let done = cli(&home.path, &["restore", &file_arg, "--force"])?;
    ensure_eq(done.code, 0, &format!("restore: {}", done.stderr))?;
    let verify = cli(&home.path, &["audit", "verify"])?;
    ensure_eq(
        verify.code,
        0,
        &format!("audit verify after restore: {}", verify.stderr),
    )?;
    let home_path = home.path.clone();
    let brain = ctx.start_env(env.clone(), Some(home)).await?;
    let op = agent::login(&brain).await?;
    let events = |id: String| {
        let (op, brain) = (&op, &brain);
        async move {
            let (_, e) = op
                .get(
                    brain,
                    &format!("/api/v1/projects/default/events?engine=rq&task_id={id}"),
                )
                .await?;
            Ok::<_, String>(e["items"].as_array().map_or(0, Vec::len))
        }
    };
    for i in 0..40 {
        ensure_eq(
            events(format!("pre-{i}")).await?,
            2,
            &format!("events of pre-{i}"),
        )?;
    }
    for i in 0..during {
        let n = events(format!("during-{i}")).await?;
        ensure(
            n == 0 || n == 2,
            format!("during-{i}: {n} of its batch's 2 events"),
        )?;
    }
    for i in 0..10 {
        ensure_eq(
            events(format!("post-{i}")).await?,
            0,
            &format!("events of post-{i} (sent after the backup)"),
        )?;
    }
    if let Some(n) = cli_audit_rows(&ctx, &home_path, pg.as_deref(), "system.restore").await? {
        ensure_eq(n, 1, "system.restore audit rows")?;
    }
    Ok(())
}
