//! Hostile and numerous clients: a flood of distinct source addresses must
//! not turn the per-address budgets into a lockout of everyone else
//! (specs/decisions.md H6), and an agent streaming frames at the size cap
//! on every connection it may open must not grow the brain's memory past a
//! bound (G12).

use super::gateway::setup;
use super::{client, ensure, ensure_eq, R};
use crate::brain::Brain;
use crate::runner::Ctx;
use futures_util::{stream, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Distinct addresses per flood: twice the 10 000 a budget tracks.
const FLOOD: u32 = 20_000;
const IN_FLIGHT: usize = 32;

fn flood_address(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// One request from `xff` (through the trusted loopback proxy): its status.
async fn from(
    c: &reqwest::Client,
    brain: &Brain,
    req: &Req,
    xff: &str,
    token: Option<&str>,
) -> Result<u16, String> {
    let mut r = match req {
        Req::AgentCommands => c.get(brain.url("/api/v1/agent/commands?wait=0")),
        Req::Reset(body) => c
            .post(brain.url("/api/v1/auth/password-reset/request"))
            .json(body),
    };
    r = r.header("x-forwarded-for", xff);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.map_err(|e| format!("{xff}: {e}"))?;
    Ok(resp.status().as_u16())
}

enum Req {
    /// The agent-connect budget (600 a minute), shared with `/ws/agent`.
    AgentCommands,
    /// The password-reset budget (10 a minute).
    Reset(serde_json::Value),
}

/// `FLOOD` distinct addresses, one request each, as fast as the brain
/// takes them; none of them may be refused (each is far under budget).
async fn flood(brain: &Brain, req: &Req, offset: u32) -> Result<Duration, String> {
    let c = client();
    let started = Instant::now();
    let refused: Vec<String> = stream::iter(0..FLOOD)
        .map(|i| {
            let c = &c;
            async move {
                let xff = flood_address(offset + i);
                match from(c, brain, req, &xff, None).await {
                    Ok(429) => Some(format!("{xff}: 429")),
                    Ok(_) => None,
                    Err(e) => Some(e),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    ensure(
        refused.is_empty(),
        format!(
            "{} of {FLOOD} first requests from distinct addresses refused, e.g. {:?}",
            refused.len(),
            refused.iter().take(3).collect::<Vec<_>>()
        ),
    )?;
    Ok(started.elapsed())
}

pub async fn address_flood(ctx: Arc<Ctx>) -> R {
    let (brain, _op, creds) = setup(
        &ctx,
        &[
            ("Z4J_TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ],
    )
    .await?;
    let c = client();
    let reset = Req::Reset(json!({}));
    // An address that used up its reset budget before the flood...
    let exhausted = "198.18.0.1";
    for i in 0..10 {
        let s = from(&c, &brain, &reset, exhausted, None).await?;
        ensure(s != 429, format!("reset request {} of 10 refused", i + 1))?;
    }
    ensure_eq(
        from(&c, &brain, &reset, exhausted, None).await?,
        429,
        "the 11th reset request of one address within a minute",
    )?;
    let rss_before = brain.rss_kib();
    for (name, req, offset) in [
        ("agent-connect", &Req::AgentCommands, 0),
        ("password-reset", &reset, 1 << 20),
    ] {
        let took = flood(&brain, req, offset).await?;
        // The budgets forget an address a minute after its last request:
        // judged only while the whole flood is still inside the window.
        ensure(
            took < Duration::from_secs(50),
            format!(
                "the {name} flood of {FLOOD} addresses took {took:?}; cannot judge a 60 s window"
            ),
        )?;
    }
    // ...stays refused: forgetting goes to addresses under budget first.
    ensure_eq(
        from(&c, &brain, &reset, exhausted, None).await?,
        429,
        "the exhausted address after the floods",
    )?;
    // Newcomers are still admitted by both budgets.
    let fresh = "203.0.113.9";
    ensure_eq(
        from(&c, &brain, &Req::AgentCommands, fresh, Some(&creds.token)).await?,
        200,
        "a real agent's first poll from a fresh address after the flood",
    )?;
    ensure_eq(
        from(
            &c,
            &brain,
            &Req::Reset(json!({"email": "someone@example.com"})),
            fresh,
            None,
        )
        .await?,
        200,
        "a reset request from a fresh address after the flood",
    )?;
    if let (Some(b), Some(a)) = (rss_before, brain.rss_kib()) {
        ensure(
            a.saturating_sub(b) < 64 * 1024,
            format!(
                "brain memory grew from {b} KiB to {a} KiB under {} addresses",
                2 * FLOOD
            ),
        )?;
    }
    Ok(())
}

/// Frames of about 1 MiB (just under `Z4J_WS_MAX_FRAME_BYTES`) each agent
/// connection tries to send.
const BIG_FRAMES: usize = 40;
/// G12's documented ceiling for 64 connections of 1 MiB frames: the
/// process budget (256 MiB), one frame per connection beyond it, read and
/// parse buffers.
const FLOOD_RSS_CEILING_KIB: u64 = 640 * 1024;

/// One agent's 64 WebSocket connections (the default per-agent cap) each
/// stream 1 MiB event batches while ingest is held back (1 event/s), so
/// nothing drains: the brain stops reading at its byte budgets and TCP
/// pushes back, its memory grows by less than the documented ceiling, and
/// it keeps answering other clients.
pub async fn frame_flood(ctx: Arc<Ctx>) -> R {
    use crate::agent::{self, task_event};
    let (brain, _op, creds) = setup(&ctx, &[("Z4J_RATELIMIT_EVENTS_PER_SECOND", "1")]).await?;
    let before = brain.rss_kib();
    let blob = "x".repeat(1_000_000);
    let conns = (0..64).map(|w| {
        let (brain, creds, blob) = (&brain, &creds, &blob);
        async move {
            let mut s = agent::connect(brain, creds, Some(&format!("flood-{w}"))).await?;
            let mut sent = 0;
            while sent < BIG_FRAMES {
                let ev = task_event(
                    &format!("big-{w}-{sent}"),
                    "task.received",
                    json!({"blob": blob}),
                );
                match tokio::time::timeout(
                    Duration::from_secs(3),
                    s.send_events(&format!("big_{w}_{sent}"), &[ev]),
                )
                .await
                {
                    Ok(Ok(())) => sent += 1,
                    Ok(Err(e)) => {
                        return Err(format!(
                            "connection {w}: send failed after {sent} frames: {e}"
                        ))
                    }
                    Err(_) => break, // pushed back
                }
            }
            Ok::<_, String>((s, sent))
        }
    });
    let started = Instant::now();
    let results = futures_util::future::join_all(conns).await;
    let mut socks = Vec::new();
    let mut sent = Vec::new();
    for r in results {
        let (s, n) = r?;
        socks.push(s);
        sent.push(n);
    }
    let total: usize = sent.iter().sum();
    ensure(
        sent.iter().any(|&n| n < BIG_FRAMES),
        format!(
            "no connection was pushed back: {total} frames of 1 MiB sent in {:?}",
            started.elapsed()
        ),
    )?;
    if let (Some(b), Some(a)) = (before, brain.rss_kib()) {
        ensure(
            a.saturating_sub(b) < FLOOD_RSS_CEILING_KIB,
            format!(
                "brain memory grew from {b} KiB to {a} KiB with {total} frames of 1 MiB sent on 64 connections \
                 (ceiling {FLOOD_RSS_CEILING_KIB} KiB)"
            ),
        )?;
    }
    let health = client()
        .get(brain.url("/api/v1/health"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        health.status().as_u16(),
        200,
        "health while the flood is held",
    )?;
    drop(socks);
    Ok(())
}

/// How a slow client behaves.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Trickles a request head, one byte a second, never finishing it.
    Trickle,
    /// One complete request, then keeps the connection open, idle.
    IdleKeepAlive,
}

/// Holds one slow connection until the brain closes it; the seconds that
/// took (`None`: still open after `give_up`).
async fn slow_client(brain: &Brain, how: Slow, give_up: Duration) -> Result<Option<f64>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", brain.port))
        .await
        .map_err(|e| e.to_string())?;
    let mut started = Instant::now();
    let head = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut buf = vec![0u8; 4096];
    if let Slow::IdleKeepAlive = how {
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        // The whole answer (head and Content-Length body), however it is
        // split into segments.
        let mut got: Vec<u8> = Vec::new();
        loop {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            ensure(n > 0, "closed before answering the keep-alive request")?;
            got.extend_from_slice(&buf[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                break;
            }
        }
        ensure(
            got.starts_with(b"HTTP/1.1 200"),
            format!(
                "keep-alive request answered {:?}",
                String::from_utf8_lossy(&got[..got.len().min(40)])
            ),
        )?;
        // Idle from the end of the answer on.
        started = Instant::now();
    }
    let mut sent = 0;
    loop {
        let tick = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            r = s.read(&mut buf) => {
                return match r {
                    Ok(0) | Err(_) => Ok(Some(started.elapsed().as_secs_f64())),
                    Ok(n) => Err(format!("{how:?}: the brain answered {:?}", String::from_utf8_lossy(&buf[..n.min(60)]))),
                };
            }
            _ = tick => {
                if started.elapsed() > give_up {
                    return Ok(None);
                }
                if let Slow::Trickle = how {
                    if s.write_all(&head[sent..=sent.min(head.len() - 1)]).await.is_err() {
                        return Ok(Some(started.elapsed().as_secs_f64()));
                    }
                    sent = (sent + 1).min(head.len() - 1);
                }
            }
        }
    }
}

/// Slow and silent HTTP clients (specs/decisions.md H7): 300 connections
/// that send nothing, trickle a request head, or sit idle after a request
/// are each closed once `Z4J_REQUEST_TIMEOUT_SECONDS` (3 s here) passes
/// without a complete request head, not before; meanwhile a normal client
/// is served at once.
pub async fn slow_clients(ctx: Arc<Ctx>) -> R {
    const TIMEOUT: f64 = 3.0;
    let brain = ctx.start(&[("Z4J_REQUEST_TIMEOUT_SECONDS", "3")]).await?;
    let give_up = Duration::from_secs(20);
    let clients = [Slow::Silent, Slow::Trickle, Slow::IdleKeepAlive]
        .into_iter()
        .flat_map(|how| std::iter::repeat_n(how, 100))
        .map(|how| {
            let brain = &brain;
            async move { (how, slow_client(brain, how, give_up).await) }
        });
    let served = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let r = client().get(brain.url("/api/v1/health")).send().await;
        (
            r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
            started.elapsed(),
        )
    };
    let (results, (health, took)) = tokio::join!(futures_util::future::join_all(clients), served);
    ensure_eq(health?, 200, "a normal request among 300 slow clients")?;
    ensure(
        took < Duration::from_secs(2),
        format!("a normal request among 300 slow clients took {took:?}"),
    )?;
    let mut bad = Vec::new();
    for (how, r) in results {
        match r? {
            None => bad.push(format!("{how:?}: still open after {give_up:?}")),
            Some(t) if !(TIMEOUT - 0.5..=TIMEOUT + 2.0).contains(&t) => {
                bad.push(format!("{how:?}: closed after {t:.2} s"))
            }
            Some(_) => {}
        }
    }
    bad.dedup();
    ensure(
        bad.is_empty(),
        format!(
            "slow connections must close {:.1}-{:.1} s after their last complete request: {:?}",
            TIMEOUT - 0.5,
            TIMEOUT + 2.0,
            bad.iter().take(6).collect::<Vec<_>>()
        ),
    )
}

/// NUL characters (specs/decisions.md H8): an operator's text field or
/// query parameter holding one is a 422 naming it on both databases
/// (PostgreSQL cannot store it), and an
/// agent's event holding them in its text fields is stored with U+FFFD,
/// never lost, nor its batch.
pub async fn nul_text(ctx: Arc<Ctx>) -> R {
    let (brain, op) = super::admin_brain(&ctx).await?;
    use reqwest::Method;
    for (method, path, body, loc) in [
        (
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "a\u{0}b", "slug": "nulp"})),
            json!(["body", "name"]),
        ),
        (
            Method::POST,
            "/api/v1/projects/default/saved-views",
            Some(json!({"name": "v\u{0}", "filters": {}})),
            json!(["body", "name"]),
        ),
        (
            Method::POST,
            "/api/v1/users",
            Some(
                json!({"email": "nul@example.com", "password": "Nul-user-pw-1", "display_name": "\u{0}"}),
            ),
            json!(["body", "display_name"]),
        ),
        (
            Method::GET,
            "/api/v1/projects/default/tasks?name=a%00b",
            None,
            json!(["query", "name"]),
        ),
    ] {
        let (status, v) = op.send(&brain, method.clone(), path, body).await?;
        ensure_eq(
            status,
            422,
            &format!("{method} {path}, a NUL at {loc}: {v}"),
        )?;
        ensure_eq(
            v["detail"][0]["loc"].clone(),
            loc.clone(),
            &format!("{method} {path}: the issue names {loc}: {v}"),
        )?;
    }

    let creds = op.mint(&brain, "nul-agent").await?;
    let mut s = crate::agent::connect(&brain, &creds, Some("bare-1-1")).await?;
    let dirty = crate::agent::task_event(
        "nul-task",
        "task.failed",
        json!({"task_name": "jobs.\u{0}x", "queue": "q\u{0}", "worker": "w\u{0}",
               "exception": "Boom\u{0}", "traceback": "line\u{0}", "args": ["\u{0}"]}),
    );
    let clean = crate::agent::task_event(
        "clean-task",
        "task.succeeded",
        json!({"task_name": "jobs.clean"}),
    );
    s.send_events("nul-batch", &[dirty, clean]).await?;
    let ack = s.expect_ack("nul-batch", Duration::from_secs(15)).await?;
    ensure_eq(
        ack["accepted"].as_i64(),
        Some(2),
        &format!("both events acked: {ack}"),
    )?;
    let (status, t) = op
        .get(&brain, "/api/v1/projects/default/tasks/rq/nul-task")
        .await?;
    ensure_eq(status, 200, &format!("the NUL task is stored: {t}"))?;
    ensure_eq(
        t["name"].as_str(),
        Some("jobs.\u{fffd}x"),
        &format!("its name: {t}"),
    )?;
    ensure_eq(
        t["queue"].as_str(),
        Some("q\u{fffd}"),
        &format!("its queue: {t}"),
    )?;
    ensure_eq(
        t["args"].clone(),
        json!(["\u{fffd}"]),
        &format!("its args: {t}"),
    )?;
    let (status, t) = op
        .get(&brain, "/api/v1/projects/default/tasks/rq/clean-task")
        .await?;
    ensure_eq(
        status,
        200,
        &format!("the batch's other task is stored: {t}"),
    )?;
    ensure(
        t["name"] == "jobs.clean",
        format!("the other task's name: {t}"),
    )?;
    nul_frames(&brain, &op).await
}

/// NULs in a hello, a heartbeat and a command's failure text: the worker is
/// admitted and every text is kept with U+FFFD in place of each NUL.
async fn nul_frames(brain: &Brain, op: &crate::agent::Operator) -> R {
    // An agent of its own, so that the command below has one place to go.
    let creds = &op.mint(brain, "nul-hello").await?;
    let mut hello = crate::agent::hello(Some("w\u{0}1"));
    hello["payload"]["host"]["name"] = json!("h\u{0}");
    hello["payload"]["capabilities"]["rq"] = json!(["cancel_task", "x\u{0}"]);
    let mut s = crate::agent::connect_with_hello(brain, creds, hello)
        .await
        .map_err(|e| format!("a hello with NULs: {e}"))?;
    s.send_heartbeat_with(json!({
        "rq.queue_depths": json!({"q\u{0}n": 3}).to_string(),
        "rq.worker_details": json!({"host\u{0}n": {
            "stats": {"pid": 7},
            "active_queues": [{"name": "q\u{0}n"}],
        }})
        .to_string(),
    }))
    .await?;
    let (status, c) = super::commands::issue(
        brain,
        op,
        "cancel-task",
        json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": "nul-task"}),
    )
    .await?;
    ensure_eq(status, 202, &format!("a cancel to the NUL worker: {c}"))?;
    let id = c["id"].as_str().unwrap_or_default().to_owned();
    let frame = super::commands::next_command(&mut s).await?;
    ensure_eq(frame["id"].as_str(), Some(id.as_str()), "the command frame")?;
    use z4j_protocol::Value as V;
    s.send_signed(
        z4j_protocol::FrameType::CommandResult,
        &id,
        &[
            ("status", V::str("failed")),
            ("result", V::Null),
            ("error", V::str("no\u{0}pe")),
            ("delivery_claim_token", V::Null),
        ],
    )
    .await?;
    let done =
        super::commands::wait_status(brain, op, &id, "failed", Duration::from_secs(10)).await?;
    ensure_eq(
        done["error"].as_str(),
        Some("no\u{fffd}pe"),
        &format!("the failure text: {done}"),
    )?;

    let (_, agents) = op.get(brain, "/api/v1/projects/default/agents").await?;
    let agent = agents
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == creds.agent_id)
        .cloned()
        .unwrap_or_default();
    ensure_eq(
        (
            agent["host_name"].clone(),
            agent["capabilities"]["rq"].clone(),
        ),
        (json!("h\u{fffd}"), json!(["cancel_task", "x\u{fffd}"])),
        &format!("the hello's host and capabilities: {agent}"),
    )?;
    let listed = |list: &serde_json::Value, name: &str| {
        list.as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == name)
            .cloned()
    };
    // A heartbeat has no ack: its rows land a moment after it is sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, workers) = op.get(brain, "/api/v1/projects/default/workers").await?;
        let (_, queues) = op.get(brain, "/api/v1/projects/default/queues").await?;
        let (_, agent_workers) = op
            .get(brain, "/api/v1/projects/default/agent-workers")
            .await?;
        let hello_worker = agent_workers
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["worker_id"] == "w\u{fffd}1")
            .cloned();
        let host = listed(&workers, "host\u{fffd}n");
        let queue = listed(&queues, "q\u{fffd}n");
        if let (Some(w), Some(h), Some(_)) = (&hello_worker, &host, &queue) {
            ensure_eq(
                w["state"].as_str(),
                Some("online"),
                &format!("the hello's worker: {w}"),
            )?;
            return ensure_eq(
                h["queues"].clone(),
                json!(["q\u{fffd}n"]),
                &format!("the heartbeat's worker: {h}"),
            );
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "NUL names not listed as U+FFFD: agent workers {agent_workers}, workers {workers}, queues {queues}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
