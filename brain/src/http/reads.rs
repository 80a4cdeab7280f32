//! What was ingested, as the dashboard reads it (spec http-api 5.1–5.3):
//! tasks, events of a task, workers, queues, agent workers, stats.

use super::access::{self, Role};
use super::error::{ApiError, SchemaIssue};
use super::query::Query;
use super::Shared;
use crate::insight;
use crate::settings::Settings;
use crate::store::agents::{self, Liveness};
use crate::store::aggregates;
use crate::store::ingest::TaskState;
use crate::store::ingest::TASK_PRIORITIES;
use crate::store::reads::{self, After, TaskFilter};
use crate::store::Ts;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub(super) const TASK_STATES: &[&str] = &[
    "pending", "received", "started", "success", "failure", "retry", "revoked", "rejected",
    "unknown",
];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/projects/{slug}/tasks", get(list_tasks))
        .route(
            "/api/v1/projects/{slug}/tasks/{engine}/{task_id}",
            get(task_detail),
        )
        .route("/api/v1/projects/{slug}/events", get(list_events))
        .route("/api/v1/projects/{slug}/workers", get(list_workers))
        .route("/api/v1/projects/{slug}/queues", get(list_queues))
        .route(
            "/api/v1/projects/{slug}/agent-workers",
            get(list_agent_workers),
        )
        .route("/api/v1/projects/{slug}/stats", get(stats))
}

/// `limit` (schema 1..=5000) capped by `Z4J_REST_MAX_PAGE_SIZE`; absent →
/// `Z4J_REST_DEFAULT_PAGE_SIZE`.
fn page_size(s: &Settings, q: &Query, issues: &mut Vec<SchemaIssue>) -> i64 {
    q.int("limit", 1, 5000, issues)
        .map(|l| l.min(s.rest_max_page_size))
        .unwrap_or(s.rest_default_page_size)
        .max(1)
}

/// The REST page size of a list route from its raw `limit` query value:
/// 1..=5000 by schema, capped by `Z4J_REST_MAX_PAGE_SIZE`, absent →
/// `Z4J_REST_DEFAULT_PAGE_SIZE`.
pub fn rest_limit(s: &Settings, raw: Option<&String>) -> Result<i64, ApiError> {
    match raw.map(|l| l.parse::<i64>()) {
        None => Ok(s.rest_default_page_size),
        Some(Ok(l)) if (1..=5000).contains(&l) => Ok(l.min(s.rest_max_page_size)),
        Some(_) => Err(ApiError::Schema(vec![SchemaIssue::new(
            "int_range",
            &["query", "limit"],
            "Input should be an integer between 1 and 5000",
        )])),
    }
}

/// Cursor: unpadded base64url of `[["dt", "<instant>"], "<uuid>"]`.
pub(super) fn encode_cursor(at: Ts, id: Uuid) -> String {
    let body = json!([["dt", at.to_rfc3339()], id.to_string()]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
}

/// A malformed cursor is ignored (first page), as the reference does.
pub(super) fn decode_cursor(raw: Option<&String>) -> Option<After> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw?.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let arr = v.as_array()?;
    let key = arr.first()?.as_array()?;
    if key.first()?.as_str()? != "dt" {
        return None;
    }
    let at = chrono::DateTime::parse_from_rfc3339(key.get(1)?.as_str()?).ok()?;
    let id = Uuid::parse_str(arr.get(1)?.as_str()?).ok()?;
    Some(After {
        at: Ts(at.with_timezone(&chrono::Utc)),
        id,
    })
}

fn rfc(t: Option<Ts>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

fn task_json(t: &reads::Task) -> Value {
    json!({
        "id": t.id,
        "project_id": t.project_id,
        "engine": t.engine,
        "task_id": t.task_id,
        "name": t.name,
        "queue": t.queue,
        "state": t.state,
        "priority": t.priority,
        "args": t.args.as_ref().map(|j| j.0.clone()),
        "kwargs": t.kwargs.as_ref().map(|j| j.0.clone()),
        "result": t.result.as_ref().map(|j| j.0.clone()),
        "exception": t.exception,
        "traceback": t.traceback,
        "retry_count": t.retry_count,
        "eta": null,
        "received_at": rfc(t.received_at),
        "started_at": rfc(t.started_at),
        "finished_at": rfc(t.finished_at),
        "runtime_ms": t.runtime_ms,
        "worker_name": t.worker_name,
        "parent_task_id": t.parent_task_id,
        "root_task_id": t.root_task_id,
        "tags": [],
        "created_at": t.created_at.to_rfc3339(),
        "updated_at": t.updated_at.to_rfc3339(),
    })
}

/// `priority=critical,high`: each entry trimmed and lowercased, and one of
/// the stored priorities, or 422 naming the entry (as the reference).
fn priority_filter(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut out = Vec::new();
    for entry in raw.split(',') {
        let p = entry.trim().to_ascii_lowercase();
        if !TASK_PRIORITIES.contains(&p.as_str()) {
            return Err(ApiError::Validation {
                message: "invalid task priority filter".into(),
                details: json!({"field": "priority", "value": entry, "allowed": TASK_PRIORITIES}),
            });
        }
        out.push(p);
    }
    Ok(Some(out.join(",")))
}

async fn list_tasks(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let q = Query::parse(raw);
    let mut issues = Vec::new();
    let limit = page_size(&state.settings, &q, &mut issues);
    let mut filter = TaskFilter {
        state: q.text("state", 40, &mut issues),
        priorities: q.text("priority", 200, &mut issues),
        name: q.text("name", 200, &mut issues),
        search: q.text("search", 200, &mut issues),
        queue: q.text("queue", 200, &mut issues),
        worker: q.text("worker", 200, &mut issues),
        since: q.instant("since", &mut issues),
        until: q.instant("until", &mut issues),
        args: q.text("args", 200, &mut issues),
    };
    if let Some(fmt) = q.0.get("format") {
        if !matches!(fmt.as_str(), "csv" | "xlsx" | "json") {
            issues.push(SchemaIssue::new(
                "literal_error",
                &["query", "format"],
                "Input should be 'csv', 'xlsx' or 'json'",
            ));
        }
    }
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    if let Some(s) = &filter.state {
        if !TASK_STATES.contains(&s.as_str()) {
            return Err(ApiError::Validation {
                message: "invalid task state filter".into(),
                details: json!({"state": s, "allowed": TASK_STATES}),
            });
        }
    }
    filter.priorities = priority_filter(filter.priorities.as_deref())?;
    let after = decode_cursor(q.0.get("cursor"));
    let mut rows = reads::tasks(&state.db, access.project.id, &filter, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|t| encode_cursor(t.created_at, t.id)))
        .flatten();
    let total = if q.flag("include_total") {
        Some(reads::count_tasks(&state.db, access.project.id, &filter).await?)
    } else {
        None
    };
    Ok(Json(json!({
        "items": rows.iter().map(task_json).collect::<Vec<_>>(),
        "next_cursor": next,
        "total_count": total,
    })))
}

async fn task_detail(
    State(state): State<Shared>,
    Path((slug, engine, task_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let task = reads::task(&state.db, access.project.id, &engine, &task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            message: "task not found".into(),
            details: json!({}),
        })?;
    Ok(Json(task_json(&task)))
}

async fn list_events(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let q = Query::parse(raw);
    let mut issues = Vec::new();
    let limit = page_size(&state.settings, &q, &mut issues);
    let engine = q.text("engine", 40, &mut issues);
    let task_id = q.text("task_id", 200, &mut issues);
    for (name, v) in [("engine", &engine), ("task_id", &task_id)] {
        if v.as_deref().is_none_or(str::is_empty)
            && issues.iter().all(|i| i.loc.get(1) != Some(&json!(name)))
        {
            issues.push(SchemaIssue::new(
                "missing",
                &["query", name],
                "Field required",
            ));
        }
    }
    let (Some(engine), Some(task_id)) = (engine, task_id) else {
        return Err(ApiError::Schema(issues));
    };
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    let after = decode_cursor(q.0.get("cursor"));
    let mut rows = reads::events(
        &state.db,
        access.project.id,
        &engine,
        &task_id,
        after,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|e| encode_cursor(e.occurred_at, e.id)))
        .flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "project_id": e.project_id,
                "agent_id": e.agent_id,
                "engine": e.engine,
                "task_id": e.task_id,
                "kind": e.kind,
                "occurred_at": e.occurred_at.to_rfc3339(),
                "payload": e.payload.0,
            })
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

async fn list_workers(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = reads::workers(&state.db, access.project.id).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|w| {
                json!({
                    "id": w.id,
                    "project_id": w.project_id,
                    "engine": w.engine,
                    "name": w.name,
                    "hostname": w.hostname,
                    "pid": w.pid,
                    "concurrency": w.concurrency,
                    "queues": w.queues.0,
                    "state": w.state,
                    "last_heartbeat": rfc(w.last_heartbeat),
                    "active_tasks": w.active_tasks,
                    "created_at": w.created_at.to_rfc3339(),
                    "updated_at": w.updated_at.to_rfc3339(),
                })
            })
            .collect(),
    )))
}

async fn list_queues(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = reads::queues(&state.db, access.project.id).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|q| {
                json!({
                    "id": q.id,
                    "project_id": q.project_id,
                    "engine": q.engine,
                    "name": q.name,
                    "last_seen_at": rfc(q.last_seen_at),
                    "pending_count": q.pending_count,
                    "consumer_count": q.consumer_count,
                    "created_at": q.created_at.to_rfc3339(),
                    "updated_at": q.updated_at.to_rfc3339(),
                })
            })
            .collect(),
    )))
}

async fn list_agent_workers(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let q = Query::parse(raw);
    let mut issues = Vec::new();
    let limit = q.int("limit", 1, 500, &mut issues).unwrap_or(200);
    let st = q.text("state", 20, &mut issues);
    let st = st.as_deref().map(|s| match Liveness::parse(s) {
        Some(l @ (Liveness::Online | Liveness::Offline)) => Some(l),
        _ => None,
    });
    if st.is_some_and(|s| s.is_none()) {
        issues.push(SchemaIssue::new(
            "literal_error",
            &["query", "state"],
            "Input should be 'online' or 'offline'",
        ));
    }
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    let rows = agents::list_workers(&state.db, access.project.id, st.flatten(), limit).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|w| {
                json!({
                    "agent_id": w.agent_id,
                    "worker_id": w.worker_id,
                    "role": w.role,
                    "framework": w.framework,
                    "pid": w.pid,
                    "state": w.state,
                    "last_seen_at": rfc(w.last_seen_at),
                    "last_connect_at": rfc(w.last_connect_at),
                })
            })
            .collect(),
    )))
}

async fn stats(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let pid = access.project.id;
    let db = &state.db;
    // An unlisted window is the default one, not an error (as the reference).
    let hours = Query::parse(raw)
        .0
        .get("hours")
        .and_then(|h| h.parse::<i64>().ok())
        .filter(|h| insight::STATS_HOURS.contains(h))
        .unwrap_or(24);
    let by_state: HashMap<String, i64> = reads::task_state_counts(db, pid)
        .await?
        .into_iter()
        .collect();
    let mut tasks_by_state = serde_json::Map::new();
    for s in TASK_STATES {
        tasks_by_state.insert((*s).into(), json!(by_state.get(*s).copied().unwrap_or(0)));
    }
    let since = Ts::now().plus_seconds(-hours * 3600);
    let failed = reads::finished_since(db, pid, TaskState::Failure, since).await?;
    let succeeded = reads::finished_since(db, pid, TaskState::Success, since).await?;
    let count = |rows: Vec<(String, i64)>, st: &str| {
        rows.iter()
            .filter(|(s, _)| s == st)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let agents_rows = reads::state_counts(db, "agents", pid).await?;
    let workers_rows = reads::state_counts(db, "workers", pid).await?;
    let agents_online = count(agents_rows.clone(), "online");
    let agents_offline: i64 = agents_rows.iter().map(|(_, n)| *n).sum::<i64>() - agents_online;
    let workers_online = count(workers_rows.clone(), "online");
    let workers_offline: i64 = workers_rows.iter().map(|(_, n)| *n).sum::<i64>() - workers_online;
    let queues = reads::queues(db, pid).await?;
    let (pending, completed, cmd_failed, timed_out) =
        aggregates::command_counts(db, pid, since).await?;
    let finished = failed + succeeded;
    let failure_rate = if finished > 0 {
        failed as f64 / finished as f64
    } else {
        0.0
    };
    let depth: i64 = queues.iter().map(|q| i64::from(q.pending_count)).sum();
    Ok(Json(json!({
        "window_hours": hours,
        "tasks_by_state": tasks_by_state,
        "tasks_total": by_state.values().sum::<i64>(),
        "tasks_failed_24h": failed,
        "tasks_succeeded_24h": succeeded,
        "failure_rate_24h": failure_rate,
        "agents_online": agents_online,
        "agents_offline": agents_offline,
        "workers_online": workers_online,
        "workers_offline": workers_offline,
        "commands_pending": pending,
        "commands_completed_24h": completed,
        "commands_failed_24h": cmd_failed,
        "commands_timeout_24h": timed_out,
        "queue_depths": queues.iter().map(|q| json!({
            "name": q.name,
            "engine": q.engine,
            "pending_count": q.pending_count,
            "broker_type": null,
            "last_seen_at": rfc(q.last_seen_at),
        })).collect::<Vec<_>>(),
        "system_health": insight::system_health(agents_online, agents_offline, depth, failure_rate),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_garbage_is_ignored() {
        let at = Ts::now();
        let id = Uuid::new_v4();
        let c = encode_cursor(at, id);
        assert!(!c.contains('='));
        assert_eq!(decode_cursor(Some(&c)), Some(After { at, id }));
        assert_eq!(decode_cursor(Some(&"!!".to_string())), None);
        assert_eq!(decode_cursor(None), None);
    }
}
