//! Cross-replica routing over PostgreSQL LISTEN/NOTIFY (storage spec 4.3):
//! a replica that cannot deliver a command itself publishes it, and the
//! replica holding the agent's socket delivers it. This is the publishing
//! side and the backend's settings; the listener and the reconcile poll
//! are `workers::cluster`.

use crate::settings::Settings;
use crate::store::{self, Db};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool};
use std::time::Duration;
use uuid::Uuid;

pub const COMMANDS: &str = "z4j_commands";
pub const HEARTBEAT: &str = "z4j_heartbeat";
pub const REVOKED: &str = "z4j_agent_revoked";

/// This replica's side of the cluster: `notify` is set when commands and
/// revocations fan out to other replicas (`postgres_notify` on PostgreSQL).
pub struct Cluster {
    /// 16 hex digits naming this process on the channels and in
    /// `pg_stat_activity` (`z4j-brain-registry-<id>`).
    pub worker_id: String,
    notify: Option<Notify>,
}

/// The `postgres_notify` backend: the shared pool to publish on and how
/// the listener connection is kept (its loops are `workers::cluster`).
pub struct Notify {
    pool: PgPool,
    pub listener_options: PgConnectOptions,
    pub heartbeat: Duration,
    pub heartbeat_timeout: Duration,
    pub max_age: Duration,
    pub reconcile_every: Duration,
    pub connect_timeout: Duration,
    pub close_timeout: Duration,
}

impl Cluster {
    pub fn new(settings: &Settings, db: &Db) -> Cluster {
        let worker_id = format!("{:016x}", rand::random::<u64>());
        let notify = match db {
            Db::Postgres(pool) if settings.registry_backend == "postgres_notify" => Some(Notify {
                pool: pool.clone(),
                listener_options: (*pool.connect_options())
                    .clone()
                    .application_name(&format!("z4j-brain-registry-{worker_id}")),
                heartbeat: secs(settings.registry_listener_heartbeat_seconds as f64),
                heartbeat_timeout: secs(
                    settings.registry_listener_heartbeat_timeout_seconds as f64,
                ),
                max_age: secs(settings.registry_listener_max_age_seconds as f64),
                reconcile_every: secs(settings.registry_reconcile_interval_seconds as f64),
                connect_timeout: secs(settings.asyncpg_connect_timeout),
                close_timeout: secs(settings.asyncpg_close_timeout),
            }),
            _ => None, // `local`, and SQLite always
        };
        Cluster { worker_id, notify }
    }

    /// The listener settings, when this replica fans out over PostgreSQL.
    pub fn notify(&self) -> Option<&Notify> {
        self.notify.as_ref()
    }

    pub fn backend(&self) -> &'static str {
        if self.notify.is_some() {
            "postgres_notify"
        } else {
            "local"
        }
    }

    /// Asks every replica to deliver a committed command (no-op when local).
    pub async fn publish_command(
        &self,
        command_id: Uuid,
        agent_id: Uuid,
        retry_engine: Option<&str>,
    ) {
        let mut payload = json!({"c": command_id, "a": agent_id});
        if let Some(e) = retry_engine {
            payload["r"] = json!({"e": e, "v": 1});
        }
        self.publish(COMMANDS, &payload.to_string()).await;
    }

    /// Closes an agent's sockets on every other replica (4003).
    pub async fn publish_agent_revoked(&self, agent_id: Uuid) {
        self.publish(REVOKED, &agent_id.to_string()).await;
    }

    /// Closes a project's agent sockets on every other replica (4003).
    pub async fn publish_project_revoked(&self, project_id: Uuid) {
        self.publish(REVOKED, &format!("project:{project_id}"))
            .await;
    }

    /// Publishes on the shared pool (no-op when local).
    pub async fn publish(&self, channel: &str, payload: &str) {
        let Some(n) = &self.notify else { return };
        if let Err(e) = store::cluster::notify(&n.pool, channel, payload).await {
            // The reconcile poll still finds pending commands.
            tracing::warn!(error = %e, channel, "cannot publish a cluster notification");
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}
