//! Call control between the sidecar (which takes an agent's command from the console) and the
//! module (which carries it out inside FreeSWITCH): the commands, the call states the module
//! reports back, presence, and the checks on every field that ends up in a FreeSWITCH command.
//! Both sides check with these same functions; the console's protocol is docs/agent-protocol.md.

use serde::{Deserialize, Serialize};

use crate::wire::Direction;

/// How a transfer hands the other party on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// At once; the agent's part ends.
    Blind,
    /// The agent talks to the target first (FreeSWITCH's `att_xfer`).
    Warm,
}

/// What the sidecar asks the module to do, always on a call it has checked is the agent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CallCommand {
    /// Click-to-dial: ring the agent's extension, then connect it to `number`. `call_uuid` is
    /// chosen by the sidecar so the console knows the call before FreeSWITCH reports it.
    Dial {
        call_uuid: String,
        org: String,
        agent_user_id: String,
        agent_extension: String,
        number: String,
        record_id: Option<String>,
    },
    Hold {
        call_uuid: String,
    },
    Resume {
        call_uuid: String,
    },
    Mute {
        call_uuid: String,
    },
    Unmute {
        call_uuid: String,
    },
    Transfer {
        call_uuid: String,
        to: String,
        mode: TransferMode,
    },
    /// Ends a warm transfer's consultation: the target's leg goes, the agent is back with the
    /// other party.
    CancelTransfer {
        call_uuid: String,
    },
    /// Three-way: `to` joins the call. `leg_uuid` is the new leg's id (chosen by the sidecar).
    Conference {
        call_uuid: String,
        to: String,
        leg_uuid: String,
    },
    Hangup {
        call_uuid: String,
    },
    /// Omni-Channel: the call parked at a routing point (`sf_omni_route`) goes to the extension
    /// of the agent Salesforce offered it to (the sidecar checked the offer).
    BridgeRouted {
        call_uuid: String,
        agent_user_id: String,
        agent_extension: String,
    },
}

impl CallCommand {
    pub fn call_uuid(&self) -> &str {
        match self {
            CallCommand::Dial { call_uuid, .. }
            | CallCommand::Hold { call_uuid }
            | CallCommand::Resume { call_uuid }
            | CallCommand::Mute { call_uuid }
            | CallCommand::Unmute { call_uuid }
            | CallCommand::Transfer { call_uuid, .. }
            | CallCommand::CancelTransfer { call_uuid }
            | CallCommand::Conference { call_uuid, .. }
            | CallCommand::Hangup { call_uuid }
            | CallCommand::BridgeRouted { call_uuid, .. } => call_uuid,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CallCommand::Dial { .. } => "dial",
            CallCommand::Hold { .. } => "hold",
            CallCommand::Resume { .. } => "resume",
            CallCommand::Mute { .. } => "mute",
            CallCommand::Unmute { .. } => "unmute",
            CallCommand::Transfer { .. } => "transfer",
            CallCommand::CancelTransfer { .. } => "cancel_transfer",
            CallCommand::Conference { .. } => "conference",
            CallCommand::Hangup { .. } => "hangup",
            CallCommand::BridgeRouted { .. } => "bridge_routed",
        }
    }

    /// Every field that reaches a FreeSWITCH command, checked again on the module's side.
    pub fn check(&self) -> Result<(), String> {
        check_call_uuid(self.call_uuid())?;
        match self {
            CallCommand::Dial {
                org,
                agent_user_id,
                agent_extension,
                number,
                record_id,
                ..
            } => {
                check_org_name(org)?;
                check_user_id(agent_user_id)?;
                check_extension(agent_extension).map_err(|e| format!("agent extension: {e}"))?;
                check_dial_target(number).map_err(|e| format!("number: {e}"))?;
                if let Some(id) = record_id {
                    check_record_id(id)?;
                }
            }
            CallCommand::Transfer { to, .. } => {
                check_dial_target(to).map_err(|e| format!("to: {e}"))?;
            }
            CallCommand::Conference { to, leg_uuid, .. } => {
                check_dial_target(to).map_err(|e| format!("to: {e}"))?;
                check_call_uuid(leg_uuid)?;
            }
            CallCommand::BridgeRouted {
                agent_user_id,
                agent_extension,
                ..
            } => {
                check_user_id(agent_user_id)?;
                check_extension(agent_extension).map_err(|e| format!("agent extension: {e}"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where a call is, as the console sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    Ringing,
    Answered,
    Held,
    Transferred,
    Ended,
}

impl CallPhase {
    /// After these the call is no longer the agent's to control.
    pub fn is_final(self) -> bool {
        matches!(self, CallPhase::Transferred | CallPhase::Ended)
    }
}

/// Module → sidecar: a call of an agent changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    pub call_uuid: String,
    pub state: CallPhase,
    pub direction: Direction,
    pub other_party: String,
    pub record_id: Option<String>,
    pub org: String,
    pub agent_user_id: Option<String>,
    pub agent_extension: Option<String>,
    pub muted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred_to: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PresenceState {
    Available,
    Busy,
    Away,
    Offline,
}

impl PresenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceState::Available => "Available",
            PresenceState::Busy => "Busy",
            PresenceState::Away => "Away",
            PresenceState::Offline => "Offline",
        }
    }

    pub fn parse(word: &str) -> Option<PresenceState> {
        match word {
            "Available" => Some(PresenceState::Available),
            "Busy" => Some(PresenceState::Busy),
            "Away" => Some(PresenceState::Away),
            "Offline" => Some(PresenceState::Offline),
            _ => None,
        }
    }
}

/// An agent's presence, as the sidecar pushes it to the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPresence {
    /// The org the agent works for (the agents file's `org`). `None` for an agent with no org,
    /// whose presence every org's dialplan reads (as before presence was per org).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub user_id: String,
    pub extension: Option<String>,
    pub state: PresenceState,
    pub since_ms: u64,
}

/// A number or extension to dial: what a person types, nothing FreeSWITCH would read as more
/// than digits (no dial strings, variables, `@`, quotes or spaces reach a command).
pub fn check_dial_target(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.len() > 32 {
        return Err("is longer than 32 characters".into());
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_digit() || "+-(). *#".contains(*c)))
    {
        return Err(format!(
            "may hold only digits, +, -, (, ), ., spaces, * and # (found {:?})",
            bad
        ));
    }
    if text.chars().skip(1).any(|c| c == '+') {
        return Err("has a + after its start".into());
    }
    if text.chars().filter(char::is_ascii_digit).count() < 2 {
        return Err("needs at least 2 digits".into());
    }
    Ok(())
}

/// The dial target as FreeSWITCH gets it: the punctuation people type removed.
pub fn dialable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_digit() || "+*#".contains(*c))
        .collect()
}

pub fn check_extension(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 16 || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err("must be 1 to 16 digits".into());
    }
    Ok(())
}

pub fn check_call_uuid(text: &str) -> Result<(), String> {
    if text.is_empty()
        || text.len() > 64
        || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err("call_uuid must be 1 to 64 letters, digits or -".into());
    }
    Ok(())
}

/// A Salesforce id: 15 or 18 letters and digits.
pub fn check_record_id(text: &str) -> Result<(), String> {
    if !(text.len() == 15 || text.len() == 18) || !text.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("record_id must be a 15 or 18 character Salesforce id".into());
    }
    Ok(())
}

pub fn check_user_id(text: &str) -> Result<(), String> {
    check_record_id(text).map_err(|_| "agent user id must be a Salesforce id".into())
}

/// Org names as the config allows them (letters, digits, `-`, `_`, `.`).
pub fn check_org_name(text: &str) -> Result<(), String> {
    if text.is_empty()
        || text.len() > 64
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("org must be a configured org's name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_targets_are_numbers_not_dial_strings() {
        for good in [
            "+1 (415) 555-0100",
            "1002",
            "*72",
            "+44.20.7946.0958",
            "#31#0",
        ] {
            assert_eq!(check_dial_target(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1",
            "sofia/gateway/x/1",
            "1002@evil",
            "{origination_uuid=x}1002",
            "1002 XML public",
            "1002'",
            "${system(rm)}",
            "1+2",
            "123456789012345678901234567890123",
            "1002\n",
        ] {
            assert!(check_dial_target(bad).is_err(), "{bad:?}");
        }
        assert_eq!(dialable("+1 (415) 555-0100"), "+14155550100");
        assert_eq!(dialable("1002 * 5"), "1002*5");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_call_uuid("6f1c2d3e-aaaa-bbbb-cccc-0123456789ab").is_ok());
        assert!(check_call_uuid("a b").is_err());
        assert!(check_call_uuid("").is_err());
        assert!(check_record_id("003xx000004TmiQAAS").is_ok());
        assert!(check_record_id("003xx000004TmiQ").is_ok());
        assert!(check_record_id("003xx000004Tmi'").is_err());
        assert!(check_extension("1001").is_ok());
        assert!(check_extension("10a1").is_err());
        assert!(check_org_name("acme-eu").is_ok());
        assert!(check_org_name("acme eu").is_err());
    }

    #[test]
    fn commands_round_trip_and_are_checked() {
        let dial = CallCommand::Dial {
            call_uuid: "c-1".into(),
            org: "acme".into(),
            agent_user_id: "005xx000001SvLbYAK".into(),
            agent_extension: "1001".into(),
            number: "+14155550100".into(),
            record_id: Some("003xx000004TmiQAAS".into()),
        };
        let text = serde_json::to_string(&dial).unwrap();
        assert!(text.starts_with("{\"action\":\"dial\""), "{text}");
        assert_eq!(serde_json::from_str::<CallCommand>(&text).unwrap(), dial);
        assert_eq!(dial.check(), Ok(()));
        let bad = CallCommand::Transfer {
            call_uuid: "c-1".into(),
            to: "user/1002".into(),
            mode: TransferMode::Blind,
        };
        assert!(bad.check().unwrap_err().starts_with("to:"));
        assert_eq!(PresenceState::parse("Away"), Some(PresenceState::Away));
        assert_eq!(PresenceState::parse("away"), None);
    }
}
