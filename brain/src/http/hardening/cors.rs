//! CORS for the dashboard origins in `Z4J_CORS_ORIGINS` (http-api 6.6,
//! Starlette semantics). Not mounted when the list is empty.

use crate::http::Shared;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const ALLOWED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-language",
    "content-type",
    "authorization",
    "x-csrf-token",
];
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network";

fn origin_allowed(list: &[String], origin: &str) -> bool {
    list.iter().any(|o| o == "*" || o == origin)
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        Body::from(text),
    )
        .into_response()
}

pub async fn layer(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let s = &state.settings;
    let origins = &s.cors_origins.0;
    if origins.is_empty() {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let wildcard_only = origins.iter().any(|o| o == "*") && !s.cors_allow_credentials;
    let allow_origin = if wildcard_only {
        "*".to_owned()
    } else {
        origin.clone()
    };
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    if preflight {
        if !origin_allowed(origins, &origin) {
            return plain(StatusCode::BAD_REQUEST, "Disallowed CORS origin");
        }
        let method_ok = req
            .headers()
            .get("access-control-request-method")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| ALLOWED_METHODS.contains(&m.trim()));
        if !method_ok {
            return plain(StatusCode::BAD_REQUEST, "Disallowed CORS method");
        }
        let headers_ok = req
            .headers()
            .get("access-control-request-headers")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|list| {
                list.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .all(|h| ALLOWED_HEADERS.contains(&h.as_str()))
            });
        if !headers_ok {
            return plain(StatusCode::BAD_REQUEST, "Disallowed CORS headers");
        }
        let mut resp = plain(StatusCode::OK, "OK");
        let h = resp.headers_mut();
        put(h, "access-control-allow-origin", &allow_origin);
        put(h, "access-control-allow-methods", METHODS);
        put(
            h,
            "access-control-allow-headers",
            &ALLOWED_HEADERS.join(", "),
        );
        put(h, "access-control-max-age", "600");
        if s.cors_allow_credentials {
            put(h, "access-control-allow-credentials", "true");
        }
        put(h, "vary", PREFLIGHT_VARY);
        return resp;
    }
    let mut resp = next.run(req).await;
    if origin_allowed(origins, &origin) {
        let h = resp.headers_mut();
        put(h, "access-control-allow-origin", &allow_origin);
        if s.cors_allow_credentials {
            put(h, "access-control-allow-credentials", "true");
        }
        if !wildcard_only {
            h.append("vary", HeaderValue::from_static("Origin"));
        }
    }
    resp
}
