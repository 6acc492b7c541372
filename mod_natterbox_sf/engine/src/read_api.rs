//! "Run SOSL / run SOQL for this org": the seam every call-time read goes through (the caller
//! lookup, and named queries and searches), so the org's `api="rest|soap"` decides the wire and
//! nothing above it changes. Both answer with the REST API's JSON records and errors.

use natterbox_common::config::OrgApiKind;
use natterbox_common::salesforce::{
    LimitInfo, QueryValue, SalesforceClient, Session, SfError, SoapClient,
};
use serde_json::Value;

/// Records and the org's API usage as the answer reported it.
pub type ReadAnswer = Result<(Vec<Value>, Option<LimitInfo>), SfError>;

/// The API an org's call-time reads use.
#[derive(Clone)]
pub enum OrgReadApi {
    /// `/services/data/vNN.0/search` and `/query`.
    Rest(SalesforceClient),
    /// The SOAP partner API's `search`, `query` and `queryMore`.
    Soap(SoapClient),
}

impl OrgReadApi {
    pub fn new(kind: OrgApiKind, http: reqwest::Client, api_version: &str) -> OrgReadApi {
        match kind {
            OrgApiKind::Rest => OrgReadApi::Rest(SalesforceClient::new(http, api_version)),
            OrgApiKind::Soap => OrgReadApi::Soap(SoapClient::new(http, api_version)),
        }
    }

    pub fn kind(&self) -> OrgApiKind {
        match self {
            OrgReadApi::Rest(_) => OrgApiKind::Rest,
            OrgReadApi::Soap(_) => OrgApiKind::Soap,
        }
    }

    /// A SOSL search. It arrives URL-encoded (the REST lookup's hot path builds it so once per
    /// profile); SOAP carries the text, decoded back exactly.
    pub async fn search(&self, session: &Session, sosl: &QueryValue) -> ReadAnswer {
        match self {
            OrgReadApi::Rest(client) => client.search(session, sosl).await,
            OrgReadApi::Soap(client) => client.search(session, &sosl.decoded()).await,
        }
    }

    /// A SOQL query, following the next page (`nextRecordsUrl` / `queryMore`) until done or
    /// `max_records`.
    pub async fn query(&self, session: &Session, soql: &str, max_records: usize) -> ReadAnswer {
        match self {
            OrgReadApi::Rest(client) => client.query(session, soql, max_records).await,
            OrgReadApi::Soap(client) => client.query(session, soql, max_records).await,
        }
    }
}
