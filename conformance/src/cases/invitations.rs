//! Project invitations (http-api section 9): a project admin mints a
//! single-use token for an address and a role, lists and revokes pending
//! ones; the invitee previews and accepts it without a session, which
//! creates the account with that membership. The public routes share a
//! per-IP bucket of 30 requests a minute.

use super::{ensure, ensure_eq, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use reqwest::Method;
use serde_json::{json, Value as Json};
use std::sync::Arc;

const INVITEE: &str = "invitee@example.com";
const INVITEE_PASSWORD: &str = "Invitee-pass-word-3";

async fn public(brain: &Brain, path: &str, body: Json) -> Result<(u16, Json, bool), String> {
    let resp = super::client()
        .post(brain.url(path))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status().as_u16();
    let no_store = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"));
    Ok((status, resp.json().await.unwrap_or(Json::Null), no_store))
}

async fn mint(brain: &Brain, admin: &Operator, body: Json) -> Result<(u16, Json), String> {
    admin
        .send(
            brain,
            Method::POST,
            "/api/v1/projects/default/invitations",
            Some(body),
        )
        .await
}

fn invalid_or_expired(what: &str, (status, body, _): (u16, Json, bool)) -> R {
    ensure(
        status == 404 && body["message"] == "invalid_or_expired",
        format!("{what}: want 404 invalid_or_expired, got {status} {body}"),
    )
}

pub async fn lifecycle(ctx: Arc<Ctx>) -> R {
    let (brain, admin) = super::admin_brain(&ctx).await?;
    let (status, minted) = mint(
        &brain,
        &admin,
        json!({"email": INVITEE, "role": "operator"}),
    )
    .await?;
    let token = minted["token"].as_str().unwrap_or_default().to_owned();
    ensure(
        status == 201
            && token.len() >= 40
            && minted["invitation"]["email"] == INVITEE
            && minted["invitation"]["role"] == "operator"
            && minted["invitation"]["accepted_at"].is_null()
            && minted["accept_url_path"] == format!("/invite#token={token}")
            && minted["email_sent"] == false,
        format!("mint: {status} {minted}"),
    )?;
    let (status, pending) = admin
        .get(&brain, "/api/v1/projects/default/invitations")
        .await?;
    ensure(
        status == 200
            && pending.as_array().map(Vec::len) == Some(1)
            && pending[0]["id"] == minted["invitation"]["id"]
            && pending[0].get("token").is_none(),
        format!("pending list without tokens: {status} {pending}"),
    )?;

    let (status, preview, no_store) = public(
        &brain,
        "/api/v1/invitations/preview",
        json!({"token": token}),
    )
    .await?;
    ensure(
        status == 200
            && no_store
            && preview["email"] == INVITEE
            && preview["role"] == "operator"
            && preview["project_slug"] == "default",
        format!("preview: {status} {preview} (no-store {no_store})"),
    )?;
    invalid_or_expired(
        "preview of an unknown token",
        public(
            &brain,
            "/api/v1/invitations/preview",
            json!({"token": "not-a-token"}),
        )
        .await?,
    )?;

    // Refusals that leave the invitation pending.
    let (status, _, _) = public(
        &brain,
        "/api/v1/invitations/accept",
        json!({"token": token, "display_name": "Invitee", "password": "short"}),
    )
    .await?;
    ensure_eq(status, 422, "accept with a too-short password")?;

    let (status, accepted, _) = public(
        &brain,
        "/api/v1/invitations/accept",
        json!({"token": token, "display_name": "Invitee", "password": INVITEE_PASSWORD}),
    )
    .await?;
    ensure(
        status == 201
            && accepted["project_slug"] == "default"
            && accepted["role"] == "operator"
            && accepted["user_id"].is_string(),
        format!("accept: {status} {accepted}"),
    )?;
    let invitee = agent::login_as(&brain, INVITEE, INVITEE_PASSWORD).await?;
    let (status, me) = invitee.get(&brain, "/api/v1/auth/me").await?;
    ensure(
        status == 200
            && me["display_name"] == "Invitee"
            && me["memberships"][0]["project_slug"] == "default"
            && me["memberships"][0]["role"] == "operator",
        format!("the new account and its membership: {status} {me}"),
    )?;
    invalid_or_expired(
        "a second accept",
        public(
            &brain,
            "/api/v1/invitations/accept",
            json!({"token": token, "display_name": "Again", "password": INVITEE_PASSWORD}),
        )
        .await?,
    )?;
    invalid_or_expired(
        "preview after accept",
        public(
            &brain,
            "/api/v1/invitations/preview",
            json!({"token": token}),
        )
        .await?,
    )?;
    let (_, pending) = admin
        .get(&brain, "/api/v1/projects/default/invitations")
        .await?;
    ensure_eq(
        pending.as_array().map(Vec::len),
        Some(0),
        "an accepted invitation is no longer pending",
    )?;
    let (status, body) = mint(&brain, &admin, json!({"email": INVITEE})).await?;
    ensure_eq(status, 409, &format!("inviting a member: {body}"))?;

    // Revocation.
    let (_, second) = mint(&brain, &admin, json!({"email": "second@example.com"})).await?;
    ensure_eq(
        second["invitation"]["role"].as_str(),
        Some("viewer"),
        "the default role",
    )?;
    let second_token = second["token"].as_str().unwrap_or_default().to_owned();
    let id = second["invitation"]["id"].as_str().unwrap_or_default();
    let path = format!("/api/v1/projects/default/invitations/{id}");
    let (status, _) = admin.send(&brain, Method::DELETE, &path, None).await?;
    ensure_eq(status, 204, "revoke a pending invitation")?;
    invalid_or_expired(
        "accepting a revoked invitation",
        public(
            &brain,
            "/api/v1/invitations/accept",
            json!({"token": second_token, "display_name": "Late", "password": INVITEE_PASSWORD}),
        )
        .await?,
    )?;
    let (status, _) = admin.send(&brain, Method::DELETE, &path, None).await?;
    ensure_eq(status, 409, "revoking it again")?;
    let (status, _) = admin
        .send(
            &brain,
            Method::DELETE,
            "/api/v1/projects/default/invitations/00000000-0000-4000-8000-000000000000",
            None,
        )
        .await?;
    ensure_eq(status, 404, "revoking an unknown invitation")?;

    // Validation and roles.
    for (body, what) in [
        (
            json!({"email": "x@example.com", "ttl_days": 31}),
            "ttl_days 31",
        ),
        (
            json!({"email": "x@example.com", "ttl_days": 0}),
            "ttl_days 0",
        ),
        (
            json!({"email": "x@example.com", "role": "owner"}),
            "role owner",
        ),
        (json!({"email": "not-an-address"}), "a bad address"),
    ] {
        ensure_eq(mint(&brain, &admin, body).await?.0, 422, what)?;
    }
    let (status, _) = mint(&brain, &invitee, json!({"email": "x@example.com"})).await?;
    ensure_eq(status, 403, "an operator minting an invitation")?;
    let (status, _) = invitee
        .get(&brain, "/api/v1/projects/default/invitations")
        .await?;
    ensure_eq(status, 403, "an operator listing invitations")?;
    Ok(())
}

/// The 31st request to the public routes within a minute from one address
/// is refused with 429 and `Retry-After`.
pub async fn throttle(ctx: Arc<Ctx>) -> R {
    let (brain, _admin) = super::admin_brain(&ctx).await?;
    for i in 0..30 {
        let (path, body) = if i % 2 == 0 {
            (
                "/api/v1/invitations/preview",
                json!({"token": format!("unknown-token-{i}")}),
            )
        } else {
            (
                "/api/v1/invitations/accept",
                json!({"token": format!("unknown-token-{i}"), "display_name": "X", "password": INVITEE_PASSWORD}),
            )
        };
        let (status, _, _) = public(&brain, path, body).await?;
        ensure_eq(status, 404, &format!("request {} within the budget", i + 1))?;
    }
    let resp = super::client()
        .post(brain.url("/api/v1/invitations/preview"))
        .json(&json!({"token": "unknown-token-31"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    super::ensure_throttled(&resp, 60, "the 31st request")
}
