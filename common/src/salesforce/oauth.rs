//! OAuth 2.0 token endpoint bodies as Salesforce sends them (no `expires_in`).

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub instance_url: String,
    pub id: String,
    pub token_type: String,
    /// Milliseconds since the epoch, as a string. The JWT bearer flow's answer has none (fact
    /// sheet: "no `issued_at`, no `signature`"): empty then, and the caller uses its own clock.
    #[serde(default)]
    pub issued_at: String,
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("instance_url", &self.instance_url)
            .field("id", &self.id)
            .field("issued_at", &self.issued_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenResponse {
    pub fn issued_at_ms(&self) -> Option<u64> {
        self.issued_at.parse().ok()
    }

    /// The org id, from the identity URL `…/id/<orgId>/<userId>`.
    pub fn org_id(&self) -> Option<&str> {
        let mut segments = self.id.rsplit('/');
        segments.next()?;
        segments.next()
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

    #[test]
    fn reads_a_salesforce_token_response() {
        let body = r#"{"access_token":"00DXX0000008dLk!AQ0AQ","instance_url":"https://acme.my.salesforce.com",
            "id":"https://login.salesforce.com/id/00DXX0000008dLkMAE/005XX000001SvLbYAK",
            "token_type":"Bearer","issued_at":"1767225600123","signature":"kQ0n5=","scope":"api"}"#;
        let token: TokenResponse = serde_json::from_str(body).unwrap();
        assert_eq!(token.issued_at_ms(), Some(1767225600123));
        // JWT bearer: no issued_at and no signature.
        let jwt = r#"{"access_token":"00Dxx!AQ","instance_url":"https://acme.my.salesforce.com",
            "id":"https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SvLbYAK",
            "token_type":"Bearer","scope":"api"}"#;
        let jwt_token: TokenResponse = serde_json::from_str(jwt).unwrap();
        assert_eq!(jwt_token.issued_at_ms(), None);
        assert_eq!(token.org_id(), Some("00DXX0000008dLkMAE"));
        assert!(!format!("{token:?}").contains("AQ0AQ"));
    }
}
