//! What one host tells every other: an invalidation (records changed: drop their cached
//! answers), or an org over its API limit (open the breaker everywhere).
//!
//! Redis pub/sub, not Streams: these messages matter only to hosts up now (a host that was away
//! has an empty in-process cache, or one that the TTL bounds), they need no replay and no
//! consumer group, and a PUBLISH costs one command whatever the number of hosts.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Keys, RedisLink, Skipped};
use crate::invalidation::Extent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub org: String,
    /// The sObject type (`Contact`, `Account`, …), for the record and the log.
    pub object: String,
    pub ids: Vec<String>,
    /// Absent from older hosts' messages: the records' answers only.
    #[serde(default)]
    pub extent: Extent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Broadcast {
    Invalidate(Invalidation),
    /// Salesforce answered `REQUEST_LIMIT_EXCEEDED` to one host for this org.
    LimitExceeded {
        org: String,
    },
    /// The org's fleet-wide API usage crossed a line of its call-time budget (`usage.rs`):
    /// every host takes the figure, so all slow down (or speed up) together.
    Usage {
        org: String,
        used: u64,
        max: u64,
    },
}

/// Longest message accepted from the channel; anything longer is not ours.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(200);

/// Deletes, in Redis, every cached answer listed in the index keys, and the indexes, in one
/// round trip: the first `ARGV[1]` keys are record indexes (sets), the others the org's
/// unsettled or object indexes (sorted sets). Returns how many answers it removed.
const INVALIDATE_SCRIPT: &str = r"
local removed = 0
local sets = tonumber(ARGV[1])
for i, index in ipairs(KEYS) do
  local answers
  if i <= sets then
    answers = redis.call('SMEMBERS', index)
  else
    answers = redis.call('ZRANGE', index, 0, -1)
  end
  for _, answer in ipairs(answers) do
    removed = removed + redis.call('DEL', answer)
  end
  redis.call('DEL', index)
end
return removed
";

impl Broadcast {
    /// Sends to every host subscribed now (this one included).
    pub async fn publish(
        &self,
        link: &RedisLink,
        keys: &Keys,
        deadline: Instant,
    ) -> Result<(), Skipped> {
        let text = serde_json::to_string(self).map_err(|e| Skipped::Failed(e.to_string()))?;
        let channel = keys.channel();
        link.run(deadline, |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(text)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }
}

/// Removes the records' answers from Redis (and, as its extent says, the org's unsettled
/// answers or every answer about the object) and tells every host to drop the same from its
/// in-process cache. The hook for Change Data Capture: call it with the change event's org,
/// entity and record ids. Returns the number of answers removed from Redis.
pub async fn invalidate(
    link: &RedisLink,
    keys: &Keys,
    invalidation: Invalidation,
    deadline: Instant,
) -> Result<u64, Skipped> {
    let mut indexes: Vec<String> = invalidation
        .ids
        .iter()
        .map(|id| keys.record_index(&invalidation.org, id))
        .collect();
    let record_indexes = indexes.len();
    if invalidation.extent.takes_unsettled() {
        indexes.push(keys.unsettled_index(&invalidation.org));
    }
    if invalidation.extent == Extent::Object {
        indexes.push(keys.object_index(&invalidation.org, &invalidation.object));
    }
    let removed = link
        .run(deadline, |mut c| async move {
            redis::Script::new(INVALIDATE_SCRIPT)
                .key(indexes)
                .arg(record_indexes)
                .invoke_async::<u64>(&mut c)
                .await
        })
        .await?;
    Broadcast::Invalidate(invalidation)
        .publish(link, keys, deadline)
        .await?;
    Ok(removed)
}

/// Hears the fleet's channel until the link is dropped, resubscribing after a lost connection;
/// each message goes to `handle` on a runtime thread.
pub fn subscribe(
    link: &Arc<RedisLink>,
    keys: &Keys,
    handle: impl Fn(Broadcast) + Send + Sync + 'static,
) {
    subscribe_channel(
        link,
        keys.channel(),
        move |payload| match serde_json::from_slice::<Broadcast>(payload) {
            Ok(broadcast) => handle(broadcast),
            Err(e) => tracing::warn!("fleet channel: a message that is not ours ({e})"),
        },
        || {},
    );
}

/// Hears one channel until the link is dropped, resubscribing after a lost connection; each
/// message's payload (at most 64 KiB; longer ones are not ours) goes to `handle` on a runtime
/// thread. `on_subscribed` runs after each (re)subscription, so the caller can catch up on what
/// was published while it was not listening.
pub fn subscribe_channel(
    link: &Arc<RedisLink>,
    channel: String,
    handle: impl Fn(&[u8]) + Send + Sync + 'static,
    on_subscribed: impl Fn() + Send + Sync + 'static,
) {
    let weak = Arc::downgrade(link);
    tokio::spawn(listen(weak, channel, handle, on_subscribed));
}

async fn listen(
    link: Weak<RedisLink>,
    channel: String,
    handle: impl Fn(&[u8]) + Send + Sync,
    on_subscribed: impl Fn() + Send + Sync,
) {
    loop {
        let Some(this) = link.upgrade() else { return };
        let client = this.client().clone();
        drop(this);
        let subscribed = tokio::time::timeout(Duration::from_secs(1), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            on_subscribed();
            let mut messages = pubsub.into_on_message();
            loop {
                // Wake now and then to notice a dropped link.
                match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                    Err(_) if link.strong_count() == 0 => return,
                    Err(_) => continue,
                    Ok(None) => break,
                    Ok(Some(message)) => {
                        let payload = message.get_payload_bytes();
                        if payload.len() <= MAX_MESSAGE_BYTES {
                            handle(payload);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
    }
}
