//! `/api/v1/projects/{slug}/saved-views` (dashboard spec 3.6): the caller's
//! own task-list filter presets in a project. Viewer and up; writes need
//! CSRF; API keys never reach it.

use super::access::{self, Role};
use super::body;
use super::error::{ApiError, SchemaIssue};
use super::reads::TASK_STATES;
use super::Shared;
use crate::settings::mutant::Mutant;
use crate::store::ingest::TASK_PRIORITIES;
use crate::store::saved_views::{self, SavedView, ViewError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/projects/{slug}/saved-views",
            get(list).post(create),
        )
        .route(
            "/api/v1/projects/{slug}/saved-views/{view_id}",
            put(replace).delete(remove),
        )
}

/// A validated view: the trimmed name and the canonical filters.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewInput {
    pub name: String,
    pub filters: Value,
}

fn extra_keys(obj: &Map<String, Value>, allowed: &[&str], at: &[&str], out: &mut Vec<SchemaIssue>) {
    for k in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
        let mut loc: Vec<&str> = at.to_vec();
        loc.push(k);
        out.push(SchemaIssue::new(
            "extra_forbidden",
            &loc,
            "Extra inputs are not permitted",
        ));
    }
}

/// `{name, filters: {state, priority, search}}`: unknown keys refused at
/// either level; the name trimmed to 1..=80 characters; state one of the
/// task states or null; at most four priorities, returned in canonical
/// order without duplicates; search at most 200 characters.
pub fn parse(raw: &[u8]) -> Result<ViewInput, ApiError> {
    let obj = body::object(raw)?;
    let mut issues = Vec::new();
    extra_keys(&obj, &["name", "filters"], &["body"], &mut issues);
    let name = match obj.get("name") {
        Some(Value::String(s)) => {
            let t = s.trim();
            let n = t.chars().count();
            if n == 0 || n > 80 {
                issues.push(SchemaIssue::new(
                    if n == 0 {
                        "string_too_short"
                    } else {
                        "string_too_long"
                    },
                    &["body", "name"],
                    "the name must have 1 to 80 characters after trimming",
                ));
            }
            t.to_owned()
        }
        None => {
            issues.push(SchemaIssue::new(
                "missing",
                &["body", "name"],
                "Field required",
            ));
            String::new()
        }
        Some(_) => {
            issues.push(SchemaIssue::new(
                "string_type",
                &["body", "name"],
                "Input should be a valid string",
            ));
            String::new()
        }
    };
    let empty = Map::new();
    let filters = match obj.get("filters") {
        Some(Value::Object(f)) => f,
        None => {
            issues.push(SchemaIssue::new(
                "missing",
                &["body", "filters"],
                "Field required",
            ));
            &empty
        }
        Some(_) => {
            issues.push(SchemaIssue::new(
                "model_type",
                &["body", "filters"],
                "Input should be an object",
            ));
            &empty
        }
    };
    extra_keys(
        filters,
        &["state", "priority", "search"],
        &["body", "filters"],
        &mut issues,
    );
    let state = match filters.get("state") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if TASK_STATES.contains(&s.as_str()) => json!(s),
        Some(_) => {
            issues.push(SchemaIssue::new(
                "literal_error",
                &["body", "filters", "state"],
                format!("Input should be one of {}", TASK_STATES.join(", ")),
            ));
            Value::Null
        }
    };
    let mut priority = Vec::new();
    match filters.get("priority") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.len() <= 4 => {
            for item in items {
                match item.as_str() {
                    Some(p) if TASK_PRIORITIES.contains(&p) => priority.push(p),
                    _ => issues.push(SchemaIssue::new(
                        "literal_error",
                        &["body", "filters", "priority"],
                        "Input should be 'critical', 'high', 'normal' or 'low'",
                    )),
                }
            }
        }
        Some(_) => issues.push(SchemaIssue::new(
            "too_long",
            &["body", "filters", "priority"],
            "Input should be a list of at most 4 priorities",
        )),
    }
    let canonical: Vec<&str> = TASK_PRIORITIES
        .iter()
        .copied()
        .filter(|p| priority.contains(p))
        .collect();
    let search = match filters.get("search") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= 200 => s.clone(),
        Some(_) => {
            issues.push(SchemaIssue::new(
                "string_too_long",
                &["body", "filters", "search"],
                "Input should be a string of at most 200 characters",
            ));
            String::new()
        }
    };
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    Ok(ViewInput {
        name,
        filters: json!({"state": state, "priority": canonical, "search": search}),
    })
}

fn view_json(v: &SavedView) -> Value {
    json!({
        "id": v.id,
        "name": v.name,
        "filters": v.filters.0,
        "created_at": v.created_at.to_rfc3339(),
        "updated_at": v.updated_at.to_rfc3339(),
    })
}

fn refused(e: ViewError) -> ApiError {
    match e {
        ViewError::Duplicate(_) | ViewError::Full(_) => ApiError::Conflict {
            message: e.to_string(),
            details: json!({}),
        },
        ViewError::NotFound => ApiError::NotFound {
            message: e.to_string(),
            details: json!({}),
        },
        ViewError::Store(s) => s.into(),
    }
}

async fn list(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let a = access::project(&state, &headers, &slug, Role::Viewer).await?;
    let rows = saved_views::list(&state.db, a.caller.user.id, a.project.id).await?;
    Ok(Json(Value::Array(rows.iter().map(view_json).collect())))
}

async fn create(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let a = access::project(&state, &headers, &slug, Role::Viewer).await?;
    access::csrf(&a.caller, &headers)?;
    let input = parse(&raw)?;
    let cap = if state.settings.mutant(Mutant::SavedViewCapOff) {
        saved_views::MAX_PER_PROJECT + 1
    } else {
        saved_views::MAX_PER_PROJECT
    };
    let v = saved_views::create(
        &state.db,
        a.caller.user.id,
        a.project.id,
        &input.name,
        &input.filters,
        cap,
    )
    .await
    .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(view_json(&v))).into_response())
}

fn view_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| {
        ApiError::Schema(vec![SchemaIssue::new(
            "uuid_parsing",
            &["path", "view_id"],
            "Input should be a valid UUID",
        )])
    })
}

async fn replace(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    let a = access::project(&state, &headers, &slug, Role::Viewer).await?;
    access::csrf(&a.caller, &headers)?;
    let id = view_id(&id)?;
    let input = parse(&raw)?;
    let v = saved_views::replace(
        &state.db,
        a.caller.user.id,
        a.project.id,
        id,
        &input.name,
        &input.filters,
    )
    .await
    .map_err(refused)?;
    Ok(Json(view_json(&v)))
}

async fn remove(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let a = access::project(&state, &headers, &slug, Role::Viewer).await?;
    access::csrf(&a.caller, &headers)?;
    let id = view_id(&id)?;
    saved_views::delete(&state.db, a.caller.user.id, a.project.id, id)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(raw: &str) -> Vec<Vec<Value>> {
        match parse(raw.as_bytes()) {
            Err(ApiError::Schema(list)) => list.into_iter().map(|i| i.loc).collect(),
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn a_view_is_trimmed_and_canonical() {
        let v = parse(br#"{"name": "  Failing  ", "filters": {"state": "failure", "priority": ["low", "critical", "low"]}}"#);
        let v = v.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.name, "Failing");
        assert_eq!(
            v.filters,
            json!({"state": "failure", "priority": ["critical", "low"], "search": ""})
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            issues(r#"{"name": "a", "filters": {}, "x": 1}"#),
            vec![vec![json!("body"), json!("x")]]
        );
        assert_eq!(
            issues(r#"{"name": "a", "filters": {"queue": "q"}}"#),
            vec![vec![json!("body"), json!("filters"), json!("queue")]]
        );
        assert_eq!(
            issues(r#"{"name": "   ", "filters": {}}"#),
            vec![vec![json!("body"), json!("name")]]
        );
        let long = format!(r#"{{"name": "{}", "filters": {{}}}}"#, "n".repeat(81));
        assert_eq!(issues(&long), vec![vec![json!("body"), json!("name")]]);
        let ok = format!(r#"{{"name": "{}", "filters": {{}}}}"#, "n".repeat(80));
        assert!(parse(ok.as_bytes()).is_ok());
        assert_eq!(
            issues(r#"{"name": "a", "filters": {"state": "done"}}"#),
            vec![vec![json!("body"), json!("filters"), json!("state")]]
        );
        assert_eq!(
            issues(
                r#"{"name": "a", "filters": {"priority": ["low", "low", "low", "low", "low"]}}"#
            ),
            vec![vec![json!("body"), json!("filters"), json!("priority")]]
        );
        let search = format!(
            r#"{{"name": "a", "filters": {{"search": "{}"}}}}"#,
            "s".repeat(201)
        );
        assert_eq!(
            issues(&search),
            vec![vec![json!("body"), json!("filters"), json!("search")]]
        );
        assert_eq!(
            issues(r#"{"filters": {}}"#),
            vec![vec![json!("body"), json!("name")]]
        );
    }
}
