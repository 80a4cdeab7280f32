//! z4j brain: the control-plane server.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod gateway;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod settings;
pub mod store;
pub mod workers;
