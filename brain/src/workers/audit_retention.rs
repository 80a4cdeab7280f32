//! Every `max(60, Z4J_AUDIT_RETENTION_SWEEP_INTERVAL_SECONDS)` (one
//! replica): audit rows older than `Z4J_AUDIT_RETENTION_DAYS` are deleted
//! oldest first, `Z4J_AUDIT_RETENTION_SWEEP_BATCH_SIZE` per transaction, at
//! most `Z4J_AUDIT_RETENTION_SWEEP_MAX_PER_PASS` per pass; the signed prune
//! point moves with them so the rest of the chain still verifies.

use super::{periodic, Job};
use crate::audit::{self, AuditError};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::{Db, StoreError, Ts};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, settings: Arc<Settings>, m: Arc<Metrics>, stop: watch::Receiver<bool>) {
    let job = Job {
        name: "audit_retention_worker",
        every: Duration::from_secs(settings.audit_retention_sweep_interval_seconds.max(60) as u64),
        gated: true,
    };
    periodic(db.clone(), job, stop, move || {
        let (db, s, m) = (db.clone(), settings.clone(), m.clone());
        async move { sweep(&db, &s, &m).await }
    })
    .await;
}

/// One pass; returns the rows deleted.
pub async fn pass(db: &Db, s: &Settings) -> Result<u64, AuditError> {
    pass_before(
        db,
        s,
        Ts::now().plus_seconds(-s.audit_retention_days * 86_400),
    )
    .await
}

/// One pass over rows older than `cutoff`: batches of the configured size
/// until one comes back short or the per-pass cap is reached.
pub async fn pass_before(db: &Db, s: &Settings, cutoff: Ts) -> Result<u64, AuditError> {
    if s.mutant(crate::settings::mutant::Mutant::RetentionNeverDeletes) {
        return Ok(0);
    }
    let batch = s.audit_retention_sweep_batch_size.max(100);
    let cap = s.audit_retention_sweep_max_per_pass.max(1) as u64;
    let mut total = 0u64;
    while total < cap {
        let want = batch.min((cap - total) as i64);
        let n = audit::prune_batch(db, s, cutoff, want).await?;
        total += n;
        if n < want as u64 {
            break;
        }
    }
    Ok(total)
}

async fn sweep(db: &Db, s: &Settings, m: &Metrics) -> Result<(), StoreError> {
    match pass(db, s).await {
        Ok(n) => {
            m.audit_retention_last_deleted
                .store(n as i64, Ordering::Relaxed);
            m.audit_retention_pruned_total
                .fetch_add(n, Ordering::Relaxed);
            m.audit_retention_last_run
                .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
            m.audit_retention_error.store(0, Ordering::Relaxed);
            if n > 0 {
                tracing::info!(
                    rows = n,
                    days = s.audit_retention_days,
                    "expired audit rows pruned"
                );
            }
            Ok(())
        }
        Err(AuditError::Store(e)) => {
            m.audit_retention_error.store(1, Ordering::Relaxed);
            Err(e)
        }
        Err(e) => {
            // A chain that no longer verifies is never pruned further.
            m.audit_retention_error.store(1, Ordering::Relaxed);
            tracing::error!(error = %e, "audit retention stopped: the chain does not verify");
            Ok(())
        }
    }
}
