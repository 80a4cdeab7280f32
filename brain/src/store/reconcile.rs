//! Queries of the reconciliation worker: in-flight tasks nobody has heard
//! about for too long, the agent to ask, and applying its answer.

use super::{Db, StoreError, Ts};
use crate::{on_db, on_read};
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleTask {
    pub project_id: Uuid,
    pub engine: String,
    pub task_id: String,
}

/// Tasks still `started`, `pending` or `retry` whose age anchor is older
/// than `before`, oldest first. The predicate and the expression are those
/// of the partial index `ix_tasks_inflight_since` (migration 0016): change
/// them together or the sweep scans every task again.
pub async fn stale_tasks(db: &Db, before: Ts, limit: i64) -> Result<Vec<StaleTask>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, StaleTask>(
        "SELECT project_id, engine, task_id FROM tasks \
         WHERE state IN ('started', 'pending', 'retry') \
         AND COALESCE(started_at, received_at, created_at) < $1 \
         ORDER BY COALESCE(started_at, received_at, created_at), id LIMIT $2"
    )
    .bind(before)
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

/// The most recently seen online agent of the project that runs `engine`.
pub async fn agent_for(
    db: &Db,
    project_id: Uuid,
    engine: &str,
) -> Result<Option<Uuid>, StoreError> {
    let rows: Vec<(Uuid, SqlJson<Json>)> = on_read!(db, p => sqlx::query_as(
        "SELECT id, engine_adapters FROM agents \
         WHERE project_id = $1 AND state = 'online' AND revoked_at IS NULL \
         ORDER BY last_seen_at DESC"
    )
    .bind(project_id)
    .fetch_all(p)
    .await)?;
    Ok(rows.into_iter().find_map(|(id, engines)| {
        engines
            .0
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x.as_str() == Some(engine)))
            .then_some(id)
    }))
}

/// What the engine's result backend said about a task.
pub struct Answer<'a> {
    pub state: &'a str,
    pub finished_at: Option<Ts>,
    pub exception: Option<&'a str>,
    /// When the probe was issued: a non-terminal answer never overrides a
    /// task row written after it.
    pub probe_issued_at: Ts,
}

/// Applies a reconcile answer; never moves a terminal task. True when the
/// row changed.
pub async fn apply(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    task_id: &str,
    a: &Answer<'_>,
) -> Result<bool, StoreError> {
    let n = on_db!(db, p => sqlx::query(
        "UPDATE tasks SET state = $4, finished_at = COALESCE($5, finished_at), \
         exception = COALESCE($6, exception), updated_at = $8 \
         WHERE project_id = $1 AND engine = $2 AND task_id = $3 \
         AND state NOT IN ('success', 'failure', 'revoked', 'rejected') AND state <> $4 \
         AND ($4 IN ('success', 'failure') OR updated_at <= $7)"
    )
    .bind(project_id)
    .bind(engine)
    .bind(task_id)
    .bind(a.state)
    .bind(a.finished_at)
    .bind(a.exception)
    .bind(a.probe_issued_at)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
