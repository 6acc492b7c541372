//! The Pub/Sub API (gRPC, `eventbus.v1.PubSub`) on a port of its own: Change Data Capture
//! events of the org's writes, with `GetTopic`, `GetSchema` and `Subscribe` (flow control and
//! replay). See README.md "Pub/Sub API".

mod event_body;
mod feed;
mod service;

pub use feed::{Change, ChangeFeed};
pub use service::{serve, PubSubService};
