//! Issue 12: call control, presence and wrap-up through the real sidecar and the real module in
//! the host shim (which records every FreeSWITCH API command the module runs and answers as
//! FreeSWITCH would), against the org emulator. The protocol is docs/agent-protocol.md.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::product::{
    connect_agent, next_json, poll, Agent, AgentSocket, Product, ProductOptions,
};

const GRACE_TOKEN: &str = "grace-console-token";
const ALAN_TOKEN: &str = "alan-console-token";

fn user_id(p: &Product, username: &str) -> String {
    p.emulator
        .admin()
        .records("User")
        .into_iter()
        .find(|u| u["Username"] == username)
        .and_then(|u| u["Id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no user {username}"))
}

/// An agent console: the socket, and frames read but not yet looked for (a command's `call`
/// frames may come before or after its `result`).
struct Console {
    socket: AgentSocket,
    unread: Vec<Value>,
}

impl Console {
    fn send(&mut self, text: &str) {
        self.socket
            .send(tungstenite::Message::text(text.to_string()))
            .unwrap();
    }
}

/// The first frame (read before or arriving within 5 s) that matches.
fn expect_frame(console: &mut Console, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    if let Some(i) = console.unread.iter().position(&matches) {
        return console.unread.remove(i);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match next_json(&mut console.socket, deadline - Instant::now()) {
            Some(frame) if matches(&frame) => return frame,
            Some(frame) => console.unread.push(frame),
            None => break,
        }
    }
    panic!("no {what} frame; saw {:?}", console.unread);
}

/// Sends a command and returns its `result`.
fn command(console: &mut Console, frame: Value) -> Value {
    let id = frame["id"].clone();
    console.send(&frame.to_string());
    expect_frame(console, "result", |f| {
        f["type"] == "result" && f["id"] == id
    })
}

fn call_frame(console: &mut Console, call_uuid: &str, state: &str) -> Value {
    expect_frame(console, &format!("{call_uuid} {state}"), |f| {
        f["type"] == "call" && f["call_uuid"] == call_uuid && f["state"] == state
    })
}

/// The FreeSWITCH API commands the module has run so far: (command, argument).
fn switch_commands(p: &mut Product) -> Vec<(String, String)> {
    p.shim.ok("wait_events");
    p.shim
        .events
        .iter()
        .filter(|e| e.name == "API")
        .filter(|e| e.header("API-Command") != Some("sf"))
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

fn start() -> (Product, String, String) {
    let users = {
        let emulator = sf_emulator::Emulator::start_background(Default::default()).unwrap();
        let users = emulator.admin().records("User");
        let id = |name: &str| {
            users
                .iter()
                .find(|u| u["Username"] == name)
                .and_then(|u| u["Id"].as_str().map(str::to_string))
                .unwrap()
        };
        let other = users
            .iter()
            .find(|u| u["Username"] != "grace.hopper@acme.example")
            .and_then(|u| u["Username"].as_str().map(str::to_string))
            .unwrap();
        (id("grace.hopper@acme.example"), id(&other))
    };
    let p = Product::start(ProductOptions {
        agents: vec![
            Agent {
                user_id: users.0.clone(),
                extension: "1001".into(),
                token: GRACE_TOKEN.into(),
            },
            Agent {
                user_id: users.1.clone(),
                extension: "1002".into(),
                token: ALAN_TOKEN.into(),
            },
        ],
        org_extra: r#"
      <call-log enabled="true" directions="inbound,outbound"/>
      <click-to-dial context="agents" caller-id-number="+14155550000" caller-id-name="Acme Support"/>"#
            .into(),
        ..ProductOptions::default()
    });
    assert_eq!(user_id(&p, "grace.hopper@acme.example"), users.0);
    (p, users.0, users.1)
}

fn console(p: &Product, token: &str) -> Console {
    let mut socket = connect_agent(p.sidecar.agent, token).expect("the console connects");
    let hello = next_json(&mut socket, Duration::from_secs(5)).expect("hello");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], 1);
    let presence = next_json(&mut socket, Duration::from_secs(5)).expect("presence");
    assert_eq!(presence["type"], "presence", "{presence}");
    Console {
        socket,
        unread: Vec::new(),
    }
}

#[test]
fn each_command_runs_the_right_freeswitch_command_on_the_agents_own_call_only() {
    let (mut p, _grace, _alan) = start();
    let mut grace = console(&p, GRACE_TOKEN);
    let mut alan = console(&p, ALAN_TOKEN);
    let ada = p.record_id("Contact", "LastName", "Lovelace");

    // An inbound call for extension 1001: looked up, popped, ringing, then bridged to the
    // agent's phone (leg in-1-b).
    p.shim.ok(
        "call in-1 caller_id_number=+14155550123 destination_number=2000 sf_agent_extension=1001",
    );
    p.shim.ok("app in-1 sf_lookup");
    p.shim.ok("app in-1 sf_screen_pop");
    let pop = expect_frame(&mut grace, "screen_pop", |f| f["type"] == "screen_pop");
    assert_eq!(pop["call_uuid"], "in-1");
    p.shim
        .ok("call in-1-b direction=outbound destination_number=1001");
    p.shim.ok("answer in-1-b");
    p.shim.ok("bridge in-1 in-1-b");
    let answered = call_frame(&mut grace, "in-1", "answered");
    assert_eq!(answered["direction"], "inbound");
    assert_eq!(answered["other_party"], "+14155550123");
    assert_eq!(answered["record_id"], ada.as_str());
    assert_eq!(answered["muted"], false);

    // Another agent cannot touch it, and FreeSWITCH hears nothing of it.
    let refused = command(
        &mut alan,
        json!({"type":"hold","id":"a1","call_uuid":"in-1"}),
    );
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["code"], 403);
    assert_eq!(refused["error"]["reason"], "not_your_call");
    let refused = command(
        &mut alan,
        json!({"type":"transfer","id":"a2","call_uuid":"in-1","to":"1002","mode":"blind"}),
    );
    assert_eq!(refused["error"]["code"], 403);
    assert!(
        switch_commands(&mut p).is_empty(),
        "{:?}",
        switch_commands(&mut p)
    );

    // Bad input is a clear error.
    let bad = command(
        &mut grace,
        json!({"type":"transfer","id":"g0","call_uuid":"in-1","to":"sofia/gateway/evil/1","mode":"blind"}),
    );
    assert_eq!(bad["error"]["code"], 400);
    assert!(
        bad["error"]["message"].as_str().unwrap().starts_with("to "),
        "{bad}"
    );
    let bad = command(&mut grace, json!({"type":"hold","id":"g00"}));
    assert_eq!(bad["error"]["message"], "call_uuid is missing");
    let gone = command(
        &mut grace,
        json!({"type":"hold","id":"g01","call_uuid":"no-such-call"}),
    );
    assert_eq!(gone["error"]["code"], 404);
    grace.send("not json");
    let garbage = expect_frame(&mut grace, "result", |f| {
        f["type"] == "result" && f["id"].is_null()
    });
    assert_eq!(garbage["error"]["code"], 400);
    let not_held = command(
        &mut grace,
        json!({"type":"resume","id":"g02","call_uuid":"in-1"}),
    );
    assert_eq!(not_held["error"]["code"], 409);
    assert!(switch_commands(&mut p).is_empty());

    // Hold and resume act on the agent's leg (the other party hears the hold music).
    let ok = command(
        &mut grace,
        json!({"type":"hold","id":"g1","call_uuid":"in-1"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    call_frame(&mut grace, "in-1", "held");
    let ok = command(
        &mut grace,
        json!({"type":"resume","id":"g2","call_uuid":"in-1"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    call_frame(&mut grace, "in-1", "answered");
    let ok = command(
        &mut grace,
        json!({"type":"mute","id":"g3","call_uuid":"in-1"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let muted = expect_frame(&mut grace, "muted", |f| {
        f["type"] == "call" && f["muted"] == true
    });
    assert_eq!(muted["call_uuid"], "in-1");
    let ok = command(
        &mut grace,
        json!({"type":"unmute","id":"g4","call_uuid":"in-1"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    expect_frame(&mut grace, "unmuted", |f| {
        f["type"] == "call" && f["muted"] == false
    });
    let ok = command(
        &mut grace,
        json!({"type":"transfer","id":"g5","call_uuid":"in-1","to":"1002","mode":"blind"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(
        switch_commands(&mut p),
        vec![
            ("uuid_hold".to_string(), "in-1-b".to_string()),
            ("uuid_hold".into(), "off in-1-b".into()),
            ("uuid_audio".into(), "in-1-b start read mute 1".into()),
            ("uuid_audio".into(), "in-1-b stop".into()),
            (
                "uuid_transfer".into(),
                "in-1-b -bleg 1002 XML agents".into()
            ),
        ]
    );
    // The agent's leg ends as FreeSWITCH ends it after the transfer.
    p.shim.ok("hangup in-1-b");
    let transferred = call_frame(&mut grace, "in-1", "transferred");
    assert_eq!(transferred["transferred_to"], "1002");
    let over = command(
        &mut grace,
        json!({"type":"hold","id":"g6","call_uuid":"in-1"}),
    );
    assert_eq!(over["error"]["code"], 404);

    // Click-to-dial: the agent's phone first, then the number, with the org's caller id.
    let dialled = command(
        &mut grace,
        json!({"type":"dial","id":"g7","number":"+1 (415) 555-0100","record_id":ada}),
    );
    assert_eq!(dialled["ok"], true, "{dialled}");
    let call = dialled["call_uuid"].as_str().unwrap().to_string();
    let ringing = call_frame(&mut grace, &call, "ringing");
    assert_eq!(ringing["direction"], "outbound");
    assert_eq!(ringing["other_party"], "+14155550100");
    let commands = switch_commands(&mut p);
    let originate = &commands[5..];
    assert_eq!(originate[0].0, "originate", "{commands:?}");
    let args = &originate[0].1;
    assert!(
        args.starts_with(&format!("{{origination_uuid={call},")),
        "{args}"
    );
    assert!(
        args.ends_with("}user/1001 +14155550100 XML agents"),
        "{args}"
    );
    assert!(
        args.contains("effective_caller_id_number=+14155550000"),
        "{args}"
    );
    assert!(args.contains(&format!("sf_record_id={ada}")), "{args}");
    assert_eq!(originate[1].0, "bgapi");
    p.shim.ok(&format!("answer {call}"));
    call_frame(&mut grace, &call, "answered");
    // Not Alan's to hang up.
    let refused = command(
        &mut alan,
        json!({"type":"hangup","id":"a3","call_uuid":call}),
    );
    assert_eq!(refused["error"]["code"], 403);
    let ok = command(
        &mut grace,
        json!({"type":"hangup","id":"g8","call_uuid":call}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let ended = call_frame(&mut grace, &call, "ended");
    assert_eq!(ended["cause"], "NORMAL_CLEARING");
    assert_eq!(
        switch_commands(&mut p).last().unwrap(),
        &("uuid_kill".to_string(), call.clone())
    );

    // The dialled call is an outbound Task on the record it was dialled from; the wrap-up
    // lands on it.
    let task = poll(Duration::from_secs(20), "the outbound Task", || {
        p.tasks_for(&call).into_iter().next()
    });
    assert_eq!(task["CallType"], "Outbound");
    assert_eq!(task["WhoId"], ada.as_str());
    let ok = command(
        &mut grace,
        json!({"type":"wrap_up","id":"g9","call_uuid":call,"disposition":"Left voicemail","notes":"Call back Tuesday"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let refused = command(
        &mut alan,
        json!({"type":"wrap_up","id":"a4","call_uuid":call,"disposition":"Mine now"}),
    );
    assert_eq!(refused["ok"], false);
    let task = poll(Duration::from_secs(20), "the wrap-up on the Task", || {
        p.tasks_for(&call)
            .into_iter()
            .find(|t| t["CallDisposition"] == "Left voicemail")
    });
    let description = task["Description"].as_str().unwrap();
    assert!(description.contains("Call back Tuesday"), "{description}");
    assert!(
        description.contains(&format!("Call UUID: {call}")),
        "{description}"
    );
    assert_eq!(p.tasks_for(&call).len(), 1);

    // Every command is in the sidecar's log, the token never.
    let log = p.sidecar.log();
    assert!(log.contains("agent command refused"), "{log}");
    assert!(log.contains("not_your_call"));
    assert!(!log.contains(GRACE_TOKEN) && !log.contains(ALAN_TOKEN));
    assert!(
        !log.contains("Call back Tuesday"),
        "notes stay out of the log"
    );
}

#[test]
fn presence_set_from_the_console_reaches_the_dialplan_and_survives_a_restart() {
    let (mut p, grace_id, _alan) = start();
    let mut grace = console(&p, GRACE_TOKEN);
    let mut second_tab = console(&p, GRACE_TOKEN);
    assert_eq!(p.shim.api("presence 1001").trim(), "Offline");

    let ok = command(
        &mut grace,
        json!({"type":"set_presence","id":"p1","state":"Away"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    for tab in [&mut grace, &mut second_tab] {
        let frame = expect_frame(tab, "presence", |f| {
            f["type"] == "presence" && f["state"] == "Away"
        });
        assert_eq!(frame["user_id"], grace_id.as_str());
    }
    poll(Duration::from_secs(5), "sf presence 1001 = Away", || {
        (p.shim.api("presence 1001").trim() == "Away").then_some(())
    });
    assert_eq!(p.shim.api(&format!("presence {grace_id}")).trim(), "Away");
    // The dialplan's way: a variable a condition can route on.
    p.shim.ok("call q-1 caller_id_number=+14155550123");
    p.shim.ok("app q-1 sf_presence 1001");
    assert_eq!(p.shim.vars("q-1")["sf_agent_presence"], "Away");
    assert!(p.shim.api("presence 10;01").starts_with("-ERR"));
    let bad = command(
        &mut grace,
        json!({"type":"set_presence","id":"p2","state":"Sleeping"}),
    );
    assert_eq!(bad["error"]["code"], 400);

    // Kept across a sidecar restart, and given to the module again when it reconnects.
    drop(grace);
    drop(second_tab);
    p.sidecar.stop();
    p.sidecar.restart();
    let mut socket = connect_agent(p.sidecar.agent, GRACE_TOKEN).expect("reconnects");
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).unwrap()["type"],
        "hello"
    );
    let presence = next_json(&mut socket, Duration::from_secs(5)).unwrap();
    assert_eq!(presence["state"], "Away", "{presence}");
    let mut back = Console {
        socket,
        unread: Vec::new(),
    };
    let ok = command(
        &mut back,
        json!({"type":"set_presence","id":"p3","state":"Available"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    poll(
        Duration::from_secs(10),
        "sf presence 1001 = Available",
        || (p.shim.api("presence 1001").trim() == "Available").then_some(()),
    );
}

/// A click-to-dial of Grace's, answered and bridged to the customer's leg `customer`.
fn answered_dial(p: &mut Product, grace: &mut Console, id: &str, customer: &str) -> String {
    let dialled = command(grace, json!({"type":"dial","id":id,"number":"3001"}));
    assert_eq!(dialled["ok"], true, "{dialled}");
    let call = dialled["call_uuid"].as_str().unwrap().to_string();
    p.shim.ok(&format!("answer {call}"));
    p.shim.ok(&format!(
        "call {customer} direction=outbound destination_number=3001"
    ));
    p.shim.ok(&format!("answer {customer}"));
    p.shim.ok(&format!("bridge {call} {customer}"));
    call_frame(grace, &call, "answered");
    call
}

/// The FreeSWITCH commands run since `before` of them.
fn commands_since(p: &mut Product, before: usize) -> Vec<(String, String)> {
    switch_commands(p).split_off(before)
}

#[test]
fn warm_transfer_consults_then_completes_or_is_cancelled_and_three_way_survives_the_agent() {
    let (mut p, _grace, _alan) = start();
    let mut grace = console(&p, GRACE_TOKEN);
    let mut alan = console(&p, ALAN_TOKEN);

    // Warm transfer, cancelled from the console: att_xfer on the agent's leg, then its cancel
    // key received on that leg.
    let call = answered_dial(&mut p, &mut grace, "w1", "cust-1");
    let before = switch_commands(&mut p).len();
    let cancel = command(
        &mut grace,
        json!({"type":"cancel_transfer","id":"w2","call_uuid":call}),
    );
    assert_eq!(cancel["error"]["code"], 502, "{cancel}");
    assert!(
        cancel["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no warm transfer"),
        "{cancel}"
    );
    let ok = command(
        &mut grace,
        json!({"type":"transfer","id":"w3","call_uuid":call,"to":"1002","mode":"warm"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let refused = command(
        &mut alan,
        json!({"type":"cancel_transfer","id":"a1","call_uuid":call}),
    );
    assert_eq!(refused["error"]["code"], 403);
    let ok = command(
        &mut grace,
        json!({"type":"cancel_transfer","id":"w4","call_uuid":call}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(
        commands_since(&mut p, before),
        vec![
            // Who holds the bridge (the agent's leg must be its peer; the shim's always is).
            ("uuid_dump".to_string(), call.clone()),
            (
                "uuid_setvar".to_string(),
                format!("{call} origination_cancel_key #")
            ),
            (
                "uuid_broadcast".into(),
                format!("{call} att_xfer::{{sf_consult_of={call}}}loopback/1002/agents aleg")
            ),
            ("uuid_recv_dtmf".into(), format!("{call} #")),
        ]
    );

    // Warm transfer declined by the target: its consult leg ends unbridged; the console hears
    // the call is a two-party call again.
    let ok = command(
        &mut grace,
        json!({"type":"transfer","id":"w5","call_uuid":call,"to":"1002","mode":"warm"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    p.shim.ok(&format!(
        "call consult-1 direction=outbound destination_number=1002 sf_consult_of={call}"
    ));
    p.shim.ok("hangup consult-1 CALL_REJECTED");
    let back = call_frame(&mut grace, &call, "answered");
    assert!(back.get("transferred_to").is_none(), "{back}");

    // Warm transfer completed, on the same call after the cancel and the decline: the consult
    // leg answers and is bridged to the agent; the agent hangs up: only the agent's leg goes
    // and the call is transferred.
    let before = switch_commands(&mut p).len();
    let ok = command(
        &mut grace,
        json!({"type":"transfer","id":"w6","call_uuid":call,"to":"1002","mode":"warm"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(
        commands_since(&mut p, before)
            .into_iter()
            .map(|(command, _)| command)
            .collect::<Vec<_>>(),
        ["uuid_dump", "uuid_setvar", "uuid_broadcast"]
    );
    p.shim.ok(&format!(
        "call consult-2 direction=outbound destination_number=1002 sf_consult_of={call}"
    ));
    p.shim.ok("answer consult-2");
    p.shim.ok(&format!("bridge {call} consult-2"));
    let before = switch_commands(&mut p).len();
    let ok = command(
        &mut grace,
        json!({"type":"hangup","id":"w7","call_uuid":call}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let done = call_frame(&mut grace, &call, "transferred");
    assert_eq!(done["transferred_to"], "1002");
    let since = commands_since(&mut p, before);
    assert_eq!(since[0], ("uuid_kill".to_string(), call.clone()));
    assert_eq!(since.len(), 1, "{since:?}");

    // Three-way: att_xfer to the target with its conference key queued (the target's leg runs
    // three_way on the agent's leg once it answers); the agent leaving joins the other two.
    let call = answered_dial(&mut p, &mut grace, "c1", "cust-2");
    let refused = command(
        &mut alan,
        json!({"type":"conference","id":"a2","call_uuid":call,"to":"1002"}),
    );
    assert_eq!(refused["error"]["code"], 403);
    let before = switch_commands(&mut p).len();
    let ok = command(
        &mut grace,
        json!({"type":"conference","id":"c2","call_uuid":call,"to":"1002"}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let leg = ok["call_uuid"].as_str().unwrap().to_string();
    assert_eq!(
        commands_since(&mut p, before),
        vec![
            // Who holds the bridge, as before a warm transfer.
            ("uuid_dump".to_string(), call.clone()),
            (
                "uuid_setvar".to_string(),
                format!("{call} origination_cancel_key")
            ),
            (
                "uuid_broadcast".into(),
                format!("{call} att_xfer::{{origination_uuid={leg},sf_conference_of={call}}}loopback/1002/agents aleg")
            ),
            // The conference key goes only once this att_xfer runs on the agent's leg.
            (
                "uuid_getvar".into(),
                format!("{call} current_application_data")
            ),
            ("uuid_recv_dtmf".into(), format!("{call} 0")),
        ]
    );
    let again = command(
        &mut grace,
        json!({"type":"conference","id":"c3","call_uuid":call,"to":"1003"}),
    );
    assert_eq!(again["ok"], false, "{again}");
    // The target answers (its leg runs three_way on the agent's leg in FreeSWITCH).
    p.shim.ok(&format!(
        "call {leg} direction=outbound destination_number=1002 sf_conference_of={call}"
    ));
    p.shim.ok(&format!("answer {leg}"));
    let before = switch_commands(&mut p).len();
    let ok = command(
        &mut grace,
        json!({"type":"hangup","id":"c4","call_uuid":call}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    call_frame(&mut grace, &call, "ended");
    // The module bridges the customer to the new leg itself (att_xfer's hang-up hook, told to
    // do nothing, raced the new leg's end), then only the agent's leg goes.
    assert_eq!(
        commands_since(&mut p, before),
        vec![
            ("uuid_setvar".to_string(), format!("{call} xfer_uuids")),
            ("uuid_bridge".to_string(), format!("cust-2 {leg}")),
            ("uuid_kill".to_string(), call.clone()),
        ]
    );
}
