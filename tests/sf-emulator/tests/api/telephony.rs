//! The Telephony Integration API: a repeated create in both duplicate modes, VoiceCall queryable
//! over REST, transfers as child records, PATCH bodies and state transitions checked strictly.

use crate::common::*;
use serde_json::{json, Value};
use sf_emulator::{DuplicateCreate, Emulator};

pub(crate) fn telephony_jwt(emu: &Emulator) -> String {
    sign_jwt(
        &json!({"iss": emu.org_id(), "sub": "NatterboxCC", "aud": "https://scrt.salesforce.com",
                "iat": now_s(), "exp": now_s() + 120, "jti": format!("t-{}", now_s())}),
        TEST_KEY,
    )
}

pub(crate) async fn call(
    emu: &Emulator,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = client()
        .request(
            method,
            format!("{}/telephony/v1/voiceCalls{path}", emu.login_url()),
        )
        .bearer_auth(telephony_jwt(emu))
        .header("Telephony-Provider-Name", "Natterbox")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) fn create_body(key: &str) -> Value {
    json!({"callCenterApiName": "NatterboxCC", "vendorCallKey": key, "to": "+18005550199",
           "from": "+14155550100", "initiationMethod": "Inbound",
           "startTime": "2026-01-01T00:00:00.000Z",
           "participants": [{"participantKey": "+14155550100", "type": "END_USER"}]})
}

pub(crate) async fn create(emu: &Emulator, body: Value) -> (u16, Value) {
    call(emu, reqwest::Method::POST, "", body).await
}

async fn patch(emu: &Emulator, id: &str, body: Value) -> (u16, Value) {
    call(emu, reqwest::Method::PATCH, &format!("/{id}"), body).await
}

async fn ids_by_key(emu: &Emulator, key: &str) -> Vec<String> {
    let tok = token(emu).await;
    let body = query(
        emu,
        &tok,
        &format!("SELECT Id, CallDisposition FROM VoiceCall WHERE VendorCallKey = '{key}'"),
    )
    .await;
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn telephony_a_repeated_create_makes_a_second_record_by_default() {
    let emu = start().await;
    let (s, first) = create(&emu, create_body("dup-1")).await;
    assert_eq!(s, 200, "{first}");
    let (s, second) = create(&emu, create_body("dup-1")).await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(first["voiceCallId"], second["voiceCallId"]);
    let ids = ids_by_key(&emu, "dup-1").await;
    assert_eq!(ids.len(), 2, "both are in the org: {ids:?}");
    // The key now names two records: an update must say which.
    let (s, e) = patch(
        &emu,
        "dup-1",
        json!({"endTime": "2026-01-01T00:01:00.000Z"}),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let id = first["voiceCallId"].as_str().unwrap();
    let (s, _) = patch(&emu, id, json!({"endTime": "2026-01-01T00:01:00.000Z"})).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn telephony_conflict_mode_answers_409_to_a_repeated_create() {
    let emu = start().await;
    emu.admin()
        .set_voicecall_duplicate_create(DuplicateCreate::Conflict);
    assert_eq!(create(&emu, create_body("dup-2")).await.0, 200);
    let (s, e) = create(&emu, create_body("dup-2")).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["errorCode"], "DUPLICATE_VALUE");
    assert_eq!(ids_by_key(&emu, "dup-2").await.len(), 1);
    let v = emu.admin().configure(sf_emulator::ConfigUpdate {
        voicecall_duplicate_create: Some("new-record".into()),
        ..Default::default()
    });
    assert_eq!(v["voicecall_duplicate_create"], "new-record");
    assert_eq!(create(&emu, create_body("dup-2")).await.0, 200);
    assert_eq!(ids_by_key(&emu, "dup-2").await.len(), 2);
}

#[tokio::test]
async fn telephony_a_transfer_is_a_child_record_of_its_parent() {
    let emu = start().await;
    let (_, parent) = create(&emu, create_body("xfer-1")).await;
    let mut child = create_body("xfer-1.t1");
    child["initiationMethod"] = json!("Transfer");
    // Transfer without a parent, and a parent without Transfer: both refused.
    assert_eq!(create(&emu, child.clone()).await.0, 400);
    let mut inbound_with_parent = create_body("xfer-1.t0");
    inbound_with_parent["parentVoiceCallId"] = json!("xfer-1");
    assert_eq!(create(&emu, inbound_with_parent).await.0, 400);
    child["parentVoiceCallId"] = json!("no-such-call");
    assert_eq!(create(&emu, child.clone()).await.0, 400);
    child["parentVoiceCallId"] = json!("xfer-1");
    let (s, made) = create(&emu, child).await;
    assert_eq!(s, 200, "{made}");
    let tok = token(&emu).await;
    let body = query(
        &emu,
        &tok,
        "SELECT Id, CallType, ParentVoiceCallId FROM VoiceCall WHERE VendorCallKey = 'xfer-1.t1'",
    )
    .await;
    assert_eq!(body["records"][0]["CallType"], "Transfer");
    assert_eq!(
        body["records"][0]["ParentVoiceCallId"],
        parent["voiceCallId"]
    );
}

#[tokio::test]
async fn telephony_updates_are_checked_and_transitions_recorded() {
    let emu = start().await;
    let (_, made) = create(&emu, create_body("st-1")).await;
    let id = made["voiceCallId"].as_str().unwrap();
    for bad in [
        json!({"participantsX": []}),
        json!({"acceptTime": "2025-12-31T23:59:59.000Z"}),
        json!({"recordingLocation": "file:///var/lib/freeswitch/recordings/x.wav"}),
        json!({"isRecordingPaused": "no"}),
        json!({"numberOfHolds": -1}),
    ] {
        let (s, e) = patch(&emu, id, bad.clone()).await;
        assert_eq!(s, 400, "{bad} → {e}");
        assert_eq!(e["errorCode"], "INVALID_INPUT");
    }
    let accept = json!({"acceptTime": "2026-01-01T00:00:05.000Z"});
    assert_eq!(patch(&emu, id, accept.clone()).await.0, 200);
    let end = json!({"endTime": "2026-01-01T00:01:05.000Z",
                     "recordingLocation": "https://recordings.example/st-1.wav"});
    assert_eq!(patch(&emu, id, end.clone()).await.0, 200);
    // Sent again (a lost answer): the same values are no transition and are accepted.
    assert_eq!(patch(&emu, id, accept).await.0, 200);
    assert_eq!(patch(&emu, id, end).await.0, 200);
    // Back to in-progress, or ended at another time: refused.
    let (s, _) = patch(&emu, id, json!({"acceptTime": "2026-01-01T00:00:06.000Z"})).await;
    assert_eq!(s, 400);
    let (s, _) = patch(&emu, id, json!({"endTime": "2026-01-01T00:02:00.000Z"})).await;
    assert_eq!(s, 400);
    let calls = emu.admin().voicecalls();
    let c = calls.iter().find(|c| c["Id"] == id).unwrap();
    let steps: Vec<(Value, Value)> = c["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].clone(), t["to"].clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (Value::Null, json!("new")),
            (json!("new"), json!("in-progress")),
            (json!("in-progress"), json!("completed")),
        ]
    );
    let tok = token(&emu).await;
    let body = query(
        &emu,
        &tok,
        "SELECT CallDisposition, CallDurationInSeconds FROM VoiceCall WHERE VendorCallKey = 'st-1'",
    )
    .await;
    assert_eq!(body["records"][0]["CallDisposition"], "completed");
    assert_eq!(body["records"][0]["CallDurationInSeconds"], 65);
}

#[tokio::test]
async fn telephony_voicecall_is_not_created_over_rest() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, e) = send(
        &emu,
        &tok,
        reqwest::Method::POST,
        &format!("/services/data/{V}/sobjects/VoiceCall"),
        Some(json!({"VendorCallKey": "rest-1"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE");
}
