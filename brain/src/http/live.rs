//! `/ws/dashboard` (dashboard spec 1): a browser's live channel. The
//! upgrade is always accepted; every refusal is a close code after it, in
//! the reference's order: Origin (4403), session (4401), second-factor
//! gates (4403), the first frame within 10 s (4400), project visibility
//! (4403), the per-user cap (4402), then `ready`. After that: `ping` →
//! `pong`, topic pushes from `fleet::live`, 4408 after
//! `Z4J_WS_IDLE_TIMEOUT_SECONDS` without a text frame, and the hub's
//! closes (1013 for a browser that cannot keep up, 4401/4403 when the
//! session or membership ends, 1001 at shutdown).

use super::error::ApiError;
use super::session;
use super::Shared;
use crate::fleet::live::{close, Refused, Subscription};
use crate::settings::mutant::Mutant;
use crate::store::projects;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::time::Duration;
use uuid::Uuid;

/// The subscribe frame's deadline (hard-coded in the reference too).
pub const FIRST_FRAME: Duration = Duration::from_secs(10);
/// Browsers send a few bytes per frame; anything larger is not ours
/// (decision D6).
const MAX_MESSAGE: usize = 64 * 1024;

pub fn routes() -> Router<Shared> {
    Router::new().route("/ws/dashboard", get(ws_dashboard))
}

async fn ws_dashboard(
    State(state): State<Shared>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(state, socket, headers))
}

async fn run(state: Shared, mut socket: WebSocket, headers: HeaderMap) {
    let (user, session, is_admin) = match admit(&state, &headers).await {
        Ok(who) => who,
        Err(code) => return bye(socket, code).await,
    };
    let project = match subscribe_frame(&mut socket).await {
        Ok(p) => p,
        Err(Some(code)) => return bye(socket, code).await,
        Err(None) => return, // gone
    };
    if !is_admin && !state.settings.mutant(Mutant::DashboardMembershipUnchecked) {
        match projects::role_of(&state.db, user, project).await {
            Ok(Some(_)) => {}
            Ok(None) => return bye(socket, close::FORBIDDEN).await,
            Err(e) => {
                tracing::warn!(error = %e, "dashboard membership check failed");
                return bye(socket, 1011).await;
            }
        }
    }
    let sub = match state.fleet().live.subscribe(project, user, session) {
        Ok(sub) => sub,
        Err(Refused::UserCap | Refused::Closed) => return bye(socket, close::OVER_CAPACITY).await,
    };
    if send(&mut socket, r#"{"type":"ready"}"#).await.is_err() {
        return;
    }
    let idle = if state.settings.mutant(Mutant::IdleTimeoutNever) {
        Duration::from_secs(365 * 86_400)
    } else {
        Duration::from_secs(state.settings.ws_idle_timeout_seconds.max(1) as u64)
    };
    if let Some(code) = serve(&mut socket, sub, idle).await {
        bye(socket, code).await;
    }
}

/// Origin, session and second-factor gates: the user, the session and
/// whether the user is a global admin, or the close code.
async fn admit(state: &Shared, headers: &HeaderMap) -> Result<(Uuid, Uuid, bool), u16> {
    let origin = headers.get("origin").and_then(|v| v.to_str().ok());
    if !origin_allowed(state, origin) {
        return Err(close::FORBIDDEN);
    }
    // Session first (4401), then the second-factor gates (4403), so an
    // anonymous caller learns nothing about an account's MFA state.
    match session::require(state, headers).await {
        Ok(c) if c.via_key => Err(close::UNAUTHENTICATED),
        Ok(c) => Ok((c.user.id, c.session.id, c.user.is_admin)),
        Err(ApiError::Unauthenticated(_)) => Err(close::UNAUTHENTICATED),
        Err(ApiError::Coded { .. }) => Err(close::FORBIDDEN),
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: ApiError) -> u16 {
    tracing::warn!(error = ?e, "dashboard socket admission failed");
    1011
}

/// The allowed origins (dashboard spec 1.2): `Z4J_PUBLIC_URL`'s, every
/// `Z4J_CORS_ORIGINS` entry but `*`, and in dev posture the loopback
/// names on the bind port; a missing Origin passes in dev posture only.
fn origin_allowed(state: &Shared, origin: Option<&str>) -> bool {
    let s = &state.settings;
    if s.mutant(Mutant::DashboardOriginUnchecked) {
        return true;
    }
    let Some(origin) = origin else {
        return state.dev_posture;
    };
    let Some(origin) = normalise(origin) else {
        return false;
    };
    let mut allowed: Vec<String> = s
        .cors_origins
        .0
        .iter()
        .filter(|o| o.as_str() != "*")
        .filter_map(|o| normalise(o))
        .collect();
    match s.public_url.as_deref() {
        Some(public) => allowed.extend(normalise(public)),
        // No public URL: the brain is reached on loopback, as the
        // reference's default (http://localhost:7700) assumes (D7).
        None => {
            let port = s.bind_port;
            allowed.push(format!("http://localhost:{port}"));
            allowed.push(format!("http://127.0.0.1:{port}"));
        }
    }
    if state.dev_posture {
        let port = s.bind_port;
        for host in ["localhost", "127.0.0.1", "testserver"] {
            allowed.push(format!("http://{host}:{port}"));
        }
        allowed.push("http://testserver".into());
    }
    allowed.contains(&origin)
}

/// `scheme://host[:port]`, host lowercased, default ports dropped; `None`
/// for anything but http(s) with a host.
fn normalise(raw: &str) -> Option<String> {
    let u = url::Url::parse(raw.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = u.host_str()?.to_ascii_lowercase();
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// The subscribe frame's project, `Err(Some(4400))` for anything else or
/// nothing within [`FIRST_FRAME`], `Err(None)` when the browser left.
async fn subscribe_frame(socket: &mut WebSocket) -> Result<Uuid, Option<u16>> {
    let deadline = tokio::time::Instant::now() + FIRST_FRAME;
    loop {
        let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => return Err(Some(close::BAD_SUBSCRIBE)),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Err(None),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => return Err(Some(close::BAD_SUBSCRIBE)),
            Message::Close(_) => return Err(None),
        };
        let v: serde_json::Value =
            serde_json::from_str(text.as_str()).map_err(|_| Some(close::BAD_SUBSCRIBE))?;
        if v["type"].as_str() != Some("subscribe") {
            return Err(Some(close::BAD_SUBSCRIBE));
        }
        return v["project_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(Some(close::BAD_SUBSCRIBE));
    }
}

/// The subscribed socket until it ends; the close code to send, if any.
async fn serve(socket: &mut WebSocket, mut sub: Subscription, idle: Duration) -> Option<u16> {
    let mut deadline = tokio::time::Instant::now() + idle;
    loop {
        tokio::select! {
            changed = sub.kick.changed() => {
                let code = if changed.is_ok() { *sub.kick.borrow() } else { None };
                return Some(code.unwrap_or(close::GOING_AWAY));
            }
            topic = sub.topics.recv() => {
                let Some(topic) = topic else { return Some(close::GOING_AWAY) };
                let frame = format!(r#"{{"type":"event","topic":"{}"}}"#, topic.as_str());
                if send(socket, &frame).await.is_err() {
                    return None;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    // Any text frame is a sign of life; unknown ones are
                    // ignored (forward compatibility).
                    deadline = tokio::time::Instant::now() + idle;
                    let ping = serde_json::from_str::<serde_json::Value>(t.as_str())
                        .is_ok_and(|v| v["type"].as_str() == Some("ping"));
                    if ping && send(socket, r#"{"type":"pong"}"#).await.is_err() {
                        return None;
                    }
                }
                // Control frames are the transport's; they are not activity.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Not part of the protocol (the reference crashes to 1011).
                Some(Ok(Message::Binary(_))) => return Some(close::BAD_SUBSCRIBE),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            },
            () = tokio::time::sleep_until(deadline) => return Some(close::IDLE),
        }
    }
}

async fn send(socket: &mut WebSocket, text: &str) -> Result<(), axum::Error> {
    socket.send(Message::Text(Utf8Bytes::from(text))).await
}

async fn bye(mut socket: WebSocket, code: u16) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn origins_normalise_as_the_reference() {
        assert_eq!(
            normalise("HTTPS://Dash.Example.com:443/x?y").as_deref(),
            Some("https://dash.example.com")
        );
        assert_eq!(
            normalise("http://a.test:8080").as_deref(),
            Some("http://a.test:8080")
        );
        assert_eq!(
            normalise("http://u:p@a.test/").as_deref(),
            Some("http://a.test")
        );
        assert_eq!(normalise("ftp://a.test"), None);
        assert_eq!(normalise("null"), None);
    }
}
