//! `Z4J_ALLOWED_HOSTS` (http-api 6.5): requests naming another host are
//! refused with 400 `invalid_host`; malformed Host headers everywhere. The
//! list is the setting, plus the persisted file `z4j allowed-hosts` edits
//! (re-read when it changes, no restart), plus the loopback names in dev
//! posture or when nothing was configured (specs/decisions.md H1).

use crate::http::request_id::RequestId;
use crate::http::Shared;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "[::1]"];
/// How often the persisted list's modification time is checked.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct FileCache {
    checked: Option<Instant>,
    modified: Option<SystemTime>,
    hosts: Arc<Vec<String>>,
    /// A re-read is under way on the blocking pool.
    refreshing: bool,
}

pub struct HostGuard {
    fixed: Vec<String>,
    file: PathBuf,
    /// Never held across file I/O: requests only read the last list.
    cache: Arc<Mutex<FileCache>>,
}

fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

fn read_hosts(file: &Path) -> Vec<String> {
    crate::settings::allowed_hosts::read(file)
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect()
}

impl HostGuard {
    /// Reads the persisted list once (start-up, off the request path) when
    /// it is a regular file.
    pub fn new(s: &crate::settings::Settings, dev: bool, file: PathBuf) -> HostGuard {
        let mut fixed: Vec<String> = s
            .allowed_hosts
            .0
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        if dev || fixed.is_empty() {
            fixed.extend(LOOPBACK.iter().map(|h| (*h).to_owned()));
            if dev {
                fixed.push("testserver".into());
            } else if let Some(h) = machine_hostname() {
                fixed.push(h);
            }
        }
        let mut cache = FileCache::default();
        if std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            cache.modified = modified(&file);
            cache.hosts = Arc::new(read_hosts(&file));
            cache.checked = Some(Instant::now());
        }
        HostGuard {
            fixed,
            file,
            cache: Arc::new(Mutex::new(cache)),
        }
    }

    /// The persisted list as last read. At most once per `RECHECK` a
    /// request starts a re-read on the blocking pool and goes on with the
    /// list it has: no request waits on the file system, and a file that
    /// blocks (a FIFO, a hung network mount) holds one pool thread, not the
    /// executor.
    fn persisted(&self) -> Arc<Vec<String>> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !c.refreshing && c.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                c.refreshing = true;
                c.checked = Some(Instant::now());
                let known = c.modified;
                let (cache, file) = (self.cache.clone(), self.file.clone());
                rt.spawn_blocking(move || {
                    let now = modified(&file);
                    let hosts = (now != known).then(|| read_hosts(&file));
                    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                    c.refreshing = false;
                    if let Some(h) = hosts {
                        c.modified = now;
                        c.hosts = Arc::new(h);
                    }
                });
            }
        }
        c.hosts.clone()
    }

    pub fn allows(&self, host: &str) -> bool {
        self.fixed.iter().any(|h| h == "*" || h == host)
            || self.persisted().iter().any(|h| h == host)
    }
}

/// The host name of a `Host` value without its port, lowercased; `None`
/// when malformed.
pub fn host_name(value: &str) -> Option<String> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (name, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let rest = &value[end + 1..];
        match rest.strip_prefix(':') {
            Some(p) => (&value[..=end], Some(p)),
            None if rest.is_empty() => (&value[..=end], None),
            None => return None,
        }
    } else {
        match value.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (value, None),
        }
    };
    if port.is_some_and(|p| !numeric(p)) || name.is_empty() {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

fn exempt(path: &str, s: &crate::settings::Settings) -> bool {
    let p = path.trim_end_matches('/');
    p == "/api/v1/health"
        || p == "/api/v1/health/ready"
        || (p == "/metrics" && s.metrics_auth_token.is_some() && !s.metrics_public)
}

pub async fn layer(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let value = req
        .headers()
        .get("host")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .unwrap_or_else(|_| "\u{0}".into())
        })
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let Some(value) = value else {
        return next.run(req).await; // HTTP/1.0 without Host
    };
    let ok = match host_name(&value) {
        None => false,
        Some(_) if exempt(req.uri().path(), &state.settings) => true,
        Some(name) => state.hosts.allows(&name),
    };
    if ok {
        return next.run(req).await;
    }
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": "invalid_host",
            "message": "Bad Request: invalid Host header.",
            "request_id": id,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        assert_eq!(host_name("LOCALHOST:7799").as_deref(), Some("localhost"));
        assert_eq!(host_name("[::1]:7799").as_deref(), Some("[::1]"));
        assert_eq!(
            host_name("z4j.example.com").as_deref(),
            Some("z4j.example.com")
        );
        for bad in [
            "127.0.0.1:abc",
            "[::1]x",
            "evil.com/admin",
            "a b",
            "",
            ":80",
            "x\\y",
        ] {
            assert_eq!(host_name(bad), None, "{bad}");
        }
    }

    fn guard(home: &Path, file: PathBuf) -> HostGuard {
        let input = crate::settings::LoadInput {
            env: vec![
                ("Z4J_HOME".into(), home.display().to_string()),
                ("Z4J_ALLOWED_HOSTS".into(), r#"["z4j.example.com"]"#.into()),
            ],
            cwd: None,
            cli: Vec::new(),
        };
        let s = crate::settings::load(&input).unwrap().settings;
        HostGuard::new(&s, false, file)
    }

    /// A persisted list that blocks when read (a FIFO nobody writes) delays
    /// no request: the re-read runs on the blocking pool.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocking_list_file_delays_no_request() {
        let home = tempfile::tempdir().unwrap();
        let fifo = home.path().join("allowed-hosts");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let g = guard(home.path(), fifo);
        let checks = tokio::time::timeout(Duration::from_secs(5), async {
            for _ in 0..3 {
                assert!(g.allows("z4j.example.com"));
                assert!(!g.allows("evil.example.net"));
                tokio::time::sleep(RECHECK + Duration::from_millis(50)).await;
            }
        });
        checks
            .await
            .expect("a request waited on the allowed-hosts file");
        // Unblock the pool thread so the runtime can shut down.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(home.path().join("allowed-hosts"));
    }

    /// An added host is allowed within a recheck or two, no restart.
    #[tokio::test]
    async fn an_edited_list_is_read_again() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("allowed-hosts");
        crate::settings::allowed_hosts::write(home.path(), &file, &["a.example".into()]).unwrap();
        let g = guard(home.path(), file.clone());
        assert!(g.allows("a.example"), "read at start-up");
        assert!(!g.allows("b.example"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        crate::settings::allowed_hosts::write(home.path(), &file, &["b.example".into()]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !g.allows("b.example") {
            assert!(Instant::now() < deadline, "the edit was never picked up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!g.allows("a.example"), "a removed host is refused");
    }
}
