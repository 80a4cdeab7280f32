//! Self-service password reset (http-api 2.6). The request always answers
//! `{"accepted": true}` after the login floor, whether or not the account
//! exists; for an active account it stores a 30-minute token (keyed hash)
//! and e-mails `<public_url>/reset#token=<t>` through an e-mail channel of
//! one of the user's projects, after the response. The confirmation sets
//! the new password, ends every session and remembered device and retires
//! every outstanding token, with its audit row, in one transaction.

use super::body::{self, Fields};
use super::error::ApiError;
use super::Shared;
use crate::audit::{self, Entry};
use crate::notify;
use crate::store::{mfa, password_resets, projects, users, Ts};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use uuid::Uuid;

const TOKEN_TTL_SECONDS: i64 = 30 * 60;
/// Projects whose e-mail channels are tried for one reset mail.
const PROJECTS_TRIED: i64 = 50;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/auth/password-reset/request", post(request))
        .route("/api/v1/auth/password-reset/confirm", post(confirm))
}

/// The `password-reset` bucket, shared by both routes.
fn throttle(state: &Shared, peer: SocketAddr, headers: &HeaderMap) -> Result<String, ApiError> {
    let (s, window) = (&state.settings, &state.auth.password_reset_per_ip);
    super::bucket::hit_bucket(s, window, "password-reset", peer, headers)
}

async fn request(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = body::object(&body)?;
    let ip = throttle(&state, peer, &headers)?;
    let mut f = Fields::new(&obj);
    let canonical = f.email("email");
    let canonical = f.finish(canonical)?;
    let started = Instant::now();
    let floor = Duration::from_millis(state.settings.login_min_duration_ms.max(0) as u64);
    let outcome = issue(&state, &canonical, &ip, &headers).await;
    // Known and unknown addresses take the same time (the mail leaves
    // after the response).
    if let Some(rest) = floor.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    outcome?;
    Ok(Json(json!({"accepted": true})))
}

/// For an active account: the token row with its audit row, then the mail
/// in the background.
async fn issue(
    state: &Shared,
    canonical: &str,
    ip: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(user) = users::find_by_email(&state.db, canonical)
        .await?
        .filter(|u| u.is_active)
    else {
        return Ok(());
    };
    let token = crate::bootstrap::secrets::random_token(32);
    let hash = crate::auth::keyed::person_token(&state.settings, &token)
        .ok_or_else(ApiError::no_master_secret)?;
    let mut tx = audit::begin(&state.db).await?;
    password_resets::create(
        &mut tx,
        user.id,
        &hash,
        Ts::now().plus_seconds(TOKEN_TTL_SECONDS),
    )
    .await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("auth.password_reset_requested", "success")
            .target("user", user.id)
            .by(Some(user.id))
            .from(Some(ip.to_owned()), headers),
    )
    .await?;
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = mail(&state, &user, &token).await {
            tracing::warn!(user_id = %user.id, error = %e, "password-reset mail not sent");
        }
    });
    Ok(())
}

/// Tries the active e-mail channels of the user's projects until one
/// delivers. Nothing is logged that carries the link.
async fn mail(state: &Shared, user: &users::User, token: &str) -> Result<(), String> {
    let s = &state.settings;
    let link = format!(
        "{}/reset#token={token}",
        crate::bootstrap::setup_token::public_base(s)
    );
    let body = format!(
        "A password reset was requested for {email}.\n\n\
         To choose a new password, open:\n{link}\n\n\
         The link works once and expires in {minutes} minutes. If you did not ask for \
         this, ignore this message; your password is unchanged.\n\n-- z4j\n",
        email = user.email,
        minutes = TOKEN_TTL_SECONDS / 60,
    );
    let projects: Vec<Uuid> = if user.is_admin {
        projects::list_active(&state.db, None, PROJECTS_TRIED)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|p| p.id)
            .collect()
    } else {
        users::memberships_of(&state.db, user.id, PROJECTS_TRIED)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    };
    let channel = notify::mail_person(
        &state.db,
        s,
        &projects,
        &user.email,
        "z4j: password reset requested",
        &body,
    )
    .await?;
    tracing::info!(user_id = %user.id, channel = %channel, "password-reset mail sent");
    Ok(())
}

async fn confirm(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = body::object(&body)?;
    let ip = throttle(&state, peer, &headers)?;
    let mut f = Fields::new(&obj);
    let token = f.text("token", 10, 256, true);
    let pw = f.text("new_password", 8, 256, true);
    let (token, pw) = f.finish(token.zip(pw))?;
    let hash = crate::auth::keyed::person_token(&state.settings, &token)
        .ok_or_else(ApiError::no_master_secret)?;
    // Cheap refusals before the password work.
    password_resets::live_user(&state.db, &hash, Ts::now())
        .await?
        .ok_or_else(ApiError::invalid_or_expired)?;
    let pw_hash = super::new_password::accepted_hash(&state.settings, pw).await?;
    let mut tx = audit::begin(&state.db).await?;
    let user = password_resets::live_user(&mut tx, &hash, Ts::now())
        .await?
        .ok_or_else(ApiError::invalid_or_expired)?;
    if !password_resets::consume(&mut tx, &hash, user, Ts::now()).await? {
        return Err(ApiError::invalid_or_expired());
    }
    users::set_password(&mut tx, user, &pw_hash).await?;
    mfa::forget_devices(&mut tx, user).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("auth.password_reset_completed", "success")
            .target("user", user)
            .by(Some(user))
            .from(Some(ip), &headers),
    )
    .await?;
    Ok(Json(json!({"success": true})))
}
