//! Every hash a token is stored or looked up under, and the per-project
//! signing key: one place, one function per use, each naming its inputs.
//! Formats are fixed by what earlier versions stored (and, for agents, by
//! the reference), so a database outlives any one build.

use crate::settings::Settings;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use z4j_protocol::ProjectKey;

/// Agent bearer tokens: the protocol's keyed hash under one master secret
/// (`Z4J_SECRET`, or a previous one while rotating).
pub fn agent_token(master: &str, token: &str) -> String {
    z4j_protocol::secret::agent_token_hash(master.as_bytes(), token)
}

/// API keys: hex(HMAC-SHA256(key = master ‖ "z4j-api-key-v1", token)).
pub fn api_key(master: &str, token: &str) -> String {
    let key = format!("{master}z4j-api-key-v1");
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new(); // unreachable: HMAC takes keys of any length
    };
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Single-use tokens handed to people (invitations, password resets):
/// hex(HMAC-SHA256(key = Z4J_SECRET, token)), so a copy of the database
/// alone can neither recover nor forge one. `None` without a master secret.
pub fn person_token(s: &Settings, token: &str) -> Option<String> {
    let master = s.secret.as_deref()?;
    Some(hex::encode(z4j_protocol::secret::hmac_sha256(
        master.as_bytes(),
        token.as_bytes(),
    )))
}

/// The first-boot setup token: the protocol's labelled hash under
/// `Z4J_SECRET`. `None` without a master secret.
pub fn setup_token(s: &Settings, token: &str) -> Option<String> {
    let master = s.secret.as_deref()?;
    Some(z4j_protocol::secret::labelled_token_hash(
        master.as_bytes(),
        z4j_protocol::secret::SETUP_TOKEN_LABEL,
        token,
    ))
}

/// MFA recovery codes and remembered-device tokens: hex(SHA-256(token)).
/// Unkeyed: both are random values the brain minted (not passwords), and
/// they stay valid across a `Z4J_SECRET` rotation.
pub fn mfa_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The per-project signing key (current master only, agent protocol 4.4).
pub fn project_key(s: &Settings, project_id: Uuid) -> Option<ProjectKey> {
    let master = s.secret.as_deref()?;
    ProjectKey::derive(master.as_bytes(), project_id).ok()
}
