//! Idle WebSocket capacity: how much brain memory an idle agent connection
//! costs, as connections held per GiB (issue #19 item 3).
//!
//! `idlecap --url http://127.0.0.1:7700 --connections 4000 --brain-pid PID`
//! mints one agent per 50 connections (under the default per-agent cap of
//! 64), opens every connection with its `hello`, waits for the handshakes
//! to settle, and reads the brain's resident memory before and after; one
//! JSON line on stdout. Each connection comes from its own
//! `X-Forwarded-For` address (start the brain with
//! `Z4J_TRUSTED_PROXIES='["127.0.0.1/32"]'`), since one address may open
//! only 600 connections a minute. Loopback only, bounded in count and time (every
//! connection is closed when the run ends, long before the 90 s idle
//! timeout).

use clap::Parser;
use futures_util::{stream, StreamExt};
use std::time::{Duration, Instant};
use z4j_benches::BrainLogin;
use z4j_conformance::agent::{self, Target};

#[derive(Parser)]
#[command(
    name = "idlecap",
    about = "Idle agent connections per GiB of brain memory"
)]
struct Args {
    #[command(flatten)]
    login: BrainLogin,
    /// Connections to hold (at most 10 000).
    #[arg(long, default_value_t = 4000)]
    connections: usize,
    /// Connections per minted agent (the brain's per-agent cap is 64).
    #[arg(long, default_value_t = 50)]
    per_agent: usize,
    /// The brain's pid, for its resident memory.
    #[arg(long)]
    brain_pid: u32,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
}

/// The brain's resident memory (its process tree), KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    match z4j_benches::procstat::rss_kib(pid) {
        0 => Err(format!("no resident memory for pid {pid}")),
        kib => Ok(kib),
    }
}

async fn run(a: Args) -> Result<serde_json::Value, String> {
    if a.connections == 0 || a.connections > 10_000 {
        return Err("--connections must be 1..=10000".into());
    }
    if a.per_agent == 0 || a.per_agent > 64 {
        return Err("--per-agent must be 1..=64".into());
    }
    let brain = Target::from_url(&a.login.url)?;
    let op = agent::login_as(&brain, &a.login.email, &a.login.password).await?;
    let mut creds = Vec::new();
    for i in 0..a.connections.div_ceil(a.per_agent) {
        creds.push(
            op.mint(&brain, &format!("idle-{i}-{}", std::process::id()))
                .await?,
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(a.brain_pid)?;
    let started = Instant::now();
    let sessions: Vec<Result<agent::RawSocket, String>> = stream::iter(0..a.connections)
        .map(|i| {
            let (brain, creds) = (&brain, &creds[i / a.per_agent]);
            async move {
                let xff = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                let bearer = format!("Bearer {}", creds.token);
                let mut s =
                    agent::open_with(brain, Some(&bearer), &[("x-forwarded-for", xff.as_str())])
                        .await?;
                s.send_text(&agent::hello(Some(&format!("w{i}"))).to_string())
                    .await?;
                match s.next_data(Duration::from_secs(30)).await? {
                    Ok(_) => Ok(s),
                    Err(c) => Err(format!("connection {i} closed at its hello: {c:?}")),
                }
            }
        })
        .buffer_unordered(a.parallel)
        .collect()
        .await;
    let opened = started.elapsed();
    let mut held = Vec::new();
    for s in sessions {
        held.push(s?);
    }
    // Let allocations settle (pools, registry entries, task stacks).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(a.brain_pid)?;
    let per_conn_kib = after.saturating_sub(before) as f64 / held.len() as f64;
    let per_gib = if per_conn_kib > 0.0 {
        (1024.0 * 1024.0 / per_conn_kib).floor()
    } else {
        f64::INFINITY
    };
    drop(held);
    Ok(serde_json::json!({
        "connections": a.connections,
        "agents": creds.len(),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (per_conn_kib * 10.0).round() / 10.0,
        "connections_per_gib": per_gib,
        "open_seconds": opened.as_secs_f64(),
    }))
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("idlecap: {e}");
            std::process::exit(1);
        }
    }
}
