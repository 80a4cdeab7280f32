//! The `z4j` command line (targets that claim `cli_commands`).

use super::{ensure, ensure_eq, secret_env_value, R};
use crate::brain::run_cli;
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
