//! Anything that parses and canonicalises must re-parse to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use z4j_protocol::canonical::to_canonical;
use z4j_protocol::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse(data) else { return };
    let Ok(once) = to_canonical(&v) else { return };
    let again = parse(&once).expect("canonical output must parse");
    assert_eq!(to_canonical(&again).expect("and canonicalise"), once);
});
