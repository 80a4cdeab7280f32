//! Projects (spec http-api 4.2): list, create, read, update, archive.
//! Archiving disconnects the project's agents (4003) and refuses them until
//! the project is active again.

use super::access::{self, Role};
use super::body::{self, Fields};
use super::error::{conflict, ApiError, SchemaIssue};
use super::{session, Shared};
use crate::store::projects::{self, Project};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

const SLUG_RULE: &str = "^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/projects", get(list).post(create))
        .route(
            "/api/v1/projects/{slug}",
            get(read).patch(update).delete(archive),
        )
}

pub fn project_json(p: &Project) -> Value {
    let settings = &p.settings.0;
    json!({
        "id": p.id,
        "slug": p.slug,
        "name": p.name,
        "description": p.description,
        "environment": p.environment,
        "timezone": p.timezone,
        "is_active": p.is_active,
        "default_scheduler_owner": settings.get("default_scheduler_owner").cloned().unwrap_or(json!("z4j-scheduler")),
        "allowed_schedulers": settings.get("allowed_schedulers").cloned().unwrap_or(Value::Null),
        "created_at": p.created_at.to_rfc3339(),
        "updated_at": p.updated_at.to_rfc3339(),
    })
}

fn require_admin(caller: &session::Caller) -> Result<(), ApiError> {
    if caller.user.is_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden("admin role required".into()))
    }
}

fn slug_ok(slug: &str) -> bool {
    let b = slug.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=50).contains(&b.len())
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|c| edge(*c) || *c == b'-')
}

/// `^[a-z][a-z0-9_-]{0,39}$` (environment and scheduler owner names).
fn name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=40).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Reads the body over `base` (the current project for PATCH, defaults for
/// create): every schema problem at once, then the business rules.
fn parse_fields(
    body: &[u8],
    base: Option<&projects::Fields>,
) -> Result<projects::Fields, ApiError> {
    let obj = body::object(body)?;
    let creating = base.is_none();
    let mut f = Fields::new(&obj);
    let slug = f.text("slug", 2, 63, creating);
    let name = f.text("name", 1, 200, creating);
    let description = f.text("description", 0, 2000, false);
    let environment = f.text("environment", 1, 40, false);
    let timezone = f.text("timezone", 1, 64, false);
    let owner = f.text("default_scheduler_owner", 1, 40, false);
    for (field, value) in [
        ("environment", &environment),
        ("default_scheduler_owner", &owner),
    ] {
        if value.as_deref().is_some_and(|v| !name_ok(v)) {
            f.issues.push(SchemaIssue::new(
                "string_pattern_mismatch",
                &["body", field],
                "String should match pattern '^[a-z][a-z0-9_-]{0,39}$'",
            ));
        }
    }
    let allowed: Option<Option<Vec<String>>> = match obj.get("allowed_schedulers") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Array(items)) if items.len() <= 32 => {
            let names: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if names.len() != items.len() || !names.iter().all(|n| name_ok(n)) {
                f.issues.push(SchemaIssue::new(
                    "value_error",
                    &["body", "allowed_schedulers"],
                    "Value error, allowed_schedulers entries must match '^[a-z][a-z0-9_-]{0,39}$'",
                ));
            }
            Some(Some(names))
        }
        Some(_) => {
            f.issues.push(SchemaIssue::new(
                "list_type",
                &["body", "allowed_schedulers"],
                "Input should be a valid list of at most 32 items",
            ));
            None
        }
    };
    let defaults = projects::Fields {
        slug: String::new(),
        name: String::new(),
        description: None,
        environment: "production".into(),
        timezone: "UTC".into(),
        settings: json!({}),
    };
    let base = base.unwrap_or(&defaults).clone();
    let mut settings: Map<String, Value> = base.settings.as_object().cloned().unwrap_or_default();
    if let Some(o) = &owner {
        settings.insert("default_scheduler_owner".into(), json!(o));
    }
    if let Some(a) = &allowed {
        settings.insert("allowed_schedulers".into(), json!(a));
    }
    let fields = projects::Fields {
        slug: slug.unwrap_or(base.slug),
        name: name.unwrap_or(base.name),
        description: if obj.contains_key("description") {
            description
        } else {
            base.description
        },
        environment: environment.unwrap_or(base.environment),
        timezone: timezone.unwrap_or(base.timezone),
        settings: Value::Object(settings),
    };
    let fields = f.finish(Some(fields))?;
    if !slug_ok(&fields.slug) {
        return Err(ApiError::Conflict {
            message: format!("slug must match {SLUG_RULE}"),
            details: json!({"slug": fields.slug}),
        });
    }
    let owner = fields
        .settings
        .get("default_scheduler_owner")
        .and_then(Value::as_str);
    let allowed = fields
        .settings
        .get("allowed_schedulers")
        .and_then(Value::as_array);
    if let (Some(owner), Some(allowed)) = (owner, allowed) {
        if !allowed.iter().any(|a| a.as_str() == Some(owner)) {
            return Err(ApiError::Conflict {
                message: "default_scheduler_owner must be one of allowed_schedulers".into(),
                details: json!({"default_scheduler_owner": owner}),
            });
        }
    }
    Ok(fields)
}

/// The active projects the caller sees: a member's projects, every one for
/// a global admin (up to `Z4J_ADMIN_PROJECT_LIST_CAP`), and only its own
/// for a project-bound key (when its owner may see it).
pub(super) async fn visible(
    state: &Shared,
    caller: &session::Caller,
) -> Result<Vec<projects::Project>, ApiError> {
    let cap = state.settings.admin_project_list_cap;
    let member_of = (!caller.user.is_admin).then_some(caller.user.id);
    Ok(match caller.bound_project {
        Some(bound) => {
            let visible = match member_of {
                None => true,
                Some(u) => projects::role_of(&state.db, u, bound).await?.is_some(),
            };
            projects::find(&state.db, bound)
                .await?
                .filter(|p| p.is_active && visible)
                .into_iter()
                .collect()
        }
        None => projects::list_active(&state.db, member_of, cap).await?,
    })
}

async fn list(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = session::require(&state, &headers).await?;
    let rows = visible(&state, &caller).await?;
    Ok(Json(Value::Array(rows.iter().map(project_json).collect())))
}

async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = session::require(&state, &headers).await?;
    access::csrf(&caller, &headers)?;
    require_admin(&caller)?;
    let fields = parse_fields(&body, None)?;
    let mut tx = crate::audit::begin(&state.db).await?;
    let project = projects::create(&mut tx, &fields).await.map_err(conflict)?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("project.created", "success")
            .target("project", project.id)
            .in_project(project.id)
            .by(Some(caller.user.id))
            .from(None, &headers)
            .meta(serde_json::json!({"slug": project.slug})),
    )
    .await?;
    tracing::info!(project = %project.slug, by = %caller.user.id, "project created");
    Ok((StatusCode::CREATED, Json(project_json(&project))).into_response())
}

async fn read(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    Ok(Json(project_json(&access.project)))
}

async fn update(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    access::csrf(&access.caller, &headers)?;
    require_admin(&access.caller)?;
    let p = &access.project;
    let current = projects::Fields {
        slug: p.slug.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        environment: p.environment.clone(),
        timezone: p.timezone.clone(),
        settings: p.settings.0.clone(),
    };
    let fields = parse_fields(&body, Some(&current))?;
    let mut tx = crate::audit::begin(&state.db).await?;
    projects::update(&mut tx, p.id, &fields)
        .await
        .map_err(conflict)?;
    crate::audit::commit(
        tx,
        &state.settings,
        &crate::audit::Entry::new("project.updated", "success")
            .target("project", p.id)
            .in_project(p.id)
            .by(Some(access.caller.user.id))
            .from(None, &headers)
            .meta(serde_json::json!({"slug": fields.slug, "settings": fields.settings})),
    )
    .await?;
    let updated = projects::find_by_slug(&state.db, &fields.slug)
        .await?
        .ok_or_else(|| ApiError::Internal("project vanished after update".into()))?;
    Ok(Json(project_json(&updated)))
}

async fn archive(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = access::project(&state, &headers, &slug, Role::Viewer).await?;
    access::csrf(&access.caller, &headers)?;
    require_admin(&access.caller)?;
    access::fresh_mfa(&access.caller, &state.settings)?;
    let p = &access.project;
    if p.is_active {
        // Counted inside the transaction: two archives cannot both pass.
        let mut tx = crate::audit::begin(&state.db).await?;
        if projects::count_active(&mut tx).await? <= 1 {
            return Err(ApiError::Conflict {
                message: "cannot archive the last remaining project".into(),
                details: json!({"slug": slug}),
            });
        }
        projects::set_active(&mut tx, p.id, false).await?;
        crate::audit::commit(
            tx,
            &state.settings,
            &crate::audit::Entry::new("project.archived", "success")
                .target("project", p.id)
                .in_project(p.id)
                .by(Some(access.caller.user.id))
                .from(None, &headers),
        )
        .await?;
        // After the commit: close the project's live agent sockets.
        let agents = projects::agent_ids(&state.db, p.id).await?;
        state.fleet().revoke_project(p.id, &agents).await;
        tracing::info!(project = %slug, by = %access.caller.user.id, "project archived");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_and_name_rules() {
        assert!(slug_ok("abc") && slug_ok("team-1"));
        assert!(!slug_ok("ab"), "two characters");
        assert!(!slug_ok("-abc") && !slug_ok("abc-") && !slug_ok("Abc"));
        assert!(!slug_ok(&"a".repeat(51)));
        assert!(name_ok("production") && name_ok("z4j-scheduler") && name_ok("qa_1"));
        assert!(!name_ok("1qa") && !name_ok("") && !name_ok(&"a".repeat(41)));
    }

    #[test]
    fn owner_must_be_allowed_when_both_are_given() {
        let body = br#"{"slug":"abc","name":"A","default_scheduler_owner":"x","allowed_schedulers":["y"]}"#;
        assert!(matches!(
            parse_fields(body, None),
            Err(ApiError::Conflict { .. })
        ));
        let ok = br#"{"slug":"abc","name":"A","default_scheduler_owner":"y","allowed_schedulers":["y"]}"#;
        assert!(parse_fields(ok, None).is_ok());
    }
}
