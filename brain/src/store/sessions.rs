//! Server-side session rows (the cookie only carries the id).

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_db, on_handle, on_read};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub csrf_token: String,
    pub issued_at: Ts,
    pub expires_at: Ts,
    pub last_seen_at: Ts,
    pub revoked_at: Option<Ts>,
    pub user_agent_at_issue: Option<String>,
    pub mfa_verified_at: Option<Ts>,
}

pub struct NewSession<'a> {
    pub user_id: Uuid,
    pub csrf_token: &'a str,
    pub lifetime_seconds: i64,
    pub ip: &'a str,
    pub user_agent: Option<&'a str>,
    /// Issued already past the second factor (no MFA, or a remembered device).
    pub mfa_verified: bool,
}

pub async fn create(
    db: impl Into<Handle<'_>>,
    new: &NewSession<'_>,
) -> Result<Session, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let s = Session {
        id: Uuid::new_v4(),
        user_id: new.user_id,
        csrf_token: new.csrf_token.to_owned(),
        issued_at: now,
        expires_at: now.plus_seconds(new.lifetime_seconds),
        last_seen_at: now,
        revoked_at: None,
        user_agent_at_issue: new.user_agent.map(|u| u.chars().take(256).collect()),
        mfa_verified_at: new.mfa_verified.then_some(now),
    };
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO sessions (id, user_id, csrf_token, issued_at, expires_at, last_seen_at, ip_at_issue, user_agent_at_issue, mfa_verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(s.id)
    .bind(s.user_id)
    .bind(&s.csrf_token)
    .bind(s.issued_at)
    .bind(s.expires_at)
    .bind(s.last_seen_at)
    .bind(new.ip)
    .bind(&s.user_agent_at_issue)
    .bind(s.mfa_verified_at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(s)
}

pub async fn find(db: &Db, id: Uuid) -> Result<Option<Session>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, Session>(
        "SELECT id, user_id, csrf_token, issued_at, expires_at, last_seen_at, revoked_at, user_agent_at_issue, mfa_verified_at \
         FROM sessions WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(p)
    .await)?)
}

/// Slides the idle window; only ever moves `last_seen_at` forward.
pub async fn touch(db: &Db, id: Uuid, at: Ts) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2"
    )
    .bind(id)
    .bind(at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn revoke(db: impl Into<Handle<'_>>, id: Uuid, reason: &str) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revocation_reason = $3 WHERE id = $1 AND revoked_at IS NULL"
    )
    .bind(id)
    .bind(Ts::now())
    .bind(reason)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A session as its owner sees it in the session list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub issued_at: Ts,
    pub last_seen_at: Ts,
    pub ip_at_issue: String,
    pub user_agent_at_issue: Option<String>,
}

/// The user's unrevoked, unexpired sessions, newest first, at most `limit`.
pub async fn list_live(
    db: &Db,
    user: Uuid,
    now: Ts,
    limit: i64,
) -> Result<Vec<Listed>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, Listed>(
        "SELECT id, issued_at, last_seen_at, ip_at_issue, user_agent_at_issue FROM sessions \
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
         ORDER BY issued_at DESC, id LIMIT $3"
    )
    .bind(user)
    .bind(now)
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

/// Revokes one of the user's sessions; false when the id is not theirs.
pub async fn revoke_own(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    id: Uuid,
    reason: &str,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let owner: Option<Uuid> = on_handle!(&mut db, read p => sqlx::query_scalar(
        "SELECT user_id FROM sessions WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(p)
    .await)?;
    if owner != Some(user) {
        return Ok(false);
    }
    revoke(db, id, reason).await?;
    Ok(true)
}

/// Revokes every live session of the user but `keep`; the count revoked.
pub async fn revoke_others(
    db: impl Into<Handle<'_>>,
    user: Uuid,
    keep: Uuid,
    reason: &str,
) -> Result<u64, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(on_handle!(&mut db, p => sqlx::query(
        "UPDATE sessions SET revoked_at = $3, revocation_reason = $4 \
         WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL"
    )
    .bind(user)
    .bind(keep)
    .bind(Ts::now())
    .bind(reason)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?)
}
