//! Ingest load generator: agent connections stream signed `event_batch`
//! frames of task-lifecycle events at a brain, keep a window of un-acked
//! frames each, time every ack, and check persistence before reporting.
//!
//! `loadgen --url http://127.0.0.1:7700 --connections 4 --batch 1 --window 8 --events 30000 --brain-pid PID`
//! prints one JSON line on stdout and a table on stderr; it exits non-zero,
//! reporting nothing, when the run or its persistence check fails.

use clap::Parser;
use std::time::Duration;
use z4j_benches::load::{self, Config, Shape};
use z4j_benches::{BrainLogin, TaskIds};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Durable-ingest load generator for z4j brains"
)]
struct Args {
    #[command(flatten)]
    login: BrainLogin,
    /// Stream as this existing agent instead of minting (with --hmac-secret).
    #[arg(long, requires = "hmac_secret")]
    agent_token: Option<String>,
    #[arg(long, requires = "agent_token")]
    hmac_secret: Option<String>,
    /// Project of the minted agents and of the persistence check.
    #[arg(long, default_value = "default")]
    project: String,
    /// Agent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// `agents`: one minted agent per connection; `workers`: one agent with
    /// a worker connection each.
    #[arg(long, value_enum, default_value = "agents")]
    shape: ShapeArg,
    /// Events per frame (the real agent sends 1).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Un-acked frames allowed per connection.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Events in the run, a multiple of 3 (received, started, finished).
    #[arg(long, default_value_t = 30_000)]
    events: usize,
    /// Fail when no ack arrives for this long while frames are outstanding.
    #[arg(long, default_value_t = 30)]
    stall_seconds: u64,
    /// How long the persistence check waits for the counts to settle.
    #[arg(long, default_value_t = 30)]
    settle_seconds: u64,
    /// The brain's pid, for its peak RSS and CPU seconds.
    #[arg(long)]
    brain_pid: Option<u32>,
    /// Offer this many events per second over all connections instead of
    /// as many as acks allow (a soak; --events sets its length).
    #[arg(long)]
    rate: Option<f64>,
    /// Report throughput, p99 ack latency and brain RSS per interval of
    /// this many seconds, with their slopes per 10 minutes; each interval
    /// is also printed on stderr as it ends.
    #[arg(long)]
    sample_seconds: Option<u64>,
    /// Rename a saved view of the operator's every this many milliseconds
    /// during the load and report the writes' latency (`probe_writes`):
    /// how long a write beside ingest waits for the database.
    #[arg(long)]
    probe_writes_ms: Option<u64>,
    /// `sequential`: task ids in order per connection (every recorded
    /// figure); `celery`: scattered UUIDv4s, as Celery's.
    #[arg(long, value_enum, default_value = "sequential")]
    task_ids: TaskIds,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ShapeArg {
    Agents,
    Workers,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let agent = a.agent_token.zip(a.hmac_secret);
    let cfg = Config {
        url: a.login.url,
        email: a.login.email,
        password: a.login.password,
        shape: if agent.is_some() {
            Shape::Workers
        } else {
            match a.shape {
                ShapeArg::Agents => Shape::Agents,
                ShapeArg::Workers => Shape::Workers,
            }
        },
        agent,
        project: a.project,
        connections: a.connections,
        batch: a.batch,
        window: a.window,
        events: a.events,
        stall_timeout: Duration::from_secs(a.stall_seconds),
        settle_timeout: Duration::from_secs(a.settle_seconds),
        brain_pid: a.brain_pid,
        rate: a.rate,
        sample_every: a.sample_seconds.map(Duration::from_secs),
        probe_every: a.probe_writes_ms.map(Duration::from_millis),
        task_ids: a.task_ids,
    };
    match load::run(&cfg).await {
        Ok(report) => {
            eprintln!("{}", load::human(&report));
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("loadgen: cannot encode the report: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}
