//! The scheduler's workers, one replica each tick (scheduler spec §5):
//! pending-fires replay every `Z4J_PENDING_FIRES_REPLAY_INTERVAL_SECONDS`,
//! the circuit breaker every `Z4J_SCHEDULE_CIRCUIT_BREAKER_INTERVAL_SECONDS`
//! (none when the threshold is 0), and the hourly fire-history prune.

use super::{periodic, Job};
use crate::schedules::Schedules;
use crate::settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn spawn(
    s: &Arc<Settings>,
    schedules: &Schedules,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let secs = |n: i64| Duration::from_secs(n.max(1) as u64);
    let db = schedules.db().clone();
    let mut out = Vec::new();
    let sch = schedules.clone();
    out.push(tokio::spawn(periodic(
        db.clone(),
        Job {
            name: "pending_fires_replay_worker",
            every: secs(s.pending_fires_replay_interval_seconds),
            gated: true,
        },
        stop.clone(),
        move || {
            let sch = sch.clone();
            async move {
                let r = sch.replay().await?;
                if r.expired + r.delivered + r.dropped > 0 {
                    tracing::info!(
                        expired = r.expired,
                        delivered = r.delivered,
                        dropped = r.dropped,
                        "pending fires replayed"
                    );
                }
                Ok::<_, crate::schedules::Error>(())
            }
        },
    )));
    let threshold = s.schedule_circuit_breaker_threshold;
    if threshold > 0 {
        let sch = schedules.clone();
        out.push(tokio::spawn(periodic(
            db.clone(),
            Job {
                name: "schedule_circuit_breaker_worker",
                every: secs(s.schedule_circuit_breaker_interval_seconds),
                gated: true,
            },
            stop.clone(),
            move || {
                let sch = sch.clone();
                async move { sch.breaker(threshold).await.map(|_| ()) }
            },
        )));
    }
    // 0 turns the detector off (not registered).
    if s.scheduler_misfire_sweep_seconds > 0 {
        let sch = schedules.clone();
        out.push(tokio::spawn(periodic(
            db.clone(),
            Job {
                name: "misfire_detector_worker",
                every: secs(s.scheduler_misfire_sweep_seconds),
                gated: true,
            },
            stop.clone(),
            move || {
                let sch = sch.clone();
                async move { sch.detect_misfires().await.map(|_| ()) }
            },
        )));
    }
    let sch = schedules.clone();
    out.push(tokio::spawn(periodic(
        db,
        Job {
            name: "schedule_fires_prune_worker",
            every: Duration::from_secs(3600),
            gated: true,
        },
        stop.clone(),
        move || {
            let sch = sch.clone();
            async move {
                let n = sch.prune_fires().await?;
                if n > 0 {
                    tracing::info!(deleted = n, "expired schedule fires deleted");
                }
                Ok::<_, crate::schedules::Error>(())
            }
        },
    )));
    out
}
