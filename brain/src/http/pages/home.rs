//! Cross-project pages: home (every visible project's last 24 hours and
//! the recent failures) and the activity feed.

use super::{finish, signed_in, with_query, Page, PageError};
use crate::http::query::Query;
use crate::http::{activity, aggregates, Shared};
use axum::extract::{RawQuery, State};
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

/// The audit rows this person may read across projects (the same feed and
/// budget as `GET /api/v1/activity`), with "older" paging.
pub(super) async fn activity_page(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = with_query("/activity", raw.as_deref().unwrap_or(""));
        let caller = signed_in(&state, &headers, &here).await?;
        let q = Query::parse(raw);
        let page = Page::signed(&state, "activity", &caller);
        // Bad parameters or a spent budget: say so on the page.
        let fetched = match activity::Ask::parse(&q) {
            Ok(ask) => match activity::spend(&state, &caller) {
                Ok(()) => activity::read(&state, &caller, &ask)
                    .await
                    .map(|p| (ask, p)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (ask, feed) = match fetched {
            Ok(v) => v,
            Err(e) => {
                let note = match e {
                    crate::http::error::ApiError::TooManyRequests { .. } => {
                        "Too many requests: the feed allows 60 a minute. Try again shortly."
                    }
                    crate::http::error::ApiError::Schema(_)
                    | crate::http::error::ApiError::Detail { .. } => {
                        "These filters are not valid (a prefix or slug of at most 80 characters)."
                    }
                    other => return Err(PageError::from(other)),
                };
                return Ok(page.render(
                    "activity.html",
                    context! { note, rows => Vec::<Value>::new() },
                ));
            }
        };
        let rows: Vec<serde_json::Value> = feed
            .rows
            .iter()
            .map(|r| activity::row_json(r, &feed.slugs, caller.user.is_admin))
            .collect();
        let older = feed.next_before.map(|c| {
            let mut qs = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("project_slug", &ask.project_slug),
                ("action_prefix", &ask.action_prefix),
            ] {
                if let Some(v) = v {
                    qs.append_pair(k, v);
                }
            }
            qs.append_pair("before_cursor", &c);
            format!("/activity?{}", qs.finish())
        });
        let projects: Vec<String> = crate::http::projects::visible(&state, &caller)
            .await?
            .into_iter()
            .map(|p| p.slug)
            .collect();
        Ok(page.render(
            "activity.html",
            context! {
                rows => Value::from_serialize(&rows),
                older,
                projects,
                project_slug => ask.project_slug.unwrap_or_default(),
                action_prefix => ask.action_prefix.unwrap_or_default(),
                is_admin => caller.user.is_admin,
            },
        ))
    }
    .await;
    finish(&state, r)
}
