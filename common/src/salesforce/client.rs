//! A REST client for the calls both programs make. It knows Salesforce's URLs, headers, error
//! bodies and limit header; deadlines, retries and token refresh belong to the callers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::error::{ApiError, LimitInfo, SfError};

/// Largest response body accepted: a lookup answer is a few kilobytes; a runaway body is garbage.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Where and as whom to call: the org's instance URL and an access token.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub instance_url: String,
    pub access_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("instance_url", &self.instance_url)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

/// Whether a call lets the client ask for gzip'd answers (`ClientOptions::gzip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    AsConfigured,
    Identity,
}

/// What a call returned: the JSON body (or `Null` for 204) and the org's API usage, if sent.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub limit: Option<LimitInfo>,
}

#[derive(Clone)]
pub struct SalesforceClient {
    http: reqwest::Client,
    api_version: String,
    /// The last instance's parsed `/services/data/vNN.0/` URL: parsing it for every lookup
    /// costs more than the rest of building the request.
    data_base: Arc<Mutex<Option<(String, reqwest::Url)>>>,
}

/// How the HTTP client is built: one per process, shared by every org.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub extra_ca_pem: Option<Vec<u8>>,
    pub user_agent: String,
    /// `Sforce-Call-Options: client=…`: how API usage is attributed in the org.
    pub call_options_client: String,
    pub pool_max_idle_per_host: usize,
    /// Ask for gzip'd responses (`Accept-Encoding: gzip`) on every call but the lookup's search
    /// (see `search`): it saves bytes on large answers, while on a small answer it costs more
    /// CPU (both ends) than it saves time.
    pub gzip: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            extra_ca_pem: None,
            user_agent: concat!("natterbox-sf/", env!("CARGO_PKG_VERSION")).into(),
            call_options_client: "NatterboxSF".into(),
            pool_max_idle_per_host: 1024,
            gzip: true,
        }
    }
}

/// Builds the shared HTTP client: rustls with TLS verification on (plus an optional CA), gzip,
/// keep-alive pool.
pub fn http_client(options: &ClientOptions) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let call_options = format!("client={}", options.call_options_client);
    headers.insert(
        "Sforce-Call-Options",
        HeaderValue::from_str(&call_options).map_err(|e| e.to_string())?,
    );
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(options.connect_timeout)
        .pool_max_idle_per_host(options.pool_max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .gzip(options.gzip)
        .user_agent(options.user_agent.clone())
        .default_headers(headers);
    if let Some(pem) = &options.extra_ca_pem {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA file: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

pub(super) fn transport_error(e: reqwest::Error) -> SfError {
    if e.is_timeout() {
        SfError::Timeout
    } else {
        // Without the URL: it carries no secret, but the error text stays short.
        SfError::Transport(e.without_url().to_string())
    }
}

/// The whole body, refused past `MAX_BODY_BYTES`.
pub(super) async fn read_body(response: &mut reqwest::Response) -> Result<Vec<u8>, SfError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(SfError::Garbage("response body too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A query-string value, encoded once: `application/x-www-form-urlencoded` as Salesforce
/// decodes it (a space is `+`), leaving unencoded only characters that mean nothing in a query
/// (letters, digits, `-._~*` and the RFC 3986 sub-delimiters `( ) ,`). Short matters: reqwest
/// re-parses the whole URL of every request, so each byte of a query costs three passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryValue(String);

impl QueryValue {
    pub fn with_capacity(capacity: usize) -> QueryValue {
        QueryValue(String::with_capacity(capacity))
    }

    /// Text encoded onto the end.
    pub fn push_text(&mut self, text: &str) -> &mut QueryValue {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for b in text.bytes() {
            if b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b'~' | b'*' | b'(' | b')' | b',')
            {
                self.0.push(b as char);
            } else if b == b' ' {
                self.0.push('+');
            } else {
                self.0.push('%');
                self.0.push(HEX[(b >> 4) as usize] as char);
                self.0.push(HEX[(b & 15) as usize] as char);
            }
        }
        self
    }

    /// An encoded value onto the end.
    pub fn push_encoded(&mut self, encoded: &QueryValue) -> &mut QueryValue {
        self.0.push_str(&encoded.0);
        self
    }

    pub fn encoded(&self) -> &str {
        &self.0
    }

    /// The text again (for APIs that carry it unencoded, such as SOAP): the exact inverse of
    /// `push_text`, `+` being a space and `%XX` a byte.
    pub fn decoded(&self) -> String {
        let bytes = self.0.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push(h << 4 | l);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl From<&str> for QueryValue {
    fn from(text: &str) -> QueryValue {
        let mut value = QueryValue::with_capacity(text.len() * 2);
        value.push_text(text);
        value
    }
}

/// The records of a `/search` answer: its `searchRecords` array.
pub fn search_records(body: Value) -> Result<Vec<Value>, SfError> {
    match body {
        Value::Object(mut map) => match map.remove("searchRecords") {
            Some(Value::Array(records)) => Ok(records),
            _ => Err(SfError::Garbage(
                "search response has no searchRecords array".into(),
            )),
        },
        // Before v36 the answer was a bare array.
        Value::Array(records) => Ok(records),
        _ => Err(SfError::Garbage("search response is not an object".into())),
    }
}

impl SalesforceClient {
    pub fn new(http: reqwest::Client, api_version: &str) -> SalesforceClient {
        SalesforceClient {
            http,
            api_version: api_version.to_string(),
            data_base: Arc::new(Mutex::new(None)),
        }
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    fn data_url(&self, session: &Session, rest: &str) -> String {
        format!(
            "{}/services/data/v{}/{}",
            session.instance_url.trim_end_matches('/'),
            self.api_version,
            rest
        )
    }

    /// `<instance>/services/data/vNN.0/<resource>?q=<query>`, from the cached parsed base.
    fn data_query_url(
        &self,
        session: &Session,
        resource: &str,
        query: &QueryValue,
    ) -> Result<reqwest::Url, SfError> {
        let mut cached = self.data_base.lock().unwrap_or_else(|e| e.into_inner());
        let base = match cached.as_ref() {
            Some((instance, url)) if *instance == session.instance_url => url.clone(),
            _ => {
                let url = reqwest::Url::parse(&self.data_url(session, ""))
                    .map_err(|e| SfError::Transport(format!("instance URL: {e}")))?;
                *cached = Some((session.instance_url.clone(), url.clone()));
                url
            }
        };
        drop(cached);
        let mut url = base;
        url.path_segments_mut()
            .map_err(|_| SfError::Transport("instance URL cannot be a base".into()))?
            .pop_if_empty()
            .push(resource)
            .push("");
        let mut q = String::with_capacity(query.encoded().len() + 2);
        q.push_str("q=");
        q.push_str(query.encoded());
        url.set_query(Some(&q));
        Ok(url)
    }

    /// One request; the answer or a typed error. Non-2xx statuses become `SfError::Api`.
    pub async fn call(
        &self,
        session: &Session,
        method: Method,
        url: impl reqwest::IntoUrl,
        body: Option<&Value>,
    ) -> Result<Answer, SfError> {
        self.send(session, method, url, body, Compression::AsConfigured)
            .await
    }

    async fn send(
        &self,
        session: &Session,
        method: Method,
        url: impl reqwest::IntoUrl,
        body: Option<&Value>,
        compression: Compression,
    ) -> Result<Answer, SfError> {
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", session.access_token));
        if compression == Compression::Identity {
            // reqwest adds `Accept-Encoding: gzip` only when the request has none.
            request = request.header(ACCEPT_ENCODING, "identity");
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let limit = response
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(LimitInfo::parse);
        let bytes = read_body(&mut response).await?;
        if !status.is_success() {
            return Err(SfError::Api(ApiError::from_response(
                status.as_u16(),
                &bytes,
            )));
        }
        let body = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| SfError::Garbage(format!("body is not JSON: {e}")))?
        };
        Ok(Answer {
            status: status.as_u16(),
            body,
            limit,
        })
    }

    /// `GET /search?q=<SOSL>`: the `searchRecords` array.
    ///
    /// Asked for uncompressed: a lookup's answer is a few records (hundreds of bytes to a few
    /// kilobytes, within one TCP window), so gzip saves no round trip, while inflating it costs
    /// a 47 KB decompressor state per answer, the largest single cost of a miss
    /// (docs/benchmarks.md).
    pub async fn search(
        &self,
        session: &Session,
        sosl: &QueryValue,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        let url = self.data_query_url(session, "search", sosl)?;
        let answer = self
            .send(session, Method::GET, url, None, Compression::Identity)
            .await?;
        Ok((search_records(answer.body)?, answer.limit))
    }

    /// `GET /query?q=<SOQL>`, following `nextRecordsUrl` until done or `max_records`.
    pub async fn query(
        &self,
        session: &Session,
        soql: &str,
        max_records: usize,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        let mut url = self.data_url(
            session,
            &format!("query/?q={}", QueryValue::from(soql).encoded()),
        );
        let mut records = Vec::new();
        loop {
            let answer = self.call(session, Method::GET, &url, None).await?;
            let limit = answer.limit;
            let Value::Object(mut page) = answer.body else {
                return Err(SfError::Garbage("query response is not an object".into()));
            };
            match page.remove("records") {
                Some(Value::Array(batch)) => records.extend(batch),
                _ => {
                    return Err(SfError::Garbage(
                        "query response has no records array".into(),
                    ))
                }
            }
            let done = page.get("done").and_then(Value::as_bool).unwrap_or(true);
            let next = page.get("nextRecordsUrl").and_then(Value::as_str);
            match next {
                Some(next) if !done && records.len() < max_records => {
                    url = format!("{}{}", session.instance_url.trim_end_matches('/'), next);
                }
                _ => return Ok((records, limit)),
            }
        }
    }

    /// `GET /sobjects/<type>/describe`: the object's fields as Salesforce reports them.
    pub async fn describe(
        &self,
        session: &Session,
        sobject: &str,
    ) -> Result<super::describe::SObjectDescribe, SfError> {
        let url = self.data_url(session, &format!("sobjects/{sobject}/describe"));
        let answer = self.call(session, Method::GET, &url, None).await?;
        super::describe::SObjectDescribe::from_json(&answer.body).map_err(SfError::Garbage)
    }

    /// `POST /sobjects/<type>/`: the new record's id.
    pub async fn create(
        &self,
        session: &Session,
        sobject: &str,
        fields: &Value,
    ) -> Result<String, SfError> {
        let url = self.data_url(session, &format!("sobjects/{sobject}/"));
        let answer = self.call(session, Method::POST, &url, Some(fields)).await?;
        answer
            .body
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| SfError::Garbage("create response has no id".into()))
    }

    /// `GET /sobjects/<type>/describe`, as the body Salesforce sent.
    pub async fn describe_json(&self, session: &Session, sobject: &str) -> Result<Value, SfError> {
        let url = self.data_url(session, &format!("sobjects/{sobject}/describe"));
        Ok(self.call(session, Method::GET, &url, None).await?.body)
    }

    /// `<instance>/services/data/vNN.0/sobjects/<segments…>`, each segment percent-encoded (an
    /// id or External ID value from a call never becomes path syntax).
    fn sobject_url(&self, session: &Session, segments: &[&str]) -> Result<reqwest::Url, SfError> {
        let mut url = reqwest::Url::parse(&self.data_url(session, "sobjects"))
            .map_err(|e| SfError::Transport(format!("instance URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| SfError::Transport("instance URL cannot be a base".into()))?
            .extend(segments);
        Ok(url)
    }

    /// `PATCH /sobjects/<type>/<id>`: 204 on success.
    pub async fn update(
        &self,
        session: &Session,
        sobject: &str,
        id: &str,
        fields: &Value,
    ) -> Result<Option<LimitInfo>, SfError> {
        let url = self.sobject_url(session, &[sobject, id])?;
        let answer = self.call(session, Method::PATCH, url, Some(fields)).await?;
        Ok(answer.limit)
    }

    /// `PATCH /sobjects/<type>/<field>/<value>`: the record's id and whether it was created
    /// (201) or updated (200; from API 46.0 both carry `{id, success, errors, created}`;
    /// before, an update is 204 with no body and the id is empty).
    /// Several matches (300, a list of URLs) are `SfError::Api` with status 300 and `HTTP_300`.
    pub async fn upsert(
        &self,
        session: &Session,
        sobject: &str,
        field: &str,
        value: &str,
        fields: &Value,
    ) -> Result<(String, bool, Option<LimitInfo>), SfError> {
        let url = self.sobject_url(session, &[sobject, field, value])?;
        let answer = self.call(session, Method::PATCH, url, Some(fields)).await?;
        let id = match answer.body.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            // Before API 46.0 an update by External ID answers 204 without a body.
            None if answer.status == 204 => String::new(),
            None => return Err(SfError::Garbage("upsert response has no id".into())),
        };
        Ok((id, answer.status == 201, answer.limit))
    }

    /// `POST /sobjects/<type>/`: the new record's id and the org's API usage.
    pub async fn create_with_limit(
        &self,
        session: &Session,
        sobject: &str,
        fields: &Value,
    ) -> Result<(String, Option<LimitInfo>), SfError> {
        let url = self.sobject_url(session, &[sobject, ""])?;
        let answer = self.call(session, Method::POST, url, Some(fields)).await?;
        let id = answer
            .body
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| SfError::Garbage("create response has no id".into()))?;
        Ok((id, answer.limit))
    }

    /// `POST /composite/sobjects` with `allOrNone:false`: one result per record, in order.
    pub async fn create_many(
        &self,
        session: &Session,
        records: Vec<Value>,
    ) -> Result<Vec<Result<String, ApiError>>, SfError> {
        let count = records.len();
        let url = self.data_url(session, "composite/sobjects");
        let body = serde_json::json!({"allOrNone": false, "records": records});
        let answer = self.call(session, Method::POST, &url, Some(&body)).await?;
        let Value::Array(results) = answer.body else {
            return Err(SfError::Garbage(
                "composite response is not an array".into(),
            ));
        };
        if results.len() != count {
            return Err(SfError::Garbage(
                "composite response does not match the request".into(),
            ));
        }
        Ok(results
            .into_iter()
            .map(|r| {
                if r.get("success").and_then(Value::as_bool) == Some(true) {
                    r.get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::from_response(200, b""))
                } else {
                    let errors = r.get("errors").cloned().unwrap_or(Value::Null);
                    Err(ApiError::from_response(400, errors.to_string().as_bytes()))
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_form_encoded_and_decode_to_the_text() {
        let text = "FIND {a b}+&=%#'\"é RETURNING Contact(Id, Name LIMIT 2)";
        let value = QueryValue::from(text);
        assert_eq!(
            value.encoded(),
            "FIND+%7Ba+b%7D%2B%26%3D%25%23%27%22%C3%A9+RETURNING+Contact(Id,+Name+LIMIT+2)"
        );
        let url = reqwest::Url::parse(&format!("http://x/?q={}", value.encoded())).unwrap();
        let decoded: Vec<_> = url.query_pairs().collect();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].0, "q");
        assert_eq!(decoded[0].1, text);
        assert_eq!(value.decoded(), text);
        let mut joined = QueryValue::from("FIND {1}");
        joined.push_encoded(&QueryValue::from(" IN PHONE FIELDS"));
        assert_eq!(joined.encoded(), "FIND+%7B1%7D+IN+PHONE+FIELDS");
    }

    #[test]
    fn search_urls_keep_the_instance_path() {
        let client = SalesforceClient::new(reqwest::Client::new(), "68.0");
        let session = Session {
            instance_url: "https://acme.my.salesforce.com/prefix/".into(),
            access_token: "t".into(),
        };
        let url = client
            .data_query_url(&session, "search", &"FIND {1}".into())
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://acme.my.salesforce.com/prefix/services/data/v68.0/search/?q=FIND+%7B1%7D"
        );
        let again = client
            .data_query_url(&session, "search", &"x".into())
            .unwrap();
        assert_eq!(again.query(), Some("q=x"));
    }

    /// Answers each request on one connection with a canned body chosen by path, and sends
    /// back every request head it read.
    fn canned_server() -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (heads, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            loop {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                let body = if head.contains("/search/") {
                    r#"{"searchRecords":[]}"#
                } else {
                    r#"{"totalSize":0,"done":true,"records":[]}"#
                };
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                heads.send(head).unwrap();
            }
        });
        (url, received)
    }

    #[tokio::test]
    async fn lookups_ask_for_identity_and_other_calls_for_gzip() {
        let (instance_url, heads) = canned_server();
        let http = http_client(&ClientOptions::default()).unwrap();
        let client = SalesforceClient::new(http, "68.0");
        let session = Session {
            instance_url,
            access_token: "t".into(),
        };
        client.search(&session, &"FIND {1}".into()).await.unwrap();
        let search = heads.recv().unwrap();
        assert!(search.contains("accept-encoding: identity\r\n"), "{search}");
        assert!(!search.contains("gzip"), "{search}");
        client
            .query(&session, "SELECT Id FROM Contact", 10)
            .await
            .unwrap();
        let query = heads.recv().unwrap();
        assert!(query.contains("accept-encoding: gzip\r\n"), "{query}");
    }
}
