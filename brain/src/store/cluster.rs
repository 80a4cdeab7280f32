//! PostgreSQL LISTEN/NOTIFY for cross-replica routing: publishing a
//! notification and opening a dedicated listener connection. The routing
//! policy (what is published, what a notification means) is the fleet's.

use super::StoreError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::time::Duration;

/// `pg_notify(channel, payload)` on the shared pool.
pub async fn notify(pool: &PgPool, channel: &str, payload: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// A listener on its own one-connection pool, so closing the pool really
/// ends the backend (a recycle gets a new one). Listens on `channels`.
pub async fn listen(
    options: &PgConnectOptions,
    connect_timeout: Duration,
    channels: &[&str],
) -> Result<(PgPool, PgListener), String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(connect_timeout)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    listener.eager_reconnect(false);
    listener
        .listen_all(channels.iter().copied())
        .await
        .map_err(|e| format!("listen: {e}"))?;
    Ok((pool, listener))
}
