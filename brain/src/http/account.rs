//! The signed-in user's own account: `GET`/`PATCH /auth/me` (profile and
//! project memberships) and the session list with its revocations. Cookie
//! sessions only: an API key cannot see or end its owner's sessions.

use super::auth::user_json;
use super::body::{self, Fields};
use super::error::ApiError;
use super::session;
use super::Shared;
use crate::audit::{self, Entry};
use crate::store::{projects, sessions, users, Ts};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use uuid::Uuid;

/// The synthesized admin memberships on `/me` stop here (a switcher
/// projection, not the project catalogue).
const ADMIN_ME_PROJECT_CAP: i64 = 500;
/// Sessions shown by the session list.
const SESSION_LIST_CAP: i64 = 100;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/auth/me", get(me).patch(update_me))
        .route("/api/v1/auth/sessions", get(list_sessions))
        .route("/api/v1/auth/sessions/revoke-others", post(revoke_others))
        .route("/api/v1/auth/sessions/{id}/revoke", post(revoke_session))
}

/// The user object plus `memberships`: a member's roles in active
/// projects, or one `admin` entry per active project for a global admin.
async fn me_json(state: &Shared, u: &users::User) -> Result<Value, ApiError> {
    let memberships: Vec<Value> = if u.is_admin {
        projects::list_active(&state.db, None, ADMIN_ME_PROJECT_CAP)
            .await?
            .iter()
            .map(|p| json!({"project_id": p.id, "project_slug": p.slug, "role": "admin"}))
            .collect()
    } else {
        users::memberships_of(&state.db, u.id, i64::from(u16::MAX))
            .await?
            .into_iter()
            .map(|(id, slug, role)| json!({"project_id": id, "project_slug": slug, "role": role}))
            .collect()
    };
    let mut body = user_json(u);
    body["memberships"] = Value::Array(memberships);
    Ok(body)
}

/// Reachable before the second factor (the dashboard needs to know who
/// is signing in).
async fn me(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::cookie_only(session::require_session(&state, &headers).await?)?;
    Ok(Json(me_json(&state, &caller.user).await?))
}

async fn update_me(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = session::cookie_only(session::require(&state, &headers).await?)?;
    super::access::csrf(&caller, &headers)?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let profile = super::users::ProfileEdit::read(&mut f);
    f.finish(Some(()))?;
    let mut u = caller.user;
    let changed = profile.given();
    if !changed.is_empty() {
        profile.apply(&mut u);
        let mut tx = audit::begin(&state.db).await?;
        users::update_profile(&mut tx, &u).await?;
        audit::commit(
            tx,
            &state.settings,
            &Entry::new("user.profile_update", "success")
                .target("user", u.id)
                .by(Some(u.id))
                .from(None, &headers)
                .meta(json!({"fields": changed})),
        )
        .await?;
    }
    let u = users::find(&state.db, u.id)
        .await?
        .ok_or_else(|| ApiError::Internal("user vanished".into()))?;
    Ok(Json(me_json(&state, &u).await?))
}

async fn list_sessions(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::cookie_only(session::require(&state, &headers).await?)?;
    Ok(Json(Value::Array(sessions_of(&state, &caller).await?)))
}

/// The caller's live sessions as the REST API lists them.
pub(super) async fn sessions_of(
    state: &Shared,
    caller: &session::Caller,
) -> Result<Vec<Value>, ApiError> {
    let rows = sessions::list_live(&state.db, caller.user.id, Ts::now(), SESSION_LIST_CAP).await?;
    Ok(rows
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "issued_at": s.issued_at.to_rfc3339(),
                "last_seen_at": s.last_seen_at.to_rfc3339(),
                "ip_at_issue": s.ip_at_issue,
                "user_agent_at_issue": s.user_agent_at_issue,
                "is_current": s.id == caller.session.id,
            })
        })
        .collect())
}

async fn revoke_session(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::cookie_only(session::require(&state, &headers).await?)?;
    super::access::csrf(&caller, &headers)?;
    let not_found = || ApiError::NotFound {
        message: "session not found".into(),
        details: json!({"session_id": id}),
    };
    let sid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut tx = audit::begin(&state.db).await?;
    if !sessions::revoke_own(&mut tx, caller.user.id, sid, "user_revoke").await? {
        return Err(not_found());
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("auth.session_revoked", "success")
            .target("session", sid)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    state.fleet().live.close(
        crate::fleet::live::Scope::Session(sid),
        crate::fleet::live::close::UNAUTHENTICATED,
    );
    Ok(Json(json!({"revoked": true})))
}

async fn revoke_others(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::cookie_only(session::require(&state, &headers).await?)?;
    super::access::csrf(&caller, &headers)?;
    let mut tx = audit::begin(&state.db).await?;
    let n = sessions::revoke_others(
        &mut tx,
        caller.user.id,
        caller.session.id,
        "user_revoke_others",
    )
    .await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("auth.other_sessions_revoked", "success")
            .target("user", caller.user.id)
            .by(Some(caller.user.id))
            .from(None, &headers)
            .meta(json!({"current_session_id": caller.session.id, "revoked_count": n})),
    )
    .await?;
    state.fleet().live.close(
        crate::fleet::live::Scope::UserExcept {
            user: caller.user.id,
            keep: caller.session.id,
        },
        crate::fleet::live::close::UNAUTHENTICATED,
    );
    Ok(Json(json!({"revoked": true})))
}
