//! Agents' calls as the module reports them: whose each call is (the authorisation of every
//! command rests on this), its state for a console that connects, and recently ended calls for
//! wrap-up.

use std::collections::HashMap;

use natterbox_common::call_control::{CallPhase, CallState};

use crate::backoff::now_ms;
use crate::pops::AgentIdentity;

use super::commands::CommandError;

/// How long after its end a call can still be wrapped up.
pub const WRAP_UP_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Most calls remembered (live and recently ended); the oldest ended go first.
const MAX_CALLS: usize = 100_000;

pub fn call_frame(state: &CallState) -> String {
    let mut value = serde_json::to_value(state).expect("call states serialize");
    if let Some(fields) = value.as_object_mut() {
        fields.insert("type".into(), "call".into());
    }
    value.to_string()
}

/// Whether the call is the agent's: by user id or extension, and in the agent's org when the
/// agent has one, so org B's call on extension 1001 is never org A's agent 1001's to control.
fn is_agents(state: &CallState, agent: &AgentIdentity) -> bool {
    if agent.org.as_deref().is_some_and(|org| org != state.org) {
        return false;
    }
    state.agent_user_id.as_deref() == Some(agent.user_id.as_str())
        || (state.agent_extension.is_some() && state.agent_extension == agent.extension)
}

#[derive(Default)]
pub struct CallBoard {
    inner: std::sync::Mutex<HashMap<String, (CallState, u64)>>,
}

impl CallBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (CallState, u64)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn update(&self, state: CallState) {
        let now = now_ms();
        let mut calls = self.lock();
        // A state from before the one kept (events crossing) must not reopen an ended call.
        if let Some((old, _)) = calls.get(&state.call_uuid) {
            if old.state.is_final() && !state.state.is_final() {
                return;
            }
        }
        calls.insert(state.call_uuid.clone(), (state, now));
        if calls.len() > MAX_CALLS {
            calls.retain(|_, (s, at)| !s.state.is_final() || now - *at < WRAP_UP_WINDOW_MS);
        }
    }

    /// The agent's live calls, oldest first.
    pub fn live_for(&self, agent: &AgentIdentity) -> Vec<CallState> {
        let mut live: Vec<CallState> = self
            .lock()
            .values()
            .filter(|(s, _)| !s.state.is_final() && is_agents(s, agent))
            .map(|(s, _)| s.clone())
            .collect();
        live.sort_by_key(|s| s.at_ms);
        live
    }

    /// The agent's live call, or why not: 404 when no such call is live, 403 when it is
    /// someone else's.
    pub fn live_call(
        &self,
        agent: &AgentIdentity,
        call_uuid: &str,
    ) -> Result<CallState, CommandError> {
        match self.lock().get(call_uuid) {
            Some((state, _)) if !state.state.is_final() => {
                if is_agents(state, agent) {
                    Ok(state.clone())
                } else {
                    Err(CommandError::not_your_call(call_uuid))
                }
            }
            _ => Err(CommandError::no_such_call(call_uuid)),
        }
    }

    /// A call of the agent's, live or ended within the wrap-up window.
    pub fn wrappable_call(
        &self,
        agent: &AgentIdentity,
        call_uuid: &str,
    ) -> Result<CallState, CommandError> {
        let now = now_ms();
        match self.lock().get(call_uuid) {
            Some((state, at)) if !state.state.is_final() || now - at < WRAP_UP_WINDOW_MS => {
                if is_agents(state, agent) {
                    Ok(state.clone())
                } else if !state.state.is_final() {
                    Err(CommandError::not_your_call(call_uuid))
                } else {
                    Err(CommandError::no_such_call(call_uuid))
                }
            }
            _ => Err(CommandError::no_such_call(call_uuid)),
        }
    }

    pub fn phase(&self, call_uuid: &str) -> Option<CallPhase> {
        self.lock().get(call_uuid).map(|(s, _)| s.state)
    }
}

#[cfg(test)]
mod tests {
    use natterbox_common::wire::Direction;

    use super::*;
    use crate::agent::AgentFrame;

    fn agent(org: Option<&str>, user_id: &str) -> AgentIdentity {
        AgentIdentity {
            user_id: user_id.into(),
            extension: Some("1001".into()),
            org: org.map(str::to_string),
        }
    }

    fn call(call_uuid: &str, org: &str) -> CallState {
        CallState {
            call_uuid: call_uuid.into(),
            state: CallPhase::Answered,
            direction: Direction::Inbound,
            other_party: "+14155550123".into(),
            record_id: None,
            org: org.into(),
            agent_user_id: None,
            agent_extension: Some("1001".into()),
            muted: false,
            cause: None,
            transferred_to: None,
            at_ms: 1,
        }
    }

    #[test]
    fn another_orgs_call_on_the_same_extension_is_not_the_agents() {
        let board = CallBoard::default();
        board.update(call("g-1", "globex"));
        board.update(call("a-1", "acme"));
        let acme = agent(Some("acme"), "005A");
        let globex = agent(Some("globex"), "005G");
        assert_eq!(board.live_call(&acme, "g-1").unwrap_err().code, 403);
        assert_eq!(board.wrappable_call(&acme, "g-1").unwrap_err().code, 403);
        assert!(board.live_call(&acme, "a-1").is_ok());
        assert_eq!(board.live_call(&globex, "a-1").unwrap_err().code, 403);
        let live: Vec<String> = board
            .live_for(&acme)
            .into_iter()
            .map(|c| c.call_uuid)
            .collect();
        assert_eq!(live, ["a-1"]);
        // An agent with no org: by extension alone, as before orgs were named.
        assert_eq!(board.live_for(&agent(None, "005N")).len(), 2);
        // An ended call of the other org is not there to wrap up at all.
        board.update(CallState {
            state: CallPhase::Ended,
            ..call("g-1", "globex")
        });
        assert_eq!(board.wrappable_call(&acme, "g-1").unwrap_err().code, 404);
        assert!(board.wrappable_call(&globex, "g-1").is_ok());
    }

    #[test]
    fn frames_reach_only_the_agents_of_their_org() {
        let frame = |org: Option<&str>| AgentFrame {
            org: org.map(str::to_string),
            user_id: None,
            extension: Some("1001".into()),
            text: "{}".into(),
        };
        let acme = agent(Some("acme"), "005A");
        assert!(frame(Some("acme")).is_for(&acme));
        assert!(!frame(Some("globex")).is_for(&acme));
        // The presence of an agent with no org is not an org agent's.
        assert!(!frame(None).is_for(&acme));
        assert!(frame(Some("globex")).is_for(&agent(None, "005N")));
    }
}
