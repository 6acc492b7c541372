//! Omni-Channel routing points in the dialplan (Service Cloud Voice):
//!
//! - `sf_omni_route [org=<org>]`: the call's VoiceCall is created now and the call is handed to
//!   Salesforce's routing (omniFlow, with the lookup's record in the flow's inputs) by the
//!   sidecar; the call is parked here until the agent Salesforce picks accepts it, for the org's
//!   `<omni-channel wait-seconds>`. It sets `playback_timeout_sec` to that wait, so the hold music
//!   the dialplan plays next (`playback local_stream://moh`) ends when the wait does. Never waits
//!   on Salesforce: it hands a message over and returns. Sets `sf_omni_status` (`routing`, or
//!   `unavailable` with `playback_timeout_sec=1` when the org does not route with Omni-Channel).
//! - `sf_omni_fallback`: the dialplan's next step after the hold music: nobody accepted, the
//!   call is no longer offered (a late accept is refused) and Salesforce's routing is cleared.
//!
//! The accept arrives as a `bridge_routed` command from the sidecar (which checked, with
//! Salesforce, that the agent is the one the work was offered to): the call is marked the
//! agent's (`sf_agent_user_id`, `sf_agent_extension`, so their console follows it as any call of
//! theirs) and goes to the agent's extension in the org's click-to-dial context (`uuid_transfer`). A caller hanging up while
//! parked clears the routing too.

use natterbox_common::call_control::check_record_id;
use natterbox_common::wire::{Message, OmniRoute};
use natterbox_engine::agent_calls::ApiCall;
use natterbox_engine::args::{printable, AppArgs, ArgSpec};
use natterbox_engine::outbox::now_ms;

use crate::ffi::event::EventRef;
use crate::ffi::log::{log_session, Level};
use crate::ffi::session::Session;
use crate::module::{self, ModuleState};

pub const STATUS_VARIABLE: &str = "sf_omni_status";
/// FreeSWITCH's own bound on a playback (seconds): the hold music ends with the wait.
const PLAYBACK_TIMEOUT_VARIABLE: &str = "playback_timeout_sec";

const ROUTE_ARGS: ArgSpec = ArgSpec {
    settings: &["org"],
    last: &[],
};

fn unavailable(session: &Session<'_>, why: &str) {
    log_session(session, Level::Error, &format!("sf_omni_route: {why}"));
    session.set_var(STATUS_VARIABLE, Some("unavailable"));
    session.set_var(PLAYBACK_TIMEOUT_VARIABLE, Some("1"));
}

pub fn sf_omni_route(session: &Session<'_>, data: &str) {
    let Some(state) = module::state() else { return };
    let args = match AppArgs::parse(data, &ROUTE_ARGS) {
        Ok(args) => args,
        Err(e) => return unavailable(session, &e),
    };
    let snapshot = state.engine.snapshot();
    let named = args
        .get("org")
        .map(str::to_string)
        .or_else(|| session.var("sf_lookup_org"))
        .or_else(|| session.var("sf_org"));
    let Some(org) = snapshot.config.resolve_org(named.as_deref()) else {
        return unavailable(session, "no org (run sf_lookup first or pass org=)");
    };
    let omni = org
        .voice
        .as_ref()
        .filter(|_| org.call_log.enabled && org.call_log.record.wants_voicecall())
        .and_then(|v| v.omni.as_ref());
    let Some(omni) = omni else {
        return unavailable(
            session,
            &format!(
                "org {} has no <omni-channel> in <service-cloud-voice> (with <call-log record=\"voicecall\"|\"both\">)",
                org.name
            ),
        );
    };
    let call_uuid = session.uuid();
    let record_id = session
        .var("sf_record_id")
        .filter(|id| check_record_id(id).is_ok());
    let from = session
        .var("sf_caller_e164")
        .or_else(|| session.var("caller_id_number"))
        .unwrap_or_default();
    let to = session.var("destination_number").unwrap_or_default();
    let now = now_ms();
    state.omni_parking.park(
        &call_uuid,
        &org.name,
        now + u64::from(omni.wait_seconds) * 1000,
    );
    state.engine.outbox().omni(Message::OmniRoute(OmniRoute {
        org: org.name.clone(),
        call_uuid,
        from: printable(&from),
        to: printable(&to),
        start_ms: now,
        record_id,
    }));
    session.set_var(
        PLAYBACK_TIMEOUT_VARIABLE,
        Some(&omni.wait_seconds.to_string()),
    );
    session.set_var(STATUS_VARIABLE, Some("routing"));
}

pub fn sf_omni_fallback(session: &Session<'_>, _data: &str) {
    let Some(state) = module::state() else { return };
    session.set_var(PLAYBACK_TIMEOUT_VARIABLE, None);
    let call_uuid = session.uuid();
    if let Some(org) = state.omni_parking.leave(&call_uuid) {
        unrouted(&state, org, call_uuid, "timeout");
        session.set_var(STATUS_VARIABLE, Some("timeout"));
    }
}

fn unrouted(state: &ModuleState, org: String, call_uuid: String, reason: &str) {
    state.engine.outbox().omni(Message::OmniUnrouted {
        org,
        call_uuid,
        reason: reason.into(),
    });
}

/// On FreeSWITCH's event thread, at hangup: a call still parked was abandoned.
pub fn on_hangup(event: &mut EventRef<'_>) {
    let Some(state) = module::state() else { return };
    if state.omni_parking.is_empty() {
        return;
    }
    let Some(call_uuid) = event.header("Unique-ID") else {
        return;
    };
    if let Some(org) = state.omni_parking.leave(&call_uuid) {
        unrouted(&state, org, call_uuid, "abandoned");
    }
}

/// The FreeSWITCH commands that take a parked call to the agent's extension; `Err` when the
/// call is not (or no longer) waiting for an agent.
pub fn bridge_plan(
    state: &ModuleState,
    call_uuid: &str,
    agent_user_id: &str,
    agent_extension: &str,
    context: &str,
) -> Result<Vec<ApiCall>, String> {
    state.omni_parking.take_for_bridge(call_uuid, now_ms())?;
    let set = |name: &str, value: &str| ApiCall {
        command: "uuid_setvar",
        args: format!("{call_uuid} {name} {value}"),
        may_fail: false,
        once_running: None,
    };
    Ok(vec![
        // The call is the agent's from now on: their console sees it ring, answer, end.
        set("sf_agent_user_id", agent_user_id),
        set("sf_agent_extension", agent_extension),
        // The hold music's bound is the routing point's, not the agent's call's.
        ApiCall {
            command: "uuid_setvar",
            args: format!("{call_uuid} {PLAYBACK_TIMEOUT_VARIABLE}"),
            may_fail: true,
            once_running: None,
        },
        ApiCall {
            command: "uuid_transfer",
            args: format!("{call_uuid} {agent_extension} XML {context}"),
            may_fail: false,
            once_running: None,
        },
    ])
}
