//! What Salesforce (or a proxy in front of it) sends back: OAuth token and error bodies, REST
//! error arrays, the `Sforce-Limit-Info` header and `/search` answers (common/src/salesforce/).
//!
//! Properties: no body panics a parser; a token response serialises and parses back to itself,
//! its Debug text never depends on the access token, refresh token or signature, and its org id
//! is one path segment; an error keeps the HTTP status, and its code is `HTTP_<status>` or a
//! non-empty code from an error array in the body; a parsed limit header written back parses to the same
//! figures; a search answer's records are its `searchRecords` array (or the bare array).
#![no_main]

use libfuzzer_sys::fuzz_target;
use natterbox_common::salesforce::client::search_records;
use natterbox_common::salesforce::oauth::{OAuthError, TokenResponse};
use natterbox_common::salesforce::{ApiError, LimitInfo};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) % 600, rest),
        _ => return,
    };

    if let Ok(token) = serde_json::from_slice::<TokenResponse>(body) {
        let again: TokenResponse =
            serde_json::from_slice(&serde_json::to_vec(&token).unwrap()).unwrap();
        assert!(again == token, "token response round trip");
        let _ = token.issued_at_ms();
        if let Some(org) = token.org_id() {
            assert!(!org.contains('/'), "org id {org:?}");
        }
        let mut secrets_changed = token.clone();
        secrets_changed.access_token.push('x');
        secrets_changed.signature.push('x');
        // Whether there is a refresh token may show; what it is may not.
        if let Some(refresh) = &mut secrets_changed.refresh_token {
            refresh.push('x');
        }
        assert_eq!(
            format!("{token:?}"),
            format!("{secrets_changed:?}"),
            "Debug shows a secret"
        );
    }

    if let Ok(error) = serde_json::from_slice::<OAuthError>(body) {
        assert!(!error.advice().is_empty());
    }

    let api = ApiError::from_response(status, body);
    assert_eq!(api.status, status);
    // (Not a Value parse: serde_json skips unknown fields without checking their UTF-8.)
    let is_array = body.trim_ascii_start().starts_with(b"[");
    if api.code != format!("HTTP_{status}") {
        // Salesforce's code, taken from an error array in the body: never empty, so a 401 is
        // either INVALID_SESSION_ID, HTTP_401 or another code Salesforce named.
        assert!(is_array && !api.code.is_empty(), "code {:?}", api.code);
        let text = String::from_utf8_lossy(body);
        assert!(
            text.contains(api.code.as_str()) || text.contains('\\'),
            "code {:?} not in the body",
            api.code
        );
    }
    assert!(api.to_string().starts_with(&status.to_string()));
    let _ = (
        api.is_invalid_session(),
        api.is_limit_exceeded(),
        api.is_server_side(),
    );

    if let Ok(header) = std::str::from_utf8(body) {
        if let Some(limit) = LimitInfo::parse(header) {
            let written = format!("api-usage={}/{}", limit.used, limit.max);
            assert_eq!(LimitInfo::parse(&written), Some(limit), "{header:?}");
        }
    }

    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let expected = match &value {
            Value::Array(records) => Some(records.len()),
            Value::Object(map) => map
                .get("searchRecords")
                .and_then(Value::as_array)
                .map(Vec::len),
            _ => None,
        };
        assert_eq!(search_records(value).ok().map(|r| r.len()), expected);
    }
});
