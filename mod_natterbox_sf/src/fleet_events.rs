//! The module's side of the fleet: a `natterbox_sf::redis` CUSTOM event whenever the Redis
//! link goes down or comes back (lookups go on without it meanwhile), and
//! `sf cache invalidate`, and the sidecar's Change Data Capture invalidations. Without `<fleet>`
//! only the invalidations run (this host's cache).

use natterbox_common::invalidation::Extent;
use std::time::Duration;

use natterbox_common::fleet::LinkChange;
use natterbox_engine::Engine;

use crate::ffi::event;
use crate::ffi::interface::MODULE_NAME;
use crate::ffi::log::{self, Level};

/// Fired on each change of the Redis link's health.
pub const REDIS_EVENT: &std::ffi::CStr = c"natterbox_sf::redis";

const INVALIDATE_WAIT: Duration = Duration::from_secs(2);

pub fn start(engine: &Engine) {
    if engine.fleet().is_none() {
        return;
    }
    if !event::reserve_subclass(MODULE_NAME, REDIS_EVENT) {
        log::log(
            Level::Warning,
            "natterbox_sf::redis events are reserved by another module; not firing them",
        );
        return;
    }
    engine.on_redis_change(|change| {
        let (state, reason) = match change {
            LinkChange::Up => ("up", ""),
            LinkChange::Down { reason } => ("down", reason.as_str()),
        };
        log::log(
            if matches!(change, LinkChange::Up) {
                Level::Notice
            } else {
                Level::Warning
            },
            &if reason.is_empty() {
                "mod_natterbox_sf: redis is up; lookups use the fleet cache".to_string()
            } else {
                format!("mod_natterbox_sf: redis is down ({reason}); lookups go on to Salesforce without it")
            },
        );
        event::fire_custom(
            REDIS_EVENT,
            &[("SF-Redis", state), ("SF-Redis-Reason", reason)],
        );
    });
}

pub fn stop() {
    event::free_subclass(MODULE_NAME, REDIS_EVENT);
}

/// `sf cache invalidate <org> <object> <id>…`: the records' answers leave this host's cache,
/// Redis and every host's cache.
pub fn invalidate(engine: &Engine, org: &str, object: &str, ids: &[&str]) -> String {
    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    match engine.invalidate_blocking(org, object, &ids, Extent::Records, INVALIDATE_WAIT) {
        Ok(n) => format!("+OK invalidated {n} answers\n"),
        Err(e) => format!("-ERR {e}\n"),
    }
}

/// A Change Data Capture event from the sidecar: the records' answers (and, as `extent` says,
/// the org's unsettled answers or every answer about the object) leave this host's cache,
/// Redis and every host's cache (on the call-control thread, never a call's).
pub fn invalidate_changed(
    engine: &Engine,
    org: &str,
    object: &str,
    ids: &[String],
    extent: Extent,
) {
    match engine.invalidate_blocking(org, object, ids, extent, INVALIDATE_WAIT) {
        Ok(n) => log::log(
            Level::Debug,
            &format!(
                "mod_natterbox_sf: {object} change in org {org}: invalidated {n} cached answers"
            ),
        ),
        Err(e) => log::log(
            Level::Warning,
            &format!("mod_natterbox_sf: {object} change in org {org}: {e}"),
        ),
    }
}
