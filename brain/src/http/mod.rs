//! The HTTP surface: axum routers by resource, one error envelope.

pub mod access;
mod account;
mod agents;
pub mod api_keys;
mod audit;
mod auth;
mod body;
pub mod client_ip;
mod commands;
pub mod error;
pub mod hardening;
mod health;
mod invitations;
mod metrics;
pub mod mfa;
mod new_password;
mod notifications;
mod password_reset;
mod projects;
mod reads;
pub mod request_id;
pub mod session;
mod setup;
mod users;

use crate::settings::Settings;
use crate::store::Db;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The compatibility level this brain implements (what agents compare with
/// their own version).
pub const BRAIN_VERSION: &str = "1.13.0";

pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub ready: AtomicBool,
    /// `Z4J_ENVIRONMENT=dev`: plain cookie names, no `Secure`.
    pub dev_posture: bool,
    pub gateway: Arc<crate::gateway::Gateway>,
    pub auth: crate::auth::throttle::AuthThrottle,
    pub hosts: hardening::hosts::HostGuard,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    use axum::middleware::from_fn_with_state;
    let body_limit = state.settings.max_payload_size_bytes as usize;
    Router::new()
        .merge(health::routes())
        .merge(setup::routes())
        .merge(auth::routes())
        .merge(account::routes())
        .merge(password_reset::routes())
        .merge(mfa::routes())
        .merge(projects::routes())
        .merge(agents::routes())
        .merge(commands::routes())
        .merge(reads::routes())
        .merge(notifications::routes())
        .merge(audit::routes())
        .merge(users::routes())
        .merge(invitations::routes())
        .merge(api_keys::routes())
        .merge(metrics::routes(state.settings.metrics_enabled))
        .route(
            "/ws/agent",
            axum::routing::get(crate::gateway::ws::ws_agent),
        )
        .route(
            "/api/v1/agent/events",
            axum::routing::post(crate::gateway::longpoll::events),
        )
        .route(
            "/api/v1/agent/commands",
            axum::routing::get(crate::gateway::longpoll::commands),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        // Innermost first; the outermost (security headers) stamps every
        // response, including the other layers' refusals.
        .layer(axum::middleware::from_fn(hardening::content_type::layer))
        .layer(from_fn_with_state(state.clone(), hardening::timeout::layer))
        .layer(from_fn_with_state(state.clone(), api_keys::layer))
        .layer(from_fn_with_state(state.clone(), hardening::hosts::layer))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(from_fn_with_state(
            state.clone(),
            hardening::body_cap::layer,
        ))
        .layer(from_fn_with_state(state.clone(), hardening::cors::layer))
        .layer(from_fn_with_state(state.clone(), hardening::headers::layer))
        .with_state(state)
}
