//! z4j brain: the control-plane server.

pub mod auth;
pub mod bootstrap;
pub mod settings;
pub mod store;
