//! Baseline security headers on every response, errors included (http-api
//! 6.7), and HSTS in production posture behind an https public URL (6.8).

use crate::http::Shared;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

const PERMISSIONS: &str = "geolocation=(), microphone=(), camera=(), payment=(), usb=(), \
                           accelerometer=(), gyroscope=(), magnetometer=()";
/// For HTML this brain serves (the setup page sets its own, stricter one).
const HTML_CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                        form-action 'self'; frame-ancestors 'none'; frame-src 'none'; \
                        base-uri 'none'; object-src 'none'";

/// The HSTS value, when it applies.
pub fn hsts(s: &crate::settings::Settings, dev: bool) -> Option<String> {
    let https = s
        .public_url
        .as_deref()
        .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
    (!dev && https).then(|| {
        let mut v = format!("max-age={}", s.hsts_max_age_seconds);
        if s.hsts_include_subdomains {
            v.push_str("; includeSubDomains");
        }
        v
    })
}

pub async fn layer(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().as_str().to_owned();
    let mut resp = next.run(req).await;
    crate::metrics::bump(
        &state.metrics.http_requests,
        &[method.as_str(), resp.status().as_str()],
    );
    let html = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html"));
    let has_csp = resp.headers().contains_key("content-security-policy");
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-content-type-options", "nosniff");
    set("x-frame-options", "DENY");
    set("permissions-policy", PERMISSIONS);
    set("cross-origin-opener-policy", "same-origin");
    set("cross-origin-resource-policy", "same-origin");
    let setup = path.starts_with("/setup") || path.starts_with("/api/v1/setup");
    set(
        "referrer-policy",
        if setup {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        },
    );
    if setup || path.starts_with("/api/v1/auth") {
        set("cache-control", "no-store");
    }
    if let Some(v) = hsts(&state.settings, state.dev_posture) {
        set("strict-transport-security", &v);
    }
    if html && !has_csp {
        set("content-security-policy", HTML_CSP);
    }
    resp
}
