//! The dashboard's aggregate routes (dashboard spec 3.1–3.3): the home
//! summary, recent failures across the caller's projects, a project's
//! trends. The pages render the same values these routes return.

use super::access::{self, Role};
use super::error::{ApiError, SchemaIssue};
use super::query::Query;
use super::session::{self, Caller};
use super::Shared;
use crate::insight::{self, Attention, Bucket, Health, Point, Window};
use crate::settings::mutant::Mutant;
use crate::store::aggregates::{self, Counters, IssueFilter, Reach};
use crate::store::projects;
use crate::store::Ts;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/home/summary", get(summary_route))
        .route("/api/v1/home/recent-failures", get(recent_failures_route))
        .route("/api/v1/projects/{slug}/trends", get(trends_route))
        .route("/api/v1/projects/{slug}/issues", get(issues_route))
        .route(
            "/api/v1/projects/{slug}/queue-depths",
            get(queue_depths_route),
        )
        .route(
            "/api/v1/projects/{slug}/command-latency",
            get(command_latency_route),
        )
}

fn rate(c: &Counters) -> f64 {
    insight::failure_rate(c.received, c.failed)
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub tasks_24h: i64,
    pub failures_24h: i64,
    pub failure_rate_24h: f64,
    pub workers_online: i64,
    pub workers_total: i64,
    pub agents_online: i64,
    pub agents_total: i64,
    pub stuck_commands: i64,
}

impl Totals {
    fn of(c: &Counters) -> Totals {
        Totals {
            tasks_24h: c.received,
            failures_24h: c.failed,
            failure_rate_24h: rate(c),
            workers_online: c.workers_online,
            workers_total: c.workers_total,
            agents_online: c.agents_online,
            agents_total: c.agents_total,
            stuck_commands: c.stuck_commands,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Card {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub environment: String,
    pub role: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
    pub last_activity_at: Option<String>,
    pub health: Health,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttentionItem {
    #[serde(flatten)]
    pub item: Attention,
    pub project_id: Uuid,
    pub project_slug: String,
    pub project_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub aggregate: Totals,
    pub projects: Vec<Card>,
    pub attention: Vec<AttentionItem>,
}

/// The summary of the projects `caller` sees, cards sorted by name and
/// attention by severity, then project name.
pub async fn summary(state: &Shared, caller: &Caller) -> Result<Summary, ApiError> {
    let mut visible = super::projects::visible(state, caller).await?;
    visible.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let now = Ts::now();
    let counters = if visible.is_empty() {
        HashMap::new()
    } else {
        aggregates::counters(
            &state.db,
            now.plus_seconds(-insight::SUMMARY_WINDOW_SECS),
            now.plus_seconds(-insight::ACTIVITY_WINDOW_SECS),
            now,
        )
        .await?
    };
    let roles: HashMap<Uuid, String> = projects::roles_of_user(&state.db, caller.user.id)
        .await?
        .into_iter()
        .collect();
    let mut total = Counters::default();
    let mut cards = Vec::with_capacity(visible.len());
    let mut attention = Vec::new();
    let min_tasks = if state.settings.mutant(Mutant::AttentionThresholdOffByOne) {
        insight::RATE_MIN_TASKS - 1
    } else {
        insight::RATE_MIN_TASKS
    };
    for p in &visible {
        let c = counters.get(&p.id).copied().unwrap_or_default();
        total.received += c.received;
        total.failed += c.failed;
        total.workers_online += c.workers_online;
        total.workers_total += c.workers_total;
        total.agents_online += c.agents_online;
        total.agents_total += c.agents_total;
        total.stuck_commands += c.stuck_commands;
        attention.extend(
            insight::attention(&c, min_tasks)
                .into_iter()
                .map(|item| AttentionItem {
                    item,
                    project_id: p.id,
                    project_slug: p.slug.clone(),
                    project_name: p.name.clone(),
                }),
        );
        cards.push(Card {
            id: p.id,
            slug: p.slug.clone(),
            name: p.name.clone(),
            environment: p.environment.clone(),
            role: roles.get(&p.id).cloned(),
            totals: Totals::of(&c),
            last_activity_at: c.last_activity.map(Ts::to_rfc3339),
            health: insight::health(&c),
        });
    }
    attention.sort_by(|a, b| {
        a.item
            .severity
            .cmp(&b.item.severity)
            .then_with(|| a.project_name.cmp(&b.project_name))
    });
    Ok(Summary {
        aggregate: Totals::of(&total),
        projects: cards,
        attention,
    })
}

async fn summary_route(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    let s = summary(&state, &caller).await?;
    let u = &caller.user;
    Ok(Json(json!({
        "user": {"id": u.id, "email": u.email, "display_name": u.display_name, "is_admin": u.is_admin},
        "aggregate": s.aggregate,
        "projects": s.projects,
        "attention": s.attention,
    })))
}

/// A recent failure as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FailureItem {
    pub id: Uuid,
    pub occurred_at: String,
    pub project_id: Uuid,
    pub project_slug: String,
    pub project_name: String,
    pub engine: String,
    pub task_id: String,
    pub task_name: Option<String>,
    pub worker: Option<String>,
    pub exception: Option<String>,
    pub priority: String,
}

/// `<RFC 3339 instant>|<event id as 32 hex digits>`, pointing at the last
/// row returned.
fn failure_cursor(at: Ts, id: Uuid) -> String {
    format!("{}|{}", at.to_rfc3339(), id.simple())
}

/// A cursor that does not parse means the first page.
fn parse_failure_cursor(raw: &str) -> Option<(Ts, Uuid)> {
    let (at, id) = raw.split_once('|')?;
    let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    let id = Uuid::try_parse(id).ok()?;
    Some((Ts(at.with_timezone(&chrono::Utc)), id))
}

/// Failures across the projects `caller` sees, newest first, and the
/// cursor of the next page when there is one.
pub async fn recent_failures(
    state: &Shared,
    caller: &Caller,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<FailureItem>, Option<String>), ApiError> {
    let reach = Reach {
        member: (!caller.user.is_admin).then_some(caller.user.id),
        bound: caller.bound_project,
    };
    let before = cursor.and_then(parse_failure_cursor);
    let mut rows = aggregates::recent_failures(&state.db, reach, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let names: HashMap<Uuid, (String, String)> = super::projects::visible(state, caller)
        .await?
        .into_iter()
        .map(|p| (p.id, (p.slug, p.name)))
        .collect();
    let text = |v: &Value, keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .map(str::to_owned)
    };
    let next = more
        .then(|| rows.last().map(|r| failure_cursor(r.occurred_at, r.id)))
        .flatten();
    let items = rows
        .into_iter()
        .map(|r| {
            let (slug, name) = names.get(&r.project_id).cloned().unwrap_or_default();
            let p = &r.payload.0;
            FailureItem {
                id: r.id,
                occurred_at: r.occurred_at.to_rfc3339(),
                project_id: r.project_id,
                project_slug: slug,
                project_name: name,
                engine: r.engine,
                task_id: r.task_id,
                task_name: text(p, &["task_name", "name"]),
                worker: text(p, &["worker", "worker_name"]),
                exception: p
                    .get("exception")
                    .and_then(Value::as_str)
                    .map(insight::short_exception),
                priority: text(p, &["priority"]).unwrap_or_else(|| "normal".into()),
            }
        })
        .collect();
    Ok((items, next))
}

async fn recent_failures_route(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    let q = Query::parse(raw);
    let mut issues = Vec::new();
    let limit = q.int("limit", 1, 200, &mut issues).unwrap_or(50);
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    let (items, next) = recent_failures(
        &state,
        &caller,
        q.0.get("cursor").map(String::as_str),
        limit,
    )
    .await?;
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

/// `window` (absent: `default`); an unknown one is an issue naming it.
fn window_param(
    q: &HashMap<String, String>,
    default: Window,
    issues: &mut Vec<SchemaIssue>,
) -> Option<Window> {
    let window = q.get("window").map_or(Some(default), |w| Window::parse(w));
    if window.is_none() {
        issues.push(SchemaIssue::new(
            "literal_error",
            &["query", "window"],
            "Input should be '1h', '6h', '24h', '72h' or '7d'",
        ));
    }
    window
}

/// The window and bucket of a trends request: 422 for a value outside the
/// lists, 400 for a pair with more than 500 buckets when `capped` (always,
/// but for a behaviour mutant).
pub fn trend_params(
    q: &HashMap<String, String>,
    capped: bool,
) -> Result<(Window, Bucket), ApiError> {
    let mut issues = Vec::new();
    let window = window_param(q, Window::H24, &mut issues);
    let bucket = match q.get("bucket") {
        None => Some(Bucket::H1),
        Some(b) => Bucket::parse(b),
    };
    if bucket.is_none() {
        issues.push(SchemaIssue::new(
            "literal_error",
            &["query", "bucket"],
            "Input should be '1m', '5m', '15m', '1h' or '1d'",
        ));
    }
    let (Some(w), Some(b)) = (window, bucket) else {
        return Err(ApiError::Schema(issues));
    };
    if capped && insight::bucket_count(w, b).is_none() {
        return Err(ApiError::Detail {
            status: StatusCode::BAD_REQUEST,
            detail: json!(format!(
                "window={} with bucket={} gives {} buckets; the maximum is {} buckets per response",
                w.as_str(),
                b.as_str(),
                w.secs() / b.secs(),
                insight::MAX_BUCKETS
            )),
        });
    }
    Ok((w, b))
}

/// The project's sparse series for the pair.
pub async fn trend_series(
    state: &Shared,
    project_id: Uuid,
    w: Window,
    b: Bucket,
    now: Ts,
) -> Result<Vec<Point>, ApiError> {
    let cells =
        aggregates::trend_cells(&state.db, project_id, now.plus_seconds(-w.secs()), b.secs())
            .await?;
    Ok(insight::series(&cells))
}

async fn trends_route(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // The pair is refused before the project is looked up.
    let capped = !state.settings.mutant(Mutant::TrendsBucketCapOff);
    let (w, b) = trend_params(&Query::parse(raw).0, capped)?;
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let points = trend_series(&state, access.project.id, w, b, Ts::now()).await?;
    let series: Vec<Value> = points
        .iter()
        .map(|p| {
            let mut v = json!(p);
            if let Some(o) = v.as_object_mut() {
                o.insert("t".into(), json!(bucket_instant(p.start)));
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "window": w.as_str(),
        "bucket": b.as_str(),
        "series": series,
    })))
}

/// A bucket's start (seconds since the epoch) as the API writes instants.
fn bucket_instant(start: i64) -> String {
    chrono::DateTime::from_timestamp(start, 0)
        .map(|t| Ts(t).to_rfc3339())
        .unwrap_or_default()
}

/// Each queue's depth over `w` in the window's chart buckets (the first
/// [`insight::MAX_DEPTH_QUEUES`] queues by engine and name).
pub async fn depth_series(
    state: &Shared,
    project_id: Uuid,
    w: Window,
    now: Ts,
) -> Result<Vec<insight::DepthSeries>, ApiError> {
    let samples = crate::store::observed::depth_history(
        &state.db,
        project_id,
        now.plus_seconds(-w.secs()),
        insight::MAX_DEPTH_QUEUES,
    )
    .await?;
    Ok(insight::depth_series(&samples, w.chart_bucket().secs()))
}

async fn queue_depths_route(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let mut issues = Vec::new();
    let w = window_param(&Query::parse(raw).0, Window::H1, &mut issues);
    let Some(w) = w else {
        return Err(ApiError::Schema(issues));
    };
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let queues = depth_series(&state, access.project.id, w, Ts::now()).await?;
    let queues: Vec<Value> = queues
        .iter()
        .map(|q| {
            json!({
                "engine": q.engine,
                "name": q.name,
                "points": q.points.iter().map(|p| json!({"t": bucket_instant(p.start), "depth": p.depth})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "window": w.as_str(),
        "bucket": w.chart_bucket().as_str(),
        "queues": queues,
    })))
}

/// The project's commands finished in `w`, per chart bucket of the
/// window: answered, failed, timed out, and the wait from issue to result.
pub async fn latency_series(
    state: &Shared,
    project_id: Uuid,
    w: Window,
    now: Ts,
) -> Result<Vec<insight::LatencyPoint>, ApiError> {
    let bucket = w.chart_bucket().secs();
    let mut cells =
        aggregates::command_latency(&state.db, project_id, now.plus_seconds(-w.secs()), bucket)
            .await?;
    if state.settings.mutant(Mutant::LatencyTimeoutsAnswered) {
        use crate::store::commands::Status;
        for c in cells.iter_mut() {
            if Status::parse(&c.status) == Some(Status::Timeout) {
                c.status = Status::Completed.as_str().to_owned();
            }
        }
    }
    Ok(insight::latency_series(&cells))
}

async fn command_latency_route(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let mut issues = Vec::new();
    let Some(w) = window_param(&Query::parse(raw).0, Window::H24, &mut issues) else {
        return Err(ApiError::Schema(issues));
    };
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let points = latency_series(&state, access.project.id, w, Ts::now()).await?;
    let points: Vec<Value> = points
        .iter()
        .map(|p| {
            let mut v = json!(p);
            v["t"] = json!(bucket_instant(p.start));
            v
        })
        .collect();
    Ok(Json(json!({
        "window": w.as_str(),
        "bucket": w.chart_bucket().as_str(),
        "points": points,
    })))
}

/// The issues cursor: the padded URL-safe base64 of a decimal offset; one
/// that does not decode is offset 0.
fn issue_offset(raw: Option<&String>) -> i64 {
    use base64::Engine as _;
    raw.and_then(|c| base64::engine::general_purpose::URL_SAFE.decode(c).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

fn issue_cursor(offset: i64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(offset.to_string())
}

async fn issues_route(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let q = Query::parse(raw);
    let mut issues = Vec::new();
    let limit = q.int("limit", 1, 200, &mut issues).unwrap_or(50);
    let hours = q.int("hours", 1, 8760, &mut issues);
    let recovered = match q.0.get("status").map(String::as_str) {
        None => None,
        Some("ongoing") => Some(false),
        Some("recovered") => Some(true),
        Some(_) => {
            issues.push(SchemaIssue::new(
                "literal_error",
                &["query", "status"],
                "Input should be 'ongoing' or 'recovered'",
            ));
            None
        }
    };
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    let filter = IssueFilter {
        engine: q.0.get("engine").cloned(),
        seen_since: hours.map(|h| Ts::now().plus_seconds(-h * 3600)),
        recovered,
    };
    let offset = issue_offset(q.0.get("cursor"));
    let pid = access.project.id;
    let mut rows = aggregates::issues(&state.db, pid, &filter, offset, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut engines: HashMap<String, Vec<String>> = HashMap::new();
    if !rows.is_empty() {
        for (fp, engine) in aggregates::issue_engines(&state.db, pid, &filter).await? {
            engines.entry(fp).or_default().push(engine);
        }
    }
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "fingerprint": r.fingerprint,
                "status": if r.open_count == 0 { "recovered" } else { "ongoing" },
                "occurrences": r.occurrences,
                "open_count": r.open_count,
                "recovered_count": r.occurrences - r.open_count,
                "first_seen": r.first_seen.to_rfc3339(),
                "last_seen": r.last_seen.to_rfc3339(),
                "engine_count": r.engine_count,
                "engines": engines.get(&r.fingerprint).cloned().unwrap_or_default(),
                "sample_exception": r.sample_exception,
                "sample_task_name": r.sample_task_name,
            })
        })
        .collect();
    Ok(Json(json!({
        "items": items,
        "next_cursor": more.then(|| issue_cursor(offset + limit)),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_cursor_round_trips_and_garbage_is_no_cursor() {
        let at = Ts::now();
        let id = Uuid::new_v4();
        let c = failure_cursor(at, id);
        assert_eq!(c.split('|').nth(1).map(str::len), Some(32));
        assert_eq!(parse_failure_cursor(&c), Some((at, id)));
        assert_eq!(parse_failure_cursor("nope"), None);
        assert_eq!(parse_failure_cursor("2026-01-01T00:00:00Z|xyz"), None);
    }

    #[test]
    fn issue_cursor_is_a_padded_base64_offset() {
        assert_eq!(issue_cursor(1), "MQ==");
        assert_eq!(issue_offset(Some(&"MQ==".to_owned())), 1);
        assert_eq!(issue_offset(Some(&issue_cursor(250))), 250);
        assert_eq!(issue_offset(Some(&"!!".to_owned())), 0);
        assert_eq!(issue_offset(None), 0);
    }

    #[test]
    fn trend_params_defaults_lists_and_cap() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>()
        };
        assert!(matches!(
            trend_params(&q(&[]), true),
            Ok((Window::H24, Bucket::H1))
        ));
        assert!(matches!(
            trend_params(&q(&[("window", "6h"), ("bucket", "1m")]), true),
            Ok((Window::H6, Bucket::M1))
        ));
        assert!(matches!(
            trend_params(&q(&[("window", "2h")]), true),
            Err(ApiError::Schema(_))
        ));
        assert!(matches!(
            trend_params(&q(&[("bucket", "1m")]), true),
            Err(ApiError::Detail { status, .. }) if status == StatusCode::BAD_REQUEST
        ));
    }
}
