//! Delivering commands to agents (spec 5.6): claim the row (pending →
//! dispatched) before the frame is written; if the write fails, commands
//! that are safe to deliver twice go back to pending, the others stay
//! dispatched and time out (at most once for destructive actions).

use super::Commands;
use crate::fleet::registry::Outbound;
use crate::store::commands::{self, Action, Command};
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
pub const REDELIVERABLE: &[Action] = &[
    Action::ScheduleFire,
    Action::ScheduleTriggerNow,
    Action::ScheduleTriggerNowViaScheduler,
    Action::CancelTask,
    Action::ReconcileTask,
    Action::ScheduleResync,
    Action::ScheduleEnable,
    Action::ScheduleDisable,
];

pub fn redeliverable(action: &str) -> bool {
    Action::parse(action).is_some_and(|a| REDELIVERABLE.contains(&a))
}

/// For `retry_task` / `bulk_retry`: the engine the command needs a
/// retry-capable connection for. `Some("")` when it names none (never
/// delivered).
pub fn retry_engine(c: &Command) -> Option<String> {
    let p = &c.payload.0;
    match Action::parse(&c.action)? {
        Action::RetryTask => Some(
            p.get("engine")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        Action::BulkRetry => Some(
            p.get("filter")
                .and_then(|f| f.get("engine"))
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => None,
    }
}

/// Whether a session that may retry on `retry_engines` may receive `c`
/// (only retry-family commands are restricted).
fn may_run(c: &Command, retry_engines: &[String]) -> bool {
    retry_engine(c).is_none_or(|e| retry_engines.contains(&e))
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

impl Commands {
    /// Claims and writes one command to a connection's writer queue. Returns
    /// whether it was handed over.
    pub async fn deliver(&self, out: &mpsc::Sender<Outbound>, c: &Command) -> bool {
        match commands::claim(&self.db, c.id).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(error = %e, command_id = %c.id, "cannot claim a command");
                return false;
            }
        }
        let msg = frame(c, self.settings.command_timeout_seconds);
        let sent = tokio::time::timeout(WRITE_WAIT, out.send(msg)).await;
        if matches!(sent, Ok(Ok(()))) {
            return true;
        }
        if redeliverable(&c.action) {
            if let Err(e) = commands::unclaim(&self.db, c.id).await {
                tracing::warn!(error = %e, command_id = %c.id, "cannot return a command to pending");
            }
        }
        false
    }

    /// A just-issued command to whichever live connection may run it. False
    /// when no connection of this process can take it now.
    pub async fn push(&self, agent_id: Uuid, c: &Command) -> bool {
        let engine = retry_engine(c);
        if engine.as_deref() == Some("") {
            return false;
        }
        let Some(entry) = self.fleet.registry.route(agent_id, engine.as_deref()) else {
            return false;
        };
        let Some(out) = entry.out.as_ref().and_then(|w| w.upgrade()) else {
            return false;
        };
        self.deliver(&out, c).await
    }

    /// After a handshake: the agent's pending commands, oldest first, to this
    /// connection (retry-family ones only if it may run them).
    pub async fn push_pending(
        self,
        agent_id: Uuid,
        out: mpsc::Sender<Outbound>,
        retry_engines: Vec<String>,
    ) {
        let pending =
            match commands::pending_for_agent(&self.db, agent_id, PENDING_PUSH_LIMIT).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load pending commands");
                    return;
                }
            };
        for c in pending.iter().filter(|c| may_run(c, &retry_engines)) {
            self.deliver(&out, c).await;
        }
    }

    /// Long-poll (spec 7.4): the agent's pending commands, then redeliverable
    /// ones sent but not acknowledged and last sent between the minimum
    /// interval and the window ago; retry-family ones only for engines the
    /// agent's session may retry on. Each is claimed (or reclaimed, so one
    /// interval delivers it once) before it is returned.
    pub async fn claim_for_poll(
        &self,
        agent_id: Uuid,
        retry_engines: &[String],
        max_frames: i64,
    ) -> Result<Vec<Command>, crate::store::StoreError> {
        let s = &self.settings;
        let pending = commands::pending_for_agent(&self.db, agent_id, max_frames).await?;
        let now = crate::store::Ts::now();
        let resend = commands::resendable_for_agent(
            &self.db,
            agent_id,
            REDELIVERABLE,
            now.plus_seconds(-s.agent_longpoll_redispatch_seconds),
            now.plus_seconds(-s.agent_longpoll_redispatch_min_interval_seconds),
            max_frames,
        )
        .await?;
        let candidates = pending
            .into_iter()
            .map(|c| (c, None))
            .chain(resend.into_iter().map(|c| {
                let last = c.dispatched_at;
                (c, last)
            }));
        let mut claimed = Vec::new();
        for (c, last_sent) in candidates.take(max_frames.max(0) as usize) {
            if !may_run(&c, retry_engines) {
                continue;
            }
            let ok = match last_sent {
                None => commands::claim(&self.db, c.id).await?,
                Some(at) => commands::reclaim(&self.db, c.id, at).await?,
            };
            if ok {
                claimed.push(c);
            }
        }
        Ok(claimed)
    }

    /// The `command` frame of a stored command, with this brain's timeout.
    pub fn frame(&self, c: &Command) -> Outbound {
        frame(c, self.settings.command_timeout_seconds)
    }
}
