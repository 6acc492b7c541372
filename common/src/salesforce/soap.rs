//! The SOAP partner API (`/services/Soap/u/NN.0`) for the reads a call makes: `search`, `query`
//! and `queryMore`. Authenticated by the OAuth access token in `SessionHeader` (SOAP `login()`
//! is gone from API 65.0). Answers come back as the REST API's JSON records (`attributes.type`,
//! fields by name, parents nested, nulls as `null`), and faults as the REST API's errors, so
//! everything after the transport is the same for both APIs.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use super::client::{read_body, transport_error};
use super::error::{ApiError, LimitInfo, SfError};
use super::Session;

const SOAP_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const PARTNER_NS: &str = "urn:partner.soap.sforce.com";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

#[derive(Clone)]
pub struct SoapClient {
    http: reqwest::Client,
    api_version: String,
}

/// One element of an answer: local name, `xsi:type`, `xsi:nil`, text and children.
#[derive(Debug, Default)]
struct Node {
    name: String,
    xsi_type: Option<String>,
    nil: bool,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn path(&self, names: &[&str]) -> Option<&Node> {
        names.iter().try_fold(self, |node, name| node.child(name))
    }
}

fn local_name(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.split_once(':') {
        Some((_, local)) => local.to_string(),
        None => name.into_owned(),
    }
}

fn start_node(start: &BytesStart<'_>) -> Result<Node, String> {
    let mut node = Node {
        name: local_name(start.name().as_ref()),
        ..Node::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let key = local_name(attr.key.as_ref());
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad attribute value: {e}"))?;
        match key.as_str() {
            "type" => node.xsi_type = Some(local_name(value.as_bytes())),
            "nil" => node.nil = value == "true",
            _ => {}
        }
    }
    Ok(node)
}

/// The document's root element as a tree. Salesforce's answers are small; a tree keeps the
/// mapping readable.
fn parse_tree(body: &[u8]) -> Result<Node, String> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Node> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML error: {e}"))?;
        match event {
            Event::Start(start) => stack.push(start_node(&start)?),
            Event::Empty(start) => {
                let node = start_node(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    let raw = text.decode().map_err(|e| format!("text: {e}"))?;
                    let unescaped =
                        quick_xml::escape::unescape(&raw).map_err(|e| format!("text: {e}"))?;
                    top.text.push_str(&unescaped);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(top) = stack.last_mut() {
                    let name = reference.decode().map_err(|e| format!("entity: {e}"))?;
                    let entity = format!("&{name};");
                    let text =
                        quick_xml::escape::unescape(&entity).map_err(|e| format!("entity: {e}"))?;
                    top.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(data.as_ref()));
                }
            }
            Event::Eof => return Err("no root element".into()),
            _ => {}
        }
        buf.clear();
    }
}

/// Text for an XML element's content.
fn escape_text(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// The HTTP status a REST call answers with for the same refusal, so that `ApiError`'s
/// classification (`is_invalid_session`, `is_limit_exceeded`, `is_server_side`) holds for both.
fn status_of_fault(code: &str) -> u16 {
    match code {
        "INVALID_SESSION_ID" => 401,
        "REQUEST_LIMIT_EXCEEDED" | "API_DISABLED_FOR_ORG" | "INSUFFICIENT_ACCESS" => 403,
        "Server" | "UNKNOWN_EXCEPTION" | "SERVER_UNAVAILABLE" | "UNABLE_TO_LOCK_ROW" => 500,
        _ => 400,
    }
}

/// A SOAP fault (or any non-2xx answer) as the REST error the same refusal would be.
fn fault_error(http_status: u16, body: &[u8]) -> ApiError {
    let not_a_fault = || ApiError {
        status: http_status,
        code: format!("HTTP_{http_status}"),
        message: "response body is not a SOAP fault".into(),
    };
    let Ok(root) = parse_tree(body) else {
        return not_a_fault();
    };
    let Some(fault) = root.path(&["Body", "Fault"]) else {
        return not_a_fault();
    };
    // `sf:INVALID_SESSION_ID`, or `soapenv:Client`/`soapenv:Server` for envelope faults.
    let faultcode = fault.child("faultcode").map_or("", |c| c.text.trim());
    let detail = fault
        .child("detail")
        .and_then(|d| d.children.first())
        .and_then(|f| f.child("exceptionCode"));
    let code = match detail {
        Some(code) if !code.text.trim().is_empty() => code.text.trim().to_string(),
        _ => faultcode
            .rsplit_once(':')
            .map_or(faultcode, |(_, c)| c)
            .to_string(),
    };
    if code.is_empty() {
        return not_a_fault();
    }
    let message = fault
        .child("detail")
        .and_then(|d| d.children.first())
        .and_then(|f| f.child("exceptionMessage"))
        .map(|m| m.text.clone())
        .or_else(|| {
            fault.child("faultstring").map(|s| {
                let text = s.text.as_str();
                text.strip_prefix(&format!("{code}: "))
                    .unwrap_or(text)
                    .to_string()
            })
        })
        .unwrap_or_default();
    ApiError {
        status: status_of_fault(&code),
        code,
        message,
    }
}

/// `LimitInfoHeader`'s `API REQUESTS` entry: the org's daily usage, as `Sforce-Limit-Info`.
fn limit_info(root: &Node) -> Option<LimitInfo> {
    let header = root.path(&["Header", "LimitInfoHeader"])?;
    header
        .children
        .iter()
        .filter(|c| c.name == "limitInfo")
        .find(|c| {
            c.child("type")
                .is_some_and(|t| t.text.trim() == "API REQUESTS")
        })
        .and_then(|info| {
            Some(LimitInfo {
                used: info.child("current")?.text.trim().parse().ok()?,
                max: info.child("limit")?.text.trim().parse().ok()?,
            })
        })
}

/// An `sObject` element as the REST API's JSON record: `attributes.type`, the fixed `Id`
/// (which the partner API sends first, and again when selected), each field by name, nulls as
/// `null`, parents nested, child relationships as `{totalSize, done, records}`.
fn record_json(node: &Node) -> Value {
    let mut record = Map::new();
    let sobject_type = node
        .child("type")
        .map(|t| t.text.clone())
        .unwrap_or_default();
    record.insert(
        "attributes".into(),
        serde_json::json!({ "type": sobject_type }),
    );
    let mut seen_type = false;
    for field in &node.children {
        if field.name == "type" && !seen_type {
            seen_type = true;
            continue;
        }
        if field.name == "Id" && record.contains_key("Id") {
            continue;
        }
        if field.name == "Id" && field.nil {
            // The fixed Id of a record whose Id was not selected.
            continue;
        }
        let value = if field.nil {
            Value::Null
        } else if field.xsi_type.as_deref() == Some("sObject") {
            record_json(field)
        } else if field.xsi_type.as_deref() == Some("QueryResult") {
            query_result_json(field)
        } else {
            Value::String(field.text.clone())
        };
        record.insert(field.name.clone(), value);
    }
    Value::Object(record)
}

fn query_result_json(node: &Node) -> Value {
    let records: Vec<Value> = node
        .children
        .iter()
        .filter(|c| c.name == "records")
        .map(record_json)
        .collect();
    serde_json::json!({
        "totalSize": node.child("size").and_then(|s| s.text.trim().parse::<u64>().ok()).unwrap_or(records.len() as u64),
        "done": node.child("done").is_none_or(|d| d.text.trim() == "true"),
        "records": records,
    })
}

/// The `result` of `<op>Response`, checked to be in a SOAP envelope.
fn result_of<'a>(root: &'a Node, op: &str) -> Result<&'a Node, SfError> {
    if root.name != "Envelope" {
        return Err(SfError::Garbage("answer is not a SOAP envelope".into()));
    }
    root.path(&["Body", &format!("{op}Response"), "result"])
        .ok_or_else(|| SfError::Garbage(format!("SOAP answer has no {op}Response result")))
}

impl SoapClient {
    pub fn new(http: reqwest::Client, api_version: &str) -> SoapClient {
        SoapClient {
            http,
            api_version: api_version.to_string(),
        }
    }

    fn endpoint(&self, session: &Session) -> String {
        format!(
            "{}/services/Soap/u/{}",
            session.instance_url.trim_end_matches('/'),
            self.api_version
        )
    }

    /// One call: the envelope with the session, the answer's tree and the org's API usage.
    async fn call(
        &self,
        session: &Session,
        operation: &str,
        body: &str,
    ) -> Result<(Node, Option<LimitInfo>), SfError> {
        let envelope = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE_NS}" xmlns="{PARTNER_NS}" xmlns:xsi="{XSI_NS}"><soapenv:Header><SessionHeader><sessionId>{}</sessionId></SessionHeader></soapenv:Header><soapenv:Body><{operation}>{body}</{operation}></soapenv:Body></soapenv:Envelope>"#,
            escape_text(&session.access_token)
        );
        let mut response = self
            .http
            .post(self.endpoint(session))
            .header(CONTENT_TYPE, "text/xml; charset=UTF-8")
            .header(ACCEPT, "text/xml")
            .header("SOAPAction", "\"\"")
            .body(envelope)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let bytes = read_body(&mut response).await?;
        if !(200..300).contains(&status) {
            return Err(SfError::Api(fault_error(status, &bytes)));
        }
        let root = parse_tree(&bytes).map_err(SfError::Garbage)?;
        let limit = limit_info(&root);
        Ok((root, limit))
    }

    /// `search(searchString)`: each `searchRecords/record`, as REST's `searchRecords`.
    pub async fn search(
        &self,
        session: &Session,
        sosl: &str,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        let body = format!("<searchString>{}</searchString>", escape_text(sosl));
        let (root, limit) = self.call(session, "search", &body).await?;
        let result = result_of(&root, "search")?;
        let records = result
            .children
            .iter()
            .filter(|c| c.name == "searchRecords")
            .filter_map(|r| r.child("record"))
            .map(record_json)
            .collect();
        Ok((records, limit))
    }

    /// `query(queryString)`, then `queryMore(queryLocator)` until done or `max_records`.
    pub async fn query(
        &self,
        session: &Session,
        soql: &str,
        max_records: usize,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        let mut body = format!("<queryString>{}</queryString>", escape_text(soql));
        let mut operation = "query";
        let mut records = Vec::new();
        loop {
            let (root, limit) = self.call(session, operation, &body).await?;
            let result = result_of(&root, operation)?;
            records.extend(
                result
                    .children
                    .iter()
                    .filter(|c| c.name == "records")
                    .map(record_json),
            );
            let done = result.child("done").is_none_or(|d| d.text.trim() == "true");
            let locator = result
                .child("queryLocator")
                .filter(|l| !l.nil && !l.text.trim().is_empty());
            match locator {
                Some(locator) if !done && records.len() < max_records => {
                    body = format!(
                        "<queryLocator>{}</queryLocator>",
                        escape_text(locator.text.trim())
                    );
                    operation = "queryMore";
                }
                _ => return Ok((records, limit)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_as_the_rest_api_s_json() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:sf="urn:sobject.partner.soap.sforce.com"><soapenv:Header><LimitInfoHeader><limitInfo><current>18</current><limit>5000</limit><type>API REQUESTS</type></limitInfo></LimitInfoHeader></soapenv:Header><soapenv:Body><searchResponse><result><queryId>x</queryId><searchRecords><record xsi:type="sf:sObject"><sf:type>Contact</sf:type><sf:Id>003000000000001AAA</sf:Id><sf:Id>003000000000001AAA</sf:Id><sf:Name>O&apos;Brien &amp; Co</sf:Name><sf:Phone xsi:nil="true"/><sf:Owner xsi:type="sf:sObject"><sf:type>User</sf:type><sf:Id xsi:nil="true"/><sf:Name>Grace</sf:Name></sf:Owner></record></searchRecords></result></searchResponse></soapenv:Body></soapenv:Envelope>"#;
        let root = parse_tree(body).unwrap();
        assert_eq!(
            limit_info(&root),
            Some(LimitInfo {
                used: 18,
                max: 5000
            })
        );
        let result = result_of(&root, "search").unwrap();
        let record = record_json(
            result
                .child("searchRecords")
                .unwrap()
                .child("record")
                .unwrap(),
        );
        assert_eq!(
            record,
            serde_json::json!({
                "attributes": {"type": "Contact"},
                "Id": "003000000000001AAA",
                "Name": "O'Brien & Co",
                "Phone": null,
                "Owner": {"attributes": {"type": "User"}, "Name": "Grace"},
            })
        );
    }

    #[test]
    fn faults_read_as_the_rest_api_s_errors() {
        let fault = br#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring><detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode><sf:exceptionMessage>Invalid Session ID found in SessionHeader: Illegal Session</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let e = fault_error(500, fault);
        assert!(e.is_invalid_session(), "{e}");
        assert_eq!(
            e.message,
            "Invalid Session ID found in SessionHeader: Illegal Session"
        );
        let limit = String::from_utf8_lossy(fault)
            .replace("INVALID_SESSION_ID", "REQUEST_LIMIT_EXCEEDED")
            .replace(
                "Invalid Session ID found in SessionHeader: Illegal Session",
                "TotalRequests Limit exceeded.",
            );
        let e = fault_error(500, limit.as_bytes());
        assert!(e.is_limit_exceeded() && !e.is_server_side(), "{e}");
        let malformed = String::from_utf8_lossy(fault)
            .replace("INVALID_SESSION_ID", "MALFORMED_SEARCH")
            .replace("UnexpectedErrorFault", "MalformedSearchFault");
        let e = fault_error(500, malformed.as_bytes());
        assert_eq!((e.status, e.code.as_str()), (400, "MALFORMED_SEARCH"));
        assert!(!e.is_server_side() && !e.is_invalid_session());
        let envelope_fault = br#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>boom</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        assert!(fault_error(500, envelope_fault).is_server_side());
        let proxy = fault_error(503, b"<html>Service Unavailable</html>");
        assert_eq!(proxy.code, "HTTP_503");
        assert!(proxy.is_server_side());
        assert!(fault_error(401, b"").is_invalid_session());
    }
}
