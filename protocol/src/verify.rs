//! Inbound frame verification in the reference's exact order (spec 4.6),
//! and the outbound signer (spec 4.5).

use crate::canonical::{write_str, write_value, CanonicalError};
use crate::frame::FrameType;
use crate::handshake::{validate_handshake, HandshakeError, HandshakeFrame};
use crate::json::{parse, Object, ParseError, Value};
use crate::replay::{Direction, EnvelopeFields, Now, ReplayError, ReplayGuard};
use crate::secret::ProjectKey;

pub const PROTOCOL_VERSION: i64 = 2;

/// The three strings that bind a signature to one session; never on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub agent_id: String,
    pub project_id: String,
    pub session_id: String,
}

/// Why a frame was refused. Each kind maps to one close code / accounting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("frame is not valid JSON: {0}")]
    NotJson(ParseError),
    #[error("frame must decode to a JSON object, got {0}")]
    NotObject(&'static str),
    #[error("unsupported frame version {0}, expected 2")]
    UnsupportedVersion(String),
    #[error("frame ``v`` must be an integer, got {0}")]
    VersionNotInteger(&'static str),
    #[error("frame missing required ``type`` field")]
    MissingType,
    #[error("unknown frame type '{0}'; refusing to process")]
    UnknownType(String),
    #[error("frame ``v`` missing or invalid: None, expected 2")]
    VersionMissing,
    #[error("signed frame payload must be a JSON object, got {0}")]
    PayloadNotObject(&'static str),
    #[error("{0}")]
    Canonical(CanonicalError),
    #[error("command frame missing hmac signature")]
    HmacMissing,
    #[error("invalid hmac signature length")]
    HmacLength,
    #[error("hmac signature mismatch")]
    HmacMismatch,
    /// Python raises `TypeError` for an `hmac` of the wrong JSON type.
    #[error("hmac field has an unusable type: {0}")]
    HmacType(&'static str),
    #[error("command_result payload status must be 'success' or 'failed'")]
    CommandResultStatus,
    #[error("invalid telemetry loss counters")]
    TelemetryLoss,
    #[error("{0}")]
    Replay(ReplayError),
    #[error("{0}")]
    Handshake(HandshakeError),
}

/// The reference exception class a rejection corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Protocol,
    ProtocolVersion,
    Signature,
    /// Canonicalisation failures and `TypeError`s: neither protocol nor signature.
    Other,
    Validation,
}

impl VerifyError {
    pub fn class(&self) -> ErrorClass {
        use VerifyError::*;
        match self {
            NotJson(_) | NotObject(_) | VersionNotInteger(_) | MissingType | UnknownType(_)
            | VersionMissing | PayloadNotObject(_) | CommandResultStatus | TelemetryLoss => {
                ErrorClass::Protocol
            }
            UnsupportedVersion(_) => ErrorClass::ProtocolVersion,
            HmacMissing | HmacLength | HmacMismatch | Replay(_) => ErrorClass::Signature,
            Canonical(_) | HmacType(_) => ErrorClass::Other,
            Handshake(_) => ErrorClass::Validation,
        }
    }

    /// WebSocket close code after the handshake (spec 4.8).
    pub fn ws_close_code(&self) -> u16 {
        match self.class() {
            ErrorClass::Signature => 4403,
            ErrorClass::Validation => 4400,
            _ => 1011,
        }
    }
}

/// A frame that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// A signed frame: its type and the whole parsed object.
    Signed {
        frame_type: FrameType,
        frame: Object,
    },
    /// `hello` / `hello_ack` seen mid-session: validated, not signed.
    Handshake(Box<HandshakeFrame>),
}

/// Verifies one direction of one session.
pub struct Verifier {
    key: ProjectKey,
    binding: Binding,
    guard: ReplayGuard,
    scratch: Vec<u8>,
    #[cfg(any(debug_assertions, feature = "mutants"))]
    mutation: Mutation,
}

/// Checks a verifier skips on purpose, for the conformance suite's mutation
/// testing (`z4j-conformance mutate`); absent from release builds unless
/// the `mutants` feature is on.
#[cfg(any(debug_assertions, feature = "mutants"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutation {
    pub skip_hmac: bool,
    pub skip_replay_guard: bool,
}

impl Verifier {
    pub fn new(key: ProjectKey, binding: Binding, direction: Direction) -> Self {
        Verifier {
            key,
            binding,
            guard: ReplayGuard::new(direction),
            scratch: Vec::with_capacity(1024),
            #[cfg(any(debug_assertions, feature = "mutants"))]
            mutation: Mutation::default(),
        }
    }

    /// Mutation testing only: skip the checks `m` names.
    #[cfg(any(debug_assertions, feature = "mutants"))]
    pub fn mutate(&mut self, m: Mutation) {
        self.mutation = m;
    }

    #[cfg(any(debug_assertions, feature = "mutants"))]
    fn skips(&self, hmac: bool) -> bool {
        if hmac {
            self.mutation.skip_hmac
        } else {
            self.mutation.skip_replay_guard
        }
    }

    #[cfg(not(any(debug_assertions, feature = "mutants")))]
    fn skips(&self, _hmac: bool) -> bool {
        false
    }

    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    pub fn guard(&self) -> &ReplayGuard {
        &self.guard
    }

    /// Parses and verifies raw frame bytes. A rejected frame changes no state.
    pub fn verify(&mut self, raw: &[u8], now: Now) -> Result<Verified, VerifyError> {
        let value = parse(raw).map_err(VerifyError::NotJson)?;
        let Value::Object(obj) = value else {
            return Err(VerifyError::NotObject(value.python_type_name()));
        };
        match obj.get("v") {
            Some(Value::Int(i)) if i.as_i64() != Some(PROTOCOL_VERSION) => {
                return Err(VerifyError::UnsupportedVersion(i.to_string()));
            }
            Some(Value::Int(_)) | Some(Value::Null) | None => {}
            Some(other) => return Err(VerifyError::VersionNotInteger(other.python_type_name())),
        }
        let Some(type_name) = obj.get("type").and_then(Value::as_str) else {
            return Err(VerifyError::MissingType);
        };
        let frame_type = match FrameType::from_wire(type_name) {
            Some(t) if t.is_handshake() => {
                return validate_handshake(&obj)
                    .map(|h| Verified::Handshake(Box::new(h)))
                    .map_err(VerifyError::Handshake);
            }
            Some(t) => t,
            None => return Err(VerifyError::UnknownType(type_name.to_owned())),
        };
        if obj.get("v").and_then(Value::as_i64) != Some(PROTOCOL_VERSION) {
            return Err(VerifyError::VersionMissing);
        }
        let payload = obj.get("payload");
        match payload {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(other) => return Err(VerifyError::PayloadNotObject(other.python_type_name())),
        }
        // Canonicalise first: Python builds the envelope bytes before it
        // looks at the hmac field.
        self.scratch.clear();
        write_envelope(&obj, &self.binding, &mut self.scratch).map_err(VerifyError::Canonical)?;
        if !self.skips(true) {
            check_hmac(&self.key, &self.scratch, obj.get("hmac"))?;
        }
        if frame_type == FrameType::CommandResult {
            let status = payload
                .and_then(Value::as_object)
                .and_then(|p| p.get("status"))
                .and_then(Value::as_str);
            if !matches!(status, Some("success" | "failed")) {
                return Err(VerifyError::CommandResultStatus);
            }
        }
        if matches!(frame_type, FrameType::Heartbeat | FrameType::AgentStatus) {
            if let Some(loss) = payload
                .and_then(Value::as_object)
                .and_then(|p| p.get("telemetry_loss"))
            {
                if !loss.is_null() && !crate::frame::telemetry_loss_is_valid(loss) {
                    return Err(VerifyError::TelemetryLoss);
                }
            }
        }
        let replay = self.guard.check(
            EnvelopeFields {
                seq: obj.get("seq"),
                nonce: obj.get("nonce"),
                ts: obj.get("ts"),
            },
            now,
        );
        if !self.skips(false) {
            replay.map_err(VerifyError::Replay)?;
        }
        Ok(Verified::Signed {
            frame_type,
            frame: obj,
        })
    }
}

/// Canonical envelope: the wire object minus `hmac`, with the binding keys
/// set, keys sorted. Streams the merge instead of cloning the object.
pub fn write_envelope(
    obj: &Object,
    binding: &Binding,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    let bound: [(&str, &str); 3] = [
        ("agent_id", &binding.agent_id),
        ("project_id", &binding.project_id),
        ("session_id", &binding.session_id),
    ];
    let mut next_bound = 0;
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    out.push(b'{');
    for (k, v) in obj.iter() {
        let key = k.as_str();
        let mut replaced = false;
        while next_bound < 3 && bound[next_bound].0 <= key {
            replaced |= bound[next_bound].0 == key;
            sep(out);
            write_str(bound[next_bound].0, out);
            out.push(b':');
            write_str(bound[next_bound].1, out);
            next_bound += 1;
        }
        if replaced || key == "hmac" {
            continue; // binding values replace wire values; hmac is unsigned
        }
        if k.has_lone_surrogate() {
            return Err(CanonicalError::LoneSurrogate);
        }
        sep(out);
        write_str(key, out);
        out.push(b':');
        write_value(v, out)?;
    }
    while next_bound < 3 {
        sep(out);
        write_str(bound[next_bound].0, out);
        out.push(b':');
        write_str(bound[next_bound].1, out);
        next_bound += 1;
    }
    out.push(b'}');
    Ok(())
}

/// `hex(HMAC-SHA256(key, bytes))`, lowercase.
pub fn sign_bytes(key: &ProjectKey, bytes: &[u8]) -> String {
    hex::encode(key.sign(bytes))
}

fn check_hmac(
    key: &ProjectKey,
    canonical: &[u8],
    provided: Option<&Value>,
) -> Result<(), VerifyError> {
    // Python: `if not provided` (falsy values), then len(), then compare_digest.
    let provided = match provided {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            return Err(VerifyError::HmacMissing)
        }
        Some(Value::Int(i)) if i.as_i64() == Some(0) => return Err(VerifyError::HmacMissing),
        Some(Value::Float(f)) if *f == 0.0 => return Err(VerifyError::HmacMissing),
        Some(Value::Str(s)) if s.as_str().is_empty() => return Err(VerifyError::HmacMissing),
        Some(Value::Array(a)) if a.is_empty() => return Err(VerifyError::HmacMissing),
        Some(Value::Object(o)) if o.is_empty() => return Err(VerifyError::HmacMissing),
        Some(Value::Str(s)) => s,
        Some(Value::Array(a)) if a.len() != 64 => return Err(VerifyError::HmacLength),
        Some(Value::Object(o)) if o.len() != 64 => return Err(VerifyError::HmacLength),
        Some(other) => return Err(VerifyError::HmacType(other.python_type_name())),
    };
    if provided.char_len() != 64 {
        return Err(VerifyError::HmacLength);
    }
    if !provided.as_str().is_ascii() || provided.has_lone_surrogate() {
        return Err(VerifyError::HmacType("non-ASCII str"));
    }
    let expected = sign_bytes(key, canonical);
    if crate::secret::ct_eq(&expected, provided.as_str()) {
        Ok(())
    } else {
        Err(VerifyError::HmacMismatch)
    }
}

/// Signs outbound frames for one direction of one session: `seq` from 1.
pub struct Signer {
    key: ProjectKey,
    binding: Binding,
    next_seq: u64,
    scratch: Vec<u8>,
}

impl Signer {
    pub fn new(key: ProjectKey, binding: Binding) -> Self {
        Signer {
            key,
            binding,
            next_seq: 1,
            scratch: Vec::with_capacity(512),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Signs with the current time and a fresh random nonce. `payload` is
    /// in wire order (the reference's field-declaration order).
    pub fn sign(
        &mut self,
        frame_type: FrameType,
        id: &str,
        payload: &[(&str, Value)],
        now_micros: i64,
    ) -> Result<String, CanonicalError> {
        let ts = crate::frame::format_pydantic_utc(now_micros);
        let nonce = crate::frame::random_nonce();
        self.sign_with(frame_type, id, payload, &ts, &nonce)
    }

    /// Signs with a given `ts` and `nonce` (deterministic; used by tests and
    /// vectors). Returns the wire JSON in the reference's field order:
    /// `v,id,ts,nonce,seq,hmac,type,payload`.
    pub fn sign_with(
        &mut self,
        frame_type: FrameType,
        id: &str,
        payload: &[(&str, Value)],
        ts: &str,
        nonce: &str,
    ) -> Result<String, CanonicalError> {
        let seq = self.next_seq;
        let payload_obj = Object::from_entries(
            payload
                .iter()
                .map(|(k, v)| (crate::json::JStr::new(*k), v.clone()))
                .collect(),
        );
        let mut env = Object::new();
        env.insert("v", Value::int(PROTOCOL_VERSION));
        env.insert("id", Value::str(id));
        env.insert("ts", Value::str(ts));
        env.insert("nonce", Value::str(nonce));
        env.insert("seq", Value::int(seq as i64));
        env.insert("type", Value::str(frame_type.as_wire()));
        env.insert("payload", Value::Object(payload_obj));
        self.scratch.clear();
        write_envelope(&env, &self.binding, &mut self.scratch)?;
        let hmac = sign_bytes(&self.key, &self.scratch);
        self.next_seq += 1;
        let mut out = Vec::with_capacity(self.scratch.len() + 96);
        out.extend_from_slice(b"{\"v\":2,\"id\":");
        write_str(id, &mut out);
        out.extend_from_slice(b",\"ts\":");
        write_str(ts, &mut out);
        out.extend_from_slice(b",\"nonce\":");
        write_str(nonce, &mut out);
        out.extend_from_slice(format!(",\"seq\":{seq},\"hmac\":\"{hmac}\",\"type\":").as_bytes());
        write_str(frame_type.as_wire(), &mut out);
        out.extend_from_slice(b",\"payload\":{");
        for (i, (k, v)) in payload.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(k, &mut out);
            out.push(b':');
            write_value(v, &mut out)?;
        }
        out.extend_from_slice(b"}}");
        // Every byte came from `&str`s or the canonical writer: valid UTF-8.
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
