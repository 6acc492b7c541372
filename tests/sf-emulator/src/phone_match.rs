//! How SOSL `IN PHONE FIELDS` decides that a stored phone number matches a searched one.
//!
//! Salesforce documents only that the phone index is digit-based; it does not promise suffix
//! matching, country-code folding or a minimum length. The default (`exact`) is therefore the
//! strictest reading that still matches what Salesforce's own docs search for: the digit strings
//! are equal, or they differ only by the NANP trunk `1` (`14155550123` ≡ `4155550123`). The looser
//! modes are options, so a client's tests can prove they do not depend on them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PhoneMatchMode {
    /// Digit strings equal, plus the one NANP rule (`1` + 10 digits ≡ the 10 digits).
    #[default]
    Exact,
    /// Equal, or one ends with the other and the shorter has at least `min_digits` digits.
    Suffix,
    /// The last 10 digits are equal (the whole strings when either is shorter).
    Last10,
}

/// The rule one emulator instance uses (seed `phone_match`, `--phone-match`,
/// `SF_EMULATOR_PHONE_MATCH`, `EmulatorOptions::phone_match`, admin `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneMatch {
    #[serde(default)]
    pub mode: PhoneMatchMode,
    /// Only used by `suffix`.
    #[serde(default = "default_min_digits")]
    pub min_digits: usize,
}

fn default_min_digits() -> usize {
    7
}

impl Default for PhoneMatch {
    fn default() -> Self {
        PhoneMatch::exact()
    }
}

impl PhoneMatch {
    pub const fn exact() -> Self {
        PhoneMatch {
            mode: PhoneMatchMode::Exact,
            min_digits: 7,
        }
    }

    pub const fn suffix(min_digits: usize) -> Self {
        PhoneMatch {
            mode: PhoneMatchMode::Suffix,
            min_digits,
        }
    }

    pub const fn last10() -> Self {
        PhoneMatch {
            mode: PhoneMatchMode::Last10,
            min_digits: 7,
        }
    }

    /// Every mode, strictest first: run a client's lookup tests under each.
    pub const ALL: [PhoneMatch; 3] = [
        PhoneMatch::exact(),
        PhoneMatch::suffix(7),
        PhoneMatch::last10(),
    ];

    /// Both arguments are digit-only strings.
    pub fn matches(&self, stored: &str, searched: &str) -> bool {
        if stored.is_empty() || searched.is_empty() {
            return false;
        }
        match self.mode {
            PhoneMatchMode::Exact => stored == searched || nanp_trunk_equal(stored, searched),
            PhoneMatchMode::Last10 => {
                let tail = |s: &str| s[s.len().saturating_sub(10)..].to_string();
                tail(stored) == tail(searched)
            }
            PhoneMatchMode::Suffix => {
                if stored == searched {
                    return true;
                }
                let (short, long) = if stored.len() < searched.len() {
                    (stored, searched)
                } else {
                    (searched, stored)
                };
                short.len() >= self.min_digits && long.ends_with(short)
            }
        }
    }
}

/// `1` followed by exactly the other string's 10 digits.
fn nanp_trunk_equal(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    short.len() == 10 && long.len() == 11 && long.starts_with('1') && long.ends_with(short)
}

impl fmt::Display for PhoneMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            PhoneMatchMode::Exact => f.write_str("exact"),
            PhoneMatchMode::Last10 => f.write_str("last10"),
            PhoneMatchMode::Suffix => write!(f, "suffix:{}", self.min_digits),
        }
    }
}

impl FromStr for PhoneMatch {
    type Err = String;

    /// `exact`, `last10`, `suffix` or `suffix:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.split_once(':') {
            None if s == "exact" => Ok(PhoneMatch::exact()),
            None if s == "last10" => Ok(PhoneMatch::last10()),
            None if s == "suffix" => Ok(PhoneMatch::suffix(default_min_digits())),
            Some(("suffix", n)) => n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .map(PhoneMatch::suffix)
                .ok_or_else(|| format!("phone match {s}: suffix:N wants a positive number")),
            _ => Err(format!(
                "phone match {s}: expected exact, last10, suffix or suffix:N"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_is_digits_plus_the_nanp_trunk() {
        let m = PhoneMatch::exact();
        assert!(m.matches("4155550123", "4155550123"));
        assert!(m.matches("4155550123", "14155550123"));
        assert!(m.matches("14155550123", "4155550123"));
        assert!(!m.matches("5550123", "14155550123"));
        assert!(!m.matches("2079460958", "442079460958"));
        assert!(!m.matches("02079460958", "442079460958"));
        // Only the NANP `1`: a 10-digit German number does not equal `1` + it.
        assert!(!m.matches("4155550123", "24155550123"));
        assert!(!m.matches("415555012", "1415555012"));
    }

    #[test]
    fn looser_modes() {
        let s = PhoneMatch::suffix(7);
        assert!(s.matches("4155550123", "14155550123"));
        assert!(s.matches("5550123", "14155550123"));
        assert!(!s.matches("550123", "14155550123"));
        assert!(s.matches("2079460958", "442079460958"));
        let l = PhoneMatch::last10();
        assert!(l.matches("4155550123", "14155550123"));
        assert!(l.matches("442079460958", "02079460958"));
        assert!(!l.matches("5550123", "14155550123"));
    }

    #[test]
    fn parses_and_prints() {
        for m in PhoneMatch::ALL {
            assert_eq!(m.to_string().parse::<PhoneMatch>().unwrap(), m);
        }
        assert_eq!(
            "suffix".parse::<PhoneMatch>().unwrap(),
            PhoneMatch::suffix(7)
        );
        assert!("fuzzy".parse::<PhoneMatch>().is_err());
        assert!("suffix:0".parse::<PhoneMatch>().is_err());
        let json: PhoneMatch = serde_json::from_str(r#"{"mode":"last10"}"#).unwrap();
        assert_eq!(json, PhoneMatch::last10());
        assert_eq!(
            serde_json::to_value(PhoneMatch::exact()).unwrap(),
            serde_json::json!({"mode": "exact", "min_digits": 7})
        );
    }
}
