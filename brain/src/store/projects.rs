//! Projects.

use super::{Db, StoreError, Ts};
use crate::on_db;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Project {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub is_active: bool,
    pub created_at: Ts,
}

pub async fn find_by_slug(db: &Db, slug: &str) -> Result<Option<Project>, StoreError> {
    Ok(on_db!(db, p => sqlx::query_as::<_, Project>(
        "SELECT id, slug, name, is_active, created_at FROM projects WHERE slug = $1"
    )
    .bind(slug)
    .fetch_optional(p)
    .await)?)
}

/// The user's role in the project, if a member.
pub async fn role_of(
    db: &Db,
    user_id: Uuid,
    project_id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(on_db!(db, p => sqlx::query_scalar::<_, String>(
        "SELECT role FROM memberships WHERE user_id = $1 AND project_id = $2"
    )
    .bind(user_id)
    .bind(project_id)
    .fetch_optional(p)
    .await)?)
}

/// Archives or restores a project.
pub async fn set_active(db: &Db, project_id: Uuid, active: bool) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query("UPDATE projects SET is_active = $2, updated_at = $3 WHERE id = $1")
        .bind(project_id)
        .bind(active)
        .bind(Ts::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}
