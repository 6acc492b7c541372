//! `sf_query` and `sf_search`: named queries from the config, values bound from channel
//! variables. Like `sf_lookup` they never answer the call and always leave a status variable
//! (`sf_query_status`, `sf_search_status`) for the dialplan to route on.
//!
//! Bound values come from channel variables only (each `:bind` from the variable of its name,
//! or `<bind variable=…>`), never from the application's data: FreeSWITCH expands `${…}` in the
//! data before the app sees it, so a caller's text there could add words that choose the org or
//! the deadline. The data holds the query's name and the dialplan's own settings.

use std::time::Duration;

use natterbox_common::named_query::{NamedQuery, QueryKind};
use natterbox_engine::args::{printable, AppArgs, ArgSpec};
use natterbox_engine::outcome::has_variable_expansion;
use natterbox_engine::{LookupStatus, QueryAnswer, QueryRequest};

use crate::ffi::log::{self, log_session, Level};
use crate::ffi::session::Session;
use crate::module;

/// `<name> [org=…] [timeout_ms=…]`, after the name.
const QUERY_ARGS: ArgSpec = ArgSpec {
    settings: &["org", "timeout_ms"],
    last: &[],
};

pub fn sf_query(session: &Session<'_>, data: &str) {
    run(session, data, QueryKind::Soql);
}

pub fn sf_search(session: &Session<'_>, data: &str) {
    run(session, data, QueryKind::Sosl);
}

fn app_name(kind: QueryKind) -> &'static str {
    match kind {
        QueryKind::Soql => "sf_query",
        QueryKind::Sosl => "sf_search",
    }
}

fn status_var(kind: QueryKind) -> &'static str {
    match kind {
        QueryKind::Soql => "sf_query_status",
        QueryKind::Sosl => "sf_search_status",
    }
}

fn run(session: &Session<'_>, data: &str, kind: QueryKind) {
    let app = app_name(kind);
    let refuse = |why: &str| {
        log_session(session, Level::Error, &format!("{app}: {why}"));
        session.set_var_prechecked(status_var(kind), Some(LookupStatus::Error.as_str()));
    };
    let Some(state) = module::state() else {
        return refuse("mod_natterbox_sf is not running");
    };
    let data = data.trim_start();
    let (name, rest) = data
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((data, ""));
    if name.is_empty() || name.contains('=') {
        return refuse("usage: <query name> [org=<org>] [timeout_ms=<ms>]");
    }
    let args = match AppArgs::parse(rest, &QUERY_ARGS) {
        Ok(args) => args,
        Err(e) => return refuse(&e),
    };
    let timeout = match args.get("timeout_ms").map(str::parse::<u64>) {
        None => None,
        Some(Ok(ms)) if (10..=60_000).contains(&ms) => Some(Duration::from_millis(ms)),
        Some(_) => return refuse("timeout_ms must be 10 to 60000"),
    };
    let request = QueryRequest {
        org: args
            .get("org")
            .map(str::to_string)
            .or_else(|| session.var("sf_org")),
        name: name.to_string(),
        kind: Some(kind),
        timeout,
    };
    let answer = state
        .engine
        .query_blocking(&request, &|bind| session.var(&bind.variable));
    // The query as configured, to clear what an earlier run of it on this call set.
    let snapshot = state.engine.snapshot();
    let query = answer
        .org
        .and_then(|org| snapshot.orgs.get(org))
        .and_then(|org| org.queries.get(name))
        .map(|q| &q.query);
    publish(session, kind, name, query, &answer);
}

/// Every variable a query may set, so a second run never leaves the first one's rows behind.
fn clear_previous(session: &Session<'_>, query: &NamedQuery) {
    if session.var(&format!("sf_{}_count", query.name)).is_none() {
        return;
    }
    for var in natterbox_common::config::OWNER_VARIABLES {
        session.set_var_prechecked(var, None);
    }
    let mut columns: Vec<&str> = query
        .template
        .objects
        .iter()
        .flat_map(|(_, fields)| fields.iter().map(String::as_str))
        .collect();
    if query.kind == QueryKind::Sosl {
        columns.push("type");
    }
    for column in columns {
        for (row, rows) in std::iter::once((1, 1)).chain((1..=query.max_rows).map(|r| (r, 2))) {
            session.set_var_prechecked(&query.variable(column, row, rows), None);
        }
    }
}

fn publish(
    session: &Session<'_>,
    kind: QueryKind,
    name: &str,
    query: Option<&NamedQuery>,
    answer: &QueryAnswer,
) {
    let app = app_name(kind);
    if let Some(query) = query {
        clear_previous(session, query);
    }
    let ms = answer.elapsed.as_millis().to_string();
    session.set_var_prechecked(status_var(kind), Some(answer.status.as_str()));
    let prefix = &status_var(kind)[..status_var(kind).len() - "status".len()];
    session.set_var_prechecked(&format!("{prefix}ms"), Some(&ms));
    session.set_var_prechecked(
        &format!("{prefix}source"),
        answer.source.map(|s| s.as_str()),
    );
    if let Some(outcome) = &answer.outcome {
        for (var, value) in outcome.vars.iter() {
            if has_variable_expansion(value) {
                log_session(
                    session,
                    Level::Warning,
                    &format!("{app}: not setting {var}: the Salesforce value contains a variable expansion"),
                );
                continue;
            }
            session.set_var_prechecked(var, Some(value));
        }
    }
    // The owner directory's view of a one-row answer's owner, as after sf_lookup.
    for (var, value) in answer.owner.iter().flat_map(|o| o.vars()) {
        if !has_variable_expansion(value) {
            session.set_var_prechecked(var, Some(value));
        }
    }
    let level = match answer.status {
        LookupStatus::Found | LookupStatus::NotFound => Level::Info,
        _ => Level::Warning,
    };
    if log::enabled(level, Some(session)) {
        log_session(
            session,
            level,
            &format!(
                "{app} org={} name={} status={} source={} rows={} ms={ms}{}",
                answer.org.unwrap_or("-"),
                printable(name),
                answer.status,
                answer.source.map_or("-", |s| s.as_str()),
                answer.outcome.as_ref().map_or(0, |o| o.match_count),
                answer
                    .detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
            ),
        );
    }
}
