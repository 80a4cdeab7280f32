//! Who may do what on a project (spec http-api 4.1): session, project
//! membership and role, CSRF on unsafe methods, the fresh-MFA gate.

use super::error::ApiError;
use super::session::{self, Caller};
use super::ApiState;
use crate::store::projects::{self, Project};
use axum::http::HeaderMap;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Auditor,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "auditor" => Role::Auditor,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Auditors and admins read a project's audit log (dashboard spec 2.10).
    pub fn reads_audit(self) -> bool {
        matches!(self, Role::Auditor | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

pub struct ProjectAccess {
    pub caller: Caller,
    pub project: Project,
    pub role: Role,
}

fn slug_shape_ok(slug: &str) -> bool {
    let b = slug.as_bytes();
    (2..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
}

/// The caller's access to `slug` with at least `need`. Unknown projects and
/// projects the caller is not a member of look the same (404).
pub async fn project(
    state: &ApiState,
    headers: &HeaderMap,
    slug: &str,
    need: Role,
) -> Result<ProjectAccess, ApiError> {
    let caller = session::require(state, headers).await?;
    let not_found = || ApiError::NotFound {
        message: format!("project '{slug}' not found"),
        details: json!({}),
    };
    if !slug_shape_ok(slug) {
        return Err(not_found());
    }
    let project = projects::find_by_slug(&state.db, slug)
        .await?
        .ok_or_else(not_found)?;
    let role = if caller.user.is_admin {
        Role::Admin
    } else {
        projects::role_of(&state.db, caller.user.id, project.id)
            .await?
            .as_deref()
            .and_then(Role::parse)
            .ok_or_else(not_found)?
    };
    if role < need {
        return Err(ApiError::Coded {
            status: axum::http::StatusCode::FORBIDDEN,
            code: "forbidden",
            message: format!(
                "role '{}' is not sufficient (need at least '{}')",
                role.as_str(),
                need.as_str()
            ),
            details: json!({"have": role.as_str(), "need": need.as_str()}),
        });
    }
    Ok(ProjectAccess {
        caller,
        project,
        role,
    })
}

/// A write on a project: the role, the CSRF token and, for sessions of
/// users with a second factor, a fresh verification.
pub async fn project_writer(
    state: &ApiState,
    headers: &HeaderMap,
    slug: &str,
    need: Role,
) -> Result<ProjectAccess, ApiError> {
    let access = project(state, headers, slug, need).await?;
    csrf(&access.caller, headers)?;
    fresh_mfa(&access.caller, &state.settings)?;
    Ok(access)
}

/// Double-submit CSRF: `X-CSRF-Token` must equal the session row's token.
pub fn csrf(caller: &Caller, headers: &HeaderMap) -> Result<(), ApiError> {
    if caller.via_key {
        return Ok(()); // a pure bearer request carries no ambient credential
    }
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if z4j_protocol::secret::ct_eq(presented, &caller.session.csrf_token) {
        Ok(())
    } else {
        Err(ApiError::Coded {
            status: axum::http::StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "csrf token mismatch".into(),
            details: json!({"reason": "csrf_mismatch"}),
        })
    }
}

/// The sensitive-action freshness gate (spec 3.7): users without MFA pass;
/// enrolled users need a verification within
/// `Z4J_MFA_VERIFICATION_TTL_SECONDS`.
pub fn fresh_mfa(caller: &Caller, s: &crate::settings::Settings) -> Result<(), ApiError> {
    if caller.via_key {
        return Err(ApiError::Unauthenticated(
            "this action needs a session cookie with a fresh second factor".into(),
        ));
    }
    if caller.user.mfa_enrolled_at.is_none() {
        return Ok(());
    }
    let ttl = s.mfa_verification_ttl_seconds;
    let fresh = caller
        .session
        .mfa_verified_at
        .is_some_and(|t| t.plus_seconds(ttl) > crate::store::Ts::now());
    if fresh {
        Ok(())
    } else {
        Err(ApiError::Coded {
            status: axum::http::StatusCode::FORBIDDEN,
            code: "mfa_reverify_required",
            message: "fresh MFA verification required".into(),
            details: json!({"ttl_seconds": ttl}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ranked() {
        assert!(Role::Viewer < Role::Auditor && Role::Auditor < Role::Operator);
        assert!(Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn unsafe_slugs_are_rejected_before_lookup() {
        assert!(slug_shape_ok("default"));
        assert!(slug_shape_ok("team-a1"));
        assert!(!slug_shape_ok("-x"));
        assert!(!slug_shape_ok("UPPER"));
        assert!(!slug_shape_ok("a"));
        assert!(!slug_shape_ok("../etc"));
    }
}
