//! What one change event says, as Salesforce writes it: the `<Object>ChangeEvent` Avro schema
//! (the header, then every field of the object, a person's name as the compound field `Name`
//! of `Salutation`, `FirstName`, `LastName`), the body's values, and the header's
//! `changedFields`/`nulledFields` as bitmaps of field positions in that schema (never names).

use salesforce_pubsub::change_event::{self, ChangeEventHeader, EventField, FieldKind, FieldValue};
use salesforce_pubsub::field_bitmap;
use serde_json::Value;

use crate::pubsub::Change;
use crate::schema::{FieldType, ObjectDef};

/// The parts of a person's compound `Name`, in Salesforce's order.
const NAME_PARTS: [&str; 3] = ["Salutation", "FirstName", "LastName"];

fn kind_of(ftype: FieldType) -> FieldKind {
    match ftype {
        FieldType::Boolean => FieldKind::Boolean,
        FieldType::Int => FieldKind::Int,
        FieldType::Double => FieldKind::Double,
        _ => FieldKind::String,
    }
}

/// Contact, Lead and User carry `FirstName`/`LastName` inside the compound `Name`.
fn has_compound_name(def: &ObjectDef) -> bool {
    def.field("FirstName").is_some() && def.field("LastName").is_some()
}

/// The event field a record field is written to: `Name.FirstName` for a name part.
fn event_name(def: &ObjectDef, field: &str) -> String {
    if has_compound_name(def) && NAME_PARTS.contains(&field) {
        format!("Name.{field}")
    } else {
        field.to_string()
    }
}

/// `<Object>ChangeEvent`'s schema JSON and its id (a fingerprint of the JSON, as Salesforce's
/// schema ids are).
pub fn object_schema(def: &ObjectDef) -> (String, String) {
    let compound = has_compound_name(def);
    let mut fields = Vec::new();
    for f in def.fields.iter().filter(|f| f.name != "Id") {
        if compound && (f.name == "Name" || NAME_PARTS.contains(&f.name.as_str())) {
            // One compound field where the first of its parts is.
            if f.name == "FirstName" {
                let parts: Vec<(&str, FieldKind)> = NAME_PARTS
                    .iter()
                    .filter_map(|p| def.field(p).map(|pf| (*p, kind_of(pf.ftype))))
                    .collect();
                fields.push(EventField::compound("Name", &parts));
            }
            continue;
        }
        fields.push(EventField::scalar(&f.name, kind_of(f.ftype)));
    }
    let json = change_event::schema_json(&def.name, &fields);
    // FNV-1a: stable across runs, which a schema id must be.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (json, format!("{hash:016x}"))
}

fn value_of(value: &Value, kind: FieldKind) -> FieldValue {
    match (value, kind) {
        (Value::Null, _) => FieldValue::Null,
        (Value::Bool(b), FieldKind::Boolean) => FieldValue::Boolean(*b),
        (Value::Number(n), FieldKind::Int) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map_or(FieldValue::Null, FieldValue::Int),
        (Value::Number(n), FieldKind::Double) => {
            n.as_f64().map_or(FieldValue::Null, FieldValue::Double)
        }
        (Value::String(s), FieldKind::String) => FieldValue::String(s.clone()),
        (other, FieldKind::String) => FieldValue::String(other.to_string()),
        _ => FieldValue::Null,
    }
}

/// The change's header and Avro payload with its object's schema.
pub fn encode(def: &ObjectDef, change: &Change) -> Result<(String, Vec<u8>), String> {
    let (json, schema_id) = object_schema(def);
    let schema = change_event::parse_schema(&json)?;
    let mut values: Vec<(String, FieldValue)> = Vec::new();
    let mut nulled = Vec::new();
    for (name, value) in &change.fields {
        // `Name` of a person is derived from its parts: the parts are what changed.
        let Some(field) = def
            .field(name)
            .filter(|f| f.name != "Id" && !(f.name == "Name" && has_compound_name(def)))
        else {
            continue;
        };
        let event_field = event_name(def, &field.name);
        if value.is_null() {
            nulled.push(event_field.clone());
        }
        values.push((event_field, value_of(value, kind_of(field.ftype))));
    }
    // Salesforce fills changedFields and nulledFields for updates only (the Change Data Capture
    // guide, "ChangeEventHeader Fields"); a created record's fields are all in the body.
    let update = change.change_type == "UPDATE";
    let bitmaps = |names: &[String]| {
        if update {
            field_bitmap::for_names(&schema, names)
        } else {
            Ok(Vec::new())
        }
    };
    let changed: Vec<String> = values.iter().map(|(name, _)| name.clone()).collect();
    let header = ChangeEventHeader {
        entity_name: change.object.clone(),
        change_type: change.change_type.to_string(),
        record_ids: change.record_ids.clone(),
        changed_fields: bitmaps(&changed)?,
        nulled_fields: bitmaps(&nulled)?,
        commit_timestamp_ms: change.commit_ms as i64,
        commit_user: change.commit_user.clone(),
        transaction_key: format!("emu-tx-{}", change.replay_id),
    };
    let payload = change_event::encode(&schema, &header, &values)?;
    Ok((schema_id, payload))
}
