//! Callers from eight countries, as people type them and as carriers send them, looked up through
//! the real module in orgs of eight default countries, against records stored the ways people
//! store numbers, in every phone-match mode of the emulator. The answers must not depend on how
//! loosely the org's phone index matches: the module decides which record is the caller
//! (docs/design.md, "Which record is the caller").

mod support;

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};
use sf_emulator::{EmulatorOptions, PhoneMatch};
use support::fixture::{Fixture, Options};

/// Contacts, by last name, with their phone as typed.
const CONTACTS: &[(&str, &str)] = &[
    ("us-415", "(415) 555-0123"),
    ("us-415-e164", "+1 415-555-0123"),
    ("us-415-trunk", "1-415-555-0123"),
    ("de-4155", "04155 550123"),
    ("de-4155-intl", "+49 (0)4155 550123"),
    ("gb-london", "020 7946 0958"),
    ("gb-london-intl", "+44 (0)20 7946 0958"),
    ("gb-london-00", "0044 20 7946 0958"),
    ("us-maine", "(207) 946-0958"),
    ("fr-paris", "01 23 45 67 89"),
    ("fr-02", "02 93 74 40 00"),
    ("au-sydney", "(02) 9374 4000"),
    ("au-sydney-intl", "+61 2 9374 4000"),
    ("in-mobile", "098765 43210"),
    ("it-rome", "06 6982 1234"),
    ("it-mobile", "347 555 0123"),
    ("us-nyc", "(347) 555-0123"),
    ("jp-tokyo", "03-1234-5678"),
    ("jp-tokyo-intl", "+81 3 1234 5678"),
    ("ca-toronto", "416-555-0199"),
];

/// Leads, by last name: a Contact and a Lead of one caller both count.
const LEADS: &[(&str, &str)] = &[("lead-london", "+44 20 7946 0958")];

/// Org name and its default country.
const ORGS: &[(&str, &str)] = &[
    ("us", "US"),
    ("gb", "GB"),
    ("de", "DE"),
    ("fr", "FR"),
    ("au", "AU"),
    ("in", "IN"),
    ("it", "IT"),
    ("jp", "JP"),
];

struct Row {
    e164: &'static str,
    org: &'static str,
    /// The caller's number as it arrives in that org: typed, from a carrier, from a SIP trunk.
    sent: &'static [&'static str],
    /// The records that are this caller in this org.
    records: &'static [&'static str],
}

const US_415: &[&str] = &["us-415", "us-415-e164", "us-415-trunk"];
const DE_4155: &[&str] = &["de-4155", "de-4155-intl"];
const LONDON: &[&str] = &["gb-london", "gb-london-intl", "gb-london-00", "lead-london"];
const NONE: &[&str] = &[];

const ROWS: &[Row] = &[
    // A US caller: the same records in every org whose own plan does not write 4155550123.
    Row {
        e164: "+14155550123",
        org: "us",
        sent: &[
            "+14155550123",
            "(415) 555-0123",
            "14155550123",
            "tel:+1-415-555-0123;ext=12",
            "<sip:+14155550123@gw.example;user=phone>",
            "sip:+14155550123;npdi;rn=+12075550100@gw.example",
            "415\u{a0}555\u{2013}0123",
        ],
        records: US_415,
    },
    Row {
        e164: "+14155550123",
        org: "gb",
        sent: &["+1 415 555 0123", "00 1 415 555 0123", "14155550123"],
        records: US_415,
    },
    Row {
        e164: "+14155550123",
        org: "de",
        sent: &["+1 415 555 0123", "0014155550123"],
        records: US_415,
    },
    Row {
        e164: "+14155550123",
        org: "fr",
        sent: &["+14155550123"],
        records: US_415,
    },
    Row {
        e164: "+14155550123",
        org: "jp",
        sent: &["+14155550123", "010 1 415 555 0123"],
        records: US_415,
    },
    // The German caller with the same national digits is never the American.
    Row {
        e164: "+494155550123",
        org: "de",
        sent: &["04155 550123", "+49 4155 550123"],
        records: DE_4155,
    },
    Row {
        e164: "+494155550123",
        org: "us",
        sent: &["+494155550123", "011 49 4155 550123"],
        records: DE_4155,
    },
    Row {
        e164: "+494155550123",
        org: "gb",
        sent: &["0049 4155 550123"],
        records: DE_4155,
    },
    // London, and Pune whose national form is the same.
    Row {
        e164: "+442079460958",
        org: "us",
        sent: &["+44 20 7946 0958", "011 44 20 7946 0958", "442079460958"],
        records: LONDON,
    },
    Row {
        e164: "+442079460958",
        org: "gb",
        sent: &["020 7946 0958", "+442079460958"],
        records: LONDON,
    },
    Row {
        e164: "+442079460958",
        org: "in",
        sent: &["+44 20 7946 0958"],
        records: &["gb-london-intl", "gb-london-00", "lead-london"],
    },
    Row {
        e164: "+912079460958",
        org: "in",
        sent: &["020 7946 0958", "+91 20 7946 0958"],
        records: &["gb-london"],
    },
    Row {
        e164: "+912079460958",
        org: "gb",
        sent: &["+91 20 7946 0958", "0091 20 7946 0958"],
        records: NONE,
    },
    // Maine's digits without a trunk prefix are not London's.
    Row {
        e164: "+12079460958",
        org: "us",
        sent: &["(207) 946-0958", "+12079460958"],
        records: &["us-maine"],
    },
    Row {
        e164: "+12079460958",
        org: "gb",
        sent: &["+1 207 946 0958"],
        records: &["us-maine"],
    },
    // France and Australia both dial 02 93 74 40 00 at home.
    Row {
        e164: "+33123456789",
        org: "fr",
        sent: &["01 23 45 67 89", "+33 1 23 45 67 89"],
        records: &["fr-paris"],
    },
    Row {
        e164: "+33123456789",
        org: "us",
        sent: &["+33 1 23 45 67 89", "011 33 1 23 45 67 89"],
        records: &["fr-paris"],
    },
    Row {
        e164: "+33293744000",
        org: "fr",
        sent: &["02 93 74 40 00"],
        // In a French org the Australian record typed nationally reads as this French number.
        records: &["fr-02", "au-sydney"],
    },
    Row {
        e164: "+33293744000",
        org: "au",
        sent: &["+33 2 93 74 40 00", "0011 33 2 93 74 40 00"],
        records: NONE,
    },
    Row {
        e164: "+61293744000",
        org: "au",
        sent: &["(02) 9374 4000", "+61 2 9374 4000"],
        records: &["au-sydney", "au-sydney-intl", "fr-02"],
    },
    Row {
        e164: "+61293744000",
        org: "fr",
        sent: &["+61 2 9374 4000", "00 61 2 9374 4000"],
        records: &["au-sydney-intl"],
    },
    // India, Italy (the leading 0 stays in E.164), Japan, Canada.
    Row {
        e164: "+919876543210",
        org: "in",
        sent: &["098765 43210", "+91 98765 43210", "9876543210"],
        records: &["in-mobile"],
    },
    Row {
        e164: "+919876543210",
        org: "us",
        sent: &["+91 98765 43210", "011 91 98765 43210", "919876543210"],
        records: &["in-mobile"],
    },
    Row {
        e164: "+390669821234",
        org: "it",
        sent: &["06 6982 1234", "+39 06 6982 1234"],
        records: &["it-rome"],
    },
    Row {
        e164: "+390669821234",
        org: "gb",
        sent: &["0039 06 6982 1234"],
        records: &["it-rome"],
    },
    // An Italian mobile and a New York number: the org's own plan reads the shared digits.
    Row {
        e164: "+393475550123",
        org: "it",
        sent: &["347 555 0123", "+39 347 555 0123"],
        records: &["it-mobile", "us-nyc"],
    },
    Row {
        e164: "+393475550123",
        org: "us",
        sent: &["+39 347 555 0123"],
        records: NONE,
    },
    Row {
        e164: "+13475550123",
        org: "us",
        sent: &["(347) 555-0123", "+13475550123"],
        records: &["it-mobile", "us-nyc"],
    },
    Row {
        e164: "+13475550123",
        org: "it",
        sent: &["+1 347 555 0123", "001 347 555 0123"],
        records: NONE,
    },
    Row {
        e164: "+13475550123",
        org: "gb",
        sent: &["+1 347 555 0123"],
        records: &["it-mobile", "us-nyc"],
    },
    Row {
        e164: "+81312345678",
        org: "jp",
        sent: &["03-1234-5678", "+81 3 1234 5678"],
        records: &["jp-tokyo", "jp-tokyo-intl"],
    },
    Row {
        e164: "+81312345678",
        org: "us",
        sent: &["+81 3 1234 5678", "011 81 3 1234 5678"],
        records: &["jp-tokyo", "jp-tokyo-intl"],
    },
    Row {
        e164: "+14165550199",
        org: "us",
        sent: &["416-555-0199", "+1 (416) 555-0199"],
        records: &["ca-toronto"],
    },
    Row {
        e164: "+14165550199",
        org: "gb",
        sent: &["+1 416 555 0199"],
        records: &["ca-toronto"],
    },
];

/// Numbers that name nobody: refused before any search.
const INVALID: &[(&str, &str)] = &[
    ("us", "555-0123"),
    ("us", "sip:4155550123"),
    ("us", "<sip:gw.example;user=phone>"),
    ("us", "anonymous"),
    ("gb", "123"),
];

fn seed() -> EmulatorOptions {
    let mut options = EmulatorOptions::default_seed();
    let people = |list: &[(&str, &str)], extra: Value| -> Value {
        list.iter()
            .map(|(name, phone)| {
                let mut record = json!({"LastName": name, "Phone": phone, "OwnerId": "@grace"});
                if let (Some(r), Some(e)) = (record.as_object_mut(), extra.as_object()) {
                    r.extend(e.clone());
                }
                record
            })
            .collect()
    };
    let records = &mut options.seed.records;
    records.insert("Contact".into(), people(CONTACTS, json!({})));
    records.insert(
        "Lead".into(),
        people(LEADS, json!({"Company": "Numbers Ltd"})),
    );
    // Cases and Tasks of the default seed refer to its Contacts.
    records.remove("Case");
    records.remove("Task");
    options
}

/// Record Id → last name, for one org's emulator.
fn labels(f: &Fixture, org: &str) -> HashMap<String, String> {
    let admin = f.org(org).emulator.admin();
    ["Contact", "Lead"]
        .into_iter()
        .flat_map(|object| admin.records(object))
        .map(|r| {
            (
                r["Id"].as_str().unwrap().to_string(),
                r["LastName"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn callers_from_eight_countries_match_only_their_own_records_in_every_phone_match_mode() {
    let mut f = Fixture::start(Options {
        orgs: ORGS.iter().map(|(name, _)| (*name, seed())).collect(),
        default_countries: ORGS.to_vec(),
        ..Options::default()
    });
    let labels: HashMap<&str, HashMap<String, String>> = ORGS
        .iter()
        .map(|(org, _)| (*org, labels(&f, org)))
        .collect();
    let mut wrong = Vec::new();
    let mut lookups = 0;
    for mode in PhoneMatch::ALL {
        for (org, _) in ORGS {
            f.org(org).emulator.admin().set_phone_match(mode);
        }
        for row in ROWS {
            let expected: BTreeSet<&str> = row.records.iter().copied().collect();
            let contacts = row
                .records
                .iter()
                .filter(|r| CONTACTS.iter().any(|(name, _)| name == *r))
                .count();
            let status = match contacts {
                0 if expected.is_empty() => "not_found",
                0 | 1 => "found",
                _ => "multiple",
            };
            for sent in row.sent {
                // Every form goes to Salesforce, not to the previous form's cache entry.
                assert!(f
                    .shim
                    .api(&format!("cache flush {}", row.org))
                    .starts_with("+OK"));
                lookups += 1;
                let vars = f.lookup(&format!("n{lookups}"), sent, &format!("org={}", row.org));
                let got: BTreeSet<&str> = vars
                    .get("sf_record_ids")
                    .map(|ids| {
                        ids.split(',')
                            .filter(|id| !id.is_empty())
                            .map(|id| labels[row.org].get(id).map_or(id, String::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                let count = expected.len().to_string();
                if vars.get("sf_lookup_status").map(String::as_str) != Some(status)
                    || vars.get("sf_caller_e164").map(String::as_str) != Some(row.e164)
                    || vars.get("sf_match_count") != Some(&count)
                    || got != expected
                {
                    wrong.push(format!(
                        "mode {mode} org {} sent {sent:?}: expected {status} {expected:?} as {}, got {} {got:?} (count {:?}, e164 {:?})",
                        row.org,
                        row.e164,
                        vars.get("sf_lookup_status").map_or("-", String::as_str),
                        vars.get("sf_match_count"),
                        vars.get("sf_caller_e164"),
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {lookups} lookups wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // What names nobody never reaches Salesforce.
    let searches: u64 = ORGS
        .iter()
        .map(|(org, _)| f.org(org).emulator.admin().endpoint_count("search"))
        .sum();
    for (i, (org, sent)) in INVALID.iter().enumerate() {
        let vars = f.lookup(&format!("bad{i}"), sent, &format!("org={org}"));
        assert_eq!(
            vars["sf_lookup_status"], "invalid_number",
            "{sent:?}: {vars:?}"
        );
    }
    let after: u64 = ORGS
        .iter()
        .map(|(org, _)| f.org(org).emulator.admin().endpoint_count("search"))
        .sum();
    assert_eq!(after, searches);

    // Every search was quoted digit phrases joined by OR, and every one was accepted (the
    // module's own SOQL, its owner directory, is not a search).
    for (org, _) in ORGS {
        for entry in f
            .org(org)
            .emulator
            .admin()
            .queries()
            .into_iter()
            .filter(|q| q.kind == "sosl")
        {
            assert!(entry.error.is_none(), "{entry:?}");
            let term = entry
                .text
                .strip_prefix("FIND {")
                .and_then(|rest| rest.split_once('}'))
                .map(|(term, _)| term)
                .unwrap_or_else(|| panic!("{}", entry.text));
            for phrase in term.split(" OR ") {
                let digits = phrase
                    .strip_prefix('"')
                    .and_then(|p| p.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("{}", entry.text));
                assert!(
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                    "{}",
                    entry.text
                );
            }
        }
    }
}
