//! Cross-replica routing over PostgreSQL LISTEN/NOTIFY (storage spec 4.3):
//! a replica that cannot deliver a command itself publishes it, and the
//! replica holding the agent's socket delivers it. A dedicated listener
//! connection watches its own heartbeat and is rebuilt when it goes quiet
//! or gets old; a reconcile poll delivers what a lost NOTIFY left pending,
//! so a lost notification delays a command but never loses it.

use super::delivery;
use crate::http::Shared;
use crate::settings::Settings;
use crate::store::{commands, projects, Db};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub const COMMANDS: &str = "z4j_commands";
pub const HEARTBEAT: &str = "z4j_heartbeat";
pub const REVOKED: &str = "z4j_agent_revoked";
/// Reconnect delays after a lost listener (spec 4.3); the last one repeats.
const BACKOFF: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0];
/// Commands delivered per reconcile pass.
const RECONCILE_LIMIT: i64 = 500;

/// This replica's side of the cluster: `notify` is set when commands and
/// revocations fan out to other replicas (`postgres_notify` on PostgreSQL).
pub struct Cluster {
    /// 16 hex digits naming this process on the channels and in
    /// `pg_stat_activity` (`z4j-brain-registry-<id>`).
    pub worker_id: String,
    notify: Option<Notify>,
}

struct Notify {
    pool: PgPool,
    listener_options: PgConnectOptions,
    heartbeat: Duration,
    heartbeat_timeout: Duration,
    max_age: Duration,
    reconcile_every: Duration,
    connect_timeout: Duration,
    close_timeout: Duration,
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

    async fn publish(&self, channel: &str, payload: &str) {
        let Some(n) = &self.notify else { return };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&n.pool)
            .await
        {
            // The reconcile poll still finds pending commands.
            tracing::warn!(error = %e, channel, "cannot publish a cluster notification");
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

/// Why a listener connection ended.
enum End {
    Stop,
    /// Old enough to be replaced (clean: no backoff).
    Recycle,
    Lost(String),
}

/// The listener and reconcile loops of a `postgres_notify` replica; returns
/// at once for `local`.
pub async fn run(state: Shared, stop: watch::Receiver<bool>) {
    let Some(n) = &state.gateway.cluster.notify else {
        return;
    };
    let reconcile = tokio::spawn(reconcile_loop(
        state.clone(),
        n.reconcile_every,
        stop.clone(),
    ));
    listen_loop(&state, n, stop).await;
    let _ = reconcile.await;
}

async fn listen_loop(state: &Shared, n: &Notify, mut stop: watch::Receiver<bool>) {
    let mut failures = 0usize;
    while !*stop.borrow() {
        let end = match connect(n).await {
            Ok((pool, listener)) => {
                tracing::info!(worker_id = %state.gateway.cluster.worker_id, "registry listener connected");
                // Whatever was published while no listener was up.
                tokio::spawn(reconcile_pass(state.clone()));
                let (end, healthy) = serve(state, n, listener, &mut stop).await;
                if healthy {
                    failures = 0;
                }
                if tokio::time::timeout(n.close_timeout, pool.close())
                    .await
                    .is_err()
                {
                    tracing::warn!("registry listener did not close in time");
                }
                end
            }
            Err(e) => End::Lost(e),
        };
        match end {
            End::Stop => return,
            End::Recycle => {
                failures = 0;
                tracing::info!(
                    "registry listener recycled (Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS)"
                );
            }
            End::Lost(reason) => {
                let delay = BACKOFF[failures.min(BACKOFF.len() - 1)];
                failures += 1;
                tracing::warn!(reason, retry_in_seconds = delay, "registry listener lost");
                if !crate::workers::tick(Duration::from_secs_f64(delay), &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// One listener connection on its own one-connection pool, so closing the
/// pool really ends the backend (a recycle gets a new one).
async fn connect(n: &Notify) -> Result<(PgPool, PgListener), String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(n.connect_timeout)
        .connect_lazy_with(n.listener_options.clone());
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    listener.eager_reconnect(false);
    listener
        .listen_all([COMMANDS, HEARTBEAT, REVOKED])
        .await
        .map_err(|e| format!("listen: {e}"))?;
    Ok((pool, listener))
}

/// Serves one connection until it ends. The second value says whether its
/// own heartbeat came back at least once (a healthy connection resets the
/// reconnect backoff).
async fn serve(
    state: &Shared,
    n: &Notify,
    mut listener: PgListener,
    stop: &mut watch::Receiver<bool>,
) -> (End, bool) {
    let connected = Instant::now();
    let mut last_beat = Instant::now();
    let mut healthy = false;
    // The reader owns the connection, so the heartbeat timer never cancels a
    // half-read message; dropping the task drops the connection.
    let (tx, mut rx) = mpsc::channel::<Result<(String, String), String>>(256);
    let reader = tokio::spawn(async move {
        loop {
            let item = match listener.try_recv().await {
                Ok(Some(m)) => Ok((m.channel().to_owned(), m.payload().to_owned())),
                Ok(None) => Err("connection lost".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    let mut beat = tokio::time::interval(n.heartbeat);
    let end = loop {
        tokio::select! {
            () = stopped(stop) => break End::Stop,
            msg = rx.recv() => match msg {
                Some(Ok((channel, payload))) => {
                    if channel == HEARTBEAT {
                        if payload == state.gateway.cluster.worker_id {
                            last_beat = Instant::now();
                            healthy = true;
                        }
                    } else {
                        on_notification(state, &channel, &payload);
                    }
                }
                Some(Err(e)) => break End::Lost(e),
                None => break End::Lost("listener task ended".into()),
            },
            _ = beat.tick() => {
                if connected.elapsed() >= n.max_age {
                    break End::Recycle;
                }
                if last_beat.elapsed() > n.heartbeat_timeout {
                    break End::Lost(format!(
                        "own heartbeat not seen for {:.1}s (Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS)",
                        last_beat.elapsed().as_secs_f64()
                    ));
                }
                state.gateway.cluster.publish(HEARTBEAT, &state.gateway.cluster.worker_id).await;
            }
        }
    };
    reader.abort();
    let _ = reader.await;
    (end, healthy)
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn on_notification(state: &Shared, channel: &str, payload: &str) {
    match channel {
        COMMANDS => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
                return;
            };
            let id = v["c"].as_str().and_then(|s| Uuid::parse_str(s).ok());
            let agent = v["a"].as_str().and_then(|s| Uuid::parse_str(s).ok());
            let (Some(id), Some(agent)) = (id, agent) else {
                return;
            };
            if !state.gateway.registry.is_connected(agent) {
                return; // another replica's agent
            }
            let state = state.clone();
            tokio::spawn(async move {
                match commands::get(&state.db, id).await {
                    Ok(Some(c)) if c.agent_id == Some(agent) && c.status == "pending" => {
                        delivery::push(&state, agent, &c).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, command_id = %id, "cannot load a notified command")
                    }
                }
            });
        }
        REVOKED => {
            if let Some(project) = payload.strip_prefix("project:") {
                let Ok(project) = Uuid::parse_str(project) else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    match projects::agent_ids(&state.db, project).await {
                        Ok(ids) => {
                            for a in ids {
                                state.gateway.registry.kick_agent(a, 4003);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot list a revoked project's agents")
                        }
                    }
                });
            } else if let Ok(agent) = Uuid::parse_str(payload) {
                state.gateway.registry.kick_agent(agent, 4003);
            }
        }
        _ => {}
    }
}

async fn reconcile_loop(state: Shared, every: Duration, mut stop: watch::Receiver<bool>) {
    while crate::workers::tick(every, &mut stop).await {
        reconcile_pass(state.clone()).await;
    }
}

/// Delivers pending commands of the agents connected here (claims are
/// conditional, so racing another delivery is harmless).
async fn reconcile_pass(state: Shared) {
    let agents = state.gateway.registry.agent_ids();
    if agents.is_empty() {
        return;
    }
    match commands::pending_for_agents(&state.db, &agents, RECONCILE_LIMIT).await {
        Ok(pending) => {
            for c in pending {
                if let Some(agent) = c.agent_id {
                    delivery::push(&state, agent, &c).await;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "registry reconcile pass failed"),
    }
}
