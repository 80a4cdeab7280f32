//! One load-generator run: agent connections stream signed `event_batch`
//! frames of task-lifecycle events at a brain, acknowledgements are timed,
//! and the brain's persistence is checked before any figure is reported.

use crate::procstat::{ProcSampler, ProcUsage};
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
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
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
    format!(
        "connections {} ({:?})  batch {}  window {}\n\
         acked events   {} of {} in {:.2} s = {:.0} events/s\n\
         ack latency ms p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n\
         brain          {brain}\n\
         persisted      {} tasks, all finished",
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
    first_task: usize,
    events: usize,
    batch: usize,
}

impl Frames {
    fn new(run: &str, conn: usize, tasks: std::ops::Range<usize>, batch: usize) -> Frames {
        Frames {
            run: run.to_owned(),
            conn,
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
            .map(|k| lifecycle_event(&self.run, self.conn, self.first_task + k / 3, k % 3))
            .collect()
    }
}

/// The task name of a run; the persistence check filters on it.
pub fn task_name(run: &str) -> String {
    format!("loadgen.r{run}.send_invoice_email")
}

/// One event of about 380 bytes: received, started, then succeeded (one
/// task in ten fails).
pub fn lifecycle_event(run: &str, conn: usize, task: usize, step: usize) -> Json {
    let task_id = format!("{run}-{conn:04x}-{task:012x}");
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
            frames: Frames::new(&run, c, next_task..next_task + share, cfg.batch),
        });
        next_task += share;
    }

    let sampler = cfg.brain_pid.map(ProcSampler::start);
    let started = Instant::now();
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, s)| {
            let (window, stall) = (cfg.window, cfg.stall_timeout);
            tokio::spawn(async move { drive(c, s, window, stall).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut acked_events = 0;
    let mut last_ack = started;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(done)) => {
                acked_events += done.acked_events;
                latencies.extend(done.latencies);
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
    if let Some(e) = first_error {
        return Err(e);
    }
    let seconds = last_ack.duration_since(started).as_secs_f64().max(1e-6);
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
        ack_latency_ms: Latency::of(latencies),
        brain,
        persisted_tasks,
    })
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
    latencies: Vec<Duration>,
    last_ack: Instant,
}

/// Sends one connection's frames keeping at most `window` un-acked, and
/// reads acks by `acked_id`; a rejection or a stall is an error.
async fn drive(c: usize, s: Stream, window: usize, stall: Duration) -> Result<Done, String> {
    let Stream {
        mut session,
        frames,
    } = s;
    let mut in_flight: HashMap<String, (Instant, usize)> = HashMap::new();
    let mut done = Done {
        acked_events: 0,
        latencies: Vec::with_capacity(frames.count()),
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
        while in_flight.len() < window && next < total {
            let (i, events) = (next, frames.frame(next));
            next += 1;
            let id = format!("ev_{c:04x}_{i:010x}");
            session
                .send_events(&id, &events)
                .await
                .map_err(|e| format!("connection {c}: sending frame {i}: {e}"))?;
            in_flight.insert(id, (Instant::now(), events.len()));
        }
        let wait = heartbeat_every.min(stall);
        let msg = match tokio::time::timeout(wait, session.raw.0.next()).await {
            Err(_) if last_ack_at.elapsed() < stall => continue,
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
                done.latencies.push(now - sent);
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
        let (conn, local) = locate(t, tasks, conns);
        let task_id = format!("{run}-{conn:04x}-{local:012x}");
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
        }
    }

    #[test]
    fn inconsistent_arguments_are_refused_naming_the_flag() {
        assert!(cfg().validate().is_ok());
        type Mutation = fn(&mut Config);
        let cases: [(Mutation, &str); 7] = [
            (|c| c.connections = 0, "--connections"),
            (|c| c.batch = 0, "--batch 0"),
            (|c| c.batch = MAX_BATCH + 1, "--batch"),
            (|c| c.window = 0, "--window"),
            (|c| c.events = 601, "multiple of 3"),
            (|c| c.events = 150, "cannot fill one batch"),
            (|c| c.brain_pid = Some(u32::MAX), "--brain-pid"),
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
        let f = Frames::new("r1", 2, 10..14, 5);
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
        assert_eq!(lifecycle_event("r", 0, 19, 2)["kind"], "task.failed");
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
    fn latency_percentiles_use_nearest_rank() {
        let l = Latency::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Latency::of(vec![]).max, 0.0);
    }
}
