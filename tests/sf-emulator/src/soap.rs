//! SOAP partner API (`/services/Soap/u/NN.0[/orgId]`): login, query, queryAll, queryMore,
//! with Salesforce's envelope shapes and HTTP 500 faults (fact sheet §4).

use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::rest::{self, query};
use crate::sessions::Session;
use crate::state::Org;
use crate::util;
use quick_xml::events::Event;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:sf="urn:sobject.partner.soap.sforce.com">"#;
const FAULT_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A SOAP fault (HTTP 500). `fault_type` is the detail element (`LoginFault`, …).
pub fn fault(code: &str, message: &str, fault_type: &str) -> Response {
    let faultcode = if code.contains(':') {
        code.to_string()
    } else {
        format!("sf:{code}")
    };
    let faultstring = if code.contains(':') {
        message.to_string()
    } else {
        format!("{code}: {message}")
    };
    let detail = if code.contains(':') {
        String::new()
    } else {
        format!(
            "<detail><sf:{fault_type} xsi:type=\"sf:{fault_type}\"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{}</sf:exceptionMessage></sf:{fault_type}></detail>",
            escape(message)
        )
    };
    Response::xml(
        500,
        format!(
            "{FAULT_OPEN}<soapenv:Body><soapenv:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring>{detail}</soapenv:Fault></soapenv:Body></soapenv:Envelope>",
            escape(&faultcode),
            escape(&faultstring)
        ),
    )
}

fn api_fault(e: &ApiError) -> Response {
    let kind = match e.code.as_str() {
        "MALFORMED_QUERY" => "MalformedQueryFault",
        "INVALID_FIELD" => "InvalidFieldFault",
        "INVALID_TYPE" => "InvalidSObjectFault",
        "INVALID_QUERY_LOCATOR" => "InvalidQueryLocatorFault",
        "INVALID_QUERY_FILTER_OPERATOR" => "InvalidQueryFilterOperatorFault",
        "INVALID_SESSION_ID" | "REQUEST_LIMIT_EXCEEDED" => "UnexpectedErrorFault",
        _ => "ApiQueryFault",
    };
    // SOAP messages carry the SOQL caret text without the leading newline.
    fault(&e.code, e.message.trim_start_matches('\n'), kind)
}

fn session_fault() -> Response {
    fault(
        "INVALID_SESSION_ID",
        "Invalid Session ID found in SessionHeader: Illegal Session",
        "UnexpectedErrorFault",
    )
}

/// The operation (first element in Body) and the text of every element by local name.
fn parse_envelope(body: &[u8]) -> Option<(String, HashMap<String, String>)> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<String> = vec![];
    let mut op = None;
    let mut texts: HashMap<String, String> = HashMap::new();
    let mut buf = vec![];
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if op.is_none() && stack.last().is_some_and(|p| p == "Body") {
                    op = Some(name.clone());
                }
                stack.push(name);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if op.is_none() && stack.last().is_some_and(|p| p == "Body") {
                    op = Some(name.clone());
                }
                texts.entry(name).or_default();
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                if let Some(top) = stack.last() {
                    let raw = String::from_utf8_lossy(t.as_ref()).into_owned();
                    let s = quick_xml::escape::unescape(&raw).ok()?.into_owned();
                    texts.entry(top.clone()).or_default().push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last() {
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    let s = quick_xml::escape::unescape(&format!("&{name};"))
                        .ok()?
                        .into_owned();
                    texts.entry(top.clone()).or_default().push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last() {
                    texts
                        .entry(top.clone())
                        .or_default()
                        .push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Some((op?, texts))
}

fn envelope(org: &Org, body: &str) -> Response {
    let l = org.limits().clone();
    Response::xml(
        200,
        format!(
            "{ENVELOPE_OPEN}<soapenv:Header><LimitInfoHeader><limitInfo><current>{}</current><limit>{}</limit><type>API REQUESTS</type></limitInfo></LimitInfoHeader></soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>",
            l.daily_used, l.daily_max
        ),
    )
}

/// `POST /services/Soap/u/NN.0[/orgId15]`
pub fn handle(org: &Org, req: &Request) -> Response {
    let rest = req.path.trim_start_matches("/services/Soap/u/");
    let vseg = rest.split('/').next().unwrap_or("");
    let version = match rest::parse_version(&format!("v{vseg}")) {
        Ok(v) => v,
        Err(_) => {
            return fault(
                "UNSUPPORTED_API_VERSION",
                &format!("Invalid Api version specified on URL: {vseg}"),
                "UnexpectedErrorFault",
            )
        }
    };
    if req.method != hyper::Method::POST {
        return Response::new(
            405,
            "text/plain;charset=UTF-8",
            "HTTP method not allowed; use POST",
        );
    }
    let Some((op, texts)) = parse_envelope(&req.body) else {
        return fault("soapenv:Client", "Unable to parse the SOAP envelope", "");
    };
    org.stats.endpoint(&format!("soap_{op}"));
    let get = |k: &str| texts.get(k).map(String::as_str).unwrap_or("");
    match op.as_str() {
        "login" => login(org, version, get("username"), get("password")),
        "query" | "queryAll" | "queryMore" => {
            let Some(session) = org.use_session(get("sessionId").trim()) else {
                return session_fault();
            };
            if let Err((e, _)) = rest::charge(org) {
                return api_fault(&e);
            }
            let batch = texts
                .get("batchSize")
                .and_then(|b| b.trim().parse::<usize>().ok())
                .map(|n| n.clamp(org.runtime().batch_size.min(200), 2000))
                .unwrap_or_else(|| org.runtime().batch_size);
            let v = format!("{version}.0");
            let page = if op == "queryMore" {
                query::fetch(org, get("queryLocator").trim(), &session.user_id, batch)
            } else {
                query::run(
                    org,
                    get("queryString"),
                    op == "queryAll",
                    &v,
                    &session.user_id,
                    batch,
                    "soap_soql",
                )
            };
            match page {
                Ok(p) => envelope(org, &query_response(&op, p)),
                Err(e) => api_fault(&e),
            }
        }
        other => fault(
            "soapenv:Client",
            &format!("No operation available for request {{urn:partner.soap.sforce.com}}{other}"),
            "",
        ),
    }
}

fn login(org: &Org, version: u32, username: &str, password: &str) -> Response {
    if version > org.seed.soap_login_max_version {
        return fault(
            "UNSUPPORTED_API_VERSION",
            &format!("login() is not available in API version {version}.0; use OAuth"),
            "UnexpectedErrorFault",
        );
    }
    let invalid = || {
        fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
            "LoginFault",
        )
    };
    let (user_id, active) = match crate::oauth::check_password(org, username, password) {
        Ok(u) => u,
        Err(crate::oauth::LoginFailure::NeedsToken) => {
            return fault(
                "LOGIN_MUST_USE_SECURITY_TOKEN",
                "Invalid username, password, security token; or user locked out. Are you at a new location? When accessing Salesforce--either via a desktop client or the API--from outside of your company's trusted networks, you must add a security token to your password to log in.",
                "LoginFault",
            )
        }
        Err(crate::oauth::LoginFailure::Invalid) => return invalid(),
    };
    if !active {
        return invalid();
    }
    let token = format!("{}!AQ{}", org.org_id15(), util::random_token(94));
    let timeout = org.session_timeout();
    org.data().sessions.add(Session {
        token: token.clone(),
        user_id: user_id.clone(),
        username: username.to_string(),
        client_id: None,
        scope: "api".into(),
        issued_at_ms: util::now_ms(),
        last_used: Instant::now(),
        refresh_token: None,
        calls: 0,
    });
    let (full_name, email) = {
        let data = org.data();
        let u = data.store.get(&user_id);
        let f = |k: &str| {
            u.and_then(|u| u.get(k).as_str().map(String::from))
                .unwrap_or_default()
        };
        (f("Name"), f("Email"))
    };
    let base = &org.instance_url;
    let org15 = org.org_id15();
    let body = format!(
        "<loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}.0/{org15}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{version}.0/{org15}</serverUrl><sessionId>{token}</sessionId><userId>{user_id}</userId><userInfo><accessibilityMode>false</accessibilityMode><chatterExternal>false</chatterExternal><currencySymbol>$</currencySymbol><orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit><orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><orgDefaultCurrencyLocale>en_US</orgDefaultCurrencyLocale><orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments><orgHasPersonAccounts>false</orgHasPersonAccounts><organizationId>{}</organizationId><organizationMultiCurrency>false</organizationMultiCurrency><organizationName>{}</organizationName><profileId>00eEm0000000001AAA</profileId><roleId xsi:nil=\"true\"/><sessionSecondsValid>{}</sessionSecondsValid><userDefaultCurrencyIsoCode xsi:nil=\"true\"/><userEmail>{}</userEmail><userFullName>{}</userFullName><userId>{user_id}</userId><userLanguage>en_US</userLanguage><userLocale>en_US</userLocale><userName>{}</userName><userTimeZone>America/Los_Angeles</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo></result></loginResponse>",
        org.org_id,
        escape(&org.seed.org_name),
        timeout.as_secs(),
        escape(&email),
        escape(&full_name),
        escape(username),
    );
    envelope(org, &body)
}

fn query_response(op: &str, p: query::Page) -> String {
    let mut out = format!(
        "<{op}Response><result xsi:type=\"QueryResult\"><done>{}</done>",
        p.locator.is_none()
    );
    match &p.locator {
        Some(l) => out.push_str(&format!("<queryLocator>{}</queryLocator>", escape(l))),
        None => out.push_str("<queryLocator xsi:nil=\"true\"/>"),
    }
    for r in &p.records {
        record_xml(r, "records", &mut out);
    }
    out.push_str(&format!("<size>{}</size></result></{op}Response>", p.total));
    out
}

/// One sObject: `sf:type`, the fixed `sf:Id` (nil when Id was not selected), then the selected
/// fields in order (so a selected Id appears twice); nulls are `xsi:nil`, lookups nest.
fn record_xml(v: &Value, tag: &str, out: &mut String) {
    let ty = v["attributes"]["type"].as_str().unwrap_or("");
    out.push_str(&format!(
        "<{tag} xsi:type=\"sf:sObject\"><sf:type>{ty}</sf:type>"
    ));
    match v.get("Id").and_then(Value::as_str) {
        Some(id) => out.push_str(&format!("<sf:Id>{id}</sf:Id>")),
        None => out.push_str("<sf:Id xsi:nil=\"true\"/>"),
    }
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if k == "attributes" {
                continue;
            }
            match val {
                Value::Null => out.push_str(&format!("<sf:{k} xsi:nil=\"true\"/>")),
                Value::Object(_) => record_xml(val, &format!("sf:{k}"), out),
                Value::String(s) => out.push_str(&format!("<sf:{k}>{}</sf:{k}>", escape(s))),
                other => out.push_str(&format!("<sf:{k}>{other}</sf:{k}>")),
            }
        }
    }
    out.push_str(&format!("</{tag}>"));
}
