//! TOTP second factor (http-api 3): status, enrolment, verification with a
//! code or a single-use recovery code, remembered devices, disable.

use super::body::{self, Fields};
use super::error::{ApiError, SchemaIssue};
use super::session::Caller;
use super::{session, Shared};
use crate::audit::{self, Entry};
use crate::auth::{keyed, password, totp};
use crate::notify::sealed;
use crate::store::{mfa, Ts};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use std::net::SocketAddr;

const PURPOSE: &str = "users.mfa_secret";
const RECOVERY_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/auth/mfa/status", get(status))
        .route("/api/v1/auth/mfa/enroll-start", post(enroll_start))
        .route("/api/v1/auth/mfa/enroll-complete", post(enroll_complete))
        .route("/api/v1/auth/mfa/verify", post(verify))
        .route("/api/v1/auth/mfa/disable", post(disable))
        .route(
            "/api/v1/auth/mfa/recovery-codes/regenerate",
            post(regenerate),
        )
        .route(
            "/api/v1/auth/mfa/trusted-devices",
            get(devices).post(trust_current),
        )
        .route(
            "/api/v1/auth/mfa/trusted-devices/{id}",
            axum::routing::patch(rename_device),
        )
        .route(
            "/api/v1/auth/mfa/trusted-devices/{id}/revoke",
            post(revoke_device),
        )
}

fn trust_cookie_name(dev: bool) -> &'static str {
    if dev {
        "z4j_mfa_trust"
    } else {
        "__Host-z4j_mfa_trust"
    }
}

/// The remembered-device token the browser presents, if any.
pub fn trust_token(state: &super::ApiState, headers: &HeaderMap) -> Option<String> {
    let name = trust_cookie_name(state.dev_posture);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `Z4J_MFA_VERIFICATION_RATE_PER_MIN` per client address, shared by the
/// code-taking routes.
fn throttle(state: &Shared, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let (s, window) = (&state.settings, &state.auth.mfa_per_ip);
    super::bucket::hit_bucket(s, window, "mfa-verify", peer, headers).map(|_| ())
}

fn open_secret(state: &Shared, sealed_text: &str) -> Result<Vec<u8>, ApiError> {
    let b32 = sealed::open(state.settings.master_secrets(), PURPOSE, sealed_text)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    totp::base32_decode(&b32)
        .ok_or_else(|| ApiError::Internal("stored TOTP secret is not base32".into()))
}

fn conflict(reason: &'static str, message: &str) -> ApiError {
    ApiError::Coded {
        status: StatusCode::CONFLICT,
        code: "conflict",
        message: message.into(),
        details: json!({"reason": reason}),
    }
}

fn wrong(reason: &'static str) -> ApiError {
    ApiError::Coded {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthenticated",
        message: "invalid code".into(),
        details: json!({"reason": reason}),
    }
}

fn locked() -> ApiError {
    ApiError::Coded {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        message: "too many failed MFA attempts; the account is temporarily locked".into(),
        details: json!({"reason": "mfa_locked"}),
    }
}

fn now_secs() -> u64 {
    Ts::now().0.timestamp().max(0) as u64
}

/// Refuses while the account is MFA-locked (even a right code).
async fn not_locked(state: &Shared, caller: &Caller) -> Result<mfa::MfaState, ApiError> {
    let st = mfa::state(&state.db, caller.user.id).await?;
    if st.mfa_locked_until.is_some_and(|t| t > Ts::now()) {
        return Err(locked());
    }
    Ok(st)
}

/// Counts a wrong code; the answer stays 401 (the lock shows on the next).
async fn count_wrong(
    state: &Shared,
    caller: &Caller,
    action: &'static str,
    reason: &'static str,
) -> ApiError {
    let s = &state.settings;
    let booked = async {
        let mut tx = audit::begin(&state.db).await?;
        mfa::wrong_code(
            &mut tx,
            caller.user.id,
            s.mfa_lockout_threshold,
            s.mfa_lockout_duration_seconds,
        )
        .await?;
        audit::commit(
            tx,
            s,
            &Entry::new(action, "failed")
                .target("user", caller.user.id)
                .by(Some(caller.user.id))
                .meta(json!({"reason": reason})),
        )
        .await?;
        Ok::<(), ApiError>(())
    };
    match booked.await {
        Ok(()) => wrong(reason),
        Err(e) => e,
    }
}

fn recovery_code() -> String {
    let mut out = String::new();
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let k = rand::random::<u32>() as usize % RECOVERY_ALPHABET.len();
        out.push(RECOVERY_ALPHABET[k] as char);
    }
    out
}

/// Whitespace and hyphens removed, upper-cased, regrouped 4-4-4; `None`
/// when it cannot be a recovery code.
fn normalise_recovery(input: &str) -> Option<String> {
    let flat: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (flat.len() == 12 && flat.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
        .then(|| format!("{}-{}-{}", &flat[..4], &flat[4..8], &flat[8..]))
}

async fn mint_recovery_codes(
    state: &Shared,
    tx: &mut crate::store::Tx,
    user: uuid::Uuid,
) -> Result<Vec<String>, ApiError> {
    let codes: Vec<String> = (0..state.settings.mfa_recovery_code_count)
        .map(|_| recovery_code())
        .collect();
    let hashes: Vec<String> = codes.iter().map(|c| keyed::mfa_token(c)).collect();
    mfa::replace_recovery_codes(tx, user, &hashes).await?;
    Ok(codes)
}

async fn status(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require_session(&state, &headers).await?;
    Ok(Json(status_of(&state, &caller).await?))
}

/// The caller's second-factor status as `GET /auth/mfa/status` shows it.
pub(super) async fn status_of(state: &Shared, caller: &session::Caller) -> Result<Value, ApiError> {
    let remaining = mfa::unused_recovery_codes(&state.db, caller.user.id)
        .await?
        .len();
    let deadline = session::enrollment_deadline(&state.settings, &caller.user);
    Ok(json!({
        "enrolled": caller.user.mfa_enrolled_at.is_some(),
        "enrolled_at": caller.user.mfa_enrolled_at.map(|t| t.to_rfc3339()),
        "remaining_recovery_codes": caller.user.mfa_enrolled_at.map(|_| remaining),
        "enrollment_required": session::enforced(&state.settings, &caller.user),
        "enrollment_deadline": deadline.map(|d| d.to_rfc3339()),
    }))
}

fn issuer_host(state: &Shared) -> String {
    state
        .settings
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "z4j".into())
}

async fn enroll_start(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    throttle(&state, peer, &headers)?;
    let caller = session::require_session(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    if caller.user.mfa_enrolled_at.is_some() {
        super::access::fresh_mfa(&caller, &state.settings)?;
    }
    let secret: [u8; 20] = rand::random();
    let b32 = totp::base32(&secret);
    let sealed_text = sealed::seal(state.settings.secret.as_deref(), PURPOSE, &b32)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    mfa::start_enrolment(&state.db, caller.user.id, &sealed_text).await?;
    Ok(Json(json!({
        "provisioning_url": provisioning_url(&state, &caller.user.email, &b32),
        "secret_base32": b32,
    })))
}

/// The `otpauth://` URL an authenticator app reads (the QR code's text).
fn provisioning_url(state: &Shared, email: &str, b32: &str) -> String {
    let issuer = format!("z4j ({})", issuer_host(state));
    let label: String =
        url::form_urlencoded::byte_serialize(format!("{issuer}:{email}").as_bytes())
            .collect::<String>()
            .replace('+', "%20");
    let issuer_q: String = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect();
    format!(
        "otpauth://totp/{label}?secret={b32}&issuer={issuer_q}&algorithm=SHA1&digits=6&period=30"
    )
}

/// The provisioning URL of the caller's enrolment in progress, if one is
/// (the account page draws it as a QR code).
pub(super) async fn pending_provisioning_url(
    state: &Shared,
    caller: &session::Caller,
) -> Result<Option<String>, ApiError> {
    let st = mfa::state(&state.db, caller.user.id).await?;
    match (st.mfa_enrolled_at, st.mfa_pending_secret.as_deref()) {
        (None, Some(sealed_text)) => {
            let b32 = sealed::open(state.settings.master_secrets(), PURPOSE, sealed_text)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(Some(provisioning_url(state, &caller.user.email, &b32)))
        }
        _ => Ok(None),
    }
}

/// The caller's trusted devices as the REST API lists them.
pub(super) async fn devices_of(
    state: &Shared,
    caller: &session::Caller,
    headers: &HeaderMap,
) -> Result<Vec<Value>, ApiError> {
    let current = trust_token(state, headers).map(|t| keyed::mfa_token(&t));
    let rows = mfa::trusted_devices(&state.db, caller.user.id).await?;
    Ok(rows
        .iter()
        .map(|d| device_json(d, current.as_deref()))
        .collect())
}

fn six_digits(obj: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    let mut f = Fields::new(obj);
    let code = f.text("code", 6, 6, true);
    if code
        .as_deref()
        .is_some_and(|c| !c.bytes().all(|b| b.is_ascii_digit()))
    {
        f.issues.push(SchemaIssue::new(
            "string_pattern_mismatch",
            &["body", "code"],
            "String should match pattern '^\\d{6}$'",
        ));
    }
    f.finish(code)
}

async fn enroll_complete(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    throttle(&state, peer, &headers)?;
    let caller = session::require_session(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    let code = six_digits(&body::object(&body)?)?;
    let st = not_locked(&state, &caller).await?;
    if st.mfa_enrolled_at.is_some() {
        return Err(conflict("already_enrolled", "MFA is already enrolled"));
    }
    let Some(pending) = st.mfa_pending_secret.as_deref() else {
        return Err(conflict("no_pending_enrollment", "start enrolment first"));
    };
    let secret = open_secret(&state, pending)?;
    if totp::accept(&secret, &code, now_secs(), None).is_none() {
        return Err(count_wrong(&state, &caller, "user.mfa_enroll_failed", "wrong_totp").await);
    }
    let mut tx = audit::begin(&state.db).await?;
    if !mfa::complete_enrolment(&mut tx, caller.user.id, Ts::now()).await? {
        return Err(conflict(
            "enrollment_state_changed",
            "the enrolment changed meanwhile; start again",
        ));
    }
    let codes = mint_recovery_codes(&state, &mut tx, caller.user.id).await?;
    mfa::mark_session_verified(&mut tx, caller.session.id, Ts::now()).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.mfa_enrolled", "success")
            .target("user", caller.user.id)
            .by(Some(caller.user.id)),
    )
    .await?;
    Ok(Json(json!({"recovery_codes": codes})))
}

async fn verify(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    throttle(&state, peer, &headers)?;
    let caller = session::require_session(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let code = f.text("code", 6, 20, true);
    let remember = f.boolean("remember_device", false);
    let code = f.finish(code)?;
    let st = not_locked(&state, &caller).await?;
    let (Some(sealed_secret), Some(_)) = (st.mfa_secret.as_deref(), st.mfa_enrolled_at) else {
        return Err(conflict("mfa_not_enrolled", "MFA is not enrolled"));
    };
    let mut used_recovery = false;
    let mut tx = audit::begin(&state.db).await?;
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = open_secret(&state, sealed_secret)?;
        let step = totp::accept(&secret, &code, now_secs(), st.mfa_last_step);
        let consumed = match step {
            Some(s) => mfa::consume_step(&mut tx, caller.user.id, s).await?,
            None => false,
        };
        if !consumed {
            drop(tx);
            return Err(count_wrong(&state, &caller, "user.mfa_verify_failed", "wrong_totp").await);
        }
    } else if let Some(normal) = normalise_recovery(&code) {
        let want = keyed::mfa_token(&normal);
        // Every stored code is compared (no early exit).
        let mut hit = None;
        for (id, h) in mfa::unused_recovery_codes(&mut tx, caller.user.id).await? {
            if z4j_protocol::secret::ct_eq(&h, &want) {
                hit = Some(id);
            }
        }
        let used = match hit {
            Some(id) => mfa::use_recovery_code(&mut tx, id).await?,
            None => false,
        };
        if !used {
            drop(tx);
            return Err(count_wrong(
                &state,
                &caller,
                "user.mfa_verify_failed",
                "wrong_recovery_code",
            )
            .await);
        }
        used_recovery = true;
    } else {
        return Err(ApiError::Validation {
            message: "code is neither a 6-digit code nor a recovery code".into(),
            details: json!({"reason": "bad_code_format"}),
        });
    }
    mfa::right_code(&mut tx, caller.user.id).await?;
    mfa::mark_session_verified(&mut tx, caller.session.id, Ts::now()).await?;
    let remaining = if used_recovery {
        Some(
            mfa::unused_recovery_codes(&mut tx, caller.user.id)
                .await?
                .len(),
        )
    } else {
        None
    };
    let mut resp = Json(json!({
        "ok": true,
        "used_recovery_code": used_recovery,
        "remaining_recovery_codes": remaining,
    }))
    .into_response();
    if remember {
        let (_, cookie) = remember_browser(&state, &mut tx, &caller, &headers).await?;
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new(
            if used_recovery {
                "user.mfa_recovery_code_used"
            } else {
                "user.mfa_verified"
            },
            "success",
        )
        .target("user", caller.user.id)
        .by(Some(caller.user.id))
        .meta(json!({"used_recovery_code": used_recovery, "remember_device": remember})),
    )
    .await?;
    Ok(resp)
}

/// Trusts this browser: a remembered-device row (label from the
/// User-Agent) and the `Set-Cookie` carrying its token.
async fn remember_browser(
    state: &Shared,
    tx: &mut crate::store::Tx,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<(uuid::Uuid, String), ApiError> {
    let s = &state.settings;
    let days = s.mfa_remember_device_days.clamp(1, 90);
    let token = crate::bootstrap::secrets::random_token(32);
    let label = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "unknown browser".to_owned(),
            |u| u.chars().take(200).collect(),
        );
    let id = mfa::trust_device(
        tx,
        caller.user.id,
        &keyed::mfa_token(&token),
        &label,
        Ts::now().plus_seconds(days * 86_400),
        s.mfa_trusted_devices_max_per_user,
    )
    .await?;
    let secure = if state.dev_posture { "" } else { "; Secure" };
    let cookie = format!(
        "{}={token}; HttpOnly; Max-Age={}; Path=/; SameSite=strict{secure}",
        trust_cookie_name(state.dev_posture),
        days * 86_400
    );
    Ok((id, cookie))
}

async fn disable(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    throttle(&state, peer, &headers)?;
    let caller = session::require_session(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let pw = f.text("password", 1, 256, true);
    let code = f.text("code", 6, 6, true);
    let (pw, code) = f.finish(pw.zip(code))?;
    let st = not_locked(&state, &caller).await?;
    let Some(sealed_secret) = st.mfa_secret.as_deref() else {
        return Err(conflict("mfa_not_enrolled", "MFA is not enrolled"));
    };
    let phc = caller.user.password_hash.clone();
    let pw_ok = tokio::task::spawn_blocking(move || password::verify_blocking(&pw, &phc))
        .await
        .unwrap_or(false);
    if !pw_ok {
        return Err(ApiError::Coded {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: "current password is incorrect".into(),
            details: json!({"reason": "wrong_password"}),
        });
    }
    let secret = open_secret(&state, sealed_secret)?;
    let mut tx = audit::begin(&state.db).await?;
    let consumed = match totp::accept(&secret, &code, now_secs(), st.mfa_last_step) {
        Some(s) => mfa::consume_step(&mut tx, caller.user.id, s).await?,
        None => false,
    };
    if !consumed {
        drop(tx);
        return Err(count_wrong(&state, &caller, "user.mfa_disable_failed", "wrong_totp").await);
    }
    mfa::disable(&mut tx, caller.user.id).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.mfa_disabled", "success")
            .target("user", caller.user.id)
            .by(Some(caller.user.id)),
    )
    .await?;
    let mut resp = Json(json!({"ok": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_trust_cookie(state.dev_posture)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn regenerate(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    super::access::fresh_mfa(&caller, &state.settings)?;
    if caller.user.mfa_enrolled_at.is_none() {
        return Err(conflict("mfa_not_enrolled", "MFA is not enrolled"));
    }
    let mut tx = audit::begin(&state.db).await?;
    let codes = mint_recovery_codes(&state, &mut tx, caller.user.id).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.mfa_recovery_codes_regenerated", "success")
            .target("user", caller.user.id)
            .by(Some(caller.user.id)),
    )
    .await?;
    Ok(Json(json!({"recovery_codes": codes})))
}

async fn devices(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    Ok(Json(Value::Array(
        devices_of(&state, &caller, &headers).await?,
    )))
}

fn device_json(d: &mfa::TrustedDevice, current_hash: Option<&str>) -> Value {
    json!({
        "id": d.id,
        "label": d.label,
        "created_at": d.created_at.to_rfc3339(),
        "last_seen_at": d.last_seen_at.to_rfc3339(),
        "expires_at": d.expires_at.to_rfc3339(),
        "revoked_at": d.revoked_at.map(|t| t.to_rfc3339()),
        "is_current": current_hash.is_some_and(|h| z4j_protocol::secret::ct_eq(h, &d.token_hash)),
    })
}

async fn device_of(
    state: &Shared,
    user: uuid::Uuid,
    id: uuid::Uuid,
) -> Result<Option<mfa::TrustedDevice>, ApiError> {
    Ok(mfa::trusted_devices(&state.db, user)
        .await?
        .into_iter()
        .find(|d| d.id == id))
}

fn device_not_found() -> ApiError {
    ApiError::NotFound {
        message: "trusted device not found".into(),
        details: json!({}),
    }
}

/// Trusts the calling browser without a new sign-in; a browser whose trust
/// cookie is already live gets its existing device back.
async fn trust_current(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = session::require(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    super::access::fresh_mfa(&caller, &state.settings)?;
    if caller.user.mfa_enrolled_at.is_none() {
        return Err(conflict(
            "mfa_not_enrolled",
            "MFA is not enabled for this user",
        ));
    }
    if let Some(hash) = trust_token(&state, &headers).map(|t| keyed::mfa_token(&t)) {
        let existing = mfa::trusted_devices(&state.db, caller.user.id)
            .await?
            .into_iter()
            .find(|d| {
                z4j_protocol::secret::ct_eq(&d.token_hash, &hash) && d.expires_at > Ts::now()
            });
        if let Some(d) = existing {
            return Ok((StatusCode::CREATED, Json(device_json(&d, Some(&hash)))).into_response());
        }
    }
    let mut tx = audit::begin(&state.db).await?;
    let (id, cookie) = remember_browser(&state, &mut tx, &caller, &headers).await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.mfa_trusted_device_added", "success")
            .target("trusted_device", id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    let d = device_of(&state, caller.user.id, id)
        .await?
        .ok_or_else(device_not_found)?;
    let mut resp = (
        StatusCode::CREATED,
        Json(device_json(&d, Some(&d.token_hash))),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn rename_device(
    State(state): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    super::access::fresh_mfa(&caller, &state.settings)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| device_not_found())?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let label = f.text("label", 1, 200, true);
    let label = f.finish(label)?;
    let mut tx = audit::begin(&state.db).await?;
    if !mfa::rename_device(&mut tx, caller.user.id, id, &label).await? {
        return Err(device_not_found());
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.mfa_trusted_device_renamed", "success")
            .target("trusted_device", id)
            .by(Some(caller.user.id))
            .from(None, &headers)
            .meta(json!({"label": label})),
    )
    .await?;
    let d = device_of(&state, caller.user.id, id)
        .await?
        .ok_or_else(device_not_found)?;
    let current = trust_token(&state, &headers).map(|t| keyed::mfa_token(&t));
    Ok(Json(device_json(&d, current.as_deref())))
}

async fn revoke_device(
    State(state): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = session::require(&state, &headers).await?;
    super::access::csrf(&caller, &headers)?;
    super::access::fresh_mfa(&caller, &state.settings)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| device_not_found())?;
    let mut tx = audit::begin(&state.db).await?;
    if !mfa::revoke_device(&mut tx, caller.user.id, id).await? {
        return Err(device_not_found());
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("user.mfa_trusted_device_revoked", "success")
            .target("trusted_device", id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A `Set-Cookie` that removes the trust cookie.
pub fn clear_trust_cookie(dev: bool) -> String {
    let secure = if dev { "" } else { "; Secure" };
    format!(
        "{}=; Max-Age=0; Path=/; SameSite=strict{secure}",
        trust_cookie_name(dev)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_the_documented_shape() {
        for _ in 0..50 {
            let c = recovery_code();
            assert_eq!(c.len(), 14);
            assert_eq!(normalise_recovery(&c).as_deref(), Some(c.as_str()));
        }
        assert_eq!(
            normalise_recovery("hx8b darb-umju").as_deref(),
            Some("HX8B-DARB-UMJU")
        );
        assert_eq!(
            normalise_recovery("HX8B-DARB-UMJ0"),
            None,
            "0 is not in the alphabet"
        );
        assert_eq!(normalise_recovery("123456"), None);
    }
}
