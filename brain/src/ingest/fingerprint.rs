//! A failure's fingerprint (dashboard spec 3.4): the same logical failure
//! hashes to the same 32 hex digits, so failures group into issues. It must
//! equal the reference's byte for byte, because operators copy fingerprints
//! into automation rules and keep them across a migration; the unit tests'
//! vectors come from the reference 1.13.0.
//!
//! Parts, joined by newlines and hashed with SHA-256: the exception with its
//! noise stripped (addresses, UUIDs, object reprs, long numbers), then the
//! deepest five `basename:line:function` frames of the traceback, or, when
//! it has none, its first 2 000 characters after noise stripping.

use regex::Regex;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const MAX_FRAMES: usize = 5;
const FALLBACK_CHARS: usize = 2000;

struct Patterns {
    frame: Regex,
    hex: Regex,
    uuid: Regex,
    object: Regex,
    digits: Regex,
    word_or_dot: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static P: OnceLock<Option<Patterns>> = OnceLock::new();
    P.get_or_init(|| {
        Some(Patterns {
            frame: Regex::new(r#"File "([^"]+)", line (\d+), in (\S+)"#).ok()?,
            hex: Regex::new(r"0x[0-9a-fA-F]+").ok()?,
            uuid: Regex::new(
                r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            )
            .ok()?,
            object: Regex::new(r"<([\w.]+) object at [^>]+>").ok()?,
            digits: Regex::new(r"\d+").ok()?,
            word_or_dot: Regex::new(r"^[\w.]$").ok()?,
        })
    })
    .as_ref()
}

/// Runs of four or more digits with no word character or dot on either
/// side become `N` (the reference's look-around, which `regex` lacks: a
/// match can only be a whole run of digits, since digits are word
/// characters).
fn long_numbers(p: &Patterns, text: &str) -> String {
    let touches =
        |c: Option<char>| c.is_some_and(|c| p.word_or_dot.is_match(c.encode_utf8(&mut [0u8; 4])));
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in p.digits.find_iter(text) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if m.as_str().chars().count() >= 4 && !touches(before) && !touches(after) {
            out.push_str(&text[last..m.start()]);
            out.push('N');
            last = m.end();
        }
    }
    out.push_str(&text[last..]);
    out
}

fn strip_noise(p: &Patterns, text: &str) -> String {
    let text = p.hex.replace_all(text, "0xADDR");
    let text = p.uuid.replace_all(&text, "UUID");
    let text = p.object.replace_all(&text, "<$1 object>");
    long_numbers(p, &text)
}

/// The last path component, `\` read as `/`.
fn basename(path: &str) -> String {
    let path = path.replace('\\', "/");
    path.rsplit('/')
        .find(|s| !s.is_empty() && *s != ".")
        .unwrap_or_default()
        .to_owned()
}

/// The fingerprint of a failure's exception and traceback (their full text,
/// before storage truncation), or `None` when both are blank.
pub fn fingerprint(exception: Option<&str>, traceback: Option<&str>) -> Option<String> {
    let p = patterns()?;
    let exc = exception.unwrap_or_default().trim();
    let tb = traceback.unwrap_or_default();
    if exc.is_empty() && tb.trim().is_empty() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    if !exc.is_empty() {
        parts.push(strip_noise(p, exc));
    }
    let frames: Vec<String> = p
        .frame
        .captures_iter(tb)
        .map(|c| format!("{}:{}:{}", basename(&c[1]), &c[2], &c[3]))
        .collect();
    if !frames.is_empty() {
        parts.extend(
            frames[frames.len().saturating_sub(MAX_FRAMES)..]
                .iter()
                .cloned(),
        );
    } else if !tb.trim().is_empty() {
        parts.push(
            strip_noise(p, tb.trim())
                .chars()
                .take(FALLBACK_CHARS)
                .collect(),
        );
    }
    let digest = Sha256::digest(parts.join("\n").as_bytes());
    Some(hex::encode(digest)[..32].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TB: &str = "Traceback (most recent call last):\n  File \"/app/venv/lib/site.py\", line 10, in run\n    x()\n  File \"/app/jobs/orders.py\", line 42, in charge\n    pay()\n  File \"C:\\\\srv\\\\pay.py\", line 7, in pay\n    raise ValueError\nValueError: order 12345 failed";

    /// Outputs of the reference's `compute_fingerprint` (z4j 1.13.0).
    #[test]
    fn matches_the_reference() {
        let frames6 = "File \"a.py\", line 1, in f\nFile \"b.py\", line 2, in g\nFile \"c.py\", line 3, in h\nFile \"d.py\", line 4, in i\nFile \"e.py\", line 5, in j\nFile \"f.py\", line 6, in k";
        let long_tb = "y".repeat(2500);
        let line43 = TB.replace("line 42", "line 43");
        let cases: [(Option<&str>, Option<&str>, Option<&str>); 10] = [
            (Some("ValueError: order 12345 failed at 0xdeadbeef"), Some(TB), Some("3f4ed4267841aaae00bb2c2e1be28e3a")),
            (Some("ValueError: order 67890 failed at 0x1f"), Some(TB), Some("3f4ed4267841aaae00bb2c2e1be28e3a")),
            (Some("ValueError: order 12345 failed at 0xdeadbeef"), Some(&line43), Some("a674cb969e7592fb068491e2a763cca2")),
            (
                Some("KeyError: <app.Order object at 0x7f3a> id 3f2504e0-4f89-11d3-9a0c-0305e82c3301 v1.2345 a12345 123"),
                None,
                Some("8ad9292529c2e0ba068577896278070f"),
            ),
            (None, Some("no frames here 123456 and 0xabc"), Some("5a64ea079d938430b24a93a422d15a19")),
            (Some("  "), Some("  "), None),
            (Some(""), None, None),
            (Some("x"), Some(frames6), Some("88111e2296dad7148b54b2de8a59a486")),
            (Some("E ١٢٣٤ x"), None, Some("23dba7f2e74a7ba0aadd14cb3c3aefb6")),
            (Some("t"), Some(&long_tb), Some("4f882e4a6ed3554cf60286ba98234695")),
        ];
        for (exc, tb, want) in cases {
            assert_eq!(
                fingerprint(exc, tb).as_deref(),
                want,
                "{exc:?} / {:?}",
                tb.map(|t| t.chars().take(30).collect::<String>())
            );
        }
    }

    #[test]
    fn long_numbers_need_free_edges() {
        let Some(p) = patterns() else {
            panic!("patterns compile")
        };
        assert_eq!(
            long_numbers(p, "id 12345, v1.2345 a12345 1234. 123"),
            "id N, v1.2345 a12345 1234. 123"
        );
        assert_eq!(long_numbers(p, "1234"), "N");
    }
}
