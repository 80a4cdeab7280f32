//! Grey-box access to a brain's own database (the z4j-rs schema), for cases
//! that must seed, age, read or tamper with rows directly. Statements are
//! built by the cases from values they control.

use crate::runner::Ctx;
use sqlx::Connection;
use std::path::Path;

pub enum Conn {
    Pg(sqlx::PgConnection),
    Lite(sqlx::SqliteConnection),
}

/// The brain's database: PostgreSQL `pg` when given, else the SQLite file
/// under the brain's `home` (its HOME directory).
pub async fn connect(ctx: &Ctx, home: &Path, pg: Option<&str>) -> Result<Conn, String> {
    match pg {
        Some(name) => {
            let url = ctx.pg_plain_url(name).ok_or("no PostgreSQL URL")?;
            Ok(Conn::Pg(
                sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        }
        None => {
            let url = format!("sqlite://{}", home.join(".z4j").join("z4j.db").display());
            Ok(Conn::Lite(
                sqlx::SqliteConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        }
    }
}

impl Conn {
    pub async fn exec(&mut self, sql: &str) -> Result<(), String> {
        let r = match self {
            Conn::Pg(c) => sqlx::query(sql).execute(c).await.map(|_| ()),
            Conn::Lite(c) => sqlx::query(sql).execute(c).await.map(|_| ()),
        };
        r.map_err(|e| format!("{sql}: {e}"))
    }

    pub async fn i64(&mut self, sql: &str) -> Result<i64, String> {
        let r = match self {
            Conn::Pg(c) => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await,
            Conn::Lite(c) => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await,
        };
        r.map_err(|e| format!("{sql}: {e}"))
    }

    pub async fn text(&mut self, sql: &str) -> Result<String, String> {
        let r = match self {
            Conn::Pg(c) => sqlx::query_scalar::<_, String>(sql).fetch_one(c).await,
            Conn::Lite(c) => sqlx::query_scalar::<_, String>(sql).fetch_one(c).await,
        };
        r.map_err(|e| format!("{sql}: {e}"))
    }
}
