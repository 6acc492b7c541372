//! Salesforce's Pub/Sub API (`eventbus.v1`), generated from `proto/pubsub_api.proto`.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod eventbus {
    tonic::include_proto!("eventbus.v1");
}

pub use eventbus::pub_sub_client::PubSubClient;
pub use eventbus::pub_sub_server::{PubSub, PubSubServer};
pub use eventbus::*;

/// gRPC metadata keys Salesforce reads the session from (pubsub_api.proto, service comment).
pub const ACCESS_TOKEN_KEY: &str = "accesstoken";
pub const INSTANCE_URL_KEY: &str = "instanceurl";
pub const TENANT_ID_KEY: &str = "tenantid";

pub mod change_event;
pub mod field_bitmap;

/// The custom error code Salesforce puts in a failed call's trailers (`error-code`).
pub const ERROR_CODE_KEY: &str = "error-code";
pub use tonic;
