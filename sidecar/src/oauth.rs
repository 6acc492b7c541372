//! One token request per flow, against `<login-url>/services/oauth2/token`.
//!
//! Secrets are loaded from their files or environment variables at each request (so a rotated key
//! or secret is picked up without a restart) and never appear in an error.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use natterbox_common::config::{AuthConfig, OrgConfig};
use natterbox_common::salesforce::oauth::{OAuthError, TokenResponse};
use serde::Serialize;

/// How long a JWT assertion is valid: Salesforce wants `exp` within a few minutes of now.
pub const JWT_LIFETIME: Duration = Duration::from_secs(180);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no token came back. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token endpoint said no (`invalid_grant`, `invalid_client_id`, …).
    OAuth {
        status: u16,
        error: OAuthError,
    },
    /// A secret could not be loaded or a key could not be used.
    Credentials(String),
    /// The org has no `<auth>`.
    NoAuth,
    Transport(String),
    /// An answer that is neither a token nor an OAuth error.
    Unexpected(String),
    /// A refresh-token org in a fleet whose refresh cannot be coordinated now (Redis down, or
    /// another sidecar's refresh overdue): nothing was asked (`fleet/token_lease.rs`).
    Fleet(String),
}

impl TokenError {
    /// What an operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            TokenError::OAuth { error, .. } => error.advice(),
            TokenError::Credentials(_) => {
                "check the secret file or environment variable named in <auth> (run --check-config)"
            }
            TokenError::NoAuth => "add an <auth> element to the org",
            TokenError::Transport(_) => {
                "check DNS, the network path and the login-url; retrying with back-off"
            }
            TokenError::Unexpected(_) => {
                "the login-url does not look like a Salesforce token endpoint"
            }
            TokenError::Fleet(_) => {
                "check the fleet's redis (<fleet> redis-url); the module keeps the last token meanwhile"
            }
        }
    }

    /// The short code shown in metrics and status (`invalid_grant`, `transport`, …).
    pub fn code(&self) -> String {
        match self {
            TokenError::OAuth { error, .. } => error.error.clone(),
            TokenError::Credentials(_) => "credentials".into(),
            TokenError::NoAuth => "no_auth".into(),
            TokenError::Transport(_) => "transport".into(),
            TokenError::Unexpected(_) => "unexpected_response".into(),
            TokenError::Fleet(_) => "fleet_refresh_waiting".into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::OAuth { status, error } => write!(
                f,
                "token endpoint answered {status} {}: {}",
                error.error, error.error_description
            ),
            TokenError::Credentials(e) => write!(f, "credentials: {e}"),
            TokenError::NoAuth => f.write_str("the org has no <auth>"),
            TokenError::Transport(e) => write!(f, "token request failed: {e}"),
            TokenError::Unexpected(e) => write!(f, "unexpected token endpoint answer: {e}"),
            TokenError::Fleet(e) => write!(f, "refresh not coordinated: {e}"),
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// Claims signed RS256 with an RSA PEM key, header `{"typ":"JWT","alg":"RS256"}`: the one
/// signer for the JWT bearer assertion and the Telephony Integration API's bearer token.
pub fn sign_rs256<C: Serialize>(claims: &C, key_pem: &str) -> Result<String, TokenError> {
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
        TokenError::Credentials(format!("the private key is not an RSA PEM key ({e})"))
    })?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key)
        .map_err(|e| TokenError::Credentials(format!("signing the JWT failed ({e})")))
}

/// A signed RS256 assertion for the JWT bearer flow.
pub fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    key_pem: &str,
    now: SystemTime,
) -> Result<String, TokenError> {
    let exp = (now + JWT_LIFETIME)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp,
    };
    sign_rs256(&claims, key_pem)
}

/// Checks that the org's secrets load and its key parses, without contacting Salesforce.
pub fn check_credentials(auth: &AuthConfig) -> Result<(), String> {
    match auth {
        AuthConfig::JwtBearer { private_key, .. } => {
            let pem = private_key.load()?;
            EncodingKey::from_rsa_pem(pem.as_bytes())
                .map(|_| ())
                .map_err(|e| format!("private key ({private_key:?}) is not an RSA PEM key: {e}"))
        }
        AuthConfig::RefreshToken {
            client_secret,
            refresh_token,
            ..
        } => {
            if let Some(secret) = client_secret {
                non_empty(secret.load()?, secret)?;
            }
            non_empty(refresh_token.load()?, refresh_token)
        }
        AuthConfig::ClientCredentials { client_secret, .. } => {
            non_empty(client_secret.load()?, client_secret)
        }
    }
}

fn non_empty(value: String, from: &natterbox_common::config::SecretRef) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("secret ({from:?}) is empty"))
    } else {
        Ok(())
    }
}

/// Requests a token for `org` with its configured flow. `refresh_override` is a rotated refresh
/// token received earlier, used instead of the configured one.
pub async fn request_token(
    http: &reqwest::Client,
    org: &OrgConfig,
    refresh_override: Option<&str>,
) -> Result<TokenResponse, TokenError> {
    let auth = org.auth.as_ref().ok_or(TokenError::NoAuth)?;
    let url = format!("{}/services/oauth2/token", org.login_url);
    let load = |s: &natterbox_common::config::SecretRef| s.load().map_err(TokenError::Credentials);
    let request = match auth {
        AuthConfig::JwtBearer {
            client_id,
            username,
            private_key,
            audience,
        } => {
            let assertion = jwt_assertion(
                client_id,
                username,
                audience,
                &load(private_key)?,
                SystemTime::now(),
            )?;
            http.post(&url).form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
        }
        AuthConfig::RefreshToken {
            client_id,
            client_secret,
            refresh_token,
        } => {
            let token = match refresh_override {
                Some(t) => t.to_string(),
                None => load(refresh_token)?,
            };
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", token),
                ("client_id", client_id.clone()),
            ];
            if let Some(secret) = client_secret {
                form.push(("client_secret", load(secret)?));
            }
            http.post(&url).form(&form)
        }
        AuthConfig::ClientCredentials {
            client_id,
            client_secret,
        } => http
            .post(&url)
            .basic_auth(client_id, Some(load(client_secret)?))
            .form(&[("grant_type", "client_credentials")]),
    };
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| TokenError::Transport(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| TokenError::Transport(e.without_url().to_string()))?;
    if (200..300).contains(&status) {
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            TokenError::Unexpected(format!("status {status}, body is not a token: {e}"))
        })?;
        if token.access_token.is_empty() || token.instance_url.is_empty() {
            return Err(TokenError::Unexpected(
                "token without access_token or instance_url".into(),
            ));
        }
        // The module would send callers' numbers there with this token.
        natterbox_common::https_only::check(
            "instance_url",
            &token.instance_url,
            org.allow_insecure_http,
        )
        .map_err(TokenError::Unexpected)?;
        return Ok(token);
    }
    match serde_json::from_slice::<OAuthError>(&body) {
        Ok(error) => Err(TokenError::OAuth { status, error }),
        Err(_) => Err(TokenError::Unexpected(format!(
            "status {status} without an OAuth error body"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_is_a_credentials_error_without_the_key() {
        let err =
            jwt_assertion("id", "u", "aud", "not a key SECRET", SystemTime::now()).unwrap_err();
        assert!(matches!(err, TokenError::Credentials(_)));
        assert!(!err.to_string().contains("SECRET"));
        assert_eq!(err.code(), "credentials");
    }

    #[test]
    fn oauth_errors_carry_advice() {
        let err = TokenError::OAuth {
            status: 400,
            error: OAuthError {
                error: "invalid_grant".into(),
                error_description: "expired access/refresh token".into(),
            },
        };
        assert!(err.advice().contains("authorize again"));
        assert_eq!(err.code(), "invalid_grant");
    }
}
