//! Request plumbing shared by the transports: the client address behind
//! trusted proxies, bearer tokens, sliding-window budgets, the JSON error
//! envelope, query-string parameters, bounded reads of outbound responses. Below every feature
//! module: nothing here imports one.

pub mod budget;
pub mod client_ip;
pub mod error;
pub mod query;

pub use budget::SlidingWindow;

use axum::http::HeaderMap;

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// case-insensitively, surrounding whitespace ignored).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(|c: char| c.is_whitespace())?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads at most `cap` bytes of a response body, then stops (dropping the
/// response closes the connection): a hostile server cannot stream more
/// into the brain. `true` when the body went on past the cap.
pub async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing_is_lenient_about_case_and_spacing() {
        let mut h = HeaderMap::new();
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bEaReR    abc   ", Some("abc")),
            ("  bearer\tabc", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer   ", None),
            ("abc", None),
        ] {
            h.insert("authorization", HeaderValue::from_static(value));
            assert_eq!(bearer_token(&h), want, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
