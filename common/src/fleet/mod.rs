//! Fleet mode: many hosts sharing one Redis (docs/fleet.md). Both the module and the sidecar
//! use this one implementation: the connection and its health, the key scheme, the fleet-wide
//! lease, each org's shared API usage, and the broadcasts every host hears (invalidations, an
//! org over its API limit, an org's usage crossing a budget line).
//!
//! Nothing here runs unless the config has `<fleet>` with a `redis-url`.

mod broadcast;
mod keys;
mod link;
mod token_store;
mod usage;

pub use broadcast::{invalidate, subscribe, subscribe_channel, Broadcast, Invalidation};
pub use keys::{fingerprint, Keys, PopAddress};
pub use link::{LinkChange, LinkStats, RedisLink, Skipped};
pub use token_store::{
    acquire_refresh_lease, read_token, release_refresh_lease, store_token, StoredToken,
};
pub use usage::{read_usage, report_usage, SharedUsage, OUT_OF_ORDER_WINDOW};

/// The client crate, for the commands each side builds.
pub use redis;
