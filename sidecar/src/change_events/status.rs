//! What each Change Data Capture subscription is doing, for `/status` and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One org+topic subscription's figures.
#[derive(Default)]
pub struct Subscription {
    pub org: String,
    pub object: String,
    pub topic: String,
    pub streaming: AtomicBool,
    pub events: AtomicU64,
    pub invalidations_sent: AtomicU64,
    /// Updates of fields no cached answer holds (`watched_fields`): nothing to drop.
    pub unwatched: AtomicU64,
    /// Events no module was connected to hear (their replay id is not kept: they come again).
    pub undelivered: AtomicU64,
    pub reconnects: AtomicU64,
    pub replay_refused: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Subscription {
    pub fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Serialize)]
struct SubscriptionStatus {
    org: String,
    object: String,
    topic: String,
    state: &'static str,
    events: u64,
    unwatched: u64,
    reconnects: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

#[derive(Default)]
pub struct ChangeEventStatus {
    subscriptions: Mutex<Vec<Arc<Subscription>>>,
}

impl ChangeEventStatus {
    pub fn add(&self, org: &str, object: &str, topic: &str) -> Arc<Subscription> {
        let subscription = Arc::new(Subscription {
            org: org.to_string(),
            object: object.to_string(),
            topic: topic.to_string(),
            ..Subscription::default()
        });
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(subscription.clone());
        subscription
    }

    /// A stopped subscription leaves `/status` and `/metrics`.
    pub fn remove(&self, subscription: &Arc<Subscription>) {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, subscription));
    }

    fn all(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `/status`'s `change_data_capture`: each subscription, `streaming` or `reconnecting`.
    pub fn status(&self) -> serde_json::Value {
        let list: Vec<SubscriptionStatus> = self
            .all()
            .iter()
            .map(|s| SubscriptionStatus {
                org: s.org.clone(),
                object: s.object.clone(),
                topic: s.topic.clone(),
                state: if s.streaming.load(Ordering::Relaxed) {
                    "streaming"
                } else {
                    "reconnecting"
                },
                events: s.events.load(Ordering::Relaxed),
                unwatched: s.unwatched.load(Ordering::Relaxed),
                reconnects: s.reconnects.load(Ordering::Relaxed),
                last_error: s.last_error(),
            })
            .collect();
        serde_json::to_value(list).unwrap_or_default()
    }

    /// The subscriptions' Prometheus lines.
    pub fn render_metrics(&self, out: &mut String) {
        let all = self.all();
        if all.is_empty() {
            return;
        }
        type Figure = fn(&Subscription) -> u64;
        let figures: [(&str, &str, &str, Figure); 7] = [
            (
                "natterbox_sidecar_cdc_stream_up",
                "gauge",
                "1 while the Pub/Sub subscription streams",
                |s| u64::from(s.streaming.load(Ordering::Relaxed)),
            ),
            (
                "natterbox_sidecar_cdc_events_total",
                "counter",
                "Change events received",
                |s| s.events.load(Ordering::Relaxed),
            ),
            (
                "natterbox_sidecar_cdc_invalidations_sent_total",
                "counter",
                "Invalidations handed to the module",
                |s| s.invalidations_sent.load(Ordering::Relaxed),
            ),
            (
                "natterbox_sidecar_cdc_unwatched_total",
                "counter",
                "Updates of fields no cached answer holds (nothing invalidated)",
                |s| s.unwatched.load(Ordering::Relaxed),
            ),
            (
                "natterbox_sidecar_cdc_undelivered_total",
                "counter",
                "Change events no module was connected to hear (replayed later)",
                |s| s.undelivered.load(Ordering::Relaxed),
            ),
            (
                "natterbox_sidecar_cdc_reconnects_total",
                "counter",
                "Pub/Sub streams lost and opened again",
                |s| s.reconnects.load(Ordering::Relaxed),
            ),
            (
                "natterbox_sidecar_cdc_replay_refused_total",
                "counter",
                "Stored replay ids Salesforce refused (resubscribed at LATEST)",
                |s| s.replay_refused.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, figure) in figures {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for s in &all {
                out.push_str(&format!(
                    "{name}{{org=\"{}\",object=\"{}\"}} {}\n",
                    s.org,
                    s.object,
                    figure(s)
                ));
            }
        }
    }
}
