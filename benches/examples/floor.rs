//! The floor and the commit bound under `benches/compare` (issue #18 item 1).
//!
//!   floor --database sqlite|postgres [--seconds S] [--task-ids sequential|celery]
//!
//! Prints one JSON object on stdout ([`z4j_benches::compare::Floor`]):
//! - `commit_ms`: the latency of the brain's smallest commit (one event in
//!   one group), 200 times, on a fresh migrated database;
//! - per cell of the compare matrix, `floor_events_per_second`: the rows the
//!   brain stores for that cell's load, prepared beforehand and written
//!   straight through the store's group commit, in the largest groups the
//!   cell can form (every connection's whole window, within the writer's
//!   caps). That is the brain's schema, SQL and durability without its
//!   network, protocol, queueing or preparation: what the brain could reach
//!   if everything above the database were free.
//!
//! `compare` runs it once per database kind, before that kind's cells.

use fixture::settings_in;
use std::time::{Duration, Instant};
use uuid::Uuid;
use z4j_benches::compare::{self, Db as Kind, Floor, FloorCell};
use z4j_benches::load::Latency;
use z4j_benches::{realistic_event_tasks, TaskIds};
use z4j_brain::ingest::prepare::prepare;
use z4j_brain::ingest::redact::Redactor;
use z4j_brain::ingest::writer::{MAX_GROUP_FRAMES, MAX_GROUP_ROWS};
use z4j_brain::store::ingest::{write_group, EventRow, Frame};
use z4j_brain::workers::wal_checkpoint::passive;

#[path = "../shared/brain_fixture.rs"]
mod fixture;

type R<T> = Result<T, String>;

const COMMITS: usize = 200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run(&args)));
    match out {
        Ok(floor) => match serde_json::to_string(&floor) {
            Ok(text) => println!("{text}"),
            Err(e) => fail(&e.to_string()),
        },
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> ! {
    eprintln!("floor: {e}");
    std::process::exit(2)
}

fn parse(args: &[String]) -> R<(Kind, f64, TaskIds)> {
    let mut kind = None;
    let mut seconds = 3.0;
    let mut tasks = TaskIds::Sequential;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--database" => {
                kind = Some(match value()?.as_str() {
                    "sqlite" => Kind::Sqlite,
                    "postgres" | "postgresql" => Kind::Postgres,
                    other => return Err(format!("--database {other:?}: use sqlite or postgres")),
                })
            }
            "--seconds" => {
                let v = value()?;
                seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or(format!("--seconds {v:?}: a positive number"))?;
            }
            "--task-ids" => {
                let v = value()?;
                tasks = <TaskIds as clap::ValueEnum>::from_str(v, false)
                    .map_err(|_| format!("--task-ids {v:?}: use sequential or celery"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((kind.ok_or("--database is required")?, seconds, tasks))
}

async fn run(args: &[String]) -> R<Floor> {
    let (kind, seconds, tasks) = parse(args)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let settings = settings_in(dir.path())?;
    let f = fixture::fresh(dir.path(), &settings, kind == Kind::Postgres).await?;
    // The brain's SQLite checkpoints run beside its writer (decision S7).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let checkpointer = tokio::spawn(passive(f.db.clone(), stopped));
    let result = measure(&f, kind, seconds, tasks).await;
    let _ = stop.send(true);
    let _ = checkpointer.await;
    f.db.close().await;
    if let Some((provider, name)) = &f.pg {
        provider.drop_database(name).await;
    }
    result
}

/// Rows for events `first..first + n`, as the brain prepares them.
fn rows(
    project: &Uuid,
    first: u64,
    n: usize,
    redactor: &Redactor,
    tasks: TaskIds,
) -> R<Vec<EventRow>> {
    let now = chrono::Utc::now();
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    (first..first + n as u64)
        .map(|i| {
            prepare(
                &realistic_event_tasks(i, &at, tasks),
                project,
                now.timestamp_micros(),
                redactor,
            )
            .map_err(|e| format!("event {i} not prepared: {e:?}"))
        })
        .collect()
}

async fn measure(f: &fixture::Fresh, kind: Kind, seconds: f64, tasks: TaskIds) -> R<Floor> {
    let redactor = Redactor::new(16 * 1024, &[]);
    let mut next = 0u64;
    // The smallest commit, after a few to warm the statement caches.
    let mut commits = Vec::with_capacity(COMMITS);
    for k in 0..COMMITS + 10 {
        let one = rows(&f.project, next, 1, &redactor, tasks)?;
        next += 1;
        let frame = [Frame {
            project_id: f.project,
            agent_id: f.agent,
            rows: &one,
        }];
        let t = Instant::now();
        write_group(&f.db, &frame)
            .await
            .map_err(|e| e.to_string())?;
        if k >= 10 {
            commits.push(t.elapsed());
        }
    }
    let commit_ms = Latency::of(commits);
    let mut cells = Vec::new();
    for cell in compare::matrix(&[kind]) {
        let frames = compare::group_frames(&cell, MAX_GROUP_FRAMES, MAX_GROUP_ROWS);
        let batch = cell.batch;
        let mut spent = Duration::ZERO;
        let mut events = 0usize;
        let mut groups = 0usize;
        while spent.as_secs_f64() < seconds || groups < 5 {
            let group: Vec<Vec<EventRow>> = (0..frames)
                .map(|j| {
                    rows(
                        &f.project,
                        next + (j * batch) as u64,
                        batch,
                        &redactor,
                        tasks,
                    )
                })
                .collect::<R<_>>()?;
            next += (frames * batch) as u64;
            let framed: Vec<Frame<'_>> = group
                .iter()
                .map(|r| Frame {
                    project_id: f.project,
                    agent_id: f.agent,
                    rows: r,
                })
                .collect();
            let t = Instant::now();
            write_group(&f.db, &framed)
                .await
                .map_err(|e| e.to_string())?;
            spent += t.elapsed();
            events += frames * batch;
            groups += 1;
        }
        cells.push(FloorCell {
            cell,
            group_events: frames * batch,
            floor_events_per_second: events as f64 / spent.as_secs_f64(),
            bound_events_per_second: compare::commit_bound(frames * batch, commit_ms.p50),
        });
    }
    Ok(Floor {
        database: kind,
        commit_ms,
        cells,
    })
}
