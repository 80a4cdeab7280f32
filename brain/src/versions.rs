//! The versions snapshot behind the dashboard's "Check for updates"
//! (dashboard spec 3.7): a bundled snapshot of the latest package versions,
//! replaced in this process's memory only when an operator asks the brain
//! to fetch `Z4J_VERSION_CHECK_URL`. Never fetched on its own: no polling,
//! no telemetry.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

/// One fetch: https only, 10 s in all, no redirects, at most 256 KiB.
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BYTES: usize = 256 * 1024;

const BUNDLED: &str = include_str!("../data/versions.json");

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub schema_version: i64,
    pub generated_at: String,
    pub generated_by: String,
    pub canonical_url: String,
    pub packages: BTreeMap<String, String>,
}

/// Why a check did not replace the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("remote version check is disabled (Z4J_VERSION_CHECK_URL is empty); the bundled snapshot is in use")]
    Disabled,
    #[error("Z4J_VERSION_CHECK_URL must use https:// (got {0:?})")]
    NotHttps(String),
    #[error("version check fetch failed: {0}")]
    Fetch(String),
    #[error("version check fetch returned HTTP {0}")]
    Status(u16),
    #[error("version check response exceeds {MAX_BYTES} bytes")]
    TooLarge,
    #[error("version check response is not a valid snapshot: {0}")]
    Invalid(String),
}

/// A snapshot document: an object with an integer `schema_version` ≥ 1
/// and a `packages` object (entries that are not strings are skipped;
/// unknown fields are ignored, so a newer schema still reads).
pub fn parse(bytes: &[u8]) -> Result<Snapshot, CheckError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| CheckError::Invalid(format!("not UTF-8: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| CheckError::Invalid(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CheckError::Invalid("the root is not an object".into()))?;
    let schema_version = obj
        .get("schema_version")
        .and_then(serde_json::Value::as_i64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| CheckError::Invalid("missing or invalid schema_version".into()))?;
    let packages = obj
        .get("packages")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| CheckError::Invalid("'packages' is not an object".into()))?
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect();
    let text_of = |k: &str| {
        obj.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Snapshot {
        schema_version,
        generated_at: text_of("generated_at"),
        generated_by: text_of("generated_by"),
        canonical_url: text_of("canonical_url"),
        packages,
    })
}

/// The snapshot built into the binary.
pub fn bundled() -> Snapshot {
    parse(BUNDLED.as_bytes()).unwrap_or_else(|e| {
        // A unit test parses it; this is for a broken build only.
        tracing::error!(error = %e, "the bundled versions snapshot does not parse");
        Snapshot {
            schema_version: 1,
            generated_at: String::new(),
            generated_by: String::new(),
            canonical_url: String::new(),
            packages: BTreeMap::new(),
        }
    })
}

/// An error with its causes ("error sending request" alone names none).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Fetches and parses one snapshot (any scheme: [`Versions::check`] is
/// where https is required).
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Snapshot, CheckError> {
    let work = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| CheckError::Fetch(chain(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(CheckError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CheckError::Fetch(chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(CheckError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body)
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| CheckError::Fetch(format!("timed out after {} s", TIMEOUT.as_secs())))?
}

/// Where the current snapshot came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Bundled,
    Remote {
        fetched_at: chrono::DateTime<chrono::Utc>,
        from: String,
    },
}

/// This process's snapshot.
pub struct Versions {
    current: RwLock<(Snapshot, Source)>,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            current: RwLock::new((bundled(), Source::Bundled)),
        }
    }
}

impl Versions {
    pub fn current(&self) -> (Snapshot, Source) {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One operator-initiated fetch of `url`; the snapshot is replaced only
    /// when it succeeds.
    pub async fn check(&self, url: &str) -> Result<(Snapshot, Source), CheckError> {
        if url.is_empty() {
            return Err(CheckError::Disabled);
        }
        if !url.starts_with("https://") {
            return Err(CheckError::NotHttps(url.to_owned()));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| CheckError::Fetch(e.to_string()))?;
        let snapshot = fetch(&client, url).await?;
        let next = (
            snapshot,
            Source::Remote {
                fetched_at: chrono::Utc::now(),
                from: url.to_owned(),
            },
        );
        match self.current.write() {
            Ok(mut g) => *g = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[test]
    fn the_bundled_snapshot_parses() {
        let b = bundled();
        assert_eq!(b.schema_version, 1);
        assert_eq!(b.packages.get("z4j").map(String::as_str), Some("1.13.0"));
    }

    #[test]
    fn documents_are_checked() {
        let ok = parse(br#"{"schema_version": 2, "packages": {"a": "1.0", "b": 3}, "x": 1}"#);
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.packages.len(), 1, "a non-string entry is skipped");
        for bad in [
            &b"[]"[..],
            br#"{"packages": {}}"#,
            br#"{"schema_version": 0, "packages": {}}"#,
            br#"{"schema_version": true, "packages": {}}"#,
            br#"{"schema_version": 1, "packages": []}"#,
            b"not json",
            b"\xff\xfe",
        ] {
            assert!(matches!(parse(bad), Err(CheckError::Invalid(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn check_refuses_empty_and_plain_http_without_a_request() {
        let server = MockServer::start().await;
        let v = Versions::default();
        assert_eq!(v.check("").await, Err(CheckError::Disabled));
        let url = format!("{}/versions.json", server.uri());
        assert!(matches!(v.check(&url).await, Err(CheckError::NotHttps(_))));
        assert_eq!(server.received_requests().await.map(|r| r.len()), Some(0));
        assert_eq!(v.current().1, Source::Bundled);
    }

    #[tokio::test]
    async fn fetch_reads_a_snapshot_and_refuses_bad_answers() {
        let server = MockServer::start().await;
        let client = reqwest::Client::new();
        let doc = r#"{"schema_version": 1, "packages": {"z4j": "9.9.9"}}"#;
        Mock::given(method("GET"))
            .and(wiremock::matchers::path("/ok"))
            .respond_with(ResponseTemplate::new(200).set_body_string(doc))
            .mount(&server)
            .await;
        Mock::given(wiremock::matchers::path("/missing"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        Mock::given(wiremock::matchers::path("/moved"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", "/ok"))
            .mount(&server)
            .await;
        Mock::given(wiremock::matchers::path("/big"))
            .respond_with(ResponseTemplate::new(200).set_body_string(" ".repeat(MAX_BYTES + 1)))
            .mount(&server)
            .await;
        let got = fetch(&client, &format!("{}/ok", server.uri())).await;
        assert_eq!(
            got.map(|s| s.packages.get("z4j").cloned()),
            Ok(Some("9.9.9".into()))
        );
        assert_eq!(
            fetch(&client, &format!("{}/missing", server.uri())).await,
            Err(CheckError::Status(404))
        );
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        assert_eq!(
            fetch(&no_redirects, &format!("{}/moved", server.uri())).await,
            Err(CheckError::Status(302))
        );
        assert_eq!(
            fetch(&client, &format!("{}/big", server.uri())).await,
            Err(CheckError::TooLarge)
        );
    }
}
