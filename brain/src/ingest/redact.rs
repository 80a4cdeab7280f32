//! Brain-side scrubbing of event objects (defence in depth, spec 6.3 step 1):
//! values under sensitive keys and strings that look like secrets (JWTs,
//! cloud and SaaS keys, credentialed URLs, private keys, e-mail addresses,
//! US SSNs) become `[REDACTED]`, long strings are cut to
//! `Z4J_MAX_PAYLOAD_SIZE_BYTES`, nesting deeper than 64 levels is replaced.
//! Key names match whole and case-insensitively; value patterns anywhere in
//! the string. The regex crate runs in linear time, so hostile strings cannot
//! make this slow.

use regex::{Regex, RegexSet};
use z4j_protocol::json::{JStr, Object, Value};

pub const REDACTED: &str = "[REDACTED]";
const MAX_DEPTH: usize = 64;
const MAX_KEY_CHARS: usize = 256;

/// Sensitive key names (whole key, case-insensitive).
const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "password_confirmation",
    "password_hash",
    "passwd",
    "pwd",
    "old_password",
    "new_password",
    "secrets?",
    "(client|webhook|hmac)_?secret",
    "token",
    "(access|refresh|id|api|bearer|session)_?token",
    "api_?key",
    "x[-_]api[-_]key",
    "authorization",
    "auth",
    "credentials",
    "cookie",
    "set[-_]cookie",
    "ssn",
    "social_security(_number)?",
    "credit_card(_number)?",
    "card_number",
    "cvv",
    "cvc",
];

/// Value shapes that are secrets or personal data wherever they appear.
const SENSITIVE_VALUES: &[&str] = &[
    r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", // JWT
    r"bearer\s+[A-Za-z0-9._-]{16,}",
    r"(sk|pk|rk)_(live|test)_[A-Za-z0-9]{24,}", // Stripe
    r"whsec_[A-Za-z0-9]{24,}",
    r"xox[bpa]-[0-9A-Za-z-]{10,}", // Slack
    r"gh[pos]_[A-Za-z0-9]{36}",    // GitHub
    r"github_pat_[A-Za-z0-9_]{82,}",
    r"(AKIA|ASIA)[0-9A-Z]{16}", // AWS key ids
    r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
    r"AIza[0-9A-Za-z_-]{35}",                    // Google API keys
    r"\bSK[0-9a-f]{32}\b",                       // Twilio
    r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", // SendGrid
    r"(postgres|postgresql|mysql|mariadb|mongodb(\+srv)?|redis|rediss|amqp|amqps)://[^:\s]+:[^@\s]+@[^\s/]+",
    r"-----BEGIN (RSA|EC|DSA|OPENSSH|PGP|ENCRYPTED|PRIVATE) (PRIVATE )?KEY-----",
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", // e-mail
    r"\b\d{3}-\d{2}-\d{4}\b",                          // US SSN
];

pub struct Redactor {
    max_string_bytes: usize,
    keys: RegexSet,
    extra_keys: Vec<Regex>,
    values: RegexSet,
}

fn whole_key(pattern: &str) -> String {
    format!("(?i)^(?:{pattern})$")
}

impl Redactor {
    /// `extra_keys`: `Z4J_REDACTION_EXTRA_KEY_PATTERNS`, regexes matched
    /// against whole keys, case-insensitively; one that does not compile is
    /// taken as a literal key name.
    pub fn new(max_string_bytes: usize, extra_keys: &[String]) -> Redactor {
        let compile_set =
            |patterns: Vec<String>| RegexSet::new(patterns).unwrap_or_else(|_| RegexSet::empty());
        Redactor {
            max_string_bytes,
            keys: compile_set(SENSITIVE_KEYS.iter().map(|k| whole_key(k)).collect()),
            extra_keys: extra_keys
                .iter()
                .filter_map(|p| {
                    Regex::new(&whole_key(p)).ok().or_else(|| {
                        tracing::warn!(pattern = %p, "redaction key pattern is not a valid regex; matching it literally");
                        Regex::new(&whole_key(&regex::escape(p))).ok()
                    })
                })
                .collect(),
            values: compile_set(SENSITIVE_VALUES.iter().map(|v| format!("(?i){v}")).collect()),
        }
    }

    pub fn redact_object(&self, obj: &Object) -> Object {
        match self.redact(&Value::Object(obj.clone()), 0) {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    fn is_sensitive(&self, key: &str) -> bool {
        key.chars().count() > MAX_KEY_CHARS
            || self.keys.is_match(key)
            || self.extra_keys.iter().any(|r| r.is_match(key))
    }

    fn redact(&self, v: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::str(REDACTED);
        }
        match v {
            Value::Str(s) if self.values.is_match(s.as_str()) => Value::str(REDACTED),
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
    fn secret_looking_values_are_replaced_wherever_they_are() {
        let r = Redactor::new(8192, &["tenant_.*".into(), "(unclosed".into()]);
        let out = r.redact_object(&obj(
            r#"{"a":"Bearer abcdefghijklmnop1234","b":"contact bob@example.com now","c":"postgres://u:pw@db/x",
                "d":"eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl","e":"AKIAABCDEFGHIJKLMNOP","f":"123-45-6789",
                "g":"plain text","TENANT_ID":"t","(unclosed":"x","h":["ghp_abcdefghijklmnopqrstuvwxyz0123456789"]}"#,
        ));
        let text =
            String::from_utf8(z4j_protocol::canonical::to_canonical(&Value::Object(out)).unwrap())
                .unwrap();
        assert_eq!(
            text,
            r#"{"(unclosed":"[REDACTED]","TENANT_ID":"[REDACTED]","a":"[REDACTED]","b":"[REDACTED]","c":"[REDACTED]","d":"[REDACTED]","e":"[REDACTED]","f":"[REDACTED]","g":"plain text","h":["[REDACTED]"]}"#
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
