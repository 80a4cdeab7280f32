//! Keys and keyed tokens: the per-project frame key, the `hmac_secret`
//! string agents receive, agent/setup token hashes, purge confirm tokens.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::hmac;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Every signer, verifier and deriver refuses shorter secrets.
pub const MIN_SECRET_BYTES: usize = 32;

const PROJECT_SECRET_LABEL: &[u8] = b"z4j-project-secret-v1:";
pub const AGENT_TOKEN_LABEL: &[u8] = b"z4j-agent-token-v1";
pub const SETUP_TOKEN_LABEL: &[u8] = b"z4j-setup-token-v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("master HMAC secret must be at least 32 bytes")]
    MasterTooShort,
    #[error("hmac_secret is empty")]
    Empty,
    #[error("hmac_secret must be urlsafe-base64 (the value the brain returns from POST /agents); got a non-base64 string")]
    NotUrlsafeBase64,
    #[error("hmac_secret decodes to {0} bytes; at least 32 are required")]
    TooShort(usize),
    #[error("hmac_secret decodes to {0} bytes; a project key the brain mints is exactly 32")]
    NotAProjectKey(usize),
}

/// The 32-byte key that signs every frame of one project, with its HMAC
/// state prepared once (the padded-key blocks), not per frame.
#[derive(Clone)]
pub struct ProjectKey {
    bytes: [u8; 32],
    hmac: hmac::Key,
}

impl PartialEq for ProjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for ProjectKey {}

impl std::fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectKey(<redacted>)")
    }
}

impl ProjectKey {
    /// `HMAC-SHA256(master, "z4j-project-secret-v1:" || uuid.bytes_le)`, the
    /// master taken as its UTF-8 bytes exactly as configured.
    pub fn derive(master: &[u8], project_id: Uuid) -> Result<Self, SecretError> {
        if master.len() < MIN_SECRET_BYTES {
            return Err(SecretError::MasterTooShort);
        }
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, master));
        ctx.update(PROJECT_SECRET_LABEL);
        ctx.update(&project_id.to_bytes_le());
        Ok(ProjectKey::from_bytes(to_array(ctx.sign().as_ref())))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ProjectKey {
            bytes,
            hmac: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The `hmac_secret` handed to agents: urlsafe base64 with padding.
    pub fn to_agent_string(&self) -> String {
        URL_SAFE.encode(self.bytes)
    }

    /// `HMAC-SHA256(this key, msg)`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 32] {
        to_array(hmac::sign(&self.hmac, msg).as_ref())
    }
}

fn to_array(tag: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&tag[..32]);
    out
}

/// Plain HMAC-SHA256, the primitive under every keyed value here. ring's
/// implementation: on CPUs without SHA extensions its assembly is about
/// 1.6x faster than the RustCrypto crates (benches/RESULTS.md).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    to_array(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
}

/// Decodes an agent's `hmac_secret` the way the agent does: trim, re-pad,
/// urlsafe alphabet only. Returns the raw bytes (any length); callers that
/// sign use [`decode_agent_key`], which also enforces 32 bytes.
pub fn decode_agent_hmac_secret(text: &str) -> Result<Vec<u8>, SecretError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SecretError::Empty);
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    {
        return Err(SecretError::NotUrlsafeBase64);
    }
    // Python's decoder tolerates non-zero trailing bits; so do we.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let unpadded = t.trim_end_matches('=');
    LENIENT
        .decode(unpadded)
        .map_err(|_| SecretError::NotUrlsafeBase64)
}

pub fn decode_agent_key(text: &str) -> Result<ProjectKey, SecretError> {
    let raw = decode_agent_hmac_secret(text)?;
    if raw.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort(raw.len()));
    }
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| SecretError::NotAProjectKey(raw.len()))?;
    Ok(ProjectKey::from_bytes(bytes))
}

/// `hex(HMAC-SHA256(key = master || label, msg = token))`: how agent bearer
/// tokens and setup tokens are stored.
pub fn labelled_token_hash(master: &[u8], label: &[u8], token: &str) -> String {
    let mut key = Vec::with_capacity(master.len() + label.len());
    key.extend_from_slice(master);
    key.extend_from_slice(label);
    hex::encode(hmac_sha256(&key, token.as_bytes()))
}

pub fn agent_token_hash(master: &[u8], token: &str) -> String {
    labelled_token_hash(master, AGENT_TOKEN_LABEL, token)
}

/// The `confirm_token` of a `purge_queue` command.
pub fn purge_confirm_token(key: &ProjectKey, queue: &str, depth: u64) -> String {
    hex::encode(key.sign(format!("purge|{queue}|{depth}").as_bytes()))
}

/// The unkeyed form older agents accept: `sha256("purge|queue|depth")`.
pub fn legacy_purge_confirm_token(queue: &str, depth: u64) -> String {
    hex::encode(Sha256::digest(format!("purge|{queue}|{depth}").as_bytes()))
}

/// Constant-time equality of two strings (lengths may leak, contents not).
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
