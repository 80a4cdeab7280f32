//! Webhook notifications: channels and routes through the API, signed
//! deliveries on task failure and agent offline, retries, the http://
//! policy at configuration and at dispatch, a hanging receiver. A wiremock
//! server on loopback is the receiver.

use super::{ensure, ensure_eq, owned, R};
use crate::agent::{self, task_event, Operator};
use crate::brain::{Brain, StartSpec};
use crate::runner::Ctx;
use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BASE: &str = "/api/v1/projects/default/notifications";
/// Loopback receivers need both escape hatches.
const LOOPBACK_OK: &[(&str, &str)] = &[
    ("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP", "true"),
    ("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE", "true"),
];

async fn receiver(route: &str, status: u16, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(status).set_delay(delay))
        .mount(&server)
        .await;
    server
}

async fn post(
    brain: &Brain,
    op: &Operator,
    route: &str,
    body: Json,
) -> Result<(u16, Json), String> {
    op.send(
        brain,
        reqwest::Method::POST,
        &format!("{BASE}{route}"),
        Some(body),
    )
    .await
}

/// A channel to `url` routed for `trigger`; returns the channel id.
async fn channel_for(
    brain: &Brain,
    op: &Operator,
    name: &str,
    config: Json,
) -> Result<String, String> {
    let (status, c) = post(
        brain,
        op,
        "/channels",
        json!({"name": name, "type": "webhook", "config": config}),
    )
    .await?;
    ensure_eq(status, 201, &format!("create channel {name}: {c}"))?;
    Ok(c["id"].as_str().unwrap_or_default().to_owned())
}

async fn route(brain: &Brain, op: &Operator, trigger: &str, ids: &[&str]) -> R {
    let (status, r) = post(
        brain,
        op,
        "/defaults",
        json!({"trigger": trigger, "project_channel_ids": ids}),
    )
    .await?;
    ensure_eq(status, 201, &format!("route {trigger}: {r}"))
}

async fn wait_requests(
    server: &MockServer,
    n: usize,
    wait: Duration,
) -> Result<Vec<wiremock::Request>, String> {
    let deadline = Instant::now() + wait;
    loop {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= n {
            return Ok(got);
        }
        if Instant::now() > deadline {
            return Err(format!("receiver got {} requests, want {n}", got.len()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deliveries(brain: &Brain, op: &Operator) -> Result<Vec<Json>, String> {
    let (_, d) = op.get(brain, &format!("{BASE}/deliveries")).await?;
    Ok(d["items"].as_array().cloned().unwrap_or_default())
}

async fn wait_deliveries(
    brain: &Brain,
    op: &Operator,
    n: usize,
    wait: Duration,
) -> Result<Vec<Json>, String> {
    let deadline = Instant::now() + wait;
    loop {
        let d = deliveries(brain, op).await?;
        if d.len() >= n {
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(format!("{} deliveries logged, want {n}: {d:?}", d.len()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header<'a>(r: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn fail_task(brain: &Brain, creds: &agent::Credentials, task: &str) -> R {
    let mut s = agent::connect(brain, creds, Some("w")).await?;
    let e = task_event(
        task,
        "task.failed",
        json!({"task_name": "jobs.explode", "exception": "ValueError: boom"}),
    );
    s.send_events("b-fail", &[e]).await?;
    s.expect_ack("b-fail", Duration::from_secs(10)).await?;
    Ok(())
}

pub async fn task_failed_webhook(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(LOOPBACK_OK);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "notifier").await?;
    let server = receiver("/hook", 200, Duration::ZERO).await;
    let (status, c) = post(
        &brain,
        &op,
        "/channels",
        json!({"name": "ops", "type": "webhook",
               "config": {"url": format!("{}/hook", server.uri()), "hmac_secret": "s3cret", "headers": {"X-Team": "ops"}}}),
    )
    .await?;
    ensure_eq(status, 201, &format!("create channel: {c}"))?;
    ensure_eq(
        (
            c["config"]["hmac_secret"].clone(),
            c["config"]["headers"]["X-Team"].clone(),
        ),
        (json!("***"), json!("***")),
        "secrets are masked in the API",
    )?;
    let id = c["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = post(&brain, &op, "/channels", json!({"name": "ops", "type": "webhook", "config": {"url": format!("{}/hook", server.uri())}})).await?;
    ensure_eq(status, 409, "a second channel with the same name")?;
    let (status, _) = post(
        &brain,
        &op,
        "/channels",
        json!({"name": "chat", "type": "carrier-pigeon", "config": {}}),
    )
    .await?;
    ensure_eq(status, 422, "an unsupported channel type")?;
    route(&brain, &op, "task.failed", &[&id]).await?;
    let (status, _) = post(
        &brain,
        &op,
        "/defaults",
        json!({"trigger": "task.failed", "project_channel_ids": [id]}),
    )
    .await?;
    ensure_eq(status, 409, "a second route for the same trigger")?;

    fail_task(&brain, &creds, "t-boom").await?;
    let got = wait_requests(&server, 1, ctx.scaled(5.0)).await?;
    let r = &got[0];
    let body: Json = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    ensure_eq(
        (
            body["trigger"].as_str(),
            body["task_id"].as_str(),
            body["task_name"].as_str(),
            body["exception"].as_str(),
        ),
        (
            Some("task.failed"),
            Some("t-boom"),
            Some("jobs.explode"),
            Some("ValueError: boom"),
        ),
        &format!("webhook body {body}"),
    )?;
    ensure_eq(header(r, "x-team"), Some("ops"), "custom header")?;
    let ts = header(r, "x-z4j-timestamp").ok_or("no X-Z4J-Timestamp")?;
    let skew =
        (chrono::Utc::now().timestamp() - ts.parse::<i64>().map_err(|e| e.to_string())?).abs();
    ensure(skew <= 30, format!("X-Z4J-Timestamp {ts} is not now"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").map_err(|e| e.to_string())?;
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let want = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    ensure_eq(
        header(r, "x-z4j-signature"),
        Some(want.as_str()),
        "signature over timestamp.body",
    )?;
    let d = wait_deliveries(&brain, &op, 1, ctx.scaled(5.0)).await?;
    ensure_eq(
        (
            d[0]["status"].as_str(),
            d[0]["response_code"].as_i64(),
            d[0]["trigger"].as_str(),
            d[0]["channel_name"].as_str(),
        ),
        (Some("sent"), Some(200), Some("task.failed"), Some("ops")),
        &format!("delivery log {d:?}"),
    )?;
    // The channel test endpoint posts once and reports the answer.
    let (status, t) = post(&brain, &op, &format!("/channels/{id}/test"), json!({})).await?;
    ensure_eq(
        (status, t["success"].as_bool(), t["status_code"].as_i64()),
        (200, Some(true), Some(200)),
        &format!("channel test {t}"),
    )?;
    ensure_eq(
        server.received_requests().await.unwrap_or_default().len(),
        2,
        "one failure, one test: nothing duplicated",
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A receiver answering 500 gets three attempts and a `failed` log entry; a
/// hanging receiver does not hold up another channel.
pub async fn failing_receivers(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(LOOPBACK_OK);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "notifier").await?;
    let broken = receiver("/hook", 500, Duration::ZERO).await;
    let hanging = receiver("/hook", 200, Duration::from_secs(60)).await;
    let healthy = receiver("/hook", 200, Duration::ZERO).await;
    let mut ids = Vec::new();
    for (name, s) in [
        ("broken", &broken),
        ("hanging", &hanging),
        ("healthy", &healthy),
    ] {
        ids.push(
            channel_for(
                &brain,
                &op,
                name,
                json!({"url": format!("{}/hook", s.uri())}),
            )
            .await?,
        );
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    route(&brain, &op, "task.failed", &refs).await?;
    fail_task(&brain, &creds, "t-x").await?;
    wait_requests(&healthy, 1, ctx.scaled(3.0))
        .await
        .map_err(|e| format!("healthy channel while another hangs: {e}"))?;
    let got = wait_requests(&broken, 3, ctx.scaled(10.0)).await?;
    ensure_eq(got.len(), 3, "a 500 is retried twice, then given up")?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let d = deliveries(&brain, &op).await?;
        if let Some(b) = d.iter().find(|x| x["channel_name"] == "broken") {
            return ensure_eq(
                (
                    b["status"].as_str(),
                    b["attempts"].as_i64(),
                    b["response_code"].as_i64(),
                ),
                (Some("failed"), Some(3), Some(500)),
                &format!("failed delivery {b}"),
            );
        }
        if Instant::now() > deadline {
            return Err(format!("no delivery logged for the broken channel: {d:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A refused channel configuration: 422 (the reference answers 409:
/// DIVERGENCES.md).
fn refused(status: u16) -> bool {
    status == 422
}

/// `Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP`: refused when configured, and
/// again when a channel saved under the opt-in is dispatched without it.
pub async fn http_policy(ctx: Arc<Ctx>) -> R {
    let (mut env, _) = ctx.pinned_admin_env(&[]).await?;
    let strict = env.clone();
    env.extend(owned(LOOPBACK_OK));
    let brain = ctx
        .start_spec(StartSpec {
            env: strict.clone(),
            ..Default::default()
        })
        .await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "notifier").await?;
    let server = receiver("/hook", 200, Duration::ZERO).await;
    let url = format!("{}/hook", server.uri());
    let (status, body) = post(
        &brain,
        &op,
        "/channels",
        json!({"name": "plain", "type": "webhook", "config": {"url": url}}),
    )
    .await?;
    ensure(
        refused(status)
            && body
                .to_string()
                .contains("Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"),
        format!("http:// refused by default, naming the setting: {status} {body}"),
    )?;
    let (status, body) = post(&brain, &op, "/channels", json!({"name": "tls-loopback", "type": "webhook", "config": {"url": "https://127.0.0.1:9/hook"}})).await?;
    ensure(
        refused(status) && body.to_string().contains("loopback"),
        format!("a loopback target refused by default: {status} {body}"),
    )?;
    let home = brain.stop_keep_home().await;
    // Saved while http was allowed...
    let brain = ctx
        .start_spec(StartSpec {
            env,
            home: Some(home),
            ..Default::default()
        })
        .await?;
    let op = agent::login(&brain).await?;
    let id = channel_for(&brain, &op, "plain", json!({"url": url})).await?;
    route(&brain, &op, "task.failed", &[&id]).await?;
    let home = brain.stop_keep_home().await;
    // ...and dispatched after the opt-in was withdrawn: refused, logged.
    let brain = ctx
        .start_spec(StartSpec {
            env: strict,
            home: Some(home),
            ..Default::default()
        })
        .await?;
    let op = agent::login(&brain).await?;
    fail_task(&brain, &creds, "t-plain").await?;
    let d = wait_deliveries(&brain, &op, 1, ctx.scaled(5.0)).await?;
    ensure(
        d[0]["status"] == "failed"
            && d[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("blocked") && e.contains("http")),
        format!("dispatch-time refusal logged: {:?}", d[0]),
    )?;
    ensure_eq(
        server.received_requests().await.unwrap_or_default().len(),
        0,
        "nothing sent over plain http",
    )
}

/// An agent that stops answering raises one `agent.offline` notification per
/// offline episode.
pub async fn agent_offline(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(LOOPBACK_OK);
    env.extend_from_slice(&[
        ("Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS", "1"),
        ("Z4J_AGENT_HEALTH_SWEEP_SECONDS", "1"),
        ("Z4J_AGENT_OFFLINE_ALERT_GRACE_SECONDS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "flaky-host").await?;
    let server = receiver("/hook", 200, Duration::ZERO).await;
    let id = channel_for(
        &brain,
        &op,
        "pager",
        json!({"url": format!("{}/hook", server.uri())}),
    )
    .await?;
    route(&brain, &op, "agent.offline", &[&id]).await?;
    let s = agent::connect(&brain, &creds, Some("w")).await?;
    drop(s);
    let got = wait_requests(&server, 1, ctx.scaled(6.0)).await?;
    let body: Json = serde_json::from_slice(&got[0].body).map_err(|e| e.to_string())?;
    ensure_eq(
        (
            body["trigger"].as_str(),
            body["agent_id"].as_str(),
            body["agent_name"].as_str(),
        ),
        (
            Some("agent.offline"),
            Some(creds.agent_id.as_str()),
            Some("flaky-host"),
        ),
        &format!("agent.offline body {body}"),
    )?;
    tokio::time::sleep(ctx.scaled(3.0)).await;
    ensure_eq(
        server.received_requests().await.unwrap_or_default().len(),
        1,
        "one alert per offline episode",
    )
}

/// A schedule disabled by its circuit breaker raises one
/// `schedule.circuit_breaker.tripped` notification naming the schedule and
/// the failure count (scheduler spec §5.3); a schedule one failure short
/// raises none.
pub async fn schedule_breaker(ctx: Arc<Ctx>) -> R {
    use super::scheduler::{create, insecure_brain, slot};
    let mut extra = vec![
        ("Z4J_SCHEDULE_CIRCUIT_BREAKER_THRESHOLD", "2"),
        ("Z4J_SCHEDULE_CIRCUIT_BREAKER_INTERVAL_SECONDS", "5"),
    ];
    extra.extend_from_slice(LOOPBACK_OK);
    let (brain, port) = insecure_brain(&ctx, &extra).await?;
    let op = agent::login(&brain).await?;
    let server = receiver("/hook", 200, Duration::ZERO).await;
    let id = channel_for(
        &brain,
        &op,
        "scheduling",
        json!({"url": format!("{}/hook", server.uri())}),
    )
    .await?;
    route(&brain, &op, "schedule.circuit_breaker.tripped", &[&id]).await?;
    let mut c = crate::sched::insecure(port).await?;
    let tripping = create(&brain, &op, "nightly", json!({})).await?;
    let short = create(&brain, &op, "hourly", json!({})).await?;
    for (schedule, n) in [(&tripping, 2), (&short, 1)] {
        for i in 0..n {
            let req = crate::sched::fire_request(schedule, slot(100 + 10 * i));
            c.fire_schedule(req.clone())
                .await
                .map_err(|e| e.to_string())?;
            c.acknowledge_fire_result(crate::sched::ack(&req.fire_id, "failed", "dispatch failed"))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let got = wait_requests(&server, 1, ctx.scaled(5.0 + 5.0)).await?;
    let body: Json = serde_json::from_slice(&got[0].body).map_err(|e| e.to_string())?;
    ensure_eq(
        (
            body["trigger"].as_str(),
            body["schedule_id"].as_str(),
            body["schedule_name"].as_str(),
            body["consecutive_failures"].as_i64(),
        ),
        (
            Some("schedule.circuit_breaker.tripped"),
            Some(tripping.as_str()),
            Some("nightly"),
            Some(2),
        ),
        &format!("breaker notification body {body}"),
    )?;
    // Another sweep: nothing more (tripped once; the short one never).
    tokio::time::sleep(ctx.scaled(6.0)).await;
    ensure_eq(
        server.received_requests().await.unwrap_or_default().len(),
        1,
        "breaker notifications after two sweeps",
    )
}

/// The misfire detector (scheduler spec §5.5), with a 5 s grace and a 1 s
/// sweep: an interval schedule of 5 s that never fires is not misfired
/// 8 s after its creation and is by 12 s — once per anchor (an audit row,
/// `GET …/misfires` and `…/{id}/misfires`, one `schedule.misfired`
/// notification); a fire that moves `last_run_at` opens a new episode; a
/// paused schedule never misfires; a sweep of 0 turns the detector off.
pub async fn schedule_misfired(ctx: Arc<Ctx>) -> R {
    use super::scheduler::{create, get, insecure_brain, slot};
    const SCHEDULES: &str = "/api/v1/projects/default/schedules";
    let mut extra = vec![
        ("Z4J_SCHEDULER_MISFIRE_GRACE_SECONDS", "5"),
        ("Z4J_SCHEDULER_MISFIRE_SWEEP_SECONDS", "1"),
    ];
    extra.extend_from_slice(LOOPBACK_OK);
    let (brain, port) = insecure_brain(&ctx, &extra).await?;
    let op = agent::login(&brain).await?;
    let server = receiver("/hook", 200, Duration::ZERO).await;
    let channel = channel_for(
        &brain,
        &op,
        "scheduling",
        json!({"url": format!("{}/hook", server.uri())}),
    )
    .await?;
    route(&brain, &op, "schedule.misfired", &[&channel]).await?;
    let t0 = Instant::now();
    let late = create(&brain, &op, "late", json!({"expression": "5s"})).await?;
    let paused = create(&brain, &op, "resting", json!({"expression": "5s"})).await?;
    let (st, _) = op
        .send(
            &brain,
            reqwest::Method::POST,
            &format!("{SCHEDULES}/{paused}/pause"),
            None,
        )
        .await?;
    ensure_eq(st, 200, "pause")?;
    let created = get(&brain, &op, &late).await?["created_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or("created_at of the schedule")?;
    let misfires = |path: String| {
        let (op, brain) = (op.clone(), &brain);
        async move {
            let (st, body) = op.get(brain, &path).await?;
            ensure_eq(st, 200, &format!("{path}: {body}"))?;
            Ok::<Vec<Json>, String>(body.as_array().cloned().unwrap_or_default())
        }
    };
    let all = format!("{SCHEDULES}/misfires");
    // Not before expected (5 s) + grace (5 s).
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(t0.elapsed())).await;
    ensure_eq(
        misfires(all.clone()).await?.len(),
        0,
        "misfires 8 s after creation",
    )?;
    let deadline = t0 + ctx.scaled(12.0);
    let first = loop {
        let got = misfires(all.clone()).await?;
        if let Some(m) = got.first() {
            break m.clone();
        }
        if Instant::now() > deadline {
            return Err("no misfire 12 s after creating a 5 s schedule that never fired".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected = (created + chrono::Duration::seconds(5)).timestamp();
    ensure_eq(
        (
            first["schedule_id"].as_str(),
            first["name"].as_str(),
            first["kind"].as_str(),
            first["grace_seconds"].as_i64(),
            first["expected_fire_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp()),
        ),
        (
            Some(late.as_str()),
            Some("late"),
            Some("interval"),
            Some(5),
            Some(expected),
        ),
        &format!("misfire entry {first}"),
    )?;
    ensure(
        first["lateness_seconds"].as_i64().is_some_and(|l| l >= 5),
        format!("lateness beyond the grace: {first}"),
    )?;
    let got = wait_requests(&server, 1, ctx.scaled(5.0)).await?;
    let body: Json = serde_json::from_slice(&got[0].body).map_err(|e| e.to_string())?;
    ensure_eq(
        (body["trigger"].as_str(), body["schedule_id"].as_str()),
        (Some("schedule.misfired"), Some(late.as_str())),
        &format!("misfire notification {body}"),
    )?;
    // Three more sweeps: the same episode is not announced again.
    tokio::time::sleep(ctx.scaled(3.5)).await;
    ensure_eq(
        misfires(all.clone()).await?.len(),
        1,
        "episodes after more sweeps",
    )?;
    ensure_eq(
        server.received_requests().await.unwrap_or_default().len(),
        1,
        "misfire notifications for one episode",
    )?;
    // The schedules page names the episode in its banner.
    if ctx.target.has("html_dashboard") {
        let b = misfire_banner(&brain, &op).await?.unwrap_or_default();
        ensure(
            b.contains("<strong>1 misfire in the last 24 h</strong>")
                && b.contains(&format!("/projects/default/schedules/{late}\">late</a>"))
                && !b.contains("resting"),
            format!("the banner names the late schedule's one episode: {b:?}"),
        )?;
    }
    ensure_eq(
        misfires(format!("{SCHEDULES}/{paused}/misfires"))
            .await?
            .len(),
        0,
        "misfires of a paused schedule",
    )?;
    ensure_eq(
        misfires(format!("{SCHEDULES}/{late}/misfires"))
            .await?
            .len(),
        1,
        "misfires of the late schedule",
    )?;
    let (st, _) = op
        .get(
            &brain,
            &format!("{SCHEDULES}/{}/misfires", uuid::Uuid::new_v4()),
        )
        .await?;
    ensure_eq(st, 404, "misfires of an unknown schedule")?;
    // A fire moves the anchor: a new episode.
    let mut c = crate::sched::insecure(port).await?;
    let req = crate::sched::fire_request(&late, slot(60));
    c.fire_schedule(req.clone())
        .await
        .map_err(|e| e.to_string())?;
    c.acknowledge_fire_result(crate::sched::ack(&req.fire_id, "success", ""))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + ctx.scaled(15.0);
    while misfires(all.clone()).await?.len() < 2 {
        if Instant::now() > deadline {
            return Err("no new misfire episode after last_run_at moved".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if ctx.target.has("html_dashboard") {
        let b = misfire_banner(&brain, &op).await?.unwrap_or_default();
        ensure(
            b.contains("<strong>2 misfires in the last 24 h</strong>"),
            format!("the banner counts both episodes: {b:?}"),
        )?;
    }
    // limit clamped silently to 1..1000 (default 50).
    for (q, want) in [
        ("?limit=1", 1),
        ("?limit=0", 1),
        ("?limit=9999", 2),
        ("", 2),
    ] {
        ensure_eq(
            misfires(format!("{all}{q}")).await?.len(),
            want,
            &format!("misfires{q}"),
        )?;
    }
    drop(brain);
    // Sweep 0: no detector.
    let (brain, _) = insecure_brain(
        &ctx,
        &[
            ("Z4J_SCHEDULER_MISFIRE_GRACE_SECONDS", "5"),
            ("Z4J_SCHEDULER_MISFIRE_SWEEP_SECONDS", "0"),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    create(&brain, &op, "unwatched", json!({"expression": "5s"})).await?;
    tokio::time::sleep(ctx.scaled(12.0)).await;
    let (_, body) = op.get(&brain, &all).await?;
    ensure_eq(body, json!([]), "misfires with the detector off")?;
    if ctx.target.has("html_dashboard") {
        ensure_eq(
            misfire_banner(&brain, &op).await?,
            None,
            "no banner without misfires",
        )?;
    }
    Ok(())
}

/// The schedules page's misfire banner, if it has one.
async fn misfire_banner(
    brain: &crate::brain::Brain,
    op: &agent::Operator,
) -> Result<Option<String>, String> {
    let (st, _, html) =
        super::dashboard::page(brain, Some(&op.cookie), "/projects/default/schedules").await?;
    ensure_eq(st, 200, "the schedules page")?;
    Ok(html.find("<section class=\"banner misfires\"").map(|at| {
        let rest = &html[at..];
        rest[..rest.find("</section>").unwrap_or(rest.len())].to_owned()
    }))
}

/// The misfire detector's cron times are croniter's: for cron schedules in
/// several zones (a DST night among them, `L`, `#`, seconds last, an
/// alias), a fire that moved `last_run_at` to a past anchor makes the
/// detector report `expected_fire_at`, which must equal croniter's next
/// time after that anchor, computed by the croniter the real z4j-scheduler
/// 1.13.0 installs (the suite's venv).
pub async fn misfire_cron_parity(ctx: Arc<Ctx>) -> R {
    use super::scheduler::{create, insecure_brain};
    let cases: &[(&str, &str, &str)] = &[
        ("*/15 * * * *", "UTC", "2026-11-20T10:07:00Z"),
        ("0 9 * * 1-5", "America/New_York", "2026-11-20T16:00:00Z"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z"),
        ("0 0 L * *", "UTC", "2026-02-10T00:00:00Z"),
        ("0 12 * * 5#2", "Asia/Tokyo", "2026-11-01T00:00:00Z"),
        ("* * * * * 30", "UTC", "2026-11-20T10:07:45Z"),
        ("@daily", "Australia/Sydney", "2026-10-03T13:30:00Z"),
        ("0 0 1 * 1", "UTC", "2026-06-02T00:00:00Z"),
    ];
    let (brain, port) = insecure_brain(
        &ctx,
        &[
            ("Z4J_SCHEDULER_MISFIRE_GRACE_SECONDS", "5"),
            ("Z4J_SCHEDULER_MISFIRE_SWEEP_SECONDS", "1"),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    let mut c = crate::sched::insecure(port).await?;
    let mut ids = Vec::new();
    for (i, (expr, tz, anchor)) in cases.iter().enumerate() {
        let id = create(
            &brain,
            &op,
            &format!("cron-{i}"),
            json!({"kind": "cron", "expression": expr, "timezone": tz}),
        )
        .await?;
        let at = chrono::DateTime::parse_from_rfc3339(anchor)
            .map_err(|e| e.to_string())?
            .to_utc();
        let req = crate::sched::fire_request(&id, at);
        let fired = c
            .fire_schedule(req.clone())
            .await
            .map_err(|e| format!("fire {expr}: {e}"))?
            .into_inner();
        ensure(
            fired.error_code.is_empty(),
            format!("the anchoring fire of {expr:?} was refused: {fired:?}"),
        )?;
        c.acknowledge_fire_result(crate::sched::ack(&req.fire_id, "success", ""))
            .await
            .map_err(|e| e.to_string())?;
        ids.push(id);
    }
    // croniter's answers.
    let script = format!(
        "import json, datetime, zoneinfo\nfrom croniter import croniter\nout = []\nfor e, tz, a in {}:\n    t = datetime.datetime.fromisoformat(a.replace('Z', '+00:00')).astimezone(zoneinfo.ZoneInfo(tz))\n    out.append(croniter(e, t).get_next(datetime.datetime).astimezone(datetime.timezone.utc).isoformat())\nprint(json.dumps(out))\n",
        serde_json::to_string(&cases.iter().map(|(e, t, a)| vec![*e, *t, *a]).collect::<Vec<_>>())
            .map_err(|e| e.to_string())?
    );
    let py = crate::python::python().await?;
    let out = tokio::process::Command::new(py)
        .args(["-c", &script])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let want: Vec<String> = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("croniter: {e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    let deadline = Instant::now() + ctx.scaled(10.0);
    let got = loop {
        let (_, m) = op
            .get(
                &brain,
                "/api/v1/projects/default/schedules/misfires?limit=100",
            )
            .await?;
        let m = m.as_array().cloned().unwrap_or_default();
        if m.len() >= cases.len() || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let secs = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp())
            .ok()
    };
    for (i, id) in ids.iter().enumerate() {
        let expected = got
            .iter()
            .find(|m| m["schedule_id"].as_str() == Some(id.as_str()))
            .and_then(|m| m["expected_fire_at"].as_str().map(str::to_owned));
        let (expr, tz, anchor) = cases[i];
        ensure_eq(
            expected.as_deref().and_then(secs),
            secs(&want[i]),
            &format!(
                "next fire of {expr:?} in {tz} after {anchor}: brain {expected:?}, croniter {}",
                want[i]
            ),
        )?;
    }
    Ok(())
}

/// A receiver that answers `status` and then streams a body without end,
/// until the brain hangs up. Counts connections and the bytes it got out
/// on each.
struct Endless {
    url: String,
    sent: Arc<std::sync::Mutex<Vec<u64>>>,
}

async fn endless_receiver(status: &'static str) -> Result<Endless, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/hook",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counts = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                // The request: read until its headers are in (the body is
                // small and follows at once).
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let slot = {
                    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                    c.push(0);
                    c.len() - 1
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "z".repeat(65536));
                while sock.write_all(chunk.as_bytes()).await.is_ok() {
                    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                    c[slot] += 65536;
                }
            });
        }
    });
    Ok(Endless { url, sent })
}

/// A receiver streaming an endless answer is read only up to a bound
/// (specs/decisions.md N7): the brain hangs up well before its 10 s
/// attempt budget, its memory does not grow with the stream, a 5xx is
/// retried and logged failed after three attempts, and a 2xx counts as
/// delivered.
pub async fn endless_receiver_case(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(LOOPBACK_OK);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "notifier").await?;
    let failing = endless_receiver("500 Internal Server Error").await?;
    let accepting = endless_receiver("200 OK").await?;
    let a = channel_for(&brain, &op, "endless-500", json!({"url": failing.url})).await?;
    let b = channel_for(&brain, &op, "endless-200", json!({"url": accepting.url})).await?;
    route(&brain, &op, "task.failed", &[&a, &b]).await?;
    let before = brain.rss_kib();
    let started = Instant::now();
    fail_task(&brain, &creds, "t-endless").await?;
    // Three attempts 1 s and 3 s apart: about 4 s when each attempt ends
    // at the bound, over 30 s when each waits out its 10 s budget.
    let d = wait_deliveries(&brain, &op, 2, ctx.scaled(20.0)).await?;
    let took = started.elapsed();
    let by = |name: &str| d.iter().find(|x| x["channel_name"] == name).cloned();
    let (Some(f), Some(ok)) = (by("endless-500"), by("endless-200")) else {
        return Err(format!("deliveries of both channels expected: {d:?}"));
    };
    ensure_eq(
        (
            f["status"].as_str(),
            f["attempts"].as_i64(),
            f["response_code"].as_i64(),
        ),
        (Some("failed"), Some(3), Some(500)),
        &format!("endless 500 answer: {f}"),
    )?;
    ensure_eq(
        (
            ok["status"].as_str(),
            ok["attempts"].as_i64(),
            ok["response_code"].as_i64(),
        ),
        (Some("sent"), Some(1), Some(200)),
        &format!("endless 200 answer: {ok}"),
    )?;
    ensure(
        took >= Duration::from_secs(4) && took < ctx.scaled(12.0),
        format!(
            "the failing delivery took {took:?}: three attempts 1 s and 3 s apart, each \
             ending once the bounded answer is read, take 4 s to about 5 s"
        ),
    )?;
    let sent = failing.sent.lock().map(|s| s.clone()).unwrap_or_default();
    ensure_eq(sent.len(), 3, "connections to the failing receiver")?;
    // What the brain did not read stays in socket buffers (a few MiB on
    // loopback); a brain reading on would take hundreds of MiB in 10 s.
    ensure(
        sent.iter().all(|&n| n < 64 << 20),
        format!("bytes the receiver got out per attempt: {sent:?}"),
    )?;
    if let (Some(b), Some(a)) = (before, brain.rss_kib()) {
        ensure(
            a.saturating_sub(b) < 64 * 1024,
            format!("brain memory grew from {b} KiB to {a} KiB reading endless answers"),
        )?;
    }
    Ok(())
}
