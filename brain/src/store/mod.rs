//! Storage: one `Db` handle over SQLite (embedded default) or PostgreSQL
//! (scale-out). Repositories hide the dialect; SQL is shared where the two
//! agree (`$n` placeholders work on both) and split where they do not.

pub mod agents;
pub mod aggregates;
pub mod api_keys;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod commands;
mod connect;
pub mod ingest;
pub mod invitations;
pub mod leader;
pub mod mfa;
pub mod notifications;
pub mod observed;
pub mod password_resets;
pub mod projects;
pub mod reads;
pub mod reconcile;
pub mod retention;
pub mod saved_views;
pub mod schedules;
pub mod sessions;
pub mod setup;
pub mod ts;
pub mod users;

/// `s` with the `LIKE` metacharacters escaped for `ESCAPE '\'`, so it
/// matches itself only.
pub(crate) fn like_literal(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p
}

/// The WAL checkpoints the brain runs (SQLite only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Copies what the WAL holds into the database file without waiting
    /// for, or blocking, the writer or readers; on the checkpoint
    /// connection (decision S7).
    Passive,
    /// Copies everything and empties the WAL file. It shuts writers out
    /// while it runs, so it takes its turn in the writer's queue rather
    /// than racing them.
    Truncate,
}

/// `PRAGMA wal_checkpoint(<mode>)` on SQLite: `(busy, log pages,
/// checkpointed pages)`; `None` on PostgreSQL, which has no such thing.
pub async fn wal_checkpoint(
    db: &Db,
    mode: Checkpoint,
) -> Result<Option<(i64, i64, i64)>, StoreError> {
    let Db::Sqlite(pools) = db else {
        return Ok(None);
    };
    let (sql, pool) = match mode {
        Checkpoint::Passive => ("PRAGMA wal_checkpoint(PASSIVE)", &pools.checkpoint),
        Checkpoint::Truncate => ("PRAGMA wal_checkpoint(TRUNCATE)", pools.writer()?),
    };
    Ok(Some(
        sqlx::query_as::<_, (i64, i64, i64)>(sql)
            .fetch_one(pool)
            .await?,
    ))
}

pub use connect::{
    connect, migrate, restrict_file_mode, schema_status, SchemaStatus, WRITER_AUTOCHECKPOINT_PAGES,
    WRITER_CACHE_KIB,
};
pub use ts::Ts;

use sqlx::{PgPool, SqlitePool};

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

/// SQLite's two pools. Every write goes through `write`, one connection:
/// writers queue first come, first served on the pool's fair semaphore.
/// Racing in SQLite's busy handler instead, an operator's one-row write
/// lost to the ingest writer's back-to-back commits for most of a second.
/// `read` is query-only (a write sent there fails at once) and reads beside
/// the writer (WAL).
#[derive(Debug, Clone)]
pub struct SqlitePools {
    /// Only through [`SqlitePools::writer`], which keeps the holder check.
    write: SqlitePool,
    pub read: SqlitePool,
    /// One query-only connection for the passive WAL checkpoints, so that
    /// they run beside the writer instead of inside its commits.
    checkpoint: SqlitePool,
    /// Who holds the write connection in a transaction: the same caller
    /// asking for the writer again would wait for itself.
    holder: std::sync::Arc<std::sync::Mutex<Option<Caller>>>,
}

/// A spawned task, or the thread a `block_on` future runs on (a runtime's
/// main future is not a task, and it stays on its thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Caller {
    fn current() -> Caller {
        match tokio::task::try_id() {
            Some(id) => Caller::Task(id),
            None => Caller::Thread(std::thread::current().id()),
        }
    }
}

impl SqlitePools {
    pub fn new(write: SqlitePool, read: SqlitePool, checkpoint: SqlitePool) -> SqlitePools {
        SqlitePools {
            write,
            read,
            checkpoint,
            holder: Default::default(),
        }
    }

    /// The write pool, unless the calling task holds its connection in an
    /// open transaction: refused at once (a bug: the statement belongs in
    /// that transaction, or on the read pool) instead of waiting for itself
    /// until the pool's timeout.
    pub fn writer(&self) -> Result<&SqlitePool, StoreError> {
        if *self.holder.lock().unwrap_or_else(|p| p.into_inner()) == Some(Caller::current()) {
            tracing::error!(
                "a task asked for the SQLite writer while its own transaction holds it"
            );
            return Err(StoreError::WriterHeld);
        }
        Ok(&self.write)
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        let t = self.writer()?.begin().await?;
        let me = Caller::current();
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some(me);
        Ok(Tx::Sqlite(
            t,
            WriterClaim {
                holder: self.holder.clone(),
                me,
            },
        ))
    }
}

/// A transaction's claim on the writer, given up when it ends (commit,
/// rollback or drop).
pub struct WriterClaim {
    holder: std::sync::Arc<std::sync::Mutex<Option<Caller>>>,
    me: Caller,
}

impl Drop for WriterClaim {
    fn drop(&mut self) {
        // The connection goes back to the pool before this runs: the next
        // transaction's caller may already have claimed it.
        let mut holder = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        if *holder == Some(self.me) {
            *holder = None;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    /// An operation this database does not have.
    #[error("not available on this database: {0}")]
    Unsupported(&'static str),
    /// The task already holds SQLite's write connection in a transaction.
    #[error("the SQLite write connection is held by this task's own transaction")]
    WriterHeld,
}

impl StoreError {
    /// Lock, connection and resource errors: worth retrying. Constraint and
    /// data errors are not (storage spec 6.3).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(d)) => transient_code(d.code().as_deref()),
            StoreError::Sqlx(_) => true,
            StoreError::Migrate(_)
            | StoreError::Conflict(_)
            | StoreError::Unsupported(_)
            | StoreError::WriterHeld => false,
        }
    }

    /// The database cannot be reached or is out of resources right now (a
    /// restart, a full disk): callers answer 503, not 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sqlx(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Sqlx(sqlx::Error::Database(d)) => transient_code(d.code().as_deref()),
            _ => false,
        }
    }

    /// True for a unique-constraint violation (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// A database error code that is worth retrying: PostgreSQL classes 08
/// (connection), 40 (rollback/serialization), 53 (resources), 55, 57, 58
/// and a few 25xxx; SQLite primary codes 5 (BUSY), 6 (LOCKED), 7 (NOMEM),
/// 10 (IOERR) and 13 (FULL: a full disk frees up; until then nothing is
/// acknowledged) with their extended codes.
fn transient_code(code: Option<&str>) -> bool {
    let Some(code) = code else {
        return false;
    };
    let pg = code.len() == 5
        && (["08", "40", "53", "55", "57", "58"].contains(&&code[..2])
            || ["25006", "25P03", "25P04"].contains(&code));
    let sqlite = code.len() <= 4
        && code
            .parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 10 | 13));
    pg || sqlite
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
        nul_escapes_replaced(&text)
    } else {
        text
    };
    serde_json::value::RawValue::from_string(text).ok()
}

/// JSON text with each `\u0000` escape turned into `\ufffd`; an escaped
/// backslash followed by `u0000` (the six characters, not a NUL) is kept.
fn nul_escapes_replaced(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let escape = &rest[i..];
        if let Some(after) = escape.strip_prefix("\\u0000") {
            out.push_str("\\ufffd");
            rest = after;
        } else {
            let width = 1 + escape[1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&escape[..width]);
            rest = &escape[width..];
        }
    }
    out.push_str(rest);
    out
}

/// Text for a text column: NUL characters become U+FFFD (PostgreSQL's
/// `text` refuses them; an agent's event must not be lost for one).
pub fn text_column(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_owned()
    }
}

/// A closed vocabulary stored as text (a CHECK-constrained column): the
/// enum, its stored names, parsing, decoding from the column
/// (`#[sqlx(try_from = "String")]`) and serialising as the name.
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<$name, String> {
                $name::parse(&s)
                    .ok_or_else(|| format!("{:?} is not a {}", s, stringify!($name)))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

/// Runs the same expression against whichever pool the handle holds; the
/// expression is compiled once per dialect. On SQLite that is the write
/// connection's queue, and the caller's function returns
/// `StoreError::WriterHeld` when its own transaction holds it.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(s) => {
                let $pool = s.writer()?;
                $body
            }
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// `on_db!` for a statement that only reads: on SQLite it runs on the
/// query-only pool, beside the writer.
#[macro_export]
macro_rules! on_read {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(s) => {
                let $pool = &s.read;
                $body
            }
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// A transaction on either dialect; dropping it uncommitted rolls back.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>, WriterClaim),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t, _held) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// Where a repository function runs: on the pool (one statement, its own
/// transaction) or inside a caller's transaction, so an action and its
/// audit row commit together. `&Db` and `&mut Tx` both convert into it.
pub enum Handle<'a> {
    Pool(&'a Db),
    Tx(&'a mut Tx),
}

impl Handle<'_> {
    /// A shorter-lived handle to the same place, for calling another
    /// repository function from inside one.
    pub fn reborrow(&mut self) -> Handle<'_> {
        match self {
            Handle::Pool(db) => Handle::Pool(db),
            Handle::Tx(tx) => Handle::Tx(tx),
        }
    }
}

impl<'a> From<&'a Db> for Handle<'a> {
    fn from(db: &'a Db) -> Self {
        Handle::Pool(db)
    }
}

impl<'a> From<&'a mut Tx> for Handle<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Handle::Tx(tx)
    }
}

/// `on_db!` for a `Handle`: the expression gets a connection as its
/// executor (`&mut` to one; write `&mut *c` to use it more than once),
/// either one taken from the pool or the caller's transaction's. It may
/// use `?` on a `sqlx::Error` (taking a connection can fail).
#[macro_export]
macro_rules! on_handle {
    // The caller's transaction, for both forms below.
    (@tx $tx:expr, $exec:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t, _) => {
                let $exec = &mut **t;
                $body
            }
            $crate::store::Tx::Postgres(t) => {
                let $exec = &mut **t;
                $body
            }
        }
    };
    // A read: from the pool it runs on SQLite's query-only connections.
    ($h:expr, read $exec:ident => $body:expr) => {
        match $h {
            $crate::store::Handle::Pool(db) => $crate::on_read!(db, p => {
                let mut conn = p.acquire().await?;
                let $exec = &mut *conn;
                $body
            }),
            $crate::store::Handle::Tx(tx) => $crate::on_handle!(@tx tx, $exec => $body),
        }
    };
    ($h:expr, $exec:ident => $body:expr) => {
        match $h {
            $crate::store::Handle::Pool(db) => $crate::on_db!(db, p => {
                let mut conn = p.acquire().await?;
                let $exec = &mut *conn;
                $body
            }),
            $crate::store::Handle::Tx(tx) => $crate::on_handle!(@tx tx, $exec => $body),
        }
    };
}

impl Db {
    /// Open connections in the pool and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Db::Sqlite(s) => (
                s.write.size() + s.read.size(),
                s.write.num_idle() + s.read.num_idle(),
            ),
            Db::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    /// Opens a transaction (deferred on SQLite: take a write lock first
    /// when the transaction reads before it writes).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(s) => s.begin().await?,
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgresql",
        }
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_read!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// The server's version string.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        let v: String = match self {
            Db::Sqlite(s) => {
                sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(&s.read)
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
        match self {
            Db::Sqlite(s) => {
                s.read.close().await;
                s.write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_claim_leaves_the_next_holder_alone() {
        let pool = || SqlitePool::connect_lazy("sqlite::memory:").unwrap();
        let pools = SqlitePools::new(pool(), pool(), pool());
        let me = Caller::current();
        let other = tokio::spawn(async { Caller::current() }).await.unwrap();
        assert_ne!(me, other);
        let claim = |who| WriterClaim {
            holder: pools.holder.clone(),
            me: who,
        };
        // Another caller claimed the writer before this claim's drop ran.
        let mine = claim(me);
        *pools.holder.lock().unwrap() = Some(other);
        drop(mine);
        assert_eq!(*pools.holder.lock().unwrap(), Some(other));
        // Its own claim, ended, frees the writer for everyone.
        drop(claim(other));
        assert_eq!(*pools.holder.lock().unwrap(), None);
        assert!(pools.writer().is_ok());
        *pools.holder.lock().unwrap() = Some(me);
        assert!(matches!(pools.writer(), Err(StoreError::WriterHeld)));
    }

    #[test]
    fn lock_and_connection_errors_are_transient() {
        // 53100: PostgreSQL's disk_full; 13: SQLITE_FULL.
        for c in ["40001", "08006", "25P03", "53100", "5", "517", "13"] {
            assert!(transient_code(Some(c)), "{c}");
        }
        for c in ["23505", "19"] {
            assert!(!transient_code(Some(c)), "{c}");
        }
        assert!(!transient_code(None));
        assert!(StoreError::Sqlx(sqlx::Error::PoolTimedOut).is_transient());
    }

    #[test]
    fn nul_characters_become_replacement_characters_and_nothing_else_changes() {
        let v = z4j_protocol::parse(br#"{"a":"x\u0000y","b":"\\u0000","c":"\"\u0000"}"#).unwrap();
        let stored = json_column(&v).unwrap();
        let back: serde_json::Value = serde_json::from_str(stored.get()).unwrap();
        assert_eq!(back["a"], "x\u{fffd}y");
        assert_eq!(back["b"], "\\u0000", "six characters, not a NUL");
        assert_eq!(back["c"], "\"\u{fffd}");
        assert_eq!(text_column("q\0\0"), "q\u{fffd}\u{fffd}");
        assert_eq!(text_column("plain"), "plain");
    }
}
