//! `GET /metrics` (http-api 6.10): Prometheus text behind
//! `Authorization: Bearer <Z4J_METRICS_AUTH_TOKEN>` unless
//! `Z4J_METRICS_PUBLIC`; not mounted with `Z4J_METRICS_ENABLED=false`.

use super::Shared;
use crate::metrics::{self, Text};
use crate::store::agents;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::atomic::Ordering;
use subtle::ConstantTimeEq;

pub fn routes(enabled: bool) -> Router<Shared> {
    if enabled {
        Router::new().route("/metrics", get(scrape))
    } else {
        Router::new()
    }
}

fn refuse(detail: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer")],
        axum::Json(json!({ "detail": detail })),
    )
        .into_response()
}

/// `Err` names the refusal (its `detail`).
fn authorized(state: &Shared, headers: &HeaderMap) -> Result<(), &'static str> {
    let s = &state.settings;
    if s.metrics_public {
        return Ok(());
    }
    let Some(token) = s.metrics_auth_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(
            "metrics: not configured. Either set Z4J_METRICS_AUTH_TOKEN and scrape with \
             `Authorization: Bearer <token>`, or set Z4J_METRICS_PUBLIC=1 for closed-network deployments.",
        );
    };
    let Some(given) = crate::net::bearer_token(headers) else {
        return Err("metrics: authorization required");
    };
    if given.as_bytes().ct_eq(token.as_bytes()).into() {
        Ok(())
    } else {
        Err("metrics: invalid bearer token")
    }
}

fn rss_bytes() -> f64 {
    // Second field of /proc/self/statm: resident pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0)
}

async fn scrape(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(detail) = authorized(&state, &headers) {
        return refuse(detail);
    }
    let m = metrics::get();
    let mut t = Text::new();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;

    t.family(
        "z4j_http_requests_total",
        "counter",
        "HTTP requests answered, by method and status.",
    );
    t.labeled(
        "z4j_http_requests_total",
        &["method", "status"],
        &m.http_requests,
    );
    t.family(
        "z4j_events_received_total",
        "counter",
        "Events received in acknowledged event_batch frames.",
    );
    t.sample("z4j_events_received_total", &[], n(&m.events_received));
    t.family(
        "z4j_events_ingested_total",
        "counter",
        "Events newly stored (acknowledged as accepted).",
    );
    t.sample("z4j_events_ingested_total", &[], n(&m.events_ingested));
    t.family(
        "z4j_events_rejected_total",
        "counter",
        "Events received but not stored (invalid or duplicate).",
    );
    t.sample("z4j_events_rejected_total", &[], n(&m.events_rejected));
    t.family(
        "z4j_ack_latency_seconds",
        "histogram",
        "From an event_batch frame's dispatch to its ack (after commit).",
    );
    t.histogram("z4j_ack_latency_seconds", &m.ack_latency);
    t.family(
        "z4j_commands_total",
        "counter",
        "Commands issued, by action and initial status.",
    );
    t.labeled("z4j_commands_total", &["action", "status"], &m.commands);
    t.family(
        "z4j_notifications_sent_total",
        "counter",
        "Notification deliveries, by channel type and status.",
    );
    t.labeled(
        "z4j_notifications_sent_total",
        &["channel_type", "status"],
        &m.notifications,
    );
    t.family(
        "z4j_agents_offline_detected_total",
        "counter",
        "Offline episodes announced.",
    );
    t.sample(
        "z4j_agents_offline_detected_total",
        &[],
        n(&m.agents_offline_detected),
    );

    t.family(
        "z4j_ws_connections",
        "gauge",
        "Agent WebSocket connections held by this process.",
    );
    t.sample(
        "z4j_ws_connections",
        &[],
        state.fleet().registry.connections() as f64,
    );
    t.family("z4j_agents_online", "gauge", "Agents online, by project.");
    for (project, count) in agents::online_per_project(&state.db)
        .await
        .unwrap_or_default()
    {
        t.sample(
            "z4j_agents_online",
            &[("project", &project.to_string())],
            count as f64,
        );
    }
    let (size, idle) = state.db.pool_stats();
    t.family(
        "z4j_db_pool_size",
        "gauge",
        "Open database connections in the pool.",
    );
    t.sample("z4j_db_pool_size", &[], f64::from(size));
    t.family(
        "z4j_db_pool_checked_out",
        "gauge",
        "Pool connections in use.",
    );
    t.sample(
        "z4j_db_pool_checked_out",
        &[],
        (size as usize).saturating_sub(idle) as f64,
    );
    t.family(
        "z4j_inmemory_state_items",
        "gauge",
        "Items held in process memory, by subsystem.",
    );
    t.sample(
        "z4j_inmemory_state_items",
        &[("subsystem", "longpoll_sessions")],
        m.longpoll_sessions
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    t.family(
        "z4j_brain_rss_bytes",
        "gauge",
        "Resident memory of this process.",
    );
    t.sample("z4j_brain_rss_bytes", &[], rss_bytes());
    t.family(
        "z4j_wal_checkpoint_pages_last",
        "gauge",
        "Pages checkpointed by the last SQLite WAL checkpoint (-1 before the first).",
    );
    t.sample(
        "z4j_wal_checkpoint_pages_last",
        &[],
        m.wal_checkpoint_pages_last.load(Ordering::Relaxed) as f64,
    );
    t.family(
        "z4j_wal_checkpoint_last_run_timestamp",
        "gauge",
        "Unix time of the last WAL checkpoint.",
    );
    t.sample(
        "z4j_wal_checkpoint_last_run_timestamp",
        &[],
        m.wal_checkpoint_last_run.load(Ordering::Relaxed) as f64,
    );
    t.family(
        "z4j_audit_retention_pruned_total",
        "gauge",
        "Audit rows pruned by the retention sweep since start.",
    );
    t.sample(
        "z4j_audit_retention_pruned_total",
        &[],
        n(&m.audit_retention_pruned_total),
    );
    t.family(
        "z4j_audit_retention_last_deleted",
        "gauge",
        "Audit rows deleted by the last retention pass.",
    );
    t.sample(
        "z4j_audit_retention_last_deleted",
        &[],
        m.audit_retention_last_deleted.load(Ordering::Relaxed) as f64,
    );
    t.family(
        "z4j_audit_retention_last_run_timestamp",
        "gauge",
        "Unix time of the last audit retention pass.",
    );
    t.sample(
        "z4j_audit_retention_last_run_timestamp",
        &[],
        m.audit_retention_last_run.load(Ordering::Relaxed) as f64,
    );
    t.family(
        "z4j_background_task_error_active",
        "gauge",
        "1 while a background task's last run failed.",
    );
    t.sample(
        "z4j_background_task_error_active",
        &[("task", "wal_checkpoint")],
        m.wal_checkpoint_error.load(Ordering::Relaxed) as f64,
    );
    t.sample(
        "z4j_background_task_error_active",
        &[("task", "audit_retention")],
        m.audit_retention_error.load(Ordering::Relaxed) as f64,
    );
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        t.finish(),
    )
        .into_response()
}
