//! Delivering commands to agents (spec 5.6): claim the row (pending →
//! dispatched) before the frame is written; if the write fails, commands
//! that are safe to deliver twice go back to pending, the others stay
//! dispatched and time out (at most once for destructive actions).

use super::registry::Outbound;
use crate::http::Shared;
use crate::store::commands::{self, Command};
use serde_json::Value as Json;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;
use z4j_protocol::frame::CommandFrame;
use z4j_protocol::json::{Object, Value};
use z4j_protocol::FrameType;

/// Capability marker that makes a connection eligible for retry commands.
pub const RETRY_MARKER: &str = "retry_by_reference_v1";
/// Commands pushed after a handshake, oldest first.
const PENDING_PUSH_LIMIT: i64 = 500;
const WRITE_WAIT: Duration = Duration::from_secs(2);

/// Actions a failed write may put back to pending (safe to run twice).
pub const REDELIVERABLE: &[&str] = &[
    "schedule.fire",
    "schedule.trigger_now",
    "schedule.trigger_now.via_scheduler",
    "cancel_task",
    "reconcile_task",
    "schedule.resync",
    "schedule.enable",
    "schedule.disable",
];

pub fn redeliverable(action: &str) -> bool {
    REDELIVERABLE.contains(&action)
}

/// For `retry_task` / `bulk_retry`: the engine the command needs a
/// retry-capable connection for. `Some("")` when it names none (never
/// delivered).
pub fn retry_engine(c: &Command) -> Option<String> {
    let p = &c.payload.0;
    match c.action.as_str() {
        "retry_task" => Some(
            p.get("engine")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        "bulk_retry" => Some(
            p.get("filter")
                .and_then(|f| f.get("engine"))
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => None,
    }
}

fn to_value(j: &Json) -> Value {
    z4j_protocol::parse(j.to_string().as_bytes()).unwrap_or(Value::Null)
}

/// The `command` frame of a stored command (every payload field present).
pub fn frame(c: &Command, timeout_seconds: i64) -> Outbound {
    let p = &c.payload.0;
    let mut target = Object::new();
    target.insert("type", Value::str(&c.target_type));
    target.insert("id", c.target_id.as_deref().map_or(Value::Null, Value::str));
    let engine = p
        .get("filter")
        .filter(|f| f.is_object())
        .and_then(|f| f.get("engine"))
        .or_else(|| p.get("engine"))
        .and_then(Json::as_str)
        .filter(|e| !e.is_empty());
    if let Some(e) = engine {
        target.insert("engine", Value::str(e));
    }
    if let Some(s) = p
        .get("scheduler")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
    {
        target.insert("scheduler", Value::str(s));
    }
    let parameters = match to_value(p) {
        Value::Object(o) => o,
        _ => Object::new(),
    };
    let f = CommandFrame {
        id: c.id.to_string(),
        action: c.action.clone(),
        target,
        parameters,
        timeout_seconds: timeout_seconds.clamp(1, 3600),
        issued_by: c.issued_by.map(|u| u.to_string()),
        delivery_claim_token: None,
    };
    Outbound {
        frame_type: FrameType::Command,
        id: f.id.clone(),
        payload: f.payload(),
    }
}

/// Claims and writes one command to a connection's writer queue. Returns
/// whether it was handed over.
pub async fn deliver(state: &Shared, out: &mpsc::Sender<Outbound>, c: &Command) -> bool {
    match commands::claim(&state.db, c.id).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, command_id = %c.id, "cannot claim a command");
            return false;
        }
    }
    let msg = frame(c, state.settings.command_timeout_seconds);
    let sent = tokio::time::timeout(WRITE_WAIT, out.send(msg)).await;
    if matches!(sent, Ok(Ok(()))) {
        return true;
    }
    if redeliverable(&c.action) {
        if let Err(e) = commands::unclaim(&state.db, c.id).await {
            tracing::warn!(error = %e, command_id = %c.id, "cannot return a command to pending");
        }
    }
    false
}

/// A just-issued command to whichever live connection may run it. False
/// when no connection of this process can take it now.
pub async fn push(state: &Shared, agent_id: Uuid, c: &Command) -> bool {
    let engine = retry_engine(c);
    if engine.as_deref() == Some("") {
        return false;
    }
    let Some(entry) = state.gateway.registry.route(agent_id, engine.as_deref()) else {
        return false;
    };
    let Some(out) = entry.out.as_ref().and_then(|w| w.upgrade()) else {
        return false;
    };
    deliver(state, &out, c).await
}

/// After a handshake: the agent's pending commands, oldest first, to this
/// connection (retry-family ones only if it may run them).
pub async fn push_pending(
    state: Shared,
    agent_id: Uuid,
    out: mpsc::Sender<Outbound>,
    retry_engines: Vec<String>,
) {
    let pending = match commands::pending_for_agent(&state.db, agent_id, PENDING_PUSH_LIMIT).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load pending commands");
            return;
        }
    };
    for c in pending {
        if let Some(engine) = retry_engine(&c) {
            if !retry_engines.contains(&engine) {
                continue;
            }
        }
        deliver(&state, &out, &c).await;
    }
}
