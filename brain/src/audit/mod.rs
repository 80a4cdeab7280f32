//! The audit log: security-relevant actions appended as HMAC-chained rows
//! (`chain`), verified end to end (`z4j audit verify`), pruned oldest-first
//! by the retention sweep without breaking verification.

pub mod chain;

use crate::settings::Settings;
use crate::store::audit::{self as rows, NewRow, StateRow};
use crate::store::{Db, StoreError, Ts, Tx};
use chain::{RowFields, State};
use serde_json::Value;
use uuid::Uuid;

pub use crate::store::audit::{count, list, AuditRow, Filter};

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

/// The signed fields of a stored state.
fn signed_state(st: &StateRow) -> State {
    State {
        head_id: st.head_id,
        head_row_hmac: st.head_row_hmac.clone(),
        head_occurred_at: st.head_occurred_at.map(|t| chain::timestamp(t.0)),
        prune_row_hmac: st.prune_row_hmac.clone(),
        row_count: st.row_count,
    }
}

/// Untouched since the migration, or signed by a key of the ring.
fn authentic(st: &StateRow, ring: &[&str]) -> bool {
    let signed = signed_state(st);
    match &st.state_mac {
        None => signed == State::default(),
        Some(m) => ring
            .iter()
            .any(|k| z4j_protocol::secret::ct_eq(&chain::state_mac(k, &signed), m)),
    }
}

/// `next` with its MAC under `key`, ready to store; `head_at` is the head's
/// time as stored.
fn sealed(key: &str, next: &State, head_at: Option<Ts>) -> StateRow {
    StateRow {
        head_id: next.head_id,
        head_row_hmac: next.head_row_hmac.clone(),
        head_occurred_at: head_at,
        prune_row_hmac: next.prune_row_hmac.clone(),
        row_count: next.row_count,
        state_mac: Some(chain::state_mac(key, next)),
    }
}

/// The chain state read under the lock `begin` took, refused unless
/// authentic.
async fn locked_state(tx: &mut Tx, ring: &[&str]) -> Result<StateRow, AuditError> {
    let st = rows::state(tx).await?;
    if !authentic(&st, ring) {
        return Err(AuditError::StateTampered);
    }
    Ok(st)
}

/// Opens the transaction an audited action runs in, holding the chain
/// state's lock: audited transactions serialise on it in one order (no
/// deadlock with the action's own rows).
pub async fn begin(db: &Db) -> Result<Tx, AuditError> {
    Ok(rows::begin_locked(db).await?)
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

/// Appends one row in a transaction opened by [`begin`]; for an action
/// with several rows, the caller commits after the last.
pub async fn append(tx: &mut Tx, s: &Settings, e: &Entry) -> Result<(), AuditError> {
    let ring = s.master_secrets();
    let key = *ring.first().ok_or(AuditError::NoKey)?;
    let key_id = chain::key_id(key);
    let st = locked_state(tx, &ring).await?;
    // Strictly increasing with the chain, whatever the clock does.
    let mut at = Ts::now();
    if let Some(h) = st.head_occurred_at {
        if at <= h {
            at = Ts(h.0 + chrono::Duration::microseconds(1));
        }
    }
    let row = fields_of(e, &st, at, &key_id);
    let hmac = chain::row_hmac(key, &row);
    let id = rows::insert(
        tx,
        &NewRow {
            occurred_at: at,
            project_id: e.project_id,
            user_id: e.user_id,
            action: &row.action,
            target_type: row.target_type.as_deref(),
            target_id: row.target_id.as_deref(),
            result: &row.result,
            outcome: row.outcome.as_deref(),
            source_ip: row.source_ip.as_deref(),
            user_agent: row.user_agent.as_deref(),
            metadata: &row.metadata,
            prev_row_hmac: row.prev_row_hmac.as_deref(),
            row_hmac: &hmac,
            hmac_key_id: &key_id,
        },
    )
    .await?;
    let next = State {
        head_id: Some(id),
        head_row_hmac: Some(hmac),
        head_occurred_at: Some(row.occurred_at.clone()),
        prune_row_hmac: st.prune_row_hmac.clone(),
        row_count: st.row_count + 1,
    };
    rows::write_state(tx, &sealed(key, &next, Some(at))).await?;
    Ok(())
}

/// The signed fields of a new row (bounded as the columns are).
fn fields_of(e: &Entry, st: &StateRow, at: Ts, key_id: &str) -> RowFields {
    let truncate = |v: &str, n: usize| v.chars().take(n).collect::<String>();
    RowFields {
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
        hmac_key_id: key_id.to_owned(),
    }
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
    let mut tx = begin(db).await?;
    // Not checked: the point is to replace a state that does not verify.
    let old = rows::state(&mut tx).await?;
    let span = rows::span(&mut tx).await?;
    let (next, head_at) = match &span.head {
        Some((id, hmac, at)) => (
            State {
                head_id: Some(*id),
                head_row_hmac: hmac.clone(),
                head_occurred_at: Some(chain::timestamp(at.0)),
                prune_row_hmac: span.first_prev.clone(),
                row_count: span.rows,
            },
            Some(*at),
        ),
        // Empty: head and prune point meet where the old state left them.
        None => (
            State {
                prune_row_hmac: old.head_row_hmac.clone(),
                row_count: 0,
                ..signed_state(&old)
            },
            old.head_occurred_at,
        ),
    };
    rows::write_state(&mut tx, &sealed(key, &next, head_at)).await?;
    let resealed = Resealed {
        rows: span.rows,
        head_id: next.head_id,
        previous_count: old.row_count,
    };
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

fn stored_fields(r: &AuditRow) -> RowFields {
    RowFields {
        action: r.action.clone(),
        target_type: r.target_type.clone(),
        target_id: r.target_id.clone(),
        result: r.result.clone(),
        outcome: r.outcome.clone(),
        user_id: r.user_id.map(|u| u.to_string()),
        project_id: r.project_id.map(|u| u.to_string()),
        source_ip: r.source_ip.clone(),
        user_agent: r.user_agent.clone(),
        metadata: r.metadata.0.clone(),
        occurred_at: chain::timestamp(r.occurred_at.0),
        prev_row_hmac: r.prev_row_hmac.clone(),
        hmac_key_id: r.hmac_key_id.clone().unwrap_or_default(),
    }
}

/// The outcome of a verification: rows checked, and the first problem.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: u64,
    pub broken: Option<(Option<i64>, String)>,
}

impl Report {
    fn broken(rows: u64, id: Option<i64>, why: impl Into<String>) -> Report {
        Report {
            rows,
            broken: Some((id, why.into())),
        }
    }
}

/// Walks the whole chain from the prune point to the head.
pub async fn verify(db: &Db, s: &Settings) -> Result<Report, StoreError> {
    let ring = s.master_secrets();
    let by_id: Vec<(String, &str)> = ring.iter().map(|k| (chain::key_id(k), *k)).collect();
    let st = rows::state(db).await?;
    if !authentic(&st, &ring) {
        return Ok(Report::broken(
            0,
            None,
            "the chain state's MAC does not verify (head, prune point or count altered)",
        ));
    }
    let mut rows = 0u64;
    let mut previous = st.prune_row_hmac.clone();
    let mut last: Option<(i64, Option<String>)> = None;
    loop {
        let after = last.as_ref().map_or(0, |l| l.0);
        let page = rows::page_after(db, after, 1000).await?;
        if page.is_empty() {
            break;
        }
        for r in page {
            if let Some(why) = row_problem(&r, &by_id, previous.as_deref()) {
                return Ok(Report::broken(rows, Some(r.id), why));
            }
            previous = r.row_hmac.clone();
            rows += 1;
            last = Some((r.id, r.row_hmac.clone()));
        }
    }
    if rows as i64 != st.row_count {
        let why = format!(
            "{rows} rows in the chain, the signed state says {}",
            st.row_count
        );
        return Ok(Report::broken(rows, None, why));
    }
    let tail_ok = match &last {
        Some((id, hmac)) => st.head_id == Some(*id) && st.head_row_hmac == *hmac,
        // Fully pruned (or empty): the head is the prune point.
        None => st.head_row_hmac == st.prune_row_hmac,
    };
    if !tail_ok {
        return Ok(Report::broken(
            rows,
            last.map(|l| l.0),
            "the newest row is not the signed head (rows after it were removed)",
        ));
    }
    Ok(Report { rows, broken: None })
}

/// Why one row breaks the chain, given the previous row's HMAC.
fn row_problem(
    r: &AuditRow,
    keys: &[(String, &str)],
    previous: Option<&str>,
) -> Option<&'static str> {
    let key = r
        .hmac_key_id
        .as_deref()
        .and_then(|kid| keys.iter().find(|(id, _)| id == kid).map(|(_, k)| *k));
    let Some(key) = key else {
        return Some("signed with a key that is neither Z4J_SECRET nor in Z4J_PREVIOUS_SECRETS");
    };
    if r.prev_row_hmac.as_deref() != previous {
        return Some("link broken: prev_row_hmac is not the previous row's HMAC (a row before it was removed or inserted)");
    }
    let expected = chain::row_hmac(key, &stored_fields(r));
    if !r
        .row_hmac
        .as_deref()
        .is_some_and(|h| z4j_protocol::secret::ct_eq(h, &expected))
    {
        return Some("content altered: the row does not match its HMAC");
    }
    None
}

/// Deletes up to `batch` of the oldest rows older than `cutoff` in one
/// transaction, moving the signed prune point to the last deleted row so
/// the rest still verifies. Returns the rows deleted.
pub async fn prune_batch(db: &Db, s: &Settings, cutoff: Ts, batch: i64) -> Result<u64, AuditError> {
    let ring = s.master_secrets();
    let key = *ring.first().ok_or(AuditError::NoKey)?;
    let mut tx = begin(db).await?;
    let st = locked_state(&mut tx, &ring).await?;
    let doomed = rows::oldest_before(&mut tx, cutoff, batch).await?;
    let (Some(first), Some(last)) = (doomed.first(), doomed.last()) else {
        return Ok(0);
    };
    // Only an intact oldest-first prefix is removed.
    if first.1 != st.prune_row_hmac || doomed.windows(2).any(|w| w[1].1 != w[0].2) {
        return Err(AuditError::StateTampered);
    }
    let n = rows::delete_range(&mut tx, first.0, last.0).await?;
    let next = State {
        prune_row_hmac: last.2.clone(),
        row_count: st.row_count - n as i64,
        ..signed_state(&st)
    };
    rows::write_state(&mut tx, &sealed(key, &next, st.head_occurred_at)).await?;
    tx.commit().await?;
    Ok(n)
}
