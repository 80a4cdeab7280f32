//! Finding the bytes JSON strings treat specially (`"`, `\` and control
//! characters) eight at a time: the parser and the canonical writer both
//! spend most of their time walking string contents.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first `"`, `\` or byte below 0x20 in `s`.
#[inline]
pub fn find_special(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Each term flags bytes equal to a value (or below 0x20); borrows
        // only create false flags above a true one, so the lowest flag is
        // the first special byte.
        let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
        let q = w ^ (LO * u64::from(b'"'));
        let quote = q.wrapping_sub(LO) & !q & HI;
        let b = w ^ (LO * u64::from(b'\\'));
        let backslash = b.wrapping_sub(LO) & !b & HI;
        let m = below_space | quote | backslash;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(s: &[u8]) -> Option<usize> {
        s.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\')
    }

    #[test]
    fn edges() {
        assert_eq!(find_special(b""), None);
        assert_eq!(find_special(b"abcdefgh"), None);
        assert_eq!(find_special(b"abcdefgh\""), Some(8));
        assert_eq!(find_special(b"\x1f"), Some(0));
        assert_eq!(find_special("é€😀\\".as_bytes()), Some(9));
        assert_eq!(find_special(b"\x7f\x80\xff !#[]"), None);
    }

    proptest! {
        #[test]
        fn agrees_with_the_naive_scan(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(find_special(&bytes), naive(&bytes));
        }

        #[test]
        fn agrees_on_mostly_printable(bytes in prop::collection::vec(prop_oneof![9 => 0x20u8..0x7f, 1 => any::<u8>()], 0..80)) {
            prop_assert_eq!(find_special(&bytes), naive(&bytes));
        }
    }
}
