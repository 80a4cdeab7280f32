//! The error envelope (defined in `net::error`, shared with the agent
//! transports) and how the REST surface maps domain errors onto it.

pub use crate::net::error::{render, ApiError, Envelope, SchemaIssue};
use axum::http::StatusCode;
use serde_json::json;

/// An action whose audit row cannot be written does not happen: the
/// transaction holding both rolls back and the caller is told why.
impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        use crate::audit::AuditError;
        match e {
            AuditError::StateTampered => ApiError::Coded {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "audit_chain_broken",
                message: "the action was not performed: its audit row cannot be appended because \
                          the audit chain state does not verify under Z4J_SECRET or \
                          Z4J_PREVIOUS_SECRETS; run `z4j audit verify`, then restore the \
                          previous secret or `z4j audit reseal --confirm`"
                    .into(),
                details: json!({}),
            },
            AuditError::NoKey => ApiError::Internal(e.to_string()),
            AuditError::Store(s) => s.into(),
        }
    }
}

/// A repository's refusal of a duplicate (`StoreError::Conflict`) as 409
/// `conflict` with its message; any other store error as usual.
pub fn conflict(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Conflict(m) => ApiError::Conflict {
            message: m,
            details: json!({}),
        },
        other => other.into(),
    }
}
