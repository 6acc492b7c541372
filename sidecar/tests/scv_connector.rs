//! The real sidecar serves the Service Cloud Voice connector on the agent listener: the page
//! Salesforce frames and the committed bundle, byte for byte, with the console's policy.

mod support;

use support::*;

#[tokio::test]
async fn the_agent_listener_serves_the_connector_page_and_the_committed_bundle() {
    let mut setup = Setup::new();
    setup.agent("005000000000001AAA", "1001", "token-alice");
    setup.write_config(&org_without_auth("acme"), "");
    let _running = setup.start().await;

    let page = reqwest::get(format!("http://{}/scv/", setup.agent))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("frame-ancestors 'self' https://*.lightning.force.com:*"),
        "{policy}"
    );
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(page.text().await.unwrap().contains("src=\"connector.js\""));

    let bundle = reqwest::get(format!("http://{}/scv/connector.js", setup.agent))
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    assert_eq!(
        bundle.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scv-connector/dist/natterbox-scv-connector.js"
    ))
    .unwrap();
    assert_eq!(bundle.text().await.unwrap(), committed);
}
