//! `/metrics` (http-api 6.10): bearer token, public mode, disabled route,
//! and counters and gauges that move with real traffic.

use super::{client, ensure, ensure_eq, R};
use crate::agent::{self, task_event};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub(super) const TOKEN: &str = "conformance-metrics-token-0123456789abcdef";

pub(super) async fn scrape(
    brain: &Brain,
    auth: Option<&str>,
) -> Result<(u16, Option<String>, String), String> {
    let mut req = client().get(brain.url("/metrics"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((status, www, r.text().await.unwrap_or_default()))
}

/// The value of the first sample line starting with `prefix`.
pub(super) fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of a family's samples over all label sets.
pub(super) fn sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn scrape_with_token(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_METRICS_AUTH_TOKEN", TOKEN));
    let brain = ctx.start(&env).await?;
    for (auth, detail) in [
        (None, "metrics: authorization required"),
        (
            Some(format!("Basic {TOKEN}")),
            "metrics: authorization required",
        ),
        (
            Some("Bearer wrong-token".to_owned()),
            "metrics: invalid bearer token",
        ),
    ] {
        let (status, www, body) = scrape(&brain, auth.as_deref()).await?;
        ensure(
            status == 401 && www.as_deref() == Some("Bearer") && body.contains(detail),
            format!(
                "{auth:?}: want 401 {detail:?} with WWW-Authenticate, got {status} {www:?} {body}"
            ),
        )?;
    }
    // Real traffic: one agent, one batch of three events.
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "measured").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let events: Vec<_> = (0..3)
        .map(|i| {
            task_event(
                &format!("m-{i}"),
                "task.received",
                json!({"task_name": "jobs.m"}),
            )
        })
        .collect();
    s.send_events("b-m", &events).await?;
    s.expect_ack("b-m", Duration::from_secs(10)).await?;
    let (status, _, text) = scrape(&brain, Some(&format!("Bearer {TOKEN}"))).await?;
    ensure_eq(status, 200, "scrape with the token")?;
    // What the scrape says belongs to api.metrics; the token rules above and
    // below to Z4J_METRICS_AUTH_TOKEN.
    let extended = ctx.target.has("metrics_extended");
    if let Err(e) = scraped_content(&text, extended, &creds.project_id) {
        ctx.fail_clause("api.metrics", e);
    }
    // Exempt from the Host list while the token guards it.
    let r = client()
        .get(brain.url("/metrics"))
        .header("host", "scraper.internal.example")
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        r.status().as_u16(),
        200,
        "token-protected /metrics from a foreign Host",
    )
}

/// The families of http-api 6.10, and (an extension some targets claim) ack
/// latency and HTTP request counts, after one connection ingested 3 events.
fn scraped_content(text: &str, extended: bool, project_id: &str) -> R {
    let families = [
        ("# TYPE z4j_events_ingested_total counter", true),
        ("# TYPE z4j_db_pool_size gauge", true),
        ("# TYPE z4j_agents_online gauge", true),
        ("# TYPE z4j_ws_connections gauge", true),
        ("# TYPE z4j_ack_latency_seconds histogram", extended),
        ("# TYPE z4j_http_requests_total counter", extended),
    ];
    for (family, required) in families {
        ensure(
            !required || text.contains(family),
            format!("missing {family:?}"),
        )?;
    }
    ensure_eq(
        sum(text, "z4j_events_ingested_total"),
        3.0,
        "events ingested (all label sets)",
    )?;
    ensure_eq(value(text, "z4j_ws_connections "), Some(1.0), "connections")?;
    ensure_eq(
        value(
            text,
            &format!("z4j_agents_online{{project=\"{}\"}}", project_id),
        ),
        Some(1.0),
        "agents online in the project",
    )?;
    if extended {
        ensure(
            value(text, "z4j_ack_latency_seconds_count ").is_some_and(|c| c >= 1.0),
            "one ack latency observed",
        )?;
        ensure(
            value(
                text,
                "z4j_http_requests_total{method=\"GET\",status=\"401\"}",
            )
            .is_some_and(|c| c >= 2.0),
            "the refused scrapes were counted",
        )?;
    }
    ensure(
        value(text, "z4j_db_pool_size ").is_some_and(|c| c >= 1.0),
        "pool size",
    )
}

pub async fn public_and_disabled(ctx: Arc<Ctx>) -> R {
    let open = ctx.start(&[("Z4J_METRICS_PUBLIC", "true")]).await?;
    let (status, _, text) = scrape(&open, None).await?;
    ensure(
        status == 200 && text.contains("# TYPE z4j_ws_connections gauge"),
        format!("Z4J_METRICS_PUBLIC: {status}"),
    )?;
    let off = ctx.start(&[("Z4J_METRICS_ENABLED", "false")]).await?;
    let (status, _, _) = scrape(&off, Some(&format!("Bearer {TOKEN}"))).await?;
    ensure_eq(status, 404, "Z4J_METRICS_ENABLED=false removes the route")
}
