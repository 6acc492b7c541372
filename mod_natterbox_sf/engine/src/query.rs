//! Named queries (`sf_query`, `sf_search`, `sf query`): a configured SOQL or SOSL template,
//! values bound from the call by the type of the field each is compared with, run through the
//! same path as lookups — the cache (per org, query and bound values, with the query's TTLs),
//! single flight, the org's breaker, concurrency cap, token retry and deadline.
//!
//! Bind types come from the org itself: each bind's field is described once per config
//! generation (in the background when the org's token arrives, or by the first query if that
//! comes first), and a query whose field the org lacks answers `error` with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use natterbox_common::named_query::{Bind, NamedQuery, QueryKind};
use natterbox_common::salesforce::bind::{self, BindType};
use natterbox_common::salesforce::describe::{Parent, SObjectDescribe};
use natterbox_common::salesforce::{LimitInfo, SalesforceClient, Session, SfError};
use serde_json::Value;

use crate::cache::{Cached, ScopeId, ScopedKey};
use crate::engine::{call_org, Engine, OrgRuntime, Times};
use crate::flight::{FlightGuard, Joined};
use crate::outcome::{LookupStatus, Outcome, PackedVars, Source, VarNames};

/// A named query's cache key: its scope (org, query, config generation) and the bound values
/// as the call gave them, each length-prefixed so no two value lists share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub scope: ScopeId,
    pub values: Arc<str>,
}

impl ScopedKey for QueryKey {
    fn scope(&self) -> ScopeId {
        self.scope
    }
}

/// How an org's named queries reach Salesforce. REST today; another API (the SOAP partner
/// API's `query`/`search`) plugs in as a variant that returns records in the REST JSON shape
/// (`attributes.type`, fields by name, parents as nested objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryTransport {
    Rest,
}

impl QueryTransport {
    pub fn for_org(_org: &OrgRuntime) -> QueryTransport {
        QueryTransport::Rest
    }

    /// Runs one SOQL query (up to `max_rows` records) or SOSL search for the org.
    pub async fn run(
        self,
        client: &SalesforceClient,
        session: &Session,
        kind: QueryKind,
        text: &str,
        max_rows: usize,
    ) -> Result<(Vec<Value>, Option<LimitInfo>), SfError> {
        match (self, kind) {
            (QueryTransport::Rest, QueryKind::Soql) => client.query(session, text, max_rows).await,
            (QueryTransport::Rest, QueryKind::Sosl) => client.search(session, &text.into()).await,
        }
    }
}

/// A named query of one org config generation.
pub struct QueryRuntime {
    pub query: NamedQuery,
    pub scope: ScopeId,
    /// Set once the org has been described: each bind's type, or why the query cannot run.
    checked: ArcSwapOption<Result<Vec<BindType>, String>>,
    checking: tokio::sync::Mutex<()>,
    background_started: AtomicBool,
}

impl QueryRuntime {
    pub fn new(query: NamedQuery, scope: ScopeId) -> QueryRuntime {
        QueryRuntime {
            query,
            scope,
            checked: ArcSwapOption::empty(),
            checking: tokio::sync::Mutex::new(()),
            background_started: AtomicBool::new(false),
        }
    }

    /// The check's result, if it has run.
    pub fn checked(&self) -> Option<Arc<Result<Vec<BindType>, String>>> {
        self.checked.load_full()
    }

    /// Whether the background check has yet to start.
    pub(crate) fn wants_background_check(&self) -> bool {
        self.checked.load().is_none() && !self.background_started.load(Ordering::Acquire)
    }

    /// True once for the background check.
    pub(crate) fn claim_background_check(&self) -> bool {
        self.checked.load().is_none() && !self.background_started.swap(true, Ordering::AcqRel)
    }

    /// Describes the objects (once; concurrent callers wait for the one check) and stores
    /// the bind types or the reason the query cannot run. Transport errors are returned and
    /// leave the query unchecked.
    pub(crate) async fn ensure_checked(
        &self,
        client: &SalesforceClient,
        session: &Session,
    ) -> Result<Arc<Result<Vec<BindType>, String>>, SfError> {
        let _one = self.checking.lock().await;
        if let Some(done) = self.checked.load_full() {
            return Ok(done);
        }
        let result = Arc::new(check(client, session, &self.query).await?);
        self.checked.store(Some(result.clone()));
        Ok(result)
    }

    /// Status for `sf status`.
    pub fn status(&self) -> serde_json::Value {
        let binds: Vec<&str> = self
            .query
            .template
            .binds
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        match self.checked().as_deref() {
            None => {
                serde_json::json!({"kind": self.query.kind.as_str(), "binds": binds, "check": "pending"})
            }
            Some(Ok(types)) => serde_json::json!({
                "kind": self.query.kind.as_str(),
                "binds": binds,
                "types": types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "check": "ok",
            }),
            Some(Err(e)) => {
                serde_json::json!({"kind": self.query.kind.as_str(), "binds": binds, "check": "failed", "error": e})
            }
        }
    }
}

/// The type a field path ends in, following relationships through the org's describes.
async fn field_type(
    client: &SalesforceClient,
    session: &Session,
    describes: &mut HashMap<String, Arc<SObjectDescribe>>,
    object: &str,
    path: &str,
) -> Result<Result<String, String>, SfError> {
    let mut current = match describe(client, session, describes, object).await? {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let segments: Vec<&str> = path.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        if i + 1 == segments.len() {
            return Ok(match current.field(segment) {
                Some(f) => Ok(f.field_type.clone()),
                None => Err(format!("{} has no field {segment}", current.name)),
            });
        }
        let parent = match current.relationship(segment) {
            Some((_, parent)) => parent,
            None => {
                return Ok(Err(format!(
                    "{} has no relationship {segment}",
                    current.name
                )))
            }
        };
        current = match parent {
            Parent::NameEntity => Arc::new(SObjectDescribe::name_entity()),
            Parent::Object(name) => match describe(client, session, describes, &name).await? {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            },
        };
    }
    Ok(Err(format!("{path}: empty field path")))
}

async fn describe(
    client: &SalesforceClient,
    session: &Session,
    describes: &mut HashMap<String, Arc<SObjectDescribe>>,
    object: &str,
) -> Result<Result<Arc<SObjectDescribe>, String>, SfError> {
    if let Some(d) = describes.get(object) {
        return Ok(Ok(d.clone()));
    }
    match client.describe(session, object).await {
        Ok(d) => {
            let d = Arc::new(d);
            describes.insert(object.to_string(), d.clone());
            Ok(Ok(d))
        }
        Err(SfError::Api(e)) if e.status == 404 || e.code == "NOT_FOUND" => {
            Ok(Err(format!("the org has no object {object}")))
        }
        Err(e) => Err(e),
    }
}

/// Checks a query against the org: every object and selected field exists, and each bind's
/// field has a type a value can be bound as.
async fn check(
    client: &SalesforceClient,
    session: &Session,
    query: &NamedQuery,
) -> Result<Result<Vec<BindType>, String>, SfError> {
    let mut describes = HashMap::new();
    for (object, fields) in &query.template.objects {
        for field in fields {
            if let Err(e) = field_type(client, session, &mut describes, object, field).await? {
                return Ok(Err(format!("selects {object}.{field}: {e}")));
            }
        }
    }
    let mut types = Vec::with_capacity(query.template.binds.len());
    for b in &query.template.binds {
        let Some(field) = &b.field else {
            // A SOSL search term.
            types.push(BindType::String);
            continue;
        };
        let object = &query.template.objects[0].0;
        let field_type = match field_type(client, session, &mut describes, object, field).await? {
            Ok(t) => t,
            Err(e) => {
                return Ok(Err(format!(
                    ":{} compares with {object}.{field}: {e}",
                    b.name
                )))
            }
        };
        match BindType::for_field_type(&field_type) {
            Some(t) => types.push(t),
            None => {
                return Ok(Err(format!(
                    ":{} compares with {object}.{field}, a {field_type} field: a call's value cannot be bound to it",
                    b.name
                )))
            }
        }
    }
    Ok(Ok(types))
}

/// The query text with every value bound, or which value is wrong and why.
pub fn render(query: &NamedQuery, types: &[BindType], values: &[String]) -> Result<String, String> {
    query
        .template
        .render(|i| {
            let b = &query.template.binds[i];
            match (query.kind, b.list) {
                (QueryKind::Sosl, _) => bind::sosl_bound_phrase(&values[i]),
                (QueryKind::Soql, true) => bind::soql_list(types[i], &values[i]),
                (QueryKind::Soql, false) => bind::soql_literal(types[i], &values[i]),
            }
        })
        .map_err(|(i, e)| {
            let b = &query.template.binds[i];
            format!("the value for :{} (variable {}) is {e}", b.name, b.variable)
        })
}

/// A JSON value at a field path of a record (keys compared without case, as SOQL names are).
fn value_at<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = record;
    for segment in path.split('.') {
        let object = current.as_object()?;
        current = object.get(segment).or_else(|| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(segment))
                .map(|(_, v)| v)
        })?;
    }
    Some(current)
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The answer's channel variables: one row flat, several rows numbered from 1, and the count.
pub fn outcome_from_rows(query: &NamedQuery, rows: &[Value]) -> Outcome {
    let rows = &rows[..rows.len().min(query.max_rows)];
    let count_var = format!("sf_{}_count", query.name);
    let mut cells: Vec<(String, String)> = Vec::new();
    for (i, record) in rows.iter().enumerate() {
        let columns: &[String] = match query.kind {
            QueryKind::Soql => query.template.columns(),
            QueryKind::Sosl => {
                let object = value_at(record, "attributes.type").and_then(Value::as_str);
                if let Some(object) = object {
                    cells.push((
                        query.variable("type", i + 1, rows.len()),
                        object.to_string(),
                    ));
                }
                query
                    .template
                    .objects
                    .iter()
                    .find(|(o, _)| object.is_some_and(|t| t.eq_ignore_ascii_case(o)))
                    .map_or(&[], |(_, f)| f)
            }
        };
        for column in columns {
            if let Some(text) = value_at(record, column).and_then(text_of) {
                cells.push((query.variable(column, i + 1, rows.len()), text));
            }
        }
    }
    let names = VarNames::new(
        std::iter::once(count_var.as_str()).chain(cells.iter().map(|(n, _)| n.as_str())),
    );
    let mut vars = PackedVars::builder(&names);
    vars.push(&count_var, &rows.len().to_string());
    for (name, value) in &cells {
        vars.push(name, value);
    }
    Outcome {
        status: if rows.is_empty() {
            LookupStatus::NotFound
        } else {
            LookupStatus::Found
        },
        match_count: rows.len() as u32,
        vars: vars.build(),
    }
}

/// What the dialplan asked for: the query, and where its values come from.
#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    pub org: Option<String>,
    pub name: String,
    /// `sf_query` runs SOQL queries, `sf_search` SOSL searches.
    pub kind: Option<QueryKind>,
    /// Shortens the configured `lookup-timeout-ms`; never lengthens it.
    pub timeout: Option<Duration>,
}

/// What the dialplan gets (`sf_query_status`, `sf_query_source`, the row variables).
#[derive(Debug, Clone)]
pub struct QueryAnswer {
    pub status: LookupStatus,
    pub source: Option<Source>,
    pub elapsed: Duration,
    pub org: Option<&'static str>,
    pub outcome: Option<Arc<Outcome>>,
    /// A single row's owner (its `OwnerId` column), from the owner directory at the time of
    /// the answer, so the dialplan can route to the owner as after `sf_lookup`.
    pub owner: Option<Arc<crate::owners::Owner>>,
    pub detail: Option<String>,
}

/// The owner of a one-row answer that selects `OwnerId`.
fn owner_of(
    org: &OrgRuntime,
    query: &NamedQuery,
    outcome: &Outcome,
) -> Option<Arc<crate::owners::Owner>> {
    if outcome.match_count != 1 {
        return None;
    }
    let column = query
        .template
        .columns_of_all()
        .find(|c| c.eq_ignore_ascii_case("OwnerId"))?;
    let id = outcome.vars.get(&query.variable(column, 1, 1))?;
    Some(org.owners.resolve(id))
}

type QueryResult = Result<Arc<Outcome>, (LookupStatus, String)>;

impl Engine {
    /// Runs a named query for a FreeSWITCH thread: returns by the deadline whatever happens.
    /// `value_of` gives each bind's value (the app reads the bind's channel variable).
    pub fn query_blocking(
        &self,
        request: &QueryRequest,
        value_of: &dyn Fn(&Bind) -> Option<String>,
    ) -> QueryAnswer {
        let started = Instant::now();
        let fail = |status, org, detail: String| QueryAnswer {
            status,
            source: None,
            elapsed: started.elapsed(),
            org,
            outcome: None,
            owner: None,
            detail: Some(detail),
        };
        let snapshot = self.snapshot();
        let Some(org_config) = snapshot.config.resolve_org(request.org.as_deref()) else {
            return fail(
                LookupStatus::Error,
                None,
                match &request.org {
                    Some(name) => {
                        format!("no org \"{}\" in the config", crate::args::printable(name))
                    }
                    None => "no org given and no default-org set".into(),
                },
            );
        };
        let org = snapshot.orgs[&org_config.name].clone();
        let Some(q) = org
            .queries
            .get(&request.name)
            .filter(|q| request.kind.is_none_or(|k| k == q.query.kind))
            .cloned()
        else {
            return fail(
                LookupStatus::Error,
                Some(org.name),
                format!(
                    "org \"{}\" has no {} \"{}\"",
                    org.name,
                    request.kind.map_or("query or search", |k| k.as_str()),
                    crate::args::printable(&request.name)
                ),
            );
        };
        let mut values = Vec::with_capacity(q.query.template.binds.len());
        let mut key_text = String::new();
        for b in &q.query.template.binds {
            let Some(value) = value_of(b) else {
                return fail(
                    LookupStatus::Error,
                    Some(org.name),
                    format!("no value for :{} (variable {})", b.name, b.variable),
                );
            };
            key_text.push_str(&value.len().to_string());
            key_text.push(':');
            key_text.push_str(&value);
            values.push(value);
        }
        let key = QueryKey {
            scope: q.scope,
            values: key_text.into(),
        };
        let settings = &snapshot.config.settings;
        let deadline = started
            + request
                .timeout
                .map_or(settings.lookup_timeout, |t| t.min(settings.lookup_timeout));
        let hit = |outcome: Arc<Outcome>, source| QueryAnswer {
            status: outcome.status,
            source: Some(source),
            elapsed: started.elapsed(),
            org: Some(org.name),
            owner: owner_of(&org, &q.query, &outcome),
            outcome: Some(outcome),
            detail: None,
        };
        let flight = match self.query_cache.get(&key) {
            Cached::Fresh(outcome) => return hit(outcome, Source::Cache),
            Cached::Stale {
                outcome,
                claimed_refresh,
            } => {
                if claimed_refresh {
                    if let Joined::Leader(flight) = self.query_flights.join(&key) {
                        self.spawn_query(
                            &org,
                            &q,
                            key.clone(),
                            values,
                            flight,
                            Instant::now() + settings.lookup_timeout,
                        );
                    }
                }
                return hit(outcome, Source::Stale);
            }
            Cached::Miss => {
                // A value that cannot be bound is refused here, without a flight.
                if let Some(checked) = q.checked() {
                    match checked.as_ref() {
                        Err(e) => return fail(LookupStatus::Error, Some(org.name), e.clone()),
                        Ok(types) => {
                            if let Err(e) = render(&q.query, types, &values) {
                                return fail(LookupStatus::Error, Some(org.name), e);
                            }
                        }
                    }
                }
                match self.query_flights.join(&key) {
                    Joined::Leader(flight) => {
                        self.spawn_query(&org, &q, key.clone(), values, flight.clone(), deadline);
                        flight
                    }
                    Joined::Follower(flight) => flight,
                }
            }
        };
        let (status, source, outcome, detail) = match flight.wait_until(deadline) {
            Some(Ok(outcome)) => (
                outcome.status,
                Some(Source::Salesforce),
                Some(outcome),
                None,
            ),
            Some(Err((status, detail))) => (status, None, None, Some(detail)),
            None => (
                LookupStatus::Timeout,
                None,
                None,
                Some("no answer before the deadline".to_string()),
            ),
        };
        QueryAnswer {
            status,
            source,
            elapsed: started.elapsed(),
            org: Some(org.name),
            owner: outcome.as_ref().and_then(|o| owner_of(&org, &q.query, o)),
            outcome,
            detail,
        }
    }

    fn spawn_query(
        &self,
        org: &Arc<OrgRuntime>,
        q: &Arc<QueryRuntime>,
        key: QueryKey,
        values: Vec<String>,
        flight: Arc<crate::flight::Flight<QueryResult>>,
        deadline: Instant,
    ) {
        let guard = FlightGuard::new(
            self.query_flights.clone(),
            key.clone(),
            flight,
            Err((
                LookupStatus::Error,
                "the query task ended without an answer".into(),
            )),
        );
        let Some(runtime) = self.runtime_handle() else {
            guard.finish(Err((LookupStatus::Error, "module is stopping".into())));
            return;
        };
        let (org, q, cache, outbox) = (
            org.clone(),
            q.clone(),
            self.query_cache.clone(),
            self.outbox().clone(),
        );
        let handed_off = Instant::now();
        runtime.spawn(async move {
            let started = Instant::now();
            let result = if started >= deadline {
                Err((
                    LookupStatus::Overloaded,
                    "the module's runtime ran the query past the deadline (host overloaded)"
                        .to_string(),
                ))
            } else {
                let times = Times {
                    budget: deadline.saturating_duration_since(handed_off),
                    started,
                    deadline,
                };
                let run = run_query(&org, &q, &values, times, &outbox);
                match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), run).await {
                    Ok(result) => result,
                    Err(_) => Err((
                        LookupStatus::Timeout,
                        "Salesforce did not answer before the deadline".to_string(),
                    )),
                }
            };
            match &result {
                Ok(outcome) => {
                    cache.insert_with_ttls(
                        key,
                        outcome.clone(),
                        q.query.cache_ttl,
                        q.query.negative_ttl,
                    );
                }
                Err(_) => cache.release_refresh(&key),
            }
            guard.finish(result);
        });
    }
}

async fn run_query(
    org: &OrgRuntime,
    q: &QueryRuntime,
    values: &[String],
    times: Times,
    outbox: &crate::outbox::Outbox,
) -> QueryResult {
    let client = org.client();
    let checked = match q.checked() {
        Some(done) => done,
        None => {
            call_org(org, times, outbox, |session| async move {
                q.ensure_checked(client, &session).await.map(|r| (r, None))
            })
            .await?
        }
    };
    let types = match checked.as_ref() {
        Ok(types) => types,
        Err(e) => return Err((LookupStatus::Error, e.clone())),
    };
    let text = render(&q.query, types, values).map_err(|e| (LookupStatus::Error, e))?;
    let transport = QueryTransport::for_org(org);
    let (kind, max_rows) = (q.query.kind, q.query.max_rows);
    let rows = call_org(org, times, outbox, |session| {
        let text = &text;
        async move { transport.run(client, &session, kind, text, max_rows).await }
    })
    .await?;
    org.breaker.on_success();
    Ok(Arc::new(outcome_from_rows(&q.query, &rows)))
}

/// Builds an org's named queries, each in a cache scope of its own.
pub(crate) fn org_queries(
    queries: &[NamedQuery],
    mut next_scope: impl FnMut() -> ScopeId,
) -> HashMap<String, Arc<QueryRuntime>> {
    queries
        .iter()
        .map(|q| {
            (
                q.name.clone(),
                Arc::new(QueryRuntime::new(q.clone(), next_scope())),
            )
        })
        .collect()
}

/// The background check of an org's queries, when its token is there (org upkeep).
pub(crate) async fn check_in_background(org: Arc<OrgRuntime>, session: Session) {
    for q in org.queries.values() {
        if !q.claim_background_check() {
            continue;
        }
        let checked = tokio::time::timeout(
            Duration::from_secs(20),
            q.ensure_checked(org.client(), &session),
        )
        .await;
        let name = org.name;
        match checked {
            Ok(Ok(result)) => match result.as_ref() {
                Ok(types) => tracing::info!(
                    "org {name}: {} {} checked against the org: binds {}",
                    q.query.kind.as_str(),
                    q.query.name,
                    q.query
                        .template
                        .binds
                        .iter()
                        .zip(types)
                        .map(|(b, t)| format!(":{} {}", b.name, t.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => tracing::error!(
                    "org {name}: {} {} cannot run: {e}",
                    q.query.kind.as_str(),
                    q.query.name
                ),
            },
            Ok(Err(e)) => tracing::warn!(
                "org {name}: {} {} not checked against the org yet ({e}); the first call checks it",
                q.query.kind.as_str(),
                q.query.name
            ),
            Err(_) => tracing::warn!(
                "org {name}: {} {} not checked against the org yet (timed out); the first call checks it",
                q.query.kind.as_str(),
                q.query.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::named_query::parse_soql;

    fn query(soql: &str, max_rows: usize) -> NamedQuery {
        NamedQuery {
            name: "open_case".into(),
            kind: QueryKind::Soql,
            text: soql.into(),
            template: parse_soql(soql).unwrap(),
            mappings: vec![],
            cache_ttl: None,
            negative_ttl: None,
            max_rows,
        }
    }

    #[test]
    fn one_row_is_flat_and_several_are_numbered() {
        let q = query(
            "SELECT Id, Status, Owner.Name FROM Case WHERE ContactId = :c",
            5,
        );
        let row = |id: &str| serde_json::json!({"attributes": {"type": "Case"}, "Id": id, "Status": "New", "Owner": {"Name": "Ann"}});
        let one = outcome_from_rows(&q, &[row("500A")]);
        assert_eq!(one.status, LookupStatus::Found);
        assert_eq!(one.vars.get("sf_open_case_Id"), Some("500A"));
        assert_eq!(one.vars.get("sf_open_case_Owner_Name"), Some("Ann"));
        assert_eq!(one.vars.get("sf_open_case_count"), Some("1"));
        let two = outcome_from_rows(&q, &[row("500A"), row("500B")]);
        assert_eq!(two.vars.get("sf_open_case_2_Id"), Some("500B"));
        assert_eq!(two.vars.get("sf_open_case_count"), Some("2"));
        let none = outcome_from_rows(&q, &[]);
        assert_eq!(none.status, LookupStatus::NotFound);
        assert_eq!(none.vars.get("sf_open_case_count"), Some("0"));
    }

    #[test]
    fn renders_each_value_by_its_type() {
        let q = query(
            "SELECT Id FROM Case WHERE Subject = :s AND Amount__c = :n AND Id IN (:ids)",
            1,
        );
        let types = [BindType::String, BindType::Number, BindType::Id];
        let text = render(
            &q,
            &types,
            &["it's".into(), "12.5".into(), "500000000000001".into()],
        )
        .unwrap();
        assert!(text.contains("Subject = 'it\\'s'"), "{text}");
        assert!(text.contains("Amount__c = 12.5"), "{text}");
        let err = render(
            &q,
            &types,
            &["x".into(), "1 OR Id != null".into(), "x".into()],
        )
        .unwrap_err();
        assert!(err.contains(":n") && err.contains("not a number"), "{err}");
    }
}
