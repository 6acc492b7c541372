//! The agent console: the softphone page the sidecar serves on the agent listener
//! (`/console/`), built into the binary from `sidecar/console/`. Plain HTML, CSS and JS; it
//! speaks the `/agent` WebSocket like any other client. Inside Salesforce it is also the Open
//! CTI softphone (docs/open-cti.md), which is why the policy below lets Lightning frame it and
//! lets `opencti_min.js` load from a Lightning or My Domain host.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../console/index.html");
const CONSOLE_JS: &str = include_str!("../console/console.js");
const OPENCTI_JS: &str = include_str!("../console/opencti.js");
const CONSOLE_CSS: &str = include_str!("../console/console.css");

/// Salesforce hosts the softphone may be framed by and load Open CTI from (any port, so a
/// test host on a high port fits too).
const SALESFORCE_SOURCES: &str = "https://*.lightning.force.com:* https://*.my.salesforce.com:*";

fn policy() -> String {
    format!(
        "default-src 'none'; script-src 'self' {SALESFORCE_SOURCES}; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; frame-ancestors 'self' {SALESFORCE_SOURCES}; \
         base-uri 'none'; form-action 'none'"
    )
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/console/opencti.js",
            get(|| async { asset("text/javascript; charset=utf-8", OPENCTI_JS) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
}

pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files; a new sidecar version must be seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(&policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_scripts_and_never_asks_for_a_token_in_the_url() {
        for script in ["console.js", "opencti.js"] {
            assert!(
                INDEX_HTML.contains(&format!("src=\"{script}\"")),
                "{script}"
            );
        }
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!CONSOLE_JS.contains("localStorage") && !CONSOLE_JS.contains("sessionStorage"));
        assert!(CONSOLE_JS.contains("natterbox.token."));
        assert!(policy().contains("frame-ancestors 'self' https://*.lightning.force.com:*"));
    }

    #[test]
    fn the_call_center_file_has_every_required_item_and_is_for_lightning() {
        let xml = include_str!("../../open-cti/natterbox-call-center.xml");
        for item in [
            "reqInternalName",
            "reqDisplayName",
            "reqAdapterUrl",
            "reqUseApi",
            "reqSoftphoneHeight",
            "reqSoftphoneWidth",
        ] {
            assert!(xml.contains(&format!("name=\"{item}\"")), "{item}");
        }
        assert!(xml.contains(
            "name=\"reqSalesforceCompatibilityMode\" label=\"Salesforce Compatibility Mode\">Lightning<"
        ));
        // Lightning frames only an https softphone.
        assert!(xml.contains("label=\"CTI Adapter URL\">https://"));
    }
}
