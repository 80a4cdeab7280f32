//! Every `Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS`: commands still pending or
//! dispatched past their `timeout_at` (issue + `Z4J_COMMAND_TIMEOUT_SECONDS`)
//! become `timeout`.

use super::{periodic, Job};
use crate::commands::Commands;
use crate::store::Db;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(db: Db, commands: Commands, every: Duration, stop: watch::Receiver<bool>) {
    let job = Job {
        name: "command_timeout_worker",
        every,
        gated: false,
    };
    periodic(db, job, stop, move || {
        let commands = commands.clone();
        async move {
            let n = commands.sweep_timeouts().await?;
            if n > 0 {
                tracing::info!(commands = n, "commands timed out");
            }
            Ok::<(), crate::store::StoreError>(())
        }
    })
    .await;
}
