//! Opening pools with the documented per-connection settings, and the
//! embedded migrations of both dialects.

use super::{Db, SqlitePools, StoreError};
use crate::settings::{DatabaseTarget, Settings};
use crate::{on_db, on_read};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The write connection's own automatic checkpoint, in WAL pages (64 MiB
/// at 4 KiB; 16 times SQLite's default). Under sustained writes the WAL
/// restarts only here (a restart needs it fully copied when a write
/// begins), so this bounds the WAL file; the passive checkpointer has
/// copied nearly all of it by then.
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The write connection's page cache, in KiB (SQLite's default, which the
/// read connections keep, is 2 000). At the default the writer re-read
/// index pages from the OS between groups and large groups spilled dirty
/// pages into the WAL before their commit; 8 MiB lifted the floor by about
/// 11 % from 400 events per group up, for at most 6 MiB of RSS (4 measured;
/// benches/RESULTS.md, "A larger writer cache").
pub const WRITER_CACHE_KIB: u32 = 8_192;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot open the SQLite database {path}: {source}")]
    Sqlite { path: String, source: sqlx::Error },
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Postgres { target: String, source: sqlx::Error },
    #[error("cannot connect to PostgreSQL at {target}: no answer within {seconds} s (Z4J_ASYNCPG_CONNECT_TIMEOUT)")]
    PostgresTimeout { target: String, seconds: f64 },
    #[error("invalid PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
}

/// Opens the pool for `target` with the settings' timeouts and caps.
pub async fn connect(target: &DatabaseTarget, s: &Settings) -> Result<Db, ConnectError> {
    let max_conns = (s.database_pool_size + s.database_max_overflow).max(1) as u32;
    let lifetime = Duration::from_secs_f64(s.database_max_inactive_connection_lifetime_seconds);
    let connect_timeout = Duration::from_secs_f64(s.asyncpg_connect_timeout);
    match target {
        DatabaseTarget::Sqlite { path, .. } => {
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a committed (and so acknowledged) write survives power loss.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // Statement journals of multi-row inserts in memory, not in
                // temp files (14 % of the ingest profile went to them).
                .pragma("temp_store", "memory")
                .busy_timeout(Duration::from_secs(5));
            // One connection first switches a new file to WAL (a persistent
            // setting): the pool opens connections concurrently, and two of
            // them racing to change the journal mode of a fresh file fail
            // with "database is locked".
            let first = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
                .await
                .map_err(|source| ConnectError::Sqlite {
                    path: path.display().to_string(),
                    source,
                })?;
            let _ = sqlx::Connection::close(first).await;
            // No recycling on SQLite: there is no server whose per-connection
            // state needs refreshing, and closing the last connection would
            // checkpoint and delete the WAL behind the checkpoint worker's back.
            let open = |conns: u32, opts: SqliteConnectOptions| async move {
                SqlitePoolOptions::new()
                    .max_connections(conns)
                    .min_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .acquire_timeout(connect_timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|source| ConnectError::Sqlite {
                        path: path.display().to_string(),
                        source,
                    })
            };
            // SQLite has one writer whatever the pool: one write connection
            // (its queue is fair), the rest of the configured size reads.
            // The writer's commits leave the copying of the WAL to the
            // checkpointer's own connection (`workers::wal_checkpoint::
            // passive`); its own automatic checkpoint is a net (decision S7).
            let write = open(
                1,
                opts.clone()
                    .pragma(
                        "wal_autocheckpoint",
                        WRITER_AUTOCHECKPOINT_PAGES.to_string(),
                    )
                    // Negative: a size in KiB, not a page count.
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
            )
            .await?;
            let query_only = opts.pragma("query_only", "ON");
            let reads = max_conns.min(16).saturating_sub(1).max(1);
            let read = open(reads, query_only.clone()).await?;
            // A checkpoint is no write transaction: query-only does not stop it.
            let checkpoint = open(1, query_only).await?;
            restrict_file_mode(path);
            Ok(Db::Sqlite(SqlitePools::new(write, read, checkpoint)))
        }
        DatabaseTarget::Postgres { url } => {
            let opts = PgConnectOptions::from_str(url)
                .map_err(ConnectError::BadUrl)?
                .options([
                    ("statement_timeout", s.db_statement_timeout_ms.to_string()),
                    ("lock_timeout", s.db_lock_timeout_ms.to_string()),
                    (
                        "idle_in_transaction_session_timeout",
                        s.db_idle_in_tx_timeout_ms.to_string(),
                    ),
                ])
                .statement_cache_capacity(s.database_statement_cache_size as usize);
            let target = format!(
                "{}:{}/{}",
                opts.get_host(),
                opts.get_port(),
                opts.get_database().unwrap_or("")
            );
            // One connection first, so a refusal is reported as itself (and
            // at once), not as the pool's timeout.
            match tokio::time::timeout(
                connect_timeout,
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(first)) => {
                    let _ = sqlx::Connection::close(first).await;
                }
                Ok(Err(source)) => return Err(ConnectError::Postgres { target, source }),
                Err(_) => {
                    return Err(ConnectError::PostgresTimeout {
                        target,
                        seconds: s.asyncpg_connect_timeout,
                    })
                }
            }
            let pool = PgPoolOptions::new()
                .max_connections(max_conns)
                .max_lifetime(lifetime)
                .acquire_timeout(connect_timeout)
                .connect_with(opts)
                .await
                .map_err(|source| ConnectError::Postgres { target, source })?;
            Ok(Db::Postgres(pool))
        }
    }
}

#[cfg(unix)]
pub fn restrict_file_mode(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
pub fn restrict_file_mode(_: &std::path::Path) {}

fn migrator(db: &Db) -> &'static Migrator {
    match db {
        Db::Sqlite(_) => &SQLITE_MIGRATIONS,
        Db::Postgres(_) => &POSTGRES_MIGRATIONS,
    }
}

/// Applies every pending migration (PostgreSQL holds an advisory lock).
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
    on_db!(db, p => migrator(db).run(p).await)?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    Current,
    /// No z4j tables at all.
    Empty,
    Behind {
        applied: i64,
        latest: i64,
    },
    /// Migrated by a newer build.
    Ahead {
        applied: i64,
        latest: i64,
    },
}

/// How the database's schema compares with this build's migrations.
pub async fn schema_status(db: &Db) -> Result<SchemaStatus, StoreError> {
    let latest = migrator(db).iter().map(|m| m.version).max().unwrap_or(0);
    let table_exists: bool =
        match db {
            Db::Sqlite(s) => sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='_sqlx_migrations'",
            )
            .fetch_one(&s.read)
            .await?
                > 0,
            Db::Postgres(p) => {
                sqlx::query_scalar::<_, bool>("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(p)
                    .await?
            }
        };
    if !table_exists {
        return Ok(SchemaStatus::Empty);
    }
    let applied: Option<i64> = on_read!(db, p => sqlx::query_scalar(
        "SELECT max(version) FROM _sqlx_migrations WHERE success"
    )
    .fetch_one(p)
    .await)?;
    let applied = applied.unwrap_or(0);
    Ok(match applied.cmp(&latest) {
        std::cmp::Ordering::Equal => SchemaStatus::Current,
        std::cmp::Ordering::Less if applied == 0 => SchemaStatus::Empty,
        std::cmp::Ordering::Less => SchemaStatus::Behind { applied, latest },
        std::cmp::Ordering::Greater => SchemaStatus::Ahead { applied, latest },
    })
}
