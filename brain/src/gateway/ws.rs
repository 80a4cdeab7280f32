//! `/ws/agent`: the admission pipeline (spec 2.3), then three cooperating
//! tasks per connection:
//! * the reader (this handler): idle timeout, size cap, verification in
//!   arrival order, hand-off to a bounded queue (back-pressure, never drops);
//! * the consumer: processes frames in order (ingest, heartbeats, ...);
//! * the writer: the only place that signs and sends, so brain→agent `seq`
//!   is strictly increasing on the wire.

use super::dispatch::{self, ConnCtx, Handled};
use super::{address_allowed, authenticate, frame_cap};
use super::{ByteCount, Held, Shared, CONNECTION_BYTE_BUDGET, PROCESS_BYTE_BUDGET};
use crate::auth::keyed::project_key;
use crate::fleet::live::Topic;
use crate::fleet::registry::{Entry, Kick, Outbound};
use crate::ingest::OverLimit;
use crate::net::bearer_token;
use crate::settings::mutant::Mutant;
use crate::settings::BRAIN_VERSION;
use crate::store::agents::{self, Credential};
use crate::store::Ts;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;
use z4j_protocol::handshake::{parse_first_frame, Hello};
use z4j_protocol::json::{Object, Value};
use z4j_protocol::{Binding, Direction, FrameType, ProjectKey, Signer, Verified, Verifier};

/// The server library's own message limit (uvicorn's default): above it the
/// library answers 1009; between the configured cap and this, we close 4400.
const LIBRARY_MESSAGE_LIMIT: usize = 16 * 1024 * 1024;
/// Brain→agent frames waiting for the writer; a full queue pauses the
/// consumer, which pauses the reader: memory stays bounded even when the
/// agent never reads.
const OUTBOUND_QUEUE: usize = 64;
/// After the reader stops, how long queued frames may take to finish.
const DRAIN: Duration = Duration::from_secs(10);
/// Event batches of one connection waiting for their commit.
const IN_FLIGHT_BATCHES: usize = 256;
/// Verified frames the reader may hold beyond a full ingest queue.
const READ_AHEAD: usize = 32;
/// How often a reader paused by a byte budget looks again.
const BUDGET_POLL: Duration = Duration::from_millis(5);
const CLOSE_WRITE: Duration = Duration::from_secs(5);
/// The socket's read chunk, allocated for every connection's life: the
/// library's 128 KiB made an idle agent cost about 155 KiB of brain memory
/// (`benches/RESULTS.md`, idle capacity); larger frames are read in more
/// chunks.
const WS_READ_BUFFER: usize = 16 * 1024;

pub async fn ws_agent(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ip = crate::net::client_ip::of_request(&state.settings, peer, &headers);
    let over_budget = state.connect_budget.hit(&ip.to_string()).is_err();
    let allowed = address_allowed(&state.settings, ip);
    let token = bearer_token(&headers).map(str::to_owned);
    let limit = LIBRARY_MESSAGE_LIMIT.max(frame_cap(&state.settings) + 1);
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _live = state.enter();
            let admission = Admission {
                over_budget,
                allowed,
                token,
                peer: ip.to_string(),
            };
            run(state, socket, admission).await;
        })
}

struct Admission {
    over_budget: bool,
    allowed: bool,
    token: Option<String>,
    peer: String,
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_WRITE, socket.send(Message::Close(Some(frame)))).await;
    // Give the peer a moment to answer the close handshake.
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.recv()).await;
}

/// A refusal: the close code and reason the socket is closed with.
type Refusal = (u16, &'static str);

/// Steps 2–16 of the admission pipeline, then the session.
async fn run(state: Shared, mut socket: WebSocket, adm: Admission) {
    let (cred, key) = match admit(&state, &adm).await {
        Ok(admitted) => admitted,
        Err((code, reason)) => return close(socket, code, reason).await,
    };
    let Some(first) = first_message(&mut socket).await else {
        return;
    };
    let hello = match handshake(&state, &cred, &first).await {
        Ok(hello) => hello,
        Err((code, reason)) => return close(socket, code, reason).await,
    };
    let session_id = Uuid::new_v4();
    let connected_at = Ts::now();
    let info = hello_info(&hello);
    match agents::mark_online(&state.db, cred.agent_id, &info, connected_at).await {
        Ok(true) => state.fleet().live.publish(cred.project_id, Topic::Agent),
        Ok(false) => return close(socket, 4401, "").await,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the agent's handshake");
            return close(socket, 1011, "").await;
        }
    }
    let cap = frame_cap(&state.settings);
    let ack = z4j_protocol::frame::hello_ack_wire(
        &session_id,
        BRAIN_VERSION,
        &cred.agent_id,
        &cred.project_id,
        cap as u64,
        chrono::Utc::now().timestamp_micros(),
    );
    if socket
        .send(Message::Binary(ack.into_bytes().into()))
        .await
        .is_err()
    {
        return;
    }
    let slot = Slot {
        session_id,
        agent_id: cred.agent_id,
        project_id: cred.project_id,
        conn_id: state.fleet().registry.next_conn_id(),
        worker_id: hello.worker_id.clone(),
        connected_at,
    };
    let refused = attach(&state, socket, &cred, key, &hello, &info, &slot).await;
    // One clean-up for every way a registered (or refused) slot ends.
    slot.finish(&state).await;
    if let Some((socket, code)) = refused {
        close(socket, code, "").await;
    }
}

/// Steps 2–6: budget, allow-list, token, project, signing key.
async fn admit(state: &Shared, adm: &Admission) -> Result<(Credential, ProjectKey), Refusal> {
    if adm.over_budget {
        return Err((4429, "agent connect rate limit exceeded"));
    }
    if !adm.allowed {
        tracing::warn!(peer = %adm.peer, "agent connection from an address outside Z4J_AGENT_IP_ALLOWLIST");
        return Err((4403, ""));
    }
    let cred = match &adm.token {
        Some(t) => authenticate(&state.settings, &state.db, t)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "agent token lookup failed");
                (1011, "")
            })?,
        None => None,
    };
    let Some(cred) = cred else {
        tracing::info!(peer = %adm.peer, "agent connection refused: unknown, revoked or missing token");
        return Err((4401, ""));
    };
    if !cred.project_active {
        return Err((4401, ""));
    }
    let key = project_key(&state.settings, cred.project_id).ok_or((1011, ""))?;
    Ok((cred, key))
}

/// Step 7: the first message, however long it takes (spec 12.19); `None`
/// when the socket ends first.
async fn first_message(socket: &mut WebSocket) -> Option<Vec<u8>> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => return Some(t.as_bytes().to_vec()),
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return None,
        }
    }
}

/// Steps 8–11: the first frame within the cap, a valid `hello`.
async fn handshake(state: &Shared, cred: &Credential, first: &[u8]) -> Result<Hello, Refusal> {
    if first.len() > frame_cap(&state.settings) {
        return Err((4400, ""));
    }
    let hello = parse_first_frame(first).map_err(|e| {
        tracing::info!(error = %e, agent_id = %cred.agent_id, "agent handshake refused");
        (e.ws_close_code(), "")
    })?;
    log_version_skew(&hello, cred.agent_id);
    if state.settings.mutant(Mutant::HelloNulKept) {
        return Ok(hello);
    }
    Ok(without_nul(hello))
}

/// The hello with each NUL in its text as U+FFFD (decision H8): the agent
/// is admitted, and its worker id is the same in the registry, the worker
/// row and every later heartbeat.
fn without_nul(h: Hello) -> Hello {
    use crate::store::text_column as t;
    let all = |v: Vec<String>| v.iter().map(|s| t(s)).collect::<Vec<_>>();
    Hello {
        protocol_version: t(&h.protocol_version),
        agent_version: t(&h.agent_version),
        framework: t(&h.framework),
        engines: all(h.engines),
        schedulers: all(h.schedulers),
        capabilities: h
            .capabilities
            .into_iter()
            .map(|(engine, caps)| (t(&engine), all(caps)))
            .collect(),
        worker_id: h.worker_id.as_deref().map(t),
        worker_role: h.worker_role.as_deref().map(t),
        runtime_features: all(h.runtime_features),
        ..h
    }
}

/// This connection: its session id and its place in the registry, from
/// registration to disconnect.
struct Slot {
    session_id: Uuid,
    agent_id: Uuid,
    project_id: Uuid,
    conn_id: u64,
    worker_id: Option<String>,
    connected_at: Ts,
}

impl Slot {
    /// Unregisters and marks the worker (and, if it was the last
    /// connection here, the agent) offline without overwriting a newer
    /// reconnect.
    async fn finish(&self, state: &Shared) {
        let last = state
            .fleet()
            .registry
            .unregister(self.agent_id, self.conn_id);
        if let Err(e) = agents::disconnected(
            &state.db,
            self.agent_id,
            self.worker_id.as_deref(),
            self.connected_at,
            last,
        )
        .await
        {
            tracing::warn!(error = %e, "cannot mark the agent connection offline");
        }
        // Told even when the flip failed: the page refetches what is true.
        state.fleet().live.publish(self.project_id, Topic::Agent);
        tracing::info!(agent_id = %self.agent_id, "agent disconnected");
    }
}

/// Steps 12–16: the slot (per-agent cap), a last admission check, the
/// worker row, then the session until it ends. A refusal hands the socket
/// back with its close code.
async fn attach(
    state: &Shared,
    socket: WebSocket,
    cred: &Credential,
    key: ProjectKey,
    hello: &Hello,
    info: &agents::HelloInfo,
    slot: &Slot,
) -> Option<(WebSocket, u16)> {
    let (kick, kick_rx) = Kick::new();
    let (out_tx, out_rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let retry_engines: Vec<String> = hello
        .capabilities
        .iter()
        .filter(|(_, caps)| {
            caps.iter()
                .any(|c| c == crate::commands::deliver::RETRY_MARKER)
        })
        .map(|(engine, _)| engine.clone())
        .collect();
    let entry = Entry {
        conn_id: slot.conn_id,
        worker_id: slot.worker_id.clone(),
        kick: kick.clone(),
        out: Some(out_tx.downgrade()),
        retry_engines: retry_engines.clone(),
    };
    let slot_cap = state.settings.ws_per_agent_concurrency_cap.max(0) as usize;
    if state
        .fleet()
        .registry
        .register(cred.agent_id, entry, slot_cap)
        .is_err()
    {
        tracing::warn!(agent_id = %cred.agent_id, cap = slot_cap, "agent worker connection over Z4J_WS_PER_AGENT_CONCURRENCY_CAP");
        return Some((socket, 4429));
    }
    if !matches!(
        agents::still_admitted(&state.db, cred.agent_id).await,
        Ok(true)
    ) {
        return Some((socket, 4003));
    }
    if let Err(e) = agents::upsert_worker(
        &state.db,
        cred.agent_id,
        cred.project_id,
        info,
        slot.connected_at,
    )
    .await
    {
        tracing::warn!(error = %e, "agent worker row not recorded");
    }
    tracing::info!(agent_id = %cred.agent_id, session_id = %slot.session_id, worker_id = hello.worker_id.as_deref(), "agent connected");
    let binding = Binding {
        agent_id: cred.agent_id.to_string(),
        project_id: cred.project_id.to_string(),
        session_id: slot.session_id.to_string(),
    };
    let session = Session {
        state: state.clone(),
        conn: Arc::new(ConnCtx::new(
            cred.agent_id,
            cred.project_id,
            hello.worker_id.clone(),
        )),
        kick,
        kick_rx,
        verifier: super::mutant_verifier(
            &state.settings,
            Verifier::new(key.clone(), binding.clone(), Direction::AgentToBrain),
        ),
        signer: Signer::new(key, binding),
        cap: frame_cap(&state.settings),
        out: (out_tx, out_rx),
    };
    // Step 15: commands that waited for this agent, right after hello_ack.
    session.serve(socket, retry_engines).await;
    None
}

fn log_version_skew(hello: &Hello, agent_id: Uuid) {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    if let (Some((am, an)), Some((bm, bn))) = (parse(&hello.agent_version), parse(BRAIN_VERSION)) {
        if am != bm || (am, an) > (bm, bn) || an + 1 < bn {
            tracing::warn!(agent_id = %agent_id, agent_version = %hello.agent_version, brain_version = BRAIN_VERSION, "agent version outside the supported skew");
        }
    }
}

fn hello_info(h: &Hello) -> agents::HelloInfo {
    let capabilities = serde_json::to_value(&h.capabilities).unwrap_or_default();
    agents::HelloInfo {
        protocol_version: h.protocol_version.clone(),
        agent_version: h.agent_version.clone(),
        framework: h.framework.clone(),
        engines: h.engines.clone(),
        schedulers: h.schedulers.clone(),
        capabilities,
        host_name: h
            .host
            .get("name")
            .and_then(Value::as_str)
            .map(crate::store::text_column),
        runtime_features: h.runtime_features.clone(),
        worker_id: h.worker_id.clone(),
        worker_role: h.worker_role.clone(),
        worker_pid: h.worker_pid,
        worker_started_at: h
            .worker_started_at
            .as_deref()
            .and_then(z4j_protocol::isotime::parse_python_isoformat)
            .map(|t| crate::ingest::prepare::ts_from_micros(t.micros)),
    }
}

struct Session {
    state: Shared,
    conn: Arc<ConnCtx>,
    kick: Kick,
    kick_rx: watch::Receiver<Option<u16>>,
    verifier: Verifier,
    signer: Signer,
    cap: usize,
    out: (mpsc::Sender<Outbound>, mpsc::Receiver<Outbound>),
}

/// Resolves when the connection is told to close; yields the code.
async fn kicked(rx: &mut watch::Receiver<Option<u16>>) -> u16 {
    loop {
        if let Some(code) = *rx.borrow_and_update() {
            return code;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Session {
    async fn serve(self, socket: WebSocket, retry_engines: Vec<String>) {
        let Session {
            state,
            conn,
            kick,
            mut kick_rx,
            mut verifier,
            signer,
            cap,
            out: (out_tx, out_rx),
        } = self;
        let s = state.settings.clone();
        let (sink, mut stream) = socket.split();
        let queue_size = s.ws_ingest_queue_maxsize.max(1) as usize;
        let (queue_tx, queue_rx) = mpsc::channel::<(FrameType, Object, Held)>(queue_size);
        let conn_bytes = Arc::new(ByteCount::default());
        let final_code = Arc::new(AtomicU16::new(1000));
        let writer = tokio::spawn(write_loop(
            sink,
            signer,
            out_rx,
            kick_rx.clone(),
            final_code.clone(),
        ));
        tokio::spawn(state.commands.clone().push_pending(
            conn.agent_id,
            out_tx.clone(),
            retry_engines,
        ));
        let consumer = tokio::spawn(consume_loop(
            state.clone(),
            conn.clone(),
            queue_rx,
            out_tx,
            kick.clone(),
        ));
        let idle = if s.mutant(Mutant::IdleTimeoutNever) {
            Duration::from_secs(86_400 * 365)
        } else {
            Duration::from_secs(s.ws_idle_timeout_seconds.max(1) as u64)
        };
        let mut deadline = tokio::time::Instant::now() + idle;
        // Verified frames waiting for room in the ingest queue. While there
        // are fewer than READ_AHEAD the socket keeps being read, so pings are
        // answered even when the queue is full (as the reference server
        // library's own message buffer does); beyond that, reading pauses and
        // TCP pushes back on the agent. Memory stays bounded either way.
        let mut backlog: VecDeque<(FrameType, Object, Held)> = VecDeque::new();
        loop {
            // Bytes count from the read until the commit (or the end of the
            // frame's handling), queued and in flight alike.
            let held = conn_bytes.get();
            let over_budget = held >= CONNECTION_BYTE_BUDGET
                || (held > 0 && state.held_bytes.get() >= PROCESS_BYTE_BUDGET);
            let reading = backlog.len() < READ_AHEAD && !over_budget;
            let next = tokio::select! {
                biased;
                _ = kicked(&mut kick_rx) => break,
                permit = queue_tx.reserve(), if !backlog.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(f) = backlog.pop_front() {
                        permit.send(f);
                    }
                    // Progress: a paused reader is not an idle agent.
                    deadline = tokio::time::Instant::now() + idle;
                    continue;
                }
                r = tokio::time::timeout_at(deadline, stream.next()), if reading => r,
                _ = tokio::time::sleep(BUDGET_POLL), if over_budget => {
                    // Paused by the brain, not idle.
                    deadline = tokio::time::Instant::now() + idle;
                    continue;
                }
            };
            let bytes: Vec<u8> = match next {
                Err(_) => {
                    tracing::info!(agent_id = %conn.agent_id, seconds = idle.as_secs(), "agent idle; closing 4408");
                    final_code.store(4408, Ordering::Release);
                    break;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Text(t)))) => t.as_bytes().to_vec(),
                Ok(Some(Ok(Message::Binary(b)))) => b.to_vec(),
            };
            // Only data messages prove the agent is alive.
            deadline = tokio::time::Instant::now() + idle;
            if bytes.len() > cap {
                tracing::warn!(agent_id = %conn.agent_id, bytes = bytes.len(), cap, "frame over the cap; closing 4400");
                final_code.store(4400, Ordering::Release);
                break;
            }
            match verifier.verify(&bytes, state.now()) {
                Ok(Verified::Signed { frame_type, frame }) => backlog.push_back((
                    frame_type,
                    frame,
                    Held::new(bytes.len(), &conn_bytes, &state.held_bytes),
                )),
                // A mid-session hello is validated and ignored (spec 12.8).
                Ok(Verified::Handshake(_)) => {}
                Err(e) => {
                    tracing::warn!(agent_id = %conn.agent_id, error = %e, "frame refused; closing");
                    final_code.store(e.ws_close_code(), Ordering::Release);
                    break;
                }
            }
        }
        // Frames verified before the end are still processed, unless the
        // connection was kicked (displaced, revoked, shutting down).
        if kick_rx.borrow().is_none() {
            while let Some(f) = backlog.pop_front() {
                match tokio::time::timeout(DRAIN, queue_tx.send(f)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        }
        drop(stream);
        drop(queue_tx);
        // Frames already verified are still processed (and acked if the
        // socket is writable); then the writer sends the close frame.
        let consumer_abort = consumer.abort_handle();
        if tokio::time::timeout(DRAIN, consumer).await.is_err() {
            consumer_abort.abort();
        }
        let writer_abort = writer.abort_handle();
        if tokio::time::timeout(CLOSE_WRITE + Duration::from_secs(1), writer)
            .await
            .is_err()
        {
            writer_abort.abort();
        }
    }
}

/// Processes frames in arrival order. Event batches are handed to the
/// writer without waiting for their commit (so one connection keeps many in
/// flight and the writer can group them); the acker sends each ack once its
/// commit is done.
async fn consume_loop(
    state: Shared,
    conn: Arc<ConnCtx>,
    mut queue: mpsc::Receiver<(FrameType, Object, Held)>,
    out: mpsc::Sender<Outbound>,
    kick: Kick,
) {
    let (pending_tx, pending_rx) = mpsc::channel::<(dispatch::PendingAck, Held)>(IN_FLIGHT_BATCHES);
    let acker = tokio::spawn(ack_loop(pending_rx, out.clone()));
    while let Some((frame_type, frame, held)) = queue.recv().await {
        match dispatch::handle(&state, &conn, frame_type, &frame, OverLimit::Wait).await {
            Handled::Writing(pending) if state.settings.mutant(Mutant::AckBeforeCommit) => {
                send_ack(&out, pending.ack_now()).await;
                tokio::spawn(pending.resolve());
            }
            // The rows stay counted until their commit.
            Handled::Writing(pending) => {
                if pending_tx.send((pending, held)).await.is_err() {
                    break;
                }
            }
            Handled::Ack(ack) => send_ack(&out, ack).await,
            Handled::Revoked => {
                kick.close(4003);
                break;
            }
            Handled::Done | Handled::Transient | Handled::RateLimited => {}
        }
    }
    drop(pending_tx);
    let _ = acker.await;
}

async fn ack_loop(
    mut pending: mpsc::Receiver<(dispatch::PendingAck, Held)>,
    out: mpsc::Sender<Outbound>,
) {
    while let Some((p, held)) = pending.recv().await {
        let handled = p.resolve().await;
        drop(held);
        if let Handled::Ack(ack) = handled {
            send_ack(&out, ack).await;
        }
    }
}

async fn send_ack(out: &mpsc::Sender<Outbound>, ack: z4j_protocol::frame::EventBatchAck) {
    let msg = Outbound {
        frame_type: FrameType::EventBatchAck,
        id: ack.frame_id(),
        payload: ack.payload(),
    };
    // The writer may be gone (socket closed): the events are committed
    // anyway, and the agent's re-send is deduplicated.
    let _ = out.send(msg).await;
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut signer: Signer,
    mut out: mpsc::Receiver<Outbound>,
    mut kick_rx: watch::Receiver<Option<u16>>,
    final_code: Arc<AtomicU16>,
) {
    let code = loop {
        let msg = tokio::select! {
            biased;
            code = kicked(&mut kick_rx) => break code,
            m = out.recv() => m,
        };
        let Some(msg) = msg else {
            break final_code.load(Ordering::Acquire);
        };
        let now = chrono::Utc::now().timestamp_micros();
        let text = match signer.sign(msg.frame_type, &msg.id, &msg.payload, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an outbound frame");
                continue;
            }
        };
        tokio::select! {
            r = sink.send(Message::Binary(text.into_bytes().into())) => if r.is_err() { return },
            code = kicked(&mut kick_rx) => break code,
        }
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    };
    let _ = tokio::time::timeout(CLOSE_WRITE, sink.send(Message::Close(Some(frame)))).await;
}
