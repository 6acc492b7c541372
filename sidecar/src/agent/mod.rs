//! The agent's side of the sidecar beyond screen pops: call state, call control, presence and
//! wrap-up for the consoles on `/agent` (protocol: docs/agent-protocol.md). The sidecar decides
//! who may do what; the module carries commands out inside FreeSWITCH (`switch_link`).

pub mod calls;
pub mod commands;
pub mod presence;
pub mod switch_link;
pub mod wrap_up;

use std::path::Path;
use std::sync::Arc;

use natterbox_common::call_control::CallState;
use tokio::sync::broadcast;

use crate::pops::AgentIdentity;
use calls::CallBoard;
use presence::PresenceStore;
use switch_link::SwitchLink;

/// Frames for agents' consoles queued per connection before a slow one misses some (it then
/// gets every live call again).
const BUS_CAPACITY: usize = 4096;

/// A frame for every console of one agent.
#[derive(Clone, Debug)]
pub struct AgentFrame {
    /// The org whose call or agent the frame is about; `None` for the presence of an agent with
    /// no org.
    pub org: Option<String>,
    pub user_id: Option<String>,
    pub extension: Option<String>,
    pub text: Arc<str>,
}

impl AgentFrame {
    /// Whether the frame is this agent's: theirs by user id or extension, and, for an agent with
    /// an org, that org's (another org's agent on the same extension never sees it). An agent
    /// with no org is matched by user id and extension alone, as before orgs were named.
    pub fn is_for(&self, agent: &AgentIdentity) -> bool {
        if agent.org.is_some() && self.org != agent.org {
            return false;
        }
        self.user_id.as_deref() == Some(agent.user_id.as_str())
            || (self.extension.is_some() && self.extension == agent.extension)
    }
}

pub struct AgentDesk {
    pub link: SwitchLink,
    pub calls: CallBoard,
    pub presence: PresenceStore,
    bus: broadcast::Sender<AgentFrame>,
}

impl AgentDesk {
    /// `state_dir`: where presence is kept across restarts.
    pub fn new(state_dir: &Path) -> AgentDesk {
        AgentDesk {
            link: SwitchLink::default(),
            calls: CallBoard::default(),
            presence: PresenceStore::load(state_dir.join("presence.json")),
            bus: broadcast::channel(BUS_CAPACITY).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AgentFrame> {
        self.bus.subscribe()
    }

    pub fn send(&self, frame: AgentFrame) {
        // No console connected: nothing to do.
        let _ = self.bus.send(frame);
    }

    /// A call state from the module: kept, and shown on the agent's consoles.
    pub fn on_call_state(&self, state: CallState) {
        let frame = AgentFrame {
            org: Some(state.org.clone()),
            user_id: state.agent_user_id.clone(),
            extension: state.agent_extension.clone(),
            text: calls::call_frame(&state).into(),
        };
        tracing::debug!(call_uuid = %state.call_uuid, state = ?state.state, "agent call state");
        self.calls.update(state);
        self.send(frame);
    }
}
