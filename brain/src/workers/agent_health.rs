//! Every `Z4J_AGENT_HEALTH_SWEEP_SECONDS`: agents whose last sign of life is
//! older than `Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS` are marked offline (a
//! heartbeat flips them back). With `Z4J_AGENT_STALE_PRUNE_DAYS` > 0, agents
//! silent for that many days are soft-revoked in the same pass.

use super::{periodic, Job};
use crate::store::{agents, Db, Ts};
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(
    db: Db,
    every: Duration,
    offline_after_secs: i64,
    prune_days: i64,
    stop: watch::Receiver<bool>,
) {
    let job = Job {
        name: "agent_health_worker",
        every,
        gated: false,
    };
    periodic(db.clone(), job, stop, move || {
        let db = db.clone();
        async move {
            let silent_since = Ts::now().plus_seconds(-offline_after_secs);
            let n = agents::sweep_offline(&db, silent_since).await?;
            if n > 0 {
                tracing::info!(agents = n, "silent agents marked offline");
            }
            if prune_days > 0 {
                let cutoff = Ts::now().plus_seconds(-prune_days * 86_400);
                let n = agents::prune_stale(&db, cutoff).await?;
                if n > 0 {
                    tracing::info!(agents = n, days = prune_days, "stale agents pruned");
                }
            }
            Ok(())
        }
    })
    .await;
}
