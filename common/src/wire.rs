//! Messages between the module and the sidecar over the local event socket: JSON objects, one
//! per line. See docs/design.md.

use serde::{Deserialize, Serialize};

use crate::call_control::{AgentPresence, CallCommand, CallState};

/// Longest line either side accepts; longer lines are a protocol error.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Module → sidecar: Salesforce refused this generation's token with 401. `worked`: the
    /// token had served requests before (revoked or expired, not dead on arrival); left out
    /// when false, and false when absent.
    TokenRefresh {
        org: String,
        generation: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        worked: bool,
    },
    ScreenPop(ScreenPop),
    CallLog(CallLog),
    /// Module → sidecar: a call's progress as it happens, for its VoiceCall record. Best
    /// effort (not spooled): the call log at hangup carries what a lost one would have said.
    CallProgress(CallProgress),
    /// Module → sidecar: the module's figures in the Prometheus text format, pushed every few
    /// seconds; the sidecar serves the latest on its `/metrics`.
    ModuleMetrics {
        text: String,
    },
    /// Sidecar → module: the call log is in the outbox; the spooled copy can go.
    Ack {
        call_uuid: String,
    },
    /// Sidecar → module: carry out an agent's call-control command (already authorised).
    SwitchCommand {
        id: u64,
        command: CallCommand,
    },
    /// Module → sidecar: how a `SwitchCommand` went; `error` is FreeSWITCH's `-ERR` text or
    /// the module's reason.
    SwitchResult {
        id: u64,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Module → sidecar: a call of an agent changed (answered, held, ended, …).
    CallState(CallState),
    /// Sidecar → module: an agent's presence (on each change; every agent's when the module
    /// connects), for the dialplan.
    Presence(AgentPresence),
    /// Module → sidecar: a record write for the sidecar's outbox to deliver (at least once;
    /// one row per `key`).
    RecordWrite(crate::record_write::RecordWrite),
    /// Sidecar → module: the write with this key is in the outbox; the spooled copy can go.
    WriteAck {
        key: String,
    },
    /// Sidecar → module: these records of `object` changed in Salesforce (a Change Data
    /// Capture event): cached answers naming them must go (here, in Redis, on every host).
    Invalidate {
        org: String,
        object: String,
        ids: Vec<String>,
        /// Absent from older sidecars: the records' answers only.
        #[serde(default)]
        extent: crate::invalidation::Extent,
    },
    /// Module → sidecar: a call reached an Omni-Channel routing point (`sf_omni_route`): its
    /// VoiceCall is created now, then handed to Salesforce's routing. Best effort like
    /// `CallProgress` (the call log at hangup still creates the VoiceCall).
    OmniRoute(OmniRoute),
    /// Module → sidecar: a routed call left its routing point with no agent (`reason`:
    /// `timeout` when the dialplan went on to its fallback, `abandoned` when the caller hung up):
    /// Salesforce's pending routing must be cleared.
    OmniUnrouted {
        org: String,
        call_uuid: String,
        reason: String,
    },
}

/// A call handed to Omni-Channel: what its VoiceCall and the omniFlow request need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OmniRoute {
    pub org: String,
    pub call_uuid: String,
    pub from: String,
    /// The dialed number (omniFlow's `dialedNumber`).
    pub to: String,
    pub start_ms: u64,
    /// The caller's record from the lookup (`sf_record_id`), for the flow's inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
}

impl Direction {
    pub fn parse(word: &str) -> Option<Direction> {
        match word {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            "internal" => Some(Direction::Internal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenPop {
    pub org: String,
    pub call_uuid: String,
    pub agent_user_id: Option<String>,
    pub agent_extension: Option<String>,
    pub caller_number: String,
    pub record_ids: Vec<String>,
    pub direction: Direction,
    pub created_at_ms: u64,
    pub ttl_ms: u64,
    /// What the lookup found, for the agent's console to show before they answer. Left out by
    /// a module that predates it, and when the lookup found no single record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<PoppedRecord>,
}

/// The caller's record as the console shows it: from `sf_record_type`, `sf_record_name`,
/// `sf_owner_id` and (when the profile maps `Owner.Name`) `sf_owner_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoppedRecord {
    #[serde(rename = "type")]
    pub object_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLog {
    pub org: String,
    pub call_uuid: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub start_ms: u64,
    pub answer_ms: Option<u64>,
    pub end_ms: u64,
    pub duration_s: u64,
    pub agent_user_id: Option<String>,
    pub who_id: Option<String>,
    pub what_id: Option<String>,
    pub hangup_cause: String,
    /// Where the call's recording is (`sf_recording_url`), for the VoiceCall record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
}

/// What happened to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEvent {
    /// The call reached the switch (an inbound call is about to be routed to an agent).
    Started,
    /// The call was answered.
    Answered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallProgress {
    pub org: String,
    pub call_uuid: String,
    pub event: CallEvent,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub start_ms: u64,
    /// When `event` happened.
    pub at_ms: u64,
}

impl Message {
    /// The message as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("messages always serialize");
        line.push(b'\n');
        line
    }

    pub fn from_line(line: &[u8]) -> Result<Message, String> {
        if line.len() > MAX_LINE_BYTES {
            return Err(format!("line of {} bytes is over the limit", line.len()));
        }
        serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(line)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_tagged_lines() {
        let message = Message::TokenRefresh {
            org: "acme".into(),
            generation: 3,
            worked: false,
        };
        let line = message.to_line();
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"type\":\"token_refresh\",\"org\":\"acme\",\"generation\":3}\n"
        );
        assert_eq!(Message::from_line(&line).unwrap(), message);
        let worked = Message::TokenRefresh {
            org: "acme".into(),
            generation: 3,
            worked: true,
        };
        assert_eq!(
            std::str::from_utf8(&worked.to_line()).unwrap(),
            "{\"type\":\"token_refresh\",\"org\":\"acme\",\"generation\":3,\"worked\":true}\n"
        );
        assert_eq!(Message::from_line(&worked.to_line()).unwrap(), worked);
        assert!(Message::from_line(b"{\"type\":\"nope\"}").is_err());
        assert!(Message::from_line(&vec![b' '; MAX_LINE_BYTES + 1]).is_err());
    }
}
