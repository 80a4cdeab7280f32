//! SQLite only: `PRAGMA wal_checkpoint(TRUNCATE)` every
//! `Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS`, so the WAL file does not grow
//! without bound between SQLite's own (passive) checkpoints. The first pass
//! runs one interval after start.

use crate::store::Db;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, interval: Duration, mut stop: watch::Receiver<bool>) {
    let Db::Sqlite(pool) = db else {
        return; // ignored on PostgreSQL
    };
    while super::tick(interval, &mut stop).await {
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&pool)
            .await
        {
            Ok((busy, log, checkpointed)) => {
                tracing::debug!(busy, log, checkpointed, "WAL checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying next interval"),
        }
    }
}
