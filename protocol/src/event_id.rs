//! Brain-side event row ids (the dedupe key of `events`), spec 6.3 step 6.

use crate::isotime::parse_python_isoformat;
use uuid::Uuid;

pub const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0xc4d2c84e_2f0a_4b6c_9c5b_1d6f9a1e7c2a);

/// Events whose `occurred_at` falls outside `[now - 400 days, now + 60 s]`
/// are stamped `now`.
pub const CLAMP_PAST_MICROS: i64 = 400 * 86_400 * 1_000_000;
pub const CLAMP_FUTURE_MICROS: i64 = 60 * 1_000_000;

/// `occurred_at` as the ingestor reads it: unparseable → now, naive → UTC,
/// then clamped to the window around now. Microseconds since the epoch.
pub fn normalize_occurred_at(raw: Option<&str>, now_micros: i64) -> i64 {
    let parsed = raw.and_then(parse_python_isoformat).map(|t| t.micros);
    match parsed {
        Some(t) if t >= now_micros - CLAMP_PAST_MICROS && t <= now_micros + CLAMP_FUTURE_MICROS => {
            t
        }
        _ => now_micros,
    }
}

/// The row id and stored `occurred_at` of one event, or `None` for the id
/// when the event gets a random id (no dedupe).
pub fn event_row_id(
    project_id: &Uuid,
    engine: &str,
    task_id: &str,
    kind: &str,
    occurred_at_micros: i64,
    agent_event_id: Option<&str>,
) -> (Option<Uuid>, i64) {
    if !task_id.is_empty() {
        let secs = occurred_at_micros.div_euclid(1_000_000);
        let name = format!("{project_id}:{engine}:{task_id}:{kind}:{secs}");
        return (
            Some(Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes())),
            secs * 1_000_000,
        );
    }
    let usable = agent_event_id
        .and_then(|s| Uuid::parse_str(s).ok())
        .filter(|u| matches!(u.get_version_num(), 4 | 7) && !u.is_nil() && !u.is_max());
    match usable {
        Some(agent_uuid) => {
            let name = format!("{project_id}:{agent_uuid}");
            (
                Some(Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes())),
                occurred_at_micros,
            )
        }
        None => (None, occurred_at_micros),
    }
}
