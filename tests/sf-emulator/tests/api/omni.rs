//! Omni-Channel routing through the Telephony Integration API: omniFlow offers the call to an
//! agent online in Omni-Channel (an AgentWork the org can query), clearRouting withdraws it, and
//! both are checked as strictly as the VoiceCall requests.

use crate::common::*;
use crate::telephony::{call, create, create_body};
use serde_json::{json, Value};
use sf_emulator::Emulator;

async fn omni(emu: &Emulator, id: &str, action: &str, body: Value) -> (u16, Value) {
    call(
        emu,
        reqwest::Method::PATCH,
        &format!("/{id}/{action}"),
        body,
    )
    .await
}

async fn agent_work(emu: &Emulator, voice_call_id: &str) -> Vec<Value> {
    let tok = token(emu).await;
    let body = query(
        emu,
        &tok,
        &format!("SELECT UserId, Status FROM AgentWork WHERE WorkItemId = '{voice_call_id}'"),
    )
    .await;
    body["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn omni_flow_offers_the_call_to_an_online_agent_and_clear_routing_withdraws_it() {
    let emu = start().await;
    let (_, made) = create(&emu, create_body("omni-1")).await;
    let id = made["voiceCallId"].as_str().unwrap().to_string();
    emu.admin().set_omni_online("005000000000001AAA", true);
    let (s, answer) = omni(
        &emu,
        "omni-1",
        "omniFlow",
        json!({"dialedNumber": "+18005550199", "flowDevName": "Inbound_Voice",
               "fallbackQueue": "Support", "flowInputParameters": {"recordId": "0015e00000AbCdEAAV"}}),
    )
    .await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["agent"], "005000000000001AAA");
    let board = emu.admin().omni();
    let routing = &board["routings"][0];
    assert_eq!(routing["state"], "routing");
    assert_eq!(routing["voice_call_id"], id.as_str());
    assert_eq!(
        routing["flow_input_parameters"]["recordId"],
        "0015e00000AbCdEAAV"
    );
    let work = agent_work(&emu, &id).await;
    assert_eq!(work.len(), 1, "{work:?}");
    assert_eq!(work[0]["Status"], "Assigned");
    assert_eq!(work[0]["UserId"], "005000000000001AAA");
    // A second omniFlow for a call being routed is refused.
    let (s, e) = omni(
        &emu,
        &id,
        "omniFlow",
        json!({"dialedNumber": "+18005550199", "flowDevName": "F"}),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("already"));
    let (s, e) = omni(&emu, &id, "clearRouting", json!({})).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(emu.admin().omni()["routings"][0]["state"], "cleared");
    assert_eq!(agent_work(&emu, &id).await[0]["Status"], "Canceled");
    // Nothing left to clear is no error; the agent can no longer accept.
    assert_eq!(omni(&emu, &id, "clearRouting", json!({})).await.0, 200);
    assert!(emu.admin().accept_omni_work(&id).is_err());
}

#[tokio::test]
async fn omni_work_waits_for_an_agent_and_goes_to_the_one_offered_least_recently() {
    let emu = start().await;
    for key in ["omni-a", "omni-b", "omni-c"] {
        create(&emu, create_body(key)).await;
    }
    let body = json!({"dialedNumber": "+18005550199", "fallbackQueue": "Support"});
    let (s, answer) = omni(&emu, "omni-a", "omniFlow", body.clone()).await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["agent"], Value::Null, "nobody is online");
    assert_eq!(answer["queue"], "Support");
    emu.admin().set_omni_online("005000000000001AAA", true);
    emu.admin().set_omni_online("005000000000002AAA", true);
    assert_eq!(
        emu.admin().omni()["routings"][0]["offered_to"],
        "005000000000001AAA"
    );
    // Agent 1 is busy with omni-a: omni-b goes to agent 2; omni-c waits.
    assert_eq!(
        omni(&emu, "omni-b", "omniFlow", body.clone()).await.1["agent"],
        "005000000000002AAA"
    );
    assert_eq!(
        omni(&emu, "omni-c", "omniFlow", body.clone()).await.1["agent"],
        Value::Null
    );
    assert_eq!(
        emu.admin().accept_omni_work("omni-a").unwrap(),
        "005000000000001AAA"
    );
    // Accepting ends the routing; the agent's next offer comes when an agent goes online again.
    emu.admin().set_omni_online("005000000000001AAA", true);
    assert_eq!(
        emu.admin().omni()["routings"][2]["offered_to"],
        "005000000000001AAA"
    );
}

#[tokio::test]
async fn omni_requests_are_checked_and_errors_are_in_the_documented_shape() {
    let emu = start().await;
    create(&emu, create_body("omni-e")).await;
    let cases = [
        (json!({"flowDevName": "F"}), "dialedNumber is required"),
        (
            json!({"dialedNumber": "+1800", "flowDevName": 7}),
            "flowDevName",
        ),
        (
            json!({"dialedNumber": "+1800"}),
            "flowDevName or fallbackQueue",
        ),
        (
            json!({"dialedNumber": "+1800", "flowDevName": "F", "agent": "x"}),
            "agent",
        ),
        (
            json!({"dialedNumber": "+1800", "flowDevName": "F", "flowInputParameters": [1]}),
            "flowInputParameters",
        ),
    ];
    for (body, says) in cases {
        let (s, e) = omni(&emu, "omni-e", "omniFlow", body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        let message = e["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{body}: {e}");
    }
    let (s, e) = omni(
        &emu,
        "no-such-call",
        "omniFlow",
        json!({"dialedNumber": "+1800", "flowDevName": "F"}),
    )
    .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["errors"][0]["errorCode"], "NOT_FOUND");
    assert_eq!(
        omni(&emu, "no-such-call", "clearRouting", json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        omni(&emu, "omni-e", "clearRouting", json!({"x": 1}))
            .await
            .0,
        400
    );
    // The JWT is checked as for every telephony request.
    let r = client()
        .patch(format!(
            "{}/telephony/v1/voiceCalls/omni-e/clearRouting",
            emu.login_url()
        ))
        .header("Telephony-Provider-Name", "Natterbox")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["errorCode"], "INVALID_AUTH_HEADER");
    assert!(emu.admin().omni()["routings"]
        .as_array()
        .unwrap()
        .is_empty());
}
