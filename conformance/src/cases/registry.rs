//! Command routing across replicas sharing one PostgreSQL (storage spec 4):
//! LISTEN/NOTIFY delivery, the listener's heartbeat, watchdog and recycle,
//! the reconcile poll, and the `local` backend that does none of it.

use super::{ensure, ensure_eq, owned, R};
use crate::agent::{self, Closed, Credentials, Operator, Session};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use z4j_protocol::FrameType;

/// Two brains on one database; the agent is minted through A.
struct Replicas {
    a: Brain,
    b: Brain,
    op: Operator,
    creds: Credentials,
    db_name: String,
}

async fn replicas(ctx: &Ctx, extra: &[(&str, &str)]) -> Result<Replicas, String> {
    let (mut env, name) = ctx.pinned_database().await?;
    let db_name = name.ok_or("replicas need PostgreSQL")?;
    env.extend(owned(&agent::admin_env()));
    env.extend(owned(extra));
    let a = ctx.start_env(env.clone(), None).await?;
    let b = ctx.start_env(env, None).await?;
    let op = agent::login(&a).await?;
    let creds = op.mint(&a, "replicated-agent").await?;
    Ok(Replicas {
        a,
        b,
        op,
        creds,
        db_name,
    })
}

async fn pg(ctx: &Ctx, db_name: &str) -> Result<sqlx::PgConnection, String> {
    let url = ctx.pg_plain_url(db_name).ok_or("no PostgreSQL URL")?;
    sqlx::PgConnection::connect(&url)
        .await
        .map_err(|e| format!("connect to {db_name}: {e}"))
}

/// `(pid, application_name, seconds since backend_start)` of the registry
/// listeners on the database.
async fn listeners(
    c: &mut sqlx::PgConnection,
    db_name: &str,
) -> Result<Vec<(i32, String, f64)>, String> {
    sqlx::query_as::<_, (i32, String, f64)>(
        "SELECT pid, application_name, \
         extract(epoch FROM backend_start)::float8 \
         FROM pg_stat_activity WHERE datname = $1 \
         AND application_name LIKE 'z4j-brain-registry-%' ORDER BY pid",
    )
    .bind(db_name)
    .fetch_all(c)
    .await
    .map_err(|e| e.to_string())
}

/// Waits until `n` listeners are connected; returns them.
async fn wait_listeners(
    ctx: &Ctx,
    c: &mut sqlx::PgConnection,
    db_name: &str,
    n: usize,
    wait: Duration,
) -> Result<Vec<(i32, String, f64)>, String> {
    let deadline = Instant::now() + wait;
    loop {
        let l = listeners(c, db_name).await?;
        if l.len() == n {
            return Ok(l);
        }
        if Instant::now() > deadline {
            // More sessions than replicas, in whole multiples: the target
            // keeps several per replica, and these cases, which find a
            // replica's listener by its single session, cannot tell them
            // apart. That is no verdict on the guarantee.
            let single = ctx.target.has("registry_single_session");
            if !single && n > 0 && l.len() > n && l.len() % n == 0 {
                return Err(format!(
                    "{}the target keeps {} `z4j-brain-registry-*` sessions per replica; \
                     these cases need one per replica to find its listener",
                    crate::runner::SKIP_PREFIX,
                    l.len() / n
                ));
            }
            return Err(format!("want {n} registry listeners, have {l:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn issue_cancel(
    brain: &Brain,
    op: &Operator,
    creds: &Credentials,
    task: &str,
) -> Result<String, String> {
    let (status, c) = op
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/commands/cancel-task",
            Some(json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": task})),
        )
        .await?;
    ensure_eq(
        status,
        202,
        &format!("issue through the other replica: {c}"),
    )?;
    Ok(c["id"].as_str().unwrap_or_default().to_owned())
}

/// The next frame must be the command `id`, within `wait`.
async fn expect_command(s: &mut Session, id: &str, wait: Duration, what: &str) -> R {
    let started = Instant::now();
    match s.recv(wait).await {
        Ok(Ok((FrameType::Command, j))) => ensure_eq(j["id"].as_str(), Some(id), what),
        Ok(Ok((ft, j))) => Err(format!("{what}: expected a command, got {ft:?} {j}")),
        Ok(Err(c)) => Err(format!("{what}: closed {c:?}")),
        Err(e) => Err(format!(
            "{what}: no command after {:.1}s: {e}",
            started.elapsed().as_secs_f64()
        )),
    }
}

/// No command frame arrives within `wait` (nothing delivered twice, or
/// nothing delivered at all).
async fn expect_no_command(s: &mut Session, wait: Duration, what: &str) -> R {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match s.recv(deadline - Instant::now()).await {
            Ok(Ok((FrameType::Command, j))) => {
                return Err(format!("{what}: unexpected command frame {j}"))
            }
            Ok(Ok(_)) => {}
            Ok(Err(c)) => return Err(format!("{what}: closed {c:?}")),
            Err(_) => return Ok(()), // quiet until the deadline
        }
    }
    Ok(())
}

async fn status_of(brain: &Brain, op: &Operator, id: &str) -> Result<Json, String> {
    Ok(op
        .get(brain, &format!("/api/v1/projects/default/commands/{id}"))
        .await?
        .1["status"]
        .clone())
}

pub async fn cross_replica(ctx: Arc<Ctx>) -> R {
    let r = replicas(
        &ctx,
        &[
            ("Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS", "1"),
            ("Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS", "3"),
        ],
    )
    .await?;
    let mut c = pg(&ctx, &r.db_name).await?;
    let first = wait_listeners(&ctx, &mut c, &r.db_name, 2, ctx.scaled(10.0)).await?;
    let mut s = agent::connect(&r.b, &r.creds, Some("w")).await?;

    // Issued on A, delivered by B within a second.
    let id = issue_cancel(&r.a, &r.op, &r.creds, "x-1").await?;
    expect_command(
        &mut s,
        &id,
        ctx.scaled(1.0),
        "command issued on A reaches B's agent",
    )
    .await?;

    // Kill every listener; a command issued meanwhile still arrives within
    // the heartbeat timeout, once.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'z4j-brain-registry-%'")
        .bind(&r.db_name)
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let id2 = issue_cancel(&r.a, &r.op, &r.creds, "x-2").await?;
    expect_command(
        &mut s,
        &id2,
        ctx.scaled(3.0),
        "command issued while listeners were down",
    )
    .await?;
    let again = wait_listeners(&ctx, &mut c, &r.db_name, 2, ctx.scaled(5.0)).await?;
    ensure(
        again
            .iter()
            .all(|(pid, _, _)| first.iter().all(|(old, _, _)| old != pid)),
        format!("listeners reconnected on new backends: before {first:?}, after {again:?}"),
    )?;
    let id3 = issue_cancel(&r.a, &r.op, &r.creds, "x-3").await?;
    expect_command(
        &mut s,
        &id3,
        ctx.scaled(1.0),
        "command after the listeners came back",
    )
    .await?;
    expect_no_command(&mut s, ctx.scaled(2.0), "no command delivered twice").await?;
    for id in [&id, &id2, &id3] {
        ensure_eq(
            status_of(&r.a, &r.op, id).await?,
            json!("dispatched"),
            "delivered commands are dispatched",
        )?;
    }

    // Revocation on A closes the socket held by B.
    ensure_eq(r.op.revoke(&r.a, &r.creds.agent_id).await?, 204, "revoke")?;
    match s.recv(ctx.scaled(5.0)).await? {
        Err(Closed::Code(code, _)) => ensure_eq(code, 4003, "revoked on A, closed on B"),
        other => Err(format!(
            "expected close 4003 after revocation on A, got {other:?}"
        )),
    }
}

pub async fn local_backend(ctx: Arc<Ctx>) -> R {
    let r = replicas(&ctx, &[("Z4J_REGISTRY_BACKEND", "local")]).await?;
    let mut c = pg(&ctx, &r.db_name).await?;
    let mut s = agent::connect(&r.b, &r.creds, Some("w")).await?;
    // B sends the commands pending at connect beside the session, after
    // hello_ack: one committed on A before B reads them is rightly sent
    // (the drain checked below). Let that read happen first, so what
    // follows is issued to a connected agent.
    tokio::time::sleep(ctx.scaled(1.0)).await;
    let id = issue_cancel(&r.a, &r.op, &r.creds, "l-1").await?;
    expect_no_command(
        &mut s,
        ctx.scaled(2.0),
        "local backend: nothing crosses replicas",
    )
    .await?;
    ensure_eq(
        status_of(&r.a, &r.op, &id).await?,
        json!("pending"),
        "still pending",
    )?;
    ensure_eq(
        listeners(&mut c, &r.db_name).await?.len(),
        0,
        "no registry listener with the local backend",
    )?;
    // The agent's reconnect to B drains it.
    drop(s);
    let mut s = agent::connect(&r.b, &r.creds, Some("w")).await?;
    expect_command(
        &mut s,
        &id,
        ctx.scaled(3.0),
        "pending command drained on reconnect",
    )
    .await
}

/// Heartbeats: one NOTIFY per interval with this replica's worker id, and
/// a healthy listener keeps its backend.
pub async fn heartbeat(ctx: Arc<Ctx>) -> R {
    let (mut env, name) = ctx.pinned_database().await?;
    let db_name = name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&[("Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS", "1")]));
    let url = ctx.pg_plain_url(&db_name).ok_or("no PostgreSQL URL")?;
    let mut l = sqlx::postgres::PgListener::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    l.listen("z4j_heartbeat").await.map_err(|e| e.to_string())?;
    let _brain = ctx.start_env(env, None).await?;
    let mut c = pg(&ctx, &db_name).await?;
    let before = wait_listeners(&ctx, &mut c, &db_name, 1, ctx.scaled(10.0)).await?;
    let mut beats: Vec<(Instant, String)> = Vec::new();
    while beats.len() < 4 {
        let n = tokio::time::timeout(ctx.scaled(3.0), l.recv())
            .await
            .map_err(|_| format!("no heartbeat within 3s (have {})", beats.len()))?
            .map_err(|e| e.to_string())?;
        beats.push((Instant::now(), n.payload().to_owned()));
    }
    let id = &beats[0].1;
    ensure(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        format!("heartbeat payload is a 16-hex worker id: {id:?}"),
    )?;
    ensure(
        beats.iter().all(|(_, p)| p == id),
        "one replica, one worker id",
    )?;
    ensure_eq(
        before[0].1.clone(),
        format!("z4j-brain-registry-{id}"),
        "listener application_name carries the worker id",
    )?;
    let span = beats[3].0 - beats[1].0;
    ensure(
        span >= Duration::from_millis(1500) && span <= ctx.scaled(3.0),
        format!("two heartbeat intervals took {span:?}, want about 2s"),
    )?;
    let after = listeners(&mut c, &db_name).await?;
    ensure_eq(
        after.first().map(|l| l.0),
        before.first().map(|l| l.0),
        "a healthy listener keeps its backend",
    )
}

/// A heartbeat timeout shorter than the interval: the watchdog rebuilds the
/// listener every cycle.
pub async fn heartbeat_timeout(ctx: Arc<Ctx>) -> R {
    let (mut env, name) = ctx.pinned_database().await?;
    let db_name = name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&[
        ("Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS", "3"),
        ("Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS", "2"),
    ]));
    let _brain = ctx.start_env(env, None).await?;
    let mut c = pg(&ctx, &db_name).await?;
    let mut pid = wait_listeners(&ctx, &mut c, &db_name, 1, ctx.scaled(10.0)).await?[0].0;
    for round in 0..2 {
        let deadline = Instant::now() + ctx.scaled(8.0);
        loop {
            let now = listeners(&mut c, &db_name).await?;
            if let Some(l) = now.first().filter(|l| l.0 != pid) {
                pid = l.0;
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "round {round}: the listener was not rebuilt within 8s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// `Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS` at its minimum (60): the healthy
/// listener is replaced after 60 s; the default heartbeat (10 s) is seen
/// meanwhile.
pub async fn max_age(ctx: Arc<Ctx>) -> R {
    let (mut env, name) = ctx.pinned_database().await?;
    let db_name = name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&[("Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS", "60")]));
    let url = ctx.pg_plain_url(&db_name).ok_or("no PostgreSQL URL")?;
    let mut l = sqlx::postgres::PgListener::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    l.listen("z4j_heartbeat").await.map_err(|e| e.to_string())?;
    let _brain = ctx.start_env(env, None).await?;
    let mut c = pg(&ctx, &db_name).await?;
    let first = wait_listeners(&ctx, &mut c, &db_name, 1, ctx.scaled(10.0)).await?[0].clone();
    // Heartbeats at the default cadence while we wait.
    let mut beats = Vec::new();
    while beats.len() < 3 {
        tokio::time::timeout(ctx.scaled(15.0), l.recv())
            .await
            .map_err(|_| "no heartbeat within 15s at the default cadence".to_owned())?
            .map_err(|e| e.to_string())?;
        beats.push(Instant::now());
    }
    let gap = beats[2] - beats[1];
    ensure(
        gap >= Duration::from_secs(9) && gap <= ctx.scaled(11.0),
        format!("default heartbeat interval measured {gap:?}, want 10s"),
    )?;
    let deadline = Instant::now() + ctx.scaled(75.0);
    let next = loop {
        let now = listeners(&mut c, &db_name).await?;
        if let Some(l) = now.first().filter(|l| l.0 != first.0) {
            break l.clone();
        }
        if Instant::now() > deadline {
            return Err("the listener was not recycled within 75s".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let age = next.2 - first.2;
    ensure(
        (59.5..=ctx.scaled(12.0).as_secs_f64() + 60.0).contains(&age),
        format!("listener replaced after {age:.1}s, want 60s (+ one heartbeat tick)"),
    )
}

/// A pending row written without any NOTIFY reaches the connected agent
/// within the reconcile interval (grey box: writes the brain's schema).
pub async fn reconcile_poll(ctx: Arc<Ctx>) -> R {
    let (mut env, name) = ctx.pinned_database().await?;
    let db_name = name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&agent::admin_env()));
    env.extend(owned(&[("Z4J_REGISTRY_RECONCILE_INTERVAL_SECONDS", "1")]));
    let brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "polled").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let mut c = pg(&ctx, &db_name).await?;
    let id = uuid::Uuid::new_v4();
    let agent_id = uuid::Uuid::parse_str(&creds.agent_id).map_err(|e| e.to_string())?;
    insert_pending(&mut c, id, agent_id, 60).await?;
    expect_command(
        &mut s,
        &id.to_string(),
        ctx.scaled(2.5),
        "row inserted without NOTIFY",
    )
    .await
}

/// A pending command row for `agent_id`, written without any NOTIFY (grey
/// box: the brain's schema).
async fn insert_pending(
    c: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    agent_id: uuid::Uuid,
    timeout_secs: i64,
) -> R {
    sqlx::query(
        "INSERT INTO commands (id, project_id, agent_id, action, target_type, target_id, payload, \
         status, issued_at, timeout_at) \
         SELECT $1, project_id, id, 'cancel_task', 'task', 'rq:silent', \
         '{\"engine\":\"rq\",\"task_id\":\"silent\"}'::jsonb, 'pending', now(), \
         now() + make_interval(secs => $3) FROM agents WHERE id = $2",
    )
    .bind(id)
    .bind(agent_id)
    .bind(timeout_secs as f64)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// One brain on a fresh database with the suite's environment plus `extra`;
/// returns it with the database name.
async fn registry_brain(ctx: &Ctx, extra: &[(&str, &str)]) -> Result<(Brain, String), String> {
    let (mut env, name) = ctx.pinned_database().await?;
    let db_name = name.ok_or("needs PostgreSQL")?;
    env.extend(owned(&agent::admin_env()));
    env.extend(owned(extra));
    let brain = ctx.start_env(env, None).await?;
    Ok((brain, db_name))
}

/// Whether the first listener of `db_name` is replaced within `wait`.
async fn listener_replaced(
    ctx: &Ctx,
    db_name: &str,
    wait: Duration,
) -> Result<Option<Duration>, String> {
    let mut c = pg(ctx, db_name).await?;
    let first = wait_listeners(ctx, &mut c, db_name, 1, ctx.scaled(10.0)).await?[0].0;
    let started = Instant::now();
    while started.elapsed() < wait {
        if listeners(&mut c, db_name)
            .await?
            .first()
            .is_some_and(|l| l.0 != first)
        {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(None)
}

/// `Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS` unset (25 s): the
/// watchdog checks at each heartbeat tick how long ago the listener saw its
/// own heartbeat, so with heartbeats 24 s apart the listener is kept, and
/// with 26 s apart it is rebuilt at the second tick.
pub async fn heartbeat_timeout_default(ctx: Arc<Ctx>) -> R {
    let (_kept, kept_db) =
        registry_brain(&ctx, &[("Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS", "24")]).await?;
    let (_lost, lost_db) =
        registry_brain(&ctx, &[("Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS", "26")]).await?;
    let (kept, lost) = tokio::join!(
        listener_replaced(&ctx, &kept_db, Duration::from_secs(55)),
        listener_replaced(&ctx, &lost_db, ctx.scaled(40.0)),
    );
    if let Some(t) = kept? {
        ctx.fail_clause(
            "Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS",
            format!("heartbeats 24 s apart (under the 25 s timeout): the listener was rebuilt after {t:?}"),
        );
    }
    match lost? {
        Some(t) if t >= Duration::from_secs(20) => {}
        other => ctx.fail_clause(
            "Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS",
            format!("heartbeats 26 s apart (over the 25 s timeout): listener rebuilt after {other:?}, want at the second tick (~26 s)"),
        ),
    }
    Ok(())
}

/// `Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS` unset: a healthy listener is
/// recycled after 900 s (plus at most one 10 s heartbeat tick), not
/// before. A long case: fifteen minutes.
pub async fn max_age_default(ctx: Arc<Ctx>) -> R {
    let (_brain, db) = registry_brain(&ctx, &[]).await?;
    let replaced = listener_replaced(&ctx, &db, ctx.scaled(930.0)).await?;
    match replaced {
        Some(t) if t >= Duration::from_secs(895) && t <= ctx.scaled(915.0) => Ok(()),
        other => Err(format!(
            "the healthy listener was recycled after {other:?}; want 900 s"
        )),
    }
}

/// `Z4J_REGISTRY_RECONCILE_INTERVAL_SECONDS` unset: rows written without
/// any NOTIFY at six phases 5 s apart reach the connected agent by the
/// 30 s poll: none waits longer than 30 s, the unluckiest about that long
/// (grey box: writes the brain's schema).
pub async fn reconcile_default(ctx: Arc<Ctx>) -> R {
    let (brain, db_name) = registry_brain(&ctx, &[("Z4J_COMMAND_TIMEOUT_SECONDS", "300")]).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "polled").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let mut c = pg(&ctx, &db_name).await?;
    let agent_id = uuid::Uuid::parse_str(&creds.agent_id).map_err(|e| e.to_string())?;
    let mut written: Vec<(String, Instant)> = Vec::new();
    let mut latency: std::collections::BTreeMap<String, f64> = Default::default();
    let t0 = Instant::now();
    let give_up = t0 + Duration::from_secs(25) + ctx.scaled(40.0);
    while latency.len() < 6 && Instant::now() < give_up {
        let due = t0 + Duration::from_secs(5 * written.len() as u64);
        if written.len() < 6 && Instant::now() >= due {
            let id = uuid::Uuid::new_v4();
            insert_pending(&mut c, id, agent_id, 300).await?;
            written.push((id.to_string(), Instant::now()));
        }
        if let Ok(Ok((FrameType::Command, j))) = s.recv(Duration::from_millis(200)).await {
            let id = j["id"].as_str().unwrap_or_default();
            if let Some((_, at)) = written.iter().find(|(w, _)| w == id) {
                latency.insert(id.to_owned(), at.elapsed().as_secs_f64());
            }
        }
    }
    let worst = latency.values().copied().fold(0.0, f64::max);
    let slack = ctx.scaled(2.0).as_secs_f64();
    if latency.len() < 6 || !(24.0..=30.0 + slack).contains(&worst) {
        ctx.fail_clause(
            "Z4J_REGISTRY_RECONCILE_INTERVAL_SECONDS",
            format!(
                "{} of 6 rows delivered, latencies {:?}; with a 30 s poll the longest is 25-30 s",
                latency.len(),
                latency.values().collect::<Vec<_>>()
            ),
        );
    }
    Ok(())
}
