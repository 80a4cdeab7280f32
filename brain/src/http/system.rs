//! `GET /api/v1/admin/system/versions` and `POST …/versions/check` (global
//! admins; dashboard spec 3.7): the versions snapshot and the on-demand
//! "Check for updates" fetch of `Z4J_VERSION_CHECK_URL`.

use super::access;
use super::error::ApiError;
use super::session::{self, Caller};
use super::Shared;
use crate::versions::{CheckError, Snapshot, Source};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/admin/system/versions", get(read))
        .route("/api/v1/admin/system/versions/check", post(check))
}

fn global_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.user.is_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden("admin role required".into()))
    }
}

/// The snapshot as the API shows it.
pub fn public(state: &Shared, snapshot: &Snapshot, source: &Source) -> Value {
    let (source, fetched_at, fetched_from) = match source {
        Source::Bundled => ("bundled", Value::Null, Value::Null),
        Source::Remote { fetched_at, from } => (
            "remote",
            json!(fetched_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            json!(from),
        ),
    };
    json!({
        "schema_version": snapshot.schema_version,
        "generated_at": snapshot.generated_at,
        "generated_by": snapshot.generated_by,
        "canonical_url": snapshot.canonical_url,
        "packages": snapshot.packages,
        "source": source,
        "fetched_at": fetched_at,
        "fetched_from": fetched_from,
        "check_for_updates_url": state.settings.version_check_url,
    })
}

async fn read(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    global_admin(&caller)?;
    let (snapshot, source) = state.versions.current();
    Ok(Json(public(&state, &snapshot, &source)))
}

async fn check(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    access::csrf(&caller, &headers)?;
    global_admin(&caller)?;
    let url = state.settings.version_check_url.clone();
    match state.versions.check(&url).await {
        Ok((snapshot, source)) => {
            tracing::info!(
                url = %url,
                packages = snapshot.packages.len(),
                "versions snapshot refreshed by an operator"
            );
            Ok(Json(public(&state, &snapshot, &source)))
        }
        Err(CheckError::Disabled) => Err(ApiError::NotFound {
            message: CheckError::Disabled.to_string(),
            details: json!({"reason": "check_disabled"}),
        }),
        Err(e) => {
            tracing::warn!(url = %url, error = %e, "version check failed; the snapshot is unchanged");
            Err(ApiError::Conflict {
                message: format!("version check failed: {e}"),
                details: json!({"url": url}),
            })
        }
    }
}
