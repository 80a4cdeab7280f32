//! Saved views (dashboard spec 3.6): a user's own task-list filters per
//! project, validated, unique by name in any case, at most 100.

use super::{admin_brain, client, ensure, ensure_eq, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;

const VIEWS: &str = "/api/v1/projects/default/saved-views";

async fn post(brain: &Brain, op: &Operator, body: Json) -> Result<(u16, Json), String> {
    op.send(brain, reqwest::Method::POST, VIEWS, Some(body))
        .await
}

fn names(list: &Json) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

pub async fn saved_views(ctx: Arc<Ctx>) -> R {
    let (brain, admin) = admin_brain(&ctx).await?;
    super::member_of_default(
        &brain,
        &admin,
        "views@example.com",
        "views-pass-1234",
        "viewer",
    )
    .await?;
    let op = agent::login_as(&brain, "views@example.com", "views-pass-1234").await?;

    let (status, v) = post(
        &brain,
        &op,
        json!({"name": "  Failing  ", "filters": {"state": "failure", "priority": ["low", "critical", "low"]}}),
    )
    .await?;
    ensure_eq(status, 201, &format!("a viewer saves a view: {v}"))?;
    ensure_eq(
        (v["name"].clone(), v["filters"].clone()),
        (
            json!("Failing"),
            json!({"state": "failure", "priority": ["critical", "low"], "search": ""}),
        ),
        "trimmed name, canonical priorities, default search",
    )?;
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let (status, v) = post(&brain, &op, json!({"name": "Alpha", "filters": {}})).await?;
    ensure_eq(status, 201, &format!("second view: {v}"))?;
    let (_, list) = op.get(&brain, VIEWS).await?;
    ensure_eq(
        names(&list),
        vec!["Alpha".to_owned(), "Failing".into()],
        "a bare array by name",
    )?;

    // Another user's list never shows them, nor may they touch them.
    let (_, theirs) = admin.get(&brain, VIEWS).await?;
    ensure_eq(theirs, json!([]), "the admin's own views")?;
    let path = format!("{VIEWS}/{id}");
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let body = (method == reqwest::Method::PUT).then(|| json!({"name": "x", "filters": {}}));
        let (status, _) = admin.send(&brain, method.clone(), &path, body).await?;
        ensure_eq(status, 404, &format!("{method} of another user's view"))?;
    }

    // Names are unique in any case; a rename onto a taken name too.
    let (status, _) = post(&brain, &op, json!({"name": "FAILING", "filters": {}})).await?;
    ensure_eq(status, 409, "a duplicate name in another case")?;
    let (status, body) = op
        .send(
            &brain,
            reqwest::Method::PUT,
            &path,
            Some(json!({"name": "alpha", "filters": {}})),
        )
        .await?;
    ensure_eq(status, 409, &format!("a rename onto a taken name: {body}"))?;
    let (status, v) = op
        .send(
            &brain,
            reqwest::Method::PUT,
            &path,
            Some(json!({"name": "Failing now", "filters": {"search": "boom"}})),
        )
        .await?;
    ensure_eq(status, 200, &format!("a full replace: {v}"))?;
    ensure_eq(
        v["filters"].clone(),
        json!({"state": null, "priority": [], "search": "boom"}),
        "replaced, not merged",
    )?;

    // Validation names the field; both sides of each limit.
    let n80 = "n".repeat(80);
    let n81 = "n".repeat(81);
    let s200 = "s".repeat(200);
    let s201 = "s".repeat(201);
    for (body, want, loc) in [
        (json!({"name": n80, "filters": {}}), 201, json!(null)),
        (
            json!({"name": n81, "filters": {}}),
            422,
            json!(["body", "name"]),
        ),
        (
            json!({"name": "   ", "filters": {}}),
            422,
            json!(["body", "name"]),
        ),
        (
            json!({"name": "s200", "filters": {"search": s200}}),
            201,
            json!(null),
        ),
        (
            json!({"name": "s201", "filters": {"search": s201}}),
            422,
            json!(["body", "filters", "search"]),
        ),
        (
            json!({"name": "p4", "filters": {"priority": ["low", "high", "normal", "critical"]}}),
            201,
            json!(null),
        ),
        (
            json!({"name": "p5", "filters": {"priority": ["low", "low", "low", "low", "low"]}}),
            422,
            json!(["body", "filters", "priority"]),
        ),
        (
            json!({"name": "st", "filters": {"state": "done"}}),
            422,
            json!(["body", "filters", "state"]),
        ),
        (
            json!({"name": "k", "filters": {}, "page": "tasks"}),
            422,
            json!(["body", "page"]),
        ),
        (
            json!({"name": "k", "filters": {"queue": "q"}}),
            422,
            json!(["body", "filters", "queue"]),
        ),
    ] {
        let (status, resp) = post(&brain, &op, body.clone()).await?;
        ensure_eq(status, want, &format!("{body}: {resp}"))?;
        if want == 422 {
            ensure_eq(resp["detail"][0]["loc"].clone(), loc, "422 names the field")?;
        }
    }

    // The 100th view is accepted, the 101st refused; freeing one admits one.
    let (_, list) = op.get(&brain, VIEWS).await?;
    let have = list.as_array().map_or(0, Vec::len);
    for i in have..100 {
        let (status, resp) = post(
            &brain,
            &op,
            json!({"name": format!("v{i:03}"), "filters": {}}),
        )
        .await?;
        ensure_eq(status, 201, &format!("view {} of 100: {resp}", i + 1))?;
    }
    let (status, resp) = post(&brain, &op, json!({"name": "one too many", "filters": {}})).await?;
    ensure_eq(status, 409, &format!("the 101st view: {resp}"))?;
    ensure(
        resp.to_string().contains("100"),
        format!("the refusal names the cap: {resp}"),
    )?;
    let (status, _) = op
        .send(&brain, reqwest::Method::DELETE, &path, None)
        .await?;
    ensure_eq(status, 204, "delete")?;
    let (status, _) = op
        .send(&brain, reqwest::Method::DELETE, &path, None)
        .await?;
    ensure_eq(status, 404, "delete twice")?;
    let (status, _) = post(&brain, &op, json!({"name": "one too many", "filters": {}})).await?;
    ensure_eq(status, 201, "a freed place")?;

    // CSRF on writes; keys never reach views.
    let r = client()
        .post(brain.url(VIEWS))
        .header("cookie", &op.cookie)
        .json(&json!({"name": "no csrf", "filters": {}}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(r.status().as_u16(), 403, "a write without the CSRF token")?;
    let (status, k) = admin
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "all", "scopes": ["admin:*"]})),
        )
        .await?;
    ensure_eq(status, 201, &format!("mint key: {k}"))?;
    let r = client()
        .get(brain.url(VIEWS))
        .header(
            "authorization",
            format!("Bearer {}", k["token"].as_str().unwrap_or_default()),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(r.status().as_u16(), 403, "an admin:* key")?;
    Ok(())
}
