//! Read queries behind the tasks, events, workers, queues and stats routes.
//! Lists are keyset-paginated newest first on `(instant, id)`.

use super::{Db, StoreError, Ts};
use crate::on_read;
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Task {
    pub id: Uuid,
    pub project_id: Uuid,
    pub engine: String,
    pub task_id: String,
    pub name: String,
    pub queue: Option<String>,
    pub state: String,
    pub priority: String,
    pub args: Option<SqlJson<Json>>,
    pub kwargs: Option<SqlJson<Json>>,
    pub result: Option<SqlJson<Json>>,
    pub exception: Option<String>,
    pub traceback: Option<String>,
    pub retry_count: i32,
    pub received_at: Option<Ts>,
    pub started_at: Option<Ts>,
    pub finished_at: Option<Ts>,
    pub runtime_ms: Option<i64>,
    pub worker_name: Option<String>,
    pub parent_task_id: Option<String>,
    pub root_task_id: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

const TASK_COLUMNS: &str = "id, project_id, engine, task_id, name, queue, state, priority, args, kwargs, result, \
     exception, traceback, retry_count, received_at, started_at, finished_at, runtime_ms, worker_name, \
     parent_task_id, root_task_id, created_at, updated_at";

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub priorities: Option<String>,
    pub name: Option<String>,
    pub search: Option<String>,
    pub queue: Option<String>,
    pub worker: Option<String>,
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    /// A literal substring of the stored (redacted) arguments' JSON text.
    pub args: Option<String>,
}

/// A keyset position: rows strictly older than `(at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub at: Ts,
    pub id: Uuid,
}

/// The WHERE of a task listing. `name` and `search` are literal
/// substrings, ASCII case-insensitive (`search` across name, queue, worker
/// and task id; specs/decisions.md G11). A stored priority is one of
/// ingest's fixed words, so it is safe as a pattern. Every parameter is
/// bound and referenced whatever the filter; an unused one is `$n IS NULL`
/// and a used one a plain comparison, because `($n IS NULL OR col = $n)`
/// hides the column's index from SQLite's planner (a count over the last
/// hour walked the whole project).
fn task_where(f: &TaskFilter) -> String {
    let term = |used: bool, n: u8, cond: &str| {
        if used {
            cond.to_owned()
        } else {
            format!("${n} IS NULL")
        }
    };
    [
        "project_id = $1".to_owned(),
        term(f.state.is_some(), 2, "state = $2"),
        term(
            f.priorities.is_some(),
            3,
            "(',' || $3 || ',') LIKE ('%,' || priority || ',%')",
        ),
        term(f.name.is_some(), 4, "lower(name) LIKE $4 ESCAPE '\\'"),
        term(
            f.search.is_some(),
            5,
            "(lower(name) LIKE $5 ESCAPE '\\' OR lower(queue) LIKE $5 ESCAPE '\\' \
             OR lower(worker_name) LIKE $5 ESCAPE '\\' OR lower(task_id) LIKE $5 ESCAPE '\\')",
        ),
        term(f.queue.is_some(), 6, "queue = $6"),
        term(f.worker.is_some(), 7, "worker_name = $7"),
        term(f.since.is_some(), 8, "created_at >= $8"),
        term(f.until.is_some(), 9, "created_at < $9"),
        term(
            f.args.is_some(),
            10,
            "(lower(CAST(args AS TEXT)) LIKE $10 ESCAPE '\\' \
             OR lower(CAST(kwargs AS TEXT)) LIKE $10 ESCAPE '\\')",
        ),
    ]
    .join(" AND ")
}

/// The `LIKE` pattern of a literal, ASCII case-insensitive substring.
fn contains(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(|s| format!("%{}%", super::like_literal(&s.to_ascii_lowercase())))
}

pub async fn tasks(
    db: &Db,
    project_id: Uuid,
    f: &TaskFilter,
    after: Option<After>,
    limit: i64,
) -> Result<Vec<Task>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE {} AND {} \
         ORDER BY created_at DESC, id DESC LIMIT $13",
        task_where(f),
        match after {
            Some(_) => "(created_at < $11 OR (created_at = $11 AND id < $12))",
            None => "$11 IS NULL AND $12 IS NOT NULL",
        }
    );
    let (name, search, args) = (contains(&f.name), contains(&f.search), contains(&f.args));
    Ok(on_read!(db, p => sqlx::query_as::<_, Task>(&sql)
        .bind(project_id)
        .bind(&f.state)
        .bind(&f.priorities)
        .bind(&name)
        .bind(&search)
        .bind(&f.queue)
        .bind(&f.worker)
        .bind(f.since)
        .bind(f.until)
        .bind(&args)
        .bind(after.map(|a| a.at))
        .bind(after.map(|a| a.id).unwrap_or_default())
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

pub async fn count_tasks(db: &Db, project_id: Uuid, f: &TaskFilter) -> Result<i64, StoreError> {
    let sql = format!("SELECT count(*) FROM tasks WHERE {}", task_where(f));
    let (name, search, args) = (contains(&f.name), contains(&f.search), contains(&f.args));
    Ok(on_read!(db, p => sqlx::query_scalar::<_, i64>(&sql)
        .bind(project_id)
        .bind(&f.state)
        .bind(&f.priorities)
        .bind(&name)
        .bind(&search)
        .bind(&f.queue)
        .bind(&f.worker)
        .bind(f.since)
        .bind(f.until)
        .bind(&args)
        .fetch_one(p)
        .await)?)
}

pub async fn task(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    task_id: &str,
) -> Result<Option<Task>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE project_id = $1 AND engine = $2 AND task_id = $3"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Task>(&sql)
        .bind(project_id)
        .bind(engine)
        .bind(task_id)
        .fetch_optional(p)
        .await)?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    pub project_id: Uuid,
    pub agent_id: Uuid,
    pub engine: String,
    pub task_id: String,
    pub kind: String,
    pub occurred_at: Ts,
    pub payload: SqlJson<Json>,
}

pub async fn events(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    task_id: &str,
    after: Option<After>,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    // Without statistics SQLite walks the primary key (every event of the
    // project, newest first) rather than this index: 50-100 ms for one
    // task among 300 000 events, against well under 1 ms.
    let from = match db {
        Db::Sqlite(_) => "events INDEXED BY ix_events_project_task",
        Db::Postgres(_) => "events",
    };
    let sql = format!(
        "SELECT id, project_id, agent_id, engine, task_id, kind, occurred_at, payload FROM {from} \
         WHERE project_id = $1 AND engine = $2 AND task_id = $3 \
         AND ($4 IS NULL OR occurred_at < $4 OR (occurred_at = $4 AND id < $5)) \
         ORDER BY occurred_at DESC, id DESC LIMIT $6"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Event>(&sql)
    .bind(project_id)
    .bind(engine)
    .bind(task_id)
    .bind(after.map(|a| a.at))
    .bind(after.map(|a| a.id).unwrap_or_default())
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

/// Every stored event of a project, in (occurred_at, id) order (durability
/// checks and exports).
pub async fn count_events(db: &Db, project_id: Uuid) -> Result<i64, StoreError> {
    Ok(
        on_read!(db, p => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(p)
        .await)?,
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Worker {
    pub id: Uuid,
    pub project_id: Uuid,
    pub engine: String,
    pub name: String,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub concurrency: Option<i32>,
    pub queues: SqlJson<Json>,
    pub state: String,
    pub last_heartbeat: Option<Ts>,
    pub active_tasks: i32,
    pub created_at: Ts,
    pub updated_at: Ts,
}

pub async fn workers(db: &Db, project_id: Uuid) -> Result<Vec<Worker>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, Worker>(
        "SELECT id, project_id, engine, name, hostname, pid, concurrency, queues, state, last_heartbeat, \
         active_tasks, created_at, updated_at FROM workers WHERE project_id = $1 ORDER BY engine, name"
    )
    .bind(project_id)
    .fetch_all(p)
    .await)?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Queue {
    pub id: Uuid,
    pub project_id: Uuid,
    pub engine: String,
    pub name: String,
    pub last_seen_at: Option<Ts>,
    pub pending_count: i32,
    pub consumer_count: i32,
    pub created_at: Ts,
    pub updated_at: Ts,
}

pub async fn queues(db: &Db, project_id: Uuid) -> Result<Vec<Queue>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, Queue>(
        "SELECT id, project_id, engine, name, last_seen_at, pending_count, consumer_count, created_at, updated_at \
         FROM queues WHERE project_id = $1 ORDER BY engine, name"
    )
    .bind(project_id)
    .fetch_all(p)
    .await)?)
}

/// `(state, count)` over the project's tasks.
pub async fn task_state_counts(
    db: &Db,
    project_id: Uuid,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, (String, i64)>(
        "SELECT state, count(*) FROM tasks WHERE project_id = $1 GROUP BY state"
    )
    .bind(project_id)
    .fetch_all(p)
    .await)?)
}

/// Tasks that finished in `state` since `since`.
pub async fn finished_since(
    db: &Db,
    project_id: Uuid,
    state: super::ingest::TaskState,
    since: Ts,
) -> Result<i64, StoreError> {
    Ok(on_read!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM tasks WHERE project_id = $1 AND state = $2 AND finished_at >= $3"
    )
    .bind(project_id)
    .bind(state.as_str())
    .bind(since)
    .fetch_one(p)
    .await)?)
}

/// `(state, count)` of a table with a `state` column (agents, workers),
/// revoked agents excluded.
pub async fn state_counts(
    db: &Db,
    table: &'static str,
    project_id: Uuid,
) -> Result<Vec<(String, i64)>, StoreError> {
    let extra = if table == "agents" {
        " AND revoked_at IS NULL"
    } else {
        ""
    };
    let sql =
        format!("SELECT state, count(*) FROM {table} WHERE project_id = $1{extra} GROUP BY state");
    Ok(on_read!(db, p => sqlx::query_as::<_, (String, i64)>(&sql)
        .bind(project_id)
        .fetch_all(p)
        .await)?)
}

/// A task a bulk retry names: its id, name and priority.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Selected {
    pub task_id: String,
    pub name: String,
    pub priority: String,
}

/// Which of `ids` are tasks of `engine` in the project (any order).
pub async fn owned_tasks(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    ids: &[String],
) -> Result<Vec<Selected>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    // Chunks keep every statement well under both dialects' bind limits.
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT task_id, name, priority FROM tasks \
             WHERE project_id = $1 AND engine = $2 AND task_id IN ({})",
            marks.join(", ")
        );
        let rows = on_read!(db, p => {
            let mut q = sqlx::query_as::<_, Selected>(&sql).bind(project_id).bind(engine);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

/// What an all-matching bulk retry selects: exact state, name and queue,
/// a created-at window; newest first, at most `limit`.
#[derive(Debug, Default)]
pub struct Selection {
    pub state: Option<String>,
    pub name: Option<String>,
    pub queue: Option<String>,
    pub since: Option<Ts>,
    pub until: Option<Ts>,
}

pub async fn matching_tasks(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    s: &Selection,
    limit: i64,
) -> Result<Vec<Selected>, StoreError> {
    let sql = "SELECT task_id, name, priority FROM tasks \
         WHERE project_id = $1 AND engine = $2 \
         AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR name = $4) \
         AND ($5 IS NULL OR queue = $5) \
         AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) \
         ORDER BY created_at DESC, id DESC LIMIT $8";
    Ok(on_read!(db, p => sqlx::query_as::<_, Selected>(sql)
        .bind(project_id)
        .bind(engine)
        .bind(&s.state)
        .bind(&s.name)
        .bind(&s.queue)
        .bind(s.since)
        .bind(s.until)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}
