//! One emulated org: its schema, data, sessions, limits, faults and observations.

use crate::faults::Faults;
use crate::ids;
use crate::rsakey::rsa_public_key_from_pem;
use crate::schema::Schema;
use crate::seed::{PhoneMatch, Seed, SeedApp};
use crate::sessions::Sessions;
use crate::stats::Stats;
use crate::store::Store;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub struct App {
    pub seed: SeedApp,
    /// PKCS#1 DER of the RSA key that signs this app's JWTs.
    pub rsa_key: Option<Vec<u8>>,
}

impl App {
    pub fn has_grant(&self, g: &str) -> bool {
        self.seed.grants.iter().any(|x| x == g)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Limits {
    pub daily_used: u64,
    pub daily_max: u64,
    pub concurrent_max: u64,
    pub long_running_ms: u64,
}

pub struct Cursor {
    pub user: String,
    pub version: String,
    pub rows: Vec<Value>,
}

pub struct Data {
    pub store: Store,
    pub sessions: Sessions,
    pub cursors: HashMap<String, Cursor>,
    /// Cursor ids per user, oldest first (Salesforce keeps at most 10 open per user).
    pub cursor_order: Vec<String>,
    pub next_cursor: u64,
    /// Published platform events.
    pub events: Vec<Value>,
    /// Records created through the API (create, upsert-insert, composite).
    pub created: Vec<Value>,
}

pub struct Runtime {
    pub session_timeout: Duration,
    /// Sessions die after this many successful calls (None = no limit).
    pub session_max_calls: Option<u64>,
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: Duration,
    pub batch_size: usize,
    pub phone_match: PhoneMatch,
}

pub struct Org {
    pub schema: Schema,
    pub seed: Seed,
    /// 18-char org id.
    pub org_id: String,
    pub login_url: String,
    pub instance_url: String,
    pub apps: Vec<App>,
    pub data: Mutex<Data>,
    pub runtime: Mutex<Runtime>,
    pub limits: Mutex<Limits>,
    pub stats: Stats,
    pub faults: Faults,
    /// SOSL plans compiled for this org's schema.
    pub search_plans: crate::sosl::PlanCache,
    /// The Telephony Integration API's call centers and VoiceCalls.
    pub telephony: crate::telephony::Telephony,
}

pub const MAX_CURSORS_PER_USER: usize = 10;

impl Org {
    pub fn new(
        seed: Seed,
        login_url: String,
        instance_url: String,
        session_timeout: Duration,
        batch_size: usize,
    ) -> Result<Org, String> {
        let mut schema = Schema::standard();
        schema.add_custom_fields(&seed.custom_fields)?;
        let org_id = ids::to18(&seed.org_id)
            .filter(|id| id.starts_with("00D"))
            .ok_or_else(|| format!("seed org_id {} is not a 00D id", seed.org_id))?;
        let store = Store::load(&schema, &seed)?;
        let mut apps = vec![];
        for a in &seed.connected_apps {
            let pem = a.cert_pem.as_ref().or(a.public_key_pem.as_ref());
            let rsa_key = pem
                .map(|p| rsa_public_key_from_pem(p).map_err(|e| format!("app {}: {e}", a.name)))
                .transpose()?;
            apps.push(App {
                seed: a.clone(),
                rsa_key,
            });
        }
        let mut sessions = Sessions::default();
        for a in &seed.connected_apps {
            for rt in &a.refresh_tokens {
                sessions.add_refresh(
                    rt.token.clone(),
                    crate::sessions::RefreshToken {
                        username: rt.username.clone(),
                        client_id: a.client_id.clone(),
                    },
                );
            }
        }
        let limits = Limits {
            daily_used: 0,
            daily_max: seed.api_daily_max,
            concurrent_max: seed.api_concurrent_max,
            long_running_ms: seed.long_running_ms,
        };
        Ok(Org {
            runtime: Mutex::new(Runtime {
                session_timeout,
                session_max_calls: None,
                body_timeout: crate::server::BODY_TIMEOUT,
                batch_size: batch_size.max(1),
                phone_match: seed.phone_match,
            }),
            schema,
            org_id,
            login_url,
            instance_url,
            apps,
            data: Mutex::new(Data {
                store,
                sessions,
                cursors: HashMap::new(),
                cursor_order: vec![],
                next_cursor: 1,
                events: vec![],
                created: vec![],
            }),
            limits: Mutex::new(limits),
            stats: Stats::default(),
            faults: Faults::default(),
            search_plans: Default::default(),
            telephony: crate::telephony::Telephony::new(&seed)?,
            seed,
        })
    }

    pub fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limits(&self) -> MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn session_timeout(&self) -> Duration {
        self.runtime().session_timeout
    }

    /// The live session for an access token, touched (inactivity timeout and call count).
    pub fn use_session(&self, token: &str) -> Option<crate::sessions::Session> {
        let (timeout, max_calls) = {
            let rt = self.runtime();
            (rt.session_timeout, rt.session_max_calls)
        };
        self.data().sessions.use_token(token, timeout, max_calls)
    }

    pub fn org_id15(&self) -> &str {
        &self.org_id[..15]
    }

    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.seed.client_id == client_id)
    }

    /// The User record for a username (case-insensitive), if any.
    pub fn user_by_username(&self, username: &str) -> Option<(String, bool)> {
        let data = self.data();
        let found = data
            .store
            .iter_object("User", false)
            .find(|u| {
                u.get("Username")
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(username))
            })
            .map(|u| (u.id.clone(), u.get("IsActive").as_bool().unwrap_or(true)));
        found
    }

    /// Identity URL: `<login_url>/id/<org18>/<user18>`.
    pub fn identity_url(&self, user_id: &str) -> String {
        format!("{}/id/{}/{}", self.login_url, self.org_id, user_id)
    }

    fn host_of(url: &str) -> String {
        url.split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    /// Whether a request with this `Host` reached the login host rather than the instance
    /// ("My Domain") host. Same origin for both → never the login host only.
    pub fn is_login_host_only(&self, host: &str) -> bool {
        let login = Self::host_of(&self.login_url);
        let instance = Self::host_of(&self.instance_url);
        login != instance && host.eq_ignore_ascii_case(&login)
    }

    /// Restores the seed's data (records, sessions, cursors, events).
    pub fn reset_data(&self) -> Result<(), String> {
        let fresh = Org::new(
            self.seed.clone(),
            self.login_url.clone(),
            self.instance_url.clone(),
            self.session_timeout(),
            self.runtime().batch_size,
        )?;
        let mut new_data = fresh.data.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut data = self.data();
        new_data.store.set_changes(data.store.changes().clone());
        *data = new_data;
        Ok(())
    }
}
