//! The audit log: security-relevant actions appended as HMAC-chained rows
//! (`chain`), verified end to end (`z4j audit verify`), pruned oldest-first
//! by the retention sweep without breaking verification.

pub mod chain;

use crate::settings::Settings;
use crate::store::{Db, Handle, StoreError, Ts, Tx};
use crate::{on_db, on_handle};
use chain::{RowFields, State};
use serde_json::Value;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

/// One action to record.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// `success`, `failed`, ...
    pub result: String,
    pub outcome: Option<String>,
    pub project_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: Value,
}

impl Entry {
    pub fn new(action: impl Into<String>, result: &str) -> Entry {
        let result = result.to_owned();
        let outcome = match result.as_str() {
            "success" => "allow",
            "failed" => "failure",
            _ => "error",
        };
        Entry {
            action: action.into(),
            result,
            outcome: Some(outcome.to_owned()),
            metadata: Value::Object(Default::default()),
            ..Default::default()
        }
    }

    pub fn target(mut self, kind: &str, id: impl ToString) -> Entry {
        self.target_type = Some(kind.to_owned());
        self.target_id = Some(id.to_string());
        self
    }

    pub fn by(mut self, user: Option<Uuid>) -> Entry {
        self.user_id = user;
        self
    }

    pub fn in_project(mut self, project: Uuid) -> Entry {
        self.project_id = Some(project);
        self
    }

    /// The client address (after trusted-proxy resolution) and User-Agent.
    pub fn from(mut self, ip: Option<String>, headers: &axum::http::HeaderMap) -> Entry {
        self.source_ip = ip;
        self.user_agent = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self
    }

    pub fn meta(mut self, metadata: Value) -> Entry {
        self.metadata = metadata;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no Z4J_SECRET to sign audit rows with")]
    NoKey,
    #[error(
        "the audit chain state does not verify under any configured secret; run `z4j audit verify`"
    )]
    StateTampered,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Store(e.into())
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct StateRow {
    head_id: Option<i64>,
    head_row_hmac: Option<String>,
    head_occurred_at: Option<Ts>,
    prune_row_hmac: Option<String>,
    row_count: i64,
    state_mac: Option<String>,
}

impl StateRow {
    fn state(&self) -> State {
        State {
            head_id: self.head_id,
            head_row_hmac: self.head_row_hmac.clone(),
            head_occurred_at: self.head_occurred_at.map(|t| chain::timestamp(t.0)),
            prune_row_hmac: self.prune_row_hmac.clone(),
            row_count: self.row_count,
        }
    }

    /// Untouched since the migration, or signed by a key of the ring.
    fn authentic(&self, ring: &[&str]) -> bool {
        let st = self.state();
        match &self.state_mac {
            None => st == State::default(),
            Some(m) => ring.iter().any(|k| chain::state_mac(k, &st) == *m),
        }
    }
}

const STATE_COLUMNS: &str =
    "head_id, head_row_hmac, head_occurred_at, prune_row_hmac, row_count, state_mac";
/// Touching the row first takes the write lock on both dialects (SQLite's
/// BEGIN is deferred; PostgreSQL locks the row), so appends serialise.
const LOCK_STATE: &str =
    "UPDATE audit_chain_state SET row_count = row_count WHERE singleton_id = 'audit-chain'";

/// Opens the transaction an audited action runs in. The chain's state row
/// is locked first: audited transactions then serialise on it in one order
/// (no deadlock with the action's own rows), and SQLite takes its write
/// lock at once instead of failing to upgrade a read later.
pub async fn begin(db: &Db) -> Result<Tx, AuditError> {
    let mut tx = db.begin().await?;
    on_handle!(Handle::Tx(&mut tx), c => sqlx::query(LOCK_STATE).execute(c).await.map(|_| ()))?;
    Ok(tx)
}

/// Appends the action's row inside its transaction and commits both: the
/// action and its row land together or not at all (specs/decisions.md U2).
pub async fn commit(mut tx: Tx, s: &Settings, e: &Entry) -> Result<(), AuditError> {
    append(&mut tx, s, e).await?;
    tx.commit().await?;
    Ok(())
}

/// A row whose action writes nothing else (a served export, a refusal).
pub async fn record(db: &Db, s: &Settings, e: &Entry) -> Result<(), AuditError> {
    commit(begin(db).await?, s, e).await
}

/// Appends one row in the caller's transaction (opened by `begin`); for an
/// action with several rows, the caller commits after the last.
pub async fn append(tx: &mut Tx, s: &Settings, e: &Entry) -> Result<(), AuditError> {
    let ring = s.master_secrets();
    let key = *ring.first().ok_or(AuditError::NoKey)?;
    let key_id = chain::key_id(key);
    let truncate = |v: &str, n: usize| v.chars().take(n).collect::<String>();
    on_handle!(Handle::Tx(tx), c => {
        let sql = format!("SELECT {STATE_COLUMNS} FROM audit_chain_state WHERE singleton_id = 'audit-chain'");
        let st: StateRow = sqlx::query_as(&sql).fetch_one(&mut *c).await?;
        if !st.authentic(&ring) {
            return Err(AuditError::StateTampered);
        }
        // Strictly increasing with the chain, whatever the clock does.
        let mut at = Ts::now();
        if let Some(h) = st.head_occurred_at {
            if at <= h {
                at = Ts(h.0 + chrono::Duration::microseconds(1));
            }
        }
        let row = RowFields {
            action: truncate(&e.action, 80),
            target_type: e.target_type.as_deref().map(|t| truncate(t, 40)),
            target_id: e.target_id.as_deref().map(|t| truncate(t, 200)),
            result: truncate(&e.result, 20),
            outcome: e.outcome.as_deref().map(|o| truncate(o, 40)),
            user_id: e.user_id.map(|u| u.to_string()),
            project_id: e.project_id.map(|u| u.to_string()),
            source_ip: e.source_ip.as_deref().map(|i| truncate(i, 64)),
            user_agent: e.user_agent.as_deref().map(|u| truncate(u, 1024)),
            metadata: e.metadata.clone(),
            occurred_at: chain::timestamp(at.0),
            prev_row_hmac: st.head_row_hmac.clone(),
            hmac_key_id: key_id.clone(),
        };
        let hmac = chain::row_hmac(key, &row);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (occurred_at, project_id, user_id, action, target_type, target_id, \
             result, outcome, source_ip, user_agent, metadata, prev_row_hmac, row_hmac, hmac_key_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(at)
        .bind(e.project_id)
        .bind(e.user_id)
        .bind(&row.action)
        .bind(&row.target_type)
        .bind(&row.target_id)
        .bind(&row.result)
        .bind(&row.outcome)
        .bind(&row.source_ip)
        .bind(&row.user_agent)
        .bind(SqlJson(&row.metadata))
        .bind(&row.prev_row_hmac)
        .bind(&hmac)
        .bind(&key_id)
        .fetch_one(&mut *c)
        .await?;
        let next = State {
            head_id: Some(id),
            head_row_hmac: Some(hmac),
            head_occurred_at: Some(row.occurred_at.clone()),
            prune_row_hmac: st.prune_row_hmac.clone(),
            row_count: st.row_count + 1,
        };
        sqlx::query(
            "UPDATE audit_chain_state SET head_id = $1, head_row_hmac = $2, head_occurred_at = $3, \
             row_count = $4, state_mac = $5 WHERE singleton_id = 'audit-chain'",
        )
        .bind(next.head_id)
        .bind(&next.head_row_hmac)
        .bind(at)
        .bind(next.row_count)
        .bind(chain::state_mac(key, &next))
        .execute(&mut *c)
        .await?;
        Ok::<(), AuditError>(())
    })
}

/// What `reseal` found and signed.
#[derive(Debug, Clone)]
pub struct Resealed {
    pub rows: i64,
    pub head_id: Option<i64>,
    pub previous_count: i64,
}

/// Re-baselines the chain state on the rows the table holds now, signed
/// under `Z4J_SECRET`, and records that as an `audit.resealed` row in the
/// same transaction. For an operator whose state no longer verifies (a
/// secret rotated without keeping the old one in `Z4J_PREVIOUS_SECRETS`,
/// a partial restore): audited actions are refused until then. Rows are
/// not touched, so `z4j audit verify` still reports any row it cannot
/// verify.
pub async fn reseal(db: &Db, s: &Settings) -> Result<Resealed, AuditError> {
    let ring = s.master_secrets();
    let key = *ring.first().ok_or(AuditError::NoKey)?;
    let mut tx = db.begin().await?;
    let resealed = on_handle!(Handle::Tx(&mut tx), c => {
        sqlx::query(LOCK_STATE).execute(&mut *c).await?;
        let sql = format!("SELECT {STATE_COLUMNS} FROM audit_chain_state WHERE singleton_id = 'audit-chain'");
        let old: StateRow = sqlx::query_as(&sql).fetch_one(&mut *c).await?;
        let head: Option<(i64, Option<String>, Ts)> = sqlx::query_as(
            "SELECT id, row_hmac, occurred_at FROM audit_log ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *c)
        .await?;
        let first_prev: Option<Option<String>> = sqlx::query_scalar(
            "SELECT prev_row_hmac FROM audit_log ORDER BY id LIMIT 1",
        )
        .fetch_optional(&mut *c)
        .await?;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&mut *c)
            .await?;
        let next = match &head {
            Some((id, hmac, at)) => State {
                head_id: Some(*id),
                head_row_hmac: hmac.clone(),
                head_occurred_at: Some(chain::timestamp(at.0)),
                prune_row_hmac: first_prev.flatten(),
                row_count: rows,
            },
            // Empty: head and prune point meet where the old state left them.
            None => State {
                prune_row_hmac: old.head_row_hmac.clone(),
                head_row_hmac: old.head_row_hmac.clone(),
                head_id: old.head_id,
                head_occurred_at: old.head_occurred_at.map(|t| chain::timestamp(t.0)),
                row_count: 0,
            },
        };
        sqlx::query(
            "UPDATE audit_chain_state SET head_id = $1, head_row_hmac = $2, head_occurred_at = $3, \
             prune_row_hmac = $4, row_count = $5, state_mac = $6 WHERE singleton_id = 'audit-chain'",
        )
        .bind(next.head_id)
        .bind(&next.head_row_hmac)
        .bind(head.as_ref().map(|h| h.2).or(old.head_occurred_at))
        .bind(&next.prune_row_hmac)
        .bind(next.row_count)
        .bind(chain::state_mac(key, &next))
        .execute(&mut *c)
        .await?;
        Ok::<Resealed, AuditError>(Resealed {
            rows,
            head_id: next.head_id,
            previous_count: old.row_count,
        })
    })?;
    append(
        &mut tx,
        s,
        &Entry::new("audit.resealed", "success").meta(serde_json::json!({
            "rows": resealed.rows,
            "head_id": resealed.head_id,
            "previous_row_count": resealed.previous_count,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(resealed)
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

const ROW_COLUMNS: &str = "id, occurred_at, project_id, user_id, action, target_type, target_id, \
     result, outcome, source_ip, user_agent, metadata, prev_row_hmac, row_hmac, hmac_key_id";

impl AuditRow {
    fn fields(&self) -> RowFields {
        RowFields {
            action: self.action.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            result: self.result.clone(),
            outcome: self.outcome.clone(),
            user_id: self.user_id.map(|u| u.to_string()),
            project_id: self.project_id.map(|u| u.to_string()),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            metadata: self.metadata.0.clone(),
            occurred_at: chain::timestamp(self.occurred_at.0),
            prev_row_hmac: self.prev_row_hmac.clone(),
            hmac_key_id: self.hmac_key_id.clone().unwrap_or_default(),
        }
    }
}

/// The outcome of a verification: rows checked, and the first problem.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: u64,
    pub broken: Option<(Option<i64>, String)>,
}

/// Walks the whole chain from the prune point to the head.
pub async fn verify(db: &Db, s: &Settings) -> Result<Report, StoreError> {
    let ring = s.master_secrets();
    let by_id: Vec<(String, &str)> = ring.iter().map(|k| (chain::key_id(k), *k)).collect();
    let sql =
        format!("SELECT {STATE_COLUMNS} FROM audit_chain_state WHERE singleton_id = 'audit-chain'");
    let st: StateRow = on_db!(db, p => sqlx::query_as(&sql).fetch_one(p).await)?;
    let mut rows = 0u64;
    let broken = |id: Option<i64>, why: String| {
        Ok(Report {
            rows: 0,
            broken: Some((id, why)),
        })
    };
    if !st.authentic(&ring) {
        return broken(
            None,
            "the chain state's MAC does not verify (head, prune point or count altered)".into(),
        );
    }
    let mut previous = st.prune_row_hmac.clone();
    let mut last: Option<(i64, Option<String>)> = None;
    let page_sql =
        format!("SELECT {ROW_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT 1000");
    loop {
        let after = last.as_ref().map_or(0, |l| l.0);
        let page: Vec<AuditRow> =
            on_db!(db, p => sqlx::query_as(&page_sql).bind(after).fetch_all(p).await)?;
        if page.is_empty() {
            break;
        }
        for r in page {
            let Some(key) = r
                .hmac_key_id
                .as_deref()
                .and_then(|kid| by_id.iter().find(|(id, _)| id == kid).map(|(_, k)| *k))
            else {
                return Ok(Report {
                    rows,
                    broken: Some((
                        Some(r.id),
                        "signed with a key that is neither Z4J_SECRET nor in Z4J_PREVIOUS_SECRETS"
                            .into(),
                    )),
                });
            };
            if r.prev_row_hmac != previous {
                return Ok(Report { rows, broken: Some((Some(r.id), "link broken: prev_row_hmac is not the previous row's HMAC (a row before it was removed or inserted)".into())) });
            }
            if r.row_hmac.as_deref() != Some(chain::row_hmac(key, &r.fields()).as_str()) {
                return Ok(Report {
                    rows,
                    broken: Some((
                        Some(r.id),
                        "content altered: the row does not match its HMAC".into(),
                    )),
                });
            }
            previous = r.row_hmac.clone();
            rows += 1;
            last = Some((r.id, r.row_hmac.clone()));
        }
    }
    if rows as i64 != st.row_count {
        return Ok(Report {
            rows,
            broken: Some((
                None,
                format!(
                    "{} rows in the chain, the signed state says {}",
                    rows, st.row_count
                ),
            )),
        });
    }
    let tail_ok = match &last {
        Some((id, hmac)) => st.head_id == Some(*id) && st.head_row_hmac == *hmac,
        // Fully pruned (or empty): the head is the prune point.
        None => st.head_row_hmac == st.prune_row_hmac,
    };
    if !tail_ok {
        return Ok(Report {
            rows,
            broken: Some((
                last.map(|l| l.0),
                "the newest row is not the signed head (rows after it were removed)".into(),
            )),
        });
    }
    Ok(Report { rows, broken: None })
}

/// Deletes up to `batch` of the oldest rows older than `cutoff` in one
/// transaction, moving the signed prune point to the last deleted row so
/// the rest still verifies. Returns the rows deleted.
pub async fn prune_batch(db: &Db, s: &Settings, cutoff: Ts, batch: i64) -> Result<u64, AuditError> {
    let ring = s.master_secrets();
    let key = *ring.first().ok_or(AuditError::NoKey)?;
    on_db!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(LOCK_STATE).execute(&mut *tx).await?;
        let sql = format!("SELECT {STATE_COLUMNS} FROM audit_chain_state WHERE singleton_id = 'audit-chain'");
        let st: StateRow = sqlx::query_as(&sql).fetch_one(&mut *tx).await?;
        if !st.authentic(&ring) {
            return Err(AuditError::StateTampered);
        }
        let doomed: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, prev_row_hmac, row_hmac FROM audit_log WHERE occurred_at < $1 ORDER BY id LIMIT $2",
        )
        .bind(cutoff)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let (Some(first), Some(last)) = (doomed.first(), doomed.last()) else {
            return Ok(0);
        };
        // Only an intact oldest-first prefix is removed.
        if first.1 != st.prune_row_hmac
            || doomed.windows(2).any(|w| w[1].1 != w[0].2)
        {
            return Err(AuditError::StateTampered);
        }
        let n = sqlx::query("DELETE FROM audit_log WHERE id >= $1 AND id <= $2")
            .bind(first.0)
            .bind(last.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let next = State {
            prune_row_hmac: last.2.clone(),
            row_count: st.row_count - n as i64,
            ..st.state()
        };
        sqlx::query("UPDATE audit_chain_state SET prune_row_hmac = $1, row_count = $2, state_mac = $3 WHERE singleton_id = 'audit-chain'")
            .bind(&next.prune_row_hmac)
            .bind(next.row_count)
            .bind(chain::state_mac(key, &next))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<u64, AuditError>(n)
    })
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
    let mut p = String::new();
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
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
    Ok(on_db!(db, p => sqlx::query_as::<_, AuditRow>(&sql)
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

pub async fn count(db: &Db, f: &Filter) -> Result<i64, StoreError> {
    let sql = format!("SELECT count(*) FROM audit_log WHERE {FILTER_SQL}");
    let pattern = f.action_prefix.as_deref().map(like_prefix);
    Ok(on_db!(db, p => sqlx::query_scalar::<_, i64>(&sql)
        .bind(f.project_id)
        .bind(&pattern)
        .bind(&f.outcome)
        .bind(f.user_id)
        .bind(f.since)
        .fetch_one(p)
        .await)?)
}
