//! Password-reset tokens (keyed hashes only): issued on request, consumed
//! once by the confirmation, which also retires the user's other tokens.

use super::{StoreError, Ts};
use crate::on_handle;
use crate::store::Handle;
use uuid::Uuid;

pub async fn create(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    token_hash: &str,
    expires_at: Ts,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO password_reset_tokens (id, user_id, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(Uuid::new_v4())
    .bind(user)
    .bind(token_hash)
    .bind(expires_at)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// The user of an unused, unexpired token.
pub async fn live_user(
    db: impl Into<Handle<'_>>,
    token_hash: &str,
    now: Ts,
) -> Result<Option<Uuid>, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(on_handle!(&mut db, read p => sqlx::query_scalar::<_, Uuid>(
        "SELECT user_id FROM password_reset_tokens WHERE token_hash = $1 AND used_at IS NULL \
         AND expires_at > $2"
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(p)
    .await)?)
}

/// Consumes the presented token (false when another request did first)
/// and every other outstanding token of its user.
pub async fn consume(
    db: impl Into<Handle<'_>>,
    token_hash: &str,
    user: Uuid,
    now: Ts,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE password_reset_tokens SET used_at = $3 WHERE token_hash = $1 AND user_id = $2 \
         AND used_at IS NULL AND expires_at > $3"
    )
    .bind(token_hash)
    .bind(user)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    if n != 1 {
        return Ok(false);
    }
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE password_reset_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL"
    )
    .bind(user)
    .bind(now)
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(true)
}
