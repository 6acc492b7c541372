//! OAuth 2.0 token endpoint bodies as Salesforce sends them (no `expires_in`).
//!
//! Each grant answers with its own set of fields (Salesforce Help, one page per flow): the JWT
//! bearer flow sends only `access_token`, `scope`, `instance_url`, `id` and `token_type`, with
//! no `issued_at` and no `signature`; client credentials and refresh token add `issued_at` and
//! `signature`; only some flows send `refresh_token`. So only what every grant sends and the
//! client cannot do without is required: the access token and the instance URL.

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// The base of every further REST call.
    pub instance_url: String,
    /// The identity URL `…/id/<orgId>/<userId>`.
    #[serde(default, deserialize_with = "text_or_empty")]
    pub id: String,
    #[serde(default, deserialize_with = "text_or_empty")]
    pub token_type: String,
    /// Milliseconds since the epoch, as a string; not sent by the JWT bearer flow.
    #[serde(
        default,
        deserialize_with = "text_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub issued_at: Option<String>,
    #[serde(default, deserialize_with = "text_or_empty")]
    pub signature: String,
    #[serde(default, deserialize_with = "text_or_empty")]
    pub scope: String,
    /// Only from flows that issue one (refresh-token rotation, web server).
    #[serde(
        default,
        deserialize_with = "text_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token: Option<String>,
}

/// A field the client can do without never makes the answer unreadable: a string is kept, a
/// number becomes its decimal text, anything else (null, an object) counts as absent.
fn text_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn text_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(text_or_none(d)?.unwrap_or_default())
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("instance_url", &self.instance_url)
            .field("id", &self.id)
            .field("issued_at", &self.issued_at)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl TokenResponse {
    /// The response's own `issued_at`, when it has a readable one.
    pub fn issued_at_ms(&self) -> Option<u64> {
        self.issued_at.as_deref()?.trim().parse().ok()
    }

    /// When the session was issued: the response's own `issued_at` when it has one, else
    /// `received_ms`, the clock when the answer arrived. A session cannot have been issued after
    /// its answer arrived, so an `issued_at` ahead of the clock (skew) is read as the arrival.
    pub fn issued_at_ms_or(&self, received_ms: u64) -> u64 {
        self.issued_at_ms()
            .map_or(received_ms, |issued| issued.min(received_ms))
    }

    /// The org id, from the identity URL `…/id/<orgId>/<userId>`.
    pub fn org_id(&self) -> Option<&str> {
        let mut segments = self.id.rsplit('/');
        segments.next()?;
        segments.next().filter(|s| !s.is_empty())
    }
}

/// `{"error":"invalid_grant","error_description":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

impl OAuthError {
    /// What an operator should do about it.
    pub fn advice(&self) -> &'static str {
        match (self.error.as_str(), self.error_description.as_str()) {
            ("invalid_grant", "user hasn't approved this consumer") => {
                "pre-authorize the user for the connected app (admin-approved profile or permission set)"
            }
            ("invalid_grant", "audience is invalid") => {
                "set audience to https://login.salesforce.com (or https://test.salesforce.com for sandboxes)"
            }
            ("invalid_grant", "invalid assertion") => {
                "the private key does not match the certificate uploaded to the connected app"
            }
            ("invalid_grant", "expired access/refresh token") => {
                "the refresh token was revoked or expired: authorize again to get a new one"
            }
            ("invalid_grant", _) => "check the username, the user's status and the app's policies",
            ("invalid_client_id", _) => "client-id is not the consumer key of a connected app in this org",
            ("invalid_client", _) => "the client secret is wrong",
            ("unsupported_grant_type", _) => {
                "the flow is not enabled for the connected app, or not allowed on this host (client credentials need My Domain)"
            }
            _ => "see Salesforce's OAuth error documentation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "https://login.salesforce.com/id/00DXX0000008dLkMAE/005XX000001SvLbYAK";

    fn read(body: &str) -> TokenResponse {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[test]
    fn reads_the_jwt_bearer_answer_without_issued_at_or_signature() {
        // The JWT bearer flow's documented success body: five fields, nothing else.
        let token = read(&format!(
            r#"{{"access_token":"00DXX0000008dLk!AQ0AQJwt","scope":"api","instance_url":"https://acme.my.salesforce.com","id":"{ID}","token_type":"Bearer"}}"#
        ));
        assert_eq!(token.access_token, "00DXX0000008dLk!AQ0AQJwt");
        assert_eq!(token.instance_url, "https://acme.my.salesforce.com");
        assert_eq!(token.issued_at, None);
        assert_eq!(token.issued_at_ms(), None);
        assert_eq!(token.refresh_token, None);
        assert_eq!(token.org_id(), Some("00DXX0000008dLkMAE"));
        // Issued when the answer arrived.
        assert_eq!(token.issued_at_ms_or(1_767_225_600_999), 1_767_225_600_999);
    }

    #[test]
    fn reads_the_client_credentials_and_refresh_token_answers() {
        let body = format!(
            r#"{{"access_token":"00DXX0000008dLk!AQ0AQCc","signature":"kQ0n5=","scope":"api","instance_url":"https://acme.my.salesforce.com","id":"{ID}","token_type":"Bearer","issued_at":"1767225600123"}}"#
        );
        let token = read(&body);
        assert_eq!(token.issued_at_ms(), Some(1_767_225_600_123));
        assert_eq!(token.issued_at_ms_or(1_767_225_600_999), 1_767_225_600_123);
        assert_eq!(token.refresh_token, None);
        // Refresh-token rotation adds a new refresh token.
        let rotated = read(&body.replace(
            r#""token_type""#,
            r#""refresh_token":"5Aep861New","token_type""#,
        ));
        assert_eq!(rotated.refresh_token.as_deref(), Some("5Aep861New"));
    }

    #[test]
    fn reads_the_username_password_answer_without_scope() {
        let token = read(&format!(
            r#"{{"access_token":"00DXX0000008dLk!AQ0AQUp","instance_url":"https://acme.my.salesforce.com","id":"{ID}","token_type":"Bearer","issued_at":"1767225600123","signature":"kQ0n5="}}"#
        ));
        assert_eq!(token.scope, "");
        assert_eq!(token.issued_at_ms(), Some(1_767_225_600_123));
    }

    #[test]
    fn an_issued_at_ahead_of_the_clock_or_unreadable_is_the_arrival() {
        let mut token = read(r#"{"access_token":"t","instance_url":"https://x"}"#);
        token.issued_at = Some("1767225609999".into());
        assert_eq!(token.issued_at_ms_or(1_767_225_600_000), 1_767_225_600_000);
        token.issued_at = Some("soon".into());
        assert_eq!(token.issued_at_ms(), None);
        assert_eq!(token.issued_at_ms_or(5), 5);
        assert_eq!(token.org_id(), None);
        // Optional fields in a shape no grant documents do not make the token unreadable.
        let odd = read(
            r#"{"access_token":"t","instance_url":"https://x","issued_at":1767225600123,"signature":null,"scope":["api"],"id":null}"#,
        );
        assert_eq!(odd.issued_at_ms(), Some(1_767_225_600_123));
        assert_eq!((odd.signature.as_str(), odd.scope.as_str()), ("", ""));
    }

    #[test]
    fn what_no_token_can_be_used_without_is_required() {
        for body in [
            r#"{"instance_url":"https://x","id":"i","token_type":"Bearer"}"#,
            r#"{"access_token":"t","id":"i","token_type":"Bearer"}"#,
        ] {
            assert!(
                serde_json::from_str::<TokenResponse>(body).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn debug_output_has_no_secret() {
        let token = read(
            r#"{"access_token":"SECRET1","instance_url":"https://x","refresh_token":"SECRET2"}"#,
        );
        let text = format!("{token:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
