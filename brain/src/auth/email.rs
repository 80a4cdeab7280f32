//! Email validation and canonical form (login, setup, bootstrap share them).

const SPECIAL_TLDS: &[&str] = &[
    "local",
    "localhost",
    "internal",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
    "arpa",
];

/// Validates and canonicalises: trimmed, lowercase local part, lowercase
/// IDNA-encoded domain. `None` when it is not an address.
pub fn canonical(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.chars().any(char::is_whitespace) || t.len() > 320 {
        return None;
    }
    let (local, domain) = t.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || local.contains('@') {
        return None;
    }
    if !domain.contains('.') && !SPECIAL_TLDS.contains(&domain.to_lowercase().as_str()) {
        return None;
    }
    let ascii_domain = match url::Host::parse(&domain.to_lowercase()).ok()? {
        url::Host::Domain(d) => d,
        _ => return None,
    };
    let tld = ascii_domain.rsplit('.').next().unwrap_or("");
    if !SPECIAL_TLDS.contains(&tld) && (ascii_domain.split('.').any(str::is_empty) || tld.len() < 2)
    {
        return None;
    }
    if local.len() > 64 || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return None;
    }
    Some(format!("{}@{}", local.to_lowercase(), ascii_domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonical(" Admin@Example.com ").as_deref(),
            Some("admin@example.com")
        );
        assert_eq!(canonical("ops@box.local").as_deref(), Some("ops@box.local"));
        assert_eq!(
            canonical("a@bücher.example").as_deref(),
            Some("a@xn--bcher-kva.example")
        );
        for bad in [
            "notanemail",
            "a b@c.com",
            "@x.com",
            "a@",
            "a@nodot",
            "a@b..com",
            "a..b@c.com",
        ] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }
}
