//! Every `Z4J_AGENT_HEALTH_SWEEP_SECONDS`: agents whose last sign of life is
//! older than `Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS` are marked offline (a
//! heartbeat flips them back). With `Z4J_AGENT_STALE_PRUNE_DAYS` > 0, agents
//! silent for that many days are soft-revoked in the same pass.

use crate::store::{agents, Db, Ts};
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(
    db: Db,
    every: Duration,
    offline_after_secs: i64,
    prune_days: i64,
    mut stop: watch::Receiver<bool>,
) {
    while super::tick(every, &mut stop).await {
        let silent_since = Ts::now().plus_seconds(-offline_after_secs);
        match agents::sweep_offline(&db, silent_since).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(agents = n, "silent agents marked offline"),
            Err(e) => {
                tracing::warn!(error = %e, "agent health sweep failed; retrying next interval")
            }
        }
        if prune_days > 0 {
            let cutoff = Ts::now().plus_seconds(-prune_days * 86_400);
            match agents::prune_stale(&db, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(agents = n, days = prune_days, "stale agents pruned"),
                Err(e) => {
                    tracing::warn!(error = %e, "stale-agent prune failed; retrying next sweep")
                }
            }
        }
    }
}
