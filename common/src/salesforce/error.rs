//! Salesforce's error bodies and limit header, parsed into types the callers can act on.

use std::fmt;

use serde::Deserialize;

/// One entry of a REST error body: `[{"message":"…","errorCode":"…","fields":[…]}]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiErrorEntry {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "errorCode", alias = "statusCode", default)]
    pub error_code: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// A REST call that Salesforce answered with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// The first entry's `errorCode`, or `HTTP_<status>` when the body was not Salesforce's.
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// Builds the error from a status and body. Bodies that are not Salesforce's error array
    /// (an HTML error page from a proxy, a truncated body, an array whose first entry has no
    /// error code) keep the status and say so.
    pub fn from_response(status: u16, body: &[u8]) -> ApiError {
        match serde_json::from_slice::<Vec<ApiErrorEntry>>(body) {
            Ok(entries) if entries.first().is_some_and(|e| !e.error_code.is_empty()) => ApiError {
                status,
                code: entries[0].error_code.clone(),
                message: entries[0].message.clone(),
            },
            _ => ApiError {
                status,
                code: format!("HTTP_{status}"),
                message: "response body is not a Salesforce error".into(),
            },
        }
    }

    /// The access token is expired, revoked or unknown.
    pub fn is_invalid_session(&self) -> bool {
        self.status == 401 && (self.code == "INVALID_SESSION_ID" || self.code.starts_with("HTTP_"))
    }

    /// Daily or concurrent API limit reached: back off, do not retry now.
    pub fn is_limit_exceeded(&self) -> bool {
        self.code == "REQUEST_LIMIT_EXCEEDED"
    }

    /// Salesforce is failing rather than refusing: 5xx, or a row lock that clears by itself.
    pub fn is_server_side(&self) -> bool {
        self.status >= 500 || self.code == "UNABLE_TO_LOCK_ROW"
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// Why a Salesforce call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfError {
    Api(ApiError),
    /// Connection refused, reset, TLS failure: the request may not have reached Salesforce.
    Transport(String),
    /// The deadline passed.
    Timeout,
    /// A success status with a body that is not what Salesforce sends.
    Garbage(String),
}

impl fmt::Display for SfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SfError::Api(e) => write!(f, "Salesforce error {e}"),
            SfError::Transport(e) => write!(f, "transport error: {e}"),
            SfError::Timeout => f.write_str("timed out"),
            SfError::Garbage(e) => write!(f, "unexpected response: {e}"),
        }
    }
}

impl std::error::Error for SfError {}

/// `Sforce-Limit-Info: api-usage=18/5000[; per-app-api-usage=…]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitInfo {
    pub used: u64,
    pub max: u64,
}

impl LimitInfo {
    pub fn parse(header: &str) -> Option<LimitInfo> {
        let rest = header.split("api-usage=").nth(1)?;
        // The first "api-usage=" may be "per-app-api-usage=": take the org-wide one.
        let rest = if header.trim_start().starts_with("per-app-api-usage=") {
            header.split("; api-usage=").nth(1).or(Some(rest))?
        } else {
            rest
        };
        let (used, rest) = rest.split_once('/')?;
        let max: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(LimitInfo {
            used: used.trim().parse().ok()?,
            max: max.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_salesforce_error_arrays() {
        let e = ApiError::from_response(
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert!(e.is_invalid_session());
        assert_eq!(e.message, "Session expired or invalid");
        let e = ApiError::from_response(
            403,
            br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert!(e.is_limit_exceeded() && !e.is_invalid_session());
    }

    #[test]
    fn survives_bodies_that_are_not_salesforce_errors() {
        let e = ApiError::from_response(503, b"<html>Service Unavailable</html>");
        assert_eq!(e.code, "HTTP_503");
        assert!(e.is_server_side());
        let e = ApiError::from_response(400, br#"{"error":"x"}"#);
        assert_eq!(e.code, "HTTP_400");
    }

    #[test]
    fn an_error_array_without_an_error_code_is_not_salesforce_s() {
        // Found by fuzz/salesforce_bodies: such a 401 gave an empty code, which is neither
        // INVALID_SESSION_ID nor HTTP_401, so the token was never refreshed.
        let e = ApiError::from_response(401, br#"[{"message":"Session expired"}]"#);
        assert_eq!(e.code, "HTTP_401");
        assert!(e.is_invalid_session());
        let e = ApiError::from_response(400, b"[{}]");
        assert_eq!(e.code, "HTTP_400");
    }

    #[test]
    fn parses_the_limit_header() {
        assert_eq!(
            LimitInfo::parse("api-usage=18/5000"),
            Some(LimitInfo {
                used: 18,
                max: 5000
            })
        );
        assert_eq!(
            LimitInfo::parse("api-usage=25/15000; per-app-api-usage=17/250(appName=MyApp)"),
            Some(LimitInfo {
                used: 25,
                max: 15000
            })
        );
        assert_eq!(
            LimitInfo::parse("per-app-api-usage=17/250(appName=MyApp); api-usage=25/15000"),
            Some(LimitInfo {
                used: 25,
                max: 15000
            })
        );
        assert_eq!(LimitInfo::parse("garbage"), None);
    }
}
