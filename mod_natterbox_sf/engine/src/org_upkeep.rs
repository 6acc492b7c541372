//! Background work per org, off the call path: the config check against the org (when its
//! token first arrives and after each reload) and the owner directory's loads (on an interval
//! and after each reload). Neither ever waits on a call, and no call waits on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use natterbox_common::salesforce::Session;
use tokio::sync::watch;

use crate::breaker::BreakerView;
use crate::engine::{OrgRuntime, Snapshot};
use crate::owners;
use crate::schema_check;

/// How often the orgs are looked at: a new token is noticed within this.
const TICK: Duration = Duration::from_millis(100);

pub(crate) async fn upkeep(snapshot: Arc<ArcSwap<Snapshot>>, mut stop: watch::Receiver<bool>) {
    loop {
        let current = snapshot.load_full();
        let now = Instant::now();
        let interval = current.config.settings.owner_refresh;
        for org in current.orgs.values() {
            let Some(credential) = org.tokens.credential() else {
                continue;
            };
            // While the org is over its API limits or failing, background work waits too.
            if !matches!(org.breaker.view(now), BreakerView::Closed) {
                continue;
            }
            if org.schema.claim(now) {
                tokio::spawn(check_org(org.clone(), credential.session.clone()));
            }
            if org.queries.values().any(|q| q.wants_background_check()) {
                tokio::spawn(crate::query::check_in_background(
                    org.clone(),
                    credential.session.clone(),
                ));
            }
            if org.owners.claim_load(now) {
                tokio::spawn(load_owners(org.clone(), credential.session, interval));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}

async fn check_org(org: Arc<OrgRuntime>, session: Session) {
    let name = org.name;
    let result = schema_check::check(org.client(), &session, org.schema.configured()).await;
    match &result {
        Ok((problems, _)) if problems.is_empty() => {
            tracing::info!("org {name}: lookup profiles checked against the org: no problems")
        }
        Ok((problems, _)) => {
            for problem in problems {
                tracing::warn!("org {name}: {problem}");
            }
        }
        Err(e) => tracing::warn!(
            "org {name}: lookup profiles not checked against the org ({e}); using them as configured, trying again in {}s",
            schema_check::RETRY_AFTER_FAILURE.as_secs()
        ),
    }
    org.schema.finish(result);
    crate::writes::check_writes(&org, &session).await;
}

async fn load_owners(org: Arc<OrgRuntime>, session: Session, interval: Duration) {
    let name = org.name;
    let first = org.owners.snapshot().is_none();
    let result = tokio::time::timeout(
        owners::LOAD_TIMEOUT,
        owners::load(org.client(), &session, &org.config.owners),
    )
    .await
    .unwrap_or_else(|_| Err("timed out".into()));
    match &result {
        Ok(snapshot) => {
            let line = format!(
                "org {name}: owner directory loaded: {} users, {} queues in {} ms",
                snapshot.users,
                snapshot.queues,
                snapshot.took.as_millis()
            );
            if first {
                tracing::info!("{line}");
            } else {
                tracing::debug!("{line}");
            }
            for field in &snapshot.unknown_fields {
                tracing::warn!(
                    "org {name}: <owners> field User.{field}: the org's User object has no such field; left out of the owner directory"
                );
            }
            if let Some(e) = &snapshot.queue_error {
                tracing::warn!("org {name}: owner directory has no queues: {e}");
            }
        }
        Err(e) => tracing::warn!(
            "org {name}: owner directory not loaded ({e}); owners show only their id and type until it is"
        ),
    }
    org.owners.finish_load(result, interval);
}
