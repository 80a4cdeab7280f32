//! RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) and RFC 4648 base32, for the
//! second factor (http-api 3.1).

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const PERIOD: u64 = 30;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in bytes {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// The code (`digits` long) for a time step.
pub fn code(secret: &[u8], step: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    bin % 10u32.pow(digits)
}

/// The step of a 6-digit code valid at `now_secs` (one step of skew each
/// way) that is newer than `last_step`; `None` for a wrong or replayed code.
pub fn accept(
    secret: &[u8],
    code_text: &str,
    now_secs: u64,
    last_step: Option<i64>,
) -> Option<i64> {
    if code_text.len() != 6 || !code_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code_text.parse().ok()?;
    let now = now_secs / PERIOD;
    let mut matched = None;
    // Every candidate is computed (no early exit on the code comparison).
    for step in [now.saturating_sub(1), now, now + 1] {
        if code(secret, step, 6) == given {
            matched = Some(step as i64);
        }
    }
    matched.filter(|s| last_step.is_none_or(|l| *s > l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59u64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            assert_eq!(code(secret, t / PERIOD, 8), want, "T={t}");
        }
    }

    #[test]
    fn base32_round_trip_and_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").as_deref(), Some(&b"foobar"[..]));
        let k = [7u8; 20];
        assert_eq!(base32(&k).len(), 32);
        assert_eq!(base32_decode(&base32(&k)).as_deref(), Some(&k[..]));
    }

    #[test]
    fn skew_and_replay() {
        let s = b"12345678901234567890";
        let now = 1_000_000_000u64;
        let step = (now / PERIOD) as i64;
        let c = format!("{:06}", code(s, step as u64, 6));
        assert_eq!(accept(s, &c, now, None), Some(step));
        assert_eq!(accept(s, &c, now, Some(step)), None, "replay");
        let prev = format!("{:06}", code(s, step as u64 - 1, 6));
        assert_eq!(accept(s, &prev, now, None), Some(step - 1), "one step back");
        let old = format!("{:06}", code(s, step as u64 - 2, 6));
        assert_eq!(accept(s, &old, now, None), None, "two steps back");
        assert_eq!(accept(s, "12345", now, None), None);
    }
}
