//! `reconcile_task` probes: the per-window idempotency key a probe is
//! issued under, and applying the agent's answer to the task.

use crate::store::commands::Command;
use crate::store::reconcile::{self, Answer};
use crate::store::{Db, StoreError, Ts};
use sha2::{Digest, Sha256};

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

/// Applies a successful `reconcile_task` result. Engine and task come from
/// the command the brain issued, never from the agent's answer; only the
/// state is taken from it, and only a known one.
pub async fn apply_answer(db: &Db, c: &Command) -> Result<(), StoreError> {
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
    if reconcile::apply(db, c.project_id, engine, task_id, &answer).await? {
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
