//! The running subscriptions, one per org and object, kept in step with the configuration: at
//! start and after each reload (SIGHUP), a subscription the config no longer has is stopped, a
//! new one is started, and one whose settings changed (`pubsub-url`, `batch`, the fields the
//! profiles read) is started again; the others stream on undisturbed. A stopped or restarted
//! subscription resumes later from its stored replay id, so nothing is missed across a reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natterbox_common::config::Config;
use salesforce_pubsub::change_event;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ReplayStore, Subscription, TopicStream, WatchedFields};
use crate::App;

/// How long a stopping subscription may take to end.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// What a subscription runs with: a change of any of it starts it again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    pubsub_url: String,
    batch: u32,
    watched: WatchedFields,
}

struct Running {
    settings: Settings,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    subscription: Arc<Subscription>,
}

pub struct Streams {
    replay: Arc<ReplayStore>,
    /// By (org, object).
    running: Mutex<HashMap<(String, String), Running>>,
}

impl Streams {
    pub fn new(replay: Arc<ReplayStore>) -> Streams {
        Streams {
            replay,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts, stops and restarts subscriptions so they are exactly the config's.
    pub fn apply(&self, app: &Arc<App>, config: &Config) {
        let extra_ca = config
            .settings
            .ca_file
            .as_ref()
            .and_then(|path| std::fs::read(path).ok());
        let mut wanted: HashMap<(String, String), (Settings, &_)> = HashMap::new();
        for org in &config.orgs {
            let Some(cdc) = &org.change_data_capture else {
                continue;
            };
            for object in &cdc.objects {
                let settings = Settings {
                    pubsub_url: cdc.pubsub_url.clone(),
                    batch: cdc.batch,
                    watched: WatchedFields::of(org, object),
                };
                wanted.insert((org.name.clone(), object.clone()), (settings, cdc));
            }
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<(String, String)> = running
            .iter()
            .filter(|(key, r)| wanted.get(*key).is_none_or(|(s, _)| *s != r.settings))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(old) = running.remove(&key) {
                tracing::info!(org = %key.0, object = %key.1, "change event subscription stopped (configuration reloaded)");
                stop(app, old);
            }
        }
        for ((org, object), (settings, cdc)) in wanted {
            let key = (org.clone(), object.clone());
            if running.contains_key(&key) {
                continue;
            }
            let topic = change_event::topic_of(&object);
            let subscription = app.change_events.add(&org, &object, &topic);
            let stream = TopicStream {
                app: app.clone(),
                config: cdc.clone(),
                watched: settings.watched.clone(),
                extra_ca: extra_ca.clone(),
                replay: self.replay.clone(),
                subscription: subscription.clone(),
            };
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(stream.run(stopped));
            running.insert(
                key,
                Running {
                    settings,
                    stop,
                    task,
                    subscription,
                },
            );
        }
    }

    /// Stops every subscription (the sidecar is draining) and waits a little for each.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for running in all {
            let _ = running.stop.send(true);
            let _ = tokio::time::timeout(STOP_WAIT, running.task).await;
        }
    }
}

/// Ends a subscription's task (it resumes from its replay id if started again) and takes it
/// out of `/status` and `/metrics`.
fn stop(app: &App, running: Running) {
    let _ = running.stop.send(true);
    app.change_events.remove(&running.subscription);
    let task = running.task;
    tokio::spawn(async move {
        if tokio::time::timeout(STOP_WAIT, task).await.is_err() {
            tracing::warn!("a stopped change event subscription did not end in time");
        }
    });
}
