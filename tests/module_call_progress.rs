//! The real module in the host shim tells the sidecar when a call its org records as a
//! VoiceCall is answered (`CallProgress`), and only then.

mod support;

use std::time::{Duration, Instant};

use natterbox_common::wire::{CallEvent, CallProgress, Direction, Message};
use support::fixture::{Fixture, Options};

fn progress(f: &Fixture) -> Vec<CallProgress> {
    f.messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::CallProgress(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Sets every org's `<call-log record=…>` (with its `<service-cloud-voice>`) through `sf reload`.
fn record_as(f: &mut Fixture, record: &str) {
    let xml = f.config_xml(&[], "").replace(
        "<call-log enabled=\"true\"/>",
        &format!(
            "<call-log enabled=\"true\" record=\"{record}\"/>
             <service-cloud-voice scrt-url=\"https://acme.my.salesforce-scrt.com\" org-id=\"00DEm0000000001\"
               call-center=\"NatterboxCC\" provider=\"Natterbox\" private-key-file=\"/nonexistent/scv.pem\"/>"
        ),
    );
    assert!(xml.contains("service-cloud-voice"));
    f.write_config(&xml);
    f.shim.ok("reloadxml");
    let reply = f.shim.api("reload");
    assert!(reply.starts_with("+OK reloaded"), "{reply}");
}

#[test]
fn an_answered_call_is_reported_when_its_org_records_voicecalls() {
    let mut f = Fixture::start(Options::default());
    record_as(&mut f, "voicecall");
    f.shim
        .ok("call vc-1 caller_id_number=+14155550123 destination_number=1000");
    f.shim.ok("answer vc-1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress(&f).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no CallProgress: {:?}",
            f.messages()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let p = &progress(&f)[0];
    assert_eq!(p.call_uuid, "vc-1");
    assert_eq!(p.event, CallEvent::Answered);
    assert_eq!(p.org, "acme");
    assert_eq!(p.from, "+14155550123");
    assert_eq!(p.to, "1000");
    assert_eq!(p.direction, Direction::Inbound);
    assert!(p.at_ms >= p.start_ms && p.start_ms > 0, "{p:?}");
    f.shim.ok("hangup vc-1 NORMAL_CLEARING");
}

#[test]
fn task_only_orgs_hear_nothing_until_the_call_log() {
    let mut f = Fixture::start(Options::default());
    record_as(&mut f, "task");
    f.shim
        .ok("call t-1 caller_id_number=+14155550123 destination_number=1000");
    f.shim.ok("answer t-1");
    f.shim.ok("hangup t-1 NORMAL_CLEARING");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f
        .messages()
        .iter()
        .any(|m| matches!(m, Message::CallLog(l) if l.call_uuid == "t-1"))
    {
        assert!(Instant::now() < deadline, "no call log: {:?}", f.messages());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The call log comes after the answer on the same ordered socket: had a progress frame been
    // sent, it would be here.
    assert!(progress(&f).is_empty(), "{:?}", progress(&f));
}
