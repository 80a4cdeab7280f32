//! The operator dashboard: server-rendered HTML (minijinja templates built
//! into the binary) with one small external script, `assets/app.js`, for
//! sign-in, command buttons and live refresh over `/ws/dashboard`. Pages
//! read through the same store functions and access rules as the REST
//! routes; writes go through the REST API itself (CSRF, roles, audit).
//! Strict CSP: no inline script or style.

//!
//! One module per area: `home`, `project` (a project's pages), `admin`
//! (global admins), `account` (the signed-in person's own settings),
//! `public` (pages for people without a session). This file holds what
//! they share: templates, the layout, errors and assets.

mod account;
mod admin;
mod chart;
mod home;
mod project;
mod public;
mod schedules;

use super::error::ApiError;
use super::query::Query;
use super::session;
use super::Shared;
use crate::settings::BRAIN_VERSION;
use crate::store::Ts;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Environment, Value};
use std::sync::OnceLock;

/// Stricter than the API's HTML policy: scripts and styles from this
/// origin only, never inline.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; frame-src 'none'; \
                   base-uri 'none'; object-src 'none'";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login))
        .route("/invite", get(public::invite))
        .route("/reset", get(public::reset))
        .route("/home", get(home::home))
        .route("/activity", get(home::activity_page))
        .route("/account", get(account::account))
        .route("/api-keys", get(account::api_keys))
        .route("/system", get(admin::system))
        .route("/users", get(admin::users))
        .route("/schedulers", get(admin::schedulers))
        .route("/projects/{slug}", get(project::overview))
        .route("/projects/{slug}/tasks", get(project::tasks))
        .route("/projects/{slug}/agents", get(project::agents))
        .route("/projects/{slug}/members", get(project::members))
        .route("/projects/{slug}/commands", get(project::commands))
        .route("/projects/{slug}/workers", get(project::workers))
        .route("/projects/{slug}/audit", get(project::audit))
        .route("/projects/{slug}/issues", get(project::issues))
        .route("/projects/{slug}/schedules", get(schedules::schedules))
        .route("/projects/{slug}/schedules/{id}", get(schedules::schedule))
        .route(
            "/projects/{slug}/notifications",
            get(project::notifications),
        )
        .route(
            "/projects/{slug}/tasks/{engine}/{task_id}",
            get(project::task),
        )
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
            ("users.html", include_str!("templates/users.html")),
            ("members.html", include_str!("templates/members.html")),
            ("account.html", include_str!("templates/account.html")),
            ("api_keys.html", include_str!("templates/api_keys.html")),
            ("invite.html", include_str!("templates/invite.html")),
            ("reset.html", include_str!("templates/reset.html")),
            ("commands.html", include_str!("templates/commands.html")),
            ("workers.html", include_str!("templates/workers.html")),
            ("audit.html", include_str!("templates/audit.html")),
            (
                "chain_status.html",
                include_str!("templates/chain_status.html"),
            ),
            (
                "notifications.html",
                include_str!("templates/notifications.html"),
            ),
            ("activity.html", include_str!("templates/activity.html")),
            ("issues.html", include_str!("templates/issues.html")),
            ("schedules.html", include_str!("templates/schedules.html")),
            ("schedule.html", include_str!("templates/schedule.html")),
            (
                "schedule_fields.html",
                include_str!("templates/schedule_fields.html"),
            ),
            ("schedulers.html", include_str!("templates/schedulers.html")),
        ] {
            if let Err(e) = env.add_template(name, src) {
                // Templates are part of the binary; a unit test renders each.
                tracing::error!(template = name, error = %e, "dashboard template does not parse");
            }
        }
        // Replaces the builtin, which leaves `/` alone.
        env.add_filter("urlencode", |s: String| segment(&s));
        // An RFC 3339 instant as "YYYY-MM-DD HH:MM:SS" (UTC as stored), or
        // a dash for none.
        env.add_filter("stamp", |t: Option<String>| match t {
            Some(t) => t.chars().take(19).collect::<String>().replace('T', " "),
            None => "—".to_owned(),
        });
        env
    })
}

/// The audit chain's last verification on this replica (one replica walks
/// each interval) and its settings, for `chain_status.html`.
fn chain_context(state: &Shared) -> Value {
    let chain = state
        .metrics
        .audit_chain_last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    context! {
        chain_enabled => state.settings.audit_chain_verify_enabled,
        chain_interval => state.settings.audit_chain_verify_interval_seconds,
        chain => Value::from_serialize(&chain),
    }
}

/// Why a page is not shown.
pub enum PageError {
    /// No usable session: to the sign-in page, then back here.
    SignIn(String),
    /// A second factor must be set up first: to the account page.
    Enrol,
    NotFound(String),
    Internal(String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        match e {
            ApiError::Unauthenticated(_) => PageError::SignIn(String::new()),
            ApiError::Coded {
                code: "mfa_enrollment_required",
                ..
            } => PageError::Enrol,
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
        Err(PageError::Enrol) => no_store(Redirect::to("/account").into_response()),
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

/// A page's own address with its query: where sign-in brings one back.
fn with_query(path: &str, raw: &str) -> String {
    if raw.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{raw}")
    }
}

/// Rows fetched one beyond a page: keeps the page, says whether more follow.
fn trim_page<T>(rows: &mut Vec<T>, size: i64) -> bool {
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    more
}

/// A path segment (a task id may hold `/`, `?` or a space): everything but
/// the unreserved characters percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A query parameter's value (form encoding).
fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What every page's layout shows.
struct Page {
    page: &'static str,
    /// `Z4J_ENVIRONMENT`, on every page.
    environment: String,
    user: Option<String>,
    /// A global admin: the layout links the admin pages.
    admin: bool,
    project: Option<Value>,
}

impl Page {
    fn anonymous(state: &Shared, page: &'static str) -> Page {
        Page {
            page,
            environment: state.settings.environment.clone(),
            user: None,
            admin: false,
            project: None,
        }
    }

    fn signed(state: &Shared, page: &'static str, caller: &session::Caller) -> Page {
        Page {
            user: Some(caller.user.email.clone()),
            admin: caller.user.is_admin,
            ..Page::anonymous(state, page)
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
            admin => self.admin,
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

async fn root(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match session::current(&state, &headers).await {
        Ok(Some(c)) if !c.via_key => no_store(Redirect::to("/home").into_response()),
        _ => no_store(Redirect::to("/login").into_response()),
    }
}

async fn login(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let next = Query::parse(raw)
        .0
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
    use crate::http::reads::TASK_STATES;
    use crate::store::ingest::TASK_PRIORITIES;

    #[test]
    fn path_segments_encode_slashes_and_spaces() {
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(segment("rq:t-1_x.y~"), "rq%3At-1_x.y~");
    }

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
    fn schedule_pages_render_state_and_controls() {
        let env = templates();
        let project =
            Value::from_serialize(serde_json::json!({"id": "p", "slug": "s", "name": "n"}));
        let held = serde_json::json!({
            "id": "a1", "name": "<nightly>", "task_name": "jobs.x", "engine": "rq",
            "scheduler": "z4j-scheduler", "kind": "cron", "expression": "0 3 * * *",
            "timezone": "UTC", "queue": null, "is_enabled": true,
            "paused_at": "2026-01-01T00:00:00+00:00", "consecutive_failures": 3,
            "total_runs": 7, "catch_up": "skip", "source": "dashboard",
        });
        let foreign = serde_json::json!({
            "id": "a2", "name": "beat", "task_name": "jobs.y", "engine": "celery",
            "scheduler": "celery-beat", "kind": "interval", "expression": "60",
            "timezone": "UTC", "is_enabled": false, "consecutive_failures": 0,
        });
        let render = |name: &str, ctx: Value| {
            env.get_template(name)
                .and_then(|t| t.render(ctx))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let list = render(
            "schedules.html",
            context! {
                project => project.clone(), page => "schedules", own => "z4j-scheduler",
                schedules => Value::from_serialize(vec![held.clone(), foreign]),
                threshold => 3, can_operate => true, can_manage => false,
                kinds => ["cron"], catch_ups => ["skip"],
            },
        );
        assert!(list.contains("&lt;nightly&gt;") && !list.contains("<nightly>"));
        assert!(list.contains("3 failed in a row</span> <span class=\"muted\">breaker threshold 3"));
        assert!(
            list.contains("data-api=\"POST /api/v1/projects/s/schedules/a1/resume\""),
            "{list}"
        );
        assert!(
            !list.contains("a1/trigger"),
            "a held schedule is not run now"
        );
        assert!(!list.contains("a2/enable") && list.contains("run by celery-beat"));
        assert!(!list.contains("new-schedule"), "creating is for admins");
        let detail = render(
            "schedule.html",
            context! {
                project => project.clone(), page => "schedules", own => "z4j-scheduler",
                s => Value::from_serialize(&held), args => "[1]", kwargs => "{}",
                fires => Value::from_serialize(vec![serde_json::json!({
                    "status": "acked_failed", "scheduled_for": "2026-01-01T03:00:00+00:00",
                    "fired_at": "2026-01-01T03:00:01+00:00", "latency_ms": 0,
                    "error_code": "command_failed", "error_message": "<boom>",
                })]),
                threshold => 0, can_operate => true, can_manage => true,
                kinds => ["cron", "interval"], catch_ups => ["skip", "fire_one_missed"],
            },
        );
        assert!(detail.contains("<td>0 ms</td>"), "a zero latency is shown");
        assert!(detail.contains("&lt;boom&gt;"));
        assert!(detail.contains("data-only-changed"));
        assert!(detail.contains("<option selected>skip</option>"));
        assert!(detail.contains("value=\"[1]\""));
        assert!(detail.contains("data-go=\"/projects/s/schedules\""));
        let fleet = render(
            "schedulers.html",
            context! {
                page => "schedulers",
                fleet => Value::from_serialize(serde_json::json!({
                    "total": 2, "healthy": 1, "schedulers": [
                        {"url": "http://a:7800", "ok": true, "error": null, "info": {
                            "version": "1.13.0", "instance_id": "i-1", "ready": true,
                            "uptime_seconds": 12.7, "schedules_loaded": 4,
                            "subsystems": {"brain_client_connected": true,
                                "cache_initial_sync_complete": false, "leader_gate_initialised": true}}},
                        {"url": "http://b:7800", "ok": null, "info": null, "error": "unreachable: refused"},
                    ],
                })),
            },
        );
        assert!(fleet.contains("1 of 2 answering"));
        assert!(
            fleet.contains("<td>12 s</td><td>4</td>\n<td>yes</td><td>no</td><td>yes</td>"),
            "{fleet}"
        );
        assert!(fleet.contains("unreachable</span> <span class=\"muted\">unreachable: refused"));
    }

    #[test]
    fn chain_status_keeps_brain_wide_details_for_global_admins() {
        let env = templates();
        let render = |brain_wide: bool| {
            env.get_template("chain_status.html")
                .and_then(|t| {
                    t.render(context! {
                        brain_wide, chain_enabled => true, chain_interval => 900,
                        chain => Value::from_serialize(serde_json::json!({
                            "at": "2026-12-04T10:00:00+00:00", "outcome": "failed",
                            "rows": 41, "problem": "row 42: link broken",
                        })),
                    })
                })
                .unwrap_or_default()
        };
        let admin = render(true);
        assert!(
            admin.contains("did not verify")
                && admin.contains("41 rows")
                && admin.contains("row 42")
        );
        let auditor = render(false);
        assert!(
            auditor.contains("did not verify") && auditor.contains("Ask a brain administrator")
        );
        assert!(
            !auditor.contains("41") && !auditor.contains("row 42"),
            "{auditor}"
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
            "users.html",
            "members.html",
            "account.html",
            "api_keys.html",
            "invite.html",
            "reset.html",
            "commands.html",
            "workers.html",
            "audit.html",
            "notifications.html",
            "activity.html",
            "issues.html",
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
                        users => Value::from_serialize(vec![serde_json::json!({
                            "id": "u1", "email": "<n>@example.com", "display_name": "<n>",
                            "is_admin": false, "is_active": true, "mfa_enrolled": false,
                            "created_at": "2026-01-01T00:00:00+00:00",
                        })]),
                        me => "u0", can_manage => true, roles => ["viewer", "admin"],
                        members => Value::from_serialize(vec![serde_json::json!({
                            "id": "m1", "user_email": "<n>@example.com", "role": "viewer",
                            "created_at": "2026-01-01T00:00:00+00:00",
                        })]),
                        invitations => Value::from_serialize(vec![serde_json::json!({
                            "id": "i1", "email": "<n>@example.com", "role": "viewer",
                            "expires_at": "2026-01-01T00:00:00+00:00",
                        })]),
                        candidates => Value::from_serialize(vec![serde_json::json!({"id": "u2", "email": "<n>"})]),
                        keys => Value::from_serialize(vec![serde_json::json!({
                            "id": "k1", "name": "<n>", "prefix": "z4j_", "scopes": ["tasks:read"],
                            "project_slug": null, "last_used_at": null, "expires_at": null,
                            "revoked_at": null,
                        })]),
                        scopes => vec!["tasks:read"],
                        commands => Value::from_serialize(vec![serde_json::json!({
                            "issued_at": "2026-01-01T00:00:00+00:00", "action": "<n>",
                            "target_type": "task", "target_id": "t/1", "payload": {"engine": "rq"},
                            "status": "pending", "completed_at": null, "error": "<n>",
                        })]),
                        statuses => vec!["pending"], status => "pending",
                        workers => Value::from_serialize(vec![serde_json::json!({
                            "name": "<n>", "engine": "rq", "state": "online", "queues": ["<n>"],
                            "active": 1, "heartbeat": null,
                        })]),
                        queues => Value::from_serialize(vec![serde_json::json!({
                            "name": "<n>", "engine": "rq", "pending": 3, "consumers": 1,
                        })]),
                        can_purge => true,
                        channels => Value::from_serialize(vec![serde_json::json!({
                            "id": "c1", "name": "<n>", "type": "webhook", "is_active": true,
                            "config": {"url": "https://x/<n>"},
                        })]),
                        routes => Value::from_serialize(vec![serde_json::json!({
                            "id": "r1", "trigger": "task.failed", "channel_names": ["<n>"],
                            "cooldown_seconds": 60,
                        })]),
                        deliveries => Value::from_serialize(vec![serde_json::json!({
                            "sent_at": "2026-01-01T00:00:00+00:00", "trigger": "task.failed",
                            "channel_name": "<n>", "status": "failed", "response_code": 500,
                            "error": "<n>", "task_id": "<n>",
                        })]),
                        triggers => vec!["task.failed"],
                        issues => Value::from_serialize(vec![serde_json::json!({
                            "fingerprint": "3f4ed4267841aaae00bb2c2e1be28e3a", "occurrences": 2,
                            "open": 1, "first_seen": "w", "last_seen": "w", "exception": "<n>",
                            "name": "<n>",
                        })]),
                        online => Value::from_serialize(vec![serde_json::json!({"id": "a1", "name": "<n>"})]),
                        rows => Value::from_serialize(vec![serde_json::json!({
                            "occurred_at": "2026-01-01T00:00:00+00:00", "action": "<n>",
                            "target_type": "user", "target_id": "<n>", "outcome": "success",
                        })]),
                        outcomes => vec!["success"], filters_qs => "action_prefix=a",
                        mfa => Value::from_serialize(serde_json::json!({
                            "enrolled": false, "enrollment_required": true,
                            "enrollment_deadline": "2026-01-01T00:00:00+00:00",
                        })),
                        qr => Value::from_safe_string("<svg role=\"img\"></svg>".into()),
                        secret => "JBSWY3DPEHPK3PXP", locked => false, display_name => "<n>",
                        sessions => Value::from_serialize(vec![serde_json::json!({
                            "id": "s1", "issued_at": "2026-01-01T00:00:00+00:00",
                            "last_seen_at": "2026-01-01T00:00:00+00:00", "ip_at_issue": "127.0.0.1",
                            "user_agent_at_issue": "<n>", "is_current": false,
                        })]),
                        devices => Value::from_serialize(vec![serde_json::json!({
                            "id": "d1", "label": "<n>", "last_seen_at": "2026-01-01T00:00:00+00:00",
                            "expires_at": "2026-01-01T00:00:00+00:00", "revoked_at": null, "is_current": true,
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
