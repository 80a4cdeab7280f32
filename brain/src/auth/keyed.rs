//! Single-use tokens handed to people (invitations, password resets) are
//! stored as hex(HMAC-SHA256(key = Z4J_SECRET, token)): a copy of the
//! database alone can neither recover nor forge one.

use crate::settings::Settings;
use uuid::Uuid;
use z4j_protocol::ProjectKey;

/// `None` when no master secret is configured.
pub fn token_hash(s: &Settings, token: &str) -> Option<String> {
    let master = s.secret.as_deref()?;
    Some(hex::encode(z4j_protocol::secret::hmac_sha256(
        master.as_bytes(),
        token.as_bytes(),
    )))
}

/// The per-project signing key (current master only, spec 4.4).
pub fn project_key(s: &Settings, project_id: Uuid) -> Option<ProjectKey> {
    let master = s.secret.as_deref()?;
    ProjectKey::derive(master.as_bytes(), project_id).ok()
}
