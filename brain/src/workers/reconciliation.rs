//! Every `Z4J_RECONCILIATION_SWEEP_SECONDS` (one replica): tasks stuck in
//! `started`, `pending` or `retry` for longer than
//! `Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS` are probed with a
//! `reconcile_task` command to an online agent running their engine; the
//! answer is applied when it comes back (`commands::reconcile`).

use super::{periodic, Job};
use crate::commands::reconcile::idempotency_key;
use crate::commands::Commands;
use crate::settings::Settings;
use crate::store::commands::{Action, Issued, NewCommand};
use crate::store::reconcile;
use crate::store::{Db, StoreError, Ts};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Tasks probed per tick.
const PER_TICK: i64 = 100;

/// What the sweep works with.
#[derive(Clone)]
pub struct Ctx {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub commands: Commands,
}

pub async fn run(state: Ctx, stop: watch::Receiver<bool>) {
    let s = &state.settings;
    let every = s.reconciliation_sweep_seconds.max(1);
    let job = Job {
        name: "reconciliation_worker",
        every: Duration::from_secs(every as u64),
        gated: true,
    };
    let threshold = s.reconciliation_stale_threshold_seconds;
    periodic(state.db.clone(), job, stop, move || {
        let state = state.clone();
        async move { sweep(&state, threshold, every).await }
    })
    .await;
}

async fn sweep(state: &Ctx, threshold: i64, every: i64) -> Result<(), StoreError> {
    let now = Ts::now();
    let stale = reconcile::stale_tasks(&state.db, now.plus_seconds(-threshold), PER_TICK).await?;
    for t in stale {
        let Some(agent) = reconcile::agent_for(&state.db, t.project_id, &t.engine).await? else {
            continue;
        };
        let payload = json!({"task_id": t.task_id, "engine": t.engine});
        let key = idempotency_key(&t.engine, &t.task_id, now.0.timestamp(), every);
        let issued = state
            .commands
            .persist(
                &state.db,
                &NewCommand {
                    project_id: t.project_id,
                    agent_id: agent,
                    issued_by: None,
                    action: Action::ReconcileTask,
                    target_type: "task",
                    target_id: Some(&t.task_id),
                    payload: &payload,
                    idempotency_key: Some(&key),
                    timeout_seconds: state.settings.command_timeout_seconds,
                    source_ip: "",
                },
            )
            .await;
        match issued {
            Ok(Issued::New(c)) => {
                tracing::info!(task_id = %t.task_id, engine = %t.engine, command_id = %c.id, "reconciliation probe issued");
                state.commands.dispatch_new(agent, &c).await;
            }
            // Already probed in this window (perhaps through another agent).
            Ok(Issued::Replayed(_)) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
