//! What `z4j backup` and `z4j restore` ask of the database itself: an
//! online copy (SQLite `VACUUM INTO`), an integrity check, the file lock
//! that keeps a restore away from a serving brain, and the PostgreSQL
//! databases a restore is staged in and swapped with.

use super::{Db, StoreError};
use std::path::Path;

/// A consistent copy of a live SQLite database, written while the brain
/// keeps serving (one read transaction). PostgreSQL: `Unsupported`.
pub async fn vacuum_into(db: &Db, dest: &Path) -> Result<(), StoreError> {
    match db {
        // Not on the query-only readers, which refuse VACUUM INTO. It holds
        // only a read transaction on the file: other processes' writes go on.
        Db::Sqlite(s) => {
            sqlx::query("VACUUM INTO $1")
                .bind(dest.display().to_string())
                .execute(s.writer()?)
                .await?;
            Ok(())
        }
        Db::Postgres(_) => Err(StoreError::Unsupported("VACUUM INTO on PostgreSQL")),
    }
}

/// SQLite's `PRAGMA integrity_check`: empty when the file is sound, the
/// problems otherwise. PostgreSQL has no equivalent: always empty.
pub async fn integrity_problems(db: &Db) -> Result<Vec<String>, StoreError> {
    match db {
        Db::Sqlite(s) => {
            let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_all(&s.read)
                .await?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        }
        Db::Postgres(_) => Ok(Vec::new()),
    }
}

/// A lock on an SQLite database file, separate from SQLite's own (`flock`,
/// which SQLite does not use): every serving brain holds it shared, and
/// `z4j restore` takes it exclusively, so a database is never replaced
/// under a running brain.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

fn flock(path: &Path, how: libc::c_int) -> std::io::Result<Option<FileLock>> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().read(true).open(path)?;
    // SAFETY: a valid open descriptor; flock has no other preconditions.
    if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
        return Ok(Some(FileLock(f)));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(e)
}

/// The serving brain's shared lock (held until dropped). `None` only while
/// a restore holds the file.
pub fn lock_shared(path: &Path) -> std::io::Result<Option<FileLock>> {
    flock(path, libc::LOCK_SH)
}

/// The restore's exclusive lock; `None` while any brain serves the file.
pub fn lock_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
    flock(path, libc::LOCK_EX)
}

/// PostgreSQL databases by name, through a maintenance connection (the
/// `postgres` database of the same server): a restore is staged in a
/// database of its own and swapped in by renaming, so a failed restore
/// leaves the live database untouched.
pub mod pg {
    use crate::store::StoreError;
    use sqlx::Connection;

    /// `url` pointed at `database` instead.
    pub fn url_for(url: &str, database: &str) -> Option<String> {
        let mut u = url::Url::parse(url).ok()?;
        u.set_path(&format!("/{database}"));
        Some(u.to_string())
    }

    /// The database `url` names.
    pub fn database_of(url: &str) -> Option<String> {
        let u = url::Url::parse(url).ok()?;
        let name = u.path().trim_start_matches('/');
        (!name.is_empty()).then(|| name.to_owned())
    }

    fn ident(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    async fn maintenance(url: &str) -> Result<sqlx::PgConnection, StoreError> {
        let admin = url_for(url, "postgres")
            .ok_or(StoreError::Unsupported("an unparsable PostgreSQL URL"))?;
        Ok(sqlx::PgConnection::connect(&admin).await?)
    }

    pub async fn create(url: &str, name: &str) -> Result<(), StoreError> {
        let mut c = maintenance(url).await?;
        sqlx::query(&format!("CREATE DATABASE {}", ident(name)))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    pub async fn drop(url: &str, name: &str) -> Result<(), StoreError> {
        let mut c = maintenance(url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {}", ident(name)))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    /// Sessions connected to `name` (a brain still running).
    pub async fn sessions(url: &str, name: &str) -> Result<i64, StoreError> {
        let mut c = maintenance(url).await?;
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .fetch_one(&mut c)
                .await?,
        )
    }

    /// Renames `live` to `aside`, then `staged` to `live`; puts `live`
    /// back if the second rename fails.
    pub async fn swap(url: &str, live: &str, staged: &str, aside: &str) -> Result<(), StoreError> {
        let mut c = maintenance(url).await?;
        let rename = |from: &str, to: &str| {
            format!("ALTER DATABASE {} RENAME TO {}", ident(from), ident(to))
        };
        sqlx::query(&rename(live, aside)).execute(&mut c).await?;
        if let Err(e) = sqlx::query(&rename(staged, live)).execute(&mut c).await {
            let _ = sqlx::query(&rename(aside, live)).execute(&mut c).await;
            return Err(e.into());
        }
        Ok(())
    }
}
