//! Webhook channels: what a config may say (URL policy, headers), and one
//! delivery — a signed JSON POST, retried with backoff on network errors,
//! 429 and 5xx, to an address checked again at send time.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the operator allowed for targets.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub allow_http: bool,
    pub allow_private: bool,
}

/// A validated webhook config.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub hmac_secret: Option<String>,
}

const CONFIG_MAX_BYTES: usize = 16 * 1024;
const RESOLVE_WAIT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Delays before the second and third attempt.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// Characters of a receiver's answer kept on the delivery.
const BODY_KEEP: usize = 1000;
/// Bytes of a receiver's answer read at most (specs/decisions.md N7); the
/// connection is dropped after them.
const BODY_READ_MAX: usize = 64 * 1024;
/// Headers the brain sets itself or that would change the request framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
    "x-z4j-signature",
    "x-z4j-timestamp",
];

/// Parses and checks a config; the error names the bad field.
pub fn parse(config: &Map<String, Value>, policy: Policy) -> Result<Webhook, String> {
    if Value::Object(config.clone()).to_string().len() > CONFIG_MAX_BYTES {
        return Err(format!("config is larger than {CONFIG_MAX_BYTES} bytes"));
    }
    let raw = config
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or("config.url is required (an https:// URL)")?;
    let url = url::Url::parse(raw).map_err(|e| format!("config.url is not a URL: {e}"))?;
    check_scheme(&url, policy)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("config.url has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("config.url must not carry credentials; use config.headers".into());
    }
    let mut headers = Vec::new();
    match config.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("config.headers.{k} must be a string"))?;
                if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                    return Err(format!("config.headers.{k} is set by the brain"));
                }
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(v).is_err()
                {
                    return Err(format!("config.headers.{k} is not a valid header"));
                }
                headers.push((k.clone(), v.to_owned()));
            }
        }
        Some(_) => return Err("config.headers must be an object of strings".into()),
    }
    let hmac_secret = match config.get("hmac_secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err("config.hmac_secret must be a non-empty string".into()),
    };
    Ok(Webhook {
        url,
        headers,
        hmac_secret,
    })
}

fn check_scheme(url: &url::Url, policy: Policy) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if policy.allow_http => Ok(()),
        "http" => Err("scheme 'http' is not allowed; use https:// or set \
                       Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP=true"
            .into()),
        other => Err(format!("scheme '{other}' is not allowed (use https)")),
    }
}

/// Why an address may not receive webhooks (SSRF), or `None`.
pub fn blocked_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if (first & 0xfe00) == 0xfc00 {
                Some("private")
            } else if (first & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("reserved")
            } else {
                None
            }
        }
    }
}

/// Resolves the URL's host and checks every address; returns the one to
/// connect to, so a DNS answer cannot change between check and connect.
pub async fn resolve(url: &url::Url, policy: Policy) -> Result<SocketAddr, String> {
    check_scheme(url, policy)?;
    let host = url.host_str().ok_or("URL has no host")?;
    let port = url.port_or_known_default().ok_or("URL has no port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_WAIT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    if !policy.allow_private {
        for a in &addrs {
            if let Some(why) = blocked_ip(a.ip()) {
                return Err(format!(
                    "target {} resolves to a {why} address ({}); set \
                     Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE=true to allow it",
                    host,
                    a.ip()
                ));
            }
        }
    }
    Ok(first)
}

/// The outcome of one delivery (all attempts).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub success: bool,
    pub status_code: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
}

/// `sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts `body` with up to three attempts. The policy is applied again
/// here: a channel saved while http was allowed is refused once it is not.
pub async fn deliver(hook: &Webhook, body: &str, policy: Policy) -> Outcome {
    let mut out = Outcome::default();
    for attempt in 0..=RETRY_DELAYS.len() {
        if attempt > 0 {
            tokio::time::sleep(RETRY_DELAYS[attempt - 1]).await;
        }
        out.attempts = attempt as u32 + 1;
        let addr = match resolve(&hook.url, policy).await {
            Ok(a) => a,
            Err(e) => {
                // Policy refusals are final; nothing was sent.
                out.error = Some(format!("blocked: {e}"));
                return out;
            }
        };
        match attempt_once(hook, body, addr).await {
            Ok((code, text)) => {
                out.status_code = Some(code);
                out.response_body = Some(text);
                out.success = (200..300).contains(&code);
                out.error = (!out.success).then(|| format!("receiver answered {code}"));
                let retryable = code == 429 || code >= 500;
                if out.success || !retryable {
                    return out;
                }
            }
            Err(e) => {
                out.status_code = None;
                out.response_body = None;
                out.error = Some(e);
            }
        }
    }
    out
}

async fn attempt_once(
    hook: &Webhook,
    body: &str,
    addr: SocketAddr,
) -> Result<(u16, String), String> {
    let host = hook
        .url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let client = reqwest::Client::builder()
        .resolve(host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let mut req = client
        .post(hook.url.clone())
        .header("content-type", "application/json")
        .header("user-agent", "z4j-brain/notification-webhook");
    for (k, v) in &hook.headers {
        req = req.header(k, v);
    }
    if let Some(secret) = &hook.hmac_secret {
        let ts = chrono::Utc::now().timestamp().to_string();
        req = req
            .header("x-z4j-signature", signature(secret, &ts, body))
            .header("x-z4j-timestamp", ts);
    }
    let resp = req
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let code = resp.status().as_u16();
    let (bytes, cut) = crate::net::read_capped(resp, BODY_READ_MAX)
        .await
        .unwrap_or_default();
    let mut text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .take(BODY_KEEP)
        .collect();
    if cut {
        text.push_str(&format!(
            " [answer longer than {BODY_READ_MAX} bytes; not read further]"
        ));
    }
    Ok((code, text))
}

/// A config as the API shows it: secrets masked.
pub fn masked(config: &Map<String, Value>) -> Value {
    let mut out = config.clone();
    if out.get("hmac_secret").is_some_and(|v| !v.is_null()) {
        out.insert("hmac_secret".into(), Value::String("***".into()));
    }
    if let Some(Value::Object(h)) = out.get_mut("headers") {
        for v in h.values_mut() {
            *v = Value::String("***".into());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    const STRICT: Policy = Policy {
        allow_http: false,
        allow_private: false,
    };

    #[test]
    fn config_rules_name_the_field() {
        assert!(parse(&cfg(json!({"url": "https://hooks.example.com/x"})), STRICT).is_ok());
        let e = parse(&cfg(json!({"url": "http://hooks.example.com/x"})), STRICT).unwrap_err();
        assert!(e.contains("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"), "{e}");
        let http = Policy {
            allow_http: true,
            allow_private: false,
        };
        assert!(parse(&cfg(json!({"url": "http://hooks.example.com/x"})), http).is_ok());
        assert!(parse(&cfg(json!({"url": "ftp://x/"})), http).is_err());
        assert!(parse(&cfg(json!({})), STRICT)
            .unwrap_err()
            .contains("config.url"));
        assert!(parse(&cfg(json!({"url": "https://u:p@x.example/"})), STRICT).is_err());
        let e = parse(
            &cfg(json!({"url": "https://x.example/", "headers": {"Host": "evil"}})),
            STRICT,
        )
        .unwrap_err();
        assert!(e.contains("config.headers.Host"), "{e}");
        assert!(parse(
            &cfg(json!({"url": "https://x.example/", "headers": {"X-A": "b\nc"}})),
            STRICT
        )
        .is_err());
    }

    #[test]
    fn private_and_metadata_addresses_are_blocked() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(blocked_ip(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert_eq!(blocked_ip(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let s = signature("k", "1700000000", "{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_ne!(s, signature("k", "1700000001", "{}"));
        assert_ne!(s, signature("k", "1700000000", "{ }"));
    }

    #[test]
    fn secrets_are_masked() {
        let m = masked(&cfg(
            json!({"url": "https://x/", "hmac_secret": "s", "headers": {"A": "b"}}),
        ));
        assert_eq!(
            m,
            json!({"url": "https://x/", "hmac_secret": "***", "headers": {"A": "***"}})
        );
    }
}
