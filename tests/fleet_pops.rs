//! Issue 14: screen pops and presence across hosts. Two hosts, each the real sidecar and the real
//! module in the host shim (with its own emulated org "acme"), sharing a real `redis-server` on
//! a free loopback port: a pop made on host A reaches the agent's console on host B once (also
//! across a reconnect within the pop's TTL, never after it), an acknowledgement on one host is
//! honoured on the other, presence set on B is what A's dialplan reads, and Redis killed and
//! restarted leaves local delivery working and the fleet catching up.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fleet::{fleet_xml, RedisServer};
use support::product::{
    connect_agent, next_json, poll, Agent, AgentSocket, Product, ProductOptions,
};

const TOKEN: &str = "fleet-agent-1001-console-token";
const AGENT_USER: &str = "005Em00000000FlAAA";

fn host(redis: &RedisServer, ttl_ms: u64) -> Product {
    Product::start(ProductOptions {
        agents: vec![Agent {
            user_id: AGENT_USER.into(),
            extension: "1001".into(),
            token: TOKEN.into(),
        }],
        org_extra: format!("\n      <screen-pop ttl-ms=\"{ttl_ms}\"/>"),
        config_tail: fleet_xml(redis, &[]),
        ..ProductOptions::default()
    })
}

fn fleet(p: &Product) -> Value {
    p.sidecar.status()["fleet"].clone()
}

fn wait_fleet(p: &Product, what: &str, ready: impl Fn(&Value) -> bool) {
    poll(Duration::from_secs(10), what, || {
        ready(&fleet(p)).then_some(())
    });
}

/// `sf_lookup` then `sf_screen_pop extension=1001` on a new call on this host.
fn pop_on(p: &mut Product, uuid: &str) {
    p.lookup(uuid, "+14155550123");
    p.shim
        .ok(&format!("app {uuid} sf_screen_pop extension=1001"));
    assert_eq!(p.shim.vars(uuid)["sf_screen_pop"], "sent");
}

/// A console of agent 1001 on this host, past its opening `hello` and `presence`; returns the
/// console and the presence it was shown.
fn console(p: &Product) -> (AgentSocket, Value) {
    let mut socket = connect_agent(p.sidecar.agent, TOKEN).expect("agent 1001 connects");
    let hello = next_json(&mut socket, Duration::from_secs(5)).expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    let presence = next_json(&mut socket, Duration::from_secs(5)).expect("presence");
    assert_eq!(presence["type"], "presence", "{presence}");
    (socket, presence)
}

/// The next `screen_pop` frame within `limit` (other frames are passed over).
fn next_pop(socket: &mut AgentSocket, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match next_json(socket, deadline - Instant::now()) {
            Some(frame) if frame["type"] == "screen_pop" => return Some(frame),
            Some(_) => continue,
            None => return None,
        }
    }
    None
}

fn expect_pop(socket: &mut AgentSocket, call_uuid: &str) -> Value {
    let pop = next_pop(socket, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no screen pop; expected {call_uuid}"));
    assert_eq!(pop["call_uuid"], call_uuid, "{pop}");
    pop
}

fn send(socket: &mut AgentSocket, frame: Value) {
    socket
        .send(tungstenite::Message::Text(frame.to_string().into()))
        .expect("send a frame");
}

fn close(mut socket: AgentSocket) {
    let _ = socket.close(None);
    let _ = socket.flush();
}

#[test]
fn a_pop_made_on_host_a_reaches_the_console_on_host_b_once_and_presence_travels_back() {
    const TTL_MS: u64 = 8000;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let mut a = host(&redis, TTL_MS);
    let mut b = host(&redis, TTL_MS);
    wait_fleet(&a, "host A's sidecar connects to redis", |f| {
        f["redis"] == "up"
    });
    wait_fleet(&b, "host B's sidecar connects to redis", |f| {
        f["redis"] == "up"
    });

    // Made on A, shown on B.
    let (mut on_b, _) = console(&b);
    a.lookup("fleet-1", "+14155550123");
    let sent = Instant::now();
    a.shim.ok("app fleet-1 sf_screen_pop extension=1001");
    let pop = expect_pop(&mut on_b, "fleet-1");
    println!(
        "pop across hosts (sf_screen_pop on A -> frame on B's console): {:?}",
        sent.elapsed()
    );
    assert_eq!(pop["org"], "acme");
    assert_eq!(pop["agent_extension"], "1001");
    assert_eq!(
        pop["expires_at_ms"].as_u64().unwrap() - pop["created_at_ms"].as_u64().unwrap(),
        TTL_MS
    );
    // Once: the next pop on that console is the next call's, not fleet-1 again.
    pop_on(&mut a, "fleet-2");
    expect_pop(&mut on_b, "fleet-2");
    assert!(fleet(&a)["pops_published"].as_u64().unwrap() >= 2);

    // Acknowledge fleet-1 and go away; a pop made meanwhile waits for the console's return.
    send(&mut on_b, json!({"ack": "fleet-1"}));
    wait_fleet(&b, "B shares the acknowledgement", |f| {
        f["acks_published"] == 1
    });
    close(on_b);
    pop_on(&mut a, "fleet-3");
    let (mut on_b, _) = console(&b);
    expect_pop(&mut on_b, "fleet-2");
    expect_pop(&mut on_b, "fleet-3");
    pop_on(&mut a, "fleet-4");
    expect_pop(&mut on_b, "fleet-4");

    // Acknowledged on B: a console on A (which made them) is not offered them again; a pop
    // made on B reaches it.
    for uuid in ["fleet-2", "fleet-3", "fleet-4"] {
        send(&mut on_b, json!({ "ack": uuid }));
    }
    wait_fleet(&b, "B shares the acknowledgements", |f| {
        f["acks_published"] == 4
    });
    let (mut on_a, _) = console(&a);
    pop_on(&mut b, "fleet-5");
    expect_pop(&mut on_a, "fleet-5");
    expect_pop(&mut on_b, "fleet-5");

    // Presence set on B is what A's dialplan reads, and what a console on A is shown.
    assert_eq!(a.shim.api("presence agent=1001").trim(), "Offline");
    send(
        &mut on_b,
        json!({"type": "set_presence", "id": "p1", "state": "Away"}),
    );
    poll(
        Duration::from_secs(5),
        "A's sf presence 1001 = Away",
        || (a.shim.api("presence agent=1001").trim() == "Away").then_some(()),
    );
    assert_eq!(
        a.shim.api(&format!("presence agent={AGENT_USER}")).trim(),
        "Away"
    );
    a.shim
        .ok("call q-1 caller_id_number=+14155550199 destination_number=2000");
    a.shim.ok("app q-1 sf_presence agent=1001");
    assert_eq!(a.shim.vars("q-1")["sf_agent_presence"], "Away");
    let (late_on_a, presence) = console(&a);
    assert_eq!(presence["state"], "Away", "{presence}");
    assert!(fleet(&a)["presence_received"].as_u64().unwrap() >= 1);
    close(late_on_a);

    // Not after the TTL: a pop made while no console of the agent is connected anywhere is
    // dropped once its time is up.
    send(&mut on_a, json!({"ack": "fleet-5"}));
    close(on_a);
    close(on_b);
    pop_on(&mut a, "fleet-late");
    let made = Instant::now();
    while made.elapsed() < Duration::from_millis(TTL_MS + 500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut on_b, _) = console(&b);
    pop_on(&mut a, "fleet-6");
    expect_pop(&mut on_b, "fleet-6");
}

#[test]
fn redis_killed_and_restarted_leaves_local_pops_working_and_the_fleet_catches_up() {
    const TTL_MS: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let mut a = host(&redis, TTL_MS);
    let b = host(&redis, TTL_MS);
    wait_fleet(&a, "host A's sidecar connects to redis", |f| {
        f["redis"] == "up"
    });
    wait_fleet(&b, "host B's sidecar connects to redis", |f| {
        f["redis"] == "up"
    });
    let (mut on_a, _) = console(&a);
    let (mut on_b, _) = console(&b);

    redis.kill();
    wait_fleet(&a, "A sees redis down", |f| f["redis"] == "down");
    wait_fleet(&b, "B sees redis down", |f| f["redis"] == "down");
    assert_eq!(
        a.sidecar.metric("natterbox_sidecar_fleet_redis_up"),
        Some(0)
    );

    // Local delivery goes on; the fleet's copy waits.
    pop_on(&mut a, "down-1");
    expect_pop(&mut on_a, "down-1");
    wait_fleet(&a, "A queues the pop for the fleet", |f| f["queued"] == 1);
    send(
        &mut on_b,
        json!({"type": "set_presence", "id": "p1", "state": "Busy"}),
    );
    wait_fleet(&b, "B queues the presence for the fleet", |f| {
        f["queued"] == 1
    });

    redis.restart();
    wait_fleet(&a, "A reconnects", |f| {
        f["redis"] == "up" && f["queued"] == 0
    });
    wait_fleet(&b, "B reconnects", |f| {
        f["redis"] == "up" && f["queued"] == 0
    });
    // The pop made while Redis was down reaches B within its TTL, once.
    expect_pop(&mut on_b, "down-1");
    poll(
        Duration::from_secs(5),
        "A's sf presence 1001 = Busy",
        || (a.shim.api("presence agent=1001").trim() == "Busy").then_some(()),
    );
    pop_on(&mut a, "up-1");
    expect_pop(&mut on_b, "up-1");
    expect_pop(&mut on_a, "up-1");
    assert_eq!(
        a.sidecar.metric("natterbox_sidecar_fleet_redis_up"),
        Some(1)
    );
    assert_eq!(fleet(&a)["dropped"], 0);
}
