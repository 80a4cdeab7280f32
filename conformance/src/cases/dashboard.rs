//! `/ws/dashboard` (dashboard spec 1): admission and its close codes, the
//! subscribe frame and its deadline, membership, the per-user cap, topic
//! pushes after writes, the idle timeout, cross-replica fan-out; and where
//! z4j-rs does better than the reference (decisions D1-D6): pushes from the
//! sweepers, throttled bursts, sockets closed when their session or
//! membership ends.

use super::{ensure, ensure_eq, owned, R};
use crate::agent::{self, Closed, Credentials, Operator, RawSocket};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The dashboard origin the cases' brains allow (`Z4J_CORS_ORIGINS`).
const ORIGIN: &str = "http://dash.conformance.test:8443";

/// Production posture said explicitly (the reference's SQLite CLI picks
/// `dev` by itself, where a missing Origin passes), with one allowed origin
/// from the CORS list and one from the public URL.
fn env() -> Vec<(&'static str, &'static str)> {
    let mut e = agent::admin_env();
    e.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    e.push(("Z4J_ENVIRONMENT", "production"));
    e.push(("Z4J_PUBLIC_URL", "https://public.conformance.test"));
    e.push((
        "Z4J_CORS_ORIGINS",
        r#"["http://dash.conformance.test:8443"]"#,
    ));
    e
}

pub(super) async fn brain_with(
    ctx: &Ctx,
    extra: &[(&str, &str)],
) -> Result<(Brain, Operator), String> {
    let mut e = env();
    e.extend_from_slice(extra);
    let brain = ctx.start(&e).await?;
    let op = agent::login(&brain).await?;
    Ok((brain, op))
}

/// Opens `/ws/dashboard` with these headers (no subscribe yet).
async fn open(
    brain: &Brain,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<RawSocket, String> {
    let url = format!("ws://127.0.0.1:{}/ws/dashboard", brain.port);
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", c.parse().map_err(|_| "bad cookie header")?);
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().map_err(|_| "bad origin header")?);
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| "dashboard WebSocket connect timed out".to_owned())?
    .map_err(|e| format!("dashboard WebSocket connect: {e}"))?;
    Ok(RawSocket(ws))
}

/// A socket subscribed to `project` whose `ready` arrived.
async fn subscribed(brain: &Brain, op: &Operator, project: &str) -> Result<RawSocket, String> {
    Ok(subscribed_at(brain, op, project).await?.0)
}

/// A subscribed socket and the instant just before its subscribe frame
/// left: the brain's idle timer cannot start earlier than that.
async fn subscribed_at(
    brain: &Brain,
    op: &Operator,
    project: &str,
) -> Result<(RawSocket, Instant), String> {
    let mut ws = open(brain, Some(&op.cookie), Some(ORIGIN)).await?;
    let sent = Instant::now();
    ws.send_text(&json!({"type": "subscribe", "project_id": project}).to_string())
        .await?;
    match next(&mut ws, Duration::from_secs(5)).await? {
        Ok(v) if v == json!({"type": "ready"}) => Ok((ws, sent)),
        other => Err(format!(
            "expected {{\"type\":\"ready\"}} after subscribe, got {other:?}"
        )),
    }
}

/// The next JSON frame, or how the socket closed.
async fn next(ws: &mut RawSocket, wait: Duration) -> Result<Result<Json, Closed>, String> {
    Ok(match ws.next_data(wait).await? {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "dashboard frame is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })?),
        Err(c) => Err(c),
    })
}

/// Waits for `{"type":"event","topic":topic}` (other frames skipped).
async fn expect_topic(ws: &mut RawSocket, topic: &str, wait: Duration, what: &str) -> R {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(ws, left).await {
            Ok(Ok(v)) if v["type"] == "event" && v["topic"] == topic => return Ok(()),
            Ok(Ok(_)) => continue,
            Ok(Err(c)) => return Err(format!("{what}: socket closed ({c:?}) before {topic}")),
            Err(_) => return Err(format!("{what}: no {topic} within {wait:?}")),
        }
    }
}

/// No event frame within `wait` (the socket stays open).
async fn expect_quiet(ws: &mut RawSocket, wait: Duration, what: &str) -> R {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match next(ws, left).await {
            Ok(Ok(v)) if v["type"] == "event" => return Err(format!("{what}: unexpected {v}")),
            Ok(Ok(_)) => continue,
            Ok(Err(c)) => return Err(format!("{what}: socket closed ({c:?})")),
            Err(_) => return Ok(()),
        }
    }
}

async fn expect_code(ws: &mut RawSocket, code: u16, wait: Duration, what: &str) -> R {
    match ws.expect_close(wait).await {
        Ok(Closed::Code(c, _)) => ensure_eq(c, code, what),
        Ok(other) => Err(format!("{what}: expected close {code}, got {other:?}")),
        Err(e) => Err(format!("{what}: expected close {code}: {e}")),
    }
}

async fn project_id(brain: &Brain, op: &Operator, slug: &str) -> Result<String, String> {
    let (status, p) = op.get(brain, &format!("/api/v1/projects/{slug}")).await?;
    ensure_eq(status, 200, &format!("project {slug}: {p}"))?;
    p["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("project without id: {p}"))
}

/// A first frame the brain must refuse with 4400.
async fn refused_first(brain: &Brain, op: &Operator, frame: Message, what: &str) -> R {
    let mut ws = open(brain, Some(&op.cookie), Some(ORIGIN)).await?;
    use futures_util::SinkExt;
    ws.0.send(frame).await.map_err(|e| format!("send: {e}"))?;
    expect_code(&mut ws, 4400, Duration::from_secs(5), what).await
}

pub async fn admission(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &op, "default").await?;
    let wait = Duration::from_secs(5);
    // Origin first: missing (production posture) or foreign → 4403.
    let mut ws = open(&brain, Some(&op.cookie), None).await?;
    expect_code(&mut ws, 4403, wait, "no Origin in production posture").await?;
    let mut ws = open(
        &brain,
        Some(&op.cookie),
        Some("http://evil.conformance.test"),
    )
    .await?;
    expect_code(&mut ws, 4403, wait, "a foreign Origin").await?;
    // Then the session: none, forged → 4401.
    let mut ws = open(&brain, None, Some(ORIGIN)).await?;
    expect_code(&mut ws, 4401, wait, "no session cookie").await?;
    let forged = op
        .cookie
        .split("; ")
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.contains("session") => format!("{k}=forged.value.x"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut ws = open(&brain, Some(&forged), Some(ORIGIN)).await?;
    expect_code(&mut ws, 4401, wait, "a forged session cookie").await?;
    // The origin is normalised: case and a default port do not matter.
    let mut ws = open(
        &brain,
        Some(&op.cookie),
        Some("HTTP://Dash.Conformance.Test:8443"),
    )
    .await?;
    ws.send_text(&json!({"type": "subscribe", "project_id": project}).to_string())
        .await?;
    match next(&mut ws, wait).await? {
        Ok(v) => ensure_eq(v, json!({"type": "ready"}), "upper-case Origin admitted")?,
        Err(c) => return Err(format!("upper-case Origin refused: {c:?}")),
    }
    // The public URL's origin is allowed too.
    let mut ws = open(
        &brain,
        Some(&op.cookie),
        Some("https://public.conformance.test"),
    )
    .await?;
    ws.send_text(&json!({"type": "subscribe", "project_id": project}).to_string())
        .await?;
    match next(&mut ws, wait).await? {
        Ok(v) => ensure_eq(
            v,
            json!({"type": "ready"}),
            "the public URL's origin admitted",
        )?,
        Err(c) => return Err(format!("the public URL's origin refused: {c:?}")),
    }
    // A logged-out session no longer opens a socket.
    let (st, _) = op
        .send(&brain, reqwest::Method::POST, "/api/v1/auth/logout", None)
        .await?;
    ensure_eq(st, 204, "logout")?;
    let mut ws = open(&brain, Some(&op.cookie), Some(ORIGIN)).await?;
    expect_code(&mut ws, 4401, wait, "a logged-out session").await?;
    drop(brain);
    // Dev posture: a missing Origin passes (local tooling).
    let dev = ctx
        .start(&[
            ("Z4J_BOOTSTRAP_ADMIN_EMAIL", agent::ADMIN_EMAIL),
            ("Z4J_BOOTSTRAP_ADMIN_PASSWORD", agent::ADMIN_PASSWORD),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
            ("Z4J_ENVIRONMENT", "dev"),
        ])
        .await?;
    let op = agent::login(&dev).await?;
    let project = project_id(&dev, &op, "default").await?;
    let mut ws = open(&dev, Some(&op.cookie), None).await?;
    ws.send_text(&json!({"type": "subscribe", "project_id": project}).to_string())
        .await?;
    match next(&mut ws, wait).await? {
        Ok(v) => ensure_eq(v, json!({"type": "ready"}), "no Origin in dev posture"),
        Err(c) => Err(format!("no Origin refused in dev posture: {c:?}")),
    }
}

pub async fn subscribe(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &op, "default").await?;
    let text = |s: &str| Message::Text(s.to_owned().into());
    for (frame, what) in [
        (
            Message::Binary(vec![1u8, 2, 3].into()),
            "a binary first frame",
        ),
        (text("not json"), "a first frame that is not JSON"),
        (text("[]"), "a first frame that is not an object"),
        (text(r#"{"type":"ping"}"#), "a first frame of another type"),
        (
            text(r#"{"type":"subscribe"}"#),
            "a subscribe without project_id",
        ),
        (
            text(r#"{"type":"subscribe","project_id":7}"#),
            "a numeric project_id",
        ),
        (
            text(r#"{"type":"subscribe","project_id":"default"}"#),
            "a project_id that is not a UUID",
        ),
    ] {
        refused_first(&brain, &op, frame, what).await?;
    }
    // Extra keys are ignored; ping answers pong; unknown frames are ignored.
    let mut ws = open(&brain, Some(&op.cookie), Some(ORIGIN)).await?;
    ws.send_text(&json!({"type": "subscribe", "project_id": project, "extra": 1}).to_string())
        .await?;
    match next(&mut ws, Duration::from_secs(5)).await? {
        Ok(v) => ensure_eq(v, json!({"type": "ready"}), "ready after subscribe")?,
        Err(c) => return Err(format!("subscribe with an extra key refused: {c:?}")),
    }
    for ignored in ["not json", "[1]", r#"{"type":"later-phase"}"#] {
        ws.send_text(ignored).await?;
    }
    ws.send_text(r#"{"type":"ping"}"#).await?;
    match next(&mut ws, Duration::from_secs(5)).await? {
        Ok(v) => ensure_eq(
            v,
            json!({"type": "pong"}),
            "the answer to ping (after ignored frames)",
        ),
        Err(c) => Err(format!("closed after ignored frames: {c:?}")),
    }
}

pub async fn first_frame(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let mut ws = open(&brain, Some(&op.cookie), Some(ORIGIN)).await?;
    let started = Instant::now();
    expect_code(
        &mut ws,
        4400,
        Duration::from_secs(20),
        "silence after the upgrade",
    )
    .await?;
    let took = started.elapsed().as_secs_f64();
    ensure(
        (9.5..=ctx.scaled(12.0).as_secs_f64()).contains(&took),
        format!("closed {took:.1} s after the upgrade; the first frame has 10 s"),
    )
}

pub async fn membership(ctx: Arc<Ctx>) -> R {
    let (brain, admin) = brain_with(&ctx, &[]).await?;
    let default = project_id(&brain, &admin, "default").await?;
    admin.create_project(&brain, "dash-other").await?;
    let other = project_id(&brain, &admin, "dash-other").await?;
    super::member_of_default(
        &brain,
        &admin,
        "dash-viewer@example.com",
        "Dash-viewer-pw-1",
        "viewer",
    )
    .await?;
    let viewer = agent::login_as(&brain, "dash-viewer@example.com", "Dash-viewer-pw-1").await?;
    subscribed(&brain, &viewer, &default)
        .await
        .map_err(|e| format!("a viewer of the project: {e}"))?;
    for (project, what) in [
        (other.as_str(), "a project the user is not a member of"),
        (
            "7c1d8a4e-0000-4000-8000-000000000001",
            "a project that does not exist",
        ),
    ] {
        let mut ws = open(&brain, Some(&viewer.cookie), Some(ORIGIN)).await?;
        ws.send_text(&json!({"type": "subscribe", "project_id": project}).to_string())
            .await?;
        expect_code(&mut ws, 4403, Duration::from_secs(5), what).await?;
    }
    // A global admin sees every project without a membership row.
    subscribed(&brain, &admin, &other)
        .await
        .map_err(|e| format!("a global admin on another project: {e}"))?;
    Ok(())
}

pub async fn user_cap(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &op, "default").await?;
    let mut held = Vec::new();
    for i in 0..50 {
        held.push(
            subscribed(&brain, &op, &project)
                .await
                .map_err(|e| format!("subscription {} of 50: {e}", i + 1))?,
        );
    }
    let mut ws = open(&brain, Some(&op.cookie), Some(ORIGIN)).await?;
    ws.send_text(&json!({"type": "subscribe", "project_id": project}).to_string())
        .await?;
    expect_code(
        &mut ws,
        4402,
        Duration::from_secs(5),
        "the 51st subscription of one user",
    )
    .await?;
    // Another user is not affected; a closed tab frees its place.
    drop(held.pop());
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        match subscribed(&brain, &op, &project).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("a place freed by a closed socket: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn issue_cancel(brain: &Brain, op: &Operator, creds: &Credentials, task: &str) -> R {
    super::registry::issue_cancel(brain, op, creds, task)
        .await
        .map(drop)
}

pub async fn topics(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &op, "default").await?;
    op.create_project(&brain, "dash-quiet").await?;
    let quiet_id = project_id(&brain, &op, "dash-quiet").await?;
    let creds = op.mint(&brain, "dash-agent").await?;
    let mut ws = subscribed(&brain, &op, &project).await?;
    let mut quiet = subscribed(&brain, &op, &quiet_id).await?;
    let wait = ctx.scaled(3.0);
    let mut s = agent::connect(&brain, &creds, Some("w1")).await?;
    expect_topic(&mut ws, "agent.changed", wait, "an agent's handshake").await?;
    let ev = agent::task_event("dash-t1", "task.received", json!({"task_name": "dash.add"}));
    s.send_events("dash-b1", &[ev]).await?;
    s.expect_ack("dash-b1", Duration::from_secs(10)).await?;
    expect_topic(&mut ws, "task.changed", wait, "a committed event batch").await?;
    issue_cancel(&brain, &op, &creds, "dash-t1").await?;
    expect_topic(&mut ws, "command.changed", wait, "an issued command").await?;
    drop(s);
    expect_topic(&mut ws, "agent.changed", wait, "an agent's disconnect").await?;
    expect_quiet(
        &mut quiet,
        Duration::from_secs(1),
        "another project's subscriber",
    )
    .await
}

/// z4j-rs (decision D14): schedule writes, fires and acks push
/// `schedule.changed` to the project's dashboards and no other's.
pub async fn schedule_topic(ctx: Arc<Ctx>) -> R {
    use super::scheduler::{create, insecure_brain, slot};
    let (brain, port) = insecure_brain(
        &ctx,
        &[
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
            (
                "Z4J_CORS_ORIGINS",
                r#"["http://dash.conformance.test:8443"]"#,
            ),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    op.create_project(&brain, "sched-quiet").await?;
    let project = project_id(&brain, &op, "default").await?;
    let other = project_id(&brain, &op, "sched-quiet").await?;
    let mut ws = subscribed(&brain, &op, &project).await?;
    let mut quiet = subscribed(&brain, &op, &other).await?;
    let wait = ctx.scaled(3.0);
    let id = create(&brain, &op, "topic-tick", json!({})).await?;
    expect_topic(&mut ws, "schedule.changed", wait, "a schedule created").await?;
    let api = format!("/api/v1/projects/default/schedules/{id}");
    for (method, path, what) in [
        (
            reqwest::Method::POST,
            format!("{api}/pause"),
            "a schedule held",
        ),
        (
            reqwest::Method::POST,
            format!("{api}/resume"),
            "a schedule released",
        ),
        (reqwest::Method::PATCH, api.clone(), "a schedule edited"),
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({"queue": "q2"}));
        let (st, r) = op.send(&brain, method, &path, body).await?;
        ensure_eq(st, 200, &format!("{what}: {r}"))?;
        expect_topic(&mut ws, "schedule.changed", wait, what).await?;
    }
    // No agent online: the fire is buffered, then acknowledged.
    let mut c = crate::sched::insecure(port).await?;
    let req = crate::sched::fire_request(&id, slot(5));
    let fire_id = req.fire_id.clone();
    c.fire_schedule(req)
        .await
        .map_err(|e| format!("fire: {e}"))?;
    expect_topic(&mut ws, "schedule.changed", wait, "a fire recorded").await?;
    c.acknowledge_fire_result(crate::sched::ack(&fire_id, "success", ""))
        .await
        .map_err(|e| format!("ack: {e}"))?;
    expect_topic(&mut ws, "schedule.changed", wait, "a fire acknowledged").await?;
    let (st, _) = op.send(&brain, reqwest::Method::DELETE, &api, None).await?;
    ensure_eq(st, 204, "delete")?;
    expect_topic(&mut ws, "schedule.changed", wait, "a schedule deleted").await?;
    expect_quiet(
        &mut quiet,
        Duration::from_secs(1),
        "another project's subscriber",
    )
    .await
}

pub async fn idle_timeout(ctx: Arc<Ctx>) -> R {
    // Configured at the minimum: silence ends the socket with 4408 then and
    // not before; text frames (pings) keep it open.
    let (brain, op) = brain_with(&ctx, &[("Z4J_WS_IDLE_TIMEOUT_SECONDS", "15")]).await?;
    let project = project_id(&brain, &op, "default").await?;
    // Timed from before the subscribe frame was sent, so the brain's timer
    // starts no earlier and a close before 15 s is a real early close.
    let (mut silent, started) = subscribed_at(&brain, &op, &project).await?;
    let mut talker = subscribed(&brain, &op, &project).await?;
    let talk = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            talker.send_text(r#"{"type":"ping"}"#).await?;
        }
        match next(&mut talker, Duration::from_secs(1)).await? {
            Ok(_) => Ok::<(), String>(()),
            Err(c) => Err(format!("a socket pinging every 4 s closed: {c:?}")),
        }
    };
    let silence = async {
        expect_code(
            &mut silent,
            4408,
            Duration::from_secs(30),
            "a silent dashboard socket",
        )
        .await?;
        Ok::<f64, String>(started.elapsed().as_secs_f64())
    };
    let (talked, took) = tokio::join!(talk, silence);
    talked?;
    let took = took?;
    ensure(
        (15.0..=15.0 + ctx.scaled(3.0).as_secs_f64()).contains(&took),
        format!("closed after {took:.1} s of silence with Z4J_WS_IDLE_TIMEOUT_SECONDS=15"),
    )?;
    drop(brain);
    // The documented default, 90 s.
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &op, "default").await?;
    let (mut silent, started) = subscribed_at(&brain, &op, &project).await?;
    expect_code(
        &mut silent,
        4408,
        Duration::from_secs(120),
        "a silent socket at the default",
    )
    .await?;
    let took = started.elapsed().as_secs_f64();
    ensure(
        (90.0..=90.0 + ctx.scaled(4.0).as_secs_f64()).contains(&took),
        format!("closed after {took:.1} s of silence at the default (90 s)"),
    )
}

pub async fn cross_replica(ctx: Arc<Ctx>) -> R {
    let (mut e, name) = ctx.pinned_database().await?;
    name.ok_or("skip: cross-replica fan-out needs PostgreSQL")?;
    e.extend(owned(&env()));
    let a = ctx.start_env(e.clone(), None).await?;
    let b = ctx.start_env(e, None).await?;
    let op = agent::login(&a).await?;
    let project = project_id(&a, &op, "default").await?;
    let creds = op.mint(&a, "dash-replicated").await?;
    let mut on_a = subscribed(&a, &op, &project).await?;
    let mut on_b = subscribed(&b, &op, &project).await?;
    // Listeners need a moment after start-up.
    tokio::time::sleep(ctx.scaled(2.0)).await;
    let mut s = agent::connect(&b, &creds, Some("w1")).await?;
    let wait = ctx.scaled(3.0);
    expect_topic(
        &mut on_a,
        "agent.changed",
        wait,
        "agent connected to B, subscriber on A",
    )
    .await?;
    expect_topic(
        &mut on_b,
        "agent.changed",
        wait,
        "agent connected to B, subscriber on B",
    )
    .await?;
    let ev = agent::task_event("dash-x1", "task.received", json!({"task_name": "dash.add"}));
    s.send_events("dash-xb1", &[ev]).await?;
    s.expect_ack("dash-xb1", Duration::from_secs(10)).await?;
    expect_topic(
        &mut on_a,
        "task.changed",
        wait,
        "events ingested by B, subscriber on A",
    )
    .await?;
    issue_cancel(&a, &op, &creds, "dash-x1").await?;
    expect_topic(
        &mut on_b,
        "command.changed",
        wait,
        "command issued on A, subscriber on B",
    )
    .await
}

pub async fn sweeper_pushes(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(
        &ctx,
        &[
            ("Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS", "5"),
            ("Z4J_AGENT_HEALTH_SWEEP_SECONDS", "1"),
            ("Z4J_COMMAND_TIMEOUT_SECONDS", "10"),
            ("Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS", "1"),
        ],
    )
    .await?;
    let project = project_id(&brain, &op, "default").await?;
    let creds = op.mint(&brain, "dash-sweep").await?;
    let mut ws = subscribed(&brain, &op, &project).await?;
    // A long-poll agent's first request brings it online (the reference
    // publishes nothing for long-poll agents).
    let lp = agent::LongPoll::new(&creds)?;
    let (st, body) = lp.poll(&brain, 0, 0).await?;
    ensure_eq(st, 200, &format!("first long-poll: {body}"))?;
    expect_topic(
        &mut ws,
        "agent.changed",
        ctx.scaled(3.0),
        "a long-poll agent online",
    )
    .await?;
    // A command nobody acknowledges: issued, then timed out by the sweeper.
    issue_cancel(&brain, &op, &creds, "dash-never").await?;
    expect_topic(&mut ws, "command.changed", ctx.scaled(3.0), "the issue").await?;
    // Then, with nothing else happening: the offline flip (about 5 s after
    // the poll) and the timeout (about 10 s after the issue), in that order.
    let mut seen = Vec::new();
    let deadline = Instant::now() + ctx.scaled(16.0);
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(&mut ws, left).await {
            Ok(Ok(v)) if v["type"] == "event" => {
                seen.push(v["topic"].as_str().unwrap_or_default().to_owned())
            }
            Ok(Ok(_)) => {}
            Ok(Err(c)) => return Err(format!("closed while waiting for the sweeps: {c:?}")),
            Err(_) => break,
        }
    }
    ensure_eq(
        seen,
        vec!["agent.changed".to_owned(), "command.changed".to_owned()],
        "pushes of the offline sweep, then the command-timeout sweep",
    )?;
    let (_, agents) = op.get(&brain, "/api/v1/projects/default/agents").await?;
    let state = agents
        .as_array()
        .or_else(|| agents["items"].as_array())
        .and_then(|l| l.iter().find(|a| a["id"] == creds.agent_id.as_str()))
        .map(|a| a["state"].clone());
    ensure_eq(state, Some(json!("offline")), "the agent after the push")
}

pub async fn coalesce(ctx: Arc<Ctx>) -> R {
    let (brain, op) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &op, "default").await?;
    let creds = op.mint(&brain, "dash-burst").await?;
    let mut s = agent::connect(&brain, &creds, Some("w1")).await?;
    let mut ws = subscribed(&brain, &op, &project).await?;
    let started = Instant::now();
    for i in 0..60 {
        let ev = agent::task_event(
            &format!("dash-burst-{i}"),
            "task.received",
            json!({"task_name": "dash.add"}),
        );
        s.send_events(&format!("dash-burst-b{i}"), &[ev]).await?;
        s.expect_ack(&format!("dash-burst-b{i}"), Duration::from_secs(10))
            .await?;
    }
    let sent_in = started.elapsed().as_secs_f64();
    // Count what arrives during the burst and 2.5 s after it.
    let mut frames = 0u32;
    let deadline = Instant::now() + Duration::from_millis(2500);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match next(&mut ws, left).await {
            Ok(Ok(v)) if v["topic"] == "task.changed" => frames += 1,
            Ok(Ok(_)) => {}
            Ok(Err(c)) => return Err(format!("closed during the burst: {c:?}")),
            Err(_) => break,
        }
    }
    // One window is 1 s: at most one leading push plus one per started
    // window of the burst, and at least one.
    let bound = sent_in.ceil() as u32 + 2;
    ensure(
        (1..=bound).contains(&frames),
        format!("60 committed batches in {sent_in:.1} s gave {frames} task.changed frames (want 1..={bound})"),
    )
}

pub async fn session_close(ctx: Arc<Ctx>) -> R {
    let (brain, admin) = brain_with(&ctx, &[]).await?;
    let project = project_id(&brain, &admin, "default").await?;
    let wait = ctx.scaled(3.0);
    // Logout ends that session's sockets (4401) and no other.
    let other = agent::login(&brain).await?;
    let mut mine = subscribed(&brain, &other, &project).await?;
    let mut kept = subscribed(&brain, &admin, &project).await?;
    let (st, _) = other
        .send(&brain, reqwest::Method::POST, "/api/v1/auth/logout", None)
        .await?;
    ensure_eq(st, 204, "logout")?;
    expect_code(&mut mine, 4401, wait, "the logged-out session's socket").await?;
    // Removing a membership ends that user's sockets on the project (4403).
    let uid = super::member_of_default(
        &brain,
        &admin,
        "dash-member@example.com",
        "Dash-member-pw-1",
        "viewer",
    )
    .await?;
    let member = agent::login_as(&brain, "dash-member@example.com", "Dash-member-pw-1").await?;
    let mut theirs = subscribed(&brain, &member, &project).await?;
    let (_, list) = admin
        .get(&brain, "/api/v1/projects/default/memberships")
        .await?;
    let mid = list
        .as_array()
        .or_else(|| list["items"].as_array())
        .and_then(|l| l.iter().find(|m| m["user_id"] == uid.as_str()))
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("membership not listed: {list}"))?;
    let (st, body) = admin
        .send(
            &brain,
            reqwest::Method::DELETE,
            &format!("/api/v1/projects/default/memberships/{mid}"),
            None,
        )
        .await?;
    ensure_eq(st, 204, &format!("remove membership: {body}"))?;
    expect_code(&mut theirs, 4403, wait, "a removed member's socket").await?;
    kept.send_text(r#"{"type":"ping"}"#).await?;
    match next(&mut kept, wait).await? {
        Ok(v) => ensure_eq(v, json!({"type": "pong"}), "an unrelated session's socket"),
        Err(c) => Err(format!("an unrelated session's socket closed: {c:?}")),
    }
}

/// GET a page with this cookie (none: anonymous); status, headers, body.
pub(super) async fn page(
    brain: &Brain,
    cookie: Option<&str>,
    path: &str,
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let mut req = super::client().get(brain.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Ok((status, headers, resp.text().await.unwrap_or_default()))
}

/// The JSON body of a page's bulk-retry button, if it has one.
fn bulk_body(html: &str) -> Option<Json> {
    let rest = html.split(r#"commands/bulk-retry" data-body=""#).nth(1)?;
    let raw = rest.split('"').next()?;
    serde_json::from_str(&raw.replace("&quot;", "\"").replace("&#x2f;", "/")).ok()
}

pub(super) fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// z4j-rs's server-rendered pages (issue 20): sign-in redirects, the
/// project list, a project's overview, the task list and its filters, a
/// task's page with its stored failure (escaped), role-dependent buttons,
/// real 404s, strict CSP and no-store on every page.
pub async fn pages(ctx: Arc<Ctx>) -> R {
    // A webhook to a loopback port stands in for an alert channel.
    let (brain, op) = brain_with(
        &ctx,
        &[
            ("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP", "true"),
            ("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    )
    .await?;
    let (st, h, _) = page(&brain, None, "/").await?;
    ensure_eq(
        (st, header(&h, "location")),
        (303, "/login"),
        "/ without a session",
    )?;
    let (st, h, _) = page(&brain, None, "/projects/default/tasks?state=failure").await?;
    ensure_eq(
        (st, header(&h, "location")),
        (
            303,
            "/login?next=%2Fprojects%2Fdefault%2Ftasks%3Fstate%3Dfailure",
        ),
        "a project page without a session goes to sign-in and back",
    )?;
    let (_, h, _) = page(&brain, None, "/projects/default/tasks/rq/a%20b").await?;
    ensure_eq(
        header(&h, "location"),
        "/login?next=%2Fprojects%2Fdefault%2Ftasks%2Frq%2Fa%2520b",
        "the way back to a task keeps a space in its id a space (%20, not +)",
    )?;
    let (st, h, body) = page(&brain, None, "/login").await?;
    ensure_eq(st, 200, "the sign-in page")?;
    let csp = header(&h, "content-security-policy");
    ensure(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        format!("strict CSP on pages, no inline script or style: {csp}"),
    )?;
    ensure(body.contains(r#"<form id="login""#), "the sign-in form")?;
    for (next, kept) in [
        ("%2Fprojects%2Fdefault", true),
        ("%2F%5Cevil.example", false),
        ("%2F%2Fevil.example", false),
    ] {
        let (_, _, body) = page(&brain, None, &format!("/login?next={next}")).await?;
        let value = body
            .split_once(r#"data-next=""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v.to_owned());
        let ok = value.as_deref().map(|v| {
            if kept {
                v.contains("projects")
            } else {
                v.is_empty()
            }
        });
        ensure_eq(
            ok,
            Some(true),
            &format!("sign-in keeps only a local way back ({next}): {value:?}"),
        )?;
    }
    ensure(!body.contains("<script>"), "no inline script")?;
    let (st, h, _) = page(&brain, Some(&op.cookie), "/").await?;
    ensure_eq(
        (st, header(&h, "location")),
        (303, "/home"),
        "/ with a session",
    )?;
    let (st, h, home) = page(&brain, Some(&op.cookie), "/home").await?;
    ensure_eq(st, 200, "home")?;
    ensure_eq(
        header(&h, "cache-control"),
        "no-store",
        "authenticated pages are not stored",
    )?;
    ensure(
        home.contains(r#"href="/projects/default""#),
        "home lists the default project",
    )?;
    ensure(
        home.contains(">production<"),
        "the environment label on every page",
    )?;

    // One agent, one failed task whose exception carries markup.
    let creds = op.mint(&brain, "page-agent").await?;
    let mut s = agent::connect(&brain, &creds, Some("w1")).await?;
    let events = [
        agent::task_event(
            "page-t1",
            "task.received",
            json!({"task_name": "pages.fail", "queue": "q1"}),
        ),
        agent::task_event(
            "page-t1",
            "task.started",
            json!({"task_name": "pages.fail", "worker": "w-9"}),
        ),
        agent::task_event(
            "page-t1",
            "task.failed",
            json!({"task_name": "pages.fail", "exception": "ValueError: <b>boom</b>", "traceback": "Traceback: line 1"}),
        ),
        agent::task_event(
            "page-t2",
            "task.received",
            json!({"task_name": "pages.ok", "queue": "q1", "priority": "high",
                   "args": [7], "kwargs": {"customer": "Ada-42", "password": "hunter2"}}),
        ),
    ];
    s.send_events("page-b1", &events).await?;
    s.expect_ack("page-b1", Duration::from_secs(10)).await?;
    let (st, _, overview) = page(&brain, Some(&op.cookie), "/projects/default").await?;
    ensure_eq(st, 200, "overview")?;
    ensure(
        overview.contains(r#"<svg class="chart""#) && overview.contains("1 in all, 1 failed"),
        "the overview charts finished tasks, the failure among them",
    )?;
    let issues = overview.split("Open issues").nth(1).unwrap_or_default();
    ensure(
        issues.contains("ValueError: &lt;b&gt;boom"),
        "the failure is an open issue on the overview, escaped",
    )?;
    let (st, _, all_issues) = page(
        &brain,
        Some(&op.cookie),
        "/projects/default/issues?status=ongoing&since=1h",
    )
    .await?;
    let (_, _, recovered) = page(
        &brain,
        Some(&op.cookie),
        "/projects/default/issues?status=recovered",
    )
    .await?;
    ensure(
        st == 200
            && all_issues.contains("ValueError: &lt;b&gt;boom")
            && all_issues.contains("tasks?name=pages.fail&amp;state=failure")
            && !recovered.contains("ValueError")
            && recovered.contains("Nothing here."),
        "the issues page lists the ongoing failure group, not as recovered",
    )?;
    let (_, _, home) = page(&brain, Some(&op.cookie), "/home").await?;
    ensure(
        home.contains("/projects/default/tasks/rq/page-t1")
            && home.contains("ValueError: &lt;b&gt;"),
        "home lists the recent failure, escaped",
    )?;
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/saved-views",
            Some(json!({"name": "Only <failures>", "filters": {"state": "failure", "priority": ["high"]}})),
        )
        .await?;
    ensure_eq(status, 201, "save a view")?;
    let (_, _, tasks) = page(&brain, Some(&op.cookie), "/projects/default/tasks").await?;
    ensure(
        tasks.contains(r#"tasks?state=failure&amp;priority=high">Only &lt;failures&gt;</a>"#),
        "the saved view links to its filters, its name escaped",
    )?;
    ensure(
        overview.contains("page-agent"),
        "the overview lists the agent",
    )?;
    ensure(
        overview.contains("page-t1") && !overview.contains("page-t2"),
        "recent failures list the failed task only",
    )?;
    for (path, shown, hidden, what) in [
        (
            "/projects/default/tasks?state=failure",
            "page-t1",
            "page-t2",
            "the state filter",
        ),
        (
            "/projects/default/tasks?name=PAGES.OK",
            "page-t2",
            "page-t1",
            "the name filter (case-insensitive)",
        ),
        (
            "/projects/default/tasks?args=ADA-42",
            "page-t2",
            "page-t1",
            "the argument-text filter (case-insensitive)",
        ),
        (
            "/projects/default/tasks?args=hunter2",
            "Nothing here.",
            "page-t2",
            "a redacted value cannot be searched for",
        ),
        (
            "/projects/default/tasks?worker=w-9",
            "page-t1",
            "page-t2",
            "the worker filter",
        ),
        (
            "/projects/default/tasks?priority=high",
            "page-t2",
            "page-t1",
            "the priority filter",
        ),
        (
            "/projects/default/tasks?priority=low,critical&since=1h",
            "Nothing here.",
            "page-t",
            "several priorities and a time range",
        ),
    ] {
        let (_, _, body) = page(&brain, Some(&op.cookie), path).await?;
        ensure(body.contains(shown) && !body.contains(hidden), what)?;
    }
    let (_, found) = op
        .get(&brain, "/api/v1/projects/default/tasks?args=ada-42")
        .await?;
    let ids: Vec<&str> = found["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["task_id"].as_str())
        .collect();
    ensure_eq(ids, vec!["page-t2"], "the REST task list's args filter")?;
    let (st, _, detail) = page(
        &brain,
        Some(&op.cookie),
        "/projects/default/tasks/rq/page-t1",
    )
    .await?;
    ensure_eq(st, 200, "the task page")?;
    ensure(
        detail.contains("ValueError: &lt;b&gt;boom") && !detail.contains("<b>boom"),
        "the stored exception, escaped",
    )?;
    ensure(detail.contains("task.failed"), "the task's timeline")?;
    ensure(
        detail.contains(&format!(
            r#"data-command="retry-task" data-agent="{}""#,
            creds.agent_id
        )),
        "an admin gets a retry button aimed at the task's agent",
    )?;
    // The failed tasks shown, retried by id through their engine's agent.
    let (_, _, failed) = page(
        &brain,
        Some(&op.cookie),
        "/projects/default/tasks?state=failure",
    )
    .await?;
    ensure_eq(
        bulk_body(&failed),
        Some(
            json!({"agent_id": creds.agent_id, "filter": {"engine": "rq", "task_ids": ["page-t1"]}}),
        ),
        "a bulk retry of the failed tasks shown, by id, to their agent",
    )?;
    let (st, h, _) = page(
        &brain,
        Some(&op.cookie),
        "/projects/default/tasks/rq/no-such-task",
    )
    .await?;
    ensure(
        st == 404 && header(&h, "content-type").starts_with("text/html"),
        format!("an unknown task is a 404 page, got {st}"),
    )?;
    let (st, h, js) = page(&brain, None, "/assets/app.js").await?;
    ensure(
        st == 200
            && header(&h, "content-type").starts_with("text/javascript")
            && js.contains("/ws/dashboard"),
        "the page script",
    )?;

    // A viewer sees the task but no command buttons, and not other projects.
    op.create_project(&brain, "page-private").await?;
    super::member_of_default(
        &brain,
        &op,
        "page-viewer@example.com",
        "Page-viewer-pw-1",
        "viewer",
    )
    .await?;
    let viewer = agent::login_as(&brain, "page-viewer@example.com", "Page-viewer-pw-1").await?;
    let (st, _, seen) = page(
        &brain,
        Some(&viewer.cookie),
        "/projects/default/tasks/rq/page-t1",
    )
    .await?;
    ensure_eq(st, 200, "a viewer's task page")?;
    ensure(
        !seen.contains("data-command"),
        "a viewer gets no command buttons",
    )?;
    let (_, _, vfailed) = page(
        &brain,
        Some(&viewer.cookie),
        "/projects/default/tasks?state=failure",
    )
    .await?;
    ensure(
        vfailed.contains("page-t1") && bulk_body(&vfailed).is_none(),
        "a viewer gets no bulk retry",
    )?;
    let (_, _, vhome) = page(&brain, Some(&viewer.cookie), "/home").await?;
    ensure(
        !vhome.contains("page-private"),
        "home lists only the viewer's projects",
    )?;
    let (st, _, _) = page(&brain, Some(&viewer.cookie), "/projects/page-private").await?;
    ensure_eq(st, 404, "another project's page, for a non-member")?;
    people_pages(&brain, &op, &viewer).await?;
    operations_pages(&brain, &op, &viewer, &creds.agent_id).await
}

/// Commands, workers and queues, the audit log: each role's view.
async fn operations_pages(brain: &Brain, op: &Operator, viewer: &Operator, agent_id: &str) -> R {
    let (status, c) = op
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/commands/retry-task",
            Some(json!({"agent_id": agent_id, "engine": "rq", "task_id": "page-t1"})),
        )
        .await?;
    ensure_eq(status, 202, &format!("a retry to list: {c}"))?;
    let (st, _, commands) = page(brain, Some(&op.cookie), "/projects/default/commands").await?;
    ensure(
        st == 200
            && commands.contains("retry_task")
            && commands.contains(r#"href="/projects/default/tasks/rq/page-t1""#),
        format!(
            "the commands page lists the retry, linked to its task: {}",
            commands.split("<tbody>").nth(1).unwrap_or_default()
        ),
    )?;
    let (_, _, vcommands) = page(brain, Some(&viewer.cookie), "/projects/default/commands").await?;
    ensure(
        vcommands.contains("retry_task") && vcommands.contains(">page-t1</a>"),
        "a viewer (no payloads) gets the task linked too",
    )?;
    let (_, _, done) = page(
        brain,
        Some(&viewer.cookie),
        "/projects/default/commands?status=completed",
    )
    .await?;
    ensure(
        !done.contains("retry_task") && done.contains("Nothing here."),
        "the status filter",
    )?;
    let (st, _, workers) = page(brain, Some(&op.cookie), "/projects/default/workers").await?;
    ensure(
        st == 200
            && workers.contains("w-9")
            && workers.contains(r#"data-api="POST /api/v1/projects/default/commands/purge-queue""#)
            && workers.contains(r#"data-must-match="q1""#),
        "workers and queues, a purge (typed confirmation) for an admin",
    )?;
    let (_, _, vworkers) = page(brain, Some(&viewer.cookie), "/projects/default/workers").await?;
    ensure(
        vworkers.contains("q1") && !vworkers.contains("purge-queue"),
        "a viewer sees the queues, no purge",
    )?;
    let (st, _, audit) = page(
        brain,
        Some(&op.cookie),
        "/projects/default/audit?action_prefix=invitation.",
    )
    .await?;
    ensure(
        st == 200
            && audit.contains("invitation.mint")
            && !audit.contains("membership.granted")
            && audit.contains(
                "/api/v1/projects/default/audit?format=json&amp;action_prefix=invitation.",
            ),
        format!(
            "the audit log filtered by action, with its export link: {}",
            audit.split("<main id=\"main\">").nth(1).unwrap_or_default()
        ),
    )?;
    let base = "/api/v1/projects/default/notifications";
    let (status, c) = op
        .send(
            brain,
            reqwest::Method::POST,
            &format!("{base}/channels"),
            Some(json!({"name": "page <hook>", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}})),
        )
        .await?;
    ensure_eq(status, 201, &format!("a channel: {c}"))?;
    let channel = c["id"].as_str().unwrap_or_default().to_owned();
    let (status, r) = op
        .send(
            brain,
            reqwest::Method::POST,
            &format!("{base}/defaults"),
            Some(json!({"trigger": "agent.offline", "project_channel_ids": [channel]})),
        )
        .await?;
    ensure_eq(status, 201, &format!("a route: {r}"))?;
    let (st, _, alerts) = page(brain, Some(&op.cookie), "/projects/default/notifications").await?;
    ensure(
        st == 200
            && alerts.contains("page &lt;hook&gt;")
            && alerts.contains(&format!(
                r#"data-api="POST {base}/channels/{channel}/test""#
            ))
            && alerts.contains(r#"<td class="mono">agent.offline</td><td>page &lt;hook&gt;</td>"#),
        "alerts: the channel with its test button, the route naming it",
    )?;
    let (_, _, valerts) = page(
        brain,
        Some(&viewer.cookie),
        "/projects/default/notifications",
    )
    .await?;
    ensure(
        valerts.contains("page &lt;hook&gt;") && !valerts.contains("data-api="),
        "a viewer sees the alerts, no controls",
    )?;
    let (st, _, feed) = page(brain, Some(&op.cookie), "/activity?project_slug=default").await?;
    ensure(
        st == 200 && feed.contains("invitation.mint") && feed.contains("<td>default</td>"),
        "the activity page shows the project's rows to an admin",
    )?;
    let (_, _, vfeed) = page(brain, Some(&viewer.cookie), "/activity").await?;
    ensure(
        vfeed.contains("auth.login") && !vfeed.contains("invitation.mint"),
        "a viewer's activity page shows their own rows only",
    )?;
    let (st, _, _) = page(brain, Some(&viewer.cookie), "/projects/default/audit").await?;
    let (_, _, vhome) = page(brain, Some(&viewer.cookie), "/projects/default").await?;
    ensure(
        st == 404 && !vhome.contains(r#"href="/projects/default/audit""#),
        "no audit log, and no link to it, for a viewer",
    )
}

/// Users, members, API keys, account and the sign-in helpers: what each
/// role is offered, drawn from the same data as the REST routes.
async fn people_pages(brain: &Brain, op: &Operator, viewer: &Operator) -> R {
    let (st, _, users) = page(brain, Some(&op.cookie), "/users").await?;
    ensure_eq(st, 200, "the users page, for a global admin")?;
    ensure(
        users.contains("page-viewer@example.com")
            && users.contains(r#"data-api="POST /api/v1/users""#),
        "the users page lists users and offers to create one",
    )?;
    let (st, _, _) = page(brain, Some(&viewer.cookie), "/users").await?;
    ensure_eq(st, 404, "the users page, for anyone else")?;
    let (st, _, members) = page(brain, Some(&op.cookie), "/projects/default/members").await?;
    ensure_eq(st, 200, "the members page")?;
    ensure(
        members.contains("page-viewer@example.com")
            && members.contains(r#"data-api="POST /api/v1/projects/default/invitations""#),
        format!("an admin sees the members and can invite: {members:.3000}"),
    )?;
    let (status, _) = op
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/invitations",
            Some(json!({"email": "page-invitee@example.com", "role": "operator"})),
        )
        .await?;
    ensure_eq(status, 201, "invite")?;
    let (_, _, members) = page(brain, Some(&op.cookie), "/projects/default/members").await?;
    ensure(
        members.contains("page-invitee@example.com"),
        "the pending invitation is listed",
    )?;
    let (_, _, vmembers) = page(brain, Some(&viewer.cookie), "/projects/default/members").await?;
    ensure(
        vmembers.contains("page-viewer@example.com")
            && !vmembers.contains("data-api=")
            && !vmembers.contains("page-invitee@example.com"),
        "a viewer sees the members, no controls and no invitations",
    )?;
    let (_, _, keys) = page(brain, Some(&op.cookie), "/api-keys").await?;
    let (_, _, vkeys) = page(brain, Some(&viewer.cookie), "/api-keys").await?;
    ensure(
        keys.contains(r#"value="users:write""#)
            && !vkeys.contains(r#"value="users:write""#)
            && vkeys.contains(r#"value="tasks:read""#),
        "admin-only scopes are offered to global admins only",
    )?;
    let (status, _) = viewer
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "page <key>", "scopes": ["tasks:read"]})),
        )
        .await?;
    ensure_eq(status, 201, "a viewer's key")?;
    let (_, _, vkeys) = page(brain, Some(&viewer.cookie), "/api-keys").await?;
    ensure(
        vkeys.contains("page &lt;key&gt;")
            && vkeys.contains(r#"data-api="DELETE /api/v1/api-keys/"#),
        "the key listed, escaped, with a revoke button",
    )?;
    let (st, h, account) = page(brain, Some(&viewer.cookie), "/account").await?;
    ensure_eq(
        (st, header(&h, "cache-control")),
        (200, "no-store"),
        "the account page",
    )?;
    ensure(
        account.contains(r#"id="mfa-start""#) && account.contains("this browser"),
        "the account page offers two-factor set-up and lists this session",
    )?;
    let (status, started) = viewer
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/auth/mfa/enroll-start",
            None,
        )
        .await?;
    ensure_eq(status, 200, "enrolment started")?;
    let secret = started["secret_base32"].as_str().unwrap_or_default();
    let (_, _, account) = page(brain, Some(&viewer.cookie), "/account").await?;
    let svg = account
        .split_once(r#"<svg role="img""#)
        .map(|(_, rest)| rest.split("</svg>").next().unwrap_or_default())
        .unwrap_or_default();
    ensure(
        svg.contains("<path") && !secret.is_empty() && account.contains(secret),
        "during enrolment the page draws the QR code inline as SVG and shows the key",
    )?;
    let (st, _, other) = page(brain, Some(&op.cookie), "/account").await?;
    ensure(
        st == 200 && !other.contains(secret) && !other.contains("<svg role"),
        "another person's page shows no pending key",
    )?;
    for (path, form) in [
        ("/invite", r#"id="accept""#),
        ("/reset", r#"id="reset-request""#),
    ] {
        let (st, h, body) = page(brain, None, path).await?;
        ensure(
            st == 200
                && body.contains(form)
                && header(&h, "content-security-policy").contains("script-src 'self'"),
            format!("{path}: a page without a session, strict CSP"),
        )?;
    }
    let (_, _, login) = page(brain, None, "/login").await?;
    ensure(
        login.contains(r#"href="/reset""#),
        "sign-in links to the password reset",
    )
}

/// Past an MFA enrolment deadline (the grace clock started two days ago
/// with the testing clock, as mfa.enforcement does), every page sends the
/// person to the account page, which offers only the enrolment; once
/// enrolled, the pages open again (specs/decisions.md D13).
pub async fn enrolment_pages(ctx: Arc<Ctx>) -> R {
    let (env, past) = super::mfa::enforcement_env(&ctx).await?;
    let brain = ctx.start_env(past, None).await?;
    agent::login(&brain).await?;
    let home = brain.stop_keep_home().await;
    let brain = ctx.start_env(env, Some(home)).await?;
    let op = agent::login(&brain).await?;
    let (st, h, _) = page(&brain, Some(&op.cookie), "/projects/default/tasks").await?;
    ensure_eq(
        (st, header(&h, "location")),
        (303, "/account"),
        "past the deadline a page sends to the account page",
    )?;
    let (st, _, account) = page(&brain, Some(&op.cookie), "/account").await?;
    ensure(
        st == 200
            && account.contains("requires a second factor")
            && account.contains(r#"id="mfa-start""#)
            && !account.contains("<h2>Sessions</h2>"),
        "the account page offers only the enrolment",
    )?;
    super::mfa::enrol(&brain, &op).await?;
    let (st, _, _) = page(&brain, Some(&op.cookie), "/projects/default/tasks").await?;
    ensure_eq(st, 200, "enrolled: the pages open again")
}

/// ChromeDriver on a free port, stopped (with its browsers) on drop.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Result<Driver, String> {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("skip: no chromedriver (Debian's chromium-driver; .ci/run installs it)")?;
    let port = crate::brain::free_port();
    let child = std::process::Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start {bin}: {e}"))?;
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err("chromedriver did not listen within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(driver)
}

async fn browser(driver: &Driver) -> Result<fantoccini::Client, String> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .map_err(|e| format!("WebDriver session: {e}"))
}

/// Polls `check` (a JS expression returning a boolean) until true.
async fn until(b: &fantoccini::Client, js: &str, wait: Duration, what: &str) -> R {
    let deadline = Instant::now() + wait;
    loop {
        let v = b
            .execute(&format!("return Boolean({js});"), vec![])
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if v == json!(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let text = b
                .execute(
                    "return document.body ? document.body.innerText : '';",
                    vec![],
                )
                .await
                .unwrap_or_default();
            return Err(format!("{what}: not within {wait:?}; page text: {text}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a browser step may take to show its result. A person's flow,
/// not a timing clause: on a loaded two-core CI machine the whole flow took
/// 55 s where it takes 30 s alone, and one step once missed a 10 s wait.
const BROWSER_WAIT: Duration = Duration::from_secs(30);

/// A person in a real browser (headless Chromium): signs in, watches an
/// agent come online and a failing task appear without reloading, retries
/// it and sees the command complete. Screenshots of each page go to
/// `target/dashboard-screenshots/`.
pub async fn browser_flow(ctx: Arc<Ctx>) -> R {
    let driver = chromedriver().await?;
    // The update check goes to a local listener that refuses TLS.
    let (check_port, _) = super::aggregates::counting_listener().await?;
    let check_url = format!("https://127.0.0.1:{check_port}/versions.json");
    // No public URL: the page's own loopback origin is admitted (D7).
    let brain = ctx
        .start(&[
            ("Z4J_BOOTSTRAP_ADMIN_EMAIL", agent::ADMIN_EMAIL),
            ("Z4J_BOOTSTRAP_ADMIN_PASSWORD", agent::ADMIN_PASSWORD),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
            ("Z4J_VERSION_CHECK_URL", check_url.as_str()),
            ("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP", "true"),
            ("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ])
        .await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "browser-agent").await?;
    let b = browser(&driver).await?;
    let r = browser_steps(&b, &brain, &creds).await;
    let _ = b.close().await;
    r
}

/// The README's first run, in a real browser: a brain with no users and
/// no bootstrap admin prints a setup URL; the person opens it, creates the
/// admin with the keyboard alone and lands signed in at home; the URL is
/// dead after that.
pub async fn browser_setup(ctx: Arc<Ctx>) -> R {
    let driver = chromedriver().await?;
    let brain = ctx.start(&[("Z4J_LOGIN_MIN_DURATION_MS", "0")]).await?;
    let (token, _) = super::first_boot::wait_setup_url(&brain).await?;
    let path = format!("/setup?token={token}");
    let url = brain.url(&path);
    // Strict CSP here too: no inline script or style (issue 20, item 1).
    let (status, headers, _) = page(&brain, None, &path).await?;
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure(
        status == 200
            && csp.contains("script-src 'self';")
            && csp.contains("style-src 'self';")
            && !csp.contains("nonce-")
            && !csp.contains("unsafe-inline"),
        format!("the setup page's CSP admits no inline code: {status} {csp:?}"),
    )?;
    let b = browser(&driver).await?;
    let r = async {
        let wait = BROWSER_WAIT;
        b.goto(&url).await.map_err(|e| e.to_string())?;
        until(
            &b,
            "document.getElementById('hint').textContent.includes('at least')",
            wait,
            "the setup form with the password policy",
        )
        .await?;
        tab_to(&b, "#setup input[name=email]", "the e-mail field").await?;
        keys(
            &b,
            &format!(
                "first-admin@example.com{TAB}First Admin{TAB}{}",
                agent::ADMIN_PASSWORD
            ),
        )
        .await?;
        shot(&b, "setup").await;
        keys(&b, ENTER).await?;
        until(
            &b,
            "location.pathname === '/home' && document.body.innerText.includes('first-admin@example.com')",
            wait,
            "the new admin, signed in at home",
        )
        .await?;
        console_clean(&b, "setup and home").await?;
        b.goto(&url).await.map_err(|e| e.to_string())?;
        until(
            &b,
            "document.title === 'Not found' && !document.getElementById('setup')",
            wait,
            "the setup URL is dead once an admin exists",
        )
        .await
    }
    .await;
    let _ = b.close().await;
    r
}

async fn shot(b: &fantoccini::Client, name: &str) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    if let Ok(png) = b.screenshot().await {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}

/// ChromeDriver's console log (`se/log`, outside the W3C command set).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// No console errors so far (a CSP violation is one).
async fn console_clean(b: &fantoccini::Client, what: &str) -> R {
    let severe = console_errors(b).await?;
    ensure(
        severe.is_empty(),
        format!("{what}: console errors {severe:?}"),
    )
}

/// The console's SEVERE entries since the last read (reading empties it).
async fn console_errors(b: &fantoccini::Client) -> Result<Vec<Json>, String> {
    let log = b
        .issue_cmd(BrowserLog)
        .await
        .map_err(|e| format!("browser console log: {e}"))?;
    Ok(log
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|e| e["level"] == "SEVERE")
                .cloned()
                .collect()
        })
        .unwrap_or_default())
}

/// WebDriver's Tab and Enter keys.
const TAB: char = '\u{E004}';
const ENTER: &str = "\u{E007}";

/// Types into whatever has focus.
async fn keys(b: &fantoccini::Client, text: &str) -> R {
    b.active_element()
        .await
        .map_err(|e| format!("focused element: {e}"))?
        .send_keys(text)
        .await
        .map_err(|e| format!("typing: {e}"))
}

/// Presses Tab until the focused element matches `css` (at most 40 times):
/// the page can be used without a mouse.
async fn tab_to(b: &fantoccini::Client, css: &str, what: &str) -> R {
    for _ in 0..40 {
        let hit = b
            .execute(
                "return !!document.activeElement && document.activeElement.matches(arguments[0]);",
                vec![json!(css)],
            )
            .await
            .map_err(|e| e.to_string())?;
        if hit == json!(true) {
            return Ok(());
        }
        keys(b, &TAB.to_string()).await?;
    }
    Err(format!("{what} cannot be reached with Tab"))
}

async fn browser_steps(b: &fantoccini::Client, brain: &Brain, creds: &Credentials) -> R {
    let wait = BROWSER_WAIT;
    b.goto(&brain.url("/")).await.map_err(|e| e.to_string())?;
    until(
        b,
        "location.pathname === '/login'",
        wait,
        "/ sends a stranger to sign-in",
    )
    .await?;
    shot(b, "login").await;
    // Keyboard only: the e-mail field has focus; Tab to the password,
    // Enter submits.
    keys(
        b,
        &format!(
            "{}{TAB}{}{ENTER}",
            agent::ADMIN_EMAIL,
            agent::ADMIN_PASSWORD
        ),
    )
    .await?;
    until(
        b,
        "location.pathname === '/home'",
        wait,
        "signed in, at home",
    )
    .await?;
    shot(b, "home").await;
    console_clean(b, "sign-in and home").await?;
    b.goto(&brain.url("/projects/default"))
        .await
        .map_err(|e| e.to_string())?;
    until(
        b,
        "!document.getElementById('live').hidden",
        wait,
        "the live badge (subscribed)",
    )
    .await?;
    // A marker a reload would lose: updates must come in place.
    b.execute("window.__kept = 1; return true;", vec![])
        .await
        .map_err(|e| e.to_string())?;
    let mut s = agent::connect(brain, creds, Some("w1")).await?;
    until(
        b,
        "document.querySelector('main').innerText.includes('browser-agent')",
        wait,
        "the agent appears online",
    )
    .await?;
    until(
        b,
        "[...document.querySelectorAll('.s-online')].length === 1",
        wait,
        "shown as online",
    )
    .await?;
    let events = [
        agent::task_event(
            "browser-t1",
            "task.received",
            json!({"task_name": "browser.flaky", "queue": "q1"}),
        ),
        agent::task_event(
            "browser-t1",
            "task.failed",
            json!({"task_name": "browser.flaky", "exception": "RuntimeError: flaky"}),
        ),
    ];
    s.send_events("browser-b1", &events).await?;
    s.expect_ack("browser-b1", wait).await?;
    until(
        b,
        "document.querySelector('main').innerText.includes('browser-t1')",
        wait,
        "the failure appears live",
    )
    .await?;
    until(
        b,
        "window.__kept === 1",
        Duration::from_secs(1),
        "no reload happened",
    )
    .await?;
    shot(b, "overview").await;
    tab_to(b, "table.tasks a", "the failed task's link").await?;
    keys(b, ENTER).await?;
    until(
        b,
        "location.pathname.endsWith('/tasks/rq/browser-t1')",
        wait,
        "the task's page",
    )
    .await?;
    tab_to(b, "button[data-command=retry-task]", "the retry button").await?;
    keys(b, ENTER).await?;
    // The agent gets the retry and answers it.
    let (ft, frame) = match s.recv(wait).await? {
        Ok(f) => f,
        Err(c) => return Err(format!("agent closed before the retry arrived: {c:?}")),
    };
    ensure_eq(
        ft,
        z4j_protocol::FrameType::Command,
        "the agent receives a command",
    )?;
    ensure_eq(
        (
            frame["payload"]["action"].as_str(),
            frame["payload"]["parameters"]["task_id"].as_str(),
        ),
        (Some("retry_task"), Some("browser-t1")),
        &format!("the command the button issued: {frame}"),
    )?;
    let id = frame["id"].as_str().unwrap_or_default().to_owned();
    s.send_signed(
        z4j_protocol::FrameType::CommandAck,
        &id,
        &[("delivery_claim_token", z4j_protocol::Value::Null)],
    )
    .await?;
    s.send_signed(
        z4j_protocol::FrameType::CommandResult,
        &id,
        &[
            ("status", z4j_protocol::Value::str("success")),
            ("result", agent::value(&json!({"retried": true}))),
            ("error", z4j_protocol::Value::Null),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ],
    )
    .await?;
    until(
        b,
        "document.getElementById('flash').innerText.includes('completed')",
        wait,
        "the page follows the command to completed",
    )
    .await?;
    shot(b, "task").await;
    console_clean(b, "the project and task pages").await?;
    // The commands page charts the retry's round trip.
    b.goto(&brain.url("/projects/default/commands?window=1h"))
        .await
        .map_err(|e| e.to_string())?;
    until(
        b,
        "(document.querySelector('svg.chart.latency') || {getAttribute: () => ''}).getAttribute('aria-label').startsWith('Command latency: 1 answered')",
        wait,
        "the latency chart with the answered retry",
    )
    .await?;
    shot(b, "commands").await;
    console_clean(b, "the commands page").await?;
    agents_steps(b, brain).await
}

/// Mint an agent from the agents page (its token shown once, outside what
/// live refreshes replace), then revoke it after the confirmation.
async fn agents_steps(b: &fantoccini::Client, brain: &Brain) -> R {
    let wait = BROWSER_WAIT;
    b.goto(&brain.url("/projects/default/agents"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "#mint input[name=name]", "the new agent's name").await?;
    keys(b, &format!("minted-in-browser{ENTER}")).await?;
    until(
        b,
        "!document.getElementById('minted').hidden && document.getElementById('minted-token').innerText.length > 20",
        wait,
        "the minted token, shown once",
    )
    .await?;
    until(
        b,
        "document.querySelector('main').innerText.includes('minted-in-browser')",
        wait,
        "the new agent listed live",
    )
    .await?;
    ensure(
        b.execute("return !document.getElementById('minted').hidden;", vec![])
            .await
            .map_err(|e| e.to_string())?
            == json!(true),
        "the token stays shown after the live refresh",
    )?;
    shot(b, "agents").await;
    tab_to(
        b,
        "button[data-revoke][data-name=minted-in-browser]",
        "the new agent's revoke button",
    )
    .await?;
    keys(b, ENTER).await?;
    b.accept_alert()
        .await
        .map_err(|e| format!("the revoke confirmation: {e}"))?;
    until(
        b,
        "document.getElementById('flash').innerText.includes('minted-in-browser revoked')",
        wait,
        "the revoke confirmed",
    )
    .await?;
    until(
        b,
        "!document.querySelector('main').innerText.includes('minted-in-browser')",
        wait,
        "the revoked agent leaves the list live",
    )
    .await?;
    console_clean(b, "the agents page").await?;
    views_steps(b, brain).await?;
    people_steps(b, brain).await?;
    alerts_steps(b, brain).await?;
    schedules_steps(b, brain).await?;
    system_steps(b, brain).await
}

/// Adds a webhook channel from the alerts page (its URL nested in the
/// request's config, as the API takes it).
async fn alerts_steps(b: &fantoccini::Client, brain: &Brain) -> R {
    b.goto(&brain.url("/projects/default/notifications"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "details.views summary", "the add-webhook panel").await?;
    keys(b, ENTER).await?;
    tab_to(b, "#add-webhook input[name=name]", "the channel's name").await?;
    keys(
        b,
        &format!("browser-hook{TAB}http://127.0.0.1:9/hook{ENTER}"),
    )
    .await?;
    until(
        b,
        "document.querySelector('main table').innerText.includes('browser-hook') && document.querySelector('main table').innerText.includes('http://127.0.0.1:9/hook')",
        BROWSER_WAIT,
        "the new channel listed with its URL",
    )
    .await?;
    shot(b, "alerts").await;
    console_clean(b, "adding a webhook").await
}

/// Creates a schedule from its page (a bad JSON argument list is named
/// before anything is sent), disables it, edits one field (only that field
/// is sent, so only that field is audited as changed) and deletes it,
/// returning to the list. Keyboard only, but for clearing a field.
async fn schedules_steps(b: &fantoccini::Client, brain: &Brain) -> R {
    let wait = BROWSER_WAIT;
    let op = agent::login(brain).await?;
    b.goto(&brain.url("/projects/default/schedules"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "details.views summary", "the new-schedule panel").await?;
    keys(b, ENTER).await?;
    tab_to(b, "#new-schedule input[name=name]", "the schedule's name").await?;
    // Name, task, engine, kind (left at cron), expression; then the
    // argument list, wrongly.
    keys(
        b,
        &format!("browser-nightly{TAB}jobs.report{TAB}rq{TAB}{TAB}*/5 * * * *"),
    )
    .await?;
    tab_to(b, "#new-schedule input[name=args]", "the argument list").await?;
    keys(b, &format!("[2, x]{ENTER}")).await?;
    until(
        b,
        "document.getElementById('flash').innerText.includes('args is not valid JSON')",
        wait,
        "a bad JSON field is named, nothing sent",
    )
    .await?;
    b.execute("document.activeElement.select();", vec![])
        .await
        .map_err(|e| e.to_string())?;
    keys(b, &format!("[2, \"x\"]{ENTER}")).await?;
    until(
        b,
        "document.querySelector('main table').innerText.includes('browser-nightly')",
        wait,
        "the new schedule listed",
    )
    .await?;
    let (_, list) = op
        .send(
            brain,
            reqwest::Method::GET,
            "/api/v1/projects/default/schedules",
            None,
        )
        .await?;
    let made = list["items"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "browser-nightly"))
        .cloned()
        .unwrap_or_default();
    ensure_eq(
        (
            &made["args"],
            made["expression"].as_str(),
            made["kind"].as_str(),
            made["is_enabled"].as_bool(),
        ),
        (
            &json!([2, "x"]),
            Some("*/5 * * * *"),
            Some("cron"),
            Some(true),
        ),
        &format!("the schedule the form made: {made}"),
    )?;
    let id = made["id"].as_str().unwrap_or_default().to_owned();
    tab_to(b, &format!("button[data-api$='{id}/disable']"), "Disable").await?;
    keys(b, ENTER).await?;
    until(
        b,
        "document.querySelector('main table').innerText.includes('disabled')",
        wait,
        "the schedule shown disabled",
    )
    .await?;
    shot(b, "schedules").await;
    tab_to(
        b,
        &format!("a[href='/projects/default/schedules/{id}']"),
        "the schedule's page",
    )
    .await?;
    keys(b, ENTER).await?;
    until(
        b,
        "document.querySelector('main h1').innerText === 'browser-nightly'",
        wait,
        "the schedule's page",
    )
    .await?;
    tab_to(b, "details.views summary", "the edit panel").await?;
    keys(b, ENTER).await?;
    tab_to(b, "#edit-schedule input[name=expression]", "the expression").await?;
    b.execute("document.activeElement.select();", vec![])
        .await
        .map_err(|e| e.to_string())?;
    keys(b, &format!("0 4 * * *{ENTER}")).await?;
    until(
        b,
        "document.querySelector('main dl').innerText.includes('cron 0 4 * * *')",
        wait,
        "the edited expression shown",
    )
    .await?;
    let (_, audit) = op
        .send(
            brain,
            reqwest::Method::GET,
            "/api/v1/projects/default/audit?action_prefix=schedule.update",
            None,
        )
        .await?;
    let changed = audit["items"]
        .as_array()
        .and_then(|rows| rows.first())
        .map(|r| r["metadata"]["fields_changed"].clone())
        .unwrap_or_default();
    ensure_eq(
        changed,
        json!(["expression"]),
        "the edit form sent (and the audit names) only the changed field",
    )?;
    tab_to(b, "button.danger[data-api^='DELETE']", "Delete").await?;
    keys(b, ENTER).await?;
    b.accept_alert()
        .await
        .map_err(|e| format!("the delete confirmation: {e}"))?;
    until(
        b,
        "location.pathname === '/projects/default/schedules' && document.querySelector('main table').innerText.includes('No schedules yet.')",
        wait,
        "deleted, back on the list",
    )
    .await?;
    console_clean(b, "the schedule pages").await?;
    deleted_elsewhere(b, brain, &op).await
}

/// A schedule deleted by someone else while its page is open: the live
/// refresh finds it gone, says so and stops, so that 404 is the console's
/// only error (a page's own delete, above, leaves none).
async fn deleted_elsewhere(b: &fantoccini::Client, brain: &Brain, op: &Operator) -> R {
    let id = api_schedule(brain, op, "browser-elsewhere", "0 5 * * *").await?;
    let page = format!("/projects/default/schedules/{id}");
    b.goto(&brain.url(&page)).await.map_err(|e| e.to_string())?;
    until(
        b,
        "document.querySelector('main h1').innerText === 'browser-elsewhere' && !document.getElementById('live').hidden",
        BROWSER_WAIT,
        "the second schedule's page, live",
    )
    .await?;
    console_clean(b, "the second schedule's page").await?;
    api_delete_schedule(brain, op, &id).await?;
    until(
        b,
        "document.getElementById('flash').innerText.includes('no longer exists')",
        BROWSER_WAIT,
        "the page saying its schedule was deleted",
    )
    .await?;
    // Another live event: a page whose subject is gone stops refreshing
    // (no second 404). Refreshes run at most once a second; 3 s is room.
    let other = api_schedule(brain, op, "browser-after", "0 6 * * *").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    api_delete_schedule(brain, op, &other).await?;
    let severe: Vec<String> = console_errors(b)
        .await?
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure(
        severe.len() == 1 && severe[0].contains(&page) && severe[0].contains("404"),
        format!("the only console error is the refresh's 404 of {page}: {severe:?}"),
    )
}

/// A cron schedule made through the API (a live event); its id.
async fn api_schedule(
    brain: &Brain,
    op: &Operator,
    name: &str,
    expression: &str,
) -> Result<String, String> {
    let cron = json!({"kind": "cron", "expression": expression, "task_name": "jobs.report"});
    super::scheduler::create(brain, op, name, cron).await
}

/// Deletes schedule `id` through the API (a live event).
async fn api_delete_schedule(brain: &Brain, op: &Operator, id: &str) -> R {
    let (st, _) = op
        .send(
            brain,
            reqwest::Method::DELETE,
            &format!("{}/{id}", super::scheduler::BASE),
            None,
        )
        .await?;
    ensure_eq(st, 204, &format!("schedule {id} deleted through the API"))
}

/// Signs out (keyboard) and back in as `email`; `code` answers the
/// second-factor prompt when given.
async fn sign_in_again(
    b: &fantoccini::Client,
    email: &str,
    password: &str,
    code: Option<&str>,
) -> R {
    let wait = BROWSER_WAIT;
    tab_to(b, "#logout", "the sign-out button").await?;
    keys(b, ENTER).await?;
    until(b, "location.pathname === '/login'", wait, "signed out").await?;
    keys(b, &format!("{email}{TAB}{password}{ENTER}")).await?;
    if let Some(code) = code {
        until(
            b,
            "!document.getElementById('code-row').hidden && document.activeElement.name === 'code'",
            wait,
            "the authenticator code is asked for",
        )
        .await?;
        keys(b, &format!("{code}{ENTER}")).await?;
    }
    until(
        b,
        "location.pathname === '/home'",
        wait,
        &format!("{email} signed in"),
    )
    .await
}

/// An admin creates a user and makes them a viewer of the default project
/// from the pages; the user signs in, finds the admin controls absent,
/// sets up an authenticator (QR code and key, recovery codes shown once)
/// and signs in again with a code. Keyboard only.
async fn people_steps(b: &fantoccini::Client, brain: &Brain) -> R {
    let wait = BROWSER_WAIT;
    let (email, password) = ("people@example.com", "People-pw-12345");
    b.goto(&brain.url("/users"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "details.views summary", "the create-user panel").await?;
    keys(b, ENTER).await?;
    tab_to(b, "#create-user input[name=email]", "the new user's e-mail").await?;
    keys(
        b,
        &format!("{email}{TAB}People Person{TAB}{password}{ENTER}"),
    )
    .await?;
    until(
        b,
        "document.querySelector('main table').innerText.includes('people@example.com')",
        wait,
        "the new user listed without a reload",
    )
    .await?;
    shot(b, "users").await;
    b.goto(&brain.url("/projects/default/members"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "#add-member select[name=user_id]", "the user to add").await?;
    tab_to(
        b,
        "#add-member button[type=submit]",
        "the add-member button",
    )
    .await?;
    keys(b, ENTER).await?;
    until(
        b,
        "document.querySelector('main table').innerText.includes('people@example.com')",
        wait,
        "the new member listed",
    )
    .await?;
    shot(b, "members").await;
    console_clean(b, "creating a user and a membership").await?;

    sign_in_again(b, email, password, None).await?;
    b.goto(&brain.url("/projects/default/agents"))
        .await
        .map_err(|e| e.to_string())?;
    until(
        b,
        "document.querySelector('h1').innerText === 'Agents' && !document.getElementById('mint') && !document.querySelector('[data-revoke]')",
        wait,
        "a viewer's agents page has no mint or revoke",
    )
    .await?;
    b.goto(&brain.url("/users"))
        .await
        .map_err(|e| e.to_string())?;
    until(
        b,
        "document.querySelector('h1').innerText === 'Not found' && !document.querySelector('a[href=\"/users\"]')",
        wait,
        "no users page, and no link to it, for a viewer",
    )
    .await?;
    // The browser logs that 404 as a console error: expected, so drained.
    let _ = b.issue_cmd(BrowserLog).await;

    b.goto(&brain.url("/account"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "#mfa-start", "the set-up button").await?;
    keys(b, ENTER).await?;
    until(
        b,
        "!!document.getElementById('mfa-secret') && !!document.querySelector('figure.qr svg path')",
        wait,
        "the QR code and key appear in place",
    )
    .await?;
    let secret = b
        .execute(
            "return document.getElementById('mfa-secret').innerText;",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let secret = secret.as_str().unwrap_or_default().to_owned();
    shot(b, "account").await;
    tab_to(b, "#mfa-confirm input[name=code]", "the code field").await?;
    keys(b, &format!("{}{ENTER}", super::mfa::totp(&secret, 0))).await?;
    until(
        b,
        "!document.getElementById('reveal').hidden && document.getElementById('reveal-facts').innerText.trim().split('\\n').length >= 10",
        wait,
        "the recovery codes, shown once",
    )
    .await?;
    until(
        b,
        "document.querySelector('main').innerText.includes('An authenticator app is set up')",
        wait,
        "the page now says the factor is set up",
    )
    .await?;
    console_clean(b, "two-factor set-up").await?;
    sign_in_again(b, email, password, Some(&super::mfa::totp(&secret, 1))).await?;
    console_clean(b, "sign-in with a code").await?;
    sign_in_again(b, agent::ADMIN_EMAIL, agent::ADMIN_PASSWORD, None).await
}

/// Saves the filtered task list as a view from the keyboard; the view's
/// link then reopens the same filter.
async fn views_steps(b: &fantoccini::Client, brain: &Brain) -> R {
    let wait = BROWSER_WAIT;
    b.goto(&brain.url("/projects/default/tasks?state=failure"))
        .await
        .map_err(|e| e.to_string())?;
    // The views' panel opens from the keyboard too.
    tab_to(b, "details.views summary", "the saved views' panel").await?;
    keys(b, ENTER).await?;
    tab_to(b, "#save-view input[name=view-name]", "the view's name").await?;
    keys(b, &format!("Failures only{ENTER}")).await?;
    until(
        b,
        "[...document.querySelectorAll('details.views a')].some(a => a.innerText === 'Failures only' && a.search === '?state=failure')",
        wait,
        "the saved view listed with its filter",
    )
    .await?;
    shot(b, "tasks").await;
    console_clean(b, "saving a view").await
}

/// The system page's "Check for updates": the button reaches the brain,
/// whose failed fetch is reported on the page. Last, since the browser
/// logs the 409 answer as a console error.
async fn system_steps(b: &fantoccini::Client, brain: &Brain) -> R {
    b.goto(&brain.url("/home"))
        .await
        .map_err(|e| e.to_string())?;
    tab_to(b, "a[href='/system']", "the system link").await?;
    keys(b, ENTER).await?;
    until(
        b,
        "location.pathname === '/system'",
        BROWSER_WAIT,
        "the system page",
    )
    .await?;
    tab_to(b, "#check-updates", "the check-for-updates button").await?;
    keys(b, ENTER).await?;
    until(
        b,
        "document.getElementById('flash').innerText.includes('version check failed')",
        Duration::from_secs(20),
        "the failed check reported on the page",
    )
    .await?;
    shot(b, "system").await;
    Ok(())
}
