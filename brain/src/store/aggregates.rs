//! Aggregates behind the dashboard's summary routes (dashboard spec 3.1–3.3):
//! per-project counters for the home summary, recent failures across
//! projects, and a project's finished tasks bucketed in time.
//!
//! The counters cover every project in one statement each, so the
//! summary costs a fixed number of queries however many projects it shows.

use super::{Db, StoreError, Ts};
use crate::on_read;
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use std::collections::HashMap;
use uuid::Uuid;

/// The condition of the partial kind index (migration 0018). SQLite uses a
/// partial index only for a query that states its condition, so the reads
/// by kind repeat it.
const INDEXED_KINDS: &str = "kind IN ('task.received', 'task.failed')";

/// What the home summary counts for one project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `task.received` events in the window.
    pub received: i64,
    /// `task.failed` events in the window.
    pub failed: i64,
    pub workers_online: i64,
    pub workers_total: i64,
    pub agents_online: i64,
    /// Agents that are not revoked.
    pub agents_total: i64,
    /// Dispatched commands whose deadline has passed.
    pub stuck_commands: i64,
    pub last_activity: Option<Ts>,
}

/// The counters of every project that has any, keyed by project id.
/// `since` bounds the event counts; `active_since` the newest activity.
pub async fn counters(
    db: &Db,
    since: Ts,
    active_since: Ts,
    now: Ts,
) -> Result<HashMap<Uuid, Counters>, StoreError> {
    let mut out: HashMap<Uuid, Counters> = HashMap::new();
    // Per project, so each count is a range of an index: the received and
    // failed events of one project since an instant (the partial kind
    // index), and its newest event from the primary key.
    let sql = format!(
        "SELECT p.id, \
            (SELECT count(*) FROM events e WHERE e.project_id = p.id AND e.kind = 'task.received' \
               AND e.{INDEXED_KINDS} AND e.occurred_at >= $1), \
            (SELECT count(*) FROM events e WHERE e.project_id = p.id AND e.kind = 'task.failed' \
               AND e.{INDEXED_KINDS} AND e.occurred_at >= $1), \
            (SELECT e.occurred_at FROM events e WHERE e.project_id = p.id AND e.occurred_at >= $2 \
               ORDER BY e.occurred_at DESC LIMIT 1) \
         FROM projects p"
    );
    let events = on_read!(db, p => sqlx::query_as::<_, (Uuid, i64, i64, Option<Ts>)>(&sql)
    .bind(since)
    .bind(active_since)
    .fetch_all(p)
    .await)?;
    for (id, received, failed, newest) in events {
        if received == 0 && failed == 0 && newest.is_none() {
            continue;
        }
        let c = out.entry(id).or_default();
        c.received = received;
        c.failed = failed;
        c.last_activity = newest;
    }
    let online_total = |table: &str, extra: &str| {
        format!(
            "SELECT project_id, sum(CASE WHEN state = 'online' THEN 1 ELSE 0 END), count(*) \
             FROM {table} {extra} GROUP BY project_id"
        )
    };
    let sql = online_total("workers", "");
    let workers =
        on_read!(db, p => sqlx::query_as::<_, (Uuid, i64, i64)>(&sql).fetch_all(p).await)?;
    for (id, online, total) in workers {
        let c = out.entry(id).or_default();
        c.workers_online = online;
        c.workers_total = total;
    }
    let sql = online_total("agents", "WHERE revoked_at IS NULL");
    let agents = on_read!(db, p => sqlx::query_as::<_, (Uuid, i64, i64)>(&sql).fetch_all(p).await)?;
    for (id, online, total) in agents {
        let c = out.entry(id).or_default();
        c.agents_online = online;
        c.agents_total = total;
    }
    let stuck = on_read!(db, p => sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT project_id, count(*) FROM commands \
         WHERE status = 'dispatched' AND timeout_at < $1 GROUP BY project_id"
    )
    .bind(now)
    .fetch_all(p)
    .await)?;
    for (id, n) in stuck {
        out.entry(id).or_default().stuck_commands = n;
    }
    Ok(out)
}

/// A stored `task.failed` event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Failure {
    pub id: Uuid,
    pub occurred_at: Ts,
    pub project_id: Uuid,
    pub engine: String,
    pub task_id: String,
    pub payload: SqlJson<Json>,
}

/// Which projects a cross-project read covers: the active ones, narrowed
/// to a member's projects and to a key's bound project.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    pub member: Option<Uuid>,
    pub bound: Option<Uuid>,
}

/// `task.failed` events of the reachable projects, newest first, strictly
/// older than `before` (an `(occurred_at, id)` position).
pub async fn recent_failures(
    db: &Db,
    reach: Reach,
    before: Option<(Ts, Uuid)>,
    limit: i64,
) -> Result<Vec<Failure>, StoreError> {
    let sql = format!(
        "SELECT id, occurred_at, project_id, engine, task_id, payload FROM events \
         WHERE kind = 'task.failed' AND {INDEXED_KINDS} \
         AND project_id IN (SELECT id FROM projects WHERE is_active \
             AND ($1 IS NULL OR id IN (SELECT project_id FROM memberships WHERE user_id = $1)) \
             AND ($2 IS NULL OR id = $2)) \
         AND ($3 IS NULL OR occurred_at < $3 OR (occurred_at = $3 AND id < $4)) \
         ORDER BY occurred_at DESC, id DESC LIMIT $5"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Failure>(&sql)
    .bind(reach.member)
    .bind(reach.bound)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1).unwrap_or_default())
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

/// One (bucket, state) cell of a project's finished tasks.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TrendCell {
    /// Bucket start, seconds since the Unix epoch.
    pub bucket: i64,
    pub state: String,
    pub count: i64,
    /// Sum and count of the runtimes the rows carry.
    pub runtime_sum: i64,
    pub runtime_count: i64,
}

/// Tasks of the project finished at or after `since` in a terminal-ish
/// state, counted per `bucket_secs`-wide bucket aligned to the epoch.
pub async fn trend_cells(
    db: &Db,
    project_id: Uuid,
    since: Ts,
    bucket_secs: i64,
) -> Result<Vec<TrendCell>, StoreError> {
    const WHERE: &str = "FROM tasks WHERE project_id = $1 AND finished_at >= $2 \
         AND state IN ('success', 'failure', 'retry', 'revoked')";
    // Parsing every row's instant (strftime) was most of SQLite's time
    // (about 130 of 160 ms over 100 000 tasks): it groups by the stored
    // text's minute instead and the minutes are bucketed here.
    if let (Db::Sqlite(s), 0) = (db, bucket_secs % 60) {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT substr(finished_at, 1, 16), state, count(*), \
             CAST(coalesce(sum(runtime_ms), 0) AS INTEGER), count(runtime_ms) \
             {WHERE} GROUP BY 1, 2"
        ))
        .bind(project_id)
        .bind(since)
        .fetch_all(&s.read)
        .await?;
        return Ok(minutes_to_buckets(rows, bucket_secs));
    }
    // The one dialect difference: how an instant becomes epoch seconds.
    let (bucket, sum) = match db {
        Db::Sqlite(_) => (
            "(CAST(strftime('%s', finished_at) AS INTEGER) / $3) * $3",
            "CAST(coalesce(sum(runtime_ms), 0) AS INTEGER)",
        ),
        Db::Postgres(_) => (
            "(floor(extract(epoch FROM finished_at) / $3) * $3)::bigint",
            "coalesce(sum(runtime_ms), 0)::bigint",
        ),
    };
    let sql = format!(
        "SELECT {bucket} AS bucket, state, count(*) AS count, {sum} AS runtime_sum, \
                count(runtime_ms) AS runtime_count {WHERE} GROUP BY 1, 2 ORDER BY 1, 2"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, TrendCell>(&sql)
        .bind(project_id)
        .bind(since)
        .bind(bucket_secs)
        .fetch_all(p)
        .await)?)
}

/// Per-minute cells (`YYYY-MM-DD HH:MM` as stored, state, count, runtime
/// sum and count) merged into `bucket_secs`-wide cells (a multiple of 60),
/// ordered by bucket and state; a minute that does not parse is skipped.
fn minutes_to_buckets(
    rows: Vec<(String, String, i64, i64, i64)>,
    bucket_secs: i64,
) -> Vec<TrendCell> {
    let mut cells: std::collections::BTreeMap<(i64, String), TrendCell> = Default::default();
    for (minute, state, count, runtime_sum, runtime_count) in rows {
        let Ok(at) =
            chrono::NaiveDateTime::parse_from_str(&minute.replacen('T', " ", 1), "%Y-%m-%d %H:%M")
        else {
            continue;
        };
        let secs = at.and_utc().timestamp();
        let bucket = secs.div_euclid(bucket_secs) * bucket_secs;
        let c = cells
            .entry((bucket, state.clone()))
            .or_insert_with(|| TrendCell {
                bucket,
                state,
                count: 0,
                runtime_sum: 0,
                runtime_count: 0,
            });
        c.count += count;
        c.runtime_sum += runtime_sum;
        c.runtime_count += runtime_count;
    }
    cells.into_values().collect()
}

/// A project's commands: `(pending or dispatched, completed, failed,
/// timed out)`, the last three finished at or after `since`.
pub async fn command_counts(
    db: &Db,
    project_id: Uuid,
    since: Ts,
) -> Result<(i64, i64, i64, i64), StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, (i64, i64, i64, i64)>(
        "SELECT \
           coalesce(sum(CASE WHEN status IN ('pending', 'dispatched') THEN 1 ELSE 0 END), 0), \
           coalesce(sum(CASE WHEN status = 'completed' AND completed_at >= $2 THEN 1 ELSE 0 END), 0), \
           coalesce(sum(CASE WHEN status = 'failed' AND completed_at >= $2 THEN 1 ELSE 0 END), 0), \
           coalesce(sum(CASE WHEN status = 'timeout' AND completed_at >= $2 THEN 1 ELSE 0 END), 0) \
         FROM commands WHERE project_id = $1"
    )
    .bind(project_id)
    .bind(since)
    .fetch_one(p)
    .await)?)
}

/// One (bucket, status) cell of a project's answered or timed-out
/// commands, bucketed by when they finished.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LatencyCell {
    /// Bucket start, seconds since the Unix epoch.
    pub bucket: i64,
    pub status: String,
    pub count: i64,
    /// Sum and maximum of issue-to-result milliseconds; 0 for timeouts,
    /// whose wait says only what the timeout was.
    pub sum_ms: i64,
    pub max_ms: i64,
}

/// Commands of the project that finished (`completed`, `failed` or
/// `timeout`) at or after `since`, per `bucket_secs`-wide epoch-aligned
/// bucket, with how long each took from issue to the agent's result.
pub async fn command_latency(
    db: &Db,
    project_id: Uuid,
    since: Ts,
    bucket_secs: i64,
) -> Result<Vec<LatencyCell>, StoreError> {
    // The dialects differ in turning instants into epoch seconds and
    // intervals into milliseconds; a negative wait (clocks of two
    // replicas) counts as 0.
    let (bucket, wait) = match db {
        Db::Sqlite(_) => (
            "(CAST(strftime('%s', completed_at) AS INTEGER) / $3) * $3",
            "max(CAST(round((julianday(completed_at) - julianday(issued_at)) * 86400000.0) AS INTEGER), 0)",
        ),
        Db::Postgres(_) => (
            "(floor(extract(epoch FROM completed_at) / $3) * $3)::bigint",
            "greatest(round(extract(epoch FROM completed_at - issued_at) * 1000)::bigint, 0)",
        ),
    };
    let ms = format!("CASE WHEN status = 'timeout' THEN 0 ELSE {wait} END");
    let sql = format!(
        "SELECT {bucket} AS bucket, status, count(*) AS count, \
                CAST(coalesce(sum({ms}), 0) AS BIGINT) AS sum_ms, \
                CAST(coalesce(max({ms}), 0) AS BIGINT) AS max_ms \
         FROM commands WHERE project_id = $1 AND completed_at >= $2 \
           AND status IN ('completed', 'failed', 'timeout') \
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, LatencyCell>(&sql)
        .bind(project_id)
        .bind(since)
        .bind(bucket_secs)
        .fetch_all(p)
        .await)?)
}

/// One failure group of a project's tasks.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IssueRow {
    pub fingerprint: String,
    pub occurrences: i64,
    pub open_count: i64,
    pub first_seen: Ts,
    pub last_seen: Ts,
    pub engine_count: i64,
    pub sample_exception: Option<String>,
    pub sample_task_name: Option<String>,
}

/// What narrows the groups: an engine, a "seen" instant (a row's last
/// failure, else its finish, else its creation), and recovered (no row
/// still failing) or ongoing.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    pub engine: Option<String>,
    pub seen_since: Option<Ts>,
    pub recovered: Option<bool>,
}

const ISSUE_ROWS: &str = "SELECT fingerprint, engine, state, exception, name, \
       COALESCE(last_failed_at, finished_at, created_at) AS seen \
     FROM tasks WHERE project_id = $1 AND fingerprint IS NOT NULL \
     AND ($2 IS NULL OR engine = $2)";

/// A page of groups, newest last-seen first (then fingerprint, descending).
pub async fn issues(
    db: &Db,
    project_id: Uuid,
    f: &IssueFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<IssueRow>, StoreError> {
    let sql = format!(
        "SELECT fingerprint, count(*) AS occurrences, \
           sum(CASE WHEN state = 'failure' THEN 1 ELSE 0 END) AS open_count, \
           min(seen) AS first_seen, max(seen) AS last_seen, \
           count(DISTINCT engine) AS engine_count, \
           max(exception) AS sample_exception, max(name) AS sample_task_name \
         FROM ({ISSUE_ROWS}) AS t WHERE ($3 IS NULL OR seen >= $3) \
         GROUP BY fingerprint \
         HAVING ($4 IS NULL OR $4 = (sum(CASE WHEN state = 'failure' THEN 1 ELSE 0 END) = 0)) \
         ORDER BY last_seen DESC, fingerprint DESC LIMIT $5 OFFSET $6"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, IssueRow>(&sql)
        .bind(project_id)
        .bind(&f.engine)
        .bind(f.seen_since)
        .bind(f.recovered)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)?)
}

/// `(fingerprint, engine)` pairs under the same filter, each once.
pub async fn issue_engines(
    db: &Db,
    project_id: Uuid,
    f: &IssueFilter,
) -> Result<Vec<(String, String)>, StoreError> {
    let sql = format!(
        "SELECT DISTINCT fingerprint, engine FROM ({ISSUE_ROWS}) AS t \
         WHERE ($3 IS NULL OR seen >= $3) ORDER BY 1, 2"
    );
    Ok(
        on_read!(db, p => sqlx::query_as::<_, (String, String)>(&sql)
        .bind(project_id)
        .bind(&f.engine)
        .bind(f.seen_since)
        .fetch_all(p)
        .await)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_merge_into_epoch_aligned_buckets_in_order() {
        let row = |m: &str, s: &str, n: i64| (m.to_owned(), s.to_owned(), n, 10 * n, n);
        let cells = minutes_to_buckets(
            vec![
                row("2026-12-04 13:04", "success", 2),
                row("2026-12-04 13:00", "success", 1),
                row("2026-12-04 13:05", "success", 4),
                row("2026-12-04T13:01", "failure", 3),
                row("not a minute", "success", 100),
            ],
            300,
        );
        let at = |hm: &str| {
            chrono::NaiveDateTime::parse_from_str(&format!("2026-12-04 {hm}"), "%Y-%m-%d %H:%M")
                .map(|t| t.and_utc().timestamp())
                .unwrap_or_default()
        };
        let got: Vec<(i64, &str, i64, i64, i64)> = cells
            .iter()
            .map(|c| {
                (
                    c.bucket,
                    c.state.as_str(),
                    c.count,
                    c.runtime_sum,
                    c.runtime_count,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (at("13:00"), "failure", 3, 30, 3),
                (at("13:00"), "success", 3, 30, 3),
                (at("13:05"), "success", 4, 40, 4),
            ]
        );
    }
}
