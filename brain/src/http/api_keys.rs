//! API keys (http-api 2.7, 4.4): `Authorization: Bearer z4k_...` for
//! scripts. A layer checks the key (revoked, expired, owner, identity
//! routes, scope, project binding) before routing and hands the key's id to
//! the session lookup in an internal header that clients cannot set.

use super::body::{self, Fields};
use super::error::ApiError;
use super::{access, session, Shared};
use crate::audit::{self, Entry};
use crate::store::api_keys::{self, ApiKey, NewKey};
use crate::store::{projects, users, Ts};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};

use serde_json::{json, Value};

use uuid::Uuid;

/// Set by [`layer`] for a request it authenticated; stripped from input.
pub const KEY_HEADER: &str = "x-z4j-internal-api-key";
pub const PREFIX: &str = "z4k_";
pub const SCOPES: &[&str] = &[
    "auth:read",
    "home:read",
    "projects:read",
    "tasks:read",
    "workers:read",
    "queues:read",
    "agents:read",
    "commands:read",
    "schedules:read",
    "audit:read",
    "memberships:read",
    "notifications:read",
    "automation:read",
    "tasks:write",
    "commands:write",
    "schedules:write",
    "agents:write",
    "projects:write",
    "memberships:write",
    "notifications:write",
    "automation:write",
    "users:read",
    "users:write",
    "admin:*",
];
pub const ADMIN_ONLY: &[&str] = &["admin:*", "projects:write", "users:read", "users:write"];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/api-keys/scopes", get(scopes))
        .route("/api/v1/api-keys", get(list).post(create))
        .route("/api/v1/api-keys/{id}", delete(revoke))
}

/// The scope a request needs: `None` for routes open to any credential,
/// `Err` for routes keys may never use.
fn required_scope(method: &Method, path: &str) -> Result<Option<String>, &'static str> {
    let rest = path.strip_prefix("/api/v1/").unwrap_or("");
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let rw = if method == Method::GET {
        "read"
    } else {
        "write"
    };
    let resource = match segs.as_slice() {
        ["auth", "policy"] | ["health", ..] | ["setup", ..] => return Ok(None),
        ["auth", ..] => return Err("auth"),
        ["projects"] | ["projects", _] => "projects",
        ["projects", _, sub, ..] => match *sub {
            "tasks" | "events" | "stats" => "tasks",
            "workers" | "agent-workers" => "workers",
            "queues" => "queues",
            "agents" => "agents",
            "commands" => "commands",
            "audit" => return Ok(Some("audit:read".into())),
            "memberships" => "memberships",
            "notifications" => "notifications",
            "schedules" => "schedules",
            _ => return Err("unreachable"),
        },
        ["users", ..] => "users",
        ["home", ..] => "home",
        ["api-keys", ..] => return Ok(Some("admin:*".into())),
        _ => return Err("unreachable"),
    };
    Ok(Some(format!("{resource}:{rw}")))
}

fn grants(scopes: &[String], need: &str) -> bool {
    scopes.iter().any(|s| {
        s == "admin:*"
            || s == need
            || (need.ends_with(":read") && *s == need.replace(":read", ":write"))
    })
}

fn refuse(status: StatusCode, code: &'static str, message: &str, details: Value) -> Response {
    ApiError::Coded {
        status,
        code,
        message: message.into(),
        details,
    }
    .into_response()
}

fn bearer_key(headers: &HeaderMap) -> Option<String> {
    crate::net::bearer_token(headers)
        .filter(|t| t.starts_with(PREFIX))
        .map(str::to_owned)
}

fn has_session_cookie(state: &Shared, headers: &HeaderMap) -> bool {
    let name = session::session_cookie_name(state.dev_posture);
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| {
            c.split(';')
                .any(|kv| kv.trim().starts_with(&format!("{name}=")))
        })
}

/// 401 for a key that is revoked, expired, or whose owner is inactive.
async fn credential_refusal(state: &Shared, key: &api_keys::ApiKey) -> Option<Response> {
    let unauthorized = |message: &str, reason: &str| {
        Some(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            message,
            json!({"reason": reason}),
        ))
    };
    if key.revoked_at.is_some() {
        return unauthorized("api key has been revoked", "revoked");
    }
    if key.expires_at.is_some_and(|t| t <= Ts::now()) {
        return unauthorized("api key has expired", "expired");
    }
    match users::find(&state.db, key.user_id).await {
        Ok(Some(u)) if u.is_active => None,
        Ok(_) => unauthorized("api key owner is inactive", "owner_inactive"),
        Err(e) => Some(ApiError::from(e).into_response()),
    }
}

/// 403 for identity routes and for a route the key's scopes do not cover.
fn scope_refusal(
    key: &api_keys::ApiKey,
    method: &axum::http::Method,
    path: &str,
) -> Option<Response> {
    let need = match required_scope(method, path) {
        Ok(n) => n,
        Err("auth") => {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                "api keys cannot access identity endpoints - use a session cookie for /auth/*",
                json!({"reason": "bearer_denied_for_tag", "tag": "auth"}),
            ))
        }
        Err(_) => {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                "api key lacks required scope",
                json!({"required_scope": "__unreachable__", "reason": "scope_missing"}),
            ))
        }
    };
    let need = need?;
    (!grants(&key.scope_list(), &need)).then(|| {
        refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "api key lacks required scope",
            json!({"required_scope": need, "reason": "scope_missing"}),
        )
    })
}

pub async fn layer(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    req.headers_mut().remove(KEY_HEADER);
    // A session cookie wins; agent tokens never start with z4k_.
    if has_session_cookie(&state, req.headers()) {
        return next.run(req).await;
    }
    let Some(token) = bearer_key(req.headers()) else {
        return next.run(req).await;
    };
    let Some(master) = state.settings.secret.as_deref() else {
        return next.run(req).await;
    };
    let key = match api_keys::find_by_hash(&state.db, &crate::auth::keyed::api_key(master, &token))
        .await
    {
        Ok(Some(k)) => k,
        // Unknown keys are no credential at all.
        Ok(None) => return next.run(req).await,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(r) = credential_refusal(&state, &key).await {
        return r;
    }
    let path = req.uri().path().to_owned();
    if let Some(r) = scope_refusal(&key, req.method(), &path) {
        return r;
    }
    if let Some(bound) = key.project_id {
        if let Err(r) = check_binding(&state, bound, &path).await {
            return r;
        }
    }
    // Last use is recorded at most once a minute, not on every request.
    if key
        .last_used_at
        .is_none_or(|t| t.plus_seconds(60) <= Ts::now())
    {
        if let Err(e) = api_keys::touch(&state.db, key.id).await {
            tracing::warn!(error = %e, "cannot record api key use");
        }
    }
    if let Ok(v) = HeaderValue::from_str(&key.id.to_string()) {
        req.headers_mut().insert(KEY_HEADER, v);
    }
    next.run(req).await
}

/// A project-bound key may name only its project in `{slug}` routes.
async fn check_binding(state: &Shared, bound: Uuid, path: &str) -> Result<(), Response> {
    let segs: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    match segs.as_slice() {
        ["projects", slug, ..] if !slug.is_empty() => {
            let p = projects::find_by_slug(&state.db, slug)
                .await
                .map_err(|e| ApiError::from(e).into_response())?;
            if p.as_ref().is_some_and(|p| p.id == bound) {
                Ok(())
            } else {
                let expected = projects::find(&state.db, bound)
                    .await
                    .ok()
                    .flatten()
                    .map(|p| p.slug);
                Err(refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "api key not authorized for this project",
                    json!({"reason": "project_scope_mismatch", "expected": expected, "got": slug}),
                ))
            }
        }
        ["projects"] => Ok(()),
        _ => Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "api key not authorized for this project",
            json!({"reason": "project_scope_nonslug_denied"}),
        )),
    }
}

fn key_json(k: &ApiKey, slug: Option<String>) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scope_list(),
        "project_id": k.project_id,
        "project_slug": slug,
        "last_used_at": k.last_used_at.map(|t| t.to_rfc3339()),
        "expires_at": k.expires_at.map(|t| t.to_rfc3339()),
        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
        "created_at": k.created_at.to_rfc3339(),
    })
}

async fn scopes(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    session::require(&state, &headers).await?;
    Ok(Json(json!({"scopes": SCOPES, "admin_only": ADMIN_ONLY})))
}

async fn list(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    Ok(Json(Value::Array(keys_of(&state, caller.user.id).await?)))
}

/// A user's keys as the REST API lists them.
pub(super) async fn keys_of(state: &Shared, user: uuid::Uuid) -> Result<Vec<Value>, ApiError> {
    let keys = api_keys::list_for_user(&state.db, user).await?;
    let mut out = Vec::new();
    for k in &keys {
        let slug = match k.project_id {
            Some(p) => projects::find(&state.db, p).await?.map(|p| p.slug),
            None => None,
        };
        out.push(key_json(k, slug));
    }
    Ok(out)
}

async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = session::require(&state, &headers).await?;
    if caller.via_key {
        return Err(ApiError::Unauthenticated(
            "a session cookie is required to mint api keys".into(),
        ));
    }
    access::csrf(&caller, &headers)?;
    access::fresh_mfa(&caller, &state.settings)?;
    let obj = body::object(&body)?;
    let mut f = Fields::new(&obj);
    let name = f.text("name", 1, 200, true);
    let name = f.finish(name)?;
    let requested: Vec<String> = obj
        .get("scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let rejected: Vec<&String> = requested
        .iter()
        .filter(|s| {
            !SCOPES.contains(&s.as_str())
                || (ADMIN_ONLY.contains(&s.as_str()) && !caller.user.is_admin)
        })
        .collect();
    if !rejected.is_empty() || requested.len() > 64 {
        return Err(ApiError::Conflict {
            message: "one or more requested scopes are not granted".into(),
            details: json!({"rejected_scopes": rejected}),
        });
    }
    let project_id = match obj.get("project_id").and_then(Value::as_str) {
        None => None,
        Some(raw) => {
            let not_found = || ApiError::NotFound {
                message: "project not found".into(),
                details: json!({}),
            };
            let id = Uuid::parse_str(raw).map_err(|_| not_found())?;
            let p = projects::find(&state.db, id)
                .await?
                .filter(|p| p.is_active)
                .ok_or_else(not_found)?;
            if !caller.user.is_admin
                && projects::role_of(&state.db, caller.user.id, p.id)
                    .await?
                    .is_none()
            {
                return Err(ApiError::Conflict {
                    message: "you are not a member of that project".into(),
                    details: json!({}),
                });
            }
            Some(p.id)
        }
    };
    let expires_at = match obj.get("expires_in_days").and_then(Value::as_i64) {
        Some(d) if (1..=3650).contains(&d) => Some(Ts::now().plus_seconds(d * 86_400)),
        Some(_) => {
            return Err(ApiError::Validation {
                message: "expires_in_days must be between 1 and 3650".into(),
                details: json!({"field": "expires_in_days"}),
            })
        }
        None => None,
    };
    let master = state
        .settings
        .secret
        .as_deref()
        .ok_or_else(ApiError::no_master_secret)?;
    let token = format!("{PREFIX}{}", crate::bootstrap::secrets::random_token(32));
    let mut tx = audit::begin(&state.db).await?;
    let k = api_keys::create(
        &mut tx,
        &NewKey {
            user_id: caller.user.id,
            project_id,
            name: &name,
            token_hash: &crate::auth::keyed::api_key(master, &token),
            prefix: &token[..8],
            scopes: &requested,
            expires_at,
        },
    )
    .await?;
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("api_key.created", "success")
            .target("api_key", k.id)
            .by(Some(caller.user.id))
            .from(None, &headers)
            .meta(json!({"name": k.name, "scopes": requested, "project_id": project_id})),
    )
    .await?;
    let mut body = key_json(&k, None);
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn revoke(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = session::require(&state, &headers).await?;
    access::csrf(&caller, &headers)?;
    let not_found = || ApiError::NotFound {
        message: "api key not found".into(),
        details: json!({}),
    };
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut tx = audit::begin(&state.db).await?;
    if !api_keys::revoke(&mut tx, caller.user.id, id).await? {
        return Err(not_found());
    }
    audit::commit(
        tx,
        &state.settings,
        &Entry::new("api_key.revoked", "success")
            .target("api_key", id)
            .by(Some(caller.user.id))
            .from(None, &headers),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_by_route() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(
            required_scope(&g, "/api/v1/projects/default/tasks"),
            Ok(Some("tasks:read".into()))
        );
        assert_eq!(
            required_scope(&p, "/api/v1/projects/default/commands/cancel-task"),
            Ok(Some("commands:write".into()))
        );
        assert_eq!(
            required_scope(&g, "/api/v1/projects"),
            Ok(Some("projects:read".into()))
        );
        assert_eq!(
            required_scope(&g, "/api/v1/projects/x/audit"),
            Ok(Some("audit:read".into()))
        );
        assert_eq!(required_scope(&g, "/api/v1/auth/me"), Err("auth"));
        assert_eq!(required_scope(&g, "/api/v1/auth/policy"), Ok(None));
        assert_eq!(
            required_scope(&g, "/api/v1/projects/x/saved-views"),
            Err("unreachable")
        );
        assert!(grants(&["tasks:write".into()], "tasks:read"));
        assert!(!grants(&["tasks:read".into()], "tasks:write"));
        assert!(grants(&["admin:*".into()], "users:write"));
    }
}
