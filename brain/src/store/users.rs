//! Users.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_handle, on_read};
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
    Ok(on_read!(db, p => sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(p).await)?)
}

pub async fn find(db: impl Into<Handle<'_>>, id: Uuid) -> Result<Option<User>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(p).await)?,
    )
}

pub async fn find_by_email(
    db: impl Into<Handle<'_>>,
    canonical_email: &str,
) -> Result<Option<User>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, User>(&sql).bind(canonical_email).fetch_optional(p).await)?,
    )
}

/// A failed login on an existing account: counts it and, from the
/// threshold on, (re-)arms the lock from now. The count is reset only by a
/// successful login.
pub async fn record_failed_login(
    db: impl Into<Handle<'_>>,
    id: Uuid,
    now: Ts,
    threshold: i64,
    lock_seconds: i64,
) -> Result<i64, StoreError> {
    let mut db: Handle<'_> = db.into();
    let count: i32 = on_handle!(&mut db, p => sqlx::query_scalar(
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
    db: impl Into<Handle<'_>>,
    id: Uuid,
    now: Ts,
    rehashed: Option<&str>,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
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

/// A user created by an admin (not the first-boot admin).
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub is_admin: bool,
    pub timezone: &'a str,
}

pub async fn create(db: impl Into<Handle<'_>>, n: &NewUser<'_>) -> Result<User, StoreError> {
    let mut db: Handle<'_> = db.into();
    let id = Uuid::new_v4();
    let now = Ts::now();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO users (id, email, password_hash, display_name, first_name, last_name, is_admin, is_active, \
         timezone, password_changed_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)"
    )
    .bind(id)
    .bind(n.email)
    .bind(n.password_hash)
    .bind(n.display_name)
    .bind(n.first_name)
    .bind(n.last_name)
    .bind(n.is_admin)
    .bind(true)
    .bind(n.timezone)
    .bind(now)
    .execute(p)
    .await
    .map(|_| ()))
    .map_err(|e| {
        let e = StoreError::from(e);
        if e.is_unique_violation() {
            StoreError::Conflict("email already in use".into())
        } else {
            e
        }
    })?;
    find(db.reborrow(), id)
        .await?
        .ok_or_else(|| StoreError::Conflict("user vanished after insert".into()))
}

pub async fn list(db: &Db, limit: i64, offset: i64) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2");
    Ok(
        on_read!(db, p => sqlx::query_as::<_, User>(&sql).bind(limit).bind(offset).fetch_all(p).await)?,
    )
}

/// Profile and status fields an admin may change.
pub async fn update(db: impl Into<Handle<'_>>, u: &User) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE users SET display_name = $2, first_name = $3, last_name = $4, is_admin = $5, is_active = $6, \
         timezone = $7, updated_at = $8 WHERE id = $1"
    )
    .bind(u.id)
    .bind(&u.display_name)
    .bind(&u.first_name)
    .bind(&u.last_name)
    .bind(u.is_admin)
    .bind(u.is_active)
    .bind(&u.timezone)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// A new password: every session of the user ends.
pub async fn set_password(
    db: impl Into<Handle<'_>>,
    id: Uuid,
    password_hash: &str,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    on_handle!(&mut db, p => sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))?;
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revocation_reason = 'password_changed' WHERE user_id = $1 AND revoked_at IS NULL"
    )
    .bind(id)
    .bind(now)
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Clears the failed-login lock (`z4j changepassword`: a locked-out
/// account gets back in).
pub async fn unlock(db: impl Into<Handle<'_>>, id: Uuid) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query("UPDATE users SET failed_login_count = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(())
}

pub async fn delete(db: impl Into<Handle<'_>>, id: Uuid) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Membership {
    pub id: Uuid,
    pub user_id: Uuid,
    pub project_id: Uuid,
    pub role: String,
    pub created_at: Ts,
    pub user_email: String,
    pub user_display_name: Option<String>,
}

const MEMBERSHIP_SELECT: &str =
    "SELECT m.id, m.user_id, m.project_id, m.role, m.created_at, u.email AS user_email, \
     u.display_name AS user_display_name FROM memberships m JOIN users u ON u.id = m.user_id";

pub async fn memberships(db: &Db, project_id: Uuid) -> Result<Vec<Membership>, StoreError> {
    let sql = format!("{MEMBERSHIP_SELECT} WHERE m.project_id = $1 ORDER BY m.created_at, m.id");
    Ok(
        on_read!(db, p => sqlx::query_as::<_, Membership>(&sql).bind(project_id).fetch_all(p).await)?,
    )
}

pub async fn membership(
    db: &Db,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Membership>, StoreError> {
    let sql = format!("{MEMBERSHIP_SELECT} WHERE m.project_id = $1 AND m.id = $2");
    Ok(
        on_read!(db, p => sqlx::query_as::<_, Membership>(&sql).bind(project_id).bind(id).fetch_optional(p).await)?,
    )
}

pub async fn add_membership(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> Result<Uuid, StoreError> {
    let mut db: Handle<'_> = db.into();
    let id = Uuid::new_v4();
    let now = Ts::now();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO memberships (id, user_id, project_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)"
    )
    .bind(id)
    .bind(user_id)
    .bind(project_id)
    .bind(role)
    .bind(now)
    .execute(p)
    .await
    .map(|_| ()))
    .map_err(|e| {
        let e = StoreError::from(e);
        if e.is_unique_violation() {
            StoreError::Conflict("the user is already a member of this project".into())
        } else {
            e
        }
    })?;
    Ok(id)
}

pub async fn set_membership_role(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
    role: &str,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("UPDATE memberships SET role = $3, updated_at = $4 WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .bind(role)
        .bind(Ts::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn remove_membership(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("DELETE FROM memberships WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// The user's memberships in active projects: (project id, slug, role).
pub async fn memberships_of(
    db: &Db,
    user: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, String, String)>, StoreError> {
    Ok(
        on_read!(db, p => sqlx::query_as::<_, (Uuid, String, String)>(
        "SELECT p.id, p.slug, m.role FROM memberships m JOIN projects p ON p.id = m.project_id \
         WHERE m.user_id = $1 AND p.is_active ORDER BY p.created_at, p.id LIMIT $2"
    )
    .bind(user)
    .bind(limit)
    .fetch_all(p)
    .await)?,
    )
}

/// The profile columns only (a user's own edit must not write back the
/// admin-managed status it was loaded with).
pub async fn update_profile(db: impl Into<Handle<'_>>, u: &User) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE users SET display_name = $2, first_name = $3, last_name = $4, timezone = $5, \
         updated_at = $6 WHERE id = $1"
    )
    .bind(u.id)
    .bind(&u.display_name)
    .bind(&u.first_name)
    .bind(&u.last_name)
    .bind(&u.timezone)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}
