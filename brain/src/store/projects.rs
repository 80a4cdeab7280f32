//! Projects.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_handle, on_read};
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Project {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub environment: String,
    pub timezone: String,
    pub is_active: bool,
    /// `default_scheduler_owner`, `allowed_schedulers`.
    pub settings: SqlJson<serde_json::Value>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

const COLUMNS: &str =
    "id, slug, name, description, environment, timezone, is_active, settings, created_at, updated_at";

/// The writable fields of a project.
#[derive(Debug, Clone)]
pub struct Fields {
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub environment: String,
    pub timezone: String,
    pub settings: serde_json::Value,
}

pub async fn find_by_slug(
    db: impl Into<Handle<'_>>,
    slug: &str,
) -> Result<Option<Project>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM projects WHERE slug = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Project>(&sql)
        .bind(slug)
        .fetch_optional(p)
        .await)?,
    )
}

pub async fn find(db: impl Into<Handle<'_>>, id: Uuid) -> Result<Option<Project>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM projects WHERE id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Project>(&sql)
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

fn slug_conflict(e: sqlx::Error) -> StoreError {
    let e = StoreError::from(e);
    if e.is_unique_violation() {
        StoreError::Conflict("project slug already in use".into())
    } else {
        e
    }
}

pub async fn create(db: impl Into<Handle<'_>>, f: &Fields) -> Result<Project, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let id = Uuid::new_v4();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO projects (id, slug, name, description, environment, timezone, settings, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
    )
    .bind(id)
    .bind(&f.slug)
    .bind(&f.name)
    .bind(&f.description)
    .bind(&f.environment)
    .bind(&f.timezone)
    .bind(SqlJson(&f.settings))
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .map_err(slug_conflict)?;
    find_by_slug(db.reborrow(), &f.slug)
        .await?
        .ok_or_else(|| StoreError::Conflict("project vanished after insert".into()))
}

pub async fn update(db: impl Into<Handle<'_>>, id: Uuid, f: &Fields) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE projects SET slug = $2, name = $3, description = $4, environment = $5, timezone = $6, \
         settings = $7, updated_at = $8 WHERE id = $1"
    )
    .bind(id)
    .bind(&f.slug)
    .bind(&f.name)
    .bind(&f.description)
    .bind(&f.environment)
    .bind(&f.timezone)
    .bind(SqlJson(&f.settings))
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .map_err(slug_conflict)?;
    Ok(())
}

/// Active projects, oldest first, at most `limit`; only those the user is a
/// member of unless `all`.
pub async fn list_active(
    db: &Db,
    user_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Project>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM projects WHERE is_active \
         AND ($1 IS NULL OR id IN (SELECT project_id FROM memberships WHERE user_id = $1)) \
         ORDER BY created_at, id LIMIT $2"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Project>(&sql)
        .bind(user_id)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

pub async fn count_active(db: impl Into<Handle<'_>>) -> Result<i64, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(
        on_handle!(&mut db, read p => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM projects WHERE is_active")
        .fetch_one(p)
        .await)?,
    )
}

/// Agents of a project (live connections are kicked on archive).
pub async fn agent_ids(db: &Db, project_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    Ok(
        on_read!(db, p => sqlx::query_scalar::<_, Uuid>("SELECT id FROM agents WHERE project_id = $1")
        .bind(project_id)
        .fetch_all(p)
        .await)?,
    )
}

/// The user's role in the project, if a member.
pub async fn role_of(
    db: impl Into<Handle<'_>>,
    user_id: Uuid,
    project_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let mut db: Handle<'_> = db.into();
    Ok(
        on_handle!(&mut db, read p => sqlx::query_scalar::<_, String>(
        "SELECT role FROM memberships WHERE user_id = $1 AND project_id = $2"
    )
    .bind(user_id)
    .bind(project_id)
    .fetch_optional(p)
    .await)?,
    )
}

/// Archives or restores a project.
pub async fn set_active(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    active: bool,
) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query("UPDATE projects SET is_active = $2, updated_at = $3 WHERE id = $1")
        .bind(project_id)
        .bind(active)
        .bind(Ts::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Every project the user is a member of, with the role.
pub async fn roles_of_user(db: &Db, user_id: Uuid) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, (Uuid, String)>(
        "SELECT project_id, role FROM memberships WHERE user_id = $1"
    )
    .bind(user_id)
    .fetch_all(p)
    .await)?)
}
