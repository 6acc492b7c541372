//! Change Data Capture: for each org with `<change-data-capture>`, one Pub/Sub API (gRPC)
//! subscription per object's change channel. Each change event's `ChangeEventHeader` becomes
//! an `Invalidate` message to the module, which drops the cached answers naming those records
//! (and, with a fleet, Redis's and every host's). The replay id of each handled batch is kept in
//! the state directory; a restart or a lost stream subscribes again from it, so nothing is
//! missed. See docs/cdc.md.

mod replay_store;
mod status;
mod streams;
mod watched_fields;

pub use replay_store::ReplayStore;
pub use status::{ChangeEventStatus, Subscription};
pub use streams::Streams;
pub use watched_fields::WatchedFields;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use natterbox_common::config::ChangeDataCaptureConfig;
use natterbox_common::invalidation::Extent;
use natterbox_common::wire::Message;
use salesforce_pubsub::change_event::{self, ChangeEventHeader};
use salesforce_pubsub::field_bitmap;
use salesforce_pubsub::tonic::metadata::{MetadataMap, MetadataValue};
use salesforce_pubsub::tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use salesforce_pubsub::tonic::{Code, Request, Status};
use salesforce_pubsub::{FetchRequest, PubSubClient, ReplayPreset, SchemaRequest, TopicRequest};
use tokio::sync::{mpsc, watch};

use crate::App;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one unary call (GetTopic, GetSchema) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Salesforce's custom error code for a replay id it cannot resume from.
const REPLAY_REFUSED: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid";

/// One org+topic subscription, kept open until it is stopped (`streams.rs`).
struct TopicStream {
    app: Arc<App>,
    config: ChangeDataCaptureConfig,
    /// The object's fields a cached answer can hold: an update of none of them drops nothing.
    watched: WatchedFields,
    extra_ca: Option<Vec<u8>>,
    replay: Arc<ReplayStore>,
    subscription: Arc<Subscription>,
}

/// Why a stream ended.
enum Ended {
    Shutdown,
    Failed(String),
}

/// The session the call's metadata carries.
struct Auth {
    metadata: MetadataMap,
    generation: u64,
}

impl TopicStream {
    fn org(&self) -> &str {
        &self.subscription.org
    }

    fn topic(&self) -> &str {
        &self.subscription.topic
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let started = tokio::time::Instant::now();
            match self.stream_once(&mut shutdown).await {
                Ended::Shutdown => return,
                Ended::Failed(why) => {
                    self.subscription.streaming.store(false, Ordering::Relaxed);
                    self.subscription.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(org = %self.org(), topic = %self.topic(), error = %why, "change event stream lost; subscribing again");
                    self.subscription.set_error(Some(why));
                }
            }
            // A stream that lived a while starts the back-off over.
            if started.elapsed() > RETRY_CAP {
                failures = 0;
            }
            failures += 1;
            let wait = crate::backoff::delay(failures, RETRY_BASE, RETRY_CAP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The org's session as Pub/Sub metadata, waiting for the first token.
    async fn auth(&self, shutdown: &mut watch::Receiver<bool>) -> Result<Auth, Ended> {
        loop {
            if let (Some((session, generation)), Some(org_id)) = (
                self.app.tokens.session(self.org()),
                self.app.tokens.org_id(self.org()),
            ) {
                let mut metadata = MetadataMap::new();
                for (key, value) in [
                    (salesforce_pubsub::ACCESS_TOKEN_KEY, &session.access_token),
                    (salesforce_pubsub::INSTANCE_URL_KEY, &session.instance_url),
                    (salesforce_pubsub::TENANT_ID_KEY, &org_id),
                ] {
                    let value = MetadataValue::try_from(value.as_str())
                        .map_err(|_| Ended::Failed(format!("{key} is not valid metadata")))?;
                    metadata.insert(key, value);
                }
                return Ok(Auth {
                    metadata,
                    generation,
                });
            }
            tokio::select! {
                _ = self.app.tokens.wait_newer(self.org(), 0, Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return Err(Ended::Shutdown),
            }
        }
    }

    async fn connect(&self) -> Result<PubSubClient<Channel>, String> {
        let url = &self.config.pubsub_url;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("pubsub-url {url}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(pem) = &self.extra_ca {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("pubsub-url {url}: {e}"))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        // Change events are small; Salesforce's own limit on a message is far below this.
        Ok(PubSubClient::new(channel).max_decoding_message_size(16 * 1024 * 1024))
    }

    fn request<T>(&self, message: T, auth: &Auth) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = auth.metadata.clone();
        request
    }

    /// A refused call: a 401-like answer makes the token manager refresh the org's token.
    fn failed(&self, what: &str, status: &Status, auth: &Auth) -> String {
        if status.code() == Code::Unauthenticated {
            self.app
                .tokens
                .report_rejected(self.org(), auth.generation, true);
        }
        format!("{what}: {:?}: {}", status.code(), status.message())
    }

    async fn stream_once(&self, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let auth = match self.auth(shutdown).await {
            Ok(auth) => auth,
            Err(ended) => return ended,
        };
        let mut client = match self.connect().await {
            Ok(client) => client,
            Err(e) => return Ended::Failed(e),
        };
        let topic = self.topic().to_string();
        let info = match tokio::time::timeout(
            CALL_TIMEOUT,
            client.get_topic(self.request(
                TopicRequest {
                    topic_name: topic.clone(),
                },
                &auth,
            )),
        )
        .await
        {
            Ok(Ok(info)) => info.into_inner(),
            Ok(Err(status)) => return Ended::Failed(self.failed("GetTopic", &status, &auth)),
            Err(_) => return Ended::Failed("GetTopic: no answer in time".into()),
        };
        if !info.can_subscribe {
            return Ended::Failed(format!(
                "{topic}: the integration user may not subscribe (enable Change Data Capture for {} and grant View All Data or the object's read access)",
                self.subscription.object
            ));
        }
        let stored = self.replay.load(self.org(), &topic);
        let batch = self.config.batch as i32;
        let first = match &stored {
            Some(replay_id) => FetchRequest {
                topic_name: topic.clone(),
                replay_preset: ReplayPreset::Custom as i32,
                replay_id: replay_id.clone(),
                num_requested: batch,
                auth_refresh: String::new(),
            },
            None => FetchRequest {
                topic_name: topic.clone(),
                replay_preset: ReplayPreset::Latest as i32,
                replay_id: Vec::new(),
                num_requested: batch,
                auth_refresh: String::new(),
            },
        };
        let (fetch_tx, fetch_rx) = mpsc::channel::<FetchRequest>(4);
        if fetch_tx.send(first).await.is_err() {
            return Ended::Failed("the request stream closed".into());
        }
        let requests = tokio_stream::wrappers::ReceiverStream::new(fetch_rx);
        let mut responses = match client.subscribe(self.request(requests, &auth)).await {
            Ok(responses) => responses.into_inner(),
            Err(status) => return Ended::Failed(self.subscribe_refused(&status, &auth)),
        };
        self.subscription.streaming.store(true, Ordering::Relaxed);
        self.subscription.set_error(None);
        tracing::info!(org = %self.org(), topic = %topic, resumed = stored.is_some(), "subscribed to change events");
        let mut schemas: HashMap<String, change_event::Schema> = HashMap::new();
        let mut outstanding = batch;
        loop {
            let response = tokio::select! {
                r = responses.message() => r,
                _ = shutdown.changed() => return Ended::Shutdown,
            };
            let response = match response {
                Ok(Some(response)) => response,
                Ok(None) => return Ended::Failed("the server ended the stream".into()),
                Err(status) => return Ended::Failed(self.subscribe_refused(&status, &auth)),
            };
            let mut handled = None;
            for event in &response.events {
                let Some(producer) = &event.event else {
                    continue;
                };
                self.subscription.events.fetch_add(1, Ordering::Relaxed);
                if !schemas.contains_key(&producer.schema_id) {
                    match self.schema(&mut client, &producer.schema_id, &auth).await {
                        Ok(schema) => {
                            schemas.insert(producer.schema_id.clone(), schema);
                        }
                        Err(e) => return Ended::Failed(e),
                    }
                }
                let schema = &schemas[&producer.schema_id];
                match change_event::decode_header(schema, &producer.payload) {
                    Ok(header) => {
                        let changed = self.changed_fields(schema, &header);
                        if !self.matters(&header, changed.as_deref()) {
                            self.subscription.unwatched.fetch_add(1, Ordering::Relaxed);
                        } else if !self.invalidate(&header, changed.as_deref()) {
                            // Not kept: the stream opens again from the last handled replay id.
                            self.subscription
                                .undelivered
                                .fetch_add(1, Ordering::Relaxed);
                            return Ended::Failed(
                                "no module connected to hear a change; replaying it later".into(),
                            );
                        }
                    }
                    // It will not decode on a replay either: logged and passed over.
                    Err(e) => {
                        tracing::error!(org = %self.org(), topic = %topic, error = %e, "undecodable change event skipped")
                    }
                }
                handled = Some(event.replay_id.clone());
            }
            // An empty batch (a keepalive) carries the stream's position: keep it too.
            let position = handled.or_else(|| {
                (!response.latest_replay_id.is_empty()).then(|| response.latest_replay_id.clone())
            });
            if let Some(position) = position {
                if let Err(e) = self.replay.save(self.org(), &topic, &position) {
                    tracing::error!(org = %self.org(), topic = %topic, error = %e, "cannot keep the replay id: a restart would resubscribe from an older one");
                }
            }
            outstanding -= response.events.len() as i32;
            if outstanding <= batch / 2 {
                let more = FetchRequest {
                    num_requested: batch - outstanding.max(0),
                    ..FetchRequest::default()
                };
                if fetch_tx.send(more).await.is_err() {
                    return Ended::Failed("the request stream closed".into());
                }
                outstanding = batch;
            }
        }
    }

    /// A refused or broken subscription; a replay id Salesforce cannot resume from is
    /// forgotten (the next subscription starts at LATEST, said in the log and metrics).
    fn subscribe_refused(&self, status: &Status, auth: &Auth) -> String {
        let refused_replay = status
            .metadata()
            .get(salesforce_pubsub::ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|code| code.starts_with(REPLAY_REFUSED));
        if refused_replay {
            self.subscription
                .replay_refused
                .fetch_add(1, Ordering::Relaxed);
            self.replay.forget(self.org(), self.topic());
            tracing::error!(org = %self.org(), topic = %self.topic(), "Salesforce refused the stored replay id; changes since it may be missed, subscribing from the latest event");
        }
        self.failed("Subscribe", status, auth)
    }

    async fn schema(
        &self,
        client: &mut PubSubClient<Channel>,
        schema_id: &str,
        auth: &Auth,
    ) -> Result<change_event::Schema, String> {
        let request = self.request(
            SchemaRequest {
                schema_id: schema_id.to_string(),
            },
            auth,
        );
        let info = match tokio::time::timeout(CALL_TIMEOUT, client.get_schema(request)).await {
            Ok(Ok(info)) => info.into_inner(),
            Ok(Err(status)) => return Err(self.failed("GetSchema", &status, auth)),
            Err(_) => return Err("GetSchema: no answer in time".into()),
        };
        change_event::parse_schema(&info.schema_json)
    }

    /// The names an update's `changedFields` stand for: bitmaps of positions in the event's
    /// schema (`field_bitmap`). None for other changes, and for bitmaps that do not read against
    /// the schema (then every field counts as changed).
    fn changed_fields(
        &self,
        schema: &change_event::Schema,
        header: &ChangeEventHeader,
    ) -> Option<Vec<String>> {
        if header.change_type != "UPDATE" {
            return None;
        }
        field_bitmap::field_names(schema, &header.changed_fields)
            .inspect_err(|e| tracing::warn!(org = %self.org(), topic = %self.topic(), error = %e, "changedFields unreadable; treating every field as changed"))
            .ok()
    }

    /// Whether the change can make a cached answer wrong: any change but an update, and an
    /// update of a watched field (or of fields it cannot name).
    fn matters(&self, header: &ChangeEventHeader, changed: Option<&[String]>) -> bool {
        match changed {
            Some(changed) if header.change_type == "UPDATE" => self.watched.touched_by(changed),
            _ => true,
        }
    }

    /// Hands the change to the module; false when no module is connected to take it.
    fn invalidate(&self, header: &ChangeEventHeader, changed: Option<&[String]>) -> bool {
        // An update whose fields are unknown may have changed a phone too.
        let phone_changed = changed.is_none_or(|c| self.watched.phone_among(c));
        let extent = Extent::of_change(
            &header.change_type,
            !header.record_ids.is_empty(),
            phone_changed,
        );
        let message = Message::Invalidate {
            org: self.org().to_string(),
            object: header.entity_name.clone(),
            ids: header.record_ids.clone(),
            extent,
        };
        if self.app.desk.link.broadcast_counted(&message) == 0 {
            return false;
        }
        self.subscription
            .invalidations_sent
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(org = %self.org(), object = %header.entity_name, change = %header.change_type, records = header.record_ids.len(), ?extent, "change event: cached answers invalidated");
        true
    }
}
