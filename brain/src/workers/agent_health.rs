//! Every `Z4J_AGENT_HEALTH_SWEEP_SECONDS`: agents whose last sign of life is
//! older than `Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS` are marked offline (a
//! heartbeat flips them back). With `Z4J_AGENT_STALE_PRUNE_DAYS` > 0, agents
//! silent for that many days are soft-revoked in the same pass. An offline
//! episode older than the timeout plus `Z4J_AGENT_OFFLINE_ALERT_GRACE_SECONDS`
//! raises one `agent.offline` alert (claimed fleet-wide).

use super::{periodic, Job};
use crate::audit::AuditError;
use crate::metrics::Metrics;
use crate::notify::{Alert, Alerts};
use crate::store::{agents, notifications, Db, Ts};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Offline episodes announced per tick.
const ALERTS_PER_TICK: i64 = 100;

pub struct Config {
    pub every: Duration,
    /// Told `agent.changed` for the projects of agents flipped offline.
    pub live: Arc<crate::fleet::live::Live>,
    pub metrics: Arc<Metrics>,
    pub offline_after_secs: i64,
    pub alert_grace_secs: i64,
    pub prune_days: i64,
}

pub async fn run(
    db: Db,
    settings: std::sync::Arc<crate::settings::Settings>,
    c: Config,
    alerts: Alerts,
    stop: watch::Receiver<bool>,
) {
    let Config {
        every,
        live,
        metrics,
        offline_after_secs,
        alert_grace_secs,
        prune_days,
    } = c;
    let job = Job {
        name: "agent_health_worker",
        every,
        gated: false,
    };
    periodic(db.clone(), job, stop, move || {
        let db = db.clone();
        let alerts = alerts.clone();
        let settings = settings.clone();
        let metrics = metrics.clone();
        let live = live.clone();
        async move {
            let silent_since = Ts::now().plus_seconds(-offline_after_secs);
            let flipped = agents::sweep_offline(&db, silent_since).await?;
            if !flipped.is_empty() {
                tracing::info!(agents = flipped.len(), "silent agents marked offline");
            }
            live.publish_each(&flipped, crate::fleet::live::Topic::Agent);
            announce(
                &db,
                &settings,
                &alerts,
                &metrics,
                offline_after_secs,
                alert_grace_secs,
            )
            .await?;
            if prune_days > 0 {
                let cutoff = Ts::now().plus_seconds(-prune_days * 86_400);
                let n = agents::prune_stale(&db, cutoff).await?;
                if n > 0 {
                    tracing::info!(agents = n, days = prune_days, "stale agents pruned");
                }
            }
            Ok::<(), AuditError>(())
        }
    })
    .await;
}

async fn announce(
    db: &Db,
    settings: &crate::settings::Settings,
    alerts: &Alerts,
    metrics: &Metrics,
    timeout: i64,
    grace: i64,
) -> Result<(), AuditError> {
    let silent_since = Ts::now().plus_seconds(-(timeout + grace));
    for a in notifications::unannounced_offline(db, silent_since, ALERTS_PER_TICK).await? {
        let offline_for = (Ts::now().0 - a.last_seen_at.0).num_seconds();
        // The claim and its audit row commit together: a replica that loses
        // the claim writes no row, and no claim lands without its row.
        let mut tx = crate::audit::begin(db).await?;
        if !notifications::claim_offline(&mut tx, &a).await? {
            continue;
        }
        crate::audit::commit(
            tx,
            settings,
            &crate::audit::Entry::new("agent.offline_detected", "failed")
                .target("agent", a.id)
                .in_project(a.project_id)
                .meta(serde_json::json!({
                    "name": a.name,
                    "last_seen_at": a.last_seen_at.to_rfc3339(),
                    "offline_for_seconds": offline_for,
                    "timeout_seconds": timeout,
                    "grace_seconds": grace,
                })),
        )
        .await?;
        metrics
            .agents_offline_detected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(agent_id = %a.id, name = %a.name, offline_for_seconds = offline_for, "agent offline");
        let mut fields = serde_json::Map::new();
        fields.insert("agent_id".into(), a.id.to_string().into());
        fields.insert("agent_name".into(), a.name.clone().into());
        fields.insert("last_seen_at".into(), a.last_seen_at.to_rfc3339().into());
        fields.insert("offline_for_seconds".into(), offline_for.into());
        alerts.raise(Alert {
            project_id: a.project_id,
            trigger: "agent.offline",
            task_id: None,
            task_name: None,
            fields,
        });
    }
    Ok(())
}
