//! The agent gateway: WebSocket (`/ws/agent`) and HTTPS long-poll
//! (`/api/v1/agent/*`) transports over one admission policy and one frame
//! dispatcher.

pub mod budget;
pub mod capability;
pub mod cluster;
pub mod delivery;
pub mod dispatch;
pub mod longpoll;
pub mod registry;
pub mod ws;

use crate::http::client_ip;
use crate::ingest::Ingestor;
use crate::settings::Settings;
use crate::store::{agents, Db, StoreError};
use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;
use z4j_protocol::secret::agent_token_hash;
use z4j_protocol::{Now, ProjectKey};

/// Fixed by the protocol (spec 9): 600 connection attempts per address per
/// rolling minute.
pub const CONNECT_BUDGET: usize = 600;
pub const CONNECT_WINDOW: Duration = Duration::from_secs(60);

pub struct Gateway {
    pub registry: registry::Registry,
    pub cluster: cluster::Cluster,
    pub connect_budget: budget::SlidingWindow,
    pub ingestor: Ingestor,
    pub longpoll: longpoll::Sessions,
    started: Instant,
    live: AtomicUsize,
    closing: AtomicBool,
}

impl Gateway {
    pub fn new(
        settings: &Settings,
        db: Db,
        alerts: crate::notify::Alerts,
    ) -> (Arc<Gateway>, tokio::task::JoinHandle<()>) {
        let cluster = cluster::Cluster::new(settings, &db);
        let (ingestor, writer) = Ingestor::new(settings, db, alerts);
        (
            Arc::new(Gateway {
                registry: registry::Registry::default(),
                cluster,
                connect_budget: budget::SlidingWindow::new(CONNECT_BUDGET, CONNECT_WINDOW),
                ingestor,
                longpoll: longpoll::Sessions::default(),
                started: Instant::now(),
                live: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
            }),
            writer,
        )
    }

    /// The clock verifiers use.
    pub fn now(&self) -> Now {
        Now::system(self.started)
    }

    /// True once shutdown began (long polls return early).
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Connections whose handlers are still running (including clean-up).
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub fn enter(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    /// A revoked agent: close its sockets here and on every replica (4003).
    pub async fn revoke_agent(&self, agent_id: Uuid) -> usize {
        let kicked = self.registry.kick_agent(agent_id, 4003);
        self.cluster.publish_agent_revoked(agent_id).await;
        kicked
    }

    /// An archived project: close its agents' sockets everywhere (4003).
    pub async fn revoke_project(&self, project_id: Uuid, agents: &[Uuid]) {
        for a in agents {
            self.registry.kick_agent(*a, 4003);
        }
        self.cluster.publish_project_revoked(project_id).await;
    }

    /// Shutdown: close every socket with 1001 and wait (bounded) until their
    /// handlers finished writing what they had acknowledged.
    pub async fn drain(&self, budget: Duration) {
        self.closing.store(true, Ordering::Release);
        self.registry.kick_all(1001);
        let deadline = Instant::now() + budget;
        while self.live_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct LiveGuard(Arc<Gateway>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The effective inbound frame cap (spec 2.6).
pub fn frame_cap(s: &Settings) -> usize {
    s.ws_max_frame_bytes.min(s.max_ws_frame_bytes).max(0) as usize
}

/// The client address after trusted-proxy resolution.
pub fn client_addr(s: &Settings, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    client_ip::resolve(peer.ip(), xff, &s.trusted_proxies.0)
}

/// `Z4J_AGENT_IP_ALLOWLIST` (empty = everyone; loopback is not exempt).
pub fn address_allowed(s: &Settings, ip: IpAddr) -> bool {
    let list = &s.agent_ip_allowlist.0;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    list.is_empty() || list.iter().any(|n| n.contains(&ip))
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// case-insensitively, surrounding whitespace ignored).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(|c: char| c.is_whitespace())?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Looks the token up under the current master secret, then each previous
/// one (spec 2.5).
pub async fn authenticate(
    s: &Settings,
    db: &Db,
    token: &str,
) -> Result<Option<agents::Credential>, StoreError> {
    let hashes: Vec<String> = s
        .master_secrets()
        .into_iter()
        .map(|m| agent_token_hash(m.as_bytes(), token))
        .collect();
    agents::find_by_token_hashes(db, &hashes).await
}

/// The per-project signing key (current master only, spec 4.4).
pub fn project_key(s: &Settings, project_id: Uuid) -> Option<ProjectKey> {
    let master = s.secret.as_deref()?;
    ProjectKey::derive(master.as_bytes(), project_id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing_is_lenient_about_case_and_spacing() {
        let mut h = HeaderMap::new();
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bEaReR    abc   ", Some("abc")),
            ("  bearer\tabc", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer   ", None),
            ("abc", None),
        ] {
            h.insert("authorization", HeaderValue::from_static(value));
            assert_eq!(bearer_token(&h), want, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
