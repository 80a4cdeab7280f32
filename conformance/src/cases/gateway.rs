//! The agent gateway over real sockets: handshake, close codes, ingest and
//! acknowledgements, limits (specs/agent-protocol.md sections 2–7).

use super::{ensure, ensure_eq, R};
use crate::agent::{self, task_event, Closed, Credentials, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use z4j_protocol::FrameType;

/// A brain with the suite's admin, a logged-in operator and one agent.
pub async fn setup(
    ctx: &Ctx,
    extra: &[(&str, &str)],
) -> Result<(Brain, Operator, Credentials), String> {
    let mut env = agent::admin_env();
    env.extend_from_slice(extra);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "agent-1").await?;
    Ok((brain, op, creds))
}

const WAIT: Duration = Duration::from_secs(15);

pub(super) async fn closed_with(sock: &mut agent::RawSocket, want: u16, what: &str) -> R {
    match sock.expect_close(WAIT).await? {
        Closed::Code(code, _) => ensure_eq(code, want, what),
        Closed::Dropped => Err(format!("{what}: connection dropped without a close frame")),
    }
}

async fn task_state(brain: &Brain, op: &Operator, task_id: &str) -> Result<(u16, Json), String> {
    op.get(
        brain,
        &format!("/api/v1/projects/default/tasks/rq/{task_id}"),
    )
    .await
}

pub async fn handshake_and_ingest(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(
        &ctx,
        &[
            ("Z4J_REST_DEFAULT_PAGE_SIZE", "2"),
            ("Z4J_REST_MAX_PAGE_SIZE", "3"),
        ],
    )
    .await?;
    let mut s = agent::connect(&brain, &creds, Some("bare-1-1")).await?;
    let p = &s.ack["payload"];
    ensure_eq(
        p["agent_id"].as_str(),
        Some(creds.agent_id.as_str()),
        "hello_ack agent_id",
    )?;
    ensure_eq(
        p["project_id"].as_str(),
        Some(creds.project_id.as_str()),
        "hello_ack project_id",
    )?;
    ensure_eq(
        p["heartbeat_interval_seconds"].as_i64(),
        Some(10),
        "heartbeat interval",
    )?;
    ensure_eq(
        p["max_frame_size_bytes"].as_i64(),
        Some(1_048_576),
        "max frame size",
    )?;
    let sid = p["session_id"].as_str().unwrap_or_default();
    ensure(
        uuid::Uuid::parse_str(sid).is_ok_and(|u| u.to_string() == sid),
        format!("session_id is not a canonical lowercase UUID: {sid}"),
    )?;
    ensure_eq(
        s.ack["id"].as_str().map(str::to_owned),
        Some(format!("hack_{}", &sid.replace('-', "")[..12])),
        "hello_ack id",
    )?;

    // One good event and one without an engine: received 2, accepted 1.
    let mut engineless = task_event("t-0", "task.received", json!({}));
    engineless["engine"] = json!("");
    let batch = [
        task_event(
            "t-0",
            "task.received",
            json!({"task_name": "jobs.add", "queue": "default"}),
        ),
        engineless,
    ];
    s.send_events("ev_first", &batch).await?;
    let ack = s.expect_ack("ev_first", WAIT).await?;
    ensure_eq(
        (
            ack["received"].as_i64(),
            ack["accepted"].as_i64(),
            ack["rejected"].as_i64(),
        ),
        (Some(2), Some(1), Some(1)),
        "ack counts",
    )?;
    // The same events again are acknowledged but not stored twice.
    s.send_events("ev_first", &batch).await?;
    let ack = s.expect_ack("ev_first", WAIT).await?;
    ensure_eq(
        (ack["accepted"].as_i64(), ack["rejected"].as_i64()),
        (Some(0), Some(2)),
        "replayed batch counts",
    )?;
    for i in 1..=4 {
        let id = format!("t-{i}");
        for (kind, data) in [
            (
                "task.received",
                json!({"task_name": "jobs.add", "queue": "default"}),
            ),
            ("task.started", json!({"worker": "w-1"})),
            ("task.succeeded", json!({"result": i, "runtime_ms": 3})),
        ] {
            let bid = format!("ev_{id}_{kind}");
            s.send_events(&bid, &[task_event(&id, kind, data)]).await?;
            s.expect_ack(&bid, WAIT).await?;
        }
    }
    s.send_heartbeat().await?;

    let (status, task) = task_state(&brain, &op, "t-3").await?;
    ensure_eq(status, 200, "task detail status")?;
    ensure_eq(task["state"].as_str(), Some("success"), "t-3 state")?;
    ensure_eq(task["result"].as_i64(), Some(3), "t-3 result")?;
    ensure_eq(task["worker_name"].as_str(), Some("w-1"), "t-3 worker")?;
    let (_, t0) = task_state(&brain, &op, "t-0").await?;
    ensure_eq(t0["state"].as_str(), Some("received"), "t-0 state")?;

    // Page sizes: default 2, a larger limit capped at 3, cursors walk all 5.
    let (_, page) = op.get(&brain, "/api/v1/projects/default/tasks").await?;
    ensure_eq(
        page["items"].as_array().map(Vec::len),
        Some(2),
        "default page size",
    )?;
    let (_, page) = op
        .get(
            &brain,
            "/api/v1/projects/default/tasks?limit=100&include_total=true",
        )
        .await?;
    ensure_eq(
        page["items"].as_array().map(Vec::len),
        Some(3),
        "max page size",
    )?;
    ensure_eq(page["total_count"].as_i64(), Some(5), "total_count")?;
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/projects/default/tasks?cursor={c}"),
            None => "/api/v1/projects/default/tasks".into(),
        };
        let (_, page) = op.get(&brain, &path).await?;
        for t in page["items"].as_array().into_iter().flatten() {
            seen.insert(t["task_id"].as_str().unwrap_or_default().to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    ensure_eq(seen.len(), 5, "tasks reached through cursors")?;
    let (status, _) = op
        .get(&brain, "/api/v1/projects/default/tasks?limit=0")
        .await?;
    ensure_eq(status, 422, "limit=0")?;
    let (status, body) = op
        .get(&brain, "/api/v1/projects/default/tasks?state=bogus")
        .await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (422, Some("validation_error")),
        "state filter",
    )?;

    let (_, events) = op
        .get(
            &brain,
            "/api/v1/projects/default/events?engine=rq&task_id=t-2&limit=10",
        )
        .await?;
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    ensure_eq(kinds.len(), 3, "events of t-2")?;
    let (status, _) = op
        .get(&brain, "/api/v1/projects/default/events?engine=rq")
        .await?;
    ensure_eq(status, 422, "events without task_id")?;

    // The heartbeat's queue is listed; its depth where the listing carries
    // one (the queue fields are not specified; the reference has none).
    // A heartbeat has no ack: its rows land a moment after it is sent.
    let deadline = std::time::Instant::now() + WAIT;
    let (queues, workers) = loop {
        let (_, queues) = op.get(&brain, "/api/v1/projects/default/queues").await?;
        let (_, workers) = op.get(&brain, "/api/v1/projects/default/workers").await?;
        let has = |list: &Json, key: &str, name: &str| {
            list.as_array()
                .into_iter()
                .flatten()
                .any(|x| x[key] == name)
        };
        if (has(&queues, "name", "default") && has(&workers, "name", "host-x"))
            || std::time::Instant::now() >= deadline
        {
            break (queues, workers);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let default = queues
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["name"] == "default")
        .ok_or(format!("the heartbeat's queue is not listed: {queues}"))?;
    if default.get("pending_count").is_some() {
        ensure_eq(
            default["pending_count"].as_i64(),
            Some(7),
            &format!("queue depth from the heartbeat: {default}"),
        )?;
    }
    ensure(
        workers
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w["name"] == "w-1" && w["state"] == "online"),
        format!("worker w-1 not listed online: {workers}"),
    )?;
    let host = workers
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == "host-x")
        .cloned()
        .unwrap_or_default();
    ensure_eq(
        (
            host["concurrency"].as_i64(),
            host["pid"].as_i64(),
            host["active_tasks"].as_i64(),
            host["queues"].clone(),
        ),
        (Some(4), Some(77), Some(1), json!(["default"])),
        &format!("worker from the heartbeat's worker_details: {host}"),
    )?;
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    ensure_eq(
        agents[0]["state"].as_str(),
        Some("online"),
        "agent state while connected",
    )?;
    let (_, stats) = op.get(&brain, "/api/v1/projects/default/stats").await?;
    ensure_eq(
        stats["tasks_by_state"]["success"].as_i64(),
        Some(4),
        "stats success count",
    )?;
    Ok(())
}

pub async fn handshake_refusals(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[("Z4J_WS_MAX_FRAME_BYTES", "8192")]).await?;
    let bearer = format!("Bearer {}", creds.token);
    for (auth, what) in [
        (None, "no Authorization header"),
        (Some("Bearer not-a-token"), "unknown token"),
        (
            Some(format!("Basic {}", creds.token)).as_deref(),
            "wrong scheme",
        ),
    ] {
        let mut sock = agent::open(&brain, auth).await?;
        sock.send_text(&agent::hello(None).to_string()).await.ok();
        closed_with(&mut sock, 4401, what).await?;
    }
    // Lenient scheme/whitespace parsing.
    let mut sock = agent::open(&brain, Some(&format!("bEaReR    {}   ", creds.token))).await?;
    sock.send_text(&agent::hello(None).to_string()).await?;
    let first = sock.next_data(WAIT).await?;
    ensure(
        first.is_ok(),
        format!("case-insensitive scheme refused: {first:?}"),
    )?;
    drop(sock);

    let mut not_hello = agent::hello(None);
    not_hello["type"] = json!("heartbeat");
    let mut v1 = agent::hello(None);
    v1["v"] = json!(1);
    let mut big = agent::hello(None);
    big["payload"]["host"]["pad"] = json!("x".repeat(9000));
    let mut proto3 = agent::hello(None);
    proto3["payload"]["protocol_version"] = json!("3");
    for (text, code, what) in [
        (not_hello.to_string(), 4400, "first frame not hello"),
        ("{not json".to_owned(), 4400, "first frame invalid JSON"),
        (v1.to_string(), 4400, "hello with v=1"),
        (big.to_string(), 4400, "hello over Z4J_WS_MAX_FRAME_BYTES"),
        (proto3.to_string(), 4426, "protocol_version 3"),
    ] {
        let mut sock = agent::open(&brain, Some(&bearer)).await?;
        sock.send_text(&text).await?;
        closed_with(&mut sock, code, what).await?;
    }
    // A revoked token stops matching.
    ensure_eq(op.revoke(&brain, &creds.agent_id).await?, 204, "revoke")?;
    let mut sock = agent::open(&brain, Some(&bearer)).await?;
    sock.send_text(&agent::hello(None).to_string()).await.ok();
    closed_with(&mut sock, 4401, "revoked token").await
}

pub async fn session_refusals(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[("Z4J_WS_MAX_FRAME_BYTES", "8192")]).await?;
    // Each refusal on its own connection; the frame carries an event that
    // must not be stored.
    type Mangle = fn(&mut agent::Session, String) -> Result<String, String>;
    let cases: [(&str, u16, Mangle); 7] = [
        ("tampered payload", 4403, |_, f| {
            Ok(f.replace("rejected-", "rejectee-"))
        }),
        ("stale ts", 4403, |s, _| {
            let ts = z4j_protocol::frame::format_pydantic_utc(agent::now_micros() - 120_000_000);
            let ev = task_event("rejected-x", "task.received", json!({}));
            s.sign_stale(&ts, &ev)
        }),
        ("invalid JSON", 1011, |_, _| Ok("{broken".into())),
        ("unknown type", 1011, |_, f| {
            Ok(f.replace("\"event_batch\"", "\"event_batch_v9\""))
        }),
        ("v=3", 1011, |_, f| Ok(f.replacen("\"v\":2", "\"v\":3", 1))),
        ("NaN", 1011, |_, f| {
            Ok(f.replacen("\"events\":[", "\"events\":[NaN,", 1))
        }),
        ("over the frame cap", 4400, |_, f| {
            Ok(f.replacen(
                "\"data\":{",
                &format!("\"data\":{{\"pad\":\"{}\",", "y".repeat(9000)),
                1,
            ))
        }),
    ];
    for (what, code, mangle) in cases {
        let mut s = agent::connect(&brain, &creds, Some(what)).await?;
        let ev = task_event("rejected-x", "task.received", json!({"task_name": "x"}));
        let frame = s.sign(
            FrameType::EventBatch,
            "ev_bad",
            &[("events", agent::value(&Json::Array(vec![ev])))],
        )?;
        let bad = mangle(&mut s, frame)?;
        s.raw.send_text(&bad).await?;
        closed_with(&mut s.raw, code, what).await?;
    }
    // Replays: the same frame twice, then a lower seq.
    let mut s = agent::connect(&brain, &creds, Some("replay")).await?;
    let ev = task_event("replayed-1", "task.received", json!({}));
    let frame = s.sign(
        FrameType::EventBatch,
        "ev_once",
        &[("events", agent::value(&Json::Array(vec![ev])))],
    )?;
    s.raw.send_text(&frame).await?;
    s.expect_ack("ev_once", WAIT).await?;
    s.raw.send_text(&frame).await?;
    closed_with(&mut s.raw, 4403, "replayed frame").await?;
    // Signed for another session of the same agent, from the future, or
    // reusing an accepted nonce under a higher seq.
    let ev = task_event("rejected-x", "task.received", json!({}));
    let mut s = agent::connect(&brain, &creds, Some("binding")).await?;
    let frame = s.sign_for_other_session(creds.key()?, &ev)?;
    s.raw.send_text(&frame).await?;
    closed_with(&mut s.raw, 4403, "frame bound to another session").await?;
    let mut s = agent::connect(&brain, &creds, Some("future")).await?;
    let ts = z4j_protocol::frame::format_pydantic_utc(agent::now_micros() + 120_000_000);
    let frame = s.sign_stale(&ts, &ev)?;
    s.raw.send_text(&frame).await?;
    closed_with(&mut s.raw, 4403, "ts 120 s in the future").await?;
    let mut s = agent::connect(&brain, &creds, Some("nonce")).await?;
    let nonce = z4j_protocol::frame::random_nonce();
    let now = z4j_protocol::frame::format_pydantic_utc(agent::now_micros());
    let first = s.sign_exact(
        &now,
        &nonce,
        &task_event("nonce-ok", "task.received", json!({})),
    )?;
    s.raw.send_text(&first).await?;
    s.expect_ack("ev_stale", WAIT).await?;
    let again = s.sign_exact(&now, &nonce, &ev)?;
    s.raw.send_text(&again).await?;
    closed_with(&mut s.raw, 4403, "repeated nonce under a higher seq").await?;
    let (status, _) = task_state(&brain, &op, "rejected-x").await?;
    ensure_eq(status, 404, "a task from a rejected frame")?;
    let (status, _) = task_state(&brain, &op, "replayed-1").await?;
    ensure_eq(status, 200, "the accepted original of the replayed frame")
}

pub async fn slots_and_cap(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(&ctx, &[("Z4J_WS_PER_AGENT_CONCURRENCY_CAP", "2")]).await?;
    let mut first = agent::connect(&brain, &creds, Some("w-1")).await?;
    let _second = agent::connect(&brain, &creds, Some("w-1")).await?;
    closed_with(&mut first.raw, 4002, "displaced by the same worker_id").await?;
    let mut legacy = agent::connect(&brain, &creds, None).await?;
    let _legacy2 = agent::connect(&brain, &creds, None).await?;
    closed_with(&mut legacy.raw, 4002, "legacy slot displaced").await?;
    // Two slots taken (w-1, legacy): a third gets hello_ack, then 4429.
    let mut third = agent::connect(&brain, &creds, Some("w-3")).await?;
    closed_with(&mut third.raw, 4429, "worker beyond the cap").await
}

pub async fn revoke_kicks(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    ensure_eq(op.revoke(&brain, &creds.agent_id).await?, 204, "revoke")?;
    closed_with(&mut s.raw, 4003, "revoked while connected").await?;
    ensure_eq(
        op.revoke(&brain, &creds.agent_id).await?,
        204,
        "repeated revoke",
    )?;
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    ensure_eq(
        agents.as_array().map(Vec::len),
        Some(0),
        "revoked agents are hidden",
    )?;
    let unknown = uuid::Uuid::new_v4();
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::DELETE,
            &format!("/api/v1/projects/default/agents/{unknown}"),
            None,
        )
        .await?;
    ensure_eq(status, 404, "revoking an unknown agent")
}

pub async fn idle_timeout(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(&ctx, &[("Z4J_WS_IDLE_TIMEOUT_SECONDS", "15")]).await?;
    let mut s = agent::connect(&brain, &creds, Some("quiet")).await?;
    // A data frame resets the timer; pings would not.
    s.send_heartbeat().await?;
    let started = Instant::now();
    let closed = s.raw.expect_close(ctx.scaled(40.0)).await?;
    let took = started.elapsed();
    ensure_eq(closed, Closed::Code(4408, String::new()), "idle close")?;
    ensure(
        took >= Duration::from_secs_f64(14.5) && took <= ctx.scaled(15.0) + Duration::from_secs(5),
        format!("idle close after {took:?}, want about 15 s"),
    )
}

pub async fn connect_budget(ctx: Arc<Ctx>) -> R {
    let (brain, _op, _creds) = setup(&ctx, &[]).await?;
    // 600 attempts per rolling minute per address; each is refused (no
    // token) but counts.
    for i in 0..600 {
        let mut sock = agent::open(&brain, None).await?;
        match sock.expect_close(WAIT).await? {
            Closed::Code(4401, _) => {}
            other => return Err(format!("attempt {i}: {other:?}")),
        }
    }
    let mut sock = agent::open(&brain, None).await?;
    ensure_eq(
        sock.expect_close(WAIT).await?,
        Closed::Code(4429, "agent connect rate limit exceeded".into()),
        "attempt 601",
    )
}

pub async fn event_rate_limit(ctx: Arc<Ctx>) -> R {
    // A low limit, so that a slow brain without one cannot pass by being
    // slow: 60 events at 10/s need about 5 s, unthrottled well under 1 s.
    let (brain, op, creds) = setup(&ctx, &[("Z4J_RATELIMIT_EVENTS_PER_SECOND", "10")]).await?;
    let mut s = agent::connect(&brain, &creds, Some("flood")).await?;
    let started = Instant::now();
    for i in 0..60 {
        let ev = task_event(&format!("rl-{i}"), "task.received", json!({}));
        s.send_events(&format!("ev_rl_{i}"), &[ev]).await?;
    }
    let mut acked = 0;
    while acked < 60 {
        match s.recv(ctx.scaled(30.0)).await? {
            Ok((FrameType::EventBatchAck, _)) => acked += 1,
            Ok(_) => {}
            Err(c) => return Err(format!("closed after {acked} acks: {c:?}")),
        }
    }
    let took = started.elapsed();
    // One second of burst (10), then 10/s: the other 50 need about 5 s.
    ensure(
        took >= Duration::from_millis(4000),
        format!("60 events at 10/s were all acknowledged after only {took:?}"),
    )?;
    ensure_eq(
        op.task_total(&brain).await?,
        Some(60),
        "nothing lost over the limit",
    )
}

pub async fn kill_during_ingest(ctx: Arc<Ctx>) -> R {
    let (env, _) = ctx.pinned_admin_env(&[]).await?;
    let brain = ctx.start_env(env.clone(), None).await?;
    let port = brain.port;
    let op = agent::login(&brain).await?;
    let mut streams = Vec::new();
    let acks_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for a in 0..3 {
        let creds = op.mint(&brain, &format!("streamer-{a}")).await?;
        let mut s = agent::connect(&brain, &creds, Some("w")).await?;
        let seen = acks_seen.clone();
        streams.push(tokio::spawn(async move {
            // Send continuously; record which batches were acknowledged.
            let mut acked = Vec::new();
            for i in 0..100_000u32 {
                let id = format!("k-{a}-{i}");
                if s.send_events(
                    &format!("ev_{id}"),
                    &[task_event(&id, "task.received", json!({}))],
                )
                .await
                .is_err()
                {
                    break;
                }
                while let Ok(Ok(Ok((FrameType::EventBatchAck, j)))) =
                    tokio::time::timeout(Duration::from_millis(1), s.recv(Duration::from_millis(1)))
                        .await
                {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    acked.push(
                        j["payload"]["acked_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
            // Drain acks already on the wire before the socket died.
            while let Ok(Ok((FrameType::EventBatchAck, j))) = s.recv(Duration::from_secs(2)).await {
                acked.push(
                    j["payload"]["acked_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            acked
        }));
    }
    // Kill mid-stream once enough acks arrived (at least 3 s of load; a
    // slow brain gets up to 30 s to ack 50 batches).
    let streaming = Instant::now();
    while streaming.elapsed() < Duration::from_secs(3)
        || (acks_seen.load(std::sync::atomic::Ordering::Relaxed) <= 50
            && streaming.elapsed() < Duration::from_secs(30))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let home = brain.kill_keep_home().await;
    let mut acked = Vec::new();
    for s in streams {
        acked.extend(s.await.map_err(|e| e.to_string())?);
    }
    ensure(
        acked.len() > 50,
        format!(
            "only {} batches were acknowledged before the kill",
            acked.len()
        ),
    )?;
    let brain = ctx
        .start_spec(crate::brain::StartSpec {
            env,
            home: Some(home),
            port: Some(port),
            ..Default::default()
        })
        .await?;
    let op = agent::login(&brain).await?;
    for id in &acked {
        let task_id = id.trim_start_matches("ev_");
        let (status, events) = op
            .get(
                &brain,
                &format!("/api/v1/projects/default/events?engine=rq&task_id={task_id}"),
            )
            .await?;
        ensure_eq(status, 200, "events read")?;
        ensure_eq(
            events["items"].as_array().map(Vec::len),
            Some(1),
            &format!("stored copies of acknowledged event {task_id}"),
        )?;
    }
    Ok(())
}

pub async fn offline_sweep(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(
        &ctx,
        &[
            ("Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS", "2"),
            ("Z4J_AGENT_HEALTH_SWEEP_SECONDS", "1"),
        ],
    )
    .await?;
    let mut s = agent::connect(&brain, &creds, Some("silent")).await?;
    let state = |agents: &Json| agents[0]["state"].as_str().map(str::to_owned);
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    ensure_eq(
        state(&agents).as_deref(),
        Some("online"),
        "state after the handshake",
    )?;
    // No heartbeat: offline after the timeout plus at most one sweep.
    let started = Instant::now();
    loop {
        let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
        if state(&agents).as_deref() == Some("offline") {
            break;
        }
        if started.elapsed() > ctx.scaled(10.0) {
            return Err("a silent agent was not marked offline within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    ensure(
        took >= Duration::from_millis(1500),
        format!("marked offline after only {took:?}"),
    )?;
    // A heartbeat brings it back.
    s.send_heartbeat().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    ensure_eq(
        state(&agents).as_deref(),
        Some("online"),
        "state after a heartbeat",
    )
}

pub async fn pings_while_queue_full(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(
        &ctx,
        &[
            ("Z4J_WS_INGEST_QUEUE_MAXSIZE", "16"),
            ("Z4J_RATELIMIT_EVENTS_PER_SECOND", "5"),
        ],
    )
    .await?;
    let mut s = agent::connect(&brain, &creds, Some("busy")).await?;
    for i in 0..40 {
        s.send_events(
            &format!("ev_busy_{i}"),
            &[task_event(&format!("busy-{i}"), "task.received", json!({}))],
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let (answered, acks) = ping_answered(&mut s, b"z4j", Duration::from_secs(5)).await?;
    ensure(
        answered,
        format!("no pong within 5 s (acks so far: {acks})"),
    )?;
    ensure(
        acks < 40,
        "every batch was already acknowledged; the queue was never full",
    )?;
    ensure(
        sent.elapsed() < Duration::from_secs(2),
        format!(
            "pong took {:?} while the ingest queue was full",
            sent.elapsed()
        ),
    )
}

/// Sends a WebSocket ping with `tag` and reads until its pong or `within`
/// has passed: whether it was answered, and how many data messages (acks)
/// came first.
pub(super) async fn ping_answered(
    s: &mut agent::Session,
    tag: &[u8],
    within: Duration,
) -> Result<(bool, usize), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    s.raw
        .0
        .send(Message::Ping(tag.to_vec().into()))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + within;
    let mut acks = 0;
    loop {
        let Ok(msg) = tokio::time::timeout_at(deadline, s.raw.0.next()).await else {
            return Ok((false, acks));
        };
        match msg {
            Some(Ok(Message::Pong(p))) if p.as_ref() == tag => return Ok((true, acks)),
            Some(Ok(Message::Binary(_) | Message::Text(_))) => acks += 1,
            Some(Ok(_)) => {}
            other => return Err(format!("socket ended before the pong: {other:?}")),
        }
    }
}

pub async fn longpoll_sessions(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut lp = agent::LongPoll::new(&creds)?;
    let (status, body) = lp.poll(&brain, 0, 0).await?;
    ensure_eq(
        (status, body.clone()),
        (200, json!({"frames": []})),
        "connect probe",
    )?;
    let frame = lp.sign_events("ev_lp_1", &[task_event("lp-1", "task.received", json!({}))])?;
    let (status, body) = lp.post(&brain, &[frame.clone(), "{garbage".into()]).await?;
    ensure_eq(status, 200, "POST events")?;
    ensure_eq(
        (body["accepted"].as_i64(), body["rejected"].as_i64()),
        (Some(2), Some(0)),
        &format!("counts (garbage is dropped and counted accepted): {body}"),
    )?;
    let (status, _) = task_state(&brain, &op, "lp-1").await?;
    ensure_eq(status, 200, "task from a long-poll frame")?;
    // A replayed frame is a signature failure: the session is invalidated.
    let (status, body) = lp.post(&brain, &[frame]).await?;
    ensure_eq(
        (status, body["detail"].as_str()),
        (
            409,
            Some("long-poll session invalidated; reconnect with a fresh session nonce"),
        ),
        "replay",
    )?;
    let fresh = lp.sign_events("ev_lp_2", &[task_event("lp-2", "task.received", json!({}))])?;
    let (status, _) = lp.post(&brain, &[fresh]).await?;
    ensure_eq(status, 409, "the invalidated nonce keeps failing")?;
    lp.renew(&creds)?;
    let frame = lp.sign_events("ev_lp_3", &[task_event("lp-3", "task.received", json!({}))])?;
    let (status, body) = lp.post(&brain, std::slice::from_ref(&frame)).await?;
    ensure_eq(
        (status, body["detail"].as_str()),
        (409, Some("long-poll session invalidated; perform the connect probe with a fresh session nonce")),
        "a new nonce before the probe",
    )?;
    ensure_eq(
        lp.poll(&brain, 0, 0).await?.0,
        200,
        "probe with the new nonce",
    )?;
    let (status, body) = lp.post(&brain, &[frame]).await?;
    ensure_eq(
        (status, body["accepted"].as_i64()),
        (200, Some(1)),
        "after the probe",
    )?;
    let (status, body) = lp.post(&brain, &[]).await?;
    ensure(
        status == 422 && body["detail"].is_array(),
        format!("empty frames list: {status} {body}"),
    )?;
    let (status, _) = lp.poll(&brain, 61, 1).await?;
    ensure_eq(status, 422, "wait=61")?;
    let started = Instant::now();
    let (status, body) = lp.poll(&brain, 1, 50).await?;
    ensure_eq((status, body), (200, json!({"frames": []})), "empty poll")?;
    ensure(
        started.elapsed() >= Duration::from_millis(900),
        "a poll returned before its wait",
    )?;
    let bogus = Credentials {
        token: "not-a-token".into(),
        ..creds.clone()
    };
    let (status, body) = agent::LongPoll::new(&bogus)?.poll(&brain, 0, 0).await?;
    ensure_eq(
        (status, body),
        (401, json!({"detail": "invalid agent token"})),
        "unknown token",
    )
}

pub async fn address_allowlist(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(
        &ctx,
        &[
            ("Z4J_TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
            ("Z4J_AGENT_IP_ALLOWLIST", "[\"198.51.100.7/32\"]"),
        ],
    )
    .await?;
    let bearer = format!("Bearer {}", creds.token);
    // Through the trusted proxy from an allowed address: admitted.
    let mut ok = agent::open_with(
        &brain,
        Some(&bearer),
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await?;
    ok.send_text(&agent::hello(None).to_string()).await?;
    ensure(ok.next_data(WAIT).await?.is_ok(), "allowed address refused")?;
    // From anywhere else (the loopback peer itself included): 4403.
    for xff in [Some("203.0.113.5"), None] {
        let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
        let mut sock = agent::open_with(&brain, Some(&bearer), &headers).await?;
        sock.send_text(&agent::hello(None).to_string()).await.ok();
        closed_with(&mut sock, 4403, &format!("address {xff:?}")).await?;
    }
    let lp = agent::LongPoll::new(&creds)?;
    let (status, body) = lp.poll(&brain, 0, 0).await?;
    ensure_eq(
        (
            status,
            body["error"].as_str(),
            body["details"]["surface"].as_str(),
        ),
        (403, Some("ip_denied"), Some("agent")),
        "long-poll from a denied address",
    )
}

pub async fn previous_secrets(ctx: Arc<Ctx>) -> R {
    const OLD: &str = "conformance-old-master-secret-0123456789abcdef";
    const NEW: &str = "conformance-new-master-secret-0123456789abcdef";
    let (mut env, _) = ctx.pinned_admin_env(&[]).await?;
    env.push(("Z4J_SECRET".into(), OLD.into()));
    let brain = ctx.start_env(env.clone(), None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "rotating").await?;
    let home = brain.stop_keep_home().await;
    let rotated: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            let v = if k == "Z4J_SECRET" { NEW } else { v.as_str() };
            (k.clone(), v.to_owned())
        })
        .chain([("Z4J_PREVIOUS_SECRETS".to_owned(), OLD.to_owned())])
        .collect();
    let brain = ctx.start_env(rotated, Some(home)).await?;
    // The old token still authenticates through Z4J_PREVIOUS_SECRETS...
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    // ...but frames signed with the old project key no longer verify.
    s.send_events(
        "ev_old_key",
        &[task_event("old-key", "task.received", json!({}))],
    )
    .await?;
    closed_with(&mut s.raw, 4403, "frame signed with the pre-rotation key").await
}

pub async fn archived_project(ctx: Arc<Ctx>) -> R {
    let (brain, op, _creds) = setup(&ctx, &[]).await?;
    let (status, project) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects",
            Some(json!({"slug": "second", "name": "Second"})),
        )
        .await?;
    ensure_eq(status, 201, &format!("create project: {project}"))?;
    ensure_eq(
        project["is_active"].as_bool(),
        Some(true),
        "new project active",
    )?;
    let (status, body) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects",
            Some(json!({"slug": "ab", "name": "x"})),
        )
        .await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "two-character slug",
    )?;
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects",
            Some(json!({"slug": "second", "name": "x"})),
        )
        .await?;
    ensure_eq(status, 409, "duplicate slug")?;
    let creds = op.mint_in(&brain, "second", "archived-agent").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let lp = agent::LongPoll::new(&creds)?;
    ensure_eq(
        lp.poll(&brain, 0, 0).await?.0,
        200,
        "long-poll probe before the archive",
    )?;
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::DELETE,
            "/api/v1/projects/second",
            None,
        )
        .await?;
    ensure_eq(status, 204, "archive")?;
    closed_with(&mut s.raw, 4003, "live agent of an archived project").await?;
    let mut sock = agent::open(&brain, Some(&format!("Bearer {}", creds.token))).await?;
    sock.send_text(&agent::hello(None).to_string()).await.ok();
    closed_with(&mut sock, 4401, "handshake into an archived project").await?;
    let (status, body) = lp.poll(&brain, 0, 0).await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (403, Some("project_inactive")),
        "long-poll into an archived project",
    )?;
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::DELETE,
            "/api/v1/projects/second",
            None,
        )
        .await?;
    ensure_eq(status, 204, "archiving again")?;
    let (status, body) = op
        .send(
            &brain,
            reqwest::Method::DELETE,
            "/api/v1/projects/default",
            None,
        )
        .await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (409, Some("cannot archive the last remaining project")),
        "archiving the last active project",
    )?;
    let (_, list) = op.get(&brain, "/api/v1/projects").await?;
    let slugs: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["slug"].as_str())
        .collect();
    ensure_eq(slugs, vec!["default"], "archived projects are not listed")
}

pub async fn slow_reader(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[("Z4J_WS_INGEST_QUEUE_MAXSIZE", "16")]).await?;
    let mut slow = agent::connect(&brain, &creds, Some("slow")).await?;
    let mut other = agent::connect(&brain, &creds, Some("other")).await?;
    let before = brain.rss_kib();
    // Stream without ever reading an ack until the socket pushes back.
    let started = Instant::now();
    let mut sent = 0u32;
    let payload = json!({"blob": "x".repeat(2000)});
    while started.elapsed() < ctx.scaled(20.0) {
        let ev = task_event(&format!("slow-{sent}"), "task.received", payload.clone());
        match tokio::time::timeout(
            Duration::from_secs(2),
            slow.send_events(&format!("ev_slow_{sent}"), &[ev]),
        )
        .await
        {
            Ok(Ok(())) => sent += 1,
            Ok(Err(e)) => return Err(format!("send failed after {sent} frames: {e}")),
            Err(_) => break, // blocked: back-pressure reached the agent
        }
    }
    ensure(
        started.elapsed() < ctx.scaled(20.0),
        format!("{sent} frames sent in 20 s without the brain ever pushing back"),
    )?;
    let after = brain.rss_kib();
    if let (Some(b), Some(a)) = (before, after) {
        ensure(
            a.saturating_sub(b) < 256 * 1024,
            format!("brain memory grew from {b} KiB to {a} KiB under a reader that never reads"),
        )?;
    }
    // Another connection of the same agent is unaffected.
    let ev = task_event("other-1", "task.received", json!({}));
    other.send_events("ev_other_1", &[ev]).await?;
    other.expect_ack("ev_other_1", WAIT).await?;
    let (status, _) = task_state(&brain, &op, "other-1").await?;
    ensure_eq(status, 200, "the other connection's event")
}

pub async fn redaction(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(
        &ctx,
        &[("Z4J_REDACTION_EXTRA_KEY_PATTERNS", "[\"tenant_.*\"]")],
    )
    .await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let data = json!({
        "task_name": "jobs.signup",
        "kwargs": {"password": "hunter2", "Tenant_Id": "acme", "note": "mail alice@example.com", "plain": "ok"},
        "args": ["postgres://app:s3cret@db.internal/app", "x".repeat(9000)],
    });
    s.send_events("ev_redact", &[task_event("red-1", "task.received", data)])
        .await?;
    s.expect_ack("ev_redact", WAIT).await?;
    let (_, events) = op
        .get(
            &brain,
            "/api/v1/projects/default/events?engine=rq&task_id=red-1",
        )
        .await?;
    let p = &events["items"][0]["payload"];
    ensure_eq(
        (
            p["kwargs"]["password"].as_str(),
            p["kwargs"]["Tenant_Id"].as_str(),
            p["kwargs"]["note"].as_str(),
            p["kwargs"]["plain"].as_str(),
            p["args"][0].as_str(),
        ),
        (
            Some("[REDACTED]"),
            Some("[REDACTED]"),
            Some("[REDACTED]"),
            Some("ok"),
            Some("[REDACTED]"),
        ),
        &format!("redacted event payload: {p}"),
    )?;
    let long = p["args"][1].as_str().unwrap_or_default();
    ensure(
        long.starts_with(&"x".repeat(8192)) && long.ends_with("[...808 more bytes truncated]"),
        format!(
            "a 9000-byte string cut at Z4J_MAX_PAYLOAD_SIZE_BYTES: {} bytes",
            long.len()
        ),
    )?;
    let (_, task) = task_state(&brain, &op, "red-1").await?;
    ensure_eq(
        task["kwargs"]["password"].as_str(),
        Some("[REDACTED]"),
        "task kwargs",
    )?;
    // No extra patterns by default: only the built-in keys are redacted.
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let data =
        json!({"task_name": "jobs.signup", "kwargs": {"password": "hunter2", "Tenant_Id": "acme"}});
    s.send_events("ev_plain", &[task_event("red-2", "task.received", data)])
        .await?;
    s.expect_ack("ev_plain", WAIT).await?;
    let (_, task) = task_state(&brain, &op, "red-2").await?;
    ensure_eq(
        (
            task["kwargs"]["password"].as_str(),
            task["kwargs"]["Tenant_Id"].as_str(),
        ),
        (Some("[REDACTED]"), Some("acme")),
        &format!("no extra redaction patterns configured: {task}"),
    )
}

/// Ages an agent's last sign of life by `days` directly in the database
/// (grey box: this implementation's schema; see the target feature).
async fn age_agent(
    ctx: &Ctx,
    brain: &Brain,
    pg_name: Option<&str>,
    agent_id: &str,
    days: i64,
) -> R {
    let id = uuid::Uuid::parse_str(agent_id).map_err(|e| e.to_string())?;
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    match pg_name {
        Some(name) => {
            let url = ctx.pg_plain_url(name).ok_or("no PostgreSQL URL")?;
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query("UPDATE agents SET last_seen_at = $2, created_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
        None => {
            let path = brain.z4j_home().join("z4j.db");
            let url = format!("sqlite://{}", path.display());
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let text = at.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            sqlx::query("UPDATE agents SET last_seen_at = $2, created_at = $2 WHERE id = $1")
                .bind(id)
                .bind(text)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

pub async fn stale_prune(ctx: Arc<Ctx>) -> R {
    let extra = [
        ("Z4J_AGENT_HEALTH_SWEEP_SECONDS", "1"),
        ("Z4J_AGENT_STALE_PRUNE_DAYS", "2"),
    ];
    prune_observed(&ctx, &extra, 1, 3, ctx.scaled(10.0)).await
}

/// Two silent agents aged `keep_days` and `gone_days` in the brain's schema:
/// within `wait` only the first is listed, and the pruned one's token no
/// longer opens a session.
pub(super) async fn prune_observed(
    ctx: &Ctx,
    extra: &[(&str, &str)],
    keep_days: i64,
    gone_days: i64,
    wait: Duration,
) -> R {
    let (env, pg_name) = ctx.pinned_admin_env(extra).await?;
    let brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    let keep = format!("silent-{keep_days}-days");
    let recent = op.mint(&brain, &keep).await?;
    let stale = op.mint(&brain, &format!("silent-{gone_days}-days")).await?;
    age_agent(ctx, &brain, pg_name.as_deref(), &recent.agent_id, keep_days).await?;
    age_agent(ctx, &brain, pg_name.as_deref(), &stale.agent_id, gone_days).await?;
    let deadline = Instant::now() + wait;
    loop {
        let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
        let names: Vec<&str> = agents
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str())
            .collect();
        if names == [keep.as_str()] {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{wait:?} after aging, the agents are {names:?}, want only {keep}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The pruned agent's token no longer opens a session.
    let mut sock = agent::open(&brain, Some(&format!("Bearer {}", stale.token))).await?;
    sock.send_text(&agent::hello(None).to_string()).await.ok();
    closed_with(&mut sock, 4401, "token of a pruned agent").await
}

/// An event batch is acknowledged only once its rows are committed: while
/// another session holds the write lock the agent gets no ack; once the
/// lock is released the ack comes (grey box: the suite takes the lock in
/// the brain's database).
pub async fn ack_waits_for_commit(ctx: Arc<Ctx>) -> R {
    let (env, pg_name) = ctx.pinned_admin_env(&[]).await?;
    let brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "held").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let mut lock = super::grey::connect(&ctx, &brain.home, pg_name.as_deref()).await?;
    match pg_name {
        Some(_) => {
            lock.exec("BEGIN").await?;
            lock.exec("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                .await?;
        }
        None => lock.exec("BEGIN IMMEDIATE").await?,
    }
    s.send_events(
        "ev_held",
        &[task_event("held-1", "task.received", json!({}))],
    )
    .await?;
    let early = s.expect_ack("ev_held", Duration::from_millis(1500)).await;
    lock.exec("ROLLBACK").await?;
    ensure(
        early.is_err(),
        format!("acknowledged while the write lock was held (before any commit): {early:?}"),
    )?;
    s.expect_ack("ev_held", WAIT).await?;
    let (status, _) = task_state(&brain, &op, "held-1").await?;
    ensure_eq(status, 200, "the acknowledged event is stored")
}

/// The task list's text filters (specs/decisions.md G11): `name` a literal
/// substring of the name, `search` of the name, queue, worker or task id,
/// both ASCII case-insensitive; `%` and `_` match themselves.
pub async fn task_text_filters(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let tasks = [
        ("f-pct", "billing%refund", "Priority_Q", "w-Alpha", "normal"),
        ("f-x", "billingXrefund", "PriorityXQ", "w-beta", "high"),
        ("f-under", "Jobs.Send_Mail", "default", "w-1", "low"),
        ("f-plain", "jobs.sendXmail", "default", "w-1", "high"),
    ];
    for (id, name, queue, worker, priority) in tasks {
        let events = [
            task_event(
                id,
                "task.received",
                json!({"task_name": name, "queue": queue, "priority": priority}),
            ),
            task_event(id, "task.started", json!({"worker": worker})),
        ];
        let bid = format!("ev_{id}");
        s.send_events(&bid, &events).await?;
        s.expect_ack(&bid, WAIT).await?;
    }
    for (query, want) in [
        ("name=billing%25refund", vec!["f-pct"]),
        ("name=BILLING", vec!["f-pct", "f-x"]),
        ("name=send_mail", vec!["f-under"]),
        ("search=y_q", vec!["f-pct"]),
        ("search=%25", vec!["f-pct"]),
        ("search=ALPHA", vec!["f-pct"]),
        ("search=F-UNDER", vec!["f-under"]),
        ("search=default", vec!["f-plain", "f-under"]),
        ("priority=high", vec!["f-plain", "f-x"]),
        ("priority=normal", vec!["f-pct"]),
        ("priority=%20High%20,LOW", vec!["f-plain", "f-under", "f-x"]),
        ("priority=low,high", vec!["f-plain", "f-under", "f-x"]),
        ("search=_", vec!["f-pct", "f-under"]),
    ] {
        let (status, page) = op
            .get(
                &brain,
                &format!("/api/v1/projects/default/tasks?limit=100&{query}"),
            )
            .await?;
        let mut got: Vec<&str> = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["task_id"].as_str())
            .collect();
        got.sort_unstable();
        ensure_eq((status, got), (200, want), &format!("tasks?{query}"))?;
    }
    // A priority that does not exist is named, not matched against.
    let (status, body) = op
        .get(&brain, "/api/v1/projects/default/tasks?priority=high,%25")
        .await?;
    ensure_eq(
        (
            status,
            body["error"].as_str(),
            body["message"].as_str(),
            body["details"]["value"].as_str(),
        ),
        (
            422,
            Some("validation_error"),
            Some("invalid task priority filter"),
            Some("%"),
        ),
        &format!("priority=high,%: {body}"),
    )
}
