//! Workloads for instruction counting under callgrind (`benches/icount.sh`
//! runs them and compares with `benches/icount-baseline.txt`). Counts repeat
//! for the same binary and input, unlike wall-clock time on a shared machine.
//!
//!   icount verify <events-per-frame> <frames>
//!       verify signed `event_batch` frames; count `*verify_frames*` only.
//!       Also prints the wall clock and events/s of that function (run it
//!       natively for that figure, not under callgrind)
//!   icount prepare <dir> <events-per-frame> <frames>
//!       a migrated SQLite brain database with one project and one agent in
//!       <dir>, and the signed frames to send to it (not counted)
//!   icount ingest <dir>
//!       verify, decode and commit each prepared frame in turn, one in
//!       flight, as the gateway does; the whole process is counted
//!
//! The ingest run is a separate process so that migrations and signing stay
//! out of its count; its own start (settings, pool, writer) is measured with
//! zero frames and subtracted by the script.

use fixture::settings_in;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;
use z4j_benches::{bench_binding, bench_key, signed_event_batch_with, EventIds};
use z4j_brain::ingest::{Ingestor, Outcome, OverLimit};
use z4j_brain::settings::{DatabaseTarget, Settings};
use z4j_brain::store::{self, Db};
use z4j_protocol::frame::EventBatch;
use z4j_protocol::{Direction, Now, Signer, Verified, Verifier};

#[path = "../shared/brain_fixture.rs"]
mod fixture;

type R<T> = Result<T, String>;

#[inline(never)]
fn verify_frames(frames: &[String], now: Now) -> usize {
    let mut v = Verifier::new(bench_key(), bench_binding(), Direction::AgentToBrain);
    frames
        .iter()
        .filter(|f| v.verify(f.as_bytes(), now).is_ok())
        .count()
}

fn frames(per_frame: usize, count: usize, ts: &str) -> Vec<String> {
    let mut signer = Signer::new(bench_key(), bench_binding());
    (0..count)
        .map(|i| {
            signed_event_batch_with(
                &mut signer,
                (i * per_frame) as u64,
                per_frame,
                ts,
                &format!("nonce-{i}"),
                EventIds::Sequential,
            )
        })
        .collect()
}

fn verify(per_frame: usize, count: usize) -> R<()> {
    let batch = frames(per_frame, count, "2026-05-01T11:59:59.500000Z");
    let now = Now {
        wall_micros: 1_777_636_800_000_000,
        monotonic: Duration::from_secs(1),
    };
    let started = std::time::Instant::now();
    let ok = verify_frames(&batch, now);
    let took = started.elapsed();
    if ok != count {
        return Err(format!("{ok} of {count} frames verified"));
    }
    // Wall clock, outside the counted function: with the system allocator,
    // as the brain runs (criterion's verify bench uses mimalloc).
    let events = (count * per_frame) as f64;
    println!(
        "verified {count} frames x {per_frame} events in {:.1} ms: {:.0} events/s",
        took.as_secs_f64() * 1e3,
        events / took.as_secs_f64()
    );
    Ok(())
}

async fn open(dir: &Path) -> R<(Settings, Db)> {
    let settings = settings_in(dir)?;
    let target = DatabaseTarget::Sqlite {
        path: dir.join("z4j.db"),
        is_default: false,
    };
    let db = store::connect(&target, &settings)
        .await
        .map_err(|e| e.to_string())?;
    Ok((settings, db))
}

fn write(path: PathBuf, text: String) -> R<()> {
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read(path: PathBuf) -> R<String> {
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

async fn prepare(dir: &Path, per_frame: usize, count: usize) -> R<()> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let (_, db) = open(dir).await?;
    let (project, agent) = fixture::project_and_agent(&db).await?;
    db.close().await;
    let now = chrono::Utc::now();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    write(
        dir.join("ids"),
        format!("{project} {agent} {}", now.timestamp_micros()),
    )?;
    write(dir.join("frames"), frames(per_frame, count, &ts).join("\n"))
}

async fn ingest(dir: &Path) -> R<()> {
    let ids = read(dir.join("ids"))?;
    let mut ids = ids.split_whitespace();
    let mut uuid = || -> R<Uuid> {
        ids.next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "ids: want <project> <agent> <micros>".to_owned())
    };
    let (project, agent) = (uuid()?, uuid()?);
    let wall_micros: i64 = ids
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("ids: no instant")?;
    let frames = read(dir.join("frames"))?;
    let (settings, db) = open(dir).await?;
    let (alerts, _alert_rx) = z4j_brain::notify::Alerts::channel();
    let (ingestor, _writer) = Ingestor::new(
        &settings,
        db.clone(),
        alerts,
        z4j_brain::fleet::live::Live::new(false),
    );
    let mut verifier = Verifier::new(bench_key(), bench_binding(), Direction::AgentToBrain);
    let mut events = 0;
    for (i, frame) in frames.lines().filter(|l| !l.is_empty()).enumerate() {
        let now = Now {
            wall_micros,
            monotonic: Duration::from_secs(1 + i as u64),
        };
        let verified = verifier.verify(frame.as_bytes(), now);
        let Ok(Verified::Signed { frame, .. }) = verified else {
            return Err(format!("frame {i} does not verify: {verified:?}"));
        };
        let batch = EventBatch::from_frame(&frame);
        let n = batch.events.as_ref().map_or(0, |e| e.len() as u64);
        match ingestor
            .ingest(project, agent, &batch, OverLimit::Wait)
            .await
        {
            Some(r) if r.outcome == Outcome::Durable && r.accepted == n => events += n,
            other => return Err(format!("frame {i} not stored: {other:?}")),
        }
    }
    drop(ingestor);
    db.close().await;
    println!("ingested {events} events");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> R<usize> {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("argument {i}: want a number"))
    };
    let dir = || -> R<PathBuf> {
        args.get(1)
            .map(PathBuf::from)
            .ok_or("want a directory".into())
    };
    // One thread for the brain's tasks: fewer interleavings, steadier counts.
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    };
    let done = match args.first().map(String::as_str) {
        Some("verify") => num(1).and_then(|p| verify(p, num(2)?)),
        Some("prepare") => {
            runtime().and_then(|rt| rt.block_on(async { prepare(&dir()?, num(2)?, num(3)?).await }))
        }
        Some("ingest") => runtime().and_then(|rt| rt.block_on(async { ingest(&dir()?).await })),
        _ => Err("usage: icount verify N FRAMES | prepare DIR N FRAMES | ingest DIR".into()),
    };
    if let Err(e) = done {
        eprintln!("icount: {e}");
        std::process::exit(1);
    }
}
