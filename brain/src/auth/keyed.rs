//! Single-use tokens handed to people (invitations, password resets) are
//! stored as hex(HMAC-SHA256(key = Z4J_SECRET, token)): a copy of the
//! database alone can neither recover nor forge one.

use crate::settings::Settings;

/// `None` when no master secret is configured.
pub fn token_hash(s: &Settings, token: &str) -> Option<String> {
    let master = s.secret.as_deref()?;
    Some(hex::encode(z4j_protocol::secret::hmac_sha256(
        master.as_bytes(),
        token.as_bytes(),
    )))
}
