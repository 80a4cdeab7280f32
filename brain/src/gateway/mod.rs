//! The agent gateway: WebSocket (`/ws/agent`) and HTTPS long-poll
//! (`/api/v1/agent/*`) transports over one admission policy and one frame
//! dispatcher.

pub mod dispatch;
pub mod longpoll;
pub mod ws;

use crate::commands::Commands;
use crate::fleet::Fleet;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::net::SlidingWindow;
use crate::settings::Settings;
use crate::store::{agents, Db, StoreError};
use axum::routing::{get, post};
use axum::Router;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use z4j_protocol::Now;

/// Fixed by the protocol (spec 9): 600 connection attempts per address per
/// rolling minute.
pub const CONNECT_BUDGET: usize = 600;
pub const CONNECT_WINDOW: Duration = Duration::from_secs(60);

/// Bytes of verified WebSocket frames one connection may hold in memory,
/// from their read until their commit (specs/decisions.md G12): past it
/// the connection stops reading and TCP pushes back on the agent.
pub const CONNECTION_BYTE_BUDGET: usize = 8 << 20;
/// The same for all connections together; a connection holding nothing may
/// always read one frame, so no agent is starved by another's backlog.
pub const PROCESS_BYTE_BUDGET: usize = 256 << 20;

/// A byte count shared by the frames it covers.
#[derive(Default)]
pub struct ByteCount(AtomicUsize);

impl ByteCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// `n` bytes counted against a connection's and the process's budgets
/// until dropped, wherever the frame they stand for ends.
pub struct Held {
    n: usize,
    conn: Arc<ByteCount>,
    process: Arc<ByteCount>,
}

impl Held {
    pub fn new(n: usize, conn: &Arc<ByteCount>, process: &Arc<ByteCount>) -> Held {
        conn.0.fetch_add(n, Ordering::AcqRel);
        process.0.fetch_add(n, Ordering::AcqRel);
        Held {
            n,
            conn: conn.clone(),
            process: process.clone(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.conn.0.fetch_sub(self.n, Ordering::AcqRel);
        self.process.0.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// The transports' state: what every agent connection works with.
pub struct Gateway {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub commands: Commands,
    pub metrics: Arc<Metrics>,
    pub connect_budget: SlidingWindow,
    pub ingestor: Ingestor,
    pub longpoll: longpoll::Sessions,
    /// Bytes of verified frames all WebSocket connections hold.
    pub held_bytes: Arc<ByteCount>,
    started: Instant,
    live: AtomicUsize,
    closing: AtomicBool,
}

impl Gateway {
    pub fn new(
        commands: Commands,
        settings: Arc<Settings>,
        db: Db,
        ingestor: Ingestor,
        metrics: Arc<Metrics>,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            settings,
            db,
            commands,
            connect_budget: SlidingWindow::new(CONNECT_BUDGET, CONNECT_WINDOW),
            ingestor,
            longpoll: longpoll::Sessions::new(metrics.clone()),
            held_bytes: Arc::new(ByteCount::default()),
            metrics,
            started: Instant::now(),
            live: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        })
    }

    pub fn fleet(&self) -> &Fleet {
        self.commands.fleet()
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

    /// Shutdown: close every socket with 1001 and wait (bounded) until their
    /// handlers finished writing what they had acknowledged.
    pub async fn drain(&self, budget: Duration) {
        self.closing.store(true, Ordering::Release);
        self.fleet().registry.kick_all(1001);
        let deadline = Instant::now() + budget;
        while self.live_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The agent transports' routes: WebSocket and long-poll.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/ws/agent", get(ws::ws_agent))
        .route("/api/v1/agent/events", post(longpoll::events))
        .route("/api/v1/agent/commands", get(longpoll::commands))
}

pub type Shared = Arc<Gateway>;

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

/// `Z4J_AGENT_IP_ALLOWLIST` (empty = everyone; loopback is not exempt).
pub fn address_allowed(s: &Settings, ip: IpAddr) -> bool {
    let list = &s.agent_ip_allowlist.0;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    list.is_empty() || list.iter().any(|n| n.contains(&ip))
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
        .map(|m| crate::auth::keyed::agent_token(m, token))
        .collect();
    agents::find_by_token_hashes(db, &hashes).await
}

/// A session's verifier, with the checks a behaviour mutant switches off
/// (mutation testing; debug builds or `--features mutants` only).
#[cfg(any(debug_assertions, feature = "mutants"))]
fn mutant_verifier(
    s: &Settings,
    mut v: z4j_protocol::verify::Verifier,
) -> z4j_protocol::verify::Verifier {
    use crate::settings::mutant::Mutant;
    v.mutate(z4j_protocol::verify::Mutation {
        skip_hmac: s.mutant(Mutant::FrameHmacUnchecked),
        skip_replay_guard: s.mutant(Mutant::ReplayGuardOff),
    });
    v
}

#[cfg(not(any(debug_assertions, feature = "mutants")))]
fn mutant_verifier(
    _: &Settings,
    v: z4j_protocol::verify::Verifier,
) -> z4j_protocol::verify::Verifier {
    v
}
