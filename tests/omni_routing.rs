//! Issue 13: Omni-Channel routing through the real module in the host shim, the real sidecar and
//! the org emulator. A call at the dialplan's routing point (`sf_omni_route`) gets its VoiceCall
//! and an omniFlow with the lookup's record; Salesforce offers it to an agent; that agent's
//! `accept_routed` (and only that agent's) bridges the parked call to their extension. A call
//! nobody accepts goes to the dialplan's fallback (`sf_omni_fallback`) and its routing is
//! cleared; so is a call whose caller hangs up while parked.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::product::{
    connect_agent, next_json, poll, Agent, AgentSocket, Product, ProductOptions,
};

const GRACE_TOKEN: &str = "grace-console-token";
const ALAN_TOKEN: &str = "alan-console-token";
const WAIT: Duration = Duration::from_secs(15);

struct Console {
    socket: AgentSocket,
    unread: Vec<Value>,
}

fn console(p: &Product, token: &str) -> Console {
    let mut socket = connect_agent(p.sidecar.agent, token).expect("the console connects");
    let hello = next_json(&mut socket, Duration::from_secs(5)).expect("hello");
    assert_eq!(hello["type"], "hello");
    Console {
        socket,
        unread: Vec::new(),
    }
}

/// Sends a command and returns its `result`.
fn command(console: &mut Console, frame: Value) -> Value {
    let id = frame["id"].clone();
    console
        .socket
        .send(tungstenite::Message::text(frame.to_string()))
        .unwrap();
    if let Some(i) = console
        .unread
        .iter()
        .position(|f| f["type"] == "result" && f["id"] == id)
    {
        return console.unread.remove(i);
    }
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match next_json(&mut console.socket, deadline - Instant::now()) {
            Some(f) if f["type"] == "result" && f["id"] == id => return f,
            Some(f) => console.unread.push(f),
            None => break,
        }
    }
    panic!("no result for {id}; saw {:?}", console.unread);
}

fn accept(console: &mut Console, id: &str, call_uuid: &str) -> Value {
    command(
        console,
        json!({"type": "accept_routed", "id": id, "call_uuid": call_uuid}),
    )
}

fn users() -> (String, String) {
    let emulator = sf_emulator::Emulator::start_background(Default::default()).unwrap();
    let users = emulator.admin().records("User");
    let grace = users
        .iter()
        .find(|u| u["Username"] == "grace.hopper@acme.example")
        .and_then(|u| u["Id"].as_str().map(str::to_string))
        .unwrap();
    let other = users
        .iter()
        .filter_map(|u| u["Id"].as_str())
        .find(|id| *id != grace)
        .unwrap()
        .to_string();
    (grace, other)
}

fn start() -> (Product, String, String) {
    let (grace, alan) = users();
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sf-emulator/fixtures/test-jwt-private-key.pem"
    );
    let p = Product::start(ProductOptions {
        agents: vec![
            Agent {
                user_id: grace.clone(),
                extension: "1001".into(),
                token: GRACE_TOKEN.into(),
            },
            Agent {
                user_id: alan.clone(),
                extension: "1002".into(),
                token: ALAN_TOKEN.into(),
            },
        ],
        org_extra: format!(
            r#"
      <call-log enabled="true" directions="inbound,outbound" record="voicecall"/>
      <click-to-dial context="agents" caller-id-number="+14155550000" caller-id-name="Acme Support"/>
      <service-cloud-voice scrt-url="{{login_url}}" org-id="{{org_id}}" call-center="NatterboxCC"
        provider="Natterbox" private-key-file="{key}">
        <omni-channel flow="Inbound_Voice" fallback-queue="Support" wait-seconds="30"/>
      </service-cloud-voice>"#
        ),
        ..ProductOptions::default()
    });
    (p, grace, alan)
}

/// The emulator's routing of a call, once it has one that satisfies `ready`.
fn routing(p: &Product, call_uuid: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    poll(WAIT, what, || {
        p.emulator.admin().omni()["routings"]
            .as_array()
            .and_then(|list| {
                list.iter()
                    .find(|r| r["vendor_call_key"] == call_uuid && ready(r))
                    .cloned()
            })
    })
}

/// Parks a new call from Ada Lovelace's number at the routing point.
fn route(p: &mut Product, call_uuid: &str) {
    let vars = p.lookup(call_uuid, "+14155550123");
    assert!(vars.contains_key("sf_record_id"), "{vars:?}");
    let reply = p.shim.ok(&format!("app {call_uuid} sf_omni_route"));
    assert!(
        reply.text().contains("app_status SUCCESS"),
        "{:?}",
        reply.lines
    );
    let vars = p.shim.vars(call_uuid);
    assert_eq!(
        vars.get("sf_omni_status").map(String::as_str),
        Some("routing")
    );
    assert_eq!(
        vars.get("playback_timeout_sec").map(String::as_str),
        Some("30")
    );
}

/// The FreeSWITCH commands the module ran: (command, argument).
fn switch_commands(p: &mut Product) -> Vec<(String, String)> {
    p.shim.ok("wait_events");
    p.shim
        .events
        .iter()
        .filter(|e| e.name == "API" && e.header("API-Command") != Some("sf"))
        .map(|e| {
            (
                e.header("API-Command").unwrap_or_default().to_string(),
                e.header("API-Command-Argument")
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn error_reason(result: &Value) -> &str {
    assert_eq!(result["ok"], false, "{result}");
    result["error"]["reason"].as_str().unwrap_or_default()
}

#[test]
fn the_agent_salesforce_offers_the_call_to_takes_it_and_no_other_agent_can() {
    let (mut p, grace, _alan) = start();
    let ada = p.record_id("Contact", "LastName", "Lovelace");
    p.emulator.admin().set_omni_online(&grace, true);
    let mut grace_console = console(&p, GRACE_TOKEN);
    let mut alan_console = console(&p, ALAN_TOKEN);

    route(&mut p, "om-1");
    let r = routing(&p, "om-1", "the call offered to grace", |r| {
        r["offered_to"].is_string()
    });
    assert_eq!(r["offered_to"], grace.as_str());
    assert_eq!(r["flow"], "Inbound_Voice");
    assert_eq!(r["fallback_queue"], "Support");
    assert_eq!(r["dialed_number"], "2000");
    assert_eq!(r["flow_input_parameters"], json!({"recordId": ada}));
    // The VoiceCall was created at the routing point, before any answer.
    let calls = p.emulator.admin().voicecalls();
    let vc = calls.iter().find(|c| c["VendorCallKey"] == "om-1").unwrap();
    assert_eq!(vc["fields"]["CallDisposition"], "new");
    assert_eq!(vc["fields"]["CallType"], "Inbound");

    // Alan was not offered the call: refused, nothing runs on the switch.
    let refused = accept(&mut alan_console, "a1", "om-1");
    assert_eq!(error_reason(&refused), "not_your_call");
    assert!(!switch_commands(&mut p)
        .iter()
        .any(|(c, _)| c == "uuid_transfer"));

    // Grace accepts in the Omni widget; the voice client calls the connector's acceptCall.
    p.emulator.admin().accept_omni_work("om-1").unwrap();
    let done = accept(&mut grace_console, "g1", "om-1");
    assert_eq!(done["ok"], true, "{done}");
    let commands = switch_commands(&mut p);
    let bridge: Vec<(String, String)> = commands
        .into_iter()
        .filter(|(_, arg)| arg.starts_with("om-1 "))
        .collect();
    let expected: Vec<(String, String)> = [
        ("uuid_setvar", format!("om-1 sf_agent_user_id {grace}")),
        ("uuid_setvar", "om-1 sf_agent_extension 1001".to_string()),
        ("uuid_setvar", "om-1 playback_timeout_sec".to_string()),
        ("uuid_transfer", "om-1 1001 XML agents".to_string()),
    ]
    .into_iter()
    .map(|(c, a)| (c.to_string(), a))
    .collect();
    assert_eq!(bridge, expected);
    let vars = p.shim.vars("om-1");
    assert_eq!(
        vars.get("sf_agent_extension").map(String::as_str),
        Some("1001")
    );
    assert!(!vars.contains_key("playback_timeout_sec"), "{vars:?}");
    // The call left the routing point: a second accept finds nothing parked.
    let again = accept(&mut grace_console, "g2", "om-1");
    assert_eq!(error_reason(&again), "switch_refused", "{again}");

    // The agent's phone answers: the call is grace's, her console follows it as any call.
    p.shim.ok("answer om-1");
    let answered = poll(WAIT, "grace's call frame", || loop {
        if let Some(i) = grace_console.unread.iter().position(|f| {
            f["type"] == "call" && f["call_uuid"] == "om-1" && f["state"] == "answered"
        }) {
            return Some(grace_console.unread.remove(i));
        }
        match next_json(&mut grace_console.socket, Duration::from_millis(200)) {
            Some(f) => grace_console.unread.push(f),
            None => return None,
        }
    });
    assert_eq!(answered["agent_extension"], "1001", "{answered}");
    // The bridged call ends normally: its VoiceCall completes, its routing is never cleared.
    p.shim.ok("hangup om-1 NORMAL_CLEARING");
    poll(WAIT, "the VoiceCall completed", || {
        p.emulator
            .admin()
            .voicecalls()
            .into_iter()
            .find(|c| c["VendorCallKey"] == "om-1" && c["fields"]["CallDisposition"] == "completed")
    });
    assert_eq!(p.emulator.admin().endpoint_count("telephony_omni"), 1);
    assert_eq!(
        routing(&p, "om-1", "the routing", |_| true)["state"],
        "accepted"
    );
}

#[test]
fn a_call_nobody_accepts_goes_to_the_fallback_and_its_routing_is_cleared() {
    let (mut p, grace, _alan) = start();
    p.emulator.admin().set_omni_online(&grace, true);
    let mut grace_console = console(&p, GRACE_TOKEN);
    route(&mut p, "om-2");
    routing(&p, "om-2", "the call offered", |r| {
        r["offered_to"].is_string()
    });
    // The hold music ended (playback_timeout_sec): the dialplan's next step.
    let reply = p.shim.ok("app om-2 sf_omni_fallback");
    assert!(
        reply.text().contains("app_status SUCCESS"),
        "{:?}",
        reply.lines
    );
    let vars = p.shim.vars("om-2");
    assert_eq!(
        vars.get("sf_omni_status").map(String::as_str),
        Some("timeout")
    );
    assert!(!vars.contains_key("playback_timeout_sec"), "{vars:?}");
    routing(&p, "om-2", "the routing cleared", |r| {
        r["state"] == "cleared"
    });
    // The offer is withdrawn in Salesforce: a late accept is refused before the switch.
    let late = accept(&mut grace_console, "g1", "om-2");
    assert_eq!(error_reason(&late), "not_your_call");
    assert!(!switch_commands(&mut p)
        .iter()
        .any(|(c, _)| c == "uuid_transfer"));
    p.shim.ok("hangup om-2 NORMAL_CLEARING");
    poll(WAIT, "the VoiceCall completed", || {
        p.emulator
            .admin()
            .voicecalls()
            .into_iter()
            .find(|c| c["VendorCallKey"] == "om-2" && c["fields"]["CallDisposition"] == "completed")
    });
    // Cleared once: the call log's end adds no second clearRouting.
    assert_eq!(p.emulator.admin().endpoint_count("telephony_omni"), 2);
}

#[test]
fn a_caller_who_hangs_up_while_parked_has_the_routing_cleared() {
    let (mut p, _grace, _alan) = start();
    // Nobody online: the work waits in Salesforce's queue.
    route(&mut p, "om-3");
    routing(&p, "om-3", "the routing", |r| r["state"] == "routing");
    p.shim.ok("hangup om-3 ORIGINATOR_CANCEL");
    let r = routing(&p, "om-3", "the routing cleared", |r| {
        r["state"] == "cleared"
    });
    assert_eq!(r["offered_to"], Value::Null);
    poll(WAIT, "the VoiceCall completed", || {
        p.emulator
            .admin()
            .voicecalls()
            .into_iter()
            .find(|c| c["VendorCallKey"] == "om-3" && c["fields"]["CallDisposition"] == "completed")
    });
    assert_eq!(p.emulator.admin().endpoint_count("telephony_omni"), 2);
}
