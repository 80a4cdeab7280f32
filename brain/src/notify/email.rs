//! E-mail channels: what an SMTP config may say, and one delivery to an
//! address checked against the SSRF policy at send time (the same check
//! as webhooks). Used for alerts and for password-reset links.

use super::webhook::{blocked_ip, Outcome};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Map, Value};
use std::time::Duration;

const CONFIG_MAX_BYTES: usize = 16 * 1024;
const RESOLVE_WAIT: Duration = Duration::from_secs(5);
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Implicit TLS (SMTPS); every other port speaks STARTTLS when TLS is on.
const SMTPS_PORT: u16 = 465;
const MAX_RECIPIENTS: usize = 50;

/// A validated SMTP config.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub credentials: Option<(String, String)>,
    pub from: Mailbox,
    /// Alert recipients (a reset link goes to the account's address).
    pub to: Vec<Mailbox>,
}

fn text<'a>(config: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(format!("config.{key} must be a string")),
    }
}

fn mailbox(raw: &str, field: &str) -> Result<Mailbox, String> {
    raw.parse::<Mailbox>()
        .map_err(|e| format!("config.{field} is not an e-mail address ({raw}): {e}"))
}

/// Parses and checks a config; the error names the bad field.
pub fn parse(config: &Map<String, Value>) -> Result<Smtp, String> {
    if Value::Object(config.clone()).to_string().len() > CONFIG_MAX_BYTES {
        return Err(format!("config is larger than {CONFIG_MAX_BYTES} bytes"));
    }
    let host = text(config, "smtp_host")?
        .ok_or("config.smtp_host is required (the SMTP server's host name or address)")?;
    if host.contains(['/', ' ', '@']) {
        return Err(format!("config.smtp_host is not a host name: {host}"));
    }
    let port = match config.get("smtp_port") {
        None | Some(Value::Null) => 587,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|p| (1..=65_535).contains(p))
            .ok_or("config.smtp_port must be a port number (1..65535)")? as u16,
    };
    let tls = match config.get("smtp_tls") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("config.smtp_tls must be true or false".into()),
    };
    let user = text(config, "smtp_user")?;
    let pass = text(config, "smtp_pass")?;
    let credentials = match (user, pass) {
        (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
        (None, None) => None,
        _ => return Err("config.smtp_user and config.smtp_pass go together".into()),
    };
    if credentials.is_some() && !tls {
        return Err(
            "config.smtp_user needs config.smtp_tls: credentials are never sent in clear".into(),
        );
    }
    let from_raw = text(config, "from_addr")?
        .or(user)
        .ok_or("config.from_addr is required (or an smtp_user that is an address)")?;
    let from = mailbox(from_raw, "from_addr")?;
    let to = match config.get("to_addrs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_RECIPIENTS => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| "config.to_addrs must hold strings".to_owned())
                    .and_then(|s| mailbox(s, "to_addrs"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format!(
                "config.to_addrs must be a list of at most {MAX_RECIPIENTS} addresses"
            ))
        }
    };
    Ok(Smtp {
        host: host.to_owned(),
        port,
        tls,
        credentials,
        from,
        to,
    })
}

/// Resolves the server and checks every address; the one to connect to.
pub async fn resolve(smtp: &Smtp, allow_private: bool) -> Result<std::net::IpAddr, String> {
    let host = smtp.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout(RESOLVE_WAIT, tokio::net::lookup_host((host, smtp.port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
    let first = addrs
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    if !allow_private {
        for a in &addrs {
            if let Some(why) = blocked_ip(a.ip()) {
                return Err(format!(
                    "SMTP server {host} resolves to a {why} address ({}); set \
                     Z4J_NOTIFICATIONS_EMAIL_ALLOW_PRIVATE=true to allow it",
                    a.ip()
                ));
            }
        }
    }
    Ok(first.ip())
}

/// Sends one plain-text message to `to` (or the config's recipients).
pub async fn send(
    smtp: &Smtp,
    to: &[Mailbox],
    subject: &str,
    body: &str,
    allow_private: bool,
) -> Outcome {
    let outcome = |error: Option<String>| Outcome {
        success: error.is_none(),
        error,
        attempts: 1,
        ..Default::default()
    };
    let recipients = if to.is_empty() { &smtp.to } else { to };
    if recipients.is_empty() {
        return outcome(Some("no recipients (config.to_addrs is empty)".into()));
    }
    let ip = match resolve(smtp, allow_private).await {
        Ok(ip) => ip,
        Err(e) => return outcome(Some(format!("blocked: {e}"))),
    };
    let mut message = Message::builder().from(smtp.from.clone()).subject(subject);
    for r in recipients {
        message = message.to(r.clone());
    }
    let message = match message
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
    {
        Ok(m) => m,
        Err(e) => return outcome(Some(format!("cannot build the message: {e}"))),
    };
    // Connect to the checked address; TLS still verifies the host name.
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
        .port(smtp.port)
        .timeout(Some(SEND_TIMEOUT));
    if smtp.tls {
        let params = match TlsParameters::new(smtp.host.clone()) {
            Ok(p) => p,
            Err(e) => return outcome(Some(format!("TLS setup failed: {e}"))),
        };
        builder = builder.tls(if smtp.port == SMTPS_PORT {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let Some((u, p)) = &smtp.credentials {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    match builder.build().send(message).await {
        Ok(_) => outcome(None),
        Err(e) => outcome(Some(format!("SMTP delivery failed: {e}"))),
    }
}

/// A config as the API shows it: the password masked.
pub fn masked(config: &Map<String, Value>) -> Value {
    let mut out = config.clone();
    if out.get("smtp_pass").is_some_and(|v| !v.is_null()) {
        out.insert("smtp_pass".into(), Value::String("***".into()));
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

    #[test]
    fn a_config_is_checked_field_by_field() {
        let ok = parse(&cfg(
            json!({"smtp_host": "mail.example.com", "from_addr": "z4j@example.com"}),
        ));
        let ok = ok.map_err(|e| e.to_string());
        assert!(
            matches!(&ok, Ok(s) if s.port == 587 && s.tls && s.credentials.is_none()),
            "{ok:?}"
        );
        for (bad, field) in [
            (json!({"from_addr": "z4j@example.com"}), "smtp_host"),
            (json!({"smtp_host": "mail.example.com"}), "from_addr"),
            (
                json!({"smtp_host": "m", "from_addr": "x@y.z", "smtp_port": 70000}),
                "smtp_port",
            ),
            (
                json!({"smtp_host": "m", "from_addr": "not an address"}),
                "from_addr",
            ),
            (
                json!({"smtp_host": "m", "from_addr": "x@y.z", "smtp_user": "u"}),
                "smtp_pass",
            ),
            (
                json!({"smtp_host": "m", "from_addr": "x@y.z", "smtp_user": "u", "smtp_pass": "p", "smtp_tls": false}),
                "smtp_tls",
            ),
            (
                json!({"smtp_host": "m", "from_addr": "x@y.z", "to_addrs": ["nope"]}),
                "to_addrs",
            ),
        ] {
            let err = parse(&cfg(bad.clone())).err().unwrap_or_default();
            assert!(err.contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn the_password_is_masked() {
        let m = masked(&cfg(json!({"smtp_host": "m", "smtp_pass": "hunter2"})));
        assert_eq!(m["smtp_pass"], "***");
        assert_eq!(m["smtp_host"], "m");
    }
}
