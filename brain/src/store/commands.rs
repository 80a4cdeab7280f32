//! Command state changes reported by agents (spec 5.7, 5.8). Issuing and
//! delivering commands is the commands capability's job.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_db, on_handle, on_read};
use sqlx::types::Json as SqlJson;
use uuid::Uuid;
use z4j_protocol::frame::{CommandResult, ResultStatus};
use z4j_protocol::json::Value;

/// `command_ack`: pending → dispatched; duplicates and foreign ids are
/// no-ops.
pub async fn mark_dispatched(db: &Db, id: Uuid, agent_id: Uuid) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE commands SET status = 'dispatched', dispatched_at = $3 \
         WHERE id = $1 AND agent_id = $2 AND status = 'pending'"
    )
    .bind(id)
    .bind(agent_id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// `command_result`: only the first terminal transition counts.
pub async fn finish(
    db: &Db,
    id: Uuid,
    agent_id: Uuid,
    r: &CommandResult,
) -> Result<bool, StoreError> {
    let (status, error) = match r.status {
        ResultStatus::Success => (Status::Completed, None),
        ResultStatus::Failed => (
            Status::Failed,
            Some(super::text_column(
                r.error.as_deref().unwrap_or("agent reported failure"),
            )),
        ),
    };
    let result = r
        .result
        .as_ref()
        .and_then(|o| super::json_column(&Value::Object(o.clone())));
    let n = on_db!(db, p => sqlx::query(
        "UPDATE commands SET status = $3, result = $4, error = $5, completed_at = $6 \
         WHERE id = $1 AND agent_id = $2 AND status IN ('pending', 'dispatched')"
    )
    .bind(id)
    .bind(agent_id)
    .bind(status.as_str())
    .bind(result.as_ref().map(SqlJson))
    .bind(error)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

crate::text_enum! {
    /// A command's state (`commands.status`).
    pub enum Status {
        Pending = "pending",
        Dispatched = "dispatched",
        Completed = "completed",
        Failed = "failed",
        Timeout = "timeout",
        Cancelled = "cancelled",
    }
}

impl Status {
    /// Finished by the agent (or cancelled): the outcome is known.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

crate::text_enum! {
    /// The actions this brain issues. Rows keep the action as text (another
    /// implementation sharing the database may store others).
    pub enum Action {
        RetryTask = "retry_task",
        CancelTask = "cancel_task",
        RequeueDeadLetter = "requeue_dead_letter",
        BulkRetry = "bulk_retry",
        PurgeQueue = "purge_queue",
        RestartWorker = "restart_worker",
        PoolGrow = "pool_grow",
        PoolShrink = "pool_shrink",
        AddConsumer = "add_consumer",
        CancelConsumer = "cancel_consumer",
        RateLimit = "rate_limit",
        ReconcileTask = "reconcile_task",
        ScheduleFire = "schedule.fire",
        SubmitTask = "submit_task",
        ScheduleTriggerNow = "schedule.trigger_now",
        ScheduleTriggerNowViaScheduler = "schedule.trigger_now.via_scheduler",
        ScheduleResync = "schedule.resync",
        ScheduleEnable = "schedule.enable",
        ScheduleDisable = "schedule.disable",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Command {
    pub id: Uuid,
    pub project_id: Uuid,
    pub issued_by: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub payload: SqlJson<serde_json::Value>,
    pub idempotency_key: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub result: Option<SqlJson<serde_json::Value>>,
    pub error: Option<String>,
    pub issued_at: Ts,
    pub dispatched_at: Option<Ts>,
    pub completed_at: Option<Ts>,
    pub timeout_at: Ts,
}

const COLUMNS: &str =
    "id, project_id, issued_by, agent_id, action, target_type, target_id, payload, \
     idempotency_key, status, result, error, issued_at, dispatched_at, completed_at, timeout_at";

pub struct NewCommand<'a> {
    pub project_id: Uuid,
    pub agent_id: Uuid,
    pub issued_by: Option<Uuid>,
    pub action: Action,
    pub target_type: &'a str,
    pub target_id: Option<&'a str>,
    pub payload: &'a serde_json::Value,
    pub idempotency_key: Option<&'a str>,
    pub timeout_seconds: i64,
    pub source_ip: &'a str,
}

/// What issuing produced.
pub enum Issued {
    New(Command),
    /// The idempotency key was used before with the same request.
    Replayed(Command),
}

/// Inserts a pending command. A repeated idempotency key returns the first
/// command when the request is the same, and is a conflict otherwise.
pub async fn issue(db: impl Into<Handle<'_>>, c: &NewCommand<'_>) -> Result<Issued, StoreError> {
    let mut db: Handle<'_> = db.into();
    if let Some(key) = c.idempotency_key {
        if let Some(existing) = find_by_key(db.reborrow(), c.project_id, key).await? {
            let same = existing.action == c.action.as_str()
                && existing.agent_id == Some(c.agent_id)
                && existing.payload.0 == *c.payload;
            return if same {
                Ok(Issued::Replayed(existing))
            } else {
                Err(StoreError::Conflict(
                    "idempotency_key was already used for a different command".into(),
                ))
            };
        }
    }
    let now = Ts::now();
    let id = Uuid::new_v4();
    let inserted = on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO commands (id, project_id, issued_by, agent_id, action, target_type, target_id, payload, \
         idempotency_key, status, issued_at, timeout_at, source_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)"
    )
    .bind(id)
    .bind(c.project_id)
    .bind(c.issued_by)
    .bind(c.agent_id)
    .bind(c.action.as_str())
    .bind(c.target_type)
    .bind(c.target_id)
    .bind(SqlJson(c.payload))
    .bind(c.idempotency_key)
    .bind(now)
    .bind(now.plus_seconds(c.timeout_seconds))
    .bind(c.source_ip)
    .execute(p)
    .await
    .map(|r| r.rows_affected()));
    if let Err(e) = inserted {
        let e = StoreError::from(e);
        // A concurrent request with the same key won the race.
        if e.is_unique_violation() {
            if let Some(key) = c.idempotency_key {
                if let Some(existing) = find_by_key(db.reborrow(), c.project_id, key).await? {
                    return Ok(Issued::Replayed(existing));
                }
            }
        }
        return Err(e);
    }
    find(db.reborrow(), c.project_id, id)
        .await?
        .map(Issued::New)
        .ok_or_else(|| StoreError::Conflict("command vanished after insert".into()))
}

async fn find_by_key(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    key: &str,
) -> Result<Option<Command>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql =
        format!("SELECT {COLUMNS} FROM commands WHERE project_id = $1 AND idempotency_key = $2");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Command>(&sql)
        .bind(project_id)
        .bind(key)
        .fetch_optional(p)
        .await)?,
    )
}

pub async fn find(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Command>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM commands WHERE project_id = $1 AND id = $2");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Command>(&sql)
        .bind(project_id)
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

/// A command by id, whatever its project (cluster notifications carry
/// only the id).
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Command>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM commands WHERE id = $1");
    Ok(on_read!(db, p => sqlx::query_as::<_, Command>(&sql)
        .bind(id)
        .fetch_optional(p)
        .await)?)
}

/// Pending commands of any of `agents`, oldest first (the registry's
/// reconcile poll; PostgreSQL only, where there are replicas).
pub async fn pending_for_agents(
    db: &Db,
    agents: &[Uuid],
    limit: i64,
) -> Result<Vec<Command>, StoreError> {
    let Db::Postgres(p) = db else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE agent_id = ANY($1) AND status = 'pending' \
         ORDER BY issued_at, id LIMIT $2"
    );
    Ok(sqlx::query_as::<_, Command>(&sql)
        .bind(agents)
        .bind(limit)
        .fetch_all(p)
        .await?)
}

/// Newest first, keyset on `(issued_at, id)`.
pub async fn list(
    db: &Db,
    project_id: Uuid,
    status: Option<Status>,
    after: Option<(Ts, Uuid)>,
    limit: i64,
) -> Result<Vec<Command>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE project_id = $1 AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR issued_at < $3 OR (issued_at = $3 AND id < $4)) \
         ORDER BY issued_at DESC, id DESC LIMIT $5"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Command>(&sql)
        .bind(project_id)
        .bind(status.map(Status::as_str))
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1).unwrap_or_default())
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// Pending commands of an agent, oldest first.
pub async fn pending_for_agent(
    db: &Db,
    agent_id: Uuid,
    limit: i64,
) -> Result<Vec<Command>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE agent_id = $1 AND status = 'pending' \
         ORDER BY issued_at, id LIMIT $2"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Command>(&sql)
        .bind(agent_id)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// pending → dispatched before the frame is written; false when another
/// delivery got there first.
pub async fn claim(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let n = on_db!(db, p => sqlx::query(
        "UPDATE commands SET status = 'dispatched', dispatched_at = $2 WHERE id = $1 AND status = 'pending'"
    )
    .bind(id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// A failed write of a redeliverable command: back to pending.
pub async fn unclaim(db: &Db, id: Uuid) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE commands SET status = 'pending', dispatched_at = NULL WHERE id = $1 AND status = 'dispatched'"
    )
    .bind(id)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The timeout sweeper: unfinished commands past `timeout_at`.
pub async fn sweep_timeouts(db: &Db) -> Result<Vec<Uuid>, StoreError> {
    let now = Ts::now();
    // The project of each command timed out, for the dashboard's push.
    let rows: Vec<(Uuid,)> = on_db!(db, p => sqlx::query_as(
        "UPDATE commands SET status = 'timeout', error = 'command timed out before agent responded', \
         completed_at = $1 WHERE status IN ('pending', 'dispatched') AND timeout_at <= $1 \
         RETURNING project_id"
    )
    .bind(now)
    .fetch_all(p)
    .await)?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// Long-poll redelivery (spec 7.4): dispatched commands of `actions` last
/// sent between `oldest` and `newest`, oldest first.
pub async fn resendable_for_agent(
    db: &Db,
    agent_id: Uuid,
    actions: &[Action],
    oldest: Ts,
    newest: Ts,
    limit: i64,
) -> Result<Vec<Command>, StoreError> {
    // The action names are this build's constants, not input.
    let list = actions
        .iter()
        .map(|a| format!("'{}'", a.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE agent_id = $1 AND status = 'dispatched' \
         AND action IN ({list}) AND dispatched_at >= $2 AND dispatched_at <= $3 \
         ORDER BY issued_at, id LIMIT $4"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Command>(&sql)
        .bind(agent_id)
        .bind(oldest)
        .bind(newest)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// Claims a redelivery: moves `dispatched_at` to now if nobody else did.
pub async fn reclaim(db: &Db, id: Uuid, last_sent: Ts) -> Result<bool, StoreError> {
    let n = on_db!(db, p => sqlx::query(
        "UPDATE commands SET dispatched_at = $3 WHERE id = $1 AND status = 'dispatched' AND dispatched_at = $2"
    )
    .bind(id)
    .bind(last_sent)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
