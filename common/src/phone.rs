//! Caller numbers are attacker-controlled text: they are parsed with libphonenumber's rules in the
//! org's default country, never trusted or pasted into a query. Stored numbers are compared with
//! the rule in docs/design.md ("Which record is the caller").

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rlibphonenumber::enums::Region;
use rlibphonenumber::{
    CountryCodeSource, NumberLengthType, PhoneNumber, PhoneNumberFormat, PHONE_NUMBER_UTIL,
};

/// Longest text we look at, in characters after trimming: a SIP name-addr with a long host and
/// carrier parameters fits; a hostile megabyte is refused before any parsing.
const MAX_INPUT_CHARS: usize = 256;

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

    fn calling_code(self) -> Option<i32> {
        PHONE_NUMBER_UTIL.get_country_code_for_region(self.0)
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
    /// Too short or too long for any number of its country.
    NotPossible,
    /// Only dialable inside an area (`555-0123` in the US): it names nobody in particular.
    LocalOnly,
}

/// A caller number in canonical form, with the digit strings a person may have stored it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerNumber {
    e164: String,
    country_code: i32,
    /// Distinct digit strings, E.164 digits first (see `stored_forms`).
    forms: Vec<String>,
}

impl CallerNumber {
    /// Parses a number as a person, a switch or a carrier writes it, in `default_country`'s
    /// plan: `(415) 555-0123`, `+44 20 7946 0958`, `011 353 1 555 0142`, `00353…`,
    /// `tel:+1-415-555-0123;ext=12`, `<sip:+14155550123@carrier;user=phone>`, `1-800-FLOWERS`,
    /// `442079460958` from a carrier that drops the `+`.
    pub fn parse(raw: &str, default_country: Country) -> Result<CallerNumber, InvalidNumber> {
        let text = bounded(raw)?;
        let text = number_text(text).ok_or(InvalidNumber::NotANumber)?;
        let mut number = PHONE_NUMBER_UTIL
            .parse_and_keep_raw_input(&text, Some(default_country.0))
            .map_err(|_| InvalidNumber::NotANumber)?;
        if !number.is_valid()
            && source(&number) == Some(CountryCodeSource::FromDefaultCountry)
            && !text.contains(";phone-context=")
        {
            // Carriers often send E.164 without its `+`; take that reading only when the
            // national one names no valid number and this one does.
            if let Some(international) = without_plus_reading(&text, &number) {
                number = international;
            }
        }
        match number.is_possible_with_reason() {
            Ok(NumberLengthType::IsPossible) => {}
            Ok(NumberLengthType::IsPossibleLocalOnly) => return Err(InvalidNumber::LocalOnly),
            Err(_) => return Err(InvalidNumber::NotPossible),
        }
        number.extension = None;
        number.raw_input = None;
        let e164 = number.format_as(PhoneNumberFormat::E164).into_owned();
        // E.164 numbers have at most 15 digits, which `key` relies on; some plans in
        // libphonenumber admit national numbers long enough to pass that.
        if e164.len() > 1 + 15 {
            return Err(InvalidNumber::NotPossible);
        }
        // The E.164 form must read back as itself, or the number has no canonical form to cache
        // or match by. Two readings break that: leading zeros in the national number (real in
        // Italy's plan; elsewhere a misreading: `00 001620` in Germany became +490001620, which
        // reads back as +49001620), and a number no plan calls valid, whose E.164 form has
        // libphonenumber strip a carrier code on the way back (`011 352 154 05 154 0578305`
        // in the US is +3521540578305, which reads back as +35278305). A valid number matches
        // its plan, so nothing is stripped from it; only those rare paths parse twice.
        if !number.is_valid() || number.get_national_significant_number().starts_with('0') {
            let again = PhoneNumber::parse(&e164, Some(default_country.0))
                .map(|n| n.format_as(PhoneNumberFormat::E164).into_owned());
            if again.as_deref() != Ok(e164.as_str()) {
                return Err(InvalidNumber::NotPossible);
            }
        }
        let forms = stored_forms(&number, &e164, default_country);
        Ok(CallerNumber {
            country_code: number.country_code,
            e164,
            forms,
        })
    }

    /// `+14155550123`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// Every digit string the caller's number may be stored as, for the search: the E.164
    /// digits, the national format's digits (with the trunk prefix where the country dials
    /// one), the country code before that trunk prefix (`+44 (0)20…`), the international form
    /// dialled from the org's country and the `00` form.
    pub fn search_forms(&self) -> &[String] {
        &self.forms
    }

    /// The E.164 digits as an integer: a compact, injective cache key (E.164 has at most 15
    /// digits and never starts with 0).
    pub fn key(&self) -> u64 {
        self.e164[1..].parse().unwrap_or(0)
    }

    /// Whether a number stored in Salesforce (as a person typed it) is this caller, by the rule
    /// in docs/design.md: text with an explicit country code (`+`, the org's international
    /// prefix, or `00`) is this caller when it parses to the caller's E.164 number; other text
    /// when its digits are one of the caller's forms — except that, for a caller from another
    /// country, text that is written the way the org's own country writes another valid
    /// number is that number.
    pub fn matches_stored(&self, stored: &str, org_country: Country) -> bool {
        let Ok(text) = bounded(stored) else {
            return false;
        };
        let parsed = PHONE_NUMBER_UTIL.parse_and_keep_raw_input(text, Some(org_country.0));
        if let Some(explicit) = explicit_country_code(text, parsed.as_ref().ok()) {
            return explicit == self.e164;
        }
        let digits = stored_digits(text, parsed.as_ref().ok());
        if !self.forms.contains(&digits) {
            return false;
        }
        if org_country.calling_code() == Some(self.country_code) {
            return true;
        }
        // A caller from abroad: the same digits may be how the org's country writes one of
        // its own numbers, and in the org's records that reading wins.
        match parsed {
            Ok(mut own) if source(&own) == Some(CountryCodeSource::FromDefaultCountry) => {
                own.extension = None;
                !(own.is_valid()
                    && national_digits(&own) == digits
                    && own.format_as(PhoneNumberFormat::E164) != self.e164)
            }
            _ => true,
        }
    }
}

/// The trimmed text, refused when empty or longer than `MAX_INPUT_CHARS`.
fn bounded(raw: &str) -> Result<&str, InvalidNumber> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(InvalidNumber::Empty);
    }
    if text.chars().nth(MAX_INPUT_CHARS).is_some() {
        return Err(InvalidNumber::TooLong);
    }
    Ok(text)
}

/// The part of the input that is the number. A SIP or SIPS URI (bare or in `<…>`) gives its
/// user part only, never digits from its host or URI parameters; a tel URI or a user part keeps
/// its number and the `ext` and `phone-context` parameters that libphonenumber reads, and drops
/// every other parameter (`rn=`, `cic=`, `npdi`, `isub=`, …: another number or a carrier's).
/// Other text goes to libphonenumber as it is.
fn number_text(text: &str) -> Option<Cow<'_, str>> {
    let inner = match (text.find('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let inner = inner.trim_start_matches(|c: char| c.is_whitespace() || is_format_char(c));
    let scheme_end = inner.find(':').filter(|&i| i <= 5);
    let scheme = scheme_end.map(|i| inner[..i].to_ascii_lowercase());
    let subscriber = match scheme.as_deref() {
        Some("sip") | Some("sips") => {
            let rest = &inner[scheme_end? + 1..];
            // user[:password]@host…: no `@` means there is no user part at all.
            let (userinfo, _host) = rest.split_once('@')?;
            userinfo.split(':').next().unwrap_or("")
        }
        Some("tel") => inner[scheme_end? + 1..].trim_start(),
        _ if inner.contains(';') => inner,
        _ => return Some(Cow::Borrowed(inner)),
    };
    let mut parts = subscriber.split(';');
    let number = parts.next().unwrap_or("").trim();
    let mut out = format!("tel:{number}");
    let mut context = None;
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "ext" if !value.is_empty() => {
                out.push_str(";ext=");
                out.push_str(value.trim());
            }
            "phone-context" => context = Some(value.trim()),
            _ => {}
        }
    }
    if let Some(context) = context {
        out.push_str(";phone-context=");
        out.push_str(context);
    }
    Some(Cow::Owned(out))
}

/// Unicode format characters (bidi marks and overrides, zero-width joiners and spaces, BOM)
/// that may lead a caller id.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn source(number: &PhoneNumber) -> Option<CountryCodeSource> {
    number
        .country_code_source
        .and_then(|s| CountryCodeSource::try_from(s).ok())
}

/// The input's digits read as E.164 without its `+`, when that names a valid number.
fn without_plus_reading(text: &str, national: &PhoneNumber) -> Option<PhoneNumber> {
    let mut digits = PHONE_NUMBER_UTIL.normalize_digits_only(text);
    if let Some(ext) = national.extension.as_deref() {
        digits.truncate(digits.strip_suffix(ext)?.len());
    }
    let number = PhoneNumber::parse(format!("+{digits}"), None).ok()?;
    number.is_valid().then_some(number)
}

/// The national format's digits: `02079460958` for +44 20 7946 0958, `4155550123` for
/// +1 415 555 0123, `0669821234` for +39 06 6982 1234.
fn national_digits(number: &PhoneNumber) -> String {
    PHONE_NUMBER_UTIL.normalize_digits_only(number.format_as(PhoneNumberFormat::National))
}

fn stored_forms(number: &PhoneNumber, e164: &str, org_country: Country) -> Vec<String> {
    let e164_digits = &e164[1..];
    let national = national_digits(number);
    let mut forms = vec![e164_digits.to_string(), national.clone()];
    // `+44 (0)20 7946 0958`: the country code before the national form with its trunk `0`.
    // No number has a significant part starting with 0 after such a country code, so these
    // digits name this number only.
    if national.starts_with('0') && national != number.get_national_significant_number() {
        forms.push(format!("{}{national}", number.country_code));
    }
    // As dialled from the org's country (`011 44 …` in the US, `0011 44 …` in Australia):
    // that prefix never starts a national number there.
    let dialled = PHONE_NUMBER_UTIL.format_out_of_country_calling_number(number, org_country.0);
    forms.push(PHONE_NUMBER_UTIL.normalize_digits_only(&dialled));
    // `00` is the international prefix of most of the world, and no country's national
    // numbers start with it.
    forms.push(format!("00{e164_digits}"));
    let mut distinct: Vec<String> = Vec::with_capacity(forms.len());
    for form in forms {
        if !form.is_empty() && !distinct.contains(&form) {
            distinct.push(form);
        }
    }
    distinct
}

/// The E.164 number a stored text names by its own country code: a `+`, the org country's
/// international prefix, or a leading `00`. `None` for text without one, or whose explicit
/// reading is not a possible number (a stray `+` before a national number).
fn explicit_country_code(text: &str, parsed: Option<&PhoneNumber>) -> Option<String> {
    let possible = |n: &PhoneNumber| {
        matches!(
            n.is_possible_with_reason(),
            Ok(NumberLengthType::IsPossible)
        )
        .then(|| n.format_as(PhoneNumberFormat::E164).into_owned())
    };
    if let Some(number) = parsed {
        if matches!(
            source(number),
            Some(CountryCodeSource::FromNumberWithPlusSign | CountryCodeSource::FromNumberWithIdd)
        ) {
            return possible(number);
        }
    }
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let after = text[start..].strip_prefix("00")?;
    PhoneNumber::parse(format!("+{after}"), None)
        .ok()
        .as_ref()
        .and_then(possible)
}

/// The stored number's digits, without an extension libphonenumber found.
fn stored_digits(text: &str, parsed: Option<&PhoneNumber>) -> String {
    let mut digits = PHONE_NUMBER_UTIL.normalize_digits_only(text);
    if let Some(ext) = parsed.and_then(|n| n.extension.as_deref()) {
        if let Some(number) = digits.strip_suffix(ext) {
            digits.truncate(number.len());
        }
    }
    digits
}

#[cfg(test)]
mod tests;
