//! The ingest tables' writes: one group commit of prepared event rows
//! (events, the task projection, workers, queues, agents' last-seen). What
//! a row is made of, and when it is written, is `crate::ingest`'s.

use super::{Db, Handle, StoreError, Ts, Tx};
use crate::on_handle;
use serde_json::value::RawValue;
use sqlx::types::Json as SqlJson;
use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

crate::text_enum! {
    /// The task states events project (`tasks.state`; the column also
    /// allows `pending` and `rejected`, which no event writes).
    pub enum TaskState {
        Received = "received",
        Started = "started",
        Success = "success",
        Failure = "failure",
        Retry = "retry",
        Revoked = "revoked",
    }
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }
}

/// The priorities a task is stored with (anything else is stored as
/// `normal`).
pub const TASK_PRIORITIES: &[&str] = &["critical", "high", "normal", "low"];

/// What a state-changing event writes onto its task row.
#[derive(Debug, Clone)]
pub struct TaskPatch {
    pub state: TaskState,
    pub name: String,
    pub queue: Option<String>,
    pub priority: String,
    pub args: Option<Box<RawValue>>,
    pub kwargs: Option<Box<RawValue>>,
    pub result: Option<Box<RawValue>>,
    pub exception: Option<String>,
    pub traceback: Option<String>,
    pub retry_count: Option<i64>,
    pub runtime_ms: Option<i64>,
    pub worker_name: Option<String>,
    pub parent_task_id: Option<String>,
    pub root_task_id: Option<String>,
    /// On a failure: its fingerprint (`None` when it has no exception or
    /// traceback); kept on the row across a later success.
    pub fingerprint: Option<String>,
}

/// One event ready to insert.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: Uuid,
    pub engine: String,
    pub task_id: String,
    pub kind: &'static str,
    pub occurred_at: Ts,
    pub payload: Box<RawValue>,
    pub task: Option<TaskPatch>,
    pub worker: Option<String>,
    pub queue: Option<String>,
}

/// One frame's rows, from one agent of one project.
pub struct Frame<'a> {
    pub project_id: Uuid,
    pub agent_id: Uuid,
    pub rows: &'a [EventRow],
}

/// What a group commit stored.
pub struct Written {
    /// Newly inserted events per frame.
    pub counts: Vec<u64>,
    /// Per row of the group, in order (frames concatenated): whether it was
    /// new (a duplicate event is stored once).
    pub inserted: Vec<bool>,
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

/// `items` in consecutive slices of the sizes `chunk_sizes` gives.
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    chunk_sizes(items.len()).into_iter().map(move |size| {
        let (chunk, rest) = items.split_at(size);
        items = rest;
        chunk
    })
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
                "fingerprint = excluded.fingerprint",
                "last_failed_at = excluded.last_failed_at",
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
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES {} ON CONFLICT (project_id, engine, task_id) DO UPDATE SET {} WHERE {guard}",
        values(d, rows, 25),
        set.join(", ")
    )
}

/// A row of the group with the frame it came in.
type Item<'a> = (&'a Frame<'a>, &'a EventRow);

/// Writes a group of frames in one transaction (one fsync for all).
pub async fn write_group(db: &Db, frames: &[Frame<'_>]) -> Result<Written, StoreError> {
    let dialect = match db {
        Db::Sqlite(_) => Dialect::Sqlite,
        Db::Postgres(_) => Dialect::Postgres,
    };
    let now = Ts::now();
    let rows: Vec<Item<'_>> = frames
        .iter()
        .flat_map(|f| f.rows.iter().map(move |r| (f, r)))
        .collect();
    let mut tx = db.begin().await?;
    let inserted = insert_events(&mut tx, dialect, &rows).await?;
    let mut counts: Vec<u64> = vec![0; frames.len()];
    let frame_of_row = frames
        .iter()
        .enumerate()
        .flat_map(|(i, f)| std::iter::repeat_n(i, f.rows.len()));
    for (new, fi) in inserted.iter().zip(frame_of_row) {
        counts[fi] += u64::from(*new);
    }
    let new_rows: Vec<Item<'_>> = rows
        .iter()
        .zip(&inserted)
        .filter(|(_, new)| **new)
        .map(|(r, _)| *r)
        .collect();
    upsert_tasks(&mut tx, dialect, &new_rows, now).await?;
    touch_observed(&mut tx, frames, &rows, now).await?;
    tx.commit().await?;
    Ok(Written { counts, inserted })
}

/// Events, many per statement; `RETURNING` names the new ones. The first
/// occurrence of each returned id is the inserted row (a group may carry
/// the same event twice).
async fn insert_events(
    tx: &mut Tx,
    dialect: Dialect,
    rows: &[Item<'_>],
) -> Result<Vec<bool>, StoreError> {
    let mut inserted_ids: HashMap<Uuid, usize> = HashMap::new();
    for chunk in chunks(rows) {
        let sql = insert_events_sql(dialect, chunk.len());
        let ids: Vec<Uuid> = on_handle!(Handle::Tx(&mut *tx), c => {
            let mut q = sqlx::query_scalar::<_, Uuid>(&sql);
            for (frame, row) in chunk {
                q = q
                    .bind(row.id)
                    .bind(frame.project_id)
                    .bind(frame.agent_id)
                    .bind(&row.engine)
                    .bind(&row.task_id)
                    .bind(row.kind)
                    .bind(row.occurred_at)
                    .bind(SqlJson(&row.payload));
            }
            q.fetch_all(c).await
        })?;
        for id in ids {
            *inserted_ids.entry(id).or_default() += 1;
        }
    }
    Ok(rows
        .iter()
        .map(|(_, row)| match inserted_ids.get_mut(&row.id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .collect())
}

/// A task row's columns as one event's upsert binds them (`excluded` in
/// the upsert), and, folded, as a run of upserts leaves the row.
#[derive(Debug, Clone)]
struct TaskValues<'a> {
    name: &'a str,
    queue: Option<&'a str>,
    state: TaskState,
    priority: &'a str,
    args: Option<&'a RawValue>,
    kwargs: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    exception: Option<&'a str>,
    traceback: Option<&'a str>,
    retry_count: i64,
    received_at: Option<Ts>,
    started_at: Option<Ts>,
    finished_at: Option<Ts>,
    runtime_ms: Option<i64>,
    worker_name: Option<&'a str>,
    parent_task_id: Option<&'a str>,
    root_task_id: Option<&'a str>,
    fingerprint: Option<&'a str>,
    last_failed_at: Option<Ts>,
    /// The event's instant: what the freshness guard compares with.
    updated_at: Ts,
}

impl<'a> TaskValues<'a> {
    fn of(row: &'a EventRow, t: &'a TaskPatch) -> Self {
        let at = row.occurred_at;
        let when = |s: TaskState| (t.state == s).then_some(at);
        TaskValues {
            name: &t.name,
            queue: t.queue.as_deref(),
            state: t.state,
            priority: &t.priority,
            args: t.args.as_deref(),
            kwargs: t.kwargs.as_deref(),
            result: t.result.as_deref(),
            exception: t.exception.as_deref(),
            traceback: t.traceback.as_deref(),
            retry_count: t
                .retry_count
                .unwrap_or(if t.state == TaskState::Retry { 1 } else { 0 }),
            received_at: when(TaskState::Received),
            started_at: when(TaskState::Started),
            finished_at: t.state.is_terminal().then_some(at),
            runtime_ms: t.runtime_ms,
            worker_name: t.worker_name.as_deref(),
            parent_task_id: t.parent_task_id.as_deref(),
            root_task_id: t.root_task_id.as_deref(),
            fingerprint: t.fingerprint.as_deref(),
            last_failed_at: when(TaskState::Failure),
            updated_at: at,
        }
    }

    /// What `task_upsert_sql(next.state)`'s `DO UPDATE ... WHERE guard`
    /// does to this row. The store test
    /// `coalesced_task_upserts_equal_one_by_one` holds the two to each other.
    fn absorb(&mut self, next: &TaskValues<'a>) {
        let latest = [self.received_at, self.started_at, self.finished_at]
            .into_iter()
            .flatten()
            .max();
        let fresh = latest.is_none_or(|l| l <= next.updated_at);
        let open = !self.state.is_terminal();
        let applies = if next.state.is_terminal() {
            open || fresh
        } else {
            open && fresh
        };
        if !applies {
            return;
        }
        self.state = next.state;
        self.updated_at = next.updated_at;
        self.queue = next.queue.or(self.queue);
        let name_if_missing = if self.name == "unknown" {
            next.name
        } else {
            self.name
        };
        match next.state {
            TaskState::Received => {
                if next.name != "unknown" {
                    self.name = next.name;
                }
                self.received_at = next.received_at;
                self.args = next.args.or(self.args);
                self.kwargs = next.kwargs.or(self.kwargs);
                self.priority = next.priority;
                self.parent_task_id = next.parent_task_id.or(self.parent_task_id);
                self.root_task_id = next.root_task_id.or(self.root_task_id);
            }
            TaskState::Started => {
                self.name = name_if_missing;
                self.started_at = next.started_at;
                self.worker_name = next.worker_name.or(self.worker_name);
            }
            TaskState::Success => {
                self.name = name_if_missing;
                self.finished_at = next.finished_at;
                self.result = next.result;
                self.runtime_ms = next.runtime_ms.or(self.runtime_ms);
                self.exception = None;
                self.traceback = None;
            }
            TaskState::Failure => {
                self.name = name_if_missing;
                self.finished_at = next.finished_at;
                self.runtime_ms = next.runtime_ms.or(self.runtime_ms);
                self.exception = next.exception;
                self.traceback = next.traceback;
                self.result = None;
                self.fingerprint = next.fingerprint;
                self.last_failed_at = next.last_failed_at;
            }
            TaskState::Retry => {
                self.name = name_if_missing;
                self.retry_count = next.retry_count.max(self.retry_count + 1);
            }
            TaskState::Revoked => {
                self.name = name_if_missing;
                self.finished_at = next.finished_at;
                self.result = None;
                self.runtime_ms = None;
                self.exception = None;
                self.traceback = None;
            }
        }
    }
}

const TASK_COLUMNS: &str = "id, project_id, engine, task_id, name, queue, state, priority, args, kwargs, \
     result, exception, traceback, retry_count, received_at, started_at, finished_at, runtime_ms, \
     worker_name, parent_task_id, root_task_id, fingerprint, last_failed_at, created_at, updated_at";

/// A task row to insert: its id, project, key and columns.
struct TaskInsert<'a> {
    /// Time-ordered (v7), so a new row's id lands at the end of the
    /// primary key's B-tree: a random (v4) id dirtied a random page of it
    /// per task, and on a large table that page was seldom in the cache.
    id: Uuid,
    project_id: Uuid,
    engine: &'a str,
    task_id: &'a str,
    values: TaskValues<'a>,
}

/// Binds `rows` in `TASK_COLUMNS` order (`created_at` is `now`).
async fn execute_tasks<'a, R: Borrow<TaskInsert<'a>>>(
    tx: &mut Tx,
    sql: &str,
    rows: &[R],
    now: Ts,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(on_handle!(Handle::Tx(&mut *tx), c => {
        let mut q = sqlx::query_scalar::<_, Uuid>(sql);
        for r in rows {
            let r = r.borrow();
            let v = &r.values;
            q = q
                .bind(r.id)
                .bind(r.project_id)
                .bind(r.engine)
                .bind(r.task_id)
                .bind(v.name)
                .bind(v.queue)
                .bind(v.state.as_str())
                .bind(v.priority)
                .bind(v.args.map(SqlJson))
                .bind(v.kwargs.map(SqlJson))
                .bind(v.result.map(SqlJson))
                .bind(v.exception)
                .bind(v.traceback)
                .bind(v.retry_count)
                .bind(v.received_at)
                .bind(v.started_at)
                .bind(v.finished_at)
                .bind(v.runtime_ms)
                .bind(v.worker_name)
                .bind(v.parent_task_id)
                .bind(v.root_task_id)
                .bind(v.fingerprint)
                .bind(v.last_failed_at)
                .bind(now)
                .bind(v.updated_at);
        }
        q.fetch_all(c).await
    })?)
}

/// Task writes of the new rows. A task whose events in this group begin
/// with `received` and number more than one is most likely new: its events
/// are folded into one row and inserted once (one insert instead of an
/// insert and an update per later event, each with its index changes). If
/// the row exists after all, nothing is inserted and its events take the
/// general path: upserts in rounds, round k holding each task's k-th
/// event, so keys are distinct within a statement and per-task order holds.
async fn upsert_tasks(
    tx: &mut Tx,
    dialect: Dialect,
    new_rows: &[Item<'_>],
    now: Ts,
) -> Result<(), StoreError> {
    type Key<'a> = (Uuid, &'a str, &'a str);
    let mut order: Vec<Key<'_>> = Vec::new();
    let mut by_task: HashMap<Key<'_>, Vec<(&EventRow, &TaskPatch)>> = HashMap::new();
    for (frame, row) in new_rows {
        let Some(t) = &row.task else { continue };
        let key = (frame.project_id, row.engine.as_str(), row.task_id.as_str());
        by_task
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((row, t));
    }
    let mut folded: Vec<TaskInsert<'_>> = Vec::new();
    let mut general: Vec<Key<'_>> = Vec::new();
    for key in &order {
        let events = &by_task[key];
        match events.as_slice() {
            [(first_row, first), rest @ ..]
                if !rest.is_empty() && first.state == TaskState::Received =>
            {
                let mut values = TaskValues::of(first_row, first);
                for (row, t) in rest {
                    values.absorb(&TaskValues::of(row, t));
                }
                folded.push(TaskInsert {
                    id: Uuid::now_v7(),
                    project_id: key.0,
                    engine: key.1,
                    task_id: key.2,
                    values,
                });
            }
            _ => general.push(*key),
        }
    }
    let mut inserted: BTreeSet<Uuid> = BTreeSet::new();
    for chunk in chunks(&folded) {
        let sql = format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
            values(dialect, chunk.len(), 25)
        );
        inserted.extend(execute_tasks(tx, &sql, chunk, now).await?);
    }
    for f in &folded {
        if !inserted.contains(&f.id) {
            general.push((f.project_id, f.engine, f.task_id));
        }
    }

    let mut rounds: Vec<Vec<TaskInsert<'_>>> = Vec::new();
    for key in &general {
        for (k, (row, t)) in by_task[key].iter().enumerate() {
            if rounds.len() <= k {
                rounds.push(Vec::new());
            }
            rounds[k].push(TaskInsert {
                id: Uuid::now_v7(),
                project_id: key.0,
                engine: key.1,
                task_id: key.2,
                values: TaskValues::of(row, t),
            });
        }
    }
    for round in &rounds {
        for &state in TaskState::ALL {
            let of_state: Vec<&TaskInsert<'_>> =
                round.iter().filter(|r| r.values.state == state).collect();
            for chunk in chunks(&of_state) {
                let sql = task_upsert_sql(dialect, state, chunk.len());
                execute_tasks(tx, &sql, chunk, now).await?;
            }
        }
    }
    Ok(())
}

/// Workers and queues named by the events (newest sighting wins), and the
/// sending agents' last-seen.
async fn touch_observed(
    tx: &mut Tx,
    frames: &[Frame<'_>],
    rows: &[Item<'_>],
    now: Ts,
) -> Result<(), StoreError> {
    let mut workers: HashMap<(Uuid, &str, &str), Ts> = HashMap::new();
    let mut queues: HashMap<(Uuid, &str, &str), Ts> = HashMap::new();
    for (frame, row) in rows {
        if let Some(w) = &row.worker {
            let e = workers
                .entry((frame.project_id, &row.engine, w))
                .or_insert(row.occurred_at);
            *e = (*e).max(row.occurred_at);
        }
        if let Some(q) = &row.queue {
            let e = queues
                .entry((frame.project_id, &row.engine, q))
                .or_insert(row.occurred_at);
            *e = (*e).max(row.occurred_at);
        }
    }
    for (sql, seen) in [(UPSERT_WORKER, &workers), (UPSERT_QUEUE, &queues)] {
        for ((project, engine, name), at) in seen {
            on_handle!(Handle::Tx(&mut *tx), c => sqlx::query(sql)
                .bind(Uuid::new_v4())
                .bind(*project)
                .bind(*engine)
                .bind(*name)
                .bind(*at)
                .bind(now)
                .execute(c)
                .await
                .map(|_| ()))?;
        }
    }
    let agents: BTreeSet<Uuid> = frames.iter().map(|f| f.agent_id).collect();
    for agent in agents {
        on_handle!(Handle::Tx(&mut *tx), c => sqlx::query(TOUCH_AGENT)
            .bind(agent)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_upsert_is_built() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            for &s in TaskState::ALL {
                let sql = task_upsert_sql(d, s, 2);
                assert!(
                    sql.contains("ON CONFLICT (project_id, engine, task_id)"),
                    "{sql}"
                );
                let want = if d == Dialect::Postgres {
                    "$50)"
                } else {
                    "?), (?"
                };
                assert!(sql.contains(want), "two rows of 25 parameters: {sql}");
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
        let items: Vec<usize> = (0..37).collect();
        let parts: Vec<&[usize]> = chunks(&items).collect();
        assert_eq!(
            parts.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![32, 4, 1]
        );
        assert_eq!(parts.concat(), items, "in order, nothing lost");
        assert_eq!(values(Dialect::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
