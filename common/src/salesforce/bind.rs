//! Values bound into a named query (`:name` in a configured SOQL or SOSL template). A value from a
//! call becomes query text only here, written as a literal of the type of the field it is
//! compared with, or refused with a typed error. Strings go through [`soql_string`], search terms
//! through [`sosl_phrase`]: there is one escaper.
//!
//! SOQL literal forms (Salesforce, "SOQL and SOSL Reference", Comparison Operators and Date
//! Formats and Date Literals): numbers unquoted, booleans `true`/`false` unquoted, dates
//! `YYYY-MM-DD` and date-times `YYYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)` unquoted, ids quoted; a
//! 15-character id is accepted as it is, an 18-character one only when its last three characters
//! are the case checksum of the first fifteen.

use std::fmt;

use super::escape::{soql_string, sosl_phrase, SoslError};

/// What a bound value is compared with, from the field's describe type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindType {
    String,
    Number,
    Boolean,
    Date,
    DateTime,
    Id,
}

impl BindType {
    /// The bind type for a describe `type`, or None for a type a bind cannot be compared with
    /// (base64, location, address, …).
    pub fn for_field_type(field_type: &str) -> Option<BindType> {
        Some(match field_type {
            "id" | "reference" => BindType::Id,
            "string" | "picklist" | "multipicklist" | "combobox" | "textarea" | "phone"
            | "email" | "url" | "encryptedstring" => BindType::String,
            "int" | "long" | "double" | "currency" | "percent" => BindType::Number,
            "boolean" => BindType::Boolean,
            "date" => BindType::Date,
            "datetime" => BindType::DateTime,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BindType::String => "string",
            BindType::Number => "number",
            BindType::Boolean => "boolean",
            BindType::Date => "date",
            BindType::DateTime => "datetime",
            BindType::Id => "id",
        }
    }
}

/// Why a value cannot be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// Not a literal of the type (the text is not repeated: it came from a caller).
    NotA(BindType),
    /// An 18-character id whose checksum does not match its first 15 characters.
    IdChecksum,
    /// An `IN` list with no element.
    EmptyList,
    /// A list longer than [`MAX_LIST_ITEMS`].
    ListTooLong,
    Search(SoslError),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::NotA(t) => write!(f, "not a {} value", t.as_str()),
            BindError::IdChecksum => f.write_str("an 18-character id whose checksum is wrong"),
            BindError::EmptyList => f.write_str("an empty list"),
            BindError::ListTooLong => write!(f, "a list of more than {MAX_LIST_ITEMS} values"),
            BindError::Search(e) => write!(f, "not a search term: {e}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Longest `IN` list a bind may produce.
pub const MAX_LIST_ITEMS: usize = 200;
/// Longest number text accepted (Salesforce's doubles have at most 18 digits anyway).
const MAX_NUMBER_LEN: usize = 40;

/// One value as a SOQL literal of `ty`.
pub fn soql_literal(ty: BindType, value: &str) -> Result<String, BindError> {
    match ty {
        BindType::String => Ok(soql_string(value)),
        BindType::Number => soql_number(value).map(str::to_string),
        BindType::Boolean => soql_boolean(value).map(str::to_string),
        BindType::Date => soql_date(value).map(str::to_string),
        BindType::DateTime => soql_datetime(value).map(str::to_string),
        BindType::Id => Ok(format!("'{}'", record_id18(value)?)),
    }
}

/// A comma-separated list as the inside of `IN (…)`: each element a [`soql_literal`]. Elements
/// are trimmed of spaces; an empty element is refused like any value that is not of the type.
pub fn soql_list(ty: BindType, values: &str) -> Result<String, BindError> {
    if values.trim().is_empty() {
        return Err(BindError::EmptyList);
    }
    let mut out = String::with_capacity(values.len() + 8);
    for (i, item) in values.split(',').enumerate() {
        if i >= MAX_LIST_ITEMS {
            return Err(BindError::ListTooLong);
        }
        if i > 0 {
            out.push_str(", ");
        }
        let item = if ty == BindType::String {
            item
        } else {
            item.trim()
        };
        out.push_str(&soql_literal(ty, item)?);
    }
    Ok(out)
}

/// A search term for a named SOSL search: the value as one quoted phrase.
pub fn sosl_bound_phrase(value: &str) -> Result<String, BindError> {
    sosl_phrase(value).map_err(BindError::Search)
}

/// `-12`, `3.5`, `0.25`: an optional minus, digits, an optional fraction. No exponent, no `+`,
/// no leading `.`, so the text is a SOQL number token and nothing else.
pub fn soql_number(value: &str) -> Result<&str, BindError> {
    let bad = BindError::NotA(BindType::Number);
    if value.is_empty() || value.len() > MAX_NUMBER_LEN {
        return Err(bad);
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if all_digits(whole) && fraction.is_none_or(all_digits) {
        Ok(value)
    } else {
        Err(bad)
    }
}

/// `true` or `false`, in any case (SOQL's own literals are case-insensitive), written lowercase.
pub fn soql_boolean(value: &str) -> Result<&'static str, BindError> {
    if value.eq_ignore_ascii_case("true") {
        Ok("true")
    } else if value.eq_ignore_ascii_case("false") {
        Ok("false")
    } else {
        Err(BindError::NotA(BindType::Boolean))
    }
}

/// `YYYY-MM-DD`, a real calendar day.
pub fn soql_date(value: &str) -> Result<&str, BindError> {
    if is_date(value) {
        Ok(value)
    } else {
        Err(BindError::NotA(BindType::Date))
    }
}

/// `YYYY-MM-DDThh:mm:ss`, optional `.s` to `.sss`, then `Z` or `±hh:mm`.
pub fn soql_datetime(value: &str) -> Result<&str, BindError> {
    let bad = BindError::NotA(BindType::DateTime);
    let (date, time) = value.split_once('T').ok_or(bad.clone())?;
    if !is_date(date) || time.len() < 9 || !time.is_ascii() {
        return Err(bad);
    }
    let (hms, mut rest) = time.split_at(8);
    let hms_ok = hms.as_bytes()[2] == b':'
        && hms.as_bytes()[5] == b':'
        && two_digits(&hms[0..2]).is_some_and(|h| h <= 23)
        && two_digits(&hms[3..5]).is_some_and(|m| m <= 59)
        && two_digits(&hms[6..8]).is_some_and(|s| s <= 59);
    if !hms_ok {
        return Err(bad);
    }
    if let Some(after_dot) = rest.strip_prefix('.') {
        let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=3).contains(&n) {
            return Err(bad);
        }
        rest = &after_dot[n..];
    }
    let zone_ok = rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && two_digits(&rest[1..3]).is_some_and(|h| h <= 23)
            && two_digits(&rest[4..6]).is_some_and(|m| m <= 59));
    if zone_ok {
        Ok(value)
    } else {
        Err(bad)
    }
}

fn two_digits(s: &str) -> Option<u32> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_date(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (
        value[0..4]
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| value[0..4].parse::<u32>().ok())
            .flatten(),
        two_digits(&value[5..7]),
        two_digits(&value[8..10]),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

const BASE62_SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3-character case checksum of a 15-character id: one character per 5-character chunk,
/// bit i set when the chunk's i-th character is an uppercase letter.
pub fn id_checksum(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            BASE62_SUFFIX[bits] as char
        })
        .collect()
}

/// A record id in its 18-character form: 15 alphanumerics get their checksum; 18 must carry
/// the right one (Salesforce compares the suffix without case).
pub fn record_id18(value: &str) -> Result<String, BindError> {
    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(BindError::NotA(BindType::Id));
    }
    match value.len() {
        15 => Ok(format!("{value}{}", id_checksum(value))),
        18 => {
            let (head, tail) = value.split_at(15);
            let want = id_checksum(head);
            if want.eq_ignore_ascii_case(tail) {
                Ok(format!("{head}{want}"))
            } else {
                Err(BindError::IdChecksum)
            }
        }
        _ => Err(BindError::NotA(BindType::Id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_number_tokens_only() {
        for ok in ["0", "-12", "3.5", "0.25", "123456789012345678"] {
            assert_eq!(soql_number(ok), Ok(ok));
        }
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e5",
            "+1",
            "1 OR Id != null",
            "0x10",
            "1,5",
            "١٢",
            "NaN",
        ] {
            assert!(soql_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_calendar_days() {
        assert!(soql_date("2024-02-29").is_ok());
        assert!(soql_date("2023-02-29").is_err());
        assert!(soql_date("2026-13-01").is_err());
        assert!(soql_date("2026-1-01").is_err());
        assert!(soql_date("2026-01-01) OR (Id != null").is_err());
        assert!(soql_datetime("2026-12-05T10:00:00Z").is_ok());
        assert!(soql_datetime("2026-12-05T10:00:00.123+01:00").is_ok());
        assert!(soql_datetime("2026-12-05T24:00:00Z").is_err());
        assert!(soql_datetime("2026-12-05T10:00:00").is_err());
        assert!(soql_datetime("2026-12-05T10:00:00Z OR x").is_err());
    }

    #[test]
    fn booleans_and_ids() {
        assert_eq!(soql_boolean("TRUE"), Ok("true"));
        assert!(soql_boolean("yes").is_err());
        assert_eq!(
            record_id18("001000000000001").unwrap(),
            format!("001000000000001{}", id_checksum("001000000000001"))
        );
        let id18 = record_id18("500Dn00000AbCdE").unwrap();
        assert_eq!(record_id18(&id18).unwrap(), id18);
        assert!(record_id18(&id18.to_lowercase()).is_err());
        let mut wrong = id18.clone();
        wrong.replace_range(15..18, "AAA");
        if wrong != id18 {
            assert_eq!(record_id18(&wrong), Err(BindError::IdChecksum));
        }
        assert!(record_id18("001' OR Id != '").is_err());
        assert!(record_id18("00100000000000").is_err());
    }

    #[test]
    fn lists_bind_each_element_by_type() {
        assert_eq!(soql_list(BindType::Number, "1, 2,3").unwrap(), "1, 2, 3");
        assert_eq!(
            soql_list(BindType::String, "a,b'c").unwrap(),
            "'a', 'b\\'c'"
        );
        assert_eq!(soql_list(BindType::Number, ""), Err(BindError::EmptyList));
        assert!(soql_list(BindType::Number, "1,,2").is_err());
        let long = vec!["1"; MAX_LIST_ITEMS + 1].join(",");
        assert_eq!(
            soql_list(BindType::Number, &long),
            Err(BindError::ListTooLong)
        );
    }
}
