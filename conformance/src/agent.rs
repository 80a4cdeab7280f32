//! The suite's side of the agent protocol: an operator session that mints
//! agent credentials, and a scriptable WebSocket agent built on
//! `z4j-protocol` (signing, verification) for the gateway cases.

use crate::brain::Brain;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use z4j_protocol::json::Value;
use z4j_protocol::secret::decode_agent_key;
use z4j_protocol::{Binding, Direction, FrameType, Now, ProjectKey, Signer, Verified, Verifier};

/// Where a brain answers: the suite's own [`Brain`], or any URL (load tools).
pub trait Endpoint: Sync {
    fn url(&self, path: &str) -> String;
    /// `ws://host:port/ws/agent`.
    fn ws_url(&self) -> String;
}

impl Endpoint for Brain {
    fn url(&self, path: &str) -> String {
        Brain::url(self, path)
    }
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/agent", self.port)
    }
}

/// A brain at a base URL (`http://host:port`).
pub struct Target {
    base: String,
}

impl Target {
    pub fn from_url(base: &str) -> Result<Target, String> {
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(format!("not an http(s) URL: {base}"));
        }
        Ok(Target {
            base: base.trim_end_matches('/').to_owned(),
        })
    }
}

impl Endpoint for Target {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn ws_url(&self) -> String {
        let rest = self.base.strip_prefix("http").unwrap_or(&self.base);
        format!("ws{rest}/ws/agent")
    }
}

pub const ADMIN_EMAIL: &str = "conformance-admin@example.com";
pub const ADMIN_PASSWORD: &str = "Conformance-admin-pw-1";

/// Environment that bootstraps the suite's admin on first boot.
pub fn admin_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Z4J_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("Z4J_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ]
}

/// A logged-in operator: the cookie header and the CSRF token.
#[derive(Clone)]
pub struct Operator {
    pub cookie: String,
    pub csrf: String,
}

fn cookie_pair(set_cookie: &str) -> Option<(String, String)> {
    let first = set_cookie.split(';').next()?;
    let (k, v) = first.split_once('=')?;
    Some((k.trim().to_owned(), v.trim().to_owned()))
}

pub async fn login(brain: &impl Endpoint) -> Result<Operator, String> {
    login_as(brain, ADMIN_EMAIL, ADMIN_PASSWORD).await
}

pub async fn login_as(
    brain: &impl Endpoint,
    email: &str,
    password: &str,
) -> Result<Operator, String> {
    let resp = crate::cases::client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(|e| format!("login: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("login answered {}", resp.status()));
    }
    let pairs: Vec<(String, String)> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(cookie_pair)
        .collect();
    let csrf = pairs
        .iter()
        .find(|(k, _)| k.contains("csrf"))
        .map(|(_, v)| v.clone())
        .ok_or("login set no CSRF cookie")?;
    let cookie = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Operator { cookie, csrf })
}

impl Operator {
    /// A GET with the session, the body as JSON (`null` when it is not).
    pub async fn get(&self, brain: &impl Endpoint, path: &str) -> Result<(u16, Json), String> {
        let (status, body) = self.get_text(brain, path).await?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Json::Null)))
    }

    /// A GET with the session, the body as text (a page, a CSV).
    pub async fn get_text(
        &self,
        brain: &impl Endpoint,
        path: &str,
    ) -> Result<(u16, String), String> {
        let resp = crate::cases::client()
            .get(brain.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| format!("GET {path}: {e}"))?;
        Ok((status, body))
    }

    pub async fn send(
        &self,
        brain: &impl Endpoint,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<(u16, Json), String> {
        let mut req = crate::cases::client()
            .request(method, brain.url(path))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Json::Null)))
    }

    /// The kinds of the stored events of task `task_id` (engine `rq`) in
    /// project `default`.
    pub async fn event_kinds(
        &self,
        brain: &impl Endpoint,
        task_id: &str,
    ) -> Result<Vec<String>, String> {
        let (_, events) = self
            .get(
                brain,
                &format!("/api/v1/projects/default/events?engine=rq&task_id={task_id}"),
            )
            .await?;
        Ok(events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["kind"].as_str().map(str::to_owned))
            .collect())
    }

    /// How many tasks project `default` holds (the list's `total_count`).
    pub async fn task_total(&self, brain: &impl Endpoint) -> Result<Option<i64>, String> {
        let (_, page) = self
            .get(
                brain,
                "/api/v1/projects/default/tasks?limit=1&include_total=true",
            )
            .await?;
        Ok(page["total_count"].as_i64())
    }

    pub async fn mint(&self, brain: &impl Endpoint, name: &str) -> Result<Credentials, String> {
        self.mint_in(brain, "default", name).await
    }

    /// Mints an agent in project `slug`.
    pub async fn mint_in(
        &self,
        brain: &impl Endpoint,
        slug: &str,
        name: &str,
    ) -> Result<Credentials, String> {
        let (status, body) = self
            .send(
                brain,
                reqwest::Method::POST,
                &format!("/api/v1/projects/{slug}/agents"),
                Some(json!({"name": name})),
            )
            .await?;
        if status != 201 {
            return Err(format!("mint answered {status}: {body}"));
        }
        let s = |p: &str| {
            body.pointer(p)
                .and_then(Json::as_str)
                .map(str::to_owned)
                .ok_or(format!("mint response lacks {p}: {body}"))
        };
        Ok(Credentials {
            agent_id: s("/agent/id")?,
            project_id: s("/agent/project_id")?,
            token: s("/token")?,
            hmac_secret: s("/hmac_secret")?,
        })
    }

    /// Creates project `slug` (named after it); anything but 201 is an error.
    pub async fn create_project(&self, brain: &impl Endpoint, slug: &str) -> Result<(), String> {
        let (status, body) = self
            .send(
                brain,
                reqwest::Method::POST,
                "/api/v1/projects",
                Some(json!({"slug": slug, "name": slug})),
            )
            .await?;
        if status == 201 {
            Ok(())
        } else {
            Err(format!("create project {slug}: {status} {body}"))
        }
    }

    pub async fn revoke(&self, brain: &impl Endpoint, agent_id: &str) -> Result<u16, String> {
        let path = format!("/api/v1/projects/default/agents/{agent_id}");
        Ok(self
            .send(brain, reqwest::Method::DELETE, &path, None)
            .await?
            .0)
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub agent_id: String,
    pub project_id: String,
    pub token: String,
    pub hmac_secret: String,
}

impl Credentials {
    pub fn key(&self) -> Result<ProjectKey, String> {
        decode_agent_key(&self.hmac_secret).map_err(|e| format!("hmac_secret: {e}"))
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the brain did with the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    Code(u16, String),
    /// The stream ended without a close frame.
    Dropped,
}

pub fn hello(worker_id: Option<&str>) -> Json {
    json!({
        "v": 2,
        "id": format!("hello_{:016x}", rand_u64()),
        "ts": null,
        "type": "hello",
        "payload": {
            "protocol_version": "2",
            "agent_version": "1.13.0",
            "framework": "bare",
            "engines": ["rq"],
            "schedulers": [],
            "capabilities": {"rq": ["cancel_task", "retry_by_reference_v1", "retry_task"]},
            "host": {"name": "conformance"},
            "worker_id": worker_id,
            "worker_role": "task",
            "worker_pid": 4242,
            "worker_started_at": "2026-05-01T00:00:00Z",
            "runtime_features": ["retry_by_reference"],
        }
    })
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A raw socket to `/ws/agent`, before any hello.
pub struct RawSocket(pub Socket);

pub async fn open(brain: &impl Endpoint, authorization: Option<&str>) -> Result<RawSocket, String> {
    open_with(brain, authorization, &[]).await
}

pub async fn open_with(
    brain: &impl Endpoint,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<RawSocket, String> {
    let mut req = brain
        .ws_url()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(a) = authorization {
        req.headers_mut()
            .insert("authorization", a.parse().map_err(|_| "bad header")?);
    }
    for (k, v) in headers {
        req.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
            v.parse().map_err(|_| "bad header")?,
        );
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| "WebSocket connect timed out".to_owned())?
    .map_err(|e| format!("WebSocket connect: {e}"))?;
    Ok(RawSocket(ws))
}

impl RawSocket {
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.0
            .send(Message::Text(text.to_owned().into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The next data message, or how the socket closed.
    pub async fn next_data(&mut self, wait: Duration) -> Result<Result<Vec<u8>, Closed>, String> {
        loop {
            let msg = tokio::time::timeout(wait, self.0.next())
                .await
                .map_err(|_| format!("nothing from the brain within {wait:?}"))?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(Ok(t.as_bytes().to_vec())),
                Some(Ok(Message::Binary(b))) => return Ok(Ok(b.to_vec())),
                Some(Ok(Message::Close(Some(f)))) => {
                    return Ok(Err(Closed::Code(u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(Message::Close(None))) => {
                    return Ok(Err(Closed::Code(
                        u16::from(CloseCode::Status),
                        String::new(),
                    )))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Err(Closed::Dropped)),
            }
        }
    }

    /// Waits for the close and returns its code (data messages before it are
    /// skipped).
    pub async fn expect_close(&mut self, wait: Duration) -> Result<Closed, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_data(left).await? {
                Ok(_) => continue,
                Err(c) => return Ok(c),
            }
        }
    }
}

/// An agent session after a successful handshake.
pub struct Session {
    pub raw: RawSocket,
    pub ack: Json,
    pub binding: Binding,
    signer: Signer,
    verifier: Verifier,
    started: std::time::Instant,
}

/// Connects, sends `hello`, reads `hello_ack`.
pub async fn connect(
    brain: &impl Endpoint,
    creds: &Credentials,
    worker_id: Option<&str>,
) -> Result<Session, String> {
    connect_with_hello(brain, creds, hello(worker_id)).await
}

/// A session opened with a hello the case wrote (other engines or
/// capabilities).
pub async fn connect_with_hello(
    brain: &impl Endpoint,
    creds: &Credentials,
    hello: Json,
) -> Result<Session, String> {
    let mut raw = open(brain, Some(&format!("Bearer {}", creds.token))).await?;
    raw.send_text(&hello.to_string()).await?;
    let first = raw
        .next_data(Duration::from_secs(10))
        .await?
        .map_err(|c| format!("closed during the handshake: {c:?}"))?;
    let ack: Json = serde_json::from_slice(&first).map_err(|e| format!("hello_ack: {e}"))?;
    if ack["type"] != "hello_ack" {
        return Err(format!("first brain message is not hello_ack: {ack}"));
    }
    let p = &ack["payload"];
    let binding = Binding {
        agent_id: p["agent_id"].as_str().unwrap_or_default().to_owned(),
        project_id: p["project_id"].as_str().unwrap_or_default().to_owned(),
        session_id: p["session_id"].as_str().unwrap_or_default().to_owned(),
    };
    let key = creds.key()?;
    Ok(Session {
        raw,
        signer: Signer::new(key.clone(), binding.clone()),
        verifier: Verifier::new(key, binding.clone(), Direction::BrainToAgent),
        binding,
        ack,
        started: std::time::Instant::now(),
    })
}

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A protocol value from JSON text built by the test.
pub fn value(j: &Json) -> Value {
    z4j_protocol::parse(j.to_string().as_bytes()).unwrap_or(Value::Null)
}

/// One task event as z4j-bare shapes it.
pub fn task_event(task_id: &str, kind: &str, data: Json) -> Json {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "kind": kind,
        "engine": "rq",
        "task_id": task_id,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        "data": data,
    })
}

impl Session {
    /// Signs a frame (without sending it).
    pub fn sign(
        &mut self,
        ft: FrameType,
        id: &str,
        payload: &[(&str, Value)],
    ) -> Result<String, String> {
        self.signer
            .sign(ft, id, payload, now_micros())
            .map_err(|e| e.to_string())
    }

    /// An `event_batch` signed with a chosen `ts` (replay-window cases).
    pub fn sign_stale(&mut self, ts: &str, event: &Json) -> Result<String, String> {
        let nonce = z4j_protocol::frame::random_nonce();
        self.sign_exact(ts, &nonce, event)
    }

    /// An `event_batch` with a chosen `ts` and nonce (the next `seq`).
    pub fn sign_exact(&mut self, ts: &str, nonce: &str, event: &Json) -> Result<String, String> {
        self.signer
            .sign_with(
                FrameType::EventBatch,
                "ev_stale",
                &[("events", value(&Json::Array(vec![event.clone()])))],
                ts,
                nonce,
            )
            .map_err(|e| e.to_string())
    }

    /// An `event_batch` signed for another session of the same agent.
    pub fn sign_for_other_session(&self, key: ProjectKey, event: &Json) -> Result<String, String> {
        let mut binding = self.binding.clone();
        binding.session_id = uuid::Uuid::new_v4().to_string();
        Signer::new(key, binding)
            .sign(
                FrameType::EventBatch,
                "ev_other_session",
                &[("events", value(&Json::Array(vec![event.clone()])))],
                now_micros(),
            )
            .map_err(|e| e.to_string())
    }

    pub async fn send_events(&mut self, batch_id: &str, events: &[Json]) -> Result<(), String> {
        let frame = self.sign(
            FrameType::EventBatch,
            batch_id,
            &[("events", value(&Json::Array(events.to_vec())))],
        )?;
        self.raw.send_text(&frame).await
    }

    /// Signs and sends any frame.
    pub async fn send_signed(
        &mut self,
        ft: FrameType,
        id: &str,
        payload: &[(&str, Value)],
    ) -> Result<(), String> {
        let frame = self.sign(ft, id, payload)?;
        self.raw.send_text(&frame).await
    }

    /// A heartbeat reporting queue `default` at depth 7 and worker
    /// `host-x` (pid 77, concurrency 4, one active task).
    pub async fn send_heartbeat(&mut self) -> Result<(), String> {
        self.send_heartbeat_with(json!({
            "rq.queue_depths": "{\"default\": 7}",
            "rq.worker_details": json!({"host-x": {
                "stats": {"pid": 77, "pool": {"max-concurrency": 4}},
                "active": [{"id": "t"}],
                "active_queues": [{"name": "default"}],
            }}).to_string(),
        }))
        .await
    }

    /// A heartbeat with the case's `adapter_health`.
    pub async fn send_heartbeat_with(&mut self, adapter_health: Json) -> Result<(), String> {
        let frame = self.sign(
            FrameType::Heartbeat,
            &format!("hb_{:012x}", rand_u64() & 0xffff_ffff_ffff),
            &[
                ("buffer_size", Value::int(0)),
                ("last_flush_at", Value::Null),
                ("dropped_events", Value::int(0)),
                ("telemetry_loss", Value::Null),
                ("adapter_health", value(&adapter_health)),
            ],
        )?;
        self.raw.send_text(&frame).await
    }

    /// The next signed brain frame, verified with this session's verifier.
    pub async fn recv(
        &mut self,
        wait: Duration,
    ) -> Result<Result<(FrameType, Json), Closed>, String> {
        let bytes = match self.raw.next_data(wait).await? {
            Ok(b) => b,
            Err(c) => return Ok(Err(c)),
        };
        let now = Now {
            wall_micros: now_micros(),
            monotonic: self.started.elapsed(),
        };
        match self.verifier.verify(&bytes, now) {
            Ok(Verified::Signed { frame_type, .. }) => {
                let j: Json = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                Ok(Ok((frame_type, j)))
            }
            Ok(other) => Err(format!(
                "unexpected unsigned frame from the brain: {other:?}"
            )),
            Err(e) => Err(format!(
                "brain frame failed verification ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }

    /// Waits for the `event_batch_ack` of `batch_id`; returns its payload.
    pub async fn expect_ack(&mut self, batch_id: &str, wait: Duration) -> Result<Json, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Ok((FrameType::EventBatchAck, j)) if j["payload"]["acked_id"] == batch_id => {
                    return Ok(j["payload"].clone())
                }
                Ok(_) => continue,
                Err(c) => return Err(format!("closed before the ack of {batch_id}: {c:?}")),
            }
        }
    }
}

/// A long-poll session (spec 7): frames are signed with the session nonce
/// as the binding's `session_id`.
pub struct LongPoll {
    pub nonce: String,
    token: String,
    signer: Signer,
    verifier: Verifier,
    started: std::time::Instant,
}

impl LongPoll {
    pub fn new(creds: &Credentials) -> Result<LongPoll, String> {
        let nonce = z4j_protocol::frame::random_nonce();
        let binding = Binding {
            agent_id: creds.agent_id.clone(),
            project_id: creds.project_id.clone(),
            session_id: nonce.clone(),
        };
        Ok(LongPoll {
            signer: Signer::new(creds.key()?, binding.clone()),
            verifier: Verifier::new(creds.key()?, binding, Direction::BrainToAgent),
            started: std::time::Instant::now(),
            nonce,
            token: creds.token.clone(),
        })
    }

    pub fn sign_events(&mut self, batch_id: &str, events: &[Json]) -> Result<String, String> {
        self.signer
            .sign(
                FrameType::EventBatch,
                batch_id,
                &[("events", value(&Json::Array(events.to_vec())))],
                now_micros(),
            )
            .map_err(|e| e.to_string())
    }

    pub fn sign(
        &mut self,
        ft: FrameType,
        id: &str,
        payload: &[(&str, Value)],
    ) -> Result<String, String> {
        self.signer
            .sign(ft, id, payload, now_micros())
            .map_err(|e| e.to_string())
    }

    /// Verifies a brain frame string from `GET /commands`.
    pub fn verify(&mut self, frame: &str) -> Result<Json, String> {
        let now = Now {
            wall_micros: now_micros(),
            monotonic: self.started.elapsed(),
        };
        match self.verifier.verify(frame.as_bytes(), now) {
            Ok(Verified::Signed { .. }) => serde_json::from_str(frame).map_err(|e| e.to_string()),
            Ok(other) => Err(format!("unexpected frame: {other:?}")),
            Err(e) => Err(format!("brain frame failed verification ({e}): {frame}")),
        }
    }

    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("authorization", format!("Bearer {}", self.token))
            .header("x-z4j-session-nonce", &self.nonce)
    }

    /// `POST /api/v1/agent/events` with these frame strings.
    pub async fn post(
        &self,
        brain: &impl Endpoint,
        frames: &[String],
    ) -> Result<(u16, Json), String> {
        let resp = self
            .request(crate::cases::client().post(brain.url("/api/v1/agent/events")))
            .json(&json!({ "frames": frames }))
            .send()
            .await
            .map_err(|e| format!("POST events: {e}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Json::Null)))
    }

    /// `GET /api/v1/agent/commands`; `max_frames=0` is the connect probe.
    pub async fn poll(
        &self,
        brain: &impl Endpoint,
        wait: u32,
        max_frames: u32,
    ) -> Result<(u16, Json), String> {
        let path = format!("/api/v1/agent/commands?wait={wait}&max_frames={max_frames}");
        let resp = self
            .request(crate::cases::client().get(brain.url(&path)))
            .send()
            .await
            .map_err(|e| format!("GET commands: {e}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Json::Null)))
    }

    /// A fresh nonce (and signer), as the agent does on reconnect.
    pub fn renew(&mut self, creds: &Credentials) -> Result<(), String> {
        *self = LongPoll::new(creds)?;
        Ok(())
    }
}
