//! One error type for every handler, rendered as the z4j envelope
//! `{"error","message","request_id","details"}` (the request id is filled in
//! by the request-id layer), plus the validation-list shape for schema
//! violations.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { message: String, details: Value },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    NotFound { message: String, details: Value },
    #[error("{message}")]
    Conflict { message: String, details: Value },
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Request body / query schema violations: FastAPI's `{"detail": [...]}`
    /// list (without echoing the input).
    #[error("request validation failed")]
    Schema(Vec<SchemaIssue>),
    #[error("internal error: {0}")]
    Internal(String),
    /// A per-IP bucket is full (http-api 6.4): family B
    /// `{"detail":"too many requests; retry in N seconds (<bucket>)"}` and
    /// `Retry-After: N`.
    #[error("too many requests ({bucket})")]
    TooManyRequests {
        bucket: &'static str,
        retry_after_secs: u64,
    },
    /// FastAPI's `{"detail": <object>}` (family B): domain refusals whose
    /// body the reference's clients read as an object.
    #[error("{status}")]
    Detail { status: StatusCode, detail: Value },
    /// Any other envelope code with its own status (`ip_denied`,
    /// `project_inactive`, ...).
    #[error("{message}")]
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Value,
    },
}

impl ApiError {
    /// 403 `ip_denied`: the source address is outside an allowlist.
    pub fn ip_denied(surface: &'static str) -> ApiError {
        ApiError::Coded {
            status: StatusCode::FORBIDDEN,
            code: "ip_denied",
            message: "source address is not allowed".into(),
            details: json!({ "surface": surface }),
        }
    }

    /// No `Z4J_SECRET` to key a token hash or a derived secret with.
    pub fn no_master_secret() -> ApiError {
        ApiError::Internal("Z4J_SECRET is not configured".into())
    }

    /// 404 `invalid_or_expired`: every problem of a single-use token
    /// (unknown, expired, used, revoked) looks the same.
    pub fn invalid_or_expired() -> ApiError {
        ApiError::NotFound {
            message: "invalid_or_expired".into(),
            details: json!({}),
        }
    }

    /// 403 `project_inactive`: the agent's project is archived.
    pub fn project_inactive() -> ApiError {
        ApiError::Coded {
            status: StatusCode::FORBIDDEN,
            code: "project_inactive",
            message: "the agent's project is archived".into(),
            details: json!({ "reason": "project_inactive" }),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaIssue {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: Vec<Value>,
    pub msg: String,
}

impl SchemaIssue {
    pub fn new(kind: &'static str, loc: &[&str], msg: impl Into<String>) -> SchemaIssue {
        SchemaIssue {
            kind,
            loc: loc.iter().map(|s| Value::from(*s)).collect(),
            msg: msg.into(),
        }
    }

    /// A NUL character at `loc` (specs/decisions.md H8).
    pub fn nul(loc: Vec<Value>) -> SchemaIssue {
        SchemaIssue {
            kind: "value_error",
            loc,
            msg: "Value error, text must not contain a NUL character".into(),
        }
    }
}

/// The envelope a response carries until the request-id layer renders it.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::Unavailable("the database is unavailable; retry shortly".into());
        }
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details, retry_after) = match self {
            ApiError::Validation { message, details } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                message,
                details,
                None,
            ),
            ApiError::Unauthenticated(m) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                m,
                json!({}),
                None,
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, json!({}), None),
            ApiError::NotFound { message, details } => {
                (StatusCode::NOT_FOUND, "not_found", message, details, None)
            }
            ApiError::Conflict { message, details } => {
                (StatusCode::CONFLICT, "conflict", message, details, None)
            }
            ApiError::RateLimited {
                message,
                retry_after_secs,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                message,
                json!({}),
                retry_after_secs,
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                m,
                json!({}),
                None,
            ),
            ApiError::Coded {
                status,
                code,
                message,
                details,
            } => (status, code, message, details, None),
            ApiError::TooManyRequests {
                bucket,
                retry_after_secs,
            } => {
                let detail =
                    format!("too many requests; retry in {retry_after_secs} seconds ({bucket})");
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({ "detail": detail })),
                )
                    .into_response();
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    resp.headers_mut().insert("retry-after", v);
                }
                return resp;
            }
            ApiError::Detail { status, detail } => {
                return (status, axum::Json(json!({ "detail": detail }))).into_response();
            }
            ApiError::Schema(issues) => {
                let body = json!({ "detail": issues });
                return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
            }
            ApiError::Internal(detail) => {
                // Logged with detail, answered without it.
                tracing::error!(error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the brain encountered an unexpected error".to_owned(),
                    json!({}),
                    None,
                )
            }
        };
        let envelope = Envelope {
            code,
            message,
            details,
        };
        let mut resp = (status, axum::Json(render(&envelope, None))).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp.extensions_mut().insert(envelope);
        resp
    }
}

pub fn render(e: &Envelope, request_id: Option<&str>) -> Value {
    json!({
        "error": e.code,
        "message": e.message,
        "request_id": request_id,
        "details": e.details,
    })
}
