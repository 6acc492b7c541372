//! The Service Cloud Voice connector (docs/service-cloud-voice.md): the page Salesforce's voice
//! client frames (`/scv/`, the contact center's adapter URL) and the connector bundle it loads
//! (`/scv/connector.js`), built by `npm run build` in `scv-connector/` and committed (its
//! `npm run check` fails when the committed bundle is not what the source builds to), so that
//! building the sidecar needs no node. Same headers and policy as the console.

use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

use crate::console::asset;

const INDEX_HTML: &str = include_str!("../../scv-connector/page/index.html");
const CONNECTOR_JS: &str = include_str!("../../scv-connector/dist/natterbox-scv-connector.js");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/scv", get(|| async { Redirect::to("/scv/") }))
        .route(
            "/scv/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/scv/connector.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONNECTOR_JS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_the_bundle_and_the_bundle_is_the_connector() {
        assert!(INDEX_HTML.contains("<script src=\"connector.js\"></script>"));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(CONNECTOR_JS.contains("natterbox.token."));
        assert!(CONNECTOR_JS.contains("SETUP_CONNECTOR"));
        assert!(!CONNECTOR_JS.contains("localStorage") && !CONNECTOR_JS.contains("sessionStorage"));
    }
}
