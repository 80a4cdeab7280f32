//! The signatures of the audit chain (specs/decisions.md U1): each row's
//! HMAC covers its fields and the previous row's HMAC; the chain state
//! (head, prune point, count) carries its own MAC. Keys are the master
//! secrets: `Z4J_SECRET` signs, `Z4J_PREVIOUS_SECRETS` still verify.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const ROW_DOMAIN: &[u8] = b"z4j/audit-chain/row/v2\0";
const STATE_DOMAIN: &[u8] = b"z4j/audit-chain/state/v1\0";
const KEY_ID_DOMAIN: &[u8] = b"z4j/audit-chain/key-id/v1\0";

fn mac(key: &str, domain: &[u8], body: &[u8]) -> String {
    let mut m = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    m.update(domain);
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// Names a key without revealing it.
pub fn key_id(key: &str) -> String {
    mac(key, KEY_ID_DOMAIN, b"")
}

/// The signed fields of one row. Timestamps as UTC ISO-8601 with six
/// fractional digits and `+00:00`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFields {
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub result: String,
    pub outcome: Option<String>,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: Value,
    pub occurred_at: String,
    pub prev_row_hmac: Option<String>,
    pub hmac_key_id: String,
}

/// Canonical JSON: keys sorted at every level (serde_json's map is
/// ordered), no spaces, non-ASCII as UTF-8.
fn canonical(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

pub fn row_hmac(key: &str, r: &RowFields) -> String {
    let p = json!({
        "version": 2,
        "action": r.action,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "result": r.result,
        "outcome": r.outcome,
        "user_id": r.user_id,
        "project_id": r.project_id,
        "source_ip": r.source_ip,
        "user_agent": r.user_agent,
        "metadata": r.metadata,
        "occurred_at": r.occurred_at,
        "prev_row_hmac": r.prev_row_hmac,
        "hmac_key_id": r.hmac_key_id,
    });
    mac(key, ROW_DOMAIN, &canonical(&p))
}

/// The chain state a MAC covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub head_id: Option<i64>,
    pub head_row_hmac: Option<String>,
    pub head_occurred_at: Option<String>,
    pub prune_row_hmac: Option<String>,
    pub row_count: i64,
}

pub fn state_mac(key: &str, s: &State) -> String {
    let p = json!({
        "format_version": 1,
        "head_id": s.head_id,
        "head_row_hmac": s.head_row_hmac,
        "head_occurred_at": s.head_occurred_at,
        "prune_row_hmac": s.prune_row_hmac,
        "row_count": s.row_count,
    });
    mac(key, STATE_DOMAIN, &canonical(&p))
}

/// `2026-01-02T03:04:05.000006+00:00`.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RowFields {
        RowFields {
            action: "agent.mint".into(),
            target_type: Some("agent".into()),
            target_id: Some("a1".into()),
            result: "success".into(),
            outcome: Some("allow".into()),
            user_id: None,
            project_id: Some("00000000-0000-4000-8000-0000000000aa".into()),
            source_ip: Some("10.0.0.1".into()),
            user_agent: None,
            metadata: json!({"b": 1, "a": "é"}),
            occurred_at: "2026-01-02T03:04:05.000006+00:00".into(),
            prev_row_hmac: None,
            hmac_key_id: key_id(&"c".repeat(64)),
        }
    }

    #[test]
    fn every_signed_field_matters() {
        let k = "c".repeat(64);
        let base = row_hmac(&k, &row());
        assert_eq!(base.len(), 64);
        let mut r = row();
        r.metadata = json!({"a": "é", "b": 2});
        assert_ne!(row_hmac(&k, &r), base);
        let mut r = row();
        r.prev_row_hmac = Some("0".repeat(64));
        assert_ne!(row_hmac(&k, &r), base);
        assert_ne!(row_hmac(&"d".repeat(64), &row()), base);
        // Key order in metadata does not change the canonical form.
        let mut r = row();
        r.metadata = json!({"a": "é", "b": 1});
        assert_eq!(row_hmac(&k, &r), base);
    }

    #[test]
    fn timestamps_have_six_digits() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000006Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(timestamp(t), "2026-01-02T03:04:05.000006+00:00");
    }
}
