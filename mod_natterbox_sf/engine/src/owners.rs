//! The owner directory: each org's Users and Queues, loaded with SOQL in the background and
//! kept in memory, so a lookup asks Salesforce only for a record's `OwnerId` and the `sf_owner_*`
//! variables come from here. Reads are lock-free (one snapshot swapped in whole); nothing on
//! the call path ever asks Salesforce for an owner: an owner the directory does not know yet is
//! answered with its id and, from the id's key prefix, its type.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use natterbox_common::config::{FieldMapping, OwnersConfig, OWNER_USER_FIELDS};
use natterbox_common::salesforce::{SalesforceClient, Session, SfError};
use serde_json::Value;

use crate::outcome::MAX_VALUE_BYTES;

/// Records read per kind at most; an org past this is reported as truncated in `sf status`.
const MAX_OWNERS: usize = 500_000;

/// How long one load may take before it is abandoned (and tried again later).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// After a failed load, the next try comes this soon (or at the refresh interval, if shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// `sf_owner_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    User,
    Queue,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::User => "User",
            OwnerKind::Queue => "Queue",
        }
    }

    /// From the id's key prefix: `005` is a User, `00G` a Group (the only groups that own
    /// records are queues). Prefixes are case-sensitive.
    pub fn of_id(id: &str) -> Option<OwnerKind> {
        match id.get(..3)? {
            "005" => Some(OwnerKind::User),
            "00G" => Some(OwnerKind::Queue),
            _ => None,
        }
    }
}

/// One owner as the dialplan sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Owner {
    pub id: Box<str>,
    pub kind: Option<OwnerKind>,
    /// The directory's variable names (shared by all its owners) and this owner's values.
    names: Arc<[Box<str>]>,
    values: Box<[Option<Box<str>>]>,
}

/// Variables every directory sets, in the order of `Owner::values`; the org's extra User
/// fields follow.
const DIRECTORY_VARS: [&str; 4] = [
    "sf_owner_name",
    "sf_owner_extension",
    "sf_owner_email",
    "sf_owner_queue",
];

impl Owner {
    /// An owner the directory does not know (yet): its id, and its type when the prefix says.
    pub fn unknown(id: &str) -> Owner {
        Owner {
            id: id.into(),
            kind: OwnerKind::of_id(id),
            names: Arc::from(Vec::new()),
            values: Box::new([]),
        }
    }

    /// `sf_owner_id`, `sf_owner_type` and whatever the directory holds, non-empty values only.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        let head = [
            Some(("sf_owner_id", &*self.id)),
            self.kind.map(|k| ("sf_owner_type", k.as_str())),
        ];
        head.into_iter().flatten().chain(
            self.names
                .iter()
                .zip(self.values.iter())
                .filter_map(|(n, v)| Some((&**n, v.as_deref()?))),
        )
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// One load of the directory.
#[derive(Debug)]
pub struct OwnerSnapshot {
    owners: HashMap<Box<str>, Arc<Owner>>,
    pub users: usize,
    pub queues: usize,
    /// Why the queues could not be read, when the users could (the directory still serves).
    pub queue_error: Option<String>,
    pub truncated: bool,
    /// `<owners>` fields the org's User object does not have: left out of the load.
    pub unknown_fields: Vec<String>,
    pub loaded_at: Instant,
    pub took: Duration,
}

impl OwnerSnapshot {
    pub fn get(&self, id: &str) -> Option<&Arc<Owner>> {
        self.owners.get(id)
    }
}

/// A directory's health, for `sf status`.
#[derive(Debug, Default)]
struct LoadState {
    loading: bool,
    last_error: Option<String>,
    /// When the next load is due (None: as soon as the org has a token).
    next_due: Option<Instant>,
}

/// One org's directory. Kept across config reloads (by org name), so a reload never leaves
/// calls without owners while the new load runs.
#[derive(Default)]
pub struct OwnerDirectory {
    current: ArcSwapOption<OwnerSnapshot>,
    state: parking_lot::Mutex<LoadState>,
    refresh_now: AtomicBool,
}

impl OwnerDirectory {
    /// The owner of a record, from memory only.
    pub fn resolve(&self, id: &str) -> Arc<Owner> {
        if let Some(snapshot) = &*self.current.load() {
            if let Some(owner) = snapshot.get(id) {
                return owner.clone();
            }
        }
        Arc::new(Owner::unknown(id))
    }

    pub fn snapshot(&self) -> Option<Arc<OwnerSnapshot>> {
        self.current.load_full()
    }

    /// Asks for a load at the next chance (`sf reload`, reloadxml).
    pub fn request_refresh(&self) {
        self.refresh_now.store(true, Ordering::Relaxed);
    }

    /// Whether a load should start now; if so, marks one as running.
    pub fn claim_load(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        if state.loading {
            return false;
        }
        let forced = self.refresh_now.swap(false, Ordering::Relaxed);
        if forced || state.next_due.is_none_or(|due| now >= due) {
            state.loading = true;
            true
        } else {
            false
        }
    }

    /// Records a finished load and when the next one is due.
    pub fn finish_load(&self, result: Result<OwnerSnapshot, String>, interval: Duration) {
        let mut state = self.state.lock();
        state.loading = false;
        let now = Instant::now();
        match result {
            Ok(snapshot) => {
                state.last_error = None;
                state.next_due = Some(now + interval);
                self.current.store(Some(Arc::new(snapshot)));
            }
            Err(e) => {
                state.last_error = Some(e);
                state.next_due = Some(now + interval.min(RETRY_AFTER_FAILURE));
            }
        }
    }

    /// `sf status`: size and age of the directory, and the last error.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        let state = self.state.lock();
        let snapshot = self.current.load();
        serde_json::json!({
            "loaded": snapshot.is_some(),
            "users": snapshot.as_ref().map(|s| s.users),
            "queues": snapshot.as_ref().map(|s| s.queues),
            "age_s": snapshot.as_ref().map(|s| now.saturating_duration_since(s.loaded_at).as_secs()),
            "load_ms": snapshot.as_ref().map(|s| s.took.as_millis() as u64),
            "truncated": snapshot.as_ref().is_some_and(|s| s.truncated),
            "queue_error": snapshot.as_ref().and_then(|s| s.queue_error.clone()),
            "unknown_user_fields": snapshot.as_ref().map(|s| s.unknown_fields.clone()),
            "loading": state.loading,
            "error": state.last_error,
            "next_in_s": state.next_due.map(|d| d.saturating_duration_since(now).as_secs()),
        })
    }
}

/// `SELECT Id, Name, Extension, Email, <extras> FROM User`.
pub fn user_query(extras: &[FieldMapping]) -> String {
    let mut fields: Vec<&str> = OWNER_USER_FIELDS.to_vec();
    fields.extend(extras.iter().map(|m| m.field.as_str()));
    format!("SELECT {} FROM User", fields.join(", "))
}

/// Queues are Groups of type Queue; their `DeveloperName` is the stable name to route on.
pub const QUEUE_QUERY: &str =
    "SELECT Id, Name, DeveloperName, Email FROM Group WHERE Type = 'Queue'";

/// Loads the org's Users and Queues (every page). A failure to read Users fails the load; a
/// failure to read Queues is reported and the Users still serve.
pub async fn load(
    client: &SalesforceClient,
    session: &Session,
    config: &OwnersConfig,
) -> Result<OwnerSnapshot, String> {
    let started = Instant::now();
    let describe = |e: SfError| e.to_string();
    // One field the org lacks would make Salesforce refuse the whole query: ask only for the
    // configured fields the User object has.
    let user = client
        .describe(session, "User")
        .await
        .map_err(|e| format!("describing User: {}", describe(e)))?;
    let (extras, unknown): (Vec<&FieldMapping>, Vec<&FieldMapping>) = config
        .user_fields
        .iter()
        .partition(|m| user.field(&m.field).is_some());
    let extras: Vec<FieldMapping> = extras.into_iter().cloned().collect();
    let (users, _) = client
        .query(session, &user_query(&extras), MAX_OWNERS)
        .await
        .map_err(|e| format!("reading Users: {}", describe(e)))?;
    let queues = client.query(session, QUEUE_QUERY, MAX_OWNERS).await;
    let mut names: Vec<Box<str>> = DIRECTORY_VARS.iter().map(|n| Box::from(*n)).collect();
    names.extend(extras.iter().map(|m| m.variable.as_str().into()));
    let names: Arc<[Box<str>]> = Arc::from(names);
    let mut owners = HashMap::with_capacity(users.len());
    let mut truncated = users.len() >= MAX_OWNERS;
    for record in &users {
        let Some(id) = field_text(record, "Id") else {
            continue;
        };
        let mut values = vec![
            field_text(record, "Name"),
            field_text(record, "Extension"),
            field_text(record, "Email"),
            None,
        ];
        values.extend(extras.iter().map(|m| field_text(record, &m.field)));
        let owner = Owner {
            id: id.clone(),
            kind: Some(OwnerKind::User),
            names: names.clone(),
            values: values.into_boxed_slice(),
        };
        owners.insert(id, Arc::new(owner));
    }
    let user_count = owners.len();
    let (queue_count, queue_error) = match queues {
        Ok((queues, _)) => {
            truncated |= queues.len() >= MAX_OWNERS;
            let mut count = 0;
            for record in &queues {
                let Some(id) = field_text(record, "Id") else {
                    continue;
                };
                let mut values = vec![
                    field_text(record, "Name"),
                    None,
                    field_text(record, "Email"),
                    field_text(record, "DeveloperName"),
                ];
                values.resize(names.len(), None);
                owners.insert(
                    id.clone(),
                    Arc::new(Owner {
                        id,
                        kind: Some(OwnerKind::Queue),
                        names: names.clone(),
                        values: values.into_boxed_slice(),
                    }),
                );
                count += 1;
            }
            (count, None)
        }
        Err(e) => (0, Some(format!("reading Queues: {}", describe(e)))),
    };
    Ok(OwnerSnapshot {
        owners,
        users: user_count,
        queues: queue_count,
        queue_error,
        truncated,
        unknown_fields: unknown.iter().map(|m| m.field.clone()).collect(),
        loaded_at: Instant::now(),
        took: started.elapsed(),
    })
}

/// A field path (`Manager.Extension`) of a query record, as channel-variable text: cut to
/// `MAX_VALUE_BYTES` on a character boundary, control characters as spaces, empty as absent.
fn field_text(record: &Value, path: &str) -> Option<Box<str>> {
    let mut value = record;
    for part in path.split('.') {
        let map = value.as_object()?;
        value = map.get(part).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)
        })?;
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let mut end = text.len().min(MAX_VALUE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cleaned: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    (!cleaned.trim().is_empty()).then(|| cleaned.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unknown_owner_is_its_id_and_the_type_its_prefix_says() {
        let user = Owner::unknown("005000000000001AAA");
        assert_eq!(
            user.vars().collect::<Vec<_>>(),
            [
                ("sf_owner_id", "005000000000001AAA"),
                ("sf_owner_type", "User")
            ]
        );
        assert_eq!(
            Owner::unknown("00G000000000001AAA").var("sf_owner_type"),
            Some("Queue")
        );
        // Lower-case 00g is another object (prefixes are case-sensitive).
        assert_eq!(Owner::unknown("00g000000000001AAA").kind, None);
        assert_eq!(Owner::unknown("x").vars().count(), 1);
    }

    #[test]
    fn queries_name_the_configured_fields() {
        let extras = [FieldMapping {
            field: "Department".into(),
            variable: "sf_owner_department".into(),
        }];
        assert_eq!(
            user_query(&extras),
            "SELECT Id, Name, Extension, Email, Department FROM User"
        );
    }

    #[test]
    fn field_text_reads_paths_and_cleans_values() {
        let record = json!({"Id": "005", "Manager": {"Extension": "12\n34"}, "Empty": " ", "N": 7});
        assert_eq!(
            field_text(&record, "manager.extension").as_deref(),
            Some("12 34")
        );
        assert_eq!(field_text(&record, "Empty"), None);
        assert_eq!(field_text(&record, "N").as_deref(), Some("7"));
        assert_eq!(field_text(&record, "Missing"), None);
    }

    #[test]
    fn loads_are_claimed_once_and_due_again_after_the_interval() {
        let directory = OwnerDirectory::default();
        let now = Instant::now();
        assert!(directory.claim_load(now));
        assert!(!directory.claim_load(now), "one load at a time");
        directory.finish_load(Err("boom".into()), Duration::from_secs(300));
        assert!(!directory.claim_load(Instant::now()));
        assert!(directory.claim_load(Instant::now() + RETRY_AFTER_FAILURE));
        directory.finish_load(Err("again".into()), Duration::from_secs(300));
        directory.request_refresh();
        assert!(
            directory.claim_load(Instant::now()),
            "a reload forces a load"
        );
        assert_eq!(directory.status(now)["error"], "again");
    }
}
