//! What the module costs FreeSWITCH's log and event system per call, in the host shim: failed
//! lookups rate-limited per org and cause, and no lookup event when `lookup-events` is off.

mod support;

use sf_emulator::{EmulatorOptions, FaultRule};
use support::fixture::{Fixture, Options};

#[test]
fn failing_lookups_log_a_few_lines_per_org_and_cause_and_no_events_when_off() {
    let mut f = Fixture::start(Options {
        orgs: vec![("acme", EmulatorOptions::default_seed())],
        settings: vec![("lookup-events", "false".to_string())],
        ..Options::default()
    });
    f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data/".into(),
        status: Some(500),
        ..FaultRule::default()
    });
    for i in 0..12 {
        let vars = f.lookup(&format!("c{i}"), &format!("+1212555{:04}", 1000 + i), "");
        assert_eq!(vars["sf_lookup_status"], "error", "{vars:?}");
    }
    // Another cause has its own budget.
    let invalid = f.lookup("bad", "12", "");
    assert_eq!(invalid["sf_lookup_status"], "invalid_number");
    let errors = f.shim.logs_containing("status=error");
    assert_eq!(
        errors.len(),
        natterbox_engine::warnings::LINES_PER_WINDOW as usize,
        "{errors:#?}"
    );
    assert!(errors.iter().all(|l| l.contains("org=acme")));
    assert_eq!(f.shim.logs_containing("status=invalid_number").len(), 1);
    f.shim.ok("wait_events");
    assert!(
        !f.shim
            .events
            .iter()
            .any(|e| e.subclass == "natterbox_sf::lookup"),
        "lookup-events=false fired an event"
    );
}
