//! Caller numbers: attacker-controlled text parsed with libphonenumber's rules.
//!
//! Properties: parsing never panics; an accepted number has an E.164 form (`+` and 1 to 15
//! digits), a cache key that is those digits, search forms that are digits only (so the SOSL
//! phrase needs no escaping), the E.164 digits first; parsing is idempotent (the E.164 form parses
//! to the same number); a number matches its own E.164 form; `matches_stored` never panics on
//! any stored text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natterbox_common::phone::{CallerNumber, Country, InvalidNumber};
use natterbox_common::salesforce::escape::sosl_phrase;

const COUNTRIES: &[&str] = &[
    "US", "GB", "DE", "IE", "FR", "IT", "AU", "IN", "JP", "BR", "ZA", "MX",
];

/// The input: a byte choosing the org's country, the caller's text, a NUL, the stored text.
struct Input<'a> {
    country: u8,
    raw: &'a str,
    stored: &'a str,
}

fn input(data: &[u8]) -> Option<Input<'_>> {
    let (&country, rest) = data.split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    let (raw, stored) = text.split_once('\0').unwrap_or((text, ""));
    Some(Input {
        country,
        raw,
        stored,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else {
        return;
    };
    let country = Country::parse(COUNTRIES[input.country as usize % COUNTRIES.len()]).unwrap();
    let number = match CallerNumber::parse(input.raw, country) {
        Ok(number) => number,
        Err(InvalidNumber::Empty) => {
            assert!(input.raw.trim().is_empty());
            return;
        }
        Err(InvalidNumber::TooLong) => {
            assert!(input.raw.trim().chars().count() > 64);
            return;
        }
        Err(_) => return,
    };
    let e164 = number.e164();
    let digits = &e164[1..];
    assert!(e164.starts_with('+'), "{e164}");
    assert!(!digits.is_empty() && digits.len() <= 15, "{e164}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{e164}");
    assert_eq!(number.key().to_string(), digits, "key of {e164}");
    let forms = number.search_forms();
    assert_eq!(
        forms.first().map(String::as_str),
        Some(digits),
        "forms {forms:?}"
    );
    for form in forms {
        assert!(
            !form.is_empty() && form.bytes().all(|b| b.is_ascii_digit()),
            "{form:?}"
        );
        assert_eq!(sosl_phrase(form), Ok(format!("\"{form}\"")));
    }

    let again = CallerNumber::parse(e164, country).expect("an E.164 form parses");
    assert_eq!(again, number, "parsing {e164} again");
    assert!(number.matches_stored(e164, country));
    let _ = number.matches_stored(input.stored, country);
});
