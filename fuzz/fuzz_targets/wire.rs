//! The module↔sidecar event socket: one JSON object per line (common/src/wire.rs).
//!
//! Properties, both ways round: any line the sidecar or module reads either fails cleanly or
//! gives a message that serialises to exactly one line and parses back to itself; any message
//! either side can build serialises to one line (no newline inside, one at the end) that parses
//! back to the same message.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use natterbox_common::wire::{
    CallLog, Direction, Message, PoppedRecord, ScreenPop, MAX_LINE_BYTES,
};

#[derive(Arbitrary, Debug)]
enum AnyDirection {
    Inbound,
    Outbound,
    Internal,
}

#[derive(Arbitrary, Debug)]
enum AnyMessage {
    TokenRefresh {
        org: String,
        generation: u64,
        worked: bool,
    },
    ScreenPop {
        org: String,
        call_uuid: String,
        agent_user_id: Option<String>,
        agent_extension: Option<String>,
        caller_number: String,
        record_ids: Vec<String>,
        direction: AnyDirection,
        created_at_ms: u64,
        ttl_ms: u64,
        record: Option<(String, Option<String>, Option<String>, Option<String>)>,
    },
    CallLog {
        org: String,
        call_uuid: String,
        from: String,
        to: String,
        direction: AnyDirection,
        start_ms: u64,
        answer_ms: Option<u64>,
        end_ms: u64,
        duration_s: u64,
        agent_user_id: Option<String>,
        who_id: Option<String>,
        what_id: Option<String>,
        hangup_cause: String,
        recording_url: Option<String>,
    },
    ModuleMetrics {
        text: String,
    },
    Ack {
        call_uuid: String,
    },
}

fn direction(d: AnyDirection) -> Direction {
    match d {
        AnyDirection::Inbound => Direction::Inbound,
        AnyDirection::Outbound => Direction::Outbound,
        AnyDirection::Internal => Direction::Internal,
    }
}

fn message(any: AnyMessage) -> Message {
    match any {
        AnyMessage::TokenRefresh {
            org,
            generation,
            worked,
        } => Message::TokenRefresh {
            org,
            generation,
            worked,
        },
        AnyMessage::ScreenPop {
            org,
            call_uuid,
            agent_user_id,
            agent_extension,
            caller_number,
            record_ids,
            direction: d,
            created_at_ms,
            ttl_ms,
            record,
        } => Message::ScreenPop(ScreenPop {
            org,
            call_uuid,
            agent_user_id,
            agent_extension,
            caller_number,
            record_ids,
            direction: direction(d),
            created_at_ms,
            ttl_ms,
            record: record.map(|(object_type, name, owner_id, owner_name)| PoppedRecord {
                object_type,
                name,
                owner_id,
                owner_name,
            }),
        }),
        AnyMessage::CallLog {
            org,
            call_uuid,
            from,
            to,
            direction: d,
            start_ms,
            answer_ms,
            end_ms,
            duration_s,
            agent_user_id,
            who_id,
            what_id,
            hangup_cause,
            recording_url,
        } => Message::CallLog(CallLog {
            org,
            call_uuid,
            from,
            to,
            direction: direction(d),
            start_ms,
            answer_ms,
            end_ms,
            duration_s,
            agent_user_id,
            who_id,
            what_id,
            hangup_cause,
            recording_url,
        }),
        AnyMessage::ModuleMetrics { text } => Message::ModuleMetrics { text },
        AnyMessage::Ack { call_uuid } => Message::Ack { call_uuid },
    }
}

/// One line: a single newline, at the end.
fn assert_one_line(line: &[u8]) {
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(
        line.iter().filter(|&&b| b == b'\n').count(),
        1,
        "{:?}",
        String::from_utf8_lossy(line)
    );
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a line from the socket.
    if let Ok(decoded) = Message::from_line(data) {
        assert!(data.len() <= MAX_LINE_BYTES);
        let line = decoded.to_line();
        assert_one_line(&line);
        assert_eq!(
            Message::from_line(&line).as_ref(),
            Ok(&decoded),
            "re-read of a decoded line"
        );
    }
    // The same bytes as the recipe for a message one side builds.
    if let Ok(any) = AnyMessage::arbitrary_take_rest(Unstructured::new(data)) {
        let built = message(any);
        let line = built.to_line();
        assert_one_line(&line);
        if line.len() <= MAX_LINE_BYTES {
            assert_eq!(Message::from_line(&line).as_ref(), Ok(&built));
        }
    }
});
