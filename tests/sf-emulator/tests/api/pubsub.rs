//! The Pub/Sub API (gRPC): auth metadata, topics, schemas, Subscribe with flow control and
//! replay, through the generated tonic client.

use std::time::Duration;

use salesforce_pubsub::change_event::{self, ChangeEventHeader};
use salesforce_pubsub::field_bitmap;
use salesforce_pubsub::tonic::metadata::MetadataValue;
use salesforce_pubsub::tonic::transport::Channel;
use salesforce_pubsub::tonic::{Code, Request, Status, Streaming};
use salesforce_pubsub::{
    FetchRequest, FetchResponse, PubSubClient, ReplayPreset, SchemaRequest, TopicRequest,
};
use sf_emulator::Emulator;
use tokio::sync::mpsc;

use crate::common::{start, token};

const CONTACTS: &str = "/data/ContactChangeEvent";

struct Session {
    token: String,
    instance: String,
    tenant: String,
}

async fn session(emu: &Emulator) -> Session {
    Session {
        token: token(emu).await,
        instance: emu.instance_url(),
        tenant: emu.org_id(),
    }
}

fn authed<T>(message: T, s: &Session) -> Request<T> {
    let mut request = Request::new(message);
    let md = request.metadata_mut();
    md.insert(
        "accesstoken",
        MetadataValue::try_from(s.token.as_str()).unwrap(),
    );
    md.insert(
        "instanceurl",
        MetadataValue::try_from(s.instance.as_str()).unwrap(),
    );
    md.insert(
        "tenantid",
        MetadataValue::try_from(s.tenant.as_str()).unwrap(),
    );
    request
}

async fn client(emu: &Emulator) -> PubSubClient<Channel> {
    PubSubClient::connect(emu.pubsub_url())
        .await
        .expect("connects")
}

fn error_code(status: &Status) -> String {
    status
        .metadata()
        .get("error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn contact_id(emu: &Emulator) -> String {
    emu.admin().records("Contact")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn user_ids(emu: &Emulator) -> Vec<String> {
    emu.admin()
        .records("User")
        .iter()
        .filter_map(|u| u["Id"].as_str().map(str::to_string))
        .collect()
}

fn reassign(emu: &Emulator, contact: &str, owner: &str) {
    let mut fields = serde_json::Map::new();
    fields.insert("OwnerId".into(), owner.into());
    emu.admin()
        .update_record("Contact", contact, fields, owner)
        .unwrap();
}

/// Opens a subscription; returns the request sender and the response stream.
async fn subscribe(
    emu: &Emulator,
    s: &Session,
    first: FetchRequest,
) -> Result<(mpsc::Sender<FetchRequest>, Streaming<FetchResponse>), Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let responses = client(emu).await.subscribe(authed(stream, s)).await?;
    Ok((tx, responses.into_inner()))
}

fn fetch(preset: ReplayPreset, replay_id: Vec<u8>, n: i32) -> FetchRequest {
    FetchRequest {
        topic_name: CONTACTS.into(),
        replay_preset: preset as i32,
        replay_id,
        num_requested: n,
        auth_refresh: String::new(),
    }
}

async fn next(responses: &mut Streaming<FetchResponse>) -> FetchResponse {
    tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("a response in time")
        .expect("no error")
        .expect("the stream goes on")
}

/// The event's header, and the names its `changedFields` bitmaps stand for in its schema.
async fn header(
    emu: &Emulator,
    s: &Session,
    schema_id: &str,
    payload: &[u8],
) -> (ChangeEventHeader, Vec<String>) {
    let info = client(emu)
        .await
        .get_schema(authed(
            SchemaRequest {
                schema_id: schema_id.into(),
            },
            s,
        ))
        .await
        .unwrap()
        .into_inner();
    let schema = change_event::parse_schema(&info.schema_json).unwrap();
    let header = change_event::decode_header(&schema, payload).unwrap();
    let changed = field_bitmap::field_names(&schema, &header.changed_fields).unwrap();
    (header, changed)
}

#[tokio::test]
async fn every_call_needs_this_orgs_session_in_its_metadata() {
    let emu = start().await;
    let good = session(&emu).await;
    let topic = || TopicRequest {
        topic_name: CONTACTS.into(),
    };
    let missing = client(&emu)
        .await
        .get_topic(Request::new(topic()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(
        error_code(&missing),
        "sfdc.platform.eventbus.grpc.service.auth.error"
    );
    for bad in [
        Session {
            token: "00Dnot!a.token".into(),
            ..session(&emu).await
        },
        Session {
            tenant: "00D000000000001AAA".into(),
            ..session(&emu).await
        },
        Session {
            instance: "https://elsewhere.my.salesforce.com".into(),
            ..session(&emu).await
        },
    ] {
        let refused = client(&emu)
            .await
            .get_topic(authed(topic(), &bad))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let refused = subscribe(
        &emu,
        &Session {
            token: "nope".into(),
            ..session(&emu).await
        },
        fetch(ReplayPreset::Latest, vec![], 1),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let info = client(&emu)
        .await
        .get_topic(authed(topic(), &good))
        .await
        .unwrap()
        .into_inner();
    assert!(info.can_subscribe && !info.can_publish);
    assert_eq!(info.tenant_guid, emu.org_id());
    let unknown = client(&emu)
        .await
        .get_topic(authed(
            TopicRequest {
                topic_name: "/data/NoSuchThingChangeEvent".into(),
            },
            &good,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let schema = client(&emu)
        .await
        .get_schema(authed(
            SchemaRequest {
                schema_id: info.schema_id.clone(),
            },
            &good,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(schema.schema_json.contains("ContactChangeEvent"));
    assert!(schema.schema_json.contains("ChangeEventHeader"));
    change_event::parse_schema(&schema.schema_json).expect("Avro schema");
}

#[tokio::test]
async fn subscribe_delivers_only_what_was_requested_and_replays_from_an_id() {
    let emu = start().await;
    let s = session(&emu).await;
    let contact = contact_id(&emu);
    let users = user_ids(&emu);
    // Before the subscription: not delivered at LATEST.
    reassign(&emu, &contact, &users[1]);
    let (more, mut responses) = subscribe(&emu, &s, fetch(ReplayPreset::Latest, vec![], 2))
        .await
        .unwrap();
    for owner in [&users[2], &users[3], &users[1]] {
        reassign(&emu, &contact, owner);
    }
    let mut events = Vec::new();
    while events.len() < 2 {
        let response = next(&mut responses).await;
        events.extend(response.events);
    }
    assert_eq!(events.len(), 2, "two requested, two sent");
    let first = events[0].event.clone().unwrap();
    let (h, changed) = header(&emu, &s, &first.schema_id, &first.payload).await;
    assert_eq!(h.entity_name, "Contact");
    assert_eq!(h.change_type, "UPDATE");
    assert_eq!(h.record_ids, std::slice::from_ref(&contact));
    // Bitmaps, as Salesforce sends them, not names: one string of top-level field positions.
    assert_eq!(h.changed_fields.len(), 1, "{h:?}");
    assert!(h.changed_fields[0].starts_with("0x"), "{h:?}");
    assert!(changed.iter().any(|f| f == "OwnerId"), "{changed:?}");
    assert!(!changed.iter().any(|f| f == "Phone"), "{changed:?}");
    // No credit left: nothing more comes until it is asked for.
    let quiet = tokio::time::timeout(Duration::from_millis(300), responses.message()).await;
    assert!(quiet.is_err(), "an event came without being requested");
    more.send(FetchRequest {
        num_requested: 5,
        ..FetchRequest::default()
    })
    .await
    .unwrap();
    let third = next(&mut responses).await;
    assert_eq!(third.events.len(), 1);

    // CUSTOM: everything after the first event's replay id.
    let (_more, mut replayed) = subscribe(
        &emu,
        &s,
        fetch(ReplayPreset::Custom, events[0].replay_id.clone(), 10),
    )
    .await
    .unwrap();
    let mut again = Vec::new();
    while again.len() < 2 {
        again.extend(next(&mut replayed).await.events);
    }
    assert_eq!(again[0].replay_id, events[1].replay_id);
    assert_eq!(again[1].replay_id, third.events[0].replay_id);
}

#[tokio::test]
async fn a_replay_id_it_cannot_resume_from_is_refused() {
    let emu = start().await;
    let s = session(&emu).await;
    for bad in [vec![1, 2, 3], u64::MAX.to_be_bytes().to_vec()] {
        let refused = subscribe(&emu, &s, fetch(ReplayPreset::Custom, bad, 1))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(
            error_code(&refused),
            "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
        );
    }
    // A later FetchRequest may not name another topic.
    let (more, mut responses) = subscribe(&emu, &s, fetch(ReplayPreset::Latest, vec![], 1))
        .await
        .unwrap();
    more.send(FetchRequest {
        topic_name: "/data/LeadChangeEvent".into(),
        num_requested: 1,
        ..FetchRequest::default()
    })
    .await
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("an answer in time")
        .unwrap_err();
    assert_eq!(ended.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn gap_events_name_records_but_no_fields_and_an_overflow_names_none() {
    let emu = start().await;
    let s = session(&emu).await;
    let contact = contact_id(&emu);
    let (_more, mut responses) = subscribe(&emu, &s, fetch(ReplayPreset::Latest, vec![], 10))
        .await
        .unwrap();
    let admin = emu.admin();
    admin
        .emit_gap_event("Contact", "GAP_UPDATE", &[contact.as_str()])
        .unwrap();
    admin
        .emit_gap_event("Contact", "GAP_OVERFLOW", &[])
        .unwrap();
    // Not gap events, or the wrong record ids for their kind: refused.
    assert!(admin
        .emit_gap_event("Contact", "UPDATE", &[&contact])
        .is_err());
    assert!(admin
        .emit_gap_event("Contact", "GAP_OVERFLOW", &[&contact])
        .is_err());
    assert!(admin.emit_gap_event("Contact", "GAP_DELETE", &[]).is_err());
    let mut events = Vec::new();
    while events.len() < 2 {
        events.extend(next(&mut responses).await.events);
    }
    let mut headers = Vec::new();
    for event in &events {
        let event = event.event.clone().unwrap();
        headers.push(header(&emu, &s, &event.schema_id, &event.payload).await.0);
    }
    assert_eq!(headers[0].change_type, "GAP_UPDATE");
    assert_eq!(headers[0].record_ids, [contact]);
    assert!(headers[0].changed_fields.is_empty(), "{:?}", headers[0]);
    assert_eq!(headers[1].change_type, "GAP_OVERFLOW");
    assert_eq!(headers[1].entity_name, "Contact");
    assert!(headers[1].record_ids.is_empty(), "{:?}", headers[1]);
}

#[tokio::test]
async fn the_admin_http_api_emits_gap_events_and_refuses_malformed_ones() {
    let emu = start().await;
    let url = format!("{}/__emulator/pubsub/gap", emu.login_url());
    let c = crate::common::client();
    let before = emu.admin().latest_change();
    let sent = c
        .post(&url)
        .json(&serde_json::json!({"object": "Contact", "change_type": "GAP_OVERFLOW"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let body: serde_json::Value = sent.json().await.unwrap();
    assert_eq!(body["latest_change"], before + 1);
    for bad in [
        serde_json::json!({"object": "Contact", "change_type": "UPDATE", "ids": ["003x"]}),
        serde_json::json!({"object": "Contact", "change_type": "GAP_UPDATE"}),
        serde_json::json!({"object": "NoSuch", "change_type": "GAP_OVERFLOW"}),
    ] {
        let refused = c.post(&url).json(&bad).send().await.unwrap();
        assert_eq!(refused.status(), 400, "{bad}");
    }
    assert_eq!(emu.admin().latest_change(), before + 1);
}
