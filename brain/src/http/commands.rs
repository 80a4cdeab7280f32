//! Operator commands (spec http-api 5.4): issue (202 + the command), poll,
//! list: JSON in and out, and errors onto the envelope. The lifecycle is
//! the commands domain's (`crate::commands`).

use super::access::{self, Role};
use super::body;
use super::error::{ApiError, SchemaIssue};
use super::reads::{decode_cursor, encode_cursor};
use super::Shared;
use crate::commands::capability::{self, Refusal};
use crate::net::client_ip;
use crate::settings::mutant::Mutant;
use crate::store::agents::{self, Liveness};
use crate::store::commands::{self, Action, Command, Issued, NewCommand, Status};
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::time::Duration;
use uuid::Uuid;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/projects/{slug}/commands", get(list))
        .route(
            "/api/v1/projects/{slug}/commands/{command}",
            get(read).post(issue),
        )
}

pub fn command_json(c: &Command, full: bool) -> Value {
    let mut payload = c.payload.0.clone();
    if let Some(token) = payload.get_mut("confirm_token") {
        *token = json!("<redacted>");
    }
    let ts = |t: Option<crate::store::Ts>| t.map(|t| t.to_rfc3339());
    json!({
        "id": c.id,
        "project_id": c.project_id,
        "agent_id": c.agent_id,
        "issued_by": if full { json!(c.issued_by) } else { Value::Null },
        "action": c.action,
        "target_type": c.target_type,
        "target_id": c.target_id,
        "payload": if full { payload } else { json!({}) },
        "status": c.status,
        "result": if full { c.result.as_ref().map(|r| r.0.clone()).unwrap_or(Value::Null) } else { Value::Null },
        "error": c.error,
        "issued_at": c.issued_at.to_rfc3339(),
        "dispatched_at": ts(c.dispatched_at),
        "completed_at": ts(c.completed_at),
        "timeout_at": c.timeout_at.to_rfc3339(),
    })
}

/// One issue request, validated.
struct Request {
    agent_id: Uuid,
    action: Action,
    target_type: &'static str,
    target_id: Option<String>,
    payload: Value,
    idempotency_key: Option<String>,
    need: Role,
    /// The engine the agent's session must advertise the action for.
    requirement: Option<String>,
    /// A bulk retry's selection, parsed once (K7).
    selection: Option<BulkSelection>,
}

/// Which tasks a bulk retry names: explicit ids, or a filter the brain
/// resolves against its own rows.
enum BulkSelection {
    Ids(Vec<String>),
    Matching(crate::store::reads::Selection),
}

fn issue_err(kind: &'static str, field: &str, msg: impl Into<String>) -> SchemaIssue {
    SchemaIssue {
        kind,
        loc: vec![json!("body"), json!(field)],
        msg: msg.into(),
    }
}

/// A command body being read: typed fields go into the payload, problems
/// into two lists (field-type problems first, then value rules, as the
/// reference orders them).
struct Body<'a> {
    obj: &'a Map<String, Value>,
    f: body::Fields<'a>,
    payload: Map<String, Value>,
    rules: Vec<SchemaIssue>,
    /// The engine the agent's session must advertise the action for.
    requirement: Option<String>,
    selection: Option<BulkSelection>,
}

impl<'a> Body<'a> {
    /// A string field of at most `max` characters, copied into the payload.
    fn text(&mut self, name: &'static str, max: usize, required: bool) -> Option<String> {
        let v = self.f.text(name, 1, max, required);
        if let Some(v) = &v {
            self.payload.insert(name.into(), json!(v));
        }
        v
    }

    /// An optional integer field within `lo..=hi`.
    fn int(&mut self, name: &str, lo: i64, hi: i64) -> Option<i64> {
        match self.obj.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) if (lo..=hi).contains(&n) => Some(n),
                _ => {
                    self.rule(
                        "int_range",
                        name,
                        format!("Input should be an integer between {lo} and {hi}"),
                    );
                    None
                }
            },
        }
    }

    fn rule(&mut self, kind: &'static str, field: &str, msg: impl Into<String>) {
        self.rules.push(issue_err(kind, field, msg));
    }
}

/// What an action's fields decide: the action, its target and the role
/// the caller needs.
type Decided = (Action, &'static str, Option<String>, Role);

fn parse(route: &str, body: &[u8]) -> Result<Request, ApiError> {
    let obj = body::object(body)?;
    let mut b = Body {
        obj: &obj,
        f: body::Fields::new(&obj),
        payload: Map::new(),
        rules: Vec::new(),
        requirement: None,
        selection: None,
    };
    let agent = b.f.text("agent_id", 1, 64, true);
    let key = b.f.text("idempotency_key", 1, 200, false);
    let (action, target_type, target_id, need) = match route {
        "retry-task" | "cancel-task" | "requeue-dead-letter" => task_command(&mut b, route),
        "bulk-retry" => bulk_retry(&mut b),
        "purge-queue" => purge_queue(&mut b),
        "restart-worker" | "pool-resize" | "add-consumer" | "cancel-consumer" => {
            worker_command(&mut b, route)
        }
        "rate-limit" => rate_limit(&mut b),
        _ => {
            return Err(ApiError::NotFound {
                message: format!("unknown command '{route}'"),
                details: json!({"command": route}),
            })
        }
    };
    let Body {
        mut f,
        payload,
        rules,
        requirement,
        selection,
        ..
    } = b;
    f.issues.extend(rules);
    let agent_id = match agent.as_deref().map(Uuid::parse_str) {
        Some(Ok(u)) => Some(u),
        Some(Err(_)) => {
            f.issues.push(issue_err(
                "uuid_parsing",
                "agent_id",
                "Input should be a valid UUID",
            ));
            None
        }
        None => None,
    };
    let agent_id = f.finish(agent_id)?;
    Ok(Request {
        agent_id,
        action,
        target_type,
        target_id,
        payload: Value::Object(payload),
        idempotency_key: key,
        need,
        requirement,
        selection,
    })
}

/// `retry-task`, `cancel-task`, `requeue-dead-letter`: one task of one
/// engine (target `engine:task_id`).
fn task_command(b: &mut Body<'_>, route: &str) -> Decided {
    let engine = b.text("engine", 40, true);
    if let Some(e) = engine.as_deref().and_then(capability::engine_name_error) {
        b.rule("value_error", "engine", format!("Value error, {e}"));
    }
    let task = b.text("task_id", 200, true);
    let action = match route {
        "retry-task" => {
            retry_overrides(b);
            Action::RetryTask
        }
        "cancel-task" => Action::CancelTask,
        _ => Action::RequeueDeadLetter,
    };
    b.requirement = engine.clone();
    let target = engine.zip(task).map(|(e, t)| format!("{e}:{t}"));
    (action, "task", target, Role::Operator)
}

/// A retry's optional overrides: both or neither, a list and a dictionary
/// without reserved keys, each at most 64 KiB of JSON; and `eta_seconds`.
fn retry_overrides(b: &mut Body<'_>) {
    let args = b.obj.get("override_args").filter(|v| !v.is_null());
    let kwargs = b.obj.get("override_kwargs").filter(|v| !v.is_null());
    if args.is_some_and(|a| !a.is_array()) {
        b.rule("list_type", "override_args", "Input should be a valid list");
    }
    if kwargs.is_some_and(|k| !k.is_object()) {
        b.rule(
            "dict_type",
            "override_kwargs",
            "Input should be a valid dictionary",
        );
    }
    let reserved: Vec<&String> = kwargs
        .and_then(Value::as_object)
        .map(|k| k.keys().filter(|k| k.starts_with("__z4j_")).collect())
        .unwrap_or_default();
    if !reserved.is_empty() {
        b.rule(
            "value_error",
            "override_kwargs",
            format!(
                "Value error, override_kwargs may not contain reserved control keys: {reserved:?}"
            ),
        );
    }
    if args.is_some() != kwargs.is_some() {
        b.rule(
            "value_error",
            "override_args",
            "Value error, override_args and override_kwargs go together",
        );
    }
    for (name, v) in [("override_args", args), ("override_kwargs", kwargs)] {
        if let Some(v) = v {
            if v.to_string().len() > 64 * 1024 {
                b.rule("value_error", name, "Value error, at most 64 KiB of JSON");
            }
            b.payload.insert(name.into(), v.clone());
        }
    }
    if let Some(eta) = b.int("eta_seconds", 0, 86_400) {
        b.payload.insert("eta_seconds".into(), json!(eta));
    }
}

/// The filter keys a client may send: which tasks, never what runs. Task
/// names, priorities, overrides and arguments are the brain's to fill from
/// its own rows (specs/decisions.md K7).
const SELECTION_KEYS: &[&str] = &[
    "task_ids", "engine", "state", "status", "queue", "name", "since", "until",
];

/// `bulk-retry`: a selection (its engine is what the agent must advertise,
/// never defaulted) and a cap; other filter keys are dropped and named.
fn bulk_retry(b: &mut Body<'_>) -> Decided {
    let mut filter = Map::new();
    let mut rejected: Vec<String> = Vec::new();
    match b.obj.get("filter") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if SELECTION_KEYS.contains(&k.as_str()) {
                    filter.insert(k.clone(), v.clone());
                } else {
                    rejected.push(k.clone());
                }
            }
        }
        Some(_) => b.rule("dict_type", "filter", "Input should be a valid dictionary"),
    }
    let ids: Option<Vec<String>> = filter.get("task_ids").and_then(|ids| {
        let list: Option<Vec<String>> = ids.as_array().and_then(|l| {
            l.iter()
                .map(|i| {
                    i.as_str()
                        .filter(|t| (1..=200).contains(&t.len()))
                        .map(str::to_owned)
                })
                .collect()
        });
        let list = list.filter(|l| !l.is_empty());
        if list.is_none() {
            b.rule(
                "value_error",
                "filter.task_ids",
                "Value error, task_ids must be a non-empty list of task ids (1 to 200 characters each)",
            );
        }
        list
    });
    let mut text = |key: &str| match filter.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => {
            b.rule(
                "string_type",
                &format!("filter.{key}"),
                "Input should be a valid string",
            );
            None
        }
    };
    let (state, status, queue, name) = (text("state"), text("status"), text("queue"), text("name"));
    let mut instant = |key: &str| {
        let v = filter.get(key).filter(|v| !v.is_null())?;
        match v.as_str().map(chrono::DateTime::parse_from_rfc3339) {
            Some(Ok(t)) => Some(crate::store::Ts(t.with_timezone(&chrono::Utc))),
            _ => {
                b.rule(
                    "datetime_from_date_parsing",
                    &format!("filter.{key}"),
                    "Input should be a valid datetime",
                );
                None
            }
        }
    };
    let (since, until) = (instant("since"), instant("until"));
    b.selection = Some(match ids {
        Some(ids) => BulkSelection::Ids(ids),
        None => BulkSelection::Matching(crate::store::reads::Selection {
            state: state.or(status),
            name,
            queue,
            since,
            until,
        }),
    });
    let engine = filter
        .get("engine")
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
        .unwrap_or_default();
    b.requirement = Some(engine);
    let max = b.int("max", 1, 10_000).unwrap_or(1000);
    b.payload.insert("filter".into(), Value::Object(filter));
    b.payload.insert("max".into(), json!(max));
    if !rejected.is_empty() {
        rejected.sort();
        b.payload.insert(
            "rejected_client_supplied_filter_keys".into(),
            json!(rejected),
        );
    }
    (Action::BulkRetry, "filter", None, Role::Operator)
}

/// Fills a bulk retry's filter from the brain's own rows. Explicit ids
/// (deduplicated, at most `max`) must all be this project's tasks of the
/// engine, or nothing is sent and the refusal is audited; without ids, the
/// tasks matching the selection, newest first, at most `max`. The agent
/// gets ids, names and priorities (the real RQ agent retries nothing
/// without ids; specs/decisions.md K7).
async fn select_tasks(
    state: &Shared,
    access: &access::ProjectAccess,
    req: &mut Request,
    ip: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    use crate::store::reads;
    let project = access.project.id;
    let filter = req.payload["filter"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let engine = req.requirement.clone().unwrap_or_default();
    let max = req.payload["max"].as_i64().unwrap_or(1000);
    let audit = |action: &str, result: &str, outcome: &str, meta: Value| {
        let mut e = crate::audit::Entry::new(action, result)
            .in_project(project)
            .by(Some(access.caller.user.id))
            .from(Some(ip.to_owned()), headers)
            .meta(meta);
        e.outcome = Some(outcome.into());
        e.target_type = Some("bulk".into());
        e
    };
    if let Some(keys) = req.payload.get("rejected_client_supplied_filter_keys") {
        let e = audit(
            "command.bulk_retry.filter_keys_rejected",
            "success",
            "sanitized",
            json!({"rejected_client_supplied_filter_keys": keys, "engine": engine}),
        );
        crate::audit::record(&state.db, &state.settings, &e).await?;
    }
    let selected = match req.selection.take() {
        // Parsing sets it for every bulk retry.
        None => return Ok(()),
        Some(BulkSelection::Ids(list)) => {
            let mut seen = std::collections::HashSet::new();
            let ids: Vec<String> = list
                .into_iter()
                .filter(|i| seen.insert(i.clone()))
                .take(max as usize)
                .collect();
            let found = reads::owned_tasks(&state.db, project, &engine, &ids).await?;
            let by_id: std::collections::HashMap<&str, &reads::Selected> =
                found.iter().map(|t| (t.task_id.as_str(), t)).collect();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|i| !by_id.contains_key(i.as_str()))
                .collect();
            if !missing.is_empty() && !state.settings.mutant(Mutant::BulkRetryIdsUnchecked) {
                let e = audit(
                    "command.bulk_retry.refused",
                    "failed",
                    "deny",
                    json!({"reason": "partial_task_ownership_resolution", "engine": engine,
                           "missing_task_ids": missing, "requested_ids": ids.len()}),
                );
                crate::audit::record(&state.db, &state.settings, &e).await?;
                return Err(ApiError::Validation {
                    message: format!(
                        "bulk retry refused: {} of {} task ids are not {engine:?} tasks of this project",
                        missing.len(),
                        ids.len()
                    ),
                    details: json!({"missing_task_ids": missing, "engine": engine}),
                });
            }
            // Every id is owned here, but under the mutant, which sends the
            // unowned ones as they came.
            ids.iter()
                .map(|i| {
                    by_id.get(i.as_str()).map_or_else(
                        || reads::Selected {
                            task_id: i.clone(),
                            name: String::new(),
                            priority: String::new(),
                        },
                        |t| (*t).clone(),
                    )
                })
                .collect::<Vec<_>>()
        }
        Some(BulkSelection::Matching(selection)) => {
            let found = reads::matching_tasks(&state.db, project, &engine, &selection, max).await?;
            if found.is_empty() {
                return Err(ApiError::Validation {
                    message: format!("no {engine:?} task of this project matches the filter"),
                    details: json!({"filter": filter}),
                });
            }
            found
        }
    };
    let mut out = filter;
    out.insert(
        "task_ids".into(),
        json!(selected.iter().map(|t| &t.task_id).collect::<Vec<_>>()),
    );
    let names: Map<String, Value> = selected
        .iter()
        .map(|t| (t.task_id.clone(), json!(t.name)))
        .collect();
    let priorities: Map<String, Value> = selected
        .iter()
        .map(|t| (t.task_id.clone(), json!(t.priority)))
        .collect();
    out.insert("task_names".into(), Value::Object(names));
    out.insert("task_priorities".into(), Value::Object(priorities));
    req.payload["filter"] = Value::Object(out);
    Ok(())
}

/// `purge-queue` (admins): the queue, the confirmation token, the depth
/// the operator saw.
fn purge_queue(b: &mut Body<'_>) -> Decided {
    let queue = b.text("queue", 200, true);
    b.text("confirm_token", 128, true);
    if let Some(d) = b.int("observed_depth", 0, i64::MAX) {
        b.payload.insert("observed_depth".into(), json!(d));
    }
    let force = b.f.boolean("force", false);
    b.payload.insert("force".into(), json!(force));
    b.text("engine", 40, false);
    (Action::PurgeQueue, "queue", queue, Role::Admin)
}

/// `restart-worker`, `pool-resize` (a signed delta: grow or shrink),
/// `add-consumer`, `cancel-consumer` (with a queue).
fn worker_command(b: &mut Body<'_>, route: &str) -> Decided {
    b.text("engine", 40, false);
    let worker = b.text("worker_name", 200, true);
    let action = match route {
        "restart-worker" => Action::RestartWorker,
        "add-consumer" => Action::AddConsumer,
        "cancel-consumer" => Action::CancelConsumer,
        _ => match b.int("delta", -100, 100) {
            Some(d) if d > 0 => {
                b.payload.insert("delta".into(), json!(d));
                Action::PoolGrow
            }
            Some(d) if d < 0 => {
                b.payload.insert("delta".into(), json!(-d));
                Action::PoolShrink
            }
            _ => {
                b.rule(
                    "value_error",
                    "delta",
                    "Value error, delta must be a non-zero integer between -100 and 100",
                );
                Action::PoolGrow
            }
        },
    };
    if matches!(route, "add-consumer" | "cancel-consumer") {
        b.text("queue", 200, true);
    }
    (action, "worker", worker, Role::Operator)
}

/// `rate-limit`: a task name and a Celery-style rate.
fn rate_limit(b: &mut Body<'_>) -> Decided {
    let task = b.text("task_name", 500, true);
    let rate = b.text("rate", 32, true);
    if rate.as_deref().is_some_and(|r| !rate_ok(r)) {
        b.rule(
            "string_pattern_mismatch",
            "rate",
            "String should match pattern '^(?:0|[1-9]\\d*(?:/[smh])?)$'",
        );
    }
    b.text("worker_name", 200, false);
    (Action::RateLimit, "task_name", task, Role::Operator)
}

/// `^(?:0|[1-9]\d*(?:/[smh])?)$`
fn rate_ok(r: &str) -> bool {
    if r == "0" {
        return true;
    }
    let (num, unit) = match r.split_once('/') {
        Some((n, u)) => (n, Some(u)),
        None => (r, None),
    };
    let digits =
        !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && !num.starts_with('0');
    digits && unit.is_none_or(|u| matches!(u, "s" | "m" | "h"))
}

/// The capability rules of an engine command: 422 when the agent does not
/// advertise the engine or action, 409 for a retry that needs overrides.
fn capability_check(agent: &agents::Agent, req: &Request) -> Result<(), ApiError> {
    let Some(engine) = &req.requirement else {
        return Ok(());
    };
    match capability::refusal(agent, engine, req.action, &req.payload) {
        None => Ok(()),
        Some(Refusal::NotAdvertised(reason)) => Err(ApiError::Detail {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: json!({"error": reason, "engine": engine, "action": req.action.as_str(), "agent_id": agent.id}),
        }),
        Some(Refusal::NeedsOverrides) => Err(ApiError::Detail {
            status: StatusCode::CONFLICT,
            detail: json!({"error": format!(
                "refusing to retry a {engine:?} task: this engine has no native retry, so \
                 the agent re-submits it, and the brain stores the original arguments \
                 redacted; supply both override_args and override_kwargs"
            )}),
        }),
    }
}

/// The command row and its audit row in one transaction; a replayed
/// idempotency key writes neither (409 when the request differs).
async fn persist_audited(
    state: &Shared,
    access: &access::ProjectAccess,
    req: &Request,
    ip: &str,
    headers: &HeaderMap,
) -> Result<Issued, ApiError> {
    let project_id = access.project.id;
    let mut tx = crate::audit::begin(&state.db).await?;
    let issued = state
        .commands
        .persist(
            &mut tx,
            &NewCommand {
                project_id,
                agent_id: req.agent_id,
                issued_by: Some(access.caller.user.id),
                action: req.action,
                target_type: req.target_type,
                target_id: req.target_id.as_deref(),
                payload: &req.payload,
                idempotency_key: req.idempotency_key.as_deref(),
                timeout_seconds: state.settings.command_timeout_seconds,
                source_ip: ip,
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::Conflict {
                message: m,
                details: json!({"idempotency_key": req.idempotency_key}),
            },
            other => other.into(),
        })?;
    let Issued::New(command) = &issued else {
        return Ok(issued);
    };
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new(format!("command.issue.{}", command.action), "success")
            .target("command", command.id)
            .in_project(project_id)
            .by(Some(access.caller.user.id))
            .from(Some(ip.to_owned()), headers)
            .meta(json!({"agent_id": req.agent_id, "target_id": command.target_id})),
    )
    .await?;
    Ok(issued)
}

async fn issue(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((slug, route)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let viewer = access::project(&state, &headers, &slug, Role::Viewer).await?;
    access::csrf(&viewer.caller, &headers)?;
    let mut req = parse(&route, &body)?;
    let access = access::project(&state, &headers, &slug, req.need).await?;
    let project = &access.project;
    let not_found = || ApiError::NotFound {
        message: "agent not found in this project".into(),
        details: json!({"agent_id": req.agent_id}),
    };
    let agent = match agents::find(&state.db, req.agent_id).await? {
        Some(a) if a.project_id == project.id && a.revoked_at.is_none() => a,
        _ => return Err(not_found()),
    };
    let wait = wait_param(raw.as_deref(), state.settings.request_timeout_seconds)?;
    capability_check(&agent, &req)?;
    let ip = client_ip::of_request(&state.settings, peer, &headers).to_string();
    if req.action == Action::BulkRetry {
        select_tasks(&state, &access, &mut req, &ip, &headers).await?;
    }
    if let Err(retry) = state.command_budget.hit(&project.id.to_string()) {
        return Err(ApiError::RateLimited {
            message: "command rate limit exceeded (Z4J_RATELIMIT_COMMANDS_PER_MINUTE)".into(),
            retry_after_secs: Some(retry),
        });
    }
    let command = match persist_audited(&state, &access, &req, &ip, &headers).await? {
        Issued::Replayed(c) => {
            return Ok((StatusCode::ACCEPTED, Json(command_json(&c, true))).into_response())
        }
        Issued::New(c) => c,
    };
    tracing::info!(command_id = %command.id, action = command.action, agent_id = %req.agent_id, "command issued");
    let delivered = state.commands.dispatch_new(req.agent_id, &command).await;
    crate::metrics::bump(
        &state.metrics.commands,
        &[
            command.action.as_str(),
            if delivered { "dispatched" } else { "pending" },
        ],
    );
    if !delivered && agent.state != Liveness::Online {
        // Published for a replica that may hold the agent; the row stays
        // pending: delivered on the agent's next handshake or long poll, or
        // timed out by the sweeper.
        return Err(ApiError::Coded {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "agent_offline",
            message: "agent is not connected".into(),
            details: json!({"agent_id": req.agent_id, "command_id": command.id}),
        });
    }
    outcome(&state, project.id, command.id, wait).await
}

/// `?wait=<seconds>` on issue and read (specs/decisions.md C-504): how long
/// the caller is willing to wait for the command's outcome, capped by
/// `Z4J_REQUEST_TIMEOUT_SECONDS`.
fn wait_param(raw: Option<&str>, request_timeout: i64) -> Result<Option<Duration>, ApiError> {
    let q = super::query::Query::parse(raw.map(str::to_owned)).0;
    match q.get("wait").map(|w| w.parse::<u64>()) {
        None => Ok(None),
        Some(Ok(w)) if w <= 3600 => {
            // A margin so the answer leaves before the request budget ends.
            let cap = (request_timeout.max(2) - 1) as u64;
            Ok(Some(Duration::from_secs(w.min(cap))))
        }
        Some(_) => Err(ApiError::Schema(vec![SchemaIssue::new(
            "int_range",
            &["query", "wait"],
            "Input should be an integer between 0 and 3600",
        )])),
    }
}

/// The command now, or after waiting for its outcome: 200 once it finished,
/// 504 `command_timeout` once the sweeper gave up on it, 202 while it is
/// still in flight.
async fn outcome(
    state: &Shared,
    project_id: Uuid,
    id: Uuid,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    loop {
        let c = commands::find(&state.db, project_id, id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("command {id} vanished")))?;
        if wait.is_some() {
            if c.status == Status::Timeout {
                return Err(ApiError::Coded {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    code: "command_timeout",
                    message: "command timed out before agent responded".into(),
                    details: json!({
                        "command_id": c.id,
                        "agent_id": c.agent_id,
                        "timeout_at": c.timeout_at.to_rfc3339(),
                    }),
                });
            }
            if c.status.is_finished() {
                return Ok((StatusCode::OK, Json(command_json(&c, true))).into_response());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(command_json(&c, true))).into_response());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let not_found = || ApiError::NotFound {
        message: "command not found".into(),
        details: json!({}),
    };
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let c = commands::find(&state.db, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(command_json(&c, access.role >= Role::Operator)))
}

async fn list(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let q = super::query::Query::parse(raw).0;
    let limit = super::reads::rest_limit(&state.settings, q.get("limit"))?;
    // Unknown status values are ignored, as the reference does.
    let status = q.get("status").and_then(|s| Status::parse(s));
    let after = decode_cursor(q.get("cursor")).map(|a| (a.at, a.id));
    let rows = commands::list(&state.db, access.project.id, status, after, limit).await?;
    // A full page yields a cursor (the last one may lead to an empty page).
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|c| encode_cursor(c.issued_at, c.id)))
        .flatten();
    let full = access.role >= Role::Operator;
    Ok(Json(json!({
        "items": rows.iter().map(|c| command_json(c, full)).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_pattern() {
        for ok in ["0", "10", "10/s", "3/m", "100/h"] {
            assert!(rate_ok(ok), "{ok}");
        }
        for bad in ["", "01", "1/d", "/s", "1/", "-1", "1.5"] {
            assert!(!rate_ok(bad), "{bad}");
        }
    }

    #[test]
    fn bodies_are_validated_per_action() {
        let agent = Uuid::new_v4();
        let r = parse(
            "cancel-task",
            format!(r#"{{"agent_id":"{agent}","engine":"rq","task_id":"t1"}}"#).as_bytes(),
        );
        let r = r.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (r.action, r.target_id.as_deref()),
            (Action::CancelTask, Some("rq:t1"))
        );
        assert!(parse(
            "cancel-task",
            format!(r#"{{"agent_id":"{agent}","engine":"rq"}}"#).as_bytes()
        )
        .is_err());
        assert!(parse(
            "retry-task",
            format!(r#"{{"agent_id":"{agent}","engine":"rq","task_id":"t","override_args":[]}}"#)
                .as_bytes()
        )
        .is_err());
        let p = parse(
            "pool-resize",
            format!(r#"{{"agent_id":"{agent}","worker_name":"w","delta":-3}}"#).as_bytes(),
        );
        assert_eq!(
            p.map(|p| (p.action, p.payload["delta"].clone())).ok(),
            Some((Action::PoolShrink, json!(3)))
        );
        assert!(matches!(
            parse("explode", b"{}"),
            Err(ApiError::NotFound { .. })
        ));
    }
}
