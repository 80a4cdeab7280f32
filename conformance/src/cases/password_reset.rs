//! Self-service password reset (http-api 2.6): the request answers the
//! same for known and unknown addresses, held to the login floor; the
//! link reaches the user through a project e-mail channel (a loopback
//! SMTP receiver here); the confirmation works once, ends the user's
//! sessions and retires every other outstanding token; both routes share
//! a per-IP bucket of 10 a minute.

use super::{client, ensure, ensure_eq, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use crate::smtp_sink::SmtpSink;
use reqwest::Method;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER: &str = "forgetful@example.com";
const OLD_PASSWORD: &str = "Forgetful-pass-1";
const NEW_PASSWORD: &str = "Remembered-pass-2";
const FLOOR_MS: u64 = 400;
const MAIL_WAIT: Duration = Duration::from_secs(15);

async fn post(brain: &Brain, path: &str, body: Json) -> Result<(u16, Json, Duration), String> {
    let started = Instant::now();
    let resp = client()
        .post(brain.url(path))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Json::Null);
    Ok((status, body, started.elapsed()))
}

async fn request(brain: &Brain, email: &str) -> Result<(u16, Json, Duration), String> {
    post(
        brain,
        "/api/v1/auth/password-reset/request",
        json!({"email": email}),
    )
    .await
}

async fn confirm(brain: &Brain, token: &str, password: &str) -> Result<(u16, Json), String> {
    let (status, body, _) = post(
        brain,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": password}),
    )
    .await?;
    Ok((status, body))
}

/// The token in the `n`-th mail's link.
async fn token_from(sink: &SmtpSink, n: usize) -> Result<String, String> {
    let mail = sink
        .wait_for(n, MAIL_WAIT)
        .await
        .ok_or_else(|| format!("reset mail {n} did not arrive within {MAIL_WAIT:?}"))?;
    ensure(
        mail.to.iter().any(|t| t == USER),
        format!("mail {n} is addressed to {:?}", mail.to),
    )?;
    let at = mail
        .text
        .find("/reset#token=")
        .ok_or_else(|| format!("mail {n} has no /reset#token= link: {}", mail.text))?;
    let token: String = mail.text[at + "/reset#token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    ensure(token.len() >= 40, format!("a 32-byte token, got {token:?}"))?;
    Ok(token)
}

async fn setup(ctx: &Ctx, sink: &SmtpSink) -> Result<(Brain, Operator), String> {
    let floor = FLOOR_MS.to_string();
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", &floor));
    env.push(("Z4J_NOTIFICATIONS_EMAIL_ALLOW_PRIVATE", "true"));
    let brain = ctx.start(&env).await?;
    let admin = agent::login(&brain).await?;
    super::member_of_default(&brain, &admin, USER, OLD_PASSWORD, "viewer").await?;
    let (status, c) = admin
        .send(
            &brain,
            Method::POST,
            "/api/v1/projects/default/notifications/channels",
            Some(json!({
                "name": "mail",
                "type": "email",
                "config": {
                    "smtp_host": "127.0.0.1",
                    "smtp_port": sink.port,
                    "smtp_tls": false,
                    "from_addr": "z4j@example.com",
                },
            })),
        )
        .await?;
    ensure_eq(status, 201, &format!("e-mail channel: {c}"))?;
    Ok((brain, admin))
}

pub async fn flow(ctx: Arc<Ctx>) -> R {
    let sink = SmtpSink::start().await?;
    let (brain, _admin) = setup(&ctx, &sink).await?;
    let session = agent::login_as(&brain, USER, OLD_PASSWORD).await?;
    let floor = Duration::from_millis(FLOOR_MS);

    let (status, body, took) = request(&brain, USER).await?;
    ensure(
        status == 200 && body == json!({"accepted": true}) && took >= floor,
        format!("request for a known address: {status} {body} in {took:?}"),
    )?;
    let token = token_from(&sink, 1).await?;
    let (status, body, took) = request(&brain, "nobody@example.com").await?;
    ensure(
        status == 200 && body == json!({"accepted": true}) && took >= floor,
        format!("request for an unknown address: {status} {body} in {took:?}"),
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure_eq(sink.mails().len(), 1, "mails after an unknown address")?;

    let (status, _) = confirm(&brain, &token, "short").await?;
    ensure_eq(status, 422, "a new password below the policy")?;
    let (status, body) = confirm(&brain, &token, NEW_PASSWORD).await?;
    ensure_eq(
        (status, body),
        (200, json!({"success": true})),
        "confirm the reset",
    )?;
    ensure_eq(
        session.get(&brain, "/api/v1/auth/me").await?.0,
        401,
        "a session from before the reset",
    )?;
    ensure(
        agent::login_as(&brain, USER, OLD_PASSWORD).await.is_err(),
        "the old password no longer logs in",
    )?;
    agent::login_as(&brain, USER, NEW_PASSWORD).await?;
    let (status, body) = confirm(&brain, &token, "Another-pass-word-3").await?;
    ensure(
        status == 404 && body["message"] == "invalid_or_expired",
        format!("a used token: {status} {body}"),
    )?;

    // Two outstanding tokens: using one retires the other.
    request(&brain, USER).await?;
    let first = token_from(&sink, 2).await?;
    request(&brain, USER).await?;
    let second = token_from(&sink, 3).await?;
    ensure(first != second, "each request mints its own token")?;
    ensure_eq(
        confirm(&brain, &second, "Third-pass-word-4").await?.0,
        200,
        "confirm with the newer token",
    )?;
    let (status, body) = confirm(&brain, &first, "Fourth-pass-word-5").await?;
    ensure(
        status == 404 && body["message"] == "invalid_or_expired",
        format!("the older token after a completed reset: {status} {body}"),
    )
}

pub async fn throttle(ctx: Arc<Ctx>) -> R {
    let sink = SmtpSink::start().await?;
    let (brain, _admin) = setup(&ctx, &sink).await?;
    for i in 0..10 {
        let status = if i % 2 == 0 {
            request(&brain, "nobody@example.com").await?.0
        } else {
            confirm(&brain, "unknown-token-value", NEW_PASSWORD)
                .await?
                .0
        };
        // A request always answers 200 (no account enumeration); an
        // unknown token is refused, not throttled, within the budget.
        let want = if i % 2 == 0 { 200 } else { 404 };
        ensure_eq(
            status,
            want,
            &format!("request {} within the budget", i + 1),
        )?;
    }
    let resp = client()
        .post(brain.url("/api/v1/auth/password-reset/confirm"))
        .json(&json!({"token": "unknown-token-value", "new_password": NEW_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    super::ensure_throttled(&resp, 60, "the 11th request")
}

/// E-mail channels: the password is masked in listings, a config that
/// would send credentials in clear is refused naming the field, a saved
/// channel's test reaches its recipients, and an invitation is mailed
/// (`email_sent: true`) with its link.
pub async fn email_channel(ctx: Arc<Ctx>) -> R {
    let sink = SmtpSink::start().await?;
    let (brain, admin) = setup(&ctx, &sink).await?;
    let channels = "/api/v1/projects/default/notifications/channels";
    let (status, body) = admin
        .send(
            &brain,
            Method::POST,
            channels,
            Some(json!({"name": "clear", "type": "email", "config": {
                "smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_tls": false,
                "smtp_user": "u", "smtp_pass": "p", "from_addr": "z4j@example.com"}})),
        )
        .await?;
    ensure(
        status == 422
            && body["message"]
                .as_str()
                .is_some_and(|m| m.contains("smtp_tls")),
        format!("credentials over plain SMTP: {status} {body}"),
    )?;
    let (status, c) = admin
        .send(
            &brain,
            Method::POST,
            channels,
            Some(json!({"name": "ops", "type": "email", "config": {
                "smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_tls": false,
                "from_addr": "z4j@example.com", "to_addrs": ["ops@example.com"]}})),
        )
        .await?;
    ensure_eq(status, 201, &format!("e-mail channel with recipients: {c}"))?;
    let id = c["id"].as_str().unwrap_or_default();
    let (status, o) = admin
        .send(&brain, Method::POST, &format!("{channels}/{id}/test"), None)
        .await?;
    ensure(
        status == 200 && o["success"] == true,
        format!("test the e-mail channel: {status} {o}"),
    )?;
    let mail = sink
        .wait_for(1, MAIL_WAIT)
        .await
        .ok_or("the test mail did not arrive")?;
    ensure(
        mail.to == ["ops@example.com"] && mail.text.contains("test.dispatch"),
        format!("the test mail: to {:?}: {}", mail.to, mail.text),
    )?;
    // An invitation goes out through the project's e-mail channel too.
    let (status, minted) = admin
        .send(
            &brain,
            Method::POST,
            "/api/v1/projects/default/invitations",
            Some(json!({"email": "newcomer@example.com"})),
        )
        .await?;
    let token = minted["token"].as_str().unwrap_or_default();
    ensure(
        status == 201 && minted["email_sent"] == true,
        format!("an invitation with an e-mail channel: {status} {minted}"),
    )?;
    let mail = sink
        .wait_for(2, MAIL_WAIT)
        .await
        .ok_or("the invitation mail did not arrive")?;
    ensure(
        mail.to == ["newcomer@example.com"]
            && !token.is_empty()
            && mail.text.contains(&format!("/invite#token={token}")),
        format!("the invitation mail: to {:?}: {}", mail.to, mail.text),
    )?;
    let (_, listed) = admin.get(&brain, channels).await?;
    ensure(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["config"].get("smtp_pass").is_none_or(|p| p == "***")),
        format!("no password in the listing: {listed}"),
    )
}
