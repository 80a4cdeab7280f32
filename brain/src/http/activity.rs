//! `GET /api/v1/activity` (dashboard spec 3.5): the audit rows a person may
//! read across projects, newest first, with `<occurred_at>|<id>` cursors
//! both ways and a per-user budget of 60 calls a minute in this process.

use super::access::Role;
use super::error::ApiError;
use super::query::Query;
use super::{session, Shared};
use crate::store::audit::{self, ActivityFilter, AuditRow};
use crate::store::{projects, Ts};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/activity", get(list))
}

/// What the feed's reader asked for, validated.
pub(super) struct Ask {
    pub limit: i64,
    pub since: Option<String>,
    pub before: Option<String>,
    pub action_prefix: Option<String>,
    pub project_slug: Option<String>,
}

impl Ask {
    pub(super) fn parse(q: &Query) -> Result<Ask, ApiError> {
        let mut issues = Vec::new();
        let ask = Ask {
            limit: q.int("limit", 1, 200, &mut issues).unwrap_or(50),
            since: q.text("since_cursor", 128, &mut issues),
            before: q.text("before_cursor", 128, &mut issues),
            action_prefix: q.text("action_prefix", 80, &mut issues),
            project_slug: q.text("project_slug", 80, &mut issues),
        };
        if issues.is_empty() {
            Ok(ask)
        } else {
            Err(ApiError::Schema(issues))
        }
    }
}

/// `<ISO-8601>|<id>`; a timestamp without an offset is UTC.
fn parse_cursor(raw: &str) -> Option<(Ts, i64)> {
    let (at, id) = raw.split_once('|')?;
    let id = id.parse::<i64>().ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .ok()?;
    Some((Ts(at), id))
}

fn cursor(r: &AuditRow) -> String {
    format!("{}|{}", r.occurred_at.to_rfc3339(), r.id)
}

/// One page of the feed and the cursors around it.
pub(super) struct Page {
    pub rows: Vec<AuditRow>,
    pub slugs: HashMap<Uuid, String>,
    pub next_before: Option<String>,
    pub newest: Option<String>,
}

/// The feed as `caller` may read it (after the budget and validation).
pub(super) async fn read(
    state: &Shared,
    caller: &session::Caller,
    ask: &Ask,
) -> Result<Page, ApiError> {
    let malformed = || ApiError::Detail {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        detail: json!("malformed cursor"),
    };
    let since = ask
        .since
        .as_deref()
        .map(|c| parse_cursor(c).ok_or_else(malformed))
        .transpose()?;
    let before = ask
        .before
        .as_deref()
        .map(|c| parse_cursor(c).ok_or_else(malformed))
        .transpose()?;
    let everything = caller.user.is_admin;
    let empty = || Page {
        rows: Vec::new(),
        slugs: HashMap::new(),
        next_before: None,
        newest: None,
    };
    let project_id = match ask.project_slug.as_deref() {
        None => None,
        Some(slug) => {
            // An unknown slug, or one whose audit the caller may not read,
            // is an empty page rather than a 404 (nothing to probe).
            let Some(p) = projects::find_by_slug(&state.db, slug).await? else {
                return Ok(empty());
            };
            let readable = everything
                || projects::role_of(&state.db, caller.user.id, p.id)
                    .await?
                    .as_deref()
                    .and_then(Role::parse)
                    .is_some_and(Role::reads_audit);
            if !readable {
                return Ok(empty());
            }
            Some(p.id)
        }
    };
    let filter = ActivityFilter {
        user_id: caller.user.id,
        everything,
        project_id,
        action_prefix: ask.action_prefix.clone(),
        since,
        before,
    };
    let mut rows = audit::activity(&state.db, &filter, ask.limit + 1).await?;
    let more = rows.len() as i64 > ask.limit;
    rows.truncate(ask.limit as usize);
    let mut slugs = HashMap::new();
    for pid in rows.iter().filter_map(|r| r.project_id) {
        if let std::collections::hash_map::Entry::Vacant(e) = slugs.entry(pid) {
            if let Some(p) = projects::find(&state.db, pid).await? {
                e.insert(p.slug);
            }
        }
    }
    Ok(Page {
        next_before: more.then(|| rows.last().map(cursor)).flatten(),
        newest: rows.first().map(cursor),
        rows,
        slugs,
    })
}

/// Counts one call against the caller's budget.
pub(super) fn spend(state: &Shared, caller: &session::Caller) -> Result<(), ApiError> {
    if state
        .settings
        .mutant(crate::settings::mutant::Mutant::ActivityBudgetOff)
    {
        return Ok(());
    }
    state
        .auth
        .activity_per_user
        .hit(&caller.user.id.to_string())
        .map_err(|_| ApiError::TooManyRequests {
            bucket: "activity feed: 60 per user per minute, per worker",
            retry_after_secs: 60,
        })
}

pub(super) fn row_json(r: &AuditRow, slugs: &HashMap<Uuid, String>, admin: bool) -> Value {
    // The project listing's row, less what the feed does not carry, plus
    // the project's slug; source addresses for global admins only.
    let mut v = super::audit::row_json(r);
    if let Some(o) = v.as_object_mut() {
        o.remove("event_id");
        o.remove("user_agent");
    }
    v["project_slug"] = json!(r.project_id.and_then(|p| slugs.get(&p)));
    if !admin {
        v["source_ip"] = Value::Null;
    }
    v
}

async fn list(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = session::cookie_only(session::require(&state, &headers).await?)?;
    let ask = Ask::parse(&Query::parse(raw))?;
    spend(&state, &caller)?;
    let page = read(&state, &caller, &ask).await?;
    let admin = caller.user.is_admin;
    Ok(Json(json!({
        "items": page.rows.iter().map(|r| row_json(r, &page.slugs, admin)).collect::<Vec<_>>(),
        "next_before_cursor": page.next_before,
        "newest_cursor": page.newest,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_naive_times_are_utc() {
        let at = Ts(chrono::DateTime::from_timestamp(1_767_225_600, 5_000).unwrap_or_default());
        let c = format!("{}|42", at.to_rfc3339());
        assert_eq!(parse_cursor(&c), Some((at, 42)));
        let naive = parse_cursor("2026-01-01T00:00:00|7").map(|(t, _)| t.0.timestamp());
        assert_eq!(naive, Some(1_767_225_600));
        for bad in [
            "",
            "nope",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z|x",
            "|1",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
