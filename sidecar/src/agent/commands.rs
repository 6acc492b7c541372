//! The consoles' commands (docs/agent-protocol.md, "Client → server"): parsed with a clear
//! error per field, authorised against the calls the module reported, carried out through the
//! module, answered with one `result` each, and logged (never the token or the notes).

use std::sync::Arc;

use natterbox_common::call_control::{
    check_call_uuid, check_dial_target, check_org_name, check_record_id, CallCommand, CallPhase,
    PresenceState, TransferMode,
};
use natterbox_common::wire::Message;
use serde_json::{json, Value};

use super::presence::presence_frame;
use super::switch_link::LinkError;
use super::AgentFrame;
use crate::pops::AgentIdentity;
use crate::App;

pub const MAX_DISPOSITION: usize = 255;
pub const MAX_NOTES: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl CommandError {
    pub fn bad_request(message: impl Into<String>) -> CommandError {
        CommandError {
            code: 400,
            reason: "bad_request",
            message: message.into(),
        }
    }
    pub fn not_your_call(call_uuid: &str) -> CommandError {
        CommandError {
            code: 403,
            reason: "not_your_call",
            message: format!("call {call_uuid} is not one of your calls"),
        }
    }
    /// An agent of one org asked to act as another (dial with its caller id, in its context).
    pub fn not_your_org(own: &str) -> CommandError {
        CommandError {
            code: 403,
            reason: "not_your_org",
            message: format!("you work for org {own} and can dial only as {own}"),
        }
    }
    pub fn no_such_call(call_uuid: &str) -> CommandError {
        CommandError {
            code: 404,
            reason: "no_such_call",
            message: format!("no call {call_uuid} of yours is live"),
        }
    }
    pub fn wrong_state(message: impl Into<String>) -> CommandError {
        CommandError {
            code: 409,
            reason: "wrong_state",
            message: message.into(),
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> CommandError {
        CommandError {
            code: 500,
            reason: "internal",
            message: message.into(),
        }
    }
}

impl From<LinkError> for CommandError {
    fn from(e: LinkError) -> CommandError {
        match e {
            LinkError::Unavailable => CommandError {
                code: 503,
                reason: "switch_unavailable",
                message: "FreeSWITCH (mod_natterbox_sf) is not connected to the sidecar".into(),
            },
            LinkError::Timeout => CommandError {
                code: 504,
                reason: "switch_timeout",
                message: "FreeSWITCH did not answer within 5 s".into(),
            },
            LinkError::Refused(why) => CommandError {
                code: 502,
                reason: "switch_refused",
                message: why,
            },
        }
    }
}

/// A command as the console sent it, checked field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Dial {
        number: String,
        record_id: Option<String>,
        org: Option<String>,
    },
    /// Hold, resume, mute, unmute, cancel_transfer, hangup: just a call.
    OnCall {
        kind: &'static str,
        call_uuid: String,
    },
    Transfer {
        call_uuid: String,
        to: String,
        mode: TransferMode,
    },
    Conference {
        call_uuid: String,
        to: String,
    },
    SetPresence(PresenceState),
    WrapUp {
        call_uuid: String,
        disposition: String,
        notes: String,
    },
    /// Omni-Channel offered this agent the call and they accepted it (`omni.rs`).
    AcceptRouted {
        call_uuid: String,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Dial { .. } => "dial",
            Command::OnCall { kind, .. } => kind,
            Command::Transfer { .. } => "transfer",
            Command::Conference { .. } => "conference",
            Command::SetPresence(_) => "set_presence",
            Command::WrapUp { .. } => "wrap_up",
            Command::AcceptRouted { .. } => "accept_routed",
        }
    }

    fn call_uuid(&self) -> Option<&str> {
        match self {
            Command::OnCall { call_uuid, .. }
            | Command::Transfer { call_uuid, .. }
            | Command::Conference { call_uuid, .. }
            | Command::WrapUp { call_uuid, .. }
            | Command::AcceptRouted { call_uuid } => Some(call_uuid),
            _ => None,
        }
    }
}

/// A client frame: a pop acknowledgement, or a command with its id (`Err` when the command is
/// not valid, with the id to answer to).
pub enum ClientFrame {
    Ack(String),
    Command(Value, Command),
    Invalid(Value, CommandError),
}

fn text_field(
    fields: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<String>, CommandError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CommandError::bad_request(format!(
            "{name} must be a string"
        ))),
    }
}

fn required(fields: &serde_json::Map<String, Value>, name: &str) -> Result<String, CommandError> {
    text_field(fields, name)?.ok_or_else(|| CommandError::bad_request(format!("{name} is missing")))
}

fn no_controls(text: &str, name: &str) -> Result<(), CommandError> {
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(CommandError::bad_request(format!(
            "{name} may not contain control characters"
        )));
    }
    Ok(())
}

pub fn parse(text: &str) -> ClientFrame {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return ClientFrame::Invalid(
                Value::Null,
                CommandError::bad_request(format!("not JSON: {e}")),
            )
        }
    };
    let Value::Object(fields) = value else {
        return ClientFrame::Invalid(
            Value::Null,
            CommandError::bad_request("a frame must be a JSON object"),
        );
    };
    if fields.get("type").is_none() {
        if let Some(Value::String(call_uuid)) = fields.get("ack") {
            return ClientFrame::Ack(call_uuid.clone());
        }
    }
    let id = match fields.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= 64 => {
            Value::String(id.clone())
        }
        _ => {
            return ClientFrame::Invalid(
                Value::Null,
                CommandError::bad_request("id must be a string of 1 to 64 characters"),
            )
        }
    };
    match parse_command(&fields) {
        Ok(command) => ClientFrame::Command(id, command),
        Err(e) => ClientFrame::Invalid(id, e),
    }
}

fn call_uuid_field(fields: &serde_json::Map<String, Value>) -> Result<String, CommandError> {
    let uuid = required(fields, "call_uuid")?;
    check_call_uuid(&uuid).map_err(CommandError::bad_request)?;
    Ok(uuid)
}

fn target_field(
    fields: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<String, CommandError> {
    let to = required(fields, name)?;
    check_dial_target(&to).map_err(|e| CommandError::bad_request(format!("{name} {e}")))?;
    Ok(to)
}

fn parse_command(fields: &serde_json::Map<String, Value>) -> Result<Command, CommandError> {
    let kind = required(fields, "type")?;
    Ok(match kind.as_str() {
        "dial" => {
            let number = target_field(fields, "number")?;
            let record_id = text_field(fields, "record_id")?;
            if let Some(id) = &record_id {
                check_record_id(id).map_err(CommandError::bad_request)?;
            }
            let org = text_field(fields, "org")?;
            if let Some(org) = &org {
                check_org_name(org).map_err(CommandError::bad_request)?;
            }
            Command::Dial {
                number,
                record_id,
                org,
            }
        }
        "hold" | "resume" | "mute" | "unmute" | "cancel_transfer" | "hangup" => Command::OnCall {
            kind: match kind.as_str() {
                "hold" => "hold",
                "resume" => "resume",
                "mute" => "mute",
                "unmute" => "unmute",
                "cancel_transfer" => "cancel_transfer",
                _ => "hangup",
            },
            call_uuid: call_uuid_field(fields)?,
        },
        "transfer" => Command::Transfer {
            call_uuid: call_uuid_field(fields)?,
            to: target_field(fields, "to")?,
            mode: match required(fields, "mode")?.as_str() {
                "blind" => TransferMode::Blind,
                "warm" => TransferMode::Warm,
                _ => return Err(CommandError::bad_request("mode must be blind or warm")),
            },
        },
        "conference" => Command::Conference {
            call_uuid: call_uuid_field(fields)?,
            to: target_field(fields, "to")?,
        },
        "set_presence" => {
            let state = required(fields, "state")?;
            Command::SetPresence(PresenceState::parse(&state).ok_or_else(|| {
                CommandError::bad_request("state must be Available, Busy, Away or Offline")
            })?)
        }
        "wrap_up" => {
            let call_uuid = call_uuid_field(fields)?;
            let disposition = required(fields, "disposition")?;
            if disposition.trim().is_empty() || disposition.chars().count() > MAX_DISPOSITION {
                return Err(CommandError::bad_request(format!(
                    "disposition must be 1 to {MAX_DISPOSITION} characters"
                )));
            }
            let notes = text_field(fields, "notes")?.unwrap_or_default();
            if notes.chars().count() > MAX_NOTES {
                return Err(CommandError::bad_request(format!(
                    "notes must be at most {MAX_NOTES} characters"
                )));
            }
            no_controls(&disposition, "disposition")?;
            no_controls(&notes, "notes")?;
            Command::WrapUp {
                call_uuid,
                disposition,
                notes,
            }
        }
        "accept_routed" => Command::AcceptRouted {
            call_uuid: call_uuid_field(fields)?,
        },
        other => {
            return Err(CommandError::bad_request(format!(
                "unknown command type {:?}",
                other.chars().take(40).collect::<String>()
            )))
        }
    })
}

/// A random UUID (version 4) for a call or leg the sidecar asks FreeSWITCH to make.
pub fn new_uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::pops::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The org a click-to-dial goes out as (its caller id, its dialplan context): an agent with an
/// org dials as that org only (`org` may be omitted or name it); an agent with none as the org
/// asked for, else the default org, as before orgs were named.
fn dial_org(agent: &AgentIdentity, asked: Option<String>) -> Result<Option<String>, CommandError> {
    match (&agent.org, asked) {
        (Some(own), Some(asked)) if *own != asked => Err(CommandError::not_your_org(own)),
        (Some(own), _) => Ok(Some(own.clone())),
        (None, asked) => Ok(asked),
    }
}

/// Carries out a command for `agent`; the `result` frame's extra fields on success.
pub async fn execute(
    app: &Arc<App>,
    agent: &AgentIdentity,
    command: Command,
) -> Result<Value, CommandError> {
    let desk = &app.desk;
    match command {
        Command::Dial {
            number,
            record_id,
            org,
        } => {
            let extension = agent.extension.clone().ok_or(CommandError {
                code: 409,
                reason: "no_extension",
                message: "you have no extension to ring first".into(),
            })?;
            let org = dial_org(agent, org)?;
            let config = app.config();
            let org = config
                .resolve_org(org.as_deref())
                .ok_or_else(|| CommandError::bad_request("org is not a configured org"))?;
            let call_uuid = new_uuid();
            desk.link
                .run(CallCommand::Dial {
                    call_uuid: call_uuid.clone(),
                    org: org.name.clone(),
                    agent_user_id: agent.user_id.clone(),
                    agent_extension: extension,
                    number,
                    record_id,
                })
                .await?;
            Ok(json!({"call_uuid": call_uuid}))
        }
        Command::OnCall { kind, call_uuid } => {
            let call = desk.calls.live_call(agent, &call_uuid)?;
            let command = match (kind, call.state) {
                (_, CallPhase::Ringing) if kind != "hangup" => {
                    return Err(CommandError::wrong_state(format!(
                        "{kind} needs an answered call; {call_uuid} is ringing"
                    )))
                }
                ("hold", CallPhase::Held) => {
                    return Err(CommandError::wrong_state("the call is already on hold"))
                }
                ("resume", s) if s != CallPhase::Held => {
                    return Err(CommandError::wrong_state("the call is not on hold"))
                }
                ("hold", _) => CallCommand::Hold { call_uuid },
                ("resume", _) => CallCommand::Resume { call_uuid },
                ("mute", _) => CallCommand::Mute { call_uuid },
                ("unmute", _) => CallCommand::Unmute { call_uuid },
                ("cancel_transfer", _) => CallCommand::CancelTransfer { call_uuid },
                _ => CallCommand::Hangup { call_uuid },
            };
            desk.link.run(command).await?;
            Ok(json!({}))
        }
        Command::Transfer {
            call_uuid,
            to,
            mode,
        } => {
            let call = desk.calls.live_call(agent, &call_uuid)?;
            if call.state == CallPhase::Ringing {
                return Err(CommandError::wrong_state("transfer needs an answered call"));
            }
            desk.link
                .run(CallCommand::Transfer {
                    call_uuid,
                    to,
                    mode,
                })
                .await?;
            Ok(json!({}))
        }
        Command::Conference { call_uuid, to } => {
            let call = desk.calls.live_call(agent, &call_uuid)?;
            if call.state == CallPhase::Ringing {
                return Err(CommandError::wrong_state(
                    "conference needs an answered call",
                ));
            }
            let leg_uuid = new_uuid();
            desk.link
                .run(CallCommand::Conference {
                    call_uuid,
                    to,
                    leg_uuid: leg_uuid.clone(),
                })
                .await?;
            Ok(json!({"call_uuid": leg_uuid}))
        }
        Command::SetPresence(state) => {
            let presence = desk
                .presence
                .set(agent, state)
                .map_err(CommandError::internal)?;
            desk.send(AgentFrame {
                org: presence.org.clone(),
                user_id: Some(agent.user_id.clone()),
                extension: None,
                text: presence_frame(&presence).into(),
            });
            if let Some(fleet) = &app.fleet {
                fleet.presence_set(agent, &presence);
            }
            desk.link.broadcast(&Message::Presence(presence));
            Ok(json!({}))
        }
        Command::AcceptRouted { call_uuid } => {
            crate::omni::accept_routed(app, agent, call_uuid).await
        }
        Command::WrapUp {
            call_uuid,
            disposition,
            notes,
        } => {
            let call = desk.calls.wrappable_call(agent, &call_uuid)?;
            let config = app.config();
            if !config.org(&call.org).is_some_and(|o| o.call_log.enabled) {
                return Err(CommandError::wrong_state(format!(
                    "org {} does not log calls as Tasks (<call-log enabled=\"true\">)",
                    call.org
                )));
            }
            let outbox = app.outbox.clone();
            let wrap = super::wrap_up::WrapUp {
                call_uuid,
                org: call.org,
                disposition,
                notes,
            };
            tokio::task::spawn_blocking(move || {
                outbox.put_wrap_up(&wrap, crate::backoff::now_ms())
            })
            .await
            .map_err(|e| CommandError::internal(e.to_string()))?
            .map_err(CommandError::internal)?;
            app.delivery_wake.notify_one();
            Ok(json!({}))
        }
    }
}

/// Runs one command and returns the `result` frame; logs the command and its outcome.
pub async fn answer(app: &Arc<App>, agent: &AgentIdentity, id: Value, command: Command) -> String {
    let name = command.name();
    let call_uuid = command.call_uuid().map(str::to_string);
    let outcome = execute(app, agent, command).await;
    match &outcome {
        Ok(_) => {
            tracing::info!(agent = %agent.user_id, command = name, call_uuid = call_uuid.as_deref().unwrap_or("-"), "agent command done")
        }
        Err(e) => {
            tracing::info!(agent = %agent.user_id, command = name, call_uuid = call_uuid.as_deref().unwrap_or("-"), code = e.code, reason = e.reason, error = %e.message, "agent command refused")
        }
    }
    result_frame(id, outcome)
}

pub fn result_frame(id: Value, outcome: Result<Value, CommandError>) -> String {
    match outcome {
        Ok(extra) => {
            let mut frame = json!({"type": "result", "id": id, "ok": true});
            if let (Some(frame), Value::Object(extra)) = (frame.as_object_mut(), extra) {
                frame.extend(extra);
            }
            frame.to_string()
        }
        Err(e) => json!({
            "type": "result",
            "id": id,
            "ok": false,
            "error": {"code": e.code, "reason": e.reason, "message": e.message},
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> CommandError {
        match parse(text) {
            ClientFrame::Invalid(_, e) => e,
            _ => panic!("{text} parsed"),
        }
    }

    #[test]
    fn parses_commands_and_names_the_bad_field() {
        assert!(matches!(parse(r#"{"ack":"c-1"}"#), ClientFrame::Ack(u) if u == "c-1"));
        match parse(r#"{"type":"transfer","id":"7","call_uuid":"c-1","to":"1002","mode":"warm"}"#) {
            ClientFrame::Command(id, Command::Transfer { mode, .. }) => {
                assert_eq!(id, "7");
                assert_eq!(mode, TransferMode::Warm);
            }
            _ => panic!(),
        }
        assert!(invalid("nope").message.starts_with("not JSON"));
        assert!(invalid(r#"{"type":"hold"}"#).message.contains("id"));
        assert_eq!(
            invalid(r#"{"type":"hold","id":"1"}"#).message,
            "call_uuid is missing"
        );
        assert!(
            invalid(r#"{"type":"dial","id":"1","number":"sofia/gateway/x/1"}"#)
                .message
                .starts_with("number ")
        );
        assert!(
            invalid(r#"{"type":"dial","id":"1","number":"1002","record_id":"x'"}"#)
                .message
                .contains("record_id")
        );
        assert!(
            invalid(r#"{"type":"set_presence","id":"1","state":"away"}"#)
                .message
                .contains("Available")
        );
        assert!(invalid(r#"{"type":"fly","id":"1"}"#)
            .message
            .contains("unknown"));
        let long = "x".repeat(256);
        assert!(invalid(&format!(
            r#"{{"type":"wrap_up","id":"1","call_uuid":"c","disposition":"{long}"}}"#
        ))
        .message
        .contains("disposition"));
        assert_eq!(new_uuid().len(), 36);
    }

    #[test]
    fn an_agent_of_an_org_dials_only_as_that_org() {
        let agent = |org: Option<&str>| AgentIdentity {
            user_id: "005A".into(),
            extension: Some("1001".into()),
            org: org.map(str::to_string),
        };
        let acme = agent(Some("acme"));
        assert_eq!(dial_org(&acme, None), Ok(Some("acme".into())));
        assert_eq!(
            dial_org(&acme, Some("acme".into())),
            Ok(Some("acme".into()))
        );
        assert_eq!(
            dial_org(&acme, Some("globex".into())).unwrap_err().reason,
            "not_your_org"
        );
        assert_eq!(
            dial_org(&agent(None), Some("globex".into())),
            Ok(Some("globex".into()))
        );
        assert_eq!(dial_org(&agent(None), None), Ok(None));
    }
}
