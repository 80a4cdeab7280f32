//! First boot: the one-time setup token, the per-address attempt budget,
//! and provisioning of the first admin with its `default` project.

use super::users::User;
use super::{Db, StoreError, Ts};
use crate::{on_db, on_read};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetupToken {
    pub id: Uuid,
    pub token_hash: String,
    pub expires_at: Ts,
}

/// Deletes every setup token and stores the new one (hash only).
pub async fn replace_token(db: &Db, token_hash: &str, expires_at: Ts) -> Result<(), StoreError> {
    on_db!(db, p => async {
        let mut tx = p.begin().await?;
        sqlx::query("DELETE FROM first_boot_tokens").execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO first_boot_tokens (id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(Uuid::new_v4())
        .bind(token_hash)
        .bind(expires_at)
        .bind(Ts::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }.await)?;
    Ok(())
}

pub async fn delete_tokens(db: &Db) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query("DELETE FROM first_boot_tokens").execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The newest token row, expired or not.
pub async fn current_token(db: &Db) -> Result<Option<SetupToken>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, SetupToken>(
        "SELECT id, token_hash, expires_at FROM first_boot_tokens ORDER BY created_at DESC LIMIT 1"
    )
    .fetch_optional(p)
    .await)?)
}

pub async fn record_failed_attempt(db: &Db, ip: &str, reason: &str) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "INSERT INTO setup_attempts (id, ip, reason, attempted_at) VALUES ($1, $2, $3, $4)"
    )
    .bind(Uuid::new_v4())
    .bind(ip)
    .bind(reason)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Failed attempts from `ip` since `since`, and the oldest of them (for
/// `Retry-After`).
pub async fn failed_attempts_since(
    db: &Db,
    ip: &str,
    since: Ts,
) -> Result<(i64, Option<Ts>), StoreError> {
    let row: (i64, Option<Ts>) = on_read!(db, p => sqlx::query_as(
        "SELECT count(*), min(attempted_at) FROM setup_attempts WHERE ip = $1 AND attempted_at >= $2"
    )
    .bind(ip)
    .bind(since)
    .fetch_one(p)
    .await)?;
    Ok(row)
}

pub struct NewAdmin<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: Option<&'a str>,
}

/// Creates the first admin, project `default` and the admin membership, and
/// deletes the setup tokens, in one transaction. Fails with `Conflict` when a
/// user already exists (checked after taking the write lock).
// Long on purpose: one transaction read top to bottom (lock, emptiness
// check, user, default project, membership) is clearer than the same
// statements spread over helpers that all take the transaction.
pub async fn provision_first_admin(
    db: &Db,
    new: &NewAdmin<'_>,
) -> Result<(User, Uuid), StoreError> {
    let now = Ts::now();
    let user = User {
        id: Uuid::new_v4(),
        email: new.email.to_owned(),
        password_hash: new.password_hash.to_owned(),
        display_name: new.display_name.map(str::to_owned),
        first_name: None,
        last_name: None,
        is_admin: true,
        is_active: true,
        timezone: "UTC".to_owned(),
        password_changed_at: Some(now),
        created_at: now,
        failed_login_count: 0,
        locked_until: None,
        mfa_enrolled_at: None,
        mfa_enforcement_started_at: None,
    };
    let project_id = on_db!(db, p => async {
        let mut tx = p.begin().await?;
        // Write first: on SQLite this takes the writer lock before the
        // emptiness check, so two concurrent setups cannot both pass it.
        sqlx::query("DELETE FROM first_boot_tokens").execute(&mut *tx).await?;
        if matches!(db, Db::Postgres(_)) {
            sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *tx).await?;
        if existing > 0 {
            return Ok::<Option<Uuid>, sqlx::Error>(None);
        }
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, display_name, is_admin, is_active, timezone, password_changed_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.display_name)
        .bind(true)
        .bind(true)
        .bind("UTC")
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let project: Option<Uuid> = sqlx::query_scalar("SELECT id FROM projects WHERE slug = 'default'")
            .fetch_optional(&mut *tx)
            .await?;
        let project_id = match project {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4();
                sqlx::query(
                    "INSERT INTO projects (id, slug, name, created_at, updated_at) VALUES ($1, 'default', 'Default', $2, $2)",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        sqlx::query(
            "INSERT INTO memberships (id, user_id, project_id, role, created_at, updated_at) VALUES ($1, $2, $3, 'admin', $4, $4)",
        )
        .bind(Uuid::new_v4())
        .bind(user.id)
        .bind(project_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(project_id))
    }.await)?;
    match project_id {
        Some(pid) => Ok((user, pid)),
        None => Err(StoreError::Conflict(
            "brain has already been initialised".into(),
        )),
    }
}
