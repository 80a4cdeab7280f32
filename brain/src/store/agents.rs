//! Agents (credentials and liveness) and their per-process worker rows.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_db, on_handle, on_read};
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

crate::text_enum! {
    /// Whether an agent (or one of its worker processes, or an engine
    /// worker) is connected: the `state` columns' vocabulary.
    pub enum Liveness {
        Online = "online",
        Offline = "offline",
        Draining = "draining",
        Unknown = "unknown",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Agent {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub state: Liveness,
    pub protocol_version: String,
    pub framework_adapter: String,
    pub engine_adapters: SqlJson<Json>,
    pub scheduler_adapters: SqlJson<Json>,
    pub capabilities: SqlJson<Json>,
    pub metadata: SqlJson<Json>,
    pub last_seen_at: Option<Ts>,
    pub last_connect_at: Option<Ts>,
    pub revoked_at: Option<Ts>,
    pub created_at: Ts,
}

const COLUMNS: &str = "id, project_id, name, state, protocol_version, framework_adapter, engine_adapters, \
     scheduler_adapters, capabilities, metadata, last_seen_at, last_connect_at, revoked_at, created_at";

/// What the gateway learns from a bearer token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credential {
    pub agent_id: Uuid,
    pub project_id: Uuid,
    pub project_active: bool,
}

/// What `hello` tells the brain about one connection.
#[derive(Debug, Clone, Default)]
pub struct HelloInfo {
    pub protocol_version: String,
    pub agent_version: String,
    pub framework: String,
    pub engines: Vec<String>,
    pub schedulers: Vec<String>,
    pub capabilities: Json,
    pub host_name: Option<String>,
    pub runtime_features: Vec<String>,
    pub worker_id: Option<String>,
    pub worker_role: Option<String>,
    pub worker_pid: Option<i64>,
    pub worker_started_at: Option<Ts>,
}

pub async fn mint(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    name: &str,
    token_hash: &str,
) -> Result<Agent, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let id = Uuid::new_v4();
    let inserted = on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO agents (id, project_id, name, token_hash, protocol_version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, '0', $5, $5)"
    )
    .bind(id)
    .bind(project_id)
    .bind(name)
    .bind(token_hash)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()));
    match inserted {
        Ok(_) => {}
        Err(e) => {
            let e = StoreError::from(e);
            if e.is_unique_violation() {
                return Err(StoreError::Conflict(
                    "an agent with that name already exists in this project".into(),
                ));
            }
            return Err(e);
        }
    }
    find(db.reborrow(), id)
        .await?
        .ok_or_else(|| StoreError::Conflict("agent vanished after insert".into()))
}

pub async fn find(db: impl Into<Handle<'_>>, id: Uuid) -> Result<Option<Agent>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = $1");
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Agent>(&sql).bind(id).fetch_optional(p).await)?,
    )
}

/// The project's agents that were not revoked, oldest first.
pub async fn list(db: &Db, project_id: Uuid) -> Result<Vec<Agent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM agents WHERE project_id = $1 AND revoked_at IS NULL ORDER BY created_at, id"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Agent>(&sql).bind(project_id).fetch_all(p).await)?)
}

/// Revokes: the stored hash is overwritten so the token stops matching.
/// Idempotent; returns whether the agent exists in the project.
pub async fn revoke(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let marker = format!("revoked:{id}:{}", now.0.timestamp_micros());
    let exists: Option<Uuid> = on_handle!(&mut db, p => sqlx::query_scalar(
        "SELECT id FROM agents WHERE id = $1 AND project_id = $2"
    )
    .bind(id)
    .bind(project_id)
    .fetch_optional(p)
    .await)?;
    if exists.is_none() {
        return Ok(false);
    }
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE agents SET token_hash = $2, revoked_at = $3, state = 'offline', updated_at = $3 \
         WHERE id = $1 AND revoked_at IS NULL"
    )
    .bind(id)
    .bind(&marker)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(true)
}

/// The live agent whose stored hash is one of `hashes` (current master
/// first, then previous ones: the first match wins).
pub async fn find_by_token_hashes(
    db: &Db,
    hashes: &[String],
) -> Result<Option<Credential>, StoreError> {
    for hash in hashes {
        let row = on_read!(db, p => sqlx::query_as::<_, Credential>(
            "SELECT a.id AS agent_id, a.project_id, p.is_active AS project_active \
             FROM agents a JOIN projects p ON p.id = a.project_id \
             WHERE a.token_hash = $1 AND a.revoked_at IS NULL"
        )
        .bind(hash)
        .fetch_optional(p)
        .await)?;
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// Whether the agent is still live and its project active.
pub async fn still_admitted(db: &Db, agent_id: Uuid) -> Result<bool, StoreError> {
    let row: Option<bool> = on_read!(db, p => sqlx::query_scalar(
        "SELECT p.is_active FROM agents a JOIN projects p ON p.id = a.project_id \
         WHERE a.id = $1 AND a.revoked_at IS NULL"
    )
    .bind(agent_id)
    .fetch_optional(p)
    .await)?;
    Ok(row.unwrap_or(false))
}

/// Records the handshake and marks the agent online. False when the agent
/// was revoked in the meantime.
pub async fn mark_online(
    db: &Db,
    agent_id: Uuid,
    hello: &HelloInfo,
    at: Ts,
) -> Result<bool, StoreError> {
    let metadata = serde_json::json!({
        "agent_version": hello.agent_version,
        "host_name": hello.host_name,
        "runtime_features": hello.runtime_features,
    });
    let n = on_db!(db, p => sqlx::query(
        "UPDATE agents SET state = 'online', protocol_version = $2, framework_adapter = $3, \
         engine_adapters = $4, scheduler_adapters = $5, capabilities = $6, metadata = $7, \
         last_seen_at = $8, last_connect_at = $8, updated_at = $8 \
         WHERE id = $1 AND revoked_at IS NULL"
    )
    .bind(agent_id)
    .bind(truncate(&hello.protocol_version, 20))
    .bind(truncate(&hello.framework, 40))
    .bind(SqlJson(&hello.engines))
    .bind(SqlJson(&hello.schedulers))
    .bind(SqlJson(&hello.capabilities))
    .bind(SqlJson(&metadata))
    .bind(at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Upserts the connection's `agent_workers` row as online.
pub async fn upsert_worker(
    db: &Db,
    agent_id: Uuid,
    project_id: Uuid,
    hello: &HelloInfo,
    at: Ts,
) -> Result<(), StoreError> {
    let role = hello.worker_role.as_deref().map(|r| truncate(r, 32));
    let pid = hello.worker_pid.and_then(|p| i32::try_from(p).ok());
    let framework = truncate(&hello.framework, 40);
    // The legacy slot (no worker_id) has its own partial unique index, so the
    // two cases need different conflict targets.
    let conflict = if hello.worker_id.is_some() {
        "(agent_id, worker_id)"
    } else {
        "(agent_id) WHERE worker_id IS NULL"
    };
    let sql = format!(
        "INSERT INTO agent_workers (id, agent_id, project_id, worker_id, role, framework, pid, started_at, \
         state, last_seen_at, last_connect_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'online', $9, $9, $9, $9) \
         ON CONFLICT {conflict} DO UPDATE SET role = excluded.role, framework = excluded.framework, \
         pid = excluded.pid, started_at = excluded.started_at, state = 'online', \
         last_seen_at = excluded.last_seen_at, last_connect_at = excluded.last_connect_at, \
         updated_at = excluded.updated_at"
    );
    on_db!(db, p => sqlx::query(&sql)
        .bind(Uuid::new_v4())
        .bind(agent_id)
        .bind(project_id)
        .bind(hello.worker_id.as_deref())
        .bind(role)
        .bind(framework)
        .bind(pid)
        .bind(hello.worker_started_at)
        .bind(at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A heartbeat: the agent (back) online, its worker row seen.
pub async fn touch(
    db: &Db,
    agent_id: Uuid,
    worker_id: Option<&str>,
    at: Ts,
) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE agents SET state = 'online', last_seen_at = $2 \
         WHERE id = $1 AND revoked_at IS NULL AND (last_seen_at IS NULL OR last_seen_at < $2)"
    )
    .bind(agent_id)
    .bind(at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    let worker_clause = if worker_id.is_some() {
        "worker_id = $3"
    } else {
        "worker_id IS NULL AND $3 IS NULL"
    };
    let sql = format!(
        "UPDATE agent_workers SET state = 'online', last_seen_at = $2, updated_at = $2 \
         WHERE agent_id = $1 AND {worker_clause}"
    );
    on_db!(db, p => sqlx::query(&sql)
        .bind(agent_id)
        .bind(at)
        .bind(worker_id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A connection ended: its worker row goes offline, and the agent too when
/// `last_agent_connection` — unless a newer connection already marked it
/// (guarded by the connect instant).
pub async fn disconnected(
    db: &Db,
    agent_id: Uuid,
    worker_id: Option<&str>,
    connected_at: Ts,
    last_agent_connection: bool,
) -> Result<(), StoreError> {
    let now = Ts::now();
    let worker_clause = if worker_id.is_some() {
        "worker_id = $3"
    } else {
        "worker_id IS NULL AND $3 IS NULL"
    };
    let sql = format!(
        "UPDATE agent_workers SET state = 'offline', updated_at = $2 \
         WHERE agent_id = $1 AND {worker_clause} AND last_connect_at <= $4"
    );
    on_db!(db, p => sqlx::query(&sql)
        .bind(agent_id)
        .bind(now)
        .bind(worker_id)
        .bind(connected_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    if last_agent_connection {
        on_db!(db, p => sqlx::query(
            "UPDATE agents SET state = 'offline', updated_at = $2 \
             WHERE id = $1 AND (last_connect_at IS NULL OR last_connect_at <= $3)"
        )
        .bind(agent_id)
        .bind(now)
        .bind(connected_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// The health sweep: online agents silent for longer than the timeout go
/// offline. Returns the project of each agent flipped.
pub async fn sweep_offline(db: &Db, silent_since: Ts) -> Result<Vec<Uuid>, StoreError> {
    // The project of each agent flipped, for the dashboard's push.
    let rows: Vec<(Uuid,)> = on_db!(db, p => sqlx::query_as(
        "UPDATE agents SET state = 'offline', updated_at = $2 \
         WHERE state = 'online' AND (last_seen_at IS NULL OR last_seen_at < $1) \
         RETURNING project_id"
    )
    .bind(silent_since)
    .bind(Ts::now())
    .fetch_all(p)
    .await)?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// `Z4J_AGENT_STALE_PRUNE_DAYS`: agents not online and silent since before
/// `silent_since` are soft-revoked (hidden from lists, token invalid; the row
/// stays for the references to it). Returns how many.
pub async fn prune_stale(db: &Db, silent_since: Ts) -> Result<u64, StoreError> {
    let stale: Vec<(Uuid, Uuid)> = on_read!(db, p => sqlx::query_as(
        "SELECT id, project_id FROM agents WHERE revoked_at IS NULL AND state <> 'online' \
         AND COALESCE(last_seen_at, created_at) < $1"
    )
    .bind(silent_since)
    .fetch_all(p)
    .await)?;
    let mut n = 0;
    for (id, project_id) in stale {
        if revoke(db, project_id, id).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// Moves `last_seen_at` forward (long-poll liveness, ingest).
/// A long-poll request: the agent is online as of `at`. True when it was
/// offline before (the dashboard is told).
pub async fn seen(db: &Db, agent_id: Uuid, at: Ts) -> Result<bool, StoreError> {
    let back = on_db!(db, p => sqlx::query(
        "UPDATE agents SET state = 'online' WHERE id = $1 AND state <> 'online' AND revoked_at IS NULL"
    )
    .bind(agent_id)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    touch(db, agent_id, None, at).await?;
    Ok(back > 0)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentWorker {
    pub agent_id: Uuid,
    pub worker_id: Option<String>,
    pub role: Option<String>,
    pub framework: Option<String>,
    pub pid: Option<i32>,
    #[sqlx(try_from = "String")]
    pub state: Liveness,
    pub last_seen_at: Option<Ts>,
    pub last_connect_at: Option<Ts>,
}

pub async fn list_workers(
    db: &Db,
    project_id: Uuid,
    state: Option<Liveness>,
    limit: i64,
) -> Result<Vec<AgentWorker>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, AgentWorker>(
        "SELECT agent_id, worker_id, role, framework, pid, state, last_seen_at, last_connect_at \
         FROM agent_workers WHERE project_id = $1 AND ($2 IS NULL OR state = $2) \
         ORDER BY last_connect_at DESC LIMIT $3"
    )
    .bind(project_id)
    .bind(state.map(Liveness::as_str))
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Online, unrevoked agents per project (the `/metrics` gauge).
pub async fn online_per_project(db: &Db) -> Result<Vec<(Uuid, i64)>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT project_id, count(*) FROM agents WHERE state = 'online' AND revoked_at IS NULL \
         GROUP BY project_id"
    )
    .fetch_all(p)
    .await)?)
}
