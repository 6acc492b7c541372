//! VoiceCall records through the Telephony Integration API, against the emulator: the record's
//! fields and state transitions, the JWT the emulator checks, exactly once per call and in order,
//! and `kill -9` in the middle of a call.

mod support;

use std::time::Duration;

use natterbox_common::call_control::{CallPhase, CallState};
use natterbox_common::wire::{CallEvent, CallLog, CallProgress, Direction, Message};
use serde_json::Value;
use support::*;

const START_MS: u64 = 1_767_225_600_000;
const ANSWER_MS: u64 = 1_767_225_605_000;
const END_MS: u64 = 1_767_225_665_000;

fn voice_org(emu: &sf_emulator::Emulator, record: &str, key: &str) -> String {
    org_xml(
        "acme",
        &emu.login_url(),
        &jwt_auth(
            JWT_CLIENT,
            INTEGRATION_USER,
            &key_file("test-jwt-private-key.pem"),
            "https://login.salesforce.com",
        ),
        &format!(
            r#"<call-log enabled="true" record="{record}"/>
      <service-cloud-voice scrt-url="{}" org-id="{}" call-center="NatterboxCC" provider="Natterbox" private-key-file="{key}"/>"#,
            emu.login_url(),
            emu.org_id()
        ),
    )
}

fn progress(uuid: &str, event: CallEvent) -> CallProgress {
    CallProgress {
        org: "acme".into(),
        call_uuid: uuid.into(),
        event,
        from: "+14155550100".into(),
        to: "+18005550199".into(),
        direction: Direction::Inbound,
        start_ms: START_MS,
        at_ms: if event == CallEvent::Answered {
            ANSWER_MS
        } else {
            START_MS
        },
    }
}

fn log(uuid: &str) -> CallLog {
    CallLog {
        org: "acme".into(),
        call_uuid: uuid.into(),
        from: "+14155550100".into(),
        to: "+18005550199".into(),
        direction: Direction::Inbound,
        start_ms: START_MS,
        answer_ms: Some(ANSWER_MS),
        end_ms: END_MS,
        duration_s: 60,
        agent_user_id: None,
        who_id: None,
        what_id: None,
        hangup_cause: "NORMAL_CLEARING".into(),
        recording_url: Some("https://recordings.example/acme/call-1.wav".into()),
    }
}

/// Waits for `n` more VoiceCall worker rounds: afterwards, whatever was committed before the call
/// has been sent.
async fn voicecall_rounds(running: &Running, n: u64) {
    let series = "natterbox_sidecar_voicecall_rounds_total";
    let start = running.metric(series).await;
    eventually(
        Duration::from_secs(10 + 2 * n),
        "VoiceCall rounds",
        || async { running.metric(series).await >= start + n },
    )
    .await;
}

fn voicecalls(emu: &sf_emulator::Emulator, uuid: &str) -> Vec<Value> {
    emu.admin()
        .voicecalls()
        .into_iter()
        .filter(|c| c["VendorCallKey"] == uuid)
        .collect()
}

async fn wait_disposition(emu: &sf_emulator::Emulator, uuid: &str, disposition: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("VoiceCall {uuid} {disposition}"),
        || async {
            voicecalls(emu, uuid)
                .first()
                .is_some_and(|c| c["fields"]["CallDisposition"] == disposition)
        },
    )
    .await;
    voicecalls(emu, uuid).remove(0)
}

async fn ack(module: &mut ModuleConn, uuid: &str) {
    match module.recv(Duration::from_secs(15)).await {
        Some(Message::Ack { call_uuid }) => assert_eq!(call_uuid, uuid),
        other => panic!("expected the ack for {uuid}, got {other:?}"),
    }
}

/// What the history of a VoiceCall says was asked of it: `create`, then the PATCHed fields.
fn operations(call: &Value) -> Vec<String> {
    call["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let mut keys: Vec<&str> = h["body"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort();
            match h["op"].as_str().unwrap() {
                "create" => "create".to_string(),
                _ => format!("update {}", keys.join(",")),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_one_voicecall_created_answered_and_ended_in_order() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(
        &voice_org(&emu, "both", &key_file("test-jwt-private-key.pem")),
        "",
    );
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;

    module
        .send(&Message::CallProgress(progress("vc-1", CallEvent::Started)))
        .await;
    let call = wait_disposition(&emu, "vc-1", "new").await;
    let f = &call["fields"];
    assert!(call["Id"].as_str().unwrap().starts_with("0LQ"), "{call}");
    assert_eq!(f["CallType"], "Inbound");
    assert_eq!(f["FromPhoneNumber"], "+14155550100");
    assert_eq!(f["ToPhoneNumber"], "+18005550199");
    assert_eq!(f["CallCenterApiName"], "NatterboxCC");
    assert_eq!(f["CallStartDateTime"], "2026-01-01T00:00:00.000+0000");
    let created = &call["history"][0]["body"];
    assert_eq!(created["initiationMethod"], "Inbound");
    assert_eq!(created["participants"][0]["participantKey"], "+14155550100");
    assert_eq!(created["participants"][0]["type"], "END_USER");

    module
        .send(&Message::CallProgress(progress(
            "vc-1",
            CallEvent::Answered,
        )))
        .await;
    let call = wait_disposition(&emu, "vc-1", "in-progress").await;
    assert_eq!(
        call["fields"]["CallAcceptDateTime"],
        "2026-01-01T00:00:05.000+0000"
    );

    // The call log at hangup repeats the start and the answer: neither goes out again.
    module.send(&Message::CallLog(log("vc-1"))).await;
    ack(&mut module, "vc-1").await;
    let call = wait_disposition(&emu, "vc-1", "completed").await;
    let f = &call["fields"];
    assert_eq!(f["CallEndDateTime"], "2026-01-01T00:01:05.000+0000");
    assert_eq!(f["CallDurationInSeconds"], 65);
    assert_eq!(
        f["RecordingLocation"],
        "https://recordings.example/acme/call-1.wav"
    );
    // record="both": the Task too.
    eventually(Duration::from_secs(15), "the Task", || async {
        emu.admin()
            .records("Task")
            .iter()
            .any(|t| t["CallObject"] == "vc-1")
    })
    .await;

    // A module that lost the ack sends the call log again: acknowledged, nothing new sent.
    module.send(&Message::CallLog(log("vc-1"))).await;
    ack(&mut module, "vc-1").await;
    voicecall_rounds(&running, 2).await;
    let calls = voicecalls(&emu, "vc-1");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        operations(&calls[0]),
        [
            "create",
            "update acceptTime",
            "update endTime,recordingLocation,totalRecordingDuration"
        ]
    );
    assert!(running.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_heard_of_only_at_hangup_is_still_created_first() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(
        &voice_org(&emu, "voicecall", &key_file("test-jwt-private-key.pem")),
        "",
    );
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let mut missed = log("vc-missed");
    missed.answer_ms = None;
    missed.recording_url = None;
    module.send(&Message::CallLog(missed)).await;
    ack(&mut module, "vc-missed").await;
    let call = wait_disposition(&emu, "vc-missed", "completed").await;
    assert_eq!(operations(&call), ["create", "update endTime"]);
    assert!(call["fields"]["CallAcceptDateTime"].is_null());
    // record="voicecall": no Task.
    running.delivery_rounds(2).await;
    assert!(!emu
        .admin()
        .records("Task")
        .iter()
        .any(|t| t["CallObject"] == "vc-missed"));
    assert!(running.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_call_center_does_not_know_is_refused_and_nothing_is_recorded() {
    let emu = emulator().await;
    let setup = Setup::new();
    // A valid RSA key, but not the one whose certificate is on the call center.
    let other_key = setup.secret(
        "other.pem",
        &String::from_utf8(
            std::process::Command::new("openssl")
                .args(["genrsa", "2048"])
                .output()
                .expect("openssl")
                .stdout,
        )
        .unwrap(),
    );
    setup.write_config(
        &voice_org(&emu, "voicecall", other_key.to_str().unwrap()),
        "",
    );
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::CallProgress(progress(
            "vc-bad",
            CallEvent::Started,
        )))
        .await;
    eventually(Duration::from_secs(15), "a refused request", || async {
        emu.admin().endpoint_count("telephony_voicecalls") >= 1
    })
    .await;
    assert!(voicecalls(&emu, "vc-bad").is_empty());
    assert!(!setup.log().contains("BEGIN"), "no key material in the log");
    assert!(running.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_loses_no_update_and_makes_none_twice() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(
        &voice_org(&emu, "voicecall", &key_file("test-jwt-private-key.pem")),
        "",
    );
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::CallProgress(progress(
            "vc-kill",
            CallEvent::Started,
        )))
        .await;
    wait_disposition(&emu, "vc-kill", "new").await;

    // Salesforce refuses updates for now: the answer is committed in the outbox, not delivered.
    emu.admin().add_fault(sf_emulator::FaultRule {
        path_prefix: "/telephony/v1/voiceCalls/".into(),
        status: Some(503),
        ..Default::default()
    });
    module
        .send(&Message::CallProgress(progress(
            "vc-kill",
            CallEvent::Answered,
        )))
        .await;
    let db = rusqlite::Connection::open_with_flags(
        setup.outbox(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let attempts = || -> u32 {
        db.query_row(
            "SELECT attempts FROM voicecall_step WHERE call_uuid='vc-kill' AND kind='accept'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    eventually(Duration::from_secs(15), "a refused accept", || async {
        attempts() >= 1
    })
    .await;
    running.kill9();
    drop(db);
    emu.admin().clear_faults();
    assert_eq!(
        wait_disposition(&emu, "vc-kill", "new").await["history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Restarted; the module's spool sends the call log it never had acked.
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module.send(&Message::CallLog(log("vc-kill"))).await;
    ack(&mut module, "vc-kill").await;
    let call = wait_disposition(&emu, "vc-kill", "completed").await;
    voicecall_rounds(&running, 2).await;
    let calls = voicecalls(&emu, "vc-kill");
    assert_eq!(calls.len(), 1, "one VoiceCall");
    assert_eq!(
        operations(&calls[0]),
        [
            "create",
            "update acceptTime",
            "update endTime,recordingLocation,totalRecordingDuration"
        ],
        "{call}"
    );
    assert_eq!(
        calls[0]["fields"]["CallAcceptDateTime"],
        "2026-01-01T00:00:05.000+0000"
    );
    assert!(running.stop().success());
}

/// Both answers the emulator can give to a repeated create: a second record (the default, the
/// strictest reading; Salesforce documents no other) and 409.
const DUPLICATE_MODES: [sf_emulator::DuplicateCreate; 2] = [
    sf_emulator::DuplicateCreate::NewRecord,
    sf_emulator::DuplicateCreate::Conflict,
];

/// Every update of a VoiceCall named it by its id, not its vendorCallKey.
fn assert_updates_by_id(call: &Value) {
    for h in call["history"].as_array().unwrap() {
        if h["op"] == "update" {
            assert_eq!(h["target"], call["Id"], "{h}");
        }
    }
}

fn lookups(emu: &sf_emulator::Emulator, uuid: &str) -> usize {
    emu.admin()
        .queries()
        .iter()
        .filter(|q| q.text.contains("FROM VoiceCall") && q.values.iter().any(|v| v == uuid))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_is_found_and_not_made_twice() {
    for mode in DUPLICATE_MODES {
        let emu = emulator().await;
        emu.admin().set_voicecall_duplicate_create(mode);
        let setup = Setup::new();
        setup.write_config(
            &voice_org(&emu, "voicecall", &key_file("test-jwt-private-key.pem")),
            "",
        );
        let running = setup.start().await;
        let mut module = ModuleConn::connect(&setup.socket()).await;
        // Salesforce makes the record; the answer breaks off half-way.
        emu.admin().add_fault(sf_emulator::FaultRule {
            path_prefix: "/telephony/v1/voiceCalls".into(),
            truncate_rate: 1.0,
            times: Some(1),
            ..Default::default()
        });
        module
            .send(&Message::CallProgress(progress(
                "vc-lost",
                CallEvent::Answered,
            )))
            .await;
        wait_disposition(&emu, "vc-lost", "in-progress").await;
        module.send(&Message::CallLog(log("vc-lost"))).await;
        ack(&mut module, "vc-lost").await;
        wait_disposition(&emu, "vc-lost", "completed").await;
        voicecall_rounds(&running, 2).await;
        let calls = voicecalls(&emu, "vc-lost");
        assert_eq!(calls.len(), 1, "{mode:?}: one VoiceCall: {calls:?}");
        assert_eq!(
            operations(&calls[0]),
            [
                "create",
                "update acceptTime",
                "update endTime,recordingLocation,totalRecordingDuration"
            ],
            "{mode:?}"
        );
        assert_updates_by_id(&calls[0]);
        assert_eq!(lookups(&emu, "vc-lost"), 1, "{mode:?}: looked up once");
        assert_eq!(
            running
                .metric("natterbox_sidecar_voicecall_creates_adopted_total")
                .await,
            1
        );
        assert!(running.stop().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_the_create_sent_and_recorded_leaves_one_voicecall() {
    for mode in DUPLICATE_MODES {
        let emu = emulator().await;
        emu.admin().set_voicecall_duplicate_create(mode);
        let setup = Setup::new();
        setup.write_config(
            &voice_org(&emu, "voicecall", &key_file("test-jwt-private-key.pem")),
            "",
        );
        let running = setup.start().await;
        let mut module = ModuleConn::connect(&setup.socket()).await;
        // Salesforce makes the record and holds its answer: the sidecar dies waiting for it.
        emu.admin().add_fault(sf_emulator::FaultRule {
            path_prefix: "/telephony/v1/voiceCalls".into(),
            latency_ms: 60_000,
            times: Some(1),
            ..Default::default()
        });
        module
            .send(&Message::CallProgress(progress(
                "vc-k9",
                CallEvent::Answered,
            )))
            .await;
        eventually(Duration::from_secs(15), "the create handled", || async {
            voicecalls(&emu, "vc-k9").len() == 1
        })
        .await;
        running.kill9();
        emu.admin().clear_faults();

        // Restarted; the module's spool sends the call log it never had acked.
        let running = setup.start().await;
        let mut module = ModuleConn::connect(&setup.socket()).await;
        module.send(&Message::CallLog(log("vc-k9"))).await;
        ack(&mut module, "vc-k9").await;
        wait_disposition(&emu, "vc-k9", "completed").await;
        voicecall_rounds(&running, 2).await;
        let calls = voicecalls(&emu, "vc-k9");
        assert_eq!(calls.len(), 1, "{mode:?}: one VoiceCall: {calls:?}");
        assert_eq!(
            operations(&calls[0]),
            [
                "create",
                "update acceptTime",
                "update endTime,recordingLocation,totalRecordingDuration"
            ],
            "{mode:?}"
        );
        assert_updates_by_id(&calls[0]);
        assert_eq!(lookups(&emu, "vc-k9"), 1, "{mode:?}");
        let transitions: Vec<&str> = calls[0]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["to"].as_str().unwrap())
            .collect();
        assert_eq!(transitions, ["new", "in-progress", "completed"]);
        assert!(running.stop().success());
    }
}

fn transferred(uuid: &str, to: &str, at_ms: u64) -> CallState {
    CallState {
        call_uuid: uuid.into(),
        state: CallPhase::Transferred,
        direction: Direction::Inbound,
        other_party: "+14155550100".into(),
        record_id: None,
        org: "acme".into(),
        agent_user_id: None,
        agent_extension: Some("1001".into()),
        muted: false,
        cause: None,
        transferred_to: Some(to.into()),
        at_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_a_child_voicecall_ended_with_the_call() {
    let emu = emulator().await;
    let setup = Setup::new();
    setup.write_config(
        &voice_org(&emu, "voicecall", &key_file("test-jwt-private-key.pem")),
        "",
    );
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::CallProgress(progress(
            "vc-xfer",
            CallEvent::Answered,
        )))
        .await;
    let parent = wait_disposition(&emu, "vc-xfer", "in-progress").await;
    let transfer_ms = ANSWER_MS + 20_000;
    let state = transferred("vc-xfer", "1002", transfer_ms);
    module.send(&Message::CallState(state.clone())).await;
    // The frame again (a module that reconnected): still one child.
    module.send(&Message::CallState(state)).await;
    let child_key = format!("vc-xfer.transfer.{transfer_ms}");
    let child = wait_disposition(&emu, &child_key, "new").await;
    let f = &child["fields"];
    assert_eq!(f["CallType"], "Transfer");
    assert_eq!(f["ParentVoiceCallId"], parent["Id"]);
    assert_eq!(f["ToPhoneNumber"], "1002");
    assert_eq!(f["FromPhoneNumber"], "+14155550100");
    assert_eq!(f["CallStartDateTime"], "2026-01-01T00:00:25.000+0000");
    // The create named the parent by its record id.
    assert_eq!(
        child["history"][0]["body"]["parentVoiceCallId"],
        parent["Id"]
    );

    // A transfer of a call that is no VoiceCall (never heard of) makes nothing.
    module
        .send(&Message::CallState(transferred(
            "vc-other",
            "1003",
            transfer_ms,
        )))
        .await;

    module.send(&Message::CallLog(log("vc-xfer"))).await;
    ack(&mut module, "vc-xfer").await;
    wait_disposition(&emu, "vc-xfer", "completed").await;
    let child = wait_disposition(&emu, &child_key, "completed").await;
    assert_eq!(
        child["fields"]["CallEndDateTime"],
        "2026-01-01T00:01:05.000+0000"
    );
    assert_eq!(operations(&child), ["create", "update endTime"]);
    assert_updates_by_id(&child);
    voicecall_rounds(&running, 2).await;
    let parent = voicecalls(&emu, "vc-xfer").remove(0);
    assert_eq!(
        operations(&parent),
        [
            "create",
            "update acceptTime",
            "update endTime,recordingLocation,totalRecordingDuration"
        ]
    );
    assert_eq!(voicecalls(&emu, &child_key).len(), 1);
    assert!(emu
        .admin()
        .voicecalls()
        .iter()
        .all(|c| !c["VendorCallKey"].as_str().unwrap().starts_with("vc-other")));
    assert!(running.stop().success());
}
