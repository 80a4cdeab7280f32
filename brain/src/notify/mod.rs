//! Notifications: events that matter to operators (a task failed, an
//! agent went offline, a schedule was disabled by its circuit breaker or
//! missed its fire)
//! delivered to the project's channels (webhooks),
//! off the request and ingest paths, with every attempt logged in
//! `notification_deliveries`.

pub mod email;
pub mod sealed;
pub mod webhook;

use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::notifications::{self as store, Channel, NewDelivery};
use crate::store::{Db, StoreError, Ts};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// Alerts waiting for the dispatcher; beyond this they are dropped (and
/// logged) rather than slowing ingest down.
const QUEUE: usize = 4096;

pub const TRIGGERS: &[&str] = &[
    "task.failed",
    "agent.offline",
    "schedule.circuit_breaker.tripped",
    "schedule.misfired",
];

/// Something to tell a project's channels.
#[derive(Debug, Clone)]
pub struct Alert {
    pub project_id: Uuid,
    pub trigger: &'static str,
    pub task_id: Option<String>,
    pub task_name: Option<String>,
    /// Trigger-specific fields merged into the webhook body.
    pub fields: Map<String, Value>,
}

/// Where alerts are raised; cheap to clone.
#[derive(Clone)]
pub struct Alerts(mpsc::Sender<Alert>);

impl Alerts {
    pub fn channel() -> (Alerts, mpsc::Receiver<Alert>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Alerts(tx), rx)
    }

    /// Never waits: a full queue drops the alert with a warning.
    pub fn raise(&self, a: Alert) {
        if let Err(e) = self.0.try_send(a) {
            tracing::warn!(error = %e, "notification queue full; alert dropped");
        }
    }
}

pub fn policy(s: &Settings) -> webhook::Policy {
    webhook::Policy {
        allow_http: s.notifications_webhook_allow_http,
        allow_private: s.notifications_webhook_allow_private,
    }
}

/// Reads a stored channel's config.
/// The channel types this brain delivers to.
pub const CHANNEL_TYPES: &[&str] = &["webhook", "email"];

/// A channel's validated destination.
pub enum Target {
    Webhook(webhook::Webhook),
    Email(email::Smtp),
}

/// Checks `config` for a channel of `kind`; the error names the field.
pub fn parse_target(
    s: &Settings,
    kind: &str,
    config: &Map<String, Value>,
) -> Result<Target, String> {
    match kind {
        "webhook" => webhook::parse(config, policy(s)).map(Target::Webhook),
        "email" => email::parse(config).map(Target::Email),
        other => Err(format!(
            "channel type '{other}' is not supported by this brain (supported: {})",
            CHANNEL_TYPES.join(", ")
        )),
    }
}

/// The check that needs DNS: the target resolves to an allowed address.
pub async fn check_target(s: &Settings, t: &Target) -> Result<(), String> {
    match t {
        Target::Webhook(hook) => webhook::resolve(&hook.url, policy(s)).await.map(|_| ()),
        Target::Email(smtp) => email::resolve(smtp, s.notifications_email_allow_private)
            .await
            .map(|_| ()),
    }
}

/// One delivery of `body` (JSON; e-mails carry it as their text).
pub async fn deliver(s: &Settings, t: &Target, trigger: &str, body: &str) -> webhook::Outcome {
    match t {
        Target::Webhook(hook) => webhook::deliver(hook, body, policy(s)).await,
        Target::Email(smtp) => {
            let text = serde_json::from_str::<Value>(body)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| body.to_owned());
            email::send(
                smtp,
                &[],
                &format!("z4j: {trigger}"),
                &text,
                s.notifications_email_allow_private,
            )
            .await
        }
    }
}

/// A config as the API shows it: secrets masked.
pub fn masked(kind: &str, config: &Map<String, Value>) -> Value {
    match kind {
        "email" => email::masked(config),
        _ => webhook::masked(config),
    }
}

/// A mail to one person (a reset link, an invitation) through the first
/// active e-mail channel of `projects` that delivers it; the channel used,
/// or the last reason none did. The text is never logged.
pub async fn mail_person(
    db: &Db,
    s: &Settings,
    projects: &[Uuid],
    to: &str,
    subject: &str,
    text: &str,
) -> Result<Uuid, String> {
    let to = to
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| format!("the address is not deliverable: {e}"))?;
    let mut last = "no active e-mail channel in the projects concerned".to_owned();
    for project in projects {
        let channels = store::channels(db, *project)
            .await
            .map_err(|e| e.to_string())?;
        for c in channels.iter().filter(|c| c.is_active && c.kind == "email") {
            let smtp = match open_config(s, c).and_then(|cfg| email::parse(&cfg)) {
                Ok(smtp) => smtp,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let o = email::send(
                &smtp,
                std::slice::from_ref(&to),
                subject,
                text,
                s.notifications_email_allow_private,
            )
            .await;
            if o.success {
                return Ok(c.id);
            }
            last = o.error.unwrap_or_default();
        }
    }
    Err(last)
}

pub fn open_config(s: &Settings, c: &Channel) -> Result<Map<String, Value>, String> {
    let text = sealed::open(s.master_secrets(), sealed::CHANNEL_CONFIG, &c.config)
        .map_err(|e| e.to_string())?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("stored channel config is not a JSON object".into()),
    }
}

/// Delivers alerts until shutdown.
/// What deliveries need: the database to log them in, the settings their
/// targets are checked against, the metrics they are counted in.
#[derive(Clone)]
pub struct Sender {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
}

/// Routes every raised alert to its project's channels until shutdown.
pub async fn run(sender: Sender, mut rx: mpsc::Receiver<Alert>, mut stop: watch::Receiver<bool>) {
    loop {
        let alert = tokio::select! {
            a = rx.recv() => match a { Some(a) => a, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = fan_out(&sender, alert).await {
            tracing::warn!(error = %e, "notification routing failed");
        }
    }
}

async fn fan_out(sender: &Sender, a: Alert) -> Result<(), StoreError> {
    let db = &sender.db;
    let Some(route) = store::route_for(db, a.project_id, a.trigger).await? else {
        return Ok(());
    };
    if !store::take_cooldown(db, &route, Ts::now()).await? {
        tracing::debug!(trigger = a.trigger, "notification skipped (cooldown)");
        return Ok(());
    }
    let mut body = json!({
        "trigger": a.trigger,
        "project_id": a.project_id,
        "task_id": a.task_id,
        "task_name": a.task_name,
        "timestamp": Ts::now().to_rfc3339(),
    });
    if let Value::Object(b) = &mut body {
        b.extend(a.fields.clone());
    }
    let body = body.to_string();
    for id in route.channel_ids() {
        let Some(channel) = store::channel(db, a.project_id, id).await? else {
            continue;
        };
        if !channel.is_active {
            continue;
        }
        // Each delivery on its own task: a hanging receiver delays only
        // its own alert.
        let (sender, a, body) = (sender.clone(), a.clone(), body.clone());
        tokio::spawn(async move {
            send_and_log(
                &sender,
                &channel,
                a.trigger,
                a.task_id.as_deref(),
                a.task_name.as_deref(),
                &body,
            )
            .await;
        });
    }
    Ok(())
}

/// One delivery to one channel, logged. Returns the outcome.
pub async fn send_and_log(
    sender: &Sender,
    channel: &Channel,
    trigger: &str,
    task_id: Option<&str>,
    task_name: Option<&str>,
    body: &str,
) -> webhook::Outcome {
    let (db, s) = (&sender.db, sender.settings.as_ref());
    let outcome = match open_config(s, channel).and_then(|cfg| parse_target(s, &channel.kind, &cfg))
    {
        Ok(target) => deliver(s, &target, trigger, body).await,
        Err(e) => webhook::Outcome {
            error: Some(format!("blocked: {e}")),
            ..Default::default()
        },
    };
    let logged = store::record_delivery(
        db,
        &NewDelivery {
            project_id: channel.project_id,
            channel: Some(channel),
            trigger,
            task_id,
            task_name,
            status: if outcome.success { "sent" } else { "failed" },
            response_code: outcome.status_code,
            response_body: outcome.response_body.as_deref(),
            error: outcome.error.as_deref(),
            attempts: outcome.attempts,
        },
    )
    .await;
    if let Err(e) = logged {
        tracing::warn!(error = %e, channel = %channel.id, "cannot log a notification delivery");
    }
    crate::metrics::bump(
        &sender.metrics.notifications,
        &[
            channel.kind.as_str(),
            if outcome.success { "sent" } else { "failed" },
        ],
    );
    if !outcome.success {
        tracing::warn!(channel = %channel.id, trigger, error = ?outcome.error, "notification not delivered");
    }
    outcome
}
