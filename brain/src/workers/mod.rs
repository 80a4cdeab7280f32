//! Background workers: each runs on its documented cadence under one
//! supervisor (first tick at start, failure backoff, leader election for
//! the workers only one replica may run) and stops when the shutdown signal
//! flips.

pub mod agent_health;
pub mod audit_retention;
pub mod audit_verify;
pub mod cluster;
pub mod command_timeout;
pub mod embedded_scheduler;
pub mod reconciliation;
pub mod retention;
pub mod schedules;
pub mod wal_checkpoint;

use crate::commands::Commands;
use crate::metrics::Metrics;
use crate::notify::{Alert, Alerts};
use crate::settings::Settings;
use crate::store::Db;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What the workers are started with.
pub struct Deps {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub commands: Commands,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
    pub schedules: crate::schedules::Schedules,
}

/// Starts every background loop on its documented cadence; each ends when
/// `stop` flips.
pub fn spawn_all(
    d: Deps,
    alert_rx: mpsc::Receiver<Alert>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let s = &d.settings;
    let secs = |n: i64| Duration::from_secs(n.max(1) as u64);
    // The scheduler's workers exist only where its gRPC server does.
    let scheduler = if s.scheduler_grpc_enabled || s.embedded_scheduler {
        schedules::spawn(s, &d.schedules, &stop)
    } else {
        Vec::new()
    };
    let mut all = vec![
        tokio::spawn(wal_checkpoint::passive(d.db.clone(), stop.clone())),
        tokio::spawn(wal_checkpoint::run(
            d.db.clone(),
            secs(s.wal_checkpoint_interval_seconds),
            d.metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(command_timeout::run(
            d.db.clone(),
            d.commands.clone(),
            secs(s.command_timeout_sweep_seconds),
            stop.clone(),
        )),
        tokio::spawn(agent_health::run(
            d.db.clone(),
            s.clone(),
            agent_health::Config {
                every: secs(s.agent_health_sweep_seconds),
                live: d.commands.fleet().live.clone(),
                metrics: d.metrics.clone(),
                offline_after_secs: s.agent_offline_timeout_seconds,
                alert_grace_secs: s.agent_offline_alert_grace_seconds,
                prune_days: s.agent_stale_prune_days,
            },
            d.alerts.clone(),
            stop.clone(),
        )),
        tokio::spawn(crate::notify::run(
            crate::notify::Sender {
                db: d.db.clone(),
                settings: s.clone(),
                metrics: d.metrics.clone(),
            },
            alert_rx,
            stop.clone(),
        )),
        tokio::spawn(reconciliation::run(
            reconciliation::Ctx {
                settings: s.clone(),
                db: d.db.clone(),
                commands: d.commands.clone(),
            },
            stop.clone(),
        )),
        tokio::spawn(audit_retention::run(
            d.db.clone(),
            s.clone(),
            d.metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(audit_verify::run(
            d.db.clone(),
            s.clone(),
            d.metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(retention::run(
            d.db.clone(),
            // Mutant: a window so long that nothing is ever old enough.
            if s.mutant(crate::settings::mutant::Mutant::RetentionNeverDeletes) {
                100_000
            } else {
                s.event_retention_days
            },
            stop.clone(),
        )),
        tokio::spawn(cluster::run(
            cluster::Ctx {
                db: d.db.clone(),
                commands: d.commands,
            },
            stop,
        )),
    ];
    all.extend(scheduler);
    all
}

/// Sleeps `period`, returning false when shutdown was signalled meanwhile.
pub async fn tick(period: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(period) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// How a periodic worker is scheduled.
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    /// Only the replica holding the worker's advisory lock runs a tick.
    pub gated: bool,
}

/// Delay after the (n+1)-th consecutive failure: 1, 2, 4, ... seconds, up
/// to the larger of the interval and 30 s (storage spec 3.1).
pub fn failure_backoff(failures: u32, every: Duration) -> Duration {
    let cap = every.max(Duration::from_secs(30));
    Duration::from_secs(1u64 << failures.min(20)).min(cap)
}

/// Runs `work` at start and then every `job.every` until shutdown.
pub async fn periodic<F, Fut, E>(db: Db, job: Job, mut stop: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut failures = 0u32;
    loop {
        let outcome = if job.gated {
            match crate::store::leader::try_lead(&db, job.name).await {
                Ok(Some(lease)) => {
                    let r = work().await;
                    lease.release().await;
                    Some(r)
                }
                // Another replica leads this tick, or the lock could not be
                // asked for: skip quietly, never into the failure backoff.
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(worker = job.name, error = %e, "cannot ask for the worker lock");
                    None
                }
            }
        } else {
            Some(work().await)
        };
        let delay = match outcome {
            Some(Err(e)) => {
                let d = failure_backoff(failures, job.every);
                failures += 1;
                tracing::warn!(worker = job.name, error = %e, retry_in_seconds = d.as_secs(), "worker tick failed");
                d
            }
            _ => {
                failures = 0;
                job.every
            }
        };
        if !tick(delay, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_larger_of_interval_and_30s() {
        let five = Duration::from_secs(5);
        let got: Vec<u64> = (0..7).map(|n| failure_backoff(n, five).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(failure_backoff(10, Duration::from_secs(300)).as_secs(), 300);
    }
}
