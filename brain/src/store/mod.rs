//! Storage: one `Db` handle over SQLite (embedded default) or PostgreSQL
//! (scale-out). Repositories hide the dialect; SQL is shared where the two
//! agree (`$n` placeholders work on both) and split where they do not.

pub mod agents;
pub mod api_keys;
pub mod commands;
mod connect;
pub mod mfa;
pub mod notifications;
pub mod observed;
pub mod projects;
pub mod reads;
pub mod reconcile;
pub mod retention;
pub mod sessions;
pub mod setup;
pub mod ts;
pub mod users;

pub use connect::{connect, migrate, schema_status, SchemaStatus};
pub use ts::Ts;

use sqlx::{PgPool, SqlitePool};

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// True for a unique-constraint violation (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// A protocol JSON value as the text of a JSON column (canonical form);
/// `null` is "absent". NUL characters become U+FFFD: PostgreSQL's `jsonb`
/// refuses `\u0000`, and one such string must not cost the whole row.
pub fn json_column(v: &z4j_protocol::Value) -> Option<Box<serde_json::value::RawValue>> {
    if v.is_null() {
        return None;
    }
    let bytes = z4j_protocol::canonical::to_canonical(v).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let text = if text.contains("\\u0000") {
        text.replace("\\u0000", "\\ufffd")
    } else {
        text
    };
    serde_json::value::RawValue::from_string(text).ok()
}

/// Runs the same expression against whichever pool (or transaction) the
/// handle holds; the expression is compiled once per dialect.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

impl Db {
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgresql",
        }
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// The server's version string.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        let v: String = match self {
            Db::Sqlite(p) => {
                sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(p)
                    .await?
            }
            Db::Postgres(p) => {
                sqlx::query_scalar("SHOW server_version")
                    .fetch_one(p)
                    .await?
            }
        };
        Ok(v)
    }

    pub async fn close(&self) {
        on_db!(self, p => p.close().await)
    }
}
