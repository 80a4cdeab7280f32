//! `GET /api/v1/schedulers`: the scheduler fleet page's data. Every URL of
//! `Z4J_SCHEDULER_INFO_URLS` is asked for `/info` in parallel, each within
//! 3 s (2 s to connect) and without following redirects; one failing
//! instance is shown as such, never as an error of the whole request
//! (scheduler spec §4.12).

use super::error::ApiError;
use super::session;
use super::Shared;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

/// Where the embedded scheduler's ops HTTP answers when no URL is listed.
const EMBEDDED_INFO_URL: &str = "http://127.0.0.1:7800";

pub fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/schedulers", get(fleet))
}

async fn fleet(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    if caller.via_key || !caller.user.is_admin {
        return Err(ApiError::Forbidden("global admin session required".into()));
    }
    Ok(Json(fleet_view(&state).await?))
}

/// Every configured instance's `/info` (or the embedded scheduler's), the
/// healthy count, and the embedded supervisor's view when it runs.
pub(super) async fn fleet_view(state: &Shared) -> Result<Value, ApiError> {
    let mut urls: Vec<String> = state.settings.scheduler_info_urls.0.clone();
    if urls.is_empty() && state.settings.embedded_scheduler {
        urls.push(EMBEDDED_INFO_URL.to_owned());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let probes = urls.iter().map(|u| probe(&client, u));
    let schedulers: Vec<Value> = futures_util::future::join_all(probes).await;
    let healthy = schedulers.iter().filter(|s| s["ok"] == json!(true)).count();
    let mut body = json!({
        "schedulers": schedulers,
        "total": schedulers.len(),
        "healthy": healthy,
    });
    if state.settings.embedded_scheduler {
        // z4j-rs: the supervisor's own view (decision Y10).
        body["embedded"] = json!(state.embedded.get());
    }
    Ok(body)
}

fn entry(url: &str, ok: Option<bool>, info: Value, error: Option<String>) -> Value {
    json!({"url": url, "ok": ok, "info": info, "error": error})
}

/// One instance: `ok` true with its payload, false for an answer that is
/// not a valid `/info`, null when it could not be reached.
async fn probe(client: &reqwest::Client, url: &str) -> Value {
    let parsed = match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            return entry(
                url,
                Some(false),
                Value::Null,
                Some("only http:// and https:// URLs are probed".into()),
            )
        }
    };
    let target = format!("{}/info", parsed.as_str().trim_end_matches('/'));
    let resp = match client.get(&target).send().await {
        Ok(r) => r,
        Err(e) => return entry(url, None, Value::Null, Some(format!("unreachable: {e}"))),
    };
    let status = resp.status();
    // At most 64 KiB of a body is read.
    let body = match crate::net::read_capped(resp, 64 * 1024).await {
        Ok((b, _)) => b,
        Err(e) => return entry(url, None, Value::Null, Some(format!("unreachable: {e}"))),
    };
    let text = String::from_utf8_lossy(&body);
    if status.as_u16() != 200 {
        let head: String = text.chars().take(200).collect();
        return entry(
            url,
            Some(false),
            Value::Null,
            Some(format!("HTTP {}: {head}", status.as_u16())),
        );
    }
    let info: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return entry(
                url,
                Some(false),
                Value::Null,
                Some("/info is not JSON".into()),
            )
        }
    };
    match check_info(&info) {
        Ok(()) => entry(url, Some(true), info, None),
        Err(why) => entry(
            url,
            Some(false),
            Value::Null,
            Some(format!("/info does not match the expected shape: {why}")),
        ),
    }
}

/// The fields the page relies on.
fn check_info(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("not an object")?;
    for k in ["version", "instance_id", "started_at"] {
        if o.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("{k} must be a non-empty string"));
        }
    }
    if !o.get("ready").is_some_and(Value::is_boolean) {
        return Err("ready must be a boolean".into());
    }
    if !o
        .get("uptime_seconds")
        .and_then(Value::as_f64)
        .is_some_and(|u| u.is_finite() && u >= 0.0)
    {
        return Err("uptime_seconds must be a number >= 0".into());
    }
    if o.get("schedules_loaded").and_then(Value::as_u64).is_none() {
        return Err("schedules_loaded must be an integer >= 0".into());
    }
    let sub = o
        .get("subsystems")
        .and_then(Value::as_object)
        .ok_or("subsystems must be an object")?;
    for k in [
        "brain_client_connected",
        "cache_initial_sync_complete",
        "leader_gate_initialised",
    ] {
        if !sub.get(k).is_some_and(Value::is_boolean) {
            return Err(format!("subsystems.{k} must be a boolean"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_shape() {
        let good = json!({"version": "1.13.0", "instance_id": "a", "started_at": "t", "ready": false,
            "uptime_seconds": 1.5, "schedules_loaded": 0,
            "subsystems": {"brain_client_connected": true, "cache_initial_sync_complete": true, "leader_gate_initialised": true}});
        assert!(check_info(&good).is_ok());
        let mut bad = good.clone();
        bad["schedules_loaded"] = json!(-1);
        assert!(check_info(&bad).is_err());
        let mut bad = good.clone();
        bad["version"] = json!("");
        assert!(check_info(&bad).is_err());
        assert!(check_info(&json!([])).is_err());
    }
}
