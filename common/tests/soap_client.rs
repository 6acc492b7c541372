//! The SOAP partner client against the emulator: the same reads as the REST client give the same
//! records, across pages, and its faults classify as REST's errors do.

use natterbox_common::salesforce::client::{http_client, ClientOptions};
use natterbox_common::salesforce::{QueryValue, SalesforceClient, Session, SfError, SoapClient};
use serde_json::Value;
use sf_emulator::{Emulator, EmulatorOptions};

async fn session(emulator: &Emulator) -> Session {
    let token: Value = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", emulator.instance_url()))
        .basic_auth("3MVG9Emu.CC.ClientId.natterbox", Some("cc-app-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Session {
        instance_url: token["instance_url"].as_str().unwrap().to_string(),
        access_token: token["access_token"].as_str().unwrap().to_string(),
    }
}

/// (type, Id, Name) of each record, sorted: what both APIs must agree on.
fn summary(records: &[Value]) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = records
        .iter()
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                text(&r["attributes"]["type"]),
                text(&r["Id"]),
                text(&r["Name"]),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn soap_and_rest_read_the_same_records() {
    let mut options = EmulatorOptions::default_seed();
    options.query_batch_size = 4;
    let emulator = Emulator::start_background(options).unwrap();
    let session = session(&emulator).await;
    let http = http_client(&ClientOptions::default()).unwrap();
    let rest = SalesforceClient::new(http.clone(), "66.0");
    let soap = SoapClient::new(http, "66.0");

    // Nine contacts in pages of four: query, then queryMore twice.
    let soql = "SELECT Id, Name, Owner.Name, Email FROM Contact";
    let (by_rest, _) = rest.query(&session, soql, 100).await.unwrap();
    let (by_soap, limit) = soap.query(&session, soql, 100).await.unwrap();
    assert_eq!(by_soap.len(), 9);
    assert_eq!(summary(&by_soap), summary(&by_rest));
    assert_eq!(emulator.admin().endpoint_count("soap_queryMore"), 2);
    let limit = limit.expect("LimitInfoHeader");
    assert!(limit.used > 0 && limit.max > limit.used, "{limit:?}");
    // Parents nest and nulls are null, as in REST.
    let ada = by_soap
        .iter()
        .find(|r| r["Name"] == "Ada Lovelace")
        .unwrap();
    assert_eq!(ada["Owner"]["Name"], "Grace Hopper");
    let nolan = by_soap.iter().find(|r| r["Name"] == "Chris Nolan").unwrap();
    assert_eq!(nolan["Email"], Value::Null);
    // max_records stops the paging.
    let (first_pages, _) = soap.query(&session, soql, 5).await.unwrap();
    assert_eq!(first_pages.len(), 8);

    let sosl = QueryValue::from(
        "FIND {\"4155550199\"} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone), Lead(Id, Name)",
    );
    let (by_rest, _) = rest.search(&session, &sosl).await.unwrap();
    let (by_soap, _) = soap.search(&session, &sosl.decoded()).await.unwrap();
    assert_eq!(by_soap.len(), 2);
    assert_eq!(summary(&by_soap), summary(&by_rest));

    match soap.search(&session, "FIND {a:b}").await {
        Err(SfError::Api(e)) => {
            assert_eq!(e.code, "MALFORMED_SEARCH");
            assert!(!e.is_server_side() && !e.is_invalid_session());
        }
        other => panic!("{other:?}"),
    }
    emulator.admin().expire_sessions();
    match soap.query(&session, soql, 10).await {
        Err(SfError::Api(e)) => assert!(e.is_invalid_session(), "{e}"),
        other => panic!("{other:?}"),
    }
}
