//! `GET /api/v1/activity` (dashboard spec 3.5): who sees which audit rows
//! across projects, the limits of its parameters, its cursors, and the
//! per-user budget of 60 calls a minute.

use super::{admin_brain, ensure, ensure_eq, member_of_default, R};
use crate::agent::{self, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;

async fn feed(brain: &Brain, who: &Operator, query: &str) -> Result<(u16, Json), String> {
    who.get(brain, &format!("/api/v1/activity{query}")).await
}

fn items(v: &Json) -> Vec<Json> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn activity(ctx: Arc<Ctx>) -> R {
    let (brain, op) = admin_brain(&ctx).await?;
    let (status, projects) = op.get(&brain, "/api/v1/projects").await?;
    ensure_eq(status, 200, "projects")?;
    let default_id = projects
        .as_array()
        .and_then(|a| a.iter().find(|p| p["slug"] == "default"))
        .map(|p| p["id"].clone())
        .unwrap_or(Json::Null);
    op.create_project(&brain, "act-other").await?;
    // Rows in two projects (invitations) and brain-wide rows (each user
    // created, each sign-in).
    for slug in ["default", "act-other"] {
        let (status, body) = op
            .send(
                &brain,
                reqwest::Method::POST,
                &format!("/api/v1/projects/{slug}/invitations"),
                Some(json!({"email": format!("act-{slug}@example.com"), "role": "viewer"})),
            )
            .await?;
        ensure_eq(status, 201, &format!("invite in {slug}: {body}"))?;
    }
    let auditor_id = member_of_default(
        &brain,
        &op,
        "act-auditor@example.com",
        "Act-auditor-pw-1",
        "auditor",
    )
    .await?;
    let viewer_id = member_of_default(
        &brain,
        &op,
        "act-viewer@example.com",
        "Act-viewer-pw-1",
        "viewer",
    )
    .await?;
    let auditor = agent::login_as(&brain, "act-auditor@example.com", "Act-auditor-pw-1").await?;
    let viewer = agent::login_as(&brain, "act-viewer@example.com", "Act-viewer-pw-1").await?;

    // A global admin: every project's rows and brain-wide rows.
    let (status, all) = feed(&brain, &op, "?limit=200").await?;
    ensure_eq(status, 200, "the admin's feed")?;
    let all = items(&all);
    let has = |rows: &[Json], action: &str, project_null: bool| {
        rows.iter()
            .any(|r| r["action"] == action && r["project_id"].is_null() == project_null)
    };
    ensure(
        has(&all, "invitation.mint", false) && has(&all, "auth.login", true),
        format!("an admin sees project and brain-wide rows: {all:?}"),
    )?;
    ensure(
        all.iter()
            .filter(|r| r["action"] == "invitation.mint")
            .count()
            == 2,
        "an admin sees both projects' invitations",
    )?;
    ensure(
        all.iter().any(|r| !r["source_ip"].is_null()),
        "source addresses are shown to global admins",
    )?;
    ensure(
        all.windows(2)
            .all(|w| w[0]["occurred_at"].as_str() >= w[1]["occurred_at"].as_str()),
        "newest first",
    )?;
    ensure(
        all.iter().any(|r| r["project_slug"] == "act-other"),
        "rows name their project's slug",
    )?;

    // An auditor: the default project's rows and their own brain-wide rows.
    let (status, seen) = feed(&brain, &auditor, "?limit=200").await?;
    ensure_eq(status, 200, "the auditor's feed")?;
    let seen = items(&seen);
    ensure(
        seen.iter().all(|r| {
            r["project_id"] == default_id
                || (r["project_id"].is_null() && r["user_id"] == json!(auditor_id))
        }),
        format!("an auditor sees their project's rows and their own: {seen:?}"),
    )?;
    ensure(
        seen.iter()
            .filter(|r| r["action"] == "invitation.mint")
            .count()
            == 1
            && seen.iter().any(|r| r["project_id"].is_null()),
        "an auditor sees the default project's invitation and their own sign-in",
    )?;
    ensure(
        seen.iter().all(|r| r["source_ip"].is_null()),
        "no source addresses for anyone but global admins",
    )?;

    // A viewer: only their own brain-wide rows.
    let (status, mine) = feed(&brain, &viewer, "?limit=200").await?;
    ensure_eq(status, 200, "the viewer's feed")?;
    let mine = items(&mine);
    ensure(
        !mine.is_empty()
            && mine
                .iter()
                .all(|r| r["project_id"].is_null() && r["user_id"] == json!(viewer_id)),
        format!("a viewer membership adds nothing: {mine:?}"),
    )?;

    // Narrowing.
    let (_, narrowed) = feed(&brain, &op, "?limit=200&project_slug=act-other").await?;
    let narrowed = items(&narrowed);
    ensure(
        narrowed.iter().any(|r| r["project_slug"] == "act-other")
            && narrowed
                .iter()
                .all(|r| r["project_slug"] == "act-other" || r["project_id"].is_null())
            && !narrowed.iter().any(|r| r["project_id"] == default_id),
        "project_slug narrows the project rows",
    )?;
    for (who, slug, what) in [
        (&op, "no-such-project", "an unknown slug"),
        (
            &auditor,
            "act-other",
            "a project whose audit the caller may not read",
        ),
    ] {
        let (status, body) = feed(&brain, who, &format!("?project_slug={slug}")).await?;
        ensure_eq(
            (status, items(&body).len()),
            (200, 0),
            &format!("{what}: an empty page"),
        )?;
    }
    let (_, users) = feed(&brain, &op, "?limit=200&action_prefix=user.").await?;
    let users = items(&users);
    ensure(
        !users.is_empty()
            && users
                .iter()
                .all(|r| r["action"].as_str().is_some_and(|a| a.starts_with("user."))),
        "action_prefix narrows to a literal prefix",
    )?;
    let (_, literal) = feed(&brain, &op, "?action_prefix=user_").await?;
    ensure(
        items(&literal).is_empty(),
        "`_` in a prefix is literal, not a wildcard",
    )?;

    // Cursors: one row at a time, older and older.
    let (_, first) = feed(&brain, &op, "?limit=1").await?;
    let one = items(&first);
    let before = first["next_before_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure(
        one.len() == 1 && !before.is_empty() && first["newest_cursor"].is_string(),
        format!("limit=1 gives one row and cursors: {first}"),
    )?;
    let (_, second) = feed(
        &brain,
        &op,
        &format!("?limit=1&before_cursor={}", enc(&before)),
    )
    .await?;
    let two = items(&second);
    ensure(
        two.len() == 1
            && two[0]["id"] != one[0]["id"]
            && two[0]["occurred_at"].as_str() <= one[0]["occurred_at"].as_str(),
        "before_cursor pages to older rows",
    )?;
    let newest = first["newest_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, none_newer) = feed(&brain, &op, &format!("?since_cursor={}", enc(&newest))).await?;
    let second_newest = second["newest_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, newer) = feed(
        &brain,
        &op,
        &format!("?since_cursor={}", enc(&second_newest)),
    )
    .await?;
    ensure(
        items(&newer).iter().any(|r| r["id"] == one[0]["id"])
            && !items(&none_newer).iter().any(|r| r["id"] == one[0]["id"]),
        "since_cursor returns only rows newer than the cursor",
    )?;
    let (status, body) = feed(&brain, &op, "?before_cursor=garbage").await?;
    ensure_eq(
        (status, body),
        (422, json!({"detail": "malformed cursor"})),
        "a malformed cursor",
    )?;

    // Parameter limits, both sides.
    for (query, want) in [
        ("?limit=1", 200),
        ("?limit=200", 200),
        ("?limit=0", 422),
        ("?limit=201", 422),
        (&*format!("?action_prefix={}", "a".repeat(80)), 200),
        (&*format!("?action_prefix={}", "a".repeat(81)), 422),
        (&*format!("?project_slug={}", "a".repeat(80)), 200),
        (&*format!("?project_slug={}", "a".repeat(81)), 422),
        (&*format!("?before_cursor={}", "a".repeat(129)), 422),
    ] {
        let (status, _) = feed(&brain, &op, query).await?;
        ensure_eq(status, want, &format!("GET /activity{query:.40}"))?;
    }
    let (status, _) = feed(&brain, &op, "").await?;
    ensure_eq(status, 200, "no parameters")?;
    Ok(())
}

/// 60 calls per user per rolling minute: the 61st is refused with
/// `Retry-After: 60`; another user is not affected.
pub async fn activity_budget(ctx: Arc<Ctx>) -> R {
    let (brain, op) = admin_brain(&ctx).await?;
    member_of_default(
        &brain,
        &op,
        "budget@example.com",
        "Budget-user-pw-1",
        "viewer",
    )
    .await?;
    let user = agent::login_as(&brain, "budget@example.com", "Budget-user-pw-1").await?;
    let started = std::time::Instant::now();
    for i in 1..=60 {
        let (status, body) = feed(&brain, &user, "?limit=1").await?;
        ensure_eq(status, 200, &format!("call {i} of 60: {body}"))?;
    }
    ensure(
        started.elapsed() < std::time::Duration::from_secs(50),
        "60 calls well inside one window",
    )?;
    let resp = super::client()
        .get(brain.url("/api/v1/activity"))
        .header("cookie", &user.cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Json = resp.json().await.unwrap_or(Json::Null);
    ensure_eq(
        (status, retry.as_deref()),
        (429, Some("60")),
        "the 61st call in a minute",
    )?;
    ensure(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("per worker")),
        format!("the refusal says the budget is per worker: {body}"),
    )?;
    let (status, _) = feed(&brain, &op, "?limit=1").await?;
    ensure_eq(status, 200, "another user keeps their own budget")?;
    let (status, _) = feed(&brain, &user, "?limit=0").await?;
    ensure_eq(status, 422, "validation comes before the budget")
}

/// API keys cannot read the feed, not even an `admin:*` key: the key
/// gate refuses the route as no scope reaches (403, as for saved views).
pub async fn activity_keys(ctx: Arc<Ctx>) -> R {
    let (brain, op) = admin_brain(&ctx).await?;
    let (status, key) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "activity", "scopes": ["admin:*"]})),
        )
        .await?;
    ensure_eq(status, 201, &format!("a key: {key}"))?;
    let token = key["token"].as_str().unwrap_or_default();
    let resp = super::client()
        .get(brain.url("/api/v1/activity"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        resp.status().as_u16(),
        403,
        "an admin:* API key on /activity",
    )
}

/// Audit action names (decision U6): each write below leaves the row the
/// reference names, read back through the admin's activity feed.
pub async fn action_names(ctx: Arc<Ctx>) -> R {
    let (brain, op) = admin_brain(&ctx).await?;
    op.create_project(&brain, "names").await?;
    let user_id = member_of_default(
        &brain,
        &op,
        "names@example.com",
        "Names-user-pw-1",
        "viewer",
    )
    .await?;
    let (status, list) = op
        .get(&brain, "/api/v1/projects/default/memberships")
        .await?;
    ensure_eq(status, 200, "memberships")?;
    let membership = list
        .as_array()
        .and_then(|a| a.iter().find(|m| m["user_id"] == json!(user_id)))
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let creds = op.mint(&brain, "named-agent").await?;
    ensure_eq(
        op.revoke(&brain, &creds.agent_id).await?,
        204,
        "revoke the agent",
    )?;
    let (status, key) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "named-key", "scopes": ["tasks:read"]})),
        )
        .await?;
    ensure_eq(status, 201, &format!("mint an API key: {key}"))?;
    let key_id = key["id"].as_str().unwrap_or_default();
    use reqwest::Method as M;
    let steps = [
        (
            M::PATCH,
            "/api/v1/projects/names".to_owned(),
            Some(json!({"name": "Names renamed"})),
            200,
            "rename the project",
        ),
        (
            M::PATCH,
            format!("/api/v1/users/{user_id}"),
            Some(json!({"display_name": "Named"})),
            200,
            "edit the user",
        ),
        (
            M::POST,
            format!("/api/v1/users/{user_id}/password"),
            Some(json!({"new_password": "An0ther-strong-pass!"})),
            204,
            "set the user's password",
        ),
        (
            M::PATCH,
            format!("/api/v1/projects/default/memberships/{membership}"),
            Some(json!({"role": "operator"})),
            200,
            "change the role",
        ),
        (
            M::DELETE,
            format!("/api/v1/projects/default/memberships/{membership}"),
            None,
            204,
            "remove the membership",
        ),
        (
            M::DELETE,
            format!("/api/v1/users/{user_id}"),
            None,
            204,
            "delete the user",
        ),
        (
            M::DELETE,
            format!("/api/v1/api-keys/{key_id}"),
            None,
            204,
            "revoke the API key",
        ),
        (
            M::DELETE,
            "/api/v1/projects/names".to_owned(),
            None,
            204,
            "archive the project",
        ),
    ];
    for (method, path, body, want, what) in steps {
        let (status, answer) = op.send(&brain, method, &path, body).await?;
        ensure_eq(status, want, &format!("{what}: {answer}"))?;
    }
    // The second factor: enrolled, a wrong code, a right one, a recovery code.
    let (secret, codes) = super::mfa::enrol(&brain, &op).await?;
    for (code, want, what) in [
        (super::mfa::totp(&secret, 10), 401, "a code ten steps ahead"),
        (super::mfa::totp(&secret, 0), 200, "the current code"),
        (
            codes.first().cloned().unwrap_or_default(),
            200,
            "a recovery code",
        ),
    ] {
        let (status, body) = op
            .send(
                &brain,
                M::POST,
                "/api/v1/auth/mfa/verify",
                Some(json!({"code": code})),
            )
            .await?;
        ensure_eq(status, want, &format!("verify with {what}: {body}"))?;
    }

    let (status, all) = feed(&brain, &op, "?limit=200").await?;
    ensure_eq(status, 200, "the admin's feed")?;
    let seen: std::collections::BTreeSet<String> = items(&all)
        .iter()
        .filter_map(|r| r["action"].as_str().map(str::to_owned))
        .collect();
    let want = [
        "project.created",
        "project.updated",
        "project.archived",
        "user.created",
        "user.updated",
        "user.password.reset",
        "user.deleted",
        "membership.granted",
        "membership.updated",
        "membership.revoked",
        "agent.token.minted",
        "agent.token.revoked",
        "api_key.created",
        "api_key.revoked",
        "user.mfa_enrolled",
        "user.mfa_verify_failed",
        "user.mfa_verified",
        "user.mfa_recovery_code_used",
    ];
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|a| !seen.contains(*a))
        .collect();
    ensure(
        missing.is_empty(),
        format!("audit actions missing: {missing:?}; the feed holds {seen:?}"),
    )
}
