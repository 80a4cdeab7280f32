//! SQLite only: `PRAGMA wal_checkpoint(TRUNCATE)` every
//! `Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS`, so the WAL file does not grow
//! without bound between SQLite's own (passive) checkpoints. The first pass
//! runs one interval after start.

use crate::metrics::Metrics;
use crate::store::{self, Db};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, interval: Duration, m: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    if !matches!(db, Db::Sqlite(_)) {
        return; // ignored on PostgreSQL
    }
    while super::tick(interval, &mut stop).await {
        match store::wal_checkpoint(&db).await {
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
