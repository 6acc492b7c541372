//! Agents' presence as the sidecar reports it (the console sets it), for the dialplan:
//! `sf presence <user id or extension>` and the `sf_presence` application read it here.

use std::collections::HashMap;

use natterbox_common::call_control::{AgentPresence, PresenceState};

#[derive(Default)]
pub struct PresenceBoard {
    inner: parking_lot::Mutex<Board>,
}

#[derive(Default)]
struct Board {
    by_user: HashMap<String, AgentPresence>,
    /// Extension → user id.
    by_extension: HashMap<String, String>,
}

impl PresenceBoard {
    pub fn set(&self, presence: AgentPresence) {
        let mut board = self.inner.lock();
        if let Some(old) = board.by_user.get(&presence.user_id) {
            if let Some(ext) = old.extension.clone() {
                board.by_extension.remove(&ext);
            }
        }
        if let Some(ext) = &presence.extension {
            board
                .by_extension
                .insert(ext.clone(), presence.user_id.clone());
        }
        board.by_user.insert(presence.user_id.clone(), presence);
    }

    /// The agent's state by Salesforce user id or extension; `Offline` for an agent the sidecar
    /// never reported.
    pub fn state_of(&self, who: &str) -> PresenceState {
        let board = self.inner.lock();
        let user = board
            .by_extension
            .get(who)
            .map(String::as_str)
            .unwrap_or(who);
        board
            .by_user
            .get(user)
            .map_or(PresenceState::Offline, |p| p.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_by_user_or_extension_and_offline_when_unknown() {
        let board = PresenceBoard::default();
        assert_eq!(board.state_of("1001"), PresenceState::Offline);
        board.set(AgentPresence {
            user_id: "005xx000001SvLbYAK".into(),
            extension: Some("1001".into()),
            state: PresenceState::Away,
            since_ms: 1,
        });
        assert_eq!(board.state_of("1001"), PresenceState::Away);
        assert_eq!(board.state_of("005xx000001SvLbYAK"), PresenceState::Away);
        board.set(AgentPresence {
            user_id: "005xx000001SvLbYAK".into(),
            extension: Some("1002".into()),
            state: PresenceState::Available,
            since_ms: 2,
        });
        assert_eq!(board.state_of("1001"), PresenceState::Offline);
        assert_eq!(board.state_of("1002"), PresenceState::Available);
    }
}
