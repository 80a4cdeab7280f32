//! Liveness, readiness and system information.

use super::error::ApiError;
use super::{session, Shared};
use crate::settings::BRAIN_VERSION;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/health/ready", get(ready))
        .route("/api/v1/health/system", get(system))
}

/// No I/O: the process answers.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once start-up finished and the database answers `SELECT 1` in 2 s.
async fn ready(State(state): State<Shared>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return unready("starting");
    }
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        _ => unready("database"),
    }
}

fn unready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unready", "reason": reason})),
    )
        .into_response()
}

async fn system(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    session::require(&state, &headers).await?;
    let db_version = state.db.server_version().await?;
    Ok(Json(json!({
        "z4j_version": BRAIN_VERSION,
        "implementation": "z4j-rs",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "architecture": std::env::consts::ARCH,
        "pid": std::process::id(),
        "environment": state.settings.environment,
        "database_type": state.db.kind(),
        "database_version": db_version,
        "packages": {
            "z4j-brain": env!("CARGO_PKG_VERSION"),
        },
    })))
}
