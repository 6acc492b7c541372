//! The seed file: the org's identity, users, connected apps, limits and initial records.
//! Format documented in README.md ("Seed file").

use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

pub use crate::phone_match::PhoneMatch;

pub const DEFAULT_SEED_JSON: &str = include_str!("../fixtures/default-seed.json");
/// Certificate matching `fixtures/test-jwt-private-key.pem` (TEST ONLY key pair).
pub const TEST_JWT_CERT_PEM: &str = include_str!("../fixtures/test-jwt-cert.pem");
pub const TEST_JWT_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/test-jwt-public-key.pem");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// 15- or 18-char id starting with 00D.
    #[serde(default = "default_org_id")]
    pub org_id: String,
    #[serde(default = "default_org_name")]
    pub org_name: String,
    /// Accepted JWT `aud` values.
    #[serde(default = "default_audiences")]
    pub jwt_audiences: Vec<String>,
    /// How far in the future a JWT `exp` may be, in seconds.
    #[serde(default = "default_exp_ahead")]
    pub jwt_max_exp_ahead_s: u64,
    /// "My Domain" org: the client-credentials grant is refused on the login host.
    #[serde(default = "yes")]
    pub my_domain: bool,
    #[serde(default = "default_daily_max")]
    pub api_daily_max: u64,
    #[serde(default = "default_concurrent_max")]
    pub api_concurrent_max: u64,
    /// A request counts as long-running (for the concurrent limit) after this many ms.
    #[serde(default = "default_long_running_ms")]
    pub long_running_ms: u64,
    /// Highest API version at which SOAP login() is served.
    #[serde(default = "default_soap_login_max")]
    pub soap_login_max_version: u32,
    #[serde(default)]
    pub phone_match: PhoneMatch,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub connected_apps: Vec<SeedApp>,
    /// Service Cloud Voice contact centers (Telephony Integration API).
    #[serde(default)]
    pub call_centers: Vec<SeedCallCenter>,
    /// Extra custom fields per object (added to the built-in object model).
    #[serde(default)]
    pub custom_fields: std::collections::BTreeMap<String, Vec<SeedField>>,
    /// Object name → records (field map; `ref` names the record, `"@ref"` values point at one).
    #[serde(default)]
    pub records: Map<String, Value>,
}

/// A custom field declared by the seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedField {
    /// API name, ending in `__c`.
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    /// string, phone, email, url, textarea, picklist, boolean, int, double, date, datetime, reference
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(default)]
    pub length: Option<u32>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub picklist: Vec<String>,
    /// For references: target objects and the relationship name (e.g. `Queue_Owner__r`).
    #[serde(default)]
    pub reference_to: Vec<String>,
    #[serde(default)]
    pub relationship_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// Appended to the password for SOAP login and the password grant; empty = not needed.
    #[serde(default)]
    pub security_token: String,
    #[serde(default)]
    pub first_name: Option<String>,
    pub last_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub mobile_phone: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub id: Option<String>,
}

/// A contact center: its API name (the JWT's `sub`), the telephony provider's name (the
/// `Telephony-Provider-Name` header; any when absent) and the provider's certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCallCenter {
    pub api_name: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub cert_pem: Option<String>,
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// Path to a PEM file (cert or public key), relative to the seed file.
    #[serde(default)]
    pub cert_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApp {
    pub name: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// X.509 certificate (PEM) whose key signs JWT assertions.
    #[serde(default)]
    pub cert_pem: Option<String>,
    /// Or a bare RSA public key (PEM, SPKI).
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// Path to a PEM file (cert or public key), relative to the seed file.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Enabled grants: "jwt_bearer", "refresh_token", "client_credentials", "password".
    #[serde(default)]
    pub grants: Vec<String>,
    /// Usernames allowed to use JWT bearer; `["*"]` = every user.
    #[serde(default)]
    pub preauthorized_users: Vec<String>,
    /// Client credentials run as this username.
    #[serde(default)]
    pub run_as: Option<String>,
    #[serde(default)]
    pub refresh_token_rotation: bool,
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Refresh tokens issued before the emulator started.
    #[serde(default)]
    pub refresh_tokens: Vec<SeedRefreshToken>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRefreshToken {
    pub token: String,
    pub username: String,
}

fn default_org_id() -> String {
    "00DEm0000000001".into()
}
fn default_org_name() -> String {
    "Emulated Org".into()
}
fn default_audiences() -> Vec<String> {
    vec![
        "https://login.salesforce.com".into(),
        "https://test.salesforce.com".into(),
    ]
}
fn default_exp_ahead() -> u64 {
    330
}
fn yes() -> bool {
    true
}
fn default_daily_max() -> u64 {
    15_000
}
fn default_concurrent_max() -> u64 {
    25
}
fn default_long_running_ms() -> u64 {
    20_000
}
fn default_soap_login_max() -> u32 {
    64
}
fn default_scope() -> String {
    "api refresh_token".into()
}

impl Seed {
    /// The built-in seed (`fixtures/default-seed.json`).
    pub fn default_seed() -> Seed {
        // The embedded file is part of the crate and covered by tests; failing here is a build bug.
        let mut seed: Seed = serde_json::from_str(DEFAULT_SEED_JSON)
            .unwrap_or_else(|e| panic!("fixtures/default-seed.json is invalid: {e}"));
        seed.resolve_files(None).unwrap_or_else(|e| panic!("{e}"));
        seed
    }

    pub fn from_file(path: &Path) -> std::io::Result<Seed> {
        let text = std::fs::read_to_string(path)?;
        let mut seed: Seed = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        seed.resolve_files(path.parent())?;
        Ok(seed)
    }

    /// Loads `cert_file` references; the built-in seed's files come from the crate's fixtures.
    fn resolve_files(&mut self, dir: Option<&Path>) -> std::io::Result<()> {
        let load = |file: &str| -> std::io::Result<String> {
            match dir {
                Some(d) => std::fs::read_to_string(d.join(file)),
                None => match file {
                    "test-jwt-cert.pem" => Ok(TEST_JWT_CERT_PEM.to_string()),
                    "test-jwt-public-key.pem" => Ok(TEST_JWT_PUBLIC_KEY_PEM.to_string()),
                    other => Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("built-in seed names unknown fixture {other}"),
                    )),
                },
            }
        };
        for app in &mut self.connected_apps {
            let Some(file) = app.cert_file.take() else {
                continue;
            };
            let pem = load(&file)?;
            if pem.contains("BEGIN CERTIFICATE") {
                app.cert_pem = Some(pem);
            } else {
                app.public_key_pem = Some(pem);
            }
        }
        for cc in &mut self.call_centers {
            let Some(file) = cc.cert_file.take() else {
                continue;
            };
            let pem = load(&file)?;
            if pem.contains("BEGIN CERTIFICATE") {
                cc.cert_pem = Some(pem);
            } else {
                cc.public_key_pem = Some(pem);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_seed_parses() {
        let s = Seed::default_seed();
        assert!(s.connected_apps.iter().any(|a| a.cert_pem.is_some()));
        assert!(s.users.len() >= 3);
    }
}
