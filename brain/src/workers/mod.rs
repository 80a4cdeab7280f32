//! Background workers: each runs on its documented cadence and stops when
//! the shutdown signal flips.

pub mod agent_health;
pub mod command_timeout;
pub mod wal_checkpoint;

use tokio::sync::watch;

/// Sleeps `period`, returning false when shutdown was signalled meanwhile.
pub async fn tick(period: std::time::Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(period) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}
