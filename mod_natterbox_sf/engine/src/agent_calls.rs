//! The agents' calls as the module follows them: which channel is the agent's leg and which the
//! other party's, what state the call is in, and which FreeSWITCH API commands carry out an
//! agent's command. Plain Rust (the module feeds it channel events and runs the commands it
//! plans), so it tests without FreeSWITCH.
//!
//! A call is an agent's when one of its channels carries `sf_agent_user_id` or
//! `sf_agent_extension` (set by `sf_screen_pop`, the dialplan, or the module's own originate).
//! The call's id is that channel's UUID (the one its screen pop and its Task carry). For an
//! inbound call that channel is the caller's, and the agent's leg is learnt from the bridge;
//! for a click-to-dial the marked channel is the agent's own leg (`sf_agent_leg=true`).
//!
//! Warm transfer is FreeSWITCH's `att_xfer` run on the agent's leg: the other party waits while
//! the agent talks to the target on a consult leg (marked `sf_consult_of=<call>`); the agent
//! hanging up joins the two, `#` received on the agent's leg (`cancel_transfer`) drops the
//! consult leg and brings the agent back. Three-way is the same att_xfer with its conference
//! key `0` already queued: once the target answers, FreeSWITCH has the target's leg run
//! `three_way` on the agent's leg (an eavesdrop mixing both directions) and bridges the agent
//! back to the other party, and when the agent's leg ends it bridges the other two. No
//! conference module is needed, and the target's leg is dialled from the agent's session, so it
//! gets the agent's codec.

use std::collections::{HashMap, VecDeque};

use natterbox_common::call_control::{dialable, CallCommand, CallPhase, CallState, TransferMode};
use natterbox_common::config::ClickToDialConfig;
use natterbox_common::wire::Direction;

/// Calls remembered after they end, so late events of their channels start nothing new.
const ENDED_MEMORY: usize = 4096;

/// The state FreeSWITCH gives a bridge's peer; the bridge's originator stays in its own state
/// (CS_EXECUTE for the `bridge` application, CS_SOFT_EXECUTE for `uuid_bridge`).
pub const BRIDGE_PEER_STATE: &str = "CS_EXCHANGE_MEDIA";

/// The channel's state in FreeSWITCH's `uuid_dump` answer (`Channel-State: CS_…`); None for an
/// error (no such channel).
pub fn channel_state_in_dump(dump: &str) -> Option<&str> {
    dump.lines()
        .find_map(|line| line.strip_prefix("Channel-State: "))
        .map(str::trim)
        .filter(|state| state.starts_with("CS_"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEventKind {
    Progress,
    Answer,
    Bridge,
    Hold,
    Unhold,
    Hangup,
}

/// The parts of a FreeSWITCH channel event this needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelEvent {
    pub unique_id: String,
    /// `Other-Leg-Unique-ID` / `Bridge-B-Unique-ID` on a bridge.
    pub other_leg: Option<String>,
    pub agent_user_id: Option<String>,
    pub agent_extension: Option<String>,
    /// `sf_agent_leg=true`: this channel is the agent's own phone (click-to-dial).
    pub agent_leg: bool,
    pub org: Option<String>,
    pub direction: Option<Direction>,
    pub other_party: Option<String>,
    pub record_id: Option<String>,
    pub cause: Option<String>,
    /// `sf_consult_of`: this channel is the consult leg of that call's warm transfer.
    pub consult_of: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone)]
struct TrackedCall {
    call_uuid: String,
    agent_leg: Option<String>,
    /// The other party's channel (the caller for an inbound call, the dialled leg for a
    /// click-to-dial), once known.
    party_leg: Option<String>,
    org: String,
    agent_user_id: Option<String>,
    agent_extension: Option<String>,
    direction: Direction,
    other_party: String,
    record_id: Option<String>,
    phase: CallPhase,
    muted: bool,
    /// Blind or warm transfer asked for: the agent's leg ending means "transferred to".
    transferring_to: Option<String>,
    /// A warm transfer is consulting: the consult leg ending means it was cancelled.
    consulting: bool,
    /// The three-way leg, while it is up: hanging up leaves the others talking.
    conference_leg: Option<String>,
}

impl TrackedCall {
    fn state(&self, at_ms: u64) -> CallState {
        CallState {
            call_uuid: self.call_uuid.clone(),
            state: self.phase,
            direction: self.direction,
            other_party: self.other_party.clone(),
            record_id: self.record_id.clone(),
            org: self.org.clone(),
            agent_user_id: self.agent_user_id.clone(),
            agent_extension: self.agent_extension.clone(),
            muted: self.muted,
            cause: None,
            transferred_to: None,
            at_ms,
        }
    }
}

/// One FreeSWITCH API command (`switch_api_execute(command, args)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub command: &'static str,
    pub args: String,
    /// A failure of this one does not fail the agent's command (a leg already gone).
    pub may_fail: bool,
    /// Sent only once this application runs (waited for, with a deadline).
    pub once_running: Option<RunningApplication>,
}

/// An application a channel runs: FreeSWITCH's `current_application_data` on `channel` contains
/// `marker` (a text only this run of it has, such as the uuid it gives its new leg). The
/// variable stays set after an application returns, so the marker, not the name, tells this
/// run from an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningApplication {
    pub channel: String,
    pub marker: String,
}

fn api(command: &'static str, args: String) -> ApiCall {
    ApiCall {
        command,
        args,
        may_fail: false,
        once_running: None,
    }
}

#[derive(Default)]
pub struct AgentCalls {
    inner: parking_lot::Mutex<Table>,
}

#[derive(Default)]
struct Table {
    calls: HashMap<String, TrackedCall>,
    /// Every known leg (the call's own channel included) → call id.
    legs: HashMap<String, String>,
    ended: VecDeque<String>,
}

impl Table {
    fn forget(&mut self, call_uuid: &str) {
        if let Some(call) = self.calls.remove(call_uuid) {
            self.legs.retain(|_, c| c != call_uuid);
            for leg in [Some(call.call_uuid), call.agent_leg].into_iter().flatten() {
                self.ended.push_back(leg);
            }
            while self.ended.len() > ENDED_MEMORY {
                self.ended.pop_front();
            }
        }
    }
}

/// Salesforce key prefixes that are people (`WhoId`); anything else is `WhatId`.
pub fn record_type_for(record_id: &str) -> &'static str {
    match record_id.get(..3) {
        Some("003") => "Contact",
        Some("00Q") => "Lead",
        Some("001") => "Account",
        _ => "Record",
    }
}

impl AgentCalls {
    pub fn len(&self) -> usize {
        self.inner.lock().calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a channel event; returns the state to report when the agent's view changed.
    pub fn on_event(&self, kind: ChannelEventKind, event: &ChannelEvent) -> Option<CallState> {
        let mut table = self.inner.lock();
        if table.ended.contains(&event.unique_id) {
            return None;
        }
        let consult_of = event
            .consult_of
            .as_ref()
            .filter(|c| table.calls.contains_key(c.as_str()))
            .cloned();
        let known = table.legs.get(&event.unique_id).cloned();
        let call_uuid = match (known, consult_of) {
            (Some(call), _) => call,
            // A warm transfer's consult leg: one more leg of that call.
            (None, Some(call)) => {
                table.legs.insert(event.unique_id.clone(), call.clone());
                call
            }
            (None, None) => {
                if event.agent_user_id.is_none() && event.agent_extension.is_none() {
                    return None;
                }
                let org = event.org.clone()?;
                let call = TrackedCall {
                    call_uuid: event.unique_id.clone(),
                    agent_leg: event.agent_leg.then(|| event.unique_id.clone()),
                    party_leg: (!event.agent_leg).then(|| event.unique_id.clone()),
                    org,
                    agent_user_id: event.agent_user_id.clone(),
                    agent_extension: event.agent_extension.clone(),
                    direction: event.direction.unwrap_or(Direction::Inbound),
                    other_party: event.other_party.clone().unwrap_or_default(),
                    record_id: event.record_id.clone(),
                    phase: CallPhase::Ringing,
                    muted: false,
                    transferring_to: None,
                    consulting: false,
                    conference_leg: None,
                };
                table
                    .legs
                    .insert(event.unique_id.clone(), event.unique_id.clone());
                table.calls.insert(event.unique_id.clone(), call);
                if kind == ChannelEventKind::Progress {
                    let call = &table.calls[&event.unique_id];
                    return Some(call.state(event.at_ms));
                }
                event.unique_id.clone()
            }
        };
        let is_agent_leg = {
            let call = table.calls.get(&call_uuid)?;
            call.agent_leg.as_deref() == Some(event.unique_id.as_str())
        };
        match kind {
            ChannelEventKind::Progress => None,
            ChannelEventKind::Bridge => {
                let other = event.other_leg.clone()?;
                let call = table.calls.get_mut(&call_uuid)?;
                if call.agent_leg.is_none() && event.unique_id == call.call_uuid {
                    call.agent_leg = Some(other.clone());
                }
                // A click-to-dial's first bridge is the agent's leg with the dialled party.
                if call.party_leg.is_none() && call.agent_leg.as_deref() == Some(&event.unique_id) {
                    call.party_leg = Some(other.clone());
                }
                table.legs.insert(other, call_uuid.clone());
                let call = table.calls.get_mut(&call_uuid)?;
                if call.phase == CallPhase::Ringing {
                    call.phase = CallPhase::Answered;
                    return Some(call.state(event.at_ms));
                }
                None
            }
            ChannelEventKind::Answer => {
                let call = table.calls.get_mut(&call_uuid)?;
                if call.phase == CallPhase::Ringing {
                    call.phase = CallPhase::Answered;
                    return Some(call.state(event.at_ms));
                }
                None
            }
            ChannelEventKind::Hold | ChannelEventKind::Unhold => {
                let call = table.calls.get_mut(&call_uuid)?;
                if !is_agent_leg || call.phase.is_final() {
                    return None;
                }
                let phase = if kind == ChannelEventKind::Hold {
                    CallPhase::Held
                } else {
                    CallPhase::Answered
                };
                (call.phase != phase).then(|| {
                    call.phase = phase;
                    call.state(event.at_ms)
                })
            }
            ChannelEventKind::Hangup => {
                let call = table.calls.get(&call_uuid)?;
                let ends_it =
                    is_agent_leg || event.unique_id == call.call_uuid || call.agent_leg.is_none();
                if !ends_it {
                    // Another leg (a conference guest, the transfer target) left.
                    table.legs.remove(&event.unique_id);
                    let call = table.calls.get_mut(&call_uuid)?;
                    if call.conference_leg.as_deref() == Some(event.unique_id.as_str()) {
                        call.conference_leg = None;
                    }
                    let consult_over = call.consulting && event.consult_of.is_some();
                    if consult_over {
                        // The target declined, hung up, or the agent cancelled: FreeSWITCH
                        // has put the agent back with the other party.
                        call.consulting = false;
                        call.transferring_to = None;
                        return Some(call.state(event.at_ms));
                    }
                    return None;
                }
                let mut state = call.state(event.at_ms);
                match &call.transferring_to {
                    Some(to) => {
                        state.state = CallPhase::Transferred;
                        state.transferred_to = Some(to.clone());
                    }
                    None => {
                        state.state = CallPhase::Ended;
                        state.cause = Some(
                            event
                                .cause
                                .clone()
                                .unwrap_or_else(|| "NORMAL_CLEARING".into()),
                        );
                    }
                }
                table.forget(&call_uuid);
                Some(state)
            }
        }
    }

    pub fn org_of(&self, call_uuid: &str) -> Option<String> {
        self.inner
            .lock()
            .calls
            .get(call_uuid)
            .map(|c| c.org.clone())
    }

    /// Every live call's current state (as of `at_ms`), for a sidecar that has just connected.
    pub fn live_states(&self, at_ms: u64) -> Vec<CallState> {
        let table = self.inner.lock();
        let mut states: Vec<CallState> = table.calls.values().map(|c| c.state(at_ms)).collect();
        states.sort_by(|a, b| a.call_uuid.cmp(&b.call_uuid));
        states
    }

    /// The agent's leg and the other party's leg of a live call, when both are known.
    pub fn agent_and_party_legs(&self, call_uuid: &str) -> Option<(String, String)> {
        let table = self.inner.lock();
        let call = table.calls.get(call_uuid)?;
        let agent = call.agent_leg.clone()?;
        let party = call.party_leg.clone()?;
        (agent != party).then_some((agent, party))
    }

    /// A planned transfer or three-way that could not be started: the call is as before it was
    /// asked for.
    pub fn transfer_not_started(&self, call_uuid: &str) {
        let mut table = self.inner.lock();
        let Some(call) = table.calls.get_mut(call_uuid) else {
            return;
        };
        call.transferring_to = None;
        call.consulting = false;
        if let Some(leg) = call.conference_leg.take() {
            table.legs.remove(&leg);
        }
    }

    /// The state after a mute or unmute went through.
    pub fn set_muted(&self, call_uuid: &str, muted: bool, at_ms: u64) -> Option<CallState> {
        let mut table = self.inner.lock();
        let call = table.calls.get_mut(call_uuid)?;
        call.muted = muted;
        Some(call.state(at_ms))
    }

    /// The FreeSWITCH commands for an agent's command, and what to remember once they went
    /// through. Errors are for the agent (no such call, wrong state).
    pub fn plan(
        &self,
        command: &CallCommand,
        dialing: &ClickToDialConfig,
    ) -> Result<Vec<ApiCall>, String> {
        command.check()?;
        if let CallCommand::Dial {
            call_uuid,
            org,
            agent_user_id,
            agent_extension,
            number,
            record_id,
        } = command
        {
            return Ok(vec![originate(
                call_uuid,
                org,
                agent_user_id,
                agent_extension,
                number,
                record_id.as_deref(),
                dialing,
            )]);
        }
        let mut table = self.inner.lock();
        let call = table
            .calls
            .get_mut(command.call_uuid())
            .ok_or_else(|| format!("no live call {}", command.call_uuid()))?;
        let agent_leg = call
            .agent_leg
            .clone()
            .ok_or_else(|| "the agent's phone is not connected to this call yet".to_string())?;
        let context = &dialing.context;
        Ok(match command {
            CallCommand::Dial { .. } => unreachable!("handled above"),
            CallCommand::BridgeRouted { .. } => {
                return Err(
                    "a routed call is bridged by its routing point, not as an agent's call".into(),
                )
            }
            CallCommand::Hold { .. } => vec![api("uuid_hold", agent_leg)],
            CallCommand::Resume { .. } => vec![api("uuid_hold", format!("off {agent_leg}"))],
            CallCommand::Mute { .. } => {
                vec![api("uuid_audio", format!("{agent_leg} start read mute 1"))]
            }
            CallCommand::Unmute { .. } => vec![api("uuid_audio", format!("{agent_leg} stop"))],
            CallCommand::Transfer { to, mode, .. } => {
                if call.consulting {
                    return Err("a warm transfer is already in progress".into());
                }
                let to = dialable(to);
                call.transferring_to = Some(to.clone());
                call.consulting = *mode == TransferMode::Warm;
                match mode {
                    // The agent's partner (the other party) goes to `to` in the dialplan.
                    TransferMode::Blind => vec![api(
                        "uuid_transfer",
                        format!("{agent_leg} -bleg {to} XML {context}"),
                    )],
                    // FreeSWITCH's attended transfer, run on the agent's leg: the other party
                    // waits; the agent talks to `to`; the agent hanging up joins the two.
                    // `#` from the agent's side cancels, while ringing too.
                    TransferMode::Warm => vec![
                        api(
                            "uuid_setvar",
                            format!("{agent_leg} origination_cancel_key #"),
                        ),
                        api(
                            "uuid_broadcast",
                            format!(
                                "{agent_leg} att_xfer::{{sf_consult_of={}}}loopback/{to}/{context} aleg",
                                call.call_uuid
                            ),
                        ),
                    ],
                }
            }
            CallCommand::CancelTransfer { .. } => {
                if !call.consulting {
                    return Err("no warm transfer is in progress on this call".into());
                }
                call.consulting = false;
                call.transferring_to = None;
                // As if the agent pressed att_xfer's cancel key: the consult leg goes and
                // FreeSWITCH bridges the agent back to the other party.
                vec![api("uuid_recv_dtmf", format!("{agent_leg} #"))]
            }
            CallCommand::Conference { to, leg_uuid, .. } => {
                if call.conference_leg.is_some() || call.consulting {
                    return Err("the call already has a third party".into());
                }
                let to = dialable(to);
                call.conference_leg = Some(leg_uuid.clone());
                let call_uuid = call.call_uuid.clone();
                table.legs.insert(leg_uuid.clone(), call_uuid.clone());
                vec![
                    // No cancel key: att_xfer's originate would swallow the queued `0`.
                    api("uuid_setvar", format!("{agent_leg} origination_cancel_key")),
                    api(
                        "uuid_broadcast",
                        format!(
                            "{agent_leg} att_xfer::{{origination_uuid={leg_uuid},sf_conference_of={call_uuid}}}loopback/{to}/{context} aleg"
                        ),
                    ),
                    // att_xfer's conference key, read once the target has answered. Queued
                    // only once att_xfer runs: before that the agent's bridge reads the agent's
                    // digits and passes them on to the other party.
                    ApiCall {
                        once_running: Some(RunningApplication {
                            channel: agent_leg.clone(),
                            marker: format!("origination_uuid={leg_uuid}"),
                        }),
                        ..api("uuid_recv_dtmf", format!("{agent_leg} 0"))
                    },
                ]
            }
            CallCommand::Hangup { .. } => {
                // Leaving a three-way: the module joins the other two itself before the agent's
                // leg goes. Left to att_xfer's hang-up hook (`xfer_uuids` on the agent's leg),
                // the join raced the guest's leg, whose `three_way` returns when the agent's leg
                // ends and which FreeSWITCH then hangs up as having run its last application
                // (seen on FreeSWITCH 1.10.12 under load). Once bridged, the guest's leg is no
                // longer executing. The other party originates the new bridge, so that the
                // agent's leg, waiting for its own bridge's peer to leave CS_EXCHANGE_MEDIA,
                // waits for nobody.
                if let (Some(guest), Some(party)) = (&call.conference_leg, &call.party_leg) {
                    if party != &agent_leg {
                        return Ok(vec![
                            api("uuid_setvar", format!("{agent_leg} xfer_uuids")),
                            api("uuid_bridge", format!("{party} {guest}")),
                            ApiCall {
                                may_fail: true,
                                ..api("uuid_kill", agent_leg)
                            },
                        ]);
                    }
                }
                let mut calls = vec![api("uuid_kill", agent_leg.clone())];
                // In a three-way FreeSWITCH bridges the other two when the agent's leg ends.
                if call.transferring_to.is_none()
                    && call.conference_leg.is_none()
                    && call.call_uuid != agent_leg
                {
                    // A two-party call ends for both.
                    calls.push(ApiCall {
                        may_fail: true,
                        ..api("uuid_kill", call.call_uuid.clone())
                    });
                }
                calls
            }
        })
    }
}

/// Click-to-dial: ring the agent's phone (`endpoint`); once answered, route `number` through the
/// org's dialplan context with the org's caller id. `bgapi`: the originate waits for the
/// agent to answer, which must not hold the command thread.
fn originate(
    call_uuid: &str,
    org: &str,
    agent_user_id: &str,
    agent_extension: &str,
    number: &str,
    record_id: Option<&str>,
    dialing: &ClickToDialConfig,
) -> ApiCall {
    let number = dialable(number);
    let mut vars = vec![
        format!("origination_uuid={call_uuid}"),
        format!("sf_agent_user_id={agent_user_id}"),
        format!("sf_agent_extension={agent_extension}"),
        "sf_agent_leg=true".to_string(),
        format!("sf_org={org}"),
        "sf_call_direction=outbound".to_string(),
        format!("sf_other_party={number}"),
        // What the agent's phone shows: who they are calling.
        format!("origination_caller_id_number={number}"),
        format!("originate_timeout={}", dialing.answer_timeout.as_secs()),
        "hangup_after_bridge=true".to_string(),
    ];
    if let Some(id) = record_id {
        vars.push(format!("sf_record_id={id}"));
        vars.push(format!("sf_record_type={}", record_type_for(id)));
    }
    // What the customer sees: the org's number.
    if let Some(cid) = &dialing.caller_id_number {
        vars.push(format!("effective_caller_id_number={cid}"));
    }
    if let Some(name) = &dialing.caller_id_name {
        vars.push(format!("effective_caller_id_name='{name}'"));
    }
    let endpoint = dialing.endpoint.replace("{extension}", agent_extension);
    api(
        "bgapi",
        format!(
            "originate {{{}}}{endpoint} {number} XML {}",
            vars.join(","),
            dialing.context
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(kind_uuid: &str) -> ChannelEvent {
        ChannelEvent {
            unique_id: kind_uuid.into(),
            agent_extension: Some("1001".into()),
            org: Some("acme".into()),
            direction: Some(Direction::Inbound),
            other_party: Some("+14155550100".into()),
            record_id: Some("003xx000004TmiQAAS".into()),
            at_ms: 5,
            ..ChannelEvent::default()
        }
    }

    fn leg(uuid: &str) -> ChannelEvent {
        ChannelEvent {
            unique_id: uuid.into(),
            at_ms: 6,
            ..ChannelEvent::default()
        }
    }

    #[test]
    fn live_states_are_the_calls_not_yet_ended_as_they_are_now() {
        let calls = AgentCalls::default();
        calls.on_event(ChannelEventKind::Progress, &inbound("a"));
        calls.on_event(ChannelEventKind::Progress, &inbound("b"));
        let mut bridge = inbound("a");
        bridge.other_leg = Some("a-agent".into());
        calls.on_event(ChannelEventKind::Bridge, &bridge);
        calls.on_event(ChannelEventKind::Hangup, &leg("b"));
        assert_eq!(
            calls.agent_and_party_legs("a"),
            Some(("a-agent".to_string(), "a".to_string()))
        );
        assert_eq!(calls.agent_and_party_legs("b"), None);
        let live = calls.live_states(9);
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].call_uuid, "a");
        assert_eq!(live[0].state, CallPhase::Answered);
        assert_eq!(live[0].agent_extension.as_deref(), Some("1001"));
        assert_eq!(live[0].at_ms, 9);
    }

    #[test]
    fn an_inbound_call_learns_the_agents_leg_from_the_bridge() {
        let calls = AgentCalls::default();
        let ringing = calls
            .on_event(ChannelEventKind::Progress, &inbound("a"))
            .unwrap();
        assert_eq!(ringing.state, CallPhase::Ringing);
        let hold = CallCommand::Hold {
            call_uuid: "a".into(),
        };
        let dialing = ClickToDialConfig::default();
        assert!(calls
            .plan(&hold, &dialing)
            .unwrap_err()
            .contains("not connected"));
        let mut bridge = inbound("a");
        bridge.other_leg = Some("b".into());
        let answered = calls.on_event(ChannelEventKind::Bridge, &bridge).unwrap();
        assert_eq!(answered.state, CallPhase::Answered);
        assert_eq!(
            calls.plan(&hold, &dialing).unwrap(),
            vec![api("uuid_hold", "b".into())]
        );
        // The hold shows on the agent's leg.
        let held = calls.on_event(ChannelEventKind::Hold, &leg("b")).unwrap();
        assert_eq!(held.state, CallPhase::Held);
        assert_eq!(held.call_uuid, "a");
        assert_eq!(calls.on_event(ChannelEventKind::Hold, &leg("a")), None);
        let resumed = calls.on_event(ChannelEventKind::Unhold, &leg("b")).unwrap();
        assert_eq!(resumed.state, CallPhase::Answered);
        let hangup = CallCommand::Hangup {
            call_uuid: "a".into(),
        };
        let plan = calls.plan(&hangup, &dialing).unwrap();
        assert_eq!(plan[0], api("uuid_kill", "b".into()));
        assert_eq!(plan[1].args, "a");
        assert!(plan[1].may_fail);
        let mut gone = leg("b");
        gone.cause = Some("NORMAL_CLEARING".into());
        let ended = calls.on_event(ChannelEventKind::Hangup, &gone).unwrap();
        assert_eq!(ended.state, CallPhase::Ended);
        assert_eq!(ended.cause.as_deref(), Some("NORMAL_CLEARING"));
        // The caller's leg ending later starts nothing new.
        assert_eq!(
            calls.on_event(ChannelEventKind::Hangup, &inbound("a")),
            None
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn a_blind_transfer_ends_as_transferred() {
        let calls = AgentCalls::default();
        let mut bridge = inbound("a");
        bridge.other_leg = Some("b".into());
        calls.on_event(ChannelEventKind::Bridge, &bridge);
        let plan = calls
            .plan(
                &CallCommand::Transfer {
                    call_uuid: "a".into(),
                    to: "1002".into(),
                    mode: TransferMode::Blind,
                },
                &ClickToDialConfig::default(),
            )
            .unwrap();
        assert_eq!(
            plan,
            vec![api("uuid_transfer", "b -bleg 1002 XML default".into())]
        );
        let done = calls.on_event(ChannelEventKind::Hangup, &leg("b")).unwrap();
        assert_eq!(done.state, CallPhase::Transferred);
        assert_eq!(done.transferred_to.as_deref(), Some("1002"));
    }

    #[test]
    fn click_to_dial_originates_the_agents_phone_then_the_number() {
        let calls = AgentCalls::default();
        let dialing = ClickToDialConfig {
            context: "agents".into(),
            caller_id_number: Some("+14155550000".into()),
            caller_id_name: Some("Acme Support".into()),
            ..ClickToDialConfig::default()
        };
        let plan = calls
            .plan(
                &CallCommand::Dial {
                    call_uuid: "d-1".into(),
                    org: "acme".into(),
                    agent_user_id: "005xx000001SvLbYAK".into(),
                    agent_extension: "1001".into(),
                    number: "+1 (415) 555-0100".into(),
                    record_id: Some("003xx000004TmiQAAS".into()),
                },
                &dialing,
            )
            .unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].command, "bgapi");
        let args = &plan[0].args;
        assert!(
            args.starts_with("originate {origination_uuid=d-1,"),
            "{args}"
        );
        assert!(
            args.ends_with("}user/1001 +14155550100 XML agents"),
            "{args}"
        );
        for var in [
            "sf_agent_leg=true",
            "sf_call_direction=outbound",
            "sf_record_type=Contact",
            "effective_caller_id_number=+14155550000",
            "effective_caller_id_name='Acme Support'",
        ] {
            assert!(args.contains(var), "{var} in {args}");
        }
        // A dial string or variable for a number never gets that far.
        let bad = CallCommand::Dial {
            call_uuid: "d-2".into(),
            org: "acme".into(),
            agent_user_id: "005xx000001SvLbYAK".into(),
            agent_extension: "1001".into(),
            number: "1002,sf_agent_leg=false".into(),
            record_id: None,
        };
        assert!(calls.plan(&bad, &dialing).is_err());
        // The originated leg is the agent's: its events make the call.
        let mut ringing = ChannelEvent {
            unique_id: "d-1".into(),
            agent_user_id: Some("005xx000001SvLbYAK".into()),
            agent_extension: Some("1001".into()),
            agent_leg: true,
            org: Some("acme".into()),
            direction: Some(Direction::Outbound),
            other_party: Some("+14155550100".into()),
            ..ChannelEvent::default()
        };
        assert_eq!(
            calls
                .on_event(ChannelEventKind::Progress, &ringing)
                .unwrap()
                .state,
            CallPhase::Ringing
        );
        ringing.other_leg = Some("cust".into());
        calls.on_event(ChannelEventKind::Answer, &ringing).unwrap();
        let plan = calls
            .plan(
                &CallCommand::Mute {
                    call_uuid: "d-1".into(),
                },
                &dialing,
            )
            .unwrap();
        assert_eq!(
            plan,
            vec![api("uuid_audio", "d-1 start read mute 1".into())]
        );
    }

    #[test]
    fn the_channel_state_is_read_from_uuid_dump() {
        let dump = "Event-Name: CHANNEL_DATA\nChannel-State: CS_EXCHANGE_MEDIA\nChannel-Call-State: ACTIVE\n";
        assert_eq!(channel_state_in_dump(dump), Some(BRIDGE_PEER_STATE));
        assert_eq!(
            channel_state_in_dump("Channel-State: CS_SOFT_EXECUTE\n"),
            Some("CS_SOFT_EXECUTE")
        );
        assert_eq!(channel_state_in_dump("-ERR No such channel!\n"), None);
        assert_eq!(channel_state_in_dump("Channel-State: \n"), None);
    }

    fn answered_click_to_dial(calls: &AgentCalls) {
        let mut agent = ChannelEvent {
            unique_id: "d".into(),
            agent_user_id: Some("005xx000001SvLbYAK".into()),
            agent_extension: Some("1001".into()),
            agent_leg: true,
            org: Some("acme".into()),
            direction: Some(Direction::Outbound),
            other_party: Some("3001".into()),
            ..ChannelEvent::default()
        };
        calls.on_event(ChannelEventKind::Progress, &agent).unwrap();
        agent.other_leg = Some("cust".into());
        calls.on_event(ChannelEventKind::Bridge, &agent).unwrap();
    }

    fn consult_leg(uuid: &str) -> ChannelEvent {
        ChannelEvent {
            unique_id: uuid.into(),
            consult_of: Some("d".into()),
            ..ChannelEvent::default()
        }
    }

    #[test]
    fn a_warm_transfer_consults_then_completes_when_the_agent_hangs_up() {
        let calls = AgentCalls::default();
        answered_click_to_dial(&calls);
        let dialing = ClickToDialConfig::default();
        let warm = CallCommand::Transfer {
            call_uuid: "d".into(),
            to: "3002".into(),
            mode: TransferMode::Warm,
        };
        assert_eq!(
            calls.plan(&warm, &dialing).unwrap(),
            vec![
                api("uuid_setvar", "d origination_cancel_key #".into()),
                api(
                    "uuid_broadcast",
                    "d att_xfer::{sf_consult_of=d}loopback/3002/default aleg".into()
                ),
            ]
        );
        assert!(calls.plan(&warm, &dialing).unwrap_err().contains("already"));
        // The consult leg rings and is bridged to the agent: nothing changes for the console.
        assert_eq!(
            calls.on_event(ChannelEventKind::Progress, &consult_leg("x")),
            None
        );
        let mut bridge = leg("d");
        bridge.other_leg = Some("x".into());
        assert_eq!(calls.on_event(ChannelEventKind::Bridge, &bridge), None);
        // The other party stays the dialled leg, not the consult leg.
        assert_eq!(
            calls.agent_and_party_legs("d"),
            Some(("d".to_string(), "cust".to_string()))
        );
        // Hanging up now hangs up only the agent's leg; FreeSWITCH joins the other two.
        let hangup = CallCommand::Hangup {
            call_uuid: "d".into(),
        };
        assert_eq!(
            calls.plan(&hangup, &dialing).unwrap(),
            vec![api("uuid_kill", "d".into())]
        );
        let done = calls.on_event(ChannelEventKind::Hangup, &leg("d")).unwrap();
        assert_eq!(done.state, CallPhase::Transferred);
        assert_eq!(done.transferred_to.as_deref(), Some("3002"));
        // The consult leg going later (loopback bowing out) starts nothing.
        assert_eq!(
            calls.on_event(ChannelEventKind::Hangup, &consult_leg("x")),
            None
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn a_warm_transfer_cancelled_or_declined_leaves_the_agent_with_the_other_party() {
        let calls = AgentCalls::default();
        answered_click_to_dial(&calls);
        let dialing = ClickToDialConfig::default();
        let cancel = CallCommand::CancelTransfer {
            call_uuid: "d".into(),
        };
        assert!(calls
            .plan(&cancel, &dialing)
            .unwrap_err()
            .contains("no warm"));
        let warm = CallCommand::Transfer {
            call_uuid: "d".into(),
            to: "3002".into(),
            mode: TransferMode::Warm,
        };
        calls.plan(&warm, &dialing).unwrap();
        assert_eq!(
            calls.plan(&cancel, &dialing).unwrap(),
            vec![api("uuid_recv_dtmf", "d #".into())]
        );
        calls.on_event(ChannelEventKind::Hangup, &consult_leg("x"));
        // The target declining (its leg ends unbridged) is the same as a cancel.
        calls.plan(&warm, &dialing).unwrap();
        let back = calls
            .on_event(ChannelEventKind::Hangup, &consult_leg("y"))
            .unwrap();
        assert_eq!(back.state, CallPhase::Answered);
        // Back to a two-party call: hanging up ends it (not "transferred").
        let plan = calls
            .plan(
                &CallCommand::Hangup {
                    call_uuid: "d".into(),
                },
                &dialing,
            )
            .unwrap();
        // The agent's leg runs the bridge to the customer: its end ends the customer's.
        assert_eq!(plan, vec![api("uuid_kill", "d".into())]);
        let ended = calls.on_event(ChannelEventKind::Hangup, &leg("d")).unwrap();
        assert_eq!(ended.state, CallPhase::Ended);
    }

    #[test]
    fn a_three_way_call_adds_a_leg_that_hears_both_and_survives_the_agent() {
        let calls = AgentCalls::default();
        answered_click_to_dial(&calls);
        let dialing = ClickToDialConfig::default();
        let conference = CallCommand::Conference {
            call_uuid: "d".into(),
            to: "3002".into(),
            leg_uuid: "t".into(),
        };
        assert_eq!(
            calls.plan(&conference, &dialing).unwrap(),
            vec![
                api("uuid_setvar", "d origination_cancel_key".into()),
                api(
                    "uuid_broadcast",
                    "d att_xfer::{origination_uuid=t,sf_conference_of=d}loopback/3002/default aleg"
                        .into()
                ),
                ApiCall {
                    once_running: Some(RunningApplication {
                        channel: "d".into(),
                        marker: "origination_uuid=t".into(),
                    }),
                    ..api("uuid_recv_dtmf", "d 0".into())
                },
            ]
        );
        assert!(calls.plan(&conference, &dialing).is_err());
        // Not started (the bridge could not be handed over): it may be asked for again.
        calls.transfer_not_started("d");
        assert_eq!(calls.plan(&conference, &dialing).unwrap().len(), 3);
        // The agent leaves: the other two are bridged (att_xfer's hook told to do nothing),
        // then only the agent's leg goes.
        let plan = calls
            .plan(
                &CallCommand::Hangup {
                    call_uuid: "d".into(),
                },
                &dialing,
            )
            .unwrap();
        assert_eq!(
            plan,
            vec![
                api("uuid_setvar", "d xfer_uuids".into()),
                api("uuid_bridge", "cust t".into()),
                ApiCall {
                    may_fail: true,
                    ..api("uuid_kill", "d".into())
                },
            ]
        );
        // Had the third party left first, the call would be two-party again.
        let calls = AgentCalls::default();
        answered_click_to_dial(&calls);
        calls.plan(&conference, &dialing).unwrap();
        assert_eq!(calls.on_event(ChannelEventKind::Hangup, &leg("t")), None);
        let plan = calls
            .plan(
                &CallCommand::Hangup {
                    call_uuid: "d".into(),
                },
                &dialing,
            )
            .unwrap();
        // The agent's leg runs the bridge to the customer: its end ends the customer's.
        assert_eq!(plan, vec![api("uuid_kill", "d".into())]);
    }
}
