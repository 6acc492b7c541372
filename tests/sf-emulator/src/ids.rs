//! Salesforce record ids: 15-char base-62 ids with the 3-char case checksum (fact sheet §8).

use std::collections::HashMap;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3-char suffix for a 15-char id: one letter per 5-char chunk, bit i set when the
/// chunk's i-th char is uppercase.
pub fn checksum(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            SUFFIX[bits] as char
        })
        .collect()
}

/// Accepts a 15- or 18-char id and returns the canonical 18-char form, or `None` when the
/// text is not an id (wrong length, non-alphanumeric, or an 18-char id whose suffix does not
/// match its first 15 chars).
pub fn to18(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(format!("{id}{}", checksum(id))),
        18 => {
            let (head, tail) = id.split_at(15);
            let want = checksum(head);
            want.eq_ignore_ascii_case(tail)
                .then(|| format!("{head}{want}"))
        }
        _ => None,
    }
}

/// Key prefix (first 3 chars) of an id.
pub fn prefix(id: &str) -> &str {
    id.get(..3).unwrap_or("")
}

/// Issues new 18-char ids: `<prefix><pod><0><9-char base-62 counter>`.
#[derive(Debug, Clone)]
pub struct IdGen {
    pod: String,
    next: HashMap<String, u64>,
}

impl IdGen {
    pub fn new(pod: &str) -> Self {
        IdGen {
            pod: pod.chars().take(2).collect(),
            next: HashMap::new(),
        }
    }

    pub fn next(&mut self, key_prefix: &str) -> String {
        let n = self.next.entry(key_prefix.to_string()).or_insert(1);
        let id15 = format!("{key_prefix}{}0{}", self.pod, base62(*n, 9));
        *n += 1;
        format!("{id15}{}", checksum(&id15))
    }
}

/// `n` in base 62, left-padded with '0' to `width` chars.
pub fn base62(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fact_sheet_vectors() {
        for (id, want) in [
            ("001D000000IqhSL", "IAZ"),
            ("001D000000Iomaz", "IAB"),
            ("003RO0000035WQg", "YAM"),
            ("0058d000003ZO8y", "AAG"),
            ("a0RE000000IJmcN", "MAT"),
            ("AbCdEfGhIjKlMnO", "VKV"),
            ("aBcDEfgHIJKLMNO", "025"),
        ] {
            assert_eq!(checksum(id), want, "{id}");
        }
    }

    #[test]
    fn to18_accepts_both_lengths_and_rejects_bad_suffix() {
        assert_eq!(
            to18("001D000000IqhSL").as_deref(),
            Some("001D000000IqhSLIAZ")
        );
        assert_eq!(
            to18("001D000000IqhSLiaz").as_deref(),
            Some("001D000000IqhSLIAZ")
        );
        assert_eq!(to18("001D000000IqhSLAAA"), None);
        assert_eq!(to18("001D000000IqhS"), None);
        assert_eq!(to18("001D000000Iqh-L"), None);
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut g = IdGen::new("Em");
        let a = g.next("003");
        let b = g.next("003");
        assert_ne!(a, b);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("003Em0"));
        assert_eq!(to18(&a[..15]).as_deref(), Some(a.as_str()));
    }
}
