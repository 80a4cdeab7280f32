//! What agents report about their environment: queue depths (heartbeat
//! `adapter_health`) and `agent_status` samples.

use super::{Db, StoreError, Ts};
use crate::{on_db, on_read};
use sqlx::types::Json as SqlJson;
use uuid::Uuid;
use z4j_protocol::json::{Object, Value};

/// At most this many queues per report (sorted by name).
const MAX_QUEUES: usize = 1024;

/// A queue or worker name as stored: at most 200 characters, NUL as
/// U+FFFD (PostgreSQL's `text` refuses NUL; decision H8).
fn name_column(s: &str) -> String {
    super::text_column(&s.chars().take(200).collect::<String>())
}

/// `{"queue": depth, ...}` as JSON text inside a string; malformed → none.
pub fn parse_queue_depths(text: &str) -> Vec<(String, i64)> {
    let Ok(Value::Object(o)) = z4j_protocol::parse(text.as_bytes()) else {
        return Vec::new();
    };
    let mut out: Vec<(String, i64)> = o
        .iter()
        .filter_map(|(k, v)| Some((name_column(k.as_str()), v.as_i64()?.max(0))))
        .collect();
    out.sort();
    out.truncate(MAX_QUEUES);
    out
}

/// Which report a minute of depth history keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinuteDepth {
    /// The highest: a chart shows the peaks.
    Highest,
    /// The last (behaviour mutant `depth-last-kept`).
    Last,
}

pub async fn set_queue_depths(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    depths: &[(String, i64)],
    at: Ts,
    keep: MinuteDepth,
) -> Result<(), StoreError> {
    let engine = super::text_column(&engine.chars().take(40).collect::<String>());
    let minute = minute_of(at);
    let kept = match keep {
        MinuteDepth::Highest => {
            "CASE WHEN excluded.depth > queue_depth_samples.depth THEN excluded.depth \
             ELSE queue_depth_samples.depth END"
        }
        MinuteDepth::Last => "excluded.depth",
    };
    let sample_sql = format!(
        "INSERT INTO queue_depth_samples (queue_id, minute, depth) VALUES ($1, $2, $3) \
         ON CONFLICT (queue_id, minute) DO UPDATE SET depth = {kept}"
    );
    for (name, depth) in depths {
        let queue_id: Uuid = on_db!(db, p => sqlx::query_scalar(
            "INSERT INTO queues (id, project_id, engine, name, last_seen_at, pending_count, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $5, $5) \
             ON CONFLICT (project_id, engine, name) DO UPDATE SET pending_count = excluded.pending_count, \
             last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at \
             RETURNING id"
        )
        .bind(Uuid::new_v4())
        .bind(project_id)
        .bind(&engine)
        .bind(name)
        .bind(at)
        .bind(i32::try_from(*depth).unwrap_or(i32::MAX))
        .fetch_one(p)
        .await)?;
        on_db!(db, p => sqlx::query(&sample_sql)
        .bind(queue_id)
        .bind(minute)
        .bind(*depth)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// The start of `at`'s minute.
fn minute_of(at: Ts) -> Ts {
    use chrono::{DurationRound, TimeDelta};
    Ts(at.0.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at.0))
}

/// One queue's highest depth in one minute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DepthSample {
    pub engine: String,
    pub name: String,
    pub minute: Ts,
    pub depth: i64,
}

/// The project's depth samples since `since`, for its first `max_queues`
/// queues by engine and name, ordered by queue then minute.
pub async fn depth_history(
    db: &Db,
    project_id: Uuid,
    since: Ts,
    max_queues: i64,
) -> Result<Vec<DepthSample>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, DepthSample>(
        "SELECT q.engine, q.name, s.minute, s.depth FROM queue_depth_samples s \
         JOIN queues q ON q.id = s.queue_id \
         WHERE s.minute >= $2 AND q.id IN \
         (SELECT id FROM queues WHERE project_id = $1 ORDER BY engine, name LIMIT $3) \
         ORDER BY q.engine, q.name, s.minute"
    )
    .bind(project_id)
    .bind(since)
    .bind(max_queues)
    .fetch_all(p)
    .await)?)
}

/// One worker as a heartbeat's `<engine>.worker_details` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDetail {
    pub name: String,
    pub concurrency: Option<i64>,
    pub pid: Option<i64>,
    pub active_tasks: i64,
    pub queues: Vec<String>,
}

/// `{hostname: {"stats": {..} | "<json>", "active": [..], "active_queues":
/// [{"name": ..}], ..}}` as JSON text; malformed parts are skipped.
pub fn parse_worker_details(text: &str) -> Vec<WorkerDetail> {
    let Ok(Value::Object(o)) = z4j_protocol::parse(text.as_bytes()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (host, detail) in o.iter().take(MAX_QUEUES) {
        let Some(d) = detail.as_object() else {
            continue;
        };
        // `stats` may itself be JSON text.
        let stats_owned;
        let stats = match d.get("stats") {
            Some(Value::Str(s)) => {
                stats_owned = z4j_protocol::parse(s.as_str().as_bytes()).ok();
                stats_owned.as_ref().and_then(Value::as_object)
            }
            Some(v) => v.as_object(),
            None => None,
        };
        let pool = stats.and_then(|s| s.get("pool")).and_then(Value::as_object);
        let concurrency = pool.and_then(|p| {
            p.get("max-concurrency")
                .and_then(Value::as_i64)
                .or_else(|| {
                    p.get("processes")
                        .and_then(Value::as_array)
                        .map(|a| a.len() as i64)
                })
        });
        let queues = d
            .get("active_queues")
            .and_then(Value::as_array)
            .map(|qs| {
                qs.iter()
                    .filter_map(|q| q.as_object()?.get("name")?.as_str().map(super::text_column))
                    .collect()
            })
            .unwrap_or_default();
        out.push(WorkerDetail {
            name: name_column(host.as_str()),
            concurrency,
            pid: stats.and_then(|s| s.get("pid")).and_then(Value::as_i64),
            active_tasks: d
                .get("active")
                .and_then(Value::as_array)
                .map_or(0, |a| a.len() as i64),
            queues,
        });
    }
    out
}

/// Upserts the workers of a heartbeat as online.
pub async fn set_worker_details(
    db: &Db,
    project_id: Uuid,
    engine: &str,
    workers: &[WorkerDetail],
    at: Ts,
) -> Result<(), StoreError> {
    let engine = super::text_column(&engine.chars().take(40).collect::<String>());
    for w in workers {
        on_db!(db, p => sqlx::query(
            "INSERT INTO workers (id, project_id, engine, name, hostname, pid, concurrency, queues, state, \
             last_heartbeat, active_tasks, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, 'online', $8, $9, $8, $8) \
             ON CONFLICT (project_id, engine, name) DO UPDATE SET hostname = excluded.hostname, \
             pid = excluded.pid, concurrency = excluded.concurrency, queues = excluded.queues, \
             state = 'online', last_heartbeat = excluded.last_heartbeat, \
             active_tasks = excluded.active_tasks, updated_at = excluded.updated_at"
        )
        .bind(Uuid::new_v4())
        .bind(project_id)
        .bind(&engine)
        .bind(&w.name)
        .bind(w.pid.and_then(|p| i32::try_from(p).ok()))
        .bind(w.concurrency.and_then(|c| i32::try_from(c).ok()))
        .bind(SqlJson(&w.queues))
        .bind(at)
        .bind(i32::try_from(w.active_tasks).unwrap_or(i32::MAX))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

pub async fn record_status(
    db: &Db,
    agent_id: Uuid,
    project_id: Uuid,
    worker_id: Option<&str>,
    captured_at: Ts,
    payload: &Object,
) -> Result<(), StoreError> {
    let telemetry = payload.get("telemetry_loss").and_then(super::json_column);
    let whole = super::json_column(&Value::Object(payload.clone()));
    on_db!(db, p => sqlx::query(
        "INSERT INTO agent_status_history (id, agent_id, project_id, worker_id, captured_at, telemetry_loss, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .bind(Uuid::new_v4())
    .bind(agent_id)
    .bind(project_id)
    .bind(worker_id)
    .bind(captured_at)
    .bind(telemetry.as_ref().map(SqlJson))
    .bind(whole.as_ref().map(SqlJson))
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatusSample {
    pub id: Uuid,
    pub captured_at: Ts,
    pub worker_id: Option<String>,
    pub telemetry_loss: Option<SqlJson<serde_json::Value>>,
}

/// The newest samples of an agent, newest first.
pub async fn recent_status(
    db: &Db,
    agent_id: Uuid,
    limit: i64,
) -> Result<Vec<StatusSample>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, StatusSample>(
        "SELECT id, captured_at, worker_id, telemetry_loss FROM agent_status_history \
         WHERE agent_id = $1 ORDER BY captured_at DESC, id DESC LIMIT $2"
    )
    .bind(agent_id)
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_details_from_celery_inspect_shapes() {
        let text = r#"{"celery@a": {"stats": "{\"pid\": 42, \"pool\": {\"max-concurrency\": 8}}", "active": [{}, {}], "active_queues": [{"name": "default"}, {"name": "mail"}]},
                       "celery@b": {"stats": {"pool": {"processes": [1, 2, 3]}}},
                       "broken": 5}"#;
        assert_eq!(
            parse_worker_details(text),
            vec![
                WorkerDetail {
                    name: "celery@a".into(),
                    concurrency: Some(8),
                    pid: Some(42),
                    active_tasks: 2,
                    queues: vec!["default".into(), "mail".into()],
                },
                WorkerDetail {
                    name: "celery@b".into(),
                    concurrency: Some(3),
                    pid: None,
                    active_tasks: 0,
                    queues: vec![],
                },
            ]
        );
        assert!(parse_worker_details("[]").is_empty());
    }

    #[test]
    fn queue_depths_are_sorted_and_malformed_input_ignored() {
        assert_eq!(
            parse_queue_depths(r#"{"b": 2, "a": 5, "bad": "x", "neg": -3}"#),
            vec![("a".into(), 5), ("b".into(), 2), ("neg".into(), 0)]
        );
        assert!(parse_queue_depths("not json").is_empty());
    }
}
