//! The lookup profiles checked against the org itself, once per token arrival and reload
//! rather than on every call: each object is described (`/sobjects/X/describe`) and what the org
//! does not have is left out of the search, with one log line per problem naming the org, the
//! object and the field. One bad field makes Salesforce refuse the whole search, so without
//! this a typo would turn every call into `error`; with it the rest of the profile keeps
//! answering and `sf status` says what was left out and why. A profile left with no object
//! answers `error` with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use natterbox_common::config::{LookupProfile, ObjectLookup};
use natterbox_common::salesforce::describe::{Parent, SObjectDescribe};
use natterbox_common::salesforce::{SalesforceClient, Session, SfError};

use crate::search::SearchTemplate;

/// One describe may take this long before the check gives up (and tries again later).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(20);

/// After a check that could not finish, the next try comes this soon.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// One thing in a profile the org does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub profile: String,
    pub object: String,
    /// None: the object itself.
    pub field: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(
                f,
                "profile {}: {} field {}: {}",
                self.profile, self.object, field, self.reason
            ),
            None => write!(
                f,
                "profile {}: object {}: {}",
                self.profile, self.object, self.reason
            ),
        }
    }
}

/// What lookups use: per profile (in config order) the search and the profile it decides with,
/// or why the profile cannot search at all.
pub struct CheckedProfiles {
    pub profiles: Vec<Result<(LookupProfile, SearchTemplate), String>>,
}

impl CheckedProfiles {
    /// The profiles as configured, before any check.
    pub fn as_configured(profiles: &[LookupProfile]) -> CheckedProfiles {
        CheckedProfiles {
            profiles: profiles
                .iter()
                .map(|p| Ok((p.clone(), SearchTemplate::new(p))))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum CheckState {
    Pending,
    Checked { at: Instant, problems: Vec<Problem> },
    Failed { at: Instant, error: String },
}

/// One org's check: the searches lookups use, the last result and whether a new check is due.
pub struct SchemaCheck {
    configured: Vec<LookupProfile>,
    current: ArcSwap<CheckedProfiles>,
    state: parking_lot::Mutex<(CheckState, Option<Instant>)>,
    running: AtomicBool,
    requested: AtomicBool,
}

impl SchemaCheck {
    pub fn new(profiles: &[LookupProfile]) -> SchemaCheck {
        SchemaCheck {
            configured: profiles.to_vec(),
            current: ArcSwap::from_pointee(CheckedProfiles::as_configured(profiles)),
            state: parking_lot::Mutex::new((CheckState::Pending, None)),
            running: AtomicBool::new(false),
            requested: AtomicBool::new(true),
        }
    }

    /// A check for a reloaded org: when its profiles did not change, the previous check's
    /// searches serve until the new check (requested by the reload) has run, so a reload never
    /// brings back a field the org was found not to have.
    pub fn after(previous: &SchemaCheck, profiles: &[LookupProfile]) -> SchemaCheck {
        let check = SchemaCheck::new(profiles);
        if previous.configured == profiles {
            check.current.store(previous.current.load_full());
            *check.state.lock() = previous.state.lock().clone();
        }
        check
    }

    pub fn current(&self) -> Arc<CheckedProfiles> {
        self.current.load_full()
    }

    /// Asks for a check at the next chance (`sf reload`, reloadxml).
    pub fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    /// Whether a check should start now; if so, marks one as running.
    pub fn claim(&self, now: Instant) -> bool {
        if self.running.load(Ordering::Relaxed) {
            return false;
        }
        let retry_due = self.state.lock().1.is_some_and(|at| now >= at);
        if !(self.requested.swap(false, Ordering::Relaxed) || retry_due) {
            return false;
        }
        !self.running.swap(true, Ordering::Relaxed)
    }

    /// Applies a finished check.
    pub fn finish(&self, result: Result<(Vec<Problem>, CheckedProfiles), String>) {
        let now = Instant::now();
        let mut state = self.state.lock();
        match result {
            Ok((problems, checked)) => {
                self.current.store(Arc::new(checked));
                *state = (CheckState::Checked { at: now, problems }, None);
            }
            Err(error) => {
                *state = (
                    CheckState::Failed { at: now, error },
                    Some(now + RETRY_AFTER_FAILURE),
                );
            }
        }
        self.running.store(false, Ordering::Relaxed);
    }

    pub fn configured(&self) -> &[LookupProfile] {
        &self.configured
    }

    /// `sf status`.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        let state = self.state.lock().0.clone();
        match state {
            CheckState::Pending => serde_json::json!({"state": "pending"}),
            CheckState::Checked { at, problems } => serde_json::json!({
                "state": if problems.is_empty() { "ok" } else { "problems" },
                "age_s": now.saturating_duration_since(at).as_secs(),
                "problems": problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            }),
            CheckState::Failed { at, error } => serde_json::json!({
                "state": "not_checked",
                "age_s": now.saturating_duration_since(at).as_secs(),
                "error": error,
                "note": "lookups use the profiles as configured until a check succeeds",
            }),
        }
    }
}

/// Describes fetched during one check, by lower-case object name. `None`: the org has no such
/// object (or the integration user cannot see it).
struct Describes<'a> {
    client: &'a SalesforceClient,
    session: &'a Session,
    known: HashMap<String, Option<Arc<SObjectDescribe>>>,
    name_entity: Arc<SObjectDescribe>,
}

impl Describes<'_> {
    async fn get(&mut self, object: &str) -> Result<Option<Arc<SObjectDescribe>>, String> {
        let key = object.to_ascii_lowercase();
        if let Some(known) = self.known.get(&key) {
            return Ok(known.clone());
        }
        let answer =
            tokio::time::timeout(DESCRIBE_TIMEOUT, self.client.describe(self.session, object))
                .await
                .unwrap_or(Err(SfError::Timeout));
        let describe = match answer {
            Ok(d) => Some(Arc::new(d)),
            // Salesforce answers an unknown or invisible object with 404 NOT_FOUND.
            Err(SfError::Api(e))
                if e.status == 404 || e.code == "NOT_FOUND" || e.code == "INVALID_TYPE" =>
            {
                None
            }
            Err(e) => return Err(format!("describe {object}: {e}")),
        };
        self.known.insert(key, describe.clone());
        Ok(describe)
    }

    /// Follows a field path from `object`: None when it leads somewhere, else why not.
    async fn resolve(
        &mut self,
        object: &Arc<SObjectDescribe>,
        path: &str,
    ) -> Result<Option<String>, String> {
        let parts: Vec<&str> = path.split('.').collect();
        let mut entity = object.clone();
        let mut through_polymorphic: Option<String> = None;
        for rel in &parts[..parts.len() - 1] {
            let Some((field, parent)) = entity.relationship(rel) else {
                return Ok(Some(format!("{} has no relationship {rel}", entity.name)));
            };
            entity = match parent {
                Parent::NameEntity => {
                    through_polymorphic = Some(format!(
                        "{}.{} can be a {}",
                        entity.name,
                        field.name,
                        field.reference_to.join(" or ")
                    ));
                    // The org's own describe of Name when it gives one (it knows fields an org
                    // turned on, such as MiddleName), else the documented list.
                    // Whatever the org answers, it never fails the check.
                    match self.get("Name").await {
                        Ok(Some(name)) => name,
                        _ => {
                            self.known.insert("name".into(), None);
                            self.name_entity.clone()
                        }
                    }
                }
                Parent::Object(target) => match self.get(&target).await? {
                    Some(d) => {
                        through_polymorphic = None;
                        d
                    }
                    None => return Ok(Some(format!("{target} cannot be described"))),
                },
            };
        }
        let last = parts[parts.len() - 1];
        if entity.field(last).is_some() {
            return Ok(None);
        }
        Ok(Some(match through_polymorphic {
            Some(why) => format!(
                "{why}, so Salesforce resolves it to the Name entity, which has no field {last}{}",
                if last.eq_ignore_ascii_case("Extension") {
                    " (the owner directory sets sf_owner_extension; ask for OwnerId only)"
                } else {
                    ""
                }
            ),
            None => format!("{} has no field {last}", entity.name),
        }))
    }
}

/// Checks every profile of an org: the problems found and the searches without them. An error
/// means the check could not run (Salesforce unreachable, token refused): nothing is changed.
pub async fn check(
    client: &SalesforceClient,
    session: &Session,
    profiles: &[LookupProfile],
) -> Result<(Vec<Problem>, CheckedProfiles), String> {
    let mut describes = Describes {
        client,
        session,
        known: HashMap::new(),
        name_entity: Arc::new(SObjectDescribe::name_entity()),
    };
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for profile in profiles {
        let mut kept = Vec::new();
        for object in &profile.objects {
            let problem = |field: Option<&str>, reason: String| Problem {
                profile: profile.name.clone(),
                object: object.object.clone(),
                field: field.map(str::to_string),
                reason,
            };
            let Some(describe) = describes.get(&object.object).await? else {
                problems.push(problem(
                    None,
                    "the org has no such object, or the integration user cannot see it; left out of the search".into(),
                ));
                continue;
            };
            let mut fields = Vec::new();
            for field in &object.fields {
                match describes.resolve(&describe, field).await? {
                    None => fields.push(field.clone()),
                    Some(reason) => problems.push(problem(
                        Some(field),
                        format!("{reason}; left out of the search"),
                    )),
                }
            }
            let mappings: Vec<_> = object
                .mappings
                .iter()
                .filter(|m| fields.iter().any(|f| f.eq_ignore_ascii_case(&m.field)))
                .cloned()
                .collect();
            let mut phone_fields = Vec::new();
            for phone in &object.phone_fields {
                match describe.field(phone) {
                    Some(f) if f.field_type == "phone" => phone_fields.push(phone.clone()),
                    Some(f) => problems.push(problem(
                        Some(phone),
                        format!(
                            "is a {} field, not a phone field: a phone search never looks in it; not compared",
                            f.field_type
                        ),
                    )),
                    None => problems.push(problem(
                        Some(phone),
                        format!("{} has no such phone field; not compared", describe.name),
                    )),
                }
            }
            if phone_fields.is_empty() {
                problems.push(problem(
                    None,
                    "no phone field left to match the caller with; left out of the search".into(),
                ));
                continue;
            }
            kept.push(ObjectLookup {
                object: object.object.clone(),
                fields,
                phone_fields,
                mappings,
            });
        }
        if kept.is_empty() {
            checked.push(Err(format!(
                "profile \"{}\" has no object the org can search (sf status shows why)",
                profile.name
            )));
        } else {
            let profile = LookupProfile {
                name: profile.name.clone(),
                objects: kept,
            };
            let search = SearchTemplate::new(&profile);
            checked.push(Ok((profile, search)));
        }
    }
    Ok((problems, CheckedProfiles { profiles: checked }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::config::Config;

    fn profiles(lead_fields: &str) -> Vec<LookupProfile> {
        let xml = format!(
            r#"<configuration name="natterbox_sf.conf"><orgs><org name="acme"><profile name="default">
                 <object name="Contact"/><object name="Lead" fields="{lead_fields}"/>
               </profile></org></orgs></configuration>"#
        );
        Config::parse(&xml).unwrap().orgs[0].profiles.clone()
    }

    fn checked_without_lead(profiles: &[LookupProfile]) -> CheckedProfiles {
        let mut profile = profiles[0].clone();
        profile.objects.truncate(1);
        let search = SearchTemplate::new(&profile);
        CheckedProfiles {
            profiles: vec![Ok((profile, search))],
        }
    }

    #[test]
    fn a_check_runs_once_per_request_and_a_reload_keeps_what_it_found() {
        let configured = profiles("Id,Name,Owner.Extension");
        let check = SchemaCheck::new(&configured);
        let now = Instant::now();
        assert!(check.claim(now), "due as soon as the org has a token");
        assert!(!check.claim(now), "one at a time");
        let problem = Problem {
            profile: "default".into(),
            object: "Lead".into(),
            field: None,
            reason: "test".into(),
        };
        check.finish(Ok((vec![problem], checked_without_lead(&configured))));
        assert!(!check.claim(Instant::now()), "not due again until asked");
        assert_eq!(check.status(now)["state"], "problems");

        // Reloaded with the same profiles: the checked search serves until the new check.
        let same = SchemaCheck::after(&check, &configured);
        assert_eq!(
            same.current().profiles[0].as_ref().unwrap().0.objects.len(),
            1
        );
        assert_eq!(same.status(now)["state"], "problems");
        assert!(same.claim(now), "a reload asks for a new check");
        // Other profiles: as configured until checked.
        let changed = SchemaCheck::after(&check, &profiles("Id,Name"));
        assert_eq!(
            changed.current().profiles[0]
                .as_ref()
                .unwrap()
                .0
                .objects
                .len(),
            2
        );
        assert_eq!(changed.status(now)["state"], "pending");

        // A check that cannot run keeps the searches and is tried again later.
        same.finish(Err("describe Contact: timed out".into()));
        assert_eq!(same.status(now)["state"], "not_checked");
        assert_eq!(
            same.current().profiles[0].as_ref().unwrap().0.objects.len(),
            1
        );
        assert!(!same.claim(Instant::now()));
        assert!(same.claim(Instant::now() + RETRY_AFTER_FAILURE));
    }
}
