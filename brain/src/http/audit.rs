//! The project's audit log (http-api 5.5): listing with filters and a
//! cursor, and an export capped by `Z4J_TASKS_EXPORT_MAX_ROWS`. Auditors and
//! admins only.

use super::access::{self, Role};
use super::error::{ApiError, SchemaIssue};
use super::Shared;
use crate::audit::{self, AuditRow, Entry, Filter};
use crate::store::Ts;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/projects/{slug}/audit", get(list))
}

pub(super) fn row_json(r: &AuditRow) -> Value {
    json!({
        "id": r.id,
        "project_id": r.project_id,
        "user_id": r.user_id,
        "action": r.action,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "result": r.result,
        "outcome": r.outcome,
        "event_id": null,
        "metadata": r.metadata.0,
        "source_ip": r.source_ip,
        "user_agent": r.user_agent,
        "occurred_at": r.occurred_at.to_rfc3339(),
    })
}

fn bad(field: &'static str, msg: &str) -> ApiError {
    ApiError::Schema(vec![SchemaIssue::new(
        "value_error",
        &["query", field],
        msg,
    )])
}

async fn filter(
    state: &Shared,
    headers: &HeaderMap,
    slug: &str,
    q: &HashMap<String, String>,
) -> Result<(access::ProjectAccess, Filter), ApiError> {
    let access = access::project(state, headers, slug, Role::Viewer).await?;
    if !access.role.reads_audit() {
        return Err(ApiError::Forbidden("auditor or admin role required".into()));
    }
    let action_prefix = q.get("action_prefix").cloned();
    if action_prefix
        .as_deref()
        .is_some_and(|a| a.chars().count() > 80)
    {
        return Err(bad(
            "action_prefix",
            "String should have at most 80 characters",
        ));
    }
    let user_id = match q.get("user_id") {
        None => None,
        Some(u) => {
            Some(Uuid::parse_str(u).map_err(|_| bad("user_id", "Input should be a valid UUID"))?)
        }
    };
    let since = match q.get("since") {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| Ts(d.with_timezone(&chrono::Utc)))
                .map_err(|_| bad("since", "Input should be an RFC 3339 timestamp"))?,
        ),
    };
    let f = Filter {
        project_id: access.project.id,
        action_prefix,
        outcome: q.get("outcome").cloned(),
        user_id,
        since,
    };
    Ok((access, f))
}

/// The listing, or with `format=` the export (http-api 5.5: one route).
async fn list(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = super::query::Query::parse(raw).0;
    let (access, f) = filter(&state, &headers, &slug, &q).await?;
    if q.contains_key("format") {
        return export(&state, &slug, &q, &headers, access, f).await;
    }
    let limit = super::reads::rest_limit(&state.settings, q.get("limit"))?;
    let before = q.get("cursor").and_then(|c| c.parse::<i64>().ok());
    let rows = audit::list(&state.db, &f, before, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(json!({
        "items": rows.iter().map(row_json).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
    .into_response())
}

async fn export(
    state: &Shared,
    slug: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    access: access::ProjectAccess,
    f: Filter,
) -> Result<Response, ApiError> {
    if q.get("format").is_some_and(|f| f != "json") {
        return Err(bad("format", "only format=json is supported"));
    }
    let cap = state.settings.tasks_export_max_rows;
    let matching = audit::count(&state.db, &f).await?;
    if matching > cap {
        return Err(ApiError::Validation {
            message: format!(
                "audit export is capped at {cap} rows (Z4J_TASKS_EXPORT_MAX_ROWS) and {matching} match; \
                 narrow the filter (since, action_prefix, outcome, user_id)"
            ),
            details: json!({"cap": cap, "matching": matching, "format": "json"}),
        });
    }
    let rows = audit::list(&state.db, &f, None, cap).await?;
    audit::record(
        &state.db,
        &state.settings,
        &Entry::new("audit.export", "success")
            .target("project", access.project.id)
            .in_project(access.project.id)
            .by(Some(access.caller.user.id))
            .from(None, headers)
            .meta(json!({"rows": rows.len(), "format": "json"})),
    )
    .await?;
    let body = Value::Array(rows.iter().map(row_json).collect());
    Ok((
        [(
            "content-disposition",
            format!("attachment; filename=\"z4j-audit-{slug}.json\""),
        )],
        Json(body),
    )
        .into_response())
}
