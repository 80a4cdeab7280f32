//! Home: every visible project's last 24 hours and the recent failures.

use super::{finish, signed_in, Page, PageError};
use crate::http::{aggregates, Shared};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use minijinja::{context, Value};

pub(super) async fn home(State(state): State<Shared>, headers: HeaderMap) -> Response {
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
        let page = Page::signed(&state, "home", &caller);
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
