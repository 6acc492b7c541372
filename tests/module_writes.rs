//! Record writes (`sf_create`, `sf_update`, `sf_upsert`) from the real module in the host shim
//! against the emulator: the new id back within the deadline, hostile values landing
//! byte-exact, the deadline under injected latency, a 401 refreshed once, the outbox hand-off,
//! and declarations refused at load.

mod support;

use std::time::{Duration, Instant};

use natterbox_common::record_write::WriteOp;
use natterbox_common::wire::Message;
use serde_json::Value;
use sf_emulator::FaultRule;
use support::fixture::{Fixture, Options};
use support::shim::escape_arg;

const WRITES: &str = r#"
      <write name="vip_case" object="Case" op="create">
        <field name="Subject" value="VIP: ${ivr_subject}"/>
        <field name="Description" value="${ivr_note}" type="textarea"/>
        <field name="ContactId" value="${sf_record_id}" type="id"/>
      </write>
      <write name="retitle" object="Contact" op="update" record-id="${sf_record_id}">
        <field name="Title" value="${ivr_title}"/>
      </write>
      <write name="by_ext" object="Contact" op="upsert" external-id-field="External_Id__c" external-id="${ext}">
        <field name="LastName" value="${last}" required="true"/>
      </write>
      <write name="later" object="Contact" op="create" delivery="outbox" key-field="External_Id__c">
        <field name="LastName" value="${last}"/>
      </write>"#;

/// The fixture's config with the writes added to every org, applied with `sf reload`.
fn with_writes(f: &mut Fixture, writes: &str) -> String {
    let xml = f.config_xml(&[], "").replace(
        "<screen-pop ttl-ms=\"30000\"/>",
        &format!("<screen-pop ttl-ms=\"30000\"/>{writes}"),
    );
    assert!(xml.contains("<write "));
    f.write_config(&xml);
    f.shim.ok("reloadxml");
    f.shim.api("reload")
}

fn start() -> Fixture {
    let mut f = Fixture::start(Options::default());
    let reply = with_writes(&mut f, WRITES);
    assert!(reply.starts_with("+OK reloaded"), "{reply}");
    f
}

/// A call with these channel variables (set as an endpoint delivers them, bytes as given).
fn call(f: &mut Fixture, uuid: &str, vars: &[(&str, &str)]) {
    let mut line = format!("call {uuid}");
    for (name, value) in vars {
        line.push_str(&format!(" {name}={}", escape_arg(value)));
    }
    f.shim.ok(&line);
}

fn records(f: &Fixture, object: &str) -> Vec<Value> {
    f.acme().admin().records(object)
}

#[test]
fn a_sync_create_gives_the_new_id_and_hostile_values_land_byte_exact() {
    let mut f = start();
    let subject = "x'); DELETE FROM Case; -- \"quoted\" ${sf_org} %s \\ ünïcødé 🎉";
    let note = "line one\nline two\t\u{1}\u{7f} </field> {\"json\":true}";
    call(
        &mut f,
        "c1",
        &[
            ("ivr_subject", subject),
            ("ivr_note", note),
            ("sf_record_id", "003Em0000000001IAA"),
        ],
    );
    let started = Instant::now();
    f.shim.ok("app c1 sf_create write=vip_case");
    let held = started.elapsed();
    let vars = f.shim.vars("c1");
    assert_eq!(vars["sf_write_status"], "created", "{vars:?}");
    let id = &vars["sf_create_id"];
    assert!(id.starts_with("500") && id.len() == 18, "{id}");
    assert!(held < Duration::from_secs(2), "{held:?}");
    let case = records(&f, "Case")
        .into_iter()
        .find(|r| r["Id"] == id.as_str())
        .expect("the created Case");
    assert_eq!(case["Subject"], format!("VIP: {subject}").as_str());
    assert_eq!(case["Description"], note);
    assert_eq!(case["ContactId"], "003Em0000000001IAA");
}

#[test]
fn update_and_upsert_report_what_salesforce_did() {
    let mut f = start();
    call(
        &mut f,
        "u1",
        &[
            ("sf_record_id", "003Em0000000002IAA"),
            ("ivr_title", "O'Brien & Sons"),
        ],
    );
    f.shim.ok("app u1 sf_update write=retitle");
    let vars = f.shim.vars("u1");
    assert_eq!(vars["sf_write_status"], "updated", "{vars:?}");
    let contact = records(&f, "Contact")
        .into_iter()
        .find(|r| r["Id"] == "003Em0000000002IAA")
        .unwrap();
    assert_eq!(contact["Title"], "O'Brien & Sons");

    // An id that is well-formed but not a record: Salesforce's 404.
    call(
        &mut f,
        "u2",
        &[("sf_record_id", "003Em000000000ZIAQ"), ("ivr_title", "t")],
    );
    f.shim.ok("app u2 sf_update write=retitle");
    let vars = f.shim.vars("u2");
    assert_eq!(vars["sf_write_status"], "not_found", "{vars:?}");
    // A malformed one is refused before Salesforce is asked.
    let updates = f.acme().admin().endpoint_count("sobject_update:Contact");
    call(
        &mut f,
        "u3",
        &[("sf_record_id", "003'); x"), ("ivr_title", "t")],
    );
    f.shim.ok("app u3 sf_update write=retitle");
    assert_eq!(f.shim.vars("u3")["sf_write_status"], "error");
    assert_eq!(
        f.acme().admin().endpoint_count("sobject_update:Contact"),
        updates
    );

    // Upsert: created, then the same External ID updated, then several matches.
    let ext = "EXT/../?#1 x";
    call(&mut f, "p1", &[("ext", ext), ("last", "First")]);
    f.shim.ok("app p1 sf_upsert write=by_ext");
    let vars = f.shim.vars("p1");
    assert_eq!(vars["sf_write_status"], "created", "{vars:?}");
    let id = vars["sf_create_id"].clone();
    call(&mut f, "p2", &[("ext", ext), ("last", "Second")]);
    f.shim.ok("app p2 sf_upsert write=by_ext");
    let vars = f.shim.vars("p2");
    assert_eq!(vars["sf_write_status"], "updated", "{vars:?}");
    assert_eq!(vars["sf_create_id"], id);
    let contact = records(&f, "Contact")
        .into_iter()
        .find(|r| r["Id"] == id.as_str())
        .unwrap();
    assert_eq!(contact["External_Id__c"], ext);
    assert_eq!(contact["LastName"], "Second");
    call(&mut f, "p3", &[("ext", "DUP-1"), ("last", "x")]);
    f.shim.ok("app p3 sf_upsert write=by_ext");
    assert_eq!(f.shim.vars("p3")["sf_write_status"], "multiple");
    // A required value missing: refused, nothing sent.
    call(&mut f, "p4", &[("ext", "E-9")]);
    f.shim.ok("app p4 sf_upsert write=by_ext");
    assert_eq!(f.shim.vars("p4")["sf_write_status"], "error");
    // The wrong application for the write.
    f.shim.ok("app p4 sf_create write=by_ext");
    assert_eq!(f.shim.vars("p4")["sf_write_status"], "error");
}

#[test]
fn a_slow_salesforce_never_holds_the_call_past_its_deadline() {
    let mut f = start();
    // Described first, so the call's deadline covers only the write.
    call(&mut f, "warm", &[("ext", "W-1"), ("last", "Warm")]);
    f.shim.ok("app warm sf_upsert write=by_ext");
    assert_eq!(f.shim.vars("warm")["sf_write_status"], "created");
    f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 3000,
        ..FaultRule::default()
    });
    call(&mut f, "slow", &[("ext", "S-1"), ("last", "Slow")]);
    let started = Instant::now();
    f.shim.ok("app slow sf_upsert write=by_ext timeout_ms=300");
    let held = started.elapsed();
    let vars = f.shim.vars("slow");
    assert_eq!(vars["sf_write_status"], "timeout", "{vars:?}");
    assert!(
        held < Duration::from_millis(1000),
        "held the call for {held:?}"
    );
    // An upsert is idempotent: it went to the outbox too, so it is not lost.
    assert_eq!(vars["sf_write_queued"], "true", "{vars:?}");
    let queued = wait_for_write(&f, "slow.by_ext");
    assert_eq!(queued.op, WriteOp::Upsert);
    assert_eq!(
        queued.upsert_by,
        Some(("External_Id__c".to_string(), "S-1".to_string()))
    );
}

fn wait_for_write(f: &Fixture, key: &str) -> natterbox_common::record_write::RecordWrite {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = f.messages().into_iter().find_map(|m| match m {
            Message::RecordWrite(w) if w.key == key => Some(w),
            _ => None,
        });
        if let Some(w) = found {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "no write {key}: {:?}",
            f.messages()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_expired_session_is_refreshed_once_within_the_deadline() {
    let mut f = start();
    call(&mut f, "a", &[("ext", "R-1"), ("last", "Before")]);
    f.shim.ok("app a sf_upsert write=by_ext");
    assert_eq!(f.shim.vars("a")["sf_write_status"], "created");
    assert!(f.acme().admin().expire_sessions() > 0);
    call(&mut f, "b", &[("ext", "R-1"), ("last", "After")]);
    f.shim.ok("app b sf_upsert write=by_ext");
    let vars = f.shim.vars("b");
    assert_eq!(vars["sf_write_status"], "updated", "{vars:?}");
    assert!(!vars.contains_key("sf_write_queued"));
    let refreshes = f
        .messages()
        .iter()
        .filter(|m| matches!(m, Message::TokenRefresh { .. }))
        .count();
    assert_eq!(refreshes, 1);
}

#[test]
fn an_outbox_write_returns_at_once_and_goes_to_the_sidecar_with_its_key() {
    let mut f = start();
    let last = "Ng \"quote\" ${x} \u{1b}[2J";
    call(&mut f, "o1", &[("last", last)]);
    f.shim.ok("app o1 sf_create write=later");
    let vars = f.shim.vars("o1");
    assert_eq!(vars["sf_write_status"], "queued", "{vars:?}");
    assert!(!vars.contains_key("sf_create_id"));
    let ms: u64 = vars["sf_write_ms"].parse().unwrap();
    assert!(ms < 50, "{ms} ms");
    let w = wait_for_write(&f, "o1.later");
    assert_eq!(w.fields["LastName"], last);
    assert_eq!(
        w.upsert_by,
        Some(("External_Id__c".to_string(), "o1.later".to_string()))
    );
    // Nothing was sent to Salesforce by the module.
    assert_eq!(f.acme().admin().endpoint_count("sobject_upsert:Contact"), 0);
}

#[test]
fn declarations_the_org_cannot_take_are_refused() {
    let mut f = start();
    // A literal that is not its declared type: the reload is refused, the old config stays.
    let reply = with_writes(
        &mut f,
        r#"<write name="bad" object="Case" op="create"><field name="IsEscalated" value="maybe" type="boolean"/></write>"#,
    );
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(reply.contains("not true or false"), "{reply}");
    call(&mut f, "k1", &[("ext", "K-1"), ("last", "Kept")]);
    f.shim.ok("app k1 sf_upsert write=by_ext");
    assert_eq!(f.shim.vars("k1")["sf_write_status"], "created");

    // A declared type the org's field does not have: refused against the describe, before
    // anything is written.
    let reply = with_writes(
        &mut f,
        r#"<write name="typed" object="Case" op="create"><field name="ContactId" value="${n}" type="string"/></write>"#,
    );
    assert!(reply.starts_with("+OK reloaded"), "{reply}");
    call(&mut f, "k2", &[("n", "003Em0000000001IAA")]);
    f.shim.ok("app k2 sf_create write=typed");
    let vars = f.shim.vars("k2");
    assert_eq!(vars["sf_write_status"], "error", "{vars:?}");
    assert!(!f
        .shim
        .logs_containing("declared type=\"string\" but the field is a reference")
        .is_empty());
    assert_eq!(f.acme().admin().endpoint_count("sobject_create:Case"), 0);
}
