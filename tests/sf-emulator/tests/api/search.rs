use crate::common::*;
use serde_json::{json, Value};

async fn sosl(emu: &sf_emulator::Emulator, tok: &str, s: &str) -> (u16, Value) {
    let (status, _, b) = get(
        emu,
        tok,
        &format!("/services/data/{V}/search?q={}", url_encode(s)),
    )
    .await;
    (status, b)
}

fn found(b: &Value) -> Vec<String> {
    b["searchRecords"]
        .as_array()
        .unwrap_or_else(|| panic!("{b}"))
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["attributes"]["type"].as_str().unwrap(),
                r["Name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

const RET: &str =
    "RETURNING Contact(Id, Name, Phone), Lead(Id, Name, Phone), Account(Id, Name, Phone)";

#[tokio::test]
async fn phone_search_matches_digits_across_formats() {
    let emu = start().await;
    let tok = token(&emu).await;
    let cases: &[(&str, &[&str])] = &[
        ("4155550123", &["Contact:Ada Lovelace"]),
        ("14155550123", &["Contact:Ada Lovelace"]),
        ("\"\\+1 \\(415\\) 555\\-0123\"", &["Contact:Ada Lovelace"]),
        ("4155550199", &["Contact:Bob Jones", "Lead:Sam Lee"]),
        (
            "442079460958",
            &["Contact:Jane Smith", "Contact:John Smith"],
        ),
        (
            "\"\\+353 1 555 0142\"",
            &["Contact:Patrick O'Brien", "Account:Dublin Widgets"],
        ),
        ("4930901820", &["Contact:Hans Müller"]),
        ("2125550148", &["Contact:Chris Nolan"]),
        // Exact digits (the default): a 7-digit tail is not the number.
        ("5550123", &[]),
        // Words next to each other are ANDed operands, not one number.
        ("\\+353 1 555 0142", &[]),
        ("0123", &[]),
        ("9999999999", &[]),
    ];
    for (term, want) in cases {
        let (s, b) = sosl(
            &emu,
            &tok,
            &format!("FIND {{{term}}} IN PHONE FIELDS {RET}"),
        )
        .await;
        assert_eq!(s, 200, "{term}: {b}");
        assert_eq!(found(&b), *want, "{term}");
    }
    let (_, b) = sosl(
        &emu,
        &tok,
        &format!("FIND {{4155550123}} IN PHONE FIELDS {RET}"),
    )
    .await;
    let r = &b["searchRecords"][0];
    assert_eq!(r["Phone"], "(415) 555-0123");
    assert_eq!(
        r["attributes"]["url"],
        format!(
            "/services/data/{V}/sobjects/Contact/{}",
            r["Id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn phone_match_modes_are_configurable() {
    use sf_emulator::PhoneMatch;
    let emu = start().await;
    let tok = token(&emu).await;
    let hits = |b: &Value| found(b);
    let find = |t: &str| format!("FIND {{{t}}} IN PHONE FIELDS {RET}");
    // exact (default): the NANP trunk 1 is the only folding.
    let (_, b) = sosl(&emu, &tok, &find("14155550123")).await;
    assert_eq!(hits(&b), ["Contact:Ada Lovelace"]);
    // The GB national significant number is stored by nobody in GB; the US record whose
    // digits are the same is found, the GB records are not.
    let (_, b) = sosl(&emu, &tok, &find("2079460958")).await;
    assert_eq!(hits(&b), ["Lead:Emma Walsh"]);
    let us = find("\"14155550123\" OR \"4155550123\"");
    let (_, b) = sosl(&emu, &tok, &us).await;
    assert_eq!(hits(&b), ["Contact:Ada Lovelace"]);
    emu.admin().set_phone_match(PhoneMatch::suffix(7));
    let (_, b) = sosl(&emu, &tok, &find("5550123")).await;
    assert_eq!(
        hits(&b),
        [
            "Contact:Ada Lovelace",
            "Lead:Lukas Becker",
            "Lead:Hannah Schmidt"
        ]
    );
    // Suffix matching walks into the collision traps: other countries' numbers whose
    // national digits end the same way.
    let (_, b) = sosl(&emu, &tok, &find("2079460958")).await;
    assert_eq!(
        hits(&b),
        [
            "Contact:Jane Smith",
            "Contact:John Smith",
            "Lead:Oliver Bennett",
            "Lead:Emma Walsh"
        ]
    );
    let (_, b) = sosl(&emu, &tok, &us).await;
    assert_eq!(
        hits(&b),
        [
            "Contact:Ada Lovelace",
            "Lead:Lukas Becker",
            "Lead:Hannah Schmidt"
        ]
    );
    emu.admin().set_phone_match(PhoneMatch::last10());
    let (_, b) = sosl(&emu, &tok, &find("5550123")).await;
    assert!(hits(&b).is_empty());
    let (_, b) = sosl(&emu, &tok, &find("14155550123")).await;
    assert_eq!(
        hits(&b),
        [
            "Contact:Ada Lovelace",
            "Lead:Lukas Becker",
            "Lead:Hannah Schmidt"
        ]
    );
    // The options field picks the mode at start.
    let emu = start_with(|o| o.phone_match = Some(PhoneMatch::suffix(7))).await;
    let tok = token(&emu).await;
    let (_, b) = sosl(&emu, &tok, &find("5550123")).await;
    assert_eq!(hits(&b).len(), 3);
}

#[tokio::test]
async fn one_search_for_every_stored_digit_form() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, b) = sosl(
        &emu,
        &tok,
        &format!("FIND {{\"442079460958\" OR \"02079460958\"}} IN PHONE FIELDS {RET}"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        found(&b),
        [
            "Contact:Jane Smith",
            "Contact:John Smith",
            "Lead:Oliver Bennett"
        ]
    );
    let log = emu.admin().queries();
    assert_eq!(
        log.last().unwrap().literals,
        ["442079460958", "02079460958"]
    );
}

#[tokio::test]
async fn reserved_characters_and_errors() {
    let emu = start().await;
    let tok = token(&emu).await;
    for bad in [
        "FIND {415-555-0123} IN PHONE FIELDS",
        "FIND {+14155550123}",
        "FIND {O'Brien}",
        "FIND {a:b}",
    ] {
        let (s, b) = sosl(&emu, &tok, bad).await;
        assert_eq!(
            (s, b[0]["errorCode"].as_str()),
            (400, Some("MALFORMED_SEARCH")),
            "{bad}"
        );
    }
    let (s, b) = sosl(&emu, &tok, "FIND 4155550123 IN PHONE FIELDS").await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("MALFORMED_SEARCH"))
    );
    let (_, b) = sosl(&emu, &tok, "FIND {abc} RETURNING Bogus__c").await;
    assert_eq!(b[0]["errorCode"], "INVALID_TYPE");
    let (_, b) = sosl(&emu, &tok, "FIND {abc} RETURNING Contact(Bogus)").await;
    assert_eq!(b[0]["errorCode"], "INVALID_FIELD");
}

#[tokio::test]
async fn name_search_with_where_limit_and_apostrophes() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (_, b) = sosl(
        &emu,
        &tok,
        "FIND {O\\'Brien} IN NAME FIELDS RETURNING Contact(Name, Account.Name), User(Name)",
    )
    .await;
    assert_eq!(
        found(&b),
        ["Contact:Patrick O'Brien", "User:Sinéad O'Brien"]
    );
    assert_eq!(b["searchRecords"][0]["Account"]["Name"], "Dublin Widgets");
    let (_, b) = sosl(
        &emu,
        &tok,
        "FIND {Smith} IN ALL FIELDS RETURNING Contact(Name WHERE FirstName = 'John')",
    )
    .await;
    assert_eq!(found(&b), ["Contact:John Smith"]);
    let (_, b) = sosl(
        &emu,
        &tok,
        "FIND {Smith} RETURNING Contact(Name ORDER BY FirstName DESC LIMIT 1)",
    )
    .await;
    assert_eq!(found(&b), ["Contact:John Smith"]);
    let (_, b) = sosl(&emu, &tok, "FIND {Dupl*} RETURNING Contact(Name) LIMIT 1").await;
    assert_eq!(found(&b), ["Contact:Sam Duplicate"]);
    let (_, b) = sosl(
        &emu,
        &tok,
        "FIND {ada@acme.example} IN EMAIL FIELDS RETURNING Contact(Name)",
    )
    .await;
    assert_eq!(found(&b), ["Contact:Ada Lovelace"]);
    // without RETURNING: Id only, several objects
    let (_, b) = sosl(&emu, &tok, "FIND {Globex}").await;
    let recs = b["searchRecords"].as_array().unwrap();
    assert!(recs.iter().any(|r| r["attributes"]["type"] == "Account"));
    assert!(
        recs.iter().all(|r| r.as_object().unwrap().len() == 2),
        "{b}"
    );
}

#[tokio::test]
async fn old_versions_return_a_bare_array() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (_, _, b) = get(
        &emu,
        &tok,
        &format!(
            "/services/data/v35.0/search?q={}",
            url_encode("FIND {4155550123} IN PHONE FIELDS RETURNING Contact(Name)")
        ),
    )
    .await;
    assert_eq!(b.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn parameterized_search_get_and_post() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, _, b) = get(&emu, &tok, &format!("/services/data/{V}/parameterizedSearch/?q=4155550199&in=PHONE&sobject=Contact&sobject=Lead&Contact.fields=Id,Name&Lead.fields=Name,Company&Lead.limit=5")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(found(&b), ["Contact:Bob Jones", "Lead:Sam Lee"]);
    assert_eq!(b["searchRecords"][1]["Company"], "Lee Consulting");
    let (s, b) = send(&emu, &tok, reqwest::Method::POST, &format!("/services/data/{V}/parameterizedSearch"),
        Some(json!({"q": "+1 (415) 555-0123", "in": "PHONE", "fields": ["Id", "Name"], "sobjects": [{"name": "Contact"}, {"name": "Lead"}], "overallLimit": 10}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(found(&b), ["Contact:Ada Lovelace"]);
    let (s, b) = send(
        &emu,
        &tok,
        reqwest::Method::POST,
        &format!("/services/data/{V}/parameterizedSearch"),
        Some(json!({"in": "PHONE"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test]
async fn query_log_shows_literals_after_unescaping() {
    let emu = start().await;
    let tok = token(&emu).await;
    let hostile = "x' OR Name != '";
    let escaped = hostile.replace('\\', "\\\\").replace('\'', "\\'");
    let soql = format!("SELECT Id FROM Contact WHERE Name = '{escaped}'");
    let b = query(&emu, &tok, &soql).await;
    assert_eq!(b["totalSize"], 0);
    let (_, b) = sosl(
        &emu,
        &tok,
        "FIND {4155550123} IN PHONE FIELDS RETURNING Contact(Id)",
    )
    .await;
    assert_eq!(found(&b).len(), 1);
    let log = emu.admin().queries();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].kind, "soql");
    assert_eq!(log[0].text, soql);
    assert_eq!(
        log[0].literals,
        vec![hostile.to_string()],
        "the hostile text stayed one literal"
    );
    assert_eq!(log[1].kind, "sosl");
    assert_eq!(log[1].literals, vec!["4155550123".to_string()]);
    // Unescaped, the same text turns one literal into two plus an OR: the log shows it.
    let unescaped = format!("SELECT Id FROM Contact WHERE Name = '{hostile}'");
    assert_eq!(query(&emu, &tok, &unescaped).await["totalSize"], 9);
    assert_eq!(
        emu.admin().queries()[2].literals,
        vec!["x".to_string(), String::new()]
    );
    let stats = emu.admin().stats();
    assert_eq!(stats["queries"][soql.as_str()], 1);
    assert_eq!(stats["endpoints"]["search"], 1);
    assert_eq!(stats["endpoints"]["query"], 2);
}
