//! z4j brain: the control-plane server.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod fleet;
pub mod gateway;
pub mod http;
pub mod ingest;
pub mod insight;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod ops;
pub mod scheduler_grpc;
pub mod schedules;
pub mod server;
pub mod settings;
pub mod store;
pub mod versions;
pub mod workers;
