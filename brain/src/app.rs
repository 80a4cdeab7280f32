//! The application: every long-lived component built once, the sub-states
//! the two transports' handlers see, and the router that joins them under
//! the hardening layers.
//!
//! REST handlers take `State<Arc<http::ApiState>>`, agent transports
//! `State<Arc<gateway::Gateway>>`: each router is given its own sub-state,
//! so a handler sees only its transport's, and neither transport knows the
//! other.

use crate::commands::Commands;
use crate::fleet::Fleet;
use crate::gateway::{self, Gateway};
use crate::http::{self, ApiState};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::notify::Alerts;
use crate::schedules::Schedules;
use crate::settings::{allowed_hosts, Loaded, Settings};
use crate::store::Db;
use axum::Router;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The one application state.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub commands: Commands,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
    pub api: Arc<ApiState>,
    pub gateway: Arc<Gateway>,
    pub schedules: Schedules,
    /// The embedded scheduler's supervision, as the fleet page shows it.
    pub embedded: crate::workers::embedded_scheduler::Status,
}

impl AppState {
    /// Builds every component over an open, migrated database. The second
    /// value is the ingest writer's task: it ends when the last handle to
    /// the ingestor is gone.
    pub fn build(loaded: &Loaded, db: Db, alerts: Alerts) -> (AppState, JoinHandle<()>) {
        let settings = Arc::new(loaded.settings.clone());
        let fleet = Arc::new(Fleet::new(&settings, &db));
        let live = fleet.live.clone();
        let commands = Commands::new(settings.clone(), db.clone(), fleet);
        let metrics = Arc::new(Metrics::default());
        let (ingestor, writer) = Ingestor::new(&settings, db.clone(), alerts.clone(), live.clone());
        let gateway = Gateway::new(
            commands.clone(),
            settings.clone(),
            db.clone(),
            ingestor,
            metrics.clone(),
        );
        let schedules = Schedules::new(
            settings.clone(),
            db.clone(),
            commands.clone(),
            alerts.clone(),
            metrics.clone(),
            live,
        );
        let embedded = crate::workers::embedded_scheduler::Status::default();
        let api = Arc::new(ApiState::new(
            settings.clone(),
            db.clone(),
            commands.clone(),
            metrics.clone(),
            allowed_hosts::path(&loaded.home),
            embedded.clone(),
        ));
        let app = AppState {
            settings,
            db,
            commands,
            alerts,
            metrics,
            api,
            gateway,
            schedules,
            embedded,
        };
        (app, writer)
    }

    /// REST and agent routes, each given its own sub-state, under the
    /// hardening layers.
    pub fn router(&self) -> Router {
        let rest = http::routes(self.settings.metrics_enabled).with_state(self.api.clone());
        let agents = gateway::routes().with_state(self.gateway.clone());
        http::harden(rest.merge(agents), self.api.clone())
    }
}
