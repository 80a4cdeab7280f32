//! Secrets inside notification channel configs, encrypted at rest
//! (storage spec 1.7): `z4jenc1:` + base64(nonce ‖ ciphertext ‖ tag),
//! AES-256-GCM under a key derived from `Z4J_SECRET` with HKDF-SHA256.
//! Values without the prefix are plain JSON (rows written before
//! encryption); every `Z4J_PREVIOUS_SECRETS` entry is tried on read.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

const PREFIX: &str = "z4jenc1:";
const SALT: &[u8] = b"z4j-secret-fields-salt-v1";
pub const CHANNEL_CONFIG: &str = "notification_channels.config";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no Z4J_SECRET to encrypt channel secrets with")]
    NoSecret,
    #[error("a stored channel config cannot be decrypted with Z4J_SECRET or Z4J_PREVIOUS_SECRETS")]
    Undecryptable,
}

fn cipher(master: &str, purpose: &str) -> Option<Aes256Gcm> {
    let info = format!("z4j-secret-field:{purpose}");
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(SALT), master.as_bytes())
        .expand(info.as_bytes(), &mut key)
        .ok()?;
    Aes256Gcm::new_from_slice(&key).ok()
}

pub fn seal(master: Option<&str>, purpose: &str, plain: &str) -> Result<String, SealError> {
    let c = cipher(master.ok_or(SealError::NoSecret)?, purpose).ok_or(SealError::NoSecret)?;
    let nonce: [u8; 12] = rand::random();
    let aad = format!("z4j-secret-field:{purpose}");
    let ct = c
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SealError::NoSecret)?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ct);
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

pub fn open<'a>(
    masters: impl IntoIterator<Item = &'a str>,
    purpose: &str,
    stored: &str,
) -> Result<String, SealError> {
    let Some(b64) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_owned());
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| SealError::Undecryptable)?;
    if blob.len() < 12 + 16 {
        return Err(SealError::Undecryptable);
    }
    let (nonce, ct) = blob.split_at(12);
    let aad = format!("z4j-secret-field:{purpose}");
    for master in masters {
        let Some(c) = cipher(master, purpose) else {
            continue;
        };
        if let Ok(plain) = c.decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.as_bytes(),
            },
        ) {
            return String::from_utf8(plain).map_err(|_| SealError::Undecryptable);
        }
    }
    Err(SealError::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_rotation_and_tamper() {
        let sealed = seal(Some("old-secret"), CHANNEL_CONFIG, r#"{"url":"https://x"}"#).unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("https://x"));
        // Readable while the old secret is a previous one.
        assert_eq!(
            open(["new-secret", "old-secret"], CHANNEL_CONFIG, &sealed).unwrap(),
            r#"{"url":"https://x"}"#
        );
        assert!(open(["new-secret"], CHANNEL_CONFIG, &sealed).is_err());
        // Bound to its purpose.
        assert!(open(["old-secret"], "user_channels.config", &sealed).is_err());
        // One ciphertext character changed (inside the nonce/ciphertext).
        let i = PREFIX.len() + 20;
        let swapped = if &sealed[i..=i] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &sealed[..i], &sealed[i + 1..]);
        assert!(open(["old-secret"], CHANNEL_CONFIG, &tampered).is_err());
        // Legacy plain rows read as they are.
        assert_eq!(open(["s"], CHANNEL_CONFIG, "{}").unwrap(), "{}");
    }
}
