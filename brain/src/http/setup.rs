//! First boot over HTTP: the setup page, `setup/status` and
//! `setup/complete`, which creates the first admin and signs them in.

use super::error::ApiError;
use super::{session, Shared};
use crate::auth::policy;
use crate::bootstrap::admin::{self, CreateAdminError};
use crate::net::client_ip;
use crate::store::{sessions, setup as store, users, Ts};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The sliding window of `Z4J_FIRST_BOOT_ATTEMPTS_PER_IP`.
pub const ATTEMPT_WINDOW_SECS: i64 = 900;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/setup", get(setup_page))
        .route("/api/v1/setup/status", get(status))
        .route("/api/v1/setup/complete", post(complete))
        .route("/api/v1/auth/policy", get(password_policy))
}

async fn status(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    if users::count(&state.db).await? == 0 {
        return Ok(no_referrer(
            Json(json!({"first_boot": true})).into_response(),
        ));
    }
    session::require(&state, &headers).await?;
    Ok(no_referrer(
        Json(json!({"first_boot": false})).into_response(),
    ))
}

async fn password_policy(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "min_length": state.settings.password_min_length,
        "required_character_classes": policy::REQUIRED_CLASSES,
        "character_class_names": policy::CLASS_NAMES,
    }))
}

struct SetupRequest {
    token: String,
    email: String,
    display_name: Option<String>,
    password: String,
}

/// Schema checks; never echoes the submitted values.
fn parse_request(body: &[u8]) -> Result<SetupRequest, ApiError> {
    let obj = super::body::object(body)?;
    let mut f = super::body::Fields::new(&obj);
    let token = f.text("token", 10, 200, true);
    let email = f.email("email");
    let display_name = f.text("display_name", 0, 200, false);
    let password = f.text("password", 8, 256, true);
    let request = match (token, email, password) {
        (Some(token), Some(email), Some(password)) => Some(SetupRequest {
            token,
            email,
            display_name: display_name
                .map(|d| d.trim().to_owned())
                .filter(|d| !d.is_empty()),
            password,
        }),
        _ => None,
    };
    f.finish(request)
}

fn not_found(message: impl Into<String>, reason: &str) -> ApiError {
    ApiError::NotFound {
        message: message.into(),
        details: json!({"reason": reason}),
    }
}

async fn complete(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = &state.settings;
    let ip = client_ip::of_request(s, peer, &headers).to_string();
    let req = parse_request(&body)?;

    // The budget counts failed verifications from this address.
    let window_start = Ts::now().plus_seconds(-ATTEMPT_WINDOW_SECS);
    let (failures, oldest) = store::failed_attempts_since(&state.db, &ip, window_start).await?;
    if failures >= s.first_boot_attempts_per_ip {
        let retry = oldest.map_or(ATTEMPT_WINDOW_SECS, |t| {
            (t.plus_seconds(ATTEMPT_WINDOW_SECS).0 - Ts::now().0)
                .num_seconds()
                .max(1)
        });
        return Err(ApiError::RateLimited {
            message: format!(
                "too many setup attempts from this address. Try again in {retry} seconds."
            ),
            retry_after_secs: Some(retry as u64),
        });
    }

    let outcome = verify_and_provision(&state, &req, &ip, &headers).await;
    if let Err(e) = &outcome {
        if let Some(reason) = failure_reason(e) {
            store::record_failed_attempt(&state.db, &ip, reason).await?;
        }
    }
    outcome
}

fn failure_reason(e: &ApiError) -> Option<&'static str> {
    match e {
        ApiError::Conflict { .. } => Some("already_initialised"),
        ApiError::NotFound { details, .. } => match details.get("reason").and_then(Value::as_str) {
            Some("no_active_token") => Some("no_active_token"),
            Some("expired") => Some("expired"),
            _ => Some("invalid_token"),
        },
        ApiError::Validation { .. } => Some("password_policy"),
        _ => None,
    }
}

async fn verify_and_provision(
    state: &Shared,
    req: &SetupRequest,
    ip: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let s = &state.settings;
    let already = || ApiError::Conflict {
        message: "brain has already been initialised".into(),
        details: json!({"reason": "already_initialised"}),
    };
    if users::count(&state.db).await? > 0 {
        return Err(already());
    }
    let Some(row) = store::current_token(&state.db).await? else {
        return Err(not_found(
            "no active setup token; restart the brain to mint a setup URL",
            "no_active_token",
        ));
    };
    if row.expires_at <= Ts::now() {
        return Err(not_found(
            format!(
                "Setup token has expired (configured lifetime: {} seconds). Restart the brain to mint a fresh setup URL.",
                s.first_boot_token_ttl_seconds
            ),
            "expired",
        ));
    }
    let presented =
        crate::auth::keyed::setup_token(s, &req.token).ok_or_else(ApiError::no_master_secret)?;
    if !z4j_protocol::secret::ct_eq(&presented, &row.token_hash) {
        return Err(not_found("invalid setup token", "invalid_token"));
    }
    let created = admin::create_first_admin(
        &state.db,
        s,
        &req.email,
        &req.password,
        req.display_name.as_deref(),
    )
    .await;
    let (user, project_id) = match created {
        Ok(v) => v,
        Err(CreateAdminError::Policy(v)) => {
            return Err(ApiError::Validation {
                message: v.message,
                details: json!({"reason": v.reason}),
            })
        }
        Err(CreateAdminError::AlreadyInitialised) => return Err(already()),
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    tracing::info!(user_id = %user.id, "first admin provisioned through the setup URL");
    let csrf = crate::bootstrap::secrets::random_token(32);
    let new_session = sessions::create(
        &state.db,
        &sessions::NewSession {
            user_id: user.id,
            csrf_token: &csrf,
            lifetime_seconds: s.session_absolute_lifetime_seconds,
            ip,
            user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()),
            mfa_verified: true,
        },
    )
    .await?;
    let body = json!({
        "user": {
            "id": user.id,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "display_name": user.display_name,
            "is_admin": user.is_admin,
            "timezone": user.timezone,
            "created_at": user.created_at.to_rfc3339(),
        },
        "project_id": project_id,
    });
    let mut resp = Json(body).into_response();
    for c in session::issue_cookies(state, &new_session)? {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(no_referrer(resp))
}

fn no_referrer(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// The setup form: served only while no user exists and an unexpired token
/// does (the reference keeps serving it after expiry; that is its defect).
async fn setup_page(State(state): State<Shared>) -> Result<Response, ApiError> {
    let open = users::count(&state.db).await? == 0
        && store::current_token(&state.db)
            .await?
            .is_some_and(|t| t.expires_at > Ts::now());
    let (status, body) = if open {
        (StatusCode::OK, SETUP_HTML)
    } else {
        (
            StatusCode::NOT_FOUND,
            "<!doctype html><meta charset=utf-8><title>Not found</title><p>404</p>",
        )
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(SETUP_CSP),
    );
    Ok(no_referrer(resp))
}

/// No inline script or style: the form's script is the dashboard's app.js.
const SETUP_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const SETUP_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Create the admin · z4j</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script></head>
<body><header class="top"><span class="brand">z4j</span><span class="spacer"></span></header>
<main><section class="card narrow"><h1>Create the z4j admin</h1>
<p class="muted">The first account: a global admin. This link works once.</p>
<form id="setup"><label>E-mail <input name="email" type="email" required autocomplete="username" autofocus></label>
<label>Display name <input name="display_name" autocomplete="name"></label>
<label>Password <span id="hint"></span> <input name="password" type="password" required autocomplete="new-password"></label>
<button type="submit">Create admin</button><p class="error" id="setup-error" role="alert"></p></form></section></main>
</body></html>
"#;
