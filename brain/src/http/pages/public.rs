//! Pages for people without a session: accepting an invitation and
//! resetting a password. Both read their token from the link's fragment
//! (never sent to a server) and post it to the REST API.

use super::Page;
use crate::http::Shared;
use axum::extract::State;
use axum::response::Response;
use minijinja::context;

pub(super) async fn invite(State(state): State<Shared>) -> Response {
    Page::anonymous(&state, "invite").render("invite.html", context! {})
}

pub(super) async fn reset(State(state): State<Shared>) -> Response {
    Page::anonymous(&state, "reset").render("reset.html", context! {})
}
