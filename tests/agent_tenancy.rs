//! Tenant safety on the agent's side: one host (the real sidecar, the real module in the host
//! shim, the org emulator) serves two orgs, acme and globex, each with an agent on extension
//! 1001. Each org's dialplan reads its own agent's presence; an agent never sees, controls, wraps
//! up or dials as the other org's calls, and never receives its pops or presence.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::product::{
    connect_agent, next_json, poll, Agent, AgentSocket, Product, ProductOptions,
};

const ACME_TOKEN: &str = "acme-1001-console-token";
const GLOBEX_TOKEN: &str = "globex-1001-console-token";

struct Console {
    socket: AgentSocket,
    /// Frames read but not yet looked for.
    seen: Vec<Value>,
}

impl Console {
    fn open(p: &Product, token: &str) -> Console {
        let mut socket = connect_agent(p.sidecar.agent, token).expect("the console connects");
        let hello = next_json(&mut socket, Duration::from_secs(5)).expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        let presence = next_json(&mut socket, Duration::from_secs(5)).expect("presence");
        assert_eq!(presence["type"], "presence", "{presence}");
        Console {
            socket,
            seen: Vec::new(),
        }
    }

    /// The first frame (already read, or arriving within 5 s) that matches; every frame read on
    /// the way is kept in `seen`.
    fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&matches) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match next_json(&mut self.socket, deadline - Instant::now()) {
                Some(frame) if matches(&frame) => return frame,
                Some(frame) => self.seen.push(frame),
                None => break,
            }
        }
        panic!("no {what} frame; saw {:?}", self.seen);
    }

    fn command(&mut self, frame: Value) -> Value {
        let id = frame["id"].clone();
        self.socket
            .send(tungstenite::Message::text(frame.to_string()))
            .unwrap();
        self.expect("result", |f| f["type"] == "result" && f["id"] == id)
    }

    /// No frame read so far mentions this call.
    fn saw_nothing_of(&self, call_uuid: &str) {
        let leaked: Vec<&Value> = self
            .seen
            .iter()
            .filter(|f| f["call_uuid"] == call_uuid)
            .collect();
        assert!(leaked.is_empty(), "frames of {call_uuid}: {leaked:?}");
    }
}

/// Two users of the emulator: one agent of each org, both on extension 1001.
fn start() -> (Product, String, String) {
    let emulator = sf_emulator::Emulator::start_background(Default::default()).unwrap();
    let users = emulator.admin().records("User");
    let ids: Vec<String> = users
        .iter()
        .filter_map(|u| u["Id"].as_str().map(str::to_string))
        .take(2)
        .collect();
    drop(emulator);
    let (acme_user, globex_user) = (ids[0].clone(), ids[1].clone());
    let agent = |user_id: &str, token: &str| Agent {
        user_id: user_id.into(),
        extension: "1001".into(),
        token: token.into(),
    };
    let p = Product::start(ProductOptions {
        agents_of_orgs: vec![
            (agent(&acme_user, ACME_TOKEN), "acme".into()),
            (agent(&globex_user, GLOBEX_TOKEN), "globex".into()),
        ],
        org_extra: r#"
      <call-log enabled="true" directions="inbound,outbound"/>
      <click-to-dial context="acme-agents" caller-id-number="+14155550000" caller-id-name="Acme Support"/>"#
            .into(),
        more_orgs: vec![(
            "globex".into(),
            r#"
      <call-log enabled="true" directions="inbound,outbound"/>
      <click-to-dial context="globex-agents" caller-id-number="+442079460000" caller-id-name="Globex Desk"/>"#
                .into(),
        )],
        ..ProductOptions::default()
    });
    (p, acme_user, globex_user)
}

/// FreeSWITCH API commands the module has run (not counting `sf`), as "command argument".
fn switch_commands(p: &mut Product) -> Vec<String> {
    p.shim.ok("wait_events");
    p.shim
        .events
        .iter()
        .filter(|e| e.name == "API" && e.header("API-Command") != Some("sf"))
        .map(|e| {
            format!(
                "{} {}",
                e.header("API-Command").unwrap_or_default(),
                e.header("API-Command-Argument").unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn each_orgs_dialplan_reads_its_own_agent_on_a_shared_extension() {
    let (mut p, acme_user, _globex_user) = start();
    let mut acme = Console::open(&p, ACME_TOKEN);
    let mut globex = Console::open(&p, GLOBEX_TOKEN);

    let ok = acme.command(json!({"type":"set_presence","id":"a1","state":"Away"}));
    assert_eq!(ok["ok"], true, "{ok}");
    let ok = globex.command(json!({"type":"set_presence","id":"g1","state":"Available"}));
    assert_eq!(ok["ok"], true, "{ok}");
    poll(
        Duration::from_secs(5),
        "both orgs' presence in the module",
        || {
            (p.shim.api("presence org=acme agent=1001").trim() == "Away"
                && p.shim.api("presence org=globex agent=1001").trim() == "Available")
                .then_some(())
        },
    );
    // By user id too, and only in the agent's own org.
    assert_eq!(
        p.shim
            .api(&format!("presence org=acme agent={acme_user}"))
            .trim(),
        "Away"
    );
    assert_eq!(
        p.shim
            .api(&format!("presence org=globex agent={acme_user}"))
            .trim(),
        "Offline"
    );
    // No org=: the default org (acme).
    assert_eq!(p.shim.api("presence agent=1001").trim(), "Away");
    assert!(p
        .shim
        .api("presence org=initech agent=1001")
        .starts_with("-ERR"));
    assert!(p.shim.api("presence 1001").starts_with("-ERR"));

    // Calls: the org the dialplan set (`sf_org`) or the org the call's lookup used.
    p.shim
        .ok("call q-acme caller_id_number=+14155550123 destination_number=2000 sf_org=acme");
    p.shim.ok("app q-acme sf_presence agent=1001");
    assert_eq!(p.shim.vars("q-acme")["sf_agent_presence"], "Away");
    p.shim.ok(
        "call q-globex caller_id_number=+14155550123 destination_number=2000 sf_lookup_org=globex",
    );
    p.shim.ok("app q-globex sf_presence agent=1001");
    assert_eq!(p.shim.vars("q-globex")["sf_agent_presence"], "Available");
    // An explicit org= wins over the channel's.
    p.shim.ok("app q-acme sf_presence org=globex agent=1001");
    assert_eq!(p.shim.vars("q-acme")["sf_agent_presence"], "Available");
    // A caller's value after agent= stays the agent: it cannot choose the org.
    p.shim.ok("app q-acme sf_presence agent=1001 org=globex");
    assert!(
        !p.shim.vars("q-acme").contains_key("sf_agent_presence"),
        "{:?}",
        p.shim.vars("q-acme")
    );

    // Neither console was shown the other org's presence: acme's own next change comes after
    // globex's on the sidecar's bus, so anything of globex's would have been read before it.
    let ok = acme.command(json!({"type":"set_presence","id":"a2","state":"Busy"}));
    assert_eq!(ok["ok"], true, "{ok}");
    let own = acme.expect("acme's presence", |f| {
        f["type"] == "presence" && f["state"] == "Busy"
    });
    assert_eq!(own["org"], "acme", "{own}");
    let others: Vec<&Value> = acme
        .seen
        .iter()
        .filter(|f| f["type"] == "presence" && f["state"] != "Away")
        .collect();
    assert!(others.is_empty(), "acme's console saw {others:?}");
    let own = globex.expect("globex's presence", |f| {
        f["type"] == "presence" && f["state"] == "Available"
    });
    assert_eq!(own["org"], "globex", "{own}");
    poll(
        Duration::from_secs(5),
        "acme Busy, globex still Available",
        || {
            (p.shim.api("presence org=acme agent=1001").trim() == "Busy"
                && p.shim.api("presence org=globex agent=1001").trim() == "Available")
                .then_some(())
        },
    );

    // A reconnecting console is shown its own org's presence, not the other's.
    drop(acme);
    let mut socket = connect_agent(p.sidecar.agent, GLOBEX_TOKEN).unwrap();
    let hello = next_json(&mut socket, Duration::from_secs(5)).unwrap();
    assert_eq!(hello["type"], "hello");
    let presence = next_json(&mut socket, Duration::from_secs(5)).unwrap();
    assert_eq!(presence["state"], "Available", "{presence}");
}

#[test]
fn an_agent_never_sees_controls_or_dials_as_another_orgs_call_on_the_same_extension() {
    let (mut p, _acme_user, _globex_user) = start();
    let mut acme = Console::open(&p, ACME_TOKEN);
    let mut globex = Console::open(&p, GLOBEX_TOKEN);

    // Globex's inbound call for its extension 1001, popped and answered.
    p.shim.ok(
        "call g-1 caller_id_number=+14155550123 destination_number=2000 sf_org=globex sf_agent_extension=1001",
    );
    p.shim.ok("app g-1 sf_screen_pop");
    let pop = globex.expect("globex's pop", |f| f["type"] == "screen_pop");
    assert_eq!(pop["call_uuid"], "g-1");
    assert_eq!(pop["org"], "globex");
    p.shim
        .ok("call g-1-b direction=outbound destination_number=1001");
    p.shim.ok("answer g-1-b");
    p.shim.ok("bridge g-1 g-1-b");
    let answered = globex.expect("g-1 answered", |f| {
        f["type"] == "call" && f["call_uuid"] == "g-1" && f["state"] == "answered"
    });
    assert_eq!(answered["org"], "globex");

    // Acme's agent 1001 can do nothing to it, and FreeSWITCH hears nothing.
    let before = switch_commands(&mut p).len();
    for (id, frame) in [
        ("x1", json!({"type":"hold","call_uuid":"g-1"})),
        ("x2", json!({"type":"mute","call_uuid":"g-1"})),
        ("x3", json!({"type":"hangup","call_uuid":"g-1"})),
        (
            "x4",
            json!({"type":"transfer","call_uuid":"g-1","to":"1002","mode":"blind"}),
        ),
        (
            "x5",
            json!({"type":"conference","call_uuid":"g-1","to":"1002"}),
        ),
        (
            "x6",
            json!({"type":"wrap_up","call_uuid":"g-1","disposition":"Sold"}),
        ),
    ] {
        let mut frame = frame;
        frame["id"] = id.into();
        let refused = acme.command(frame.clone());
        assert_eq!(refused["ok"], false, "{frame} → {refused}");
        assert_eq!(refused["error"]["code"], 403, "{frame} → {refused}");
        assert_eq!(refused["error"]["reason"], "not_your_call");
    }
    // Nor dial as globex (its caller id, its context).
    let refused = acme.command(json!({"type":"dial","id":"x7","number":"3001","org":"globex"}));
    assert_eq!(refused["error"]["code"], 403, "{refused}");
    assert_eq!(refused["error"]["reason"], "not_your_org");
    assert_eq!(switch_commands(&mut p).len(), before);

    // Acme's own call: its frames arrive, and none of globex's came before them.
    p.shim.ok(
        "call a-1 caller_id_number=+14155550199 destination_number=2000 sf_org=acme sf_agent_extension=1001",
    );
    p.shim.ok("app a-1 sf_screen_pop");
    let pop = acme.expect("acme's pop", |f| f["type"] == "screen_pop");
    assert_eq!(pop["call_uuid"], "a-1");
    assert_eq!(pop["org"], "acme");
    p.shim
        .ok("call a-1-b direction=outbound destination_number=1001");
    p.shim.ok("answer a-1-b");
    p.shim.ok("bridge a-1 a-1-b");
    acme.expect("a-1 answered", |f| {
        f["type"] == "call" && f["call_uuid"] == "a-1" && f["state"] == "answered"
    });
    acme.saw_nothing_of("g-1");
    let ok = acme.command(json!({"type":"hold","id":"a1","call_uuid":"a-1"}));
    assert_eq!(ok["ok"], true, "{ok}");
    acme.expect("a-1 held", |f| {
        f["call_uuid"] == "a-1" && f["state"] == "held"
    });
    // Globex's agent cannot touch acme's call either, and never saw it.
    let refused = globex.command(json!({"type":"hangup","id":"y1","call_uuid":"a-1"}));
    assert_eq!(refused["error"]["code"], 403, "{refused}");
    globex.saw_nothing_of("a-1");

    // Click-to-dial goes out with the agent's own org's caller id and context.
    let before = switch_commands(&mut p).len();
    let dialled = acme.command(json!({"type":"dial","id":"a2","number":"3001"}));
    assert_eq!(dialled["ok"], true, "{dialled}");
    let dialled = globex.command(json!({"type":"dial","id":"g2","number":"3002","org":"globex"}));
    assert_eq!(dialled["ok"], true, "{dialled}");
    let commands = switch_commands(&mut p).split_off(before);
    let originate = |number: &str| {
        commands
            .iter()
            .find(|c| c.starts_with("originate ") && c.contains(&format!(" {number} XML ")))
            .unwrap_or_else(|| panic!("no originate to {number} in {commands:?}"))
            .clone()
    };
    let acme_dial = originate("3001");
    assert!(
        acme_dial.contains("effective_caller_id_number=+14155550000")
            && acme_dial.ends_with("XML acme-agents"),
        "{acme_dial}"
    );
    let globex_dial = originate("3002");
    assert!(
        globex_dial.contains("effective_caller_id_number=+442079460000")
            && globex_dial.ends_with("XML globex-agents"),
        "{globex_dial}"
    );
}
