//! What mod_natterbox_sf and the sidecar share, so that each exists once: the config file, the
//! Salesforce protocol, phone-number parsing, the token hand-off files and the event wire format.

pub mod atomic_file;
pub mod call_control;
pub mod config;
pub mod fleet;
pub mod handoff;
pub mod https_only;
pub mod invalidation;
pub mod named_query;
pub mod phone;
pub mod record_write;
pub mod salesforce;
pub mod wire;
mod xml;
