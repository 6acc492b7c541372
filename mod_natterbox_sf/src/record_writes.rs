//! `sf_create`, `sf_update`, `sf_upsert`: run one of the org's `<write>`s with values from this
//! call's channel variables. Each leaves `sf_write_status` (`created`, `updated`, `queued`,
//! `not_found`, `multiple`, or the lookup's failure words), `sf_write_ms`, and on success
//! `sf_create_id` (the record's id; for an update, the record updated). `sf_write_queued=true`
//! says a write that failed now went to the sidecar's outbox to be delivered later.
//!
//! Data: `write=<name> [org=<org>] [timeout_ms=<ms>]`. Nothing in it carries a value: the
//! values come from the variables the `<write>` names, so no caller text can choose the org,
//! the write or the deadline.

use std::time::Duration;

use natterbox_common::record_write::WriteOp;
use natterbox_engine::args::{AppArgs, ArgSpec};
use natterbox_engine::writes::{WriteRequest, WriteStatus};

use crate::ffi::log::{self, log_session, Level};
use crate::ffi::session::Session;
use crate::module;

const WRITE_ARGS: ArgSpec = ArgSpec {
    settings: &["write", "org", "timeout_ms"],
    last: &[],
};

/// Cleared before each write, so a later write never shows an earlier one's result.
const RESULT_VARS: &[&str] = &["sf_create_id", "sf_write_queued"];

pub fn sf_create(session: &Session<'_>, data: &str) {
    run(session, data, WriteOp::Create);
}

pub fn sf_update(session: &Session<'_>, data: &str) {
    run(session, data, WriteOp::Update);
}

pub fn sf_upsert(session: &Session<'_>, data: &str) {
    run(session, data, WriteOp::Upsert);
}

fn refuse(session: &Session<'_>, app: &str, why: &str) {
    log_session(session, Level::Error, &format!("{app}: {why}"));
    session.set_var_prechecked("sf_write_status", Some(WriteStatus::Error.as_str()));
}

fn run(session: &Session<'_>, data: &str, op: WriteOp) {
    let app = match op {
        WriteOp::Create => "sf_create",
        WriteOp::Update => "sf_update",
        WriteOp::Upsert => "sf_upsert",
    };
    for name in RESULT_VARS {
        session.set_var_prechecked(name, None);
    }
    let Some(state) = module::state() else {
        session.set_var_prechecked("sf_write_status", Some(WriteStatus::Error.as_str()));
        return;
    };
    let args = match AppArgs::parse(data, &WRITE_ARGS) {
        Ok(args) => args,
        Err(e) => return refuse(session, app, &e),
    };
    let Some(write) = args.get("write") else {
        return refuse(
            session,
            app,
            "needs write=<name of a <write> in the org's config>",
        );
    };
    let timeout = match args.get("timeout_ms").map(str::parse::<u64>) {
        None => None,
        Some(Ok(ms)) if (10..=60_000).contains(&ms) => Some(Duration::from_millis(ms)),
        Some(_) => return refuse(session, app, "timeout_ms must be 10 to 60000"),
    };
    let org = args
        .get("org")
        .map(str::to_string)
        .or_else(|| session.var("sf_org"));
    let call_uuid = session.uuid();
    let request = WriteRequest {
        org: org.as_deref(),
        write,
        op,
        call_uuid: &call_uuid,
        timeout,
    };
    let answer = state
        .engine
        .write_blocking(&request, |name| session.var(name));
    let ms = answer.elapsed.as_millis().to_string();
    session.set_var_prechecked("sf_write_status", Some(answer.status.as_str()));
    session.set_var_prechecked("sf_write_ms", Some(&ms));
    if let Some(id) = &answer.id {
        // Salesforce ids are letters and digits: nothing for the core to expand.
        session.set_var("sf_create_id", Some(id));
    }
    if answer.queued {
        session.set_var_prechecked("sf_write_queued", Some("true"));
    }
    let level = match answer.status {
        WriteStatus::Created | WriteStatus::Updated | WriteStatus::Queued => Level::Info,
        _ => Level::Warning,
    };
    if log::enabled(level, Some(session)) {
        log_session(
            session,
            level,
            &format!(
                "{app} org={} write={write} status={} ms={ms}{}{}{}",
                answer.org.unwrap_or("-"),
                answer.status.as_str(),
                answer
                    .id
                    .as_deref()
                    .map(|id| format!(" id={id}"))
                    .unwrap_or_default(),
                if answer.queued { " queued=true" } else { "" },
                answer
                    .detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
            ),
        );
    }
}
