//! First boot: secrets, the one-time setup URL, the bootstrap admin.

pub mod admin;
pub mod secrets;
pub mod setup_token;
