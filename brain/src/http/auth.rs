//! `/api/v1/auth/login`, `/logout`, `/me`: password sign-in to a cookie
//! session. The response takes at least `Z4J_LOGIN_MIN_DURATION_MS` whatever
//! the outcome, measured after all work. (Lockout, backoff and MFA belong to
//! the operators-and-security capability.)

use super::body::{self, Fields};
use super::error::ApiError;
use super::{session, Shared};
use crate::audit::{self, Entry};
use crate::auth::password;
use crate::fleet::live::{close, Scope};
use crate::net::client_ip;
use crate::settings::mutant::Mutant;
use crate::store::users::User;
use crate::store::{sessions, users, Ts, Tx};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/change-password", post(change_password))
}

pub fn user_json(u: &User) -> Value {
    let display = u.display_name.clone().or_else(|| {
        match (u.first_name.as_deref(), u.last_name.as_deref()) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(f), None) => Some(f.to_owned()),
            (None, Some(l)) => Some(l.to_owned()),
            (None, None) => u.email.split('@').next().map(str::to_owned),
        }
    });
    json!({
        "id": u.id,
        "email": u.email,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "display_name": display,
        "is_admin": u.is_admin,
        "timezone": u.timezone,
        "created_at": u.created_at.to_rfc3339(),
    })
}

fn invalid_credentials() -> ApiError {
    ApiError::Coded {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthenticated",
        message: "invalid_credentials".into(),
        details: json!({"reason": "invalid_credentials"}),
    }
}

async fn login(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let canonical = f.email("email");
    let pw = f.text("password", 1, 256, true);
    let remember = f.boolean("remember_me", false);
    let (canonical, pw) = f.finish(canonical.zip(pw))?;
    let ip = super::bucket::hit_bucket(
        &state.settings,
        &state.auth.login_per_ip,
        "login",
        peer,
        &headers,
    )?;
    let s = state.settings.clone();
    let started = Instant::now();
    let floor = Duration::from_millis(s.login_min_duration_ms.max(0) as u64);
    let outcome = authenticate(&state, &canonical, pw).await;
    let floor = match outcome {
        Ok(Verdict::Refused(None)) if s.mutant(Mutant::LoginFloorSkippedForUnknown) => {
            Duration::ZERO
        }
        _ => floor,
    };
    let mut backoff = Duration::ZERO;
    let result = match outcome {
        Ok(Verdict::Accepted(user, rehashed)) => {
            state.auth.succeed(&canonical);
            let entry = Entry::new("auth.login", "success")
                .target("user", user.id)
                .by(Some(user.id))
                .from(Some(ip.clone()), &headers)
                .meta(json!({"email": canonical}));
            let mut tx = audit::begin(&state.db).await?;
            users::record_login(&mut tx, user.id, Ts::now(), rehashed.as_deref()).await?;
            let resp = issue(&state, &mut tx, &user, remember, peer, &headers).await?;
            audit::commit(tx, &s, &entry).await?;
            Ok(resp)
        }
        Ok(Verdict::Refused(user)) => {
            backoff = state.auth.fail(&canonical);
            let failed = Entry::new("auth.login", "failed")
                .by(user.as_ref().map(|u| u.id))
                .from(Some(ip.clone()), &headers)
                .meta(json!({"email": canonical, "reason": "invalid_credentials"}));
            book_failure(&state, user.as_ref(), &failed, &ip, &headers)
                .await
                .and(Err(invalid_credentials()))
        }
        Err(e) => Err(e),
    };
    if s.log_login_email {
        tracing::info!(email = %canonical, success = result.is_ok(), "login attempt");
    } else {
        tracing::info!(success = result.is_ok(), "login attempt");
    }
    // The floor covers every outcome and all of the work above (including
    // the lockout bookkeeping); a failure then waits out its backoff.
    if let Some(rest) = (floor + backoff).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    result
}

/// A refused login's audit row and, for an existing account, its failure
/// count and (at the threshold) the lockout with its own row, together.
async fn book_failure(
    state: &Shared,
    user: Option<&User>,
    failed: &Entry,
    ip: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let s = &state.settings;
    let mut tx = audit::begin(&state.db).await?;
    audit::append(&mut tx, s, failed).await?;
    if let Some(u) = user {
        // Mutant: an account that was locked once is never locked again.
        let rearmed = !(s.mutant(Mutant::LockoutNotRearmed) && u.locked_until.is_some());
        let threshold = if rearmed {
            s.login_lockout_threshold
        } else {
            i64::MAX
        };
        let count = users::record_failed_login(
            &mut tx,
            u.id,
            Ts::now(),
            threshold,
            s.login_lockout_duration_seconds,
        )
        .await?;
        if count == s.login_lockout_threshold {
            let locked = Entry::new("auth.lockout", "success")
                .target("user", u.id)
                .by(Some(u.id))
                .from(Some(ip.to_owned()), headers)
                .meta(json!({"failed_login_count": count, "lock_seconds": s.login_lockout_duration_seconds}));
            audit::append(&mut tx, s, &locked).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

enum Verdict {
    /// Right password, active, not locked; with the upgraded hash if the
    /// cost settings went up.
    Accepted(User, Option<String>),
    /// Anything else, with the account when it exists.
    Refused(Option<User>),
}

async fn authenticate(state: &Shared, canonical: &str, pw: String) -> Result<Verdict, ApiError> {
    let cost = password::Cost::from_settings(&state.settings);
    let user = users::find_by_email(&state.db, canonical).await?;
    let phc = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.auth.dummy_hash(cost).to_owned());
    let rehash = user.is_some() && password::needs_rehash(&phc, cost);
    let (matches, rehashed) = tokio::task::spawn_blocking(move || {
        let ok = password::verify_blocking(&pw, &phc);
        let new = (ok && rehash)
            .then(|| password::hash_blocking(&pw, cost).ok())
            .flatten();
        (ok, new)
    })
    .await
    .unwrap_or((false, None));
    let now = Ts::now();
    Ok(match user {
        Some(u) if matches && u.is_active && u.locked_until.is_none_or(|t| t <= now) => {
            Verdict::Accepted(u, rehashed)
        }
        other => Verdict::Refused(other),
    })
}

/// A new session and its cookies, written in the caller's transaction
/// (every write here goes through it: on SQLite a write on another
/// connection would wait for this transaction's lock).
async fn issue(
    state: &Shared,
    tx: &mut Tx,
    user: &User,
    remember: bool,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let s = &state.settings;
    let ip = client_ip::of_request(s, peer, headers).to_string();
    let lifetime = if remember {
        s.session_remember_me_lifetime_seconds
    } else {
        s.session_absolute_lifetime_seconds
    };
    let csrf = crate::bootstrap::secrets::random_token(32);
    // An enrolled user needs the second factor unless this browser is a
    // remembered device.
    let enrolled = user.mfa_enrolled_at.is_some();
    let trusted = match (enrolled, super::mfa::trust_token(state, headers)) {
        (true, Some(token)) => {
            crate::store::mfa::device_trusted(
                &mut *tx,
                user.id,
                &crate::auth::keyed::mfa_token(&token),
            )
            .await?
        }
        _ => false,
    };
    let mut deadline = None;
    if session::enforced(s, user) {
        crate::store::mfa::start_enforcement(&mut *tx, user.id, Ts::now()).await?;
        let started = user.mfa_enforcement_started_at.unwrap_or_else(Ts::now);
        deadline = Some(started.plus_seconds(s.mfa_enrollment_grace_days * 86_400));
    }
    let new_session = sessions::create(
        tx,
        &sessions::NewSession {
            user_id: user.id,
            csrf_token: &csrf,
            lifetime_seconds: lifetime,
            ip: &ip,
            user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()),
            mfa_verified: !enrolled || trusted,
        },
    )
    .await?;
    let mut resp = Json(json!({
        "user": user_json(user),
        "mfa_required": enrolled && !trusted,
        "mfa_enrollment_required": deadline.is_some(),
        "mfa_enrollment_deadline": deadline.map(|d| d.to_rfc3339()),
    }))
    .into_response();
    for c in session::issue_cookies(state, &new_session)? {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = session::require_session(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    let mut tx = audit::begin(&state.db).await?;
    sessions::revoke(&mut tx, caller.session.id, "logout").await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("auth.logout", "success")
            .target("session", caller.session.id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    state
        .fleet()
        .live
        .close(Scope::Session(caller.session.id), close::UNAUTHENTICATED);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for name in [
        session::session_cookie_name(state.dev_posture),
        session::csrf_cookie_name(state.dev_posture),
    ] {
        let secure = if state.dev_posture { "" } else { "; Secure" };
        let c = format!("{name}=; Max-Age=0; Path=/{secure}");
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// Self-service password change: the current password, a new one that
/// passes the policy; every session and remembered device of the user
/// ends, and this browser gets a fresh session.
async fn change_password(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = session::cookie_only(session::require(&state, &headers).await?)?;
    super::access::csrf(&caller, &headers)?;
    super::access::fresh_mfa(&caller, &state.settings)?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let current = f.text("current_password", 1, 256, true);
    let new = f.text("new_password", 8, 256, true);
    let (current, new) = f.finish(current.zip(new))?;
    let phc = caller.user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify_blocking(&current, &phc))
        .await
        .unwrap_or(false);
    if !ok {
        return Err(ApiError::Coded {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: "current password is incorrect".into(),
            details: json!({"reason": "wrong_current_password"}),
        });
    }
    let hash = super::new_password::accepted_hash(&state.settings, new).await?;
    let mut tx = audit::begin(&state.db).await?;
    users::set_password(&mut tx, caller.user.id, &hash).await?;
    crate::store::mfa::forget_devices(&mut tx, caller.user.id).await?;
    let user = users::find(&mut tx, caller.user.id)
        .await?
        .ok_or_else(|| ApiError::Internal("user vanished".into()))?;
    let mut resp = issue(&state, &mut tx, &user, false, peer, &headers).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("auth.password_changed", "success")
            .target("user", caller.user.id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    // Every old session ended; this browser reconnects with its new one.
    state
        .fleet()
        .live
        .close(Scope::User(caller.user.id), close::TRY_AGAIN);
    if let Ok(v) = HeaderValue::from_str(&super::mfa::clear_trust_cookie(state.dev_posture)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}
