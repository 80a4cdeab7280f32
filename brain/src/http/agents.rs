//! Agent credentials (spec http-api 4.3): mint, list, revoke, health.

use super::access::{self, Role};
use super::body::{self, Fields};
use super::error::{ApiError, SchemaIssue};
use super::Shared;
use crate::auth::keyed::project_key;
use crate::settings::BRAIN_VERSION;
use crate::store::agents::{self, Agent};
use crate::store::{observed, StoreError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use uuid::Uuid;

/// Names with this prefix are reserved for agents the brain creates itself.
const RESERVED_PREFIX: &str = "__z4j";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/projects/{slug}/agents", get(list).post(mint))
        .route(
            "/api/v1/projects/{slug}/agents/{agent_id}",
            axum::routing::delete(revoke),
        )
        .route(
            "/api/v1/projects/{slug}/agents/{agent_id}/health",
            get(health),
        )
}

fn version_status(agent_version: Option<&str>) -> Option<&'static str> {
    let v = agent_version?;
    let parse = |s: &str| -> Option<(u64, u64, u64)> {
        let mut it = s.split('.').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
    };
    let (Some(a), Some(b)) = (parse(v), parse(BRAIN_VERSION)) else {
        return Some("unknown");
    };
    Some(if a.0 != b.0 {
        "incompatible"
    } else if a > b {
        "newer_than_known"
    } else if a < b {
        "outdated"
    } else {
        "current"
    })
}

pub fn agent_json(a: &Agent) -> Value {
    let meta = &a.metadata.0;
    let agent_version = meta.get("agent_version").and_then(Value::as_str);
    let status = version_status(agent_version);
    json!({
        "id": a.id,
        "project_id": a.project_id,
        "name": a.name,
        "state": a.state,
        "protocol_version": a.protocol_version,
        "framework_adapter": a.framework_adapter,
        "engine_adapters": a.engine_adapters.0,
        "scheduler_adapters": a.scheduler_adapters.0,
        "capabilities": a.capabilities.0,
        "last_seen_at": a.last_seen_at.map(|t| t.to_rfc3339()),
        "last_connect_at": a.last_connect_at.map(|t| t.to_rfc3339()),
        "created_at": a.created_at.to_rfc3339(),
        "is_outdated": status == Some("outdated"),
        "host_name": meta.get("host_name").cloned().unwrap_or(Value::Null),
        "agent_version": agent_version,
        "version_status": status,
    })
}

async fn list(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = agents::list(&state.db, access.project.id).await?;
    Ok(Json(Value::Array(rows.iter().map(agent_json).collect())))
}

async fn mint(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let access = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let name = f.text("name", 1, 200, true);
    if name
        .as_deref()
        .is_some_and(|n| n.starts_with(RESERVED_PREFIX))
    {
        f.issues.push(SchemaIssue::new(
            "value_error",
            &["body", "name"],
            format!("Value error, agent names starting with '{RESERVED_PREFIX}' are reserved"),
        ));
    }
    let name = f.finish(name)?;
    let s = &state.settings;
    let (Some(master), Some(key)) = (s.secret.as_deref(), project_key(s, access.project.id)) else {
        return Err(ApiError::no_master_secret());
    };
    let token = crate::bootstrap::secrets::random_token(32);
    let hash = crate::auth::keyed::agent_token(master, &token);
    let mut tx = crate::audit::begin(&state.db).await?;
    let agent = match agents::mint(&mut tx, access.project.id, &name, &hash).await {
        Ok(a) => a,
        Err(StoreError::Conflict(m)) => {
            return Err(ApiError::Conflict {
                message: m,
                details: json!({}),
            })
        }
        Err(e) => return Err(e.into()),
    };
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("agent.token.minted", "success")
            .target("agent", agent.id)
            .in_project(access.project.id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(serde_json::json!({"name": name})),
    )
    .await?;
    state
        .fleet()
        .live
        .publish(access.project.id, crate::fleet::live::Topic::Agent);
    tracing::info!(agent_id = %agent.id, project = %slug, by = %access.caller.user.id, "agent token minted");
    let body = json!({
        "agent": agent_json(&agent),
        "token": token,
        "hmac_secret": key.to_agent_string(),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn agent_not_found() -> ApiError {
    ApiError::NotFound {
        message: "agent not found".into(),
        details: json!({}),
    }
}

async fn revoke(
    State(state): State<Shared>,
    Path((slug, agent_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let id = Uuid::parse_str(&agent_id).map_err(|_| agent_not_found())?;
    let mut tx = crate::audit::begin(&state.db).await?;
    if !agents::revoke(&mut tx, access.project.id, id).await? {
        return Err(agent_not_found());
    }
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("agent.token.revoked", "success")
            .target("agent", id)
            .in_project(access.project.id)
            .by(Some(access.caller.user.id))
            .from(None, &headers),
    )
    .await?;
    // After the commit: a reconnect can no longer authenticate.
    let kicked = state.fleet().revoke_agent(id).await;
    state
        .fleet()
        .live
        .publish(access.project.id, crate::fleet::live::Topic::Agent);
    tracing::info!(agent_id = %id, connections = kicked, by = %access.caller.user.id, "agent revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn health(
    State(state): State<Shared>,
    Path((slug, agent_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let id = Uuid::parse_str(&agent_id).map_err(|_| agent_not_found())?;
    match agents::find(&state.db, id).await? {
        Some(a) if a.project_id == access.project.id && a.revoked_at.is_none() => {}
        _ => return Err(agent_not_found()),
    }
    let samples = observed::recent_status(&state.db, id, 100).await?;
    Ok(Json(Value::Array(
        samples
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "captured_at": s.captured_at.to_rfc3339(),
                    "worker_id": s.worker_id,
                    "telemetry_loss": s.telemetry_loss.as_ref().map(|j| j.0.clone()),
                })
            })
            .collect(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_status_compares_with_the_brain() {
        assert_eq!(version_status(Some(BRAIN_VERSION)), Some("current"));
        assert_eq!(version_status(Some("1.12.9")), Some("outdated"));
        assert_eq!(version_status(Some("1.14.0")), Some("newer_than_known"));
        assert_eq!(version_status(Some("2.0.0")), Some("incompatible"));
        assert_eq!(version_status(Some("dev")), Some("unknown"));
        assert_eq!(version_status(None), None);
    }
}
