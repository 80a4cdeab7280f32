//! Structured frames from `arbitrary`: whatever we sign, we verify; any byte
//! flip is either rejected or leaves the signed content unchanged.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use z4j_protocol::json::Int;
use z4j_protocol::verify::write_envelope;
use z4j_protocol::*;

#[derive(Arbitrary, Debug)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Big(u128),
    Float(f64),
    Str(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    frame_type: u8,
    id: String,
    fields: Vec<(String, Vec<Leaf>)>,
    flip_at: u16,
    flip_to: u8,
}

fn leaf(l: &Leaf) -> Value {
    match l {
        Leaf::Null => Value::Null,
        Leaf::Bool(b) => Value::Bool(*b),
        Leaf::Int(i) => Value::int(*i),
        // A normalised decimal beyond i64: no leading zeros.
        Leaf::Big(u) => Value::Int(Int::Big(format!("{}0000000000000000000000", (*u).max(1)).into())),
        Leaf::Float(f) if f.is_finite() => Value::Float(*f),
        Leaf::Float(_) => Value::Null,
        Leaf::Str(s) => Value::str(s.as_str()),
    }
}

fuzz_target!(|input: Input| {
    let types = [
        FrameType::EventBatch,
        FrameType::Heartbeat,
        FrameType::AgentStatus,
        FrameType::CommandAck,
        FrameType::RegistryDelta,
        FrameType::Error,
    ];
    let ft = types[input.frame_type as usize % types.len()];
    let binding = Binding {
        agent_id: "a".into(),
        project_id: "p".into(),
        session_id: "s".into(),
    };
    let key = ProjectKey::from_bytes([9; 32]);
    let mut fields: Vec<(String, Value)> = Vec::new();
    for (k, leaves) in input.fields.iter().take(16) {
        if k.is_empty() || fields.iter().any(|(e, _)| e == k) {
            continue;
        }
        fields.push((k.clone(), Value::Array(leaves.iter().take(16).map(leaf).collect())));
    }
    let refs: Vec<(&str, Value)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut signer = Signer::new(key.clone(), binding.clone());
    let wire = signer
        .sign_with(ft, &input.id, &refs, "2026-05-01T12:00:00Z", "nonce")
        .expect("finite values always canonicalise");
    let now = Now { wall_micros: 1_777_636_800_000_000, monotonic: Duration::from_secs(1) };
    let mut v = Verifier::new(key.clone(), binding.clone(), Direction::AgentToBrain);
    match v.verify(wire.as_bytes(), now) {
        Ok(_) => {}
        // The signer does not check payloads; the verifier refuses these
        // two shapes of them after the signature (a 5-minute run found one).
        Err(VerifyError::TelemetryLoss | VerifyError::CommandResultStatus) => return,
        Err(e) => panic!("a frame we signed must verify: {e:?}"),
    }

    let mut flipped = wire.clone().into_bytes();
    let i = input.flip_at as usize % flipped.len();
    if flipped[i] == input.flip_to {
        return;
    }
    flipped[i] = input.flip_to;
    let mut v2 = Verifier::new(key, binding.clone(), Direction::AgentToBrain);
    if v2.verify(&flipped, now).is_ok() {
        let env = |b: &[u8]| {
            let v = parse(b).ok()?;
            let mut out = Vec::new();
            write_envelope(v.as_object()?, &binding, &mut out).ok()?;
            Some(out)
        };
        assert_eq!(env(&flipped), env(wire.as_bytes()), "a changed frame verified");
    }
});
