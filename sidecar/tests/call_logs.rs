//! Call logs → outbox → Salesforce Tasks, against the emulator: fields, idempotency, batching,
//! 401 and REQUEST_LIMIT_EXCEEDED handling, and `kill -9` in the middle of a stream.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use natterbox_common::wire::{CallLog, Direction, Message};
use serde_json::Value;
use support::*;

fn call_log_org(emu: &sf_emulator::Emulator) -> String {
    org_xml(
        "acme",
        &emu.login_url(),
        &jwt_auth(
            JWT_CLIENT,
            INTEGRATION_USER,
            &key_file("test-jwt-private-key.pem"),
            "https://login.salesforce.com",
        ),
        r#"<call-log enabled="true" subject="Call {direction} {from} to {to}" status="Completed"/>"#,
    )
}

fn log(uuid: &str) -> CallLog {
    CallLog {
        org: "acme".into(),
        call_uuid: uuid.into(),
        from: "+14155550100".into(),
        to: "1001".into(),
        direction: Direction::Inbound,
        start_ms: 1_767_225_600_000,
        answer_ms: Some(1_767_225_605_000),
        end_ms: 1_767_225_665_000,
        duration_s: 60,
        agent_user_id: None,
        who_id: None,
        what_id: None,
        hangup_cause: "NORMAL_CLEARING".into(),
        recording_url: None,
    }
}

fn first_id(emu: &sf_emulator::Emulator, object: &str, prefix: &str) -> String {
    emu.admin()
        .records(object)
        .iter()
        .filter_map(|r| r["Id"].as_str())
        .find(|id| id.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {object} in the seed"))
        .to_string()
}

/// Tasks in the emulator by CallObject (the seed's own call Task left out).
fn tasks_by_call(emu: &sf_emulator::Emulator) -> HashMap<String, Vec<Value>> {
    let mut map: HashMap<String, Vec<Value>> = HashMap::new();
    for task in emu.admin().records("Task") {
        if let Some(call) = task["CallObject"]
            .as_str()
            .filter(|c| !c.starts_with("seed-"))
        {
            map.entry(call.to_string()).or_default().push(task.clone());
        }
    }
    map
}

async fn acks(module: &mut ModuleConn, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        match module.recv(Duration::from_secs(15)).await {
            Some(Message::Ack { call_uuid }) => got.push(call_uuid),
            other => panic!("expected an ack, got {other:?} after {} acks", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_logs_become_tasks_exactly_once() {
    let emu = emulator().await;
    let contact = first_id(&emu, "Contact", "003");
    let lead = first_id(&emu, "Lead", "00Q");
    let account = first_id(&emu, "Account", "001");
    let user = first_id(&emu, "User", "005");
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;

    let mut inbound = log("call-contact");
    inbound.who_id = Some(contact.clone());
    inbound.what_id = Some(account.clone());
    inbound.agent_user_id = Some(user.clone());
    let mut outbound = log("call-lead");
    outbound.direction = Direction::Outbound;
    outbound.who_id = Some(lead.clone());
    outbound.what_id = Some(account.clone());
    outbound.answer_ms = None;
    let mut internal = log("call-internal");
    internal.direction = Direction::Internal;
    for l in [&inbound, &outbound, &internal] {
        module.send(&Message::CallLog(l.clone())).await;
    }
    let mut got = acks(&mut module, 3).await;
    got.sort();
    assert_eq!(got, ["call-contact", "call-internal", "call-lead"]);

    eventually(Duration::from_secs(15), "three Tasks", || async {
        tasks_by_call(&emu).len() == 3
    })
    .await;
    let tasks = tasks_by_call(&emu);
    let t = &tasks["call-contact"][0];
    assert_eq!(t["TaskSubtype"], "Call");
    assert_eq!(t["CallType"], "Inbound");
    assert_eq!(t["CallDurationInSeconds"], 60);
    assert_eq!(t["Status"], "Completed");
    assert_eq!(t["Subject"], "Call Inbound +14155550100 to 1001");
    assert_eq!(t["ActivityDate"], "2026-01-01");
    assert_eq!(t["WhoId"], contact.as_str());
    assert_eq!(t["WhatId"], account.as_str());
    assert_eq!(t["OwnerId"], user.as_str());
    let description = t["Description"].as_str().unwrap();
    assert!(
        description.contains("Hangup cause: NORMAL_CLEARING"),
        "{description}"
    );
    assert!(
        description.contains("Start: 2026-01-01T00:00:00Z"),
        "{description}"
    );
    let t = &tasks["call-lead"][0];
    assert_eq!(t["CallType"], "Outbound");
    assert_eq!(t["WhoId"], lead.as_str());
    assert!(t["WhatId"].is_null(), "no WhatId with a Lead: {t}");
    assert_eq!(tasks["call-internal"][0]["CallType"], "Internal");

    // The module sends a spooled copy again (it missed the ack): acked, not written twice.
    module.send(&Message::CallLog(inbound.clone())).await;
    assert_eq!(acks(&mut module, 1).await, ["call-contact"]);
    // Acked means committed: two rounds later a second row would have been written.
    running.delivery_rounds(2).await;
    assert_eq!(tasks_by_call(&emu)["call-contact"].len(), 1);
    eventually(Duration::from_secs(5), "the outbox gauges", || async {
        running.metric("natterbox_sidecar_outbox_delivered").await == 3
            && running.metric("natterbox_sidecar_outbox_pending").await == 0
    })
    .await;
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_call_logs_delivered_total{org=\"acme\"}")
            .await,
        3
    );
    // Never sent before, so nothing to look for: the steady state spends no API call on the
    // dedup query, only the creates.
    assert!(
        !emu.admin()
            .queries()
            .iter()
            .any(|q| q.text.contains("FROM Task WHERE CallObject")),
        "{:?}",
        emu.admin().queries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_records_are_batched_and_existing_tasks_are_not_created_again() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    // Ten records already in the outbox (committed by a previous run), one of which a previous
    // run created in Salesforce before crashing.
    let outbox = natterbox_sidecar::outbox::Outbox::open(&setup.outbox()).unwrap();
    let logs: Vec<CallLog> = (0..10).map(|i| log(&format!("batch-{i}"))).collect();
    outbox.insert_batch(&logs, 1).unwrap();
    // The previous run recorded the send of batch-3 before sending it (its Task is created below,
    // as if the answer was lost in the crash), and of batch-4, whose create never arrived.
    let sent_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    outbox
        .mark_sent(&["batch-3".to_string(), "batch-4".to_string()], sent_ms)
        .unwrap();
    drop(outbox);
    let token = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", emu.login_url()))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            (
                "assertion",
                &natterbox_sidecar::oauth::jwt_assertion(
                    JWT_CLIENT,
                    INTEGRATION_USER,
                    "https://login.salesforce.com",
                    &std::fs::read_to_string(key_file("test-jwt-private-key.pem")).unwrap(),
                    std::time::SystemTime::now(),
                )
                .unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let created = reqwest::Client::new()
        .post(format!(
            "{}/services/data/v62.0/sobjects/Task/",
            token["instance_url"].as_str().unwrap()
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&serde_json::json!({"Subject":"Call","Status":"Completed","CallObject":"batch-3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let composite_before = emu.admin().endpoint_count("composite_sobjects");

    let running = setup.start().await;
    eventually(Duration::from_secs(15), "ten Tasks", || async {
        tasks_by_call(&emu).len() == 10
    })
    .await;
    let tasks = tasks_by_call(&emu);
    assert!(tasks.values().all(|t| t.len() == 1), "{tasks:?}");
    assert_eq!(
        emu.admin().endpoint_count("composite_sobjects") - composite_before,
        1,
        "nine records in one composite call"
    );
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_call_logs_deduplicated_total{org=\"acme\"}")
            .await,
        1
    );
    // One query, for the two calls sent before only, bounded by when they were first sent (a
    // day back for clock skew: CreatedDate is indexed, CallObject is not).
    let dedup: Vec<_> = emu
        .admin()
        .queries()
        .into_iter()
        .filter(|q| q.text.contains("FROM Task WHERE CallObject IN ("))
        .collect();
    assert_eq!(dedup.len(), 1, "{dedup:?}");
    let q = &dedup[0];
    assert!(q.error.is_none(), "{q:?}");
    let mut asked: Vec<&str> = q.literals.iter().map(String::as_str).collect();
    asked.sort();
    assert_eq!(asked, ["batch-3", "batch-4"], "{q:?}");
    let since = natterbox_sidecar::calllog::utc_time(sent_ms - 86_400_000);
    assert!(
        q.text.ends_with(&format!("AND CreatedDate >= {since}")),
        "{q:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_created_whose_answer_was_lost_are_found_not_created_again() {
    let emu = emulator().await;
    // Salesforce creates the batch, then the answer arrives as garbage (a proxy's error page):
    // the sidecar cannot tell what was created.
    emu.admin().add_fault(sf_emulator::FaultRule {
        path_prefix: "/services/data/v68.0/composite/sobjects".into(),
        garbage_rate: 1.0,
        times: Some(1),
        ..Default::default()
    });
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let uuids: Vec<String> = (0..5).map(|i| format!("lost-{i}")).collect();
    for uuid in &uuids {
        module.send(&Message::CallLog(log(uuid))).await;
    }
    assert_eq!(acks(&mut module, 5).await.len(), 5);
    eventually(
        Duration::from_secs(30),
        "every call log delivered",
        || async { running.metric("natterbox_sidecar_outbox_delivered").await == 5 },
    )
    .await;
    let tasks = tasks_by_call(&emu);
    for uuid in &uuids {
        assert_eq!(tasks.get(uuid).map_or(0, Vec::len), 1, "{uuid}: {tasks:?}");
    }
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_call_logs_deduplicated_total{org=\"acme\"}")
            .await,
        5,
        "all five found by the query, none created twice"
    );
    assert_eq!(emu.admin().endpoint_count("composite_sobjects"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_the_token_once_and_the_write_goes_through() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    assert_eq!(token_requests(&emu), 1);
    assert!(emu.admin().expire_sessions() >= 1);
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module.send(&Message::CallLog(log("after-expiry"))).await;
    acks(&mut module, 1).await;
    eventually(Duration::from_secs(15), "the Task", || async {
        tasks_by_call(&emu).contains_key("after-expiry")
    })
    .await;
    assert_eq!(token_requests(&emu), 2, "one refresh");
    assert_eq!(setup.token_file("acme").unwrap().generation, 2);
    assert_eq!(org_status(&running, "acme").await["healthy"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_exceeded_pauses_the_org() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    let max = emu.admin().limits().daily_max;
    emu.admin().set_limits(sf_emulator::LimitsUpdate {
        daily_used: Some(max),
        ..Default::default()
    });
    let before = emu.admin().stats()["total_requests"].as_u64().unwrap();
    let mut module = ModuleConn::connect(&setup.socket()).await;
    for i in 0..5 {
        module
            .send(&Message::CallLog(log(&format!("limited-{i}"))))
            .await;
    }
    acks(&mut module, 5).await;
    eventually(Duration::from_secs(10), "a pause", || async {
        running
            .metric("natterbox_sidecar_org_api_limit_pauses_total{org=\"acme\"}")
            .await
            == 1
    })
    .await;
    // Three delivery rounds with the org paused: no Salesforce calls but the one that found the
    // limit (and at most one limits check).
    running.delivery_rounds(3).await;
    let requests = emu.admin().stats()["total_requests"].as_u64().unwrap() - before;
    assert!(requests <= 2, "{requests} requests while over the limit");
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_api_limit_pauses_total{org=\"acme\"}")
            .await,
        1
    );
    assert!(tasks_by_call(&emu).is_empty());
    assert_eq!(running.metric("natterbox_sidecar_outbox_pending").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_stream_neither_loses_nor_duplicates() {
    const N: usize = 200;
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let uuids: Vec<String> = (0..N).map(|i| format!("stream-{i:04}")).collect();

    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let mut acked = Vec::new();
    let mut creates_before = 0;
    for (i, uuid) in uuids.iter().enumerate() {
        module.send(&Message::CallLog(log(uuid))).await;
        if i % 10 == 9 {
            acked.extend(acks(&mut module, 10).await);
        }
        if i + 1 == N / 2 {
            // Once Salesforce has the first half, its answers to creates start to take 30 s.
            eventually(
                Duration::from_secs(20),
                "the first half's Tasks",
                || async { tasks_by_call(&emu).len() == N / 2 },
            )
            .await;
            creates_before = emu.admin().endpoint_count("composite_sobjects");
            emu.admin().add_fault(sf_emulator::FaultRule {
                path_prefix: "/services/data/v68.0/composite/sobjects".into(),
                latency_ms: 30_000,
                ..Default::default()
            });
        }
    }
    // Salesforce has created the second half's Tasks (it handles a request on arrival, then
    // delays the answer): kill without warning before the sidecar hears of it.
    eventually(Duration::from_secs(20), "a create in flight", || async {
        tasks_by_call(&emu).len() > N / 2
            && emu.admin().endpoint_count("composite_sobjects") > creates_before
    })
    .await;
    emu.admin().clear_faults();
    let recorded = running.metric("natterbox_sidecar_outbox_delivered").await as usize;
    let before_kill = tasks_by_call(&emu).len();
    running.kill9();
    println!(
        "killed with {} acked, {before_kill} Tasks written, {recorded} recorded as delivered",
        acked.len()
    );
    assert!(
        recorded < before_kill,
        "the kill must land with Tasks in Salesforce the sidecar has not recorded ({recorded} of {before_kill})"
    );

    // Restart; the module sends everything it has not had acked (here: everything, which is
    // what a module that lost its acks would do).
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    for uuid in &uuids {
        module.send(&Message::CallLog(log(uuid))).await;
    }
    let mut all = acks(&mut module, N).await;
    all.sort();
    assert_eq!(all, uuids);
    eventually(
        Duration::from_secs(60),
        "every record in the emulator",
        || async { tasks_by_call(&emu).len() == N },
    )
    .await;
    // Nothing pending and every record delivered: no write is left that could duplicate one.
    eventually(Duration::from_secs(10), "an empty outbox", || async {
        running.metric("natterbox_sidecar_outbox_pending").await == 0
            && running.metric("natterbox_sidecar_outbox_delivered").await == N as u64
    })
    .await;
    let tasks = tasks_by_call(&emu);
    for uuid in &uuids {
        let n = tasks.get(uuid).map_or(0, Vec::len);
        assert_eq!(n, 1, "{uuid} is in the emulator {n} times");
    }
    assert_eq!(tasks.len(), N);
    eventually(Duration::from_secs(10), "an empty outbox", || async {
        running.metric("natterbox_sidecar_outbox_pending").await == 0
    })
    .await;
    assert_eq!(
        running.metric("natterbox_sidecar_outbox_delivered").await,
        N as u64
    );
    // The Tasks created while the sidecar died were found, not created again.
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_call_logs_deduplicated_total{org=\"acme\"}")
            .await as usize,
        before_kill - recorded
    );
    assert!(running.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_without_acking() {
    const N: usize = 2000;
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    std::fs::write(
        setup.config_path(),
        config.replace(
            "<param name=\"spool-dir\"",
            "<param name=\"event-queue-capacity\" value=\"1\"/><param name=\"spool-dir\"",
        ),
    )
    .unwrap();
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let mut burst = Vec::new();
    for i in 0..N {
        burst.extend(Message::CallLog(log(&format!("burst-{i:04}"))).to_line());
    }
    module.send_raw(&burst).await;
    let mut acked = std::collections::HashSet::new();
    while let Some(Message::Ack { call_uuid }) = module.recv(Duration::from_secs(2)).await {
        acked.insert(call_uuid);
    }
    let dropped = running
        .metric("natterbox_sidecar_events_dropped_total")
        .await;
    assert!(dropped > 0, "a one-slot queue overflows under a burst");
    assert_eq!(
        acked.len() as u64 + dropped,
        N as u64,
        "every log is acked or counted"
    );
    // The module sends what was not acked again (spool); this time at its own pace.
    for i in 0..N {
        let uuid = format!("burst-{i:04}");
        if !acked.contains(&uuid) {
            module.send(&Message::CallLog(log(&uuid))).await;
            assert_eq!(acks(&mut module, 1).await, [uuid]);
        }
    }
    eventually(Duration::from_secs(60), "every Task", || async {
        tasks_by_call(&emu).len() == N
    })
    .await;
    assert!(tasks_by_call(&emu).values().all(|t| t.len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_writes_within_a_bound() {
    const N: usize = 20;
    let emu = emulator().await;
    emu.admin().add_fault(sf_emulator::FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 400,
        ..Default::default()
    });
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let uuids: Vec<String> = (0..N).map(|i| format!("drain-{i:02}")).collect();
    for uuid in &uuids {
        module.send(&Message::CallLog(log(uuid))).await;
    }
    acks(&mut module, N).await;
    // SIGTERM while Task writes are in flight (each takes 400 ms in the emulator).
    eventually(Duration::from_secs(10), "Task writes in flight", || async {
        emu.admin().stats()["in_flight"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let started = std::time::Instant::now();
    let status = running.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(setup.log().contains("SIGTERM: draining"));
    // What the drain did not finish is still in the outbox: a restart completes it, once each.
    let running = setup.start().await;
    eventually(Duration::from_secs(30), "every Task", || async {
        tasks_by_call(&emu).len() == N
    })
    .await;
    assert!(tasks_by_call(&emu).values().all(|t| t.len() == 1));
    eventually(Duration::from_secs(10), "an empty outbox", || async {
        running.metric("natterbox_sidecar_outbox_pending").await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_salesforce_refuses_is_retried_then_marked_failed_without_blocking_others() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(&call_log_org(&emu), "");
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let mut bad = log("refused");
    bad.who_id = Some("003000000000000AAA".into()); // no such Contact
    let good = log("accepted");
    let mut burst = Message::CallLog(bad).to_line();
    burst.extend(Message::CallLog(good).to_line());
    module.send_raw(&burst).await;
    acks(&mut module, 2).await;
    eventually(Duration::from_secs(10), "the good record", || async {
        tasks_by_call(&emu).contains_key("accepted")
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the refused record to fail",
        || async {
            running
                .metric("natterbox_sidecar_org_call_logs_failed_total{org=\"acme\"}")
                .await
                == 1
        },
    )
    .await;
    let outbox = natterbox_sidecar::outbox::Outbox::open(&setup.outbox()).unwrap();
    let refused = outbox.state("refused").unwrap().unwrap();
    assert_eq!(refused.state, "failed");
    assert_eq!(refused.attempts, 3);
    assert!(refused.last_error.is_some());
    let accepted = outbox.state("accepted").unwrap().unwrap();
    assert_eq!(accepted.state, "delivered");
    assert!(accepted.task_id.unwrap().starts_with("00T"));
    assert!(!tasks_by_call(&emu).contains_key("refused"));
}
