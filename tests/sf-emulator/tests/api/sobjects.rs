use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn so(path: &str) -> String {
    format!("/services/data/{V}/sobjects/{path}")
}

async fn id_of(emu: &sf_emulator::Emulator, tok: &str, soql: &str) -> String {
    query(emu, tok, soql).await["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn create_read_update_delete() {
    let emu = start().await;
    let tok = token(&emu).await;
    let acme = id_of(
        &emu,
        &tok,
        "SELECT Id FROM Account WHERE Name = 'Acme Corporation'",
    )
    .await;
    let r = client()
        .post(format!("{}{}", emu.instance_url(), so("Contact/")))
        .bearer_auth(&tok)
        .json(&json!({"FirstName": "Mary", "LastName": "O'Neil", "Phone": "020 7946 0011", "AccountId": acme, "Preferred_Queue__c": "uk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers()["sforce-limit-info"]
        .to_str()
        .unwrap()
        .starts_with("api-usage="));
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v, json!({"id": id, "success": true, "errors": []}));
    assert!(id.starts_with("003") && id.len() == 18);
    let (s, _, rec) = get(&emu, &tok, &so(&format!("Contact/{id}"))).await;
    assert_eq!(s, 200);
    assert_eq!(rec["attributes"]["type"], "Contact");
    assert_eq!(rec["Name"], "Mary O'Neil");
    assert_eq!(rec["Phone"], "020 7946 0011", "stored verbatim");
    assert_eq!(
        rec["OwnerId"],
        query(
            &emu,
            &tok,
            "SELECT Id FROM User WHERE Username = 'integration@acme.example'"
        )
        .await["records"][0]["Id"]
    );
    assert!(rec["CreatedDate"].as_str().unwrap().ends_with("+0000"));
    let (s, _, rec) = get(
        &emu,
        &tok,
        &so(&format!("Contact/{}?fields=Name,Account.Name", &id[..15])),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec["Account"]["Name"], "Acme Corporation");
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so(&format!("Contact/{id}")),
        Some(json!({"Title": "CFO", "Phone": "+44 20 7946 0011"})),
    )
    .await;
    assert_eq!((s, b), (204, Value::Null));
    let b = query(
        &emu,
        &tok,
        &format!("SELECT Title, Phone FROM Contact WHERE Id = '{id}'"),
    )
    .await;
    assert_eq!(b["records"][0]["Title"], "CFO");
    // POST with _HttpMethod=PATCH
    let (s, _) = send(
        &emu,
        &tok,
        Method::POST,
        &so(&format!("Contact/{id}?_HttpMethod=PATCH")),
        Some(json!({"Title": "CEO"})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = send(
        &emu,
        &tok,
        Method::DELETE,
        &so(&format!("Contact/{id}")),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, b) = get(&emu, &tok, &so(&format!("Contact/{id}"))).await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (404, Some("ENTITY_IS_DELETED"))
    );
    let (s, _, b) = get(&emu, &tok, &so("Contact/003Em0000000999AAA")).await;
    assert_eq!(s, 404);
    assert_eq!(
        b,
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])
    );
    assert_eq!(
        get(&emu, &tok, &so("Nope__c/003Em0000000999AAA")).await.0,
        404
    );
    let created = emu.admin().created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["type"], "Contact");
}

#[tokio::test]
async fn create_validation_errors() {
    let emu = start().await;
    let tok = token(&emu).await;
    let lead = id_of(&emu, &tok, "SELECT Id FROM Lead WHERE LastName = 'Lee'").await;
    let acme = id_of(
        &emu,
        &tok,
        "SELECT Id FROM Account WHERE Name = 'Acme Corporation'",
    )
    .await;
    let cases: Vec<(&str, Value, u16, Value)> = vec![
        (
            "Contact",
            json!({"FirstName": "No"}),
            400,
            json!([{"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}]),
        ),
        (
            "Lead",
            json!({"FirstName": "No"}),
            400,
            json!([{"message": "Required fields are missing: [LastName, Company]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName", "Company"]}]),
        ),
        (
            "Account",
            json!({"Phone": "1"}),
            400,
            json!([{"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Name"]}]),
        ),
        (
            "Task",
            json!({"Subject": "Call"}),
            400,
            json!([{"message": "Required fields are missing: [Status]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Status"]}]),
        ),
        (
            "Contact",
            json!({"Id": "003Em0000000001IAA", "LastName": "X"}),
            400,
            json!([{"message": "The Id field should not be specified in the sobject data.", "errorCode": "INVALID_FIELD"}]),
        ),
        (
            "Contact",
            json!({"LastName": "X", "Bogus__c": 1}),
            400,
            json!([{"message": "No such column 'Bogus__c' on sobject of type Contact", "errorCode": "INVALID_FIELD"}]),
        ),
    ];
    for (obj, body, status, want) in cases {
        let (s, b) = send(&emu, &tok, Method::POST, &so(obj), Some(body.clone())).await;
        assert_eq!((s, &b), (status, &want), "{obj} {body}");
    }
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Task"),
        Some(json!({"Status": "Completed", "WhoId": lead, "WhatId": acme})),
    )
    .await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("FIELD_INTEGRITY_EXCEPTION"))
    );
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Task"),
        Some(json!({"Status": "Completed", "CallType": "Sideways"})),
    )
    .await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"))
    );
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Contact"),
        Some(json!({"LastName": "X", "AccountId": "garbage"})),
    )
    .await;
    assert_eq!((s, b[0]["errorCode"].as_str()), (400, Some("MALFORMED_ID")));
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Contact"),
        Some(json!({"LastName": "X", "AccountId": lead})),
    )
    .await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("FIELD_INTEGRITY_EXCEPTION"))
    );
    let r = client()
        .post(format!("{}{}", emu.instance_url(), so("Contact")))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()[0]["errorCode"],
        "JSON_PARSER_ERROR"
    );
}

#[tokio::test]
async fn task_call_logging() {
    let emu = start().await;
    let tok = token(&emu).await;
    let ada = id_of(
        &emu,
        &tok,
        "SELECT Id FROM Contact WHERE LastName = 'Lovelace'",
    )
    .await;
    let acme = id_of(
        &emu,
        &tok,
        "SELECT Id FROM Account WHERE Name = 'Acme Corporation'",
    )
    .await;
    let lead = id_of(&emu, &tok, "SELECT Id FROM Lead WHERE LastName = 'Lee'").await;
    let body = json!({"Subject": "Inbound call from +14155550123", "TaskSubtype": "Call", "CallType": "Inbound",
        "CallDurationInSeconds": 42, "CallObject": "uuid-1", "WhoId": ada, "WhatId": acme, "Status": "Completed",
        "Description": "notes", "ActivityDate": "2026-11-23"});
    let (s, b) = send(&emu, &tok, Method::POST, &so("Task"), Some(body)).await;
    assert_eq!(s, 201, "{b}");
    let b = query(&emu, &tok, "SELECT Subject, Priority, IsClosed, AccountId, Who.Name, What.Name, CallDurationInSeconds FROM Task WHERE CallObject = 'uuid-1'").await;
    let t = &b["records"][0];
    assert_eq!(t["Priority"], "Normal");
    assert_eq!(t["IsClosed"], true);
    assert_eq!(t["AccountId"], acme.as_str());
    assert_eq!(t["Who"]["Name"], "Ada Lovelace");
    // Who is polymorphic (Contact or Lead): the parent comes back as the Name entity, with
    // the real record's URL.
    assert_eq!(t["Who"]["attributes"]["type"], "Name");
    assert_eq!(
        t["Who"]["attributes"]["url"],
        format!("/services/data/{V}/sobjects/Contact/{ada}")
    );
    assert_eq!(t["What"]["Name"], "Acme Corporation");
    assert_eq!(t["CallDurationInSeconds"], 42);
    let (s, _) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Task"),
        Some(json!({"Status": "Completed", "WhoId": lead, "TaskSubtype": "Call"})),
    )
    .await;
    assert_eq!(s, 201);
    let id = id_of(
        &emu,
        &tok,
        "SELECT Id FROM Task WHERE CallObject = 'uuid-1'",
    )
    .await;
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so(&format!("Task/{id}")),
        Some(json!({"TaskSubtype": "Email"})),
    )
    .await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_FIELD_FOR_INSERT_UPDATE"))
    );
}

#[tokio::test]
async fn upsert_by_external_id() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so("Contact/External_Id__c/C-9000"),
        Some(json!({"LastName": "New", "Phone": "+1 415 555 9000"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["created"], true);
    assert_eq!(b["success"], true);
    let id = b["id"].as_str().unwrap().to_string();
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so("Contact/External_Id__c/C-9000"),
        Some(json!({"LastName": "Newer"})),
    )
    .await;
    assert_eq!(
        (s, &b),
        (
            200,
            &json!({"id": id, "success": true, "errors": [], "created": false})
        )
    );
    assert_eq!(
        names(
            &query(
                &emu,
                &tok,
                "SELECT Name FROM Contact WHERE External_Id__c = 'C-9000'"
            )
            .await
        ),
        ["Newer"]
    );
    // '+' in the value, percent-encoded (simple-salesforce quote_plus style)
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so("Lead/External_Id__c/%2B14155550000"),
        Some(json!({"LastName": "Plus", "Company": "P"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        query(
            &emu,
            &tok,
            "SELECT External_Id__c FROM Lead WHERE LastName = 'Plus'"
        )
        .await["records"][0]["External_Id__c"],
        "+14155550000"
    );
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so("Contact/External_Id__c/DUP-1"),
        Some(json!({"Title": "x"})),
    )
    .await;
    assert_eq!(s, 300);
    let urls = b.as_array().unwrap();
    assert_eq!(urls.len(), 2);
    assert!(urls[0]
        .as_str()
        .unwrap()
        .starts_with(&format!("/services/data/{V}/sobjects/Contact/003")));
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        &so("Contact/Email/x@y.z"),
        Some(json!({"LastName": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        b,
        json!([{"message": "Provided external ID field does not exist or is not accessible: Email", "errorCode": "NOT_FOUND"}])
    );
    let (s, _, b) = get(&emu, &tok, &so("Contact/External_Id__c/C-1001")).await;
    assert_eq!((s, b["Name"].as_str()), (200, Some("Ada Lovelace")));
}

#[tokio::test]
async fn describe_and_describe_global() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, _, g) = get(&emu, &tok, &so("")).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = g["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for n in [
        "Account",
        "Contact",
        "Lead",
        "User",
        "Case",
        "Task",
        "Routing_Rule__c",
        "Screen_Pop__e",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    let (s, _, d) = get(&emu, &tok, &so("Contact/describe")).await;
    assert_eq!(s, 200);
    assert_eq!(d["keyPrefix"], "003");
    let field = |n: &str| {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap()
    };
    let last = field("LastName");
    assert_eq!(
        (
            last["type"].as_str(),
            last["nillable"].as_bool(),
            last["length"].as_u64()
        ),
        (Some("string"), Some(false), Some(80))
    );
    assert_eq!(field("Phone")["type"], "phone");
    assert_eq!(field("External_Id__c")["externalId"], true);
    assert_eq!(field("Preferred_Queue__c")["custom"], true);
    assert_eq!(field("AccountId")["referenceTo"], json!(["Account"]));
    assert_eq!(field("AccountId")["relationshipName"], "Account");
    let (_, _, t) = get(&emu, &tok, &so("Task/describe")).await;
    let sub = t["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "TaskSubtype")
        .cloned()
        .unwrap();
    assert_eq!(sub["updateable"], false);
    assert_eq!(get(&emu, &tok, &so("Bogus/describe")).await.0, 404);
}

#[tokio::test]
async fn composite_sobjects_per_record_results() {
    let emu = start().await;
    let tok = token(&emu).await;
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Task"}, "Subject": "a", "Status": "Completed"},
        {"attributes": {"type": "Task"}, "Subject": "b"},
        {"attributes": {"type": "Screen_Pop__e"}, "Phone__c": "+14155550123"},
    ]});
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &format!("/services/data/{V}/composite/sobjects"),
        Some(body),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b[0]["success"], true);
    assert!(b[0]["id"].as_str().unwrap().starts_with("00T"));
    assert_eq!(
        b[1],
        json!({"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Status]", "fields": ["Status"]}]})
    );
    assert_eq!(b[2]["errors"][0]["statusCode"], "OPERATION_ENQUEUED");
    let body = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Task"}, "Subject": "rollback-me", "Status": "Completed"},
        {"attributes": {"type": "Task"}, "Subject": "bad"},
    ]});
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &format!("/services/data/{V}/composite/sobjects"),
        Some(body),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(
        query(
            &emu,
            &tok,
            "SELECT COUNT() FROM Task WHERE Subject = 'rollback-me'"
        )
        .await["totalSize"],
        0
    );
}

#[tokio::test]
async fn platform_event_publish() {
    let emu = start().await;
    let tok = token(&emu).await;
    let (s, b) = send(&emu, &tok, Method::POST, &so("Screen_Pop__e/"), Some(json!({"Phone__c": "+14155550123", "Agent_Id__c": "005Em0000000002IAA", "RecordId__c": "003Em0000000001IAA"}))).await;
    assert_eq!(s, 201);
    assert_eq!(b["success"], true);
    let uuid = b["errors"][0]["message"].as_str().unwrap().to_string();
    assert_eq!(
        b["errors"][0],
        json!({"statusCode": "OPERATION_ENQUEUED", "message": uuid, "fields": []})
    );
    assert_eq!(uuid.len(), 36);
    assert!(b["id"].as_str().unwrap().starts_with("e01"));
    let events = emu.admin().events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "Screen_Pop__e");
    assert_eq!(events[0]["uuid"], uuid.as_str());
    assert_eq!(events[0]["fields"]["Phone__c"], "+14155550123");
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Screen_Pop__e/"),
        Some(json!({"Nope__c": 1})),
    )
    .await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_FIELD"))
    );
}

#[tokio::test]
async fn composite_subrequests_with_references_and_all_or_none() {
    let emu = start().await;
    let tok = token(&emu).await;
    let url = format!("/services/data/{V}/composite");
    let body = json!({"allOrNone": false, "compositeRequest": [
        {"method": "GET", "url": format!("/services/data/{V}/query?q=SELECT+Id+FROM+Contact+WHERE+LastName+%3D+%27Lovelace%27"), "referenceId": "ada"},
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "task",
         "body": {"Subject": "Call", "Status": "Completed", "WhoId": "@{ada.records[0].Id}"}},
        {"method": "GET", "url": format!("/services/data/{V}/sobjects/Task/@{{task.id}}?fields=Who.Name"), "referenceId": "read"},
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "bad", "body": {"Subject": "x"}},
    ]});
    let (s, b) = send(&emu, &tok, Method::POST, &url, Some(body)).await;
    assert_eq!(s, 200, "{b}");
    let r = b["compositeResponse"].as_array().unwrap();
    assert_eq!(r[0]["httpStatusCode"], 200);
    assert_eq!(r[1]["httpStatusCode"], 201);
    assert!(r[1]["httpHeaders"]["Location"]
        .as_str()
        .unwrap()
        .contains("/sobjects/Task/00T"));
    assert_eq!(r[2]["body"]["Who"]["Name"], "Ada Lovelace");
    assert_eq!(r[3]["httpStatusCode"], 400);
    assert_eq!(r[3]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(r[3]["referenceId"], "bad");
    let usage = emu.admin().limits().daily_used;
    let body = json!({"allOrNone": true, "compositeRequest": [
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "t1", "body": {"Subject": "rolled", "Status": "Completed"}},
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "t2", "body": {"Subject": "x"}},
        {"method": "GET", "url": format!("/services/data/{V}/sobjects/Task/@{{t1.id}}"), "referenceId": "t3"},
    ]});
    let (s, b) = send(&emu, &tok, Method::POST, &url, Some(body)).await;
    assert_eq!(s, 200);
    let r = b["compositeResponse"].as_array().unwrap();
    for x in r {
        assert_eq!(x["httpStatusCode"], 400, "{x}");
    }
    assert_eq!(r[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(r[1]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(
        query(
            &emu,
            &tok,
            "SELECT COUNT() FROM Task WHERE Subject = 'rolled'"
        )
        .await["totalSize"],
        0
    );
    assert_eq!(
        emu.admin().limits().daily_used,
        usage + 2,
        "one composite call + the query"
    );
    let (s, _) = send(
        &emu,
        &tok,
        Method::POST,
        &url,
        Some(json!({"compositeRequest": []})),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn seed_custom_fields_extend_objects() {
    let extra: std::collections::BTreeMap<String, Vec<sf_emulator::seed::SeedField>> =
        serde_json::from_value(json!({
            "Screen_Pop__e": [{"name": "Call_Uuid__c", "type": "string", "length": 36}],
            "Contact": [{"name": "Region__c", "type": "picklist", "picklist": ["EMEA", "AMER"]},
                        {"name": "Score__c", "type": "double"}],
        }))
        .unwrap();
    let emu = start_with(|o| o.seed.custom_fields = extra).await;
    let tok = token(&emu).await;
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Screen_Pop__e"),
        Some(json!({"Call_Uuid__c": "0d7c…", "Phone__c": "1"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = send(
        &emu,
        &tok,
        Method::POST,
        &so("Contact"),
        Some(json!({"LastName": "Cf", "Region__c": "EMEA", "Score__c": 2})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let b = query(
        &emu,
        &tok,
        "SELECT Region__c, Score__c FROM Contact WHERE Score__c > 1",
    )
    .await;
    assert_eq!(b["records"][0]["Region__c"], "EMEA");
    assert_eq!(b["records"][0]["Score__c"], 2.0);
    let (_, _, d) = get(&emu, &tok, &so("Contact/describe")).await;
    assert!(d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "Region__c" && f["custom"] == true));
    let bad: std::collections::BTreeMap<String, Vec<sf_emulator::seed::SeedField>> =
        serde_json::from_value(json!({"Contact": [{"name": "NoSuffix", "type": "string"}]}))
            .unwrap();
    let mut o = sf_emulator::EmulatorOptions::default_seed();
    o.seed.custom_fields = bad;
    assert!(sf_emulator::Emulator::start(o).await.is_err());
}

/// Before API 46.0 an upsert's body has no `created`, and an update by External ID is 204 with
/// no body (REST API Developer Guide, "Insert or Update (Upsert) a Record Using an External ID").
#[tokio::test]
async fn upsert_before_api_46_has_no_created_flag() {
    let emu = start().await;
    let tok = token(&emu).await;
    let path = "/services/data/v45.0/sobjects/Contact/External_Id__c/C-4500";
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        path,
        Some(json!({"LastName": "Old"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["success"], true);
    assert!(b.get("created").is_none(), "{b}");
    let (s, b) = send(
        &emu,
        &tok,
        Method::PATCH,
        path,
        Some(json!({"LastName": "Older"})),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    assert!(b.is_null(), "{b}");
}
