//! Polymorphic relationships (Lead/Case/Task owners, Task Who/What) resolve to Salesforce's
//! `Name` entity: only its fields are selectable, and the parent comes back as type `Name`.

use crate::common::*;
use serde_json::{json, Value};

const NO_EXTENSION_ON_NAME: &str = "No such column 'Extension' on entity 'Name'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.";

#[tokio::test]
async fn owner_extension_through_a_polymorphic_owner_is_invalid_field() {
    let emu = start().await;
    let tok = token(&emu).await;
    for object in ["Lead", "Case", "Task", "Routing_Rule__c"] {
        let soql = format!("SELECT Id, Owner.Extension FROM {object}");
        let (status, code, message) = query_err(&emu, &tok, &soql).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"), "{soql}");
        assert_eq!(
            message,
            format!("\n{soql}\n           ^\nERROR at Row:1:Column:12\n{NO_EXTENSION_ON_NAME}"),
            "{soql}"
        );
    }
    for path in ["Who.Extension", "What.Industry", "Owner.MobilePhone"] {
        let soql = format!("SELECT Id, {path} FROM Task");
        let (status, code, _) = query_err(&emu, &tok, &soql).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"), "{soql}");
    }
    // Account and Contact owners are users only: Owner.Extension works there.
    let b = query(
        &emu,
        &tok,
        "SELECT Owner.Extension FROM Contact WHERE LastName = 'Lovelace'",
    )
    .await;
    assert_eq!(b["records"][0]["Owner"]["Extension"], "1001");
    assert_eq!(b["records"][0]["Owner"]["attributes"]["type"], "User");
    let b = query(
        &emu,
        &tok,
        "SELECT Owner.Extension FROM Account WHERE Name = 'Acme Corporation'",
    )
    .await;
    assert_eq!(b["records"][0]["Owner"]["Extension"], "1001");
}

#[tokio::test]
async fn one_bad_returning_object_fails_the_whole_search() {
    let emu = start().await;
    let tok = token(&emu).await;
    let sosl = "FIND {4155550123} IN PHONE FIELDS RETURNING Contact(Id, Owner.Extension), Lead(Id, Owner.Extension)";
    let (status, _, b) = get(
        &emu,
        &tok,
        &format!("/services/data/{V}/search?q={}", url_encode(sosl)),
    )
    .await;
    assert_eq!(status, 400, "{b}");
    assert_eq!(b[0]["errorCode"], "INVALID_FIELD");
    let message = b[0]["message"].as_str().unwrap();
    assert!(message.ends_with(NO_EXTENSION_ON_NAME), "{message}");
    assert!(message.contains("ERROR at Row:1:Column:"), "{message}");
    // The same search asking only the Name entity's fields works.
    let sosl = "FIND {4155550123} IN PHONE FIELDS RETURNING Contact(Id, Owner.Extension), Lead(Id, OwnerId, Owner.Name, Owner.Type)";
    let (status, _, b) = get(
        &emu,
        &tok,
        &format!("/services/data/{V}/search?q={}", url_encode(sosl)),
    )
    .await;
    assert_eq!(status, 200, "{b}");
}

#[tokio::test]
async fn a_polymorphic_parent_comes_back_as_the_name_entity() {
    let emu = start().await;
    let tok = token(&emu).await;
    let b = query(
        &emu,
        &tok,
        "SELECT Name, OwnerId, Owner.Name, Owner.Type, Owner.Email, Owner.Alias, Owner.IsActive FROM Lead WHERE LastName IN ('Bennett', 'Walsh') ORDER BY LastName",
    )
    .await;
    let queue_owned = &b["records"][0];
    let queue_id = queue_owned["OwnerId"].as_str().unwrap();
    assert!(queue_id.starts_with("00G"), "{queue_owned}");
    assert_eq!(
        queue_owned["Owner"],
        json!({
            "attributes": {"type": "Name", "url": format!("/services/data/{V}/sobjects/Group/{queue_id}")},
            "Name": "Support Queue", "Type": "Queue", "Email": "support@acme.example",
            "Alias": null, "IsActive": false,
        })
    );
    let user_owned = &b["records"][1];
    let user_id = user_owned["OwnerId"].as_str().unwrap();
    assert_eq!(
        user_owned["Owner"],
        json!({
            "attributes": {"type": "Name", "url": format!("/services/data/{V}/sobjects/User/{user_id}")},
            "Name": "Grace Hopper", "Type": "User", "Email": "grace.hopper@acme.example",
            "Alias": "Hopper", "IsActive": true,
        })
    );
    // Filter on the owner's type, as the Name entity allows.
    let b = query(
        &emu,
        &tok,
        "SELECT Name FROM Lead WHERE Owner.Type = 'Queue' AND Country = 'France'",
    )
    .await;
    let names: Vec<&str> = b["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Camille Durand"]);
    // Cases owned by a queue; Case's Name-entity name is its CaseNumber.
    let b = query(
        &emu,
        &tok,
        "SELECT Subject, Owner.Name, Owner.Type FROM Case WHERE Owner.Type = 'Queue' ORDER BY Subject",
    )
    .await;
    assert_eq!(b["totalSize"], 2, "{b}");
    assert_eq!(b["records"][0]["Owner"]["Name"], "Sales Queue");
    let b = query(
        &emu,
        &tok,
        "SELECT What.Name, What.Type, Who.Name, Who.Type FROM Task WHERE CallObject = 'seed-call-0001'",
    )
    .await;
    let t = &b["records"][0];
    assert_eq!(
        (&t["What"]["Name"], &t["What"]["Type"]),
        (&Value::from("Acme Corporation"), &Value::from("Account"))
    );
    assert_eq!(
        (&t["Who"]["Name"], &t["Who"]["Type"]),
        (&Value::from("Ada Lovelace"), &Value::from("Contact"))
    );
}

#[tokio::test]
async fn queues_are_groups_and_users_have_extensions() {
    let emu = start().await;
    let tok = token(&emu).await;
    let b = query(
        &emu,
        &tok,
        "SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Queue' ORDER BY Name",
    )
    .await;
    let queues: Vec<(&str, &str)> = b["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["Id"].as_str().unwrap(), r["Name"].as_str().unwrap()))
        .collect();
    assert_eq!(queues.len(), 2);
    assert!(queues.iter().all(|(id, _)| id.starts_with("00G")));
    assert_eq!(
        queues.iter().map(|q| q.1).collect::<Vec<_>>(),
        ["Sales Queue", "Support Queue"]
    );
    let b = query(
        &emu,
        &tok,
        "SELECT Name, Extension FROM User WHERE Extension != null ORDER BY Extension",
    )
    .await;
    assert_eq!(b["totalSize"], 3);
    assert_eq!(b["records"][0]["Extension"], "1001");
}

#[tokio::test]
async fn describe_reports_references_and_polymorphism() {
    let emu = start().await;
    let tok = token(&emu).await;
    let field = |d: &Value, n: &str| -> Value {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no field {n}"))
    };
    let describe = |object: &'static str| {
        let emu = &emu;
        let tok = &tok;
        async move {
            let (s, _, d) = get(
                emu,
                tok,
                &format!("/services/data/{V}/sobjects/{object}/describe"),
            )
            .await;
            assert_eq!(s, 200, "{object}: {d}");
            d
        }
    };
    let shape = |f: &Value| {
        json!({
            "type": f["type"], "referenceTo": f["referenceTo"], "relationshipName": f["relationshipName"],
            "polymorphicForeignKey": f["polymorphicForeignKey"], "namePointing": f["namePointing"],
        })
    };
    let poly_owner = json!({"type": "reference", "referenceTo": ["Group", "User"], "relationshipName": "Owner",
                            "polymorphicForeignKey": true, "namePointing": true});
    let user_owner = json!({"type": "reference", "referenceTo": ["User"], "relationshipName": "Owner",
                            "polymorphicForeignKey": false, "namePointing": false});
    for object in ["Lead", "Case", "Task", "Routing_Rule__c"] {
        assert_eq!(
            shape(&field(&describe(object).await, "OwnerId")),
            poly_owner,
            "{object}"
        );
    }
    for object in ["Contact", "Account"] {
        assert_eq!(
            shape(&field(&describe(object).await, "OwnerId")),
            user_owner,
            "{object}"
        );
    }
    let task = describe("Task").await;
    assert_eq!(
        field(&task, "WhoId")["referenceTo"],
        json!(["Contact", "Lead"])
    );
    assert_eq!(field(&task, "WhoId")["polymorphicForeignKey"], true);
    let user = describe("User").await;
    assert_eq!(field(&user, "Extension")["type"], "phone");
    let group = describe("Group").await;
    assert_eq!(group["keyPrefix"], "00G");
    assert_eq!(field(&group, "Type")["type"], "picklist");
    assert_eq!(field(&group, "Id")["type"], "id");
    let contact = describe("Contact").await;
    assert_eq!(field(&contact, "Phone")["type"], "phone");
    assert_eq!(field(&contact, "Name")["type"], "string");
    assert_eq!(field(&contact, "AccountId")["relationshipName"], "Account");
    // The Name entity itself: describe only, its documented fields.
    let name = describe("Name").await;
    let names: Vec<&str> = name["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Id",
            "Alias",
            "Email",
            "FirstName",
            "IsActive",
            "LastName",
            "LastReferencedDate",
            "LastViewedDate",
            "Name",
            "NameOrAlias",
            "Phone",
            "ProfileId",
            "RecordTypeId",
            "Title",
            "Type",
            "UserRoleId",
            "Username"
        ]
    );
    assert_eq!(
        (&name["queryable"], &name["keyPrefix"]),
        (&json!(false), &Value::Null)
    );
    assert!(!names.contains(&"Extension"));
    let (status, code, _) = query_err(&emu, &tok, "SELECT Id FROM Name").await;
    assert_eq!((status, code.as_str()), (400, "INVALID_TYPE"));
    let rule = describe("Routing_Rule__c").await;
    assert_eq!(field(&rule, "Phone__c")["type"], "phone");
}

#[tokio::test]
async fn queues_can_own_leads_but_not_contacts() {
    let emu = start().await;
    let tok = token(&emu).await;
    let id_of = |b: &Value| b["records"][0]["Id"].as_str().unwrap().to_string();
    let support = id_of(
        &query(
            &emu,
            &tok,
            "SELECT Id FROM Group WHERE Name = 'Support Queue'",
        )
        .await,
    );
    let agents = id_of(&query(&emu, &tok, "SELECT Id FROM Group WHERE Name = 'All Agents'").await);
    let create = |object: &'static str, body: Value| {
        let emu = &emu;
        let tok = &tok;
        async move {
            send(
                emu,
                tok,
                reqwest::Method::POST,
                &format!("/services/data/{V}/sobjects/{object}"),
                Some(body),
            )
            .await
        }
    };
    let (s, b) = create(
        "Lead",
        json!({"LastName": "Queued", "Company": "Q Ltd", "OwnerId": support}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let lead = query(
        &emu,
        &tok,
        &format!(
            "SELECT Owner.Type, Owner.Name FROM Lead WHERE Id = '{}'",
            b["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(lead["records"][0]["Owner"]["Type"], "Queue");
    let (s, b) = create(
        "Lead",
        json!({"LastName": "Grouped", "Company": "G Ltd", "OwnerId": agents}),
    )
    .await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_CROSS_REFERENCE_KEY")),
        "{b}"
    );
    let (s, b) = create("Contact", json!({"LastName": "Queued", "OwnerId": support})).await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("FIELD_INTEGRITY_EXCEPTION")),
        "{b}"
    );
}

#[tokio::test]
async fn typeof_selects_per_parent_type_in_soql_only() {
    let emu = start().await;
    let tok = token(&emu).await;
    let b = query(
        &emu,
        &tok,
        "SELECT Id, TYPEOF Owner WHEN User THEN Name, Extension WHEN Group THEN Name, Email END, Name FROM Lead WHERE LastName IN ('Bennett', 'Walsh') ORDER BY LastName",
    )
    .await;
    let bennett = &b["records"][0];
    let keys: Vec<&str> = bennett
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["attributes", "Id", "Owner", "Name"]);
    let owner = &bennett["Owner"];
    assert_eq!(owner["attributes"]["type"], "Group");
    assert!(owner["attributes"]["url"]
        .as_str()
        .unwrap()
        .contains("/sobjects/Group/00G"));
    assert_eq!(
        (&owner["Name"], &owner["Email"]),
        (&json!("Support Queue"), &json!("support@acme.example"))
    );
    let owner = &b["records"][1]["Owner"];
    assert_eq!(owner["attributes"]["type"], "User");
    assert_eq!(
        (&owner["Name"], &owner["Extension"]),
        (&json!("Grace Hopper"), &json!("1001"))
    );
    // ELSE: the Name entity's fields for the other types.
    let b = query(
        &emu,
        &tok,
        "SELECT TYPEOF What WHEN Case THEN Subject ELSE Name, Type END FROM Task WHERE CallObject = 'seed-call-0001'",
    )
    .await;
    let what = &b["records"][0]["What"];
    assert_eq!(what["attributes"]["type"], "Name");
    assert_eq!(
        (&what["Name"], &what["Type"]),
        (&json!("Acme Corporation"), &json!("Account"))
    );
    for bad in [
        "SELECT TYPEOF Account WHEN Account THEN Name END FROM Contact",
        "SELECT TYPEOF Owner WHEN Contact THEN Name END FROM Lead",
        "SELECT TYPEOF Owner WHEN User THEN Bogus END FROM Lead",
        "SELECT TYPEOF Owner WHEN Group THEN Extension END FROM Lead",
        "SELECT TYPEOF Owner WHEN User THEN Name ELSE Extension END FROM Lead",
    ] {
        let (status, code, _) = query_err(&emu, &tok, bad).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"), "{bad}");
    }
    for bad in [
        "SELECT TYPEOF Owner END FROM Lead",
        "SELECT TYPEOF Owner WHEN User THEN Name FROM Lead",
        "SELECT Owner.Name, TYPEOF Owner WHEN User THEN Name END FROM Lead",
    ] {
        let (status, code, _) = query_err(&emu, &tok, bad).await;
        assert_eq!((status, code.as_str()), (400, "MALFORMED_QUERY"), "{bad}");
    }
    let sosl = "FIND {4155550123} RETURNING Lead(TYPEOF Owner WHEN User THEN Name END)";
    let (status, _, b) = get(
        &emu,
        &tok,
        &format!("/services/data/{V}/search?q={}", url_encode(sosl)),
    )
    .await;
    assert_eq!(
        (status, b[0]["errorCode"].as_str()),
        (400, Some("MALFORMED_SEARCH")),
        "{b}"
    );
}
