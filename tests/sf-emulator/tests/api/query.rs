use crate::common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn versions_resource_needs_no_auth() {
    let emu = start().await;
    let r = client()
        .get(format!("{}/services/data/", emu.instance_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("sforce-limit-info").is_none());
    let v: Value = r.json().await.unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(
        list[0],
        json!({"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"})
    );
    assert_eq!(
        list.last().unwrap(),
        &json!({"label": "Winter '27", "url": "/services/data/v68.0", "version": "68.0"})
    );
    assert!(list.contains(
        &json!({"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"})
    ));
}

#[tokio::test]
async fn retired_and_malformed_versions() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, _, b) = get(&emu, &tok, "/services/data/v30.0/limits").await;
    assert_eq!(s, 410);
    assert_eq!(b[0]["errorCode"], "GONE");
    let (s, _, b) = get(&emu, &tok, "/services/data/v38/limits").await;
    assert_eq!(s, 404);
    assert_eq!(
        b,
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])
    );
    assert_eq!(get(&emu, &tok, "/services/data/v69.0/limits").await.0, 404);
    assert_eq!(get(&emu, &tok, "/services/data/v31.0/limits").await.0, 200);
    assert_eq!(get(&emu, &tok, "/services/data/v68.0/limits").await.0, 200);
}

#[tokio::test]
async fn auth_errors() {
    let emu = start().await;
    let url = format!("{}/services/data/{V}/limits", emu.instance_url());
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let r = client()
        .get(&url)
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"message": "INVALID_HEADER_TYPE", "errorCode": "INVALID_AUTH_HEADER"}])
    );
    let r = client()
        .get(&url)
        .bearer_auth("00Dxx!bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()[0]["errorCode"],
        "INVALID_SESSION_ID"
    );
    // legacy "OAuth" scheme works
    let tok = token(&emu).await;
    let r = client()
        .get(&url)
        .header("Authorization", format!("OAuth {tok}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn parent_fields_nest_with_attributes_and_null_lookups() {
    let emu = start().await;
    let tok = token(&emu).await;
    let b = query(&emu, &tok, "SELECT Id, Name, Phone, Owner.Name, Owner.Extension, Account.Name, Preferred_Queue__c FROM Contact WHERE LastName = 'Lovelace'").await;
    assert_eq!(b["totalSize"], 1);
    assert_eq!(b["done"], true);
    let r = &b["records"][0];
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "attributes",
            "Id",
            "Name",
            "Phone",
            "Owner",
            "Account",
            "Preferred_Queue__c"
        ]
    );
    assert_eq!(r["attributes"]["type"], "Contact");
    assert_eq!(
        r["attributes"]["url"],
        format!(
            "/services/data/{V}/sobjects/Contact/{}",
            r["Id"].as_str().unwrap()
        )
    );
    assert_eq!(r["Phone"], "(415) 555-0123");
    assert_eq!(r["Owner"]["attributes"]["type"], "User");
    assert_eq!(r["Owner"]["Name"], "Grace Hopper");
    assert_eq!(r["Owner"]["Extension"], "1001");
    assert_eq!(r["Account"]["Name"], "Acme Corporation");
    assert_eq!(r["Preferred_Queue__c"], "vip-support");
    assert!(r.get("Owner.Name").is_none());
    let id = r["Id"].as_str().unwrap();
    assert_eq!(id.len(), 18);
    assert_eq!(sf_emulator::ids::to18(&id[..15]).unwrap(), id);
    let b = query(
        &emu,
        &tok,
        "SELECT Name, Account.Name FROM Contact WHERE LastName = 'Nolan'",
    )
    .await;
    assert_eq!(b["records"][0]["Account"], Value::Null);
}

#[tokio::test]
async fn where_operators() {
    let emu = start().await;
    let tok = token(&emu).await;
    let cases: &[(&str, &[&str])] = &[
        ("SELECT Name FROM Contact WHERE LastName = 'smith' ORDER BY FirstName", &["Jane Smith", "John Smith"]),
        ("SELECT Name FROM Contact WHERE LastName = 'O\\'Brien'", &["Patrick O'Brien"]),
        ("SELECT Name FROM Contact WHERE Phone = '+44 20 7946 0958' AND FirstName != 'Jane'", &["John Smith"]),
        ("SELECT Name FROM Contact WHERE Phone = '+442079460958'", &[]),
        ("SELECT Name FROM Lead WHERE Name LIKE '%D\\'Angelo'", &["Maria D'Angelo"]),
        ("SELECT Name FROM Lead WHERE LastName IN ('Lee', 'Tanaka') ORDER BY LastName DESC", &["Kenji Tanaka", "Sam Lee"]),
        ("SELECT Name FROM Lead WHERE LastName NOT IN ('Lee', 'Tanaka') AND Country IN ('Italy', 'Japan') AND FirstName != 'Yuki'", &["Maria D'Angelo"]),
        ("SELECT Name FROM Routing_Rule__c WHERE Priority__c > 1", &["US Sales"]),
        ("SELECT Name FROM Routing_Rule__c WHERE Priority__c <= 1", &["UK Support"]),
        ("SELECT Name FROM Contact WHERE (LastName = 'Smith' OR LastName = 'Jones') AND NOT FirstName = 'John' ORDER BY Name", &["Bob Jones", "Jane Smith"]),
        ("SELECT Name FROM Contact WHERE Account.Name = 'Globex Ltd' AND Owner.Extension = '1002' ORDER BY Name LIMIT 1", &["Jane Smith"]),
        ("SELECT Name FROM Contact WHERE AccountId = null", &["Chris Nolan"]),
        ("SELECT Name FROM Account WHERE Phone != null ORDER BY Name LIMIT 2 OFFSET 1", &["Dublin Widgets", "Globex Ltd"]),
        ("SELECT Name FROM Account ORDER BY Phone NULLS LAST, Name LIMIT 1 OFFSET 4", &["Umbrella Holdings"]),
        ("select name from contact where lastname like 'sm%' order by name desc", &["John Smith", "Jane Smith"]),
    ];
    for (soql, want) in cases {
        let b = query(&emu, &tok, soql).await;
        assert_eq!(names(&b), *want, "{soql}");
    }
    let b = query(
        &emu,
        &tok,
        "SELECT Subject FROM Task WHERE ActivityDate > 2026-01-01",
    )
    .await;
    assert_eq!(b["totalSize"], 1);
    let b = query(
        &emu,
        &tok,
        "SELECT COUNT() FROM Contact WHERE Account.Name = 'Acme Corporation'",
    )
    .await;
    assert_eq!(b, json!({"totalSize": 4, "done": true, "records": []}));
    let ada = query(
        &emu,
        &tok,
        "SELECT Id FROM Contact WHERE LastName = 'Lovelace'",
    )
    .await["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = query(
        &emu,
        &tok,
        &format!("SELECT Name FROM Contact WHERE Id = '{}'", &ada[..15]),
    )
    .await;
    assert_eq!(names(&b), ["Ada Lovelace"], "15-char id literal matches");
}

#[tokio::test]
async fn query_errors() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, code, msg) = query_err(&emu, &tok, "SELECT Foo FROM Contact").await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD"));
    assert!(msg.starts_with("\nSELECT Foo FROM Contact\n       ^\nERROR at Row:1:Column:8\nNo such column 'Foo' on entity 'Contact'."), "{msg}");
    let (s, code, msg) = query_err(&emu, &tok, "SELECT Id FROM Nope__c").await;
    assert_eq!((s, code.as_str()), (400, "INVALID_TYPE"));
    assert!(
        msg.contains("sObject type 'Nope__c' is not supported."),
        "{msg}"
    );
    assert!(msg.contains("ERROR at Row:1:Column:16"), "{msg}");
    let (_, code, msg) = query_err(&emu, &tok, "SELECT Bogus.Name FROM Contact").await;
    assert_eq!(code, "INVALID_FIELD");
    assert!(
        msg.contains("Didn't understand relationship 'Bogus'"),
        "{msg}"
    );
    for bad in [
        "SELECT Id FROM Contact WHERE",
        "SELECT Id FROM Contact WHERE LastName = 'x' AND FirstName = 'y' OR Phone = 'z'",
        "SELECT Id FROM Contact WHERE LastName = 'a\\qb'",
        "SELECT Id FROM Contact WHERE LastName = 'unterminated",
        "SELECT Id FROM Contact GROUP BY LastName",
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
        "SELECT Id FROM Contact; DELETE FROM Contact",
        "SELECT Id, Id FROM Contact",
        "",
    ] {
        let (s, code, _) = query_err(&emu, &tok, bad).await;
        assert_eq!((s, code.as_str()), (400, "MALFORMED_QUERY"), "{bad}");
    }
    let (_, _, msg) = query_err(
        &emu,
        &tok,
        "SELECT Id FROM Contact WHERE LastName = 'a\\qb'",
    )
    .await;
    assert!(msg.contains("Illegal character sequence '\\q'"), "{msg}");
    let (_, code, _) = query_err(&emu, &tok, "SELECT Id FROM Contact WHERE Id = 'abc'").await;
    assert_eq!(code, "INVALID_QUERY_FILTER_OPERATOR");
    let (_, code, _) = query_err(&emu, &tok, "SELECT Id FROM Contact WHERE LastName = 5").await;
    assert_eq!(code, "INVALID_FIELD");
    let (_, code, _) = query_err(&emu, &tok, "SELECT Id FROM Contact LIMIT 5 OFFSET 2001").await;
    assert_eq!(code, "NUMBER_OUTSIDE_VALID_RANGE");
    let (_, code, _) = query_err(&emu, &tok, "SELECT Id FROM Screen_Pop__e").await;
    assert_eq!(code, "INVALID_TYPE");
}

#[tokio::test]
async fn paging_with_locators() {
    let emu = start_with(|o| o.query_batch_size = 4).await;
    let tok = token(&emu).await;
    let first = query(&emu, &tok, "SELECT Id, Name FROM Contact ORDER BY Name").await;
    assert_eq!(first["totalSize"], 9);
    assert_eq!(first["done"], false);
    assert_eq!(first["records"].as_array().unwrap().len(), 4);
    let next = first["nextRecordsUrl"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(&format!("/services/data/{V}/query/01g")),
        "{next}"
    );
    let loc = next.rsplit('/').next().unwrap();
    assert_eq!(loc.split('-').next().unwrap().len(), 18);
    assert!(loc.ends_with("-4"));
    let mut all = names(&first);
    let mut url = next;
    loop {
        let (s, _, page) = get(&emu, &tok, &url).await;
        assert_eq!(s, 200);
        all.extend(names(&page));
        if page["done"] == true {
            assert!(page.get("nextRecordsUrl").is_none());
            break;
        }
        url = page["nextRecordsUrl"].as_str().unwrap().to_string();
    }
    assert_eq!(all.len(), 9);
    let mut sorted = all.clone();
    sorted.sort_by_key(|s| s.to_lowercase());
    assert_eq!(all, sorted);
    // stale locators
    let (s, _, b) = get(
        &emu,
        &tok,
        &format!("/services/data/{V}/query/01gEm0000000099AAA-4"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!([{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}])
    );
    let first = query(&emu, &tok, "SELECT Id FROM Contact").await;
    let next = first["nextRecordsUrl"].as_str().unwrap().to_string();
    assert_eq!(emu.admin().expire_cursors(), 2);
    let (s, _, b) = get(&emu, &tok, &next).await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_QUERY_LOCATOR"))
    );
}

#[tokio::test]
async fn batch_size_header_and_query_all() {
    let emu = start_with(|o| o.query_batch_size = 3).await;
    let tok = token(&emu).await;
    let r = client()
        .get(format!(
            "{}{}",
            emu.instance_url(),
            q("SELECT Id FROM Contact")
        ))
        .bearer_auth(&tok)
        .header("Sforce-Query-Options", "batchSize=5")
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["records"].as_array().unwrap().len(), 5);
    // deleted records: only queryAll sees them
    let chris = query(
        &emu,
        &tok,
        "SELECT Id FROM Contact WHERE LastName = 'Nolan'",
    )
    .await["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = send(
        &emu,
        &tok,
        reqwest::Method::DELETE,
        &format!("/services/data/{V}/sobjects/Contact/{chris}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        query(
            &emu,
            &tok,
            "SELECT COUNT() FROM Contact WHERE LastName = 'Nolan'"
        )
        .await["totalSize"],
        0
    );
    let (s, _, b) = get(
        &emu,
        &tok,
        &format!(
            "/services/data/{V}/queryAll?q={}",
            url_encode("SELECT Id, IsDeleted FROM Contact WHERE LastName = 'Nolan'")
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["records"][0]["IsDeleted"], true);
}

#[tokio::test]
async fn limit_info_header_and_daily_limit() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (_, h, _) = get(&emu, &tok, &q("SELECT Id FROM Account")).await;
    assert_eq!(h["sforce-limit-info"], "api-usage=1/15000");
    let (_, h, _) = get(&emu, &tok, &q("SELECT Id FROM Account")).await;
    assert_eq!(h["sforce-limit-info"], "api-usage=2/15000");
    emu.admin().set_limits(sf_emulator::LimitsUpdate {
        daily_used: Some(100),
        daily_max: Some(100),
        ..Default::default()
    });
    let (s, h, b) = get(&emu, &tok, &q("SELECT Id FROM Account")).await;
    assert_eq!(s, 403);
    assert!(h.get("retry-after").is_none());
    assert_eq!(
        b,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    emu.admin().set_limits(sf_emulator::LimitsUpdate {
        daily_max: Some(1000),
        ..Default::default()
    });
    let (s, _, b) = get(&emu, &tok, &format!("/services/data/{V}/limits")).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["DailyApiRequests"],
        json!({"Max": 1000, "Remaining": 899})
    );
}

/// Named queries bind dates, date-times, numbers and booleans unquoted: the emulator takes only
/// what Salesforce takes, and its query log shows each comparison value as read.
#[tokio::test]
async fn date_and_date_time_literals_are_strict_and_logged() {
    let emu = start().await;
    let tok = token(&emu).await;
    let b = query(
        &emu,
        &tok,
        "SELECT Name FROM Routing_Rule__c WHERE Valid_From__c = 2026-03-15 AND Active__c = false",
    )
    .await;
    assert_eq!(b["totalSize"], 1);
    assert_eq!(b["records"][0]["Name"], "VIP Desk");
    let log = emu.admin().queries();
    assert_eq!(log.last().unwrap().values, ["2026-03-15", "false"]);
    let b = query(
        &emu,
        &tok,
        "SELECT Id FROM Case WHERE CreatedDate < 2099-01-01T00:00:00.5+01:00 AND IsClosed = false",
    )
    .await;
    assert_eq!(b["totalSize"], 4);
    for (soql, code) in [
        // Not a calendar day, or no zone: malformed.
        (
            "SELECT Id FROM Routing_Rule__c WHERE Valid_From__c = 2026-02-30",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Case WHERE CreatedDate < 2099-01-01T00:00:00",
            "MALFORMED_QUERY",
        ),
        // A date field takes no date-time, a dateTime field no date.
        (
            "SELECT Id FROM Routing_Rule__c WHERE Valid_From__c = 2026-03-15T00:00:00Z",
            "INVALID_FIELD",
        ),
        (
            "SELECT Id FROM Case WHERE CreatedDate < 2099-01-01",
            "INVALID_FIELD",
        ),
    ] {
        let (status, got, _) = query_err(&emu, &tok, soql).await;
        assert_eq!((status, got.as_str()), (400, code), "{soql}");
    }
}
