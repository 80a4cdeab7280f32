//! Rows to messages (scheduler spec §2.4) and timestamps both ways.

use crate::store::schedules::Schedule;
use crate::store::Ts;
use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use z4j_scheduler_proto::v1 as pb;

pub fn timestamp(t: Option<Ts>) -> Option<Timestamp> {
    t.map(|t| Timestamp {
        seconds: t.0.timestamp(),
        nanos: t.0.timestamp_subsec_nanos() as i32,
    })
}

/// A Timestamp as an instant; the all-zero one (and anything invalid) is
/// "absent".
pub fn instant(t: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?;
    if t.seconds == 0 && t.nanos == 0 {
        return None;
    }
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// Compact JSON with sorted keys and non-ASCII escaped, as the reference
/// sends `args_json`/`kwargs_json` (the scheduler passes the bytes on).
pub fn compact_json(v: &serde_json::Value) -> Vec<u8> {
    // serde_json's Map is ordered by key (no preserve_order feature).
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

/// The legacy projection: effective enablement, defaults for empty
/// values, and the current-protocol fields (19-23) left at their zero
/// values, as a legacy scheduler requires.
pub fn schedule(s: &Schedule) -> pb::Schedule {
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_owned()
        } else {
            v.to_owned()
        }
    };
    pb::Schedule {
        id: s.id.to_string(),
        project_id: s.project_id.to_string(),
        engine: s.engine.clone(),
        name: s.name.clone(),
        task_name: s.task_name.clone(),
        kind: s.kind.as_str().to_owned(),
        expression: s.expression.clone(),
        timezone: or(&s.timezone, "UTC"),
        queue: s.queue.clone().unwrap_or_default(),
        args_json: compact_json(&s.args.0),
        kwargs_json: compact_json(&s.kwargs.0),
        is_enabled: s.effectively_enabled(),
        catch_up: s.catch_up.as_str().to_owned(),
        source: or(&s.source, "dashboard"),
        last_run_at: timestamp(s.last_run_at),
        next_run_at: timestamp(s.next_run_at),
        total_runs: s.total_runs,
        source_hash: s.source_hash.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// A resume token: UTC, six fractional digits, explicit `+00:00`.
pub fn token(t: Ts) -> String {
    t.0.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A resume token as an instant; any RFC 3339 offset form (`Z` too), and
/// a naive value read as UTC. Malformed is `None` ("no token").
pub fn parse_token(text: &str) -> Option<Ts> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(Ts(d.with_timezone(&Utc)));
    }
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| Ts(n.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_like_the_reference() {
        let v = serde_json::json!({"b": 1, "a": ["é", "x y"]});
        assert_eq!(
            compact_json(&v),
            br#"{"a":["\u00e9","x y"],"b":1}"#.to_vec()
        );
        assert_eq!(
            compact_json(&serde_json::json!("😀")),
            br#""\ud83d\ude00""#.to_vec()
        );
    }

    #[test]
    fn tokens_round_trip() {
        let t = parse_token("2026-04-27T12:00:00.123456+00:00").unwrap();
        assert_eq!(token(t), "2026-04-27T12:00:00.123456+00:00");
        assert_eq!(
            parse_token("2026-04-27T12:00:00Z").map(token).as_deref(),
            Some("2026-04-27T12:00:00.000000+00:00")
        );
        assert_eq!(
            parse_token("2026-04-27T14:00:00+02:00")
                .map(token)
                .as_deref(),
            Some("2026-04-27T12:00:00.000000+00:00")
        );
        assert!(parse_token("yesterday").is_none());
        assert!(parse_token("").is_none());
    }

    #[test]
    fn zero_timestamp_is_absent() {
        assert!(instant(Some(&Timestamp {
            seconds: 0,
            nanos: 0
        }))
        .is_none());
        assert!(instant(None).is_none());
        assert!(instant(Some(&Timestamp {
            seconds: 1,
            nanos: 0
        }))
        .is_some());
    }
}
