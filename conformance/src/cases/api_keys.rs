//! API keys (http-api 2.7, 4.4): minted once, scoped, optionally bound to a
//! project, refused on identity routes and when revoked; bearer requests
//! need no CSRF token.

use super::{client, ensure, ensure_eq, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;

async fn mint(brain: &Brain, op: &Operator, body: Json) -> Result<(u16, Json), String> {
    op.send(brain, reqwest::Method::POST, "/api/v1/api-keys", Some(body))
        .await
}

async fn with_key(
    brain: &Brain,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Json>,
) -> Result<(u16, Json), String> {
    let mut req = client()
        .request(method, brain.url(path))
        .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Json::Null)))
}

pub async fn scoped_keys(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "keyed").await?;
    let (status, k) = mint(
        &brain,
        &op,
        json!({"name": "reader", "scopes": ["tasks:read"]}),
    )
    .await?;
    ensure_eq(status, 201, &format!("mint: {k}"))?;
    let reader = k["token"].as_str().unwrap_or_default().to_owned();
    ensure(
        reader.starts_with("z4k_") && reader.len() == 47,
        format!("token shape: {reader}"),
    )?;
    ensure_eq(k["prefix"].as_str(), Some(&reader[..8]), "prefix")?;
    let (_, listed) = op.get(&brain, "/api/v1/api-keys").await?;
    ensure(
        !listed.to_string().contains(&reader),
        "listing never shows the token",
    )?;
    ensure_eq(
        with_key(
            &brain,
            &reader,
            reqwest::Method::GET,
            "/api/v1/projects/default/tasks",
            None,
        )
        .await?
        .0,
        200,
        "tasks:read reads tasks",
    )?;
    let (status, body) = with_key(
        &brain,
        &reader,
        reqwest::Method::POST,
        "/api/v1/projects/default/commands/cancel-task",
        Some(json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": "t"})),
    )
    .await?;
    ensure_eq(
        (status, body["details"]["required_scope"].as_str()),
        (403, Some("commands:write")),
        &format!("missing scope: {body}"),
    )?;
    let (status, body) = with_key(
        &brain,
        &reader,
        reqwest::Method::GET,
        "/api/v1/auth/me",
        None,
    )
    .await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (403, Some("bearer_denied_for_tag")),
        "identity routes",
    )?;
    // A writer key issues commands without a CSRF token.
    let (_, k) = mint(
        &brain,
        &op,
        json!({"name": "writer", "scopes": ["commands:write"]}),
    )
    .await?;
    let writer = k["token"].as_str().unwrap_or_default().to_owned();
    let (status, body) = with_key(
        &brain,
        &writer,
        reqwest::Method::POST,
        "/api/v1/projects/default/commands/cancel-task",
        Some(json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": "t"})),
    )
    .await?;
    // The agent never connected: 503 `agent_offline` with the row kept
    // (decisions K2), which is past the CSRF check that cookies need.
    ensure_eq(
        (status, body["error"].as_str()),
        (503, Some("agent_offline")),
        &format!("bearer command without CSRF: {body}"),
    )?;
    // Sensitive actions need a session with a fresh second factor.
    let (status, _) = with_key(
        &brain,
        &writer,
        reqwest::Method::POST,
        "/api/v1/projects/default/agents",
        Some(json!({"name": "x"})),
    )
    .await?;
    ensure_eq(status, 403, "agent mint with a key")?;
    // Bound to the default project.
    op.create_project(&brain, "other").await?;
    let (_, default) = op.get(&brain, "/api/v1/projects/default").await?;
    let (_, k) = mint(
        &brain,
        &op,
        json!({"name": "bound", "scopes": ["tasks:read"], "project_id": default["id"]}),
    )
    .await?;
    let bound = k["token"].as_str().unwrap_or_default().to_owned();
    ensure_eq(
        with_key(
            &brain,
            &bound,
            reqwest::Method::GET,
            "/api/v1/projects/default/tasks",
            None,
        )
        .await?
        .0,
        200,
        "own project",
    )?;
    let (status, body) = with_key(
        &brain,
        &bound,
        reqwest::Method::GET,
        "/api/v1/projects/other/tasks",
        None,
    )
    .await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (403, Some("project_scope_mismatch")),
        "another project",
    )?;
    // The project list a bound key sees is its project alone; an unbound
    // key of the same owner sees both.
    let slugs = |body: &Json| -> Vec<String> {
        let mut v: Vec<String> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["slug"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    let (_, k) = mint(
        &brain,
        &op,
        json!({"name": "bound-lister", "scopes": ["projects:read", "users:read"], "project_id": default["id"]}),
    )
    .await?;
    let bound_lister = k["token"].as_str().unwrap_or_default().to_owned();
    let (status, listed_bound) = with_key(
        &brain,
        &bound_lister,
        reqwest::Method::GET,
        "/api/v1/projects",
        None,
    )
    .await?;
    ensure_eq(
        (status, slugs(&listed_bound)),
        (200, vec!["default".to_owned()]),
        &format!("the project list of a bound key: {listed_bound}"),
    )?;
    let (_, k) = mint(
        &brain,
        &op,
        json!({"name": "lister", "scopes": ["projects:read"]}),
    )
    .await?;
    let lister = k["token"].as_str().unwrap_or_default().to_owned();
    let (status, listed_all) = with_key(
        &brain,
        &lister,
        reqwest::Method::GET,
        "/api/v1/projects",
        None,
    )
    .await?;
    ensure_eq(
        (status, slugs(&listed_all)),
        (200, vec!["default".to_owned(), "other".to_owned()]),
        &format!("the project list of an unbound key: {listed_all}"),
    )?;
    let (status, body) = with_key(
        &brain,
        &bound_lister,
        reqwest::Method::GET,
        "/api/v1/users",
        None,
    )
    .await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (403, Some("project_scope_nonslug_denied")),
        "a slug-less route other than the project list with a bound key",
    )?;
    // Unknown scopes are refused; revoked and unknown keys are refused.
    let (status, body) = mint(
        &brain,
        &op,
        json!({"name": "bad", "scopes": ["tasks:read", "root:*"]}),
    )
    .await?;
    ensure_eq(
        (status, body["details"]["rejected_scopes"].clone()),
        (409, json!(["root:*"])),
        "unknown scope",
    )?;
    let id = listed
        .as_array()
        .and_then(|a| a.first())
        .and_then(|k| k["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            None,
        )
        .await?;
    ensure_eq(status, 204, "revoke")?;
    let (status, body) = with_key(
        &brain,
        &reader,
        reqwest::Method::GET,
        "/api/v1/projects/default/tasks",
        None,
    )
    .await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (401, Some("revoked")),
        "revoked key",
    )?;
    let (status, _) = with_key(
        &brain,
        "z4k_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        reqwest::Method::GET,
        "/api/v1/projects/default/tasks",
        None,
    )
    .await?;
    ensure_eq(status, 401, "unknown key")?;
    // Clients cannot impersonate a key through the internal header.
    let r = client()
        .get(brain.url("/api/v1/projects/default/tasks"))
        .header("x-z4j-internal-api-key", id)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        r.status().as_u16(),
        401,
        "a forged internal header is ignored",
    )
}
