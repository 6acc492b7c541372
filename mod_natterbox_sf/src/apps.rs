//! The dialplan applications. They never answer the call, and they always leave
//! `sf_lookup_status` set so the dialplan can route on it.

use std::time::{Duration, Instant};

use natterbox_common::config::OWNER_VARIABLES;
use natterbox_common::wire::{Direction, PoppedRecord, ScreenPop};
use natterbox_engine::args::{printable, AppArgs, ArgSpec};
use natterbox_engine::outbox::now_ms;
use natterbox_engine::outcome::has_variable_expansion;
use natterbox_engine::warnings::{Verdict, LINES_PER_WINDOW, WINDOW};
use natterbox_engine::{LookupAnswer, LookupRequest, LookupStatus};

use crate::ffi::event;
use crate::ffi::log::{self, log_session, Level};
use crate::ffi::session::Session;
use crate::module::{self, ModuleState, LOOKUP_EVENT};

/// Result variables cleared before each lookup, so a second lookup in a call never leaves the
/// first one's answer behind (the `sf_owner_*` ones too: `OWNER_VARIABLES` and each org's
/// `<owners>` maps).
const RESULT_VARS: &[&str] = &[
    "sf_record_id",
    "sf_record_ids",
    "sf_record_type",
    "sf_record_name",
    "sf_match_count",
    "sf_lookup_source",
    "sf_caller_e164",
];

/// `sf_lookup [org=…] [profile=…] [timeout_ms=…] [number_var=<variable>] [number=<rest>]`: a
/// caller's number either comes from a channel variable (`number_var=`, or `caller_id_number`
/// by default) or is the last argument, so no number can add or repeat an argument.
const LOOKUP_ARGS: ArgSpec = ArgSpec {
    settings: &["org", "profile", "timeout_ms", "number_var"],
    last: &["number"],
};

/// `sf_screen_pop [org=…] [direction=…] [agent=<rest> | extension=<rest>]`: the agent's id or
/// extension may come from data (a Salesforce field, a SIP header), so it is the last argument;
/// to give both, set `sf_agent_user_id` / `sf_agent_extension` and name the other one.
const SCREEN_POP_ARGS: ArgSpec = ArgSpec {
    settings: &["org", "direction"],
    last: &["agent", "extension"],
};

fn parse_direction(text: &str) -> Option<Direction> {
    match text {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        "internal" => Some(Direction::Internal),
        _ => None,
    }
}

pub fn sf_lookup(session: &Session<'_>, data: &str) {
    let Some(state) = module::state() else {
        session.set_var("sf_lookup_status", Some(LookupStatus::Error.as_str()));
        return;
    };
    let args = match AppArgs::parse(data, &LOOKUP_ARGS) {
        Ok(args) => args,
        Err(e) => {
            log_session(session, Level::Error, &format!("sf_lookup: {e}"));
            session.set_var("sf_lookup_status", Some(LookupStatus::Error.as_str()));
            return;
        }
    };
    let timeout = match args.get("timeout_ms").map(str::parse::<u64>) {
        None => None,
        Some(Ok(ms)) if (10..=60_000).contains(&ms) => Some(Duration::from_millis(ms)),
        Some(_) => {
            log_session(
                session,
                Level::Error,
                "sf_lookup: timeout_ms must be 10 to 60000",
            );
            session.set_var("sf_lookup_status", Some(LookupStatus::Error.as_str()));
            return;
        }
    };
    let number = match (args.last(), args.get("number_var")) {
        (Some(_), Some(_)) => {
            log_session(
                session,
                Level::Error,
                "sf_lookup: give number= or number_var=, not both",
            );
            session.set_var("sf_lookup_status", Some(LookupStatus::Error.as_str()));
            return;
        }
        // Verbatim, even when empty: an empty number is an invalid one, not the channel's.
        (Some((_, number)), None) => number.to_string(),
        (None, Some(variable)) => session.var(variable).unwrap_or_default(),
        (None, None) => session.var("caller_id_number").unwrap_or_default(),
    };
    let request = LookupRequest {
        org: args
            .get("org")
            .map(str::to_string)
            .or_else(|| session.var("sf_org")),
        number,
        profile: args
            .get("profile")
            .map(str::to_string)
            .or_else(|| session.var("sf_profile")),
        timeout,
    };
    let answer = state.engine.lookup_blocking(&request);
    publish(&state, session, &request, &answer);
}

/// Sets a variable whose value came from Salesforce, unless FreeSWITCH would expand it; the
/// value passed that check, so the core's own scan of it is skipped.
fn set_from_salesforce(session: &Session<'_>, name: &str, value: &str) -> bool {
    if has_variable_expansion(value) {
        log_session(
            session,
            Level::Warning,
            &format!(
                "sf_lookup: not setting {name}: the Salesforce value contains a variable expansion"
            ),
        );
        return false;
    }
    session.set_var_prechecked(name, Some(value));
    true
}

/// Channel variables, the CUSTOM event and the log line for one answer. Every value set here is
/// made by us or passed `has_variable_expansion`, so the core's scan of it is skipped; the
/// result variables (the `sf_owner_*` ones too: `OWNER_VARIABLES` and each org's `<owners>`
/// maps) are cleared only when an earlier lookup on this call may have set them; the log line
/// is formatted only when the core would keep it, and failures are rate-limited per org and
/// cause; the event is fired only when configured (`lookup-events`).
fn publish(
    state: &ModuleState,
    session: &Session<'_>,
    request: &LookupRequest,
    answer: &LookupAnswer,
) {
    if session.has_var(c"sf_lookup_status") {
        let snapshot = state.engine.snapshot();
        let owner_extras = snapshot
            .config
            .orgs
            .iter()
            .flat_map(|o| o.owners.user_fields.iter().map(|m| m.variable.as_str()));
        for name in RESULT_VARS
            .iter()
            .copied()
            .chain(OWNER_VARIABLES)
            .chain(owner_extras)
        {
            session.set_var_prechecked(name, None);
        }
    }
    let ms = answer.elapsed.as_millis().to_string();
    session.set_var_prechecked("sf_lookup_status", Some(answer.status.as_str()));
    session.set_var_prechecked("sf_lookup_ms", Some(&ms));
    if let Some(org) = answer.org {
        // Marks the call for call logging at hangup.
        session.set_var_prechecked("sf_lookup_org", Some(org));
    }
    if let Some(source) = answer.source {
        session.set_var_prechecked("sf_lookup_source", Some(source.as_str()));
    }
    if let Some(e164) = answer.e164.as_deref() {
        session.set_var_prechecked("sf_caller_e164", Some(e164));
    }
    let mut record_id = "";
    if let Some(outcome) = &answer.outcome {
        session.set_var_prechecked("sf_match_count", Some(&outcome.match_count.to_string()));
        for (name, value) in outcome.vars.iter() {
            if set_from_salesforce(session, name, value) && name == "sf_record_id" {
                record_id = value;
            }
        }
        // The directory's view of the owner wins over a profile's own Owner.* mappings: it is
        // newer than a cached record.
        for (name, value) in answer.owner.iter().flat_map(|o| o.vars()) {
            set_from_salesforce(session, name, value);
        }
    } else {
        session.set_var_prechecked("sf_match_count", Some("0"));
    }
    let number = || {
        answer
            .e164
            .as_deref()
            .map(str::to_string)
            .unwrap_or_else(|| printable(&request.number))
    };
    let level = match answer.status {
        LookupStatus::Found | LookupStatus::NotFound | LookupStatus::Multiple => Level::Info,
        LookupStatus::InvalidNumber => Level::Notice,
        _ => Level::Warning,
    };
    if log::enabled(level, Some(session)) {
        let org = answer.org.unwrap_or("-");
        let verdict = match level {
            Level::Info => Verdict::Log { suppressed: 0 },
            _ => state
                .warnings
                .check(org, answer.status.as_str(), Instant::now()),
        };
        if let Verdict::Log { suppressed } = verdict {
            log_session(
                session,
                level,
                &format!(
                    "sf_lookup org={org} number={} status={} source={} ms={ms}{}{}",
                    number(),
                    answer.status,
                    answer.source.map_or("-", |s| s.as_str()),
                    answer
                        .detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                    if suppressed > 0 {
                        format!(
                            "; {suppressed} more {} lookup(s) of org {org} not logged (at most {LINES_PER_WINDOW} lines per {} s)",
                            answer.status,
                            WINDOW.as_secs()
                        )
                    } else {
                        String::new()
                    }
                ),
            );
        }
    }
    if state.engine.snapshot().config.settings.lookup_events {
        let uuid = session.uuid();
        event::fire_custom(
            LOOKUP_EVENT,
            &[
                ("Unique-ID", &uuid),
                ("SF-Org", answer.org.unwrap_or("")),
                ("SF-Number", &number()),
                ("SF-Status", answer.status.as_str()),
                ("SF-Source", answer.source.map_or("", |s| s.as_str())),
                ("SF-Lookup-MS", &ms),
                ("SF-Record-ID", record_id),
            ],
        );
    }
}

pub fn sf_screen_pop(session: &Session<'_>, data: &str) {
    let Some(state) = module::state() else { return };
    let args = match AppArgs::parse(data, &SCREEN_POP_ARGS) {
        Ok(args) => args,
        Err(e) => {
            log_session(session, Level::Error, &format!("sf_screen_pop: {e}"));
            return;
        }
    };
    let snapshot = state.engine.snapshot();
    // As call logs and call states choose it: the org this call's lookup used, else the
    // dialplan's `sf_org` (never the default org's agents for another org's call).
    let org_name = args
        .get("org")
        .map(str::to_string)
        .or_else(|| session.var("sf_lookup_org"))
        .or_else(|| session.var("sf_org"));
    let Some(org) = snapshot.config.resolve_org(org_name.as_deref()) else {
        log_session(
            session,
            Level::Error,
            "sf_screen_pop: no org (run sf_lookup first or pass org=)",
        );
        return;
    };
    let given = |key: &str| {
        args.last()
            .filter(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| v.to_string())
    };
    let agent_user_id = given("agent").or_else(|| session.var("sf_agent_user_id"));
    let agent_extension = given("extension").or_else(|| session.var("sf_agent_extension"));
    if agent_user_id.is_none() && agent_extension.is_none() {
        log_session(
            session,
            Level::Error,
            "sf_screen_pop: no agent= or extension= (or sf_agent_* variables)",
        );
        return;
    }
    let direction_text = args
        .get("direction")
        .map(str::to_string)
        .or_else(|| session.var("direction"));
    let direction = direction_text
        .as_deref()
        .and_then(parse_direction)
        .unwrap_or(Direction::Inbound);
    let record_ids: Vec<String> = session
        .var("sf_record_id")
        .or_else(|| session.var("sf_record_ids"))
        .map(|ids| {
            ids.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let caller_number = session
        .var("sf_caller_e164")
        .or_else(|| session.var("caller_id_number"))
        .unwrap_or_default();
    let uuid = session.uuid();
    state.engine.screen_pop(ScreenPop {
        org: org.name.clone(),
        call_uuid: uuid,
        agent_user_id,
        agent_extension,
        caller_number: printable(&caller_number),
        record_ids,
        direction,
        created_at_ms: now_ms(),
        ttl_ms: org.screen_pop.ttl.as_millis() as u64,
        record: popped_record(session),
    });
    session.set_var("sf_screen_pop", Some("sent"));
}

/// What the console shows about the caller: the lookup's type, name and owner, when it found
/// one record (`sf_record_id` set). Values came from Salesforce and are shown as text.
fn popped_record(session: &Session) -> Option<PoppedRecord> {
    session.var("sf_record_id")?;
    let object_type = session.var("sf_record_type")?;
    let text = |name: &str| session.var(name).map(|v| printable(&v));
    Some(PoppedRecord {
        object_type: printable(&object_type),
        name: text("sf_record_name"),
        owner_id: text("sf_owner_id"),
        owner_name: text("sf_owner_name"),
    })
}
