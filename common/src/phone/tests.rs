use super::*;

fn country(code: &str) -> Country {
    Country::parse(code).unwrap()
}

fn e164(raw: &str, org: &str) -> Result<String, InvalidNumber> {
    CallerNumber::parse(raw, country(org)).map(|n| n.e164().to_string())
}

fn caller(raw: &str, org: &str) -> CallerNumber {
    CallerNumber::parse(raw, country(org)).unwrap_or_else(|e| panic!("{raw} in {org}: {e:?}"))
}

fn forms(raw: &str, org: &str) -> Vec<String> {
    caller(raw, org).search_forms().to_vec()
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
        "14155550123",
    ] {
        assert_eq!(e164(raw, "US").unwrap(), "+14155550123", "{raw}");
    }
    assert_eq!(e164("020 7946 0958", "GB").unwrap(), "+442079460958");
    assert_eq!(e164("00 1 415 555 0123", "GB").unwrap(), "+14155550123");
    assert_eq!(e164("030 901820", "DE").unwrap(), "+4930901820");
    assert_eq!(e164("01 23 45 67 89", "FR").unwrap(), "+33123456789");
    assert_eq!(e164("(02) 9374 4000", "AU").unwrap(), "+61293744000");
    assert_eq!(e164("0011 44 20 7946 0958", "AU").unwrap(), "+442079460958");
    assert_eq!(e164("098765 43210", "IN").unwrap(), "+919876543210");
    assert_eq!(e164("06 6982 1234", "IT").unwrap(), "+390669821234");
    assert_eq!(e164("03-1234-5678", "JP").unwrap(), "+81312345678");
    assert_eq!(e164("010 1 415 555 0123", "JP").unwrap(), "+14155550123");
}

#[test]
fn what_people_and_carriers_send_reaches_libphonenumber() {
    let cases = [
        "tel:+1-415-555-0123",
        "tel:+1-415-555-0123;ext=12",
        "tel:415-555-0123;phone-context=+1",
        "tel:555-0123;phone-context=+1-415",
        "TEL:+14155550123",
        "415\u{a0}555\u{a0}0123",
        "415\u{200b}555\u{200b}0123",
        "\u{202e}4155550123",
        "\u{200e}+1 415 555 0123\u{200f}",
        "\u{feff}+14155550123",
        "415\u{2013}555\u{2013}0123",
        "415\u{2212}555\u{2212}0123",
        "\u{ff0b}\u{ff11}\u{ff14}\u{ff11}\u{ff15}\u{ff15}\u{ff15}\u{ff15}\u{ff10}\u{ff11}\u{ff12}\u{ff13}",
        "Tel: +1 415 555 0123",
        "Phone: 415-555-0123",
        "415-555-0123 extension 123",
        "415-555-0123 ext. 7",
        "4155550123,123",
        "4155550123;ext=9",
        "+1 (415) 555-0123 x12",
    ];
    for raw in cases {
        assert_eq!(e164(raw, "US"), Ok("+14155550123".to_string()), "{raw:?}");
    }
    // Vanity numbers are spelled on billboards and typed that way.
    assert_eq!(e164("1-800-FLOWERS", "US").unwrap(), "+18003569377");
    assert_eq!(e164("0800 FLOWERS", "GB"), e164("0800 356 9377", "GB"));
    assert!(e164("0800 FLOWERS", "GB").is_ok());
}

#[test]
fn sip_and_tel_uris_give_their_user_part_only() {
    for raw in [
        "sip:+14155550123@carrier.example;user=phone",
        "sips:+14155550123@carrier.example:5061",
        "<sip:+14155550123@198.51.100.7;user=phone>",
        "\"Ada 2125550147\" <sip:+14155550123@198.51.100.7>;tag=9fx",
        "sip:+1-415-555-0123;npdi;rn=+12125550147@gw.example;user=phone",
        "sip:+14155550123;cic=+16175550199@gw.example",
        "sip:4155550123:secret@pbx.example",
        "tel:+14155550123;npdi;rn=+12125550147",
        "tel:+14155550123;cic=+16175550199;isub=1234",
        "+14155550123;rn=+12125550147",
    ] {
        assert_eq!(e164(raw, "US"), Ok("+14155550123".to_string()), "{raw}");
    }
    // A URI without a user part has only a host: never a number, whatever digits it holds.
    for raw in [
        "sip:4155550123",
        "sip:14155550123.example.com",
        "<sip:198.51.100.7:5060>",
        "sip:@4155550123",
    ] {
        assert!(e164(raw, "US").is_err(), "{raw}");
    }
}

#[test]
fn carriers_that_drop_the_plus() {
    assert_eq!(e164("442079460958", "US").unwrap(), "+442079460958");
    assert_eq!(e164("14155550123", "GB").unwrap(), "+14155550123");
    assert_eq!(e164("14155550123", "DE").unwrap(), "+14155550123");
    assert_eq!(e164("4930901820", "DE").unwrap(), "+4930901820");
    // A valid national reading is kept: in the US 2079460958 is a Maine number.
    assert_eq!(e164("2079460958", "US").unwrap(), "+12079460958");
}

#[test]
fn rejects_what_names_nobody() {
    assert_eq!(e164("", "US"), Err(InvalidNumber::Empty));
    assert_eq!(e164(" \u{a0}\t", "US"), Err(InvalidNumber::Empty));
    assert_eq!(e164("anonymous", "US"), Err(InvalidNumber::NotANumber));
    assert_eq!(e164("Restricted", "US"), Err(InvalidNumber::NotANumber));
    assert_eq!(e164("123", "US"), Err(InvalidNumber::NotPossible));
    assert_eq!(
        e164("*67 415 555 0123", "US"),
        Err(InvalidNumber::NotPossible)
    );
    assert!(e164("+999 123 4567", "US").is_err());
    assert!(e164("4155550123' OR Name != '", "US").is_err());
    // Only dialable inside an area code: it could be anyone's.
    assert_eq!(e164("555-0123", "US"), Err(InvalidNumber::LocalOnly));
    assert_eq!(e164("5550123", "US"), Err(InvalidNumber::LocalOnly));
}

#[test]
fn long_input_is_refused_by_length_in_characters() {
    let at_bound = format!("+14155550123{}", " ".repeat(MAX_INPUT_CHARS - 13) + "x");
    assert_eq!(at_bound.chars().count(), MAX_INPUT_CHARS);
    assert_ne!(e164(&at_bound, "US"), Err(InvalidNumber::TooLong));
    assert_eq!(
        e164(&"9".repeat(MAX_INPUT_CHARS + 1), "US"),
        Err(InvalidNumber::TooLong)
    );
    // Counted in characters: 200 two-byte characters are within the bound.
    let wide = format!("+14155550123{}", "\u{a0}".repeat(200));
    assert_eq!(e164(&wide, "US").unwrap(), "+14155550123");
    // Surrounding whitespace does not count.
    let padded = format!("{}+14155550123{}", " ".repeat(5000), "\n".repeat(5000));
    assert_eq!(e164(&padded, "US").unwrap(), "+14155550123");
    let huge = "4".repeat(4 << 20);
    let started = std::time::Instant::now();
    assert_eq!(e164(&huge, "US"), Err(InvalidNumber::TooLong));
    assert!(!caller("+14155550123", "US").matches_stored(&huge, country("US")));
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
}

#[test]
fn search_forms_are_the_digit_strings_people_store() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // E.164 digits, national format digits, country code + trunk prefix, as dialled from the
    // org's country, 00 form.
    assert_eq!(
        forms("+44 20 7946 0958", "US"),
        s(&[
            "442079460958",
            "02079460958",
            "4402079460958",
            "011442079460958",
            "00442079460958"
        ])
    );
    assert_eq!(
        forms("+44 20 7946 0958", "GB"),
        s(&[
            "442079460958",
            "02079460958",
            "4402079460958",
            "00442079460958"
        ])
    );
    assert_eq!(
        forms("+1 415 555 0123", "US"),
        s(&["14155550123", "4155550123", "0014155550123"])
    );
    assert_eq!(
        forms("+1 415 555 0123", "GB"),
        s(&["14155550123", "4155550123", "0014155550123"])
    );
    assert_eq!(
        forms("+49 30 901820", "DE"),
        s(&["4930901820", "030901820", "49030901820", "004930901820"])
    );
    assert_eq!(
        forms("+33 1 23 45 67 89", "US"),
        s(&[
            "33123456789",
            "0123456789",
            "330123456789",
            "01133123456789",
            "0033123456789"
        ])
    );
    assert_eq!(
        forms("+61 2 9374 4000", "AU"),
        s(&["61293744000", "0293744000", "610293744000", "0061293744000"])
    );
    assert_eq!(
        forms("+44 20 7946 0958", "AU"),
        s(&[
            "442079460958",
            "02079460958",
            "4402079460958",
            "0011442079460958",
            "00442079460958"
        ])
    );
    assert_eq!(
        forms("+91 98765 43210", "IN"),
        s(&[
            "919876543210",
            "09876543210",
            "9109876543210",
            "00919876543210"
        ])
    );
    // Italy keeps the leading 0 in E.164 and dials no trunk prefix.
    assert_eq!(
        forms("+39 06 6982 1234", "IT"),
        s(&["390669821234", "0669821234", "00390669821234"])
    );
    assert_eq!(
        forms("+81 3-1234-5678", "JP"),
        s(&["81312345678", "0312345678", "810312345678", "0081312345678"])
    );
    assert_eq!(
        forms("+81 3-1234-5678", "US"),
        s(&[
            "81312345678",
            "0312345678",
            "810312345678",
            "01181312345678",
            "0081312345678"
        ])
    );
    // The national significant number alone is not a form where a trunk prefix is dialled:
    // 2079460958 is a Maine number.
    assert!(!forms("+44 20 7946 0958", "US").contains(&"2079460958".to_string()));
}

#[test]
fn stored_numbers_match_their_own_caller_only() {
    let us = country("US");
    let ada = caller("+14155550123", "US");
    assert_eq!(ada.key(), 14155550123);
    for stored in [
        "(415) 555-0123",
        "415.555.0123 x12",
        "415-555-0123 ext. 7",
        "+1 415 555 0123",
        "1 (415) 555-0123",
        "+1 (415) 555-0123",
        "tel:+1-415-555-0123",
    ] {
        assert!(ada.matches_stored(stored, us), "{stored}");
    }
    for stored in ["(415) 555-0124", "+44 415 555 0123", "", "n/a", "555-0123"] {
        assert!(!ada.matches_stored(stored, us), "{stored}");
    }
    let dublin = caller("+353 1 555 0142", "US");
    assert!(dublin.matches_stored("+353 1 555 0142", us));
    assert!(dublin.matches_stored("00353 1 555 0142", us));
    assert!(dublin.matches_stored("011 353 1 555 0142", us));
    assert!(!dublin.matches_stored("(415) 555-0142", us));
}

#[test]
fn explicit_country_codes_decide() {
    let london = caller("+44 20 7946 0958", "US");
    for org in ["US", "GB", "DE", "AU", "JP"] {
        for stored in [
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+44 (0) 20 7946 0958",
            "0044 20 7946 0958",
            "0044 (0)20 7946 0958",
            "+442079460958",
        ] {
            assert!(
                london.matches_stored(stored, country(org)),
                "{stored} in {org}"
            );
        }
        // Another country's number with the same national digits.
        assert!(!london.matches_stored("+91 20 7946 0958", country(org)));
    }
    assert!(london.matches_stored("011 44 20 7946 0958", country("US")));
    assert!(london.matches_stored("0011 44 20 7946 0958", country("AU")));
}

#[test]
fn a_number_without_a_country_code_is_never_another_countrys_subscriber() {
    // Class 3 of issue 8: in a GB or DE org, a US record typed the American way.
    let us_caller = caller("+1 415 555 0123", "US");
    let de_caller = caller("+49 4155 550123", "DE");
    for org in ["GB", "DE", "US", "AU", "FR"] {
        assert!(
            us_caller.matches_stored("(415) 555-0123", country(org)),
            "{org}"
        );
        assert!(
            !de_caller.matches_stored("(415) 555-0123", country(org)),
            "{org}"
        );
    }
    assert!(de_caller.matches_stored("04155 550123", country("DE")));
    assert!(de_caller.matches_stored("04155 550123", country("GB")));
    assert!(!us_caller.matches_stored("04155 550123", country("DE")));

    // An Italian mobile and a New York number share their national digits. In each org the
    // org's own reading wins; elsewhere the text belongs to the caller whose national form it is.
    let rome = caller("+39 347 555 0123", "IT");
    let new_york = caller("+1 347 555 0123", "US");
    assert!(rome.matches_stored("347 555 0123", country("IT")));
    assert!(!new_york.matches_stored("347 555 0123", country("IT")));
    assert!(new_york.matches_stored("(347) 555-0123", country("US")));
    assert!(!rome.matches_stored("(347) 555-0123", country("US")));
    assert!(rome.matches_stored("+39 347 555 0123", country("US")));
    assert!(new_york.matches_stored("+1 347 555 0123", country("IT")));

    // London and Pune: both dial 020 7946 0958 at home.
    let london = caller("+44 20 7946 0958", "GB");
    let pune = caller("+91 20 7946 0958", "IN");
    assert!(london.matches_stored("020 7946 0958", country("GB")));
    assert!(!pune.matches_stored("020 7946 0958", country("GB")));
    assert!(pune.matches_stored("020 7946 0958", country("IN")));
    assert!(!london.matches_stored("020 7946 0958", country("IN")));

    // Trunk prefixes are part of the national form: a GB caller is not a Maine record, and a
    // Maine caller is not a GB record written without its 0.
    let maine = caller("+1 207 946 0958", "US");
    assert!(!london.matches_stored("(207) 946-0958", country("US")));
    assert!(!london.matches_stored("2079460958", country("GB")));
    assert!(maine.matches_stored("(207) 946-0958", country("GB")));
    assert!(!maine.matches_stored("020 7946 0958", country("US")));
}

#[test]
fn country_codes_are_validated() {
    assert!(Country::parse("GB").is_some());
    assert!(Country::parse("gb").is_some());
    assert!(Country::parse("XX").is_none());
    assert!(Country::parse("USA").is_none());
}

/// The table in docs/design.md ("Which record is the caller"), row for row.
const DESIGN_TABLE: &[(&str, &str, &str, bool)] = &[
    // (caller, org default country, stored text, is the caller)
    ("+1 415 555 0123", "US", "(415) 555-0123", true),
    ("+1 415 555 0123", "US", "1 (415) 555-0123", true),
    ("+1 416 555 0199", "US", "416-555-0199", true),
    ("+1 415 555 0123", "GB", "(415) 555-0123", true),
    ("+1 415 555 0123", "DE", "(415) 555-0123", true),
    ("+49 4155 550123", "DE", "(415) 555-0123", false),
    ("+49 4155 550123", "DE", "04155 550123", true),
    ("+49 4155 550123", "US", "04155 550123", true),
    ("+44 20 7946 0958", "GB", "020 7946 0958", true),
    ("+44 20 7946 0958", "GB", "20 7946 0958", false),
    ("+44 20 7946 0958", "US", "020 7946 0958", true),
    ("+44 20 7946 0958", "US", "+44 (0)20 7946 0958", true),
    ("+44 20 7946 0958", "US", "011 44 20 7946 0958", true),
    ("+44 20 7946 0958", "DE", "0044 20 7946 0958", true),
    ("+44 20 7946 0958", "US", "(207) 946-0958", false),
    ("+1 207 946 0958", "GB", "020 7946 0958", false),
    ("+33 1 23 45 67 89", "FR", "01 23 45 67 89", true),
    ("+33 1 23 45 67 89", "US", "+33 (0)1 23 45 67 89", true),
    ("+33 2 93 74 40 00", "FR", "02 93 74 40 00", true),
    ("+61 2 9374 4000", "FR", "02 93 74 40 00", false),
    ("+61 2 9374 4000", "AU", "(02) 9374 4000", true),
    ("+33 2 93 74 40 00", "AU", "(02) 9374 4000", false),
    ("+44 20 7946 0958", "AU", "0011 44 20 7946 0958", true),
    ("+91 98765 43210", "IN", "098765 43210", true),
    ("+91 98765 43210", "US", "+91 98765 43210", true),
    ("+91 20 7946 0958", "IN", "020 7946 0958", true),
    ("+91 20 7946 0958", "GB", "020 7946 0958", false),
    ("+44 20 7946 0958", "IN", "020 7946 0958", false),
    // Neither country's org: the text is both callers' national form (see the design note).
    ("+91 20 7946 0958", "US", "020 7946 0958", true),
    ("+39 06 6982 1234", "IT", "06 6982 1234", true),
    ("+39 06 6982 1234", "US", "+39 06 6982 1234", true),
    ("+39 347 555 0123", "IT", "347 555 0123", true),
    ("+1 347 555 0123", "IT", "(347) 555-0123", false),
    ("+1 347 555 0123", "US", "(347) 555-0123", true),
    ("+39 347 555 0123", "US", "347 555 0123", false),
    ("+81 3-1234-5678", "JP", "03-1234-5678", true),
    ("+81 3-1234-5678", "US", "03-1234-5678", true),
    ("+81 3-1234-5678", "US", "+81 3 1234 5678", true),
    ("+81 3-1234-5678", "US", "+44 3 1234 5678", false),
];

#[test]
fn the_design_table_holds() {
    let mut wrong = Vec::new();
    for &(number, org, stored, expected) in DESIGN_TABLE {
        let org_country = country(org);
        let caller = CallerNumber::parse(number, org_country).unwrap();
        if caller.matches_stored(stored, org_country) != expected {
            wrong.push(format!(
                "{number} in {org} vs {stored:?}: expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn numbers_longer_than_e164_allows_are_not_possible() {
    // Found by fuzz/caller_number: libphonenumber's German plan admits 15 national digits, so
    // this parsed to 17 E.164 digits, past the 15 that `key` relies on.
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
    // Found by fuzz/caller_number: no plan calls +3521540578305 valid, and reading it back
    // strips Luxembourg's carrier code 15405, leaving +35278305.
    assert_eq!(
        e164("011 352 154 05 154 0578305", "US"),
        Err(InvalidNumber::NotPossible)
    );
    // Italy's leading zero is part of the number and survives the round trip.
    assert_eq!(e164("+39 06 6988 4821", "US").unwrap(), "+390669884821");
    assert_eq!(e164("+390669884821", "IT").unwrap(), "+390669884821");
}
