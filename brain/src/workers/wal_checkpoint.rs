//! SQLite only, two loops. `run`: `PRAGMA wal_checkpoint(TRUNCATE)` every
//! `Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS`, so the WAL file does not keep
//! its largest size (the first pass runs one interval after start).
//! `passive`: the checkpoints the writer's commits no longer run
//! (decision S7), on a connection of their own.

use crate::metrics::Metrics;
use crate::store::{self, Checkpoint, Db};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, interval: Duration, m: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    if !matches!(db, Db::Sqlite(_)) {
        return; // ignored on PostgreSQL
    }
    while super::tick(interval, &mut stop).await {
        match store::wal_checkpoint(&db, Checkpoint::Truncate).await {
            Ok(None) => return,
            Ok(Some((busy, log, checkpointed))) => {
                tracing::debug!(busy, log, checkpointed, "WAL checkpoint");
                m.wal_checkpoint_pages_last
                    .store(checkpointed, Ordering::Relaxed);
                m.wal_checkpoint_last_run
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                m.wal_checkpoint_error.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                m.wal_checkpoint_error.store(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying next interval")
            }
        }
    }
}

/// After a pass that found WAL frames to copy, the next one comes soon;
/// after an idle pass, later (an idle brain wakes twice a second).
pub const PASSIVE_BUSY_PERIOD: Duration = Duration::from_millis(100);
pub const PASSIVE_IDLE_PERIOD: Duration = Duration::from_millis(500);

/// Passive checkpoints beside the writer until `stop` flips: they copy
/// committed WAL frames into the database file without blocking anyone,
/// so the commit that crosses the writer's (raised) autocheckpoint finds
/// little left to copy.
pub async fn passive(db: Db, mut stop: watch::Receiver<bool>) {
    if !matches!(db, Db::Sqlite(_)) {
        return;
    }
    let mut last = (0, 0);
    let mut failing = false;
    let mut period = PASSIVE_IDLE_PERIOD;
    while super::tick(period, &mut stop).await {
        period = match store::wal_checkpoint(&db, Checkpoint::Passive).await {
            Ok(None) => return,
            Ok(Some((_busy, log, checkpointed))) => {
                if failing {
                    tracing::info!("passive WAL checkpoints work again");
                    failing = false;
                }
                // The WAL moved since the last pass: commits are coming.
                let moved = (log, checkpointed) != last;
                last = (log, checkpointed);
                if moved {
                    PASSIVE_BUSY_PERIOD
                } else {
                    PASSIVE_IDLE_PERIOD
                }
            }
            Err(e) => {
                // Once per run of failures: the writer's net still checkpoints.
                if !failing {
                    tracing::warn!(error = %e, "passive WAL checkpoint failed; retrying");
                    failing = true;
                }
                PASSIVE_IDLE_PERIOD
            }
        };
    }
}
