//! The call-path logic of mod_natterbox_sf, in plain Rust: it tests without FreeSWITCH. The
//! cdylib's FFI layer calls into it.

pub mod agent_calls;
pub mod args;
pub mod breaker;
pub mod budget;
pub mod cache;
pub mod engine;
pub mod fleet_cache;
mod fleet_hooks;
mod fleet_usage;
pub mod flight;
pub mod metrics;
pub mod omni_parking;
mod org_upkeep;
pub mod outbox;
pub mod outcome;
pub mod overload;
pub mod owners;
pub mod presence;
pub mod query;
mod query_invalidation;
pub mod read_api;
pub mod schema_check;
pub mod search;
pub mod spool;
pub mod striped;
pub mod tokens;
pub mod warnings;
pub mod writes;

pub use engine::{E164Text, Engine, LookupAnswer, LookupRequest, ReloadReport};
pub use outcome::{LookupStatus, Outcome, Source};
pub use query::{QueryAnswer, QueryRequest};
