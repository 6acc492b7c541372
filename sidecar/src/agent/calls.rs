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

fn is_agents(state: &CallState, agent: &AgentIdentity) -> bool {
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
