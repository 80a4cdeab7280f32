//! The one-time setup token: minted at every start while no user exists,
//! stored as a keyed hash only, printed to stderr inside a banner.

use crate::settings::Settings;
use crate::store::{setup, Db, StoreError, Ts};

/// Mints a token (replacing any earlier one) and returns it with its expiry.
pub async fn mint(db: &Db, s: &Settings) -> Result<(String, Ts), StoreError> {
    let token = super::secrets::random_token(32);
    let hash = crate::auth::keyed::setup_token(s, &token)
        .ok_or_else(|| StoreError::Conflict("Z4J_SECRET is not configured".into()))?;
    let expires = Ts::now().plus_seconds(s.first_boot_token_ttl_seconds);
    setup::replace_token(db, &hash, expires).await?;
    Ok((token, expires))
}

/// The base of the setup URL: `Z4J_PUBLIC_URL`, else the local address.
pub fn public_base(s: &Settings) -> String {
    if let Some(url) = &s.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = match s.bind_host.as_str() {
        "0.0.0.0" | "127.0.0.1" | "::" | "::1" | "" => "localhost".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    format!("http://{host}:{}", s.bind_port)
}

/// The 70-column box the operator copies the URL from.
pub fn banner(base: &str, token: &str, expires: Ts) -> String {
    const WIDTH: usize = 70;
    let lines = [
        "Open this URL in your browser to create the admin:".to_owned(),
        format!("{base}/setup?token={token}"),
        format!(
            "Token expires at: {} (UTC)",
            expires.0.format("%Y-%m-%dT%H:%M:%S+00:00")
        ),
        "Single-use. Restart the brain to generate a new one.".to_owned(),
        "For zero-log-exposure setup, use Z4J_BOOTSTRAP_ADMIN_*.".to_owned(),
    ];
    let inner = lines
        .iter()
        .map(|l| l.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(WIDTH - 2);
    let mut out = format!("╔{}╗\n", "═".repeat(inner));
    for l in &lines {
        let pad = inner - 1 - l.chars().count();
        out.push_str(&format!("║ {l}{}║\n", " ".repeat(pad)));
    }
    out.push_str(&format!("╚{}╝\n", "═".repeat(inner)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_is_boxed_and_carries_the_url() {
        let b = banner("http://localhost:7700", "t0k", Ts::now());
        let lines: Vec<&str> = b.lines().collect();
        assert!(lines[0].starts_with('╔') && lines[6].starts_with('╚'));
        assert!(lines.iter().all(|l| l.chars().count() == 70));
        assert!(b.contains("http://localhost:7700/setup?token=t0k"));
    }
}
