//! How long `sf_create` with `delivery="outbox"` keeps the dialplan: filling the write from the
//! call's variables, checking the values and handing it to the outbox (no disk, no network on
//! the caller's thread). Target: ≤ 100 µs (issue 11). Prints figures; asserts only that every
//! write was handed over.
//!
//!   cargo bench -p natterbox-engine --bench write_handoff        (optimised)
//!   cargo test -p natterbox-engine --bench write_handoff         (debug build, an upper bound)
//!
//! No sidecar listens, as during an outage: every write goes to the spool thread's files.

use std::time::{Duration, Instant};

use natterbox_common::config::Config;
use natterbox_common::record_write::WriteOp;
use natterbox_engine::writes::{WriteRequest, WriteStatus};
use natterbox_engine::Engine;

const WRITES: usize = 20_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let xml = format!(
        r#"<configuration name="natterbox_sf.conf"><settings>
             <param name="token-dir" value="{0}/tokens"/><param name="spool-dir" value="{0}/spool"/>
             <param name="event-socket" value="{0}/none.sock"/>
             <param name="event-queue-capacity" value="65536"/>
           </settings><orgs><org name="acme">
             <profile name="default"><object name="Contact" fields="Id,Name"/></profile>
             <write name="ivr_note" object="Contact" op="create" delivery="outbox" key-field="External_Id__c">
               <field name="LastName" value="${{ivr_last_name}}"/>
               <field name="Description" value="Caller ${{caller_id_number}} chose ${{ivr_choice}}" type="textarea"/>
               <field name="AccountId" value="${{sf_account_id}}" type="id"/>
             </write>
           </org></orgs></configuration>"#,
        dir.path().display()
    );
    std::fs::create_dir_all(dir.path().join("tokens")).unwrap();
    let engine = Engine::start(Config::parse(&xml).unwrap()).unwrap();
    let vars = |name: &str| {
        Some(
            match name {
                "ivr_last_name" => "O'Brien",
                "caller_id_number" => "+14155550123",
                "ivr_choice" => "2",
                "sf_account_id" => "001Em0000000001IAA",
                _ => return None,
            }
            .to_string(),
        )
    };
    let mut times = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        let request = WriteRequest {
            org: None,
            write: "ivr_note",
            op: WriteOp::Create,
            call_uuid: &uuid,
            timeout: None,
        };
        let started = Instant::now();
        let answer = engine.write_blocking(&request, vars);
        times.push(started.elapsed());
        assert_eq!(answer.status, WriteStatus::Queued, "{answer:?}");
    }
    times.sort();
    let queued = engine
        .outbox()
        .counters()
        .writes_queued
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(queued, WRITES as u64);
    println!(
        "outbox write hand-off, {WRITES} writes: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 0.999),
        times[times.len() - 1]
    );
    // The spool thread writes every file (fsynced) before it ends; that is not the hand-off's
    // cost, so it is only reported.
    let stopping = Instant::now();
    let stopped = engine.shutdown(Duration::from_secs(300));
    println!(
        "spool thread finished writing {WRITES} files {:?} after the last hand-off (ended: {stopped})",
        stopping.elapsed()
    );
}
