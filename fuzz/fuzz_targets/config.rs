//! `natterbox_sf.conf`, as the module gets it from FreeSWITCH and the sidecar reads it from disk.
//!
//! Properties: parsing never panics and is deterministic; an accepted config has at least one
//! org, unique org names fit for file names, a default org that exists, an API version of the
//! form `NN.0` (it goes into every URL path), and object, field and event names that are
//! Salesforce API names, so that the search built from a profile has exactly the braces of
//! `FIND {…}` and nothing from the config can reach outside its RETURNING clause.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natterbox_common::config::{is_api_name, is_field_path, Config};
use natterbox_common::phone::{CallerNumber, Country};
use natterbox_engine::search::SearchTemplate;

fn is_org_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `application/x-www-form-urlencoded` back to text.
fn form_decode(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Config::parse(text);
    assert_eq!(parsed, Config::parse(text), "parsing is deterministic");
    let Ok(config) = parsed else {
        return;
    };
    assert!(!config.orgs.is_empty());
    for (i, org) in config.orgs.iter().enumerate() {
        assert!(is_org_name(&org.name), "org name {:?}", org.name);
        assert!(
            config.orgs[..i].iter().all(|o| o.name != org.name),
            "org {:?} twice",
            org.name
        );
        assert_eq!(config.org(&org.name), Some(org));
        let version = org.api_version.strip_suffix(".0").unwrap_or("");
        assert!(
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()),
            "api-version {:?}",
            org.api_version
        );
        if let Some(event) = &org.screen_pop.platform_event {
            assert!(is_api_name(event), "platform event {event:?}");
        }
        let caller = CallerNumber::parse("+14155550123", Country::parse("US").unwrap()).unwrap();
        for profile in &org.profiles {
            for object in &profile.objects {
                assert!(is_api_name(&object.object), "object {:?}", object.object);
                for field in object.fields.iter().chain(&object.phone_fields) {
                    assert!(is_field_path(field), "field {field:?}");
                }
                for mapping in &object.mappings {
                    assert!(
                        is_field_path(&mapping.field),
                        "mapped field {:?}",
                        mapping.field
                    );
                }
            }
            let sosl = form_decode(SearchTemplate::new(profile).query(&caller).encoded());
            assert!(sosl.starts_with("FIND {\"14155550123\""), "{sosl}");
            assert_eq!(sosl.matches(['{', '}']).count(), 2, "{sosl}");
            let (_, returning) = sosl
                .split_once("} IN PHONE FIELDS RETURNING ")
                .expect("a RETURNING clause");
            assert!(!returning.contains(['\'', '"', '\\', ';']), "{sosl}");
        }
    }
    match &config.settings.default_org {
        Some(name) => assert_eq!(config.resolve_org(None).map(|o| &o.name), Some(name)),
        None => assert_eq!(config.resolve_org(None).is_some(), config.orgs.len() == 1),
    }
});
