//! The in-process ingest path without the network: verify + decode +
//! persist (commit included) one `event_batch` of 1, 50 or 500 realistic
//! events, on SQLite and on PostgreSQL (skipped, with a note, when no
//! PostgreSQL answers). Locates an ingest regression that `loadgen` shows.

#[path = "../shared/brain_fixture.rs"]
mod fixture;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixture::settings_in;
use std::time::{Duration, Instant};
use uuid::Uuid;
use z4j_benches::{bench_binding, bench_key, signed_event_batch};
use z4j_brain::ingest::{Ingestor, Outcome, OverLimit};
use z4j_brain::settings::Settings;
use z4j_brain::store::Db;
use z4j_protocol::frame::EventBatch;
use z4j_protocol::{Direction, Now, Signer, Verified, Verifier};

struct Bench {
    db: Db,
    settings: Settings,
    project: Uuid,
    agent: Uuid,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<(z4j_conformance::postgres::Provider, String)>,
}

async fn prepare(pg: bool) -> Result<Bench, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let settings = settings_in(dir.path())?;
    let fresh = fixture::fresh(dir.path(), &settings, pg).await?;
    Ok(Bench {
        db: fresh.db,
        settings,
        project: fresh.project,
        agent: fresh.agent,
        _dir: Some(dir),
        _pg: fresh.pg,
    })
}

fn ingest(c: &mut Criterion) {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start the runtime: {e}"),
    };
    for (label, pg) in [("sqlite", false), ("postgres", true)] {
        let bench = match rt.block_on(prepare(pg)) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("ingest/{label}: skipped ({e})");
                continue;
            }
        };
        let (alerts, _alert_rx) = z4j_brain::notify::Alerts::channel();
        let (ingestor, _writer) = {
            let _guard = rt.enter();
            Ingestor::new(
                &bench.settings,
                bench.db.clone(),
                alerts,
                z4j_brain::fleet::live::Live::new(false),
            )
        };
        let mut group = c.benchmark_group(format!("ingest_{label}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(8));
        let mut first_event = 0u64;
        for n in [1usize, 50, 500] {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(format!("{n}_events"), |b| {
                b.iter_custom(|iters| {
                    let mut signer = Signer::new(bench_key(), bench_binding());
                    let mut verifier =
                        Verifier::new(bench_key(), bench_binding(), Direction::AgentToBrain);
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        // Fresh events each time (unique ids), built untimed.
                        let ts =
                            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                        let frame = signed_event_batch(
                            &mut signer,
                            first_event,
                            n,
                            &ts,
                            &format!("nonce-{first_event}-{i}"),
                        );
                        first_event += n as u64;
                        let now = Now {
                            wall_micros: chrono::Utc::now().timestamp_micros(),
                            monotonic: Duration::from_secs(1 + i),
                        };
                        let started = Instant::now();
                        let verified = verifier.verify(frame.as_bytes(), now);
                        let Ok(Verified::Signed { frame, .. }) = verified else {
                            panic!("bench frame does not verify: {verified:?}");
                        };
                        let batch = EventBatch::from_frame(&frame);
                        let result = rt.block_on(ingestor.ingest(
                            bench.project,
                            bench.agent,
                            &batch,
                            OverLimit::Wait,
                        ));
                        total += started.elapsed();
                        match result {
                            Some(r) if r.outcome == Outcome::Durable && r.accepted == n as u64 => {}
                            other => panic!("batch not persisted: {other:?}"),
                        }
                    }
                    total
                });
            });
        }
        group.finish();
        rt.block_on(bench.db.close());
        if let Some((provider, name)) = &bench._pg {
            rt.block_on(provider.drop_database(name));
        }
    }
}

criterion_group!(benches, ingest);
criterion_main!(benches);
