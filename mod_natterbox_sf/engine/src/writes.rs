//! Record writes from the dialplan (`sf_create`, `sf_update`, `sf_upsert`): the org's `<write>`
//! filled from the call's variables, then either sent within the call's deadline (the new id
//! comes back) or handed to the sidecar's durable outbox (the dialplan goes on at once).
//!
//! A synchronous write runs on the engine's runtime while the call's thread waits for it, at
//! most until the deadline. When Salesforce fails or is too slow and the write is idempotent
//! (an upsert, an update, a create with a `key-field`), it also goes to the outbox, so it is
//! not lost; the dialplan sees the failure and `sf_write_queued=true`. The same token
//! hand-off, breaker, concurrency cap and 401 refresh serve writes as lookups.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use natterbox_common::record_write::{
    check_against_describe, Delivery, RecordWrite, WritableObject, WriteOp, WriteSpec,
};
use natterbox_common::salesforce::{Session, SfError};

use crate::breaker::{Admission, Failure};
use crate::engine::{Engine, OrgRuntime, TOKEN_WAIT_MARGIN};
use crate::outbox::now_ms;

/// `sf_write_status`: the lookup's failure words, and what a write can end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Created,
    Updated,
    /// Handed to the sidecar's outbox.
    Queued,
    /// The update's record, or the upsert by `Id`, does not exist.
    NotFound,
    /// The upsert's External ID matches several records.
    Multiple,
    Timeout,
    Error,
    Throttled,
    Unauthorized,
    Overloaded,
}

impl WriteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStatus::Created => "created",
            WriteStatus::Updated => "updated",
            WriteStatus::Queued => "queued",
            WriteStatus::NotFound => "not_found",
            WriteStatus::Multiple => "multiple",
            WriteStatus::Timeout => "timeout",
            WriteStatus::Error => "error",
            WriteStatus::Throttled => "throttled",
            WriteStatus::Unauthorized => "unauthorized",
            WriteStatus::Overloaded => "overloaded",
        }
    }
}

/// What the dialplan asked for.
#[derive(Debug, Clone)]
pub struct WriteRequest<'a> {
    pub org: Option<&'a str>,
    pub write: &'a str,
    /// The application: its op must be the `<write>`'s.
    pub op: WriteOp,
    pub call_uuid: &'a str,
    /// Shortens the deadline; never lengthens it.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct WriteAnswer {
    pub status: WriteStatus,
    pub org: Option<&'static str>,
    /// The record's id (created, updated or upserted).
    pub id: Option<String>,
    /// Also handed to the outbox after a failure.
    pub queued: bool,
    pub elapsed: Duration,
    pub detail: Option<String>,
}

/// How long a describe of a write's object is trusted.
const DESCRIBE_TTL: Duration = Duration::from_secs(600);

/// Describes of the objects one org's writes go to. A reload that changes the org starts
/// afresh (a new `OrgRuntime`), so the check runs again.
#[derive(Default)]
pub struct WriteObjects {
    known: parking_lot::Mutex<HashMap<String, (Instant, Arc<WritableObject>)>>,
}

impl WriteObjects {
    fn get(&self, object: &str) -> Option<Arc<WritableObject>> {
        let known = self.known.lock();
        known
            .get(&object.to_ascii_lowercase())
            .filter(|(at, _)| at.elapsed() < DESCRIBE_TTL)
            .map(|(_, o)| o.clone())
    }

    fn put(&self, object: &str, described: Arc<WritableObject>) {
        self.known
            .lock()
            .insert(object.to_ascii_lowercase(), (Instant::now(), described));
    }
}

/// The org's `<write>`s checked against its describes, off the call path (when its token
/// arrives and after each reload, with the lookup profiles): each problem is logged once,
/// naming org, write, object and field, and the describes are kept for the calls.
pub(crate) async fn check_writes(org: &OrgRuntime, session: &Session) {
    let mut objects: Vec<&str> = org
        .config
        .writes
        .iter()
        .map(|w| w.object.as_str())
        .collect();
    objects.sort_unstable_by_key(|o| o.to_ascii_lowercase());
    objects.dedup_by_key(|o| o.to_ascii_lowercase());
    for object in objects {
        let described = match org.client().describe_json(session, object).await {
            Ok(body) => WritableObject::from_describe(&body).map_err(SfError::Garbage),
            Err(e) => Err(e),
        };
        let described = match described {
            Ok(d) => Arc::new(d),
            Err(e) => {
                tracing::warn!(
                    "org {}: writes to {object} not checked against the org ({e}); checked at their first call",
                    org.name
                );
                continue;
            }
        };
        for spec in org
            .config
            .writes
            .iter()
            .filter(|w| w.object.eq_ignore_ascii_case(object))
        {
            for problem in check_against_describe(spec, &described) {
                tracing::warn!(
                    "org {}: write {}: {problem}; the write answers error until the config is fixed",
                    org.name,
                    spec.name
                );
            }
        }
        org.write_objects.put(object, described);
    }
}

/// Why a write did not go through, and whether Salesforce settled that (a refusal) or not
/// (down, slow, out of limits, no token: the write may go through later).
#[derive(Debug, Clone)]
struct Failed {
    status: WriteStatus,
    detail: String,
    settled: bool,
}

fn settled(status: WriteStatus, detail: impl Into<String>) -> Failed {
    Failed {
        status,
        detail: detail.into(),
        settled: true,
    }
}

fn unsettled(status: WriteStatus, detail: impl Into<String>) -> Failed {
    Failed {
        status,
        detail: detail.into(),
        settled: false,
    }
}

type SendResult = Result<(WriteStatus, Option<String>), Failed>;

impl Engine {
    /// One write, for FreeSWITCH's threads: returns by the deadline whatever happens. `var`
    /// reads the call's channel variables.
    pub fn write_blocking(
        &self,
        request: &WriteRequest<'_>,
        var: impl FnMut(&str) -> Option<String>,
    ) -> WriteAnswer {
        let started = Instant::now();
        let snapshot = self.snapshot();
        let fail = |status, org, detail: String| WriteAnswer {
            status,
            org,
            id: None,
            queued: false,
            elapsed: started.elapsed(),
            detail: Some(detail),
        };
        let Some(org_config) = snapshot.config.resolve_org(request.org) else {
            return fail(
                WriteStatus::Error,
                None,
                match request.org {
                    Some(name) => {
                        format!("no org \"{}\" in the config", crate::args::printable(name))
                    }
                    None => "no org given and no default-org set".into(),
                },
            );
        };
        let org = snapshot.orgs[&org_config.name].clone();
        let Some(spec) = org.config.write(request.write) else {
            return fail(
                WriteStatus::Error,
                Some(org.name),
                format!(
                    "org \"{}\" has no <write name=\"{}\">",
                    org.name,
                    crate::args::printable(request.write)
                ),
            );
        };
        if spec.op != request.op {
            return fail(
                WriteStatus::Error,
                Some(org.name),
                format!(
                    "write \"{}\" is an {}; run it with sf_{}",
                    spec.name,
                    spec.op.as_str(),
                    spec.op.as_str()
                ),
            );
        }
        let described = org.write_objects.get(&spec.object);
        if let Some(described) = &described {
            let problems = check_against_describe(spec, described);
            if !problems.is_empty() {
                return fail(WriteStatus::Error, Some(org.name), problems.join("; "));
            }
        }
        let write = match spec.build(
            org.name,
            request.call_uuid,
            described.as_deref(),
            var,
            now_ms(),
        ) {
            Ok(write) => write,
            Err(refused) => return fail(WriteStatus::Error, Some(org.name), refused.0),
        };
        if spec.delivery == Delivery::Outbox {
            let kept = self.outbox().record_write(write);
            return WriteAnswer {
                status: if kept {
                    WriteStatus::Queued
                } else {
                    WriteStatus::Error
                },
                org: Some(org.name),
                id: None,
                queued: kept,
                elapsed: started.elapsed(),
                detail: (!kept)
                    .then(|| "the event queue and the spool writer are both full".into()),
            };
        }
        let limit = snapshot.config.settings.lookup_timeout;
        let budget = [request.timeout, spec.timeout]
            .into_iter()
            .flatten()
            .fold(limit, Duration::min);
        let deadline = started + budget;
        let Some(runtime) = self.runtime_handle() else {
            return fail(
                WriteStatus::Error,
                Some(org.name),
                "module is stopping".into(),
            );
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<SendResult>(1);
        let task_org = org.clone();
        let task_write = write.clone();
        let outbox = self.outbox().clone();
        let spec_for_task = spec.clone();
        runtime.spawn(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            let result = send_admitted(
                &task_org,
                &spec_for_task,
                &task_write,
                described.is_none(),
                deadline,
                &outbox,
            )
            .await;
            let _ = tx.try_send(result);
        });
        let wait = deadline.saturating_duration_since(Instant::now());
        let result = rx.recv_timeout(wait).unwrap_or_else(|_| {
            Err(unsettled(
                WriteStatus::Timeout,
                "Salesforce did not answer before the deadline",
            ))
        });
        let (status, id, detail, settled) = match result {
            Ok((status, id)) => (status, id, None, true),
            Err(f) => (f.status, None, Some(f.detail), f.settled),
        };
        let queued = !settled && spec.is_idempotent() && self.outbox().record_write(write);
        WriteAnswer {
            status,
            org: Some(org.name),
            id,
            queued,
            elapsed: started.elapsed(),
            detail,
        }
    }
}

/// Through the org's breaker and concurrency cap, with the describe check when the object was
/// not yet described.
async fn send_admitted(
    org: &OrgRuntime,
    spec: &WriteSpec,
    write: &RecordWrite,
    describe_first: bool,
    deadline: tokio::time::Instant,
    outbox: &crate::outbox::Outbox,
) -> SendResult {
    let probe = match org.breaker.admit(Instant::now()) {
        Admission::Allowed => false,
        Admission::Probe => true,
        Admission::Rejected(Failure::LimitExceeded) => {
            return Err(unsettled(
                WriteStatus::Throttled,
                "org is over its API limits; backing off",
            ))
        }
        Admission::Rejected(Failure::Unhealthy) => {
            return Err(unsettled(
                WriteStatus::Error,
                "Salesforce is failing; backing off",
            ))
        }
    };
    let Ok(_permit) = tokio::time::timeout_at(deadline, org.concurrency.acquire()).await else {
        return Err(unsettled(
            WriteStatus::Timeout,
            "waited for a free request slot until the deadline",
        ));
    };
    let result = with_token(org, deadline, outbox, |session| async move {
        if describe_first {
            let body = org.client().describe_json(&session, &spec.object).await?;
            let described = WritableObject::from_describe(&body).map_err(SfError::Garbage)?;
            let problems = check_against_describe(spec, &described);
            org.write_objects.put(&spec.object, Arc::new(described));
            if !problems.is_empty() {
                return Ok(Err(problems.join("; ")));
            }
        }
        send(org, write, &session).await.map(Ok)
    })
    .await;
    let result = match result {
        Ok(Ok(sent)) => Ok(sent),
        Ok(Err(problems)) => Err(settled(WriteStatus::Error, problems)),
        Err(e) => Err(e),
    };
    if probe && matches!(&result, Err(f) if !f.settled) {
        org.breaker.on_inconclusive();
    }
    result
}

/// The REST call for the write; its status and the record's id.
async fn send(
    org: &OrgRuntime,
    write: &RecordWrite,
    session: &Session,
) -> Result<(WriteStatus, Option<String>), SfError> {
    let written = natterbox_common::record_write::send(org.client(), session, write).await?;
    org.record_limit(written.limit);
    let status = if written.created {
        WriteStatus::Created
    } else {
        WriteStatus::Updated
    };
    Ok((status, Some(written.id)))
}

/// Runs `call` with the org's token until the deadline; on 401 asks the sidecar for a new
/// token once and runs it again with that one. Salesforce's answers become statuses.
async fn with_token<T, F, Fut>(
    org: &OrgRuntime,
    deadline: tokio::time::Instant,
    outbox: &crate::outbox::Outbox,
    call: F,
) -> Result<T, Failed>
where
    F: Fn(Session) -> Fut,
    Fut: std::future::Future<Output = Result<T, SfError>>,
{
    let Some(mut credential) = org.tokens.credential() else {
        outbox.token_refresh(&org.config.name, 0, false);
        org.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Err(unsettled(
            WriteStatus::Unauthorized,
            "no access token from the sidecar yet",
        ));
    };
    let mut retried = false;
    loop {
        org.requests.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout_at(deadline, call(credential.session.clone()))
            .await
            .unwrap_or(Err(SfError::Timeout));
        match result {
            Ok(v) => {
                org.breaker.on_success();
                org.worked_generation
                    .fetch_max(credential.generation, Ordering::Relaxed);
                return Ok(v);
            }
            Err(SfError::Api(e)) if e.is_invalid_session() => {
                org.unauthorized.fetch_add(1, Ordering::Relaxed);
                if retried {
                    return Err(unsettled(
                        WriteStatus::Unauthorized,
                        "the new token was refused too",
                    ));
                }
                let worked = org.worked_generation.load(Ordering::Relaxed) == credential.generation;
                outbox.token_refresh(&org.config.name, credential.generation, worked);
                let wait_until = deadline.checked_sub(TOKEN_WAIT_MARGIN).unwrap_or(deadline);
                match org
                    .tokens
                    .newer_than(credential.generation, wait_until)
                    .await
                {
                    Some(newer) => {
                        credential = newer;
                        retried = true;
                    }
                    None => {
                        return Err(unsettled(
                            WriteStatus::Unauthorized,
                            "token refused and no new one arrived before the deadline",
                        ))
                    }
                }
            }
            Err(SfError::Api(e)) if e.is_limit_exceeded() => {
                org.breaker
                    .on_failure(Failure::LimitExceeded, Instant::now());
                return Err(unsettled(WriteStatus::Throttled, e.to_string()));
            }
            Err(SfError::Api(e)) if e.is_server_side() => {
                org.breaker.on_failure(Failure::Unhealthy, Instant::now());
                return Err(unsettled(WriteStatus::Error, e.to_string()));
            }
            Err(SfError::Api(e)) if e.status == 300 => {
                return Err(settled(WriteStatus::Multiple, e.to_string()))
            }
            Err(SfError::Api(e)) if e.status == 404 && e.code == "NOT_FOUND" => {
                return Err(settled(WriteStatus::NotFound, e.to_string()))
            }
            // The record's own problem (a validation rule, a bad reference): settled.
            Err(SfError::Api(e)) => return Err(settled(WriteStatus::Error, e.to_string())),
            Err(SfError::Timeout) => {
                org.breaker.on_failure(Failure::Unhealthy, Instant::now());
                return Err(unsettled(
                    WriteStatus::Timeout,
                    "Salesforce did not answer before the deadline",
                ));
            }
            Err(e @ (SfError::Transport(_) | SfError::Garbage(_))) => {
                org.breaker.on_failure(Failure::Unhealthy, Instant::now());
                return Err(unsettled(WriteStatus::Error, e.to_string()));
            }
        }
    }
}
