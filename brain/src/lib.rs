//! z4j brain: the control-plane server.

pub mod settings;
