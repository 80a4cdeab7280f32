//! Notification channels, the project's trigger routes, the delivery log,
//! and once-per-episode claims for agent.offline alerts.

use super::{Db, StoreError, Ts};
use crate::store::Handle;
use crate::{on_db, on_handle, on_read};
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Channel {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    /// Sealed (see `notify::sealed`).
    pub config: String,
    pub is_active: bool,
    pub created_at: Ts,
    pub updated_at: Ts,
}

const CHANNEL_COLUMNS: &str =
    "id, project_id, name, type, config, is_active, created_at, updated_at";

fn conflict_on_name(e: sqlx::Error) -> StoreError {
    let e = StoreError::from(e);
    if e.is_unique_violation() {
        StoreError::Conflict("a channel with this name already exists in the project".into())
    } else {
        e
    }
}

pub async fn create_channel(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    name: &str,
    kind: &str,
    sealed_config: &str,
    is_active: bool,
) -> Result<Channel, StoreError> {
    let mut db: Handle<'_> = db.into();
    let now = Ts::now();
    let id = Uuid::new_v4();
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO notification_channels (id, project_id, name, type, config, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
    )
    .bind(id)
    .bind(project_id)
    .bind(name)
    .bind(kind)
    .bind(sealed_config)
    .bind(is_active)
    .bind(now)
    .execute(p)
    .await
    .map(|_| ()))
    .map_err(conflict_on_name)?;
    channel(db.reborrow(), project_id, id)
        .await?
        .ok_or_else(|| StoreError::Conflict("channel vanished after insert".into()))
}

pub async fn channel(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Channel>, StoreError> {
    let mut db: Handle<'_> = db.into();
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE project_id = $1 AND id = $2"
    );
    Ok(
        on_handle!(&mut db, read p => sqlx::query_as::<_, Channel>(&sql)
        .bind(project_id)
        .bind(id)
        .fetch_optional(p)
        .await)?,
    )
}

pub async fn channels(db: &Db, project_id: Uuid) -> Result<Vec<Channel>, StoreError> {
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE project_id = $1 ORDER BY created_at, id"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Channel>(&sql)
        .bind(project_id)
        .fetch_all(p)
        .await)?)
}

pub async fn update_channel(db: impl Into<Handle<'_>>, c: &Channel) -> Result<(), StoreError> {
    let mut db: Handle<'_> = db.into();
    on_handle!(&mut db, p => sqlx::query(
        "UPDATE notification_channels SET name = $3, config = $4, is_active = $5, updated_at = $6 \
         WHERE project_id = $1 AND id = $2"
    )
    .bind(c.project_id)
    .bind(c.id)
    .bind(&c.name)
    .bind(&c.config)
    .bind(c.is_active)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))
    .map_err(conflict_on_name)
}

pub async fn delete_channel(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("DELETE FROM notification_channels WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Route {
    pub id: Uuid,
    pub project_id: Uuid,
    pub trigger: String,
    pub project_channel_ids: SqlJson<Json>,
    pub cooldown_seconds: i32,
    pub last_fired_at: Option<Ts>,
    pub created_at: Ts,
}

const ROUTE_COLUMNS: &str =
    "id, project_id, trigger, project_channel_ids, cooldown_seconds, last_fired_at, created_at";

impl Route {
    pub fn channel_ids(&self) -> Vec<Uuid> {
        self.project_channel_ids
            .0
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
            .collect()
    }
}

pub async fn create_route(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    trigger: &str,
    channel_ids: &[Uuid],
    cooldown_seconds: i32,
) -> Result<Route, StoreError> {
    let mut db: Handle<'_> = db.into();
    let id = Uuid::new_v4();
    let ids = serde_json::json!(channel_ids);
    on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO project_default_subscriptions (id, project_id, trigger, project_channel_ids, cooldown_seconds, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(id)
    .bind(project_id)
    .bind(trigger)
    .bind(SqlJson(&ids))
    .bind(cooldown_seconds)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))
    .map_err(|e| {
        let e = StoreError::from(e);
        if e.is_unique_violation() {
            StoreError::Conflict(format!("the project already routes '{trigger}'"))
        } else {
            e
        }
    })?;
    let sql = format!("SELECT {ROUTE_COLUMNS} FROM project_default_subscriptions WHERE id = $1");
    Ok(on_handle!(&mut db, p => sqlx::query_as::<_, Route>(&sql).bind(id).fetch_one(p).await)?)
}

pub async fn routes(db: &Db, project_id: Uuid) -> Result<Vec<Route>, StoreError> {
    let sql = format!(
        "SELECT {ROUTE_COLUMNS} FROM project_default_subscriptions WHERE project_id = $1 ORDER BY created_at, id"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Route>(&sql).bind(project_id).fetch_all(p).await)?)
}

pub async fn route_for(
    db: &Db,
    project_id: Uuid,
    trigger: &str,
) -> Result<Option<Route>, StoreError> {
    let sql = format!(
        "SELECT {ROUTE_COLUMNS} FROM project_default_subscriptions WHERE project_id = $1 AND trigger = $2"
    );
    Ok(on_read!(db, p => sqlx::query_as::<_, Route>(&sql)
        .bind(project_id)
        .bind(trigger)
        .fetch_optional(p)
        .await)?)
}

pub async fn delete_route(
    db: impl Into<Handle<'_>>,
    project_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query("DELETE FROM project_default_subscriptions WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Takes the route's cooldown slot: false while the last firing is younger
/// than the cooldown (conditional, so replicas agree).
pub async fn take_cooldown(db: &Db, route: &Route, now: Ts) -> Result<bool, StoreError> {
    let since = now.plus_seconds(-i64::from(route.cooldown_seconds));
    let n = on_db!(db, p => sqlx::query(
        "UPDATE project_default_subscriptions SET last_fired_at = $2 \
         WHERE id = $1 AND ($3 = 0 OR last_fired_at IS NULL OR last_fired_at <= $4)"
    )
    .bind(route.id)
    .bind(now)
    .bind(route.cooldown_seconds)
    .bind(since)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub project_id: Uuid,
    pub channel_id: Option<Uuid>,
    pub trigger: String,
    pub task_id: Option<String>,
    pub task_name: Option<String>,
    pub status: String,
    pub response_code: Option<i32>,
    pub error: Option<String>,
    pub attempts: i32,
    pub channel_name: Option<String>,
    pub channel_type: Option<String>,
    pub sent_at: Ts,
}

pub struct NewDelivery<'a> {
    pub project_id: Uuid,
    pub channel: Option<&'a Channel>,
    pub trigger: &'a str,
    pub task_id: Option<&'a str>,
    pub task_name: Option<&'a str>,
    pub status: &'a str,
    pub response_code: Option<u16>,
    pub response_body: Option<&'a str>,
    pub error: Option<&'a str>,
    pub attempts: u32,
}

pub async fn record_delivery(db: &Db, d: &NewDelivery<'_>) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "INSERT INTO notification_deliveries (id, project_id, channel_id, trigger, task_id, task_name, status, \
         response_code, response_body, error, attempts, channel_name, channel_type, sent_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    )
    .bind(Uuid::new_v4())
    .bind(d.project_id)
    .bind(d.channel.map(|c| c.id))
    .bind(d.trigger)
    .bind(d.task_id)
    .bind(d.task_name)
    .bind(d.status)
    .bind(d.response_code.map(i32::from))
    .bind(d.response_body)
    .bind(d.error)
    .bind(d.attempts as i32)
    .bind(d.channel.map(|c| c.name.as_str()))
    .bind(d.channel.map(|c| c.kind.as_str()))
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Newest first, keyset on `(sent_at, id)`.
pub async fn deliveries(
    db: &Db,
    project_id: Uuid,
    after: Option<(Ts, Uuid)>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, Delivery>(
        "SELECT id, project_id, channel_id, trigger, task_id, task_name, status, response_code, error, \
         attempts, channel_name, channel_type, sent_at FROM notification_deliveries \
         WHERE project_id = $1 AND ($2 IS NULL OR sent_at < $2 OR (sent_at = $2 AND id < $3)) \
         ORDER BY sent_at DESC, id DESC LIMIT $4"
    )
    .bind(project_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1).unwrap_or_default())
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OfflineAgent {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub last_seen_at: Ts,
}

/// Offline episodes old enough to announce and not announced yet.
pub async fn unannounced_offline(
    db: &Db,
    silent_since: Ts,
    limit: i64,
) -> Result<Vec<OfflineAgent>, StoreError> {
    Ok(on_read!(db, p => sqlx::query_as::<_, OfflineAgent>(
        "SELECT a.id, a.project_id, a.name, a.last_seen_at FROM agents a \
         WHERE a.state = 'offline' AND a.revoked_at IS NULL AND a.last_seen_at IS NOT NULL \
         AND a.last_seen_at < $1 AND NOT EXISTS (SELECT 1 FROM agent_offline_alerts o \
             WHERE o.agent_id = a.id AND o.anchor_at = a.last_seen_at) \
         ORDER BY a.last_seen_at LIMIT $2"
    )
    .bind(silent_since)
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

/// Claims an episode (agent, last_seen_at) if the agent is still offline
/// on that anchor; true for exactly one caller fleet-wide.
pub async fn claim_offline(
    db: impl Into<Handle<'_>>,
    a: &OfflineAgent,
) -> Result<bool, StoreError> {
    let mut db: Handle<'_> = db.into();
    let n = on_handle!(&mut db, p => sqlx::query(
        "INSERT INTO agent_offline_alerts (agent_id, anchor_at, created_at) \
         SELECT id, last_seen_at, $3 FROM agents \
         WHERE id = $1 AND state = 'offline' AND last_seen_at = $2 \
         ON CONFLICT DO NOTHING"
    )
    .bind(a.id)
    .bind(a.last_seen_at)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
