//! One load-generator run: agent connections stream signed `event_batch`
//! frames of task-lifecycle events at a brain, acknowledgements are timed,
//! and the brain's persistence is checked before any figure is reported.

use crate::procstat::{ProcSampler, ProcUsage};
use crate::{mix, TaskIds};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use z4j_conformance::agent::{self, Credentials, Operator};

/// How the connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One minted agent per connection.
    Agents,
    /// One agent, one worker connection per connection.
    Workers,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub email: String,
    pub password: String,
    /// Stream as this agent instead of minting (`--agent-token` and
    /// `--hmac-secret`); implies [`Shape::Workers`].
    pub agent: Option<(String, String)>,
    pub project: String,
    pub connections: usize,
    pub shape: Shape,
    /// Events per frame.
    pub batch: usize,
    /// Un-acked frames allowed per connection.
    pub window: usize,
    /// Events in the whole run (each task contributes three).
    pub events: usize,
    /// Without an ack for this long while frames are outstanding, the run
    /// fails instead of hanging.
    pub stall_timeout: Duration,
    /// How long the persistence check may wait for the counts to settle.
    pub settle_timeout: Duration,
    /// The brain's pid for peak RSS and CPU seconds (it and its children).
    pub brain_pid: Option<u32>,
    /// Offered load in events per second over all connections (a soak);
    /// `None` sends as fast as acks allow (a capacity run).
    pub rate: Option<f64>,
    /// Report ack latency, throughput and brain RSS per interval of this
    /// length, with their trends (a soak).
    pub sample_every: Option<Duration>,
    /// Time an operator's write (a saved view renamed: one statement) this
    /// often during the load: how long writes beside ingest wait.
    pub probe_every: Option<Duration>,
    /// How task ids are drawn (sequential per connection, or as Celery's).
    pub task_ids: TaskIds,
}

/// The largest frame a batch may make: the brain's 1 MiB frame cap at about
/// 400 bytes per event.
pub const MAX_BATCH: usize = 2000;

impl Config {
    /// Refuses inconsistent arguments, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(format!(
                "--batch {} is outside 1..={MAX_BATCH} (the brain's 1 MiB frame cap holds about {MAX_BATCH} events)",
                self.batch
            ));
        }
        if self.window == 0 {
            return Err("--window must be at least 1".into());
        }
        if self.probe_every.is_some_and(|d| d.is_zero()) {
            return Err("--probe-writes-ms must be at least 1".into());
        }
        if self.events == 0 || !self.events.is_multiple_of(3) {
            return Err(format!(
                "--events {} must be a positive multiple of 3 (each task is received, started and finished)",
                self.events
            ));
        }
        if self.events < self.connections * self.batch {
            return Err(format!(
                "--events {} cannot fill one batch of {} on each of {} connections (need at least {})",
                self.events,
                self.batch,
                self.connections,
                self.connections * self.batch
            ));
        }
        if self.agent.is_some() && self.shape == Shape::Agents && self.connections > 1 {
            return Err(
                "--agent-token streams as one agent: use --shape workers for several connections"
                    .into(),
            );
        }
        if self.stall_timeout.is_zero() {
            return Err("--stall-seconds must be positive".into());
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err("--rate must be a positive number of events per second".into());
        }
        if self.sample_every.is_some_and(|d| d.is_zero()) {
            return Err("--sample-seconds must be positive".into());
        }
        if let Some(pid) = self.brain_pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Err(format!("--brain-pid {pid}: no such process"));
            }
        }
        Ok(())
    }
}

/// What a run measured; only produced when persistence checked out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub connections: usize,
    pub shape: Shape,
    pub batch: usize,
    pub window: usize,
    pub events: usize,
    pub acked_events: usize,
    pub seconds: f64,
    pub events_per_second: f64,
    pub ack_latency_ms: Latency,
    pub brain: Option<ProcUsage>,
    pub persisted_tasks: u64,
    /// Per interval, with `--sample-seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<Interval>>,
    /// Least-squares slopes over the intervals, with `--sample-seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// The operator writes timed during the load, with `--probe-writes-ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_writes: Option<ProbeWrites>,
}

/// Operator writes beside the load: how many, and their latency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeWrites {
    pub writes: usize,
    pub latency_ms: Latency,
}

/// One interval of a soak: the acks that arrived in it and the brain's RSS
/// at its end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Interval {
    pub end_seconds: f64,
    pub acked_events: usize,
    pub events_per_second: f64,
    pub ack_p99_ms: f64,
    pub rss_mib: Option<f64>,
}

/// How a soak's figures move: per 10 minutes, from a least-squares line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trend {
    pub p99_ms_per_10_min: f64,
    pub rss_mib_per_10_min: Option<f64>,
}

/// Slope of the least-squares line through `(x, y)`, per unit of x; `None`
/// with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// Buckets acks (offset from the start, latency, events) into intervals of
/// `every`, with the RSS sample nearest each interval's end; the last
/// interval ends at the last ack.
pub fn intervals(acks: &[Ack], every: Duration, rss: &[(Duration, f64)]) -> Vec<Interval> {
    let Some(last) = acks.iter().map(|a| a.at).max() else {
        return Vec::new();
    };
    let step = every.as_secs_f64();
    let n = (last.as_secs_f64() / step).floor() as usize + 1;
    let mut buckets: Vec<(usize, Vec<Duration>)> = vec![(0, Vec::new()); n];
    for a in acks {
        let b = &mut buckets[((a.at.as_secs_f64() / step) as usize).min(n - 1)];
        b.0 += a.events;
        b.1.push(a.latency);
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, (events, lat))| {
            let end = (step * (i + 1) as f64).min(last.as_secs_f64());
            let len = (end - step * i as f64).max(1e-3);
            Interval {
                end_seconds: end,
                acked_events: events,
                events_per_second: events as f64 / len,
                ack_p99_ms: Latency::of(lat).p99,
                rss_mib: rss
                    .iter()
                    .min_by(|x, y| {
                        (x.0.as_secs_f64() - end)
                            .abs()
                            .total_cmp(&(y.0.as_secs_f64() - end).abs())
                    })
                    .map(|r| r.1),
            }
        })
        .collect()
}

/// One acknowledged frame: when its ack arrived (from the run's start),
/// how long after its send, and how many events it carried.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub at: Duration,
    pub latency: Duration,
    pub events: usize,
}

/// The trend of full intervals (a partial last one is left out).
pub fn trend(iv: &[Interval], every: Duration) -> Option<Trend> {
    // A partial last interval has fewer acks and a noisier p99.
    let full: Vec<&Interval> = iv
        .iter()
        .filter(|i| (i.end_seconds / every.as_secs_f64()).fract().abs() < 1e-9)
        .collect();
    let ten_min = 600.0;
    let p99: Vec<(f64, f64)> = full.iter().map(|i| (i.end_seconds, i.ack_p99_ms)).collect();
    let rss: Vec<(f64, f64)> = full
        .iter()
        .filter_map(|i| Some((i.end_seconds, i.rss_mib?)))
        .collect();
    Some(Trend {
        p99_ms_per_10_min: slope(&p99)? * ten_min,
        rss_mib_per_10_min: slope(&rss).map(|s| s * ten_min),
    })
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// The human table of a report.
pub fn human(r: &Report) -> String {
    let brain = r.brain.as_ref().map_or("-".to_owned(), |b| {
        format!(
            "{:.0} MiB peak RSS, {:.1} CPU s",
            b.peak_rss_mib, b.cpu_seconds
        )
    });
    let mut soak = String::new();
    for i in r.intervals.iter().flatten() {
        soak.push_str(&format!(
            "\n  to {:>7.0} s  {:>8.0} events/s  p99 {:>7.1} ms  RSS {}",
            i.end_seconds,
            i.events_per_second,
            i.ack_p99_ms,
            i.rss_mib.map_or("-".to_owned(), |m| format!("{m:.0} MiB"))
        ));
    }
    if let Some(t) = &r.trend {
        soak.push_str(&format!(
            "\ntrend per 10 min: p99 {:+.2} ms, RSS {}",
            t.p99_ms_per_10_min,
            t.rss_mib_per_10_min
                .map_or("-".to_owned(), |m| format!("{m:+.1} MiB"))
        ));
    }
    let probe = r.probe_writes.as_ref().map_or(String::new(), |p| {
        format!(
            "\nwrite probe ms p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} writes)",
            p.latency_ms.p50, p.latency_ms.p90, p.latency_ms.p99, p.latency_ms.max, p.writes
        )
    });
    format!(
        "connections {} ({:?})  batch {}  window {}\n\
         acked events   {} of {} in {:.2} s = {:.0} events/s\n\
         ack latency ms p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}{probe}\n\
         brain          {brain}\n\
         persisted      {} tasks, all finished{soak}",
        r.connections,
        r.shape,
        r.batch,
        r.window,
        r.acked_events,
        r.events,
        r.seconds,
        r.events_per_second,
        r.ack_latency_ms.p50,
        r.ack_latency_ms.p90,
        r.ack_latency_ms.p99,
        r.ack_latency_ms.max,
        r.persisted_tasks
    )
}

/// One connection's frames: its tasks' events in lifecycle order, cut into
/// batches, built when sent (a run can hold millions of events).
struct Frames {
    run: String,
    conn: usize,
    ids: TaskIds,
    first_task: usize,
    events: usize,
    batch: usize,
}

impl Frames {
    fn new(
        run: &str,
        conn: usize,
        tasks: std::ops::Range<usize>,
        batch: usize,
        ids: TaskIds,
    ) -> Frames {
        Frames {
            run: run.to_owned(),
            conn,
            ids,
            first_task: tasks.start,
            events: tasks.len() * 3,
            batch,
        }
    }

    fn count(&self) -> usize {
        self.events.div_ceil(self.batch)
    }

    fn frame(&self, i: usize) -> Vec<Json> {
        let from = i * self.batch;
        let to = (from + self.batch).min(self.events);
        (from..to)
            .map(|k| {
                lifecycle_event(
                    &self.run,
                    self.conn,
                    self.first_task + k / 3,
                    k % 3,
                    self.ids,
                )
            })
            .collect()
    }
}

/// The task name of a run; the persistence check filters on it.
pub fn task_name(run: &str) -> String {
    format!("loadgen.r{run}.send_invoice_email")
}

/// Task `task`'s id (sent by connection `conn` in run `run`).
fn task_id(run: &str, conn: usize, task: usize, ids: TaskIds) -> String {
    match ids {
        TaskIds::Sequential => format!("{run}-{conn:04x}-{task:012x}"),
        // Scattered, and distinct per run and connection.
        TaskIds::Celery => {
            let run_key = run.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            ids.id(mix(mix(run_key, conn as u64), task as u64))
        }
    }
}

/// One event of about 380 bytes: received, started, then succeeded (one
/// task in ten fails).
pub fn lifecycle_event(run: &str, conn: usize, task: usize, step: usize, ids: TaskIds) -> Json {
    let task_id = task_id(run, conn, task, ids);
    let failed = task % 10 == 9;
    let (kind, extra) = match step {
        0 => ("task.received", json!({})),
        1 => ("task.started", json!({"worker": "rq@worker-1"})),
        _ if failed => (
            "task.failed",
            json!({"exception": "SMTPServerDisconnected('Connection unexpectedly closed')",
                   "runtime_ms": 40.5}),
        ),
        _ => (
            "task.succeeded",
            json!({"result": "sent", "runtime_ms": 12.5}),
        ),
    };
    let mut data = json!({
        "task_name": task_name(run),
        "queue": "emails",
        "args": [task, "invoice-2026-05"],
        "kwargs": {"customer_id": 10_000 + task % 977, "retry": false},
        "priority": "normal",
    });
    if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(x.clone());
    }
    agent::task_event(&task_id, kind, data)
}

struct Stream {
    session: agent::Session,
    frames: Frames,
}

/// Runs the load and the persistence check.
pub async fn run(cfg: &Config) -> Result<Report, String> {
    cfg.validate()?;
    let target = agent::Target::from_url(&cfg.url)?;
    let op = agent::login_as(&target, &cfg.email, &cfg.password)
        .await
        .map_err(|e| format!("{e} (check --email/--password)"))?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let creds = credentials(cfg, &op, &target, &run).await?;

    let tasks = cfg.events / 3;
    let mut streams = Vec::new();
    let mut next_task = 0;
    for (c, creds) in creds.iter().enumerate() {
        let share = tasks / cfg.connections + usize::from(c < tasks % cfg.connections);
        let worker = format!("lg-{run}-{c}");
        let session = agent::connect(&target, creds, Some(&worker))
            .await
            .map_err(|e| format!("connection {c}: {e}"))?;
        streams.push(Stream {
            session,
            frames: Frames::new(
                &run,
                c,
                next_task..next_task + share,
                cfg.batch,
                cfg.task_ids,
            ),
        });
        next_task += share;
    }

    let sampler = cfg.brain_pid.map(ProcSampler::start);
    let started = Instant::now();
    // Per ack while sampling: its latency and events, for the live lines.
    let (live_tx, live_rx) = cfg
        .sample_every
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .unzip();
    let rss = live_samples(cfg, started, live_rx);
    let probe = match cfg.probe_every {
        Some(every) => Some(start_probe(&op, &cfg.url, &cfg.project, &run, every).await?),
        None => None,
    };
    // Paced: each connection sends a frame every `gap`, the connections
    // staggered across it, so the offered load is `rate` without bursts.
    let gap = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.batch as f64 * cfg.connections as f64 / r));
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, s)| {
            let (window, stall) = (cfg.window, cfg.stall_timeout);
            let pace = gap.map(|g| Pace {
                first: started + g.mul_f64(c as f64 / cfg.connections as f64),
                gap: g,
            });
            let live = live_tx.clone();
            tokio::spawn(async move { drive(c, s, window, stall, pace, live).await })
        })
        .collect();
    let mut acks = Vec::new();
    let mut acked_events = 0;
    let mut last_ack = started;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(done)) => {
                acked_events += done.acked_events;
                acks.extend(done.acks.iter().map(|a| Ack {
                    at: a.0.duration_since(started),
                    latency: a.1,
                    events: a.2,
                }));
                last_ack = last_ack.max(done.last_ack);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("a connection task failed: {e}"));
            }
        }
    }
    let brain = sampler.map(ProcSampler::stop).transpose()?;
    let probe_writes = match probe {
        Some((stop, task)) => {
            let _ = stop.send(());
            Some(task.await.map_err(|e| format!("write probe: {e}"))??)
        }
        None => None,
    };
    let rss = match rss {
        Some((stop, task)) => {
            let _ = stop.send(());
            task.await.unwrap_or_default()
        }
        None => Vec::new(),
    };
    if let Some(e) = first_error {
        return Err(e);
    }
    let intervals = cfg.sample_every.map(|every| intervals(&acks, every, &rss));
    let trend = cfg
        .sample_every
        .zip(intervals.as_deref())
        .and_then(|(every, iv)| trend(iv, every));
    let seconds = last_ack.duration_since(started).as_secs_f64().max(1e-6);
    // A soak outlives the operator session (Z4J_SESSION_IDLE_TIMEOUT_SECONDS,
    // 30 min): sign in again for the check.
    let op = agent::login_as(&target, &cfg.email, &cfg.password).await?;
    let persisted_tasks = check_persistence(cfg, &op, &target, &run, tasks).await?;
    Ok(Report {
        connections: cfg.connections,
        shape: cfg.shape,
        batch: cfg.batch,
        window: cfg.window,
        events: cfg.events,
        acked_events,
        seconds,
        events_per_second: acked_events as f64 / seconds,
        ack_latency_ms: Latency::of(acks.iter().map(|a| a.latency).collect()),
        brain,
        persisted_tasks,
        intervals,
        trend,
        probe_writes,
    })
}

type ProbeTask = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<ProbeWrites, String>>,
);

/// With `--probe-writes-ms`: a saved view of the operator's, renamed every
/// `every` until told to stop, each rename timed. A refused write fails
/// the run.
async fn start_probe(
    op: &Operator,
    url: &str,
    project: &str,
    run: &str,
    every: Duration,
) -> Result<ProbeTask, String> {
    let target = agent::Target::from_url(url)?;
    let views = format!("/api/v1/projects/{project}/saved-views");
    let run = run.to_owned();
    let body = move |n: usize| json!({"name": format!("loadgen {run} probe {n}"), "filters": {}});
    let (status, view) = op
        .send(&target, reqwest::Method::POST, &views, Some(body(0)))
        .await?;
    let Some(id) = view["id"].as_str().filter(|_| status == 201) else {
        return Err(format!(
            "write probe: creating a saved view: {status} {view}"
        ));
    };
    let path = format!("{views}/{id}");
    let op = op.clone();
    let (stop_tx, mut stop) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {}
            }
            let n = samples.len() + 1;
            let sent = Instant::now();
            let (status, answer) = op
                .send(&target, reqwest::Method::PUT, &path, Some(body(n)))
                .await?;
            if status != 200 {
                return Err(format!("write probe: PUT {path}: {status} {answer}"));
            }
            samples.push(sent.elapsed());
        }
        let _ = op.send(&target, reqwest::Method::DELETE, &path, None).await;
        Ok(ProbeWrites {
            writes: samples.len(),
            latency_ms: Latency::of(samples),
        })
    });
    Ok((stop_tx, task))
}

type RssTask = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<(Duration, f64)>>,
);

/// With `--sample-seconds`: every interval from `started` until told to
/// stop, a line on stderr with the interval's acked events per second, p99
/// ack latency and (with `--brain-pid`) the brain's RSS, which is also kept
/// (MiB). Printed as it happens: a run that fails its persistence check, or
/// is stopped, still shows its trend.
fn live_samples(
    cfg: &Config,
    started: Instant,
    acks: Option<tokio::sync::mpsc::UnboundedReceiver<(Duration, usize)>>,
) -> Option<RssTask> {
    let (every, pid, mut acks) = (cfg.sample_every?, cfg.brain_pid, acks?);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        let (mut latencies, mut events) = (Vec::new(), 0);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::from_std(started + every), every);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let at = started.elapsed();
                    let mut line = format!(
                        "loadgen: {:.0} s: {:.0} events/s, ack p99 {:.1} ms",
                        at.as_secs_f64(),
                        events as f64 / every.as_secs_f64(),
                        Latency::of(std::mem::take(&mut latencies)).p99,
                    );
                    events = 0;
                    if let Some(pid) = pid {
                        let mib = crate::procstat::rss_kib(pid) as f64 / 1024.0;
                        line.push_str(&format!(", brain RSS {mib:.1} MiB"));
                        out.push((at, mib));
                    }
                    eprintln!("{line}");
                }
                Some((latency, n)) = acks.recv() => {
                    latencies.push(latency);
                    events += n;
                }
                _ = &mut stopped => return out,
            }
        }
    });
    Some((stop, task))
}

/// When a paced connection sends: its first frame at `first`, then one
/// every `gap`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    first: Instant,
    gap: Duration,
}

impl Pace {
    fn due(&self, frame: usize) -> Instant {
        self.first + self.gap.mul_f64(frame as f64)
    }
}

async fn credentials(
    cfg: &Config,
    op: &Operator,
    target: &agent::Target,
    run: &str,
) -> Result<Vec<Credentials>, String> {
    if let Some((token, hmac_secret)) = &cfg.agent {
        let one = Credentials {
            agent_id: String::new(),
            project_id: String::new(),
            token: token.clone(),
            hmac_secret: hmac_secret.clone(),
        };
        return Ok(vec![one; cfg.connections]);
    }
    let count = match cfg.shape {
        Shape::Agents => cfg.connections,
        Shape::Workers => 1,
    };
    let mut minted = Vec::new();
    for a in 0..count {
        minted.push(
            op.mint_in(target, &cfg.project, &format!("loadgen-{run}-{a}"))
                .await
                .map_err(|e| format!("minting agent {a} in project {:?}: {e}", cfg.project))?,
        );
    }
    Ok((0..cfg.connections)
        .map(|c| minted[c % minted.len()].clone())
        .collect())
}

struct Done {
    acked_events: usize,
    /// Per acked frame: when the ack arrived, its latency, its events.
    acks: Vec<(Instant, Duration, usize)>,
    last_ack: Instant,
}

/// Sends one connection's frames keeping at most `window` un-acked (and,
/// paced, none before it is due), and reads acks by `acked_id`; a rejection
/// or a stall is an error.
async fn drive(
    c: usize,
    s: Stream,
    window: usize,
    stall: Duration,
    pace: Option<Pace>,
    live: Option<tokio::sync::mpsc::UnboundedSender<(Duration, usize)>>,
) -> Result<Done, String> {
    let Stream {
        mut session,
        frames,
    } = s;
    let mut in_flight: HashMap<String, (Instant, usize)> = HashMap::new();
    let mut done = Done {
        acked_events: 0,
        acks: Vec::with_capacity(frames.count()),
        last_ack: Instant::now(),
    };
    let total = frames.count();
    let mut next = 0;
    let mut acked_frames = 0;
    // Heartbeats as a real agent sends them: a brain that waits for them
    // closes a silent session (4408) in a long run.
    let heartbeat_every = Duration::from_secs(
        session.ack["payload"]["heartbeat_interval_seconds"]
            .as_u64()
            .unwrap_or(10)
            .clamp(1, 60),
    );
    let mut last_heartbeat = Instant::now();
    let mut last_ack_at = Instant::now();
    while acked_frames < total {
        if last_heartbeat.elapsed() >= heartbeat_every {
            session
                .send_heartbeat()
                .await
                .map_err(|e| format!("connection {c}: sending a heartbeat: {e}"))?;
            last_heartbeat = Instant::now();
        }
        while in_flight.len() < window
            && next < total
            && pace.is_none_or(|p| p.due(next) <= Instant::now())
        {
            if in_flight.is_empty() {
                // The stall clock runs only while frames are outstanding.
                last_ack_at = Instant::now();
            }
            let (i, events) = (next, frames.frame(next));
            next += 1;
            let id = format!("ev_{c:04x}_{i:010x}");
            session
                .send_events(&id, &events)
                .await
                .map_err(|e| format!("connection {c}: sending frame {i}: {e}"))?;
            in_flight.insert(id, (Instant::now(), events.len()));
        }
        let mut wait = heartbeat_every.min(stall);
        if let Some(p) = pace.filter(|_| next < total && in_flight.len() < window) {
            wait = wait.min(p.due(next).saturating_duration_since(Instant::now()));
        }
        let msg = match tokio::time::timeout(wait, session.raw.0.next()).await {
            Err(_) if in_flight.is_empty() || last_ack_at.elapsed() < stall => continue,
            Err(_) => {
                return Err(format!(
                "connection {c}: the brain stopped acking: {} frames outstanding, no ack for {} s",
                in_flight.len(),
                stall.as_secs()
            ))
            }
            Ok(None) => return Err(format!("connection {c}: the brain closed the socket")),
            Ok(Some(Err(e))) => return Err(format!("connection {c}: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Ping(p) => {
                let _ = session.raw.0.send(Message::Pong(p)).await;
                continue;
            }
            Message::Close(f) => {
                return Err(format!(
                    "connection {c}: the brain closed the socket: {f:?}"
                ))
            }
            _ => continue,
        };
        let frame: Json = serde_json::from_str(&text)
            .map_err(|e| format!("connection {c}: unreadable brain frame ({e}): {text}"))?;
        match frame["type"].as_str() {
            Some("event_batch_ack") => {
                let id = frame["payload"]["acked_id"].as_str().unwrap_or_default();
                let Some((sent, n)) = in_flight.remove(id) else {
                    return Err(format!("connection {c}: ack of an unknown frame: {text}"));
                };
                let now = Instant::now();
                last_ack_at = now;
                done.acks.push((now, now - sent, n));
                if let Some(live) = &live {
                    let _ = live.send((now - sent, n));
                }
                done.acked_events += n;
                done.last_ack = now;
                acked_frames += 1;
            }
            Some("error") => {
                return Err(format!("connection {c}: the brain refused a frame: {text}"))
            }
            // Commands, pings and the like are not part of the load.
            _ => {}
        }
    }
    let _ = session.raw.0.close(None).await;
    Ok(done)
}

/// The run's tasks must all be stored, every one in its final state, and a
/// sample of them with all three events; counts may lag an ack only on a
/// brain that acks before committing, so they are polled until
/// `settle_timeout`.
async fn check_persistence(
    cfg: &Config,
    op: &Operator,
    target: &agent::Target,
    run: &str,
    tasks: usize,
) -> Result<u64, String> {
    let name = task_name(run);
    let base = format!("/api/v1/projects/{}", cfg.project);
    let count = |state: Option<&'static str>| {
        let path = format!(
            "{base}/tasks?name={name}&include_total=true&limit=1{}",
            state.map(|s| format!("&state={s}")).unwrap_or_default()
        );
        async move {
            let (status, body) = op.get(target, &path).await?;
            if status != 200 {
                return Err(format!("GET {path} answered {status}: {body}"));
            }
            body["total_count"]
                .as_u64()
                .ok_or(format!("GET {path}: no total_count in {body}"))
        }
    };
    let deadline = Instant::now() + cfg.settle_timeout;
    let (mut all, mut finished);
    loop {
        all = count(None).await?;
        finished = count(Some("success")).await? + count(Some("failure")).await?;
        if (all == tasks as u64 && finished == tasks as u64) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if all != tasks as u64 || finished != tasks as u64 {
        return Err(format!(
            "persistence check failed: every acked event's task should be stored and finished, \
             but the brain holds {all} of {tasks} tasks, {finished} of them finished; no figure is reported"
        ));
    }
    // A spread sample of tasks must each show their three events.
    let conns = cfg.connections;
    for k in 0..20.min(tasks) {
        let t = k * tasks / 20.min(tasks);
        let (conn, t) = locate(t, tasks, conns);
        let task_id = task_id(run, conn, t, cfg.task_ids);
        let path = format!("{base}/events?engine=rq&task_id={task_id}&limit=10");
        let (status, body) = op.get(target, &path).await?;
        let n = body["items"].as_array().map_or(0, Vec::len);
        if status != 200 || n != 3 {
            return Err(format!(
                "persistence check failed: task {task_id} should have 3 events, GET {path} answered {status} with {n}; no figure is reported"
            ));
        }
    }
    Ok(all)
}

/// Which connection sent global task `t`, and its task index there (tasks
/// are numbered globally; connection `c` holds a contiguous range).
fn locate(t: usize, tasks: usize, conns: usize) -> (usize, usize) {
    let mut start = 0;
    for c in 0..conns {
        let share = tasks / conns + usize::from(c < tasks % conns);
        if t < start + share {
            return (c, t);
        }
        start += share;
    }
    (conns - 1, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            url: "http://127.0.0.1:1".into(),
            email: "a@b.c".into(),
            password: "p".into(),
            agent: None,
            project: "default".into(),
            connections: 4,
            shape: Shape::Agents,
            batch: 50,
            window: 8,
            events: 600,
            stall_timeout: Duration::from_secs(30),
            settle_timeout: Duration::from_secs(5),
            brain_pid: None,
            rate: None,
            sample_every: None,
            probe_every: None,
            task_ids: TaskIds::Sequential,
        }
    }

    #[test]
    fn celery_task_ids_are_one_uuid4_per_task_distinct_per_run_and_connection() {
        let id = |run: &str, conn: usize, task: usize, step: usize| {
            lifecycle_event(run, conn, task, step, TaskIds::Celery)["task_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let a = id("r1", 0, 5, 0);
        assert_eq!(
            uuid::Uuid::parse_str(&a).map(|u| u.get_version_num()),
            Ok(4)
        );
        assert_eq!(a, id("r1", 0, 5, 2), "one task, one id");
        assert_ne!(a, id("r1", 0, 6, 0));
        assert_ne!(a, id("r1", 1, 5, 0));
        assert_ne!(a, id("r2", 0, 5, 0));
    }

    #[test]
    fn inconsistent_arguments_are_refused_naming_the_flag() {
        assert!(cfg().validate().is_ok());
        type Mutation = fn(&mut Config);
        let cases: [(Mutation, &str); 11] = [
            (|c| c.connections = 0, "--connections"),
            (|c| c.batch = 0, "--batch 0"),
            (|c| c.batch = MAX_BATCH + 1, "--batch"),
            (|c| c.window = 0, "--window"),
            (|c| c.events = 601, "multiple of 3"),
            (|c| c.events = 150, "cannot fill one batch"),
            (|c| c.brain_pid = Some(u32::MAX), "--brain-pid"),
            (|c| c.rate = Some(0.0), "--rate"),
            (|c| c.rate = Some(f64::NAN), "--rate"),
            (
                |c| c.sample_every = Some(Duration::ZERO),
                "--sample-seconds",
            ),
            (
                |c| c.probe_every = Some(Duration::ZERO),
                "--probe-writes-ms",
            ),
        ];
        for (mutate, needle) in cases {
            let mut c = cfg();
            mutate(&mut c);
            let e = c.validate().expect_err(needle);
            assert!(e.contains(needle), "{e:?} should mention {needle}");
        }
    }

    #[test]
    fn each_task_keeps_its_lifecycle_on_one_connection_in_order() {
        let f = Frames::new("r1", 2, 10..14, 5, TaskIds::Sequential);
        let frames: Vec<Vec<Json>> = (0..f.count()).map(|i| f.frame(i)).collect();
        let events: Vec<&Json> = frames.iter().flatten().collect();
        assert_eq!(events.len(), 12);
        assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
        for (i, e) in events.iter().enumerate() {
            let t = 10 + i / 3;
            assert_eq!(e["task_id"], format!("r1-0002-{t:012x}"));
        }
        let kinds: Vec<&str> = events[..3]
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["task.received", "task.started", "task.succeeded"]);
        assert_eq!(events[3]["kind"], "task.received");
        // One task in ten fails.
        assert_eq!(
            lifecycle_event("r", 0, 19, 2, TaskIds::Sequential)["kind"],
            "task.failed"
        );
        let size = events[0].to_string().len();
        assert!((250..500).contains(&size), "event of {size} bytes");
    }

    #[test]
    fn locate_inverts_the_split() {
        let (tasks, conns) = (10, 3); // shares 4, 3, 3
        let got: Vec<(usize, usize)> = (0..tasks).map(|t| locate(t, tasks, conns)).collect();
        assert_eq!(got[0], (0, 0));
        assert_eq!(got[3], (0, 3));
        assert_eq!(got[4], (1, 4));
        assert_eq!(got[9], (2, 9));
    }

    #[test]
    fn soak_intervals_bucket_acks_and_trends_fit_a_line() {
        let ack = |s: f64, ms: u64| Ack {
            at: Duration::from_secs_f64(s),
            latency: Duration::from_millis(ms),
            events: 2,
        };
        // Two full 10 s intervals and a partial third ending at 25 s.
        let acks = [ack(1.0, 5), ack(9.0, 7), ack(12.0, 9), ack(25.0, 40)];
        let rss = [
            (Duration::from_secs(10), 100.0),
            (Duration::from_secs(20), 110.0),
            (Duration::from_secs(25), 500.0),
        ];
        let iv = intervals(&acks, Duration::from_secs(10), &rss);
        let got: Vec<(f64, usize, f64, f64, Option<f64>)> = iv
            .iter()
            .map(|i| {
                (
                    i.end_seconds,
                    i.acked_events,
                    i.events_per_second,
                    i.ack_p99_ms,
                    i.rss_mib,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (10.0, 4, 0.4, 7.0, Some(100.0)),
                (20.0, 2, 0.2, 9.0, Some(110.0)),
                (25.0, 2, 0.4, 40.0, Some(500.0)),
            ]
        );
        // The partial interval is left out of the trend: +2 ms and +10 MiB
        // per 10 s are +120 ms and +600 MiB per 10 minutes.
        let t = trend(&iv, Duration::from_secs(10)).expect("two full intervals");
        assert!((t.p99_ms_per_10_min - 120.0).abs() < 1e-9, "{t:?}");
        assert_eq!(t.rss_mib_per_10_min.map(f64::round), Some(600.0));
        assert_eq!(slope(&[(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]), Some(0.0));
        assert_eq!(slope(&[(1.0, 3.0)]), None);
        assert!(intervals(&[], Duration::from_secs(1), &[]).is_empty());
    }

    #[test]
    fn a_paced_frame_is_due_a_gap_after_the_previous() {
        let first = Instant::now();
        let p = Pace {
            first,
            gap: Duration::from_millis(4),
        };
        assert_eq!(p.due(0), first);
        assert_eq!(p.due(250), first + Duration::from_secs(1));
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let l = Latency::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Latency::of(vec![]).max, 0.0);
    }
}
