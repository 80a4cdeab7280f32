//! The single ingest writer: every connection hands its prepared batches to
//! one task that group-commits whatever is waiting (one transaction, one
//! fsync, for many frames), then answers each batch. A batch is answered only
//! after its commit, so an ack always means "durable".

use super::prepare::{EventRow, TaskPatch, TaskState};
use crate::notify::{Alert, Alerts};
use crate::on_db;
use crate::store::{Db, Ts};
use sqlx::types::Json as SqlJson;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Frames waiting beyond this go into the next transaction.
const MAX_GROUP_FRAMES: usize = 512;
const MAX_GROUP_ROWS: usize = 10_000;
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Worth retrying (lock, connection, pool): the batch is not acked.
    #[error("transient database error: {0}")]
    Transient(String),
    /// Deterministic: retrying cannot help; the batch is dropped (acked).
    #[error("permanent database error: {0}")]
    Permanent(String),
}

struct Job {
    project_id: Uuid,
    agent_id: Uuid,
    rows: Vec<EventRow>,
    reply: oneshot::Sender<Result<u64, WriteError>>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct IngestWriter {
    tx: mpsc::Sender<Job>,
}

impl IngestWriter {
    pub fn spawn(db: Db, alerts: Alerts) -> (IngestWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = tokio::spawn(run(db, rx, alerts));
        (IngestWriter { tx }, handle)
    }

    /// Writes one batch; returns how many rows were newly inserted once they
    /// are committed.
    pub async fn write(
        &self,
        project_id: Uuid,
        agent_id: Uuid,
        rows: Vec<EventRow>,
    ) -> Result<u64, WriteError> {
        self.submit(project_id, agent_id, rows)
            .await?
            .committed()
            .await
    }

    /// Queues one batch for the writer (waiting only for queue room) and
    /// returns a handle to its commit. Batches are written in submission
    /// order, so a connection may keep many in flight.
    pub async fn submit(
        &self,
        project_id: Uuid,
        agent_id: Uuid,
        rows: Vec<EventRow>,
    ) -> Result<Commit, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            project_id,
            agent_id,
            rows,
            reply,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| WriteError::Transient("ingest writer stopped".into()))?;
        Ok(Commit(answer))
    }
}

/// A submitted batch; resolves once its transaction committed (or failed).
pub struct Commit(oneshot::Receiver<Result<u64, WriteError>>);

impl Commit {
    pub async fn committed(self) -> Result<u64, WriteError> {
        self.0
            .await
            .map_err(|_| WriteError::Transient("ingest writer stopped".into()))?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>, alerts: Alerts) {
    while let Some(first) = rx.recv().await {
        let mut rows = first.rows.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_FRAMES && rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.rows.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        match write_group(&db, &group).await {
            Ok((counts, failed)) => {
                for (job, n) in group.into_iter().zip(counts) {
                    let _ = job.reply.send(Ok(n));
                }
                failed.into_iter().for_each(|a| alerts.raise(a));
            }
            // One bad frame must not cost the others: retry each alone.
            Err(e) if group.len() > 1 => {
                tracing::warn!(error = %e, frames = group.len(), "group commit failed; writing frames one by one");
                for job in group {
                    let one = std::slice::from_ref(&job);
                    let result = write_group(&db, one)
                        .await
                        .map(|(c, failed)| {
                            failed.into_iter().for_each(|a| alerts.raise(a));
                            c.first().copied().unwrap_or(0)
                        })
                        .map_err(classify);
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                let err = classify(e);
                for job in group {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Spec 6.3: lock, connection and resource errors are transient; constraint
/// and data errors are permanent.
fn classify(e: sqlx::Error) -> WriteError {
    match &e {
        sqlx::Error::Database(d) => classify_code(d.code().as_deref(), e.to_string()),
        _ => WriteError::Transient(e.to_string()),
    }
}

fn classify_code(code: Option<&str>, text: String) -> WriteError {
    let Some(code) = code else {
        return WriteError::Permanent(text);
    };
    let transient_pg = code.len() == 5
        && (["08", "40", "53", "55", "57", "58"].contains(&&code[..2])
            || ["25006", "25P03", "25P04"].contains(&code));
    // SQLite primary codes 5 (BUSY), 6 (LOCKED) and 10 (IOERR), with their
    // extended codes.
    let transient_sqlite = code.len() <= 4
        && code
            .parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10));
    if transient_pg || transient_sqlite {
        WriteError::Transient(text)
    } else {
        WriteError::Permanent(text)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// Rows per multi-row statement: powers of two up to this, so each
/// (statement, size) pair is prepared once and reused from the cache.
const MAX_ROWS_PER_STATEMENT: usize = 256;

/// `($1, .., $k), ($k+1, ..)`: `rows` tuples of `cols` parameters. SQLite
/// gets anonymous `?` placeholders: the driver resolves a numbered one by a
/// linear name search, which is quadratic over thousands of parameters.
fn values(d: Dialect, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            match d {
                Dialect::Sqlite => out.push('?'),
                Dialect::Postgres => {
                    out.push('$');
                    out.push_str(&(r * cols + c + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// Splits `n` rows into power-of-two chunk sizes, largest first.
fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut size = MAX_ROWS_PER_STATEMENT;
    while n > 0 {
        while size > n {
            size /= 2;
        }
        out.push(size);
        n -= size;
    }
    out
}

fn insert_events_sql(d: Dialect, rows: usize) -> String {
    format!(
        "INSERT INTO events (id, project_id, agent_id, engine, task_id, kind, occurred_at, payload) \
         VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        values(d, rows, 8)
    )
}

const UPSERT_WORKER: &str = "INSERT INTO workers (id, project_id, engine, name, state, last_heartbeat, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, 'online', $5, $6, $6) \
     ON CONFLICT (project_id, engine, name) DO UPDATE SET state = 'online', \
     last_heartbeat = excluded.last_heartbeat, updated_at = excluded.updated_at \
     WHERE workers.last_heartbeat IS NULL OR workers.last_heartbeat < excluded.last_heartbeat";

const UPSERT_QUEUE: &str =
    "INSERT INTO queues (id, project_id, engine, name, last_seen_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6) \
     ON CONFLICT (project_id, engine, name) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
     updated_at = excluded.updated_at \
     WHERE queues.last_seen_at IS NULL OR queues.last_seen_at < excluded.last_seen_at";

const TOUCH_AGENT: &str = "UPDATE agents SET last_seen_at = $2 \
     WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $2)";

const STATES: [TaskState; 6] = [
    TaskState::Received,
    TaskState::Started,
    TaskState::Success,
    TaskState::Failure,
    TaskState::Retry,
    TaskState::Revoked,
];

/// The multi-row task upsert for one (dialect, state, size). Rows in one
/// statement have distinct task keys; `updated_at` carries the event's
/// instant, which the freshness guard compares with the row's lifecycle.
fn task_upsert_sql(d: Dialect, state: TaskState, rows: usize) -> String {
    let (latest, greatest) = match d {
        Dialect::Sqlite => (
            "max(COALESCE(tasks.received_at, ''), COALESCE(tasks.started_at, ''), COALESCE(tasks.finished_at, '')) <= excluded.updated_at",
            "max",
        ),
        Dialect::Postgres => (
            "(GREATEST(tasks.received_at, tasks.started_at, tasks.finished_at) IS NULL \
             OR GREATEST(tasks.received_at, tasks.started_at, tasks.finished_at) <= excluded.updated_at)",
            "GREATEST",
        ),
    };
    let mut set = vec![
        "state = excluded.state".to_owned(),
        "updated_at = excluded.updated_at".to_owned(),
        "queue = COALESCE(excluded.queue, tasks.queue)".to_owned(),
    ];
    let name_if_known =
        "name = CASE WHEN excluded.name <> 'unknown' THEN excluded.name ELSE tasks.name END";
    let name_if_missing =
        "name = CASE WHEN tasks.name = 'unknown' THEN excluded.name ELSE tasks.name END";
    match state {
        TaskState::Received => set.extend(
            [
                name_if_known,
                "received_at = excluded.received_at",
                "args = COALESCE(excluded.args, tasks.args)",
                "kwargs = COALESCE(excluded.kwargs, tasks.kwargs)",
                "priority = excluded.priority",
                "parent_task_id = COALESCE(excluded.parent_task_id, tasks.parent_task_id)",
                "root_task_id = COALESCE(excluded.root_task_id, tasks.root_task_id)",
            ]
            .map(str::to_owned),
        ),
        TaskState::Started => set.extend(
            [
                name_if_missing,
                "started_at = excluded.started_at",
                "worker_name = COALESCE(excluded.worker_name, tasks.worker_name)",
            ]
            .map(str::to_owned),
        ),
        TaskState::Success => set.extend(
            [
                name_if_missing,
                "finished_at = excluded.finished_at",
                "result = excluded.result",
                "runtime_ms = COALESCE(excluded.runtime_ms, tasks.runtime_ms)",
                "exception = NULL",
                "traceback = NULL",
            ]
            .map(str::to_owned),
        ),
        TaskState::Failure => set.extend(
            [
                name_if_missing,
                "finished_at = excluded.finished_at",
                "runtime_ms = COALESCE(excluded.runtime_ms, tasks.runtime_ms)",
                "exception = excluded.exception",
                "traceback = excluded.traceback",
                "result = NULL",
            ]
            .map(str::to_owned),
        ),
        TaskState::Retry => {
            set.push(name_if_missing.to_owned());
            set.push(format!(
                "retry_count = {greatest}(excluded.retry_count, tasks.retry_count + 1)"
            ));
        }
        TaskState::Revoked => set.extend(
            [
                name_if_missing,
                "finished_at = excluded.finished_at",
                "result = NULL",
                "runtime_ms = NULL",
                "exception = NULL",
                "traceback = NULL",
            ]
            .map(str::to_owned),
        ),
    }
    let guard = if state.is_terminal() {
        format!("tasks.state NOT IN ('success', 'failure', 'revoked') OR {latest}")
    } else {
        format!("tasks.state NOT IN ('success', 'failure', 'revoked') AND {latest}")
    };
    format!(
        "INSERT INTO tasks (id, project_id, engine, task_id, name, queue, state, priority, args, kwargs, \
         result, exception, traceback, retry_count, received_at, started_at, finished_at, runtime_ms, \
         worker_name, parent_task_id, root_task_id, created_at, updated_at) \
         VALUES {} \
         ON CONFLICT (project_id, engine, task_id) DO UPDATE SET {} WHERE {guard}",
        values(d, rows, 23),
        set.join(", ")
    )
}

/// Writes a group in one transaction; the newly inserted count per job.
/// Returns the new rows per job, and a `task.failed` alert for every newly
/// stored failure (raised only after the commit).
async fn write_group(db: &Db, jobs: &[Job]) -> Result<(Vec<u64>, Vec<Alert>), sqlx::Error> {
    let dialect = match db {
        Db::Sqlite(_) => Dialect::Sqlite,
        Db::Postgres(_) => Dialect::Postgres,
    };
    let now = Ts::now();
    // Every row of the group, in arrival order, with its job.
    let rows: Vec<(&Job, &EventRow)> = jobs
        .iter()
        .flat_map(|j| j.rows.iter().map(move |r| (j, r)))
        .collect();
    let job_of_row: Vec<usize> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, j)| std::iter::repeat_n(i, j.rows.len()))
        .collect();
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        // 1. Events, many per statement; RETURNING names the new ones.
        let mut inserted_ids: HashMap<Uuid, usize> = HashMap::new();
        let mut offset = 0;
        for size in chunk_sizes(rows.len()) {
            let sql = insert_events_sql(dialect, size);
            let mut q = sqlx::query_scalar::<_, Uuid>(&sql);
            for (job, row) in &rows[offset..offset + size] {
                q = q
                    .bind(row.id)
                    .bind(job.project_id)
                    .bind(job.agent_id)
                    .bind(&row.engine)
                    .bind(&row.task_id)
                    .bind(row.kind)
                    .bind(row.occurred_at)
                    .bind(SqlJson(&row.payload));
            }
            for id in q.fetch_all(&mut *tx).await? {
                *inserted_ids.entry(id).or_default() += 1;
            }
            offset += size;
        }
        // The first occurrence of each returned id is the inserted row (a
        // group may carry the same event twice).
        let inserted: Vec<bool> = rows
            .iter()
            .map(|(_, row)| match inserted_ids.get_mut(&row.id) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
            .collect();
        let failed: Vec<Alert> = rows
            .iter()
            .zip(&inserted)
            .filter(|(_, new)| **new)
            .filter_map(|((job, row), _)| {
                let t = row.task.as_ref().filter(|t| t.state == TaskState::Failure)?;
                Some(failure_alert(job.project_id, row, t))
            })
            .collect();
        let mut counts: Vec<u64> = vec![0; jobs.len()];
        // 2. Task upserts in rounds: round k holds each task's k-th event,
        // so keys are distinct within a statement and per-task order holds.
        let mut rounds: Vec<Vec<(&Job, &EventRow)>> = Vec::new();
        let mut seen: HashMap<(Uuid, &str, &str), usize> = HashMap::new();
        for (((job, row), new), ji) in rows.iter().zip(&inserted).zip(&job_of_row) {
            if !new {
                continue;
            }
            counts[*ji] += 1;
            if row.task.is_none() {
                continue;
            }
            let k = seen.entry((job.project_id, row.engine.as_str(), row.task_id.as_str())).or_insert(0);
            if rounds.len() <= *k {
                rounds.push(Vec::new());
            }
            rounds[*k].push((*job, *row));
            *k += 1;
        }
        for round in &rounds {
            for state in STATES {
                let of_state: Vec<&(&Job, &EventRow)> = round
                    .iter()
                    .filter(|(_, r)| r.task.as_ref().is_some_and(|t| t.state == state))
                    .collect();
                let mut offset = 0;
                for size in chunk_sizes(of_state.len()) {
                    let sql = task_upsert_sql(dialect, state, size);
                    let mut q = sqlx::query(&sql);
                    for (job, row) in &of_state[offset..offset + size] {
                        let Some(t) = &row.task else { continue };
                        let at = row.occurred_at;
                        let when = |s: TaskState| (t.state == s).then_some(at);
                        let retry_count = t
                            .retry_count
                            .unwrap_or(if t.state == TaskState::Retry { 1 } else { 0 });
                        q = q
                            .bind(Uuid::new_v4())
                            .bind(job.project_id)
                            .bind(&row.engine)
                            .bind(&row.task_id)
                            .bind(&t.name)
                            .bind(&t.queue)
                            .bind(t.state.as_str())
                            .bind(&t.priority)
                            .bind(t.args.as_ref().map(SqlJson))
                            .bind(t.kwargs.as_ref().map(SqlJson))
                            .bind(t.result.as_ref().map(SqlJson))
                            .bind(&t.exception)
                            .bind(&t.traceback)
                            .bind(retry_count)
                            .bind(when(TaskState::Received))
                            .bind(when(TaskState::Started))
                            .bind(t.state.is_terminal().then_some(at))
                            .bind(t.runtime_ms)
                            .bind(&t.worker_name)
                            .bind(&t.parent_task_id)
                            .bind(&t.root_task_id)
                            .bind(now)
                            .bind(at);
                    }
                    q.execute(&mut *tx).await?;
                    offset += size;
                }
            }
        }
        // 3. Workers and queues named by the events; the agents' last-seen.
        let mut workers: HashMap<(Uuid, &str, &str), Ts> = HashMap::new();
        let mut queues: HashMap<(Uuid, &str, &str), Ts> = HashMap::new();
        for (job, row) in &rows {
            if let Some(w) = &row.worker {
                let e = workers.entry((job.project_id, &row.engine, w)).or_insert(row.occurred_at);
                *e = (*e).max(row.occurred_at);
            }
            if let Some(q) = &row.queue {
                let e = queues.entry((job.project_id, &row.engine, q)).or_insert(row.occurred_at);
                *e = (*e).max(row.occurred_at);
            }
        }
        for ((project, engine, name), at) in &workers {
            sqlx::query(UPSERT_WORKER)
                .bind(Uuid::new_v4())
                .bind(*project)
                .bind(*engine)
                .bind(*name)
                .bind(*at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for ((project, engine, name), at) in &queues {
            sqlx::query(UPSERT_QUEUE)
                .bind(Uuid::new_v4())
                .bind(*project)
                .bind(*engine)
                .bind(*name)
                .bind(*at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let agents: std::collections::BTreeSet<Uuid> = jobs.iter().map(|j| j.agent_id).collect();
        for agent in agents {
            sqlx::query(TOUCH_AGENT)
                .bind(agent)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((counts, failed))
    })
}

fn failure_alert(project_id: Uuid, row: &EventRow, t: &TaskPatch) -> Alert {
    let mut fields = serde_json::Map::new();
    fields.insert("engine".into(), row.engine.clone().into());
    fields.insert("state".into(), "failure".into());
    fields.insert("queue".into(), t.queue.clone().into());
    fields.insert("exception".into(), t.exception.clone().into());
    fields.insert("worker_name".into(), t.worker_name.clone().into());
    Alert {
        project_id,
        trigger: "task.failed",
        task_id: Some(row.task_id.clone()),
        task_name: Some(t.name.clone()),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_upsert_is_built() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            for s in STATES {
                let sql = task_upsert_sql(d, s, 2);
                assert!(
                    sql.contains("ON CONFLICT (project_id, engine, task_id)"),
                    "{sql}"
                );
                let want = if d == Dialect::Postgres {
                    "$46)"
                } else {
                    "?), (?"
                };
                assert!(sql.contains(want), "two rows of 23 parameters: {sql}");
            }
        }
        assert!(task_upsert_sql(Dialect::Postgres, TaskState::Retry, 1).contains("GREATEST("));
        assert!(task_upsert_sql(Dialect::Sqlite, TaskState::Retry, 1).contains("max("));
    }

    #[test]
    fn chunks_are_powers_of_two_summing_to_n() {
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        assert_eq!(chunk_sizes(37), vec![32, 4, 1]);
        assert_eq!(chunk_sizes(600), vec![256, 256, 64, 16, 8]);
        assert_eq!(values(Dialect::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn lock_and_connection_errors_are_transient() {
        let pg = |c: &str| classify_code(Some(c), String::new());
        assert!(matches!(pg("40001"), WriteError::Transient(_)));
        assert!(matches!(pg("08006"), WriteError::Transient(_)));
        assert!(matches!(pg("25P03"), WriteError::Transient(_)));
        assert!(matches!(pg("23505"), WriteError::Permanent(_)));
        assert!(matches!(pg("5"), WriteError::Transient(_)));
        assert!(matches!(pg("517"), WriteError::Transient(_)));
        assert!(matches!(pg("19"), WriteError::Permanent(_)));
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            WriteError::Transient(_)
        ));
    }
}
