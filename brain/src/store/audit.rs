//! The audit log's tables: `audit_log` rows and the singleton
//! `audit_chain_state`. The chain's policy (what is signed, how it is
//! verified and pruned) is `crate::audit`'s; this is only its SQL.

use super::{Db, Handle, StoreError, Ts, Tx};
use crate::{on_handle, on_read};
use serde_json::Value;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

/// The chain state as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateRow {
    pub head_id: Option<i64>,
    pub head_row_hmac: Option<String>,
    pub head_occurred_at: Option<Ts>,
    pub prune_row_hmac: Option<String>,
    pub row_count: i64,
    pub state_mac: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: Ts,
    pub project_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub result: String,
    pub outcome: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: SqlJson<Value>,
    pub prev_row_hmac: Option<String>,
    pub row_hmac: Option<String>,
    pub hmac_key_id: Option<String>,
}

/// A row to append (already truncated and signed).
pub struct NewRow<'a> {
    pub occurred_at: Ts,
    pub project_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub result: &'a str,
    pub outcome: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub metadata: &'a Value,
    pub prev_row_hmac: Option<&'a str>,
    pub row_hmac: &'a str,
    pub hmac_key_id: &'a str,
}

/// The `id`, `prev_row_hmac` and `row_hmac` of a row (pruning checks the
/// links of what it deletes).
pub type Link = (i64, Option<String>, Option<String>);

/// What the table holds now, for a reseal: the newest row's id, HMAC and
/// time, the oldest row's `prev_row_hmac`, and the row count.
pub struct Span {
    pub head: Option<(i64, Option<String>, Ts)>,
    pub first_prev: Option<String>,
    pub rows: i64,
}

const STATE_SQL: &str = "SELECT head_id, head_row_hmac, head_occurred_at, prune_row_hmac, \
     row_count, state_mac FROM audit_chain_state WHERE singleton_id = 'audit-chain'";
const ROW_COLUMNS: &str = "id, occurred_at, project_id, user_id, action, target_type, target_id, \
     result, outcome, source_ip, user_agent, metadata, prev_row_hmac, row_hmac, hmac_key_id";

/// Opens a transaction holding the chain-state row's lock. Touching the row
/// first takes the write lock on both dialects (SQLite's BEGIN is deferred;
/// PostgreSQL locks the row), so audited transactions serialise in one
/// order and SQLite never has to upgrade a read lock later.
pub async fn begin_locked(db: &Db) -> Result<Tx, StoreError> {
    let mut tx = db.begin().await?;
    on_handle!(Handle::Tx(&mut tx), c => sqlx::query(
        "UPDATE audit_chain_state SET row_count = row_count WHERE singleton_id = 'audit-chain'"
    )
    .execute(c)
    .await
    .map(|_| ()))?;
    Ok(tx)
}

/// The chain state, read on the pool or in the caller's transaction (which
/// holds its lock when it came from [`begin_locked`]).
pub async fn state(db: impl Into<Handle<'_>>) -> Result<StateRow, StoreError> {
    Ok(
        on_handle!(db.into(), read c => sqlx::query_as::<_, StateRow>(STATE_SQL).fetch_one(c).await)?,
    )
}

/// Overwrites the chain state (every column: callers pass what they keep).
pub async fn write_state(tx: &mut Tx, st: &StateRow) -> Result<(), StoreError> {
    on_handle!(Handle::Tx(tx), c => sqlx::query(
        "UPDATE audit_chain_state SET head_id = $1, head_row_hmac = $2, head_occurred_at = $3, \
         prune_row_hmac = $4, row_count = $5, state_mac = $6 WHERE singleton_id = 'audit-chain'",
    )
    .bind(st.head_id)
    .bind(&st.head_row_hmac)
    .bind(st.head_occurred_at)
    .bind(&st.prune_row_hmac)
    .bind(st.row_count)
    .bind(&st.state_mac)
    .execute(c)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Inserts a signed row; returns its id.
pub async fn insert(tx: &mut Tx, r: &NewRow<'_>) -> Result<i64, StoreError> {
    Ok(
        on_handle!(Handle::Tx(tx), c => sqlx::query_scalar::<_, i64>(
        "INSERT INTO audit_log (occurred_at, project_id, user_id, action, target_type, target_id, \
         result, outcome, source_ip, user_agent, metadata, prev_row_hmac, row_hmac, hmac_key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
    )
    .bind(r.occurred_at)
    .bind(r.project_id)
    .bind(r.user_id)
    .bind(r.action)
    .bind(r.target_type)
    .bind(r.target_id)
    .bind(r.result)
    .bind(r.outcome)
    .bind(r.source_ip)
    .bind(r.user_agent)
    .bind(SqlJson(r.metadata))
    .bind(r.prev_row_hmac)
    .bind(r.row_hmac)
    .bind(r.hmac_key_id)
    .fetch_one(c)
    .await)?,
    )
}

pub async fn span(tx: &mut Tx) -> Result<Span, StoreError> {
    let mut h = Handle::Tx(tx);
    let head = on_handle!(h.reborrow(), c => sqlx::query_as::<_, (i64, Option<String>, Ts)>(
        "SELECT id, row_hmac, occurred_at FROM audit_log ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(c)
    .await)?;
    let first_prev = on_handle!(h.reborrow(), c => sqlx::query_scalar::<_, Option<String>>(
        "SELECT prev_row_hmac FROM audit_log ORDER BY id LIMIT 1",
    )
    .fetch_optional(c)
    .await)?;
    let rows = on_handle!(h.reborrow(), c => sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM audit_log"
    )
    .fetch_one(c)
    .await)?;
    Ok(Span {
        head,
        first_prev: first_prev.flatten(),
        rows,
    })
}

/// Rows after `after`, oldest first (verification pages).
pub async fn page_after(db: &Db, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2");
    Ok(on_read!(db, p => sqlx::query_as::<_, AuditRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// The oldest `batch` rows older than `cutoff`, oldest first.
pub async fn oldest_before(tx: &mut Tx, cutoff: Ts, batch: i64) -> Result<Vec<Link>, StoreError> {
    Ok(on_handle!(Handle::Tx(tx), c => sqlx::query_as::<_, Link>(
        "SELECT id, prev_row_hmac, row_hmac FROM audit_log WHERE occurred_at < $1 ORDER BY id LIMIT $2",
    )
    .bind(cutoff)
    .bind(batch)
    .fetch_all(c)
    .await)?)
}

/// Deletes rows `first..=last`; returns how many went.
pub async fn delete_range(tx: &mut Tx, first: i64, last: i64) -> Result<u64, StoreError> {
    Ok(on_handle!(Handle::Tx(tx), c => sqlx::query(
        "DELETE FROM audit_log WHERE id >= $1 AND id <= $2"
    )
    .bind(first)
    .bind(last)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Filters of the audit listing and export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub project_id: Uuid,
    pub action_prefix: Option<String>,
    pub outcome: Option<String>,
    pub user_id: Option<Uuid>,
    pub since: Option<Ts>,
}

/// `LIKE` pattern matching `prefix` literally.
fn like_prefix(prefix: &str) -> String {
    format!("{}%", super::like_literal(prefix))
}

const FILTER_SQL: &str = "project_id = $1 AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\') \
     AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR user_id = $4) AND ($5 IS NULL OR occurred_at >= $5)";

/// Newest first; `before` is the last id of the previous page.
pub async fn list(
    db: &Db,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM audit_log WHERE {FILTER_SQL} AND ($6 IS NULL OR id < $6) \
         ORDER BY id DESC LIMIT $7"
    );
    let pattern = f.action_prefix.as_deref().map(like_prefix);
    Ok(on_read!(db, p => sqlx::query_as::<_, AuditRow>(&sql)
        .bind(f.project_id)
        .bind(&pattern)
        .bind(&f.outcome)
        .bind(f.user_id)
        .bind(f.since)
        .bind(before)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

/// The newest rows of one action in a project, optionally about one
/// target, newest first.
pub async fn of_action(
    db: &Db,
    project_id: Uuid,
    action: &str,
    target_id: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM audit_log WHERE project_id = $1 AND action = $2 \
         AND ($3 IS NULL OR target_id = $3) ORDER BY id DESC LIMIT $4"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, AuditRow>(&sql)
        .bind(project_id)
        .bind(action)
        .bind(target_id)
        .bind(limit)
        .fetch_all(p)
        .await)?)
}

pub async fn count(db: &Db, f: &Filter) -> Result<i64, StoreError> {
    let sql = format!("SELECT count(*) FROM audit_log WHERE {FILTER_SQL}");
    let pattern = f.action_prefix.as_deref().map(like_prefix);
    Ok(on_read!(db, p => sqlx::query_scalar::<_, i64>(&sql)
        .bind(f.project_id)
        .bind(&pattern)
        .bind(&f.outcome)
        .bind(f.user_id)
        .bind(f.since)
        .fetch_one(p)
        .await)?)
}

/// Who is reading the cross-project activity feed, and how it is narrowed
/// (dashboard spec 3.5).
#[derive(Debug, Clone)]
pub struct ActivityFilter {
    pub user_id: Uuid,
    /// A global admin: every project's rows and every brain-wide row.
    pub everything: bool,
    /// Only this project's rows (plus the reader's own brain-wide rows).
    pub project_id: Option<Uuid>,
    pub action_prefix: Option<String>,
    /// Rows strictly newer than this `(occurred_at, id)`.
    pub since: Option<(Ts, i64)>,
    /// Rows strictly older than this `(occurred_at, id)`.
    pub before: Option<(Ts, i64)>,
}

/// The feed, newest first by `(occurred_at, id)`. Project rows need an
/// auditor or admin membership (or a global admin); brain-wide rows are
/// the reader's own unless a global admin reads the whole feed.
pub async fn activity(
    db: &Db,
    f: &ActivityFilter,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM audit_log WHERE \
         ((project_id IS NULL AND ($2 OR user_id = $1)) \
          OR (project_id IS NOT NULL AND ($3 IS NULL OR project_id = $3) \
              AND ($4 OR project_id IN (SELECT project_id FROM memberships \
                   WHERE user_id = $1 AND role IN ('auditor', 'admin'))))) \
         AND ($5 IS NULL OR action LIKE $5 ESCAPE '\\') \
         AND ($6 IS NULL OR occurred_at > $6 OR (occurred_at = $6 AND id > $7)) \
         AND ($8 IS NULL OR occurred_at < $8 OR (occurred_at = $8 AND id < $9)) \
         ORDER BY occurred_at DESC, id DESC LIMIT $10"
    );
    let every_null = f.everything && f.project_id.is_none();
    let pattern = f.action_prefix.as_deref().map(like_prefix);
    Ok(on_read!(db, p => sqlx::query_as::<_, AuditRow>(&sql)
        .bind(f.user_id)
        .bind(every_null)
        .bind(f.project_id)
        .bind(f.everything)
        .bind(&pattern)
        .bind(f.since.map(|s| s.0))
        .bind(f.since.map_or(0, |s| s.1))
        .bind(f.before.map(|b| b.0))
        .bind(f.before.map_or(0, |b| b.1))
        .bind(limit)
        .fetch_all(p)
        .await)?)
}
