//! The dashboard's aggregate routes (dashboard spec 3.1–3.3): the home
//! summary's counters, health and attention thresholds on both sides, the
//! recent-failures list and its limits, trends' buckets and their cap.

use super::{admin_brain, client, ensure, ensure_eq, R};
use crate::agent::{self, task_event, Operator, Session};
use crate::brain::Brain;
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// An instant `secs_ago` seconds before now, as an agent writes it.
fn ago(secs_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn event_at(task_id: &str, kind: &str, at: &str, data: Json) -> Json {
    let mut e = task_event(task_id, kind, data);
    e["occurred_at"] = json!(at);
    e
}

/// A brain with the suite's admin signed in and one connected agent.
async fn with_agent(ctx: &Ctx, name: &str) -> Result<(Brain, Operator, Session), String> {
    let (brain, op) = admin_brain(ctx).await?;
    let creds = op.mint(&brain, name).await?;
    let s = agent::connect(&brain, &creds, Some("bare-1-1")).await?;
    Ok((brain, op, s))
}

/// Sends `events` in one batch and requires every one accepted.
async fn ingest(s: &mut Session, batch: &str, events: &[Json]) -> R {
    s.send_events(batch, events).await?;
    let ack = s.expect_ack(batch, WAIT).await?;
    ensure_eq(
        ack["accepted"].as_i64(),
        Some(events.len() as i64),
        &format!("{batch} accepted: {ack}"),
    )
}

/// GETs `path` until `online` of its body is 0 (a dropped agent's
/// disconnect lands), or `WAIT` passes; the last body.
async fn until_offline(
    brain: &Brain,
    op: &Operator,
    path: &str,
    online: impl Fn(&Json) -> Result<Json, String>,
) -> Result<Json, String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = op.get(brain, path).await?;
        ensure_eq(status, 200, &format!("{path}: {body}"))?;
        if online(&body)? == 0 || std::time::Instant::now() > deadline {
            return Ok(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn summary(brain: &Brain, op: &Operator) -> Result<Json, String> {
    let (status, s) = op.get(brain, "/api/v1/home/summary").await?;
    ensure_eq(status, 200, &format!("summary: {s}"))?;
    Ok(s)
}

fn card<'a>(s: &'a Json, slug: &str) -> Result<&'a Json, String> {
    s["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["slug"] == slug)
        .ok_or(format!("no card for {slug}: {s}"))
}

/// `(kind, severity, count)` of the attention items of `slug`.
fn attention(s: &Json, slug: &str) -> Vec<(String, String, Option<i64>)> {
    s["attention"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["project_slug"] == slug)
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_owned(),
                a["severity"].as_str().unwrap_or_default().to_owned(),
                a["count"].as_i64(),
            )
        })
        .collect()
}

fn received(prefix: &str, n: usize, at: &str) -> Vec<Json> {
    (0..n)
        .map(|i| {
            event_at(
                &format!("{prefix}-{i}"),
                "task.received",
                at,
                json!({"task_name": "jobs.work", "queue": "default"}),
            )
        })
        .collect()
}

fn failed(prefix: &str, n: usize, at: &str) -> Vec<Json> {
    (0..n)
        .map(|i| {
            event_at(
                &format!("{prefix}-{i}"),
                "task.failed",
                at,
                json!({"task_name": "jobs.work", "exception": "ValueError('boom')"}),
            )
        })
        .collect()
}

pub async fn home_summary(ctx: Arc<Ctx>) -> R {
    let (brain, op, mut s) = with_agent(&ctx, "summary-agent").await?;
    op.create_project(&brain, "beta").await?;
    let now = ago(0);
    // Outside the 24 h window: counted nowhere.
    let old = ago(25 * 3600);
    ingest(&mut s, "ev_old", &received("old", 3, &old)).await?;
    ingest(&mut s, "ev_old_f", &failed("oldf", 3, &old)).await?;
    // Just inside it.
    ingest(&mut s, "ev_r", &received("r", 19, &now)).await?;
    ingest(&mut s, "ev_r_edge", &received("edge", 1, &ago(23 * 3600))).await?;
    ingest(&mut s, "ev_f", &failed("f", 2, &now)).await?;

    // 20 receives, 2 failures: a 10 % rate degrades the project, but 20
    // tasks are too few to raise an attention item.
    let sum = summary(&brain, &op).await?;
    let d = card(&sum, "default")?;
    ensure_eq(
        (d["tasks_24h"].as_i64(), d["failures_24h"].as_i64()),
        (Some(20), Some(2)),
        &format!("default's counts in the window: {d}"),
    )?;
    ensure(
        (d["failure_rate_24h"].as_f64().unwrap_or(-1.0) - 0.1).abs() < 1e-9,
        format!("failure rate 2/20: {d}"),
    )?;
    ensure_eq(
        (d["agents_online"].as_i64(), d["agents_total"].as_i64()),
        (Some(1), Some(1)),
        "agents",
    )?;
    ensure_eq(d["health"].as_str(), Some("degraded"), "10 % failures")?;
    ensure_eq(attention(&sum, "default"), vec![], "20 tasks: no item")?;
    let b = card(&sum, "beta")?;
    ensure_eq(
        (
            b["tasks_24h"].as_i64(),
            b["agents_total"].as_i64(),
            b["health"].as_str(),
            b["last_activity_at"].clone(),
        ),
        (Some(0), Some(0), Some("idle"), Json::Null),
        &format!("a project with nothing: {b}"),
    )?;
    ensure(
        d["last_activity_at"].is_string(),
        format!("last activity of default: {d}"),
    )?;
    let names: Vec<&str> = sum["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    ensure_eq(names, sorted, "cards sorted by name")?;
    ensure_eq(
        (
            sum["aggregate"]["tasks_24h"].as_i64(),
            sum["aggregate"]["failures_24h"].as_i64(),
        ),
        (Some(20), Some(2)),
        "aggregate over the projects",
    )?;

    // The 21st receive: above 20 tasks, 2/21 ≈ 9.5 % is a warning; 4/21 ≈
    // 19 % still one; 5/21 ≈ 23.8 % critical.
    for (batch, events, severity, count, what) in [
        (
            "ev_r21",
            received("r21", 1, &now),
            "warning",
            2,
            "21 tasks at 9.5 %",
        ),
        (
            "ev_f2",
            failed("f2", 2, &now),
            "warning",
            4,
            "21 tasks at 19 %",
        ),
        (
            "ev_f3",
            failed("f3", 1, &now),
            "critical",
            5,
            "21 tasks at 23.8 %",
        ),
    ] {
        ingest(&mut s, batch, &events).await?;
        let sum = summary(&brain, &op).await?;
        ensure_eq(
            attention(&sum, "default"),
            vec![("high_failure_rate".into(), severity.into(), Some(count))],
            what,
        )?;
    }

    // The only agent goes away: offline wins, and its item comes first.
    drop(s);
    let sum = until_offline(&brain, &op, "/api/v1/home/summary", |b| {
        card(b, "default").map(|c| c["agents_online"].clone())
    })
    .await?;
    ensure_eq(
        card(&sum, "default")?["health"].as_str(),
        Some("offline"),
        "no agent online",
    )?;
    ensure_eq(
        attention(&sum, "default"),
        vec![
            ("agent_offline".into(), "critical".into(), Some(1)),
            ("high_failure_rate".into(), "critical".into(), Some(5)),
        ],
        "attention once the agent is offline",
    )?;

    // A member sees only their projects; an API key needs home:read.
    super::member_of_default(
        &brain,
        &op,
        "viewer@example.com",
        "viewer-pass-1234",
        "viewer",
    )
    .await?;
    let viewer = agent::login_as(&brain, "viewer@example.com", "viewer-pass-1234").await?;
    let vs = summary(&brain, &viewer).await?;
    ensure_eq(
        vs["projects"]
            .as_array()
            .map(|a| a.iter().map(|p| p["slug"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("default")]),
        "a viewer's cards",
    )?;
    ensure_eq(
        card(&vs, "default")?["role"].as_str(),
        Some("viewer"),
        "role",
    )?;
    ensure_eq(
        vs["user"]["email"].as_str(),
        Some("viewer@example.com"),
        "user",
    )?;
    for (scopes, want) in [(json!(["home:read"]), 200), (json!(["tasks:read"]), 403)] {
        let (status, k) = op
            .send(
                &brain,
                reqwest::Method::POST,
                "/api/v1/api-keys",
                Some(json!({"name": format!("k-{scopes}"), "scopes": scopes})),
            )
            .await?;
        ensure_eq(status, 201, &format!("mint key: {k}"))?;
        let r = client()
            .get(brain.url("/api/v1/home/summary"))
            .header(
                "authorization",
                format!("Bearer {}", k["token"].as_str().unwrap_or_default()),
            )
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body: Json = r.json().await.unwrap_or_default();
        ensure_eq(status, want, &format!("summary with {scopes}: {body}"))?;
        if want == 403 {
            ensure_eq(
                body["details"]["required_scope"].as_str(),
                Some("home:read"),
                "the scope named",
            )?;
        }
    }
    Ok(())
}

pub async fn recent_failures(ctx: Arc<Ctx>) -> R {
    let (brain, op, mut s) = with_agent(&ctx, "failures-agent").await?;
    // 51 failures, a second apart (the oldest first), so paging has a
    // strict order; the newest carries a 600-character exception.
    let mut events: Vec<Json> = (0..51)
        .map(|i| {
            event_at(
                &format!("rf-{i:02}"),
                "task.failed",
                &ago(100 - i),
                json!({"task_name": format!("jobs.n{i:02}"), "worker": "w-1",
                       "exception": format!("E{i:02}")}),
            )
        })
        .collect();
    events[50]["data"]["exception"] = json!("x".repeat(600));
    events[50]["data"]["priority"] = json!("high");
    ingest(&mut s, "ev_rf", &events).await?;

    let (status, page) = op.get(&brain, "/api/v1/home/recent-failures").await?;
    ensure_eq(status, 200, &format!("default page: {page}"))?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    ensure_eq(items.len(), 50, "default limit 50")?;
    ensure(page["next_cursor"].is_string(), "a 51st row: a next page")?;
    let top = &items[0];
    ensure_eq(
        (
            top["task_id"].as_str(),
            top["task_name"].as_str(),
            top["worker"].as_str(),
            top["priority"].as_str(),
            top["project_slug"].as_str(),
            top["engine"].as_str(),
        ),
        (
            Some("rf-50"),
            Some("jobs.n50"),
            Some("w-1"),
            Some("high"),
            Some("default"),
            Some("rq"),
        ),
        &format!("newest first: {top}"),
    )?;
    let exc = top["exception"].as_str().unwrap_or_default();
    ensure(
        exc.chars().count() == 500 && exc.ends_with('…') && exc.starts_with("xxx"),
        format!(
            "exception cut to 500 characters ending in an ellipsis: {} chars",
            exc.chars().count()
        ),
    )?;
    ensure_eq(
        items[1]["priority"].as_str(),
        Some("normal"),
        "priority default",
    )?;
    ensure_eq(
        items[1]["exception"].as_str(),
        Some("E49"),
        "short exceptions whole",
    )?;

    // Paging: limit 20 → 20, 20, 11, each strictly older.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for want in [20usize, 20, 11] {
        let path = match &cursor {
            None => "/api/v1/home/recent-failures?limit=20".to_owned(),
            Some(c) => format!(
                "/api/v1/home/recent-failures?limit=20&cursor={}",
                url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
            ),
        };
        let (status, page) = op.get(&brain, &path).await?;
        ensure_eq(status, 200, &format!("{path}: {page}"))?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        ensure_eq(items.len(), want, &format!("page size at {path}"))?;
        seen.extend(
            items
                .iter()
                .filter_map(|i| i["task_id"].as_str().map(str::to_owned)),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    ensure_eq(cursor, None, "no cursor after the last page")?;
    let want: Vec<String> = (0..51).rev().map(|i| format!("rf-{i:02}")).collect();
    ensure_eq(seen, want, "every failure once, newest first")?;

    // Limits on both sides; a cursor that does not parse is the first page.
    for (limit, status) in [("1", 200), ("200", 200), ("0", 422), ("201", 422)] {
        let (got, body) = op
            .get(
                &brain,
                &format!("/api/v1/home/recent-failures?limit={limit}"),
            )
            .await?;
        ensure_eq(got, status, &format!("limit={limit}: {body}"))?;
        if status == 422 {
            ensure_eq(
                body["detail"][0]["loc"].clone(),
                json!(["query", "limit"]),
                "422 names the limit",
            )?;
        } else {
            let n = body["items"].as_array().map_or(0, Vec::len);
            ensure_eq(n, if limit == "1" { 1 } else { 51 }, "rows at the limit")?;
        }
    }
    let (_, garbage) = op
        .get(
            &brain,
            "/api/v1/home/recent-failures?limit=1&cursor=not-a-cursor",
        )
        .await?;
    ensure_eq(
        garbage["items"][0]["task_id"].as_str(),
        Some("rf-50"),
        "an unparseable cursor is the first page",
    )?;

    // A member of no project sees no failures.
    let (status, _) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({"email": "outsider@example.com", "password": "outsider-pass-1234"})),
        )
        .await?;
    ensure_eq(status, 201, "create outsider")?;
    let outsider = agent::login_as(&brain, "outsider@example.com", "outsider-pass-1234").await?;
    let (_, none) = outsider.get(&brain, "/api/v1/home/recent-failures").await?;
    ensure_eq(
        (none["items"].clone(), none["next_cursor"].clone()),
        (json!([]), Json::Null),
        "a non-member's failures",
    )?;
    Ok(())
}

pub async fn trends(ctx: Arc<Ctx>) -> R {
    let (brain, op, mut s) = with_agent(&ctx, "trends-agent").await?;
    let now = ago(0);
    let two_hours = ago(2 * 3600);
    let done = |id: &str, kind: &str, at: &str, runtime: Option<i64>| {
        let data = match runtime {
            Some(ms) => json!({"task_name": "jobs.t", "runtime_ms": ms}),
            None => json!({"task_name": "jobs.t"}),
        };
        event_at(id, kind, at, data)
    };
    ingest(
        &mut s,
        "ev_t",
        &[
            done("s-1", "task.succeeded", &now, Some(10)),
            done("s-2", "task.succeeded", &now, Some(20)),
            done("s-3", "task.succeeded", &now, Some(31)),
            done("f-1", "task.failed", &now, None),
            done("v-1", "task.revoked", &now, None),
            // Received only: not finished, never counted.
            done("p-1", "task.received", &now, None),
            // Two hours ago: in 6h, not in 1h.
            done("old-1", "task.succeeded", &two_hours, Some(5)),
        ],
    )
    .await?;

    let totals = |body: &Json| {
        let mut t = [0i64; 5];
        for p in body["series"].as_array().into_iter().flatten() {
            for (i, k) in ["success", "failure", "retry", "revoked", "total"]
                .iter()
                .enumerate()
            {
                t[i] += p[*k].as_i64().unwrap_or(0);
            }
        }
        t
    };
    let (status, body) = op.get(&brain, "/api/v1/projects/default/trends").await?;
    ensure_eq(status, 200, &format!("defaults: {body}"))?;
    ensure_eq(
        (body["window"].as_str(), body["bucket"].as_str()),
        (Some("24h"), Some("1h")),
        "default window and bucket",
    )?;
    ensure_eq(totals(&body), [4, 1, 0, 1, 6], "24h counts by state")?;
    let series = body["series"].as_array().cloned().unwrap_or_default();
    ensure_eq(
        series.len(),
        2,
        &format!("sparse: two buckets with rows: {body}"),
    )?;
    let starts: Vec<i64> = series
        .iter()
        .filter_map(|p| p["t"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .collect();
    ensure(
        starts.len() == 2 && starts.iter().all(|t| t % 3600 == 0) && starts[0] < starts[1],
        format!("bucket starts aligned to the hour, ascending: {starts:?}"),
    )?;
    let last = &series[1];
    ensure_eq(
        (last["total"].as_i64(), last["avg_runtime_ms"].as_i64()),
        (Some(5), Some(20)),
        &format!("the current hour: 61 ms over 3 runtimes, truncated: {last}"),
    )?;
    let (_, one) = op
        .get(
            &brain,
            "/api/v1/projects/default/trends?window=1h&bucket=1m",
        )
        .await?;
    ensure_eq(totals(&one), [3, 1, 0, 1, 5], "1h leaves the old task out")?;
    ensure(
        one["series"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["t"].as_str())
            .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .all(|t| t.timestamp() % 60 == 0),
        format!("minute buckets: {one}"),
    )?;

    // The bucket cap: 360 buckets (6h/1m) pass, 672 (7d/15m) and 1440
    // (24h/1m) do not, checked before the project is looked up.
    for (q, want) in [
        ("window=6h&bucket=1m", 200),
        ("window=72h&bucket=15m", 200),
        ("window=7d&bucket=15m", 400),
        ("window=24h&bucket=1m", 400),
    ] {
        let (status, body) = op
            .get(&brain, &format!("/api/v1/projects/default/trends?{q}"))
            .await?;
        ensure_eq(status, want, &format!("{q}: {body}"))?;
        if want == 400 {
            ensure(
                body["detail"].as_str().is_some_and(|d| d.contains("500")),
                format!("the refusal names the cap: {body}"),
            )?;
        }
    }
    let (status, _) = op
        .get(
            &brain,
            "/api/v1/projects/no-such/trends?window=24h&bucket=1m",
        )
        .await?;
    ensure_eq(status, 400, "the cap before the project lookup")?;
    let (status, _) = op
        .get(
            &brain,
            "/api/v1/projects/no-such/trends?window=6h&bucket=1m",
        )
        .await?;
    ensure_eq(status, 404, "an unknown project")?;
    for (q, field) in [("window=2h", "window"), ("bucket=2m", "bucket")] {
        let (status, body) = op
            .get(&brain, &format!("/api/v1/projects/default/trends?{q}"))
            .await?;
        ensure_eq(status, 422, &format!("{q}: {body}"))?;
        ensure_eq(
            body["detail"][0]["loc"].clone(),
            json!(["query", field]),
            "422 names the parameter",
        )?;
    }
    Ok(())
}

pub async fn stats(ctx: Arc<Ctx>) -> R {
    let (brain, op, mut s) = with_agent(&ctx, "stats-agent").await?;
    let now = ago(0);
    let two_hours = ago(2 * 3600);
    ingest(
        &mut s,
        "ev_s",
        &[
            event_at("ok-1", "task.succeeded", &now, json!({"task_name": "a"})),
            event_at("bad-1", "task.failed", &now, json!({"task_name": "a"})),
            event_at(
                "ok-old",
                "task.succeeded",
                &two_hours,
                json!({"task_name": "a"}),
            ),
        ],
    )
    .await?;
    let get = |q: &'static str| {
        let (brain, op) = (&brain, &op);
        async move {
            let (status, body) = op
                .get(brain, &format!("/api/v1/projects/default/stats{q}"))
                .await?;
            ensure_eq(status, 200, &format!("stats{q}: {body}"))?;
            Ok::<Json, String>(body)
        }
    };
    let window = |b: &Json| {
        (
            b["window_hours"].as_i64(),
            b["tasks_succeeded_24h"].as_i64(),
            b["tasks_failed_24h"].as_i64(),
        )
    };
    // The window follows `hours` when it is listed, else it is 24.
    ensure_eq(
        window(&get("").await?),
        (Some(24), Some(2), Some(1)),
        "default",
    )?;
    ensure_eq(
        window(&get("?hours=1").await?),
        (Some(1), Some(1), Some(1)),
        "1 h",
    )?;
    ensure_eq(
        window(&get("?hours=6").await?),
        (Some(6), Some(2), Some(1)),
        "6 h",
    )?;
    ensure_eq(
        window(&get("?hours=168").await?),
        (Some(168), Some(2), Some(1)),
        "7 d",
    )?;
    for q in ["?hours=5", "?hours=0", "?hours=169"] {
        ensure_eq(window(&get(q).await?).0, Some(24), &format!("{q} is 24"))?;
    }
    let one = get("?hours=1").await?;
    ensure(
        (one["failure_rate_24h"].as_f64().unwrap_or(-1.0) - 0.5).abs() < 1e-9,
        format!("1 failure of 2 finished: {one}"),
    )?;
    ensure_eq(
        (
            one["commands_pending"].as_i64(),
            one["commands_completed_24h"].as_i64(),
            one["commands_failed_24h"].as_i64(),
            one["commands_timeout_24h"].as_i64(),
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "no commands",
    )?;
    let h = &one["system_health"];
    ensure_eq(
        (
            h["status"].as_str(),
            h["agents_all_online"].as_bool(),
            h["failure_rate_ok"].as_bool(),
            h["queue_depth_ok"].as_bool(),
        ),
        (Some("degraded"), Some(true), Some(false), Some(true)),
        &format!("50 % failures degrade: {h}"),
    )?;
    // A third of the 6 h window failed: still at or above a tenth.
    let six = get("?hours=6").await?;
    ensure_eq(
        six["system_health"]["status"].as_str(),
        Some("degraded"),
        "33 % failures",
    )?;
    // More successes bring the rate under a tenth: healthy.
    let more: Vec<Json> = (0..9)
        .map(|i| event_at(&format!("ok-{}", i + 2), "task.succeeded", &now, json!({})))
        .collect();
    ingest(&mut s, "ev_more", &more).await?;
    let h = get("?hours=1").await?["system_health"].clone();
    ensure_eq(
        (h["status"].as_str(), h["failure_rate_ok"].as_bool()),
        (Some("healthy"), Some(true)),
        &format!("1 failure in 11: {h}"),
    )?;
    drop(s);
    let h = until_offline(&brain, &op, "/api/v1/projects/default/stats?hours=1", |b| {
        Ok(b["agents_online"].clone())
    })
    .await?["system_health"]
        .clone();
    ensure_eq(
        (h["status"].as_str(), h["agents_all_online"].as_bool()),
        (Some("critical"), Some(false)),
        &format!("no agent online: {h}"),
    )?;
    Ok(())
}

/// A TCP listener that counts the connections it accepts and closes each
/// at once (a TLS client's handshake fails on it).
pub(super) async fn counting_listener() -> Result<(u16, Arc<std::sync::atomic::AtomicUsize>), String>
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    Ok((port, seen))
}

async fn versions(brain: &Brain, op: &Operator) -> Result<Json, String> {
    let (status, v) = op.get(brain, "/api/v1/admin/system/versions").await?;
    ensure_eq(status, 200, &format!("versions: {v}"))?;
    Ok(v)
}

async fn check(brain: &Brain, op: &Operator) -> Result<(u16, Json), String> {
    op.send(
        brain,
        reqwest::Method::POST,
        "/api/v1/admin/system/versions/check",
        None,
    )
    .await
}

/// A brain with the suite's admin signed in and `Z4J_VERSION_CHECK_URL`.
async fn brain_checking(ctx: &Ctx, url: &str) -> Result<(Brain, Operator), String> {
    let mut env = agent::admin_env();
    env.extend([
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ("Z4J_VERSION_CHECK_URL", url),
    ]);
    let brain = ctx.start(&env).await?;
    let op = agent::login(&brain).await?;
    Ok((brain, op))
}

pub async fn version_check(ctx: Arc<Ctx>) -> R {
    // The default: the canonical URL, shown, and never fetched unasked.
    let (brain, op) = admin_brain(&ctx).await?;
    let v = versions(&brain, &op).await?;
    ensure_eq(
        v["check_for_updates_url"].as_str(),
        Some("https://raw.githubusercontent.com/z4jdev/z4j/main/versions.json"),
        "Z4J_VERSION_CHECK_URL at its default",
    )?;
    ensure_eq(
        (
            v["source"].as_str(),
            v["fetched_at"].clone(),
            v["fetched_from"].clone(),
        ),
        (Some("bundled"), Json::Null, Json::Null),
        &format!("the bundled snapshot: {v}"),
    )?;
    ensure(
        v["schema_version"].as_i64().is_some_and(|n| n >= 1)
            && v["packages"].as_object().is_some_and(|p| !p.is_empty()),
        format!("a snapshot with packages: {v}"),
    )?;
    // Global admins only, with CSRF; keys never.
    super::member_of_default(
        &brain,
        &op,
        "sysviewer@example.com",
        "viewer-pass-1234",
        "admin",
    )
    .await?;
    let member = agent::login_as(&brain, "sysviewer@example.com", "viewer-pass-1234").await?;
    let (status, _) = member.get(&brain, "/api/v1/admin/system/versions").await?;
    ensure_eq(status, 403, "a project admin reads versions")?;
    let (status, _) = check(&brain, &member).await?;
    ensure_eq(status, 403, "a project admin checks")?;
    let r = client()
        .post(brain.url("/api/v1/admin/system/versions/check"))
        .header("cookie", &op.cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(r.status().as_u16(), 403, "a check without the CSRF token")?;
    drop(brain);

    // Empty: checks are disabled.
    let (brain, op) = brain_checking(&ctx, "").await?;
    ensure_eq(
        versions(&brain, &op).await?["check_for_updates_url"].as_str(),
        Some(""),
        "an empty URL shown as such",
    )?;
    let (status, body) = check(&brain, &op).await?;
    ensure_eq(
        (status, body["details"]["reason"].as_str()),
        (404, Some("check_disabled")),
        &format!("a check with checks disabled: {body}"),
    )?;
    drop(brain);

    // https: fetched on the button only; a failure keeps the snapshot.
    let (port, seen) = counting_listener().await?;
    let url = format!("https://127.0.0.1:{port}/versions.json");
    let (brain, op) = brain_checking(&ctx, &url).await?;
    ensure_eq(
        versions(&brain, &op).await?["check_for_updates_url"].as_str(),
        Some(url.as_str()),
        "the configured URL",
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure_eq(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "connections to the check URL before the button",
    )?;
    let (status, body) = check(&brain, &op).await?;
    ensure_eq(status, 409, &format!("a failed fetch: {body}"))?;
    ensure_eq(
        body["details"]["url"].as_str(),
        Some(url.as_str()),
        "the refusal names the URL",
    )?;
    ensure(
        seen.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the button fetched the URL",
    )?;
    ensure_eq(
        versions(&brain, &op).await?["source"].as_str(),
        Some("bundled"),
        "a failed check keeps the snapshot",
    )?;
    drop(brain);

    // Plain http is refused without a request.
    let (port, seen) = counting_listener().await?;
    let url = format!("http://127.0.0.1:{port}/versions.json");
    let (brain, op) = brain_checking(&ctx, &url).await?;
    let (status, body) = check(&brain, &op).await?;
    ensure_eq(status, 409, &format!("an http:// URL: {body}"))?;
    ensure_eq(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "connections for an http:// URL",
    )?;
    Ok(())
}

/// A traceback whose deepest frames are `site.py:10:run`,
/// `orders.py:{line}:charge` and `pay.py:7:pay` (a Windows path).
fn traceback(line: u32) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"/app/venv/lib/site.py\", line 10, in run\n    x()\n  \
         File \"/app/jobs/orders.py\", line {line}, in charge\n    pay()\n  File \"C:\\\\srv\\\\pay.py\", \
         line 7, in pay\n    raise ValueError\nValueError: order 12345 failed"
    )
}

pub async fn issues(ctx: Arc<Ctx>) -> R {
    let (brain, op, mut s) = with_agent(&ctx, "issues-agent").await?;
    let fail = |id: &str, secs: i64, exc: &str, line: u32| {
        event_at(
            id,
            "task.failed",
            &ago(secs),
            json!({"task_name": format!("jobs.{id}"), "exception": exc, "traceback": traceback(line)}),
        )
    };
    let ok = |id: &str, secs: i64| event_at(id, "task.succeeded", &ago(secs), json!({}));
    ingest(
        &mut s,
        "ev_i",
        &[
            // Group A: the same failure with other numbers and addresses.
            fail(
                "i-1",
                30,
                "ValueError: order 12345 failed at 0xdeadbeef",
                42,
            ),
            fail("i-2", 20, "ValueError: order 67890 failed at 0x1f", 42),
            // Group B: one frame moved a line.
            fail(
                "i-3",
                60,
                "ValueError: order 12345 failed at 0xdeadbeef",
                43,
            ),
            // Nothing to fingerprint: never an issue.
            event_at(
                "i-4",
                "task.failed",
                &ago(15),
                json!({"task_name": "jobs.i-4"}),
            ),
            // Three hours ago.
            fail("i-5", 3 * 3600, "OldError: 1", 5),
        ],
    )
    .await?;
    ingest(&mut s, "ev_ok", &[ok("i-2", 10), ok("i-3", 5)]).await?;

    const A: &str = "3f4ed4267841aaae00bb2c2e1be28e3a";
    const B: &str = "a674cb969e7592fb068491e2a763cca2";
    let get = |q: &'static str| {
        let (brain, op) = (&brain, &op);
        async move {
            op.get(brain, &format!("/api/v1/projects/default/issues{q}"))
                .await
        }
    };
    let (status, page) = get("").await?;
    ensure_eq(status, 200, &format!("issues: {page}"))?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let fps: Vec<&str> = items
        .iter()
        .filter_map(|i| i["fingerprint"].as_str())
        .collect();
    ensure_eq(
        fps.len(),
        3,
        &format!("three groups, none for a bare failure: {page}"),
    )?;
    ensure_eq(
        (fps[0], fps[1]),
        (A, B),
        "the reference's fingerprints, newest last-seen first",
    )?;
    let a = &items[0];
    ensure_eq(
        (
            a["occurrences"].as_i64(),
            a["open_count"].as_i64(),
            a["recovered_count"].as_i64(),
            a["status"].as_str(),
            a["engines"].clone(),
            a["engine_count"].as_i64(),
            a["sample_exception"].as_str(),
        ),
        (
            Some(2),
            Some(1),
            Some(1),
            Some("ongoing"),
            json!(["rq"]),
            Some(1),
            Some("ValueError: order 12345 failed at 0xdeadbeef"),
        ),
        &format!("group A, one of two recovered: {a}"),
    )?;
    ensure(
        a["first_seen"].as_str() < a["last_seen"].as_str(),
        format!("first seen before last seen: {a}"),
    )?;
    ensure_eq(
        (items[1]["status"].as_str(), items[1]["open_count"].as_i64()),
        (Some("recovered"), Some(0)),
        "group B recovered (its last failure time kept)",
    )?;
    let only = |page: &Json| -> Vec<String> {
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["fingerprint"].as_str().map(str::to_owned))
            .collect()
    };
    ensure_eq(
        only(&get("?status=recovered").await?.1),
        vec![B.to_owned()],
        "recovered",
    )?;
    ensure_eq(only(&get("?status=ongoing").await?.1).len(), 2, "ongoing")?;
    ensure_eq(
        only(&get("?hours=1").await?.1),
        vec![A.to_owned(), B.to_owned()],
        "seen in 1 h",
    )?;
    ensure_eq(only(&get("?hours=6").await?.1).len(), 3, "seen in 6 h")?;
    ensure_eq(
        only(&get("?engine=celery").await?.1),
        Vec::<String>::new(),
        "another engine",
    )?;

    // Offset paging with the padded base64 cursor.
    let (_, first) = get("?limit=1").await?;
    ensure_eq(
        (only(&first), first["next_cursor"].as_str()),
        (vec![A.to_owned()], Some("MQ==")),
        "the first page of one",
    )?;
    let (_, second) = get("?limit=1&cursor=MQ%3D%3D").await?;
    ensure_eq(only(&second), vec![B.to_owned()], "the second page")?;
    let (_, bad) = get("?limit=1&cursor=%21%21").await?;
    ensure_eq(only(&bad), vec![A.to_owned()], "a bad cursor is the start")?;

    for (q, status, field) in [
        ("?limit=200", 200, ""),
        ("?limit=201", 422, "limit"),
        ("?limit=0", 422, "limit"),
        ("?hours=8760", 200, ""),
        ("?hours=8761", 422, "hours"),
        ("?hours=0", 422, "hours"),
        ("?status=open", 422, "status"),
    ] {
        let (got, body) = get(q).await?;
        ensure_eq(got, status, &format!("{q}: {body}"))?;
        if status == 422 {
            ensure_eq(
                body["detail"][0]["loc"].clone(),
                json!(["query", field]),
                "422 names the parameter",
            )?;
        }
    }
    Ok(())
}

/// Waits until the default project's queue `name` shows `depth`: a
/// heartbeat has no ack, so its report is in once the queue shows it.
pub(super) async fn wait_for_depth(
    brain: &Brain,
    op: &Operator,
    name: &str,
    depth: i64,
    wait: Duration,
) -> R {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let (_, queues) = op.get(brain, "/api/v1/projects/default/queues").await?;
        let now = queues
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["name"] == name)
            .and_then(|q| q["pending_count"].as_i64());
        if now == Some(depth) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{name} never showed depth {depth}: {queues}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A per-project window route's answer for `asked` (none: the documented
/// default): 200 with `window` and its chart `bucket`.
pub(super) async fn window_answer(
    brain: &Brain,
    op: &Operator,
    route: &str,
    asked: Option<&str>,
    (window, bucket): (&str, &str),
) -> Result<Json, String> {
    let query = asked.map_or(String::new(), |w| format!("?window={w}"));
    let (status, body) = op
        .get(brain, &format!("/api/v1/projects/default/{route}{query}"))
        .await?;
    ensure_eq(status, 200, &format!("{route}: {body}"))?;
    ensure_eq(
        (body["window"].as_str(), body["bucket"].as_str()),
        (Some(window), Some(bucket)),
        &format!("{route}{query}: the window and its bucket"),
    )?;
    Ok(body)
}

/// A per-project window route (`/api/v1/projects/{slug}/{route}`): an
/// unknown window is a 422 naming it, an unknown project a 404.
pub(super) async fn refusals(brain: &Brain, op: &Operator, route: &str) -> R {
    let (status, bad) = op
        .get(
            brain,
            &format!("/api/v1/projects/default/{route}?window=2h"),
        )
        .await?;
    ensure_eq(
        (status, bad["detail"][0]["loc"].clone()),
        (422, json!(["query", "window"])),
        &format!("{route}: an unknown window is named: {bad}"),
    )?;
    let (status, _) = op
        .get(brain, &format!("/api/v1/projects/no-such/{route}"))
        .await?;
    ensure_eq(status, 404, &format!("{route}: an unknown project"))
}

/// Queue depth over time (issue 20): each minute keeps the highest depth
/// the heartbeats reported, a window's buckets the highest of their
/// minutes; at most 50 queues per response, the first by name; the
/// workers page draws the same series.
pub async fn queue_depths(ctx: Arc<Ctx>) -> R {
    let (brain, op, mut s) = with_agent(&ctx, "depth-agent").await?;
    // Three reports inside one minute (and one five-minute bucket): wait
    // out the end of a minute rather than straddle it.
    let second = chrono::Utc::now().timestamp() % 300;
    if second >= 290 {
        tokio::time::sleep(Duration::from_secs((301 - second) as u64)).await;
    }
    // 51 queues: dq-00 .. dq-50; dq-00 goes 3, 9, 5.
    for depth in [3, 9, 5] {
        let depths: serde_json::Map<String, Json> = (0..=50)
            .map(|i| (format!("dq-{i:02}"), json!(if i == 0 { depth } else { 1 })))
            .collect();
        s.send_heartbeat_with(json!({"rq.queue_depths": Json::Object(depths).to_string()}))
            .await?;
    }
    wait_for_depth(&brain, &op, "dq-00", 5, WAIT).await?;
    let sent_at = chrono::Utc::now().timestamp();

    let body = window_answer(&brain, &op, "queue-depths", None, ("1h", "1m")).await?;
    let queues = body["queues"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = queues.iter().filter_map(|q| q["name"].as_str()).collect();
    let first_50: Vec<String> = (0..50).map(|i| format!("dq-{i:02}")).collect();
    ensure_eq(
        names.clone(),
        first_50.iter().map(String::as_str).collect::<Vec<_>>(),
        "50 queues, the first by name (dq-49 in, dq-50 out)",
    )?;
    let points = |body: &Json, bucket: i64| -> Result<Vec<(i64, i64)>, String> {
        let q = body["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == "dq-00"))
            .ok_or(format!("dq-00 has no history: {body}"))?;
        let mut out = Vec::new();
        for p in q["points"].as_array().into_iter().flatten() {
            let t = p["t"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .ok_or(format!("a point without an instant: {p}"))?
                .timestamp();
            ensure(
                t % bucket == 0 && t <= sent_at && t > sent_at - 2 * bucket,
                format!("a {bucket} s bucket start of the last minutes: {p} ({sent_at})"),
            )?;
            out.push((t, p["depth"].as_i64().unwrap_or(-1)));
        }
        Ok(out)
    };
    let minute = points(&body, 60)?;
    ensure_eq(
        minute.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![9],
        &format!("one minute holding the highest of 3, 9, 5: {minute:?}"),
    )?;
    let six = window_answer(&brain, &op, "queue-depths", Some("6h"), ("6h", "5m")).await?;
    let five = points(&six, 300)?;
    ensure_eq(
        five.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![9],
        &format!("one five-minute bucket: {five:?}"),
    )?;
    refusals(&brain, &op, "queue-depths").await?;

    let (status, _, html) =
        super::dashboard::page(&brain, Some(&op.cookie), "/projects/default/workers").await?;
    ensure_eq(status, 200, "the workers page")?;
    ensure_eq(
        html.matches("<svg class=\"chart depth\"").count(),
        50,
        "one depth chart per queue with a history",
    )?;
    ensure(
        html.contains("aria-label=\"Queue depth: highest 9, latest 9\"")
            && html.contains(": depth 9</title>"),
        "dq-00's chart names its highest and latest depth",
    )
}
