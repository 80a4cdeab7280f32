//! The real agents from PyPI against the brain under test: z4j-bare over
//! WebSocket and long-poll, a real RQ worker, and a brain restart.

use super::gateway::setup;
use super::{ensure, ensure_eq, R};
use crate::agent::{Credentials, Operator};
use crate::brain::Brain;
use crate::python::{self, Proc};
use crate::runner::Ctx;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;

pub(super) fn agent_env(
    brain: &Brain,
    creds: &Credentials,
    transport: &str,
    home: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("Z4J_BRAIN_URL", brain.base_url.clone()),
        ("Z4J_TOKEN", creds.token.clone()),
        ("Z4J_PROJECT_ID", "default".into()),
        ("Z4J_HMAC_SECRET", creds.hmac_secret.clone()),
        ("Z4J_AGENT_ID", creds.agent_id.clone()),
        ("Z4J_TRANSPORT", transport.into()),
        ("Z4J_HOME", home.display().to_string()),
        ("Z4J_AGENT_NAME", "interop".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }
    env
}

/// Waits until every task `<prefix>-0..n` is in `state`.
pub(super) async fn wait_tasks(
    brain: &Brain,
    op: &Operator,
    prefix: &str,
    n: usize,
    state: &str,
    wait: Duration,
) -> R {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut missing = Vec::new();
        for i in 0..n {
            let (_, t) = op
                .get(
                    brain,
                    &format!("/api/v1/projects/default/tasks/rq/{prefix}-{i}"),
                )
                .await?;
            if t["state"].as_str() != Some(state) {
                missing.push(format!("{prefix}-{i}: {}", t["state"]));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("tasks not {state} in time: {missing:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each task of `prefix` has exactly its three lifecycle events.
pub(super) async fn no_duplicates(brain: &Brain, op: &Operator, prefix: &str, n: usize) -> R {
    for i in 0..n {
        let kinds = op.event_kinds(brain, &format!("{prefix}-{i}")).await?;
        ensure_eq(
            kinds.len(),
            3,
            &format!("events of {prefix}-{i}: {kinds:?}"),
        )?;
    }
    Ok(())
}

/// A real z4j-bare agent (the driver script) for `creds` on `transport`,
/// recording `tasks` lifecycles named `<prefix>-<i>` at once; its home
/// lives as long as the returned directory.
pub(super) async fn spawn_driver(
    brain: &Brain,
    creds: &Credentials,
    transport: &str,
    tasks: usize,
    prefix: &str,
) -> Result<(Proc, tempfile::TempDir), String> {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = python::scripts_dir().join("agent_driver.py");
    let mut env = agent_env(brain, creds, transport, home.path());
    env.push(("DRIVER_TASKS".into(), tasks.to_string()));
    env.push(("DRIVER_PREFIX".into(), prefix.into()));
    let proc = Proc::spawn(
        &[&script.display().to_string()],
        &env,
        &python::scripts_dir(),
    )
    .await?;
    Ok((proc, home))
}

async fn bare_agent(ctx: Arc<Ctx>, transport: &str) -> R {
    if !python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379 (the RQ adapter needs it)".into());
    }
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let (proc, _home) = spawn_driver(&brain, &creds, transport, 5, "bare").await?;
    proc.wait_line("driver: recorded", Duration::from_secs(60))
        .await?;
    wait_tasks(&brain, &op, "bare", 5, "success", ctx.scaled(30.0))
        .await
        .map_err(|e| format!("{e}\nagent output:\n{}", proc.output().join("\n")))?;
    no_duplicates(&brain, &op, "bare", 5).await?;
    // Heartbeats (every 10 s) keep moving the agent's last-seen instant
    // after its events are all in.
    let seen = |agents: &Json| agents[0]["last_seen_at"].as_str().map(str::to_owned);
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    let first = seen(&agents);
    let deadline = tokio::time::Instant::now() + ctx.scaled(30.0);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
        if seen(&agents) != first {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "no heartbeat moved last_seen_at within 30 s\nagent output:\n{}",
                proc.output().join("\n")
            ));
        }
    }
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    let a = &agents[0];
    ensure_eq(a["state"].as_str(), Some("online"), "agent state")?;
    if transport == "ws" {
        ensure_eq(
            a["agent_version"].as_str(),
            Some("1.13.0"),
            "agent version from hello",
        )?;
        ensure_eq(
            a["framework_adapter"].as_str(),
            Some("bare"),
            "framework from hello",
        )?;
        ensure(
            a["engine_adapters"]
                .as_array()
                .is_some_and(|e| e.contains(&Json::from("rq"))),
            format!("engines from hello: {a}"),
        )?;
    }
    proc.stop().await;
    Ok(())
}

pub async fn bare_ws(ctx: Arc<Ctx>) -> R {
    bare_agent(ctx, "ws").await
}

pub async fn bare_longpoll(ctx: Arc<Ctx>) -> R {
    bare_agent(ctx, "longpoll").await
}

/// A long-poll agent meets the body cap (specs/decisions.md G5): a frame
/// that can never fit the default 8 KiB is dropped by the agent after its
/// content-reject budget, and what came before and after it is stored.
pub async fn bare_longpoll_oversize(ctx: Arc<Ctx>) -> R {
    if !python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379 (the RQ adapter needs it)".into());
    }
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let (mut proc, _home) = spawn_driver(&brain, &creds, "longpoll", 3, "before").await?;
    let with_output =
        |e: String, proc: &Proc| format!("{e}\nagent output:\n{}", proc.output().join("\n"));
    proc.wait_line("driver: recorded before", Duration::from_secs(60))
        .await?;
    if let Err(e) = wait_tasks(&brain, &op, "before", 3, "success", ctx.scaled(30.0)).await {
        return Err(with_output(e, &proc));
    }
    // Three 6 000-character arguments: a frame of about 18 KiB.
    proc.send_line("big big 1 6000").await?;
    proc.wait_line("driver: recorded big", Duration::from_secs(30))
        .await?;
    proc.send_line("record after 3").await?;
    proc.wait_line("driver: recorded after", Duration::from_secs(30))
        .await?;
    if let Err(e) = wait_tasks(&brain, &op, "after", 3, "success", ctx.scaled(60.0)).await {
        return Err(with_output(
            format!("after the oversized frame: {e}"),
            &proc,
        ));
    }
    no_duplicates(&brain, &op, "before", 3).await?;
    no_duplicates(&brain, &op, "after", 3).await?;
    let kinds = op.event_kinds(&brain, "big-0").await?;
    ensure(
        !kinds.iter().any(|k| k == "task.received"),
        format!("the oversized event was stored past the 8 KiB body cap: {kinds:?}"),
    )?;
    proc.stop().await;
    Ok(())
}

pub async fn survives_restart(ctx: Arc<Ctx>) -> R {
    if !python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379 (the RQ adapter needs it)".into());
    }
    let (mut env, _) = ctx.pinned_database().await?;
    env.extend(super::owned(&crate::agent::admin_env()));
    let spec = |home, port| crate::brain::StartSpec {
        env: env.clone(),
        home,
        port,
        ..Default::default()
    };
    let brain = ctx.start_spec(spec(None, None)).await?;
    let op = crate::agent::login(&brain).await?;
    let creds = op.mint(&brain, "restarting").await?;
    let (mut proc, _home) = spawn_driver(&brain, &creds, "ws", 3, "before").await?;
    wait_tasks(&brain, &op, "before", 3, "success", ctx.scaled(30.0)).await?;
    let port = brain.port;
    let brain_home = brain.stop_keep_home().await;
    // Recorded while the brain is down: buffered by the agent.
    proc.send_line("record during 4").await?;
    proc.wait_line("driver: recorded during 4", Duration::from_secs(20))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let brain = ctx.start_spec(spec(Some(brain_home), Some(port))).await?;
    let op = crate::agent::login(&brain).await?;
    wait_tasks(&brain, &op, "during", 4, "success", ctx.scaled(60.0))
        .await
        .map_err(|e| format!("{e}\nagent output:\n{}", proc.output().join("\n")))?;
    no_duplicates(&brain, &op, "during", 4).await?;
    no_duplicates(&brain, &op, "before", 3).await?;
    proc.stop().await;
    Ok(())
}

pub async fn rq_worker(ctx: Arc<Ctx>) -> R {
    if !python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379".into());
    }
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let queue = format!("z4jconf-{}", uuid::Uuid::new_v4().simple());
    let mut env = agent_env(&brain, &creds, "ws", home.path());
    env.push(("Z4J_DEV_MODE".into(), "1".into()));
    env.push(("Z4J_RQ_REDIS_URL".into(), "redis://127.0.0.1:6379/0".into()));
    env.push((
        "PYTHONPATH".into(),
        python::scripts_dir().display().to_string(),
    ));
    let worker = spawn_rq_worker(&env, &queue).await?;
    let enqueue = Proc::spawn(
        &["rq_enqueue.py", &queue, "3", "1", "2"],
        &env,
        &python::scripts_dir(),
    )
    .await?;
    enqueue
        .wait_line("enqueued", Duration::from_secs(30))
        .await?;
    let jobs: Vec<(String, String)> = enqueue
        .output()
        .iter()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, k)| *k == "ok" || *k == "fail")
        .map(|(id, k)| (id.to_owned(), k.to_owned()))
        .collect();
    let flaky: Vec<String> = enqueue
        .output()
        .iter()
        .filter_map(|l| l.strip_suffix(" flaky").map(str::to_owned))
        .collect();
    ensure_eq(jobs.len(), 4, "jobs enqueued")?;
    ensure_eq(
        flaky.len(),
        2,
        &format!("flaky jobs enqueued: {:?}", enqueue.output()),
    )?;
    let deadline = tokio::time::Instant::now() + ctx.scaled(60.0);
    for (id, kind) in &jobs {
        let want = if kind == "ok" { "success" } else { "failure" };
        loop {
            let (_, t) = op
                .get(&brain, &format!("/api/v1/projects/default/tasks/rq/{id}"))
                .await?;
            if t["state"].as_str() == Some(want) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "job {id} never reached {want} (task: {t})\nworker output:\n{}",
                    worker.output().join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let kinds = op.event_kinds(&brain, id).await?;
        ensure(
            kinds.iter().any(|k| k == "task.started")
                && kinds
                    .iter()
                    .any(|k| k == "task.succeeded" || k == "task.failed"),
            format!("lifecycle events of job {id}: {kinds:?}"),
        )?;
    }
    // The flaky job fails once; retried through the API it runs again on
    // the worker and its new state shows in the tasks API.
    let (flaky, second) = (&flaky[0], &flaky[1]);
    wait_state(&brain, &op, flaky, "failure", deadline, &worker).await?;
    let (status, cmd) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/commands/retry-task",
            Some(serde_json::json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": flaky})),
        )
        .await?;
    ensure_eq(status, 202, &format!("retry-task: {cmd}"))?;
    let retry_deadline = tokio::time::Instant::now() + ctx.scaled(60.0);
    wait_state(&brain, &op, flaky, "success", retry_deadline, &worker).await?;
    let cmd_id = cmd["id"].as_str().unwrap_or_default();
    let (_, c) = op
        .get(
            &brain,
            &format!("/api/v1/projects/default/commands/{cmd_id}"),
        )
        .await?;
    ensure_eq(
        c["status"].as_str(),
        Some("completed"),
        &format!("retry command: {c}"),
    )?;
    // "Retry all failed": the brain resolves the selection to the failed
    // jobs it owns (the second flaky one and the one that always fails) and
    // the real agent requeues exactly those (decision K7).
    wait_state(&brain, &op, second, "failure", deadline, &worker).await?;
    let (status, cmd) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/commands/bulk-retry?wait=20",
            Some(serde_json::json!({"agent_id": creds.agent_id,
                                    "filter": {"engine": "rq", "state": "failure"}})),
        )
        .await?;
    ensure(
        status == 200
            && cmd["status"] == "completed"
            && cmd["result"]["retried"] == 2
            && cmd["result"]["source"] == "explicit_ids",
        format!("bulk-retry of the failed jobs, run by the real agent: {status} {cmd}"),
    )?;
    wait_state(&brain, &op, second, "success", retry_deadline, &worker).await?;
    worker.stop().await;
    Ok(())
}

async fn wait_state(
    brain: &Brain,
    op: &Operator,
    task_id: &str,
    want: &str,
    deadline: tokio::time::Instant,
    worker: &Proc,
) -> R {
    loop {
        let (_, t) = op
            .get(
                brain,
                &format!("/api/v1/projects/default/tasks/rq/{task_id}"),
            )
            .await?;
        if t["state"].as_str() == Some(want) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "job {task_id} never reached {want} (task: {t})\nworker output:\n{}",
                worker.output().join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An RQ worker on `queue` (with the suite's `rq_settings`, which start
/// the z4j agent configured by `env`).
pub(super) async fn spawn_rq_worker(env: &[(String, String)], queue: &str) -> Result<Proc, String> {
    Proc::spawn(
        &[
            "-m",
            "rq.cli",
            "worker",
            "--url",
            "redis://127.0.0.1:6379/0",
            "-c",
            "rq_settings",
            queue,
        ],
        env,
        &python::scripts_dir(),
    )
    .await
}
