//! Salesforce record ids: 15 case-sensitive characters, or 18 with a suffix that encodes the
//! case of the first 15 (so a case-insensitive system can still tell ids apart).

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The three-character suffix of a 15-character id.
fn suffix(id15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (chunk, slot) in id15.chunks(5).zip(out.iter_mut()) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        *slot = SUFFIX_ALPHABET[bits];
    }
    out
}

/// A well-formed id: 15 letters and digits, or 18 whose last three match the first 15.
pub fn is_record_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(bytes.len() == 15 || bytes.len() == 18) || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    bytes.len() == 15 || bytes[15..].eq_ignore_ascii_case(&suffix(&bytes[..15]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_case_suffix() {
        assert!(is_record_id("001000000000001AAA"));
        assert!(is_record_id("001000000000001"));
        // 'x' lower, 'X' upper in the first five: bit 3 set → 'I'.
        assert!(is_record_id("003Em0000000008IAA"));
        assert!(!is_record_id("003Em0000000008AAA"), "wrong suffix");
        assert!(!is_record_id("003Em0000000008I"), "16 characters");
        assert!(!is_record_id("003Em00000'0008IAA"), "not alphanumeric");
        assert!(!is_record_id(""));
    }
}
