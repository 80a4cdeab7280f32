//! The dashboard's schedule pages (issue 20): the list with health and
//! state, each role's controls, a schedule's page, and the global admins'
//! scheduler fleet page. Served HTML is z4j-rs's own; the reference's SPA
//! has no server-rendered pages (feature `html_dashboard`).

use super::dashboard::{brain_with, page};
use super::{ensure, ensure_eq, R};
use crate::agent;
use crate::runner::Ctx;
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;

const BASE: &str = "/api/v1/projects/default/schedules";

fn main_of(body: &str) -> &str {
    body.split("<main id=\"main\">").nth(1).unwrap_or(body)
}

pub async fn schedule_pages(ctx: Arc<Ctx>) -> R {
    // A closed loopback port: the fleet page shows it unreachable.
    let (brain, op) = brain_with(
        &ctx,
        &[("Z4J_SCHEDULER_INFO_URLS", "[\"http://127.0.0.1:9\"]")],
    )
    .await?;
    let (st, s) = op
        .send(
            &brain,
            Method::POST,
            BASE,
            Some(json!({
                "name": "<nightly>", "task_name": "jobs.report", "engine": "rq",
                "kind": "cron", "expression": "0 3 * * *", "args": [1], "queue": "q1",
            })),
        )
        .await?;
    ensure_eq(st, 201, &format!("a schedule to show: {s}"))?;
    let id = s["id"].as_str().unwrap_or_default().to_owned();
    let (st, b) = op
        .send(
            &brain,
            Method::POST,
            BASE,
            Some(json!({
                "name": "beat-owned", "task_name": "jobs.sync", "engine": "celery",
                "kind": "interval", "expression": "60", "scheduler": "celery-beat",
            })),
        )
        .await?;
    ensure_eq(st, 201, &format!("a schedule another scheduler runs: {b}"))?;
    let beat = b["id"].as_str().unwrap_or_default().to_owned();

    let (st, _, list) = page(&brain, Some(&op.cookie), "/projects/default/schedules").await?;
    let list = main_of(&list);
    let api = format!("{BASE}/{id}");
    ensure(
        st == 200
            && list.contains(&format!(
                r#"<a href="/projects/default/schedules/{id}">&lt;nightly&gt;</a>"#
            ))
            && list.contains("cron 0 3 * * *")
            && list.contains(r#"<span class="state s-online">enabled</span>"#)
            && list.contains(&format!(r#"data-api="POST {api}/disable""#))
            && list.contains(&format!(r#"data-api="POST {api}/pause""#))
            && list.contains(&format!(r#"data-api="POST {api}/trigger""#))
            && list.contains(r#"id="new-schedule""#),
        format!(
            "an admin's schedule list: the schedule, escaped, its state and every control: {list}"
        ),
    )?;
    ensure(
        list.contains("run by celery-beat") && !list.contains(&format!("{beat}/disable")),
        "a schedule another scheduler runs is shown without controls",
    )?;

    // Held: the list says so, offers Release and no Run now.
    let (st, _) = op
        .send(&brain, Method::POST, &format!("{api}/pause"), None)
        .await?;
    ensure_eq(st, 200, "pause")?;
    let (_, _, held) = page(&brain, Some(&op.cookie), "/projects/default/schedules").await?;
    ensure(
        held.contains(r#"<span class="state s-offline">held</span>"#)
            && held.contains(&format!(r#"data-api="POST {api}/resume""#))
            && !held.contains(&format!("{api}/trigger")),
        "a held schedule: its state, Release, no Run now",
    )?;

    // Roles: an operator operates but does not create; a viewer only reads.
    for (email, role) in [
        ("sched-op@example.com", "operator"),
        ("sched-viewer@example.com", "viewer"),
    ] {
        super::member_of_default(&brain, &op, email, "Sched-pages-pw-1", role).await?;
    }
    let operator = agent::login_as(&brain, "sched-op@example.com", "Sched-pages-pw-1").await?;
    let viewer = agent::login_as(&brain, "sched-viewer@example.com", "Sched-pages-pw-1").await?;
    let (_, _, olist) = page(
        &brain,
        Some(&operator.cookie),
        "/projects/default/schedules",
    )
    .await?;
    ensure(
        olist.contains(&format!("{api}/resume")) && !olist.contains("new-schedule"),
        "an operator holds and releases but creates nothing",
    )?;
    let (st, _, vlist) = page(&brain, Some(&viewer.cookie), "/projects/default/schedules").await?;
    ensure(
        st == 200 && vlist.contains("&lt;nightly&gt;") && !main_of(&vlist).contains("data-api="),
        "a viewer sees the schedules, no controls",
    )?;

    // A schedule's page: its definition, an edit form sending only what
    // changed, delete going back to the list, and its (empty) fires.
    let (st, _, one) = page(
        &brain,
        Some(&op.cookie),
        &format!("/projects/default/schedules/{id}"),
    )
    .await?;
    let one = main_of(&one);
    ensure(
        st == 200
            && one.contains("<h1>&lt;nightly&gt;</h1>")
            && one.contains("jobs.report")
            && one.contains("queue q1")
            && one.contains(r#"id="edit-schedule""#)
            && one.contains("data-only-changed")
            && one.contains(&format!(r#"data-api="DELETE {api}""#))
            && one.contains(r#"data-go="/projects/default/schedules""#)
            && one.contains("No fires yet."),
        format!("a schedule's page: {one}"),
    )?;
    let (_, _, vone) = page(
        &brain,
        Some(&viewer.cookie),
        &format!("/projects/default/schedules/{id}"),
    )
    .await?;
    ensure(
        vone.contains("jobs.report") && !main_of(&vone).contains("data-api="),
        "a viewer's schedule page has no controls",
    )?;
    for missing in [
        "/projects/default/schedules/00000000-0000-0000-0000-000000000000".to_owned(),
        "/projects/default/schedules/not-a-uuid".to_owned(),
    ] {
        let (st, _, _) = page(&brain, Some(&op.cookie), &missing).await?;
        ensure_eq(st, 404, &format!("{missing}: no such schedule"))?;
    }
    op.create_project(&brain, "sched-private").await?;
    let (st, _, _) = page(
        &brain,
        Some(&viewer.cookie),
        &format!("/projects/sched-private/schedules/{id}"),
    )
    .await?;
    ensure_eq(st, 404, "another project's schedule page, for a non-member")?;

    // The fleet: global admins only, each instance probed.
    let (st, _, fleet) = page(&brain, Some(&op.cookie), "/schedulers").await?;
    ensure(
        st == 200
            && fleet.contains(r#"href="/schedulers" aria-current="page""#)
            && fleet.contains("0 of 1 answering")
            && fleet.contains(r#"<span class="state s-offline">unreachable</span>"#),
        format!("the fleet page: {}", main_of(&fleet)),
    )?;
    let (st, _, _) = page(&brain, Some(&viewer.cookie), "/schedulers").await?;
    ensure_eq(st, 404, "the fleet page for a non-admin")
}
