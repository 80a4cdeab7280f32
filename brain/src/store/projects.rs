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
