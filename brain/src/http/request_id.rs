//! `X-Request-Id`: kept when it is 1..64 printable ASCII characters without
//! spaces, else a fresh `req_` + 16 hex; echoed on the response and written
//! into the error envelope.

use super::error::{render, Envelope};
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn accept_or_mint(incoming: Option<&str>) -> String {
    if let Some(v) = incoming.map(str::trim) {
        if (1..=64).contains(&v.len()) && v.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return v.to_owned();
        }
    }
    format!("req_{:016x}", rand::random::<u64>())
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = accept_or_mint(
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    // Path only: a query string may carry a token.
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let mut resp = next.run(req).await;
    tracing::debug!(request_id = %id, %method, %path, status = resp.status().as_u16(), "request served");
    if let Some(envelope) = resp.extensions_mut().remove::<Envelope>() {
        let body = render(&envelope, Some(&id));
        *resp.body_mut() = Body::from(body.to_string());
        resp.headers_mut().remove("content-length");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_replaces_others() {
        assert_eq!(accept_or_mint(Some("my-trace-123")), "my-trace-123");
        assert!(accept_or_mint(Some("has space")).starts_with("req_"));
        assert!(accept_or_mint(Some(&"x".repeat(65))).starts_with("req_"));
        assert_eq!(accept_or_mint(None).len(), 20);
    }
}
