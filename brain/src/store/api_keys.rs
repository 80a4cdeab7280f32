//! API keys: Bearer credentials of a user, limited to scopes and optionally
//! one project. Only a keyed hash of the token is stored.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_db, on_handle, on_read};
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: String,
    pub prefix: String,
    pub scopes: SqlJson<Json>,
    pub last_used_at: Option<Ts>,
    pub expires_at: Option<Ts>,
    pub revoked_at: Option<Ts>,
    pub created_at: Ts,
}

impl ApiKey {
    pub fn scope_list(&self) -> Vec<String> {
        self.scopes
            .0
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    }
}

const COLUMNS: &str =
    "id, user_id, project_id, name, prefix, scopes, last_used_at, expires_at, revoked_at, created_at";

pub struct NewKey<'a> {
    pub user_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub prefix: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<Ts>,
}

pub async fn create(db: impl Into<Handle<'_>>, k: &NewKey<'_>) -> Result<ApiKey, StoreError> {
    let mut db: Handle<'_> = db.into();
    let id = Uuid::new_v4();
    let scopes = serde_json::json!(k.scopes);
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO api_keys (id, user_id, project_id, name, token_hash, prefix, scopes, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(id)
    .bind(k.user_id)
    .bind(k.project_id)
    .bind(k.name)
    .bind(k.token_hash)
    .bind(k.prefix)
    .bind(SqlJson(&scopes))
    .bind(k.expires_at)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))?;
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    Ok(on_handle!(&mut db, p => sqlx::query_as::<_, ApiKey>(&sql).bind(id).fetch_one(p).await)?)
}

pub async fn find(db: impl Into<Handle<'_>>, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, ApiKey>(&sql).bind(id).fetch_optional(p).await)?,
    )
}

pub async fn find_by_hash(db: &Db, token_hash: &str) -> Result<Option<ApiKey>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE token_hash = $1");
    Ok(
        on_read!(db, p => sqlx::query_as::<_, ApiKey>(&sql).bind(token_hash).fetch_optional(p).await)?,
    )
}

pub async fn list_for_user(db: &Db, user: Uuid) -> Result<Vec<ApiKey>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, ApiKey>(&sql).bind(user).fetch_all(p).await)?)
}

/// Revokes one of the user's keys; false when it is not theirs or unknown.
pub async fn revoke(db: impl Into<Handle<'_>>, user: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE user_id = $1 AND id = $2"
    )
    .bind(user)
    .bind(id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn touch(db: &Db, id: Uuid) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(Ts::now())
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(())
}
