//! Raw bytes → parse → verify, as the gateway sees them (first frame and
//! signed frames). Must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use z4j_protocol::handshake::parse_first_frame;
use z4j_protocol::*;

fuzz_target!(|data: &[u8]| {
    let _ = parse_first_frame(data);
    let key = ProjectKey::from_bytes([7; 32]);
    let binding = Binding {
        agent_id: "7d3f6a2e-9b1c-4e5f-8a7b-6c5d4e3f2a10".into(),
        project_id: "00112233-4455-6677-8899-aabbccddeeff".into(),
        session_id: "5a1e0c9d-2b3a-4c5d-9e8f-7a6b5c4d3e2f".into(),
    };
    let mut v = Verifier::new(key, binding, Direction::AgentToBrain);
    let now = Now { wall_micros: 1_777_636_800_000_000, monotonic: Duration::from_secs(1) };
    if let Err(e) = v.verify(data, now) {
        // Every rejection maps to a close code.
        assert!(matches!(e.ws_close_code(), 1011 | 4400 | 4403));
    }
});
