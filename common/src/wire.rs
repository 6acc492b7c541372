//! Messages between the module and the sidecar over the local event socket: JSON objects, one
//! per line. See docs/design.md.

use serde::{Deserialize, Serialize};

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
    /// Module → sidecar: the module's figures in the Prometheus text format, pushed every few
    /// seconds; the sidecar serves the latest on its `/metrics`.
    ModuleMetrics {
        text: String,
    },
    /// Sidecar → module: the call log is in the outbox; the spooled copy can go.
    Ack {
        call_uuid: String,
    },
    /// Module → sidecar: a record write for the sidecar's outbox to deliver (at least once;
    /// one row per `key`).
    RecordWrite(crate::record_write::RecordWrite),
    /// Sidecar → module: the write with this key is in the outbox; the spooled copy can go.
    WriteAck {
        key: String,
    },
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
