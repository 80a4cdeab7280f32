//! Every `Z4J_RECONCILIATION_SWEEP_SECONDS` (one replica): tasks stuck in
//! `started`, `pending` or `retry` for longer than
//! `Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS` are probed with a
//! `reconcile_task` command to an online agent running their engine; the
//! answer is applied when it comes back (`apply_answer`).

use super::{periodic, Job};
use crate::gateway::delivery;
use crate::http::Shared;
use crate::store::commands::{self, Command, Issued, NewCommand};
use crate::store::reconcile::{self, Answer};
use crate::store::{StoreError, Ts};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::watch;

/// Tasks probed per tick.
const PER_TICK: i64 = 100;
pub const ACTION: &str = "reconcile_task";

pub async fn run(state: Shared, stop: watch::Receiver<bool>) {
    let s = &state.settings;
    let every = s.reconciliation_sweep_seconds.max(1);
    let job = Job {
        name: "reconciliation_worker",
        every: Duration::from_secs(every as u64),
        gated: true,
    };
    let threshold = s.reconciliation_stale_threshold_seconds;
    periodic(state.db.clone(), job, stop, move || {
        let state = state.clone();
        async move { sweep(&state, threshold, every).await }
    })
    .await;
}

/// One probe per stale task and idempotency window: a key from the engine,
/// the task and `floor(now / interval)`, hashed when it would be too long.
pub fn idempotency_key(engine: &str, task_id: &str, now_epoch: i64, every: i64) -> String {
    let window = now_epoch.div_euclid(every.max(1));
    let key = format!("reconcile:{engine}:{task_id}:{window}");
    if key.len() <= 200 {
        return key;
    }
    let digest = hex::encode(Sha256::digest(format!("{engine}:{task_id}").as_bytes()));
    format!("reconcile:sha256:{}:{window}", &digest[..32])
}

async fn sweep(state: &Shared, threshold: i64, every: i64) -> Result<(), StoreError> {
    let now = Ts::now();
    let stale = reconcile::stale_tasks(&state.db, now.plus_seconds(-threshold), PER_TICK).await?;
    for t in stale {
        let Some(agent) = reconcile::agent_for(&state.db, t.project_id, &t.engine).await? else {
            continue;
        };
        let payload = json!({"task_id": t.task_id, "engine": t.engine});
        let key = idempotency_key(&t.engine, &t.task_id, now.0.timestamp(), every);
        let issued = commands::issue(
            &state.db,
            &NewCommand {
                project_id: t.project_id,
                agent_id: agent,
                issued_by: None,
                action: ACTION,
                target_type: "task",
                target_id: Some(&t.task_id),
                payload: &payload,
                idempotency_key: Some(&key),
                timeout_seconds: state.settings.command_timeout_seconds,
                source_ip: "",
            },
        )
        .await;
        match issued {
            Ok(Issued::New(c)) => {
                tracing::info!(task_id = %t.task_id, engine = %t.engine, command_id = %c.id, "reconciliation probe issued");
                if !delivery::push(state, agent, &c).await {
                    state
                        .gateway
                        .cluster
                        .publish_command(c.id, agent, None)
                        .await;
                }
            }
            // Already probed in this window (perhaps through another agent).
            Ok(Issued::Replayed(_)) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Applies a successful `reconcile_task` result. Engine and task come from
/// the command the brain issued, never from the agent's answer; only the
/// state is taken from it, and only a known one.
pub async fn apply_answer(state: &crate::http::AppState, c: &Command) -> Result<(), StoreError> {
    let Some(result) = c.result.as_ref().map(|r| &r.0) else {
        return Ok(());
    };
    let engine_state = result.get("engine_state").and_then(|v| v.as_str());
    let Some(engine_state @ ("pending" | "started" | "success" | "failure")) = engine_state else {
        return Ok(());
    };
    let engine = c.payload.0.get("engine").and_then(|v| v.as_str());
    let (Some(engine), Some(task_id)) = (engine, c.target_id.as_deref()) else {
        return Ok(());
    };
    let finished_at = result
        .get("finished_at")
        .and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| Ts(d.with_timezone(&chrono::Utc)));
    let exception = result.get("exception").and_then(|v| v.as_str());
    let answer = Answer {
        state: engine_state,
        finished_at,
        exception,
        probe_issued_at: c.issued_at,
    };
    if reconcile::apply(&state.db, c.project_id, engine, task_id, &answer).await? {
        tracing::info!(
            task_id,
            engine,
            engine_state,
            "task state corrected by reconciliation"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_window_and_bounded() {
        assert_eq!(
            idempotency_key("rq", "t1", 3_599, 300),
            "reconcile:rq:t1:11"
        );
        assert_eq!(
            idempotency_key("rq", "t1", 3_600, 300),
            "reconcile:rq:t1:12"
        );
        let long = idempotency_key("celery", &"x".repeat(200), 0, 300);
        assert!(
            long.starts_with("reconcile:sha256:") && long.len() <= 200,
            "{long}"
        );
    }
}
