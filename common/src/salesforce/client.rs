//! A REST client for the calls both programs make. It knows Salesforce's URLs, headers, error
//! bodies and limit header; deadlines, retries and token refresh belong to the callers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
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
    /// Ask for gzip'd responses (`Accept-Encoding: gzip`). Saves bytes on large answers; on a
    /// small lookup answer it costs more CPU (both ends) than it saves time.
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

fn transport_error(e: reqwest::Error) -> SfError {
    if e.is_timeout() {
        SfError::Timeout
    } else {
        // Without the URL: it carries no secret, but the error text stays short.
        SfError::Transport(e.without_url().to_string())
    }
}

/// RFC 3986 percent-encoding of a query value (unreserved characters kept).
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
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
        query: &str,
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
        url.set_query(Some(&format!("q={}", percent_encode(query))));
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
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", session.access_token));
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
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(SfError::Garbage("response body too large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
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
    pub async fn search(
        &self,
        session: &Session,
        sosl: &str,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        let url = self.data_query_url(session, "search", sosl)?;
        let answer = self.call(session, Method::GET, url, None).await?;
        let limit = answer.limit;
        match answer.body {
            Value::Object(mut map) => match map.remove("searchRecords") {
                Some(Value::Array(records)) => Ok((records, limit)),
                _ => Err(SfError::Garbage(
                    "search response has no searchRecords array".into(),
                )),
            },
            // Before v36 the answer was a bare array.
            Value::Array(records) => Ok((records, limit)),
            _ => Err(SfError::Garbage("search response is not an object".into())),
        }
    }

    /// `GET /query?q=<SOQL>`, following `nextRecordsUrl` until done or `max_records`.
    pub async fn query(
        &self,
        session: &Session,
        soql: &str,
        max_records: usize,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        let mut url = self.data_url(session, &format!("query/?q={}", percent_encode(soql)));
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
    fn query_text_is_percent_encoded() {
        assert_eq!(
            percent_encode("FIND {a b}+&é"),
            "FIND%20%7Ba%20b%7D%2B%26%C3%A9"
        );
    }

    #[test]
    fn search_urls_keep_the_instance_path() {
        let client = SalesforceClient::new(reqwest::Client::new(), "68.0");
        let session = Session {
            instance_url: "https://acme.my.salesforce.com/prefix/".into(),
            access_token: "t".into(),
        };
        let url = client
            .data_query_url(&session, "search", "FIND {1}")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://acme.my.salesforce.com/prefix/services/data/v68.0/search/?q=FIND%20%7B1%7D"
        );
        let again = client.data_query_url(&session, "search", "x").unwrap();
        assert_eq!(again.query(), Some("q=x"));
    }
}
