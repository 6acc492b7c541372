//! mod_natterbox_sf: Salesforce caller lookups, screen pops and call logs for FreeSWITCH.
//!
//! Layers: `ffi` holds every `unsafe` (bindings, wrappers, the exported table); `module` is the
//! load/shutdown sequence; `apps`, `api` and `hangup` are the handlers, written against the
//! safe wrappers; the call-path logic is the `natterbox-engine` crate.

mod api;
mod application_wait;
mod apps;
mod bridge_holder;
mod budget_event;
mod call_control;
mod call_progress;
mod ffi;
mod fleet_events;
mod hangup;
mod module;
mod omni_route;
mod presence;
mod query_api;
mod query_apps;
mod record_writes;

pub use ffi::entry::mod_natterbox_sf_module_interface;
