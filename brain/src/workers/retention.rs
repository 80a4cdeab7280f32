//! Hourly (one replica): raw events older than `Z4J_EVENT_RETENTION_DAYS`
//! are deleted — whole daily partitions dropped on PostgreSQL (after
//! making sure today's and the next seven days' exist), batched deletes on
//! SQLite and in PostgreSQL's default partition — and agent status and
//! queue depth samples older than the same window with them.

use super::{periodic, Job};
use crate::store::{retention, Db, StoreError, Ts};
use std::time::Duration;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(3600);
/// Daily partitions kept ready ahead of today.
const DAYS_AHEAD: i64 = 7;

pub async fn run(db: Db, retention_days: i64, stop: watch::Receiver<bool>) {
    let job = Job {
        name: "partition_creator_worker",
        every: EVERY,
        gated: true,
    };
    periodic(db.clone(), job, stop, move || {
        let db = db.clone();
        async move { sweep(&db, retention_days).await }
    })
    .await;
}

pub async fn sweep(db: &Db, retention_days: i64) -> Result<(), StoreError> {
    let now = Ts::now();
    let cutoff = now.plus_seconds(-retention_days * 86_400);
    if let Db::Postgres(pool) = db {
        let created =
            retention::ensure_event_partitions(pool, now.0.date_naive(), DAYS_AHEAD).await?;
        if !created.is_empty() {
            tracing::info!(partitions = ?created, "event partitions created");
        }
        let dropped = retention::drop_event_partitions_before(pool, cutoff.0.date_naive()).await?;
        if !dropped.is_empty() {
            tracing::info!(partitions = ?dropped, days = retention_days, "expired event partitions dropped");
        }
    }
    let events = retention::delete_events_before(db, cutoff).await?;
    let samples = retention::delete_status_history_before(db, cutoff).await?;
    let depths = retention::delete_depth_samples_before(db, cutoff).await?;
    if events + samples + depths > 0 {
        tracing::info!(
            events,
            status_samples = samples,
            depth_samples = depths,
            days = retention_days,
            "expired rows deleted"
        );
    }
    Ok(())
}
