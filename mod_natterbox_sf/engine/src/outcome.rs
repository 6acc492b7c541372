//! What a lookup found, in the compact form the cache keeps (a million entries must fit in a few
//! hundred megabytes), and what the dialplan sees.

use std::fmt;

/// `sf_lookup_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStatus {
    Found,
    NotFound,
    Multiple,
    InvalidNumber,
    Timeout,
    Error,
    Throttled,
    Unauthorized,
}

impl LookupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Found => "found",
            LookupStatus::NotFound => "not_found",
            LookupStatus::Multiple => "multiple",
            LookupStatus::InvalidNumber => "invalid_number",
            LookupStatus::Timeout => "timeout",
            LookupStatus::Error => "error",
            LookupStatus::Throttled => "throttled",
            LookupStatus::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for LookupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `sf_lookup_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Salesforce,
    Stale,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Salesforce => "salesforce",
            Source::Stale => "stale",
        }
    }
}

/// Channel variables of a result, packed into one allocation: `(u16 name length, name, u16 value
/// length, value)*`. Names repeat little text (`sf_record_id`…) and keep entries self-describing
/// across config reloads.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PackedVars(Box<[u8]>);

/// Longest value kept for a channel variable.
pub const MAX_VALUE_BYTES: usize = 1024;

impl PackedVars {
    pub fn builder() -> PackedVarsBuilder {
        PackedVarsBuilder(Vec::with_capacity(128))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (name, after) = take(rest)?;
            let (value, after) = take(after)?;
            rest = after;
            Some((name, value))
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

fn take(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
    let text = bytes.get(2..2 + len)?;
    // Only ever built from &str by the builder.
    Some((std::str::from_utf8(text).ok()?, &bytes[2 + len..]))
}

impl fmt::Debug for PackedVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

pub struct PackedVarsBuilder(Vec<u8>);

impl PackedVarsBuilder {
    /// Adds a variable. The value is cut to `MAX_VALUE_BYTES` (on a character boundary) and its
    /// control characters become spaces: channel variables travel in events and logs.
    pub fn push(&mut self, name: &str, value: &str) -> &mut Self {
        let mut end = value.len().min(MAX_VALUE_BYTES);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let clean: String = value[..end]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for part in [name, clean.as_str()] {
            let len = part.len().min(u16::MAX as usize);
            self.0.extend_from_slice(&(len as u16).to_le_bytes());
            self.0.extend_from_slice(&part.as_bytes()[..len]);
        }
        self
    }

    pub fn build(self) -> PackedVars {
        PackedVars(self.0.into_boxed_slice())
    }
}

/// Whether FreeSWITCH would expand part of `value` as a variable (`${…}`, also with backslashes
/// between `$` and `{`, as `switch_string_var_check` sees it). Such values from Salesforce never
/// become channel variables: the core only logs them and sets them anyway.
pub fn has_variable_expansion(value: &str) -> bool {
    let mut after_dollar = false;
    for c in value.chars() {
        match c {
            '$' => after_dollar = true,
            '{' if after_dollar => return true,
            '\\' if after_dollar => {}
            _ => after_dollar = false,
        }
    }
    false
}

/// A settled answer from Salesforce: what the cache stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: LookupStatus,
    pub match_count: u32,
    /// `sf_record_id`, `sf_record_type`, `sf_record_name`, `sf_owner_id`, mapped fields.
    pub vars: PackedVars,
}

impl Outcome {
    pub fn not_found() -> Outcome {
        Outcome {
            status: LookupStatus::NotFound,
            match_count: 0,
            vars: PackedVars::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_reads_back_variables() {
        let mut b = PackedVars::builder();
        b.push("sf_record_id", "003000000000001AAA")
            .push("sf_record_name", "Seán O'Brien\nX");
        let vars = b.build();
        assert_eq!(vars.get("sf_record_id"), Some("003000000000001AAA"));
        assert_eq!(vars.get("sf_record_name"), Some("Seán O'Brien X"));
        assert_eq!(vars.iter().count(), 2);
        assert_eq!(vars.get("missing"), None);
    }

    #[test]
    fn finds_variable_expansions_as_freeswitch_does() {
        assert!(has_variable_expansion("${system(rm -rf /)}"));
        assert!(has_variable_expansion("a$\\{b}"));
        assert!(has_variable_expansion("x$${y}"));
        assert!(!has_variable_expansion("$5 {not} a variable"));
        assert!(!has_variable_expansion("O'Brien & Sons"));
    }

    #[test]
    fn cuts_long_values_on_a_character_boundary() {
        let long = "é".repeat(MAX_VALUE_BYTES);
        let mut b = PackedVars::builder();
        b.push("v", &long);
        let vars = b.build();
        let value = vars.get("v").unwrap();
        assert!(value.len() <= MAX_VALUE_BYTES && value.chars().all(|c| c == 'é'));
    }
}
