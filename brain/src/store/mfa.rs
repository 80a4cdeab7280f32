//! Second-factor state of users: sealed TOTP secrets, the replay mark, the
//! wrong-code lock, recovery codes, remembered devices, and sessions
//! marked verified.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_handle, on_read};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaState {
    pub mfa_secret: Option<String>,
    pub mfa_pending_secret: Option<String>,
    pub mfa_enrolled_at: Option<Ts>,
    pub mfa_last_step: Option<i64>,
    pub mfa_failed_count: i32,
    pub mfa_locked_until: Option<Ts>,
    pub mfa_enforcement_started_at: Option<Ts>,
}

pub async fn state(db: &Db, user: Uuid) -> Result<MfaState, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, MfaState>(
        "SELECT mfa_secret, mfa_pending_secret, mfa_enrolled_at, mfa_last_step, mfa_failed_count, \
         mfa_locked_until, mfa_enforcement_started_at FROM users WHERE id = $1"
    )
    .bind(user)
    .fetch_one(p)
    .await)?)
}

/// A statement whose only parameter is the user (`$1`).
async fn for_user(db: impl Into<Handle<'_>>, sql: &str, user: Uuid) -> Result<u64, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(on_handle!(&mut db, p => sqlx::query(sql)
        .bind(user)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?)
}

/// A statement with the user (`$1`) and an instant (`$2`).
async fn for_user_at(
    db: impl Into<Handle<'_>>,
    sql: &str,
    user: Uuid,
    at: Ts,
) -> Result<u64, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(on_handle!(&mut db, p => sqlx::query(sql)
        .bind(user)
        .bind(at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?)
}

/// Starts (or restarts) an enrolment: a new pending secret, no recovery
/// codes left.
pub async fn start_enrolment(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    sealed: &str,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query("UPDATE users SET mfa_pending_secret = $2 WHERE id = $1")
        .bind(user)
        .bind(sealed)
        .execute(p)
        .await
        .map(|_| ()))?;
    for_user(
        db.reborrow(),
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        user,
    )
    .await?;
    Ok(())
}

/// The pending secret becomes the secret; false when there was none.
pub async fn complete_enrolment(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    now: Ts,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = for_user_at(
        db.reborrow(),
        "UPDATE users SET mfa_secret = mfa_pending_secret, mfa_pending_secret = NULL, mfa_enrolled_at = $2, \
         mfa_last_step = NULL, mfa_failed_count = 0, mfa_locked_until = NULL \
         WHERE id = $1 AND mfa_pending_secret IS NOT NULL",
        user,
        now,
    )
    .await?;
    Ok(n == 1)
}

pub async fn disable(db: impl Into<Handle<'_>>, user: Uuid) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    for_user(
        db.reborrow(),
        "UPDATE users SET mfa_secret = NULL, mfa_pending_secret = NULL, mfa_enrolled_at = NULL, \
         mfa_last_step = NULL, mfa_failed_count = 0, mfa_locked_until = NULL WHERE id = $1",
        user,
    )
    .await?;
    for_user(
        db.reborrow(),
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        user,
    )
    .await?;
    for_user(
        db.reborrow(),
        "DELETE FROM mfa_trusted_devices WHERE user_id = $1",
        user,
    )
    .await?;
    Ok(())
}

/// Consumes a TOTP step: true only for a step newer than the last one (so
/// two racing requests cannot both use one code).
pub async fn consume_step(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    step: i64,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND (mfa_last_step IS NULL OR mfa_last_step < $2)"
    )
    .bind(user)
    .bind(step)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// A wrong code: counts it and locks from the threshold on. Returns the
/// new count.
pub async fn wrong_code(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    threshold: i64,
    lock_seconds: i64,
) -> Result<i64, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let n: i32 = on_handle!(&mut db, p => sqlx::query_scalar(
        "UPDATE users SET mfa_failed_count = mfa_failed_count + 1, \
         mfa_locked_until = CASE WHEN mfa_failed_count + 1 >= $2 THEN $3 ELSE mfa_locked_until END \
         WHERE id = $1 RETURNING mfa_failed_count"
    )
    .bind(user)
    .bind(threshold)
    .bind(now.plus_seconds(lock_seconds))
    .fetch_one(p)
    .await)?;
    Ok(i64::from(n))
}

pub async fn right_code(db: impl Into<Handle<'_>>, user: Uuid) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    for_user(
        db.reborrow(),
        "UPDATE users SET mfa_failed_count = 0, mfa_locked_until = NULL WHERE id = $1",
        user,
    )
    .await?;
    Ok(())
}

pub async fn start_enforcement(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    now: Ts,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    for_user_at(
        db.reborrow(),
        "UPDATE users SET mfa_enforcement_started_at = $2 WHERE id = $1 AND mfa_enforcement_started_at IS NULL",
        user,
        now,
    )
    .await?;
    Ok(())
}

pub async fn replace_recovery_codes(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    hashes: &[String],
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    for_user(
        db.reborrow(),
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        user,
    )
    .await?;
    let now = Ts::now();
    for h in hashes {
        on_handle!(&mut db, p => sqlx::query(
            "INSERT INTO mfa_recovery_codes (id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(Uuid::new_v4())
        .bind(user)
        .bind(h)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))?;
    }
    Ok(())
}

pub async fn unused_recovery_codes(
    db: impl Into<Handle<'_>>,
    user: Uuid,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, (Uuid, String)>(
        "SELECT id, code_hash FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL"
    )
    .bind(user)
    .fetch_all(p)
    .await)?,
    )
}

/// Marks a code used; false when another request used it first.
pub async fn use_recovery_code(db: impl Into<Handle<'_>>, id: Uuid) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE mfa_recovery_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL"
    )
    .bind(id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn mark_session_verified(
    db: impl Into<Handle<'_>>,
    session: Uuid,
    at: Ts,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query("UPDATE sessions SET mfa_verified_at = $2 WHERE id = $1")
        .bind(session)
        .bind(at)
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Remembers a device (its new id); keeps at most `max` active ones
/// (oldest use first out).
pub async fn trust_device(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    token_hash: &str,
    label: &str,
    expires_at: Ts,
    max: i64,
) -> Result<Uuid, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let id = Uuid::new_v4();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO mfa_trusted_devices (id, user_id, token_hash, label, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $5, $6)"
    )
    .bind(id)
    .bind(user)
    .bind(token_hash)
    .bind(label)
    .bind(now)
    .bind(expires_at)
    .execute(p)
    .await
    .map(|_| ()))?;
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE mfa_trusted_devices SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL AND id NOT IN \
         (SELECT id FROM mfa_trusted_devices WHERE user_id = $1 AND revoked_at IS NULL \
          ORDER BY last_seen_at DESC, created_at DESC LIMIT $3)"
    )
    .bind(user)
    .bind(now)
    .bind(max)
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(id)
}

/// Whether the presented trust token is a live remembered device of `user`.
pub async fn device_trusted(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    token_hash: &str,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE mfa_trusted_devices SET last_seen_at = $3 WHERE user_id = $1 AND token_hash = $2 \
         AND revoked_at IS NULL AND expires_at > $3"
    )
    .bind(user)
    .bind(token_hash)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrustedDevice {
    pub id: Uuid,
    pub token_hash: String,
    pub label: String,
    pub created_at: Ts,
    pub last_seen_at: Ts,
    pub expires_at: Ts,
    pub revoked_at: Option<Ts>,
}

pub async fn trusted_devices(db: &Db, user: Uuid) -> Result<Vec<TrustedDevice>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, TrustedDevice>(
        "SELECT id, token_hash, label, created_at, last_seen_at, expires_at, revoked_at \
         FROM mfa_trusted_devices WHERE user_id = $1 AND revoked_at IS NULL ORDER BY last_seen_at DESC, id"
    )
    .bind(user)
    .fetch_all(p)
    .await)?)
}

pub async fn revoke_device(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE mfa_trusted_devices SET revoked_at = $3 WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL"
    )
    .bind(user)
    .bind(id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn forget_devices(db: impl Into<Handle<'_>>, user: Uuid) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    for_user(
        db.reborrow(),
        "DELETE FROM mfa_trusted_devices WHERE user_id = $1",
        user,
    )
    .await?;
    Ok(())
}

/// Relabels one of the user's remembered devices; false when not theirs.
pub async fn rename_device(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    id: Uuid,
    label: &str,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE mfa_trusted_devices SET label = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL"
    )
    .bind(id)
    .bind(user)
    .bind(label)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
