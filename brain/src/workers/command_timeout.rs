//! Every `Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS`: commands still pending or
//! dispatched past their `timeout_at` (issue + `Z4J_COMMAND_TIMEOUT_SECONDS`)
//! become `timeout`.

use crate::store::{commands, Db};
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, every: Duration, mut stop: watch::Receiver<bool>) {
    while super::tick(every, &mut stop).await {
        match commands::sweep_timeouts(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(commands = n, "commands timed out"),
            Err(e) => {
                tracing::warn!(error = %e, "command timeout sweep failed; retrying next interval")
            }
        }
    }
}
