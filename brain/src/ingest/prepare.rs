//! One event object of an `event_batch` → the row it becomes (spec 6.3
//! steps 1–9). Pure CPU work, done on the connection's task so the single
//! writer only talks to the database.

use super::redact::Redactor;
use crate::store::{json_column as raw_json, Ts};
use chrono::{TimeZone, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;
use z4j_protocol::event_id::{event_row_id, normalize_occurred_at};
use z4j_protocol::json::{Object, Value};

/// Kinds the brain knows; anything else is stored as `unknown`.
const KINDS: &[&str] = &[
    "task.sent",
    "task.received",
    "task.started",
    "task.succeeded",
    "task.failed",
    "task.retried",
    "task.revoked",
    "task.rejected",
    "worker.online",
    "worker.offline",
    "worker.heartbeat",
    "queue.depth_report",
    "schedule.run_started",
    "schedule.run_completed",
    "schedule.created",
    "schedule.updated",
    "schedule.deleted",
    "schedule.snapshot",
];

const TEXT_CAP: usize = 8192;

pub use crate::store::ingest::{EventRow, TaskPatch, TaskState};

/// The task state an event kind projects, if any.
fn state_of_kind(kind: &str) -> Option<TaskState> {
    Some(match kind {
        "task.received" => TaskState::Received,
        "task.started" => TaskState::Started,
        "task.succeeded" => TaskState::Success,
        "task.failed" => TaskState::Failure,
        "task.retried" => TaskState::Retry,
        "task.revoked" => TaskState::Revoked,
        _ => return None,
    })
}

/// Why an event is not inserted (it counts as rejected, never an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotAnObject,
    MissingEngine,
    MissingKind,
}

pub fn prepare(
    event: &Value,
    project_id: &Uuid,
    now_micros: i64,
    redactor: &Redactor,
) -> Result<EventRow, Skip> {
    let Value::Object(raw) = event else {
        return Err(Skip::NotAnObject);
    };
    let obj = redactor.redact_object(raw);
    let engine = trimmed(&obj, "engine").ok_or(Skip::MissingEngine)?;
    let kind_raw = trimmed(&obj, "kind").ok_or(Skip::MissingKind)?;
    let kind: &'static str = KINDS
        .iter()
        .find(|k| **k == kind_raw)
        .copied()
        .unwrap_or("unknown");
    let engine = cut(&engine, 40);
    let task_id = obj
        .get("task_id")
        .and_then(Value::as_str)
        .map(|t| cut(t, 200))
        .unwrap_or_default();
    let occurred =
        normalize_occurred_at(obj.get("occurred_at").and_then(Value::as_str), now_micros);
    let (row_id, stored_micros) = event_row_id(
        project_id,
        &engine,
        &task_id,
        kind,
        occurred,
        obj.get("id").and_then(Value::as_str),
    );
    let empty = Object::new();
    let data = obj.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let payload = raw_json(&Value::Object(data.clone())).unwrap_or_else(empty_object);
    let text = |k: &str, max: usize| {
        data.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| cut(s, max))
    };
    let worker = text("worker", 200);
    let queue = text("queue", 200);
    let task = match state_of_kind(kind) {
        Some(state) if !task_id.is_empty() => Some(TaskPatch {
            state,
            name: text("task_name", 500).unwrap_or_else(|| "unknown".into()),
            queue: queue.clone(),
            priority: text("priority", 20)
                .filter(|p| crate::store::ingest::TASK_PRIORITIES.contains(&p.as_str()))
                .unwrap_or_else(|| "normal".into()),
            args: data.get("args").and_then(raw_json),
            kwargs: data.get("kwargs").and_then(raw_json),
            result: data.get("result").and_then(raw_json),
            exception: text("exception", TEXT_CAP),
            traceback: text("traceback", TEXT_CAP),
            retry_count: data.get("retry_count").and_then(Value::as_i64),
            runtime_ms: data.get("runtime_ms").and_then(number_as_i64),
            worker_name: worker.clone(),
            parent_task_id: text("parent_task_id", 200).filter(|p| *p != task_id),
            root_task_id: text("root_task_id", 200).filter(|p| *p != task_id),
            // From the full (redacted) text, not the stored cut: the
            // deepest frames are at the end of a long traceback.
            fingerprint: (state == TaskState::Failure)
                .then(|| {
                    let full = |k: &str| {
                        data.get(k).filter(|v| !v.is_null()).and_then(|v| {
                            v.as_str()
                                .map(str::to_owned)
                                .or_else(|| raw_json(v).map(|r| r.get().to_owned()))
                        })
                    };
                    super::fingerprint::fingerprint(
                        full("exception").as_deref(),
                        full("traceback").as_deref(),
                    )
                })
                .flatten(),
        }),
        _ => None,
    };
    Ok(EventRow {
        id: row_id.unwrap_or_else(Uuid::new_v4),
        engine,
        task_id,
        kind,
        occurred_at: ts_from_micros(stored_micros),
        payload,
        task,
        worker,
        queue,
    })
}

pub fn ts_from_micros(micros: i64) -> Ts {
    Ts(Utc
        .timestamp_micros(micros)
        .single()
        .unwrap_or_else(Utc::now))
}

fn trimmed(obj: &Object, key: &str) -> Option<String> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// At most `max_chars`, storable in a text column on both databases.
fn cut(s: &str, max_chars: usize) -> String {
    crate::store::text_column(z4j_protocol::frame::cut_chars(s, max_chars))
}

fn number_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Float(f) if f.is_finite() => Some(*f as i64),
        other => other.as_i64(),
    }
}

fn empty_object() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default()
}
