//! Operator commands end to end: issued through the API, signed to the
//! agent, acknowledged and completed by its frames (http-api 5.4,
//! agent-protocol 5.6-5.8).

use super::gateway::setup;
use super::{ensure, ensure_eq, R};
use crate::agent::{self, value, Credentials, Operator};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use z4j_protocol::FrameType;

const WAIT: Duration = Duration::from_secs(10);
/// The shortest command timeout (10 s) and a sweep every second.
const FAST_TIMEOUT: &[(&str, &str)] = &[
    ("Z4J_COMMAND_TIMEOUT_SECONDS", "10"),
    ("Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS", "1"),
];

pub(super) async fn issue(
    brain: &Brain,
    op: &Operator,
    route: &str,
    body: Json,
) -> Result<(u16, Json), String> {
    op.send(
        brain,
        reqwest::Method::POST,
        &format!("/api/v1/projects/default/commands/{route}"),
        Some(body),
    )
    .await
}

async fn command(brain: &Brain, op: &Operator, id: &str) -> Result<Json, String> {
    Ok(op
        .get(brain, &format!("/api/v1/projects/default/commands/{id}"))
        .await?
        .1)
}

/// Waits until the command reaches `status`.
pub(super) async fn wait_status(
    brain: &Brain,
    op: &Operator,
    id: &str,
    status: &str,
    wait: Duration,
) -> Result<Json, String> {
    let deadline = Instant::now() + wait;
    loop {
        let c = command(brain, op, id).await?;
        if c["status"] == status {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err(format!("command {id} not {status} in time: {c}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn next_command(s: &mut agent::Session) -> Result<Json, String> {
    match s.recv(WAIT).await? {
        Ok((FrameType::Command, j)) => Ok(j),
        Ok((ft, j)) => Err(format!("expected a command frame, got {ft:?}: {j}")),
        Err(c) => Err(format!("closed while waiting for a command: {c:?}")),
    }
}

/// The id of a command the brain accepted: 202 carries the command; a 503
/// `agent_offline` keeps the row `pending` (http-api 5.4) and may name it
/// in `details.command_id` (ours does, the reference does not), else it is
/// the newest pending command whose `field` is `want` in the listing.
/// The id of an issued command, which must have been answered `expected`:
/// 202, or 503 `agent_offline` with the row kept pending (decisions K2:
/// no connection on any replica and the agent not online).
async fn issued_id(
    brain: &Brain,
    op: &Operator,
    (status, body): (u16, Json),
    (field, want): (&str, &str),
    expected: u16,
) -> Result<String, String> {
    if status != expected {
        return Err(format!("issue answered {status}, want {expected}: {body}"));
    }
    match (status, body["error"].as_str()) {
        (202, _) => Ok(body["id"].as_str().unwrap_or_default().to_owned()),
        (503, Some("agent_offline")) => {
            if let Some(id) = body["details"]["command_id"].as_str() {
                return Ok(id.to_owned());
            }
            let (_, list) = op
                .get(
                    brain,
                    "/api/v1/projects/default/commands?status=pending&limit=100",
                )
                .await?;
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c[field] == want)
                .max_by_key(|c| c["issued_at"].as_str().unwrap_or_default().to_owned())
                .and_then(|c| c["id"].as_str())
                .map(str::to_owned)
                .ok_or(format!(
                    "503 agent_offline but no pending command with {field} {want:?}: {list}"
                ))
        }
        _ => Err(format!("issue answered {status}: {body}")),
    }
}

/// A timestamp from the API: RFC 3339, or ISO 8601 without an offset (the
/// reference on SQLite), read as UTC.
fn parse_ts(v: &Json) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let s = v.as_str().ok_or(format!("not a timestamp: {v}"))?;
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .map_err(|e| format!("timestamp {s:?}: {e}"))
}

fn cancel_body(creds: &Credentials, task: &str) -> Json {
    json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": task})
}

pub async fn round_trip(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let (_, me) = op.get(&brain, "/api/v1/auth/me").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let (status, c) = issue(&brain, &op, "cancel-task", cancel_body(&creds, "t-1")).await?;
    ensure_eq(status, 202, &format!("issue: {c}"))?;
    ensure_eq(c["action"].as_str(), Some("cancel_task"), "action")?;
    ensure_eq(c["target_id"].as_str(), Some("rq:t-1"), "target_id")?;
    let id = c["id"].as_str().unwrap_or_default().to_owned();
    let frame = next_command(&mut s).await?;
    ensure_eq(frame["id"].as_str(), Some(id.as_str()), "command frame id")?;
    let p = &frame["payload"];
    ensure_eq(
        (
            p["action"].clone(),
            p["target"].clone(),
            p["parameters"].clone(),
        ),
        (
            json!("cancel_task"),
            json!({"type": "task", "id": "rq:t-1", "engine": "rq"}),
            json!({"engine": "rq", "task_id": "t-1"}),
        ),
        "command payload",
    )?;
    ensure_eq(p["timeout_seconds"].as_i64(), Some(60), "timeout_seconds")?;
    ensure_eq(p["issued_by"].as_str(), me["id"].as_str(), "issued_by")?;
    ensure(
        p.get("delivery_claim_token").is_some_and(Json::is_null),
        "delivery_claim_token present and null",
    )?;
    wait_status(&brain, &op, &id, "dispatched", WAIT).await?;
    s.send_signed(
        FrameType::CommandAck,
        &id,
        &[("delivery_claim_token", z4j_protocol::Value::Null)],
    )
    .await?;
    s.send_signed(
        FrameType::CommandResult,
        &id,
        &[
            ("status", z4j_protocol::Value::str("success")),
            ("result", value(&json!({"cancelled": true}))),
            ("error", z4j_protocol::Value::Null),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ],
    )
    .await?;
    let done = wait_status(&brain, &op, &id, "completed", WAIT).await?;
    ensure_eq(done["result"].clone(), json!({"cancelled": true}), "result")?;
    // A later result for the same command changes nothing.
    s.send_signed(
        FrameType::CommandResult,
        &id,
        &[
            ("status", z4j_protocol::Value::str("failed")),
            ("result", z4j_protocol::Value::Null),
            ("error", z4j_protocol::Value::str("late")),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure_eq(
        command(&brain, &op, &id).await?["status"].as_str(),
        Some("completed"),
        "after a late result",
    )?;

    // Refusals.
    let mut other = cancel_body(&creds, "t-2");
    other["agent_id"] = json!(uuid::Uuid::new_v4().to_string());
    let (status, body) = issue(&brain, &op, "cancel-task", other).await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (404, Some("agent not found in this project")),
        "unknown agent",
    )?;
    let (status, body) = issue(
        &brain,
        &op,
        "cancel-task",
        json!({"agent_id": creds.agent_id}),
    )
    .await?;
    ensure(
        status == 422 && body["detail"].is_array(),
        format!("missing fields: {status} {body}"),
    )?;
    // No such route: 404 (the reference answers 405, its router matching
    // the path of `GET commands/{id}`: DIVERGENCES.md).
    let (status, _) = issue(&brain, &op, "self-destruct", cancel_body(&creds, "t")).await?;
    ensure_eq(status, 404, "an unknown action")?;
    // Idempotency: the same key and body → the same command; another body → 409.
    let mut keyed = cancel_body(&creds, "t-3");
    keyed["idempotency_key"] = json!("k-1");
    let (_, first) = issue(&brain, &op, "cancel-task", keyed.clone()).await?;
    let (status, again) = issue(&brain, &op, "cancel-task", keyed.clone()).await?;
    ensure_eq(
        (status, again["id"].clone()),
        (202, first["id"].clone()),
        "replayed idempotency key",
    )?;
    keyed["task_id"] = json!("t-4");
    let (status, _) = issue(&brain, &op, "cancel-task", keyed).await?;
    ensure_eq(status, 409, "idempotency key reused for another command")?;
    let (status, list) = op
        .get(&brain, "/api/v1/projects/default/commands?limit=2")
        .await?;
    ensure_eq(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(2)),
        "command list page",
    )?;
    ensure(
        list["next_cursor"].is_string(),
        "a full page carries a cursor",
    )?;
    Ok(())
}

pub async fn pending_pushed_after_handshake(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let (status, body) = issue(&brain, &op, "cancel-task", cancel_body(&creds, "t-9")).await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (503, Some("agent_offline")),
        "issue to a disconnected agent",
    )?;
    let id = issued_id(&brain, &op, (status, body), ("target_id", "rq:t-9"), 503).await?;
    ensure_eq(
        command(&brain, &op, &id).await?["status"].as_str(),
        Some("pending"),
        "row kept pending",
    )?;
    // Retry commands go only to connections that advertise retries for the
    // engine: this agent does for rq, not for celery.
    let celery = issue(
        &brain,
        &op,
        "retry-task",
        json!({"agent_id": creds.agent_id, "engine": "celery", "task_id": "c-1"}),
    )
    .await?;
    let celery_id = issued_id(&brain, &op, celery, ("target_id", "celery:c-1"), 503).await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let frame = next_command(&mut s).await?;
    ensure_eq(
        frame["id"].as_str(),
        Some(id.as_str()),
        "pushed pending command",
    )?;
    ensure_eq(
        frame["seq"].as_i64(),
        Some(1),
        "first signed frame of the session",
    )?;
    if let Ok(Ok((FrameType::Command, j))) = s.recv(Duration::from_secs(1)).await {
        return Err(format!(
            "retry command delivered to a connection without the capability: {j}"
        ));
    }
    ensure_eq(
        command(&brain, &op, &celery_id).await?["status"].as_str(),
        Some("pending"),
        "undeliverable retry",
    )?;
    Ok(())
}

pub async fn longpoll_delivery(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut lp = agent::LongPoll::new(&creds)?;
    ensure_eq(lp.poll(&brain, 0, 0).await?.0, 200, "probe")?;
    // A polling agent is reachable: the command is left pending for its
    // poll (202 here; 503 `agent_offline` with the row kept pending is the
    // reference's answer between polls, and delivery is what counts).
    let issued = issue(&brain, &op, "cancel-task", cancel_body(&creds, "lp-t")).await?;
    let id = issued_id(&brain, &op, issued, ("target_id", "rq:lp-t"), 202).await?;
    ensure_eq(
        command(&brain, &op, &id).await?["status"].as_str(),
        Some("pending"),
        "left pending for the poll",
    )?;
    let (status, polled) = lp.poll(&brain, 5, 50).await?;
    ensure_eq(status, 200, "poll")?;
    let frames = polled["frames"].as_array().cloned().unwrap_or_default();
    ensure_eq(frames.len(), 1, &format!("frames: {polled}"))?;
    let frame = lp.verify(frames[0].as_str().unwrap_or_default())?;
    ensure_eq(frame["id"].as_str(), Some(id.as_str()), "delivered command")?;
    wait_status(&brain, &op, &id, "dispatched", WAIT).await?;
    let ack = lp.sign(
        FrameType::CommandAck,
        &id,
        &[("delivery_claim_token", z4j_protocol::Value::Null)],
    )?;
    let result = lp.sign(
        FrameType::CommandResult,
        &id,
        &[
            ("status", z4j_protocol::Value::str("failed")),
            ("result", z4j_protocol::Value::Null),
            ("error", z4j_protocol::Value::str("no such task")),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ],
    )?;
    let (status, body) = lp.post(&brain, &[ack, result]).await?;
    ensure_eq(
        (status, body["accepted"].as_i64()),
        (200, Some(2)),
        "ack and result over long-poll",
    )?;
    let done = wait_status(&brain, &op, &id, "failed", WAIT).await?;
    ensure_eq(done["error"].as_str(), Some("no such task"), "error")
}

pub async fn timeout_sweep(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, FAST_TIMEOUT).await?;
    let started = Instant::now();
    let issued = issue(&brain, &op, "cancel-task", cancel_body(&creds, "slow")).await?;
    let id = issued_id(&brain, &op, issued, ("target_id", "rq:slow"), 503).await?;
    let c = command(&brain, &op, &id).await?;
    let issued = parse_ts(&c["issued_at"])?;
    let timeout_at = parse_ts(&c["timeout_at"])?;
    ensure_eq(
        (timeout_at - issued).num_seconds(),
        10,
        "timeout_at - issued_at",
    )?;
    let done = wait_status(&brain, &op, &id, "timeout", ctx.scaled(20.0)).await?;
    let took = started.elapsed();
    ensure(
        took >= Duration::from_millis(9_500) && took <= ctx.scaled(10.0) + Duration::from_secs(3),
        format!("timed out after {took:?}, want 10 s plus at most one 1 s sweep"),
    )?;
    ensure_eq(
        done["error"].as_str(),
        Some("command timed out before agent responded"),
        "timeout error",
    )
}

pub async fn rate_limit(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[("Z4J_RATELIMIT_COMMANDS_PER_MINUTE", "3")]).await?;
    let _s = agent::connect(&brain, &creds, Some("w")).await?;
    for i in 0..3 {
        let (status, _) = issue(
            &brain,
            &op,
            "cancel-task",
            cancel_body(&creds, &format!("r-{i}")),
        )
        .await?;
        ensure_eq(status, 202, &format!("command {i}"))?;
    }
    let resp = crate::cases::client()
        .post(brain.url("/api/v1/projects/default/commands/cancel-task"))
        .header("cookie", &op.cookie)
        .header("x-csrf-token", &op.csrf)
        .json(&cancel_body(&creds, "r-3"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        resp.status().as_u16(),
        429,
        "fourth command within a minute",
    )?;
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ensure((55..=60).contains(&retry), format!("Retry-After {retry}"))
}

pub async fn longpoll_redelivery(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(
        &ctx,
        &[
            ("Z4J_AGENT_LONGPOLL_REDISPATCH_MIN_INTERVAL_SECONDS", "2"),
            ("Z4J_AGENT_LONGPOLL_REDISPATCH_SECONDS", "10"),
        ],
    )
    .await?;
    let mut lp = agent::LongPoll::new(&creds)?;
    ensure_eq(lp.poll(&brain, 0, 0).await?.0, 200, "probe")?;
    // The worker reports itself first: a restart names a worker the brain
    // has seen from this agent (the reference refuses unknown ones).
    let online = lp.sign_events(
        "ev_worker_online",
        &[{
            let mut e = agent::task_event("", "worker.online", json!({"worker": "w-1"}));
            e["task_id"] = Json::Null;
            e
        }],
    )?;
    let (status, _) = lp.post(&brain, &[online]).await?;
    ensure_eq(status, 200, "worker.online over long-poll")?;
    let cancel = issue(&brain, &op, "cancel-task", cancel_body(&creds, "re-1")).await?;
    let cancel_id = issued_id(&brain, &op, cancel, ("target_id", "rq:re-1"), 202).await?;
    let restart = issue(
        &brain,
        &op,
        "restart-worker",
        json!({"agent_id": creds.agent_id, "engine": "rq", "worker_name": "w-1"}),
    )
    .await?;
    let restart_id = issued_id(&brain, &op, restart, ("action", "restart_worker"), 202).await?;
    let (_, polled) = lp.poll(&brain, 0, 50).await?;
    let mut first = polled_ids(&polled, &mut lp)?;
    first.sort();
    let mut want = vec![cancel_id.clone(), restart_id.clone()];
    want.sort();
    ensure_eq(first, want, "first delivery")?;
    // Not acknowledged: within the minimum interval nothing comes again...
    let (_, polled) = lp.poll(&brain, 0, 50).await?;
    ensure_eq(
        polled_ids(&polled, &mut lp)?,
        Vec::<String>::new(),
        "redelivery inside the minimum interval",
    )?;
    // ...after it, the redeliverable cancel does, the restart never does.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, polled) = lp.poll(&brain, 0, 50).await?;
    ensure_eq(
        polled_ids(&polled, &mut lp)?,
        vec![cancel_id],
        "redelivery after the minimum interval",
    )
}

/// The ids of the command frames of a long-poll answer, each verified.
fn polled_ids(polled: &Json, lp: &mut agent::LongPoll) -> Result<Vec<String>, String> {
    polled["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            lp.verify(f.as_str().unwrap_or_default())
                .map(|j| j["id"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Commands an agent's session cannot run are refused before anything is
/// stored (http-api 5.4, decisions K4).
pub async fn refusals(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut hello = agent::hello(Some("w"));
    hello["payload"]["engines"] = json!(["rq", "huey"]);
    hello["payload"]["capabilities"] = json!({
        "rq": ["cancel_task", "retry_by_reference_v1", "retry_task"],
        "huey": ["retry_by_reference_v1", "retry_task"],
    });
    let mut s = agent::connect_with_hello(&brain, &creds, hello).await?;
    let agent_id = creds.agent_id.as_str();
    let task = |engine: &str| json!({"agent_id": agent_id, "engine": engine, "task_id": "t"});
    let refused = |route: &'static str, body: Json, want: &'static str| {
        let (brain, op) = (&brain, &op);
        async move {
            let (status, r) = issue(brain, op, route, body).await?;
            ensure_eq(status, 422, &format!("{route}: {r}"))?;
            let d = &r["detail"];
            ensure(
                d["error"].as_str().is_some_and(|e| e.contains(want))
                    && d["agent_id"].as_str() == Some(agent_id),
                format!("{route}: detail {d} should name the agent and say {want:?}"),
            )
        }
    };
    // The reason must name what is missing; its wording is free.
    refused("retry-task", task("celery"), "celery").await?;
    refused("requeue-dead-letter", task("rq"), "requeue_dead_letter").await?;
    // A filter-only bulk retry without an engine: refused (422 here; the
    // reference answers 410, the route having moved to bulk-retry-requests).
    let (status, r) = issue(
        &brain,
        &op,
        "bulk-retry",
        json!({"agent_id": agent_id, "filter": {"state": "failure"}}),
    )
    .await?;
    ensure_eq(status, 422, &format!("bulk-retry without an engine: {r}"))?;
    for (body, what) in [
        (task("bad engine!"), "malformed engine name"),
        (
            json!({"agent_id": agent_id, "engine": "rq", "task_id": "t",
                   "override_args": [], "override_kwargs": {"__z4j_task_name__": "evil"}}),
            "reserved override key",
        ),
    ] {
        let (status, r) = issue(&brain, &op, "retry-task", body).await?;
        ensure(
            status == 422 && r["detail"].is_array(),
            format!("{what}: want 422 with a validation list, got {status} {r}"),
        )?;
    }
    // huey keeps no job to re-run: a retry needs both overrides.
    let (status, r) = issue(&brain, &op, "retry-task", task("huey")).await?;
    ensure(
        status == 409
            && r["detail"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("huey")),
        format!("non-native retry without overrides: {status} {r}"),
    )?;
    let (_, list) = op.get(&brain, "/api/v1/projects/default/commands").await?;
    ensure_eq(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "refused requests created no command",
    )?;
    let mut with_overrides = task("huey");
    with_overrides["override_args"] = json!([1]);
    with_overrides["override_kwargs"] = json!({"x": 2});
    let (status, c) = issue(&brain, &op, "retry-task", with_overrides).await?;
    ensure_eq(status, 202, &format!("huey retry with overrides: {c}"))?;
    let frame = next_command(&mut s).await?;
    ensure_eq(
        (
            frame["id"].clone(),
            frame["payload"]["parameters"]["override_kwargs"].clone(),
        ),
        (c["id"].clone(), json!({"x": 2})),
        "the admitted retry is delivered with its overrides",
    )?;
    let id = c["id"].as_str().unwrap_or_default().to_owned();

    // Results that are not the agent's to give change nothing: another
    // agent's result for this command, and a result for no command.
    let other = op.mint(&brain, "bystander").await?;
    let mut o = agent::connect(&brain, &other, Some("w")).await?;
    let result = |status: &str| -> Vec<(&'static str, z4j_protocol::Value)> {
        vec![
            ("status", z4j_protocol::Value::str(status)),
            ("result", z4j_protocol::Value::Null),
            ("error", z4j_protocol::Value::str("not mine")),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ]
    };
    o.send_signed(FrameType::CommandResult, &id, &result("failed"))
        .await?;
    o.send_signed(
        FrameType::CommandResult,
        &uuid::Uuid::new_v4().to_string(),
        &result("failed"),
    )
    .await?;
    s.send_signed(
        FrameType::CommandResult,
        &uuid::Uuid::new_v4().to_string(),
        &result("success"),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure_eq(
        command(&brain, &op, &id).await?["status"].as_str(),
        Some("dispatched"),
        "a result from another agent or for an unknown command is ignored",
    )?;
    // Both sessions are still usable after the stray results.
    s.send_heartbeat().await?;
    o.send_heartbeat().await?;

    // Revoked agents and other projects' agents are not found.
    op.create_project(&brain, "elsewhere").await?;
    let foreign = op.mint_in(&brain, "elsewhere", "foreign").await?;
    let (status, body) = issue(&brain, &op, "cancel-task", cancel_body(&foreign, "t")).await?;
    ensure_eq(
        (status, body["message"].as_str()),
        (404, Some("agent not found in this project")),
        "another project's agent",
    )?;
    ensure_eq(op.revoke(&brain, &other.agent_id).await?, 204, "revoke")?;
    let (status, _) = issue(&brain, &op, "cancel-task", cancel_body(&other, "t")).await?;
    ensure_eq(status, 404, "a revoked agent")
}

/// `?wait=N` (decisions K1): 200 with the outcome, 504 command_timeout when
/// the sweeper expires it, 202 while in flight.
pub async fn wait_outcome(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, FAST_TIMEOUT).await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let route = "cancel-task?wait=20";
    // Answered while the caller waits: 200 with the result.
    let waiting = {
        let target = agent::Target::from_url(&brain.url(""))?;
        let (op, body) = (op.clone(), cancel_body(&creds, "w-1"));
        tokio::spawn(async move {
            op.send(
                &target,
                reqwest::Method::POST,
                &format!("/api/v1/projects/default/commands/{route}"),
                Some(body),
            )
            .await
        })
    };
    let frame = next_command(&mut s).await?;
    let id = frame["id"].as_str().unwrap_or_default().to_owned();
    s.send_signed(
        FrameType::CommandResult,
        &id,
        &[
            ("status", z4j_protocol::Value::str("success")),
            ("result", value(&json!({"cancelled": true}))),
            ("error", z4j_protocol::Value::Null),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ],
    )
    .await?;
    let (status, body) = waiting.await.map_err(|e| e.to_string())??;
    ensure_eq(
        (status, body["status"].as_str(), body["id"].as_str()),
        (200, Some("completed"), Some(id.as_str())),
        &format!("waited outcome: {body}"),
    )?;
    // Never answered: 504 command_timeout once the sweeper expires it.
    let started = Instant::now();
    let (status, body) = issue(&brain, &op, route, cancel_body(&creds, "w-2")).await?;
    let took = started.elapsed();
    ensure_eq(
        (status, body["error"].as_str()),
        (504, Some("command_timeout")),
        &format!("unanswered command: {body}"),
    )?;
    ensure(
        took >= Duration::from_millis(9_500) && took <= ctx.scaled(10.0) + Duration::from_secs(3),
        format!("504 after {took:?}, want the 10 s timeout plus one sweep"),
    )?;
    let id2 = body["details"]["command_id"].as_str().unwrap_or_default();
    ensure_eq(
        command(&brain, &op, id2).await?["status"].as_str(),
        Some("timeout"),
        "the 504 names the timed-out command",
    )?;
    // Still in flight when the wait ends: 202.
    let (status, body) = issue(
        &brain,
        &op,
        "cancel-task?wait=1",
        cancel_body(&creds, "w-3"),
    )
    .await?;
    ensure_eq(
        (status, body["status"].as_str()),
        (202, Some("dispatched")),
        &format!("in flight at the end of the wait: {body}"),
    )?;
    let (status, _) = issue(
        &brain,
        &op,
        "cancel-task?wait=soon",
        cancel_body(&creds, "w-4"),
    )
    .await?;
    ensure_eq(status, 422, "a wait that is not a number")
}

/// Command defaults with nothing configured: 100 commands a minute per
/// project (the 100th accepted, the 101st refused, another project's
/// budget untouched), each timing out 60 s after it was issued, found by a
/// sweep every 5 s (20 commands issued 0.5 s apart land on every phase of
/// the sweep: the latest is found about 5 s late, none later).
pub async fn defaults(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    // Connected but silent: commands are delivered and never answered.
    let _s = agent::connect(&brain, &creds, Some("w")).await?;
    let t0 = Instant::now();
    let mut probes: Vec<(String, chrono::DateTime<chrono::Utc>)> = Vec::new();
    for i in 0..100 {
        if i < 20 {
            tokio::time::sleep(
                (t0 + Duration::from_millis(500 * i)).saturating_duration_since(Instant::now()),
            )
            .await;
        }
        let (status, c) = issue(
            &brain,
            &op,
            "cancel-task",
            cancel_body(&creds, &format!("d-{i}")),
        )
        .await?;
        if status != 202 {
            ctx.fail_clause(
                "Z4J_RATELIMIT_COMMANDS_PER_MINUTE",
                format!("command {} of 100 in a minute refused: {status} {c}", i + 1),
            );
            continue;
        }
        if i < 20 {
            let issued = parse_ts(&c["issued_at"])?;
            let timeout_at = parse_ts(&c["timeout_at"])?;
            // Seconds granularity: a brain may store issued_at to the second.
            let ms = (timeout_at - issued).num_milliseconds();
            if !(59_000..61_000).contains(&ms) {
                ctx.fail_clause(
                    "Z4J_COMMAND_TIMEOUT_SECONDS",
                    format!("timeout_at - issued_at = {ms} ms, want 60 s"),
                );
            }
            probes.push((c["id"].as_str().unwrap_or_default().to_owned(), timeout_at));
        }
    }
    let (status, body) = issue(&brain, &op, "cancel-task", cancel_body(&creds, "d-100")).await?;
    if status != 429 {
        ctx.fail_clause(
            "Z4J_RATELIMIT_COMMANDS_PER_MINUTE",
            format!("the 101st command in a minute: {status} {body}, want 429"),
        );
    }
    op.create_project(&brain, "other").await?;
    let other = op.mint_in(&brain, "other", "other-1").await?;
    let _o = agent::connect(&brain, &other, Some("o")).await?;
    let (status, body) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects/other/commands/cancel-task",
            Some(cancel_body(&other, "o-1")),
        )
        .await?;
    if status != 202 {
        ctx.fail_clause(
            "Z4J_RATELIMIT_COMMANDS_PER_MINUTE",
            format!(
                "another project's command refused once `default` used its budget: {status} {body}"
            ),
        );
    }
    // When each probe is first seen timed out, against its deadline.
    let mut seen: std::collections::BTreeMap<String, f64> = Default::default();
    let last = probes
        .iter()
        .map(|p| p.1)
        .max()
        .unwrap_or_else(chrono::Utc::now);
    while seen.len() < probes.len() && chrono::Utc::now() < last + chrono::Duration::seconds(15) {
        let (_, list) = op
            .get(
                &brain,
                "/api/v1/projects/default/commands?status=timeout&limit=500",
            )
            .await?;
        let now = chrono::Utc::now();
        for c in list["items"].as_array().into_iter().flatten() {
            let id = c["id"].as_str().unwrap_or_default();
            if let Some((_, deadline)) = probes.iter().find(|p| p.0 == id) {
                seen.entry(id.to_owned())
                    .or_insert(((now - *deadline).num_milliseconds() as f64) / 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let late: Vec<f64> = seen.values().copied().collect();
    let earliest = late.iter().copied().fold(f64::INFINITY, f64::min);
    let latest = late.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if late.len() < probes.len() || earliest < -0.3 {
        ctx.fail_clause(
            "Z4J_COMMAND_TIMEOUT_SECONDS",
            format!(
                "{} of {} commands timed out within 15 s of their 60 s deadline; earliest {earliest:.1} s from it",
                late.len(),
                probes.len()
            ),
        );
    }
    let slack = ctx.scaled(0.8).as_secs_f64();
    if late.len() == probes.len() && !(3.5..=5.0 + slack).contains(&latest) {
        ctx.fail_clause(
            "Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS",
            format!("the latest of 20 commands spread over 10 s was found {latest:.1} s after its deadline; a 5 s sweep finds it 4.5-5 s late"),
        );
    }
    Ok(())
}

/// Long-poll redelivery with its variables unset: an unacknowledged
/// command comes again on a poll 11 s after its delivery but not 9 s after
/// (the 10 s minimum interval), still 59 s after it and no more 61 s after
/// (the 60 s window). Three agents, one timeline; commands outlive it.
pub async fn longpoll_redelivery_default(ctx: Arc<Ctx>) -> R {
    let (brain, op, _) = setup(&ctx, &[("Z4J_COMMAND_TIMEOUT_SECONDS", "300")]).await?;
    let mut agents = Vec::new();
    for name in ["interval", "window-in", "window-out"] {
        let creds = op.mint(&brain, name).await?;
        let lp = agent::LongPoll::new(&creds)?;
        ensure_eq(lp.poll(&brain, 0, 0).await?.0, 200, "probe")?;
        let issued = issue(&brain, &op, "cancel-task", cancel_body(&creds, name)).await?;
        let id = issued_id(
            &brain,
            &op,
            issued,
            ("target_id", &format!("rq:{name}")),
            202,
        )
        .await?;
        agents.push((name, lp, id));
    }
    // First deliveries, as close together as the polls allow.
    let t0 = Instant::now();
    for (name, lp, id) in agents.iter_mut() {
        let (_, polled) = lp.poll(&brain, 0, 50).await?;
        ensure_eq(
            polled_ids(&polled, lp)?,
            vec![id.clone()],
            &format!("{name}: first delivery"),
        )?;
    }
    let delivered = t0.elapsed();
    // (at, agent, redelivered?, clause): polls in time order.
    let plan: [(u64, usize, bool, &str); 4] = [
        (
            9,
            0,
            false,
            "Z4J_AGENT_LONGPOLL_REDISPATCH_MIN_INTERVAL_SECONDS",
        ),
        (
            11,
            0,
            true,
            "Z4J_AGENT_LONGPOLL_REDISPATCH_MIN_INTERVAL_SECONDS",
        ),
        (59, 1, true, "Z4J_AGENT_LONGPOLL_REDISPATCH_SECONDS"),
        (61, 2, false, "Z4J_AGENT_LONGPOLL_REDISPATCH_SECONDS"),
    ];
    for (at, who, again, clause) in plan {
        // A poll that must come after a bound counts from the last first
        // delivery, one that must come before it from the earliest.
        let after_bound = again == (at < 30);
        let when = if after_bound {
            t0 + delivered + Duration::from_secs(at)
        } else {
            t0 + Duration::from_secs(at)
        };
        tokio::time::sleep(when.saturating_duration_since(Instant::now())).await;
        let (name, lp, id) = &mut agents[who];
        let (_, polled) = lp.poll(&brain, 0, 50).await?;
        let got = polled_ids(&polled, lp)?;
        if got.contains(id) != again {
            ctx.fail_clause(
                clause,
                format!(
                    "{name}: a poll {at} s after the unacknowledged delivery {} it",
                    if again {
                        "did not redeliver"
                    } else {
                        "redelivered"
                    }
                ),
            );
        }
    }
    Ok(())
}

/// A bulk retry names tasks the brain owns (specs/decisions.md K7): the
/// filter keeps only selection keys (others dropped, named in the payload
/// and audited), explicit ids must all be this project's tasks of the
/// engine (deduplicated, capped at `max`), a filter without ids becomes
/// the matching tasks' ids; the agent gets ids, names and priorities.
pub async fn bulk_retry_selection(ctx: Arc<Ctx>) -> R {
    let (brain, op, creds) = setup(&ctx, &[]).await?;
    let mut hello = agent::hello(Some("w"));
    hello["payload"]["capabilities"] = json!({
        "rq": ["bulk_retry", "retry_by_reference_v1", "retry_task"],
    });
    let mut s = agent::connect_with_hello(&brain, &creds, hello).await?;
    let mut events = Vec::new();
    for (id, name, kind) in [
        ("br-1", "jobs.a", "task.failed"),
        ("br-2", "jobs.a", "task.failed"),
        ("br-3", "jobs.b", "task.failed"),
        ("br-4", "jobs.a", "task.succeeded"),
    ] {
        events.push(agent::task_event(
            id,
            "task.received",
            json!({"task_name": name}),
        ));
        events.push(agent::task_event(id, kind, json!({})));
    }
    s.send_events("br-batch", &events).await?;
    s.expect_ack("br-batch", WAIT).await?;
    let agent_id = creds.agent_id.as_str();
    let bulk = |filter: Json, max: Option<i64>| {
        let mut b = json!({"agent_id": agent_id, "filter": filter});
        if let Some(m) = max {
            b["max"] = json!(m);
        }
        b
    };

    // Explicit ids: duplicates once, capped at max, names and priorities
    // from the brain's rows; a smuggled task name is dropped and named.
    let (status, c) = issue(
        &brain,
        &op,
        "bulk-retry",
        bulk(
            json!({"engine": "rq", "task_ids": ["br-2", "br-1", "br-2", "br-3"],
                   "task_names": {"br-1": "os.system"}, "args": [1]}),
            Some(2),
        ),
    )
    .await?;
    ensure_eq(status, 202, &format!("an owned selection: {c}"))?;
    let frame = next_command(&mut s).await?;
    let p = &frame["payload"]["parameters"];
    ensure_eq(
        (
            p["filter"]["task_ids"].clone(),
            p["filter"]["task_names"].clone(),
            p["filter"].get("args").cloned(),
            p["rejected_client_supplied_filter_keys"].clone(),
            p["max"].clone(),
        ),
        (
            json!(["br-2", "br-1"]),
            json!({"br-2": "jobs.a", "br-1": "jobs.a"}),
            None,
            json!(["args", "task_names"]),
            json!(2),
        ),
        &format!("what the agent is sent: {frame}"),
    )?;
    ensure_eq(
        p["filter"]["task_priorities"]["br-1"].as_str(),
        Some("normal"),
        "each id's stored priority",
    )?;
    let (_, audit) = op
        .get(
            &brain,
            "/api/v1/projects/default/audit?action_prefix=command.bulk_retry.",
        )
        .await?;
    ensure(
        audit["items"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["action"] == "command.bulk_retry.filter_keys_rejected"
                    && r["metadata"]["rejected_client_supplied_filter_keys"]
                        == json!(["args", "task_names"])
            })
        }),
        format!("the dropped keys are audited: {audit}"),
    )?;

    // One id the project does not own: nothing is sent, the refusal names it.
    let (status, r) = issue(
        &brain,
        &op,
        "bulk-retry",
        bulk(
            json!({"engine": "rq", "task_ids": ["br-1", "elsewhere-9"]}),
            None,
        ),
    )
    .await?;
    ensure(
        status == 422 && r["details"]["missing_task_ids"] == json!(["elsewhere-9"]),
        format!("a foreign id refuses the whole retry (422): {status} {r}"),
    )?;
    for (filter, what) in [
        (json!({"engine": "rq", "task_ids": []}), "an empty id list"),
        (
            json!({"engine": "rq", "task_ids": "br-1"}),
            "ids not in a list",
        ),
        (
            json!({"engine": "rq", "since": "yesterday"}),
            "a malformed since",
        ),
    ] {
        let (status, r) = issue(&brain, &op, "bulk-retry", bulk(filter, None)).await?;
        ensure_eq(status, 422, &format!("{what}: {r}"))?;
    }

    // A selection without ids: the matching tasks, newest first.
    let (status, c) = issue(
        &brain,
        &op,
        "bulk-retry",
        bulk(
            json!({"engine": "rq", "state": "failure", "name": "jobs.a"}),
            None,
        ),
    )
    .await?;
    ensure_eq(status, 202, &format!("a filtered selection: {c}"))?;
    let frame = next_command(&mut s).await?;
    let mut ids: Vec<String> = frame["payload"]["parameters"]["filter"]["task_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ensure_eq(
        ids,
        vec!["br-1".to_owned(), "br-2".to_owned()],
        "failed jobs.a tasks only",
    )?;
    let (status, r) = issue(
        &brain,
        &op,
        "bulk-retry",
        bulk(
            json!({"engine": "rq", "state": "failure", "name": "jobs.none"}),
            None,
        ),
    )
    .await?;
    ensure(
        status == 422 && r["message"].as_str().is_some_and(|m| m.contains("matches")),
        format!("nothing matching: nothing sent (422): {status} {r}"),
    )
}

/// Command latency (issue 20): the commands that finished in a window, per
/// chart bucket, answered (completed and failed) apart from timed out, with
/// the mean and longest wait from issue to the agent's result; the
/// commands page draws the same series.
pub async fn latency(ctx: Arc<Ctx>) -> R {
    use super::aggregates::window_answer;
    let (brain, op, creds) = setup(&ctx, FAST_TIMEOUT).await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let result = |status: &'static str| {
        [
            ("status", z4j_protocol::Value::str(status)),
            ("result", z4j_protocol::Value::Null),
            ("error", z4j_protocol::Value::Null),
            ("delivery_claim_token", z4j_protocol::Value::Null),
        ]
    };
    // Acked 400 ms after the frame came, answered after a known wait: the
    // latency runs from issue to result, not from the ack.
    let mut answered = Vec::new();
    for (task, wait_ms, status, done) in [
        ("lat-1", 600_u64, "success", "completed"),
        ("lat-2", 1_800, "failed", "failed"),
    ] {
        let (code, c) = issue(&brain, &op, "cancel-task", cancel_body(&creds, task)).await?;
        ensure_eq(code, 202, &format!("issue {task}: {c}"))?;
        let id = c["id"].as_str().unwrap_or_default().to_owned();
        let frame = next_command(&mut s).await?;
        ensure_eq(frame["id"].as_str(), Some(id.as_str()), "command frame id")?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.send_signed(
            FrameType::CommandAck,
            &id,
            &[("delivery_claim_token", z4j_protocol::Value::Null)],
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        s.send_signed(FrameType::CommandResult, &id, &result(status))
            .await?;
        wait_status(&brain, &op, &id, done, WAIT).await?;
        answered.push(id);
    }
    // Never answered: times out after 10 s.
    let (code, c) = issue(&brain, &op, "cancel-task", cancel_body(&creds, "lat-3")).await?;
    ensure_eq(code, 202, &format!("issue lat-3: {c}"))?;
    let id = c["id"].as_str().unwrap_or_default().to_owned();
    next_command(&mut s).await?;
    wait_status(&brain, &op, &id, "timeout", ctx.scaled(20.0)).await?;

    // The buckets may straddle a minute: judge the sums over the points.
    let totals = |body: &Json, bucket: i64| -> Result<(i64, i64, i64, i64, i64), String> {
        let now = chrono::Utc::now().timestamp();
        let (mut completed, mut failed, mut timed_out, mut weighted, mut longest) = (0, 0, 0, 0, 0);
        for p in body["points"].as_array().into_iter().flatten() {
            let t = p["t"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .ok_or(format!("a point without an instant: {p}"))?
                .timestamp();
            ensure(
                t % bucket == 0 && t <= now && t > now - 5 * 60 - bucket,
                format!("a {bucket} s bucket start of the last minutes: {p} ({now})"),
            )?;
            let n = |k: &str| p[k].as_i64().unwrap_or(0);
            let answered = n("completed") + n("failed");
            ensure(
                (answered == 0) == p["mean_ms"].is_null()
                    && p["mean_ms"].is_null() == p["max_ms"].is_null(),
                format!("a mean and a longest exactly where commands were answered: {p}"),
            )?;
            completed += n("completed");
            failed += n("failed");
            timed_out += n("timed_out");
            weighted += n("mean_ms") * answered;
            longest = longest.max(n("max_ms"));
        }
        let answered = completed + failed;
        Ok((
            completed,
            failed,
            timed_out,
            weighted / answered.max(1),
            longest,
        ))
    };
    let body = window_answer(&brain, &op, "command-latency", None, ("24h", "15m")).await?;
    let check = |what: &str, t: (i64, i64, i64, i64, i64)| -> R {
        let (completed, failed, timed_out, mean, longest) = t;
        ensure_eq(
            (completed, failed, timed_out),
            (1, 1, 1),
            &format!("{what}: one completed, one failed, one timed out"),
        )?;
        // Waits of 400 + 600 and 400 + 1 800 ms, plus the round trips.
        ensure(
            (1_600..3_100).contains(&mean),
            format!("{what}: mean {mean} ms, want (1 000 + 2 200) / 2 plus at most 1.5 s"),
        )?;
        ensure(
            (2_200..3_700).contains(&longest),
            format!("{what}: longest {longest} ms, want 2 200 plus at most 1.5 s"),
        )
    };
    check("24h", totals(&body, 900)?)?;
    let hour = window_answer(&brain, &op, "command-latency", Some("1h"), ("1h", "1m")).await?;
    check("1h", totals(&hour, 60)?)?;
    super::aggregates::refusals(&brain, &op, "command-latency").await?;

    let (status, _, html) = super::dashboard::page(
        &brain,
        Some(&op.cookie),
        "/projects/default/commands?window=1h",
    )
    .await?;
    ensure_eq(status, 200, "the commands page")?;
    ensure(
        html.contains("<svg class=\"chart latency\"")
            && html.contains("aria-label=\"Command latency: 2 answered, longest "),
        format!("the commands page draws the latency of the two answered commands: {html}"),
    )?;
    ensure(
        html.contains("1 timed out\""),
        "the chart's label counts the timed-out command",
    )
}
