//! SOAP partner API (`/services/Soap/u/NN.0[/orgId]`): login, query, queryAll, queryMore and
//! search, with Salesforce's envelope shapes and HTTP 500 faults (fact sheet §4). The envelope
//! is read namespace-aware: SOAP 1.1's envelope, the partner namespace's operation and
//! `SessionHeader`.

use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::rest::{self, query};
use crate::sessions::Session;
use crate::sosl;
use crate::state::Org;
use crate::stats::QueryLogEntry;
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
        "MALFORMED_SEARCH" | "INVALID_SEARCH" => "MalformedSearchFault",
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

const SOAP_ENVELOPE_NS: &[u8] = b"http://schemas.xmlsoap.org/soap/envelope/";
const PARTNER_NS: &[u8] = b"urn:partner.soap.sforce.com";

/// A request envelope as the partner endpoint reads it.
struct RequestEnvelope {
    /// The first element in `Body`, by local name.
    op: String,
    /// Whether `op` is in the partner namespace.
    op_in_partner_ns: bool,
    /// `Header/SessionHeader/sessionId`, with `SessionHeader` in the partner namespace.
    session_id: Option<String>,
    /// The text of each element under the operation (and the login's), by local name.
    texts: HashMap<String, String>,
}

/// Why an envelope was refused: a SOAP fault code and message.
struct EnvelopeFault(&'static str, String);

/// Reads the envelope namespace-aware: the root must be SOAP 1.1's `Envelope`, the operation
/// the partner namespace's, and the session header must sit in `Header` in the partner
/// namespace (anything else named `sessionId` is not a session).
fn parse_envelope(body: &[u8]) -> Result<RequestEnvelope, EnvelopeFault> {
    use quick_xml::name::ResolveResult;
    let unparsable = || EnvelopeFault("soapenv:Client", "Unable to parse the SOAP envelope".into());
    let mut reader = quick_xml::NsReader::from_reader(body);
    // (namespace is the one required, local name) from the root down.
    let mut stack: Vec<(Option<Vec<u8>>, String)> = vec![];
    let mut op: Option<(String, bool)> = None;
    let mut session_id = None;
    let mut texts: HashMap<String, String> = HashMap::new();
    let mut buf = vec![];
    loop {
        let (resolved, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|_| unparsable())?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.as_ref().to_vec()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(_) => return Err(unparsable()),
        };
        let start = match &event {
            Event::Start(e) | Event::Empty(e) => {
                Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned())
            }
            _ => None,
        };
        if let Some(name) = start {
            let depth = stack.len();
            if depth == 0 && !(name == "Envelope" && ns.as_deref() == Some(SOAP_ENVELOPE_NS)) {
                return Err(EnvelopeFault(
                    "soapenv:VersionMismatch",
                    "The SOAP envelope is not in the SOAP 1.1 namespace".into(),
                ));
            }
            let parent_is = |local: &str, ns_needed: &[u8]| {
                stack
                    .last()
                    .is_some_and(|(n, l)| l == local && n.as_deref() == Some(ns_needed))
            };
            if depth == 2 && op.is_none() && parent_is("Body", SOAP_ENVELOPE_NS) {
                op = Some((name.clone(), ns.as_deref() == Some(PARTNER_NS)));
            }
            if matches!(event, Event::Empty(_)) {
                if depth >= 3 {
                    texts.entry(name).or_default();
                }
            } else {
                stack.push((ns, name));
            }
        } else {
            match event {
                Event::End(_) => {
                    stack.pop();
                }
                Event::Text(_) | Event::GeneralRef(_) | Event::CData(_) => {
                    let text = match &event {
                        Event::Text(t) => {
                            quick_xml::escape::unescape(&String::from_utf8_lossy(t.as_ref()))
                                .map_err(|_| unparsable())?
                                .into_owned()
                        }
                        Event::GeneralRef(r) => {
                            let entity = format!("&{};", String::from_utf8_lossy(r.as_ref()));
                            quick_xml::escape::unescape(&entity)
                                .map_err(|_| unparsable())?
                                .into_owned()
                        }
                        Event::CData(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
                        _ => String::new(),
                    };
                    let path: Vec<&str> = stack.iter().map(|(_, l)| l.as_str()).collect();
                    let session_header_in_ns = stack.get(2).is_some_and(|(n, l)| {
                        l == "SessionHeader" && n.as_deref() == Some(PARTNER_NS)
                    });
                    if path == ["Envelope", "Header", "SessionHeader", "sessionId"]
                        && stack[1].0.as_deref() == Some(SOAP_ENVELOPE_NS)
                        && session_header_in_ns
                    {
                        session_id.get_or_insert_with(String::new).push_str(&text);
                    } else if path.len() >= 4 && path[1] == "Body" {
                        if let Some(top) = path.last() {
                            texts.entry(top.to_string()).or_default().push_str(&text);
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        buf.clear();
    }
    let (op, op_in_partner_ns) = op.ok_or_else(unparsable)?;
    Ok(RequestEnvelope {
        op,
        op_in_partner_ns,
        session_id,
        texts,
    })
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
    let request = match parse_envelope(&req.body) {
        Ok(request) => request,
        Err(EnvelopeFault(code, message)) => return fault(code, &message, ""),
    };
    let (op, texts) = (request.op.as_str(), &request.texts);
    if !request.op_in_partner_ns {
        return fault(
            "soapenv:Client",
            &format!("No operation available for request {op} outside urn:partner.soap.sforce.com"),
            "",
        );
    }
    // Counted as REST counts its endpoints: once the session is accepted and the request
    // charged (login has neither).
    let counted = || org.stats.endpoint(&format!("soap_{op}"));
    let get = |k: &str| texts.get(k).map(String::as_str).unwrap_or("");
    let session = || {
        request
            .session_id
            .as_deref()
            .and_then(|id| org.use_session(id.trim()))
    };
    match op {
        "login" => {
            counted();
            login(org, version, get("username"), get("password"))
        }
        "search" => {
            let Some(_session) = session() else {
                return session_fault();
            };
            if let Err((e, _)) = rest::charge(org) {
                return api_fault(&e);
            }
            counted();
            search(org, texts.get("searchString").map(String::as_str), version)
        }
        "query" | "queryAll" | "queryMore" => {
            let Some(session) = session() else {
                return session_fault();
            };
            if let Err((e, _)) = rest::charge(org) {
                return api_fault(&e);
            }
            counted();
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
                Ok(p) => envelope(org, &query_response(op, p)),
                Err(e) => api_fault(&e),
            }
        }
        other => {
            counted();
            fault(
                "soapenv:Client",
                &format!(
                    "No operation available for request {{urn:partner.soap.sforce.com}}{other}"
                ),
                "",
            )
        }
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

/// `search(searchString)`: the SOSL as REST runs it, answered as the partner WSDL's
/// `SearchResult` (`queryId`, then one `searchRecords` holding a `record` per hit).
fn search(org: &Org, sosl: Option<&str>, version: u32) -> Response {
    let Some(sosl) = sosl.filter(|s| !s.trim().is_empty()) else {
        return fault(
            "MALFORMED_SEARCH",
            "No search term found. The search term must be enclosed in braces.",
            "MalformedSearchFault",
        );
    };
    let parsed = sosl::parse_cached(&org.schema, &org.search_plans, sosl);
    org.stats.query(QueryLogEntry {
        kind: "soap_sosl".into(),
        text: sosl.to_string(),
        values: vec![],
        literals: parsed
            .as_ref()
            .map(|s| s.term.literals())
            .unwrap_or_default(),
        error: parsed.as_ref().err().map(|e| e.code.clone()),
    });
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return api_fault(&e),
    };
    let records = {
        let phone = org.runtime().phone_match;
        let data = org.data();
        sosl::run(&data.store, &parsed, &phone, &format!("{version}.0"))
    };
    let mut out = format!(
        "<searchResponse><result><queryId>{}</queryId>",
        util::random_token(18)
    );
    for r in &records {
        out.push_str("<searchRecords>");
        record_xml(r, "record", &mut out);
        out.push_str("</searchRecords>");
    }
    out.push_str("</result></searchResponse>");
    envelope(org, &out)
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
