//! The operator dashboard: server-rendered HTML (minijinja templates built
//! into the binary) with one small external script, `assets/app.js`, for
//! sign-in, command buttons and live refresh over `/ws/dashboard`. Pages
//! read through the same store functions and access rules as the REST
//! routes; writes go through the REST API itself (CSRF, roles, audit).
//! Strict CSP: no inline script or style.

mod chart;

use super::access::{self, Role};
use super::aggregates;
use super::error::ApiError;
use super::reads::{decode_cursor, encode_cursor, TASK_STATES};
use super::session;
use super::Shared;
use crate::insight::{self, Window};
use crate::settings::BRAIN_VERSION;
use crate::store::ingest::TASK_PRIORITIES;
use crate::store::reads::{self, TaskFilter};
use crate::store::saved_views;
use crate::store::{agents, projects, Ts};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Environment, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Stricter than the API's HTML policy: scripts and styles from this
/// origin only, never inline.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; frame-src 'none'; \
                   base-uri 'none'; object-src 'none'";
const PAGE_SIZE: i64 = 50;
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login))
        .route("/home", get(home))
        .route("/system", get(system_page))
        .route("/projects/{slug}", get(overview))
        .route("/projects/{slug}/tasks", get(tasks))
        .route("/projects/{slug}/agents", get(agents_page))
        .route("/projects/{slug}/tasks/{engine}/{task_id}", get(task))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/assets/favicon.svg", get(icon))
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("home.html", include_str!("templates/home.html")),
            ("project.html", include_str!("templates/project.html")),
            ("task_rows.html", include_str!("templates/task_rows.html")),
            ("tasks.html", include_str!("templates/tasks.html")),
            ("task.html", include_str!("templates/task.html")),
            ("agents.html", include_str!("templates/agents.html")),
            ("not_found.html", include_str!("templates/not_found.html")),
            ("system.html", include_str!("templates/system.html")),
        ] {
            if let Err(e) = env.add_template(name, src) {
                // Templates are part of the binary; a unit test renders each.
                tracing::error!(template = name, error = %e, "dashboard template does not parse");
            }
        }
        // A path segment (a task id may hold `/` or `?`): everything but the
        // unreserved characters percent-encoded; replaces the builtin, which
        // leaves `/` alone.
        env.add_filter("urlencode", |s: String| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        });
        env
    })
}

/// Why a page is not shown.
pub enum PageError {
    /// No usable session: to the sign-in page, then back here.
    SignIn(String),
    NotFound(String),
    Internal(String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        match e {
            ApiError::Unauthenticated(_) => PageError::SignIn(String::new()),
            // Second factor pending or enrolment due: the sign-in page
            // handles both.
            ApiError::Coded { status, .. } if status == StatusCode::FORBIDDEN => {
                PageError::SignIn(String::new())
            }
            ApiError::NotFound { message, .. } => PageError::NotFound(message),
            other => PageError::Internal(format!("{other:?}")),
        }
    }
}

/// A page's answer, or its error as a page.
fn finish(state: &Shared, r: Result<Response, PageError>) -> Response {
    match r {
        Ok(resp) => resp,
        Err(PageError::SignIn(next)) => {
            let to = if next.is_empty() {
                "/login".to_owned()
            } else {
                format!("/login?next={}", urlencode(&next))
            };
            no_store(Redirect::to(&to).into_response())
        }
        Err(PageError::NotFound(message)) => {
            let mut r =
                Page::anonymous(state, "page").render("not_found.html", context! { message });
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        Err(PageError::Internal(e)) => {
            tracing::error!(error = %e, "dashboard page failed");
            error_page()
        }
    }
}

/// A 500 that renders without templates (they may be what failed).
fn error_page() -> Response {
    let mut r = html("<!doctype html><title>Error</title><h1>Something went wrong</h1><p>The error is in the brain's log.</p>".into());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What every page's layout shows.
struct Page {
    page: &'static str,
    /// `Z4J_ENVIRONMENT`, on every page.
    environment: String,
    user: Option<String>,
    project: Option<Value>,
}

impl Page {
    fn anonymous(state: &Shared, page: &'static str) -> Page {
        Page {
            page,
            environment: state.settings.environment.clone(),
            user: None,
            project: None,
        }
    }

    fn render(&self, template: &str, ctx: Value) -> Response {
        let env_class = if self.environment == "production" {
            "production"
        } else {
            "other"
        };
        let base = context! {
            page => self.page,
            user => self.user,
            project => self.project,
            environment => self.environment,
            env_class,
            version => BRAIN_VERSION,
        };
        let rendered = templates()
            .get_template(template)
            .and_then(|t| t.render(context! { ..ctx, ..base }));
        match rendered {
            Ok(body) => html(body),
            Err(e) => {
                tracing::error!(template, error = %e, "dashboard template failed");
                error_page()
            }
        }
    }
}

fn html(body: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    r.headers_mut()
        .insert("content-security-policy", HeaderValue::from_static(CSP));
    no_store(r)
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn when(t: Option<Ts>) -> Option<String> {
    t.map(|t| t.0.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn project_value(p: &projects::Project) -> Value {
    Value::from_serialize(serde_json::json!({
        "id": p.id, "slug": p.slug, "name": p.name, "environment": p.environment,
    }))
}

fn task_rows(rows: &[reads::Task]) -> Vec<Value> {
    rows.iter()
        .map(|t| {
            Value::from_serialize(serde_json::json!({
                "engine": t.engine, "task_id": t.task_id, "name": t.name, "state": t.state,
                "queue": t.queue, "worker": t.worker_name, "updated": when(Some(t.updated_at)),
            }))
        })
        .collect()
}

async fn root(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match session::current(&state, &headers).await {
        Ok(Some(c)) if !c.via_key => no_store(Redirect::to("/home").into_response()),
        _ => no_store(Redirect::to("/login").into_response()),
    }
}

async fn login(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let next = q
        .get("next")
        .filter(|n| local_path(n))
        .cloned()
        .unwrap_or_default();
    Page::anonymous(&state, "login").render("login.html", context! { next })
}

/// Only a path on this site may follow sign-in: one leading `/`, no
/// backslash (browsers read `/\host` as `//host`) and no control
/// characters.
fn local_path(n: &str) -> bool {
    n.starts_with('/')
        && !n.starts_with("//")
        && !n.contains('\\')
        && !n.chars().any(char::is_control)
}

/// A signed-in cookie session (API keys do not open pages).
async fn signed_in(
    state: &Shared,
    headers: &HeaderMap,
    here: &str,
) -> Result<session::Caller, PageError> {
    match session::require(state, headers).await {
        Ok(c) if !c.via_key => Ok(c),
        Ok(_) => Err(PageError::SignIn(here.to_owned())),
        Err(e) => Err(back_to(e, here)),
    }
}

/// A refusal of the session or its second factor signs in and comes back
/// to `here`; any other is its own page.
fn back_to(e: ApiError, here: &str) -> PageError {
    match PageError::from(e) {
        PageError::SignIn(_) => PageError::SignIn(here.to_owned()),
        other => other,
    }
}

async fn home(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        let caller = signed_in(&state, &headers, "/home").await?;
        let summary = aggregates::summary(&state, &caller).await?;
        let (failures, _) = aggregates::recent_failures(&state, &caller, None, 10).await?;
        let failures: Vec<Value> = failures
            .iter()
            .map(|f| {
                Value::from_serialize(serde_json::json!({
                    "project": f.project_slug, "engine": f.engine, "task_id": f.task_id,
                    "name": f.task_name, "worker": f.worker, "exception": f.exception,
                    "when": f.occurred_at.get(..19).map(|t| t.replace('T', " ") + " UTC"),
                }))
            })
            .collect();
        let page = Page {
            page: "home",
            environment: state.settings.environment.clone(),
            user: Some(caller.user.email.clone()),
            project: None,
        };
        Ok(page.render(
            "home.html",
            context! {
                is_admin => caller.user.is_admin,
                projects => Value::from_serialize(&summary.projects),
                attention => Value::from_serialize(&summary.attention),
                total => Value::from_serialize(&summary.aggregate),
                rate => format!("{:.1}", summary.aggregate.failure_rate_24h * 100.0),
                failures,
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// Global admins: the brain's version and the versions snapshot, with the
/// "Check for updates" button (nothing is fetched until it is pressed).
async fn system_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        let caller = signed_in(&state, &headers, "/system").await?;
        if !caller.user.is_admin {
            return Err(PageError::NotFound("page not found".into()));
        }
        let (snapshot, source) = state.versions.current();
        let snapshot = super::system::public(&state, &snapshot, &source);
        let page = Page {
            page: "system",
            environment: state.settings.environment.clone(),
            user: Some(caller.user.email.clone()),
            project: None,
        };
        Ok(page.render(
            "system.html",
            context! {
                snapshot => Value::from_serialize(&snapshot),
                database => state.db.kind(),
            },
        ))
    }
    .await;
    finish(&state, r)
}

async fn project_page(
    state: &Shared,
    headers: &HeaderMap,
    slug: &str,
    here: &str,
    page: &'static str,
) -> Result<(access::ProjectAccess, Page), PageError> {
    // One session lookup: `access::project` resolves the caller itself.
    let a = access::project(state, headers, slug, Role::Viewer)
        .await
        .map_err(|e| back_to(e, here))?;
    if a.caller.via_key {
        return Err(PageError::SignIn(here.to_owned()));
    }
    let p = Page {
        page,
        environment: state.settings.environment.clone(),
        user: Some(a.caller.user.email.clone()),
        project: Some(project_value(&a.project)),
    };
    Ok((a, p))
}

async fn overview(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let window = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "window")
            .and_then(|(_, v)| Window::parse(&v))
            .unwrap_or(Window::H24);
        let here = format!("/projects/{slug}?window={}", window.as_str());
        let (a, page) = project_page(&state, &headers, &slug, &here, "overview").await?;
        let pid = a.project.id;
        let bucket = window.chart_bucket();
        let now = Ts::now();
        let points = aggregates::trend_series(&state, pid, window, bucket, now).await?;
        let filled = insight::filled(&points, window, bucket, now);
        let chart = chart::throughput(&filled, bucket.secs());
        let windows: Vec<Value> = Window::ALL
            .iter()
            .map(|w| {
                Value::from_serialize(serde_json::json!({
                    "name": w.as_str(), "current": *w == window,
                }))
            })
            .collect();
        let open_issues = crate::store::aggregates::issues(
            &state.db,
            pid,
            &crate::store::aggregates::IssueFilter {
                recovered: Some(false),
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .map_err(ApiError::from)?;
        let issues: Vec<Value> = open_issues
            .iter()
            .map(|i| {
                Value::from_serialize(serde_json::json!({
                    "fingerprint": i.fingerprint, "occurrences": i.occurrences,
                    "open": i.open_count, "last_seen": when(Some(i.last_seen)),
                    "exception": i.sample_exception, "name": i.sample_task_name,
                }))
            })
            .collect();
        let trend_rows: Vec<Value> = points
            .iter()
            .rev()
            .map(|p| {
                Value::from_serialize(serde_json::json!({
                    "when": when(chrono::DateTime::from_timestamp(p.start, 0).map(Ts)),
                    "success": p.success, "failure": p.failure, "retry": p.retry,
                    "revoked": p.revoked, "total": p.total, "avg": p.avg_runtime_ms,
                }))
            })
            .collect();
        let list = agents::list(&state.db, pid).await.map_err(ApiError::from)?;
        let online = list
            .iter()
            .filter(|x| x.state == agents::Liveness::Online)
            .count();
        let agents_view: Vec<Value> = list
            .iter()
            .map(|x| {
                Value::from_serialize(serde_json::json!({
                    "name": x.name, "state": x.state.as_str(), "last_seen": when(x.last_seen_at),
                }))
            })
            .collect();
        let hour = TaskFilter {
            since: Some(Ts::now().plus_seconds(-3600)),
            ..TaskFilter::default()
        };
        let hour_total = reads::count_tasks(&state.db, pid, &hour)
            .await
            .map_err(ApiError::from)?;
        let failed = TaskFilter {
            state: Some("failure".into()),
            ..hour.clone()
        };
        let hour_failed = reads::count_tasks(&state.db, pid, &failed)
            .await
            .map_err(ApiError::from)?;
        let recent = reads::tasks(
            &state.db,
            pid,
            &TaskFilter {
                state: Some("failure".into()),
                ..TaskFilter::default()
            },
            None,
            10,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(page.render(
            "project.html",
            context! {
                agents => agents_view,
                online,
                offline => list.len() - online,
                hour_total,
                hour_failed,
                tasks => task_rows(&recent),
                chart => Value::from_safe_string(chart),
                windows,
                window => window.as_str(),
                bucket => bucket.as_str(),
                trend_rows,
                issues,
            },
        ))
    }
    .await;
    finish(&state, r)
}

async fn tasks(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let raw = raw.unwrap_or_default();
        let here = if raw.is_empty() {
            format!("/projects/{slug}/tasks")
        } else {
            format!("/projects/{slug}/tasks?{raw}")
        };
        let (a, page) = project_page(&state, &headers, &slug, &here, "tasks").await?;
        let q: HashMap<String, String> = url::form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect();
        // Form fields: empty means "any"; text capped as the API caps it.
        let text = |k: &str| {
            q.get(k)
                .map(|v| v.trim().chars().take(200).collect::<String>())
                .filter(|v| !v.is_empty())
        };
        let filter = TaskFilter {
            state: text("state").filter(|s| TASK_STATES.contains(&s.as_str())),
            // A comma list as saved views write it; unknown words dropped.
            priorities: text("priority")
                .map(|p| {
                    p.split(',')
                        .map(str::trim)
                        .filter(|p| TASK_PRIORITIES.contains(p))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|p| !p.is_empty()),
            name: text("name"),
            search: text("search"),
            queue: text("queue"),
            worker: text("worker"),
            since: text("since")
                .and_then(|w| Window::parse(&w))
                .map(|w| Ts::now().plus_seconds(-w.secs())),
            ..TaskFilter::default()
        };
        let views = saved_views::list(&state.db, a.caller.user.id, a.project.id)
            .await
            .map_err(ApiError::from)?;
        let views: Vec<Value> = views
            .iter()
            .map(|v| {
                let f = &v.filters.0;
                let mut qs = url::form_urlencoded::Serializer::new(String::new());
                if let Some(st) = f["state"].as_str() {
                    qs.append_pair("state", st);
                }
                let prio: Vec<&str> = f["priority"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str())
                    .collect();
                if !prio.is_empty() {
                    qs.append_pair("priority", &prio.join(","));
                }
                if let Some(se) = f["search"].as_str().filter(|s| !s.is_empty()) {
                    qs.append_pair("search", se);
                }
                Value::from_serialize(serde_json::json!({
                    "id": v.id, "name": v.name,
                    "href": format!("/projects/{slug}/tasks?{}", qs.finish()),
                }))
            })
            .collect();
        let after = decode_cursor(q.get("cursor"));
        let mut rows = reads::tasks(&state.db, a.project.id, &filter, after, PAGE_SIZE + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() as i64 > PAGE_SIZE;
        rows.truncate(PAGE_SIZE as usize);
        let next = more.then(|| rows.last()).flatten().map(|t| {
            let mut qs = url::form_urlencoded::Serializer::new(String::new());
            for k in [
                "state", "priority", "name", "search", "queue", "worker", "since",
            ] {
                if let Some(v) = text(k) {
                    qs.append_pair(k, &v);
                }
            }
            qs.append_pair("cursor", &encode_cursor(t.created_at, t.id));
            format!("/projects/{slug}/tasks?{}", qs.finish())
        });
        let shown = serde_json::json!({
            "state": filter.state.clone().unwrap_or_default(),
            "name": filter.name.clone().unwrap_or_default(),
            "search": filter.search.clone().unwrap_or_default(),
            "queue": filter.queue.clone().unwrap_or_default(),
            "worker": filter.worker.clone().unwrap_or_default(),
            "priority": filter.priorities.clone().unwrap_or_default(),
            "since": text("since").filter(|w| Window::parse(w).is_some()).unwrap_or_default(),
        });
        Ok(page.render(
            "tasks.html",
            context! {
                tasks => task_rows(&rows),
                states => TASK_STATES,
                priorities => TASK_PRIORITIES,
                windows => Window::ALL.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
                filter => Value::from_serialize(shown),
                views,
                next,
            },
        ))
    }
    .await;
    finish(&state, r)
}

async fn agents_page(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!("/projects/{slug}/agents");
        let (a, page) = project_page(&state, &headers, &slug, &here, "agents").await?;
        let list = agents::list(&state.db, a.project.id)
            .await
            .map_err(ApiError::from)?;
        let rows: Vec<Value> = list
            .iter()
            .map(|x| {
                Value::from_serialize(serde_json::json!({
                    "id": x.id, "name": x.name, "state": x.state.as_str(),
                    "version": x.metadata.0.get("agent_version").and_then(|v| v.as_str()),
                    "last_seen": when(x.last_seen_at),
                }))
            })
            .collect();
        Ok(page.render(
            "agents.html",
            context! { agents => rows, can_manage => a.role >= Role::Admin },
        ))
    }
    .await;
    finish(&state, r)
}

fn pretty(v: Option<&serde_json::Value>) -> Option<String> {
    v.map(|j| serde_json::to_string_pretty(j).unwrap_or_default())
}

async fn task(
    State(state): State<Shared>,
    Path((slug, engine, task_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!(
            "/projects/{slug}/tasks/{}/{}",
            urlencode(&engine),
            urlencode(&task_id)
        );
        let (a, page) = project_page(&state, &headers, &slug, &here, "tasks").await?;
        let t = reads::task(&state.db, a.project.id, &engine, &task_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| PageError::NotFound(format!("task {task_id} ({engine}) not found")))?;
        let events = reads::events(&state.db, a.project.id, &engine, &task_id, None, 200)
            .await
            .map_err(ApiError::from)?;
        // Commands go to the agent that last reported the task.
        let agent = events.first().map(|e| e.agent_id.to_string());
        let timeline: Vec<Value> = events
            .iter()
            .rev()
            .map(|e| {
                Value::from_serialize(
                    serde_json::json!({"at": when(Some(e.occurred_at)), "kind": e.kind}),
                )
            })
            .collect();
        let args = serde_json::json!({
            "args": t.args.as_ref().map(|a| &a.0),
            "kwargs": t.kwargs.as_ref().map(|k| &k.0),
        });
        let view = serde_json::json!({
            "engine": t.engine, "task_id": t.task_id, "name": t.name, "state": t.state,
            "queue": t.queue, "worker": t.worker_name, "retries": t.retry_count,
            "runtime": t.runtime_ms.map(|ms| format!("{ms} ms")),
            "args": pretty(Some(&args)),
            "result": pretty(t.result.as_ref().map(|r| &r.0)),
            "exception": t.exception, "traceback": t.traceback,
        });
        Ok(page.render(
            "task.html",
            context! {
                task => Value::from_serialize(view),
                events => timeline,
                agent,
                can_operate => a.role >= Role::Operator && agent.is_some(),
            },
        ))
    }
    .await;
    finish(&state, r)
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn icon() -> Response {
    asset("image/svg+xml", include_str!("assets/favicon.svg"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    // Same URL for every build: revalidate, never serve a stale script.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_follow_sign_in() {
        assert!(local_path("/projects/default/tasks?state=failure"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/\tx",
            "",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn home_and_overview_render_their_numbers() {
        let env = templates();
        let card = serde_json::json!({
            "slug": "s", "name": "<n>", "environment": "dev", "health": "degraded",
            "tasks_24h": 21, "failures_24h": 2, "agents_online": 0, "agents_total": 1,
            "workers_online": 0, "workers_total": 0, "last_activity_at": null,
        });
        let out = env
            .get_template("home.html")
            .and_then(|t| {
                t.render(context! {
                    environment => "dev", env_class => "other", version => "0", page => "home",
                    projects => Value::from_serialize(vec![card.clone()]),
                    total => Value::from_serialize(&card), rate => "9.5",
                    attention => Value::from_serialize(vec![serde_json::json!({
                        "severity": "critical", "project_slug": "s", "project_name": "<n>",
                        "message": "all 2 agents are offline",
                    })]),
                    failures => Value::from_serialize(vec![serde_json::json!({
                        "project": "s", "engine": "rq", "task_id": "t/1", "name": "jobs.x",
                        "exception": "<b>boom</b>", "worker": null, "when": "2026-01-01 00:00:00 UTC",
                    })]),
                })
            })
            .unwrap_or_else(|e| panic!("home: {e}"));
        assert!(out.contains("(9.5 %)"));
        assert!(out.contains("class=\"h-degraded\""));
        assert!(out.contains("all 2 agents are offline"));
        assert!(out.contains("/projects/s/tasks/rq/t%2F1"));
        assert!(out.contains("none in 30 days"));
        assert!(!out.contains("<b>boom") && !out.contains("<n>"), "escaped");
        let out = env
            .get_template("project.html")
            .and_then(|t| {
                t.render(context! {
                    environment => "dev", env_class => "other", version => "0", page => "overview",
                    project => Value::from_serialize(serde_json::json!({"slug": "s", "name": "n"})),
                    chart => Value::from_safe_string("<svg class=\"chart\"></svg>".into()),
                    windows => Value::from_serialize(vec![serde_json::json!({"name": "24h", "current": true})]),
                    window => "24h", bucket => "15m",
                    trend_rows => Value::from_serialize(vec![serde_json::json!({
                        "when": "w", "success": 1, "failure": 2, "retry": 0, "revoked": 0,
                        "total": 3, "avg": null,
                    })]),
                    agents => Vec::<Value>::new(), tasks => Vec::<Value>::new(),
                    issues => Value::from_serialize(vec![serde_json::json!({
                        "fingerprint": "3f4ed4267841aaae00bb2c2e1be28e3a", "occurrences": 2, "open": 1,
                        "last_seen": "w", "exception": "<x>", "name": "jobs.a",
                    })]),
                })
            })
            .unwrap_or_else(|e| panic!("project: {e}"));
        assert!(
            out.contains("<svg class=\"chart\"></svg>"),
            "the chart unescaped"
        );
        assert!(out.contains("?window=24h\" aria-current"));
        assert!(
            out.contains("<td>3</td><td></td>"),
            "no mean runtime is blank"
        );
    }

    #[test]
    fn every_template_renders() {
        let env = templates();
        let project =
            Value::from_serialize(serde_json::json!({"id": "p", "slug": "s", "name": "<n>"}));
        for name in [
            "login.html",
            "home.html",
            "project.html",
            "tasks.html",
            "task.html",
            "agents.html",
            "not_found.html",
            "system.html",
        ] {
            let out = env
                .get_template(name)
                .and_then(|t| {
                    t.render(context! {
                        project => project.clone(), user => "u@example.com", environment => "dev",
                        env_class => "other", version => "0", page => "tasks", states => TASK_STATES,
                        filter => Value::from_serialize(serde_json::json!({})),
                        task => Value::from_serialize(serde_json::json!({"name": "<script>x</script>"})),
                        tasks => Vec::<Value>::new(), events => Vec::<Value>::new(), projects => Vec::<Value>::new(),
                        database => "sqlite", priorities => TASK_PRIORITIES, windows => vec!["1h"],
                        views => Value::from_serialize(vec![serde_json::json!({
                            "id": "v", "name": "<n>", "href": "/projects/s/tasks?state=failure",
                        })]),
                        snapshot => Value::from_serialize(serde_json::json!({
                            "generated_at": "g", "generated_by": "<n>", "source": "remote",
                            "fetched_at": "f", "fetched_from": "https://x/<n>",
                            "check_for_updates_url": "https://x/<n>", "packages": {"z4j": "1.0"},
                        })),
                    })
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(out.contains("</html>"), "{name} is a whole page");
            assert!(!out.contains("<script>x"), "{name} escapes values");
            assert!(!out.contains("<n>"), "{name} escapes values");
        }
    }
}
