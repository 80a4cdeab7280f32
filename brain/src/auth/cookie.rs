//! Session cookie values, byte-compatible with the reference (itsdangerous
//! `URLSafeTimedSerializer`, salt `z4j-session-v1`, django-concat key,
//! HMAC-SHA1): `b64(payload).b64(timestamp).b64(signature)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use uuid::Uuid;

const SALT: &[u8] = b"z4j-session-v1";

fn derived_key(secret: &str) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(SALT);
    h.update(b"signer");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn signature(secret: &str, signed_part: &str) -> String {
    let key = derived_key(secret);
    let mut mac = match Hmac::<Sha1>::new_from_slice(&key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(signed_part.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn encode_timestamp(secs: u64) -> String {
    let bytes = secs.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    URL_SAFE_NO_PAD.encode(&bytes[first..])
}

/// Signs a cookie for session `sid` at `now_secs`.
pub fn sign(secret: &str, sid: Uuid, now_secs: u64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!("{{\"sid\":\"{sid}\"}}"));
    let signed_part = format!("{payload}.{}", encode_timestamp(now_secs));
    let sig = signature(secret, &signed_part);
    format!("{signed_part}.{sig}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    Malformed,
    BadSignature,
    Expired,
}

/// Verifies under the current secret, then each previous one; the age of
/// the signature must not exceed `max_age_secs`.
pub fn verify(
    secrets: &[&str],
    value: &str,
    now_secs: u64,
    max_age_secs: u64,
) -> Result<Uuid, CookieError> {
    let (signed_part, sig) = value.rsplit_once('.').ok_or(CookieError::Malformed)?;
    let (payload_b64, ts_b64) = signed_part.rsplit_once('.').ok_or(CookieError::Malformed)?;
    let valid = secrets.iter().any(|s| {
        let expected = signature(s, signed_part);
        protocol_ct_eq(&expected, sig)
    });
    if !valid {
        return Err(CookieError::BadSignature);
    }
    let ts_bytes = URL_SAFE_NO_PAD
        .decode(ts_b64)
        .map_err(|_| CookieError::Malformed)?;
    if ts_bytes.len() > 8 {
        return Err(CookieError::Malformed);
    }
    let ts = ts_bytes
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if ts > now_secs || now_secs - ts > max_age_secs {
        return Err(CookieError::Expired);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| CookieError::Malformed)?;
    #[derive(serde::Deserialize)]
    struct P {
        sid: Uuid,
    }
    serde_json::from_slice::<P>(&payload)
        .map(|p| p.sid)
        .map_err(|_| CookieError::Malformed)
}

fn protocol_ct_eq(a: &str, b: &str) -> bool {
    z4j_protocol::secret::ct_eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_rotation_and_expiry() {
        let sid = Uuid::new_v4();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = sign(&a, sid, 1_000_000);
        assert_eq!(verify(&[&a], &c, 1_000_010, 60), Ok(sid));
        assert_eq!(verify(&[&b, &a], &c, 1_000_010, 60), Ok(sid));
        assert_eq!(
            verify(&[&b], &c, 1_000_010, 60),
            Err(CookieError::BadSignature)
        );
        assert_eq!(verify(&[&a], &c, 1_000_061, 60), Err(CookieError::Expired));
        assert_eq!(verify(&[&a], "garbage", 1, 60), Err(CookieError::Malformed));
        let mut tampered = c.clone();
        tampered.insert(0, 'x');
        assert_eq!(
            verify(&[&a], &tampered, 1_000_010, 60),
            Err(CookieError::BadSignature)
        );
    }

    /// The value real itsdangerous 2.2 produces for this secret, sid and
    /// timestamp (`URLSafeTimedSerializer("s"*32, salt="z4j-session-v1")`).
    #[test]
    fn byte_identical_to_itsdangerous() {
        let sid = Uuid::parse_str("7d3f6a2e-9b1c-4e5f-8a7b-6c5d4e3f2a10").unwrap();
        let c = sign(&"s".repeat(32), sid, 1_700_000_000);
        assert_eq!(
            c,
            "eyJzaWQiOiI3ZDNmNmEyZS05YjFjLTRlNWYtOGE3Yi02YzVkNGUzZjJhMTAifQ.ZVPxAA.A0AUWHg1TYMFp6rACXuDRKuLzTQ"
        );
        assert_eq!(verify(&[&"s".repeat(32)], &c, 1_700_000_001, 10), Ok(sid));
    }
}
