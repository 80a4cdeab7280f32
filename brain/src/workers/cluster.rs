//! The listener and reconcile loops of a `postgres_notify` replica
//! (storage spec 4.3): a dedicated listener connection watches its own
//! heartbeat and is rebuilt when it goes quiet or gets old; a reconcile
//! poll delivers what a lost NOTIFY left pending, so a lost notification
//! delays a command but never loses it.

use crate::commands::Commands;
use crate::fleet::cluster::{Notify, COMMANDS, HEARTBEAT, REVOKED};
use crate::fleet::live::{self, Wire};
use crate::fleet::{Fleet, CLOSE_REVOKED};
use crate::store::{self, projects, Db};
use sqlx::postgres::PgListener;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// Reconnect delays after a lost listener (spec 4.3); the last one repeats.
const BACKOFF: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0];
/// Commands delivered per reconcile pass.
const RECONCILE_LIMIT: i64 = 500;

/// What the loops work with.
#[derive(Clone)]
pub struct Ctx {
    pub db: Db,
    pub commands: Commands,
}

impl Ctx {
    fn fleet(&self) -> &Fleet {
        self.commands.fleet()
    }
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
pub async fn run(state: Ctx, stop: watch::Receiver<bool>) {
    let fleet = state.commands.fleet().clone();
    let Some(n) = fleet.cluster.notify() else {
        return;
    };
    let reconcile = tokio::spawn(reconcile_loop(
        state.clone(),
        n.reconcile_every,
        stop.clone(),
    ));
    let outbox = fleet
        .live
        .take_outbox()
        .map(|rx| tokio::spawn(dashboard_outbox(fleet.clone(), rx)));
    listen_loop(&state, n, stop).await;
    let _ = reconcile.await;
    if let Some(task) = outbox {
        task.abort();
    }
}

/// The dashboard hub's messages for the other replicas, published in order
/// on the shared pool.
async fn dashboard_outbox(fleet: std::sync::Arc<Fleet>, mut rx: mpsc::Receiver<Wire>) {
    while let Some(w) = rx.recv().await {
        let payload = w.encode(&fleet.cluster.worker_id);
        fleet.cluster.publish(live::CHANNEL, &payload).await;
    }
}

async fn listen_loop(state: &Ctx, n: &Notify, mut stop: watch::Receiver<bool>) {
    let mut failures = 0usize;
    while !*stop.borrow() {
        let end = match connect(n).await {
            Ok((pool, listener)) => {
                tracing::info!(worker_id = %state.fleet().cluster.worker_id, "registry listener connected");
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
                if !super::tick(Duration::from_secs_f64(delay), &mut stop).await {
                    return;
                }
            }
        }
    }
}

async fn connect(n: &Notify) -> Result<(sqlx::PgPool, PgListener), String> {
    store::cluster::listen(
        &n.listener_options,
        n.connect_timeout,
        &[COMMANDS, HEARTBEAT, REVOKED, live::CHANNEL],
    )
    .await
}

/// Serves one connection until it ends. The second value says whether its
/// own heartbeat came back at least once (a healthy connection resets the
/// reconnect backoff).
async fn serve(
    state: &Ctx,
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
                        if payload == state.fleet().cluster.worker_id {
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
                state.fleet().cluster.publish(HEARTBEAT, &state.fleet().cluster.worker_id).await;
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

fn on_notification(state: &Ctx, channel: &str, payload: &str) {
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
            if !state.fleet().registry.is_connected(agent) {
                return; // another replica's agent: no task, no query
            }
            let commands = state.commands.clone();
            tokio::spawn(async move { commands.on_published(id, agent).await });
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
                                state.fleet().registry.kick_agent(a, CLOSE_REVOKED);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot list a revoked project's agents")
                        }
                    }
                });
            } else if let Ok(agent) = Uuid::parse_str(payload) {
                state.fleet().registry.kick_agent(agent, CLOSE_REVOKED);
            }
        }
        live::CHANNEL => {
            let hub = &state.fleet().live;
            match Wire::decode(payload, &state.fleet().cluster.worker_id) {
                Some(Wire::Topic { project, topic }) => hub.publish_remote(project, topic),
                Some(Wire::Close { scope, code }) => {
                    hub.close_local(scope, code);
                }
                None => {}
            }
        }
        _ => {}
    }
}

async fn reconcile_loop(state: Ctx, every: Duration, mut stop: watch::Receiver<bool>) {
    while super::tick(every, &mut stop).await {
        reconcile_pass(state.clone()).await;
    }
}

/// Delivers pending commands of the agents connected here.
async fn reconcile_pass(state: Ctx) {
    if let Err(e) = state.commands.deliver_pending_here(RECONCILE_LIMIT).await {
        tracing::warn!(error = %e, "registry reconcile pass failed");
    }
}
