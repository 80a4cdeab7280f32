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
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "[::1]"];
/// How often the persisted list's modification time is checked.
const RECHECK: Duration = Duration::from_secs(1);

struct FileCache {
    checked: Option<Instant>,
    modified: Option<SystemTime>,
    hosts: Vec<String>,
}

pub struct HostGuard {
    fixed: Vec<String>,
    file: PathBuf,
    cache: Mutex<FileCache>,
}

fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

impl HostGuard {
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
        HostGuard {
            fixed,
            file,
            cache: Mutex::new(FileCache {
                checked: None,
                modified: None,
                hosts: Vec::new(),
            }),
        }
    }

    fn persisted(&self) -> Vec<String> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            c.checked = Some(Instant::now());
            let modified = std::fs::metadata(&self.file)
                .and_then(|m| m.modified())
                .ok();
            if modified != c.modified {
                c.modified = modified;
                c.hosts = crate::settings::allowed_hosts::read(&self.file)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect();
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
}
