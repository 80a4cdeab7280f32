//! Inbound verification of `event_batch` frames: parse + canonicalise +
//! HMAC + replay check, at 1, 50 and 500 realistic events per frame.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::time::Duration;
use z4j_benches::{bench_binding, bench_key, signed_event_batch};
use z4j_protocol::{Direction, Now, Signer, Verifier};

const TS: &str = "2026-05-01T11:59:59.500000Z";

fn verify_event_batch(c: &mut Criterion) {
    let now = Now {
        wall_micros: 1_777_636_800_000_000,
        monotonic: Duration::from_secs(1),
    };
    let mut group = c.benchmark_group("verify_event_batch");
    for n in [1usize, 50, 500] {
        let mut signer = Signer::new(bench_key(), bench_binding());
        let frame = signed_event_batch(&mut signer, 0, n, TS, "bench-nonce");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_events_{}B", frame.len()), |b| {
            b.iter_batched(
                || Verifier::new(bench_key(), bench_binding(), Direction::AgentToBrain),
                |mut v| {
                    v.verify(frame.as_bytes(), now)
                        .expect("bench frame verifies");
                    v
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The stages of verification on one 500-event frame, to locate regressions.
fn stages(c: &mut Criterion) {
    let mut signer = Signer::new(bench_key(), bench_binding());
    let frame = signed_event_batch(&mut signer, 0, 500, TS, "bench-nonce");
    let parsed = z4j_protocol::parse(frame.as_bytes()).expect("parses");
    let obj = parsed.as_object().expect("object").clone();
    let mut canonical = Vec::new();
    z4j_protocol::verify::write_envelope(&obj, &bench_binding(), &mut canonical)
        .expect("canonical");
    let mut group = c.benchmark_group("stages_500_events");
    group.throughput(Throughput::Elements(500));
    group.bench_function("parse", |b| {
        b.iter(|| z4j_protocol::parse(frame.as_bytes()))
    });
    group.bench_function("canonicalise", |b| {
        let mut out = Vec::with_capacity(canonical.len());
        b.iter(|| {
            out.clear();
            z4j_protocol::verify::write_envelope(&obj, &bench_binding(), &mut out)
        })
    });
    group.bench_function("hmac", |b| {
        b.iter(|| z4j_protocol::verify::sign_bytes(&bench_key(), &canonical))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = verify_event_batch, stages
}
criterion_main!(benches);
