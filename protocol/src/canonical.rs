//! Canonical JSON exactly as `z4j_core.transport.frames.canonical_json`
//! composes it: Python `json.dumps(sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False, allow_nan=False)` encoded as UTF-8.

use crate::json::{Int, JStr, Object, Value};
use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Python: `ValueError: Out of range float values are not JSON compliant`.
    #[error("Out of range float values are not JSON compliant")]
    NonFiniteFloat,
    /// Python: `UnicodeEncodeError: ... surrogates not allowed`.
    #[error("'utf-8' codec can't encode character: surrogates not allowed")]
    LoneSurrogate,
}

/// Canonical bytes of a value.
pub fn to_canonical(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(v, &mut out)?;
    Ok(out)
}

/// Appends the canonical form of `v` to `out`. On error `out` may hold a
/// partial rendering; callers discard it.
pub fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_int(i, out),
        Value::Float(f) => write_float(*f, out)?,
        Value::Str(s) => write_jstr(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(o) => write_object(o, out)?,
    }
    Ok(())
}

fn write_object(o: &Object, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    out.push(b'{');
    for (i, (k, v)) in o.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_jstr(k, out)?;
        out.push(b':');
        write_value(v, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_int(i: &Int, out: &mut Vec<u8>) {
    match i {
        Int::Small(v) => {
            let mut buf = [0u8; 20];
            out.extend_from_slice(format_i64(*v, &mut buf));
        }
        Int::Big(s) => out.extend_from_slice(s.as_bytes()),
    }
}

fn format_i64(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

fn write_jstr(s: &JStr, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if s.has_lone_surrogate() {
        return Err(CanonicalError::LoneSurrogate);
    }
    if s.is_plain() {
        // Nothing to escape: the parser saw every byte of it.
        out.reserve(s.as_str().len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_str().as_bytes());
        out.push(b'"');
    } else {
        write_str(s.as_str(), out);
    }
    Ok(())
}

/// Writes a JSON string with Python's `ensure_ascii=False` escaping.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(i) = crate::scan::find_special(rest) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Python `repr(float)`; refuses NaN and infinities like `allow_nan=False`.
pub fn write_float(x: f64, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let text = python_float_repr(x).ok_or(CanonicalError::NonFiniteFloat)?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// `repr(x)` as CPython prints it, or `None` for NaN and infinities.
pub fn python_float_repr(x: f64) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    let mut s = String::with_capacity(24);
    if x.is_sign_negative() {
        s.push('-');
    }
    if x == 0.0 {
        s.push_str("0.0");
        return Some(s);
    }
    // `{:e}` gives the shortest round-tripping digit count. When two strings
    // of that length are equally close (an exact decimal tie) it may pick
    // the upper one; CPython rounds half to even, and so does Rust's
    // fixed-precision formatting, so re-render at that precision.
    let shortest = format!("{:e}", x.abs());
    let n_digits = shortest
        .split_once('e')?
        .0
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    let sci = format!("{:.prec$e}", x.abs(), prec = n_digits.saturating_sub(1));
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let p = exp + 1; // value = 0.d1d2..dn * 10^p
    if !(-3..=16).contains(&p) {
        s.push_str(&digits[..1]);
        if n > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let e = p - 1;
        let _ = write!(s, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if p <= 0 {
        s.push_str("0.");
        for _ in 0..-p {
            s.push('0');
        }
        s.push_str(&digits);
    } else if p >= n {
        s.push_str(&digits);
        for _ in 0..(p - n) {
            s.push('0');
        }
        s.push_str(".0");
    } else {
        s.push_str(&digits[..p as usize]);
        s.push('.');
        s.push_str(&digits[p as usize..]);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python_examples() {
        let cases = [
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.0001, "0.0001"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (123456789012345.6, "123456789012345.6"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (9999999999999998.0, "9999999999999998.0"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x).as_deref(), Some(want), "{x:e}");
        }
        assert_eq!(python_float_repr(f64::NAN), None);
    }

    proptest::proptest! {
        /// A string read without escapes is written as it is; the result is
        /// the same as scanning it, whichever path the parser took.
        #[test]
        fn parsed_strings_write_as_scanned(s in "(\\PC|[\"\\\\\u{0}-\u{1f}])*") {
            let mut wire = Vec::new();
            write_str(&s, &mut wire);
            let parsed = crate::json::parse(&wire).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(to_canonical(&parsed).ok(), Some(wire));
        }
    }

    #[test]
    fn plain_strings_are_written_verbatim() {
        let v = crate::json::parse("{\"k\":\"é a/b\",\"e\":\"x\\ny\"}".as_bytes()).unwrap();
        let o = v.as_object().unwrap();
        let Some(Value::Str(k)) = o.get("k") else {
            panic!()
        };
        let Some(Value::Str(e)) = o.get("e") else {
            panic!()
        };
        assert!(k.is_plain() && !e.is_plain() && !JStr::new("x").is_plain());
        assert_eq!(
            String::from_utf8(to_canonical(&v).unwrap()).unwrap(),
            "{\"e\":\"x\\ny\",\"k\":\"é a/b\"}"
        );
    }

    #[test]
    fn escapes_only_what_python_escapes() {
        let mut out = Vec::new();
        write_str("a\"\\/\u{7f}\u{2028}é\u{1}\u{1f}\u{8}\u{c}", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"\\\\/\u{7f}\u{2028}é\\u0001\\u001f\\b\\f\""
        );
    }
}
