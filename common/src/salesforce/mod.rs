//! The Salesforce protocol, once for both programs: query-language escaping, error bodies, the
//! limit header, OAuth token responses and a REST client.

pub mod bind;
pub mod client;
pub mod describe;
pub mod error;
pub mod escape;
pub mod oauth;
pub mod record_id;
pub mod soap;

pub use client::{QueryValue, SalesforceClient, Session};
pub use error::{ApiError, LimitInfo, SfError};
pub use soap::SoapClient;
