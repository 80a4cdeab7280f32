//! TOTP second factor (http-api 3): enrolment, the password-only session,
//! verification with codes and recovery codes, replay refusal, remembered
//! devices, the freshness gate, the wrong-code lock, the per-IP throttle
//! and enrolment enforcement. Codes are computed here from RFC 6238.

use super::{client, ensure, ensure_eq, owned, R};
use crate::agent::{self, Operator, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::brain::Brain;
use crate::runner::Ctx;
use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha1::Sha1;
use std::sync::Arc;
use std::time::Duration;

fn base32_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = A.iter().position(|a| *a == c) else {
            continue;
        };
        buf = (buf << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// The 6-digit TOTP of `secret` `offset` steps from now.
pub(crate) fn totp(secret_b32: &str, offset: i64) -> String {
    let step = (chrono::Utc::now().timestamp() / 30 + offset) as u64;
    let mut mac = match Hmac::<Sha1>::new_from_slice(&base32_decode(secret_b32)) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[o] & 0x7f) << 24)
        | (u32::from(h[o + 1]) << 16)
        | (u32::from(h[o + 2]) << 8)
        | u32::from(h[o + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// Login: the operator and the response body.
async fn login(brain: &Brain, trust: Option<&str>) -> Result<(Operator, Json), String> {
    let mut req = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}));
    if let Some(t) = trust {
        req = req.header("cookie", t);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    ensure_eq(
        resp.status().as_u16(),
        200,
        &format!("login (presenting a trust cookie: {})", trust.is_some()),
    )?;
    let pairs: Vec<(String, String)> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| {
            c.split(';')
                .next()?
                .split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let csrf = pairs
        .iter()
        .find(|(k, _)| k.contains("csrf"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut cookie = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(t) = trust {
        cookie = format!("{cookie}; {t}");
    }
    let body: Json = resp.json().await.unwrap_or(Json::Null);
    Ok((Operator { cookie, csrf }, body))
}

async fn post(brain: &Brain, op: &Operator, path: &str, body: Json) -> Result<(u16, Json), String> {
    op.send(brain, reqwest::Method::POST, path, Some(body))
        .await
}

/// Enrols the admin; returns the secret and the recovery codes.
pub(crate) async fn enrol(brain: &Brain, op: &Operator) -> Result<(String, Vec<String>), String> {
    let (status, start) = post(brain, op, "/api/v1/auth/mfa/enroll-start", json!({})).await?;
    ensure_eq(status, 200, &format!("enroll-start: {start}"))?;
    let secret = start["secret_base32"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure(
        secret.len() == 32
            && start["provisioning_url"]
                .as_str()
                .is_some_and(|u| u.starts_with("otpauth://totp/") && u.contains(&secret)),
        format!("enroll-start answer: {start}"),
    )?;
    let (status, done) = post(
        brain,
        op,
        "/api/v1/auth/mfa/enroll-complete",
        json!({"code": totp(&secret, 0)}),
    )
    .await?;
    ensure_eq(status, 200, &format!("enroll-complete: {done}"))?;
    let codes: Vec<String> = done["recovery_codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    Ok((secret, codes))
}

/// Verifies the session `op` with a code and `remember_device`; returns the
/// trust cookie as set.
async fn remember_device(brain: &Brain, op: &Operator, secret: &str) -> Result<String, String> {
    let resp = client()
        .post(brain.url("/api/v1/auth/mfa/verify"))
        .header("cookie", &op.cookie)
        .header("x-csrf-token", &op.csrf)
        .json(&json!({"code": totp(secret, 1), "remember_device": true}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(resp.status().as_u16(), 200, "verify with remember_device")?;
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("z4j_mfa_trust="))
        .map(str::to_owned)
        .ok_or_else(|| "no trust cookie".to_owned())
}

pub async fn enrol_and_verify(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_MFA_RECOVERY_CODE_COUNT", "5"),
        ("Z4J_MFA_REMEMBER_DEVICE_DAYS", "2"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    let (op, body) = login(&brain, None).await?;
    ensure_eq(
        body["mfa_required"].as_bool(),
        Some(false),
        "not enrolled yet",
    )?;
    let (status, _) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/enroll-complete",
        json!({"code": "12345"}),
    )
    .await?;
    ensure_eq(status, 422, "a code that is not 6 digits")?;
    let (secret, codes) = enrol(&brain, &op).await?;
    ensure_eq(codes.len(), 5, "Z4J_MFA_RECOVERY_CODE_COUNT recovery codes")?;
    let alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    ensure(
        codes.iter().all(|c| {
            c.len() == 14
                && c.split('-')
                    .all(|g| g.len() == 4 && g.chars().all(|ch| alphabet.contains(ch)))
        }),
        format!("recovery code format: {codes:?}"),
    )?;
    // A password-only session may only finish the second factor.
    let (op, body) = login(&brain, None).await?;
    ensure_eq(
        body["mfa_required"].as_bool(),
        Some(true),
        "login of an enrolled user",
    )?;
    let (status, body) = op.get(&brain, "/api/v1/projects").await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (403, Some("mfa_reverify_required")),
        "before verify",
    )?;
    ensure_eq(
        op.get(&brain, "/api/v1/auth/me").await?.0,
        200,
        "me before verify",
    )?;
    let code = totp(&secret, 0);
    let (status, v) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/verify",
        json!({"code": code}),
    )
    .await?;
    ensure_eq(
        (status, v["ok"].as_bool()),
        (200, Some(true)),
        &format!("verify: {v}"),
    )?;
    ensure_eq(
        op.get(&brain, "/api/v1/projects").await?.0,
        200,
        "after verify",
    )?;
    // The same code again: refused (replay).
    let (op2, _) = login(&brain, None).await?;
    let (status, v) = post(
        &brain,
        &op2,
        "/api/v1/auth/mfa/verify",
        json!({"code": code}),
    )
    .await?;
    ensure_eq(
        (status, v["details"]["reason"].as_str()),
        (401, Some("wrong_totp")),
        "replayed code",
    )?;
    // A recovery code, typed loosely, works once.
    let loose = codes[0].replace('-', "").to_lowercase();
    let (status, v) = post(
        &brain,
        &op2,
        "/api/v1/auth/mfa/verify",
        json!({"code": loose}),
    )
    .await?;
    ensure_eq(
        (
            status,
            v["used_recovery_code"].as_bool(),
            v["remaining_recovery_codes"].as_i64(),
        ),
        (200, Some(true), Some(4)),
        &format!("recovery code: {v}"),
    )?;
    let (op3, _) = login(&brain, None).await?;
    let (status, v) = post(
        &brain,
        &op3,
        "/api/v1/auth/mfa/verify",
        json!({"code": codes[0]}),
    )
    .await?;
    ensure_eq(
        (status, v["details"]["reason"].as_str()),
        (401, Some("wrong_recovery_code")),
        "a used recovery code",
    )?;
    // Remember this device: the next login skips the second factor.
    let trust = remember_device(&brain, &op3, &secret).await?;
    ensure(
        trust.contains("Max-Age=172800") && trust.contains("HttpOnly"),
        format!("trust cookie: {trust}"),
    )?;
    let pair = trust.split(';').next().unwrap_or_default().to_owned();
    let (op4, body) = login(&brain, Some(&pair)).await?;
    ensure_eq(
        body["mfa_required"].as_bool(),
        Some(false),
        "login from a remembered device",
    )?;
    ensure_eq(
        op4.get(&brain, "/api/v1/projects").await?.0,
        200,
        "remembered device session",
    )
}

/// `Z4J_MFA_VERIFICATION_TTL_SECONDS`: sensitive actions need a recent
/// verification; disabling MFA needs the password and a code.
/// The documented default TTL (900 s): a sensitive action still passes
/// shortly before it and is refused, naming 900, shortly after. A target
/// with the testing clock gets there by restarting on the same database
/// with the clock moved on (the verification is stored with the session);
/// any other sleeps through the real quarter of an hour.
pub async fn freshness_default(ctx: Arc<Ctx>) -> R {
    let clock = ctx.target.has("testing_clock_offset");
    let mut env = if clock {
        super::defaults::clock_env(&ctx).await?
    } else {
        owned(&agent::admin_env())
    };
    env.push(("Z4J_LOGIN_MIN_DURATION_MS".into(), "0".into()));
    let mut brain = ctx.start_env(env.clone(), None).await?;
    let (op, _) = login(&brain, None).await?;
    enrol(&brain, &op).await?;
    let verified = std::time::Instant::now();
    // The brain's clock `at` seconds after the verification: a restart
    // with the offset that puts it there, or the real wait.
    let advance = |brain: Brain, at: Duration| {
        let (ctx, env) = (ctx.clone(), env.clone());
        async move {
            let behind = at.saturating_sub(verified.elapsed());
            if !clock {
                tokio::time::sleep(behind).await;
                return Ok(brain);
            }
            let home = brain.stop_keep_home().await;
            super::defaults::at_offset(&ctx, &env, home, behind.as_secs_f64()).await
        }
    };
    // 880 s, less the few seconds a restart takes before the mint.
    brain = advance(brain, Duration::from_secs(880)).await?;
    ensure_eq(
        op.mint(&brain, "still-fresh")
            .await
            .map(|_| 201)
            .unwrap_or(0),
        201,
        "mint about 880 s after the verification (default TTL 900 s)",
    )?;
    brain = advance(brain, Duration::from_secs(900) + ctx.scaled(5.0)).await?;
    let after = if clock {
        "905 s or more after the verification (testing clock)".to_owned()
    } else {
        format!("{} s after the verification", verified.elapsed().as_secs())
    };
    expect_stale_mint(&brain, &op, 900, &after).await
}

/// A sensitive action (an agent mint) refused for a stale verification,
/// naming the TTL.
async fn expect_stale_mint(brain: &Brain, op: &Operator, ttl: i64, when: &str) -> R {
    let (status, body) = post(
        brain,
        op,
        "/api/v1/projects/default/agents",
        json!({"name": "stale"}),
    )
    .await?;
    ensure_eq(
        (
            status,
            body["error"].as_str(),
            body["details"]["ttl_seconds"].as_i64(),
        ),
        (403, Some("mfa_reverify_required"), Some(ttl)),
        &format!("mint {when}: {body}"),
    )
}

pub async fn freshness(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_MFA_VERIFICATION_TTL_SECONDS", "60"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    let (op, _) = login(&brain, None).await?;
    let (secret, _) = enrol(&brain, &op).await?;
    ensure_eq(
        op.mint(&brain, "fresh").await.map(|_| 201).unwrap_or(0),
        201,
        "mint right after enrolment",
    )?;
    tokio::time::sleep(ctx.scaled(62.0)).await;
    expect_stale_mint(&brain, &op, 60, "62 s after the last verification").await?;
    let (status, _) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/verify",
        json!({"code": totp(&secret, 0)}),
    )
    .await?;
    ensure_eq(status, 200, "re-verify")?;
    ensure_eq(
        op.mint(&brain, "fresh-again")
            .await
            .map(|_| 201)
            .unwrap_or(0),
        201,
        "mint after re-verifying",
    )?;
    let (status, body) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/disable",
        json!({"password": "wrong-password", "code": totp(&secret, 1)}),
    )
    .await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (401, Some("wrong_password")),
        "disable with a wrong password",
    )?;
    let (status, body) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/disable",
        json!({"password": ADMIN_PASSWORD, "code": totp(&secret, 1)}),
    )
    .await?;
    ensure_eq(status, 200, &format!("disable: {body}"))?;
    let (_, body) = login(&brain, None).await?;
    ensure_eq(
        body["mfa_required"].as_bool(),
        Some(false),
        "no second factor after disable",
    )
}

/// Five wrong codes lock the account's second factor (even a right code is
/// then 429); `Z4J_MFA_VERIFICATION_RATE_PER_MIN` caps attempts per address.
pub async fn lock_and_throttle(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let brain = ctx.start(&env).await?;
    let (op, _) = login(&brain, None).await?;
    let (secret, _) = enrol(&brain, &op).await?;
    let (op, _) = login(&brain, None).await?;
    let wrong = if totp(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    for i in 1..=5 {
        let (status, _) = post(
            &brain,
            &op,
            "/api/v1/auth/mfa/verify",
            json!({"code": wrong}),
        )
        .await?;
        ensure_eq(status, 401, &format!("wrong code {i}"))?;
    }
    let (status, body) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/verify",
        json!({"code": totp(&secret, 0)}),
    )
    .await?;
    ensure_eq(
        (
            status,
            body["error"].as_str(),
            body["details"]["reason"].as_str(),
        ),
        (429, Some("rate_limited"), Some("mfa_locked")),
        &format!("a right code while locked: {body}"),
    )?;
    let mut env = agent::admin_env();
    env.push(("Z4J_MFA_VERIFICATION_RATE_PER_MIN", "3"));
    let throttled = ctx.start(&env).await?;
    // The bucket counts verify attempts of a signed-in session (http-api 3:
    // "all require a cookie session"); whatever the first three answer, the
    // fourth within the minute is throttled.
    let op = agent::login(&throttled).await?;
    let verify = || {
        client()
            .post(throttled.url("/api/v1/auth/mfa/verify"))
            .header("cookie", &op.cookie)
            .header("x-csrf-token", &op.csrf)
            .json(&json!({"code": "123456"}))
            .send()
    };
    for i in 1..=3 {
        let r = verify().await.map_err(|e| e.to_string())?;
        ensure(
            r.status().as_u16() != 429,
            format!("attempt {i} was throttled below the limit"),
        )?;
    }
    let r = verify().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").is_some();
    let body: Json = r.json().await.unwrap_or(Json::Null);
    ensure(
        status == 429
            && retry
            && body["detail"]
                .as_str()
                .is_some_and(|d| d.ends_with("(mfa-verify)")),
        format!("4th attempt in a minute: {status} {body}"),
    )
}

/// The admin targeted by enforcement with one day of grace: the
/// environment now, and the same two days ago (the dev testing clock), to
/// start the grace clock in the past.
pub(crate) async fn enforcement_env(
    ctx: &Ctx,
) -> Result<(Vec<(String, String)>, Vec<(String, String)>), String> {
    let (mut env, _) = ctx.pinned_admin_env(&[]).await?;
    env.extend(owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_MFA_ENFORCE_FOR_ADMINS", "true"),
        ("Z4J_MFA_ENROLLMENT_GRACE_DAYS", "1"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]));
    let mut past = env.clone();
    past.push(("Z4J_TESTING_CLOCK_OFFSET_SECONDS".into(), "-172800".into()));
    Ok((env, past))
}

/// `Z4J_MFA_ENFORCE_FOR_ADMINS` with `Z4J_MFA_ENROLLMENT_GRACE_DAYS`: the
/// login reports the deadline; past it only enrolment is allowed (the grace
/// clock is started two days ago with the dev testing clock).
pub async fn enforcement(ctx: Arc<Ctx>) -> R {
    let (env, past) = enforcement_env(&ctx).await?;
    let brain = ctx.start_env(past, None).await?;
    let (op, body) = login(&brain, None).await?;
    ensure_eq(
        body["mfa_enrollment_required"].as_bool(),
        Some(true),
        "targeted admin",
    )?;
    ensure(
        body["mfa_enrollment_deadline"].is_string(),
        format!("deadline reported: {body}"),
    )?;
    ensure_eq(
        op.get(&brain, "/api/v1/projects").await?.0,
        200,
        "inside the grace period",
    )?;
    let home = brain.stop_keep_home().await;
    let brain = ctx.start_env(env, Some(home)).await?;
    let (op, _) = login(&brain, None).await?;
    let (status, body) = op.get(&brain, "/api/v1/projects").await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (403, Some("mfa_enrollment_required")),
        &format!("past the deadline: {body}"),
    )?;
    enrol(&brain, &op).await?;
    ensure_eq(
        op.get(&brain, "/api/v1/projects").await?.0,
        200,
        "after enrolling",
    )?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// Recovery-code regeneration, remembered-device listing and revocation,
/// and a password change that ends the other sessions and remembered
/// devices.
pub async fn account_care(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let brain = ctx.start(&env).await?;
    let (op, _) = login(&brain, None).await?;
    let (_secret, first) = enrol(&brain, &op).await?;
    let (status, body) = post(
        &brain,
        &op,
        "/api/v1/auth/mfa/recovery-codes/regenerate",
        json!({}),
    )
    .await?;
    let fresh: Vec<String> = body["recovery_codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    ensure(
        status == 200 && fresh.len() == first.len() && fresh != first,
        format!("regenerate: {status} {body}"),
    )?;
    // An old code no longer works, a new one does.
    let (other, _) = login(&brain, None).await?;
    let (status, _) = post(
        &brain,
        &other,
        "/api/v1/auth/mfa/verify",
        json!({"code": first[0]}),
    )
    .await?;
    ensure_eq(status, 401, "a recovery code from before regeneration")?;
    let (status, _) = post(
        &brain,
        &other,
        "/api/v1/auth/mfa/verify",
        json!({"code": fresh[0], "remember_device": true}),
    )
    .await?;
    ensure_eq(status, 200, "a regenerated recovery code")?;
    let (status, devices) = other
        .get(&brain, "/api/v1/auth/mfa/trusted-devices")
        .await?;
    ensure_eq(
        (status, devices.as_array().map(Vec::len)),
        (200, Some(1)),
        &format!("one remembered device: {devices}"),
    )?;
    let id = devices[0]["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = post(
        &brain,
        &other,
        &format!("/api/v1/auth/mfa/trusted-devices/{id}/revoke"),
        json!({}),
    )
    .await?;
    ensure_eq(status, 204, "revoke the device")?;
    // Trust this browser from the device panel, then relabel it.
    let (status, made) = post(
        &brain,
        &other,
        "/api/v1/auth/mfa/trusted-devices",
        json!({}),
    )
    .await?;
    ensure(
        status == 201 && made["is_current"] == true && made["revoked_at"].is_null(),
        format!("trust this browser: {status} {made}"),
    )?;
    let made_id = made["id"].as_str().unwrap_or_default().to_owned();
    let rename = |id: String, body: Json| {
        let (brain, other) = (&brain, &other);
        async move {
            other
                .send(
                    brain,
                    reqwest::Method::PATCH,
                    &format!("/api/v1/auth/mfa/trusted-devices/{id}"),
                    Some(body),
                )
                .await
        }
    };
    let (status, renamed) = rename(made_id.clone(), json!({"label": "work laptop"})).await?;
    ensure(
        status == 200 && renamed["label"] == "work laptop" && renamed["id"] == made["id"],
        format!("rename the device: {status} {renamed}"),
    )?;
    ensure_eq(
        rename(made_id.clone(), json!({"label": ""})).await?.0,
        422,
        "an empty label",
    )?;
    ensure_eq(
        rename(
            "00000000-0000-4000-8000-000000000000".into(),
            json!({"label": "x"}),
        )
        .await?
        .0,
        404,
        "renaming an unknown device",
    )?;
    let (_, listed) = other
        .get(&brain, "/api/v1/auth/mfa/trusted-devices")
        .await?;
    ensure(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["id"] == made["id"] && d["label"] == "work laptop"),
        format!("the relabelled device is listed: {listed}"),
    )?;
    let (status, _) = post(
        &brain,
        &other,
        &format!("/api/v1/auth/mfa/trusted-devices/{made_id}/revoke"),
        json!({}),
    )
    .await?;
    ensure_eq(status, 204, "revoke the panel-trusted device")?;
    let (_, devices) = other
        .get(&brain, "/api/v1/auth/mfa/trusted-devices")
        .await?;
    // Listed with `revoked_at` set, or not listed at all (http-api 3.6).
    let active = devices
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["revoked_at"].is_null())
        .count();
    ensure_eq(active, 0, &format!("no remembered device left: {devices}"))?;
    // Password change: wrong current password refused; success ends the
    // other session and returns a new one.
    let (status, body) = post(
        &brain,
        &op,
        "/api/v1/auth/change-password",
        json!({"current_password": "nope", "new_password": "N3w-strong-password!"}),
    )
    .await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (401, Some("wrong_current_password")),
        "wrong current password",
    )?;
    let (status, body) = post(
        &brain,
        &op,
        "/api/v1/auth/change-password",
        json!({"current_password": ADMIN_PASSWORD, "new_password": "N3w-strong-password!"}),
    )
    .await?;
    ensure_eq(
        (status, body["mfa_required"].as_bool()),
        (200, Some(true)),
        &format!("change password: {body}"),
    )?;
    ensure_eq(
        other.get(&brain, "/api/v1/auth/me").await?.0,
        401,
        "the other session ended",
    )?;
    ensure(
        agent::login(&brain).await.is_err(),
        "the old password no longer logs in",
    )
}

/// A login presenting the trust cookie `pair`: whether the second factor
/// is still asked for.
async fn asks_second_factor(brain: &Brain, pair: &str) -> Result<Option<bool>, String> {
    let (_, body) = login(brain, Some(pair)).await?;
    Ok(body["mfa_required"].as_bool())
}

/// MFA defaults with the variables unset: admins are not made to enrol;
/// ten recovery codes; a remembered device is trusted for 30 days (asked
/// again after); ten verification attempts a minute; once enforcement is
/// switched on, seven days of grace.
pub async fn defaults(ctx: Arc<Ctx>) -> R {
    use super::defaults::{at_offset, clock_env};
    let env = clock_env(&ctx).await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let (op, body) = login(&brain, None).await?;
    if body["mfa_enrollment_required"].as_bool() == Some(true) {
        ctx.fail_clause(
            "Z4J_MFA_ENFORCE_FOR_ADMINS",
            format!("an admin is made to enrol with enforcement unset: {body}"),
        );
    }
    let (secret, codes) = enrol(&brain, &op).await?;
    if codes.len() != 10 {
        ctx.fail_clause(
            "Z4J_MFA_RECOVERY_CODE_COUNT",
            format!("{} recovery codes, want 10", codes.len()),
        );
    }
    let (op, _) = login(&brain, None).await?;
    let trust = remember_device(&brain, &op, &secret).await?;
    if !trust.contains("Max-Age=2592000") {
        ctx.fail_clause(
            "Z4J_MFA_REMEMBER_DEVICE_DAYS",
            format!("the trust cookie does not last 30 days: {trust}"),
        );
    }
    let pair = trust.split(';').next().unwrap_or_default().to_owned();
    let mut home = brain.stop_keep_home().await;
    for (offset, asked) in [(30 * 86_400 - 600, false), (30 * 86_400 + 600, true)] {
        let b = at_offset(&ctx, &env, home, offset as f64).await?;
        let got = asks_second_factor(&b, &pair).await?;
        if got != Some(asked) {
            ctx.fail_clause(
                "Z4J_MFA_REMEMBER_DEVICE_DAYS",
                format!(
                    "{offset} s after remembering the device: mfa_required {got:?}, want {asked}"
                ),
            );
        }
        home = b.stop_keep_home().await;
    }
    // Ten verification attempts a minute (a session without a factor:
    // nothing locks), the eleventh throttled.
    let plain = ctx.start(&agent::admin_env()).await?;
    let op = agent::login(&plain).await?;
    for i in 1..=11 {
        let r = client()
            .post(plain.url("/api/v1/auth/mfa/verify"))
            .header("cookie", &op.cookie)
            .header("x-csrf-token", &op.csrf)
            .json(&json!({"code": "123456"}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let throttled = r.status().as_u16() == 429;
        if throttled != (i == 11) {
            ctx.fail_clause(
                "Z4J_MFA_VERIFICATION_RATE_PER_MIN",
                format!(
                    "verification attempt {i} in a minute: {} (10 allowed)",
                    r.status()
                ),
            );
        }
    }
    // Enforcement on, grace unset: 7 days from the first login it applied to.
    let mut env = clock_env(&ctx).await?;
    env.push(("Z4J_MFA_ENFORCE_FOR_ADMINS".into(), "true".into()));
    let first = ctx.start_env(env.clone(), None).await?;
    let (_, body) = login(&first, None).await?;
    ensure_eq(
        body["mfa_enrollment_required"].as_bool(),
        Some(true),
        "enforcement switched on",
    )?;
    let mut home = first.stop_keep_home().await;
    for (offset, allowed) in [(7 * 86_400 - 600, true), (7 * 86_400 + 600, false)] {
        let b = at_offset(&ctx, &env, home, offset as f64).await?;
        let (op, _) = login(&b, None).await?;
        let (status, body) = op.get(&b, "/api/v1/projects").await?;
        if (status == 200) != allowed {
            ctx.fail_clause(
                "Z4J_MFA_ENROLLMENT_GRACE_DAYS",
                format!("{offset} s into enforcement without enrolling: {status} {body}"),
            );
        }
        home = b.stop_keep_home().await;
    }
    Ok(())
}

/// `z4j reset-mfa` (a lost phone): refused without `--confirm`; with it the
/// enrolled admin signs in with the password alone, can enrol again, and
/// the reset is audited.
pub async fn cli_reset(ctx: Arc<Ctx>) -> R {
    let (env, pg) = ctx
        .pinned_admin_env(&[("Z4J_LOGIN_MIN_DURATION_MS", "0")])
        .await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let (op, _) = login(&brain, None).await?;
    enrol(&brain, &op).await?;
    let (_, body) = login(&brain, None).await?;
    ensure_eq(body["mfa_required"].as_bool(), Some(true), "enrolled")?;
    let cli = |args: &[&str]| crate::brain::run_cli(&ctx.target, &brain.home, &env, args);
    let refused = cli(&["reset-mfa", ADMIN_EMAIL])?;
    ensure(refused.code != 0, "reset-mfa without --confirm")?;
    let (_, body) = login(&brain, None).await?;
    ensure_eq(
        body["mfa_required"].as_bool(),
        Some(true),
        "still enrolled after the refused reset",
    )?;
    let out = cli(&["reset-mfa", ADMIN_EMAIL, "--confirm"])?;
    ensure_eq(out.code, 0, &format!("reset-mfa --confirm: {}", out.stderr))?;
    let (op, body) = login(&brain, None).await?;
    ensure_eq(
        body["mfa_required"].as_bool(),
        Some(false),
        &format!("login after reset-mfa: {body}"),
    )?;
    ensure_eq(
        op.get(&brain, "/api/v1/projects").await?.0,
        200,
        "a password-only session after reset-mfa",
    )?;
    enrol(&brain, &op).await?;
    if let Some(n) =
        super::cli::cli_audit_rows(&ctx, &brain.home, pg.as_deref(), "user.mfa_reset_by_admin")
            .await?
    {
        ensure_eq(
            n,
            1,
            "user.mfa_reset_by_admin audit rows written from the command line",
        )?;
    }
    Ok(())
}
