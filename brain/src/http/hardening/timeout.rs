//! `Z4J_REQUEST_TIMEOUT_SECONDS`: a handler still running after the budget
//! is abandoned (its transaction rolls back) and the caller gets 504
//! `request_timeout` (specs/decisions.md H3). Agent transports keep their
//! own deadlines.

use crate::http::error::ApiError;
use crate::http::Shared;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

pub async fn layer(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/ws/agent" || path.starts_with("/api/v1/agent/") {
        return next.run(req).await;
    }
    let secs = state.settings.request_timeout_seconds.max(1);
    match tokio::time::timeout(Duration::from_secs(secs as u64), next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(path = %path, timeout_seconds = secs, "request abandoned at the request timeout");
            ApiError::Coded {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "request_timeout",
                message: format!(
                    "the request did not complete within Z4J_REQUEST_TIMEOUT_SECONDS ({secs} s)"
                ),
                details: json!({"timeout_seconds": secs}),
            }
            .into_response()
        }
    }
}
