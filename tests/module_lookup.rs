//! The real module, loaded into the host shim, looking callers up in the emulated org.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sf_emulator::{EmulatorOptions, FaultRule, LimitsUpdate};
use support::fixture::{Fixture, Options};
use support::read_api::Api;
use support::shim::escape_arg;

for_both_apis!(
    found_by_national_and_international_forms_then_served_from_cache,
    not_found_multiple_and_priority,
    invalid_numbers_never_reach_salesforce,
    hostile_caller_numbers_and_arguments_never_escape_a_literal,
    tenants_never_share_answers,
    a_slow_salesforce_never_holds_the_call_past_its_deadline,
    an_expired_session_is_refreshed_once_within_the_deadline,
    a_refresh_that_brings_no_new_token_ends_as_unauthorized,
    limit_exceeded_opens_the_breaker_instead_of_hammering,
    garbage_resets_and_truncated_bodies_are_errors_not_crashes,
    five_hundred_concurrent_lookups_of_one_number_make_one_request,
    salesforce_values_cannot_inject_variable_expansions,
    past_its_ttl_an_answer_is_served_stale_while_it_is_refreshed,
);

fn sosl_queries(emulator: &sf_emulator::Emulator, api: Api) -> Vec<String> {
    emulator
        .admin()
        .queries()
        .into_iter()
        .filter(|q| q.kind == api.sosl_kind())
        .map(|q| q.text)
        .collect()
}

fn found_by_national_and_international_forms_then_served_from_cache(api: Api) {
    let mut f = Fixture::start(api.options());
    let vars = f.lookup("c1", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
    assert_eq!(vars["sf_lookup_source"], "salesforce");
    assert_eq!(vars["sf_record_type"], "Contact");
    assert_eq!(vars["sf_record_name"], "Ada Lovelace");
    assert!(vars["sf_record_id"].starts_with("003") && vars["sf_record_id"].len() == 18);
    assert!(vars["sf_owner_id"].starts_with("005"));
    assert_eq!(vars["sf_owner_extension"], "1001");
    assert_eq!(vars["sf_account_name"], "Acme Corporation");
    assert_eq!(vars["sf_caller_e164"], "+14155550123");
    assert_eq!(vars["sf_match_count"], "1");
    let ms: u64 = vars["sf_lookup_ms"].parse().unwrap();
    assert!(ms < 2000);

    // The national form of the same number: the same answer, from the cache, no new request.
    let again = f.lookup("c2", "(415)555-0123", "");
    assert_eq!(again["sf_lookup_status"], "found");
    assert_eq!(again["sf_lookup_source"], "cache");
    assert_eq!(again["sf_record_id"], vars["sf_record_id"]);
    assert_eq!(f.acme().admin().endpoint_count(api.search_endpoint()), 1);

    // The search asked for every digit form the number may be stored as, each a quoted phrase.
    let queries = sosl_queries(f.acme(), api);
    assert!(
        queries[0].starts_with(
            "FIND {\"14155550123\" OR \"4155550123\" OR \"0014155550123\"} IN PHONE FIELDS RETURNING Contact("
        ),
        "{queries:?}"
    );

    // The lookup fired the module's CUSTOM event.
    f.shim.ok("wait_events");
    let event = f
        .shim
        .events
        .iter()
        .find(|e| e.subclass == "natterbox_sf::lookup")
        .expect("a natterbox_sf::lookup event");
    assert_eq!(event.header("SF-Status"), Some("found"));
    assert_eq!(event.header("Unique-ID"), Some("c1"));
}

fn not_found_multiple_and_priority(api: Api) {
    let mut f = Fixture::start(api.options());
    assert_eq!(
        f.lookup("n", "+1 415 555 0999", "")["sf_lookup_status"],
        "not_found"
    );

    // Jane and John Smith share a number: reported, not hidden. Lead Bennett has it too, typed
    // the British way (020 7946 0958): counted and listed after the tied Contacts. Lead Walsh's
    // (207) 946-0958 has the same last ten digits and is a Maine number: not the caller.
    let tie = f.lookup("m", "+44 20 7946 0958", "");
    assert_eq!(tie["sf_lookup_status"], "multiple", "{tie:?}");
    assert_eq!(tie["sf_record_type"], "Contact");
    assert_eq!(tie["sf_match_count"], "3");
    let ids: Vec<&str> = tie["sf_record_ids"].split(',').collect();
    assert_eq!(ids.len(), 3, "{tie:?}");
    assert!(ids[0].starts_with("003") && ids[1].starts_with("003") && ids[2].starts_with("00Q"));
    assert!(!tie.contains_key("sf_record_id"));

    // A Contact and a Lead share 415.555.0199: the profile puts Contact first, and both count.
    let shared = f.lookup("p", "4155550199", "");
    assert_eq!(shared["sf_lookup_status"], "found");
    assert_eq!(shared["sf_record_type"], "Contact");
    assert_eq!(shared["sf_record_name"], "Bob Jones");
    assert_eq!(shared["sf_match_count"], "2");
    let ids: Vec<&str> = shared["sf_record_ids"].split(',').collect();
    assert_eq!(ids.len(), 2, "{shared:?}");
    assert_eq!(ids[0], shared["sf_record_id"]);
    assert!(
        ids[1].starts_with("00Q"),
        "the Lead after the Contact: {ids:?}"
    );

    // A foreign number under a US default country keeps its digits (the phonenumber-crate bug).
    let dublin = f.lookup("d", "+353 1 555 0142", "");
    assert_eq!(dublin["sf_lookup_status"], "found", "{dublin:?}");
    assert_eq!(dublin["sf_record_name"], "Patrick O'Brien");
    assert_eq!(dublin["sf_caller_e164"], "+35315550142");

    // Lead only, through the mapped Company field.
    let lead = f.lookup("l", "+39 06 6982 1234", "");
    assert_eq!(lead["sf_record_type"], "Lead");
    assert_eq!(lead["sf_company"], "D'Angelo Imports");

    // Another profile: a custom object with its own phone field.
    let rule = f.lookup("r", "+1 415 555 0100", "profile=rules");
    assert_eq!(rule["sf_lookup_status"], "found", "{rule:?}");
    assert_eq!(rule["sf_record_type"], "Routing_Rule__c");
    assert!(!rule["sf_queue"].is_empty());
}

fn invalid_numbers_never_reach_salesforce(api: Api) {
    let mut f = Fixture::start(api.options());
    for (i, caller) in ["anonymous", "123", "+1%20415", "4155550123%27OR%27"]
        .iter()
        .enumerate()
    {
        let vars = f.lookup(&format!("i{i}"), caller, "");
        assert_eq!(
            vars["sf_lookup_status"], "invalid_number",
            "{caller}: {vars:?}"
        );
    }
    // number= takes the rest of the data: text after it is part of the number.
    let vars = f.lookup("in-number", "+14155550123", "number=+14155550123 evil=1");
    assert_eq!(vars["sf_lookup_status"], "invalid_number");
    // An unknown argument in the dialplan's own text is an error.
    let vars = f.lookup("bad-args", "+14155550123", "evil=1 number=+14155550123");
    assert_eq!(vars["sf_lookup_status"], "error");
    assert_eq!(f.acme().admin().endpoint_count(api.search_endpoint()), 0);
}

fn hostile_caller_numbers_and_arguments_never_escape_a_literal(api: Api) {
    let mut f = Fixture::start(api.options());
    // Caller ids and display names as an attacker would send them in SIP headers.
    let corpus = [
        "+14155550123}",
        "4155550123} RETURNING User(Id, Username",
        "4155550123' OR Name != '",
        "')}",
        "${system(id)}",
        "+1-415-555-0123",
        "0014155550123",
        "+1 (415) 555-0123 ext. 12",
        "\u{202e}4155550123",
        "\x1b[2J4155550123",
        "1-800-FLOWERS",
        "*67 415 555 0123",
        "4155550123\\",
        "\"4155550123\"",
    ];
    for (i, caller) in corpus.iter().enumerate() {
        let uuid = format!("x{i}");
        f.shim.ok(&format!(
            "call {uuid} caller_id_number={}",
            escape_arg(caller)
        ));
        f.shim.ok(&format!("app {uuid} sf_lookup"));
        let vars = f.shim.vars(&uuid);
        let status = vars["sf_lookup_status"].as_str();
        assert!(
            ["found", "not_found", "invalid_number"].contains(&status),
            "{caller}: {vars:?}"
        );
        // Through the application's arguments too.
        let uuid = format!("y{i}");
        f.shim.ok(&format!("call {uuid}"));
        f.shim.ok(&format!(
            "esc app {uuid} sf_lookup number={}",
            escape_arg(caller)
        ));
    }
    // Every search the emulator received is quoted digit phrases joined by OR in braces, and the
    // profile's fixed list.
    let queries = sosl_queries(f.acme(), api);
    assert!(!queries.is_empty());
    for q in &queries {
        let term = q
            .strip_prefix("FIND {")
            .and_then(|r| r.split_once('}'))
            .map(|(t, _)| t)
            .unwrap();
        for phrase in term.split(" OR ") {
            let digits = phrase
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{q}"));
            assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "{q}"
            );
        }
        assert!(q.ends_with("LIMIT 20)"), "{q}");
    }
    for entry in f.acme().admin().queries() {
        assert!(entry.error.is_none(), "{entry:?}");
    }
}

fn tenants_never_share_answers(api: Api) {
    let mut globex = EmulatorOptions::default_seed();
    globex.seed.org_id = "00DEm0000000002".into();
    // Globex's Ada Lovelace has another number.
    if let Some(Value::Array(contacts)) = globex.seed.records.get_mut("Contact") {
        for c in contacts.iter_mut().filter(|c| c["LastName"] == "Lovelace") {
            c["Phone"] = Value::from("+1 212 555 0000");
            c["MobilePhone"] = Value::Null;
        }
    }
    let mut f = Fixture::start(Options {
        orgs: vec![
            ("acme", EmulatorOptions::default_seed()),
            ("globex", globex),
        ],
        ..api.options()
    });
    let acme = f.lookup("a", "+14155550123", "org=acme");
    assert_eq!(acme["sf_lookup_status"], "found");
    let glx = f.lookup("g", "+14155550123", "org=globex");
    assert_eq!(
        glx["sf_lookup_status"], "not_found",
        "globex answered with acme's record: {glx:?}"
    );
    assert_eq!(glx["sf_lookup_source"], "salesforce");
    // The org can also come from the channel.
    f.shim
        .ok("call v caller_id_number=+14155550123 sf_org=globex");
    f.shim.ok("app v sf_lookup");
    assert_eq!(f.shim.vars("v")["sf_lookup_status"], "not_found");
    assert_eq!(
        f.org("acme")
            .emulator
            .admin()
            .endpoint_count(api.search_endpoint()),
        1
    );
    assert_eq!(
        f.org("globex")
            .emulator
            .admin()
            .endpoint_count(api.search_endpoint()),
        1
    );
    assert_eq!(
        f.lookup("u", "+14155550123", "org=initech")["sf_lookup_status"],
        "error"
    );
}

fn a_slow_salesforce_never_holds_the_call_past_its_deadline(api: Api) {
    let mut f = Fixture::start(api.options());
    f.acme().admin().add_fault(FaultRule {
        path_prefix: api.read_path().into(),
        latency_ms: 3000,
        ..FaultRule::default()
    });
    f.shim.ok("call slow caller_id_number=+14155550123");
    let started = Instant::now();
    f.shim.ok("app slow sf_lookup timeout_ms=300");
    let held = started.elapsed();
    let vars = f.shim.vars("slow");
    assert_eq!(vars["sf_lookup_status"], "timeout", "{vars:?}");
    assert!(
        held < Duration::from_millis(1000),
        "held the call for {held:?}"
    );
    let ms: u64 = vars["sf_lookup_ms"].parse().unwrap();
    assert!((290..700).contains(&ms), "{ms}");
}

fn an_expired_session_is_refreshed_once_within_the_deadline(api: Api) {
    let mut f = Fixture::start(api.options());
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_status"],
        "found"
    );
    // The module's own background work at load (config check, owner directory) ends first, so
    // what follows counts only the call's requests.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
        let org = &status["orgs"][0];
        if org["owners"]["loaded"] == true
            && org["owners"]["loading"] == false
            && org["config_check"]["state"] != "pending"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "background work never ended: {org}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let data_requests = |stats: &Value| {
        stats["total_requests"].as_u64().unwrap()
            - stats["endpoints"]["oauth_token"].as_u64().unwrap()
    };
    let before = f.acme().admin().stats();
    assert!(f.acme().admin().expire_sessions() > 0);
    let vars = f.lookup("b", "+442079460958", "");
    assert_eq!(vars["sf_lookup_status"], "multiple", "{vars:?}");
    // One refused search (401, not counted as a search by the emulator), one with the new token.
    let stats = f.acme().admin().stats();
    assert_eq!(
        stats["endpoints"][api.search_endpoint()].as_u64().unwrap()
            - before["endpoints"][api.search_endpoint()].as_u64().unwrap(),
        1,
        "{stats}"
    );
    assert_eq!(data_requests(&stats) - data_requests(&before), 2, "{stats}");
    let refreshes = f
        .messages()
        .iter()
        .filter(|m| matches!(m, natterbox_common::wire::Message::TokenRefresh { .. }))
        .count();
    assert_eq!(refreshes, 1);
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    assert_eq!(status["orgs"][0]["token"]["generation"], 2);
    assert_eq!(status["orgs"][0]["unauthorized"], 1);
}

fn a_refresh_that_brings_no_new_token_ends_as_unauthorized(api: Api) {
    let mut f = Fixture::start(Options {
        sidecar: false,
        ..api.options()
    });
    f.acme().admin().expire_sessions();
    f.shim.ok("call a caller_id_number=+14155550123");
    let started = Instant::now();
    // A deadline long enough that a loaded machine cannot turn the answer into `timeout`; the
    // refusal must still end the lookup, not the deadline.
    f.shim.ok("app a sf_lookup timeout_ms=3000");
    assert_eq!(f.shim.vars("a")["sf_lookup_status"], "unauthorized");
    assert!(started.elapsed() < Duration::from_millis(3000));
}

fn limit_exceeded_opens_the_breaker_instead_of_hammering(api: Api) {
    let mut f = Fixture::start(api.options());
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(15_000),
        daily_max: Some(15_000),
        ..LimitsUpdate::default()
    });
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_status"],
        "throttled"
    );
    // Requests that reached the emulator (it refuses them before counting them as searches); the
    // module's background work (config check, owner directory) also made some at load.
    let data_requests = |emulator: &sf_emulator::Emulator| {
        let stats = emulator.admin().stats();
        stats["total_requests"].as_u64().unwrap()
            - stats["endpoints"]["oauth_token"].as_u64().unwrap()
    };
    let before = data_requests(f.acme());
    assert!(before >= 1);
    for i in 0..20 {
        let vars = f.lookup(&format!("b{i}"), &format!("+1415555{:04}", 2000 + i), "");
        assert_eq!(vars["sf_lookup_status"], "throttled");
    }
    // None of the later calls reached Salesforce.
    assert_eq!(
        data_requests(f.acme()),
        before,
        "{}",
        f.acme().admin().stats()
    );
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    let breaker = status["orgs"][0]["breaker"].as_str().unwrap();
    assert!(
        breaker.starts_with("open (REQUEST_LIMIT_EXCEEDED)"),
        "{breaker}"
    );
}

fn garbage_resets_and_truncated_bodies_are_errors_not_crashes(api: Api) {
    let mut f = Fixture::start(api.options());
    let faults = [
        FaultRule {
            path_prefix: api.read_path().into(),
            garbage_rate: 1.0,
            ..FaultRule::default()
        },
        FaultRule {
            path_prefix: api.read_path().into(),
            truncate_rate: 1.0,
            ..FaultRule::default()
        },
        FaultRule {
            path_prefix: api.read_path().into(),
            reset_rate: 1.0,
            ..FaultRule::default()
        },
        FaultRule {
            path_prefix: api.read_path().into(),
            status: Some(503),
            ..FaultRule::default()
        },
    ];
    for (i, rule) in faults.into_iter().enumerate() {
        f.acme().admin().clear_faults();
        f.acme().admin().add_fault(rule);
        let vars = f.lookup(&format!("g{i}"), &format!("+1415555{:04}", 3000 + i), "");
        assert_eq!(vars["sf_lookup_status"], "error", "fault {i}: {vars:?}");
    }
    // Still serving: the module and the host survived.
    f.acme().admin().clear_faults();
    assert!(f.shim.api("status").contains("\"orgs\""));
}

fn five_hundred_concurrent_lookups_of_one_number_make_one_request(api: Api) {
    let mut f = Fixture::start(api.options());
    f.acme().admin().add_fault(FaultRule {
        path_prefix: api.read_path().into(),
        latency_ms: 300,
        ..FaultRule::default()
    });
    for i in 0..500 {
        f.shim
            .ok(&format!("call p{i} caller_id_number=+14155550123"));
    }
    for i in 0..500 {
        f.shim.ok(&format!("app_async p{i} sf_lookup"));
    }
    f.shim.ok("wait_all");
    for i in (0..500).step_by(37) {
        assert_eq!(f.shim.vars(&format!("p{i}"))["sf_lookup_status"], "found");
    }
    assert_eq!(f.acme().admin().endpoint_count(api.search_endpoint()), 1);
}

fn salesforce_values_cannot_inject_variable_expansions(api: Api) {
    let mut f = Fixture::start(api.options());
    // Someone renames a Contact in Salesforce.
    let token = support::fixture::fetch_token(f.acme());
    let ada = f
        .acme()
        .admin()
        .records("Contact")
        .into_iter()
        .find(|c| c["LastName"] == "Lovelace")
        .unwrap();
    let url = format!(
        "{}/services/data/v68.0/sobjects/Contact/{}",
        token.instance_url,
        ada["Id"].as_str().unwrap()
    );
    let response = reqwest::blocking::Client::new()
        .patch(url)
        .bearer_auth(&token.access_token)
        .json(&serde_json::json!({"LastName": "${system(touch /tmp/pwned)}"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    let vars = f.lookup("a", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found");
    assert!(!vars.contains_key("sf_record_name"), "{vars:?}");
    assert!(
        !f.shim
            .logs_containing("contains a variable expansion")
            .is_empty(),
        "{:#?}",
        f.shim.logs
    );
}

#[test]
fn the_sf_command() {
    let mut f = Fixture::start(Options::default());
    assert!(f.shim.api("").starts_with("USAGE: sf status"));
    assert!(f.shim.api("frobnicate").starts_with("-ERR"));
    let answer: Value = serde_json::from_str(&f.shim.api("lookup acme +14155550123")).unwrap();
    assert_eq!(answer["status"], "found");
    assert_eq!(answer["source"], "salesforce");
    assert_eq!(answer["variables"]["sf_record_name"], "Ada Lovelace");
    let again: Value = serde_json::from_str(&f.shim.api("lookup acme/default 4155550123")).unwrap();
    assert_eq!(again["source"], "cache");
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    assert_eq!(status["orgs"][0]["org"], "acme");
    assert_eq!(status["orgs"][0]["breaker"], "closed");
    // No sidecar listens in this test: said, not hidden.
    assert_eq!(status["sidecar"]["reachable"], false);
    assert!(status["orgs"][0]["api_usage"]
        .as_str()
        .unwrap()
        .contains('/'));
    assert_eq!(status["cache"]["entries"], 1);
    let stats: Value = serde_json::from_str(&f.shim.api("cache stats")).unwrap();
    assert_eq!(stats["hits"], 1);
    assert_eq!(
        f.shim.api("cache flush acme"),
        "+OK flushed 1 entries of acme"
    );
    assert!(f.shim.api("cache flush initech").starts_with("-ERR"));
    assert!(f.shim.api("reload").starts_with("+OK reloaded"));
    // No secret in what the command prints.
    let token = std::fs::read_to_string(f.path().join("tokens/acme.json")).unwrap();
    let access: Value = serde_json::from_str(&token).unwrap();
    assert!(!f
        .shim
        .api("status")
        .contains(access["access_token"].as_str().unwrap()));
}

/// Waits (at most 5 s) until the module has logged `needle`.
fn wait_for_log(f: &mut Fixture, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.shim.logs_containing(needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no log {needle:?}: {:#?}",
            f.shim.logs
        );
        std::thread::sleep(Duration::from_millis(10));
        f.shim.ok("echo poll");
    }
}

#[test]
fn reloads_apply_a_good_config_and_keep_the_running_one_on_a_bad_one() {
    let mut f = Fixture::start(Options::default());
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_status"],
        "found"
    );
    // A config FreeSWITCH can read but the module cannot accept: reloadxml logs why and the
    // module keeps serving with the old config and cache. (Invalid XML never gets this far:
    // FreeSWITCH's reloadxml itself keeps the old XML.)
    let bad = f.config_xml(&[("lookup-timeout-ms", "soon".to_string())], "");
    f.write_config(&bad);
    f.shim.ok("reloadxml");
    // RELOADXML hands the reload to the module's own threads: wait for its log line.
    wait_for_log(&mut f, "config not reloaded (reloadxml)");
    assert!(f.shim.api("reload").starts_with("-ERR"));
    assert_eq!(
        f.lookup("b", "+14155550123", "")["sf_lookup_source"],
        "cache"
    );
    // A good one with a changed org: that org's cache entries go.
    let good = f.config_xml(&[], "max-concurrent=\"7\"");
    f.write_config(&good);
    f.shim.ok("reloadxml");
    wait_for_log(&mut f, "orgs changed: [acme]");
    let reply = f.shim.api("reload");
    assert!(
        reply.starts_with("+OK reloaded; orgs changed: []"),
        "{reply}"
    );
    assert_eq!(
        f.lookup("c", "+14155550123", "")["sf_lookup_source"],
        "salesforce"
    );
}

#[test]
fn a_bad_config_fails_the_load_cleanly() {
    let mut f = Fixture::start(Options {
        load: false,
        ..Options::default()
    });
    f.write_config("<configuration name=\"natterbox_sf.conf\"><orgs></orgs></configuration>");
    // FreeSWITCH (and the shim) read config files into memory: reloadxml picks the new one up.
    f.shim.ok("reloadxml");
    let reply = f.shim.cmd(&format!(
        "load {} mod_natterbox_sf",
        support::module_path().display()
    ));
    assert!(!reply.ok);
    assert!(reply.text().contains("leaks 0"), "{:?}", reply.lines);
    assert!(!f
        .shim
        .logs_containing("mod_natterbox_sf not loaded")
        .is_empty());
    assert!(!f.shim.logs_containing("defines no <org>").is_empty());
}

#[test]
fn unload_and_load_again_while_lookups_are_in_flight() {
    let mut f = Fixture::start(Options::default());
    f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 400,
        ..FaultRule::default()
    });
    for i in 0..30 {
        f.shim.ok(&format!(
            "call u{i} caller_id_number=+1415555{:04}",
            4000 + i
        ));
        f.shim.ok(&format!("app_async u{i} sf_lookup"));
    }
    // Calls are inside sf_lookup, waiting on their flights.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
        if status["flights"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lookups in flight: {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // As in FreeSWITCH: a plain unload refuses while the app runs; unload -f waits for it.
    let refused = f.shim.cmd("unload mod_natterbox_sf");
    assert!(!refused.ok);
    let unload = f.shim.ok("unload -f mod_natterbox_sf");
    let text = unload.text();
    assert!(text.contains("shutdown_status SUCCESS"), "{text}");
    assert!(text.contains("leaks 0"), "{text}");
    f.shim.ok("wait_all");
    let load = f.shim.ok(&format!(
        "load {} mod_natterbox_sf",
        support::module_path().display()
    ));
    assert!(load.text().contains("load_status SUCCESS"));
    f.acme().admin().clear_faults();
    assert_eq!(
        f.lookup("again", "+14155550123", "")["sf_lookup_status"],
        "found"
    );
    let reload = f.shim.ok("reload -f mod_natterbox_sf");
    assert!(reload.text().contains("leaks 0"));
    assert_eq!(
        f.lookup("again2", "+14155550123", "")["sf_lookup_status"],
        "found"
    );
}

fn past_its_ttl_an_answer_is_served_stale_while_it_is_refreshed(api: Api) {
    let mut f = Fixture::start(Options {
        settings: vec![
            ("cache-ttl-s", "1".to_string()),
            ("cache-max-stale-s", "60".to_string()),
        ],
        ..api.options()
    });
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_source"],
        "salesforce"
    );
    // Past the 1 s TTL the next call is served the stale answer and claims the refresh.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    let stale = loop {
        i += 1;
        let vars = f.lookup(&format!("b{i}"), "+14155550123", "");
        if vars["sf_lookup_source"] != "cache" || Instant::now() > deadline {
            break vars;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stale["sf_lookup_status"], "found");
    assert_eq!(stale["sf_lookup_source"], "stale", "{stale:?}");
    // The refresh runs in the background: calls are served stale until its answer is in the
    // cache, then fresh from the cache, with one more search in all.
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        i += 1;
        let vars = f.lookup(&format!("c{i}"), "+14155550123", "");
        if vars["sf_lookup_source"] != "stale" || Instant::now() > deadline {
            break vars;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(fresh["sf_lookup_source"], "cache", "{fresh:?}");
    assert_eq!(f.acme().admin().endpoint_count(api.search_endpoint()), 2);
}

#[test]
fn tls_is_verified_against_the_configured_ca() {
    let tls = EmulatorOptions {
        tls: true,
        ..EmulatorOptions::default_seed()
    };
    let mut f = Fixture::start(Options {
        orgs: vec![("acme", tls)],
        load: false,
        ..Options::default()
    });
    // Without the emulator's CA, its certificate is refused: an error, not a silent success.
    f.shim.ok(&format!(
        "load {} mod_natterbox_sf",
        support::module_path().display()
    ));
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_status"],
        "error"
    );
    f.shim.ok("unload mod_natterbox_sf");
    // With it as ca-file, the lookup goes through.
    let ca = f.path().join("emulator-ca.pem");
    std::fs::write(&ca, f.acme().ca_pem().expect("a TLS emulator has a CA")).unwrap();
    let config = f.config_xml(&[("ca-file", ca.display().to_string())], "");
    f.write_config(&config);
    f.shim.ok("reloadxml");
    f.shim.ok(&format!(
        "load {} mod_natterbox_sf",
        support::module_path().display()
    ));
    let vars = f.lookup("b", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
}
