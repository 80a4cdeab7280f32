//! Verifies signed `event_batch` frames once each, for instruction counting
//! under callgrind (stable on a noisy machine, unlike wall-clock time):
//!
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!         --toggle-collect='*verify_frames*' target/release/verify-icount 500 20
//!
//! Instructions per event = collected Ir / (events per frame x frames).

use std::time::Duration;
use z4j_benches::{bench_binding, bench_key, signed_event_batch};
use z4j_protocol::{Direction, Now, Signer, Verifier};

#[inline(never)]
fn verify_frames(frames: &[String], now: Now) -> usize {
    let mut v = Verifier::new(bench_key(), bench_binding(), Direction::AgentToBrain);
    frames
        .iter()
        .filter(|f| v.verify(f.as_bytes(), now).is_ok())
        .count()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let per_frame: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let frames: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut signer = Signer::new(bench_key(), bench_binding());
    let batch: Vec<String> = (0..frames)
        .map(|i| {
            signed_event_batch(
                &mut signer,
                (i * per_frame) as u64,
                per_frame,
                "2026-05-01T11:59:59.500000Z",
                &format!("nonce-{i}"),
            )
        })
        .collect();
    let now = Now {
        wall_micros: 1_777_636_800_000_000,
        monotonic: Duration::from_secs(1),
    };
    let ok = verify_frames(&batch, now);
    assert_eq!(ok, frames, "every frame verifies");
    println!("verified {frames} frames x {per_frame} events");
}
