//! The signed-in user's own account (http-api 2.6): `/auth/me` with its
//! memberships and the profile update, the session list and its
//! revocations.

use super::{ensure, ensure_eq, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use reqwest::Method;
use serde_json::{json, Value as Json};
use std::sync::Arc;

const MEMBER_EMAIL: &str = "member@example.com";
const MEMBER_PASSWORD: &str = "Member-pass-word-7";
const UNKNOWN_ID: &str = "00000000-0000-4000-8000-000000000000";

async fn start(ctx: &Ctx) -> Result<(Brain, Operator), String> {
    super::admin_brain(ctx).await
}

/// A non-admin user with `role` in the default project.
async fn member(brain: &Brain, admin: &Operator, role: &str) -> Result<String, String> {
    super::member_of_default(brain, admin, MEMBER_EMAIL, MEMBER_PASSWORD, role).await
}

fn roles_of(me: &Json) -> Vec<(String, String)> {
    me["memberships"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["project_slug"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `/me` lists memberships (a synthesized `admin` entry per active project
/// for a global admin); PATCH changes only the profile fields given,
/// validates them and answers with the `/me` shape; both need a session.
pub async fn me_and_profile(ctx: Arc<Ctx>) -> R {
    let (brain, admin) = start(&ctx).await?;
    let (status, created) = admin
        .send(
            &brain,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"slug": "second", "name": "Second"})),
        )
        .await?;
    ensure_eq(status, 201, &format!("second project: {created}"))?;
    let (status, me) = admin.get(&brain, "/api/v1/auth/me").await?;
    let mut roles = roles_of(&me);
    roles.sort();
    ensure_eq(
        (status, roles),
        (
            200,
            vec![
                ("default".to_owned(), "admin".to_owned()),
                ("second".to_owned(), "admin".to_owned()),
            ],
        ),
        &format!("an admin's memberships: {me}"),
    )?;
    member(&brain, &admin, "operator").await?;
    let op = agent::login_as(&brain, MEMBER_EMAIL, MEMBER_PASSWORD).await?;
    let (status, me) = op.get(&brain, "/api/v1/auth/me").await?;
    ensure_eq(
        (status, roles_of(&me)),
        (200, vec![("default".to_owned(), "operator".to_owned())]),
        &format!("a member's memberships: {me}"),
    )?;
    ensure(
        me["memberships"][0]["project_id"].is_string() && me["email"] == MEMBER_EMAIL,
        format!("/me shape: {me}"),
    )?;

    let (status, patched) = op
        .send(
            &brain,
            Method::PATCH,
            "/api/v1/auth/me",
            Some(json!({"display_name": "Night Shift", "timezone": "Europe/Berlin"})),
        )
        .await?;
    ensure(
        status == 200
            && patched["display_name"] == "Night Shift"
            && patched["timezone"] == "Europe/Berlin"
            && patched["email"] == MEMBER_EMAIL
            && patched["memberships"].as_array().map(Vec::len) == Some(1),
        format!("PATCH /auth/me: {status} {patched}"),
    )?;
    let (_, me) = op.get(&brain, "/api/v1/auth/me").await?;
    ensure_eq(
        (me["display_name"].clone(), me["timezone"].clone()),
        (json!("Night Shift"), json!("Europe/Berlin")),
        "the profile change persists",
    )?;
    let (status, _) = op
        .send(
            &brain,
            Method::PATCH,
            "/api/v1/auth/me",
            Some(json!({"display_name": ""})),
        )
        .await?;
    ensure_eq(status, 422, "an empty display name")?;
    let no_csrf = super::client()
        .patch(brain.url("/api/v1/auth/me"))
        .header("cookie", &op.cookie)
        .json(&json!({"timezone": "UTC"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        no_csrf.status().as_u16(),
        403,
        "PATCH without the CSRF header",
    )?;
    let anonymous = super::client()
        .get(brain.url("/api/v1/auth/me"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(anonymous.status().as_u16(), 401, "/me without a session")?;
    Ok(())
}

async fn sessions_of(brain: &Brain, op: &Operator) -> Result<Vec<Json>, String> {
    let (status, body) = op.get(brain, "/api/v1/auth/sessions").await?;
    ensure_eq(status, 200, &format!("GET /auth/sessions: {body}"))?;
    Ok(body.as_array().cloned().unwrap_or_default())
}

async fn alive(brain: &Brain, op: &Operator) -> Result<bool, String> {
    Ok(op.get(brain, "/api/v1/auth/me").await?.0 == 200)
}

/// The session list shows the caller's live sessions newest first with the
/// current one marked; one can be revoked by id (404 for another user's
/// or an unknown id), or all but the current one at once.
pub async fn sessions(ctx: Arc<Ctx>) -> R {
    let (brain, admin) = start(&ctx).await?;
    member(&brain, &admin, "viewer").await?;
    let a = agent::login_as(&brain, MEMBER_EMAIL, MEMBER_PASSWORD).await?;
    let b = agent::login_as(&brain, MEMBER_EMAIL, MEMBER_PASSWORD).await?;
    let listed = sessions_of(&brain, &b).await?;
    ensure_eq(listed.len(), 2, &format!("two live sessions: {listed:?}"))?;
    let current: Vec<&Json> = listed.iter().filter(|s| s["is_current"] == true).collect();
    ensure_eq(
        current.len(),
        1,
        &format!("one session marked current: {listed:?}"),
    )?;
    ensure(
        listed.iter().all(|s| {
            s["id"].is_string()
                && s["issued_at"].is_string()
                && s["last_seen_at"].is_string()
                && s["ip_at_issue"].is_string()
        }),
        format!("session fields: {listed:?}"),
    )?;
    // Newest first (sessions of the same instant may come in either order).
    ensure(
        listed[0]["issued_at"].as_str() >= listed[1]["issued_at"].as_str(),
        format!("ordered by issue time, newest first: {listed:?}"),
    )?;
    let a_id = listed
        .iter()
        .find(|s| s["is_current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap_or_default()
        .to_owned();

    // Another user cannot end it; an unknown id is 404 too.
    let (status, body) = admin
        .send(
            &brain,
            Method::POST,
            &format!("/api/v1/auth/sessions/{a_id}/revoke"),
            None,
        )
        .await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (404, Some("session not found")),
        &format!("revoking another user's session: {body}"),
    )?;
    let (status, _) = b
        .send(
            &brain,
            Method::POST,
            &format!("/api/v1/auth/sessions/{UNKNOWN_ID}/revoke"),
            None,
        )
        .await?;
    ensure_eq(status, 404, "revoking an unknown session")?;
    ensure(
        alive(&brain, &a).await?,
        "a survives the refused revocations",
    )?;

    let (status, body) = b
        .send(
            &brain,
            Method::POST,
            &format!("/api/v1/auth/sessions/{a_id}/revoke"),
            None,
        )
        .await?;
    ensure_eq(
        (status, body),
        (200, json!({"revoked": true})),
        "revoke session a",
    )?;
    ensure(!alive(&brain, &a).await?, "a revoked session is refused")?;
    ensure_eq(
        sessions_of(&brain, &b).await?.len(),
        1,
        "a revoked session is not listed",
    )?;

    let c = agent::login_as(&brain, MEMBER_EMAIL, MEMBER_PASSWORD).await?;
    let d = agent::login_as(&brain, MEMBER_EMAIL, MEMBER_PASSWORD).await?;
    let (status, body) = b
        .send(
            &brain,
            Method::POST,
            "/api/v1/auth/sessions/revoke-others",
            None,
        )
        .await?;
    ensure_eq(
        (status, body),
        (200, json!({"revoked": true})),
        "revoke the others",
    )?;
    ensure(
        !alive(&brain, &c).await? && !alive(&brain, &d).await?,
        "the other sessions are refused",
    )?;
    ensure(alive(&brain, &b).await?, "the caller's session survives")?;
    ensure(
        alive(&brain, &admin).await?,
        "another user's sessions are untouched",
    )?;
    let left = sessions_of(&brain, &b).await?;
    ensure(
        left.len() == 1 && left[0]["is_current"] == true,
        format!("only the current session is left: {left:?}"),
    )?;
    let no_csrf = super::client()
        .post(brain.url("/api/v1/auth/sessions/revoke-others"))
        .header("cookie", &b.cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        no_csrf.status().as_u16(),
        403,
        "revoke-others without the CSRF header",
    )?;
    Ok(())
}
