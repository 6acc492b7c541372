//! Record writes end to end: the real module in the host shim, the real sidecar and its outbox,
//! the org emulator. Salesforce goes down and comes back, the sidecar is killed in between: every
//! write arrives, each once.

mod support;

use std::time::Duration;

use serde_json::Value;
use sf_emulator::FaultRule;
use support::product::{poll, Product, ProductOptions};
use support::shim::escape_arg;

const WRITES: &str = r#"
      <write name="later" object="Contact" op="create" delivery="outbox" key-field="External_Id__c">
        <field name="LastName" value="${last}"/>
        <field name="Title" value="${title}"/>
      </write>
      <write name="now" object="Contact" op="upsert" external-id-field="External_Id__c" external-id="${ext}" timeout-ms="1500">
        <field name="LastName" value="${last}"/>
      </write>"#;

fn contacts_with_key(p: &Product, key: &str) -> Vec<Value> {
    p.emulator
        .admin()
        .records("Contact")
        .into_iter()
        .filter(|r| r["External_Id__c"] == key)
        .collect()
}

fn spooled_writes(p: &Product) -> usize {
    std::fs::read_dir(p.dir.path().join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".write.json"))
        .count()
}

#[test]
fn writes_made_while_salesforce_is_down_arrive_once_when_it_returns() {
    let mut p = Product::start(ProductOptions {
        org_children: WRITES.into(),
        ..ProductOptions::default()
    });
    // Salesforce's data API answers 503 (tokens still come: the sidecar stays authorised).
    let outage = p.emulator.admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        status: Some(503),
        ..FaultRule::default()
    });
    let hostile = "Ó'Neill \"${x}\" \\ \n 🎉";
    let uuids: Vec<String> = (1..=5).map(|i| format!("w-{i}")).collect();
    for uuid in &uuids {
        p.shim.ok(&format!(
            "call {uuid} last={} title={}",
            escape_arg(hostile),
            escape_arg(uuid)
        ));
        p.shim.ok(&format!("app {uuid} sf_create write=later"));
        let vars = p.shim.vars(uuid);
        assert_eq!(vars["sf_write_status"], "queued", "{vars:?}");
    }
    // A synchronous upsert fails now (503), and goes to the outbox because it is idempotent.
    p.shim.ok("call s-1 ext=EXT-S1 last=Sync");
    p.shim.ok("app s-1 sf_upsert write=now");
    let vars = p.shim.vars("s-1");
    assert_eq!(vars["sf_write_status"], "error", "{vars:?}");
    assert_eq!(vars["sf_write_queued"], "true", "{vars:?}");

    // The sidecar has them (the module's spooled copies go once it has committed them) and
    // tries; Salesforce refuses.
    poll(Duration::from_secs(20), "the writes acknowledged", || {
        (spooled_writes(&p) == 0).then_some(())
    });
    poll(Duration::from_secs(20), "a failed delivery attempt", || {
        p.sidecar
            .log()
            .contains("record write not delivered")
            .then_some(())
    });
    // Killed while Salesforce is down: the outbox is on disk.
    p.sidecar.kill9();
    p.sidecar.restart();
    p.emulator.admin().remove_fault(outage);

    poll(Duration::from_secs(60), "every write in Salesforce", || {
        (uuids
            .iter()
            .all(|u| !contacts_with_key(&p, &format!("{u}.later")).is_empty())
            && !contacts_with_key(&p, "EXT-S1").is_empty())
        .then_some(())
    });
    for uuid in &uuids {
        let found = contacts_with_key(&p, &format!("{uuid}.later"));
        assert_eq!(found.len(), 1, "{uuid}: {found:#?}");
        assert_eq!(found[0]["LastName"], hostile);
        assert_eq!(found[0]["Title"], uuid.as_str());
    }
    assert_eq!(contacts_with_key(&p, "EXT-S1").len(), 1);

    // The same call's write again is the same row: nothing twice.
    p.shim.ok("app w-1 sf_create write=later");
    assert_eq!(p.shim.vars("w-1")["sf_write_status"], "queued");
    poll(Duration::from_secs(20), "the repeat acknowledged", || {
        (spooled_writes(&p) == 0).then_some(())
    });
    assert_eq!(contacts_with_key(&p, "w-1.later").len(), 1);
}
