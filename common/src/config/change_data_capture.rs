//! `<change-data-capture>` per org: the sidecar subscribes to the org's change events through
//! the Pub/Sub API and drops cached answers naming changed records.
//!
//! ```xml
//! <change-data-capture pubsub-url="https://api.pubsub.salesforce.com:7443"
//!     objects="Contact,Lead,Account" batch="100"/>
//! ```

use super::{err, ConfigError};
use crate::xml::Element;

/// Salesforce's global Pub/Sub API endpoint (every org's events, told apart by `tenantid`).
pub const DEFAULT_PUBSUB_URL: &str = "https://api.pubsub.salesforce.com:7443";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDataCaptureConfig {
    pub pubsub_url: String,
    /// The objects whose `<Object>ChangeEvent` channels are subscribed (Change Data Capture
    /// must be enabled for each in Setup).
    pub objects: Vec<String>,
    /// Events asked for per FetchRequest (flow control).
    pub batch: u32,
}

pub fn parse(
    element: Option<&Element>,
    org_ctx: &str,
    allow_insecure_http: bool,
) -> Result<Option<ChangeDataCaptureConfig>, ConfigError> {
    let Some(element) = element else {
        return Ok(None);
    };
    let ctx = format!("{org_ctx} <change-data-capture>");
    let pubsub_url = element
        .attr("pubsub-url")
        .unwrap_or(DEFAULT_PUBSUB_URL)
        .trim_end_matches('/')
        .to_string();
    if let Err(e) = crate::https_only::check("pubsub-url", &pubsub_url, allow_insecure_http) {
        return err(format!("{ctx}: {e}"));
    }
    let mut objects = Vec::new();
    for name in element
        .attr("objects")
        .unwrap_or("Contact,Lead,Account")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let api_name = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.starts_with(|c: char| c.is_ascii_alphabetic());
        if !api_name {
            return err(format!(
                "{ctx}: objects: \"{name}\" is not an object API name"
            ));
        }
        if !objects.iter().any(|o| o == name) {
            objects.push(name.to_string());
        }
    }
    if objects.is_empty() {
        return err(format!("{ctx}: objects is empty"));
    }
    let batch = match element.attr("batch") {
        None => 100,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return err(format!("{ctx}: batch=\"{text}\": expected 1 to 1000")),
        },
    };
    Ok(Some(ChangeDataCaptureConfig {
        pubsub_url,
        objects,
        batch,
    }))
}
