//! What a lookup found, in the compact form the cache keeps (a million entries must fit in a few
//! hundred megabytes), and what the dialplan sees.

use std::fmt;
use std::sync::Arc;

use natterbox_common::config::LookupProfile;

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
    /// The host is too busy to run the request within the deadline (FreeSWITCH starves the
    /// module's runtime); Salesforce was not asked.
    Overloaded,
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
            LookupStatus::Overloaded => "overloaded",
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

/// The channel variable names a profile's answers can set, in a fixed order; answers refer to
/// them by index, so a million cached answers do not repeat `sf_record_name` a million times.
#[derive(Debug, PartialEq, Eq)]
pub struct VarNames(Box<[Box<str>]>);

/// Variables every lookup can set, whatever the profile maps.
pub const RECORD_VARS: [&str; 5] = [
    "sf_record_type",
    "sf_record_id",
    "sf_record_ids",
    "sf_record_name",
    "sf_owner_id",
];

impl VarNames {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Arc<VarNames> {
        let mut list: Vec<Box<str>> = Vec::new();
        for name in RECORD_VARS.into_iter().chain(names) {
            if !list.iter().any(|n| &**n == name) && list.len() < u8::MAX as usize {
                list.push(name.into());
            }
        }
        Arc::new(VarNames(list.into_boxed_slice()))
    }

    /// The names of a profile: the record variables and every `<map variable>`.
    pub fn for_profile(profile: &LookupProfile) -> Arc<VarNames> {
        VarNames::new(
            profile
                .objects
                .iter()
                .flat_map(|o| o.mappings.iter().map(|m| m.variable.as_str())),
        )
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    fn index(&self, name: &str) -> Option<u8> {
        self.0.iter().position(|n| &**n == name).map(|i| i as u8)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }
}

/// Channel variables of a result, packed into one allocation: `(u8 name index, u16 value
/// length, value)*`, names in a table shared by the profile's answers.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PackedVars {
    names: Option<Arc<VarNames>>,
    data: Box<[u8]>,
}

/// Longest value kept for a channel variable.
pub const MAX_VALUE_BYTES: usize = 1024;

impl PackedVars {
    pub fn builder(names: &Arc<VarNames>) -> PackedVarsBuilder {
        PackedVarsBuilder {
            names: names.clone(),
            data: Vec::with_capacity(96),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let names = self.names.as_deref();
        let mut rest: &[u8] = &self.data;
        std::iter::from_fn(move || {
            let (&index, after) = rest.split_first()?;
            let len = u16::from_le_bytes([*after.first()?, *after.get(1)?]) as usize;
            let value = std::str::from_utf8(after.get(2..2 + len)?).ok()?;
            rest = &after[2 + len..];
            Some((&*names?.0[index as usize], value))
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn heap_bytes(&self) -> usize {
        self.data.len()
    }
}

impl fmt::Debug for PackedVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

pub struct PackedVarsBuilder {
    names: Arc<VarNames>,
    data: Vec<u8>,
}

impl PackedVarsBuilder {
    /// Adds a variable whose name is in the table. The value is cut to `MAX_VALUE_BYTES` (on a
    /// character boundary) and its control characters become spaces: channel variables travel
    /// in events and logs.
    pub fn push(&mut self, name: &str, value: &str) -> &mut Self {
        let Some(index) = self.names.index(name) else {
            debug_assert!(false, "variable {name} is not in the profile's table");
            return self;
        };
        let mut end = value.len().min(MAX_VALUE_BYTES);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        self.data.push(index);
        let len_at = self.data.len();
        self.data.extend_from_slice(&[0, 0]);
        let mut buf = [0u8; 4];
        for c in value[..end].chars() {
            let c = if c.is_control() { ' ' } else { c };
            self.data
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        let len = (self.data.len() - len_at - 2) as u16;
        self.data[len_at..len_at + 2].copy_from_slice(&len.to_le_bytes());
        self
    }

    pub fn build(self) -> PackedVars {
        PackedVars {
            names: Some(self.names),
            data: self.data.into_boxed_slice(),
        }
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
        let mut b = PackedVars::builder(&VarNames::new([]));
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
        let mut b = PackedVars::builder(&VarNames::new(["v"]));
        b.push("v", &long);
        let vars = b.build();
        let value = vars.get("v").unwrap();
        assert!(value.len() <= MAX_VALUE_BYTES && value.chars().all(|c| c == 'é'));
    }
}
