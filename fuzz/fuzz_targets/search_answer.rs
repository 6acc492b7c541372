//! A search answer turned into a lookup outcome (mod_natterbox_sf/engine/src/search.rs): the
//! records are Salesforce's, the caller number is the caller's.
//!
//! Properties: no answer panics `decide`; a Found outcome names a record of the winning type
//! (object names compare without case, as SOQL's do)
//! whose Id it reports and counts at least that match; Multiple means at least two matches; every channel variable value is
//! free of control characters and within the size limit.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use natterbox_common::config::{Config, LookupProfile};
use natterbox_common::phone::{CallerNumber, Country};
use natterbox_engine::outcome::{VarNames, MAX_VALUE_BYTES};
use natterbox_engine::search::decide;
use natterbox_engine::LookupStatus;
use serde_json::Value;

fn profile() -> &'static LookupProfile {
    static PROFILE: OnceLock<LookupProfile> = OnceLock::new();
    PROFILE.get_or_init(|| {
        let config = Config::parse(
            r#"<configuration name="natterbox_sf.conf"><orgs><org name="acme"><profile name="default">
                 <object name="Contact" fields="Id,Name,OwnerId"><map field="Owner.Extension" variable="sf_owner_extension"/></object>
                 <object name="Lead" fields="Id,Name,Company"><map field="Company" variable="sf_company"/></object>
                 <object name="Account"/>
               </profile></org></orgs></configuration>"#,
        )
        .unwrap();
        config.orgs[0].profiles[0].clone()
    })
}

/// The record's Id as `decide` reads it: exact key first, else any case (like SOQL).
fn id_text(record: &Value) -> Option<String> {
    let map = record.as_object()?;
    let id = map.get("Id").or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
            .map(|(_, v)| v)
    })?;
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let (caller_text, body) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"4155550123"[..], data),
    };
    let country = Country::parse("US").unwrap();
    let Ok(caller) = CallerNumber::parse(&String::from_utf8_lossy(caller_text), country) else {
        return;
    };
    let Ok(Value::Array(records)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let names = VarNames::for_profile(profile());
    let Ok(outcome) = decide(profile(), &names, &caller, country, &records) else {
        return;
    };
    for (name, value) in outcome.vars.iter() {
        assert!(!value.chars().any(char::is_control), "{name}={value:?}");
        assert!(
            value.len() <= MAX_VALUE_BYTES,
            "{name} is {} bytes",
            value.len()
        );
    }
    match outcome.status {
        LookupStatus::Found => {
            assert!(outcome.match_count >= 1);
            let kind = outcome
                .vars
                .get("sf_record_type")
                .expect("a found record has a type");
            let id = outcome
                .vars
                .get("sf_record_id")
                .expect("a found record has an id");
            assert!(
                records.iter().any(|r| {
                    r.get("attributes")
                        .and_then(|a| a.get("type"))
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                        && id_text(r).is_some_and(|t| {
                            t.chars()
                                .map(|c| if c.is_control() { ' ' } else { c })
                                .collect::<String>()
                                .starts_with(id)
                        })
                }),
                "{kind} {id} is not in the answer"
            );
        }
        LookupStatus::Multiple => assert!(outcome.match_count >= 2),
        LookupStatus::NotFound => assert_eq!(outcome.match_count, 0),
        other => panic!("decide gave {other:?}"),
    }
});
