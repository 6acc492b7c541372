//! Agents' presence for the dialplan (set from their consoles, through the sidecar), per org:
//! `sf presence [org=<org>] agent=<user id or extension>` and the application
//! `sf_presence [org=<org>] agent=<user id or extension>`, which sets `sf_agent_presence` so a
//! condition can send an Away owner's calls to the queue.
//!
//! The org: `org=` (the dialplan's own text), else, in `sf_presence`, the org this call's
//! `sf_lookup` used (`sf_lookup_org`, set by the module) or the dialplan's `sf_org`, else the
//! default org. The agent is the last argument and takes the rest of the data verbatim, so a
//! caller's value (`agent=${sip_h_X-Agent}`) can never add an `org=`: it is an agent that is not
//! letters and digits, an error.

use natterbox_engine::args::{printable, AppArgs, ArgSpec};

use crate::ffi::log::{log_session, Level};
use crate::ffi::session::Session;
use crate::module;

pub const PRESENCE_VARIABLE: &str = "sf_agent_presence";

const PRESENCE_ARGS: ArgSpec = ArgSpec {
    settings: &["org"],
    last: &["agent"],
};

/// The state as text, or why not. `channel_org`: the org the call chose (`sf_lookup_org`, else
/// `sf_org`), used when `data` has no `org=`.
pub fn lookup(data: &str, channel_org: Option<String>) -> Result<&'static str, String> {
    let args = AppArgs::parse(data, &PRESENCE_ARGS)?;
    let who = args.last().map(|(_, who)| who.trim()).unwrap_or_default();
    if who.is_empty() || who.len() > 64 || !who.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "expected agent=<Salesforce user id or extension>, got {:?}",
            printable(who)
        ));
    }
    let state = module::state().ok_or("mod_natterbox_sf is not running")?;
    let snapshot = state.engine.snapshot();
    let named = args.get("org").map(str::to_string).or(channel_org);
    let org = snapshot
        .config
        .resolve_org(named.as_deref())
        .ok_or_else(|| match &named {
            Some(name) => format!("org {:?} is not configured", printable(name)),
            None => "no org: pass org= (no default-org is configured)".to_string(),
        })?;
    Ok(state.engine.presence().state_of(&org.name, who).as_str())
}

pub fn sf_presence(session: &Session<'_>, data: &str) {
    let channel_org = session
        .var("sf_lookup_org")
        .or_else(|| session.var("sf_org"));
    match lookup(data, channel_org) {
        Ok(presence) => {
            session.set_var(PRESENCE_VARIABLE, Some(presence));
        }
        Err(e) => {
            log_session(session, Level::Error, &format!("sf_presence: {e}"));
            session.set_var(PRESENCE_VARIABLE, None);
        }
    }
}
