//! The password policy applied on every write path (never at login).

pub const MAX_LENGTH: usize = 256;
/// Passphrases this long skip the composition rule.
pub const PASSPHRASE_LENGTH: usize = 16;
pub const REQUIRED_CLASSES: usize = 3;
pub const CLASS_NAMES: [&str; 4] = ["lowercase", "uppercase", "digit", "symbol"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyViolation {
    pub reason: &'static str,
    pub message: String,
}

/// Checks `password` against the policy with minimum length `min_length`.
pub fn check(password: &str, min_length: usize) -> Result<(), PolicyViolation> {
    let len = password.chars().count();
    if len < min_length {
        return Err(PolicyViolation {
            reason: "password_too_short",
            message: format!("password must be at least {min_length} characters"),
        });
    }
    if len > MAX_LENGTH {
        return Err(PolicyViolation {
            reason: "password_too_long",
            message: format!("password must be at most {MAX_LENGTH} characters"),
        });
    }
    if len < PASSPHRASE_LENGTH && classes(password) < REQUIRED_CLASSES {
        return Err(PolicyViolation {
            reason: "password_too_simple",
            message: "password must contain at least 3 of: lowercase, uppercase, digits, symbols (or use a 16+ character passphrase)".into(),
        });
    }
    if is_common(password) {
        return Err(PolicyViolation {
            reason: "password_in_breach_list",
            message: "password is too common; choose another one".into(),
        });
    }
    Ok(())
}

fn classes(p: &str) -> usize {
    let lower = p.chars().any(char::is_lowercase);
    let upper = p.chars().any(char::is_uppercase);
    let digit = p.chars().any(|c| c.is_ascii_digit());
    let symbol = p
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace());
    [lower, upper, digit, symbol]
        .into_iter()
        .filter(|b| *b)
        .count()
}

/// Passwords seen in every breach corpus, compared case-insensitively.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "password12345",
    "password123456",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "p@ssword1",
    "p@ssw0rd123",
    "123456789012",
    "1234567890",
    "12345678",
    "123456789",
    "1234567890ab",
    "0123456789",
    "qwerty",
    "qwerty123",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "qwertyuiop",
    "qwertyuiop123",
    "asdfghjkl",
    "asdfghjkl123",
    "zxcvbnm123",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "q1w2e3r4t5y6",
    "iloveyou",
    "iloveyou123",
    "letmein",
    "letmein123",
    "letmein1234",
    "welcome",
    "welcome1",
    "welcome123",
    "welcome1234",
    "welcome12345",
    "changeme",
    "changeme1",
    "changeme123",
    "changeme1234",
    "changeme12345",
    "admin",
    "admin123",
    "admin1234",
    "admin12345",
    "administrator",
    "administrator1",
    "root1234",
    "toor1234",
    "default",
    "default123",
    "secret",
    "secret123",
    "secret1234",
    "trustno1",
    "trustno1234",
    "monkey123",
    "dragon123",
    "football123",
    "baseball123",
    "superman123",
    "batman123",
    "master123",
    "sunshine123",
    "princess123",
    "shadow123",
    "abc123456",
    "abcd1234",
    "abcdef123456",
    "aa123456789",
    "test1234",
    "test12345",
    "testtest",
    "z4jadmin",
    "z4jpassword",
    "celeryadmin",
];

const SEASONAL_BASES: &[&str] = &[
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "password",
    "welcome",
    "admin",
    "letmein",
    "changeme",
    "company",
    "z4j",
    "celery",
    "redis",
    "rabbitmq",
    "django",
    "flask",
    "fastapi",
    "python",
    "postgres",
    "qwerty",
];

fn is_common(password: &str) -> bool {
    let p = password.to_lowercase();
    if COMMON.contains(&p.as_str()) {
        return true;
    }
    // base word + year (2015..2029, or its last two digits) + optional suffix
    let stem = p.trim_end_matches(['!', '#', '$', '*', '@']);
    let suffix_len = p.len() - stem.len();
    if suffix_len > 2 {
        return false;
    }
    SEASONAL_BASES.iter().any(|base| {
        stem.strip_prefix(base).is_some_and(|year| {
            matches!(year.parse::<u32>(), Ok(y) if (year.len() == 4 && (2015..=2029).contains(&y))
                || (year.len() == 2 && (15..=29).contains(&y)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        assert_eq!(
            check("Password1234", 12).unwrap_err().reason,
            "password_in_breach_list"
        );
        assert_eq!(
            check("abcdefghijkl", 12).unwrap_err().reason,
            "password_too_simple"
        );
        assert_eq!(
            check("Abcdef1!x", 12).unwrap_err().reason,
            "password_too_short"
        );
        assert!(check("Tr0ub4dor&3xyz", 12).is_ok());
        assert_eq!(
            check("Short-Pass-1!", 16).unwrap_err().message,
            "password must be at least 16 characters"
        );
        assert_eq!(
            check("Summer2024!", 8).unwrap_err().reason,
            "password_in_breach_list"
        );
        assert_eq!(
            check("z4j2026", 7).unwrap_err().reason,
            "password_too_simple"
        );
        assert_eq!(check("Celery24#x", 8).map_err(|v| v.reason), Ok(()));
        assert_eq!(
            check(&"a".repeat(257), 8).unwrap_err().reason,
            "password_too_long"
        );
        assert!(check("correct horse battery staple", 8).is_ok());
    }
}
