//! `eventbus.v1.PubSub` as Salesforce answers it: every call authenticated by the `accesstoken`,
//! `instanceurl` and `tenantid` metadata; failures carry Salesforce's `error-code` trailer.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use salesforce_pubsub::change_event;
use salesforce_pubsub::tonic::{self, metadata::MetadataMap, Code, Request, Response, Status};
use salesforce_pubsub::{
    ConsumerEvent, FetchRequest, FetchResponse, ManagedFetchRequest, ManagedFetchResponse,
    ProducerEvent, PubSub, PubSubServer, PublishRequest, PublishResponse, ReplayPreset, SchemaInfo,
    SchemaRequest, TopicInfo, TopicRequest,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

use crate::pubsub::event_body;
use crate::pubsub::Change;
use crate::schema::ObjectDef;
use crate::state::Org;

/// The topic carrying every selected object's change events.
const ALL_CHANGES: &str = "/data/ChangeEvents";
/// Salesforce sends an empty batch with the latest replay id within 270 s of no events.
const KEEPALIVE: Duration = Duration::from_secs(270);
/// Events per FetchResponse at most.
const BATCH: usize = 100;

const AUTH_ERROR: &str = "sfdc.platform.eventbus.grpc.service.auth.error";
const REPLAY_CORRUPTED: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";

pub struct PubSubService {
    org: Arc<Org>,
    rpc_ids: AtomicU64,
}

/// Serves the Pub/Sub API (plain HTTP/2) on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    org: Arc<Org>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = PubSubService {
        org,
        rpc_ids: AtomicU64::new(1),
    };
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let result = tonic::transport::Server::builder()
        .add_service(PubSubServer::new(service))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        eprintln!("sf-emulator: Pub/Sub API server ended: {e}");
    }
}

fn failure(code: Code, message: String, error_code: &'static str) -> Status {
    let mut trailers = MetadataMap::new();
    trailers.insert(
        salesforce_pubsub::ERROR_CODE_KEY,
        tonic::metadata::MetadataValue::from_static(error_code),
    );
    Status::with_metadata(code, message, trailers)
}

/// The topic a subscriber named: one object's changes, or every object's.
enum Topic {
    Object(Arc<ObjectDef>),
    All,
}

impl Topic {
    fn carries(&self, change: &Change) -> bool {
        match self {
            Topic::Object(def) => def.name == change.object,
            Topic::All => true,
        }
    }
}

fn replay_bytes(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

impl PubSubService {
    fn rpc_id(&self) -> String {
        format!("emu-rpc-{}", self.rpc_ids.fetch_add(1, Ordering::Relaxed))
    }

    /// The session the call's metadata names, or UNAUTHENTICATED.
    fn authenticate(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let get = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
        let denied = |why: &str| failure(Code::Unauthenticated, why.to_string(), AUTH_ERROR);
        let token = get(salesforce_pubsub::ACCESS_TOKEN_KEY)
            .ok_or_else(|| denied("missing accesstoken metadata"))?;
        let instance = get(salesforce_pubsub::INSTANCE_URL_KEY)
            .ok_or_else(|| denied("missing instanceurl metadata"))?;
        let tenant = get(salesforce_pubsub::TENANT_ID_KEY)
            .ok_or_else(|| denied("missing tenantid metadata"))?;
        if instance.trim_end_matches('/') != self.org.instance_url {
            return Err(denied("instanceurl is not this org's instance"));
        }
        if crate::ids::to18(tenant).as_deref() != Some(self.org.org_id.as_str()) {
            return Err(denied("tenantid is not this org's id"));
        }
        self.org
            .use_session(token)
            .map(|_| ())
            .ok_or_else(|| denied("invalid or expired accesstoken"))
    }

    fn topic(&self, name: &str) -> Result<Topic, Status> {
        if name == ALL_CHANGES {
            return Ok(Topic::All);
        }
        change_event::object_of(name)
            .and_then(|object| self.org.schema.object_shared(&object).cloned())
            .filter(|def| !def.is_event)
            .map(Topic::Object)
            .ok_or_else(|| {
                Status::new(
                    Code::NotFound,
                    format!("topic {name} does not exist or is not a change event channel"),
                )
            })
    }

    /// One change as a ConsumerEvent, encoded with its object's schema.
    fn consumer_event(&self, change: &Change) -> Option<ConsumerEvent> {
        let def = self.org.schema.object(&change.object)?;
        let (schema_id, payload) = match event_body::encode(def, change) {
            Ok(encoded) => encoded,
            Err(e) => {
                eprintln!("sf-emulator: change {} not encoded: {e}", change.replay_id);
                return None;
            }
        };
        Some(ConsumerEvent {
            event: Some(ProducerEvent {
                id: format!("emu-event-{}", change.replay_id),
                schema_id,
                payload,
                headers: Vec::new(),
            }),
            replay_id: replay_bytes(change.replay_id),
        })
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl PubSub for PubSubService {
    type SubscribeStream = EventStream<FetchResponse>;
    type PublishStreamStream = EventStream<PublishResponse>;
    type ManagedSubscribeStream = EventStream<ManagedFetchResponse>;

    async fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        self.authenticate(request.metadata())?;
        let name = request.into_inner().topic_name;
        let schema_id = match self.topic(&name)? {
            Topic::Object(def) => event_body::object_schema(&def).1,
            // The multi-object channel's events each carry their own object's schema id.
            Topic::All => String::new(),
        };
        Ok(Response::new(TopicInfo {
            topic_name: name,
            tenant_guid: self.org.org_id.clone(),
            can_publish: false,
            can_subscribe: true,
            schema_id,
            rpc_id: self.rpc_id(),
        }))
    }

    async fn get_schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> Result<Response<SchemaInfo>, Status> {
        self.authenticate(request.metadata())?;
        let wanted = request.into_inner().schema_id;
        for def in self.org.schema.objects.iter().filter(|d| !d.is_event) {
            let (json, id) = event_body::object_schema(def);
            if id == wanted {
                return Ok(Response::new(SchemaInfo {
                    schema_json: json,
                    schema_id: id,
                    rpc_id: self.rpc_id(),
                }));
            }
        }
        Err(Status::new(
            Code::NotFound,
            format!("no schema with id {wanted}"),
        ))
    }

    async fn subscribe(
        &self,
        request: Request<tonic::Streaming<FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.authenticate(request.metadata())?;
        let mut requests = request.into_inner();
        let first = match requests.message().await? {
            Some(first) => first,
            None => return Err(Status::new(Code::InvalidArgument, "no FetchRequest")),
        };
        let topic_name = first.topic_name.clone();
        let topic = self.topic(&topic_name)?;
        let feed = self.org.data().store.changes().clone();
        let latest = feed.latest();
        let start = match ReplayPreset::try_from(first.replay_preset) {
            Ok(ReplayPreset::Latest) => latest,
            Ok(ReplayPreset::Earliest) => 0,
            Ok(ReplayPreset::Custom) => {
                let bytes: [u8; 8] = first.replay_id.as_slice().try_into().map_err(|_| {
                    failure(
                        Code::InvalidArgument,
                        "The Replay ID validation failed: not a replay id".into(),
                        REPLAY_CORRUPTED,
                    )
                })?;
                let id = u64::from_be_bytes(bytes);
                if id > latest {
                    return Err(failure(
                        Code::InvalidArgument,
                        format!("The Replay ID validation failed: {id} is past the stream's end"),
                        REPLAY_CORRUPTED,
                    ));
                }
                id
            }
            Err(_) => return Err(Status::new(Code::InvalidArgument, "unknown replay_preset")),
        };
        let (tx, rx) = mpsc::channel::<Result<FetchResponse, Status>>(16);
        let (credit_tx, mut credit_rx) = mpsc::unbounded_channel::<Result<i32, Status>>();
        let _ = credit_tx.send(Ok(first.num_requested));
        // Later FetchRequests add credit; a different topic ends the stream.
        tokio::spawn(async move {
            loop {
                match requests.message().await {
                    Ok(Some(more)) => {
                        let credit = if !more.topic_name.is_empty() && more.topic_name != topic_name
                        {
                            Err(Status::new(
                                Code::InvalidArgument,
                                "topic_name differs from the subscription's",
                            ))
                        } else {
                            Ok(more.num_requested)
                        };
                        if credit_tx.send(credit).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => return,
                }
            }
        });
        let this = PubSubService {
            org: self.org.clone(),
            rpc_ids: AtomicU64::new(self.rpc_ids.fetch_add(1_000_000, Ordering::Relaxed)),
        };
        tokio::spawn(async move {
            let mut position = start;
            let cuts = feed.cuts();
            let mut pending: i64 = 0;
            let mut last_sent = tokio::time::Instant::now();
            loop {
                while let Ok(credit) = credit_rx.try_recv() {
                    match credit {
                        Ok(n) => pending += i64::from(n.max(0)),
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
                let appended = feed.appended();
                if feed.cuts() != cuts {
                    let _ = tx
                        .send(Err(Status::unavailable("RST_STREAM closed stream")))
                        .await;
                    return;
                }
                if pending > 0 {
                    let max = BATCH.min(pending as usize);
                    let (changes, reached) = feed.after(position, max, |c| topic.carries(c));
                    position = reached;
                    if !changes.is_empty() {
                        let events: Vec<ConsumerEvent> = changes
                            .iter()
                            .filter_map(|c| this.consumer_event(c))
                            .collect();
                        pending -= events.len() as i64;
                        let response = FetchResponse {
                            events,
                            latest_replay_id: replay_bytes(position),
                            rpc_id: this.rpc_id(),
                            pending_num_requested: pending as i32,
                        };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                        continue;
                    }
                }
                let keepalive_at = last_sent + KEEPALIVE;
                tokio::select! {
                    _ = appended => {}
                    credit = credit_rx.recv() => match credit {
                        Some(Ok(n)) => pending += i64::from(n.max(0)),
                        Some(Err(status)) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                        // The client closed its side: the stream is over.
                        None => return,
                    },
                    _ = tokio::time::sleep_until(keepalive_at) => {
                        let response = FetchResponse {
                            events: Vec::new(),
                            latest_replay_id: replay_bytes(feed.latest()),
                            rpc_id: this.rpc_id(),
                            pending_num_requested: pending as i32,
                        };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        self.authenticate(request.metadata())?;
        Err(Status::unimplemented(
            "the emulator's Pub/Sub API does not publish",
        ))
    }

    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        self.authenticate(request.metadata())?;
        Err(Status::unimplemented(
            "the emulator's Pub/Sub API does not publish",
        ))
    }

    async fn managed_subscribe(
        &self,
        request: Request<tonic::Streaming<ManagedFetchRequest>>,
    ) -> Result<Response<Self::ManagedSubscribeStream>, Status> {
        self.authenticate(request.metadata())?;
        Err(Status::unimplemented(
            "the emulator does not emulate managed subscriptions",
        ))
    }
}
