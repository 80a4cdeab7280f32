//! z4j agent ⇄ brain wire protocol, version 2.
//!
//! Pure: no I/O, no async. Everything about bytes on the wire lives here and
//! is proven against the reference vectors in `tests/`.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod canonical;
pub mod event_id;
pub mod frame;
pub mod handshake;
pub mod isotime;
pub mod json;
pub mod replay;
mod scan;
pub mod secret;
pub mod verify;

pub use frame::FrameType;
pub use json::{parse, Object, Value};
pub use replay::{Direction, Now};
pub use secret::ProjectKey;
pub use verify::{Binding, Signer, Verified, Verifier, VerifyError};
