//! Project notification channels (webhooks), the trigger → channel routes
//! (`defaults`), channel tests and the delivery log.

use super::access::{self, Role};
use super::body;
use super::error::{conflict, ApiError, SchemaIssue};
use super::reads::{decode_cursor, encode_cursor};
use super::Shared;
use crate::notify::{self, sealed, webhook};
use crate::store::notifications::{self as store, Channel, Route};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use uuid::Uuid;

const BASE: &str = "/api/v1/projects/{slug}/notifications";
const MAX_ROUTE_CHANNELS: usize = 64;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            &format!("{BASE}/channels"),
            get(list_channels).post(create_channel),
        )
        .route(&format!("{BASE}/channels/test"), post(test_unsaved))
        .route(
            &format!("{BASE}/channels/{{channel_id}}"),
            patch(update_channel).delete(delete_channel),
        )
        .route(
            &format!("{BASE}/channels/{{channel_id}}/test"),
            post(test_channel),
        )
        .route(
            &format!("{BASE}/defaults"),
            get(list_routes).post(create_route),
        )
        .route(
            &format!("{BASE}/defaults/{{default_id}}"),
            axum::routing::delete(delete_route),
        )
        .route(&format!("{BASE}/deliveries"), get(list_deliveries))
}

pub(super) fn channel_json(s: &crate::settings::Settings, c: &Channel) -> Value {
    let config = notify::open_config(s, c)
        .map(|m| notify::masked(&c.kind, &m))
        .unwrap_or_else(|e| json!({"error": e}));
    json!({
        "id": c.id,
        "project_id": c.project_id,
        "name": c.name,
        "type": c.kind,
        "config": config,
        "is_active": c.is_active,
        "created_at": c.created_at.to_rfc3339(),
        "updated_at": c.updated_at.to_rfc3339(),
    })
}

pub(super) fn route_json(r: &Route) -> Value {
    json!({
        "id": r.id,
        "project_id": r.project_id,
        "trigger": r.trigger,
        "filters": {},
        "in_app": false,
        "project_channel_ids": r.channel_ids(),
        "cooldown_seconds": r.cooldown_seconds,
        "created_at": r.created_at.to_rfc3339(),
    })
}

fn invalid_config(message: String) -> ApiError {
    ApiError::Validation {
        message,
        details: json!({"field": "config"}),
    }
}

fn channel_not_found() -> ApiError {
    ApiError::NotFound {
        message: "notification channel not found".into(),
        details: json!({}),
    }
}

/// `config` of a body for a channel of `kind`, checked against the target
/// policy.
fn checked_config(
    state: &Shared,
    kind: &str,
    obj: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    if !notify::CHANNEL_TYPES.contains(&kind) {
        return Err(ApiError::Validation {
            message: format!(
                "channel type '{kind}' is not supported by this brain (supported: {})",
                notify::CHANNEL_TYPES.join(", ")
            ),
            details: json!({"field": "type"}),
        });
    }
    let config = match obj.get("config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::Schema(vec![SchemaIssue::new(
                "dict_type",
                &["body", "config"],
                "Input should be a valid dictionary",
            )]))
        }
    };
    notify::parse_target(&state.settings, kind, &config).map_err(invalid_config)?;
    Ok(config)
}

/// The config check that needs DNS: the target must resolve to an address
/// the policy allows.
async fn check_target(
    state: &Shared,
    kind: &str,
    config: &Map<String, Value>,
) -> Result<(), ApiError> {
    let target = notify::parse_target(&state.settings, kind, config).map_err(invalid_config)?;
    notify::check_target(&state.settings, &target)
        .await
        .map_err(invalid_config)
}

fn seal(state: &Shared, config: &Map<String, Value>) -> Result<String, ApiError> {
    sealed::seal(
        state.settings.secret.as_deref(),
        sealed::CHANNEL_CONFIG,
        &Value::Object(config.clone()).to_string(),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn list_channels(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = store::channels(&state.db, access.project.id).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|c| channel_json(&state.settings, c))
            .collect(),
    )))
}

async fn writer(
    state: &Shared,
    headers: &HeaderMap,
    slug: &str,
) -> Result<access::ProjectAccess, ApiError> {
    access::project_writer(state, headers, slug, Role::Admin).await
}

async fn create_channel(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let obj = body::object(&body)?;
    let mut f = body::Fields::new(&obj);
    let name = f.text("name", 1, 200, true);
    let kind = f.text("type", 1, 20, true);
    let is_active = f.boolean("is_active", true);
    let (name, kind) = f.finish(name.zip(kind))?;
    let config = checked_config(&state, &kind, &obj)?;
    check_target(&state, &kind, &config).await?;
    let sealed = seal(&state, &config)?;
    let mut tx = crate::audit::begin(&state.db).await?;
    let c = store::create_channel(&mut tx, access.project.id, &name, &kind, &sealed, is_active)
        .await
        .map_err(conflict)?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("notifications.channel.create", "success")
            .target("notification_channel", c.id)
            .in_project(c.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(json!({"name": c.name, "type": c.kind})),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(channel_json(&state.settings, &c))).into_response())
}

fn parse_id(raw: &str, not_found: fn() -> ApiError) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found())
}

async fn update_channel(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let id = parse_id(&id, channel_not_found)?;
    let mut c = store::channel(&state.db, access.project.id, id)
        .await?
        .ok_or_else(channel_not_found)?;
    let obj = body::object(&body)?;
    let mut f = body::Fields::new(&obj);
    let name = f.text("name", 1, 200, false);
    let is_active = obj
        .get("is_active")
        .is_some()
        .then(|| f.boolean("is_active", c.is_active));
    f.finish(Some(()))?;
    if obj.get("config").is_some_and(|v| !v.is_null()) {
        let config = checked_config(&state, &c.kind, &obj)?;
        check_target(&state, &c.kind, &config).await?;
        c.config = seal(&state, &config)?;
    }
    if let Some(n) = name {
        c.name = n;
    }
    if let Some(a) = is_active {
        c.is_active = a;
    }
    let mut tx = crate::audit::begin(&state.db).await?;
    store::update_channel(&mut tx, &c).await.map_err(conflict)?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("notifications.channel.update", "success")
            .target("notification_channel", c.id)
            .in_project(c.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers),
    )
    .await?;
    let c = store::channel(&state.db, access.project.id, id)
        .await?
        .ok_or_else(channel_not_found)?;
    Ok(Json(channel_json(&state.settings, &c)))
}

async fn delete_channel(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let id = parse_id(&id, channel_not_found)?;
    let mut tx = crate::audit::begin(&state.db).await?;
    if !store::delete_channel(&mut tx, access.project.id, id).await? {
        return Err(channel_not_found());
    }
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("notifications.channel.delete", "success")
            .target("notification_channel", id)
            .in_project(access.project.id)
            .by(Some(access.caller.user.id))
            .from(None, &headers),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn test_body(project_id: Uuid) -> String {
    json!({
        "trigger": "test.dispatch",
        "project_id": project_id,
        "message": "z4j notification channel test",
        "timestamp": crate::store::Ts::now().to_rfc3339(),
    })
    .to_string()
}

fn outcome_json(o: &webhook::Outcome) -> Value {
    json!({
        "success": o.success,
        "status_code": o.status_code,
        "error": o.error,
        "response_body": o.response_body.as_deref().map(|b| b.chars().take(500).collect::<String>()),
    })
}

async fn test_channel(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let id = parse_id(&id, channel_not_found)?;
    let c = store::channel(&state.db, access.project.id, id)
        .await?
        .ok_or_else(channel_not_found)?;
    let o = notify::send_and_log(
        &notify::Sender {
            db: state.db.clone(),
            settings: state.settings.clone(),
            metrics: state.metrics.clone(),
        },
        &c,
        "test.dispatch",
        None,
        None,
        &test_body(c.project_id),
    )
    .await;
    Ok(Json(outcome_json(&o)))
}

async fn test_unsaved(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let obj = body::object(&body)?;
    let mut f = body::Fields::new(&obj);
    let kind = f.text("type", 1, 20, true);
    let kind = f.finish(kind)?;
    let config = checked_config(&state, &kind, &obj)?;
    let target = notify::parse_target(&state.settings, &kind, &config).map_err(invalid_config)?;
    let o = notify::deliver(
        &state.settings,
        &target,
        "test.dispatch",
        &test_body(access.project.id),
    )
    .await;
    Ok(Json(outcome_json(&o)))
}

async fn list_routes(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = store::routes(&state.db, access.project.id).await?;
    Ok(Json(Value::Array(rows.iter().map(route_json).collect())))
}

async fn create_route(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let obj = body::object(&body)?;
    let mut f = body::Fields::new(&obj);
    let trigger = f.text("trigger", 1, 40, true);
    if trigger
        .as_deref()
        .is_some_and(|t| !notify::TRIGGERS.contains(&t))
    {
        f.issues.push(SchemaIssue::new(
            "literal_error",
            &["body", "trigger"],
            format!("Input should be one of {:?}", notify::TRIGGERS),
        ));
    }
    let cooldown = match obj.get("cooldown_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=86_400).contains(&n) => n as i32,
            _ => {
                f.issues.push(SchemaIssue::new(
                    "int_range",
                    &["body", "cooldown_seconds"],
                    "Input should be an integer between 0 and 86400",
                ));
                0
            }
        },
    };
    let ids: Vec<Uuid> = match obj.get("project_channel_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.len() <= MAX_ROUTE_CHANNELS => {
            let parsed: Vec<Option<Uuid>> = a
                .iter()
                .map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                .collect();
            if parsed.iter().any(Option::is_none) {
                f.issues.push(SchemaIssue::new(
                    "uuid_parsing",
                    &["body", "project_channel_ids"],
                    "Input should be a list of UUIDs",
                ));
            }
            parsed.into_iter().flatten().collect()
        }
        Some(_) => {
            f.issues.push(SchemaIssue::new(
                "list_type",
                &["body", "project_channel_ids"],
                format!("Input should be a list of at most {MAX_ROUTE_CHANNELS} UUIDs"),
            ));
            Vec::new()
        }
    };
    let trigger = f.finish(trigger)?;
    for id in &ids {
        if store::channel(&state.db, access.project.id, *id)
            .await?
            .is_none()
        {
            return Err(ApiError::Validation {
                message: format!("channel {id} is not a channel of this project"),
                details: json!({"field": "project_channel_ids", "channel_id": id}),
            });
        }
    }
    let mut tx = crate::audit::begin(&state.db).await?;
    let r = store::create_route(&mut tx, access.project.id, &trigger, &ids, cooldown)
        .await
        .map_err(conflict)?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("notifications.default.create", "success")
            .target("notification_default", r.id)
            .in_project(r.project_id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(json!({"trigger": r.trigger})),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(route_json(&r))).into_response())
}

async fn delete_route(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = writer(&state, &headers, &slug).await?;
    let not_found = || ApiError::NotFound {
        message: "default subscription not found".into(),
        details: json!({}),
    };
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut tx = crate::audit::begin(&state.db).await?;
    if !store::delete_route(&mut tx, access.project.id, id).await? {
        return Err(not_found());
    }
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("notifications.default.delete", "success")
            .target("notification_default", id)
            .in_project(access.project.id)
            .by(Some(access.caller.user.id))
            .from(None, &headers),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_deliveries(
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
    let after = decode_cursor(q.get("cursor")).map(|a| (a.at, a.id));
    let rows = store::deliveries(&state.db, access.project.id, after, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| encode_cursor(d.sent_at, d.id)))
        .flatten();
    let items: Vec<Value> = rows.iter().map(delivery_json).collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

pub(super) fn delivery_json(d: &store::Delivery) -> Value {
    json!({
        "id": d.id,
        "project_id": d.project_id,
        "subscription_id": null,
        "channel_id": d.channel_id,
        "user_channel_id": null,
        "trigger": d.trigger,
        "task_id": d.task_id,
        "task_name": d.task_name,
        "status": d.status,
        "response_code": d.response_code,
        "error": d.error,
        "attempts": d.attempts,
        "sent_at": d.sent_at.to_rfc3339(),
        "channel_name": d.channel_name,
        "channel_type": d.channel_type,
    })
}
