//! A project's schedules: the list with each one's health, and a
//! schedule's page with its definition and latest fires. Operators
//! enable, disable, hold, release and run them now; admins create, edit
//! and delete; all through the REST routes.

use super::project::{listing_page, project_page};
use super::{finish, PageError};
use crate::http::access::Role;
use crate::http::error::ApiError;
use crate::http::schedules as rest;
use crate::http::Shared;
use crate::store::schedules::{self as store, CatchUp, Kind, Z4J_SCHEDULER};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use minijinja::{context, Value};

/// Schedules per page (the REST list's default).
const PAGE_SIZE: i64 = 50;
/// Fires on a schedule's page (the reference shows the last 50).
const FIRES_SHOWN: i64 = 50;
/// The misfire banner: detections of the last 24 h (as the reference's),
/// counted up to 50 (the misfire list's default page) and the newest 5
/// named.
const MISFIRE_WINDOW_SECS: i64 = 24 * 3600;
const MISFIRES_COUNTED: i64 = 50;
const MISFIRES_SHOWN: usize = 5;

fn choices() -> (Vec<&'static str>, Vec<&'static str>) {
    (
        Kind::ALL.iter().map(|k| k.as_str()).collect(),
        CatchUp::ALL.iter().map(|c| c.as_str()).collect(),
    )
}

pub(super) async fn schedules(
    State(state): State<Shared>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let (a, page, q) = listing_page(&state, &headers, &slug, "schedules", raw).await?;
        let cursor = q.get("cursor").map(String::as_str);
        let (items, next) = rest::page_of(&state, a.project.id, cursor, PAGE_SIZE).await?;
        let next = next.map(|c| {
            let qs = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("cursor", &c)
                .finish();
            format!("/projects/{slug}/schedules?{qs}")
        });
        let (kinds, catch_ups) = choices();
        let misfires = rest::misfires_since(
            &state,
            a.project.id,
            crate::store::Ts::now().plus_seconds(-MISFIRE_WINDOW_SECS),
            MISFIRES_COUNTED,
        )
        .await?;
        Ok(page.render(
            "schedules.html",
            context! {
                misfires => Value::from_serialize(misfires.iter().take(MISFIRES_SHOWN).collect::<Vec<_>>()),
                misfire_count => misfires.len(),
                misfires_capped => misfires.len() as i64 == MISFIRES_COUNTED,
                schedules => Value::from_serialize(&items),
                threshold => state.settings.schedule_circuit_breaker_threshold,
                own => Z4J_SCHEDULER,
                can_operate => a.role >= Role::Operator,
                can_manage => a.role >= Role::Admin,
                kinds, catch_ups, next,
            },
        ))
    }
    .await;
    finish(&state, r)
}

pub(super) async fn schedule(
    State(state): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let r: Result<Response, PageError> = async {
        let here = format!("/projects/{slug}/schedules/{}", super::segment(&id));
        let (a, page) = project_page(&state, &headers, &slug, &here, "schedules").await?;
        let gone = || PageError::NotFound("schedule not found".into());
        let id = uuid::Uuid::parse_str(&id).map_err(|_| gone())?;
        let s = store::find(&state.db, a.project.id, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(gone)?;
        let failures = rest::consecutive_failures(&state, &s).await?;
        let view = rest::schedule_json(&s, Some(failures));
        let fires: Vec<serde_json::Value> = store::fires(&state.db, s.id, FIRES_SHOWN)
            .await
            .map_err(ApiError::from)?
            .iter()
            .map(rest::fire_json)
            .collect();
        let compact = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
        let (kinds, catch_ups) = choices();
        Ok(page.render(
            "schedule.html",
            context! {
                s => Value::from_serialize(&view),
                args => compact(&s.args.0),
                kwargs => compact(&s.kwargs.0),
                fires => Value::from_serialize(&fires),
                threshold => state.settings.schedule_circuit_breaker_threshold,
                own => Z4J_SCHEDULER,
                can_operate => a.role >= Role::Operator,
                can_manage => a.role >= Role::Admin,
                kinds, catch_ups,
            },
        ))
    }
    .await;
    finish(&state, r)
}
