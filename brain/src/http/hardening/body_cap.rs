//! `Z4J_MAX_PAYLOAD_SIZE_BYTES` for every HTTP body, the long-poll agent
//! routes included (http-api 6.1, specs/decisions.md H2 and G5): 413 before
//! routing, by `Content-Length` or, for streamed bodies, by counting. Only
//! the WebSocket upgrades are exempt: their frames have their own cap.

use crate::http::Shared;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

fn too_large(reason: &str) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(json!({
            "error": "payload_too_large",
            "message": "request body exceeds the configured maximum",
            "request_id": null,
            "details": {"reason": reason},
        })),
    )
        .into_response()
}

fn exempt(path: &str) -> bool {
    path.starts_with("/ws/")
}

pub async fn layer(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let cap = state.settings.max_payload_size_bytes.max(0) as usize;
    match req
        .headers()
        .get("content-length")
        .map(|v| v.to_str().map(str::parse::<u64>))
    {
        Some(Ok(Ok(n))) if n as usize > cap => return too_large("content_length_exceeded"),
        Some(Ok(Ok(_))) => return next.run(req).await,
        Some(_) => return too_large("invalid_content_length"),
        None => {}
    }
    // No length given (chunked): read at most the cap.
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, cap).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => too_large("streamed_body_exceeded"),
    }
}
