//! The HTTP surface: axum routers by resource, one error envelope.

pub mod access;
mod account;
mod activity;
mod agents;
mod aggregates;
pub mod api_keys;
mod audit;
mod auth;
mod body;
mod bucket;
mod commands;
pub mod error;
pub mod hardening;
mod health;
mod invitations;
mod live;
mod metrics;
pub mod mfa;
mod new_password;
mod notifications;
mod pages;
mod password_reset;
mod projects;
mod reads;
pub mod request_id;
mod saved_views;
mod schedulers;
mod schedules;
pub mod session;
mod setup;
mod system;
mod users;

use crate::commands::Commands;
use crate::net::query;
use crate::net::SlidingWindow;
use crate::settings::Settings;
use crate::store::Db;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What the REST handlers work with.
pub struct ApiState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub ready: AtomicBool,
    /// `Z4J_ENVIRONMENT=dev`: plain cookie names, no `Secure`.
    pub dev_posture: bool,
    pub commands: Commands,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub auth: crate::auth::throttle::AuthThrottle,
    pub hosts: hardening::hosts::HostGuard,
    /// Per-project issuance budget (`Z4J_RATELIMIT_COMMANDS_PER_MINUTE`).
    pub command_budget: SlidingWindow,
    /// The embedded scheduler's supervision (fleet page).
    pub embedded: crate::workers::embedded_scheduler::Status,
    /// The versions snapshot ("Check for updates"), per process.
    pub versions: crate::versions::Versions,
}

impl ApiState {
    pub fn new(
        settings: Arc<Settings>,
        db: Db,
        commands: Commands,
        metrics: Arc<crate::metrics::Metrics>,
        hosts_file: std::path::PathBuf,
        embedded: crate::workers::embedded_scheduler::Status,
    ) -> ApiState {
        let dev_posture = settings.environment == "dev";
        ApiState {
            ready: AtomicBool::new(false),
            dev_posture,
            commands,
            metrics,
            auth: crate::auth::throttle::AuthThrottle::new(&settings),
            hosts: hardening::hosts::HostGuard::new(&settings, dev_posture, hosts_file),
            command_budget: SlidingWindow::new(
                settings.ratelimit_commands_per_minute.max(1) as usize,
                Duration::from_secs(60),
            ),
            settings,
            db,
            embedded,
            versions: crate::versions::Versions::default(),
        }
    }

    pub fn fleet(&self) -> &crate::fleet::Fleet {
        self.commands.fleet()
    }
}

pub type Shared = Arc<ApiState>;

/// Every REST route (`/metrics` only when `Z4J_METRICS_ENABLED`).
pub fn routes(metrics_enabled: bool) -> Router<Shared> {
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
        .merge(aggregates::routes())
        .merge(system::routes())
        .merge(saved_views::routes())
        .merge(activity::routes())
        .merge(notifications::routes())
        .merge(schedules::routes())
        .merge(schedulers::routes())
        .merge(audit::routes())
        .merge(users::routes())
        .merge(invitations::routes())
        .merge(api_keys::routes())
        .merge(live::routes())
        .merge(pages::routes())
        .merge(metrics::routes(metrics_enabled))
}

/// The layers around every route, REST and agent transports alike.
pub fn harden(router: Router, state: Shared) -> Router {
    use axum::middleware::from_fn_with_state;
    let body_limit = state.settings.max_payload_size_bytes as usize;
    router
        .layer(DefaultBodyLimit::max(body_limit))
        // Innermost first; the outermost (security headers) stamps every
        // response, including the other layers' refusals.
        .layer(axum::middleware::from_fn(hardening::content_type::layer))
        .layer(axum::middleware::from_fn(hardening::nul::layer))
        .layer(from_fn_with_state(state.clone(), hardening::timeout::layer))
        .layer(from_fn_with_state(state.clone(), api_keys::layer))
        .layer(from_fn_with_state(state.clone(), hardening::hosts::layer))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(from_fn_with_state(
            state.clone(),
            hardening::body_cap::layer,
        ))
        .layer(from_fn_with_state(state.clone(), hardening::cors::layer))
        .layer(from_fn_with_state(state, hardening::headers::layer))
}
