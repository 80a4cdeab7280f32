//! A brain in the fuzzing process: the real router over SQLite in a scratch
//! home (or the database `Z4J_FUZZ_DATABASE_URL` names, which must be
//! empty), the bootstrap admin signed in, one agent, and one object of each
//! kind a write route addresses. Requests go through the whole router,
//! hardening layers included, without a socket.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::OnceLock;
use tower::ServiceExt;
use z4j_brain::app::AppState;
use z4j_brain::settings::{self, LoadInput};

const EMAIL: &str = "fuzz-admin@example.com";
const PASSWORD: &str = "Fuzz-admin-password-1";

/// Who a request is sent as.
#[derive(Clone, Copy, PartialEq)]
pub enum As {
    Nobody,
    Admin,
    Agent,
}

pub struct Brain {
    rt: tokio::runtime::Runtime,
    router: Router,
    cookie: String,
    csrf: String,
    pub agent_token: String,
    /// Ids of the fixtures, by placeholder name (`{user}`, `{view}`, ...).
    pub fixtures: Vec<(&'static str, String)>,
    /// Kept so alerts raised by a request have somewhere to go.
    _alerts: tokio::sync::mpsc::Receiver<z4j_brain::notify::Alert>,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Brain {
    /// The process's brain, built on first use.
    pub fn get() -> &'static Brain {
        static BRAIN: OnceLock<Brain> = OnceLock::new();
        BRAIN.get_or_init(|| match Brain::start() {
            Ok(b) => b,
            Err(e) => panic!("fuzz harness: the brain did not start: {e}"),
        })
    }

    fn start() -> Result<Brain, String> {
        let home = std::env::temp_dir().join(format!("z4j-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700));
        }
        let database = std::env::var("Z4J_FUZZ_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite:///{}/fuzz.db", home.display()));
        let env: Vec<(String, String)> = [
            ("Z4J_HOME", home.display().to_string()),
            ("Z4J_DATABASE_URL", database),
            ("Z4J_SECRET", "f".repeat(64)),
            ("Z4J_SESSION_SECRET", "e".repeat(64)),
            ("Z4J_AUDIT_CHAIN_SECRET", "d".repeat(64)),
            ("Z4J_METRICS_AUTH_TOKEN", "c".repeat(64)),
            // Fast hashing and no login floor: a request costs microseconds.
            ("Z4J_ARGON2_TIME_COST", "1".into()),
            ("Z4J_ARGON2_MEMORY_COST", "8192".into()),
            ("Z4J_ARGON2_PARALLELISM", "1".into()),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0".into()),
            ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0".into()),
            // Nothing leaves the process.
            (
                "Z4J_VERSION_CHECK_URL",
                "http://127.0.0.1:9/versions.json".into(),
            ),
            ("Z4J_LOG_LEVEL", "error".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let loaded = settings::load(&LoadInput {
            env,
            cwd: None,
            cli: Vec::new(),
        })
        .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (router, alerts) = rt.block_on(async {
            let db = z4j_brain::server::open_database(&loaded)
                .await
                .map_err(|e| e.message)?;
            z4j_brain::bootstrap::admin::provision(&db, &loaded.settings, EMAIL, PASSWORD)
                .await
                .map_err(|e| e.to_string())?;
            let (alerts, alert_rx) = z4j_brain::notify::Alerts::channel();
            let (app, _writer) = AppState::build(&loaded, db, alerts);
            app.api
                .ready
                .store(true, std::sync::atomic::Ordering::Release);
            Ok::<_, String>((app.router(), alert_rx))
        })?;
        let mut brain = Brain {
            rt,
            router,
            cookie: String::new(),
            csrf: String::new(),
            agent_token: String::new(),
            fixtures: Vec::new(),
            _alerts: alerts,
        };
        brain.sign_in()?;
        brain.make_fixtures()?;
        Ok(brain)
    }

    fn sign_in(&mut self) -> Result<(), String> {
        let req = Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"email": EMAIL, "password": PASSWORD}).to_string(),
            ))
            .map_err(|e| e.to_string())?;
        let resp = self
            .rt
            .block_on(self.router.clone().oneshot(with_peer(req)));
        let resp = resp.map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().map_err(|e| e.to_string())?;
            let pair = v.split(';').next().unwrap_or_default().to_owned();
            if let Some((name, value)) = pair.split_once('=') {
                if name.ends_with("z4j_csrf") {
                    self.csrf = value.to_owned();
                }
            }
            pairs.push(pair);
        }
        self.cookie = pairs.join("; ");
        if resp.status() != StatusCode::OK || self.csrf.is_empty() {
            return Err(format!("sign-in answered {}", resp.status()));
        }
        Ok(())
    }

    /// One of each object the write routes address, created through the API.
    fn make_fixtures(&mut self) -> Result<(), String> {
        let creates: [(&'static str, &str, Value); 5] = [
            (
                "{user}",
                "/api/v1/users",
                json!({"email": "fixture@example.com", "password": "Fixture-password-1"}),
            ),
            (
                "{view}",
                "/api/v1/projects/default/saved-views",
                json!({"name": "fixture", "filters": {"state": "failure"}}),
            ),
            (
                "{channel}",
                "/api/v1/projects/default/notifications/channels",
                json!({"name": "fixture", "type": "webhook", "config": {"url": "https://hooks.example.com/x"}}),
            ),
            (
                "{schedule}",
                "/api/v1/projects/default/schedules",
                json!({"name": "fixture", "task_name": "jobs.fixture", "engine": "rq",
                       "kind": "cron", "expression": "0 3 * * *"}),
            ),
            (
                "{key}",
                "/api/v1/api-keys",
                json!({"name": "fixture", "scopes": ["projects:read"]}),
            ),
        ];
        for (name, path, body) in creates {
            let a = self.send(
                &Method::POST,
                path,
                As::Admin,
                body.to_string().into_bytes(),
            );
            let v: Value = a
                .and_then(|a| serde_json::from_slice(&a.body).ok())
                .unwrap_or(Value::Null);
            let id = v["id"]
                .as_str()
                .unwrap_or("00000000-0000-0000-0000-000000000001");
            self.fixtures.push((name, id.to_owned()));
        }
        let a = self.send(
            &Method::POST,
            "/api/v1/projects/default/agents",
            As::Admin,
            json!({"name": "fuzz-agent"}).to_string().into_bytes(),
        );
        let v: Value = a
            .and_then(|a| serde_json::from_slice(&a.body).ok())
            .unwrap_or(Value::Null);
        self.agent_token = v["token"].as_str().unwrap_or_default().to_owned();
        if self.agent_token.is_empty() {
            return Err(format!("minting the agent answered {v}"));
        }
        Ok(())
    }

    /// Sends one request through the router (`None`: not a request a
    /// client could send, such as an invalid URI).
    pub fn send(&self, method: &Method, uri: &str, who: As, body: Vec<u8>) -> Option<Answer> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("host", "localhost")
            .header("content-type", "application/json");
        match who {
            As::Nobody => {}
            As::Admin => {
                builder = builder
                    .header("cookie", &self.cookie)
                    .header("x-csrf-token", &self.csrf);
            }
            As::Agent => {
                builder = builder
                    .header("authorization", format!("Bearer {}", self.agent_token))
                    .header("x-z4j-session-nonce", "fuzz-session");
            }
        }
        let req = builder.body(Body::from(body)).ok()?;
        Some(self.rt.block_on(async {
            let resp = match self.router.clone().oneshot(with_peer(req)).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            Answer { status, body }
        }))
    }
}

fn with_peer(mut req: Request<Body>) -> Request<Body> {
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    req.extensions_mut().insert(ConnectInfo(peer));
    if !req.headers().contains_key("host") {
        req.headers_mut()
            .insert("host", HeaderValue::from_static("localhost"));
    }
    req
}

/// What every answer must be: no server error other than a documented
/// 503 (an offline agent), and an error answer in one of the envelopes.
pub fn check(what: &str, a: &Answer) {
    let v: Option<Value> = serde_json::from_slice(&a.body).ok();
    let code = v
        .as_ref()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    if a.status.is_server_error()
        && !(a.status == StatusCode::SERVICE_UNAVAILABLE
            && code.as_deref() == Some("agent_offline"))
    {
        panic!("{what}: {} {}", a.status, String::from_utf8_lossy(&a.body));
    }
    if a.status.is_client_error() {
        let enveloped = v
            .as_ref()
            .is_some_and(|v| v.get("error").is_some() || v.get("detail").is_some());
        assert!(
            enveloped,
            "{what}: {} without an error envelope: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
}
