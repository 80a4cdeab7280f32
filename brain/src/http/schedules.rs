//! Schedules (scheduler spec §4): list, create, read, patch, delete,
//! enable/disable, pause/resume, and the fire history. Every change is
//! audited and bumps `updated_at`, which the scheduler's watch follows.

use super::access::{self, Role};
use super::body;
use super::error::{conflict, ApiError, SchemaIssue};
use super::Shared;
use crate::schedules::validate;
use crate::store::schedules::{self as store, CatchUp, Definition, Kind, Schedule, Z4J_SCHEDULER};
use crate::store::Ts;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use uuid::Uuid;

const BASE: &str = "/api/v1/projects/{slug}/schedules";
/// `args`/`kwargs` each, serialised (§4.5).
const MAX_ARGS_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(BASE, get(list).post(create))
        .route(
            &format!("{BASE}/{{id}}"),
            get(read).patch(update).delete(remove),
        )
        .route(&format!("{BASE}/{{id}}/{{action}}"), post(toggle))
        .route(&format!("{BASE}/{{id}}/fires"), get(fires))
        .route(&format!("{BASE}/runs"), get(runs))
        .route(&format!("{BASE}/misfires"), get(misfires))
        .route(&format!("{BASE}/{{id}}/misfires"), get(misfires_of))
}

fn ts(t: Option<Ts>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// `SchedulePublic`; the counts only where they were computed.
pub(super) fn schedule_json(s: &Schedule, consecutive_failures: Option<i64>) -> Value {
    json!({
        "id": s.id,
        "project_id": s.project_id,
        "engine": s.engine,
        "scheduler": s.scheduler,
        "name": s.name,
        "task_name": s.task_name,
        "kind": s.kind,
        "expression": s.expression,
        "timezone": s.timezone,
        "queue": s.queue,
        "priority": s.priority,
        "args": s.args.0,
        "kwargs": s.kwargs.0,
        "is_enabled": s.is_enabled,
        "last_run_at": ts(s.last_run_at),
        "next_run_at": ts(s.next_run_at),
        "total_runs": s.total_runs,
        "consecutive_failures": consecutive_failures,
        // Cursor skips exist only in the current protocol (legacy: 0).
        "skipped_slots_24h": consecutive_failures.map(|_| 0),
        "external_id": s.external_id,
        "created_at": s.created_at.to_rfc3339(),
        "updated_at": s.updated_at.to_rfc3339(),
        "catch_up": s.catch_up,
        "paused_at": ts(s.paused_at),
        "overlap_policy": "allow",
        "source": s.source,
        "source_hash": s.source_hash,
        "control_token": null,
        "legacy_fire_control_token": null,
        "schedule_revision": null,
        "quarantine_control_token": null,
        "quarantine_code": null,
        "quarantine_detail": null,
        "quarantined_at": null,
    })
}

/// The newest-first run of failed fires, over the breaker's window
/// (threshold rows, or 20 with the breaker off), within retention + 1 day.
pub(super) async fn consecutive_failures(state: &Shared, s: &Schedule) -> Result<i64, ApiError> {
    let window = match state.settings.schedule_circuit_breaker_threshold {
        0 => 20,
        n => n,
    };
    let since =
        Ts::now().plus_seconds(-(state.settings.schedule_fires_retention_days + 1) * 86_400);
    let statuses = store::recent_statuses(&state.db, s.id, since, window).await?;
    Ok(statuses.iter().take_while(|st| st.is_failure()).count() as i64)
}

/// Dashboards of the project refetch (decision D14).
fn changed(state: &Shared, project: Uuid) {
    crate::schedules::announce(&state.fleet().live, &state.settings, project);
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        message: "schedule not found".into(),
        details: json!({}),
    }
}

fn invalid(prefix: &str, field: &str, why: String) -> ApiError {
    ApiError::Validation {
        message: format!("{prefix}: {why}"),
        details: json!({"field": field}),
    }
}

fn no_controls(f: &mut body::Fields<'_>, name: &'static str, v: &Option<String>) {
    if v.as_deref()
        .is_some_and(|t| t.chars().any(char::is_control))
    {
        f.issues.push(SchemaIssue::new(
            "value_error",
            &["body", name],
            "Value error, control characters are not allowed",
        ));
    }
}

/// A JSON list or object field of at most 64 KiB.
fn json_field(
    f: &mut body::Fields<'_>,
    obj: &Map<String, Value>,
    name: &'static str,
    list: bool,
) -> Option<Value> {
    let v = obj.get(name).filter(|v| !v.is_null())?;
    let ok_type = if list { v.is_array() } else { v.is_object() };
    if !ok_type {
        f.issues.push(SchemaIssue::new(
            if list { "list_type" } else { "dict_type" },
            &["body", name],
            if list {
                "Input should be a valid list"
            } else {
                "Input should be a valid dictionary"
            },
        ));
        return None;
    }
    if v.to_string().len() > MAX_ARGS_BYTES {
        f.issues.push(SchemaIssue::new(
            "value_error",
            &["body", name],
            format!("Value error, {name} must serialise to at most {MAX_ARGS_BYTES} bytes"),
        ));
        return None;
    }
    Some(v.clone())
}

fn enum_field<T>(
    f: &mut body::Fields<'_>,
    obj: &Map<String, Value>,
    name: &'static str,
    parse: fn(&str) -> Option<T>,
    allowed: &[&str],
) -> Option<T> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if parse(s).is_some() => parse(s),
        Some(_) => {
            f.issues.push(SchemaIssue::new(
                "literal_error",
                &["body", name],
                format!("Input should be {}", allowed.join(", ")),
            ));
            None
        }
    }
}

/// The definition fields of a body, each optional (create fills in
/// defaults and requires some; patch leaves absent ones alone).
struct Parsed {
    engine: Option<String>,
    task_name: Option<String>,
    kind: Option<Kind>,
    expression: Option<String>,
    timezone: Option<String>,
    queue: Option<String>,
    args: Option<Value>,
    kwargs: Option<Value>,
    catch_up: Option<CatchUp>,
    is_enabled: Option<bool>,
    source_hash: Option<String>,
}

fn parse_fields(f: &mut body::Fields<'_>, obj: &Map<String, Value>, create: bool) -> Parsed {
    let engine = f.text("engine", 1, 40, create);
    let task_name = f.text("task_name", 1, 500, create);
    no_controls(f, "task_name", &task_name);
    let kind = enum_field(
        f,
        obj,
        "kind",
        Kind::parse,
        &["cron", "interval", "clocked", "solar"],
    );
    if create && kind.is_none() && obj.get("kind").is_none_or(Value::is_null) {
        f.issues.push(SchemaIssue::new(
            "missing",
            &["body", "kind"],
            "Field required",
        ));
    }
    let expression = f.text("expression", 1, 1024, create);
    no_controls(f, "expression", &expression);
    let timezone = f.text("timezone", 0, 64, false);
    let queue = f.text("queue", 0, 200, false);
    let args = json_field(f, obj, "args", true);
    let kwargs = json_field(f, obj, "kwargs", false);
    let catch_up = enum_field(
        f,
        obj,
        "catch_up",
        CatchUp::parse,
        &["skip", "fire_one_missed", "fire_all_missed"],
    );
    let is_enabled = obj
        .get("is_enabled")
        .filter(|v| !v.is_null())
        .map(|_| f.boolean("is_enabled", true));
    let source_hash = f.text("source_hash", 0, 128, false);
    if let Some(p) = obj.get("overlap_policy") {
        if !(p.is_null() || p.as_str() == Some("allow")) {
            f.issues.push(SchemaIssue::new(
                "literal_error",
                &["body", "overlap_policy"],
                "Input should be 'allow' (the only overlap policy this brain runs)",
            ));
        }
    }
    Parsed {
        engine,
        task_name,
        kind,
        expression,
        timezone,
        queue,
        args,
        kwargs,
        catch_up,
        is_enabled,
        source_hash,
    }
}

/// Semantic checks of a whole definition (422 `invalid schedule…`).
fn check(prefix: &str, d: &Definition) -> Result<(), ApiError> {
    validate::expression(d.kind, &d.expression).map_err(|w| invalid(prefix, "expression", w))?;
    validate::timezone(&d.timezone).map_err(|w| invalid(prefix, "timezone", w))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found())
}

/// `?limit=` of the history reads: `default` when absent or not a number,
/// clamped silently to 1..1000, as the reference does.
fn clamped_limit(raw: Option<String>, default: i64) -> i64 {
    super::query::Query::parse(raw)
        .0
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(default)
        .clamp(1, 1000)
}

async fn list(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let q = super::query::Query::parse(raw).0;
    let limit = match q.get("limit").map(|l| l.parse::<i64>()) {
        None => 50,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        Some(_) => {
            return Err(ApiError::Schema(vec![SchemaIssue::new(
                "int_range",
                &["query", "limit"],
                "Input should be an integer between 1 and 500",
            )]))
        }
    };
    let cursor = q.get("cursor").map(String::as_str);
    let (items, next) = page_of(&state, access.project.id, cursor, limit).await?;
    Ok(Json(json!({
        "circuit_breaker_threshold": state.settings.schedule_circuit_breaker_threshold,
        "items": items,
        "next_cursor": next,
    })))
}

/// One page of a project's schedules by name, each with its health, and
/// the next page's cursor when there is more. Cursors are
/// `<name>|<id hex>`, split at the last `|`; a malformed one is the first
/// page.
pub(super) async fn page_of(
    state: &Shared,
    project: Uuid,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let cursor = cursor.and_then(|c| {
        let (name, id) = c.rsplit_once('|')?;
        Some((name.to_owned(), Uuid::parse_str(id).ok()?))
    });
    let mut rows = store::list(
        &state.db,
        project,
        cursor.as_ref().map(|(n, i)| (n.as_str(), *i)),
        limit + 1,
    )
    .await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|s| format!("{}|{}", s.name, s.id.simple()))
    });
    let mut items = Vec::with_capacity(rows.len());
    for s in &rows {
        items.push(schedule_json(
            s,
            Some(consecutive_failures(state, s).await?),
        ));
    }
    Ok((items, next.flatten()))
}

async fn read(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let s = store::find(&state.db, access.project.id, parse_id(&id)?)
        .await?
        .ok_or_else(not_found)?;
    let n = consecutive_failures(&state, &s).await?;
    Ok(Json(schedule_json(&s, Some(n))))
}

/// The owner a new schedule gets, checked against the project's settings.
fn owner(
    project: &crate::store::projects::Project,
    asked: Option<String>,
) -> Result<String, ApiError> {
    let settings = &project.settings.0;
    let default = settings
        .get("default_scheduler_owner")
        .and_then(Value::as_str)
        .unwrap_or(Z4J_SCHEDULER)
        .to_owned();
    let Some(asked) = asked else {
        return Ok(default);
    };
    if asked == default {
        return Ok(asked);
    }
    match settings.get("allowed_schedulers").and_then(Value::as_array) {
        Some(list) if !list.iter().any(|v| v.as_str() == Some(asked.as_str())) => Err(invalid(
            "invalid schedule",
            "scheduler",
            format!("scheduler {asked:?} is not allowed in this project"),
        )),
        _ => Ok(asked),
    }
}

async fn create(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let access = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let obj = body::object(&body)?;
    let mut f = body::Fields::new(&obj);
    let name = f.text("name", 1, 200, true);
    no_controls(&mut f, "name", &name);
    let scheduler = f.text("scheduler", 1, 40, false);
    let source = f.text("source", 1, 64, false);
    let p = parse_fields(&mut f, &obj, true);
    let (name, (engine, (task_name, (kind, expression)))) =
        f.finish(name.zip(p.engine.zip(p.task_name.zip(p.kind.zip(p.expression)))))?;
    let d = Definition {
        engine,
        task_name,
        kind,
        expression,
        timezone: p
            .timezone
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "UTC".into()),
        queue: p.queue,
        args: p.args.unwrap_or_else(|| json!([])),
        kwargs: p.kwargs.unwrap_or_else(|| json!({})),
        catch_up: p.catch_up.unwrap_or(CatchUp::FireOneMissed),
        is_enabled: p.is_enabled.unwrap_or(true),
        source_hash: p.source_hash,
    };
    check("invalid schedule", &d)?;
    let scheduler = owner(&access.project, scheduler)?;
    let source = source.unwrap_or_else(|| "dashboard".into());
    let mut tx = crate::audit::begin(&state.db).await?;
    let s = store::create(&mut tx, access.project.id, &scheduler, &name, &source, &d)
        .await
        .map_err(conflict)?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("schedule.create", "success")
            .target("schedule", s.id)
            .in_project(s.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(json!({"name": s.name, "engine": s.engine, "kind": s.kind})),
    )
    .await?;
    changed(&state, s.project_id);
    Ok((StatusCode::CREATED, Json(schedule_json(&s, None))).into_response())
}

async fn update(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let access = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let id = parse_id(&id)?;
    let obj = body::object(&body)?;
    let mut f = body::Fields::new(&obj);
    let p = parse_fields(&mut f, &obj, false);
    f.finish(Some(()))?;
    let mut tx = crate::audit::begin(&state.db).await?;
    let s = store::find(&mut tx, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    let mut d = Definition::of(&s);
    let mut changed = Vec::new();
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if let Some(v) = $value {
                changed.push(stringify!($field));
                d.$field = v;
            }
        };
    }
    set!(engine, p.engine);
    set!(task_name, p.task_name);
    set!(kind, p.kind);
    set!(expression, p.expression);
    set!(
        timezone,
        p.timezone.map(|t| if t.trim().is_empty() {
            "UTC".to_owned()
        } else {
            t
        })
    );
    set!(queue, p.queue.map(Some));
    set!(args, p.args);
    set!(kwargs, p.kwargs);
    set!(catch_up, p.catch_up);
    set!(is_enabled, p.is_enabled);
    set!(source_hash, p.source_hash.map(Some));
    check("invalid schedule update", &d)?;
    store::update(&mut tx, s.id, &d).await?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("schedule.update", "success")
            .target("schedule", s.id)
            .in_project(s.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(json!({"fields_changed": changed})),
    )
    .await?;
    self::changed(&state, s.project_id);
    let s = store::find(&state.db, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(schedule_json(&s, None)))
}

async fn remove(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = access::project_writer(&state, &headers, &slug, Role::Admin).await?;
    let id = parse_id(&id)?;
    let mut tx = crate::audit::begin(&state.db).await?;
    let s = store::find(&mut tx, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    store::delete(&mut tx, access.project.id, id).await?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("schedule.delete", "success")
            .target("schedule", id)
            .in_project(access.project.id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(json!({"name": s.name})),
    )
    .await?;
    changed(&state, access.project.id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The operator state routes.
#[derive(Clone, Copy)]
enum Toggle {
    Enable,
    Disable,
    Pause,
    Resume,
}

impl Toggle {
    fn parse(route: &str) -> Option<Toggle> {
        Some(match route {
            "enable" => Toggle::Enable,
            "disable" => Toggle::Disable,
            "pause" => Toggle::Pause,
            "resume" => Toggle::Resume,
            _ => return None,
        })
    }

    fn action(self) -> &'static str {
        match self {
            Toggle::Enable => "schedule.enable",
            Toggle::Disable => "schedule.disable",
            Toggle::Pause => "schedule.pause",
            Toggle::Resume => "schedule.resume",
        }
    }
}

/// `POST /{id}/enable|disable|pause|resume` (operator).
async fn toggle(
    State(state): State<Shared>,
    Path((slug, id, route)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if route == "trigger" {
        return trigger(state, slug, id, headers).await;
    }
    let t = Toggle::parse(&route).ok_or_else(|| ApiError::NotFound {
        message: format!("no schedule action {route:?} (enable, disable, pause, resume, trigger)"),
        details: json!({}),
    })?;
    let access = access::project_writer(&state, &headers, &slug, Role::Operator).await?;
    let id = parse_id(&id)?;
    let mut tx = crate::audit::begin(&state.db).await?;
    let s = store::find(&mut tx, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    let entry = |result: &str| {
        crate::audit::Entry::new(t.action(), result)
            .target("schedule", s.id)
            .in_project(s.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
    };
    if s.scheduler != Z4J_SCHEDULER {
        // Another owner keeps its own state; changing it here would only
        // diverge from what actually runs (decision Y4).
        let mut e = entry("failed");
        e.outcome = Some("deny".into());
        crate::audit::commit(
            tx,
            &state.settings,
            &e.meta(json!({"scheduler": s.scheduler})),
        )
        .await?;
        return Err(ApiError::Conflict {
            message: format!(
                "schedule is owned by {:?}; change it where it runs",
                s.scheduler
            ),
            details: json!({"reason": "external_owner", "scheduler": s.scheduler}),
        });
    }
    let meta = match t {
        Toggle::Enable | Toggle::Disable => {
            let want = matches!(t, Toggle::Enable);
            let already = s.is_enabled == want;
            if !already {
                let mut d = Definition::of(&s);
                d.is_enabled = want;
                store::update(&mut tx, s.id, &d).await?;
            }
            json!({"already_in_state": already})
        }
        Toggle::Pause | Toggle::Resume => {
            let pausing = matches!(t, Toggle::Pause);
            let already = s.paused_at.is_some() == pausing;
            let at = if pausing {
                s.paused_at.or(Some(Ts::now()))
            } else {
                None
            };
            if !already {
                store::set_paused(&mut tx, s.id, at).await?;
            }
            json!({"already_in_state": already, "paused_at": ts(at)})
        }
    };
    crate::audit::commit(tx, &state.settings, &entry("success").meta(meta)).await?;
    changed(&state, access.project.id);
    let s = store::find(&state.db, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(schedule_json(&s, None)))
}

/// "Fire now" (scheduler spec §4.10): a `submit_task` command to an online
/// agent of the schedule's engine, attributed to the operator; no fire
/// history, no run counted, nothing buffered. A paused schedule is refused
/// (409); a disabled one may still be fired by hand.
async fn trigger(
    state: Shared,
    slug: String,
    id: String,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    use crate::store::commands::{Action, Issued, NewCommand};
    let access = access::project_writer(&state, &headers, &slug, Role::Operator).await?;
    let id = parse_id(&id)?;
    let s = store::find(&state.db, access.project.id, id)
        .await?
        .ok_or_else(not_found)?;
    let entry = |result: &str| {
        crate::audit::Entry::new("schedule.trigger_now", result)
            .target("schedule", s.id)
            .in_project(s.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
    };
    let refusal = |reason: &'static str, message: String| {
        let mut e = entry("failed").meta(json!({"reason": reason}));
        e.outcome = Some("deny".into());
        let err = ApiError::Conflict {
            message,
            details: json!({"reason": reason}),
        };
        (e, err)
    };
    let refused = if s.paused_at.is_some() {
        Some(refusal(
            "schedule_paused",
            "schedule is paused; resume it first".into(),
        ))
    } else if s.scheduler != Z4J_SCHEDULER {
        Some(refusal(
            "external_owner",
            format!(
                "schedule is owned by {:?}; trigger it where it runs",
                s.scheduler
            ),
        ))
    } else {
        None
    };
    if let Some((e, err)) = refused {
        crate::audit::record(&state.db, &state.settings, &e).await?;
        return Err(err);
    }
    let agents = crate::store::agents::list(&state.db, s.project_id).await?;
    let online = agents
        .iter()
        .any(|a| a.state == crate::store::agents::Liveness::Online);
    let Some(agent_id) = crate::schedules::pick_agent(&agents, &s.engine) else {
        let reason = if online {
            "engine_not_installed"
        } else {
            "no_online_agent"
        };
        return Err(ApiError::NotFound {
            message: format!("no online agent runs engine {:?} in this project", s.engine),
            details: json!({"reason": reason, "engine": s.engine}),
        });
    };
    if let Err(retry) = state.command_budget.hit(&s.project_id.to_string()) {
        return Err(ApiError::RateLimited {
            message: "command rate limit exceeded (Z4J_RATELIMIT_COMMANDS_PER_MINUTE)".into(),
            retry_after_secs: Some(retry),
        });
    }
    let payload = json!({
        "name": s.task_name,
        "args": s.args.0,
        "kwargs": s.kwargs.0,
        "queue": s.queue,
        "filter": {"engine": s.engine},
        "schedule_id": s.id,
        "schedule_name": s.name,
    });
    let mut tx = crate::audit::begin(&state.db).await?;
    let issued = state
        .commands
        .persist(
            &mut tx,
            &NewCommand {
                project_id: s.project_id,
                agent_id,
                issued_by: Some(access.caller.user.id),
                action: Action::SubmitTask,
                target_type: "schedule",
                target_id: Some(&s.id.to_string()),
                payload: &payload,
                idempotency_key: None,
                timeout_seconds: state.settings.command_timeout_seconds,
                source_ip: "",
            },
        )
        .await?;
    let command = match issued {
        Issued::New(c) | Issued::Replayed(c) => c,
    };
    crate::audit::commit(
        tx,
        &state.settings,
        &entry("success").meta(json!({"dispatched_action": "submit_task", "agent_id": agent_id, "command_id": command.id})),
    )
    .await?;
    state.commands.dispatch_new(agent_id, &command).await;
    Ok(Json(schedule_json(&s, None)))
}

/// A fire as the history lists it.
pub(super) fn fire_json(r: &store::Fire) -> Value {
    json!({
        "id": r.id,
        "fire_id": r.fire_id,
        "schedule_id": r.schedule_id,
        "command_id": r.command_id,
        "status": r.status,
        "scheduled_for": r.scheduled_for.to_rfc3339(),
        "fired_at": r.fired_at.to_rfc3339(),
        "acked_at": ts(r.acked_at),
        "latency_ms": r.latency_ms,
        "error_code": r.error_code,
        "error_message": r.error_message,
        "triggered_by_user_id": r.triggered_by_user_id,
    })
}

async fn fires(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let s = store::find(&state.db, access.project.id, parse_id(&id)?)
        .await?
        .ok_or_else(not_found)?;
    let limit = clamped_limit(raw, 100);
    let rows = store::fires(&state.db, s.id, limit).await?;
    Ok(Json(Value::Array(rows.iter().map(fire_json).collect())))
}

/// At most this many schedules per `/runs` request (§4.11).
const MAX_RUN_IDS: usize = 500;

/// `GET …/schedules/runs?id=…&id=…&limit=`: the newest fires of many
/// schedules at once (the list page's sparklines). Ids of other projects
/// are dropped; each requested schedule of the project gets an entry.
async fn runs(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let mut ids: Vec<Uuid> = Vec::new();
    let mut limit = 20;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "id" => {
                let id = Uuid::parse_str(&v).map_err(|_| {
                    invalid("id", "id", format!("{v:?} is not a schedule id (UUID)"))
                })?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            "limit" => {
                limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "limit",
                            "limit",
                            format!("{v:?} is not an integer from 1 to 50"),
                        )
                    })?;
            }
            _ => {}
        }
    }
    if ids.len() > MAX_RUN_IDS {
        return Err(invalid(
            "id",
            "id",
            format!("{} ids given; at most {MAX_RUN_IDS} per request", ids.len()),
        ));
    }
    let fires = store::recent_fires_of(&state.db, access.project.id, &ids, limit).await?;
    // Schedules of the project without fires still get an (empty) entry.
    let owned = store::ids_in_project(&state.db, access.project.id, &ids).await?;
    let items: Vec<Value> = ids
        .iter()
        .filter(|id| owned.contains(id))
        .map(|id| {
            let runs: Vec<Value> = fires
                .iter()
                .filter(|f| f.schedule_id == Some(*id))
                .map(|f| {
                    json!({
                        "fire_id": f.fire_id,
                        "status": f.status,
                        "scheduled_for": f.scheduled_for.to_rfc3339(),
                        "fired_at": f.fired_at.to_rfc3339(),
                        "latency_ms": f.latency_ms,
                    })
                })
                .collect();
            json!({"schedule_id": id, "runs": runs})
        })
        .collect();
    Ok(Json(json!({
        "items": items,
        "limit": limit,
        "circuit_breaker_threshold": state.settings.schedule_circuit_breaker_threshold,
    })))
}

/// `GET …/schedules/misfires?limit=`: the project's misfire episodes,
/// newest first (projections of `scheduler.misfire_detected` audit rows).
async fn misfires(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    misfire_list(&state, access.project.id, None, raw).await
}

/// `GET …/schedules/{id}/misfires?limit=`: one schedule's episodes.
async fn misfires_of(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let s = store::find(&state.db, access.project.id, parse_id(&id)?)
        .await?
        .ok_or_else(not_found)?;
    misfire_list(&state, access.project.id, Some(s.id), raw).await
}

async fn misfire_list(
    state: &Shared,
    project_id: Uuid,
    schedule: Option<Uuid>,
    raw: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let limit = clamped_limit(raw, 50);
    let target = schedule.map(|id| id.to_string());
    let rows = crate::store::audit::of_action(
        &state.db,
        project_id,
        MISFIRE_ACTION,
        target.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(Value::Array(rows.iter().map(misfire_json).collect())))
}

const MISFIRE_ACTION: &str = "scheduler.misfire_detected";

fn misfire_json(r: &crate::store::audit::AuditRow) -> Value {
    let m = &r.metadata.0;
    json!({
        "schedule_id": r.target_id,
        "detected_at": r.occurred_at.to_rfc3339(),
        "expected_fire_at": m["expected_fire_at"],
        "lateness_seconds": m["lateness_seconds"],
        "grace_seconds": m["grace_seconds"],
        "name": m["name"],
        "engine": m["engine"],
        "kind": m["kind"],
    })
}

/// The project's misfire episodes detected at or after `since`, newest
/// first, at most `limit` (the schedules page's banner).
pub async fn misfires_since(
    state: &Shared,
    project_id: Uuid,
    since: Ts,
    limit: i64,
) -> Result<Vec<Value>, ApiError> {
    let rows =
        crate::store::audit::of_action(&state.db, project_id, MISFIRE_ACTION, None, limit).await?;
    Ok(rows
        .iter()
        .filter(|r| r.occurred_at >= since)
        .map(misfire_json)
        .collect())
}
