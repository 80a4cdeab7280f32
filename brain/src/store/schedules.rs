//! Schedules, their fire history, the buffer of fires no agent could take
//! yet, and the per-identity fire-rate buckets (scheduler spec §3).

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_db, on_handle, on_read};
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

/// The owner whose rows the gRPC surface serves.
pub const Z4J_SCHEDULER: &str = "z4j-scheduler";

crate::text_enum! {
    /// `schedules.kind`.
    pub enum Kind {
        Cron = "cron",
        Interval = "interval",
        Solar = "solar",
        Clocked = "clocked",
    }
}

crate::text_enum! {
    /// `schedules.catch_up`: what a scheduler (and replay) does with slots
    /// it missed.
    pub enum CatchUp {
        Skip = "skip",
        FireOneMissed = "fire_one_missed",
        FireAllMissed = "fire_all_missed",
    }
}

crate::text_enum! {
    /// `schedule_fires.status` on the legacy path.
    pub enum FireStatus {
        Pending = "pending",
        Buffered = "buffered",
        Accepted = "accepted",
        Delivered = "delivered",
        Failed = "failed",
        AckedSuccess = "acked_success",
        AckedFailed = "acked_failed",
    }
}

impl FireStatus {
    /// The forward moves a repeated write of the same fire may make (§3.3).
    pub fn may_become(self, next: FireStatus) -> bool {
        use FireStatus::*;
        match self {
            Pending => matches!(
                next,
                Buffered | Delivered | Failed | AckedSuccess | AckedFailed
            ),
            Buffered => matches!(next, Delivered | Failed | AckedSuccess | AckedFailed),
            Accepted => matches!(
                next,
                Buffered | Delivered | Failed | AckedSuccess | AckedFailed
            ),
            Delivered => matches!(next, AckedSuccess | AckedFailed | Failed),
            Failed => matches!(next, AckedSuccess | AckedFailed),
            AckedSuccess | AckedFailed => false,
        }
    }

    /// Counted by the circuit breaker.
    pub fn is_failure(self) -> bool {
        matches!(self, FireStatus::Failed | FireStatus::AckedFailed)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Schedule {
    pub id: Uuid,
    pub project_id: Uuid,
    pub engine: String,
    pub scheduler: String,
    pub name: String,
    pub task_name: String,
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    pub expression: String,
    pub timezone: String,
    pub queue: Option<String>,
    pub priority: String,
    pub args: SqlJson<serde_json::Value>,
    pub kwargs: SqlJson<serde_json::Value>,
    pub is_enabled: bool,
    pub paused_at: Option<Ts>,
    #[sqlx(try_from = "String")]
    pub catch_up: CatchUp,
    pub overlap_policy: String,
    pub source: String,
    pub source_hash: Option<String>,
    pub last_run_at: Option<Ts>,
    pub next_run_at: Option<Ts>,
    pub total_runs: i64,
    pub last_fire_id: Option<Uuid>,
    pub external_id: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

impl Schedule {
    /// What the scheduler is told: enabled and not paused.
    pub fn effectively_enabled(&self) -> bool {
        self.is_enabled && self.paused_at.is_none()
    }
}

const COLUMNS: &str = "id, project_id, engine, scheduler, name, task_name, kind, expression, timezone, \
     queue, priority, args, kwargs, is_enabled, paused_at, catch_up, overlap_policy, source, source_hash, \
     last_run_at, next_run_at, total_runs, last_fire_id, external_id, created_at, updated_at";

/// The definition an operator writes (create and patch).
#[derive(Debug, Clone)]
pub struct Definition {
    pub engine: String,
    pub task_name: String,
    pub kind: Kind,
    pub expression: String,
    pub timezone: String,
    pub queue: Option<String>,
    pub args: serde_json::Value,
    pub kwargs: serde_json::Value,
    pub catch_up: CatchUp,
    pub is_enabled: bool,
    pub source_hash: Option<String>,
}

impl Definition {
    pub fn of(s: &Schedule) -> Definition {
        Definition {
            engine: s.engine.clone(),
            task_name: s.task_name.clone(),
            kind: s.kind,
            expression: s.expression.clone(),
            timezone: s.timezone.clone(),
            queue: s.queue.clone(),
            args: s.args.0.clone(),
            kwargs: s.kwargs.0.clone(),
            catch_up: s.catch_up,
            is_enabled: s.is_enabled,
            source_hash: s.source_hash.clone(),
        }
    }
}

fn name_conflict(e: sqlx::Error) -> StoreError {
    let e = StoreError::from(e);
    if e.is_unique_violation() {
        StoreError::Conflict("a schedule with this name and scheduler already exists".into())
    } else {
        e
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    scheduler: &str,
    name: &str,
    source: &str,
    d: &Definition,
) -> Result<Schedule, StoreError> {
    let mut db: Handle<'_> = db.into();
    let id = Uuid::new_v4();
    let now = Ts::now();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO schedules (id, project_id, engine, scheduler, name, task_name, kind, expression, \
         timezone, queue, args, kwargs, is_enabled, catch_up, source, source_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)"
    )
    .bind(id)
    .bind(project_id)
    .bind(&d.engine)
    .bind(scheduler)
    .bind(name)
    .bind(&d.task_name)
    .bind(d.kind.as_str())
    .bind(&d.expression)
    .bind(&d.timezone)
    .bind(&d.queue)
    .bind(SqlJson(&d.args))
    .bind(SqlJson(&d.kwargs))
    .bind(d.is_enabled)
    .bind(d.catch_up.as_str())
    .bind(source)
    .bind(&d.source_hash)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .map_err(name_conflict)?;
    find(db.reborrow(), project_id, id)
        .await?
        .ok_or_else(|| StoreError::Conflict("schedule vanished after insert".into()))
}

/// A schedule of the project.
pub async fn find(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Schedule>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE project_id = $1 AND id = $2");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Schedule>(&sql)
        .bind(project_id)
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

/// A schedule by id, whatever its project (the gRPC calls carry only ids).
pub async fn get(db: impl Into<Handle<'_>>, id: Uuid) -> Result<Option<Schedule>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Schedule>(&sql)
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

/// Locks a `z4j-scheduler` row for the rest of the transaction (a no-op
/// update takes the row lock on PostgreSQL and the write lock on SQLite)
/// and reads it.
pub async fn lock_served(tx: &mut super::Tx, id: Uuid) -> Result<Option<Schedule>, StoreError> {
    let n = on_handle!(Handle::Tx(&mut *tx), c => sqlx::query(
        "UPDATE schedules SET total_runs = total_runs WHERE id = $1 AND scheduler = $2"
    )
    .bind(id)
    .bind(Z4J_SCHEDULER)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    if n == 0 {
        return Ok(None);
    }
    get(tx, id).await
}

/// A project's schedules by `(name, id)`, keyset after `after`.
pub async fn list(
    db: &Db,
    project_id: Uuid,
    after: Option<(&str, Uuid)>,
    limit: i64,
) -> Result<Vec<Schedule>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules WHERE project_id = $1 \
         AND ($2 IS NULL OR name > $2 OR (name = $2 AND id > $3)) ORDER BY name, id LIMIT $4"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Schedule>(&sql)
        .bind(project_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1).unwrap_or_default())
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// The rows the scheduler is served (owner `z4j-scheduler`, enabled or
/// not), in id order after `after`; limited to `projects` when given.
pub async fn served(
    db: &Db,
    projects: Option<&[Uuid]>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Schedule>, StoreError> {
    let filter = match projects {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        // Ids are this process's parsed UUIDs, not text from a caller.
        Some(ids) => format!(
            " AND project_id IN ({})",
            (0..ids.len())
                .map(|i| format!("${}", i + 4))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules WHERE scheduler = $1 AND ($2 IS NULL OR id > $3){filter} \
         ORDER BY id LIMIT {limit}"
    );
    on_read!(db, p => {
        let mut q = sqlx::query_as::<_, Schedule>(&sql)
            .bind(Z4J_SCHEDULER)
            .bind(after)
            .bind(after.unwrap_or_default());
        for id in projects.unwrap_or_default() {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(p).await?)
    })
}

/// Writes the definition; bumps `updated_at` (which the watch follows).
pub async fn update(db: impl Into<Handle<'_>>, id: Uuid, d: &Definition) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE schedules SET engine = $2, task_name = $3, kind = $4, expression = $5, timezone = $6, \
         queue = $7, args = $8, kwargs = $9, catch_up = $10, is_enabled = $11, source_hash = $12, \
         updated_at = $13 WHERE id = $1"
    )
    .bind(id)
    .bind(&d.engine)
    .bind(&d.task_name)
    .bind(d.kind.as_str())
    .bind(&d.expression)
    .bind(&d.timezone)
    .bind(&d.queue)
    .bind(SqlJson(&d.args))
    .bind(SqlJson(&d.kwargs))
    .bind(d.catch_up.as_str())
    .bind(d.is_enabled)
    .bind(&d.source_hash)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets `paused_at` (None resumes); bumps `updated_at`.
pub async fn set_paused(
    db: impl Into<Handle<'_>>,
    id: Uuid,
    paused_at: Option<Ts>,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query("UPDATE schedules SET paused_at = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(paused_at)
        .bind(Ts::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Disables a schedule that is still enabled (the breaker); false when
/// someone else got there first.
pub async fn disable_if_enabled(db: impl Into<Handle<'_>>, id: Uuid) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE schedules SET is_enabled = false, updated_at = $2 WHERE id = $1 AND is_enabled"
    )
    .bind(id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn delete(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Remembers the latest fire handed over (informational; not a change the
/// scheduler needs to hear about, so `updated_at` stays).
pub async fn set_last_fire(tx: &mut super::Tx, id: Uuid, fire_id: Uuid) -> Result<(), StoreError> {
    on_handle!(Handle::Tx(tx), c => sqlx::query("UPDATE schedules SET last_fire_id = $2 WHERE id = $1")
        .bind(id)
        .bind(fire_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A success ack that counted: one more run; a cadence fire also moves
/// `last_run_at` forward (never back) and clears `last_fire_id` if it is
/// this fire.
pub async fn count_run(
    tx: &mut super::Tx,
    id: Uuid,
    cadence: Option<(Ts, Uuid)>,
) -> Result<(), StoreError> {
    let now = Ts::now();
    let (slot, fire) = cadence.unzip();
    on_handle!(Handle::Tx(tx), c => sqlx::query(
        "UPDATE schedules SET total_runs = total_runs + 1, \
         updated_at = CASE WHEN updated_at > $2 THEN updated_at ELSE $2 END, \
         last_run_at = CASE WHEN $3 IS NULL THEN last_run_at \
                            WHEN last_run_at IS NULL OR last_run_at < $3 THEN $3 ELSE last_run_at END, \
         last_fire_id = CASE WHEN $4 IS NOT NULL AND last_fire_id = $4 THEN NULL ELSE last_fire_id END \
         WHERE id = $1"
    )
    .bind(id)
    .bind(now)
    .bind(slot)
    .bind(fire)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ids of projects by slug (a certificate's project bindings).
pub async fn project_ids_by_slugs(db: &Db, slugs: &[String]) -> Result<Vec<Uuid>, StoreError> {
    if slugs.is_empty() {
        return Ok(Vec::new());
    }
    // One placeholder per slug; the slugs themselves are bound.
    let sql = format!(
        "SELECT id FROM projects WHERE slug IN ({}) ORDER BY id",
        (1..=slugs.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    on_read!(db, p => {
        let mut q = sqlx::query_scalar::<_, Uuid>(&sql);
        for slug in slugs {
            q = q.bind(slug);
        }
        Ok(q.fetch_all(p).await?)
    })
}

// ---- fire history --------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Fire {
    pub id: Uuid,
    pub fire_id: Uuid,
    pub schedule_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub command_id: Option<Uuid>,
    pub triggered_by_user_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub status: FireStatus,
    pub scheduled_for: Ts,
    pub fired_at: Ts,
    pub acked_at: Option<Ts>,
    pub latency_ms: Option<i32>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

const FIRE_COLUMNS: &str =
    "id, fire_id, schedule_id, project_id, command_id, triggered_by_user_id, \
     status, scheduled_for, fired_at, acked_at, latency_ms, error_code, error_message";

/// One write of a fire's history.
pub struct FireWrite<'a> {
    pub fire_id: Uuid,
    pub schedule_id: Uuid,
    pub project_id: Uuid,
    pub command_id: Option<Uuid>,
    pub triggered_by: Option<Uuid>,
    pub status: FireStatus,
    pub scheduled_for: Ts,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
}

pub async fn fire_by_fire_id(
    db: impl Into<Handle<'_>>,
    fire_id: Uuid,
) -> Result<Option<Fire>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE fire_id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Fire>(&sql)
        .bind(fire_id)
        .fetch_optional(p)
        .await)?,
    )
}

/// Inserts the fire's row, or moves an existing one forward (§3.3); a
/// `fire_id` already bound to another schedule is a conflict.
pub async fn record_fire(tx: &mut super::Tx, w: &FireWrite<'_>) -> Result<(), StoreError> {
    if let Some(old) = fire_by_fire_id(&mut *tx, w.fire_id).await? {
        if old.schedule_id != Some(w.schedule_id) || old.project_id != Some(w.project_id) {
            return Err(StoreError::Conflict(format!(
                "fire_id {} belongs to another schedule",
                w.fire_id
            )));
        }
        if old.status == w.status {
            // Replay fills in the command of a fire whose status already
            // moved on (scheduler spec D2).
            if w.command_id.is_some() && old.command_id.is_none() {
                set_fire_command(tx, old.id, w.command_id).await?;
            }
            return Ok(());
        }
        if !old.status.may_become(w.status) {
            if w.command_id.is_some() && old.command_id.is_none() {
                set_fire_command(tx, old.id, w.command_id).await?;
            }
            return Ok(());
        }
        on_handle!(Handle::Tx(tx), c => sqlx::query(
            "UPDATE schedule_fires SET status = $2, command_id = COALESCE($3, command_id), \
             error_code = $4, error_message = $5 WHERE id = $1"
        )
        .bind(old.id)
        .bind(w.status.as_str())
        .bind(w.command_id)
        .bind(w.error_code)
        .bind(w.error_message)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        return Ok(());
    }
    on_handle!(Handle::Tx(tx), c => sqlx::query(
        "INSERT INTO schedule_fires (id, fire_id, schedule_id, project_id, command_id, triggered_by_user_id, \
         status, scheduled_for, fired_at, error_code, error_message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )
    .bind(Uuid::new_v4())
    .bind(w.fire_id)
    .bind(w.schedule_id)
    .bind(w.project_id)
    .bind(w.command_id)
    .bind(w.triggered_by)
    .bind(w.status.as_str())
    .bind(w.scheduled_for)
    .bind(Ts::now())
    .bind(w.error_code)
    .bind(w.error_message)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

async fn set_fire_command(
    tx: &mut super::Tx,
    row: Uuid,
    command_id: Option<Uuid>,
) -> Result<(), StoreError> {
    on_handle!(Handle::Tx(tx), c => sqlx::query("UPDATE schedule_fires SET command_id = $2 WHERE id = $1")
        .bind(row)
        .bind(command_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The scheduler's ack (§2.9 step 6): a success moves any status but
/// `acked_success` to it; a failure counts only as the fire's first ack.
/// True when the row changed.
pub async fn ack_fire(
    tx: &mut super::Tx,
    fire: &Fire,
    success: bool,
    error_code: Option<&str>,
    error_message: Option<&str>,
) -> Result<bool, StoreError> {
    let now = Ts::now();
    let latency = (now.0 - fire.fired_at.0)
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX)) as i32;
    let sql = if success {
        "UPDATE schedule_fires SET status = 'acked_success', acked_at = $2, latency_ms = $3, \
         error_code = NULL, error_message = NULL WHERE id = $1 AND status <> 'acked_success'"
    } else {
        "UPDATE schedule_fires SET status = 'acked_failed', acked_at = $2, latency_ms = $3, \
         error_code = $4, error_message = $5 WHERE id = $1 AND acked_at IS NULL"
    };
    let n = on_handle!(Handle::Tx(tx), c => sqlx::query(sql)
        .bind(fire.id)
        .bind(now)
        .bind(latency)
        .bind(error_code)
        .bind(error_message)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// A schedule's fires, newest first.
pub async fn fires(db: &Db, schedule_id: Uuid, limit: i64) -> Result<Vec<Fire>, StoreError> {
    let sql = format!(
        "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE schedule_id = $1 \
         ORDER BY fired_at DESC, id DESC LIMIT $2"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Fire>(&sql)
        .bind(schedule_id)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// Which of `ids` are schedules of `project_id`.
pub async fn ids_in_project(
    db: &Db,
    project_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM schedules WHERE project_id = $1 AND id IN ({})",
        (0..ids.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ")
    );
    on_read!(db, p => {
        let mut q = sqlx::query_scalar::<_, Uuid>(&sql).bind(project_id);
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(p).await?)
    })
}

/// The newest `limit` fires of each of `ids` that belongs to `project_id`
/// (others are left out), newest first per schedule, in one query.
pub async fn recent_fires_of(
    db: &Db,
    project_id: Uuid,
    ids: &[Uuid],
    limit: i64,
) -> Result<Vec<Fire>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cols = FIRE_COLUMNS
        .split(',')
        .map(|c| format!("f.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    // Ids are this process's parsed UUIDs, bound, one placeholder each.
    let sql = format!(
        "SELECT {FIRE_COLUMNS} FROM (SELECT {cols}, ROW_NUMBER() OVER          (PARTITION BY f.schedule_id ORDER BY f.fired_at DESC, f.id DESC) AS rn          FROM schedule_fires f JOIN schedules s ON s.id = f.schedule_id          WHERE s.project_id = $1 AND f.schedule_id IN ({})) ranked          WHERE rn <= $2 ORDER BY schedule_id, fired_at DESC, id DESC",
        (0..ids.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    on_read!(db, p => {
        let mut q = sqlx::query_as::<_, Fire>(&sql).bind(project_id).bind(limit);
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(p).await?)
    })
}

/// The newest `n` statuses of a schedule's fires since `since`.
pub async fn recent_statuses(
    db: &Db,
    schedule_id: Uuid,
    since: Ts,
    n: i64,
) -> Result<Vec<FireStatus>, StoreError> {
    let rows: Vec<String> = on_read!(db, p => sqlx::query_scalar(
        "SELECT status FROM schedule_fires WHERE schedule_id = $1 AND fired_at >= $2 \
         ORDER BY fired_at DESC, id DESC LIMIT $3"
    )
    .bind(schedule_id)
    .bind(since)
    .bind(n)
    .fetch_all(p)
    .await)?;
    // A status another implementation wrote and this one does not know
    // breaks a streak like any non-failure.
    Ok(rows
        .iter()
        .map(|s| FireStatus::parse(s).unwrap_or(FireStatus::Pending))
        .collect())
}

/// Enabled schedules (of any owner), for the breaker's sweep.
pub async fn enabled_ids(db: &Db) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, (Uuid, Uuid)>(
        "SELECT id, project_id FROM schedules WHERE is_enabled ORDER BY id"
    )
    .fetch_all(p)
    .await)?)
}

// ---- misfire episodes ----------------------------------------------------

/// Enabled, unpaused cron and interval schedules of every owner whose
/// current episode (anchored at the last run, else creation) has not been
/// announced: the ones to watch for a misfire (spec §5.5).
pub async fn misfire_candidates(db: &Db) -> Result<Vec<Schedule>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules s WHERE is_enabled AND paused_at IS NULL \
         AND kind IN ('cron', 'interval') AND NOT EXISTS (SELECT 1 FROM misfire_alerts m \
         WHERE m.schedule_id = s.id AND m.anchor_at = COALESCE(s.last_run_at, s.created_at)) \
         ORDER BY id"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Schedule>(&sql).fetch_all(p).await)?)
}

/// Claims an episode; true for exactly one caller fleet-wide.
pub async fn claim_misfire(
    db: impl Into<Handle<'_>>,
    schedule_id: Uuid,
    anchor: Ts,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO misfire_alerts (schedule_id, anchor_at, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING"
    )
    .bind(schedule_id)
    .bind(anchor)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Forgets episodes claimed before `cutoff`.
pub async fn prune_misfire_claims(db: &Db, cutoff: Ts) -> Result<u64, StoreError> {
    Ok(
        on_db!(db, p => sqlx::query("DELETE FROM misfire_alerts WHERE created_at < $1")
        .bind(cutoff)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?,
    )
}

/// Deletes up to `batch` fires older than `cutoff`, oldest first.
pub async fn prune_fires(db: &Db, cutoff: Ts, batch: i64) -> Result<u64, StoreError> {
    Ok(on_db!(db, p => sqlx::query(
        "DELETE FROM schedule_fires WHERE id IN \
         (SELECT id FROM schedule_fires WHERE fired_at < $1 ORDER BY fired_at, id LIMIT $2)"
    )
    .bind(cutoff)
    .bind(batch)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?)
}

// ---- pending fires -------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    pub id: Uuid,
    pub fire_id: Uuid,
    pub schedule_id: Uuid,
    pub project_id: Uuid,
    pub engine: String,
    pub payload: SqlJson<serde_json::Value>,
    pub scheduled_for: Ts,
    pub enqueued_at: Ts,
    pub expires_at: Ts,
}

const PENDING_COLUMNS: &str =
    "id, fire_id, schedule_id, project_id, engine, payload, scheduled_for, enqueued_at, expires_at";

/// Buffers a fire (insert-or-keep on `fire_id`).
pub async fn buffer(
    tx: &mut super::Tx,
    s: &Schedule,
    fire_id: Uuid,
    payload: &serde_json::Value,
    scheduled_for: Ts,
    expires_at: Ts,
) -> Result<(), StoreError> {
    if pending_by_fire_id(&mut *tx, fire_id).await?.is_some() {
        return Ok(());
    }
    on_handle!(Handle::Tx(tx), c => sqlx::query(
        "INSERT INTO pending_fires (id, fire_id, schedule_id, project_id, engine, payload, scheduled_for, \
         enqueued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(Uuid::new_v4())
    .bind(fire_id)
    .bind(s.id)
    .bind(s.project_id)
    .bind(&s.engine)
    .bind(SqlJson(payload))
    .bind(scheduled_for)
    .bind(Ts::now())
    .bind(expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn pending_by_fire_id(
    db: impl Into<Handle<'_>>,
    fire_id: Uuid,
) -> Result<Option<Pending>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {PENDING_COLUMNS} FROM pending_fires WHERE fire_id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Pending>(&sql)
        .bind(fire_id)
        .fetch_optional(p)
        .await)?,
    )
}

/// Deletes buffers past their expiry.
pub async fn expire_pending(db: &Db, now: Ts) -> Result<u64, StoreError> {
    Ok(
        on_db!(db, p => sqlx::query("DELETE FROM pending_fires WHERE expires_at < $1")
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?,
    )
}

/// The `(project, engine)` pairs that have buffers.
pub async fn pending_pairs(db: &Db) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, (Uuid, String)>(
        "SELECT DISTINCT project_id, engine FROM pending_fires ORDER BY project_id, engine"
    )
    .fetch_all(p)
    .await)?)
}

/// Up to `limit` buffers of a pair, oldest slot first.
pub async fn pending_of(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    limit: i64,
) -> Result<Vec<Pending>, StoreError> {
    let sql = format!(
        "SELECT {PENDING_COLUMNS} FROM pending_fires WHERE project_id = $1 AND engine = $2 \
         ORDER BY scheduled_for, id LIMIT $3"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Pending>(&sql)
        .bind(project_id)
        .bind(engine)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// Drops a buffer its schedule's policy does not deliver, noting why on
/// its fire row (the row's status stays: the scheduler already acked it).
pub async fn drop_pending(db: &Db, b: &Pending, why: &str) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    on_handle!(Handle::Tx(&mut tx), c => sqlx::query(
        "UPDATE schedule_fires SET error_code = 'buffer_dropped', error_message = $2 WHERE fire_id = $1"
    )
    .bind(b.fire_id)
    .bind(format!("buffered fire dropped at replay ({why})"))
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    delete_pending(&mut tx, b.id).await?;
    tx.commit().await
}

pub async fn delete_pending(db: impl Into<Handle<'_>>, id: Uuid) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("DELETE FROM pending_fires WHERE id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

// ---- fire-rate buckets ---------------------------------------------------

/// Takes one token from `key`'s bucket, creating it full with `capacity`
/// and `rate` on first use (later setting changes do not apply to an
/// existing bucket: §2.7.6). False when the bucket is empty.
pub async fn take_token(db: &Db, key: &str, capacity: f64, rate: f64) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let now = Ts::now();
    // Insert-or-keep, which also takes the write lock on SQLite and the
    // row lock on PostgreSQL for the read that follows.
    on_handle!(Handle::Tx(&mut tx), c => sqlx::query(
        "INSERT INTO scheduler_rate_buckets (cert_cn, tokens, last_refill, capacity, refill_per_second, updated_at) \
         VALUES ($1, $2, $3, $2, $4, $3) \
         ON CONFLICT (cert_cn) DO UPDATE SET updated_at = scheduler_rate_buckets.updated_at"
    )
    .bind(key)
    .bind(capacity)
    .bind(now)
    .bind(rate)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    let (tokens, last, cap, per_second): (f64, Ts, f64, f64) = on_handle!(Handle::Tx(&mut tx), c => sqlx::query_as(
        "SELECT tokens, last_refill, capacity, refill_per_second FROM scheduler_rate_buckets WHERE cert_cn = $1"
    )
    .bind(key)
    .fetch_one(c)
    .await)?;
    let t = now.max(last);
    let elapsed = (t.0 - last.0).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    let refilled = (tokens + elapsed * per_second).min(cap);
    let granted = refilled >= 1.0;
    let left = if granted { refilled - 1.0 } else { refilled };
    on_handle!(Handle::Tx(&mut tx), c => sqlx::query(
        "UPDATE scheduler_rate_buckets SET tokens = $2, last_refill = $3, updated_at = $4 WHERE cert_cn = $1"
    )
    .bind(key)
    .bind(left)
    .bind(t)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(granted)
}

/// Gives one token back (capped at capacity; `last_refill` unchanged).
pub async fn refund_token(db: &Db, key: &str) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE scheduler_rate_buckets SET tokens = CASE WHEN tokens + 1 > capacity THEN capacity \
         ELSE tokens + 1 END, updated_at = $2 WHERE cert_cn = $1"
    )
    .bind(key)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
