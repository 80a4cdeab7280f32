//! Brain-side scrubbing of event objects (defence in depth, spec 6.3 step 1):
//! values under sensitive keys become `[REDACTED]`, long strings are cut to
//! `Z4J_MAX_PAYLOAD_SIZE_BYTES`, and nesting deeper than 64 levels is
//! replaced. (Value-shape patterns such as JWTs are the agent's job today;
//! see specs/decisions.md G3.)

use z4j_protocol::json::{JStr, Object, Value};

pub const REDACTED: &str = "[REDACTED]";
const MAX_DEPTH: usize = 64;
const MAX_KEY_CHARS: usize = 256;

/// Key names (full match, case-insensitive) whose values are never stored.
const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "secrets",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "authorization",
    "auth",
    "credentials",
    "credential",
    "cookie",
    "set-cookie",
    "session",
    "sessionid",
    "ssn",
    "cvv",
    "cvc",
    "card_number",
    "cardnumber",
    "credit_card",
    "creditcard",
    "pan",
    "pin",
];

pub struct Redactor {
    max_string_bytes: usize,
    extra_keys: Vec<String>,
}

impl Redactor {
    /// `extra_keys`: further key names (compared case-insensitively) from
    /// `Z4J_REDACTION_EXTRA_KEY_PATTERNS`, taken literally.
    pub fn new(max_string_bytes: usize, extra_keys: &[String]) -> Redactor {
        Redactor {
            max_string_bytes,
            extra_keys: extra_keys.iter().map(|k| k.to_lowercase()).collect(),
        }
    }

    pub fn redact_object(&self, obj: &Object) -> Object {
        match self.redact(&Value::Object(obj.clone()), 0) {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    fn is_sensitive(&self, key: &str) -> bool {
        if key.chars().count() > MAX_KEY_CHARS {
            return true;
        }
        let lower = key.to_lowercase();
        SENSITIVE_KEYS.contains(&lower.as_str()) || self.extra_keys.contains(&lower)
    }

    fn redact(&self, v: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::str(REDACTED);
        }
        match v {
            Value::Str(s) => Value::Str(self.cut(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.redact(i, depth + 1)).collect())
            }
            Value::Object(o) => {
                let mut out = Vec::with_capacity(o.len());
                for (k, val) in o.iter() {
                    let red = if self.is_sensitive(k.as_str()) {
                        Value::str(REDACTED)
                    } else {
                        self.redact(val, depth + 1)
                    };
                    out.push((k.clone(), red));
                }
                Value::Object(Object::from_entries(out))
            }
            other => other.clone(),
        }
    }

    fn cut(&self, s: &JStr) -> JStr {
        let text = s.as_str();
        if text.len() <= self.max_string_bytes {
            return s.clone();
        }
        let mut end = self.max_string_bytes;
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        let more = text.len() - end;
        JStr::new(format!("{}[...{more} more bytes truncated]", &text[..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use z4j_protocol::parse;

    fn obj(text: &str) -> Object {
        match parse(text.as_bytes()) {
            Ok(Value::Object(o)) => o,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn sensitive_keys_are_replaced_at_any_depth() {
        let r = Redactor::new(8192, &["X-Internal".into()]);
        let out = r.redact_object(&obj(
            r#"{"data":{"kwargs":{"Password":"p","nested":[{"api_key":"k"}],"x-internal":1,"ok":"v"}}}"#,
        ));
        let text =
            String::from_utf8(z4j_protocol::canonical::to_canonical(&Value::Object(out)).unwrap())
                .unwrap();
        assert_eq!(
            text,
            r#"{"data":{"kwargs":{"Password":"[REDACTED]","nested":[{"api_key":"[REDACTED]"}],"ok":"v","x-internal":"[REDACTED]"}}}"#
        );
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let r = Redactor::new(5, &[]);
        let out = r.redact_object(&obj(r#"{"s":"abcdé€xyz"}"#));
        assert_eq!(
            out.get("s").and_then(Value::as_str),
            Some("abcd[...8 more bytes truncated]")
        );
    }

    #[test]
    fn deep_nesting_is_replaced() {
        let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
        let r = Redactor::new(8192, &[]);
        let out = r.redact_object(&obj(&format!(r#"{{"d":{deep}}}"#)));
        let text =
            String::from_utf8(z4j_protocol::canonical::to_canonical(&Value::Object(out)).unwrap())
                .unwrap();
        assert!(text.contains(REDACTED) && !text.contains('1'));
    }
}
