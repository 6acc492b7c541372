//! A call's progress for its VoiceCall record: when a call its org records as a VoiceCall
//! (`<call-log record="voicecall|both">`) is answered, the sidecar hears of it now, so the
//! record is created and accepted while the call is live. Best effort, like the screen pop: if
//! the sidecar is away, the call log at hangup (spooled, acknowledged) carries the same facts.
//!
//! Runs on FreeSWITCH's event thread: reads headers and hands the message over, nothing more.

use natterbox_common::wire::{CallEvent, CallProgress};

use crate::ffi::event::EventRef;
use crate::hangup::{caller_number, logged_call, micros_to_ms};
use crate::module;

pub fn on_channel_answer(event: &mut EventRef<'_>) {
    let Some(state) = module::state() else { return };
    let snapshot = state.engine.snapshot();
    let Some((call_uuid, org, direction)) = logged_call(event, &snapshot.config) else {
        return;
    };
    if !org.call_log.record.wants_voicecall() {
        return;
    }
    let now = natterbox_engine::outbox::now_ms();
    let at_ms = micros_to_ms(event.header("Caller-Channel-Answered-Time")).unwrap_or(now);
    let start_ms = micros_to_ms(event.header("Caller-Channel-Created-Time")).unwrap_or(at_ms);
    state.engine.call_progress(CallProgress {
        org: org.name.clone(),
        call_uuid,
        event: CallEvent::Answered,
        from: caller_number(event),
        to: event
            .header("Caller-Destination-Number")
            .unwrap_or_default(),
        direction,
        start_ms,
        at_ms,
    });
}
