//! Caller numbers are attacker-controlled text: they are parsed with libphonenumber's rules in the
//! org's default country, never trusted or pasted into a query.

use std::fmt;
use std::str::FromStr;

use rlibphonenumber::enums::Region;
use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, PHONE_NUMBER_UTIL};

/// Longest text we try to parse; real numbers with formatting and an extension fit easily.
const MAX_INPUT_LEN: usize = 64;

/// An ISO 3166 region whose numbering plan applies to numbers written without a country code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country(Region);

impl Country {
    pub fn parse(code: &str) -> Option<Country> {
        let code = code.trim();
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let region = Region::from_str(&code.to_ascii_uppercase()).ok()?;
        // A region without a numbering plan cannot parse national numbers.
        PHONE_NUMBER_UTIL
            .get_country_code_for_region(region)
            .map(|_| Country(region))
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({:?})", self.0)
    }
}

/// Why a caller number cannot be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidNumber {
    Empty,
    TooLong,
    NotANumber,
    NotPossible,
}

/// A caller number in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerNumber {
    e164: String,
    national: String,
}

impl CallerNumber {
    /// Parses a number as a person or a switch would write it, in `default_country`'s plan:
    /// `(415) 555-0123`, `+44 20 7946 0958`, `011 353 1 555 0142`, `00353…`.
    pub fn parse(raw: &str, default_country: Country) -> Result<CallerNumber, InvalidNumber> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(InvalidNumber::Empty);
        }
        if text.len() > MAX_INPUT_LEN {
            return Err(InvalidNumber::TooLong);
        }
        // libphonenumber accepts letters as vanity digits; a caller id is never spelled out.
        if !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b" +-().#*xX;=extEXT\t/".contains(&b))
        {
            return Err(InvalidNumber::NotANumber);
        }
        let number = PhoneNumber::parse(text, Some(default_country.0))
            .map_err(|_| InvalidNumber::NotANumber)?;
        if number.is_possible_with_reason().is_err() {
            return Err(InvalidNumber::NotPossible);
        }
        let e164 = number.format_as(PhoneNumberFormat::E164).into_owned();
        // E.164 numbers have at most 15 digits, which `key` relies on; some plans in
        // libphonenumber admit national numbers long enough to pass that.
        if e164.len() > 1 + 15 {
            return Err(InvalidNumber::NotPossible);
        }
        let national = number.get_national_significant_number();
        // Leading zeros in the national number are real in Italy's plan; elsewhere they are a
        // misreading (`00 001620` in Germany became +490001620, which reads back as +49001620)
        // with no canonical form to cache or match by. Checked only on that rare path.
        if national.starts_with('0') {
            let again = PhoneNumber::parse(&e164, Some(default_country.0))
                .map(|n| n.format_as(PhoneNumberFormat::E164).into_owned());
            if again.as_deref() != Ok(e164.as_str()) {
                return Err(InvalidNumber::NotPossible);
            }
        }
        Ok(CallerNumber { e164, national })
    }

    /// `+14155550123`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The national significant number, digits only: what Salesforce's digit-based phone index
    /// finds in every stored format (`(415) 555-0123`, `+1 415…`, `0044 20…`).
    pub fn search_digits(&self) -> &str {
        &self.national
    }

    /// The E.164 digits as an integer: a compact, injective cache key (E.164 has at most 15
    /// digits and never starts with 0).
    pub fn key(&self) -> u64 {
        self.e164[1..].parse().unwrap_or(0)
    }

    /// Whether a number stored in Salesforce (as typed by a person) is this number. Stored text
    /// is parsed in the org's country; text that does not parse matches only on the full
    /// national number at the end of its digits.
    pub fn matches_stored(&self, stored: &str, default_country: Country) -> bool {
        if let Ok(other) = CallerNumber::parse(stored, default_country) {
            return other.e164 == self.e164;
        }
        let digits: String = stored.chars().filter(char::is_ascii_digit).collect();
        digits.len() >= self.national.len() && digits.ends_with(&self.national)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Country {
        Country::parse("US").unwrap()
    }

    fn e164(raw: &str, country: &str) -> Result<String, InvalidNumber> {
        CallerNumber::parse(raw, Country::parse(country).unwrap()).map(|n| n.e164().to_string())
    }

    #[test]
    fn foreign_numbers_keep_their_digits_under_a_us_default() {
        // The cases where the `phonenumber` 0.3 crate strips the trunk "1" (its issues #68, #76).
        assert_eq!(e164("+353 1 555 0142", "US").unwrap(), "+35315550142");
        assert_eq!(e164("011 353 1 555 0142", "US").unwrap(), "+35315550142");
        assert_eq!(e164("+44 20 7946 0958", "US").unwrap(), "+442079460958");
    }

    #[test]
    fn national_and_international_forms_agree() {
        for raw in [
            "(415) 555-0123",
            "415.555.0123",
            "1-415-555-0123",
            "+1 415 555 0123",
            "4155550123",
        ] {
            assert_eq!(e164(raw, "US").unwrap(), "+14155550123", "{raw}");
        }
        assert_eq!(e164("020 7946 0958", "GB").unwrap(), "+442079460958");
        assert_eq!(e164("00 1 415 555 0123", "GB").unwrap(), "+14155550123");
        assert_eq!(e164("030 901820", "DE").unwrap(), "+4930901820");
    }

    #[test]
    fn rejects_what_is_not_a_phone_number() {
        assert_eq!(e164("", "US"), Err(InvalidNumber::Empty));
        assert_eq!(e164("anonymous", "US"), Err(InvalidNumber::NotANumber));
        assert_eq!(e164("1-800-FLOWERS", "US"), Err(InvalidNumber::NotANumber));
        assert_eq!(
            e164("4155550123' OR Name != '", "US"),
            Err(InvalidNumber::NotANumber)
        );
        assert_eq!(
            e164("sip:+14155550123@evil", "US"),
            Err(InvalidNumber::NotANumber)
        );
        assert_eq!(e164("123", "US"), Err(InvalidNumber::NotPossible));
        assert_eq!(e164(&"9".repeat(80), "US"), Err(InvalidNumber::TooLong));
        assert!(e164("+999 123 4567", "US").is_err());
    }

    #[test]
    fn numbers_longer_than_e164_allows_are_not_possible() {
        // Found by fuzz/caller_number: libphonenumber's German plan admits 15 national digits,
        // so this parsed to 17 E.164 digits, past the 15 that `key` relies on.
        assert_eq!(
            e164("20 49 0 49 30 971820;ext=1901820", "DE"),
            Err(InvalidNumber::NotPossible)
        );
        assert_eq!(e164("+49 30 901820", "US").unwrap(), "+4930901820");
    }

    #[test]
    fn a_number_reads_back_from_its_e164_form() {
        // Found by fuzz/caller_number: read as +490001620, written so, read back as +49001620.
        assert_eq!(
            e164("00 001620;ext=12", "DE"),
            Err(InvalidNumber::NotPossible)
        );
        // Italy's leading zero is part of the number and survives the round trip.
        assert_eq!(e164("+39 06 6988 4821", "US").unwrap(), "+390669884821");
        assert_eq!(e164("+390669884821", "IT").unwrap(), "+390669884821");
    }

    #[test]
    fn matches_stored_formats_of_the_same_number_only() {
        let caller = CallerNumber::parse("+14155550123", us()).unwrap();
        assert_eq!(caller.search_digits(), "4155550123");
        assert_eq!(caller.key(), 14155550123);
        assert!(caller.matches_stored("(415) 555-0123", us()));
        assert!(caller.matches_stored("415.555.0123 x12", us()));
        assert!(!caller.matches_stored("(415) 555-0124", us()));
        // Same national digits in another country is another number.
        assert!(!caller.matches_stored("+44 415 555 0123", us()));
        let dublin = CallerNumber::parse("+353 1 555 0142", us()).unwrap();
        assert!(dublin.matches_stored("+353 1 555 0142", us()));
        assert!(!dublin.matches_stored("(415) 555-0142", us()));
    }

    #[test]
    fn country_codes_are_validated() {
        assert!(Country::parse("GB").is_some());
        assert!(Country::parse("gb").is_some());
        assert!(Country::parse("XX").is_none());
        assert!(Country::parse("USA").is_none());
    }
}
