//! At hangup of a call where `sf_lookup` ran, its call record goes to the sidecar, which logs it
//! in Salesforce as a Task.

use natterbox_common::wire::{CallLog, Direction};

use crate::ffi::event::EventRef;
use crate::module;

fn micros_to_ms(text: Option<String>) -> Option<u64> {
    text.and_then(|t| t.parse::<u64>().ok())
        .filter(|us| *us > 0)
        .map(|us| us / 1000)
}

pub fn on_hangup_complete(event: &mut EventRef<'_>) {
    let Some(org_name) = event.header("variable_sf_lookup_org") else {
        return;
    };
    let Some(state) = module::state() else { return };
    let snapshot = state.engine.snapshot();
    let Some(org) = snapshot.config.org(&org_name) else {
        return;
    };
    if !org.call_log.enabled {
        return;
    }
    let Some(call_uuid) = event.header("Unique-ID") else {
        return;
    };
    let direction = match event
        .header("variable_sf_call_direction")
        .or_else(|| event.header("Call-Direction"))
        .as_deref()
    {
        Some("outbound") => Direction::Outbound,
        Some("internal") => Direction::Internal,
        _ => Direction::Inbound,
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
        from: event
            .header("variable_sf_caller_e164")
            .or_else(|| event.header("Caller-Caller-ID-Number"))
            .unwrap_or_default(),
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
    });
}
