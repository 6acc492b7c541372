//! Agents' presence for the dialplan (set from their consoles, through the sidecar):
//! `sf presence <user id or extension>` and the `sf_presence <user id or extension>` application,
//! which sets `sf_agent_presence` so a condition can send an Away owner's calls to the queue.

use natterbox_engine::args::printable;

use crate::ffi::log::{log_session, Level};
use crate::ffi::session::Session;
use crate::module;

pub const PRESENCE_VARIABLE: &str = "sf_agent_presence";

/// The state as text, or why not.
pub fn lookup(who: &str) -> Result<&'static str, String> {
    let who = who.trim();
    if who.is_empty() || who.len() > 64 || !who.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "expected an agent's Salesforce user id or extension, got {:?}",
            printable(who)
        ));
    }
    let state = module::state().ok_or("mod_natterbox_sf is not running")?;
    Ok(state.engine.presence().state_of(who).as_str())
}

pub fn sf_presence(session: &Session<'_>, data: &str) {
    match lookup(data) {
        Ok(presence) => {
            session.set_var(PRESENCE_VARIABLE, Some(presence));
        }
        Err(e) => {
            log_session(session, Level::Error, &format!("sf_presence: {e}"));
            session.set_var(PRESENCE_VARIABLE, None);
        }
    }
}
