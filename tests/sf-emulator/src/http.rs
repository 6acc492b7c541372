//! Request/response values the handlers work with (decoupled from hyper).

use crate::error::ApiError;
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::Value;
use std::net::SocketAddr;

pub const JSON: &str = "application/json;charset=UTF-8";
pub const XML: &str = "text/xml;charset=UTF-8";

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Percent-encoded path as received.
    pub path: String,
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Decoded query-string pairs.
    pub fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.raw_query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Decoded `application/x-www-form-urlencoded` body pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// `Host` header (`host:port`), lower-cased.
    pub fn host(&self) -> String {
        self.header("host").unwrap_or("").to_ascii_lowercase()
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, v: &Value) -> Self {
        Response::new(status, JSON, v.to_string())
    }

    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: vec![],
            body: Bytes::new(),
        }
    }

    pub fn xml(status: u16, text: String) -> Self {
        Response::new(status, XML, text)
    }

    /// A REST error array with one element.
    pub fn error(e: &ApiError) -> Self {
        Response::json(e.status, &Value::Array(vec![e.rest_json()]))
    }

    /// An OAuth error object (`{"error":…,"error_description":…}`).
    pub fn oauth_error(status: u16, error: &str, description: &str) -> Self {
        Response::json(
            status,
            &serde_json::json!({"error": error, "error_description": description}),
        )
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub type HandlerResult = Result<Response, ApiError>;

/// Percent-decodes one path segment.
pub fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
