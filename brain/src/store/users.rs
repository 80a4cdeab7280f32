//! Users.

use super::{Db, StoreError, Ts};
use crate::on_db;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_admin: bool,
    pub is_active: bool,
    pub timezone: String,
    pub password_changed_at: Option<Ts>,
    pub created_at: Ts,
    pub failed_login_count: i32,
    pub locked_until: Option<Ts>,
    pub mfa_enrolled_at: Option<Ts>,
    pub mfa_enforcement_started_at: Option<Ts>,
}

const COLUMNS: &str = "id, email, password_hash, display_name, first_name, last_name, is_admin, is_active, timezone, password_changed_at, created_at, failed_login_count, locked_until, mfa_enrolled_at, mfa_enforcement_started_at";

pub async fn count(db: &Db) -> Result<i64, StoreError> {
    Ok(on_db!(db, p => sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(p).await)?)
}

pub async fn find(db: &Db, id: Uuid) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(p).await)?)
}

pub async fn find_by_email(db: &Db, canonical_email: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1");
    Ok(
        on_db!(db, p => sqlx::query_as::<_, User>(&sql).bind(canonical_email).fetch_optional(p).await)?,
    )
}

/// A failed login on an existing account: counts it and, from the
/// threshold on, (re-)arms the lock from now. The count is reset only by a
/// successful login.
pub async fn record_failed_login(
    db: &Db,
    id: Uuid,
    now: Ts,
    threshold: i64,
    lock_seconds: i64,
) -> Result<i64, StoreError> {
    let count: i32 = on_db!(db, p => sqlx::query_scalar(
        "UPDATE users SET failed_login_count = failed_login_count + 1, last_failed_login_at = $2, \
         locked_until = CASE WHEN failed_login_count + 1 >= $3 THEN $4 ELSE locked_until END \
         WHERE id = $1 RETURNING failed_login_count"
    )
    .bind(id)
    .bind(now)
    .bind(threshold)
    .bind(now.plus_seconds(lock_seconds))
    .fetch_one(p)
    .await)?;
    Ok(i64::from(count))
}

/// A successful login: the failure count and any lock are cleared; an
/// upgraded hash (new cost settings) replaces the stored one.
pub async fn record_login(
    db: &Db,
    id: Uuid,
    now: Ts,
    rehashed: Option<&str>,
) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE users SET failed_login_count = 0, locked_until = NULL, last_login_at = $2, \
         password_hash = COALESCE($3, password_hash) WHERE id = $1"
    )
    .bind(id)
    .bind(now)
    .bind(rehashed)
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}
