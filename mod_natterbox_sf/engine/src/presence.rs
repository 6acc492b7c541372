//! Agents' presence as the sidecar reports it (the console sets it), for the dialplan:
//! `sf presence [org=<org>] agent=<user id or extension>` and the `sf_presence` application
//! read it here.
//!
//! Per org: two orgs on one host may each have an agent on extension 1001 (or, in a test org,
//! the same user id); each org's dialplan reads its own. An agent with no org (the agents file
//! names none) is seen by every org's dialplan, as before presence was per org, unless the org
//! has an agent of its own under that id or extension.

use std::collections::HashMap;

use natterbox_common::call_control::{AgentPresence, PresenceState};

#[derive(Default)]
pub struct PresenceBoard {
    inner: parking_lot::Mutex<Board>,
}

/// (org, user id); the org is `None` for an agent with no org.
type AgentKey = (Option<String>, String);

#[derive(Default)]
struct Board {
    by_user: HashMap<AgentKey, AgentPresence>,
    /// (org, extension) → user id.
    by_extension: HashMap<AgentKey, String>,
}

impl Board {
    fn state_in(&self, org: Option<&str>, who: &str) -> Option<PresenceState> {
        let org = org.map(str::to_string);
        let user = self
            .by_extension
            .get(&(org.clone(), who.to_string()))
            .map(String::as_str)
            .unwrap_or(who);
        self.by_user.get(&(org, user.to_string())).map(|p| p.state)
    }
}

impl PresenceBoard {
    pub fn set(&self, presence: AgentPresence) {
        let mut board = self.inner.lock();
        let key = (presence.org.clone(), presence.user_id.clone());
        if let Some(old) = board.by_user.get(&key) {
            if let Some(ext) = old.extension.clone() {
                board.by_extension.remove(&(presence.org.clone(), ext));
            }
        }
        if let Some(ext) = &presence.extension {
            board.by_extension.insert(
                (presence.org.clone(), ext.clone()),
                presence.user_id.clone(),
            );
        }
        board.by_user.insert(key, presence);
    }

    /// The state of `org`'s agent with this Salesforce user id or extension, else of an agent
    /// with no org; `Offline` for an agent the sidecar never reported.
    pub fn state_of(&self, org: &str, who: &str) -> PresenceState {
        let board = self.inner.lock();
        board
            .state_in(Some(org), who)
            .or_else(|| board.state_in(None, who))
            .unwrap_or(PresenceState::Offline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(org: Option<&str>, user: &str, ext: &str, state: PresenceState) -> AgentPresence {
        AgentPresence {
            org: org.map(str::to_string),
            user_id: user.into(),
            extension: Some(ext.into()),
            state,
            since_ms: 1,
        }
    }

    #[test]
    fn found_by_user_or_extension_and_offline_when_unknown() {
        let board = PresenceBoard::default();
        assert_eq!(board.state_of("acme", "1001"), PresenceState::Offline);
        board.set(presence(
            None,
            "005xx000001SvLbYAK",
            "1001",
            PresenceState::Away,
        ));
        assert_eq!(board.state_of("acme", "1001"), PresenceState::Away);
        assert_eq!(
            board.state_of("globex", "005xx000001SvLbYAK"),
            PresenceState::Away
        );
        board.set(presence(
            None,
            "005xx000001SvLbYAK",
            "1002",
            PresenceState::Available,
        ));
        assert_eq!(board.state_of("acme", "1001"), PresenceState::Offline);
        assert_eq!(board.state_of("acme", "1002"), PresenceState::Available);
    }

    #[test]
    fn each_org_reads_its_own_agent_on_a_shared_extension() {
        let board = PresenceBoard::default();
        board.set(presence(
            Some("acme"),
            "005xx000001AcmeAAA",
            "1001",
            PresenceState::Away,
        ));
        assert_eq!(board.state_of("acme", "1001"), PresenceState::Away);
        assert_eq!(board.state_of("globex", "1001"), PresenceState::Offline);
        assert_eq!(
            board.state_of("globex", "005xx000001AcmeAAA"),
            PresenceState::Offline
        );
        board.set(presence(
            Some("globex"),
            "005xx000001GlobAAA",
            "1001",
            PresenceState::Available,
        ));
        assert_eq!(board.state_of("acme", "1001"), PresenceState::Away);
        assert_eq!(board.state_of("globex", "1001"), PresenceState::Available);
        // The same user id in two orgs (test orgs can share ids) is two agents too.
        board.set(presence(
            Some("globex"),
            "005xx000001AcmeAAA",
            "2002",
            PresenceState::Busy,
        ));
        assert_eq!(
            board.state_of("acme", "005xx000001AcmeAAA"),
            PresenceState::Away
        );
        assert_eq!(
            board.state_of("globex", "005xx000001AcmeAAA"),
            PresenceState::Busy
        );
        // An org's own agent is read before an agent with no org on the same extension.
        board.set(presence(
            None,
            "005xx000001NoOrgAA",
            "1001",
            PresenceState::Busy,
        ));
        assert_eq!(board.state_of("acme", "1001"), PresenceState::Away);
        assert_eq!(board.state_of("initech", "1001"), PresenceState::Busy);
    }
}
