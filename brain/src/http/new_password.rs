//! A password someone chose (user creation, admin set, self-service
//! change, reset, invitation): the policy first (422 naming the reason),
//! then its argon2id hash, computed off the async executor.

use super::error::ApiError;
use crate::auth::{password, policy};
use crate::settings::Settings;
use serde_json::json;

pub async fn accepted_hash(s: &Settings, pw: String) -> Result<String, ApiError> {
    policy::check(&pw, s.password_min_length as usize).map_err(|v| ApiError::Validation {
        message: v.message,
        details: json!({"reason": v.reason}),
    })?;
    password::hash(pw, password::Cost::from_settings(s))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}
