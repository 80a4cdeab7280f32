//! Every vector produced by the reference `z4j_core` 1.13.0 (`tests/data/`,
//! copied from `specs/vectors/`), positive and negative.

use serde_json::Value as J;
use std::time::Duration;
use uuid::Uuid;
use z4j_protocol::canonical::to_canonical;
use z4j_protocol::event_id::{event_row_id, normalize_occurred_at};
use z4j_protocol::handshake::{parse_first_frame, validate_handshake, HandshakeFrame};
use z4j_protocol::isotime::parse_python_isoformat;
use z4j_protocol::secret::{
    agent_token_hash, decode_agent_hmac_secret, legacy_purge_confirm_token, purge_confirm_token,
    ProjectKey, SecretError,
};
use z4j_protocol::verify::{write_envelope, ErrorClass};
use z4j_protocol::*;

fn load(name: &str) -> J {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(v: &J) -> &str {
    v.as_str().unwrap()
}

/// The assumed "now" of every vector, with a monotonic clock at 1000 s.
fn vector_now(file: &J) -> Now {
    let t = parse_python_isoformat(&s(&file["verification_now"]).replace('Z', "+00:00")).unwrap();
    Now {
        wall_micros: t.micros,
        monotonic: Duration::from_secs(1000),
    }
}

fn key_from_hex(h: &str) -> ProjectKey {
    ProjectKey::from_bytes(hex::decode(h).unwrap().try_into().unwrap())
}

fn binding(agent: &str, project: &str, session: &str) -> Binding {
    Binding {
        agent_id: agent.into(),
        project_id: project.into(),
        session_id: session.into(),
    }
}

fn reference_class(c: ErrorClass) -> &'static [&'static str] {
    match c {
        ErrorClass::Protocol => &["ProtocolError"],
        ErrorClass::ProtocolVersion => &["ProtocolVersionError"],
        ErrorClass::Signature => &["SignatureError"],
        ErrorClass::Other => &["ValueError", "TypeError", "UnicodeEncodeError"],
        ErrorClass::Validation => &["ValidationError"],
    }
}

#[test]
fn canonical_json_cases() {
    let file = load("canonical_json.json");
    let cases = file["cases"].as_array().unwrap();
    assert!(cases.len() >= 19);
    for case in cases {
        let v = parse(s(&case["input_json"]).as_bytes()).unwrap();
        let out = to_canonical(&v).unwrap();
        assert_eq!(
            hex::encode(&out),
            s(&case["canonical_hex"]),
            "case {}",
            case["name"]
        );
        // Idempotence on the vectors too.
        assert_eq!(to_canonical(&parse(&out).unwrap()).unwrap(), out);
    }
    for case in file["error_cases"].as_array().unwrap() {
        let v = parse(s(&case["input_json"]).as_bytes()).unwrap();
        let err = to_canonical(&v).unwrap_err();
        let class = s(&case["error"]["class"]);
        match class {
            "ValueError" => assert_eq!(err.to_string(), s(&case["error"]["message"])),
            "UnicodeEncodeError" => assert!(err.to_string().contains("surrogates not allowed")),
            other => panic!("unexpected class {other}"),
        }
    }
}

#[test]
fn project_secret_derivations() {
    let file = load("secrets.json");
    for case in file["project_secret_derivations"].as_array().unwrap() {
        let project = Uuid::parse_str(s(&case["project_id"])).unwrap();
        assert_eq!(
            hex::encode(project.to_bytes_le()),
            s(&case["project_id_bytes_le_hex"])
        );
        let key = ProjectKey::derive(s(&case["master_secret"]).as_bytes(), project).unwrap();
        assert_eq!(hex::encode(key.as_bytes()), s(&case["derived_secret_hex"]));
        assert_eq!(key.to_agent_string(), s(&case["hmac_secret_for_agent"]));
    }
    assert_eq!(
        ProjectKey::derive(&[b'x'; 31], Uuid::nil())
            .unwrap_err()
            .to_string(),
        s(&file["master_too_short"]["message"])
    );
}

#[test]
fn agent_hmac_secret_decoding() {
    let file = load("secrets.json");
    for case in file["agent_hmac_secret_decoding"].as_array().unwrap() {
        let got = decode_agent_hmac_secret(s(&case["input"]));
        match case.get("error") {
            Some(err) => assert_eq!(
                got.unwrap_err().to_string(),
                s(&err["message"]),
                "{}",
                case["name"]
            ),
            None => {
                let bytes = got.unwrap();
                assert_eq!(hex::encode(&bytes), s(&case["decoded_hex"]));
                let usable = case["usable"].as_bool().unwrap();
                let as_key = z4j_protocol::secret::decode_agent_key(s(&case["input"]));
                assert_eq!(as_key.is_ok(), usable, "{}", case["name"]);
                if !usable {
                    assert_eq!(as_key.unwrap_err(), SecretError::TooShort(bytes.len()));
                }
            }
        }
    }
}

#[test]
fn agent_token_hashes_and_purge_tokens() {
    let file = load("secrets.json");
    for case in file["agent_token_hashes"].as_array().unwrap() {
        assert_eq!(
            agent_token_hash(s(&case["master_secret"]).as_bytes(), s(&case["token"])),
            s(&case["token_hash"])
        );
    }
    for case in file["purge_confirm_tokens"].as_array().unwrap() {
        let key = key_from_hex(s(&case["project_secret_hex"]));
        let queue = s(&case["queue_name"]);
        let depth = case["queue_depth"].as_u64().unwrap();
        assert_eq!(
            purge_confirm_token(&key, queue, depth),
            s(&case["keyed_token"])
        );
        assert_eq!(
            legacy_purge_confirm_token(queue, depth),
            s(&case["legacy_unkeyed_token"])
        );
    }
}

#[test]
fn hello_vectors() {
    let file = load("handshake.json");
    for case in file["hello"].as_array().unwrap() {
        let got = parse_first_frame(s(&case["wire_json"]).as_bytes());
        match s(&case["verdict"]) {
            "accept" => {
                got.unwrap_or_else(|e| panic!("{} rejected: {e}", case["name"]));
            }
            _ => {
                let err = got.expect_err(s(&case["name"]));
                assert_eq!(
                    u64::from(err.ws_close_code()),
                    case["ws_close"].as_u64().unwrap(),
                    "{}: {err}",
                    case["name"]
                );
            }
        }
    }
}

#[test]
fn hello_ack_vectors() {
    let file = load("handshake.json");
    for case in file["hello_ack"].as_array().unwrap() {
        let v = parse(s(&case["wire_json"]).as_bytes()).unwrap();
        let verdict = validate_handshake(v.as_object().unwrap())
            .map_err(|e| e.to_string())
            .and_then(|f| match f {
                HandshakeFrame::HelloAck(a) => a.check_protocol().map(|_| a),
                HandshakeFrame::Hello(_) => Err("not hello_ack".into()),
            });
        match s(&case["verdict"]) {
            "accept" => {
                let ack = verdict.unwrap();
                assert_eq!(ack.session_id, s(&case["session_id"]));
                assert_eq!(
                    ack.heartbeat_interval_seconds,
                    case["heartbeat_interval_seconds"].as_i64().unwrap()
                );
                assert_eq!(
                    ack.max_frame_size_bytes,
                    case["max_frame_size_bytes"].as_i64().unwrap()
                );
            }
            _ => {
                let err = verdict.unwrap_err();
                if s(&case["error"]["class"]) == "ProtocolError" {
                    assert_eq!(err, s(&case["error"]["message"]));
                }
            }
        }
    }
}

/// Our `hello_ack` writer produces what the reference agent accepts.
#[test]
fn our_hello_ack_is_valid() {
    let session = Uuid::parse_str("5a1e0c9d-2b3a-4c5d-9e8f-7a6b5c4d3e2f").unwrap();
    let agent = Uuid::parse_str("7d3f6a2e-9b1c-4e5f-8a7b-6c5d4e3f2a10").unwrap();
    let project = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
    let wire = frame::hello_ack_wire(
        &session,
        "1.13.0",
        &agent,
        &project,
        1_048_576,
        1_777_636_798_500_000,
    );
    assert_eq!(
        wire,
        s(&load("handshake.json")["hello_ack"][0]["wire_json"])
    );
}

#[test]
fn signed_frame_sessions() {
    let file = load("signed_frames.json");
    let now = vector_now(&file);
    let mut frames_checked = 0;
    for session in file["sessions"].as_array().unwrap() {
        let key = key_from_hex(s(&session["secret_hex"]));
        assert_eq!(key.to_agent_string(), s(&session["secret_for_agent"]));
        let b = binding(
            s(&session["agent_id"]),
            s(&session["project_id"]),
            s(&session["session_binding"]),
        );
        let direction = match s(&session["direction"]) {
            "agent->brain" => Direction::AgentToBrain,
            _ => Direction::BrainToAgent,
        };
        let mut in_sequence = Verifier::new(key.clone(), b.clone(), direction);
        let mut signer = Signer::new(key.clone(), b.clone());
        for f in session["frames"].as_array().unwrap() {
            let wire = s(&f["wire_json"]);
            let obj = parse(wire.as_bytes()).unwrap();
            let mut env = Vec::new();
            write_envelope(obj.as_object().unwrap(), &b, &mut env).unwrap();
            assert_eq!(
                std::str::from_utf8(&env).unwrap(),
                s(&f["canonical_envelope"]),
                "{}",
                f["name"]
            );
            assert_eq!(verify::sign_bytes(&key, &env), s(&f["hmac"]));
            assert!(
                in_sequence.verify(wire.as_bytes(), now).is_ok(),
                "{} in sequence",
                f["name"]
            );
            let mut alone = Verifier::new(key.clone(), b.clone(), direction);
            assert!(
                alone.verify(wire.as_bytes(), now).is_ok(),
                "{} standalone",
                f["name"]
            );

            // Re-sign the same frame with our signer: same hmac, and for
            // flat payloads the exact wire bytes.
            let o = obj.as_object().unwrap();
            let payload = o.get("payload").and_then(Value::as_object).unwrap();
            let wire_order: Vec<(String, Value)> = wire_payload_order(wire)
                .into_iter()
                .map(|k| (k.clone(), payload.get(&k).unwrap().clone()))
                .collect();
            let fields: Vec<(&str, Value)> = wire_order
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            while signer.next_seq() < f["seq"].as_u64().unwrap() {
                signer
                    .sign_with(FrameType::Heartbeat, "skip", &[], "x", "x")
                    .unwrap();
            }
            let ours = signer
                .sign_with(
                    FrameType::from_wire(s(&f["type"])).unwrap(),
                    o.get("id").and_then(Value::as_str).unwrap(),
                    &fields,
                    s(&f["ts"]),
                    s(&f["nonce"]),
                )
                .unwrap();
            let ours_obj = parse(ours.as_bytes()).unwrap();
            assert_eq!(
                ours_obj
                    .as_object()
                    .unwrap()
                    .get("hmac")
                    .and_then(Value::as_str),
                Some(s(&f["hmac"]))
            );
            if payload.iter().all(|(_, v)| is_flat(v)) {
                assert_eq!(ours, wire, "{} wire bytes", f["name"]);
            }
            frames_checked += 1;
        }
    }
    assert_eq!(frames_checked, 15);
}

/// Scalars and arrays of scalars: no nested key order to disagree on.
fn is_flat(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().all(is_flat),
        _ => true,
    }
}

/// Payload keys in wire order (our `Object` sorts, so read them off the text).
fn wire_payload_order(wire: &str) -> Vec<String> {
    let v: serde_json::Map<String, J> = serde_json::from_str(wire).unwrap();
    // serde_json without preserve_order sorts too; scan the text instead.
    let start = wire.find("\"payload\":{").unwrap() + "\"payload\":".len();
    let mut keys = Vec::new();
    let mut depth = 0;
    let bytes = wire.as_bytes();
    let mut i = start;
    let mut expect_key = false;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && bytes[i] == b'{';
            }
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_key = true,
            b'"' => {
                let mut j = i + 1;
                while bytes[j] != b'"' {
                    if bytes[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if expect_key && depth == 1 {
                    keys.push(serde_json::from_str::<String>(&wire[i..=j]).unwrap());
                    expect_key = false;
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    assert_eq!(keys.len(), v["payload"].as_object().unwrap().len());
    keys
}

#[test]
fn wire_format_variants() {
    let file = load("signed_frames.json");
    let now = vector_now(&file);
    let session = &file["sessions"][0];
    let key = key_from_hex(s(&session["secret_hex"]));
    let b = binding(
        s(&session["agent_id"]),
        s(&session["project_id"]),
        s(&session["session_binding"]),
    );
    for case in file["wire_format_variants"].as_array().unwrap() {
        let mut v = Verifier::new(key.clone(), b.clone(), Direction::AgentToBrain);
        let got = v.verify(s(&case["wire_json"]).as_bytes(), now);
        match s(&case["expect"]) {
            "accept" => assert!(got.is_ok(), "{}: {:?}", case["name"], got),
            _ => assert_eq!(got.unwrap_err().to_string(), s(&case["error"]["message"])),
        }
    }
}

#[test]
fn negative_frames() {
    let file = load("negative_frames.json");
    let now = vector_now(&file);
    let key = key_from_hex(s(&file["secret_hex"]));
    let cases = file["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 50);
    for case in cases {
        let bd = &case["binding"];
        let b = binding(
            s(&bd["agent_id"]),
            s(&bd["project_id"]),
            s(&bd["session_id"]),
        );
        let mut v = Verifier::new(key.clone(), b, Direction::AgentToBrain);
        for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let name = format!("{} step {i}", s(&case["name"]));
            let got = v.verify(s(&step["wire_json"]).as_bytes(), now);
            match s(&step["verdict"]) {
                "accept" => {
                    let verified = got.unwrap_or_else(|e| panic!("{name}: rejected: {e}"));
                    let t = match verified {
                        Verified::Signed { frame_type, .. } => frame_type.as_wire(),
                        Verified::Handshake(h) => match *h {
                            HandshakeFrame::Hello(_) => "hello",
                            HandshakeFrame::HelloAck(_) => "hello_ack",
                        },
                    };
                    assert_eq!(t, s(&step["accepted_type"]), "{name}");
                }
                _ => {
                    let err = got.expect_err(&name);
                    let class = s(&step["error"]["class"]);
                    assert!(
                        reference_class(err.class()).contains(&class),
                        "{name}: {class} vs {err:?}"
                    );
                    if matches!(
                        class,
                        "ProtocolError" | "ProtocolVersionError" | "SignatureError"
                    ) {
                        assert_eq!(err.to_string(), s(&step["error"]["message"]), "{name}");
                    }
                    assert_eq!(
                        u64::from(err.ws_close_code()),
                        step["ws_close_after_handshake"].as_u64().unwrap(),
                        "{name}"
                    );
                }
            }
        }
    }
}

#[test]
fn event_row_ids() {
    let file = load("event_ids.json");
    let now = vector_now(&file).wall_micros;
    for case in file["vectors"].as_array().unwrap() {
        let project = Uuid::parse_str(s(&case["project_id"])).unwrap();
        let occurred = normalize_occurred_at(Some(s(&case["occurred_at_wire"])), now);
        let want_utc = parse_python_isoformat(s(&case["occurred_at_utc"]))
            .unwrap()
            .micros;
        assert_eq!(occurred, want_utc);
        let (id, stored) = event_row_id(
            &project,
            s(&case["engine"]),
            s(&case["task_id"]),
            s(&case["kind"]),
            occurred,
            case["agent_event_id"].as_str(),
        );
        assert_eq!(
            id.map(|u| u.to_string()),
            case["event_row_id"].as_str().map(str::to_owned),
            "{}",
            case["rule"]
        );
        let want_stored = parse_python_isoformat(s(&case["stored_occurred_at"]))
            .unwrap()
            .micros;
        assert_eq!(stored, want_stored);
    }
}

#[test]
fn occurred_at_clamp() {
    let now = 1_777_636_800_000_000;
    assert_eq!(normalize_occurred_at(Some("garbage"), now), now);
    assert_eq!(
        normalize_occurred_at(Some("2020-01-01T00:00:00Z"), now),
        now
    );
    assert_eq!(
        normalize_occurred_at(Some("2026-05-01T12:01:01+00:00"), now),
        now
    );
    assert_eq!(
        normalize_occurred_at(Some("2026-05-01T12:01:00+00:00"), now),
        now + 60_000_000
    );
    assert_eq!(normalize_occurred_at(None, now), now);
}
