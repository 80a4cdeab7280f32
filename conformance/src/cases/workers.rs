//! Background workers (storage spec 3): reconciliation of stale in-flight
//! tasks, leader election between replicas, event retention.

use super::{ensure, ensure_eq, owned, R};
use crate::agent::{self, task_event, value, Operator, Session};
use crate::brain::{Brain, Home};
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use z4j_protocol::FrameType;

/// Runs statements on the brain's own database (grey box).
async fn run_sql(ctx: &Ctx, home: &Home, pg_name: Option<&str>, stmts: &[String]) -> R {
    let mut c = super::grey::connect(ctx, &home.path, pg_name).await?;
    for s in stmts {
        c.exec(s).await?;
    }
    Ok(())
}

/// A timestamp literal `secs_ago` in the past, in the column format of
/// the dialect.
fn ts_ago(pg: bool, secs_ago: i64) -> String {
    ts_literal(pg, chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
}

/// The start of the minute `secs_ago` in the past, as [`ts_ago`] writes it
/// (depth history rows are per minute).
fn minute_ago(pg: bool, secs_ago: i64) -> String {
    use chrono::DurationRound;
    let t = chrono::Utc::now() - chrono::Duration::seconds(secs_ago);
    ts_literal(
        pg,
        t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t),
    )
}

fn ts_literal(pg: bool, t: chrono::DateTime<chrono::Utc>) -> String {
    let text = t.format("%Y-%m-%d %H:%M:%S%.6f");
    if pg {
        format!("'{text}+00'")
    } else {
        format!("'{text}'")
    }
}

/// A started task `secs_ago` old in the agent's project, and the agent
/// marked online just now with `rq` among its engines.
fn seed_stale(pg: bool, agent_name: &str, tasks: &[(&str, i64)]) -> Vec<String> {
    let new_id = if pg {
        "gen_random_uuid()"
    } else {
        "randomblob(16)"
    };
    let mut stmts: Vec<String> = tasks
        .iter()
        .map(|(task, age)| {
            let at = ts_ago(pg, *age);
            format!(
                "INSERT INTO tasks (id, project_id, engine, task_id, name, state, started_at, created_at, updated_at) \
                 SELECT {new_id}, project_id, 'rq', '{task}', 'jobs.slow', 'started', {at}, {at}, {at} \
                 FROM agents WHERE name = '{agent_name}'"
            )
        })
        .collect();
    stmts.push(format!(
        "UPDATE agents SET state = 'online', last_seen_at = {}, engine_adapters = '[\"rq\"]' WHERE name = '{agent_name}'",
        ts_ago(pg, 0)
    ));
    stmts
}

async fn reconcile_commands(brain: &Brain, op: &Operator) -> Result<Vec<Json>, String> {
    let (_, list) = op
        .get(brain, "/api/v1/projects/default/commands?limit=100")
        .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["action"] == "reconcile_task")
        .cloned()
        .collect())
}

pub async fn reconciliation(ctx: Arc<Ctx>) -> R {
    let (mut env, pg_name) = ctx.pinned_admin_env(&[]).await?;
    let pg = pg_name.is_some();
    env.extend(owned(&[
        ("Z4J_RECONCILIATION_SWEEP_SECONDS", "3600"),
        ("Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS", "60"),
    ]));
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "reconciler").await?;
    let home = brain.stop_keep_home().await;
    run_sql(
        &ctx,
        &home,
        pg_name.as_deref(),
        &seed_stale(pg, "reconciler", &[("stuck-120s", 120), ("busy-30s", 30)]),
    )
    .await?;
    // Boot tick: one probe for the task older than the threshold only.
    let brain = ctx.start_env(env.clone(), Some(home)).await?;
    let op = agent::login(&brain).await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    let probes = loop {
        let p = reconcile_commands(&brain, &op).await?;
        if !p.is_empty() || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure_eq(probes.len(), 1, &format!("probes after boot: {probes:?}"))?;
    ensure_eq(
        (probes[0]["target_id"].clone(), probes[0]["payload"].clone()),
        (
            json!("stuck-120s"),
            json!({"task_id": "stuck-120s", "engine": "rq"}),
        ),
        "the probe targets the stale task only",
    )?;
    // A restart inside the same sweep window asks again under the same
    // idempotency key: still one probe.
    let home = brain.stop_keep_home().await;
    run_sql(
        &ctx,
        &home,
        pg_name.as_deref(),
        &seed_stale(pg, "reconciler", &[]),
    )
    .await?;
    let brain = ctx.start_env(env.clone(), Some(home)).await?;
    let op = agent::login(&brain).await?;
    tokio::time::sleep(ctx.scaled(2.0)).await;
    ensure_eq(
        reconcile_commands(&brain, &op).await?.len(),
        1,
        "probes after a restart in the same window",
    )?;
    // The agent answers from its result backend; the task is corrected.
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let frame = next_command(&mut s).await?;
    ensure_eq(
        frame["payload"]["action"].as_str(),
        Some("reconcile_task"),
        "probe frame",
    )?;
    let id = frame["id"].as_str().unwrap_or_default().to_owned();
    s.send_signed(
        FrameType::CommandResult,
        &id,
        &[
            ("status", z4j_protocol::Value::str("success")),
            (
                "result",
                value(&json!({"task_id": "stuck-120s", "engine_state": "failure",
                              "finished_at": "2026-01-01T00:00:00Z", "exception": "lost worker"})),
            ),
            ("error", z4j_protocol::Value::Null),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ],
    )
    .await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let (_, t) = op
            .get(&brain, "/api/v1/projects/default/tasks/rq/stuck-120s")
            .await?;
        if t["state"] == "failure" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("task not corrected by the probe's answer: {t}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, young) = op
        .get(&brain, "/api/v1/projects/default/tasks/rq/busy-30s")
        .await?;
    ensure_eq(
        young["state"].as_str(),
        Some("started"),
        "the younger task is untouched",
    )
}

async fn next_command(s: &mut Session) -> Result<Json, String> {
    match s.recv(Duration::from_secs(10)).await? {
        Ok((FrameType::Command, j)) => Ok(j),
        Ok((ft, j)) => Err(format!("expected a command frame, got {ft:?}: {j}")),
        Err(c) => Err(format!("closed while waiting for a command: {c:?}")),
    }
}

/// The reconciliation worker runs only where its advisory lock (the
/// reference's id) is free: held by "another replica", no probe; released,
/// the next tick probes.
pub async fn leader_election(ctx: Arc<Ctx>) -> R {
    let (mut env, pg_name) = ctx.pinned_database().await?;
    let name = pg_name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&agent::admin_env()));
    env.extend(owned(&[
        ("Z4J_RECONCILIATION_SWEEP_SECONDS", "30"),
        ("Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS", "60"),
    ]));
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    op.mint(&brain, "led").await?;
    let home = brain.stop_keep_home().await;
    run_sql(
        &ctx,
        &home,
        Some(&name),
        &seed_stale(true, "led", &[("stuck", 300)]),
    )
    .await?;
    let url = ctx.pg_plain_url(&name).ok_or("no PostgreSQL URL")?;
    let mut holder = sqlx::PgConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("SELECT pg_advisory_lock(8853976985475711065)")
        .execute(&mut holder)
        .await
        .map_err(|e| e.to_string())?;
    let brain = ctx.start_env(env, Some(home)).await?;
    let op = agent::login(&brain).await?;
    tokio::time::sleep(ctx.scaled(3.0)).await;
    ensure_eq(
        reconcile_commands(&brain, &op).await?.len(),
        0,
        "no probe while another process holds the reconciliation lock",
    )?;
    sqlx::query("SELECT pg_advisory_unlock(8853976985475711065)")
        .execute(&mut holder)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + ctx.scaled(35.0);
    loop {
        if reconcile_commands(&brain, &op).await?.len() == 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("no probe within one sweep interval after the lock was released".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `Z4J_EVENT_RETENTION_DAYS` at its default (30): an event 31 days old is
/// gone after the boot sweep, one 29 days old is kept.
pub async fn event_retention(ctx: Arc<Ctx>) -> R {
    let (env, _) = ctx.pinned_admin_env(&[]).await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "historian").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let day = 86_400;
    let events: Vec<Json> = [("old-31d", 31 * day), ("kept-29d", 29 * day), ("fresh", 0)]
        .iter()
        .map(|(task, age)| {
            let mut e = task_event(task, "task.received", json!({"task_name": "jobs.hist"}));
            let at = chrono::Utc::now() - chrono::Duration::seconds(*age);
            e["occurred_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false));
            e
        })
        .collect();
    s.send_events("b-hist", &events).await?;
    s.expect_ack("b-hist", Duration::from_secs(10)).await?;
    ensure_eq(
        event_count(&brain, &op, "old-31d").await?,
        1,
        "the old event is stored before the sweep",
    )?;
    drop(s);
    let home = brain.stop_keep_home().await;
    let brain = ctx.start_env(env, Some(home)).await?;
    let op = agent::login(&brain).await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    while event_count(&brain, &op, "old-31d").await? != 0 {
        if Instant::now() > deadline {
            return Err("an event older than 30 days survived the boot sweep".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure_eq(
        (
            event_count(&brain, &op, "kept-29d").await?,
            event_count(&brain, &op, "fresh").await?,
        ),
        (1, 1),
        "events inside the retention window are kept",
    )
}

/// Queue depth history lives as long as raw events (30 days by default):
/// the boot sweep deletes a minute 31 days old and keeps one 29 days old
/// and the minute the agent just reported.
pub async fn queue_depth_retention(ctx: Arc<Ctx>) -> R {
    let (env, pg_name) = ctx.pinned_admin_env(&[]).await?;
    let pg = pg_name.is_some();
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "depth-keeper").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    s.send_heartbeat_with(json!({"rq.queue_depths": "{\"kept-q\": 4}"}))
        .await?;
    super::aggregates::wait_for_depth(&brain, &op, "kept-q", 4, ctx.scaled(5.0)).await?;
    drop(s);
    let home = brain.stop_keep_home().await;
    let day = 86_400;
    let seed: Vec<String> = [(31, 31 * day), (29, 29 * day)]
        .iter()
        .map(|(depth, age)| {
            format!(
                "INSERT INTO queue_depth_samples (queue_id, minute, depth) \
                 SELECT id, {}, {depth} FROM queues WHERE name = 'kept-q'",
                minute_ago(pg, *age)
            )
        })
        .collect();
    run_sql(&ctx, &home, pg_name.as_deref(), &seed).await?;
    let depths = |ctx: Arc<Ctx>, path: std::path::PathBuf, pg_name: Option<String>| async move {
        let mut c = super::grey::connect(&ctx, &path, pg_name.as_deref()).await?;
        let mut out = Vec::new();
        for d in [4, 29, 31] {
            let n = c
                .i64(&format!(
                    "SELECT COUNT(*) FROM queue_depth_samples WHERE depth = {d}"
                ))
                .await?;
            out.extend(std::iter::repeat_n(d, n as usize));
        }
        Ok::<_, String>(out)
    };
    ensure_eq(
        depths(ctx.clone(), home.path.clone(), pg_name.clone()).await?,
        vec![4, 29, 31],
        "three minutes stored before the sweep",
    )?;
    let brain = ctx.start_env(env, Some(home)).await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let now = depths(ctx.clone(), brain.home.clone(), pg_name.clone()).await?;
        if !now.contains(&31) {
            return ensure_eq(
                now,
                vec![4, 29],
                "the minutes inside the retention window are kept",
            );
        }
        if Instant::now() > deadline {
            return Err("a depth minute older than 30 days survived the boot sweep".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn event_count(brain: &Brain, op: &Operator, task: &str) -> Result<usize, String> {
    let (status, body) = op
        .get(
            brain,
            &format!("/api/v1/projects/default/events?engine=rq&task_id={task}"),
        )
        .await?;
    ensure_eq(status, 200, &format!("events of {task}: {body}"))?;
    let items = body.get("items").unwrap_or(&body);
    items
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("events of {task}: not a list: {body}"))
}

/// PostgreSQL: daily partitions for today and the next seven days exist
/// after boot; a partition of an expired day is dropped (storage spec 1.8).
pub async fn event_partitions(ctx: Arc<Ctx>) -> R {
    let (mut env, pg_name) = ctx.pinned_database().await?;
    let name = pg_name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&[("Z4J_EVENT_RETENTION_DAYS", "1")]));
    let brain = ctx.start_env(env.clone(), None).await?;
    let url = ctx.pg_plain_url(&name).ok_or("no PostgreSQL URL")?;
    let mut c = sqlx::PgConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let children = || async {
        let mut c = sqlx::PgConnection::connect(&url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query_scalar::<_, String>(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events' ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .map_err(|e| e.to_string())
    };
    let today = chrono::Utc::now().date_naive();
    let want: Vec<String> = (0..=7)
        .map(|i| {
            format!(
                "events_{}",
                (today + chrono::Duration::days(i)).format("%Y_%m_%d")
            )
        })
        .collect();
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let have = children().await?;
        if want.iter().all(|w| have.contains(w)) && have.iter().any(|h| h == "events_default") {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "partitions after boot: {have:?}, want {want:?} and events_default"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let home = brain.stop_keep_home().await;
    sqlx::query(
        "CREATE TABLE events_2020_01_01 PARTITION OF events \
         FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00')",
    )
    .execute(&mut c)
    .await
    .map_err(|e| e.to_string())?;
    let _brain = ctx.start_env(env, Some(home)).await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let have = children().await?;
        if !have.iter().any(|h| h == "events_2020_01_01") {
            return ensure(
                want.iter().all(|w| have.contains(w)),
                format!("current partitions kept: {have:?}"),
            );
        }
        if Instant::now() > deadline {
            return Err(format!("expired partition not dropped at boot: {have:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reconciliation with nothing configured: the boot sweep probes a started
/// task 910 s old and not one 890 s old (the 900 s threshold); the next
/// sweep, 300 s later and not before, probes the second one (grey box: the
/// tasks are seeded in the brain's schema). A long case: five minutes.
pub async fn reconciliation_default(ctx: Arc<Ctx>) -> R {
    let (env, pg_name) = ctx.pinned_admin_env(&[]).await?;
    let pg = pg_name.is_some();
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    op.mint(&brain, "reconciler").await?;
    let home = brain.stop_keep_home().await;
    run_sql(
        &ctx,
        &home,
        pg_name.as_deref(),
        &seed_stale(pg, "reconciler", &[("stuck-910s", 910), ("busy-890s", 890)]),
    )
    .await?;
    let booted = Instant::now();
    let brain = ctx.start_env(env.clone(), Some(home.clone())).await?;
    let op = agent::login(&brain).await?;
    let probed = |p: &[Json], task: &str| p.iter().any(|c| c["target_id"] == task);
    let deadline = Instant::now() + ctx.scaled(5.0);
    let mut probes = reconcile_commands(&brain, &op).await?;
    while probes.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        probes = reconcile_commands(&brain, &op).await?;
    }
    if !probed(&probes, "stuck-910s") || probed(&probes, "busy-890s") {
        ctx.fail_clause(
            "Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS",
            format!(
                "the boot sweep probed {:?}; want stuck-910s only (900 s threshold)",
                probes
                    .iter()
                    .map(|c| c["target_id"].clone())
                    .collect::<Vec<_>>()
            ),
        );
    }
    // The agent stays online (as heartbeats would keep it) until the next
    // sweep probes the other task.
    let keep_online = seed_stale(pg, "reconciler", &[]);
    let give_up = booted + ctx.scaled(300.0) + Duration::from_secs(15);
    let second = loop {
        run_sql(&ctx, &home, pg_name.as_deref(), &keep_online).await?;
        let p = reconcile_commands(&brain, &op).await?;
        if probed(&p, "busy-890s") {
            break Some(booted.elapsed());
        }
        if Instant::now() > give_up {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let slack = ctx.scaled(8.0);
    match second {
        Some(t) if t >= Duration::from_secs(295) && t <= Duration::from_secs(300) + slack => Ok(()),
        other => {
            ctx.fail_clause(
                "Z4J_RECONCILIATION_SWEEP_SECONDS",
                format!("the second sweep probed the other task {other:?} after boot; want 300 s"),
            );
            Ok(())
        }
    }
}
