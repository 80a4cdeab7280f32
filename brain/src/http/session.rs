//! Who is calling: the session cookie, checked against its row.

use super::error::ApiError;
use super::ApiState;
use crate::auth::cookie;
use crate::store::sessions::{self, Session};
use crate::store::users::{self, User};
use crate::store::Ts;
use axum::http::HeaderMap;

pub struct Caller {
    pub user: User,
    /// For an API key, a stand-in (its id is the key's).
    pub session: Session,
    /// Authenticated by an API key (no CSRF, no second factor, no
    /// sensitive actions).
    pub via_key: bool,
    /// The project an API key is bound to (it sees only that project).
    pub bound_project: Option<uuid::Uuid>,
}

pub fn session_cookie_name(dev: bool) -> &'static str {
    if dev {
        "z4j_session"
    } else {
        "__Host-z4j_session"
    }
}

pub fn csrf_cookie_name(dev: bool) -> &'static str {
    if dev {
        "z4j_csrf"
    } else {
        "__Host-z4j_csrf"
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn now_secs() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// The authenticated caller, or `None` for an anonymous request.
pub async fn current(state: &ApiState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let s = &state.settings;
    let Some(value) = cookie_value(headers, session_cookie_name(state.dev_posture)) else {
        return key_caller(state, headers).await;
    };
    let Some(current_secret) = s.session_secret.as_deref() else {
        return Ok(None);
    };
    let mut secrets: Vec<&str> = vec![current_secret];
    secrets.extend(s.previous_session_secrets.0.iter().map(String::as_str));
    let lifetime = s
        .session_absolute_lifetime_seconds
        .max(s.session_remember_me_lifetime_seconds);
    let Ok(sid) = cookie::verify(&secrets, value, now_secs(), lifetime as u64) else {
        return Ok(None);
    };
    let Some(session) = sessions::find(&state.db, sid).await? else {
        return Ok(None);
    };
    let now = Ts::now();
    let idle = s.session_idle_timeout_seconds;
    // Remember-me sessions live their whole lifetime without an idle limit.
    let remembered = (session.expires_at.0 - session.issued_at.0).num_seconds()
        >= s.session_remember_me_lifetime_seconds;
    if session.revoked_at.is_some()
        || session.expires_at <= now
        || (!remembered && session.last_seen_at.plus_seconds(idle) < now)
    {
        return Ok(None);
    }
    if s.session_pin_user_agent {
        let ua: Option<String> = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|u| u.chars().take(256).collect());
        if ua != session.user_agent_at_issue {
            // A stolen cookie replayed from another client: the session
            // is over for good, not just for this request.
            sessions::revoke(&state.db, sid, "user_agent_changed").await?;
            return Ok(None);
        }
    }
    let Some(user) = users::find(&state.db, session.user_id).await? else {
        sessions::revoke(&state.db, sid, "user_missing").await?;
        return Ok(None);
    };
    if !user.is_active {
        sessions::revoke(&state.db, sid, "deactivated").await?;
        return Ok(None);
    }
    if user
        .password_changed_at
        .is_some_and(|changed| session.issued_at.plus_seconds(1) < changed)
    {
        return Ok(None);
    }
    // Slide the idle window, writing at most once per refresh interval.
    let refresh = idle.clamp(2, 120) / 2;
    if session.last_seen_at.plus_seconds(refresh) <= now {
        sessions::touch(&state.db, sid, now).await?;
    }
    Ok(Some(Caller {
        user,
        session,
        via_key: false,
        bound_project: None,
    }))
}

/// The owner of the API key the key layer admitted (its id in the internal
/// header, which clients cannot set).
async fn key_caller(state: &ApiState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let Some(id) = headers
        .get(super::api_keys::KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
    else {
        return Ok(None);
    };
    let Some(key) = crate::store::api_keys::find(&state.db, id).await? else {
        return Ok(None);
    };
    let Some(user) = users::find(&state.db, key.user_id).await? else {
        return Ok(None);
    };
    let now = Ts::now();
    Ok(Some(Caller {
        user,
        session: Session {
            id: key.id,
            user_id: key.user_id,
            csrf_token: String::new(),
            issued_at: key.created_at,
            expires_at: key.expires_at.unwrap_or(now.plus_seconds(60)),
            last_seen_at: now,
            revoked_at: None,
            user_agent_at_issue: None,
            mfa_verified_at: None,
        },
        via_key: true,
        bound_project: key.project_id,
    }))
}

/// Refuses an API-key caller: routes about the signed-in person's own
/// sessions and password take a cookie session only.
pub fn cookie_only(caller: Caller) -> Result<Caller, ApiError> {
    if caller.via_key {
        return Err(ApiError::Unauthenticated(
            "a session cookie is required".into(),
        ));
    }
    Ok(caller)
}

/// Like [`current`], but anonymous callers get 401. For the few routes a
/// session may use before its second factor (me, logout, MFA status and
/// verification, enrolment).
pub async fn require_session(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    current(state, headers)
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("authentication required".into()))
}

/// A session allowed to use the account: its second factor verified when
/// the user has one (http-api 3.4), and MFA enrolled once an enforcement
/// deadline passed (3.8).
pub async fn require(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = require_session(state, headers).await?;
    if caller.via_key {
        return Ok(caller); // keys bypass the session-only MFA gates
    }
    if caller.user.mfa_enrolled_at.is_some() && caller.session.mfa_verified_at.is_none() {
        return Err(ApiError::Coded {
            status: axum::http::StatusCode::FORBIDDEN,
            code: "mfa_reverify_required",
            message: "second-factor verification required before this account can be used".into(),
            details: serde_json::json!({"reason": "mfa_verification_required"}),
        });
    }
    if let Some(deadline) = enrollment_deadline(&state.settings, &caller.user) {
        if deadline <= Ts::now() {
            return Err(ApiError::Coded {
                status: axum::http::StatusCode::FORBIDDEN,
                code: "mfa_enrollment_required",
                message: "MFA enrollment required before this account can be used".into(),
                details: serde_json::json!({"reason": "mfa_enrollment_required", "deadline": deadline.to_rfc3339()}),
            });
        }
    }
    Ok(caller)
}

/// Whether MFA enforcement targets this (un-enrolled) user.
pub fn enforced(s: &crate::settings::Settings, user: &crate::store::users::User) -> bool {
    user.mfa_enrolled_at.is_none()
        && (s.mfa_enforce_for_all || (s.mfa_enforce_for_admins && user.is_admin))
}

/// The enrolment deadline of a targeted user whose grace clock started.
pub fn enrollment_deadline(
    s: &crate::settings::Settings,
    user: &crate::store::users::User,
) -> Option<Ts> {
    if !enforced(s, user) {
        return None;
    }
    user.mfa_enforcement_started_at
        .map(|t| t.plus_seconds(s.mfa_enrollment_grace_days * 86_400))
}

/// `Set-Cookie` values for a new session (session + CSRF).
pub fn issue_cookies(state: &ApiState, session: &Session) -> Result<[String; 2], ApiError> {
    let s = &state.settings;
    let secret = s
        .session_secret
        .as_deref()
        .ok_or_else(|| ApiError::Internal("Z4J_SESSION_SECRET is not configured".into()))?;
    let value = cookie::sign(secret, session.id, now_secs());
    let max_age = (session.expires_at.0 - session.issued_at.0).num_seconds();
    let secure = if state.dev_posture { "" } else { "; Secure" };
    Ok([
        format!(
            "{}={value}; HttpOnly; Max-Age={max_age}; Path=/; SameSite={}{secure}",
            session_cookie_name(state.dev_posture),
            s.session_cookie_samesite
        ),
        format!(
            "{}={}; Max-Age={max_age}; Path=/; SameSite=strict{secure}",
            csrf_cookie_name(state.dev_posture),
            session.csrf_token
        ),
    ])
}
