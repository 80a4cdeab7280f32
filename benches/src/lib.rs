//! Shared helpers for the benches and load tools: realistic task-lifecycle
//! events and signed `event_batch` frames.

pub mod compare;
pub mod load;
pub mod procstat;

/// The brain a load tool talks to and the operator it signs in as (agents
/// are minted and results read through the REST API with it).
#[derive(clap::Args, Debug, Clone)]
pub struct BrainLogin {
    /// Base URL of the brain.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// Operator e-mail.
    #[arg(long, default_value = z4j_conformance::agent::ADMIN_EMAIL)]
    pub email: String,
    /// Operator password.
    #[arg(long, default_value = z4j_conformance::agent::ADMIN_PASSWORD)]
    pub password: String,
}

use z4j_protocol::json::Object;
use z4j_protocol::{Binding, FrameType, ProjectKey, Signer, Value};

const KINDS: [&str; 3] = ["task.received", "task.started", "task.succeeded"];

/// How event ids are drawn: random, as an agent does, or derived from the
/// event's index, so that a workload's rows (and the B-tree work of
/// storing them) are the same on every run (instruction counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventIds {
    Random,
    Sequential,
}

impl EventIds {
    fn id(self, i: u64) -> String {
        match self {
            EventIds::Random => uuid::Uuid::new_v4(),
            EventIds::Sequential => {
                uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | i as u128)
            }
        }
        .to_string()
    }
}

/// How task ids are drawn. Every bench uses `Sequential`, so that its
/// figures stay comparable from commit to commit: task k is
/// `{k:08x}-4e5f-4a6b-8c7d-{k:012x}`, and the indexes keyed by task id grow
/// at their ends. `Celery` draws them as Celery does, UUIDv4s scattered over
/// the key space (from a hash of k, so a run repeats): the costlier case of
/// a real deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskIds {
    Sequential,
    Celery,
}

impl TaskIds {
    /// Task `k`'s id (`k` any 64-bit key for `Celery`).
    pub fn id(self, k: u64) -> String {
        match self {
            TaskIds::Sequential => format!("{k:08x}-4e5f-4a6b-8c7d-{k:012x}"),
            TaskIds::Celery => {
                let (hi, lo) = (splitmix64(k), splitmix64(!k));
                let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
                uuid::Builder::from_random_bytes(bytes)
                    .into_uuid()
                    .to_string()
            }
        }
    }
}

/// One 64-bit key from two, well mixed (keys of scattered task ids).
pub fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ splitmix64(b))
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One task-lifecycle event of about 380 bytes on the wire.
pub fn realistic_event(i: u64, occurred_at: &str) -> Value {
    realistic_event_with(i, occurred_at, EventIds::Random, TaskIds::Sequential)
}

/// [`realistic_event`] with the task ids drawn as `tasks` says.
pub fn realistic_event_tasks(i: u64, occurred_at: &str, tasks: TaskIds) -> Value {
    realistic_event_with(i, occurred_at, EventIds::Random, tasks)
}

fn realistic_event_with(i: u64, occurred_at: &str, ids: EventIds, tasks: TaskIds) -> Value {
    // Events 3k, 3k+1 and 3k+2 are one task's received, started and
    // succeeded: the same task id, as an agent reports a lifecycle.
    let task = tasks.id(i / 3);
    let mut data = Object::new();
    data.insert("task_name", Value::str("app.tasks.send_invoice_email"));
    data.insert("queue", Value::str("emails"));
    data.insert(
        "args",
        Value::Array(vec![Value::int(i as i64), Value::str("invoice-2026-05")]),
    );
    let mut kwargs = Object::new();
    kwargs.insert("customer_id", Value::int(10_000 + (i % 977) as i64));
    kwargs.insert("retry", Value::Bool(false));
    data.insert("kwargs", Value::Object(kwargs));
    data.insert("worker", Value::str("celery@worker-1"));
    data.insert("priority", Value::str("normal"));
    if i % 3 == 2 {
        data.insert("result", Value::str("sent"));
        data.insert("runtime_ms", Value::Float(12.5));
    }
    let mut e = Object::new();
    e.insert("id", Value::str(ids.id(i)));
    e.insert("kind", Value::str(KINDS[(i % 3) as usize]));
    e.insert("engine", Value::str("celery"));
    e.insert("task_id", Value::str(task));
    e.insert("occurred_at", Value::str(occurred_at));
    e.insert("data", Value::Object(data));
    Value::Object(e)
}

/// A signed `event_batch` with `n` events, as an agent sends it.
pub fn signed_event_batch(
    signer: &mut Signer,
    first_event: u64,
    n: usize,
    ts: &str,
    nonce: &str,
) -> String {
    signed_event_batch_with(signer, first_event, n, ts, nonce, EventIds::Random)
}

/// [`signed_event_batch`] with the event ids drawn as `ids` says.
pub fn signed_event_batch_with(
    signer: &mut Signer,
    first_event: u64,
    n: usize,
    ts: &str,
    nonce: &str,
    ids: EventIds,
) -> String {
    let events: Vec<Value> = (0..n as u64)
        .map(|k| realistic_event_with(first_event + k, ts, ids, TaskIds::Sequential))
        .collect();
    let id = format!("ev_{:032x}", first_event);
    signer
        .sign_with(
            FrameType::EventBatch,
            &id,
            &[("events", Value::Array(events))],
            ts,
            nonce,
        )
        .unwrap_or_default()
}

pub fn bench_binding() -> Binding {
    Binding {
        agent_id: "7d3f6a2e-9b1c-4e5f-8a7b-6c5d4e3f2a10".into(),
        project_id: "00112233-4455-6677-8899-aabbccddeeff".into(),
        session_id: "5a1e0c9d-2b3a-4c5d-9e8f-7a6b5c4d3e2f".into(),
    }
}

pub fn bench_key() -> ProjectKey {
    ProjectKey::from_bytes([42; 32])
}

#[cfg(test)]
mod tests {
    use super::TaskIds;

    #[test]
    fn celery_task_ids_are_repeatable_scattered_uuid4s() {
        let ids: Vec<String> = (0..1_000).map(|k| TaskIds::Celery.id(k)).collect();
        assert_eq!(ids[7], TaskIds::Celery.id(7), "a run repeats");
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
        }
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Scattered: about half of the successive pairs descend in key
        // order, where sequential ids never do.
        let descents = ids.windows(2).filter(|w| w[1] < w[0]).count();
        assert!((400..600).contains(&descents), "{descents} descents");
        let seq: Vec<String> = (0..1_000).map(|k| TaskIds::Sequential.id(k)).collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]));
    }
}
