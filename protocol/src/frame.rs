//! Frame types and typed views of every frame in both directions.
//!
//! Signed frames are lenient, like the reference's fast path: after the HMAC
//! only the checks of spec 4.6 run, and missing fields take their defaults.

use crate::canonical::write_str;
use crate::json::{Object, Value};
use base64::Engine as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    Hello,
    HelloAck,
    EventBatch,
    EventBatchAck,
    Heartbeat,
    AgentStatus,
    Command,
    CommandAck,
    CommandResult,
    RegistryDelta,
    Error,
}

impl FrameType {
    pub const ALL: [FrameType; 11] = [
        FrameType::Hello,
        FrameType::HelloAck,
        FrameType::EventBatch,
        FrameType::EventBatchAck,
        FrameType::Heartbeat,
        FrameType::AgentStatus,
        FrameType::Command,
        FrameType::CommandAck,
        FrameType::CommandResult,
        FrameType::RegistryDelta,
        FrameType::Error,
    ];

    pub fn as_wire(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::HelloAck => "hello_ack",
            FrameType::EventBatch => "event_batch",
            FrameType::EventBatchAck => "event_batch_ack",
            FrameType::Heartbeat => "heartbeat",
            FrameType::AgentStatus => "agent_status",
            FrameType::Command => "command",
            FrameType::CommandAck => "command_ack",
            FrameType::CommandResult => "command_result",
            FrameType::RegistryDelta => "registry_delta",
            FrameType::Error => "error",
        }
    }

    pub fn from_wire(s: &str) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| t.as_wire() == s)
    }

    pub fn is_handshake(self) -> bool {
        matches!(self, FrameType::Hello | FrameType::HelloAck)
    }
}

/// Cap on events considered per batch; the rest are dropped (spec 5.1).
pub const MAX_EVENTS_PER_BATCH: usize = 5000;

const MAX_COUNTER: i64 = (1 << 53) - 1;

/// The strict `telemetry_loss` schema (spec 5.4).
pub fn telemetry_loss_is_valid(v: &Value) -> bool {
    let Some(o) = v.as_object() else {
        return false;
    };
    let str_1_64 =
        |v: Option<&Value>| matches!(v, Some(Value::Str(s)) if (1..=64).contains(&s.char_len()));
    let counter = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Int(i)) => matches!(i.as_i64(), Some(n) if (0..=MAX_COUNTER).contains(&n)),
        _ => false,
    };
    if !str_1_64(o.get("buffer_id")) || !str_1_64(o.get("runtime_id")) {
        return false;
    }
    let counters = [
        "capacity_evicted_frames",
        "content_rejected_frames",
        "event_records",
        "command_results",
        "other_frames",
        "unclassified_frames",
    ];
    if !counters.iter().all(|k| counter(o.get(k))) {
        return false;
    }
    match o.get("adapter_events") {
        None => true,
        Some(Value::Object(m)) => {
            m.len() <= 32
                && m.iter().all(|(k, v)| {
                    (1..=64).contains(&k.char_len()) && !k.has_lone_surrogate() && counter(Some(v))
                })
        }
        Some(_) => false,
    }
}

/// `ts` the way pydantic writes a UTC datetime: `…:SS[.ffffff]Z`.
pub fn format_pydantic_utc(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::isotime::civil_from_days(days);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac == 0 {
        base + "Z"
    } else {
        format!("{base}.{frac:06}Z")
    }
}

/// 16 random bytes, urlsafe base64 without padding (22 chars).
pub fn random_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn payload_of(frame: &Object) -> Option<&Object> {
    frame.get("payload").and_then(Value::as_object)
}

fn str_field(o: Option<&Object>, key: &str) -> Option<String> {
    o.and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn int_field(o: Option<&Object>, key: &str) -> i64 {
    o.and_then(|p| p.get(key))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The frame `id`, when it is a string.
pub fn frame_id(frame: &Object) -> Option<&str> {
    frame.get("id").and_then(Value::as_str)
}

/// Documented field limits of signed frames (spec section 5). Like the
/// reference, the verifier does not enforce them: after the HMAC a frame is
/// the agent's own, and rejecting it would only make the agent resend it.
/// The gateway reads the violations for its logs and metrics.
pub mod limits {
    pub const EVENTS_PER_BATCH: usize = super::MAX_EVENTS_PER_BATCH;
    pub const COUNTER_MAX: i64 = 10_000_000;
    pub const STREAK_MAX: i64 = 1_000_000;
    pub const ADAPTER_HEALTH_KEYS_READ: usize = 256;
    pub const RESULT_ERROR_CHARS: usize = 8192;
    pub const CLAIM_TOKEN_CHARS: usize = 64;
    pub const REGISTRY_ENGINE_CHARS: usize = 40;
    pub const REGISTRY_ITEMS: usize = 10_000;
    pub const ERROR_CODE_CHARS: usize = 80;
    pub const ERROR_MESSAGE_CHARS: usize = 8192;
}

fn over(field: &str, what: String) -> String {
    format!("{field}: {what}")
}

fn check_range(out: &mut Vec<String>, field: &str, v: i64, max: i64) {
    if !(0..=max).contains(&v) {
        out.push(over(field, format!("{v} outside 0..{max}")));
    }
}

fn check_chars(out: &mut Vec<String>, field: &str, v: Option<&str>, max: usize) {
    if let Some(n) = v.map(|s| s.chars().count()).filter(|n| *n > max) {
        out.push(over(field, format!("{n} characters, at most {max}")));
    }
}

/// `event_batch` (agent → brain).
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    pub id: Option<String>,
    /// `None` when `events` is neither an array nor null: a permanent failure.
    pub events: Option<Vec<Value>>,
    /// How many events the frame carried before the 5000 cap.
    pub received_before_cap: usize,
}

impl EventBatch {
    pub fn from_frame(frame: &Object) -> EventBatch {
        let events = match payload_of(frame).and_then(|p| p.get("events")) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => None,
        };
        let received_before_cap = events.as_ref().map_or(0, Vec::len);
        EventBatch {
            id: frame_id(frame).map(str::to_owned),
            events: events.map(|mut e| {
                e.truncate(MAX_EVENTS_PER_BATCH);
                e
            }),
            received_before_cap,
        }
    }
}

impl EventBatch {
    /// Documented limits this batch exceeds (not enforced; see [`limits`]).
    pub fn limit_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.received_before_cap > limits::EVENTS_PER_BATCH {
            out.push(over(
                "payload.events",
                format!(
                    "{} events, only the first {} are considered",
                    self.received_before_cap,
                    limits::EVENTS_PER_BATCH
                ),
            ));
        }
        out
    }
}

/// `heartbeat` (agent → brain).
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub buffer_size: i64,
    pub dropped_events: i64,
    pub last_flush_at: Option<String>,
    /// `adapter_health` string values, at most 256 keys read.
    pub adapter_health: Vec<(String, String)>,
    pub telemetry_loss: Option<Value>,
}

impl Heartbeat {
    pub fn from_frame(frame: &Object) -> Heartbeat {
        let p = payload_of(frame);
        let adapter_health = p
            .and_then(|p| p.get("adapter_health"))
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .take(256)
                    .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Heartbeat {
            buffer_size: int_field(p, "buffer_size"),
            dropped_events: int_field(p, "dropped_events"),
            last_flush_at: str_field(p, "last_flush_at"),
            adapter_health,
            telemetry_loss: p
                .and_then(|p| p.get("telemetry_loss"))
                .filter(|v| !v.is_null())
                .cloned(),
        }
    }
}

impl Heartbeat {
    pub fn limit_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_range(
            &mut out,
            "payload.buffer_size",
            self.buffer_size,
            limits::COUNTER_MAX,
        );
        check_range(
            &mut out,
            "payload.dropped_events",
            self.dropped_events,
            limits::COUNTER_MAX,
        );
        out
    }
}

/// `agent_status` (agent → brain): kept whole for `agent_status_history`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    pub payload: Object,
}

impl AgentStatus {
    pub fn from_frame(frame: &Object) -> AgentStatus {
        AgentStatus {
            payload: payload_of(frame).cloned().unwrap_or_default(),
        }
    }
}

impl AgentStatus {
    pub fn limit_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = Some(&self.payload);
        for k in [
            "auth_failure_streak",
            "protocol_failure_streak",
            "connection_failure_streak",
        ] {
            check_range(
                &mut out,
                &format!("payload.{k}"),
                int_field(p, k),
                limits::STREAK_MAX,
            );
        }
        check_range(
            &mut out,
            "payload.buffer_depth",
            int_field(p, "buffer_depth"),
            limits::COUNTER_MAX,
        );
        check_chars(
            &mut out,
            "payload.agent_version",
            str_field(p, "agent_version").as_deref(),
            40,
        );
        check_chars(
            &mut out,
            "payload.protocol_version",
            str_field(p, "protocol_version").as_deref(),
            10,
        );
        for k in ["engines", "schedulers"] {
            let n = self
                .payload
                .get(k)
                .and_then(Value::as_array)
                .map_or(0, <[Value]>::len);
            if n > 32 {
                out.push(over(
                    &format!("payload.{k}"),
                    format!("{n} items, at most 32"),
                ));
            }
        }
        out
    }
}

/// `command_ack` (agent → brain).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAck {
    pub command_id: Option<String>,
    pub delivery_claim_token: Option<String>,
}

impl CommandAck {
    pub fn from_frame(frame: &Object) -> CommandAck {
        CommandAck {
            command_id: frame_id(frame).map(str::to_owned),
            delivery_claim_token: str_field(payload_of(frame), "delivery_claim_token"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    Success,
    Failed,
}

/// `command_result` (agent → brain); `status` was checked by the verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    pub command_id: Option<String>,
    pub status: ResultStatus,
    pub result: Option<Object>,
    pub error: Option<String>,
    pub delivery_claim_token: Option<String>,
}

impl CommandResult {
    pub fn from_frame(frame: &Object) -> CommandResult {
        let p = payload_of(frame);
        CommandResult {
            command_id: frame_id(frame).map(str::to_owned),
            status: match str_field(p, "status").as_deref() {
                Some("success") => ResultStatus::Success,
                _ => ResultStatus::Failed,
            },
            result: p
                .and_then(|p| p.get("result"))
                .and_then(Value::as_object)
                .cloned(),
            error: str_field(p, "error"),
            delivery_claim_token: str_field(p, "delivery_claim_token"),
        }
    }
}

impl CommandResult {
    pub fn limit_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_chars(
            &mut out,
            "payload.error",
            self.error.as_deref(),
            limits::RESULT_ERROR_CHARS,
        );
        check_chars(
            &mut out,
            "payload.delivery_claim_token",
            self.delivery_claim_token.as_deref(),
            limits::CLAIM_TOKEN_CHARS,
        );
        out
    }
}

/// `registry_delta` (agent → brain): defined, logged, otherwise unused.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryDelta {
    pub engine: Option<String>,
    pub added: usize,
    pub removed: usize,
    pub updated: usize,
}

impl RegistryDelta {
    pub fn from_frame(frame: &Object) -> RegistryDelta {
        let p = payload_of(frame);
        let count = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_array)
                .map_or(0, <[Value]>::len)
        };
        RegistryDelta {
            engine: str_field(p, "engine"),
            added: count("added"),
            removed: count("removed"),
            updated: count("updated"),
        }
    }
}

impl RegistryDelta {
    pub fn limit_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_chars(
            &mut out,
            "payload.engine",
            self.engine.as_deref(),
            limits::REGISTRY_ENGINE_CHARS,
        );
        for (k, n) in [
            ("added", self.added),
            ("removed", self.removed),
            ("updated", self.updated),
        ] {
            if n > limits::REGISTRY_ITEMS {
                out.push(over(
                    &format!("payload.{k}"),
                    format!("{n} items, at most {}", limits::REGISTRY_ITEMS),
                ));
            }
        }
        out
    }
}

/// `error` (both directions).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFrame {
    pub code: String,
    pub message: String,
    pub fatal: bool,
}

impl ErrorFrame {
    pub fn from_frame(frame: &Object) -> ErrorFrame {
        let p = payload_of(frame);
        ErrorFrame {
            code: str_field(p, "code").unwrap_or_default(),
            message: str_field(p, "message").unwrap_or_default(),
            fatal: matches!(p.and_then(|p| p.get("fatal")), Some(Value::Bool(true))),
        }
    }

    pub fn limit_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_chars(
            &mut out,
            "payload.code",
            Some(&self.code),
            limits::ERROR_CODE_CHARS,
        );
        check_chars(
            &mut out,
            "payload.message",
            Some(&self.message),
            limits::ERROR_MESSAGE_CHARS,
        );
        out
    }

    /// Payload in wire order, for [`crate::Signer::sign`].
    pub fn payload(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("code", Value::str(self.code.as_str())),
            ("message", Value::str(self.message.as_str())),
            ("fatal", Value::Bool(self.fatal)),
        ]
    }
}

/// Cuts a string to at most `max` code points.
pub fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `event_batch_ack` (brain → agent): `id` is `eba_` + batch id, cut to 64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatchAck {
    pub acked_id: String,
    pub received: u64,
    pub accepted: u64,
}

impl EventBatchAck {
    /// Reads a verified ack (the agent side: conformance agent, load tools).
    pub fn from_frame(frame: &Object) -> EventBatchAck {
        let p = payload_of(frame);
        let count = |k: &str| u64::try_from(int_field(p, k)).unwrap_or(0);
        EventBatchAck {
            acked_id: str_field(p, "acked_id").unwrap_or_default(),
            received: count("received"),
            accepted: count("accepted"),
        }
    }

    pub fn frame_id(&self) -> String {
        cut_chars(&format!("eba_{}", self.acked_id), 64).to_owned()
    }

    pub fn payload(&self) -> Vec<(&'static str, Value)> {
        let rejected = self.received.saturating_sub(self.accepted);
        vec![
            ("acked_id", Value::str(cut_chars(&self.acked_id, 64))),
            ("received", Value::int(self.received as i64)),
            ("accepted", Value::int(self.accepted as i64)),
            ("rejected", Value::int(rejected as i64)),
        ]
    }
}

/// `command` (brain → agent): every field present, `null` for absent ones.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandFrame {
    pub id: String,
    pub action: String,
    pub target: Object,
    pub parameters: Object,
    pub timeout_seconds: i64,
    pub issued_by: Option<String>,
    pub delivery_claim_token: Option<String>,
}

impl CommandFrame {
    /// Reads a verified command (the agent side).
    pub fn from_frame(frame: &Object) -> CommandFrame {
        let p = payload_of(frame);
        let obj = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        CommandFrame {
            id: frame_id(frame).unwrap_or_default().to_owned(),
            action: str_field(p, "action").unwrap_or_default(),
            target: obj("target"),
            parameters: obj("parameters"),
            timeout_seconds: int_field(p, "timeout_seconds"),
            issued_by: str_field(p, "issued_by"),
            delivery_claim_token: str_field(p, "delivery_claim_token"),
        }
    }

    pub fn payload(&self) -> Vec<(&'static str, Value)> {
        let opt = |v: &Option<String>| v.as_deref().map_or(Value::Null, Value::str);
        vec![
            ("action", Value::str(self.action.as_str())),
            ("target", Value::Object(self.target.clone())),
            ("parameters", Value::Object(self.parameters.clone())),
            ("timeout_seconds", Value::int(self.timeout_seconds)),
            ("issued_by", opt(&self.issued_by)),
            ("delivery_claim_token", opt(&self.delivery_claim_token)),
        ]
    }
}

/// The unsigned `hello_ack` as the reference brain writes it.
pub fn hello_ack_wire(
    session_id: &uuid::Uuid,
    brain_version: &str,
    agent_id: &uuid::Uuid,
    project_id: &uuid::Uuid,
    max_frame_size_bytes: u64,
    now_micros: i64,
) -> String {
    let simple = session_id.simple().to_string();
    let mut out = Vec::with_capacity(400);
    out.extend_from_slice(b"{\"v\":2,\"id\":");
    write_str(&format!("hack_{}", &simple[..12]), &mut out);
    out.extend_from_slice(b",\"ts\":");
    write_str(&format_pydantic_utc(now_micros), &mut out);
    out.extend_from_slice(
        b",\"type\":\"hello_ack\",\"payload\":{\"protocol_version\":\"2\",\"brain_version\":",
    );
    write_str(brain_version, &mut out);
    out.extend_from_slice(
        format!(
            ",\"agent_id\":\"{agent_id}\",\"project_id\":\"{project_id}\",\"session_id\":\"{session_id}\",\"heartbeat_interval_seconds\":10,\"max_frame_size_bytes\":{max_frame_size_bytes}}}}}"
        )
        .as_bytes(),
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pydantic_ts_format() {
        assert_eq!(
            format_pydantic_utc(1_777_636_798_000_000),
            "2026-05-01T11:59:58Z"
        );
        assert_eq!(
            format_pydantic_utc(1_777_636_798_250_001),
            "2026-05-01T11:59:58.250001Z"
        );
        assert_eq!(format_pydantic_utc(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn nonce_shape() {
        let n = random_nonce();
        assert_eq!(n.len(), 22);
        assert_ne!(n, random_nonce());
    }

    #[test]
    fn limits_are_reported_not_enforced() {
        let frame = |payload: &str| {
            crate::json::parse(format!("{{\"id\":\"x\",\"payload\":{payload}}}").as_bytes())
                .unwrap()
                .as_object()
                .unwrap()
                .clone()
        };
        let hb = Heartbeat::from_frame(&frame(r#"{"buffer_size":10000001,"dropped_events":-1}"#));
        assert_eq!(hb.limit_violations().len(), 2);
        let ok = Heartbeat::from_frame(&frame(r#"{"buffer_size":5}"#));
        assert!(ok.limit_violations().is_empty());
        let events = format!("{{\"events\":[{}]}}", vec!["{}"; 5001].join(","));
        let batch = EventBatch::from_frame(&frame(&events));
        assert_eq!(
            batch.events.as_ref().map(Vec::len),
            Some(5000),
            "truncated to the cap"
        );
        assert_eq!(batch.limit_violations().len(), 1);
        let err = ErrorFrame::from_frame(&frame(&format!(
            r#"{{"code":"{}","message":"m"}}"#,
            "c".repeat(81)
        )));
        assert_eq!(err.limit_violations().len(), 1);
        let st = AgentStatus::from_frame(&frame(r#"{"auth_failure_streak":2000000,"engines":[]}"#));
        assert_eq!(st.limit_violations().len(), 1);
    }

    fn frame_with(id: &str, payload: Vec<(&'static str, Value)>) -> Object {
        let mut obj = Object::new();
        obj.insert("id", Value::str(id));
        let entries = payload
            .into_iter()
            .map(|(k, v)| (crate::json::JStr::new(k), v))
            .collect();
        obj.insert("payload", Value::Object(Object::from_entries(entries)));
        obj
    }

    #[test]
    fn brain_to_agent_frames_round_trip_through_their_models() {
        let ack = EventBatchAck {
            acked_id: "ev_1".into(),
            received: 3,
            accepted: 2,
        };
        let read = EventBatchAck::from_frame(&frame_with(&ack.frame_id(), ack.payload()));
        assert_eq!(read, ack);
        let mut target = Object::new();
        target.insert("type", Value::str("task"));
        let cmd = CommandFrame {
            id: "c1".into(),
            action: "cancel_task".into(),
            target,
            parameters: Object::new(),
            timeout_seconds: 60,
            issued_by: None,
            delivery_claim_token: Some("t".into()),
        };
        assert_eq!(
            CommandFrame::from_frame(&frame_with("c1", cmd.payload())),
            cmd
        );
    }

    #[test]
    fn ack_counts_never_negative_and_ids_cut() {
        let ack = EventBatchAck {
            acked_id: "x".repeat(70),
            received: 1,
            accepted: 3,
        };
        assert_eq!(ack.frame_id().len(), 64);
        assert_eq!(ack.payload()[3].1, Value::int(0));
    }
}
