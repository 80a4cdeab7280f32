//! `hello` / `hello_ack`: unsigned, and the only frames validated against the
//! full strict schema (no coercion, unknown fields ignored, limits enforced).

use crate::json::{parse, Object, Value};
use std::collections::BTreeMap;

pub const SUPPORTED_PROTOCOL: &str = "2";

/// A schema violation, naming the field the way pydantic's `loc` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct HandshakeError {
    pub field: String,
    pub problem: String,
}

fn bad(field: &str, problem: impl Into<String>) -> HandshakeError {
    HandshakeError {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HandshakeFrame {
    Hello(Hello),
    HelloAck(HelloAck),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub id: String,
    pub ts: Option<String>,
    pub protocol_version: String,
    pub agent_version: String,
    pub framework: String,
    pub engines: Vec<String>,
    pub schedulers: Vec<String>,
    pub capabilities: BTreeMap<String, Vec<String>>,
    pub host: Object,
    pub worker_id: Option<String>,
    pub worker_role: Option<String>,
    pub worker_pid: Option<i64>,
    pub worker_started_at: Option<String>,
    pub runtime_features: Vec<String>,
}

impl Hello {
    /// True when `engine`'s capabilities carry `marker`.
    pub fn has_capability(&self, engine: &str, marker: &str) -> bool {
        self.capabilities
            .get(engine)
            .is_some_and(|m| m.iter().any(|c| c == marker))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HelloAck {
    pub id: String,
    pub ts: Option<String>,
    pub protocol_version: String,
    pub brain_version: String,
    pub agent_id: String,
    pub project_id: String,
    pub session_id: String,
    pub heartbeat_interval_seconds: i64,
    pub max_frame_size_bytes: i64,
}

/// What the gateway does with a connection's first frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FirstFrameError {
    #[error("first frame is not valid JSON: {0}")]
    NotJson(String),
    #[error("first frame must be hello, got {0}")]
    NotHello(String),
    #[error("invalid hello: {0}")]
    Invalid(HandshakeError),
    #[error("unsupported protocol version {0:?}; this brain supports [\"2\"]")]
    UnsupportedProtocol(String),
}

impl FirstFrameError {
    /// Close code: 4426 for a protocol-version mismatch, 4400 otherwise.
    pub fn ws_close_code(&self) -> u16 {
        match self {
            FirstFrameError::UnsupportedProtocol(_) => 4426,
            _ => 4400,
        }
    }
}

/// The gateway's first-frame checks: JSON, a valid `hello`, version "2".
pub fn parse_first_frame(raw: &[u8]) -> Result<Hello, FirstFrameError> {
    let value = parse(raw).map_err(|e| FirstFrameError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(FirstFrameError::NotJson(format!(
            "expected an object, got {}",
            value.python_type_name()
        )));
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("hello") => {}
        Some(other) => return Err(FirstFrameError::NotHello(other.to_owned())),
        None => return Err(FirstFrameError::Invalid(bad("type", "field required"))),
    }
    let hello = match validate_handshake(&obj).map_err(FirstFrameError::Invalid)? {
        HandshakeFrame::Hello(h) => h,
        HandshakeFrame::HelloAck(_) => return Err(FirstFrameError::NotHello("hello_ack".into())),
    };
    if hello.protocol_version != SUPPORTED_PROTOCOL {
        return Err(FirstFrameError::UnsupportedProtocol(hello.protocol_version));
    }
    Ok(hello)
}

/// Strict validation of a handshake frame object (`type` already read).
pub fn validate_handshake(obj: &Object) -> Result<HandshakeFrame, HandshakeError> {
    // v: Literal[2], default 2 (pydantic's JSON mode also takes 2.0).
    match obj.get("v") {
        None => {}
        Some(Value::Int(i)) if i.as_i64() == Some(2) => {}
        Some(Value::Float(f)) if *f == 2.0 => {}
        Some(_) => return Err(bad("v", "Input should be 2")),
    }
    let id = string(obj, "id", 1, 64)?.ok_or_else(|| bad("id", "Field required"))?;
    let ts = optional_datetime(obj, "ts")?;
    let payload = match obj.get("payload") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err(bad("payload", "Input should be an object")),
        None => return Err(bad("payload", "Field required")),
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("hello") => Ok(HandshakeFrame::Hello(hello_payload(id, ts, payload)?)),
        Some("hello_ack") => Ok(HandshakeFrame::HelloAck(hello_ack_payload(
            id, ts, payload,
        )?)),
        _ => Err(bad("type", "Input should be 'hello' or 'hello_ack'")),
    }
}

fn hello_payload(id: String, ts: Option<String>, p: &Object) -> Result<Hello, HandshakeError> {
    Ok(Hello {
        id,
        ts,
        protocol_version: required_string(p, "protocol_version", 40)?,
        agent_version: required_string(p, "agent_version", 40)?,
        framework: required_string(p, "framework", 40)?,
        engines: string_list(p, "engines", 64)?,
        schedulers: string_list(p, "schedulers", 64)?,
        capabilities: capabilities(p)?,
        host: match p.get("host") {
            None => Object::new(),
            Some(Value::Object(h)) => h.clone(),
            Some(_) => return Err(bad("payload.host", "Input should be a valid dictionary")),
        },
        worker_id: nullable_string(p, "worker_id", 128)?,
        worker_role: nullable_string(p, "worker_role", 32)?,
        worker_pid: match p.get("worker_pid") {
            None | Some(Value::Null) => None,
            Some(Value::Int(i)) => match i.as_i64() {
                Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Some(v),
                _ => return Err(bad("payload.worker_pid", "out of range 0..2147483647")),
            },
            Some(_) => return Err(bad("payload.worker_pid", "Input should be a valid integer")),
        },
        worker_started_at: optional_datetime(p, "worker_started_at")?,
        runtime_features: string_list(p, "runtime_features", 64)?,
    })
}

fn hello_ack_payload(
    id: String,
    ts: Option<String>,
    p: &Object,
) -> Result<HelloAck, HandshakeError> {
    Ok(HelloAck {
        id,
        ts,
        protocol_version: required_string(p, "protocol_version", 40)?,
        brain_version: required_string(p, "brain_version", 40)?,
        agent_id: required_string(p, "agent_id", 64)?,
        project_id: required_string(p, "project_id", 64)?,
        session_id: required_string(p, "session_id", 64)?,
        heartbeat_interval_seconds: bounded_int(p, "heartbeat_interval_seconds", 10, 1, 3600)?,
        max_frame_size_bytes: bounded_int(p, "max_frame_size_bytes", 1_048_576, 1024, 64 << 20)?,
    })
}

impl HelloAck {
    /// The agent's acceptance check on top of the schema.
    pub fn check_protocol(&self) -> Result<(), String> {
        if self.protocol_version == SUPPORTED_PROTOCOL {
            Ok(())
        } else {
            Err(format!(
                "unsupported protocol version '{}'; this build supports ['2']",
                self.protocol_version
            ))
        }
    }
}

fn string(o: &Object, key: &str, min: usize, max: usize) -> Result<Option<String>, HandshakeError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => {
            let n = s.char_len();
            if n < min || n > max {
                Err(bad(key, format!("length {n} outside {min}..{max}")))
            } else {
                Ok(Some(s.as_str().to_owned()))
            }
        }
        Some(_) => Err(bad(key, "Input should be a valid string")),
    }
}

fn required_string(o: &Object, key: &str, max: usize) -> Result<String, HandshakeError> {
    string(o, key, 0, max)
        .map_err(|e| bad(&format!("payload.{}", e.field), e.problem))?
        .ok_or_else(|| bad(&format!("payload.{key}"), "Field required"))
}

fn nullable_string(o: &Object, key: &str, max: usize) -> Result<Option<String>, HandshakeError> {
    if matches!(o.get(key), Some(Value::Null)) {
        return Ok(None);
    }
    string(o, key, 0, max).map_err(|e| bad(&format!("payload.{}", e.field), e.problem))
}

fn string_list(o: &Object, key: &str, max_items: usize) -> Result<Vec<String>, HandshakeError> {
    let field = format!("payload.{key}");
    match o.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > max_items {
                return Err(bad(&field, format!("at most {max_items} items")));
            }
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad(&field, "Input should be a valid string"))
                })
                .collect()
        }
        Some(_) => Err(bad(&field, "Input should be a valid list")),
    }
}

fn capabilities(o: &Object) -> Result<BTreeMap<String, Vec<String>>, HandshakeError> {
    match o.get("capabilities") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let field = format!("payload.capabilities.{}", k.as_str());
                let list = v
                    .as_array()
                    .ok_or_else(|| bad(&field, "Input should be a valid list"))?
                    .iter()
                    .map(|c| {
                        c.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(&field, "Input should be a valid string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((k.as_str().to_owned(), list))
            })
            .collect(),
        Some(_) => Err(bad(
            "payload.capabilities",
            "Input should be a valid dictionary",
        )),
    }
}

fn bounded_int(
    o: &Object,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, HandshakeError> {
    match o.get(key) {
        None => Ok(default),
        Some(Value::Int(i)) => match i.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(bad(
                &format!("payload.{key}"),
                format!("outside {min}..{max}"),
            )),
        },
        Some(_) => Err(bad(
            &format!("payload.{key}"),
            "Input should be a valid integer",
        )),
    }
}

fn optional_datetime(o: &Object, key: &str) -> Result<Option<String>, HandshakeError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if is_rfc3339ish(s.as_str()) => Ok(Some(s.as_str().to_owned())),
        Some(_) => Err(bad(key, "Input should be a valid datetime")),
    }
}

/// The datetime strings pydantic accepts from JSON: `YYYY-MM-DD`, then
/// `T`/`t`/space and `HH:MM[:SS[.f{1,9}]]`, then optional `Z`/`z`/`±HH[:]MM`.
fn is_rfc3339ish(s: &str) -> bool {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let two = |i: usize| digit(i) && digit(i + 1);
    if !(two(0) && two(2) && b.get(4) == Some(&b'-') && two(5) && b.get(7) == Some(&b'-') && two(8))
    {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || !two(11)
        || b.get(13) != Some(&b':')
        || !two(14)
    {
        return false;
    }
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        if !two(i + 1) {
            return false;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while digit(i) {
                i += 1;
            }
            if i == start || i - start > 9 {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let rest = &s[i + 1..];
            let rb = rest.as_bytes();
            (rb.len() == 5
                && rb[2] == b':'
                && rest
                    .bytes()
                    .enumerate()
                    .all(|(j, c)| j == 2 || c.is_ascii_digit()))
                || (rb.len() == 4 && rest.bytes().all(|c| c.is_ascii_digit()))
        }
        _ => false,
    }
}
