//! Ingest load generator: N agent connections stream `event_batch` frames
//! (one event each, as z4j-bare sends them) at a brain and count durable
//! acknowledgements.
//!
//! `loadgen --url http://127.0.0.1:7700 --email .. --password .. --agents 4 --seconds 10`
//! logs in, mints the agents, streams, and prints acknowledged events/s.

use clap::Parser;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use z4j_conformance::agent::{self, task_event};

#[derive(Parser)]
struct Args {
    /// Base URL of the brain.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    url: String,
    #[arg(long, default_value = agent::ADMIN_EMAIL)]
    email: String,
    #[arg(long, default_value = agent::ADMIN_PASSWORD)]
    password: String,
    /// Concurrent agent connections.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// How long to stream.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Frames in flight per connection before waiting for acks.
    #[arg(long, default_value_t = 256)]
    window: usize,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let target = agent::Target::from_url(&args.url)?;
    let op = agent::login_as(&target, &args.email, &args.password).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    for a in 0..args.agents {
        let creds = op
            .mint(&target, &format!("loadgen-{}-{a}", &run[..8]))
            .await?;
        let mut s = agent::connect(&target, &creds, Some(&format!("lg-{a}"))).await?;
        let window = args.window;
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sent, mut acked) = (0usize, 0usize);
            while Instant::now() < until {
                while sent - acked < window {
                    let id = format!("lg-{run}-{a}-{sent}");
                    let ev = task_event(
                        &id,
                        "task.received",
                        serde_json::json!({"task_name": "loadgen"}),
                    );
                    if s.send_events(&format!("ev_{id}"), &[ev]).await.is_err() {
                        return (sent, acked);
                    }
                    sent += 1;
                }
                match s.raw.0.next().await {
                    Some(Ok(_)) => acked += 1,
                    _ => return (sent, acked),
                }
            }
            while acked < sent {
                match tokio::time::timeout(Duration::from_secs(10), s.raw.0.next()).await {
                    Ok(Some(Ok(_))) => acked += 1,
                    _ => break,
                }
            }
            (sent, acked)
        }));
    }
    let (mut sent, mut acked) = (0, 0);
    for t in tasks {
        let (s, a) = t.await.map_err(|e| e.to_string())?;
        sent += s;
        acked += a;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "agents={} sent={sent} acked={acked} seconds={secs:.1} acked_events_per_second={:.0}",
        args.agents,
        acked as f64 / secs
    );
    Ok(())
}
