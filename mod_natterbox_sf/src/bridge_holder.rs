//! Before att_xfer (a warm transfer or a three-way): the other party, not the agent, holds the
//! call's bridge. Two races of FreeSWITCH 1.10.12 end only this way.
//!
//! The other party's leg: while att_xfer consults, the agent's leg runs a second bridge (to the
//! consult leg) inside the one with the other party. When that inner bridge ends (the
//! conference key, a cancel, the target hanging up) FreeSWITCH clears the agent's CF_BRIDGED,
//! which ends the other party's side of the outer bridge too. As that bridge's peer
//! (CS_EXCHANGE_MEDIA) the other party is then hung up at once (`audio_bridge_on_exchange_media`,
//! NORMAL_CLEARING) unless att_xfer's `uuid_bridge agent party` has marked it first: a loaded
//! machine lost a three-way call that way. As the bridge's originator it waits for the agent's
//! leg to leave CS_EXCHANGE_MEDIA, which only that `uuid_bridge` does, after marking both.
//!
//! The agent's leg: the channel that originated a bridge (for a click-to-dial, the agent's leg,
//! which ran the dialplan's `bridge`) waits, once its own side of the bridge ends, until its peer
//! leaves CS_EXCHANGE_MEDIA (`switch_ivr_multi_threaded_bridge`). When the agent
//! completes a warm transfer by hanging up, att_xfer bridges the consult leg to the other party
//! with the other party as the peer (CS_EXCHANGE_MEDIA again), so the agent's leg, hung up but
//! still in that wait, stayed up (no BYE) until the other party's call with the target ended,
//! whenever att_xfer's bridge came first (it usually does: att_xfer's application on the agent's
//! leg looks at the hangup only every 100 ms). With the other party as the originator the agent's
//! leg waits for nobody.

use std::time::{Duration, Instant};

use natterbox_engine::agent_calls::{channel_state_in_dump, BRIDGE_PEER_STATE};

use crate::ffi::api;

/// How long the re-bridge may take before the transfer is refused.
const SETTLE_DEADLINE: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Makes `party_leg` the originator of its bridge with `agent_leg` (`uuid_bridge party agent`)
/// unless the agent's leg already is the peer, and waits until the agent's leg is the peer.
pub fn give_bridge_to_party(agent_leg: &str, party_leg: &str) -> Result<(), String> {
    if channel_state(agent_leg).as_deref() == Some(BRIDGE_PEER_STATE) {
        return Ok(());
    }
    let output = api::execute("uuid_bridge", &format!("{party_leg} {agent_leg}"));
    let text = output.text.trim();
    if !output.ran || text.starts_with("-ERR") || text.starts_with("-USAGE") {
        return Err(format!("uuid_bridge failed: {text}"));
    }
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        match channel_state(agent_leg) {
            Some(state) if state == BRIDGE_PEER_STATE => return Ok(()),
            None => return Err("the agent's leg is gone".into()),
            Some(_) if Instant::now() >= deadline => {
                return Err("the call's bridge did not settle in time".into())
            }
            Some(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// The channel's state (`Channel-State` in `uuid_dump`), or None when there is no such channel.
fn channel_state(uuid: &str) -> Option<String> {
    let output = api::execute("uuid_dump", uuid);
    if !output.ran {
        return None;
    }
    channel_state_in_dump(&output.text).map(str::to_string)
}
