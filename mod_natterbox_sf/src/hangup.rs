//! At hangup, the call's record goes to the sidecar, which logs it in Salesforce as a Task:
//! calls where `sf_lookup` ran and calls where it did not (outbound, internal), as each org's
//! `<call-log directions="…">` asks.
//!
//! Direction: the dialplan's `sf_call_direction` (`inbound`, `outbound`, `internal`) when set;
//! else the channel's own direction (`Call-Direction`), which only says whether the channel
//! came into the switch, right for calls from a trunk; calls from users are told apart in the
//! dialplan, where the context knows whether the destination is a gateway or an extension.
//! A leg the switch originated for another call (a bridge's B-leg: its `Channel-Call-UUID` is
//! the A-leg's) is that call's, not a call of its own, unless the dialplan set
//! `sf_call_direction` on it.
//!
//! Org: the one `sf_lookup` used, else the dialplan's `sf_org`, else the default org.
//!
//! This runs on FreeSWITCH's event thread: it reads headers and hands the record over, nothing
//! more (no file I/O, no waiting).

use natterbox_common::wire::{CallLog, Direction};

use crate::ffi::event::EventRef;
use crate::module;

pub(crate) fn micros_to_ms(text: Option<String>) -> Option<u64> {
    text.and_then(|t| t.parse::<u64>().ok())
        .filter(|us| *us > 0)
        .map(|us| us / 1000)
}

/// The call an event is about: its UUID, org and direction, when it is a call of its own that
/// its org logs (`<call-log enabled directions>`).
pub(crate) fn logged_call(
    event: &mut EventRef<'_>,
    config: &natterbox_common::config::Config,
) -> Option<(String, natterbox_common::config::OrgConfig, Direction)> {
    let call_uuid = event.header("Unique-ID")?;
    let dialplan_direction = event
        .header("variable_sf_call_direction")
        .and_then(|d| Direction::parse(&d));
    let call_of_its_own = event
        .header("Channel-Call-UUID")
        .or_else(|| event.header("variable_call_uuid"))
        .is_none_or(|call| call == call_uuid);
    if dialplan_direction.is_none() && !call_of_its_own {
        return None;
    }
    let direction = dialplan_direction.unwrap_or_else(|| {
        match event
            .header("Call-Direction")
            .or_else(|| event.header("Caller-Direction"))
            .as_deref()
        {
            Some("outbound") => Direction::Outbound,
            _ => Direction::Inbound,
        }
    });
    let org = match event.header("variable_sf_lookup_org") {
        Some(name) => config.org(&name),
        None => config.resolve_org(event.header("variable_sf_org").as_deref()),
    }?;
    if !org.call_log.enabled || !org.call_log.directions.contains(&direction) {
        return None;
    }
    Some((call_uuid, org.clone(), direction))
}

/// The caller's number as the call log and the VoiceCall record it.
pub(crate) fn caller_number(event: &mut EventRef<'_>) -> String {
    event
        .header("variable_sf_caller_e164")
        .or_else(|| event.header("Caller-Caller-ID-Number"))
        .unwrap_or_default()
}

pub fn on_hangup_complete(event: &mut EventRef<'_>) {
    let Some(state) = module::state() else { return };
    let snapshot = state.engine.snapshot();
    let Some((call_uuid, org, direction)) = logged_call(event, &snapshot.config) else {
        return;
    };
    let start_ms = micros_to_ms(event.header("variable_start_uepoch"))
        .unwrap_or_else(natterbox_engine::outbox::now_ms);
    let answer_ms = micros_to_ms(event.header("variable_answer_uepoch"));
    let end_ms = micros_to_ms(event.header("variable_end_uepoch"))
        .unwrap_or_else(natterbox_engine::outbox::now_ms);
    let duration_s = event
        .header("variable_billsec")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| answer_ms.map_or(0, |a| end_ms.saturating_sub(a) / 1000));
    let record_id = event.header("variable_sf_record_id");
    let record_type = event.header("variable_sf_record_type");
    let (who_id, what_id) = match record_type.as_deref() {
        Some("Contact") | Some("Lead") => (record_id, None),
        Some(_) => (None, record_id),
        None => (None, None),
    };
    state.engine.call_log(CallLog {
        org: org.name.clone(),
        call_uuid,
        from: caller_number(event),
        to: event
            .header("Caller-Destination-Number")
            .unwrap_or_default(),
        direction,
        start_ms,
        answer_ms,
        end_ms,
        duration_s,
        agent_user_id: event.header("variable_sf_agent_user_id"),
        who_id,
        what_id,
        hangup_cause: event
            .header("Hangup-Cause")
            .unwrap_or_else(|| "UNKNOWN".into()),
        recording_url: event
            .header("variable_sf_recording_url")
            .filter(|u| !u.is_empty()),
    });
}
