//! End to end: the org emulator, the real sidecar binary (JWT bearer flow), and the real module
//! loaded into the host shim, wired as in production. Nothing stands in for the sidecar here
//! (tests/module_lookup.rs uses a stand-in).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sf_emulator::FaultRule;
use support::product::{connect_agent, next_json, poll, Agent, Product, ProductOptions};

const COALESCED: &str = "natterbox_sidecar_org_token_reports_coalesced_total{org=\"acme\"}";

/// The i-th number of a stream of distinct callers (none of them in the seed; i < 6000).
fn stream_number(i: usize) -> String {
    format!("+1303555{:04}", 4000 + i)
}

/// Creates a Contact for every even i below `n` (through the REST API, with a token of its own),
/// so that half the stream is `found` and half `not_found`. Returns i → Contact id.
fn create_stream_contacts(p: &Product, n: usize) -> HashMap<usize, String> {
    let token = support::fixture::fetch_token(&p.emulator);
    let indices: Vec<usize> = (0..n).step_by(2).collect();
    let mut ids = HashMap::new();
    for chunk in indices.chunks(200) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"attributes": {"type": "Contact"}, "FirstName": "Stream",
                       "LastName": format!("Caller {i}"), "Phone": stream_number(*i)})
            })
            .collect();
        let response = reqwest::blocking::Client::new()
            .post(format!(
                "{}/services/data/v68.0/composite/sobjects",
                token.instance_url
            ))
            .bearer_auth(&token.access_token)
            .json(&json!({"allOrNone": true, "records": records}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let results: Vec<Value> = response.json().unwrap();
        assert_eq!(results.len(), chunk.len());
        for (i, result) in chunk.iter().zip(results) {
            assert_eq!(result["success"], true, "{result}");
            ids.insert(*i, result["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// The lookup of the i-th stream number must have found its Contact (even i) or nothing (odd i).
fn check_stream_lookup(i: usize, vars: &HashMap<String, String>, ids: &HashMap<usize, String>) {
    let status = vars.get("sf_lookup_status").map(String::as_str);
    assert!(
        matches!(status, Some("found" | "not_found" | "multiple")),
        "lookup {i} failed: {vars:?}"
    );
    match ids.get(&i) {
        Some(id) => {
            assert_eq!(status, Some("found"), "lookup {i}: {vars:?}");
            assert_eq!(vars.get("sf_record_id"), Some(id), "lookup {i}: {vars:?}");
        }
        None => assert_eq!(status, Some("not_found"), "lookup {i}: {vars:?}"),
    }
}

fn token_requests(p: &Product) -> u64 {
    p.emulator.admin().endpoint_count("oauth_token")
}

fn module_unauthorized(p: &mut Product) -> u64 {
    let status = p.module_status();
    status["orgs"][0]["unauthorized"]
        .as_u64()
        .unwrap_or_else(|| panic!("no unauthorized count in {status}"))
}

/// Runs lookups `range` of the stream: the first half one at a time (`app`), the second half
/// concurrently (`app_async`, then `wait_all`).
fn stream_round(
    p: &mut Product,
    range: std::ops::Range<usize>,
    ids: &HashMap<usize, String>,
    before_async: impl FnOnce(&mut Product),
) {
    let half = range.start + range.len() / 2;
    for i in range.start..half {
        let vars = p.lookup(&format!("s{i}"), &stream_number(i));
        check_stream_lookup(i, &vars, ids);
    }
    for i in half..range.end {
        p.shim.ok(&format!(
            "call s{i} caller_id_number={} destination_number=2000",
            stream_number(i)
        ));
    }
    before_async(p);
    for i in half..range.end {
        p.shim.ok(&format!("app_async s{i} sf_lookup"));
    }
    let jobs = p.shim.ok("wait_all");
    assert!(
        jobs.lines
            .iter()
            .filter(|l| l.starts_with("job "))
            .all(|l| l.contains("app_status SUCCESS")),
        "{:?}",
        jobs.lines
    );
    for i in half..range.end {
        let vars = p.shim.vars(&format!("s{i}"));
        check_stream_lookup(i, &vars, ids);
    }
}

/// Issue 4, 1a: 200 distinct lookups through the module while every session in the org is
/// expired mid-stream. The burst of 401s that follows makes one token request, and no lookup
/// fails.
#[test]
fn expired_sessions_mid_stream_cost_one_token_request_and_no_failed_lookup() {
    let mut p = Product::start(ProductOptions::default());
    let ids = create_stream_contacts(&p, 200);
    assert_eq!(p.sidecar.generation("acme"), 1);
    assert_eq!(p.module_generation(), 1);

    let started = Instant::now();
    let mut burst = None;
    for round in 0..10 {
        let range = round * 20..round * 20 + 20;
        if round != 4 {
            stream_round(&mut p, range, &ids, |_| {});
            continue;
        }
        // Round 4: expire every session just before ten concurrent lookups. Each search is held
        // 100 ms by the org, so all ten are in flight with the dead token and all ten get 401.
        stream_round(&mut p, range, &ids, |p| {
            let before = (token_requests(p), module_unauthorized(p));
            let fault = p.emulator.admin().add_fault(FaultRule {
                path_prefix: "/services/data".into(),
                latency_ms: 100,
                ..FaultRule::default()
            });
            assert!(p.emulator.admin().expire_sessions() > 0);
            burst = Some((before, fault));
        });
        let ((tokens_before, unauthorized_before), fault) = burst.unwrap();
        p.emulator.admin().remove_fault(fault);
        let refused = module_unauthorized(&mut p) - unauthorized_before;
        let token_calls = token_requests(&p) - tokens_before;
        println!(
            "burst: {refused} lookups refused with 401, {token_calls} token request(s), sidecar reports coalesced: {:?}",
            p.sidecar.metric(COALESCED)
        );
        assert!(
            refused >= 2,
            "expected a burst of 401s, got {refused}\n{}",
            p.sidecar.log()
        );
        assert_eq!(
            token_calls,
            1,
            "a burst of 401s must make one token request\n{}",
            p.sidecar.log()
        );
        // The module reported each refusal; the sidecar absorbed all but the first.
        poll(
            Duration::from_secs(5),
            "refused - 1 coalesced reports",
            || (p.sidecar.metric(COALESCED) == Some(refused - 1)).then_some(()),
        );
        assert_eq!(p.sidecar.generation("acme"), 2);
        assert_eq!(p.module_generation(), 2);
    }
    let elapsed = started.elapsed();
    println!("200 lookups in {elapsed:?}");

    // Nothing more was asked of the token endpoint after the burst, and both sides agree.
    assert_eq!(
        token_requests(&p),
        3,
        "JWT at start, the admin's token, one refresh"
    );
    assert_eq!(p.sidecar.generation("acme"), 2);
    assert_eq!(p.module_generation(), 2);
    let status = p.sidecar.org_status("acme");
    assert_eq!(status["healthy"], true, "{status}");
}

/// Issue 4, 1b: the proactive refresh at 80 % of `session-timeout-s`, while lookups run. The
/// config's minimum timeout is 60 s, so this test runs for about 50 s: the sidecar has no shorter
/// knob (the share and the minimum are constants).
#[test]
fn proactive_refresh_at_80_percent_of_the_session_timeout_while_lookups_run() {
    let mut p = Product::start(ProductOptions {
        session_timeout_s: 60,
        ..ProductOptions::default()
    });
    let ids = create_stream_contacts(&p, 200);
    let first = p.sidecar.org_status("acme");
    assert_eq!(first["generation"], 1);
    let tokens_before = token_requests(&p);

    // Rounds of 10 lookups (5 one at a time, 5 concurrent) until the sidecar refreshes.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut next = 0;
    while p.sidecar.generation("acme") < 2 {
        assert!(
            Instant::now() < deadline,
            "no proactive refresh within 90 s\n{}",
            p.sidecar.log()
        );
        assert!(next < 5000, "the stream ran out of numbers");
        stream_round(&mut p, next..next + 10, &ids, |_| {});
        next += 10;
        std::thread::sleep(Duration::from_millis(250));
    }
    let second = p.sidecar.org_status("acme");
    let lifetime =
        second["issued_at_ms"].as_u64().unwrap() - first["issued_at_ms"].as_u64().unwrap();
    println!("proactive refresh {lifetime} ms after the first token, after {next} lookups");
    assert!(
        (45_000..58_000).contains(&lifetime),
        "refreshed {lifetime} ms after issue, expected 80 % of 60 s"
    );

    // The module takes the new generation and keeps looking up with it.
    poll(
        Duration::from_secs(10),
        "the module to take generation 2",
        || (p.module_generation() == 2).then_some(()),
    );
    stream_round(&mut p, next..next + 20, &ids, |_| {});
    assert_eq!(
        token_requests(&p) - tokens_before,
        1,
        "one proactive refresh"
    );
    assert_eq!(module_unauthorized(&mut p), 0, "no lookup was refused");
    assert_eq!(p.sidecar.generation("acme"), 2);
}

/// Issue 4, 2: `sf_lookup` then `sf_screen_pop extension=1001` in the module, through the
/// sidecar, to agent 1001's WebSocket.
#[test]
fn screen_pop_reaches_the_agents_websocket() {
    const TOKEN: &str = "agent-1001-console-token";
    let grace = {
        let emulator = sf_emulator::Emulator::start_background(Default::default()).unwrap();
        emulator
            .admin()
            .records("User")
            .into_iter()
            .find(|u| u["Username"] == "grace.hopper@acme.example")
            .and_then(|u| u["Id"].as_str().map(str::to_string))
            .expect("Grace's user id")
    };
    let mut p = Product::start(ProductOptions {
        agents: vec![Agent {
            user_id: grace.clone(),
            extension: "1001".into(),
            token: TOKEN.into(),
        }],
        ..ProductOptions::default()
    });
    let agent_listen = p.sidecar.agent;

    // Refused before the upgrade: a wrong token, no token.
    assert_eq!(
        connect_agent(agent_listen, "not-the-token").err(),
        Some(401)
    );
    assert_eq!(connect_agent(agent_listen, "").err(), Some(401));
    assert_eq!(
        p.sidecar.metric("natterbox_sidecar_ws_auth_failures_total"),
        Some(2)
    );

    let mut console = connect_agent(agent_listen, TOKEN).expect("agent 1001 connects");
    let hello = next_json(&mut console, Duration::from_secs(5)).expect("hello");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["extension"], "1001");
    assert_eq!(hello["user_id"], grace.as_str());
    // Protocol v1: the agent's presence follows the hello.
    assert_eq!(
        next_json(&mut console, Duration::from_secs(5)).unwrap()["type"],
        "presence"
    );
    // A reader thread stamps each frame as it arrives.
    let (tx, frames) = std::sync::mpsc::channel::<(Instant, Value)>();
    let reader = std::thread::spawn(move || {
        let mut console = console;
        while let Some(frame) = next_json(&mut console, Duration::from_secs(10)) {
            if tx.send((Instant::now(), frame)).is_err() {
                return;
            }
        }
    });

    let ada = p.record_id("Contact", "LastName", "Lovelace");
    let vars = p.lookup("pop-1", "+14155550123");
    assert_eq!(vars["sf_lookup_status"], "found");
    let sent = Instant::now();
    p.shim.ok("app pop-1 sf_screen_pop extension=1001");
    let (arrived, pop) = frames
        .recv_timeout(Duration::from_secs(5))
        .expect("the pop on agent 1001's console");
    let latency = arrived - sent;
    println!("screen pop latency (shim app -> WebSocket frame): {latency:?}");
    assert_eq!(pop["type"], "screen_pop", "{pop}");
    assert_eq!(pop["call_uuid"], "pop-1");
    assert_eq!(pop["org"], "acme");
    assert_eq!(pop["agent_extension"], "1001");
    assert_eq!(pop["caller_number"], "+14155550123");
    assert_eq!(pop["record_ids"], json!([ada]));
    assert_eq!(pop["direction"], "inbound");
    assert_eq!(
        pop["expires_at_ms"].as_u64().unwrap() - pop["created_at_ms"].as_u64().unwrap(),
        30_000
    );
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(p.shim.vars("pop-1")["sf_screen_pop"], "sent");

    // A console that connects after the pop, within its TTL, still gets it (it is not acked).
    let mut late = connect_agent(agent_listen, TOKEN).expect("a second console");
    assert_eq!(
        next_json(&mut late, Duration::from_secs(5)).unwrap()["type"],
        "hello"
    );
    assert_eq!(
        next_json(&mut late, Duration::from_secs(5)).unwrap()["type"],
        "presence"
    );
    let replayed = next_json(&mut late, Duration::from_secs(5)).expect("the pop, replayed");
    assert_eq!(replayed["call_uuid"], "pop-1");
    assert_eq!(replayed["record_ids"], json!([ada]));
    // Acknowledged: a console connecting after that gets no pop.
    late.send(tungstenite::Message::text(
        json!({"ack": "pop-1"}).to_string(),
    ))
    .unwrap();
    poll(Duration::from_secs(5), "the ack to count", || {
        (p.sidecar.metric("natterbox_sidecar_pops_acked_total") == Some(1)).then_some(())
    });
    let mut third = connect_agent(agent_listen, TOKEN).expect("a third console");
    assert_eq!(
        next_json(&mut third, Duration::from_secs(5)).unwrap()["type"],
        "hello"
    );
    assert_eq!(
        next_json(&mut third, Duration::from_secs(5)).unwrap()["type"],
        "presence"
    );
    assert_eq!(next_json(&mut third, Duration::from_millis(500)), None);

    // Latency over a series of pops, each on a call of its own, the caller looked up first.
    let mut latencies = Vec::new();
    for i in 0..30 {
        let uuid = format!("pop-s{i}");
        let vars = p.lookup(&uuid, &format!("+1415555{:04}", 3000 + i));
        assert_eq!(vars["sf_lookup_status"], "not_found", "{vars:?}");
        let sent = Instant::now();
        p.shim
            .ok(&format!("app {uuid} sf_screen_pop extension=1001"));
        let (arrived, pop) = frames
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("pop {i} on the console"));
        assert_eq!(pop["call_uuid"], uuid.as_str());
        assert_eq!(pop["record_ids"], json!([]));
        latencies.push(arrived - sent);
    }
    latencies.sort();
    println!(
        "screen pop latency over {} pops: p50 {:?}  p90 {:?}  max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1]
    );
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(200));
    drop(frames);
    drop(p);
    reader.join().unwrap();
}

/// Issue 4, 3: hangup → module → sidecar → a Task in the org; call logs made while the sidecar
/// is dead (kill -9) are spooled by the module and delivered exactly once when it is back.
#[test]
fn call_logs_become_tasks_exactly_once_across_a_sidecar_kill() {
    let mut p = Product::start(ProductOptions::default());
    let ada = p.record_id("Contact", "LastName", "Lovelace");
    let bob = p.record_id("Contact", "LastName", "Jones");
    let chris = p.record_id("Contact", "LastName", "Nolan");

    let vars = p.lookup("log-1", "+14155550123");
    assert_eq!(vars["sf_record_id"], ada);
    p.shim.ok("answer log-1");
    p.shim.ok("hangup log-1 NORMAL_CLEARING");
    let task = poll(Duration::from_secs(20), "the Task of log-1", || {
        p.tasks_for("log-1").into_iter().next()
    });
    assert_eq!(task["TaskSubtype"], "Call", "{task}");
    assert_eq!(task["CallType"], "Inbound", "{task}");
    assert_eq!(task["WhoId"], ada.as_str(), "{task}");
    assert_eq!(task["CallObject"], "log-1");
    poll(Duration::from_secs(10), "the ack of log-1", || {
        p.spooled().is_empty().then_some(())
    });

    // kill -9: the module keeps taking calls and spools their logs.
    p.sidecar.kill9();
    let calls = [
        ("log-2", "+14155550123", &ada),
        ("log-3", "4155550199", &bob),
        ("log-4", "+1 (212) 555-0147", &chris),
    ];
    for (uuid, caller, who) in calls {
        let vars = p.lookup(uuid, caller);
        assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
        assert_eq!(&vars["sf_record_id"], who);
        p.shim.ok(&format!("answer {uuid}"));
        p.shim.ok(&format!("hangup {uuid} NORMAL_CLEARING"));
    }
    let spooled = poll(Duration::from_secs(10), "three spooled call logs", || {
        let s = p.spooled();
        (s.len() == 3).then_some(s)
    });
    assert_eq!(spooled, ["log-2", "log-3", "log-4"]);
    for (uuid, _, _) in calls {
        assert!(
            p.tasks_for(uuid).is_empty(),
            "{uuid} logged without a sidecar"
        );
    }

    // Back: the module reconnects, sends the spool, the sidecar writes each Task once.
    p.sidecar.restart();
    poll(Duration::from_secs(30), "the Tasks of log-2..4", || {
        calls
            .iter()
            .all(|(uuid, _, _)| !p.tasks_for(uuid).is_empty())
            .then_some(())
    });
    poll(Duration::from_secs(15), "the spool to empty", || {
        p.spooled().is_empty().then_some(())
    });
    poll(Duration::from_secs(10), "an empty outbox", || {
        (p.sidecar.metric("natterbox_sidecar_outbox_pending") == Some(0)).then_some(())
    });
    for (uuid, who) in [
        ("log-1", &ada),
        ("log-2", &ada),
        ("log-3", &bob),
        ("log-4", &chris),
    ] {
        let tasks = p.tasks_for(uuid);
        assert_eq!(tasks.len(), 1, "{uuid}: {tasks:#?}");
        assert_eq!(tasks[0]["WhoId"], who.as_str());
        assert_eq!(tasks[0]["TaskSubtype"], "Call");
    }
}

/// Issue 4, 4: with the sidecar stopped, the module keeps looking callers up with the last token,
/// from the cache and from Salesforce; a new sidecar continues the generations.
#[test]
fn the_module_keeps_serving_while_the_sidecar_is_stopped() {
    let mut p = Product::start(ProductOptions::default());
    assert_eq!(
        p.lookup("before", "+14155550123")["sf_lookup_status"],
        "found"
    );
    let status = p.sidecar.stop();
    assert!(status.success(), "{status}\n{}", p.sidecar.log());
    let searches = p.emulator.admin().endpoint_count("search");

    let cached = p.lookup("cached", "(415) 555-0123");
    assert_eq!(cached["sf_lookup_status"], "found");
    assert_eq!(cached["sf_lookup_source"], "cache");
    let fresh = p.lookup("uncached", "4155550199");
    assert_eq!(fresh["sf_lookup_status"], "found", "{fresh:?}");
    assert_eq!(fresh["sf_lookup_source"], "salesforce");
    assert_eq!(fresh["sf_record_name"], "Bob Jones");
    let tie = p.lookup("tie", "+44 20 7946 0958");
    assert_eq!(tie["sf_lookup_status"], "multiple");
    let none = p.lookup("none", "+1 303 555 9999");
    assert_eq!(none["sf_lookup_status"], "not_found");
    assert_eq!(p.emulator.admin().endpoint_count("search"), searches + 3);
    assert_eq!(p.module_generation(), 1);
    assert_eq!(module_unauthorized(&mut p), 0);

    // A new sidecar gets a new token; its generation follows the file's, and the module takes it.
    p.sidecar.restart();
    poll(
        Duration::from_secs(20),
        "generation 2 in the module",
        || (p.module_generation() == 2).then_some(()),
    );
    assert_eq!(p.sidecar.generation("acme"), 2);
    let after = p.lookup("after", "+1 (212) 555-0147");
    assert_eq!(after["sf_lookup_status"], "found", "{after:?}");
}

/// A pop made while the sidecar is dead waits in the module (within its TTL) and reaches the
/// agent's console once the sidecar is back.
#[test]
fn a_screen_pop_made_while_the_sidecar_is_down_arrives_when_it_returns() {
    const TOKEN: &str = "agent-1002-console-token";
    let mut p = Product::start(ProductOptions {
        agents: vec![Agent {
            user_id: "005Em00000000AlAAA".into(),
            extension: "1002".into(),
            token: TOKEN.into(),
        }],
        ..ProductOptions::default()
    });
    let jane_or_john = p.lookup("away-1", "+44 20 7946 0958");
    assert_eq!(jane_or_john["sf_lookup_status"], "multiple");
    p.sidecar.kill9();
    p.shim.ok("app away-1 sf_screen_pop extension=1002");
    assert_eq!(p.shim.vars("away-1")["sf_screen_pop"], "sent");
    p.sidecar.restart();
    let mut console = connect_agent(p.sidecar.agent, TOKEN).expect("agent 1002 connects");
    assert_eq!(
        next_json(&mut console, Duration::from_secs(5)).unwrap()["type"],
        "hello"
    );
    assert_eq!(
        next_json(&mut console, Duration::from_secs(5)).unwrap()["type"],
        "presence"
    );
    // The module reconnects with a backoff of at most 5 s.
    let pop = next_json(&mut console, Duration::from_secs(15)).expect("the pop, late but in time");
    assert_eq!(pop["call_uuid"], "away-1");
    let ids: Vec<&str> = pop["record_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = jane_or_john["sf_record_ids"].split(',').collect();
    let mut got = ids.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every listed record is popped");
}

/// Sessions revoked again and again (an admin clearing sessions, a security policy): each time the
/// tokens worked for lookups before they were refused, so each refresh must happen at once.
#[test]
fn sessions_expired_repeatedly_after_working_are_refreshed_at_once_each_time() {
    let mut p = Product::start(ProductOptions::default());
    let ids = create_stream_contacts(&p, 120);
    let tokens_before = token_requests(&p);
    for round in 0..6 {
        // A few lookups that work with the current token, then the org drops every session.
        stream_round(&mut p, round * 20..round * 20 + 10, &ids, |_| {});
        assert!(p.emulator.admin().expire_sessions() > 0);
        stream_round(&mut p, round * 20 + 10..round * 20 + 20, &ids, |_| {});
        assert_eq!(
            p.sidecar.generation("acme"),
            round as u64 + 2,
            "round {round}\n{}",
            p.sidecar.log()
        );
    }
    assert_eq!(token_requests(&p) - tokens_before, 6);
}

/// Hangups racing a `systemctl stop` (SIGTERM): each call log is either committed by the stopping
/// sidecar or still spooled by the module, and each becomes exactly one Task after the restart.
#[test]
fn call_logs_racing_a_sigterm_become_tasks_exactly_once() {
    let mut p = Product::start(ProductOptions::default());
    let uuids: Vec<String> = (0..12).map(|i| format!("term-{i}")).collect();
    for (i, uuid) in uuids.iter().enumerate() {
        let vars = p.lookup(uuid, &stream_number(i));
        assert_eq!(vars["sf_lookup_status"], "not_found", "{vars:?}");
        p.shim.ok(&format!("answer {uuid}"));
    }
    // Half the hangups before the signal, half while the sidecar drains and after it is gone.
    for uuid in &uuids[..6] {
        p.shim.ok(&format!("hangup {uuid} NORMAL_CLEARING"));
    }
    let pid = p.sidecar.pid().unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    for uuid in &uuids[6..] {
        p.shim.ok(&format!("hangup {uuid} NORMAL_CLEARING"));
    }
    let status = p.sidecar.stop_after_signal();
    assert!(status.success(), "{status}\n{}", p.sidecar.log());
    p.sidecar.restart();
    poll(Duration::from_secs(30), "a Task for every call", || {
        uuids
            .iter()
            .all(|u| !p.tasks_for(u).is_empty())
            .then_some(())
    });
    poll(Duration::from_secs(15), "the spool to empty", || {
        p.spooled().is_empty().then_some(())
    });
    poll(Duration::from_secs(10), "an empty outbox", || {
        (p.sidecar.metric("natterbox_sidecar_outbox_pending") == Some(0)).then_some(())
    });
    for uuid in &uuids {
        assert_eq!(p.tasks_for(uuid).len(), 1, "{uuid}");
    }
}
