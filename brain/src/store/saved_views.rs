//! Saved views: a user's named task-list filters in one project (dashboard
//! spec 3.6). Only the owner's rows are ever read or written; names are
//! unique per owner and project case-insensitively (`name_key`, enforced
//! by a unique constraint), at most [`MAX_PER_PROJECT`] per owner.

use super::{Db, Handle, StoreError, Ts, Tx};
use crate::{on_db, on_handle, on_read};
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

pub const MAX_PER_PROJECT: i64 = 100;
const PAGE: &str = "tasks";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SavedView {
    pub id: Uuid,
    pub name: String,
    pub filters: SqlJson<Json>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("you already have a view named {0:?} in this project")]
    Duplicate(String),
    #[error("this project already has {0} personal task views")]
    Full(i64),
    #[error("saved view not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ViewError {
    fn from(e: sqlx::Error) -> Self {
        ViewError::Store(e.into())
    }
}

fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The unique constraint is the authority on duplicates (two writers may
/// both have found the name free).
fn duplicate(e: sqlx::Error, name: &str) -> ViewError {
    let e = StoreError::from(e);
    if e.is_unique_violation() {
        ViewError::Duplicate(name.to_owned())
    } else {
        ViewError::Store(e)
    }
}

pub async fn list(db: &Db, user: Uuid, project: Uuid) -> Result<Vec<SavedView>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, SavedView>(
        "SELECT id, name, filters, created_at, updated_at FROM saved_views \
         WHERE user_id = $1 AND project_id = $2 AND page = $3 ORDER BY name, id"
    )
    .bind(user)
    .bind(project)
    .bind(PAGE)
    .fetch_all(p)
    .await)?)
}

/// One owner's writes in a project are serialised: on PostgreSQL by a lock
/// on the owner's row, on SQLite by its single writer.
async fn lock_owner(tx: &mut Tx, user: Uuid) -> Result<(), StoreError> {
    if let Tx::Postgres(t) = tx {
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(user)
            .execute(&mut **t)
            .await?;
    }
    Ok(())
}

pub async fn create(
    db: &Db,
    user: Uuid,
    project: Uuid,
    name: &str,
    filters: &Json,
    cap: i64,
) -> Result<SavedView, ViewError> {
    let mut tx = db.begin().await?;
    lock_owner(&mut tx, user).await?;
    let now = Ts::now();
    let view = SavedView {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        filters: SqlJson(filters.clone()),
        created_at: now,
        updated_at: now,
    };
    // Insert only below the cap, in the statement that counts.
    let sql = "INSERT INTO saved_views \
               (id, user_id, project_id, page, name, name_key, filters, created_at, updated_at) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8 \
               WHERE (SELECT count(*) FROM saved_views \
                      WHERE user_id = $2 AND project_id = $3 AND page = $4) < $9";
    let mut h = Handle::Tx(&mut tx);
    let inserted = on_handle!(&mut h, p => sqlx::query(sql)
        .bind(view.id)
        .bind(user)
        .bind(project)
        .bind(PAGE)
        .bind(&view.name)
        .bind(name_key(&view.name))
        .bind(&view.filters)
        .bind(view.created_at)
        .bind(cap)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .map_err(|e| duplicate(e, name))?;
    if inserted == 0 {
        return Err(ViewError::Full(cap));
    }
    tx.commit().await?;
    Ok(view)
}

/// Replaces the name and filters of the owner's view.
pub async fn replace(
    db: &Db,
    user: Uuid,
    project: Uuid,
    id: Uuid,
    name: &str,
    filters: &Json,
) -> Result<SavedView, ViewError> {
    let now = Ts::now();
    let row = on_db!(db, p => sqlx::query_as::<_, SavedView>(
        "UPDATE saved_views SET name = $1, name_key = $2, filters = $3, updated_at = $4 \
         WHERE id = $5 AND user_id = $6 AND project_id = $7 AND page = $8 \
         RETURNING id, name, filters, created_at, updated_at"
    )
    .bind(name)
    .bind(name_key(name))
    .bind(SqlJson(filters))
    .bind(now)
    .bind(id)
    .bind(user)
    .bind(project)
    .bind(PAGE)
    .fetch_optional(p)
    .await)
    .map_err(|e| duplicate(e, name))?;
    row.ok_or(ViewError::NotFound)
}

pub async fn delete(db: &Db, user: Uuid, project: Uuid, id: Uuid) -> Result<(), ViewError> {
    let n = on_db!(db, p => sqlx::query(
        "DELETE FROM saved_views WHERE id = $1 AND user_id = $2 AND project_id = $3 AND page = $4"
    )
    .bind(id)
    .bind(user)
    .bind(project)
    .bind(PAGE)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    if n == 0 {
        Err(ViewError::NotFound)
    } else {
        Ok(())
    }
}
