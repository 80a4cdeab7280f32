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
}

const COLUMNS: &str = "id, email, password_hash, display_name, first_name, last_name, is_admin, is_active, timezone, password_changed_at, created_at";

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
