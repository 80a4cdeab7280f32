//! Project invitations. A project admin mints one for an e-mail address
//! and a role and relays the token (shown once; the brain keeps only its
//! keyed hash); the invitee previews it and accepts it once, which creates
//! the account and the membership in one transaction with its audit row.

use super::access::{self, Role};
use super::body::{self, Fields};
use super::error::{ApiError, SchemaIssue};
use super::Shared;
use crate::audit::{self, Entry};
use crate::net::client_ip;
use crate::store::invitations::{self, Invitation, NewInvitation};
use crate::store::{projects, users, Ts};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use uuid::Uuid;

use super::users::ROLES;
const TTL_DAYS_DEFAULT: i64 = 7;
const TTL_DAYS_MIN: i64 = 1;
const TTL_DAYS_MAX: i64 = 30;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/projects/{slug}/invitations", get(list).post(mint))
        .route("/api/v1/projects/{slug}/invitations/{id}", delete(revoke))
        .route("/api/v1/invitations/preview", post(preview))
        .route("/api/v1/invitations/accept", post(accept))
}

fn token_hash(state: &Shared, token: &str) -> Result<String, ApiError> {
    crate::auth::keyed::person_token(&state.settings, token).ok_or_else(ApiError::no_master_secret)
}

pub(super) fn invitation_json(i: &Invitation) -> Value {
    json!({
        "id": i.id,
        "project_id": i.project_id,
        "email": i.email,
        "role": i.role,
        "invited_by": i.invited_by,
        "expires_at": i.expires_at.to_rfc3339(),
        "accepted_at": i.accepted_at.map(|t| t.to_rfc3339()),
        "revoked_at": i.revoked_at.map(|t| t.to_rfc3339()),
        "created_at": i.created_at.to_rfc3339(),
    })
}

/// The shared per-IP `invitation` bucket of the two public routes.
fn throttle(state: &Shared, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let (s, window) = (&state.settings, &state.auth.invitation_per_ip);
    super::bucket::hit_bucket(s, window, "invitation", peer, headers).map(|_| ())
}

async fn list(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let a = access::project(&state, &headers, &slug, Role::Admin).await?;
    let rows = invitations::pending(&state.db, a.project.id, Ts::now()).await?;
    Ok(Json(Value::Array(
        rows.iter().map(invitation_json).collect(),
    )))
}

async fn mint(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let a = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let canonical = f.email("email");
    let role = f
        .text("role", 1, 20, false)
        .unwrap_or_else(|| "viewer".into());
    if !ROLES.contains(&role.as_str()) {
        f.issues.push(SchemaIssue::new(
            "value_error",
            &["body", "role"],
            "Value error, role must be one of ['admin', 'auditor', 'operator', 'viewer']",
        ));
    }
    let ttl_days = match obj.get("ttl_days") {
        None | Some(Value::Null) => TTL_DAYS_DEFAULT,
        Some(v) => match v.as_i64() {
            Some(d) if (TTL_DAYS_MIN..=TTL_DAYS_MAX).contains(&d) => d,
            _ => {
                f.issues.push(SchemaIssue::new(
                    "int_range",
                    &["body", "ttl_days"],
                    format!(
                        "Input should be an integer from {TTL_DAYS_MIN} to {TTL_DAYS_MAX} (days)"
                    ),
                ));
                TTL_DAYS_DEFAULT
            }
        },
    };
    let canonical = f.finish(canonical)?;
    let token = crate::bootstrap::secrets::random_token(32);
    let hash = token_hash(&state, &token)?;
    let mut tx = audit::begin(&state.db).await?;
    if let Some(existing) = users::find_by_email(&mut tx, &canonical).await? {
        if projects::role_of(&mut tx, existing.id, a.project.id)
            .await?
            .is_some()
        {
            return Err(ApiError::Conflict {
                message: "user is already a member of this project".into(),
                details: json!({"email": canonical}),
            });
        }
    }
    let inv = invitations::create(
        &mut tx,
        &NewInvitation {
            project_id: a.project.id,
            email: &canonical,
            role: &role,
            invited_by: a.caller.user.id,
            token_hash: &hash,
            expires_at: Ts::now().plus_seconds(ttl_days * 86_400),
        },
    )
    .await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("invitation.mint", "success")
            .target("invitation", inv.id)
            .in_project(a.project.id)
            .by(Some(a.caller.user.id))
            .from(None, &headers)
            .meta(json!({"email": canonical, "role": role, "ttl_days": ttl_days})),
    )
    .await?;
    // Mailed through the project's e-mail channel when it has one; the
    // admin relays the token otherwise (or when the send fails).
    // The send goes on in the background if it outlasts half the request
    // budget (at most 10 s): the token must reach the admin regardless.
    let wait = std::time::Duration::from_millis(
        (state.settings.request_timeout_seconds.max(1) as u64 * 500).min(10_000),
    );
    let send = tokio::spawn({
        let (state, project, inv, token) =
            (state.clone(), a.project.clone(), inv.clone(), token.clone());
        async move { mail_invitation(&state, &project, &inv, &token).await }
    });
    let email_sent = matches!(tokio::time::timeout(wait, send).await, Ok(Ok(true)));
    let body = json!({
        "invitation": invitation_json(&inv),
        "token": token,
        "accept_url_path": format!("/invite#token={token}"),
        "email_sent": email_sent,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn mail_invitation(
    state: &Shared,
    project: &crate::store::projects::Project,
    inv: &Invitation,
    token: &str,
) -> bool {
    let s = &state.settings;
    let link = format!(
        "{}/invite#token={token}",
        crate::bootstrap::setup_token::public_base(s)
    );
    let text = format!(
        "You have been invited to the z4j project {name} ({slug}) as {role}.\n\n\
         To create your account, open:\n{link}\n\n\
         The link works once and expires at {expires}.\n\n-- z4j\n",
        name = project.name,
        slug = project.slug,
        role = inv.role,
        expires = inv.expires_at.to_rfc3339(),
    );
    let subject = format!("z4j: invitation to {}", project.name);
    match crate::notify::mail_person(&state.db, s, &[project.id], &inv.email, &subject, &text).await
    {
        Ok(channel) => {
            tracing::info!(invitation = %inv.id, channel = %channel, "invitation mailed");
            true
        }
        Err(e) => {
            tracing::info!(invitation = %inv.id, reason = %e, "invitation not mailed; the admin relays the token");
            false
        }
    }
}

async fn revoke(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let not_found = || ApiError::NotFound {
        message: "invitation not found".into(),
        details: json!({"invitation_id": id}),
    };
    let iid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut tx = audit::begin(&state.db).await?;
    let inv = invitations::find(&mut tx, a.project.id, iid)
        .await?
        .ok_or_else(not_found)?;
    if !inv.pending(Ts::now()) || !invitations::revoke(&mut tx, iid, Ts::now()).await? {
        return Err(ApiError::Conflict {
            message: "invitation is no longer pending; cannot revoke".into(),
            details: json!({"invitation_id": iid}),
        });
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("invitation.revoke", "success")
            .target("invitation", iid)
            .in_project(a.project.id)
            .by(Some(a.caller.user.id))
            .from(None, &headers),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The token from a body that must hold one as a string (any length: a
/// malformed token takes the same path as an unknown one).
fn token_of(obj: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match obj.get("token") {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err(ApiError::Schema(vec![SchemaIssue::new(
            "string_type",
            &["body", "token"],
            "Input should be a valid string",
        )])),
    }
}

async fn preview(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = body::object(&body)?;
    throttle(&state, peer, &headers)?;
    let token = token_of(&obj)?;
    let inv = invitations::find_by_hash(&state.db, &token_hash(&state, &token)?)
        .await?
        .filter(|i| i.pending(Ts::now()))
        .ok_or_else(ApiError::invalid_or_expired)?;
    let project = projects::find(&state.db, inv.project_id)
        .await?
        .filter(|p| p.is_active)
        .ok_or_else(ApiError::invalid_or_expired)?;
    let body = json!({
        "email": inv.email,
        "role": inv.role,
        "project_slug": project.slug,
        "project_name": project.name,
        "expires_at": inv.expires_at.to_rfc3339(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

async fn accept(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = body::object(&body)?;
    throttle(&state, peer, &headers)?;
    let mut f = Fields::new(&obj);
    let token = f.text("token", 10, 256, true);
    let display = f.text("display_name", 1, 200, true);
    let pw = f.text("password", 8, 256, true);
    let ((token, display), pw) = f.finish(token.zip(display).zip(pw))?;
    let hash = token_hash(&state, &token)?;
    // Cheap refusals before the password work.
    invitations::find_by_hash(&state.db, &hash)
        .await?
        .filter(|i| i.pending(Ts::now()))
        .ok_or_else(ApiError::invalid_or_expired)?;
    let pw_hash = super::new_password::accepted_hash(&state.settings, pw).await?;
    // Re-read inside the transaction: a concurrent accept or revoke wins
    // cleanly, and the user, membership and consumption land together.
    let mut tx = audit::begin(&state.db).await?;
    let inv = invitations::find_by_hash(&mut tx, &hash)
        .await?
        .filter(|i| i.pending(Ts::now()))
        .ok_or_else(ApiError::invalid_or_expired)?;
    let project = projects::find(&mut tx, inv.project_id)
        .await?
        .filter(|p| p.is_active)
        .ok_or_else(ApiError::invalid_or_expired)?;
    if users::find_by_email(&mut tx, &inv.email).await?.is_some() {
        return Err(ApiError::Conflict {
            message: "a user with this email already exists; ask the admin to add you to the \
                      project directly instead of using this invitation link"
                .into(),
            details: json!({"email": inv.email}),
        });
    }
    let user = users::create(
        &mut tx,
        &users::NewUser {
            email: &inv.email,
            password_hash: &pw_hash,
            display_name: Some(display.trim()),
            first_name: None,
            last_name: None,
            is_admin: false,
            timezone: "UTC",
        },
    )
    .await?;
    users::add_membership(&mut tx, project.id, user.id, &inv.role).await?;
    if !invitations::accept(&mut tx, inv.id, user.id, Ts::now()).await? {
        return Err(ApiError::invalid_or_expired());
    }
    let ip = client_ip::of_request(&state.settings, peer, &headers).to_string();
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("invitation.accept", "success")
            .target("invitation", inv.id)
            .in_project(project.id)
            .by(Some(user.id))
            .from(Some(ip), &headers)
            .meta(json!({"email": inv.email, "role": inv.role})),
    )
    .await?;
    let body = json!({"user_id": user.id, "project_slug": project.slug, "role": inv.role});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
