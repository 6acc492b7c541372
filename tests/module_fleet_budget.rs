//! Fleet mode, one API budget per org: two hosts (the real module in two host shims) sharing a
//! real redis-server and one emulated org. What one host's answers report of the org's usage
//! (`Sforce-Limit-Info`) is the other's budget too; and an invalidation drops named queries'
//! answers on every host.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sf_emulator::LimitsUpdate;
use support::fixture::{Fixture, Options};
use support::fleet::{
    another_host_with, fleet_xml, load_first_host_with, lookup, status, wait_for_status,
    HostConfig, RedisServer,
};
use support::shim::Shim;

fn redis_up(s: &Value) -> bool {
    s["fleet"]["redis"] == "up"
}

fn budget_state(s: &Value) -> &str {
    s["orgs"][0]["call_time_budget"]["state"]
        .as_str()
        .unwrap_or("")
}

fn searches(f: &Fixture) -> u64 {
    f.acme().admin().endpoint_count("search")
}

/// The `natterbox_sf::api_budget` events a host fired so far, as (state, previous, used).
fn budget_events(shim: &mut Shim) -> Vec<(String, String, u64)> {
    shim.ok("wait_events");
    shim.events
        .iter()
        .filter(|e| e.subclass == "natterbox_sf::api_budget")
        .map(|e| {
            let h = |name: &str| e.header(name).unwrap_or_default().to_string();
            (
                h("SF-Budget-State"),
                h("SF-Budget-Previous-State"),
                h("SF-API-Used").parse().unwrap_or(0),
            )
        })
        .collect()
}

/// Two hosts of one org, sharing Redis, with these config additions.
fn two_hosts(host: HostConfig<'_>, fleet: &[(&str, &str)]) -> (Fixture, Shim, RedisServer) {
    let mut f = Fixture::start(Options {
        load: false,
        ..Options::default()
    });
    let redis = RedisServer::start(f.path());
    let xml = fleet_xml(&redis, fleet);
    load_first_host_with(&mut f, host, &xml);
    let mut b = another_host_with(&f, "host-b", host, &xml);
    wait_for_status(&mut f.shim, "host A connects to redis", redis_up);
    wait_for_status(&mut b, "host B connects to redis", redis_up);
    (f, b, redis)
}

#[test]
fn requests_on_one_host_spend_the_other_hosts_budget() {
    let settings = [
        ("cache-ttl-s", "1".to_string()),
        ("cache-max-stale-s", "1".to_string()),
    ];
    // Redis keeps answers as briefly as the hosts do: a stale answer's revalidation is
    // Salesforce's, as on a single host, and so is what the budget holds back.
    let host = HostConfig {
        settings: &settings,
        org_attrs: r#" call-time-api-share-percent="40""#,
        org_body: "",
    };
    let (mut f, mut b, redis) = two_hosts(host, &[("l2-ttl-s", "1")]);
    let fleet = fleet_xml(&redis, &[("l2-ttl-s", "1")]);
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(100),
        daily_max: Some(10_000),
        ..LimitsUpdate::default()
    });
    // Host B knows a caller.
    let on_b = lookup(&mut b, "b1", "+14155550123");
    assert_eq!(on_b["sf_lookup_source"], "salesforce", "{on_b:?}");
    let s = wait_for_status(&mut b, "host B takes in its answer's usage", |s| {
        s["orgs"][0]["api_usage"]
            .as_str()
            .is_some_and(|u| u.ends_with("/10000"))
    });
    assert_eq!(budget_state(&s), "normal", "{s:#}");
    let b_requests = s["orgs"][0]["requests"].as_u64().unwrap();

    // The org's other users spend the allowance, and host A's answer says so: 4 001 of 10 000
    // used, past the 40 % share. Host B asks nothing, yet its budget is spent.
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(4_000),
        ..LimitsUpdate::default()
    });
    let on_a = f.lookup("a1", "+14155550199", "");
    assert_eq!(on_a["sf_lookup_source"], "salesforce", "{on_a:?}");
    let s = wait_for_status(&mut b, "host B's budget is the fleet's", |s| {
        budget_state(s) == "spent"
    });
    assert_eq!(
        s["orgs"][0]["requests"], b_requests,
        "B asked nobody: {s:#}"
    );
    assert!(
        s["fleet"]["usage_broadcasts_heard"].as_u64().unwrap() >= 1,
        "{s:#}"
    );
    let used: u64 = s["orgs"][0]["api_usage"]
        .as_str()
        .and_then(|u| u.split('/').next())
        .and_then(|u| u.parse().ok())
        .unwrap();
    assert!(used >= 4_001, "{s:#}");
    let events = budget_events(&mut b);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        ("spent", "normal")
    );
    assert!(events[0].2 >= 4_001, "{events:?}");
    wait_for_status(&mut f.shim, "host A's budget is spent too", |s| {
        budget_state(s) == "spent"
    });
    // A host that starts now (it heard no broadcast) reads the fleet's figure when its link
    // comes up.
    let mut c = another_host_with(&f, "host-c", host, &fleet);
    let s = wait_for_status(&mut c, "host C starts with the fleet's budget", |s| {
        budget_state(s) == "spent"
    });
    assert_eq!(s["fleet"]["usage_broadcasts_heard"], 0, "{s:#}");
    assert_eq!(s["orgs"][0]["requests"], 0, "{s:#}");
    drop(c);

    // Host B throttles: past its TTL its answer is served from the cache (after the one
    // revalidation a spent org sends per minute), and past TTL + max-stale still, rather than
    // spending the org's last calls.
    let before = searches(&f);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    while searches(&f) < before + 1 {
        assert!(Instant::now() < deadline, "no revalidation while spent");
        i += 1;
        let vars = lookup(&mut b, &format!("c{i}"), "+14155550123");
        assert_eq!(vars["sf_record_name"], "Ada Lovelace", "{vars:?}");
        assert!(
            ["cache", "stale"].contains(&vars["sf_lookup_source"].as_str()),
            "{vars:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2_300));
    for i in 0..5 {
        let vars = lookup(&mut b, &format!("d{i}"), "+14155550123");
        assert_eq!(vars["sf_lookup_source"], "stale", "{vars:?}");
        assert_eq!(vars["sf_record_name"], "Ada Lovelace");
    }
    assert_eq!(searches(&f), before + 1);

    // The rolling day moves on: host A's next answer says usage fell, and both hosts go back
    // to normal (B without asking).
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(500),
        ..LimitsUpdate::default()
    });
    let new = f.lookup("e", "+442079460958", "");
    assert_eq!(new["sf_lookup_source"], "salesforce", "{new:?}");
    wait_for_status(&mut b, "host B's budget is normal again", |s| {
        budget_state(s) == "normal"
    });
    let events = budget_events(&mut b);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[1].0.as_str(), events[1].1.as_str()),
        ("normal", "spent")
    );
    assert!((501..4_000).contains(&events[1].2), "{events:?}");
    let fresh = lookup(&mut b, "f", "+14155550123");
    assert_eq!(fresh["sf_lookup_source"], "salesforce", "{fresh:?}");
}

const QUERIES: &str = r#"
      <query name="open_case" cache-ttl-s="3600" soql="SELECT Id, CaseNumber, Status, OwnerId FROM Case WHERE ContactId = :contact_id AND IsClosed = false ORDER BY CreatedDate DESC LIMIT 1">
        <bind name="contact_id" variable="sf_record_id"/>
      </query>
"#;

/// `sf query acme open_case …` on a host, as JSON.
fn open_case(shim: &mut Shim, contact: &str) -> Value {
    let out = shim.api(&format!("query acme open_case sf_record_id={contact}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn query_entries(s: &Value) -> u64 {
    s["orgs"][0]["query_cached_entries"].as_u64().unwrap()
}

#[test]
fn an_invalidation_drops_named_query_answers_on_every_host() {
    let (mut f, mut b, _redis) = two_hosts(
        HostConfig {
            org_body: QUERIES,
            ..HostConfig::default()
        },
        &[],
    );
    let ada = f.lookup("a1", "+14155550123", "")["sf_record_id"].clone();
    assert_eq!(ada.len(), 18, "{ada}");

    let first = open_case(&mut b, &ada);
    assert_eq!(first["status"], "found", "{first}");
    assert_eq!(first["source"], "salesforce", "{first}");
    let owner = first["variables"]["sf_open_case_OwnerId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(owner.starts_with("005"), "{first}");
    assert_eq!(open_case(&mut b, &ada)["source"], "cache");
    assert_eq!(query_entries(&status(&mut b)), 1);

    // A change to a record the answer neither reads nor names leaves it.
    let heard = |s: &Value| s["fleet"]["invalidations_heard"].as_u64().unwrap();
    let reply = f.shim.api("cache invalidate acme Lead 00Q000000000001AAA");
    assert!(reply.starts_with("+OK"), "{reply}");
    let s = wait_for_status(&mut b, "host B hears the Lead change", |s| heard(s) == 1);
    assert_eq!(query_entries(&s), 1, "{s:#}");

    // A change to the case's owner (a User): the answer names it, so it goes.
    let reply = f.shim.api(&format!("cache invalidate acme User {owner}"));
    assert!(reply.starts_with("+OK"), "{reply}");
    wait_for_status(&mut b, "host B drops the answer naming the owner", |s| {
        heard(s) == 2 && query_entries(s) == 0
    });
    let again = open_case(&mut b, &ada);
    assert_eq!(again["source"], "salesforce", "{again}");

    // A change to any Case: the query reads Case, so every answer of it goes (a new or
    // reassigned case can change which row it has), on host A as well.
    assert_eq!(open_case(&mut f.shim, &ada)["source"], "salesforce");
    assert_eq!(query_entries(&status(&mut f.shim)), 1);
    let reply = f.shim.api("cache invalidate acme Case 500000000000099AAA");
    assert!(reply.starts_with("+OK invalidated 1 answers"), "{reply}");
    assert_eq!(query_entries(&status(&mut f.shim)), 0);
    wait_for_status(&mut b, "host B drops the Case query's answers", |s| {
        heard(s) == 3 && query_entries(s) == 0
    });
    assert_eq!(open_case(&mut b, &ada)["source"], "salesforce");
}
