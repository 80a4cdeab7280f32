//! Global admins' pages: users, the system (version, update checks) and
//! the scheduler fleet.

use super::{finish, signed_in, trim_page, Page, PageError};
use crate::http::{schedulers, users, Shared};
use crate::settings::mutant::Mutant;
use crate::store;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use minijinja::{context, Value};

/// Users shown on one page (the REST list's own cap).
const USER_PAGE: i64 = 500;

/// The signed-in caller when a global admin; a 404 for anyone else, so the
/// pages' existence is not confirmed.
async fn global_admin(
    state: &Shared,
    headers: &HeaderMap,
    path: &str,
) -> Result<crate::http::session::Caller, PageError> {
    let caller = signed_in(state, headers, path).await?;
    if caller.user.is_admin || state.settings.mutant(Mutant::AdminPagesOpen) {
        Ok(caller)
    } else {
        Err(PageError::NotFound("page not found".into()))
    }
}

/// Global admins: the brain's version and the versions snapshot, with the
/// "Check for updates" button (nothing is fetched until it is pressed).
pub(super) async fn system(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        let caller = global_admin(&state, &headers, "/system").await?;
        let (snapshot, source) = state.versions.current();
        let snapshot = crate::http::system::public(&state, &snapshot, &source);
        let page = Page::signed(&state, "system", &caller);
        Ok(page.render(
            "system.html",
            context! {
                snapshot => Value::from_serialize(&snapshot),
                database => state.db.kind(),
                brain_wide => true,
                ..super::chain_context(&state)
            },
        ))
    }
    .await;
    finish(&state, r)
}

/// Every user (up to 500) with create, deactivate and delete through the
/// REST API; a 404 for anyone but a global admin.
pub(super) async fn users(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        let caller = global_admin(&state, &headers, "/users").await?;
        let mut rows = store::users::list(&state.db, USER_PAGE + 1, 0)
            .await
            .map_err(crate::http::error::ApiError::from)?;
        let more = trim_page(&mut rows, USER_PAGE);
        let list: Vec<serde_json::Value> = rows.iter().map(users::user_admin_json).collect();
        Ok(Page::signed(&state, "users", &caller).render(
            "users.html",
            context! { users => Value::from_serialize(&list), more, me => caller.user.id.to_string() },
        ))
    }
    .await;
    finish(&state, r)
}

/// The scheduler fleet: each configured instance's `/info` (probed when
/// the page is loaded, as the REST route does), with a hint when none is
/// configured; a 404 for anyone but a global admin.
pub(super) async fn schedulers(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        let caller = global_admin(&state, &headers, "/schedulers").await?;
        let fleet = schedulers::fleet_view(&state).await?;
        Ok(Page::signed(&state, "schedulers", &caller).render(
            "schedulers.html",
            context! { fleet => Value::from_serialize(&fleet) },
        ))
    }
    .await;
    finish(&state, r)
}
