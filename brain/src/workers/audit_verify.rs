//! With `Z4J_AUDIT_CHAIN_VERIFY_ENABLED` (off by default, as the
//! reference's opt-in verifier): the whole audit chain is walked at start
//! and then every `Z4J_AUDIT_CHAIN_VERIFY_INTERVAL_SECONDS`, by one replica.
//! The outcome is counted, logged (an error when the chain does not
//! verify) and shown on the system page; a broken chain never stops the
//! brain, since operators need it to investigate.

use super::{periodic, Job};
use crate::metrics::{bump, ChainCheck, Metrics};
use crate::settings::Settings;
use crate::store::{Db, StoreError, Ts};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, settings: Arc<Settings>, m: Arc<Metrics>, stop: watch::Receiver<bool>) {
    if !settings.audit_chain_verify_enabled {
        return;
    }
    let job = Job {
        name: "audit_chain_verifier_worker",
        every: Duration::from_secs(settings.audit_chain_verify_interval_seconds.max(900) as u64),
        gated: true,
    };
    periodic(db.clone(), job, stop, move || {
        let (db, s, m) = (db.clone(), settings.clone(), m.clone());
        async move { check(&db, &s, &m).await }
    })
    .await;
}

/// One walk, recorded; a walk that could not finish is returned as an
/// error so the worker retries it sooner than the interval.
pub async fn check(db: &Db, s: &Settings, m: &Metrics) -> Result<(), StoreError> {
    let report = crate::audit::verify(db, s).await;
    let at = Ts::now().to_rfc3339();
    let (result, out) = match report {
        Ok(r) => {
            m.audit_chain_rows_verified
                .store(r.rows as i64, Ordering::Relaxed);
            let problem = r.broken.map(|(id, why)| match id {
                Some(id) => format!("row {id}: {why}"),
                None => why,
            });
            match &problem {
                None => tracing::info!(rows = r.rows, "audit chain verified"),
                Some(p) => tracing::error!(
                    rows = r.rows,
                    problem = %p,
                    "the audit chain DID NOT VERIFY; investigate before trusting its rows (`z4j audit verify`)"
                ),
            }
            let outcome = if problem.is_some() { "failed" } else { "clean" };
            (
                Ok(()),
                ChainCheck {
                    at,
                    outcome,
                    rows: r.rows,
                    problem,
                },
            )
        }
        Err(e) => {
            let check = ChainCheck {
                at,
                outcome: "error",
                rows: 0,
                problem: Some(format!("the walk could not finish: {e}")),
            };
            (Err(e), check)
        }
    };
    bump(&m.audit_chain_verifications, &[out.outcome]);
    *m.audit_chain_last.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
    result
}
