//! Passwords, email rules, session cookies.

pub mod cookie;
pub mod email;
pub mod keyed;
pub mod password;
pub mod policy;
pub mod throttle;
pub mod totp;
