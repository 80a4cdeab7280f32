//! Metrics-token minting on first boot.

use super::{ensure, ensure_eq, file_mode, R};
use crate::runner::Ctx;
use std::sync::Arc;

fn token_of(b: &crate::brain::Brain) -> Option<String> {
    super::secret_env_value(b, "Z4J_METRICS_AUTH_TOKEN")
}

/// Absent and not public: `serve` mints one into secret.env (0600).
pub async fn minted_by_default(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let token = token_of(&b)
        .ok_or_else(|| format!("no Z4J_METRICS_AUTH_TOKEN in secret.env\n{}", b.output()))?;
    ensure(
        token.len() >= 32,
        format!("a {}-character token is too short", token.len()),
    )?;
    ensure(
        token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "the token is not URL-safe",
    )?;
    ensure_eq(
        file_mode(&b.z4j_home().join("secret.env")),
        Some(0o600),
        "secret.env mode",
    )?;
    // It is the token /metrics asks for: not public by default.
    let scrape = |auth: Option<String>| {
        let url = b.url("/metrics");
        async move {
            let mut req = super::client().get(url);
            if let Some(t) = auth {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            req.send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| format!("GET /metrics: {e}"))
        }
    };
    ensure_eq(
        scrape(None).await?,
        401,
        "/metrics without a token (not public by default)",
    )?;
    ensure_eq(
        scrape(Some(token.clone())).await?,
        200,
        "/metrics with the minted token",
    )?;
    // A restart keeps it.
    let b = super::restart(&ctx, b).await?;
    ensure_eq(token_of(&b), Some(token), "token after a restart")
}

pub async fn cli_prints_token(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let token = token_of(&b).ok_or("no token minted")?;
    let out = crate::brain::run_cli(&ctx.target, &b.home, &[], &["metrics-token"])?;
    ensure_eq(out.code, 0, "`z4j metrics-token` exit status")?;
    ensure_eq(
        out.stdout.trim(),
        token.as_str(),
        "`z4j metrics-token` output",
    )
}

/// With Z4J_METRICS_PUBLIC nothing is minted (as documented).
pub async fn public_not_minted(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[("Z4J_METRICS_PUBLIC", "1")]).await?;
    ensure(
        token_of(&b).is_none(),
        "a metrics token was minted although Z4J_METRICS_PUBLIC=1",
    )
}

/// A token given in the environment is used, not replaced by a minted one.
pub async fn configured_not_minted(ctx: Arc<Ctx>) -> R {
    let b = ctx
        .start(&[(
            "Z4J_METRICS_AUTH_TOKEN",
            "operator-chosen-metrics-token-0123456789",
        )])
        .await?;
    ensure(
        token_of(&b).is_none(),
        "a token was minted although one is configured",
    )
}
