//! REST bodies are JSON: a body sent with any other `Content-Type` is
//! refused with 415 before routing, naming the type. Besides clear errors
//! this closes cross-site "simple" form posts (`text/plain`,
//! `application/x-www-form-urlencoded`, `multipart/form-data`) to the
//! routes without a CSRF token (login, password reset, invitations). A
//! body without a `Content-Type` is still read as JSON. Agent endpoints
//! are not concerned (their frames have their own checks).

use crate::http::error::ApiError;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `application/json`, or any `+json` type, parameters ignored.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

pub async fn layer(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let writes = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !writes || !path.starts_with("/api/v1/") || path.starts_with("/api/v1/agent/") {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match declared {
        Some(ct) if has_body(&req) && !is_json(&ct) => ApiError::Coded {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!("request bodies must be JSON (application/json), not {ct}"),
            details: json!({"content_type": ct}),
        }
        .into_response(),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types_are_recognised() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json+html",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
