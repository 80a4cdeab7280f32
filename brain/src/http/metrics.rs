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

/// One family with plain samples: name, type, help, `(labels, value)`.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(Vec<(&'static str, String)>, f64)>,
);

fn one(v: f64) -> Vec<(Vec<(&'static str, String)>, f64)> {
    vec![(Vec::new(), v)]
}

async fn scrape(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(detail) = authorized(&state, &headers) {
        return refuse(detail);
    }
    let m = state.metrics.as_ref();
    let mut t = Text::new();
    let labeled: [(&str, &str, &[&str], _); 5] = [
        (
            "z4j_http_requests_total",
            "HTTP requests answered, by method and status.",
            &["method", "status"],
            &m.http_requests,
        ),
        (
            "z4j_commands_total",
            "Commands issued, by action and initial status.",
            &["action", "status"],
            &m.commands,
        ),
        (
            "z4j_notifications_sent_total",
            "Notification deliveries, by channel type and status.",
            &["channel_type", "status"],
            &m.notifications,
        ),
        (
            "z4j_scheduler_misfires_detected_total",
            "Schedule misfire episodes announced, by project id.",
            &["project"],
            &m.scheduler_misfires,
        ),
        (
            "z4j_audit_chain_verifications_total",
            "Scheduled audit chain verifications, by outcome (clean, failed, error).",
            &["outcome"],
            &m.audit_chain_verifications,
        ),
    ];
    for (name, help, labels, map) in labeled {
        t.family(name, "counter", help);
        t.labeled(name, labels, map);
    }
    t.family(
        "z4j_ack_latency_seconds",
        "histogram",
        "From an event_batch frame's dispatch to its ack (after commit).",
    );
    t.histogram("z4j_ack_latency_seconds", &m.ack_latency);
    for (name, kind, help, samples) in counters(m).into_iter().chain(gauges(&state, m).await) {
        t.family(name, kind, help);
        for (labels, v) in samples {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            t.sample(name, &labels, v);
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        t.finish(),
    )
        .into_response()
}

/// Counters kept by the ingest, alert and audit paths.
fn counters(m: &metrics::Metrics) -> Vec<Family> {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    vec![
        (
            "z4j_events_received_total",
            "counter",
            "Events received in acknowledged event_batch frames.",
            one(n(&m.events_received)),
        ),
        (
            "z4j_events_ingested_total",
            "counter",
            "Events newly stored (acknowledged as accepted).",
            one(n(&m.events_ingested)),
        ),
        (
            "z4j_events_rejected_total",
            "counter",
            "Events received but not stored (invalid or duplicate).",
            one(n(&m.events_rejected)),
        ),
        (
            "z4j_agents_offline_detected_total",
            "counter",
            "Offline episodes announced.",
            one(n(&m.agents_offline_detected)),
        ),
        (
            "z4j_audit_retention_pruned_total",
            "gauge",
            "Audit rows pruned by the retention sweep since start.",
            one(n(&m.audit_retention_pruned_total)),
        ),
    ]
}

/// Gauges read at scrape time.
async fn gauges(state: &Shared, m: &metrics::Metrics) -> Vec<Family> {
    let g = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed) as f64;
    let online = agents::online_per_project(&state.db)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(project, count)| (vec![("project", project.to_string())], count as f64))
        .collect();
    let (size, idle) = state.db.pool_stats();
    let in_use = (size as usize).saturating_sub(idle) as f64;
    let task = |name: &str| vec![("task", name.to_owned())];
    vec![
        (
            "z4j_ws_connections",
            "gauge",
            "Agent WebSocket connections held by this process.",
            one(state.fleet().registry.connections() as f64),
        ),
        (
            "z4j_agents_online",
            "gauge",
            "Agents online, by project.",
            online,
        ),
        (
            "z4j_db_pool_size",
            "gauge",
            "Open database connections in the pool.",
            one(f64::from(size)),
        ),
        (
            "z4j_db_pool_checked_out",
            "gauge",
            "Pool connections in use.",
            one(in_use),
        ),
        (
            "z4j_inmemory_state_items",
            "gauge",
            "Items held in process memory, by subsystem.",
            vec![(
                vec![("subsystem", "longpoll_sessions".to_owned())],
                g(&m.longpoll_sessions),
            )],
        ),
        (
            "z4j_brain_rss_bytes",
            "gauge",
            "Resident memory of this process.",
            one(rss_bytes()),
        ),
        (
            "z4j_wal_checkpoint_pages_last",
            "gauge",
            "Pages checkpointed by the last SQLite WAL checkpoint (-1 before the first).",
            one(g(&m.wal_checkpoint_pages_last)),
        ),
        (
            "z4j_wal_checkpoint_last_run_timestamp",
            "gauge",
            "Unix time of the last WAL checkpoint.",
            one(g(&m.wal_checkpoint_last_run)),
        ),
        (
            "z4j_audit_retention_last_deleted",
            "gauge",
            "Audit rows deleted by the last retention pass.",
            one(g(&m.audit_retention_last_deleted)),
        ),
        (
            "z4j_audit_chain_rows_verified",
            "gauge",
            "Rows the last scheduled audit chain verification walked.",
            one(g(&m.audit_chain_rows_verified)),
        ),
        (
            "z4j_audit_retention_last_run_timestamp",
            "gauge",
            "Unix time of the last audit retention pass.",
            one(g(&m.audit_retention_last_run)),
        ),
        (
            "z4j_background_task_error_active",
            "gauge",
            "1 while a background task's last run failed.",
            vec![
                (task("wal_checkpoint"), g(&m.wal_checkpoint_error)),
                (task("audit_retention"), g(&m.audit_retention_error)),
            ],
        ),
    ]
}
