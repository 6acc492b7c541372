use crate::common::*;

fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header>{header}</soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

async fn post(url: String, xml: String) -> (u16, String) {
    let r = client()
        .post(url)
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "\"\"")
        .body(xml)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    (status, r.text().await.unwrap())
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let start = s.find(open).unwrap_or_else(|| panic!("{open} in {s}")) + open.len();
    let end = s[start..].find(close).unwrap() + start;
    &s[start..end]
}

fn login_body(user: &str, pw: &str) -> String {
    envelope("", &format!("<urn:login><urn:username>{user}</urn:username><urn:password>{pw}</urn:password></urn:login>"))
}

async fn login(emu: &sf_emulator::Emulator) -> (String, String) {
    let (s, body) = post(
        format!("{}/services/Soap/u/59.0", emu.login_url()),
        login_body(INTEGRATION, "Passw0rd!EMUTOKEN"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    (
        between(&body, "<sessionId>", "</sessionId>").to_string(),
        between(&body, "<serverUrl>", "</serverUrl>").to_string(),
    )
}

fn query_body(session: &str, op: &str, inner: &str) -> String {
    envelope(
        &format!("<urn:SessionHeader><urn:sessionId>{session}</urn:sessionId></urn:SessionHeader>"),
        &format!("<urn:{op}>{inner}</urn:{op}>"),
    )
}

#[tokio::test]
async fn login_response_shape() {
    let emu = start().await;
    let (s, body) = post(
        format!("{}/services/Soap/u/59.0", emu.login_url()),
        login_body(INTEGRATION, "Passw0rd!EMUTOKEN"),
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.contains(r#"xmlns="urn:partner.soap.sforce.com""#));
    assert!(body.contains("<loginResponse><result>"));
    assert!(body.contains("<passwordExpired>false</passwordExpired>"));
    let server = between(&body, "<serverUrl>", "</serverUrl>");
    assert_eq!(
        server,
        format!(
            "{}/services/Soap/u/59.0/{}",
            emu.instance_url(),
            &emu.org_id()[..15]
        )
    );
    assert_eq!(
        between(&body, "<organizationId>", "</organizationId>"),
        emu.org_id()
    );
    assert!(between(&body, "<userId>", "</userId>").starts_with("005"));
    assert!(between(&body, "<sessionId>", "</sessionId>").starts_with(&emu.org_id()[..15]));
    assert_eq!(
        between(&body, "<sessionSecondsValid>", "</sessionSecondsValid>"),
        "7200"
    );
}

#[tokio::test]
async fn login_faults() {
    let emu = start().await;
    let (s, body) = post(
        format!("{}/services/Soap/u/59.0", emu.login_url()),
        login_body(INTEGRATION, "wrong"),
    )
    .await;
    assert_eq!(s, 500);
    assert!(
        body.contains("<faultcode>sf:INVALID_LOGIN</faultcode>"),
        "{body}"
    );
    assert!(body.contains("<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>"));
    assert!(body.contains(r#"<sf:LoginFault xsi:type="sf:LoginFault">"#));
    assert!(body.contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"));
    assert!(body.contains(r#"xmlns:sf="urn:fault.partner.soap.sforce.com""#));
    let (s, body) = post(
        format!("{}/services/Soap/u/59.0", emu.login_url()),
        login_body(INTEGRATION, "Passw0rd!"),
    )
    .await;
    assert_eq!(s, 500);
    assert!(
        body.contains("<faultcode>sf:LOGIN_MUST_USE_SECURITY_TOKEN</faultcode>"),
        "{body}"
    );
    // a user without a security token logs in with the password alone
    let (s, _) = post(
        format!("{}/services/Soap/u/59.0", emu.login_url()),
        login_body("alan.turing@acme.example", "Passw0rd!"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = post(
        format!("{}/services/Soap/u/66.0", emu.login_url()),
        login_body(INTEGRATION, "Passw0rd!EMUTOKEN"),
    )
    .await;
    assert_eq!(s, 500, "login() retired after 64.0");
    assert!(body.contains("UNSUPPORTED_API_VERSION"));
    let (s, body) = post(
        format!("{}/services/Soap/u/30.0", emu.login_url()),
        login_body(INTEGRATION, "Passw0rd!EMUTOKEN"),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("<faultcode>sf:UNSUPPORTED_API_VERSION</faultcode>"));
}

#[tokio::test]
async fn query_records_nested_nil_and_double_id() {
    let emu = start().await;
    let (sid, server) = login(&emu).await;
    let (s, body) = post(server.clone(), query_body(&sid, "query", "<urn:queryString>SELECT Id, Name, Owner.Name, Account.Name, Email FROM Contact WHERE LastName = 'Nolan'</urn:queryString>")).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#"<queryResponse><result xsi:type="QueryResult"><done>true</done><queryLocator xsi:nil="true"/>"#), "{body}");
    let rec = between(&body, r#"<records xsi:type="sf:sObject">"#, "</records>");
    let id = between(rec, "<sf:Id>", "</sf:Id>");
    assert!(rec.starts_with(&format!("<sf:type>Contact</sf:type><sf:Id>{id}</sf:Id><sf:Id>{id}</sf:Id><sf:Name>Chris Nolan</sf:Name>")), "{rec}");
    assert!(rec.contains(r#"<sf:Owner xsi:type="sf:sObject"><sf:type>User</sf:type><sf:Id xsi:nil="true"/><sf:Name>Grace Hopper</sf:Name></sf:Owner>"#), "{rec}");
    assert!(rec.contains(r#"<sf:Account xsi:nil="true"/>"#));
    assert!(rec.contains(r#"<sf:Email xsi:nil="true"/>"#));
    assert!(body.contains("<size>1</size>"));
    // A polymorphic owner is the Name entity here too.
    let (_, body) = post(server.clone(), query_body(&sid, "query", "<urn:queryString>SELECT Owner.Name, Owner.Type FROM Lead WHERE LastName = 'Bennett'</urn:queryString>")).await;
    assert!(body.contains(r#"<sf:Owner xsi:type="sf:sObject"><sf:type>Name</sf:type><sf:Id xsi:nil="true"/><sf:Name>Support Queue</sf:Name><sf:Type>Queue</sf:Type></sf:Owner>"#), "{body}");
    let (s, body) = post(
        server.clone(),
        query_body(
            &sid,
            "query",
            "<urn:queryString>SELECT Owner.Extension FROM Lead</urn:queryString>",
        ),
    )
    .await;
    assert_eq!(s, 500, "{body}");
    assert!(
        body.contains("<faultcode>sf:INVALID_FIELD</faultcode>"),
        "{body}"
    );
    assert!(
        body.contains("No such column &apos;Extension&apos; on entity &apos;Name&apos;"),
        "{body}"
    );
    // apostrophes are XML-escaped
    let (_, body) = post(server, query_body(&sid, "query", "<urn:queryString>SELECT Name FROM Contact WHERE LastName = 'O\\'Brien'</urn:queryString>")).await;
    assert!(
        body.contains("<sf:Name>Patrick O&apos;Brien</sf:Name>"),
        "{body}"
    );
}

#[tokio::test]
async fn query_more_and_oauth_token_as_session() {
    let emu = start_with(|o| o.query_batch_size = 4).await;
    let tok = token(&emu).await;
    let url = format!(
        "{}/services/Soap/u/59.0/{}",
        emu.instance_url(),
        &emu.org_id()[..15]
    );
    let (s, body) = post(
        url.clone(),
        query_body(
            &tok,
            "query",
            "<urn:queryString>SELECT Id FROM Contact</urn:queryString>",
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("<done>false</done>"));
    assert!(body.contains("<size>9</size>"));
    assert_eq!(body.matches("<records ").count(), 4);
    let loc = between(&body, "<queryLocator>", "</queryLocator>").to_string();
    assert!(loc.starts_with("01g") && loc.ends_with("-4"), "{loc}");
    let (s, body) = post(
        url.clone(),
        query_body(
            &tok,
            "queryMore",
            &format!("<urn:queryLocator>{loc}</urn:queryLocator>"),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("<queryMoreResponse>"));
    assert_eq!(body.matches("<records ").count(), 4);
    let (s, body) = post(
        url.clone(),
        query_body(
            &tok,
            "queryMore",
            "<urn:queryLocator>01gEm0000000099AAA-4</urn:queryLocator>",
        ),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("<faultcode>sf:INVALID_QUERY_LOCATOR</faultcode>"));
    assert!(body.contains("InvalidQueryLocatorFault"));
}

#[tokio::test]
async fn query_faults() {
    let emu = start().await;
    let (sid, server) = login(&emu).await;
    let (s, body) = post(
        server.clone(),
        query_body(
            "bogus",
            "query",
            "<urn:queryString>SELECT Id FROM Contact</urn:queryString>",
        ),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("<faultcode>sf:INVALID_SESSION_ID</faultcode>"));
    assert!(body.contains("<faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring>"));
    assert!(body.contains("UnexpectedErrorFault"));
    let (s, body) = post(
        server.clone(),
        query_body(
            &sid,
            "query",
            "<urn:queryString>SELECT Id FROM Contact WHERE</urn:queryString>",
        ),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("<faultcode>sf:MALFORMED_QUERY</faultcode>"));
    assert!(body.contains(r#"<sf:MalformedQueryFault xsi:type="sf:MalformedQueryFault"><sf:exceptionCode>MALFORMED_QUERY</sf:exceptionCode>"#));
    let (_, body) = post(
        server.clone(),
        query_body(
            &sid,
            "query",
            "<urn:queryString>SELECT Nope FROM Contact</urn:queryString>",
        ),
    )
    .await;
    assert!(body.contains("<faultcode>sf:INVALID_FIELD</faultcode>"));
    emu.admin().expire_sessions();
    let (s, body) = post(
        server,
        query_body(
            &sid,
            "query",
            "<urn:queryString>SELECT Id FROM Contact</urn:queryString>",
        ),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("sf:INVALID_SESSION_ID"));
    assert_eq!(emu.admin().queries().last().unwrap().kind, "soap_soql");
}

fn search_body(session: &str, sosl: &str) -> String {
    query_body(
        session,
        "search",
        &format!("<urn:searchString>{sosl}</urn:searchString>"),
    )
}

#[tokio::test]
async fn search_answers_the_partner_wsdl_s_search_result() {
    let emu = start().await;
    let tok = token(&emu).await;
    let url = format!("{}/services/Soap/u/66.0", emu.instance_url());
    let (s, body) = post(
        url.clone(),
        search_body(
            &tok,
            "FIND {4155550199} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, Email), Lead(Name)",
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("<LimitInfoHeader><limitInfo><current>"),
        "{body}"
    );
    assert!(body.contains("<type>API REQUESTS</type>"), "{body}");
    let result = between(
        &body,
        "<searchResponse><result>",
        "</result></searchResponse>",
    );
    assert!(result.starts_with("<queryId>"), "{result}");
    assert_eq!(result.matches("<searchRecords>").count(), 2, "{result}");
    let contact = between(
        result,
        r#"<searchRecords><record xsi:type="sf:sObject"><sf:type>Contact</sf:type>"#,
        "</record></searchRecords>",
    );
    let id = between(contact, "<sf:Id>", "</sf:Id>");
    assert!(id.starts_with("003"), "{contact}");
    assert!(
        contact.starts_with(&format!(
            "<sf:Id>{id}</sf:Id><sf:Id>{id}</sf:Id><sf:Name>Bob Jones</sf:Name><sf:Phone>"
        )),
        "{contact}"
    );
    // A lead without its Id selected has a nil fixed Id, as query's records do.
    assert!(
        result.contains(r#"<record xsi:type="sf:sObject"><sf:type>Lead</sf:type><sf:Id xsi:nil="true"/><sf:Name>Sam Lee</sf:Name></record>"#),
        "{result}"
    );
    let logged = emu.admin().queries().last().unwrap().clone();
    assert_eq!(logged.kind, "soap_sosl");
    assert_eq!(logged.literals, vec!["4155550199".to_string()]);
    // Nothing found is a result with no searchRecords.
    let (s, body) = post(
        url,
        search_body(
            &tok,
            "FIND {9999999999} IN PHONE FIELDS RETURNING Contact(Id)",
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("<searchRecords>"), "{body}");
}

#[tokio::test]
async fn search_faults_as_salesforce_sends_them() {
    let emu = start().await;
    let tok = token(&emu).await;
    let url = format!("{}/services/Soap/u/66.0", emu.instance_url());
    let (s, body) = post(
        url.clone(),
        search_body(&tok, "FIND {a:b} RETURNING Contact"),
    )
    .await;
    assert_eq!(s, 500, "{body}");
    assert!(
        body.contains("<faultcode>sf:MALFORMED_SEARCH</faultcode>"),
        "{body}"
    );
    assert!(
        body.contains(r#"<sf:MalformedSearchFault xsi:type="sf:MalformedSearchFault"><sf:exceptionCode>MALFORMED_SEARCH</sf:exceptionCode>"#),
        "{body}"
    );
    let (s, body) = post(
        url.clone(),
        search_body(
            &tok,
            "FIND {4155550199} IN PHONE FIELDS RETURNING Contact(Nope)",
        ),
    )
    .await;
    assert_eq!(s, 500, "{body}");
    assert!(
        body.contains("<faultcode>sf:INVALID_FIELD</faultcode>"),
        "{body}"
    );
    let (s, body) = post(url.clone(), search_body("bogus", "FIND {4155550199}")).await;
    assert_eq!(s, 500);
    assert!(
        body.contains("<faultcode>sf:INVALID_SESSION_ID</faultcode>"),
        "{body}"
    );
    emu.admin().set_limits(sf_emulator::admin::LimitsUpdate {
        daily_used: Some(100),
        daily_max: Some(100),
        ..Default::default()
    });
    let (s, body) = post(url, search_body(&tok, "FIND {4155550199}")).await;
    assert_eq!(s, 500);
    assert!(
        body.contains("<faultcode>sf:REQUEST_LIMIT_EXCEEDED</faultcode>"),
        "{body}"
    );
}

#[tokio::test]
async fn the_envelope_session_header_and_namespaces_are_checked() {
    let emu = start().await;
    let tok = token(&emu).await;
    let url = format!("{}/services/Soap/u/66.0", emu.instance_url());
    let sosl = "FIND {4155550199} IN PHONE FIELDS RETURNING Contact(Id)";
    // The session id in the body, not in the header, is no session.
    let misplaced = envelope(
        "",
        &format!("<urn:search><urn:searchString>{sosl}</urn:searchString><urn:sessionId>{tok}</urn:sessionId></urn:search>"),
    );
    let (s, body) = post(url.clone(), misplaced).await;
    assert_eq!(s, 500);
    assert!(body.contains("sf:INVALID_SESSION_ID"), "{body}");
    // A SessionHeader outside the partner namespace is no session either.
    let foreign_header = envelope(
        &format!("<SessionHeader xmlns=\"urn:enterprise.soap.sforce.com\"><sessionId>{tok}</sessionId></SessionHeader>"),
        &format!("<urn:search><urn:searchString>{sosl}</urn:searchString></urn:search>"),
    );
    let (_, body) = post(url.clone(), foreign_header).await;
    assert!(body.contains("sf:INVALID_SESSION_ID"), "{body}");
    // The default namespace works as well as a prefix.
    let default_ns = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"><soapenv:Header><SessionHeader><sessionId>{tok}</sessionId></SessionHeader></soapenv:Header><soapenv:Body><search><searchString>{sosl}</searchString></search></soapenv:Body></soapenv:Envelope>"#
    );
    let (s, body) = post(url.clone(), default_ns.clone()).await;
    assert_eq!(s, 200, "{body}");
    // An operation outside the partner namespace is unknown.
    let (s, body) = post(
        url.clone(),
        default_ns.replace(
            r#"xmlns="urn:partner.soap.sforce.com""#,
            r#"xmlns="urn:enterprise.soap.sforce.com""#,
        ),
    )
    .await;
    assert_eq!(s, 500);
    assert!(
        body.contains("<faultcode>soapenv:Client</faultcode>"),
        "{body}"
    );
    // SOAP 1.2's envelope is not SOAP 1.1's.
    let (s, body) = post(
        url,
        default_ns.replace(
            "http://schemas.xmlsoap.org/soap/envelope/",
            "http://www.w3.org/2003/05/soap-envelope",
        ),
    )
    .await;
    assert_eq!(s, 500);
    assert!(
        body.contains("<faultcode>soapenv:VersionMismatch</faultcode>"),
        "{body}"
    );
}
