//! `natterbox_sf.conf`: one file, read by the module (through FreeSWITCH's XML config API) and by
//! the sidecar (from disk), parsed here into a validated, typed value. See docs/design.md.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::phone::Country;
use crate::wire::Direction;
use crate::xml::{self, Element};

mod change_data_capture;
mod voice;
pub use change_data_capture::{ChangeDataCaptureConfig, DEFAULT_PUBSUB_URL};
pub use voice::{CallRecord, OmniConfig, VoiceConfig};

/// The name FreeSWITCH knows the configuration by (`<configuration name="…">`).
pub const CONFIG_NAME: &str = "natterbox_sf.conf";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub settings: Settings,
    pub sidecar: SidecarSettings,
    pub orgs: Vec<OrgConfig>,
    /// `None`: a single host; no Redis, nothing of the fleet runs.
    pub fleet: Option<FleetSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub default_org: Option<String>,
    pub lookup_timeout: Duration,
    pub http_connect_timeout: Duration,
    pub cache_max_entries: usize,
    pub cache_ttl: Duration,
    pub cache_negative_ttl: Duration,
    pub cache_max_stale: Duration,
    pub runtime_threads: usize,
    pub token_dir: PathBuf,
    pub event_socket: PathBuf,
    pub spool_dir: PathBuf,
    pub event_queue_capacity: usize,
    pub ca_file: Option<PathBuf>,
    /// Ask Salesforce for gzip'd responses (all calls but the lookup's search).
    pub http_gzip: bool,
    /// The default of every org's `allow-insecure-http` (see `https_only`).
    pub allow_insecure_http: bool,
    /// How often the module reloads each org's owner directory (Users and Queues).
    pub owner_refresh: Duration,
    /// Fire the `natterbox_sf::lookup` CUSTOM event after each lookup. FreeSWITCH cannot tell
    /// whether anyone listens (mod_event_socket binds every event), and an event costs the
    /// calling thread and the dispatcher: off when nothing consumes it.
    pub lookup_events: bool,
}

/// `<fleet>`: many hosts sharing one Redis (docs/fleet.md).
#[derive(Clone, PartialEq)]
pub struct FleetSettings {
    /// May hold a password: never logged (see the Debug impl).
    pub redis_url: String,
    /// Longest a call waits for one Redis round trip (always inside the call's own deadline).
    pub redis_timeout: Duration,
    /// How long a host holds the fleet-wide lease to ask Salesforce for one number.
    pub lease: Duration,
    /// TTLs of answers in Redis: found/multiple, and not found.
    pub l2_ttl: Duration,
    pub l2_negative_ttl: Duration,
    /// First part of every key and channel, so several fleets can share one Redis.
    pub key_prefix: String,
    /// How long one sidecar holds an org's refresh lease (`token-lease-ms`): the only one
    /// allowed to spend the org's refresh token meanwhile. Its token request is cut off before
    /// the lease ends.
    pub token_lease: Duration,
}

impl fmt::Debug for FleetSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetSettings")
            .field("redis_url", &"<hidden>")
            .field("redis_timeout", &self.redis_timeout)
            .field("lease", &self.lease)
            .field("l2_ttl", &self.l2_ttl)
            .field("l2_negative_ttl", &self.l2_negative_ttl)
            .field("key_prefix", &self.key_prefix)
            .field("token_lease", &self.token_lease)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SidecarSettings {
    /// `/metrics`, `/status`, `/healthz`: operators only, loopback by default.
    pub admin_listen: SocketAddr,
    /// The agents' `/agent` WebSocket (and `/healthz`), TLS when the certificate is set.
    pub agent_listen: SocketAddr,
    pub outbox_db: PathBuf,
    pub agent_tokens_file: Option<PathBuf>,
    pub token_file_owner: Option<String>,
    pub websocket_tls_cert: Option<PathBuf>,
    pub websocket_tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrgConfig {
    pub name: String,
    /// `NN.0`, as it appears in `/services/data/vNN.0/`.
    pub api_version: String,
    pub default_country: Country,
    /// Where tokens are requested: login.salesforce.com, test.salesforce.com or the My Domain.
    pub login_url: String,
    /// Lets `login_url` and the instance URL in its tokens be plain `http://` (test emulators).
    pub allow_insecure_http: bool,
    /// Cap on concurrent Salesforce requests from this host for this org.
    pub max_concurrent: usize,
    /// The org's session timeout (Salesforce sends no `expires_in`).
    pub session_timeout: Duration,
    pub auth: Option<AuthConfig>,
    pub profiles: Vec<LookupProfile>,
    pub call_log: CallLogConfig,
    pub screen_pop: ScreenPopConfig,
    /// What the owner directory keeps of each User beyond the built-in fields.
    pub owners: OwnersConfig,
    /// `<service-cloud-voice>`: the Telephony Integration REST API, for VoiceCall records.
    pub voice: Option<VoiceConfig>,
    /// Which Salesforce API the call-time reads go through (`api="rest|soap"`).
    pub api: OrgApiKind,
    /// The share (percent) of the org's daily API allowance call-time reads may spend before
    /// cached answers are served past their TTL (`call-time-api-share-percent`, default 50).
    pub call_time_api_share_percent: u8,
    /// How an agent's click-to-dial is originated (`<click-to-dial>`).
    pub click_to_dial: ClickToDialConfig,
    /// The record writes the dialplan may ask for (`sf_create`, `sf_update`, `sf_upsert`).
    pub writes: Vec<crate::record_write::WriteSpec>,
    /// `<query>` and `<search>`: named queries the dialplan runs (`sf_query`, `sf_search`).
    pub queries: Vec<crate::named_query::NamedQuery>,
    /// `<change-data-capture>`: the sidecar keeps cached answers fresh from change events.
    pub change_data_capture: Option<ChangeDataCaptureConfig>,
}

/// The API an org's call-time reads (lookups, named queries) use. Describe, owners, writes and
/// tokens stay on REST/OAuth either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrgApiKind {
    #[default]
    Rest,
    /// The SOAP partner API (`/services/Soap/u/NN.0`), authenticated by the OAuth access token
    /// in `SessionHeader`: legacy orgs behind a SOAP-only service gateway.
    Soap,
}

impl OrgConfig {
    pub fn profile(&self, name: &str) -> Option<&LookupProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    pub fn write(&self, name: &str) -> Option<&crate::record_write::WriteSpec> {
        self.writes.iter().find(|w| w.name == name)
    }
}

/// A secret is named by where it lives, never written in the config or in any log.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(path) => write!(f, "file {}", path.display()),
            SecretRef::Env(name) => write!(f, "env ${name}"),
        }
    }
}

impl SecretRef {
    /// Reads the secret. The error names where it looked, never what it found.
    pub fn load(&self) -> Result<String, String> {
        match self {
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    JwtBearer {
        client_id: String,
        username: String,
        private_key: SecretRef,
        /// `aud`: login or test, even when the token is requested from My Domain.
        audience: String,
    },
    RefreshToken {
        client_id: String,
        client_secret: Option<SecretRef>,
        refresh_token: SecretRef,
    },
    ClientCredentials {
        client_id: String,
        client_secret: SecretRef,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LookupProfile {
    pub name: String,
    /// In priority order: the first object with a match wins.
    pub objects: Vec<ObjectLookup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectLookup {
    pub object: String,
    /// Fields to return; `Id` and `Name`-like fields are always added by the lookup.
    pub fields: Vec<String>,
    /// The object's phone fields, compared with the caller's number after the search.
    pub phone_fields: Vec<String>,
    pub mappings: Vec<FieldMapping>,
}

/// Salesforce's phone fields on the standard objects a lookup searches (fact sheet §3).
pub fn standard_phone_fields(object: &str) -> Option<&'static [&'static str]> {
    match object {
        "Contact" => Some(&[
            "Phone",
            "MobilePhone",
            "HomePhone",
            "OtherPhone",
            "AssistantPhone",
        ]),
        "Lead" => Some(&["Phone", "MobilePhone"]),
        "Account" => Some(&["Phone"]),
        "User" => Some(&["Phone", "MobilePhone"]),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    /// A field path such as `Owner.Extension` or `Preferred_Queue__c`.
    pub field: String,
    /// The channel variable it becomes.
    pub variable: String,
}

/// `<owners>`: extra User fields the owner directory loads, each becoming a channel variable
/// when that user owns the caller's record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OwnersConfig {
    pub user_fields: Vec<FieldMapping>,
}

/// Variables the owner directory always sets (see docs/design.md, "Owners").
pub const OWNER_VARIABLES: [&str; 6] = [
    "sf_owner_id",
    "sf_owner_type",
    "sf_owner_name",
    "sf_owner_extension",
    "sf_owner_email",
    "sf_owner_queue",
];

/// User fields the owner directory always loads.
pub const OWNER_USER_FIELDS: [&str; 4] = ["Id", "Name", "Extension", "Email"];

#[derive(Debug, Clone, PartialEq)]
pub struct CallLogConfig {
    pub enabled: bool,
    /// Which calls are logged (`directions="inbound,outbound,internal"`), whether `sf_lookup`
    /// ran or not. Default: inbound.
    pub directions: Vec<Direction>,
    pub subject: String,
    pub status: String,
    /// `record="task|voicecall|both"`: which Salesforce record a call becomes.
    pub record: CallRecord,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScreenPopConfig {
    pub platform_event: Option<String>,
    pub ttl: Duration,
}

/// `<click-to-dial context="…" caller-id-number="…" caller-id-name="…" endpoint="user/{extension}"
/// answer-timeout-s="30"/>`: the agent's phone is rung through `endpoint`, then the number is
/// routed through the dialplan `context` with the org's caller id.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickToDialConfig {
    pub context: String,
    pub caller_id_number: Option<String>,
    pub caller_id_name: Option<String>,
    /// A FreeSWITCH dial string with `{extension}` where the agent's extension goes.
    pub endpoint: String,
    pub answer_timeout: Duration,
}

impl Default for ClickToDialConfig {
    fn default() -> Self {
        ClickToDialConfig {
            context: "default".into(),
            caller_id_number: None,
            caller_id_name: None,
            endpoint: "user/{extension}".into(),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// Values that go into an originate command line: no spaces, quotes, braces, commas or `$`.
fn dial_safe(value: &str, allow_space: bool) -> bool {
    !value.is_empty()
        && value.len() <= 80
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || "+-_./@:".contains(c) || (allow_space && c == ' ')
        })
}

fn parse_click_to_dial(element: &Element, org_ctx: &str) -> Result<ClickToDialConfig, ConfigError> {
    let ctx = format!("{org_ctx} <click-to-dial>");
    let defaults = ClickToDialConfig::default();
    let checked = |attr: &str, allow_space: bool| -> Result<Option<String>, ConfigError> {
        match element.attr(attr).filter(|v| !v.is_empty()) {
            None => Ok(None),
            // `{extension}` is the endpoint's one placeholder.
            Some(v)
                if dial_safe(
                    &if attr == "endpoint" {
                        v.replace("{extension}", "0")
                    } else {
                        v.to_string()
                    },
                    allow_space,
                ) =>
            {
                Ok(Some(v.to_string()))
            }
            Some(v) => err(format!(
                "{ctx}: {attr}=\"{v}\" may hold only letters, digits and + - _ . / @ :{}",
                if allow_space { " and spaces" } else { "" }
            )),
        }
    };
    let endpoint = checked("endpoint", false)?.unwrap_or(defaults.endpoint);
    if !endpoint.contains("{extension}") {
        return err(format!(
            "{ctx}: endpoint=\"{endpoint}\" must contain {{extension}}"
        ));
    }
    Ok(ClickToDialConfig {
        context: checked("context", false)?.unwrap_or(defaults.context),
        caller_id_number: checked("caller-id-number", false)?,
        caller_id_name: checked("caller-id-name", true)?,
        endpoint,
        answer_timeout: Duration::from_secs(parse_attr_number(
            element,
            "answer-timeout-s",
            30u64,
            5,
            300,
            &ctx,
        )?),
    })
}

/// What is wrong with a config, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

impl Config {
    /// Parses the `<configuration name="natterbox_sf.conf">` element, alone or inside a larger
    /// document (FreeSWITCH's `<document><section name="configuration">…`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let root = xml::parse(text).map_err(ConfigError)?;
        let configuration = find_configuration(&root).ok_or_else(|| {
            ConfigError(format!("no <configuration name=\"{CONFIG_NAME}\"> element"))
        })?;
        let settings = parse_settings(configuration.child("settings"))?;
        let sidecar = parse_sidecar(configuration.child("sidecar"))?;
        let fleet = parse_fleet(configuration.child("fleet"))?;
        let mut orgs = Vec::new();
        if let Some(list) = configuration.child("orgs") {
            for org in list.children_named("org") {
                let org = parse_org(org, &settings)?;
                if orgs.iter().any(|o: &OrgConfig| o.name == org.name) {
                    return err(format!("org \"{}\" is defined twice", org.name));
                }
                orgs.push(org);
            }
        }
        if orgs.is_empty() {
            return err("<orgs> defines no <org>");
        }
        if let Some(default) = &settings.default_org {
            if !orgs.iter().any(|o| &o.name == default) {
                return err(format!(
                    "default-org \"{default}\" is not one of the <org>s"
                ));
            }
        }
        Ok(Config {
            settings,
            sidecar,
            orgs,
            fleet,
        })
    }

    pub fn org(&self, name: &str) -> Option<&OrgConfig> {
        self.orgs.iter().find(|o| o.name == name)
    }

    /// The org a call belongs to: the one it names, else the default, else the only one.
    pub fn resolve_org(&self, requested: Option<&str>) -> Option<&OrgConfig> {
        match requested {
            Some(name) => self.org(name),
            None => match &self.settings.default_org {
                Some(name) => self.org(name),
                None if self.orgs.len() == 1 => self.orgs.first(),
                None => None,
            },
        }
    }
}

fn find_configuration(element: &Element) -> Option<&Element> {
    if element.name == "configuration" && element.attr("name") == Some(CONFIG_NAME) {
        return Some(element);
    }
    element.children.iter().find_map(find_configuration)
}

/// `<param name="…" value="…"/>` children, FreeSWITCH's convention.
struct Params<'a> {
    section: &'static str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    fn of(section: &'static str, element: Option<&'a Element>) -> Result<Self, ConfigError> {
        let mut params = Vec::new();
        if let Some(element) = element {
            for param in element.children_named("param") {
                let (Some(name), Some(value)) = (param.attr("name"), param.attr("value")) else {
                    return err(format!("<{section}>: a <param> needs name and value"));
                };
                params.push((name, value));
            }
        }
        Ok(Params { section, params })
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    }

    fn number<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<T>() {
                Ok(v) if v >= min && v <= max => Ok(v),
                _ => err(format!(
                    "<{}> param {name}=\"{text}\": expected a whole number from {min} to {max}",
                    self.section
                )),
            },
        }
    }

    fn millis(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, min, max)
            .map(Duration::from_millis)
    }

    fn secs(&self, name: &str, default: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(name, default, min, max)
            .map(Duration::from_secs)
    }

    fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.get(name).unwrap_or(default))
    }
}

fn parse_settings(element: Option<&Element>) -> Result<Settings, ConfigError> {
    let p = Params::of("settings", element)?;
    let default_org = p.get("default-org").map(str::to_string);
    if let Some(name) = &default_org {
        check_org_name(name)?;
    }
    Ok(Settings {
        default_org,
        lookup_timeout: p.millis("lookup-timeout-ms", 1500, 10, 60_000)?,
        http_connect_timeout: p.millis("http-connect-timeout-ms", 1000, 10, 60_000)?,
        cache_max_entries: p.number("cache-max-entries", 200_000usize, 1, 50_000_000)?,
        cache_ttl: p.secs("cache-ttl-s", 300, 0, 86_400)?,
        cache_negative_ttl: p.secs("cache-negative-ttl-s", 30, 0, 86_400)?,
        cache_max_stale: p.secs("cache-max-stale-s", 3600, 0, 7 * 86_400)?,
        runtime_threads: p.number("runtime-threads", 1usize, 1, 64)?,
        token_dir: p.path("token-dir", "/var/lib/natterbox-sf/tokens"),
        event_socket: p.path("event-socket", "/run/natterbox-sf/events.sock"),
        spool_dir: p.path("spool-dir", "/var/spool/natterbox-sf"),
        event_queue_capacity: p.number("event-queue-capacity", 10_000usize, 1, 10_000_000)?,
        ca_file: p.get("ca-file").map(PathBuf::from),
        http_gzip: parse_bool(p.get("http-gzip").unwrap_or("true"), "<settings> http-gzip")?,
        allow_insecure_http: parse_bool(
            p.get("allow-insecure-http").unwrap_or("false"),
            "<settings> allow-insecure-http",
        )?,
        owner_refresh: p.secs("owner-refresh-s", 300, 1, 86_400)?,
        lookup_events: parse_bool(
            p.get("lookup-events").unwrap_or("true"),
            "<settings> lookup-events",
        )?,
    })
}

/// `<fleet>`: absent (or without `redis-url`) means a single host, and nothing of the fleet runs.
fn parse_fleet(element: Option<&Element>) -> Result<Option<FleetSettings>, ConfigError> {
    let p = Params::of("fleet", element)?;
    let Some(url) = p.get("redis-url") else {
        return Ok(None);
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return err("<fleet> param redis-url: expected redis://host:port[/db] or rediss://…");
    }
    let key_prefix = p.get("key-prefix").unwrap_or("nbsf").to_string();
    if key_prefix.is_empty()
        || key_prefix.len() > 32
        || !key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return err(format!(
            "<fleet> param key-prefix=\"{key_prefix}\": expected 1 to 32 letters, digits, - or _"
        ));
    }
    Ok(Some(FleetSettings {
        redis_url: url.to_string(),
        redis_timeout: p.millis("redis-timeout-ms", 50, 1, 5_000)?,
        lease: p.millis("lease-ms", 1500, 10, 60_000)?,
        l2_ttl: p.secs("l2-ttl-s", 300, 1, 7 * 86_400)?,
        l2_negative_ttl: p.secs("l2-negative-ttl-s", 30, 1, 86_400)?,
        key_prefix,
        token_lease: p.millis("token-lease-ms", 35_000, 1_000, 300_000)?,
    }))
}

fn parse_sidecar(element: Option<&Element>) -> Result<SidecarSettings, ConfigError> {
    let p = Params::of("sidecar", element)?;
    if p.get("http-listen").is_some() {
        return err(
            "<sidecar> param http-listen was split in two: admin-listen (/metrics, /status; \
             loopback) and agent-listen (the agents' /agent WebSocket)",
        );
    }
    let address = |name: &str, default: &str| -> Result<SocketAddr, ConfigError> {
        let text = p.get(name).unwrap_or(default);
        text.parse().or_else(|_| {
            err(format!(
                "<sidecar> param {name}=\"{text}\": expected an address such as {default}"
            ))
        })
    };
    let admin_listen = address("admin-listen", "127.0.0.1:8787")?;
    let agent_listen = address("agent-listen", "127.0.0.1:8788")?;
    if admin_listen == agent_listen {
        return err(format!(
            "<sidecar> admin-listen and agent-listen are both {admin_listen}: give agents and operators separate listeners"
        ));
    }
    Ok(SidecarSettings {
        admin_listen,
        agent_listen,
        outbox_db: p.path("outbox-db", "/var/lib/natterbox-sf/outbox.sqlite"),
        agent_tokens_file: p.get("agent-tokens-file").map(PathBuf::from),
        token_file_owner: p.get("token-file-owner").map(str::to_string),
        websocket_tls_cert: p.get("websocket-tls-cert").map(PathBuf::from),
        websocket_tls_key: p.get("websocket-tls-key").map(PathBuf::from),
    })
}

fn check_org_name(name: &str) -> Result<(), ConfigError> {
    // Org names become file names (token hand-off) and cache scopes.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        err(format!(
            "org name \"{name}\": use 1 to 64 letters, digits, '_' or '-'"
        ))
    }
}

/// A Salesforce API name: `Contact`, `Preferred_Queue__c`, `Screen_Pop__e`.
pub fn is_api_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 80
}

/// A field path: API names joined by dots (`Owner.Extension`, `Account.Owner.Name`).
pub fn is_field_path(path: &str) -> bool {
    !path.is_empty() && path.split('.').count() <= 5 && path.split('.').all(is_api_name)
}

pub(crate) fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn required<'a>(element: &'a Element, attr: &str, context: &str) -> Result<&'a str, ConfigError> {
    match element.attr(attr) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim()),
        _ => err(format!("{context}: <{}> needs {attr}=\"…\"", element.name)),
    }
}

fn parse_org(element: &Element, settings: &Settings) -> Result<OrgConfig, ConfigError> {
    let name = required(element, "name", "<orgs>")?.to_string();
    check_org_name(&name)?;
    let ctx = format!("org \"{name}\"");

    let api_version = element.attr("api-version").unwrap_or("68.0").to_string();
    // Exactly two digits then ".0", as Salesforce writes versions in URLs (`/services/data/v66.0`):
    // u32's parser alone would also take "+66" or "066".
    let major = api_version
        .strip_suffix(".0")
        .filter(|m| m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()));
    match major.map(str::parse::<u32>) {
        Some(Ok(v)) if (31..=99).contains(&v) => {}
        _ => {
            return err(format!(
                "{ctx}: api-version=\"{api_version}\": expected a Salesforce API version such as 68.0 (31.0 or later)"
            ))
        }
    }
    let country_text = element.attr("default-country").unwrap_or("US");
    let default_country = Country::parse(country_text).ok_or_else(|| {
        ConfigError(format!(
            "{ctx}: default-country=\"{country_text}\": expected an ISO 3166 code such as US or GB"
        ))
    })?;
    let login_url = element
        .attr("login-url")
        .unwrap_or("https://login.salesforce.com")
        .trim_end_matches('/')
        .to_string();
    let allow_insecure_http = match element.attr("allow-insecure-http") {
        Some(text) => parse_bool(text, &format!("{ctx}: allow-insecure-http"))?,
        None => settings.allow_insecure_http,
    };
    crate::https_only::check("login-url", &login_url, allow_insecure_http)
        .map_err(|e| ConfigError(format!("{ctx}: {e}")))?;
    let max_concurrent = parse_attr_number(element, "max-concurrent", 50usize, 1, 10_000, &ctx)?;
    let session_timeout = Duration::from_secs(parse_attr_number(
        element,
        "session-timeout-s",
        7200u64,
        60,
        86_400,
        &ctx,
    )?);
    let auth = element
        .child("auth")
        .map(|a| parse_auth(a, &ctx))
        .transpose()?;

    let mut profiles = Vec::new();
    for profile in element.children_named("profile") {
        let profile = parse_profile(profile, &ctx)?;
        if profiles
            .iter()
            .any(|p: &LookupProfile| p.name == profile.name)
        {
            return err(format!(
                "{ctx}: profile \"{}\" is defined twice",
                profile.name
            ));
        }
        profiles.push(profile);
    }
    if !profiles.iter().any(|p| p.name == "default") {
        return err(format!("{ctx}: needs a <profile name=\"default\">"));
    }

    let mut call_log = match element.child("call-log") {
        None => CallLogConfig {
            enabled: false,
            directions: vec![Direction::Inbound],
            subject: "Call {direction} {from}".into(),
            status: "Completed".into(),
            record: CallRecord::Task,
        },
        Some(c) => CallLogConfig {
            enabled: parse_bool(c.attr("enabled").unwrap_or("true"), &ctx)?,
            directions: parse_directions(c.attr("directions").unwrap_or("inbound"), &ctx)?,
            subject: c
                .attr("subject")
                .unwrap_or("Call {direction} {from}")
                .to_string(),
            status: c.attr("status").unwrap_or("Completed").to_string(),
            record: CallRecord::Task,
        },
    };
    let (record, voice) = voice::parse_record(
        element.child("call-log"),
        element,
        &ctx,
        allow_insecure_http,
    )?;
    call_log.record = record;
    let change_data_capture = change_data_capture::parse(
        element.child("change-data-capture"),
        &ctx,
        allow_insecure_http,
    )?;
    let screen_pop = match element.child("screen-pop") {
        None => ScreenPopConfig {
            platform_event: None,
            ttl: Duration::from_secs(30),
        },
        Some(s) => {
            let platform_event = s.attr("platform-event").filter(|v| !v.is_empty());
            if let Some(event) = platform_event {
                if !(is_api_name(event) && event.ends_with("__e")) {
                    return err(format!(
                        "{ctx}: platform-event=\"{event}\" must be a platform event API name ending in __e"
                    ));
                }
            }
            ScreenPopConfig {
                platform_event: platform_event.map(str::to_string),
                ttl: Duration::from_millis(parse_attr_number(
                    s, "ttl-ms", 30_000u64, 100, 3_600_000, &ctx,
                )?),
            }
        }
    };

    let owners = element
        .child("owners")
        .map(|o| parse_owners(o, &ctx))
        .transpose()?
        .unwrap_or_default();
    let api = match element.attr("api").map(str::trim) {
        None | Some("rest") => OrgApiKind::Rest,
        Some("soap") => OrgApiKind::Soap,
        Some(other) => return err(format!("{ctx}: api=\"{other}\": expected rest or soap")),
    };
    let call_time_api_share_percent =
        parse_attr_number(element, "call-time-api-share-percent", 50u8, 1, 100, &ctx)?;
    let queries = crate::named_query::parse_named_queries(element, &ctx)?;

    let click_to_dial = element
        .child("click-to-dial")
        .map(|c| parse_click_to_dial(c, &ctx))
        .transpose()?
        .unwrap_or_default();
    let mut writes: Vec<crate::record_write::WriteSpec> = Vec::new();
    for write in element.children_named("write") {
        let write = crate::record_write::parse_write(write, &ctx)?;
        if writes.iter().any(|w| w.name == write.name) {
            return err(format!("{ctx}: write \"{}\" is defined twice", write.name));
        }
        writes.push(write);
    }

    Ok(OrgConfig {
        name,
        api_version,
        default_country,
        login_url,
        allow_insecure_http,
        max_concurrent,
        session_timeout,
        auth,
        profiles,
        call_log,
        screen_pop,
        owners,
        voice,
        api,
        call_time_api_share_percent,
        click_to_dial,
        writes,
        queries,
        change_data_capture,
    })
}

fn parse_owners(element: &Element, org_ctx: &str) -> Result<OwnersConfig, ConfigError> {
    let ctx = format!("{org_ctx} <owners>");
    let mut user_fields: Vec<FieldMapping> = Vec::new();
    for map in element.children_named("map") {
        let field = required(map, "field", &ctx)?.to_string();
        let variable = required(map, "variable", &ctx)?.to_string();
        if !is_api_name(&field) {
            return err(format!(
                "{ctx}: map field \"{field}\" is not a User field name (relationship paths are not loaded)"
            ));
        }
        if !is_variable_name(&variable) {
            return err(format!(
                "{ctx}: map variable \"{variable}\": use letters, digits and '_'"
            ));
        }
        if OWNER_USER_FIELDS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&field))
        {
            return err(format!(
                "{ctx}: User.{field} is always loaded (sf_owner_*); map another field"
            ));
        }
        if OWNER_VARIABLES.contains(&variable.as_str())
            || user_fields.iter().any(|m| m.variable == variable)
        {
            return err(format!(
                "{ctx}: variable \"{variable}\" is already set by the owner directory"
            ));
        }
        if user_fields
            .iter()
            .any(|m| m.field.eq_ignore_ascii_case(&field))
        {
            return err(format!("{ctx}: User field {field} is mapped twice"));
        }
        user_fields.push(FieldMapping { field, variable });
    }
    Ok(OwnersConfig { user_fields })
}

fn parse_directions(text: &str, ctx: &str) -> Result<Vec<Direction>, ConfigError> {
    let mut directions = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match Direction::parse(word) {
            Some(d) if !directions.contains(&d) => directions.push(d),
            Some(_) => {}
            None => {
                return err(format!(
                    "{ctx}: call-log directions=\"{text}\": \"{word}\" is not inbound, outbound or internal"
                ))
            }
        }
    }
    if directions.is_empty() {
        return err(format!(
            "{ctx}: call-log directions is empty (use enabled=\"false\" to log no calls)"
        ));
    }
    Ok(directions)
}

fn parse_bool(text: &str, ctx: &str) -> Result<bool, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => err(format!("{ctx}: \"{text}\" is not true or false")),
    }
}

fn parse_attr_number<T>(
    element: &Element,
    attr: &str,
    default: T,
    min: T,
    max: T,
    ctx: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match element.attr(attr) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => err(format!(
                "{ctx}: {attr}=\"{text}\": expected a whole number from {min} to {max}"
            )),
        },
    }
}

fn secret(element: &Element, stem: &str, ctx: &str) -> Result<Option<SecretRef>, ConfigError> {
    let file = element
        .attr(&format!("{stem}-file"))
        .filter(|v| !v.is_empty());
    let env = element
        .attr(&format!("{stem}-env"))
        .filter(|v| !v.is_empty());
    if element.attr(stem).is_some() {
        return err(format!(
            "{ctx}: <auth> {stem}=\"…\" would put a secret in the config; use {stem}-file or {stem}-env"
        ));
    }
    match (file, env) {
        (Some(_), Some(_)) => err(format!("{ctx}: <auth> has both {stem}-file and {stem}-env")),
        (Some(path), None) => Ok(Some(SecretRef::File(PathBuf::from(path)))),
        (None, Some(name)) => Ok(Some(SecretRef::Env(name.to_string()))),
        (None, None) => Ok(None),
    }
}

fn parse_auth(element: &Element, org_ctx: &str) -> Result<AuthConfig, ConfigError> {
    let ctx = format!("{org_ctx} <auth>");
    let flow = required(element, "flow", org_ctx)?;
    let client_id = required(element, "client-id", &ctx)?.to_string();
    let need = |stem: &str| -> Result<SecretRef, ConfigError> {
        secret(element, stem, org_ctx)?.ok_or_else(|| {
            ConfigError(format!(
                "{ctx}: flow {flow} needs {stem}-file=\"…\" or {stem}-env=\"…\""
            ))
        })
    };
    match flow {
        "jwt-bearer" => Ok(AuthConfig::JwtBearer {
            client_id,
            username: required(element, "username", &ctx)?.to_string(),
            private_key: need("private-key")?,
            audience: element
                .attr("audience")
                .unwrap_or("https://login.salesforce.com")
                .trim_end_matches('/')
                .to_string(),
        }),
        "refresh-token" => Ok(AuthConfig::RefreshToken {
            client_id,
            client_secret: secret(element, "client-secret", org_ctx)?,
            refresh_token: need("refresh-token")?,
        }),
        "client-credentials" => Ok(AuthConfig::ClientCredentials {
            client_id,
            client_secret: need("client-secret")?,
        }),
        other => err(format!(
            "{ctx}: flow=\"{other}\": expected jwt-bearer, refresh-token or client-credentials"
        )),
    }
}

fn parse_profile(element: &Element, org_ctx: &str) -> Result<LookupProfile, ConfigError> {
    let name = required(element, "name", org_ctx)?.to_string();
    if !is_variable_name(&name) {
        return err(format!(
            "{org_ctx}: profile name \"{name}\": use letters, digits and '_'"
        ));
    }
    let ctx = format!("{org_ctx} profile \"{name}\"");
    let mut objects = Vec::new();
    for object in element.children_named("object") {
        let api_name = required(object, "name", &ctx)?.to_string();
        if !is_api_name(&api_name) {
            return err(format!(
                "{ctx}: object \"{api_name}\" is not a Salesforce API name"
            ));
        }
        let mut fields: Vec<String> = Vec::new();
        for field in object.attr("fields").unwrap_or("Id,Name").split(',') {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            if !is_field_path(field) {
                return err(format!(
                    "{ctx}: {api_name} field \"{field}\" is not a field path"
                ));
            }
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(field)) {
                fields.push(field.to_string());
            }
        }
        // The owner directory answers for OwnerId; objects without one say owner="none".
        match object.attr("owner").unwrap_or("OwnerId") {
            "none" => {}
            "OwnerId" => {
                if !fields.iter().any(|f| f.eq_ignore_ascii_case("OwnerId")) {
                    fields.push("OwnerId".to_string());
                }
            }
            other => {
                return err(format!(
                    "{ctx}: {api_name} owner=\"{other}\": expected OwnerId (the default) or none"
                ))
            }
        }
        let mut mappings = Vec::new();
        for map in object.children_named("map") {
            let field = required(map, "field", &ctx)?.to_string();
            let variable = required(map, "variable", &ctx)?.to_string();
            if !is_field_path(&field) {
                return err(format!("{ctx}: map field \"{field}\" is not a field path"));
            }
            if !is_variable_name(&variable) {
                return err(format!(
                    "{ctx}: map variable \"{variable}\": use letters, digits and '_'"
                ));
            }
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(&field)) {
                fields.push(field.clone());
            }
            mappings.push(FieldMapping { field, variable });
        }
        let phone_fields: Vec<String> = match object.attr("phone-fields") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
            None => standard_phone_fields(&api_name)
                .map(|fields| fields.iter().map(|f| f.to_string()).collect())
                .unwrap_or_default(),
        };
        if phone_fields.is_empty() {
            return err(format!(
                "{ctx}: {api_name} is not a standard object: say which fields hold phone numbers with phone-fields=\"…\""
            ));
        }
        if let Some(bad) = phone_fields.iter().find(|f| !is_api_name(f)) {
            return err(format!(
                "{ctx}: {api_name} phone field \"{bad}\" is not a field name"
            ));
        }
        if objects.iter().any(|o: &ObjectLookup| o.object == api_name) {
            return err(format!("{ctx}: object {api_name} is listed twice"));
        }
        objects.push(ObjectLookup {
            object: api_name,
            fields,
            phone_fields,
            mappings,
        });
    }
    if objects.is_empty() {
        return err(format!("{ctx}: lists no <object>"));
    }
    Ok(LookupProfile { name, objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
<configuration name="natterbox_sf.conf" description="test">
  <settings>
    <param name="default-org" value="acme"/>
    <param name="lookup-timeout-ms" value="800"/>
    <param name="cache-max-entries" value="1000"/>
  </settings>
  <!-- a comment -->
  <orgs>
    <org name="acme" api-version="66.0" default-country="GB" login-url="https://acme.my.salesforce.com/">
      <auth flow="jwt-bearer" client-id="3MVG9" username="u@acme.example" private-key-file="/etc/k.pem"/>
      <profile name="default">
        <object name="Contact" fields="Id, Name, OwnerId">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
        </object>
        <object name="Lead"/>
        <object name="Routing_Rule__c" fields="Queue__c" phone-fields="Phone__c"/>
      </profile>
      <call-log enabled="false"/>
      <screen-pop platform-event="Screen_Pop__e" ttl-ms="5000"/>
    </org>
    <org name="globex"><profile name="default"><object name="Account"/></profile></org>
  </orgs>
</configuration>"#;

    #[test]
    fn parses_a_full_config() {
        let config = Config::parse(SAMPLE).unwrap();
        assert_eq!(config.settings.lookup_timeout, Duration::from_millis(800));
        assert_eq!(config.settings.cache_max_entries, 1000);
        assert_eq!(config.settings.cache_ttl, Duration::from_secs(300));
        let acme = config.org("acme").unwrap();
        assert_eq!(acme.api_version, "66.0");
        assert_eq!(acme.default_country, Country::parse("GB").unwrap());
        assert_eq!(acme.login_url, "https://acme.my.salesforce.com");
        let contact = &acme.profile("default").unwrap().objects[0];
        assert_eq!(contact.fields, ["Id", "Name", "OwnerId", "Owner.Extension"]);
        assert_eq!(contact.mappings[0].variable, "sf_owner_extension");
        assert_eq!(contact.phone_fields.len(), 5);
        let custom = &acme.profile("default").unwrap().objects[2];
        assert_eq!(custom.phone_fields, ["Phone__c"]);
        assert!(
            matches!(acme.auth, Some(AuthConfig::JwtBearer { ref audience, .. }) if audience == "https://login.salesforce.com")
        );
        assert!(!acme.call_log.enabled);
        assert_eq!(acme.screen_pop.ttl, Duration::from_secs(5));
        assert_eq!(config.resolve_org(None).unwrap().name, "acme");
        assert_eq!(config.resolve_org(Some("globex")).unwrap().name, "globex");
        assert!(config.resolve_org(Some("initech")).is_none());
    }

    #[test]
    fn call_log_directions_default_to_inbound_and_are_checked() {
        let config = Config::parse(SAMPLE).unwrap();
        assert_eq!(
            config.org("globex").unwrap().call_log.directions,
            [Direction::Inbound]
        );
        let with = |directions: &str| {
            SAMPLE.replace(
                "<call-log enabled=\"false\"/>",
                &format!("<call-log directions=\"{directions}\"/>"),
            )
        };
        let config = Config::parse(&with("outbound, internal,outbound")).unwrap();
        let acme = config.org("acme").unwrap();
        assert!(acme.call_log.enabled);
        assert_eq!(
            acme.call_log.directions,
            [Direction::Outbound, Direction::Internal]
        );
        assert!(error_of(&with("inbound,sideways")).contains("\"sideways\" is not inbound"));
        assert!(error_of(&with(" , ")).contains("directions is empty"));
    }

    #[test]
    fn finds_the_configuration_inside_a_freeswitch_document() {
        let doc = format!(
            r#"<document type="freeswitch/xml"><section name="configuration">{SAMPLE}</section></document>"#
        );
        assert_eq!(Config::parse(&doc).unwrap().orgs.len(), 2);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().0
    }

    #[test]
    fn an_org_chooses_rest_or_soap_for_call_time_reads() {
        let config = Config::parse(SAMPLE).unwrap();
        assert!(config.orgs.iter().all(|o| o.api == OrgApiKind::Rest));
        let soap = SAMPLE.replace("api-version=\"66.0\"", "api-version=\"66.0\" api=\"soap\"");
        let config = Config::parse(&soap).unwrap();
        assert_eq!(config.orgs[0].api, OrgApiKind::Soap);
        let wrong = SAMPLE.replace("api-version=\"66.0\"", "api-version=\"66.0\" api=\"bulk\"");
        assert!(error_of(&wrong).contains("api=\"bulk\": expected rest or soap"));
    }

    #[test]
    fn an_org_sets_the_share_of_its_api_allowance_calls_may_spend() {
        let config = Config::parse(SAMPLE).unwrap();
        assert_eq!(config.orgs[0].call_time_api_share_percent, 50);
        let set = SAMPLE.replace(
            "api-version=\"66.0\"",
            "api-version=\"66.0\" call-time-api-share-percent=\"30\"",
        );
        assert_eq!(
            Config::parse(&set).unwrap().orgs[0].call_time_api_share_percent,
            30
        );
        let zero = SAMPLE.replace(
            "api-version=\"66.0\"",
            "api-version=\"66.0\" call-time-api-share-percent=\"0\"",
        );
        assert!(error_of(&zero).contains("call-time-api-share-percent"));
    }

    #[test]
    fn explains_what_is_wrong() {
        let bad_timeout = SAMPLE.replace("value=\"800\"", "value=\"soon\"");
        assert!(error_of(&bad_timeout).contains("lookup-timeout-ms=\"soon\""));
        for version in ["66", "+66.0", "066.0", "66.00", "6 6.0", "30.0"] {
            let bad_version = SAMPLE.replace("\"66.0\"", &format!("\"{version}\""));
            assert!(error_of(&bad_version).contains("api-version"), "{version}");
        }
        let bad_country = SAMPLE.replace("\"GB\"", "\"Britain\"");
        assert!(error_of(&bad_country).contains("default-country"));
        let inline_secret = SAMPLE.replace("private-key-file=", "private-key=");
        assert!(error_of(&inline_secret).contains("secret in the config"));
        let injected_field = SAMPLE.replace("Id, Name, OwnerId", "Id, Name FROM User--");
        assert!(error_of(&injected_field).contains("not a field path"));
        let bad_org = SAMPLE.replace("name=\"globex\"", "name=\"../etc\"");
        assert!(error_of(&bad_org).contains("org name"));
        let no_default_profile = SAMPLE.replace(
            "<profile name=\"default\"><object name=\"Account\"/>",
            "<profile name=\"x\"><object name=\"Account\"/>",
        );
        assert!(error_of(&no_default_profile).contains("profile name=\"default\""));
        assert!(error_of("<configuration name=\"other.conf\"/>").contains("no <configuration"));
        let custom_without_phone = SAMPLE.replace(" phone-fields=\"Phone__c\"", "");
        assert!(error_of(&custom_without_phone).contains("phone-fields"));
        assert!(
            error_of("<configuration name=\"natterbox_sf.conf\"><orgs>").contains("XML")
                || error_of("<configuration name=\"natterbox_sf.conf\"><orgs>").contains("root")
        );
        let unknown_default = SAMPLE.replace("value=\"acme\"", "value=\"initech\"");
        assert!(error_of(&unknown_default).contains("default-org"));
    }

    #[test]
    fn plain_http_login_urls_need_allow_insecure_http() {
        let http = SAMPLE.replace("https://acme.my.salesforce.com/", "http://127.0.0.1:9");
        assert!(error_of(&http).contains("allow-insecure-http"));
        let per_org = http.replace("login-url=", "allow-insecure-http=\"true\" login-url=");
        let config = Config::parse(&per_org).unwrap();
        assert!(config.org("acme").unwrap().allow_insecure_http);
        assert!(!config.org("globex").unwrap().allow_insecure_http);
        let in_settings = http.replace(
            "<settings>",
            "<settings><param name=\"allow-insecure-http\" value=\"true\"/>",
        );
        let config = Config::parse(&in_settings).unwrap();
        assert!(config.org("globex").unwrap().allow_insecure_http);
        let org_says_no =
            in_settings.replace("login-url=", "allow-insecure-http=\"false\" login-url=");
        assert!(error_of(&org_says_no).contains("plain http://"));
        assert!(
            !Config::parse(SAMPLE)
                .unwrap()
                .org("acme")
                .unwrap()
                .allow_insecure_http
        );
    }

    #[test]
    fn agents_and_operators_get_separate_listeners() {
        let config = Config::parse(SAMPLE).unwrap();
        assert_eq!(config.sidecar.admin_listen.to_string(), "127.0.0.1:8787");
        assert_eq!(config.sidecar.agent_listen.to_string(), "127.0.0.1:8788");
        let with =
            |params: &str| SAMPLE.replace("<orgs>", &format!("<sidecar>{params}</sidecar><orgs>"));
        let config = Config::parse(&with(
            r#"<param name="agent-listen" value="0.0.0.0:9443"/><param name="admin-listen" value="127.0.0.1:9100"/>"#,
        ))
        .unwrap();
        assert_eq!(config.sidecar.agent_listen.to_string(), "0.0.0.0:9443");
        assert_eq!(config.sidecar.admin_listen.to_string(), "127.0.0.1:9100");
        assert!(
            error_of(&with(r#"<param name="http-listen" value="127.0.0.1:1"/>"#))
                .contains("admin-listen")
        );
        assert!(error_of(&with(
            r#"<param name="agent-listen" value="127.0.0.1:8787"/>"#
        ))
        .contains("separate"));
        assert!(
            error_of(&with(r#"<param name="agent-listen" value="everywhere"/>"#))
                .contains("agent-listen=\"everywhere\"")
        );
    }

    #[test]
    fn owners_and_owner_ids() {
        let config = Config::parse(SAMPLE).unwrap();
        let acme = config.org("acme").unwrap();
        assert_eq!(config.settings.owner_refresh, Duration::from_secs(300));
        assert!(acme.owners.user_fields.is_empty());
        // OwnerId is asked for on every object unless it says owner="none".
        let lead = &acme.profile("default").unwrap().objects[1];
        assert_eq!(lead.fields, ["Id", "Name", "OwnerId"]);
        let no_owner = SAMPLE.replace(
            "phone-fields=\"Phone__c\"",
            "phone-fields=\"Phone__c\" owner=\"none\"",
        );
        let rule = &Config::parse(&no_owner).unwrap().orgs[0].profiles[0].objects[2];
        assert_eq!(rule.fields, ["Queue__c"]);

        let with_owners = SAMPLE.replace(
            "<call-log enabled=\"false\"/>",
            "<owners><map field=\"Department\" variable=\"sf_owner_department\"/></owners><call-log enabled=\"false\"/>",
        );
        let config = Config::parse(&with_owners).unwrap();
        let owners = &config.org("acme").unwrap().owners;
        assert_eq!(owners.user_fields[0].field, "Department");
        assert_eq!(owners.user_fields[0].variable, "sf_owner_department");

        let refused = |from: &str, to: &str| error_of(&with_owners.replace(from, to));
        assert!(refused("sf_owner_department", "sf_owner_name").contains("already set"));
        assert!(refused("Department", "Extension").contains("always loaded"));
        assert!(refused("Department", "Manager.Extension").contains("not a User field name"));
        assert!(refused("Department", "Dept FROM User--").contains("not a User field name"));
        assert!(error_of(&SAMPLE.replace(
            "<object name=\"Lead\"/>",
            "<object name=\"Lead\" owner=\"Owner\"/>"
        ))
        .contains("owner=\"Owner\""));
        assert!(error_of(&SAMPLE.replace(
            "value=\"1000\"/>",
            "value=\"1000\"/><param name=\"owner-refresh-s\" value=\"0\"/>"
        ))
        .contains("owner-refresh-s"));
    }

    #[test]
    fn secrets_print_as_references() {
        let secret = SecretRef::Env("ACME_SECRET".into());
        assert_eq!(format!("{secret:?}"), "env $ACME_SECRET");
    }

    #[test]
    fn change_data_capture_is_per_org_and_checked() {
        let auth = "<auth flow=\"jwt-bearer\" client-id=\"3MVG9\" username=\"u@acme.example\" private-key-file=\"/etc/k.pem\"/>";
        let with = |cdc: &str| SAMPLE.replacen(auth, &format!("{auth}{cdc}"), 1);
        let config = Config::parse(SAMPLE).unwrap();
        assert!(config.orgs.iter().all(|o| o.change_data_capture.is_none()));
        let config = Config::parse(&with("<change-data-capture/>")).unwrap();
        let cdc = config
            .org("acme")
            .unwrap()
            .change_data_capture
            .clone()
            .unwrap();
        assert_eq!(cdc.pubsub_url, DEFAULT_PUBSUB_URL);
        assert_eq!(cdc.objects, ["Contact", "Lead", "Account"]);
        assert_eq!(cdc.batch, 100);
        let config = Config::parse(&with(
            "<change-data-capture objects=\"Case, Thing__c,Case\" batch=\"5\"/>",
        ))
        .unwrap();
        let cdc = config
            .org("acme")
            .unwrap()
            .change_data_capture
            .clone()
            .unwrap();
        assert_eq!(
            (cdc.objects.as_slice(), cdc.batch),
            (&["Case".to_string(), "Thing__c".to_string()][..], 5)
        );
        let plain = with("<change-data-capture pubsub-url=\"http://127.0.0.1:1\"/>");
        assert!(error_of(&plain).contains("allow-insecure-http"));
        assert!(
            error_of(&with("<change-data-capture objects=\"Contact;DROP\"/>"))
                .contains("not an object API name")
        );
        assert!(error_of(&with("<change-data-capture batch=\"0\"/>")).contains("batch"));
    }
}
