//! Agent gateway defaults observed with their variables unset: the 1 MiB
//! frame cap to the byte, 64 sessions per agent, the 90 s idle close, the
//! 30 s offline timeout found by a 10 s health sweep, the 30-day prune of
//! silent agents, the 10 000 events/s budget and the 2 000-frame ingest
//! queue.

use super::gateway::{closed_with, prune_observed, setup};
use super::{ensure, R};
use crate::agent::{self, Closed};
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use z4j_protocol::FrameType;

const WAIT: Duration = Duration::from_secs(15);

/// A hello whose text is exactly `size` bytes.
fn hello_of_size(size: usize) -> String {
    let mut h = agent::hello(Some("big"));
    h["payload"]["host"]["pad"] = json!("");
    let base = h.to_string().len();
    h["payload"]["host"]["pad"] = json!("x".repeat(size.saturating_sub(base)));
    h.to_string()
}

/// The frame cap (a hello of exactly 1 048 576 bytes is answered, one byte
/// more is closed 4400), 64 sessions per agent (the 64th stays, the 65th
/// is closed 4429), and the idle close at 90 s.
pub async fn sessions(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let bearer = format!("Bearer {}", creds.token);
    // The idle clock runs while the rest is checked.
    let mut quiet = agent::connect(&brain, &creds, Some("quiet")).await?;
    quiet.send_heartbeat().await?;
    let quiet_since = Instant::now();
    let idle = tokio::spawn(async move {
        let closed = quiet.raw.expect_close(Duration::from_secs(130)).await;
        (closed, quiet_since.elapsed())
    });
    for (size, answered) in [(1_048_576usize, true), (1_048_577, false)] {
        let mut sock = agent::open(&brain, Some(&bearer)).await?;
        let text = hello_of_size(size);
        ensure(
            text.len() == size,
            format!("built a {} byte hello", text.len()),
        )?;
        sock.send_text(&text).await?;
        let first = sock.next_data(WAIT).await?;
        let got_ack = first
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice::<Json>(b).ok())
            .is_some_and(|j| j["type"] == "hello_ack");
        let refused = matches!(first, Err(Closed::Code(4400, _)));
        if (answered && !got_ack) || (!answered && !refused) {
            let want = if answered { "hello_ack" } else { "close 4400" };
            ctx.fail_clause(
                "Z4J_WS_MAX_FRAME_BYTES",
                format!("a {size} byte hello: {first:?}, want {want}"),
            );
        }
    }
    // `big` holds one slot now; 63 more make 64.
    let mut held = Vec::new();
    for i in 1..64 {
        held.push(agent::connect(&brain, &creds, Some(&format!("w-{i:02}"))).await?);
    }
    let last = held.last_mut().ok_or("no sessions")?;
    if let Ok(c) = last.raw.expect_close(Duration::from_millis(1500)).await {
        ctx.fail_clause(
            "Z4J_WS_PER_AGENT_CONCURRENCY_CAP",
            format!("the 64th session of one agent was closed: {c:?}"),
        );
    }
    let mut over = agent::connect(&brain, &creds, Some("w-64")).await?;
    if let Err(e) = closed_with(&mut over.raw, 4429, "the 65th session of one agent").await {
        ctx.fail_clause("Z4J_WS_PER_AGENT_CONCURRENCY_CAP", e);
    }
    drop(held);
    let _ = op;
    let (closed, took) = idle.await.map_err(|e| e.to_string())?;
    let slack = ctx.scaled(4.0);
    match closed {
        Ok(Closed::Code(4408, _))
            if took >= Duration::from_secs_f64(89.5) && took <= Duration::from_secs(90) + slack => {
        }
        other => ctx.fail_clause(
            "Z4J_WS_IDLE_TIMEOUT_SECONDS",
            format!("a silent session: {other:?} after {took:?}, want close 4408 at 90 s"),
        ),
    }
    Ok(())
}

/// Twenty silent agents connected a second apart (two sweep periods of
/// phases): each turns offline 30 s after its last frame plus at most one
/// 10 s sweep, and the latest is found about 10 s late (a 20 s sweep would
/// leave one nearly 20 s late, a 5 s sweep none later than 5 s).
pub async fn offline(ctx: Arc<Ctx>) -> R {
    let (brain, op, _) = setup(&ctx, &[]).await?;
    let mut names = Vec::new();
    let mut sessions = Vec::new();
    let mut connected = Vec::new();
    for i in 0..20 {
        let name = format!("silent-{i}");
        let creds = op.mint(&brain, &name).await?;
        let t = Instant::now();
        sessions.push(agent::connect(&brain, &creds, Some("w")).await?);
        connected.push(t);
        names.push(name);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let mut offline_after: Vec<Option<f64>> = vec![None; names.len()];
    let give_up = Instant::now() + ctx.scaled(55.0);
    // (the last agent connected just now)
    while offline_after.iter().any(Option::is_none) && Instant::now() < give_up {
        let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
        for a in agents.as_array().into_iter().flatten() {
            let Some(i) = names.iter().position(|n| a["name"] == n.as_str()) else {
                continue;
            };
            if a["state"] == "offline" && offline_after[i].is_none() {
                offline_after[i] = Some(connected[i].elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen: Vec<f64> = offline_after.iter().flatten().copied().collect();
    let first = seen.iter().copied().fold(f64::INFINITY, f64::min);
    let last = seen.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let slack = ctx.scaled(1.5).as_secs_f64();
    if seen.len() < names.len() || first < 29.5 || last > 40.0 + slack {
        ctx.fail_clause(
            "Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS",
            format!("silent agents turned offline after {offline_after:?} s; want each in 30-40 s"),
        );
    }
    if seen.len() == names.len() && last < 37.5 {
        ctx.fail_clause(
            "Z4J_AGENT_HEALTH_SWEEP_SECONDS",
            format!("across twenty phases the latest offline came {last:.1} s after its last frame; a 10 s sweep makes it 39-40 s"),
        );
    }
    drop(sessions);
    Ok(())
}

/// Silent agents are pruned after 30 days (grey box: the suite ages them
/// in the brain's schema): 29 days kept, 31 days gone, by the next sweep.
pub async fn stale_prune(ctx: Arc<Ctx>) -> R {
    prune_observed(&ctx, &[], 29, 31, ctx.scaled(15.0)).await
}

/// The per-project event budget at its default, 10 000 events a second
/// (decision G1: a bucket holding one second of events, charged with every
/// event a batch carries; over it the connection waits). Eight batches of
/// 5 000 events sent at once: the first two, exactly one second's budget,
/// are not held; the third is; the eighth is acknowledged after the six
/// held batches' three seconds. The events are malformed (`0`), so nothing
/// is stored and the speed of storage can neither hide nor imitate the
/// limit.
pub async fn events_rate(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(&ctx, &[]).await?;
    let mut s = agent::connect(&brain, &creds, Some("burst")).await?;
    let events = vec![json!(0); 5000];
    let t0 = Instant::now();
    for i in 0..8 {
        s.send_events(&format!("ev_burst_{i}"), &events).await?;
    }
    let mut acked = Vec::new();
    while acked.len() < 8 {
        match s.recv(ctx.scaled(20.0)).await? {
            Ok((FrameType::EventBatchAck, _)) => acked.push(t0.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(c) => return Err(format!("closed after {} acks: {c:?}", acked.len())),
        }
    }
    let shown = format!("acks at {acked:.2?} s after the burst was sent");
    // A held batch waits 0.5 s per 5 000 events of debt.
    ensure(
        acked[1] < 0.7,
        format!("the first two batches (10 000 events, one second's budget) were not both acknowledged within 0.7 s: {shown}"),
    )?;
    ensure(
        acked[2] >= 0.35,
        format!("event 10 001 onwards was not held: {shown}"),
    )?;
    let last = (2.55, ctx.scaled(3.0 * 1.3 + 0.3).as_secs_f64());
    ensure(
        acked[7] >= last.0 && acked[7] <= last.1,
        format!(
            "40 000 events at 10 000/s after a 10 000 burst: the last ack \
             should come after 3 s (within {last:?}): {shown}"
        ),
    )
}

/// The per-connection ingest queue at its default, 2 000 frames, with the
/// consumer held by a 1 event/s budget: 2 000 one-event frames sent at
/// once are all taken off the socket (a ping behind them is answered);
/// with 70 more the brain has stopped reading (a ping behind those is not
/// answered within 3 s): the queue holds 2 000 and only a small read-ahead
/// (at most 64 frames) rides on top of it.
pub async fn ingest_queue(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(&ctx, &[("Z4J_RATELIMIT_EVENTS_PER_SECOND", "1")]).await?;
    let mut s = agent::connect(&brain, &creds, Some("queued")).await?;
    let send = |from: usize, to: usize| (from..to).map(|i| (format!("ev_q_{i}"), i));
    for (id, i) in send(0, 2000) {
        let ev = agent::task_event(&format!("q-{i}"), "task.received", json!({}));
        s.send_events(&id, &[ev]).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answered, acks) = super::gateway::ping_answered(&mut s, b"below", ctx.scaled(3.0)).await?;
    ensure(
        answered,
        format!(
            "a ping behind 2 000 queued frames was not answered within 3 s \
             ({acks} acks): the queue holds fewer than 2 000"
        ),
    )?;
    ensure(
        acks <= 10,
        format!("{acks} of 2 000 frames acknowledged at 1 event/s: the consumer was not held"),
    )?;
    for (id, i) in send(2000, 2070) {
        let ev = agent::task_event(&format!("q-{i}"), "task.received", json!({}));
        s.send_events(&id, &[ev]).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answered, _) =
        super::gateway::ping_answered(&mut s, b"above", Duration::from_secs(3)).await?;
    ensure(
        !answered,
        "a ping behind 2 070 frames was answered while the consumer takes one a \
         second: the brain reads past a 2 000-frame queue",
    )
}
