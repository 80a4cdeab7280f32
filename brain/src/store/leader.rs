//! Leader election for workers only one replica may run (storage spec
//! 3.2): a session advisory lock held on a dedicated connection for the
//! length of one tick. SQLite has one process, so it always leads.

use super::{Db, StoreError};
use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

/// First 8 bytes of SHA-256("z4j.brain.workers:" + name), big-endian, top
/// bit cleared (the ids the reference uses, so mixed fleets agree).
pub fn lock_id(name: &str) -> i64 {
    let d = Sha256::digest(format!("z4j.brain.workers:{name}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) & !(1u64 << 63)) as i64
}

/// The right to run one tick; give it back with [`Lease::release`].
pub struct Lease {
    held: Option<(PoolConnection<Postgres>, i64)>,
}

/// `Some` when this process may run the worker now.
pub async fn try_lead(db: &Db, name: &str) -> Result<Option<Lease>, StoreError> {
    let Db::Postgres(pool) = db else {
        return Ok(Some(Lease { held: None }));
    };
    let id = lock_id(name);
    let mut conn = pool.acquire().await?;
    // Autocommit: the holder sits idle, not idle in a transaction.
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(got.then_some(Lease {
        held: Some((conn, id)),
    }))
}

impl Lease {
    pub async fn release(mut self) {
        let Some((mut conn, id)) = self.held.take() else {
            return;
        };
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(id)
            .fetch_one(&mut *conn)
            .await;
        if !matches!(unlocked, Ok(true)) {
            // Never hand a connection that may still hold the lock back.
            tracing::error!(
                lock_id = id,
                "worker lock was not held at release; discarding the connection"
            );
            conn.close_on_drop();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((conn, _)) = self.held.as_mut() {
            // Dropped without release (a panicking tick): closing the
            // session frees the lock.
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_match_the_reference() {
        assert_eq!(lock_id("reconciliation_worker"), 8_853_976_985_475_711_065);
        assert_eq!(
            lock_id("partition_creator_worker"),
            3_004_521_051_328_422_294
        );
        assert_eq!(
            lock_id("schedule_circuit_breaker_worker"),
            454_144_503_609_165_197
        );
    }
}
