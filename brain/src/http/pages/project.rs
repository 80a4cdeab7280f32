//! A project's pages: overview, tasks, a task, agents, members.

use super::{back_to, chart, finish, segment, trim_page, when, with_query, Page, PageError};
use crate::http::access::{self, Role};
use crate::http::aggregates;
use crate::http::error::ApiError;
use crate::http::query::Query;
use crate::http::reads::{decode_cursor, encode_cursor, TASK_STATES};
use crate::http::Shared;
use crate::insight::{self, Window};
use crate::store::commands::Status as CommandStatus;
use crate::store::ingest::TASK_PRIORITIES;
use crate::store::reads::{self, TaskFilter};
use crate::store::saved_views;
use crate::store::{agents, Ts};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use minijinja::{context, Value};
use std::collections::HashMap;

const PAGE_SIZE: i64 = 50;

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

/// A failure group as the overview and the issues page show it.
fn issue_value(i: &crate::store::aggregates::IssueRow) -> Value {
    Value::from_serialize(serde_json::json!({
        "fingerprint": i.fingerprint, "occurrences": i.occurrences,
        "open": i.open_count, "first_seen": when(Some(i.first_seen)),
        "last_seen": when(Some(i.last_seen)), "exception": i.sample_exception,
        "name": i.sample_task_name,
    }))
}

/// A filtered listing's prologue: `/projects/{slug}/{nav}` with its query
/// (where sign-in brings one back), the access, the layout and the query's
/// parameters.
pub(super) async fn listing_page(
    state: &Shared,
    headers: &HeaderMap,
    slug: &str,
    nav: &'static str,
    raw: Option<String>,
) -> Result<(access::ProjectAccess, Page, HashMap<String, String>), PageError> {
    let here = with_query(
        &format!("/projects/{slug}/{nav}"),
        raw.as_deref().unwrap_or(""),
    );
    let (a, page) = project_page(state, headers, slug, &here, nav).await?;
    Ok((a, page, Query::parse(raw).0))
}

pub(super) async fn project_page(
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
    let mut project = serde_json::json!({
        "id": a.project.id, "slug": a.project.slug, "name": a.project.name,
        "environment": a.project.environment,
    });
    // The layout links the audit log for those who may read it.
    project["audit"] = serde_json::json!(a.role.reads_audit());
    let p = Page {
        project: Some(Value::from_serialize(project)),
        ..Page::signed(state, page, &a.caller)
    };
    Ok((a, p))
}

pub(super) async fn overview(
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
        let issues: Vec<Value> = open_issues.iter().map(issue_value).collect();
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

pub(super) async fn tasks(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let (a, page, q) = listing_page(&state, &headers, &slug, "tasks", raw).await?;
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
            args: text("args"),
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
        let more = trim_page(&mut rows, PAGE_SIZE);
        let bulk = if a.role >= Role::Operator {
            bulk_retries(&state, a.project.id, &rows).await?
        } else {
            Vec::new()
        };
        let next = more.then(|| rows.last()).flatten().map(|t| {
            let mut qs = url::form_urlencoded::Serializer::new(String::new());
            for k in [
                "state", "priority", "name", "search", "queue", "worker", "since", "args",
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
            "args": filter.args.clone().unwrap_or_default(),
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
                bulk,
                next,
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// One "retry the failed tasks shown" action per engine: the failed rows
/// of this page by id (exactly what the operator sees; decision K7), sent
/// to the newest online agent running that engine.
async fn bulk_retries(
    state: &Shared,
    project: uuid::Uuid,
    rows: &[reads::Task],
) -> Result<Vec<Value>, PageError> {
    let mut failed: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    let failure = crate::store::ingest::TaskState::Failure.as_str();
    for t in rows.iter().filter(|t| t.state == failure) {
        failed
            .entry(t.engine.as_str())
            .or_default()
            .push(&t.task_id);
    }
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    let list = agents::list(&state.db, project)
        .await
        .map_err(ApiError::from)?;
    Ok(failed
        .into_iter()
        .filter_map(|(engine, ids)| {
            let agent = crate::schedules::pick_agent(&list, engine)?;
            let body = serde_json::json!({
                "agent_id": agent, "filter": {"engine": engine, "task_ids": ids},
            });
            Some(Value::from_serialize(serde_json::json!({
                "engine": engine, "count": ids.len(), "body": body.to_string(),
            })))
        })
        .collect())
}

pub(super) async fn agents(
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

pub(super) async fn task(
    State(state): State<Shared>,
    Path((slug, engine, task_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!(
            "/projects/{slug}/tasks/{}/{}",
            segment(&engine),
            segment(&task_id)
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

/// Members and their roles; project admins add, re-role and remove them and
/// mint invitations (the link shown once).
pub(super) async fn members(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!("/projects/{slug}/members");
        let (a, page) = project_page(&state, &headers, &slug, &here, "members").await?;
        let rows = crate::store::users::memberships(&state.db, a.project.id)
            .await
            .map_err(ApiError::from)?;
        let members: Vec<serde_json::Value> = rows
            .iter()
            .map(|m| crate::http::users::member_json(m, &slug))
            .collect();
        let can_manage = a.role >= Role::Admin;
        let invitations: Vec<serde_json::Value> = if can_manage {
            crate::store::invitations::pending(&state.db, a.project.id, Ts::now())
                .await
                .map_err(ApiError::from)?
                .iter()
                .map(crate::http::invitations::invitation_json)
                .collect()
        } else {
            Vec::new()
        };
        // Only global admins may list users; project admins invite instead.
        let candidates: Vec<Value> = if can_manage && a.caller.user.is_admin {
            let taken: std::collections::HashSet<_> = rows.iter().map(|m| m.user_id).collect();
            crate::store::users::list(&state.db, 500, 0)
                .await
                .map_err(ApiError::from)?
                .iter()
                .filter(|u| u.is_active && !taken.contains(&u.id))
                .map(|u| Value::from_serialize(serde_json::json!({"id": u.id, "email": u.email})))
                .collect()
        } else {
            Vec::new()
        };
        Ok(page.render(
            "members.html",
            context! {
                members => Value::from_serialize(&members),
                invitations => Value::from_serialize(&invitations),
                candidates,
                can_manage,
                roles => crate::http::users::ROLES,
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// One page of a project's commands, newest first, with a status filter;
/// payloads and results for operators and above, as the REST list.
pub(super) async fn commands(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let (a, page, q) = listing_page(&state, &headers, &slug, "commands", raw).await?;
        let status = q.get("status").and_then(|s| CommandStatus::parse(s));
        let window = q
            .get("window")
            .and_then(|w| Window::parse(w))
            .unwrap_or(Window::H24);
        let after = decode_cursor(q.get("cursor")).map(|c| (c.at, c.id));
        let mut rows =
            crate::store::commands::list(&state.db, a.project.id, status, after, PAGE_SIZE + 1)
                .await
                .map_err(ApiError::from)?;
        let more = trim_page(&mut rows, PAGE_SIZE);
        let next = more.then(|| rows.last()).flatten().map(|c| {
            let mut qs = url::form_urlencoded::Serializer::new(String::new());
            if let Some(s) = status {
                qs.append_pair("status", s.as_str());
            }
            if window != Window::H24 {
                qs.append_pair("window", window.as_str());
            }
            qs.append_pair("cursor", &encode_cursor(c.issued_at, c.id));
            format!("/projects/{slug}/commands?{}", qs.finish())
        });
        let now = Ts::now();
        let points = aggregates::latency_series(&state, a.project.id, window, now).await?;
        let to = now.0.timestamp();
        let latency = chart::latency(
            &points,
            to - window.secs(),
            to,
            window.chart_bucket().secs(),
        );
        let latency_rows: Vec<Value> = points
            .iter()
            .rev()
            .map(|p| {
                Value::from_serialize(serde_json::json!({
                    "when": when(chrono::DateTime::from_timestamp(p.start, 0).map(Ts)),
                    "completed": p.completed, "failed": p.failed, "timed_out": p.timed_out,
                    "mean": p.mean_ms, "max": p.max_ms,
                }))
            })
            .collect();
        let full = a.role >= Role::Operator;
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|c| {
                let mut v = crate::http::commands::command_json(c, full);
                // A task target is stored as `engine:task_id`.
                if let Some((engine, id)) = c
                    .target_id
                    .as_deref()
                    .filter(|_| c.target_type == "task")
                    .and_then(|t| t.split_once(':'))
                {
                    v["task_engine"] = serde_json::json!(engine);
                    v["task_id"] = serde_json::json!(id);
                }
                v
            })
            .collect();
        Ok(page.render(
            "commands.html",
            context! {
                commands => Value::from_serialize(&items),
                statuses => CommandStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                status => status.map(|s| s.as_str()).unwrap_or_default(),
                next,
                latency => Value::from_safe_string(latency),
                latency_rows,
                windows => Window::ALL.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
                window => window.as_str(),
                bucket => window.chart_bucket().as_str(),
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// Workers and queue depths; admins purge a queue through an online agent
/// after typing its name.
pub(super) async fn workers(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!("/projects/{slug}/workers");
        let (a, page) = project_page(&state, &headers, &slug, &here, "workers").await?;
        let workers: Vec<Value> = reads::workers(&state.db, a.project.id)
            .await
            .map_err(ApiError::from)?
            .iter()
            .map(|w| {
                Value::from_serialize(serde_json::json!({
                    "name": w.name, "engine": w.engine, "hostname": w.hostname,
                    "state": w.state, "concurrency": w.concurrency, "active": w.active_tasks,
                    "queues": w.queues.0, "heartbeat": when(w.last_heartbeat),
                }))
            })
            .collect();
        // Each queue's depth over the last hour, drawn from the same series
        // the REST route returns.
        let now = Ts::now();
        let window = Window::H1;
        let bucket = window.chart_bucket().secs();
        let to = now.0.timestamp();
        let mut charts: HashMap<(String, String), String> =
            aggregates::depth_series(&state, a.project.id, window, now)
                .await?
                .into_iter()
                .map(|q| {
                    let svg = chart::depth(&q.points, to - window.secs(), to, bucket);
                    ((q.engine, q.name), svg)
                })
                .collect();
        let queues: Vec<Value> = reads::queues(&state.db, a.project.id)
            .await
            .map_err(ApiError::from)?
            .iter()
            .map(|q| {
                let chart = charts
                    .remove(&(q.engine.clone(), q.name.clone()))
                    .map(Value::from_safe_string);
                context! {
                    name => q.name, engine => q.engine, pending => q.pending_count,
                    consumers => q.consumer_count, seen => when(q.last_seen_at), chart,
                }
            })
            .collect();
        let can_purge = a.role >= Role::Admin;
        let online: Vec<Value> = if can_purge {
            agents::list(&state.db, a.project.id)
                .await
                .map_err(ApiError::from)?
                .iter()
                .filter(|x| x.state == agents::Liveness::Online)
                .map(|x| Value::from_serialize(serde_json::json!({"id": x.id, "name": x.name})))
                .collect()
        } else {
            Vec::new()
        };
        Ok(page.render(
            "workers.html",
            context! { workers, queues, can_purge, online },
        ))
    }
    .await;
    finish(&state, r)
}

/// The audit log for auditors and admins (a 404 for other roles), with the
/// REST filters, a link to its JSON export and the chain's last
/// verification (brain-wide details for global admins only).
pub(super) async fn audit(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let (a, page, q) = listing_page(&state, &headers, &slug, "audit", raw).await?;
        if !a.role.reads_audit() {
            return Err(PageError::NotFound("page not found".into()));
        }
        let text = |k: &str| {
            q.get(k)
                .map(|v| v.trim().chars().take(80).collect::<String>())
                .filter(|v| !v.is_empty())
        };
        let filter = crate::store::audit::Filter {
            project_id: a.project.id,
            action_prefix: text("action_prefix"),
            outcome: text("outcome"),
            user_id: None,
            since: None,
        };
        let before = q.get("cursor").and_then(|c| c.parse::<i64>().ok());
        let mut rows = crate::audit::list(&state.db, &filter, before, PAGE_SIZE + 1)
            .await
            .map_err(ApiError::from)?;
        let more = trim_page(&mut rows, PAGE_SIZE);
        let mut qs = url::form_urlencoded::Serializer::new(String::new());
        for k in ["action_prefix", "outcome"] {
            if let Some(v) = text(k) {
                qs.append_pair(k, &v);
            }
        }
        let filters_qs = qs.finish();
        let next = more.then(|| rows.last()).flatten().map(|r| {
            let sep = if filters_qs.is_empty() { "" } else { "&" };
            format!("/projects/{slug}/audit?{filters_qs}{sep}cursor={}", r.id)
        });
        let items: Vec<serde_json::Value> = rows.iter().map(crate::http::audit::row_json).collect();
        Ok(page.render(
            "audit.html",
            context! {
                rows => Value::from_serialize(&items),
                action_prefix => text("action_prefix").unwrap_or_default(),
                outcome => text("outcome").unwrap_or_default(),
                outcomes => ["allow", "deny", "success", "failure"],
                next,
                filters_qs,
                brain_wide => a.caller.user.is_admin,
                ..super::chain_context(&state)
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// Channels, the triggers routed to them and the latest deliveries; admins
/// add, test, pause and delete channels and routes.
pub(super) async fn notifications(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!("/projects/{slug}/notifications");
        let (a, page) = project_page(&state, &headers, &slug, &here, "notifications").await?;
        use crate::http::notifications as rest;
        use crate::store::notifications as store;
        let channels: Vec<serde_json::Value> = store::channels(&state.db, a.project.id)
            .await
            .map_err(ApiError::from)?
            .iter()
            .map(|c| rest::channel_json(&state.settings, c))
            .collect();
        let names: HashMap<String, String> = channels
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let routes: Vec<serde_json::Value> = store::routes(&state.db, a.project.id)
            .await
            .map_err(ApiError::from)?
            .iter()
            .map(|r| {
                let mut v = rest::route_json(r);
                let to: Vec<String> = r
                    .channel_ids()
                    .iter()
                    .map(|id| {
                        names
                            .get(&id.to_string())
                            .cloned()
                            .unwrap_or_else(|| id.to_string())
                    })
                    .collect();
                v["channel_names"] = serde_json::json!(to);
                v
            })
            .collect();
        let deliveries: Vec<serde_json::Value> =
            store::deliveries(&state.db, a.project.id, None, PAGE_SIZE)
                .await
                .map_err(ApiError::from)?
                .iter()
                .map(rest::delivery_json)
                .collect();
        Ok(page.render(
            "notifications.html",
            context! {
                channels => Value::from_serialize(&channels),
                routes => Value::from_serialize(&routes),
                deliveries => Value::from_serialize(&deliveries),
                triggers => crate::notify::TRIGGERS,
                can_manage => a.role >= Role::Admin,
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// Failures grouped by fingerprint (the `/issues` route's store query):
/// ongoing or recovered, seen within a window, fifty a page.
pub(super) async fn issues(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let (a, page, q) = listing_page(&state, &headers, &slug, "issues", raw).await?;
        // Unknown words are "any", as on the tasks page.
        let status = q
            .get("status")
            .map(String::as_str)
            .filter(|s| matches!(*s, "ongoing" | "recovered"));
        let since = q.get("since").and_then(|w| Window::parse(w));
        let offset = q
            .get("offset")
            .and_then(|o| o.parse::<i64>().ok())
            .filter(|o| *o >= 0)
            .unwrap_or(0);
        let filter = crate::store::aggregates::IssueFilter {
            engine: None,
            seen_since: since.map(|w| Ts::now().plus_seconds(-w.secs())),
            recovered: status.map(|s| s == "recovered"),
        };
        let mut rows = crate::store::aggregates::issues(
            &state.db,
            a.project.id,
            &filter,
            offset,
            PAGE_SIZE + 1,
        )
        .await
        .map_err(ApiError::from)?;
        let more = trim_page(&mut rows, PAGE_SIZE);
        let list: Vec<Value> = rows.iter().map(issue_value).collect();
        let next = more.then(|| {
            let mut qs = url::form_urlencoded::Serializer::new(String::new());
            if let Some(s) = status {
                qs.append_pair("status", s);
            }
            if let Some(w) = since {
                qs.append_pair("since", w.as_str());
            }
            qs.append_pair("offset", &(offset + PAGE_SIZE).to_string());
            format!("/projects/{slug}/issues?{}", qs.finish())
        });
        Ok(page.render(
            "issues.html",
            context! {
                issues => list,
                status => status.unwrap_or_default(),
                since => since.map(|w| w.as_str()).unwrap_or_default(),
                windows => Window::ALL.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
                next,
            },
        ))
    }
    .await;
    finish(&state, r)
}
