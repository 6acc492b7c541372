//! Agents' presence (Available, Busy, Away, Offline): set from their consoles, kept across
//! restarts in `presence.json` next to the outbox, pushed to the module for the dialplan. Kept
//! per (org, user id): an agent's presence carries the agent's org (none for an agent the
//! agents file gives no org), so two orgs' agents never share one.

use std::collections::HashMap;
use std::path::PathBuf;

use natterbox_common::call_control::{AgentPresence, PresenceState};

use crate::backoff::now_ms;
use crate::pops::AgentIdentity;

/// (org, user id).
type AgentKey = (Option<String>, String);

fn key_of(presence: &AgentPresence) -> AgentKey {
    (presence.org.clone(), presence.user_id.clone())
}

pub struct PresenceStore {
    path: PathBuf,
    agents: std::sync::Mutex<HashMap<AgentKey, AgentPresence>>,
}

impl PresenceStore {
    /// What was saved; nothing (everyone Offline) when the file is missing or unreadable.
    pub fn load(path: PathBuf) -> PresenceStore {
        let agents = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Vec<AgentPresence>>(&bytes).ok())
            .map(|list| {
                list.into_iter()
                    .map(|p| (key_of(&p), p))
                    .collect::<HashMap<_, _>>()
            })
            .unwrap_or_default();
        PresenceStore {
            path,
            agents: std::sync::Mutex::new(agents),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentKey, AgentPresence>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, agent: &AgentIdentity) -> AgentPresence {
        self.lock()
            .get(&(agent.org.clone(), agent.user_id.clone()))
            .cloned()
            .unwrap_or(AgentPresence {
                org: agent.org.clone(),
                user_id: agent.user_id.clone(),
                extension: agent.extension.clone(),
                state: PresenceState::Offline,
                since_ms: 0,
            })
    }

    pub fn all(&self) -> Vec<AgentPresence> {
        self.lock().values().cloned().collect()
    }

    /// Sets and saves the agent's presence; returns the new value.
    pub fn set(
        &self,
        agent: &AgentIdentity,
        state: PresenceState,
    ) -> Result<AgentPresence, String> {
        let presence = AgentPresence {
            org: agent.org.clone(),
            user_id: agent.user_id.clone(),
            extension: agent.extension.clone(),
            state,
            since_ms: now_ms(),
        };
        let mut agents = self.lock();
        agents.insert(key_of(&presence), presence.clone());
        let list: Vec<&AgentPresence> = agents.values().collect();
        let bytes = serde_json::to_vec(&list).expect("presence serializes");
        natterbox_common::atomic_file::write(&self.path, &bytes, None)
            .map_err(|e| format!("saving presence to {}: {e}", self.path.display()))?;
        Ok(presence)
    }
}

impl PresenceStore {
    /// A presence another host's sidecar set (fleet mode): kept (and saved) unless what is here
    /// is newer. Returns whether it changed anything.
    pub fn apply_from_fleet(&self, presence: AgentPresence) -> Result<bool, String> {
        let mut agents = self.lock();
        if agents
            .get(&key_of(&presence))
            .is_some_and(|p| p.since_ms >= presence.since_ms)
        {
            return Ok(false);
        }
        agents.insert(key_of(&presence), presence);
        let list: Vec<&AgentPresence> = agents.values().collect();
        let bytes = serde_json::to_vec(&list).expect("presence serializes");
        natterbox_common::atomic_file::write(&self.path, &bytes, None)
            .map_err(|e| format!("saving presence to {}: {e}", self.path.display()))?;
        Ok(true)
    }
}

pub fn presence_frame(presence: &AgentPresence) -> String {
    serde_json::json!({
        "type": "presence",
        "user_id": presence.user_id,
        "org": presence.org,
        "state": presence.state.as_str(),
        "since_ms": presence.since_ms,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_presence_wins_whichever_host_set_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = PresenceStore::load(dir.path().join("presence.json"));
        let agent = AgentIdentity {
            user_id: "005A".into(),
            extension: Some("1001".into()),
            org: None,
        };
        let local = store.set(&agent, PresenceState::Available).unwrap();
        let older = AgentPresence {
            state: PresenceState::Away,
            since_ms: local.since_ms - 1,
            ..local.clone()
        };
        assert!(!store.apply_from_fleet(older).unwrap());
        assert_eq!(store.get(&agent).state, PresenceState::Available);
        let newer = AgentPresence {
            state: PresenceState::Busy,
            since_ms: local.since_ms + 1,
            ..local
        };
        assert!(store.apply_from_fleet(newer).unwrap());
        // Kept across a restart, as a local change is.
        let reloaded = PresenceStore::load(dir.path().join("presence.json"));
        assert_eq!(reloaded.get(&agent).state, PresenceState::Busy);
    }
}
