//! HTTPS long-poll transport (spec 7): the same signed frames over
//! `POST /api/v1/agent/events` and `GET /api/v1/agent/commands`, with a
//! session per `(agent, X-Z4J-Session-Nonce)`.

use super::dispatch::{self, ConnCtx, Handled};
use super::Shared;
use super::{address_allowed, authenticate, frame_cap};
use crate::auth::keyed::project_key;
use crate::ingest::OverLimit;
use crate::net::bearer_token;
use crate::net::error::{ApiError, SchemaIssue};
use crate::net::query::Query;
use crate::store::agents::Credential;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use z4j_protocol::verify::ErrorClass;
use z4j_protocol::{Binding, Direction, Signer, Verified, Verifier};

const SESSION_IDLE: Duration = Duration::from_secs(300);
const MAX_SESSIONS: usize = 4096;
const MAX_SESSIONS_PER_AGENT: usize = 16;
const MAX_FRAMES_PER_POST: usize = 500;
const MAX_ERRORS: usize = 10;

struct LpSession {
    verifier: Verifier,
    signer: Signer,
    conn: Arc<ConnCtx>,
    last_used: Instant,
}

enum Slot {
    Live(Arc<tokio::sync::Mutex<LpSession>>),
    Invalidated,
}

pub struct Sessions {
    metrics: Arc<crate::metrics::Metrics>,
    slots: Mutex<HashMap<(Uuid, String), Slot>>,
    /// Agents whose next session must start with a connect probe.
    needs_probe: Mutex<HashMap<Uuid, ()>>,
}

enum Lookup {
    Live(Arc<tokio::sync::Mutex<LpSession>>),
    Invalidated,
    NeedsProbe,
    Full,
}

impl Sessions {
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Sessions {
        Sessions {
            metrics,
            slots: Mutex::default(),
            needs_probe: Mutex::default(),
        }
    }

    /// The slot map, locked.
    fn slots(&self) -> Slots<'_> {
        Slots {
            map: self.slots.lock().unwrap_or_else(|p| p.into_inner()),
            metrics: &self.metrics,
        }
    }

    fn lookup(&self, state: &Shared, cred: &Credential, nonce: &str, probe: bool) -> Lookup {
        let key = (cred.agent_id, nonce.to_owned());
        let mut slots = self.slots();
        let mut needs = self.needs_probe.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&key) {
            Some(Slot::Live(s)) => return Lookup::Live(s.clone()),
            Some(Slot::Invalidated) => return Lookup::Invalidated,
            None => {}
        }
        if needs.contains_key(&cred.agent_id) {
            if !probe {
                return Lookup::NeedsProbe;
            }
            needs.remove(&cred.agent_id);
            slots.retain(|(a, _), s| *a != cred.agent_id || matches!(s, Slot::Live(_)));
        }
        let now = Instant::now();
        let idle = |s: &Slot| match s {
            Slot::Live(l) => l
                .try_lock()
                .map(|l| now.duration_since(l.last_used) >= SESSION_IDLE)
                .unwrap_or(false),
            Slot::Invalidated => true,
        };
        let mine = slots.keys().filter(|(a, _)| *a == cred.agent_id).count();
        if mine >= MAX_SESSIONS_PER_AGENT || slots.len() >= MAX_SESSIONS {
            // Only an idle session of the same agent may make room.
            let victim = slots
                .iter()
                .find(|((a, _), s)| *a == cred.agent_id && idle(s))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    slots.remove(&k);
                }
                None => return Lookup::Full,
            }
        }
        let Some(key_bytes) = project_key(&state.settings, cred.project_id) else {
            return Lookup::Full;
        };
        let binding = Binding {
            agent_id: cred.agent_id.to_string(),
            project_id: cred.project_id.to_string(),
            session_id: nonce.to_owned(),
        };
        let session = Arc::new(tokio::sync::Mutex::new(LpSession {
            verifier: super::mutant_verifier(
                &state.settings,
                Verifier::new(key_bytes.clone(), binding.clone(), Direction::AgentToBrain),
            ),
            signer: Signer::new(key_bytes, binding),
            conn: Arc::new(ConnCtx::new(cred.agent_id, cred.project_id, None)),
            last_used: now,
        }));
        slots.insert(key, Slot::Live(session.clone()));
        Lookup::Live(session)
    }

    /// A signature failure: this nonce is dead, and the agent must probe
    /// with a fresh one before anything else is accepted.
    fn invalidate(&self, agent_id: Uuid, nonce: &str) {
        self.slots()
            .insert((agent_id, nonce.to_owned()), Slot::Invalidated);
        self.needs_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id, ());
    }

    fn drop_session(&self, agent_id: Uuid, nonce: &str) {
        self.slots().remove(&(agent_id, nonce.to_owned()));
    }
}

/// The locked slot map. Dropping it republishes the number of sessions held
/// (live or invalidated) for `/metrics`, so no change to the map can leave
/// the gauge stale.
struct Slots<'a> {
    map: std::sync::MutexGuard<'a, HashMap<(Uuid, String), Slot>>,
    metrics: &'a crate::metrics::Metrics,
}

impl std::ops::Deref for Slots<'_> {
    type Target = HashMap<(Uuid, String), Slot>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for Slots<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Drop for Slots<'_> {
    fn drop(&mut self) {
        self.metrics
            .longpoll_sessions
            .store(self.map.len() as i64, std::sync::atomic::Ordering::Relaxed);
    }
}

fn detail(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({"detail": text.into()}))).into_response()
}

/// Check 1 of spec 7.2, the agent-connect budget: the client address, or
/// the seconds to wait.
fn admit(state: &Shared, peer: SocketAddr, headers: &HeaderMap) -> Result<std::net::IpAddr, u64> {
    let ip = crate::net::client_ip::of_request(&state.settings, peer, headers);
    state.connect_budget.hit(&ip.to_string())?;
    Ok(ip)
}

fn too_many(retry: u64) -> Response {
    let mut r = detail(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests; retry in {retry} seconds (agent-connect)"),
    );
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

async fn authorize(
    state: &Shared,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
) -> Result<Credential, Response> {
    if !address_allowed(&state.settings, ip) {
        return Err(ApiError::ip_denied("agent").into_response());
    }
    let cred = match bearer_token(headers) {
        Some(t) => authenticate(&state.settings, &state.db, t)
            .await
            .map_err(|e| ApiError::from(e).into_response())?,
        None => None,
    };
    let Some(cred) = cred else {
        return Err(detail(StatusCode::UNAUTHORIZED, "invalid agent token"));
    };
    if !cred.project_active {
        return Err(ApiError::project_inactive().into_response());
    }
    Ok(cred)
}

fn identity_headers(resp: &mut Response, cred: &Credential) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-z4j-agent-id", cred.agent_id.to_string()),
        ("x-z4j-project-id", cred.project_id.to_string()),
        ("x-z4j-longpoll-worker", std::process::id().to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

fn nonce_of(headers: &HeaderMap) -> String {
    headers
        .get("x-z4j-session-nonce")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().chars().take(128).collect())
        .unwrap_or_default()
}

fn session_refusal(lookup: &Lookup) -> Option<Response> {
    match lookup {
        Lookup::Live(_) => None,
        Lookup::Invalidated => Some(detail(
            StatusCode::CONFLICT,
            "long-poll session invalidated; reconnect with a fresh session nonce",
        )),
        Lookup::NeedsProbe => Some(detail(
            StatusCode::CONFLICT,
            "long-poll session invalidated; perform the connect probe with a fresh session nonce",
        )),
        Lookup::Full => {
            let mut r = detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many long-poll sessions; retry shortly",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            Some(r)
        }
    }
}

pub async fn commands(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ip = match admit(&state, peer, &headers) {
        Ok(v) => v,
        Err(retry) => return too_many(retry),
    };
    let q = Query::parse(query);
    let mut issues = Vec::new();
    let wait = q.int("wait", 0, 60, &mut issues).unwrap_or(30);
    let max_frames = q.int("max_frames", 0, 500, &mut issues).unwrap_or(50);
    if !issues.is_empty() {
        return ApiError::Schema(issues).into_response();
    }
    let cred = match authorize(&state, &headers, ip).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let nonce = nonce_of(&headers);
    let probe = max_frames == 0;
    let lookup = state.longpoll.lookup(&state, &cred, &nonce, probe);
    if let Some(mut r) = session_refusal(&lookup) {
        identity_headers(&mut r, &cred);
        return r;
    }
    if let Lookup::Live(session) = &lookup {
        session.lock().await.last_used = Instant::now();
    }
    seen(&state, &cred).await;
    let mut frames: Vec<String> = Vec::new();
    if !probe {
        let Lookup::Live(session) = &lookup else {
            return ApiError::Internal("long-poll session missing".into()).into_response();
        };
        let contracts = retry_contracts(&headers);
        let deadline = Instant::now() + Duration::from_secs(wait as u64);
        loop {
            match crate::store::agents::still_admitted(&state.db, cred.agent_id).await {
                Ok(true) => {}
                Ok(false) => return detail(StatusCode::UNAUTHORIZED, "invalid agent token"),
                Err(e) => return ApiError::from(e).into_response(),
            }
            match collect_commands(&state, session, cred.agent_id, &contracts, max_frames).await {
                Ok(f) => frames = f,
                Err(e) => return e.into_response(),
            }
            if !frames.is_empty() || Instant::now() >= deadline || state.closing() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250).min(deadline - Instant::now())).await;
        }
    }
    let mut r = Json(json!({ "frames": frames })).into_response();
    identity_headers(&mut r, &cred);
    r
}

/// `X-Z4J-Retry-Contracts: celery=1,rq=1` → the engines that may receive
/// retry commands on this session.
fn retry_contracts(headers: &HeaderMap) -> Vec<String> {
    headers
        .get("x-z4j-retry-contracts")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(_, v)| v.trim() == "1")
        .map(|(k, _)| k.trim().to_owned())
        .collect()
}

/// Claims deliverable commands and signs each with the session's signer.
async fn collect_commands(
    state: &Shared,
    session: &Arc<tokio::sync::Mutex<LpSession>>,
    agent_id: Uuid,
    contracts: &[String],
    max_frames: i64,
) -> Result<Vec<String>, ApiError> {
    let claimed = state
        .commands
        .claim_for_poll(agent_id, contracts, max_frames)
        .await?;
    let mut frames = Vec::new();
    for c in claimed {
        let msg = state.commands.frame(&c);
        let now = chrono::Utc::now().timestamp_micros();
        let signed = session
            .lock()
            .await
            .signer
            .sign(msg.frame_type, &msg.id, &msg.payload, now)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        frames.push(signed);
    }
    Ok(frames)
}

#[derive(serde::Deserialize)]
struct EventsBody {
    frames: Vec<serde_json::Value>,
}

/// The body has already passed `Z4J_MAX_PAYLOAD_SIZE_BYTES` (the body cap
/// layer); each frame is also held to the frame cap `cap`, which only bites
/// when the payload cap is raised above it (specs/decisions.md G5).
fn parse_events_body(body: &[u8], cap: usize) -> Result<Vec<String>, ApiError> {
    let parsed: EventsBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::Schema(vec![SchemaIssue::new(
            "json_invalid",
            &["body"],
            format!("JSON decode error: {e}"),
        )])
    })?;
    if parsed.frames.is_empty() || parsed.frames.len() > MAX_FRAMES_PER_POST {
        return Err(ApiError::Schema(vec![SchemaIssue::new(
            if parsed.frames.is_empty() {
                "too_short"
            } else {
                "too_long"
            },
            &["body", "frames"],
            format!("List should have between 1 and {MAX_FRAMES_PER_POST} items"),
        )]));
    }
    let mut out = Vec::with_capacity(parsed.frames.len());
    for (i, f) in parsed.frames.into_iter().enumerate() {
        let serde_json::Value::String(s) = f else {
            return Err(ApiError::Schema(vec![SchemaIssue {
                kind: "string_type",
                loc: vec![json!("body"), json!("frames"), json!(i)],
                msg: "Input should be a valid string".into(),
            }]));
        };
        if s.len() > cap {
            return Err(ApiError::Schema(vec![SchemaIssue {
                kind: "string_too_long",
                loc: vec![json!("body"), json!("frames"), json!(i)],
                msg: format!("String should have at most {cap} characters"),
            }]));
        }
        out.push(s);
    }
    Ok(out)
}

/// What a POST's frames came to.
#[derive(Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
    /// At most `MAX_ERRORS` of them.
    errors: Vec<String>,
    /// At least one signed frame verified (the agent is alive).
    authenticated: bool,
}

impl Tally {
    fn note(&mut self, e: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }
}

/// Why a POST stops before its last frame.
enum Stop {
    /// A frame failed signature verification: the session is dead.
    Invalidated(String),
    /// The agent was revoked or its project archived.
    Revoked,
}

/// Verifies and dispatches a POST's frames in order; event batches are
/// committed before the next frame is looked at.
async fn process(
    state: &Shared,
    session: &mut LpSession,
    frames: &[String],
) -> Result<Tally, Stop> {
    let conn = session.conn.clone();
    let mut t = Tally::default();
    for (i, raw) in frames.iter().enumerate() {
        let (frame_type, frame) = match session.verifier.verify(raw.as_bytes(), state.now()) {
            Ok(Verified::Signed { frame_type, frame }) => (frame_type, frame),
            Ok(Verified::Handshake(_)) => {
                t.accepted += 1;
                continue;
            }
            Err(e) => match e.class() {
                ErrorClass::Signature => return Err(Stop::Invalidated(e.to_string())),
                ErrorClass::ProtocolVersion => {
                    t.rejected += 1;
                    t.note(format!("version skew (retry): {e}"));
                    continue;
                }
                ErrorClass::Protocol | ErrorClass::Other | ErrorClass::Validation => {
                    // Unusable for good: counted accepted so it is dropped.
                    t.accepted += 1;
                    t.note(format!("frame {i} dropped: {e}"));
                    continue;
                }
            },
        };
        t.authenticated = true;
        let mut handled =
            dispatch::handle(state, &conn, frame_type, &frame, OverLimit::Refuse).await;
        if let Handled::Writing(pending) = handled {
            handled = pending.resolve().await;
        }
        match handled {
            Handled::Done | Handled::Ack(_) | Handled::Writing(_) => t.accepted += 1,
            Handled::Transient => {
                t.rejected += 1;
                t.note("transient; agent re-sends".into());
            }
            Handled::RateLimited => {
                t.rejected += 1;
                t.note("rate limited (Z4J_RATELIMIT_EVENTS_PER_SECOND); agent re-sends".into());
            }
            Handled::Revoked => return Err(Stop::Revoked),
        }
    }
    Ok(t)
}

pub async fn events(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = match admit(&state, peer, &headers) {
        Ok(v) => v,
        Err(retry) => return too_many(retry),
    };
    let frames = match parse_events_body(&body, frame_cap(&state.settings)) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let cred = match authorize(&state, &headers, ip).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let nonce = nonce_of(&headers);
    let lookup = state.longpoll.lookup(&state, &cred, &nonce, false);
    if let Some(mut r) = session_refusal(&lookup) {
        identity_headers(&mut r, &cred);
        return r;
    }
    let Lookup::Live(session) = lookup else {
        return ApiError::Internal("long-poll session missing".into()).into_response();
    };
    let mut session = session.lock().await;
    session.last_used = Instant::now();
    let outcome = process(&state, &mut session, &frames).await;
    drop(session);
    let tally = match outcome {
        Ok(t) => t,
        Err(Stop::Invalidated(e)) => {
            state.longpoll.invalidate(cred.agent_id, &nonce);
            tracing::warn!(agent_id = %cred.agent_id, error = %e, "long-poll frame failed verification; session invalidated");
            return detail(
                StatusCode::CONFLICT,
                "long-poll session invalidated; reconnect with a fresh session nonce",
            );
        }
        Err(Stop::Revoked) => {
            state.longpoll.drop_session(cred.agent_id, &nonce);
            return detail(StatusCode::UNAUTHORIZED, "invalid agent token");
        }
    };
    if tally.authenticated {
        seen(&state, &cred).await;
    }
    let Tally {
        accepted,
        rejected,
        errors,
        ..
    } = tally;
    debug_assert!(accepted + rejected <= frames.len() as u64);
    let mut r = Json(json!({
        "accepted": accepted,
        "rejected": rejected,
        "errors": errors,
        "error_code": null,
    }))
    .into_response();
    identity_headers(&mut r, &cred);
    r
}

/// A long-poll request proves the agent alive; coming back from offline
/// tells the dashboard (the reference publishes nothing for long-poll).
async fn seen(state: &Shared, cred: &Credential) {
    match crate::store::agents::seen(&state.db, cred.agent_id, crate::store::Ts::now()).await {
        Ok(true) => state
            .fleet()
            .live
            .publish(cred.project_id, crate::fleet::live::Topic::Agent),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "long-poll liveness not recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_session_gauge_follows_every_change_of_the_map() {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let sessions = Sessions::new(metrics.clone());
        let gauge = || metrics.longpoll_sessions.load(Ordering::Relaxed);
        let agent = Uuid::new_v4();
        sessions.invalidate(agent, "n1");
        sessions.invalidate(agent, "n2");
        assert_eq!(gauge(), 2);
        sessions.drop_session(agent, "n1");
        assert_eq!(gauge(), 1);
        sessions.drop_session(agent, "absent");
        assert_eq!(gauge(), 1);
    }
}
