//! Project invitations: minted by a project admin, accepted once by the
//! invitee (who gets an account and the membership), revocable while
//! pending. Only the token's keyed hash is stored.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_handle, on_read};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invitation {
    pub id: Uuid,
    pub project_id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: Option<Uuid>,
    pub expires_at: Ts,
    pub accepted_at: Option<Ts>,
    pub revoked_at: Option<Ts>,
    pub created_at: Ts,
}

impl Invitation {
    /// Neither accepted, revoked nor expired.
    pub fn pending(&self, now: Ts) -> bool {
        self.accepted_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

const COLUMNS: &str =
    "id, project_id, email, role, invited_by, expires_at, accepted_at, revoked_at, created_at";

pub struct NewInvitation<'a> {
    pub project_id: Uuid,
    pub email: &'a str,
    pub role: &'a str,
    pub invited_by: Uuid,
    pub token_hash: &'a str,
    pub expires_at: Ts,
}

pub async fn create(
    db: impl Into<Handle<'_>>,
    n: &NewInvitation<'_>,
) -> Result<Invitation, StoreError> {
    let mut db: Handle<'_> = db.into();
    let inv = Invitation {
        id: Uuid::new_v4(),
        project_id: n.project_id,
        email: n.email.to_owned(),
        role: n.role.to_owned(),
        invited_by: Some(n.invited_by),
        expires_at: n.expires_at,
        accepted_at: None,
        revoked_at: None,
        created_at: Ts::now(),
    };
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO invitations (id, project_id, email, role, invited_by, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(inv.id)
    .bind(inv.project_id)
    .bind(&inv.email)
    .bind(&inv.role)
    .bind(inv.invited_by)
    .bind(n.token_hash)
    .bind(inv.expires_at)
    .bind(inv.created_at)
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(inv)
}

/// The project's pending invitations, newest first.
pub async fn pending(db: &Db, project_id: Uuid, now: Ts) -> Result<Vec<Invitation>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM invitations WHERE project_id = $1 AND accepted_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Invitation>(&sql)
        .bind(project_id)
        .bind(now)
        .fetch_all(p)
        .await)?)
}

pub async fn find(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Invitation>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM invitations WHERE project_id = $1 AND id = $2");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Invitation>(&sql)
        .bind(project_id)
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

pub async fn find_by_hash(
    db: impl Into<Handle<'_>>,
    token_hash: &str,
) -> Result<Option<Invitation>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Invitation>(&sql)
        .bind(token_hash)
        .fetch_optional(p)
        .await)?,
    )
}

/// Revokes a pending invitation; false when it was no longer pending.
pub async fn revoke(db: impl Into<Handle<'_>>, id: Uuid, now: Ts) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE invitations SET revoked_at = $2 WHERE id = $1 AND accepted_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $2"
    )
    .bind(id)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Consumes a pending invitation for the new account; false when another
/// request consumed, revoked or outlived it first.
pub async fn accept(
    db: impl Into<Handle<'_>>,
    id: Uuid,
    user: Uuid,
    now: Ts,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE invitations SET accepted_at = $3, accepted_by = $2 WHERE id = $1 \
         AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3"
    )
    .bind(id)
    .bind(user)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
