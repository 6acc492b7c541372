//! Call logs from the real module in the host shim, for calls where `sf_lookup` ran and calls
//! where it did not: which calls are logged is each org's `<call-log directions="…">`.

mod support;

use std::time::{Duration, Instant};

use natterbox_common::wire::{CallLog, Direction, Message};
use sf_emulator::EmulatorOptions;
use support::fixture::{Fixture, Options};

/// The call log the stand-in sidecar received for `uuid`, waiting for it.
fn call_log(f: &Fixture, uuid: &str) -> CallLog {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = f.messages().into_iter().find_map(|m| match m {
            Message::CallLog(log) if log.call_uuid == uuid => Some(log),
            _ => None,
        });
        if let Some(log) = found {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no call log for {uuid}: {:?}",
            f.messages()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn logged_uuids(f: &Fixture) -> Vec<String> {
    f.messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::CallLog(log) => Some(log.call_uuid),
            _ => None,
        })
        .collect()
}

/// Applies `directions` to every org's `<call-log>` with `sf reload` (synchronous, unlike
/// reloadxml's hand-off).
fn log_directions(f: &mut Fixture, directions: &str) {
    let xml = f.config_xml(&[], "").replace(
        "<call-log enabled=\"true\"/>",
        &format!("<call-log enabled=\"true\" directions=\"{directions}\"/>"),
    );
    assert!(xml.contains("directions="));
    f.write_config(&xml);
    f.shim.ok("reloadxml");
    let reply = f.shim.api("reload");
    assert!(reply.starts_with("+OK reloaded"), "{reply}");
}

#[test]
fn calls_without_a_lookup_are_logged_by_direction_and_org() {
    let mut globex = EmulatorOptions::default_seed();
    globex.seed.org_id = "00DEm0000000002".into();
    let mut f = Fixture::start(Options {
        orgs: vec![
            ("acme", EmulatorOptions::default_seed()),
            ("globex", globex),
        ],
        ..Options::default()
    });
    log_directions(&mut f, "inbound,outbound,internal");

    // A call from a trunk that never reached sf_lookup: the channel's own direction, the
    // default org.
    f.shim
        .ok("call in-1 caller_id_number=+14155550123 destination_number=1000");
    f.shim.ok("answer in-1");
    f.shim.ok("hangup in-1 NORMAL_CLEARING");
    let log = call_log(&f, "in-1");
    assert_eq!(log.direction, Direction::Inbound);
    assert_eq!(log.org, "acme");
    assert_eq!(log.from, "+14155550123");
    assert_eq!(log.to, "1000");
    assert!(log.answer_ms.is_some());
    assert_eq!(log.who_id, None);

    // A call the switch placed (originate): outbound from the channel; the dialplan's sf_org.
    f.shim.ok(
        "call out-1 direction=outbound caller_id_number=1001 destination_number=+442079460958 sf_org=globex",
    );
    f.shim.ok("hangup out-1 NORMAL_CLEARING");
    let log = call_log(&f, "out-1");
    assert_eq!(log.direction, Direction::Outbound);
    assert_eq!(log.org, "globex");
    assert_eq!(log.to, "+442079460958");

    // A user's call to a gateway comes into the switch (inbound channel): the dialplan says
    // what it is. The same for extension-to-extension calls.
    f.shim.ok(
        "call user-out caller_id_number=1001 destination_number=+14155550199 sf_call_direction=outbound",
    );
    f.shim.ok("hangup user-out NORMAL_CLEARING");
    assert_eq!(call_log(&f, "user-out").direction, Direction::Outbound);
    f.shim
        .ok("call ext-1 caller_id_number=1001 destination_number=1002 sf_call_direction=internal");
    f.shim.ok("hangup ext-1 NORMAL_CLEARING");
    assert_eq!(call_log(&f, "ext-1").direction, Direction::Internal);

    // The B-leg of a bridge belongs to its A-leg's call: not a call log of its own.
    f.shim
        .ok("call a-leg caller_id_number=+14155550123 destination_number=1000");
    f.shim
        .ok("call b-leg direction=outbound call_uuid=a-leg destination_number=1000");
    f.shim.ok("hangup b-leg NORMAL_CLEARING");
    f.shim.ok("hangup a-leg NORMAL_CLEARING");
    call_log(&f, "a-leg");
    // One queue, in order: the B-leg would have arrived before the A-leg.
    assert!(
        !logged_uuids(&f).contains(&"b-leg".to_string()),
        "{:?}",
        logged_uuids(&f)
    );

    // A call that names an org the config lacks is not logged anywhere.
    f.shim.ok("call nowhere sf_org=initech");
    f.shim.ok("hangup nowhere NORMAL_CLEARING");
    f.shim
        .ok("call after-nowhere caller_id_number=+14155550123");
    f.shim.ok("hangup after-nowhere NORMAL_CLEARING");
    call_log(&f, "after-nowhere");
    assert!(!logged_uuids(&f).contains(&"nowhere".to_string()));
}

#[test]
fn only_the_configured_directions_are_logged_and_lookups_still_are() {
    let mut f = Fixture::start(Options::default());
    log_directions(&mut f, "inbound");

    // The call where sf_lookup ran: logged with its record.
    let vars = f.lookup("looked-up", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found");
    f.shim.ok("answer looked-up");
    f.shim.ok("hangup looked-up NORMAL_CLEARING");
    let log = call_log(&f, "looked-up");
    assert_eq!(log.direction, Direction::Inbound);
    assert_eq!(log.from, "+14155550123");
    assert_eq!(log.who_id.as_deref(), Some(vars["sf_record_id"].as_str()));

    // Outbound and internal calls are not logged for an org that logs inbound calls only.
    f.shim
        .ok("call out-2 direction=outbound destination_number=+14155550123");
    f.shim.ok("hangup out-2 NORMAL_CLEARING");
    f.shim
        .ok("call ext-2 destination_number=1002 sf_call_direction=internal");
    f.shim.ok("hangup ext-2 NORMAL_CLEARING");
    f.shim.ok("call in-2 caller_id_number=+14155550199");
    f.shim.ok("hangup in-2 NORMAL_CLEARING");
    call_log(&f, "in-2");
    assert_eq!(logged_uuids(&f), ["looked-up", "in-2"]);

    // A config that logs nothing inbound: an inbound call goes unlogged too.
    log_directions(&mut f, "outbound");
    f.shim.ok("call in-3 caller_id_number=+14155550199");
    f.shim.ok("hangup in-3 NORMAL_CLEARING");
    f.shim
        .ok("call out-3 direction=outbound destination_number=+14155550123");
    f.shim.ok("hangup out-3 NORMAL_CLEARING");
    call_log(&f, "out-3");
    assert_eq!(logged_uuids(&f), ["looked-up", "in-2", "out-3"]);
}

#[test]
fn a_bad_directions_list_is_refused_and_the_running_config_kept() {
    let mut f = Fixture::start(Options::default());
    let xml = f.config_xml(&[], "").replace(
        "<call-log enabled=\"true\"/>",
        "<call-log enabled=\"true\" directions=\"inbound,sideways\"/>",
    );
    f.write_config(&xml);
    f.shim.ok("reloadxml");
    let reply = f.shim.api("reload");
    assert!(
        reply.starts_with("-ERR") && reply.contains("sideways"),
        "{reply}"
    );
    f.shim.ok("call in-4 caller_id_number=+14155550199");
    f.shim.ok("hangup in-4 NORMAL_CLEARING");
    assert_eq!(call_log(&f, "in-4").direction, Direction::Inbound);
}
