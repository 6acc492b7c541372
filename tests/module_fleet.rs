//! Fleet mode: two (or more) hosts, each the real module in its own host shim process, sharing
//! a real redis-server and one emulated org.

mod support;

use std::time::{Duration, Instant};

use sf_emulator::{FaultRule, LimitsUpdate};
use support::fixture::{Fixture, Options};
use support::fleet::{
    another_host, fleet_xml, load_first_host, lookup, status, wait_for_status, RedisServer,
};

fn fleet_fixture() -> (Fixture, RedisServer) {
    let mut f = Fixture::start(Options {
        load: false,
        ..Options::default()
    });
    let redis = RedisServer::start(f.path());
    let xml = fleet_xml(&redis, &[]);
    load_first_host(&mut f, &xml);
    (f, redis)
}

fn searches(f: &Fixture) -> u64 {
    f.acme().admin().endpoint_count("search")
}

fn redis_up(s: &serde_json::Value) -> bool {
    s["fleet"]["redis"] == "up"
}

#[test]
fn a_miss_on_one_host_is_a_redis_hit_on_the_other() {
    let (mut f, redis) = fleet_fixture();
    let mut b = another_host(&f, "host-b", &fleet_xml(&redis, &[]));
    wait_for_status(&mut f.shim, "host A connects to redis", redis_up);
    wait_for_status(&mut b, "host B connects to redis", redis_up);

    let on_a = f.lookup("a1", "+14155550123", "");
    assert_eq!(on_a["sf_lookup_status"], "found", "{on_a:?}");
    assert_eq!(on_a["sf_lookup_source"], "salesforce");
    assert_eq!(searches(&f), 1);
    // Host A writes to Redis after the call has its answer: wait for the write.
    wait_for_status(&mut f.shim, "host A writes the answer to redis", |s| {
        s["fleet"]["l2_writes"] == 1
    });

    let on_b = lookup(&mut b, "b1", "+14155550123");
    assert_eq!(on_b["sf_lookup_status"], "found", "{on_b:?}");
    assert_eq!(on_b["sf_record_id"], on_a["sf_record_id"]);
    assert_eq!(on_b["sf_record_name"], "Ada Lovelace");
    assert_eq!(on_b["sf_account_name"], "Acme Corporation");
    assert_eq!(on_b["sf_owner_extension"], on_a["sf_owner_extension"]);
    assert_eq!(searches(&f), 1, "host B asked Redis, not Salesforce");
    let s = status(&mut b);
    assert_eq!(s["fleet"]["l2_hits"], 1, "{s:#}");
    assert_eq!(s["orgs"][0]["requests"], 0, "{s:#}");

    // B keeps the answer in its own cache now: the next call does not even ask Redis.
    let again = lookup(&mut b, "b2", "(415)555-0123");
    assert_eq!(again["sf_lookup_source"], "cache");
    let s = status(&mut b);
    assert_eq!(
        (&s["fleet"]["l2_hits"], &s["fleet"]["l2_misses"]),
        (&1.into(), &0.into())
    );

    // Keys are scoped by org: the answer is under acme's name, nowhere else.
    let key_count = redis.command("DBSIZE").unwrap();
    assert!(key_count.starts_with(':'), "{key_count}");
    assert_eq!(
        redis
            .command("EXISTS nbsf:l2:globex:default:0000000000000000:14155550123")
            .as_deref(),
        Some(":0")
    );
}

#[test]
fn a_burst_of_one_caller_across_hosts_makes_one_salesforce_request() {
    let (f, redis) = fleet_fixture();
    // Salesforce takes 300 ms: every host's miss arrives while the first is still asking.
    f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 300,
        ..FaultRule::default()
    });
    let xml = fleet_xml(&redis, &[]);
    let mut hosts: Vec<_> = (0..4)
        .map(|i| another_host(&f, &format!("host-{i}"), &xml))
        .collect();
    for host in &mut hosts {
        wait_for_status(host, "host connects to redis", redis_up);
    }
    let before = searches(&f);
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter_mut()
            .enumerate()
            .map(|(i, host)| {
                scope.spawn(move || lookup(host, &format!("burst{i}"), "+14155550123"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for vars in &answers {
        assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
        assert_eq!(vars["sf_record_name"], "Ada Lovelace");
    }
    assert_eq!(
        searches(&f) - before,
        1,
        "four hosts, one caller, one search"
    );
    let waited: u64 = hosts
        .iter_mut()
        .map(|h| status(h)["fleet"]["lease_waits_answered"].as_u64().unwrap())
        .sum();
    assert_eq!(waited, 3, "three hosts took the leader's answer from Redis");
}

#[test]
fn redis_killed_and_restarted_under_traffic_never_holds_or_fails_a_call() {
    let (mut f, mut redis) = fleet_fixture();
    let mut b = another_host(&f, "host-b", &fleet_xml(&redis, &[]));
    wait_for_status(&mut f.shim, "host A connects to redis", redis_up);
    f.shim.ok("wait_events");
    // Lookups of new numbers (misses: they go through Redis) while Redis dies and comes back.
    let lookup_timeout = Duration::from_millis(2000);
    let mut statuses = Vec::new();
    for i in 0..60 {
        if i == 20 {
            redis.kill();
        }
        if i == 40 {
            redis.restart();
        }
        let started = Instant::now();
        let vars = f.lookup(&format!("k{i}"), &format!("+1415555{:04}", 3000 + i), "");
        let held = started.elapsed();
        assert!(
            held < lookup_timeout + Duration::from_millis(300),
            "call {i} held {held:?}"
        );
        statuses.push(vars["sf_lookup_status"].clone());
    }
    assert!(
        statuses.iter().all(|s| s == "not_found"),
        "only Salesforce's answers, never an error from Redis: {statuses:?}"
    );
    // It says so: in sf status and in CUSTOM events, down then up.
    wait_for_status(&mut f.shim, "host A reconnects", redis_up);
    let s = status(&mut f.shim);
    assert!(s["fleet"]["skipped_redis"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(
        s["fleet"]["redis_reconnects"].as_u64().unwrap() >= 2,
        "{s:#}"
    );
    f.shim.ok("wait_events");
    let states: Vec<_> = f
        .shim
        .events
        .iter()
        .filter(|e| e.subclass == "natterbox_sf::redis")
        .map(|e| e.header("SF-Redis").unwrap_or("").to_string())
        .collect();
    let down = states
        .iter()
        .position(|s| s == "down")
        .expect("a down event");
    assert!(states[down..].iter().any(|s| s == "up"), "{states:?}");

    // After the restart the fleet cache works again: a miss on A is a hit on B.
    // Host B made no lookups meanwhile; its health check noticed, and it reconnected.
    wait_for_status(&mut b, "host B reconnects", |s| {
        redis_up(s) && s["fleet"]["redis_reconnects"].as_u64().unwrap() >= 2
    });
    let before = searches(&f);
    assert_eq!(
        f.lookup("after-a", "+14155550123", "")["sf_lookup_status"],
        "found"
    );
    wait_for_status(&mut f.shim, "host A writes after the restart", |s| {
        s["fleet"]["l2_writes"].as_u64().unwrap() >= 1 && s["fleet"]["redis"] == "up"
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    // Answers only: the org's API usage figure (`usage.rs`) is in Redis too.
    while redis.command("KEYS nbsf:l2:*").as_deref() == Some("*0") {
        assert!(
            Instant::now() < deadline,
            "the answer reaches the new redis"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        lookup(&mut b, "after-b", "+14155550123")["sf_lookup_status"],
        "found"
    );
    assert_eq!(searches(&f) - before, 1);
}

#[test]
fn a_limit_exceeded_on_one_host_throttles_both() {
    let (mut f, redis) = fleet_fixture();
    let mut b = another_host(&f, "host-b", &fleet_xml(&redis, &[]));
    wait_for_status(&mut f.shim, "host A connects to redis", redis_up);
    wait_for_status(&mut b, "host B connects to redis", redis_up);
    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(15_000),
        daily_max: Some(15_000),
        ..LimitsUpdate::default()
    });
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_status"],
        "throttled"
    );
    // Host B hears it and opens its own breaker without asking Salesforce.
    let s = wait_for_status(&mut b, "host B's breaker opens", |s| {
        s["orgs"][0]["breaker"]
            .as_str()
            .is_some_and(|b| b.starts_with("open (REQUEST_LIMIT_EXCEEDED)"))
    });
    assert_eq!(s["fleet"]["limit_broadcasts_heard"], 1, "{s:#}");
    let before = searches(&f);
    let on_b = lookup(&mut b, "b", "+14155550199");
    assert_eq!(on_b["sf_lookup_status"], "throttled", "{on_b:?}");
    assert_eq!(status(&mut b)["orgs"][0]["requests"], 0);
    assert_eq!(searches(&f), before);
}

#[test]
fn an_invalidation_reaches_every_host_and_redis() {
    let (mut f, redis) = fleet_fixture();
    let mut b = another_host(&f, "host-b", &fleet_xml(&redis, &[]));
    wait_for_status(&mut f.shim, "host A connects to redis", redis_up);
    wait_for_status(&mut b, "host B connects to redis", redis_up);
    let on_a = f.lookup("a1", "+14155550123", "");
    let id = on_a["sf_record_id"].clone();
    wait_for_status(&mut f.shim, "host A writes the answer", |s| {
        s["fleet"]["l2_writes"] == 1
    });
    assert_eq!(
        lookup(&mut b, "b1", "+14155550123")["sf_lookup_status"],
        "found"
    );
    assert_eq!(status(&mut b)["cache"]["entries"], 1);

    // As Change Data Capture will: the record changed, on host A.
    let reply = f.shim.api(&format!("cache invalidate acme Contact {id}"));
    assert!(reply.starts_with("+OK invalidated 2 answers"), "{reply}");
    wait_for_status(&mut b, "host B drops the answer", |s| {
        s["cache"]["entries"] == 0 && s["fleet"]["invalidated_entries"] == 1
    });
    // Neither the answer nor its record index is left (the org's API usage figure is).
    for pattern in ["nbsf:l2:*", "nbsf:rec:*"] {
        assert_eq!(
            redis.command(&format!("KEYS {pattern}")).as_deref(),
            Some("*0"),
            "nothing of the answer left in Redis"
        );
    }
    let before = searches(&f);
    let again = lookup(&mut b, "b2", "+14155550123");
    assert_eq!(again["sf_lookup_source"], "salesforce");
    assert_eq!(searches(&f) - before, 1);
}

#[test]
fn without_fleet_config_no_redis_is_used() {
    let mut f = Fixture::start(Options::default());
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_status"],
        "found"
    );
    assert!(status(&mut f.shim)["fleet"].is_null());
}
