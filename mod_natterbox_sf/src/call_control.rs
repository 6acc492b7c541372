//! Agents' call control inside FreeSWITCH. The sidecar sends commands it has authorised over the
//! module↔sidecar socket; a thread of the module's own (never FreeSWITCH's event thread, never a
//! call's thread) turns each into FreeSWITCH API commands (`originate`, `uuid_hold`, …) and runs
//! them with `switch_api_execute`, then answers. Channel events of agents' calls come back as
//! call states for their consoles. Presence from the sidecar is kept for the dialplan.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use natterbox_common::call_control::{CallCommand, TransferMode};
use natterbox_common::wire::{Direction, Message};
use natterbox_engine::agent_calls::{ChannelEvent, ChannelEventKind};
use natterbox_engine::outbox::now_ms;

use crate::ffi::api;
use crate::ffi::event::EventRef;
use crate::ffi::log::{self, Level};
use crate::module::{self, ModuleState};

/// The call-control thread; stopped and joined at shutdown.
pub struct CommandThread {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl CommandThread {
    pub fn start(inbox: Receiver<Message>) -> Option<CommandThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sf-call-control".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    match inbox.recv_timeout(Duration::from_millis(200)) {
                        Ok(message) => {
                            let _ = std::panic::catch_unwind(|| handle(message));
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .ok()?;
        Some(CommandThread { stop, handle })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

fn handle(message: Message) {
    let Some(state) = module::state() else { return };
    match message {
        Message::SwitchCommand { id, command } => {
            let error = execute(&state, &command).err();
            match &error {
                None => log::log(
                    Level::Info,
                    &format!(
                        "mod_natterbox_sf: agent command {} on {}: done",
                        command.name(),
                        command.call_uuid()
                    ),
                ),
                Some(e) => log::log(
                    Level::Warning,
                    &format!(
                        "mod_natterbox_sf: agent command {} on {}: {e}",
                        command.name(),
                        command.call_uuid()
                    ),
                ),
            }
            state.engine.outbox().switch_result(id, error);
        }
        Message::Presence(presence) => state.engine.presence().set(presence),
        Message::Invalidate {
            org,
            object,
            ids,
            extent,
        } => crate::fleet_events::invalidate_changed(&state.engine, &org, &object, &ids, extent),
        _ => {}
    }
}

fn execute(state: &ModuleState, command: &CallCommand) -> Result<(), String> {
    let calls = state.engine.agent_calls();
    let org_name = match command {
        CallCommand::Dial { org, .. } => Some(org.clone()),
        other => calls.org_of(other.call_uuid()),
    };
    let snapshot = state.engine.snapshot();
    let dialing = org_name
        .as_deref()
        .and_then(|name| snapshot.config.org(name))
        .map(|org| org.click_to_dial.clone())
        .unwrap_or_default();
    let plan = match command {
        CallCommand::BridgeRouted {
            call_uuid,
            agent_user_id,
            agent_extension,
        } => {
            command.check()?;
            let org = state.omni_parking.org_of(call_uuid).ok_or_else(|| {
                format!("call {call_uuid} is not waiting at an Omni-Channel routing point")
            })?;
            let context = snapshot
                .config
                .org(&org)
                .map(|o| o.click_to_dial.context.clone())
                .unwrap_or_else(|| "default".into());
            crate::omni_route::bridge_plan(
                state,
                call_uuid,
                agent_user_id,
                agent_extension,
                &context,
            )?
        }
        _ => calls.plan(command, &dialing)?,
    };
    let runs_att_xfer = matches!(
        command,
        CallCommand::Transfer {
            mode: TransferMode::Warm,
            ..
        } | CallCommand::Conference { .. }
    );
    if runs_att_xfer {
        // So that neither the agent's leg, hung up to complete a transfer, nor the other
        // party's, when att_xfer's consult bridge ends, depends on who FreeSWITCH runs first
        // (bridge_holder.rs).
        let call_uuid = command.call_uuid();
        if let Some((agent_leg, party_leg)) = calls.agent_and_party_legs(call_uuid) {
            if let Err(e) = crate::bridge_holder::give_bridge_to_party(&agent_leg, &party_leg) {
                calls.transfer_not_started(call_uuid);
                return Err(e);
            }
        }
    }
    for call in plan {
        if let Some(running) = &call.once_running {
            crate::application_wait::wait_until_running(running)?;
        }
        let output = api::execute(call.command, &call.args);
        let text = output.text.trim();
        let failed = !output.ran || text.starts_with("-ERR") || text.starts_with("-USAGE");
        if failed && !call.may_fail {
            return Err(if text.is_empty() {
                format!("{} failed", call.command)
            } else {
                text.to_string()
            });
        }
    }
    let muted = match command {
        CallCommand::Mute { .. } => Some(true),
        CallCommand::Unmute { .. } => Some(false),
        _ => None,
    };
    if let Some(muted) = muted {
        if let Some(changed) = calls.set_muted(command.call_uuid(), muted, now_ms()) {
            state.engine.outbox().call_state(changed);
        }
    }
    Ok(())
}

/// On FreeSWITCH's event thread: read the headers, update the table, queue the report. No
/// waiting, no I/O.
pub fn on_channel_event(kind: ChannelEventKind, event: &mut EventRef<'_>) {
    let Some(state) = module::state() else { return };
    let Some(unique_id) = event.header("Unique-ID") else {
        return;
    };
    let var = |event: &mut EventRef<'_>, name: &str| {
        event
            .header(&format!("variable_{name}"))
            .filter(|v| !v.is_empty())
    };
    let agent_user_id = var(event, "sf_agent_user_id");
    let agent_extension = var(event, "sf_agent_extension");
    let org = if agent_user_id.is_some() || agent_extension.is_some() {
        let snapshot = state.engine.snapshot();
        let named = var(event, "sf_lookup_org").or_else(|| var(event, "sf_org"));
        snapshot
            .config
            .resolve_org(named.as_deref())
            .map(|o| o.name.clone())
    } else {
        None
    };
    let direction = var(event, "sf_call_direction")
        .and_then(|d| Direction::parse(&d))
        .or(Some(Direction::Inbound));
    let other_party = var(event, "sf_other_party")
        .or_else(|| var(event, "sf_caller_e164"))
        .or_else(|| event.header("Caller-Caller-ID-Number"));
    let channel_event = ChannelEvent {
        other_leg: event
            .header("Other-Leg-Unique-ID")
            .or_else(|| event.header("Bridge-B-Unique-ID"))
            .filter(|o| *o != unique_id),
        agent_leg: var(event, "sf_agent_leg").as_deref() == Some("true"),
        record_id: var(event, "sf_record_id"),
        cause: event.header("Hangup-Cause"),
        consult_of: var(event, "sf_consult_of"),
        at_ms: now_ms(),
        unique_id,
        agent_user_id,
        agent_extension,
        org,
        direction,
        other_party,
    };
    if let Some(changed) = state.engine.agent_calls().on_event(kind, &channel_event) {
        state.engine.outbox().call_state(changed);
    }
}
