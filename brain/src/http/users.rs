//! Users (global admins) and project memberships (project admins), http-api
//! 4.5. Writes need CSRF and a fresh second factor.

use super::access::{self, Role};
use super::auth::user_json;
use super::body::{self, Fields};
use super::error::{conflict, ApiError, SchemaIssue};
use super::{session, Shared};
use crate::audit::{self, Entry};
use crate::fleet::live::{close, Scope};
use crate::store::users::{self, Membership, NewUser};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use uuid::Uuid;

pub(super) const ROLES: &[&str] = &["viewer", "auditor", "operator", "admin"];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{id}", get(read).patch(update).delete(remove))
        .route("/api/v1/users/{id}/password", post(set_password))
        .route(
            "/api/v1/projects/{slug}/memberships",
            get(list_members).post(add_member),
        )
        .route(
            "/api/v1/projects/{slug}/memberships/{id}",
            patch(change_member).delete(remove_member),
        )
}

pub(super) fn user_admin_json(u: &users::User) -> Value {
    let mut v = user_json(u);
    v["is_active"] = json!(u.is_active);
    v["mfa_enrolled"] = json!(u.mfa_enrolled_at.is_some());
    v
}

pub(super) fn member_json(m: &Membership, slug: &str) -> Value {
    json!({
        "id": m.id,
        "user_id": m.user_id,
        "project_id": m.project_id,
        "project_slug": slug,
        "user_email": m.user_email,
        "user_display_name": m.user_display_name,
        "role": m.role,
        "created_at": m.created_at.to_rfc3339(),
    })
}

fn not_found(what: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("{what} not found"),
        details: json!({}),
    }
}

/// A global admin, for reads; writes also pass CSRF and the freshness gate.
async fn admin(
    state: &Shared,
    headers: &HeaderMap,
    write: bool,
) -> Result<session::Caller, ApiError> {
    let caller = session::require(state, headers).await?;
    if !caller.user.is_admin {
        return Err(ApiError::Forbidden("admin role required".into()));
    }
    if write {
        access::csrf(&caller, headers)?;
        access::fresh_mfa(&caller, &state.settings)?;
    }
    Ok(caller)
}

async fn list(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers, false).await?;
    let q = super::query::Query::parse(raw).0;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| (1..=500).contains(l))
        .unwrap_or(100);
    let offset = q
        .get("offset")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let rows = users::list(&state.db, limit, offset).await?;
    Ok(Json(Value::Array(
        rows.iter().map(user_admin_json).collect(),
    )))
}

async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = admin(&state, &headers, true).await?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let canonical = f.email("email");
    let pw = f.text("password", 8, 256, true);
    let display = f.text("display_name", 1, 200, false);
    let first = f.text("first_name", 1, 100, false);
    let last = f.text("last_name", 1, 100, false);
    let tz = f
        .text("timezone", 1, 64, false)
        .unwrap_or_else(|| "UTC".into());
    let is_admin = f.boolean("is_admin", false);
    let (canonical, pw) = f.finish(canonical.zip(pw))?;
    let hash = super::new_password::accepted_hash(&state.settings, pw).await?;
    let mut tx = audit::begin(&state.db).await?;
    let u = users::create(
        &mut tx,
        &NewUser {
            email: &canonical,
            password_hash: &hash,
            display_name: display.as_deref(),
            first_name: first.as_deref(),
            last_name: last.as_deref(),
            is_admin,
            timezone: &tz,
        },
    )
    .await
    .map_err(conflict)?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.created", "success")
            .target("user", u.id)
            .by(Some(caller.user.id))
            .from(None, &headers)
            .meta(json!({"email": u.email, "is_admin": u.is_admin})),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user_admin_json(&u))).into_response())
}

/// The profile fields a user or an admin may change, each optional.
pub(super) struct ProfileEdit {
    display_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    timezone: Option<String>,
}

impl ProfileEdit {
    pub(super) fn read(f: &mut Fields) -> ProfileEdit {
        ProfileEdit {
            display_name: f.text("display_name", 1, 200, false),
            first_name: f.text("first_name", 1, 100, false),
            last_name: f.text("last_name", 1, 100, false),
            timezone: f.text("timezone", 1, 64, false),
        }
    }

    /// The names of the fields given.
    pub(super) fn given(&self) -> Vec<&'static str> {
        [
            ("display_name", self.display_name.is_some()),
            ("first_name", self.first_name.is_some()),
            ("last_name", self.last_name.is_some()),
            ("timezone", self.timezone.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    pub(super) fn apply(self, u: &mut users::User) {
        u.display_name = self.display_name.or(u.display_name.take());
        u.first_name = self.first_name.or(u.first_name.take());
        u.last_name = self.last_name.or(u.last_name.take());
        if let Some(tz) = self.timezone {
            u.timezone = tz;
        }
    }
}

async fn load(state: &Shared, id: &str) -> Result<users::User, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| not_found("user"))?;
    users::find(&state.db, id)
        .await?
        .ok_or_else(|| not_found("user"))
}

async fn read(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers, false).await?;
    Ok(Json(user_admin_json(&load(&state, &id).await?)))
}

async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = admin(&state, &headers, true).await?;
    let mut u = load(&state, &id).await?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let profile = ProfileEdit::read(&mut f);
    let is_admin = obj
        .contains_key("is_admin")
        .then(|| f.boolean("is_admin", u.is_admin));
    let is_active = obj
        .contains_key("is_active")
        .then(|| f.boolean("is_active", u.is_active));
    f.finish(Some(()))?;
    if u.id == caller.user.id && (is_admin == Some(false) || is_active == Some(false)) {
        return Err(ApiError::Conflict {
            message: "you cannot remove your own admin role or deactivate yourself".into(),
            details: json!({}),
        });
    }
    profile.apply(&mut u);
    // Live sockets: a deactivated user's end; a demoted admin's reconnect
    // and face the membership check.
    let live_close = if is_active == Some(false) && u.is_active {
        Some(close::UNAUTHENTICATED)
    } else if is_admin == Some(false) && u.is_admin {
        Some(close::TRY_AGAIN)
    } else {
        None
    };
    u.is_admin = is_admin.unwrap_or(u.is_admin);
    u.is_active = is_active.unwrap_or(u.is_active);
    let mut tx = audit::begin(&state.db).await?;
    users::update(&mut tx, &u).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.updated", "success")
            .target("user", u.id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    if let Some(code) = live_close {
        state.fleet().live.close(Scope::User(u.id), code);
    }
    Ok(Json(user_admin_json(&load(&state, &id).await?)))
}

async fn remove(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = admin(&state, &headers, true).await?;
    let u = load(&state, &id).await?;
    if u.id == caller.user.id {
        return Err(ApiError::Conflict {
            message: "you cannot delete yourself".into(),
            details: json!({}),
        });
    }
    let mut tx = audit::begin(&state.db).await?;
    users::delete(&mut tx, u.id).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.deleted", "success")
            .target("user", u.id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    state
        .fleet()
        .live
        .close(Scope::User(u.id), close::UNAUTHENTICATED);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_password(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = admin(&state, &headers, true).await?;
    let u = load(&state, &id).await?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    // `new_password`, as the reference's dashboard sends it.
    let pw = f.text("new_password", 8, 256, true);
    let pw = f.finish(pw)?;
    let hash = super::new_password::accepted_hash(&state.settings, pw).await?;
    let mut tx = audit::begin(&state.db).await?;
    users::set_password(&mut tx, u.id, &hash).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.password.reset", "success")
            .target("user", u.id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn role_of(obj: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match obj.get("role").and_then(Value::as_str) {
        Some(r) if ROLES.contains(&r) => Ok(r.to_owned()),
        _ => Err(ApiError::Schema(vec![SchemaIssue::new(
            "literal_error",
            &["body", "role"],
            "Input should be 'viewer', 'auditor', 'operator' or 'admin'",
        )])),
    }
}

async fn list_members(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let a = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = users::memberships(&state.db, a.project.id).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|m| member_json(m, &slug)).collect(),
    )))
}

async fn member_writer(
    state: &Shared,
    headers: &HeaderMap,
    slug: &str,
) -> Result<access::ProjectAccess, ApiError> {
    access::project_writer(state, headers, slug, Role::Admin).await
}

async fn add_member(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let a = member_writer(&state, &headers, &slug).await?;
    let obj = body::object(&body)?;
    let user_id = obj
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(|u| Uuid::parse_str(u).ok())
        .ok_or_else(|| {
            ApiError::Schema(vec![SchemaIssue::new(
                "uuid_parsing",
                &["body", "user_id"],
                "Input should be a valid UUID",
            )])
        })?;
    let role = role_of(&obj)?;
    let mut tx = audit::begin(&state.db).await?;
    if users::find(&mut tx, user_id).await?.is_none() {
        return Err(not_found("user"));
    }
    let id = users::add_membership(&mut tx, a.project.id, user_id, &role)
        .await
        .map_err(conflict)?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("membership.granted", "success")
            .target("membership", id)
            .in_project(a.project.id)
            .by(Some(a.caller.user.id))
            .from(None, &headers)
            .meta(json!({"user_id": user_id, "role": role})),
    )
    .await?;
    let m = users::membership(&state.db, a.project.id, id)
        .await?
        .ok_or_else(|| not_found("membership"))?;
    Ok((StatusCode::CREATED, Json(member_json(&m, &slug))).into_response())
}

async fn change_member(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let a = member_writer(&state, &headers, &slug).await?;
    let id = Uuid::parse_str(&id).map_err(|_| not_found("membership"))?;
    let role = role_of(&body::object(&body)?)?;
    let mut tx = audit::begin(&state.db).await?;
    if !users::set_membership_role(&mut tx, a.project.id, id, &role).await? {
        return Err(not_found("membership"));
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("membership.updated", "success")
            .target("membership", id)
            .in_project(a.project.id)
            .by(Some(a.caller.user.id))
            .from(None, &headers)
            .meta(json!({"role": role})),
    )
    .await?;
    let m = users::membership(&state.db, a.project.id, id)
        .await?
        .ok_or_else(|| not_found("membership"))?;
    Ok(Json(member_json(&m, &slug)))
}

async fn remove_member(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = member_writer(&state, &headers, &slug).await?;
    let id = Uuid::parse_str(&id).map_err(|_| not_found("membership"))?;
    let member = users::membership(&state.db, a.project.id, id)
        .await?
        .ok_or_else(|| not_found("membership"))?;
    let mut tx = audit::begin(&state.db).await?;
    if !users::remove_membership(&mut tx, a.project.id, id).await? {
        return Err(not_found("membership"));
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("membership.revoked", "success")
            .target("membership", id)
            .in_project(a.project.id)
            .by(Some(a.caller.user.id))
            .from(None, &headers),
    )
    .await?;
    // A global admin still sees the project: their sockets stay.
    let still_sees = users::find(&state.db, member.user_id)
        .await?
        .is_some_and(|u| u.is_admin);
    if !still_sees {
        let scope = Scope::Member {
            user: member.user_id,
            project: a.project.id,
        };
        state.fleet().live.close(scope, close::FORBIDDEN);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
