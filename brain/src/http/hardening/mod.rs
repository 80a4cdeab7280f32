//! The protective layers around every route, outermost first (http-api
//! 0.1): security headers, CORS, body size cap, request id (elsewhere),
//! Host validation, NUL characters in the path or query, JSON-only bodies, per-request timeout.

pub mod body_cap;
pub mod content_type;
pub mod cors;
pub mod headers;
pub mod hosts;
pub mod nul;
pub mod timeout;
