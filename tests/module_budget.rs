//! The call-time API budget through the real module: the org's usage, as its answers report it
//! (`Sforce-Limit-Info`, or SOAP's `LimitInfoHeader`), decides whether a cached answer past its
//! TTL is revalidated or served as it is; `sf status` and a CUSTOM event say which.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sf_emulator::LimitsUpdate;
use support::fixture::Fixture;
use support::read_api::Api;

for_both_apis!(past_its_share_of_the_allowance_an_org_is_served_stale_answers);

fn budget_of(f: &mut Fixture) -> Value {
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    status["orgs"][0]["call_time_budget"].clone()
}

/// The `natterbox_sf::api_budget` events so far, as (state, previous state, used).
fn budget_events(f: &mut Fixture) -> Vec<(String, String, String)> {
    f.shim.ok("wait_events");
    f.shim
        .events
        .iter()
        .filter(|e| e.subclass == "natterbox_sf::api_budget")
        .map(|e| {
            let h = |name: &str| e.header(name).unwrap_or_default().to_string();
            assert_eq!(h("SF-Org"), "acme");
            assert_eq!(h("SF-API-Max"), "10000");
            assert_eq!(h("SF-Call-Time-Share-Percent"), "40");
            (
                h("SF-Budget-State"),
                h("SF-Budget-Previous-State"),
                h("SF-API-Used"),
            )
        })
        .collect()
}

fn past_its_share_of_the_allowance_an_org_is_served_stale_answers(api: Api) {
    let mut options = api.options();
    options
        .org_attrs
        .push_str(r#" call-time-api-share-percent="40""#);
    options.settings = vec![
        ("cache-ttl-s", "1".to_string()),
        ("cache-max-stale-s", "1".to_string()),
    ];
    let mut f = Fixture::start(options);
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(100),
        daily_max: Some(10_000),
        ..LimitsUpdate::default()
    });
    let first = f.lookup("a", "+14155550123", "");
    assert_eq!(first["sf_lookup_source"], "salesforce", "{first:?}");
    assert_eq!(budget_of(&mut f)["state"], "normal");
    assert_eq!(budget_of(&mut f)["share_percent"], 40);

    // The org's other users spend the allowance: the next answer says 4 001 of 10 000 are used,
    // past the 40 % share.
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(4_000),
        ..LimitsUpdate::default()
    });
    let other = f.lookup("b", "+14155550199", "");
    assert_eq!(other["sf_lookup_source"], "salesforce", "{other:?}");
    assert_eq!(budget_of(&mut f)["state"], "spent");
    let events = budget_events(&mut f);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        ("spent", "normal")
    );
    assert!(events[0].2.parse::<u64>().unwrap() >= 4_001, "{events:?}");
    let searches = f.acme().admin().endpoint_count(api.search_endpoint());
    assert_eq!(searches, 2);

    // Past its TTL the first answer is served from the cache, stale or (after the one
    // revalidation a spent org sends per minute, to learn its usage again) fresh; nothing else
    // is asked.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    while f.acme().admin().endpoint_count(api.search_endpoint()) < searches + 1 {
        assert!(Instant::now() < deadline, "no revalidation while spent");
        i += 1;
        let vars = f.lookup(&format!("c{i}"), "+14155550123", "");
        assert_eq!(vars["sf_record_name"], "Ada Lovelace", "{vars:?}");
        assert!(
            ["cache", "stale"].contains(&vars["sf_lookup_source"].as_str()),
            "{vars:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Well past its TTL and max-stale (1 s + 1 s), it is still what callers get: the org's
    // last calls are not spent on it.
    std::thread::sleep(Duration::from_millis(2_300));
    for i in 0..5 {
        let vars = f.lookup(&format!("d{i}"), "+14155550123", "");
        assert_eq!(vars["sf_lookup_source"], "stale", "{vars:?}");
        assert_eq!(vars["sf_record_name"], "Ada Lovelace");
    }
    assert_eq!(
        f.acme().admin().endpoint_count(api.search_endpoint()),
        searches + 1
    );
    assert_eq!(budget_of(&mut f)["state"], "spent");

    // A caller nobody has asked about yet is still looked up: any answer beats none. Usage has
    // fallen (the rolling day moved on), and that answer says so.
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(500),
        ..LimitsUpdate::default()
    });
    let new = f.lookup("e", "+442079460958", "");
    assert_eq!(new["sf_lookup_source"], "salesforce", "{new:?}");
    assert_eq!(budget_of(&mut f)["state"], "normal");
    let events = budget_events(&mut f);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[1].0.as_str(), events[1].1.as_str()),
        ("normal", "spent")
    );
    assert!(
        (501..4_000).contains(&events[1].2.parse::<u64>().unwrap()),
        "{events:?}"
    );
    // Normal again: the answer past its max-stale is not served; it is asked for again.
    let fresh = f.lookup("f", "+14155550123", "");
    assert_eq!(fresh["sf_lookup_source"], "salesforce", "{fresh:?}");
}
