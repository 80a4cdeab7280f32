//! Agent gateway defaults observed with their variables unset: the 1 MiB
//! frame cap to the byte, 64 sessions per agent, the 90 s idle close, the
//! 30 s offline timeout found by a 10 s health sweep, and the 30-day
//! prune of silent agents.

use super::gateway::{closed_with, prune_observed, setup};
use super::{ensure, R};
use crate::agent::{self, Closed};
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
