//! Users and memberships (http-api 4.1, 4.5): global-admin user
//! management, project roles and what each may do, password resets ending
//! sessions, MFA enforcement for every user.

use super::{ensure, ensure_eq, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;

const OPS_EMAIL: &str = "ops@example.com";
const OPS_PASSWORD: &str = "Str0ng-pass-word!";

async fn send(
    brain: &Brain,
    op: &Operator,
    method: reqwest::Method,
    path: &str,
    body: Option<Json>,
) -> Result<(u16, Json), String> {
    op.send(brain, method, path, body).await
}

async fn create_ops(brain: &Brain, admin: &Operator) -> Result<String, String> {
    let (status, u) = send(
        brain,
        admin,
        reqwest::Method::POST,
        "/api/v1/users",
        Some(json!({"email": OPS_EMAIL, "password": OPS_PASSWORD, "display_name": "Ops"})),
    )
    .await?;
    ensure_eq(status, 201, &format!("create user: {u}"))?;
    Ok(u["id"].as_str().unwrap_or_default().to_owned())
}

pub async fn roles(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let brain = ctx.start(&env).await?;
    let admin = agent::login(&brain).await?;
    let ops_id = create_ops(&brain, &admin).await?;
    let (status, body) = send(
        &brain,
        &admin,
        reqwest::Method::POST,
        "/api/v1/users",
        Some(json!({"email": OPS_EMAIL, "password": OPS_PASSWORD})),
    )
    .await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (409, Some("email already in use")),
        "duplicate email",
    )?;
    let (status, _) = send(
        &brain,
        &admin,
        reqwest::Method::POST,
        "/api/v1/users",
        Some(json!({"email": "weak@example.com", "password": "password1234"})),
    )
    .await?;
    ensure_eq(status, 422, "a common password")?;

    let ops = agent::login_as(&brain, OPS_EMAIL, OPS_PASSWORD).await?;
    let (status, list) = ops.get(&brain, "/api/v1/projects").await?;
    ensure_eq(
        (status, list.as_array().map(Vec::len)),
        (200, Some(0)),
        "a user in no project sees none",
    )?;
    let (status, body) = ops.get(&brain, "/api/v1/projects/default/tasks").await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (404, Some("project 'default' not found")),
        "non-member",
    )?;
    let (status, body) = ops.get(&brain, "/api/v1/users").await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (403, Some("admin role required")),
        "users API for a non-admin",
    )?;

    let (status, m) = send(
        &brain,
        &admin,
        reqwest::Method::POST,
        "/api/v1/projects/default/memberships",
        Some(json!({"user_id": ops_id, "role": "viewer"})),
    )
    .await?;
    ensure_eq(status, 201, &format!("add membership: {m}"))?;
    let mid = m["id"].as_str().unwrap_or_default().to_owned();
    ensure_eq(
        ops.get(&brain, "/api/v1/projects/default/tasks").await?.0,
        200,
        "viewer reads tasks",
    )?;
    let creds = admin.mint(&brain, "target").await?;
    let (status, body) = send(
        &brain,
        &ops,
        reqwest::Method::POST,
        "/api/v1/projects/default/commands/cancel-task",
        Some(json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": "t"})),
    )
    .await?;
    ensure_eq(
        (
            status,
            body["details"]["have"].as_str(),
            body["details"]["need"].as_str(),
        ),
        (403, Some("viewer"), Some("operator")),
        &format!("viewer issuing a command: {body}"),
    )?;
    ensure_eq(
        ops.get(&brain, "/api/v1/projects/default/audit").await?.0,
        403,
        "viewer reading the audit log",
    )?;
    for (role, audit_status) in [("auditor", 200), ("operator", 403)] {
        let (status, _) = send(
            &brain,
            &admin,
            reqwest::Method::PATCH,
            &format!("/api/v1/projects/default/memberships/{mid}"),
            Some(json!({"role": role})),
        )
        .await?;
        ensure_eq(status, 200, &format!("change role to {role}"))?;
        ensure_eq(
            ops.get(&brain, "/api/v1/projects/default/audit").await?.0,
            audit_status,
            &format!("{role} reading the audit log"),
        )?;
    }
    let (status, _) = send(
        &brain,
        &admin,
        reqwest::Method::DELETE,
        &format!("/api/v1/projects/default/memberships/{mid}"),
        None,
    )
    .await?;
    ensure_eq(status, 204, "remove membership")?;
    ensure_eq(
        ops.get(&brain, "/api/v1/projects/default/tasks").await?.0,
        404,
        "removed member",
    )?;

    // An admin password reset ends the user's sessions.
    let (status, _) = send(
        &brain,
        &admin,
        reqwest::Method::POST,
        &format!("/api/v1/users/{ops_id}/password"),
        Some(json!({"new_password": "An0ther-strong-pass!"})),
    )
    .await?;
    ensure_eq(status, 204, "set password")?;
    ensure_eq(
        ops.get(&brain, "/api/v1/auth/me").await?.0,
        401,
        "old session after a password reset",
    )?;
    agent::login_as(&brain, OPS_EMAIL, "An0ther-strong-pass!").await?;
    let (status, _) = send(
        &brain,
        &admin,
        reqwest::Method::DELETE,
        &format!("/api/v1/users/{ops_id}"),
        None,
    )
    .await?;
    ensure_eq(status, 204, "delete user")?;
    ensure(
        agent::login_as(&brain, OPS_EMAIL, "An0ther-strong-pass!")
            .await
            .is_err(),
        "a deleted user cannot log in",
    )
}

async fn ops_login_body(brain: &Brain) -> Result<Json, String> {
    let resp = super::client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": OPS_EMAIL, "password": OPS_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(resp.json().await.unwrap_or(Json::Null))
}

/// `Z4J_MFA_ENFORCE_FOR_ALL` targets every user, not only admins.
pub async fn enforce_for_all(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ("Z4J_MFA_ENFORCE_FOR_ALL", "true"),
    ]);
    let brain = ctx.start(&env).await?;
    let admin = agent::login(&brain).await?;
    create_ops(&brain, &admin).await?;
    let body = ops_login_body(&brain).await?;
    ensure_eq(
        body["mfa_enrollment_required"].as_bool(),
        Some(true),
        &format!("a non-admin under ENFORCE_FOR_ALL: {body}"),
    )?;
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ("Z4J_MFA_ENFORCE_FOR_ADMINS", "true"),
    ]);
    let brain = ctx.start(&env).await?;
    let admin = agent::login(&brain).await?;
    create_ops(&brain, &admin).await?;
    let body = ops_login_body(&brain).await?;
    ensure_eq(
        body["mfa_enrollment_required"].as_bool(),
        Some(false),
        "a non-admin under ENFORCE_FOR_ADMINS only",
    )
}
