//! Change Data Capture events as the Pub/Sub API carries them: an Avro record per change,
//! `<Object>ChangeEvent`, whose first field is the `ChangeEventHeader` record and whose other
//! fields are the object's fields, each a union with `null` (a field that did not change is
//! null). The subscriber reads the header with the writer's schema from `GetSchema`.

use apache_avro::types::Value;
pub use apache_avro::Schema;

/// The namespace of Salesforce's event schemas.
pub const NAMESPACE: &str = "com.sforce.eventbus";

/// `ChangeEventHeader.changeType` symbols, in Salesforce's order.
pub const CHANGE_TYPES: [&str; 10] = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
];

/// The `ChangeEventHeader` field's schema (a named record, so it is defined once per event
/// schema).
fn header_field() -> serde_json::Value {
    let strings = serde_json::json!({"type": "array", "items": "string"});
    serde_json::json!({
        "name": "ChangeEventHeader",
        "type": {
            "type": "record",
            "name": "ChangeEventHeader",
            "namespace": NAMESPACE,
            "fields": [
                {"name": "entityName", "type": "string"},
                {"name": "recordIds", "type": strings},
                {"name": "changeType", "type": {
                    "type": "enum", "name": "ChangeType", "namespace": NAMESPACE,
                    "symbols": CHANGE_TYPES,
                }},
                {"name": "changeOrigin", "type": "string"},
                {"name": "transactionKey", "type": "string"},
                {"name": "sequenceNumber", "type": "int"},
                {"name": "commitTimestamp", "type": "long"},
                {"name": "commitNumber", "type": "long"},
                {"name": "commitUser", "type": "string"},
                {"name": "nulledFields", "type": strings},
                {"name": "diffFields", "type": strings},
                {"name": "changedFields", "type": strings},
            ],
        },
        "doc": "Data:ChangeEventHeader",
    })
}

/// The Avro type of an object field in a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Boolean,
    Int,
    Double,
}

impl FieldKind {
    fn avro_name(self) -> &'static str {
        match self {
            FieldKind::String => "string",
            FieldKind::Boolean => "boolean",
            FieldKind::Int => "int",
            FieldKind::Double => "double",
        }
    }
}

/// One field of a change event's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventField {
    Scalar {
        name: String,
        kind: FieldKind,
    },
    /// A compound field (a Contact's `Name`: `Salutation`, `FirstName`, `LastName`): a nested
    /// record, its parts not fields of the event themselves.
    Compound {
        name: String,
        parts: Vec<(String, FieldKind)>,
    },
}

impl EventField {
    pub fn scalar(name: &str, kind: FieldKind) -> EventField {
        EventField::Scalar {
            name: name.to_string(),
            kind,
        }
    }

    pub fn compound(name: &str, parts: &[(&str, FieldKind)]) -> EventField {
        EventField::Compound {
            name: name.to_string(),
            parts: parts.iter().map(|(n, k)| (n.to_string(), *k)).collect(),
        }
    }
}

fn optional(name: &str, kind: FieldKind) -> serde_json::Value {
    serde_json::json!({"name": name, "type": ["null", kind.avro_name()], "default": null})
}

/// The schema JSON of `<object>ChangeEvent`: the header, then each field as `["null", type]`
/// with default null (a compound field's type a record of such fields).
pub fn schema_json(object: &str, fields: &[EventField]) -> String {
    let mut all = vec![header_field()];
    for field in fields {
        all.push(match field {
            EventField::Scalar { name, kind } => optional(name, *kind),
            EventField::Compound { name, parts } => serde_json::json!({
                "name": name,
                "type": ["null", {
                    "type": "record",
                    "name": name,
                    "namespace": format!("{NAMESPACE}.{object}"),
                    "fields": parts.iter().map(|(n, k)| optional(n, *k)).collect::<Vec<_>>(),
                }],
                "default": null,
            }),
        });
    }
    serde_json::json!({
        "type": "record",
        "name": format!("{object}ChangeEvent"),
        "namespace": NAMESPACE,
        "fields": all,
    })
    .to_string()
}

/// What a subscriber needs of one change: which records of which object changed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEventHeader {
    pub entity_name: String,
    pub change_type: String,
    pub record_ids: Vec<String>,
    /// Bitmap strings (`field_bitmap`), as Salesforce sends them: not field names.
    pub changed_fields: Vec<String>,
    /// Bitmap strings of the fields set to null.
    pub nulled_fields: Vec<String>,
    pub commit_timestamp_ms: i64,
    pub commit_user: String,
    pub transaction_key: String,
}

/// A field's new value in an event being written.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Null,
    String(String),
    Boolean(bool),
    Int(i32),
    Double(f64),
}

/// Encodes one change as Avro binary with `schema` (from `schema_json`). Fields of the schema
/// missing from `values` are null; a compound field's parts are named `Parent.Part`.
pub fn encode(
    schema: &Schema,
    header: &ChangeEventHeader,
    values: &[(String, FieldValue)],
) -> Result<Vec<u8>, String> {
    let Schema::Record(record) = schema else {
        return Err("a change event schema is a record".into());
    };
    let strings =
        |items: &[String]| Value::Array(items.iter().cloned().map(Value::String).collect());
    let change_index = CHANGE_TYPES
        .iter()
        .position(|t| *t == header.change_type)
        .ok_or_else(|| format!("unknown change type {}", header.change_type))?;
    let mut fields = vec![(
        "ChangeEventHeader".to_string(),
        Value::Record(vec![
            (
                "entityName".into(),
                Value::String(header.entity_name.clone()),
            ),
            ("recordIds".into(), strings(&header.record_ids)),
            (
                "changeType".into(),
                Value::Enum(change_index as u32, header.change_type.clone()),
            ),
            ("changeOrigin".into(), Value::String(String::new())),
            (
                "transactionKey".into(),
                Value::String(header.transaction_key.clone()),
            ),
            ("sequenceNumber".into(), Value::Int(1)),
            (
                "commitTimestamp".into(),
                Value::Long(header.commit_timestamp_ms),
            ),
            (
                "commitNumber".into(),
                Value::Long(header.commit_timestamp_ms),
            ),
            (
                "commitUser".into(),
                Value::String(header.commit_user.clone()),
            ),
            ("nulledFields".into(), strings(&header.nulled_fields)),
            ("diffFields".into(), Value::Array(Vec::new())),
            ("changedFields".into(), strings(&header.changed_fields)),
        ]),
    )];
    let value_of = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| optional_value(v.clone()))
    };
    for field in record.fields.iter().skip(1) {
        let value = match compound_parts(&field.schema) {
            None => value_of(&field.name),
            Some(parts) => {
                let parts: Vec<(String, Option<Value>)> = parts
                    .iter()
                    .map(|part| {
                        let value = value_of(&format!("{}.{}", field.name, part.name));
                        (part.name.clone(), value)
                    })
                    .collect();
                parts.iter().any(|(_, v)| v.is_some()).then(|| {
                    let null = || optional_value(FieldValue::Null);
                    let record = parts
                        .into_iter()
                        .map(|(name, v)| (name, v.unwrap_or_else(null)))
                        .collect();
                    Value::Union(1, Box::new(Value::Record(record)))
                })
            }
        };
        let value = value.unwrap_or_else(|| optional_value(FieldValue::Null));
        fields.push((field.name.clone(), value));
    }
    apache_avro::to_avro_datum(schema, Value::Record(fields)).map_err(|e| e.to_string())
}

/// A field's value as its `["null", type]` union holds it.
fn optional_value(value: FieldValue) -> Value {
    match value {
        FieldValue::Null => Value::Union(0, Box::new(Value::Null)),
        FieldValue::String(s) => Value::Union(1, Box::new(Value::String(s))),
        FieldValue::Boolean(b) => Value::Union(1, Box::new(Value::Boolean(b))),
        FieldValue::Int(i) => Value::Union(1, Box::new(Value::Int(i))),
        FieldValue::Double(d) => Value::Union(1, Box::new(Value::Double(d))),
    }
}

/// The parts of a compound field (`["null", record]`), or None for a scalar field.
fn compound_parts(schema: &Schema) -> Option<&[apache_avro::schema::RecordField]> {
    let Schema::Union(union) = schema else {
        return None;
    };
    union.variants().iter().find_map(|v| match v {
        Schema::Record(record) => Some(record.fields.as_slice()),
        _ => None,
    })
}

/// Reads the `ChangeEventHeader` of an Avro-encoded change event written with `schema`.
pub fn decode_header(schema: &Schema, payload: &[u8]) -> Result<ChangeEventHeader, String> {
    let mut reader = payload;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None)
        .map_err(|e| format!("undecodable change event: {e}"))?;
    let Value::Record(fields) = value else {
        return Err("a change event is a record".into());
    };
    let header = fields
        .into_iter()
        .find(|(name, _)| name == "ChangeEventHeader")
        .map(|(_, v)| v)
        .ok_or("no ChangeEventHeader in the event")?;
    let Value::Record(header) = header else {
        return Err("ChangeEventHeader is not a record".into());
    };
    let get = |name: &str| header.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let text = |name: &str| match get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("ChangeEventHeader.{name} is not a string")),
    };
    let list = |name: &str| match get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("ChangeEventHeader.{name} holds a non-string")),
            })
            .collect::<Result<Vec<_>, _>>(),
        _ => Err(format!("ChangeEventHeader.{name} is not an array")),
    };
    let change_type = match get("changeType") {
        Some(Value::Enum(_, symbol)) => symbol.clone(),
        _ => return Err("ChangeEventHeader.changeType is not an enum".into()),
    };
    let commit_timestamp_ms = match get("commitTimestamp") {
        Some(Value::Long(ms)) => *ms,
        _ => return Err("ChangeEventHeader.commitTimestamp is not a long".into()),
    };
    Ok(ChangeEventHeader {
        entity_name: text("entityName")?,
        change_type,
        record_ids: list("recordIds")?,
        changed_fields: list("changedFields")?,
        nulled_fields: list("nulledFields")?,
        commit_timestamp_ms,
        commit_user: text("commitUser")?,
        transaction_key: text("transactionKey")?,
    })
}

/// Parses a schema from `GetSchema`'s `schema_json`.
pub fn parse_schema(json: &str) -> Result<Schema, String> {
    Schema::parse_str(json).map_err(|e| format!("unparsable event schema: {e}"))
}

/// The topic of an object's change events (`/data/ContactChangeEvent`; custom objects
/// `/data/Thing__ChangeEvent`).
pub fn topic_of(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(custom) => format!("/data/{custom}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    }
}

/// The object whose changes `topic` carries, when it is one object's change channel.
pub fn object_of(topic: &str) -> Option<String> {
    let name = topic.strip_prefix("/data/")?.strip_suffix("ChangeEvent")?;
    if name.is_empty() {
        return None;
    }
    Some(match name.strip_suffix("__") {
        Some(custom) => format!("{custom}__c"),
        None => name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_avro() {
        let fields = vec![
            EventField::compound(
                "Name",
                &[
                    ("FirstName", FieldKind::String),
                    ("LastName", FieldKind::String),
                ],
            ),
            EventField::scalar("OwnerId", FieldKind::String),
            EventField::scalar("DoNotCall", FieldKind::Boolean),
        ];
        let schema = parse_schema(&schema_json("Contact", &fields)).unwrap();
        let header = ChangeEventHeader {
            entity_name: "Contact".into(),
            change_type: "UPDATE".into(),
            record_ids: vec!["003000000000001AAA".into()],
            changed_fields: vec!["0x04".into(), "1-0x01".into()],
            nulled_fields: Vec::new(),
            commit_timestamp_ms: 1_700_000_000_000,
            commit_user: "005000000000001AAA".into(),
            transaction_key: "tx-1".into(),
        };
        let bytes = encode(
            &schema,
            &header,
            &[
                (
                    "OwnerId".into(),
                    FieldValue::String("005000000000002AAA".into()),
                ),
                ("Name.FirstName".into(), FieldValue::String("Ada".into())),
            ],
        )
        .unwrap();
        assert_eq!(decode_header(&schema, &bytes).unwrap(), header);
        assert!(decode_header(&schema, &bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn topics_name_objects_and_custom_objects() {
        assert_eq!(topic_of("Contact"), "/data/ContactChangeEvent");
        assert_eq!(topic_of("Thing__c"), "/data/Thing__ChangeEvent");
        assert_eq!(object_of("/data/Thing__ChangeEvent").unwrap(), "Thing__c");
        assert_eq!(object_of("/data/LeadChangeEvent").unwrap(), "Lead");
        assert_eq!(object_of("/data/ChangeEvents"), None);
        assert_eq!(object_of("/event/Screen_Pop__e"), None);
    }
}
