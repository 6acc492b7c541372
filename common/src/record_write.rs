//! Record writes the dialplan asks for (`sf_create`, `sf_update`, `sf_upsert`), declared per org:
//!
//! ```xml
//! <write name="vip_case" object="Case" op="create" delivery="sync" key-field="Call_Write_Key__c">
//!   <field name="Subject" value="VIP call from ${sf_caller_e164}"/>
//!   <field name="ContactId" value="${sf_record_id}" type="id"/>
//! </write>
//! ```
//!
//! A value is literal text with `${variable}` references that the module fills from the
//! call's channel variables (FreeSWITCH never expands them: the config is not dialplan data).
//! The result is converted by the field's declared type and only ever becomes a JSON value in
//! a request body, never text in a URL, SOQL or SOSL; ids and external-id values travel as
//! percent-encoded path segments. Declared types are checked against the object's describe
//! before a write is sent (`check_against_describe`), and every value at call time.
//!
//! Idempotency: each write a call makes is keyed `<call uuid>.<write name>`. An upsert is
//! idempotent by its external id, an update by nature; a create is idempotent only with a
//! `key-field` (an External ID field the key is written to, sent as an upsert on it), so a
//! create without one cannot go to the outbox, whose delivery is at-least-once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{is_api_name, ConfigError};
use crate::salesforce::record_id::is_record_id;
use crate::salesforce::{LimitInfo, SalesforceClient, Session, SfError};
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    Create,
    Update,
    Upsert,
}

impl WriteOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOp::Create => "create",
            WriteOp::Update => "update",
            WriteOp::Upsert => "upsert",
        }
    }
}

/// Whether the dialplan waits for Salesforce or the sidecar's outbox delivers the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Within the call's deadline; the new id comes back (`sf_create_id`).
    Sync,
    /// Spooled and handed to the sidecar's durable outbox; the dialplan goes on at once.
    Outbox,
}

/// How a value's text becomes JSON, and which describe types it may go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Boolean,
    Integer,
    Number,
    Date,
    DateTime,
    Id,
}

impl ValueKind {
    fn parse(word: &str) -> Option<ValueKind> {
        Some(match word {
            "string" | "text" | "textarea" | "phone" | "email" | "url" | "picklist" => {
                ValueKind::Text
            }
            "boolean" => ValueKind::Boolean,
            "int" | "integer" => ValueKind::Integer,
            "double" | "number" | "currency" | "percent" => ValueKind::Number,
            "date" => ValueKind::Date,
            "datetime" => ValueKind::DateTime,
            "id" | "reference" => ValueKind::Id,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Text => "string",
            ValueKind::Boolean => "boolean",
            ValueKind::Integer => "int",
            ValueKind::Number => "double",
            ValueKind::Date => "date",
            ValueKind::DateTime => "datetime",
            ValueKind::Id => "id",
        }
    }

    /// Whether a field of this describe `type` takes values of this kind.
    pub fn fits(self, describe_type: &str) -> bool {
        match self {
            ValueKind::Text => matches!(
                describe_type,
                "string"
                    | "textarea"
                    | "phone"
                    | "email"
                    | "url"
                    | "picklist"
                    | "multipicklist"
                    | "combobox"
                    | "encryptedstring"
            ),
            ValueKind::Boolean => describe_type == "boolean",
            ValueKind::Integer => matches!(
                describe_type,
                "int" | "long" | "double" | "currency" | "percent"
            ),
            ValueKind::Number => matches!(describe_type, "double" | "currency" | "percent"),
            ValueKind::Date => describe_type == "date",
            ValueKind::DateTime => describe_type == "datetime",
            ValueKind::Id => matches!(describe_type, "reference" | "id"),
        }
    }

    /// The value's text as JSON of this kind, or why it is not one.
    pub fn convert(self, text: &str) -> Result<Value, String> {
        match self {
            ValueKind::Text => Ok(Value::String(text.to_string())),
            ValueKind::Boolean => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err("not true or false".into()),
            },
            ValueKind::Integer => {
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty()
                    || digits.len() > 18
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err("not a whole number".into());
                }
                text.parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| "not a whole number".into())
            }
            ValueKind::Number => {
                let plain = text
                    .strip_prefix('-')
                    .unwrap_or(text)
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.');
                match text.parse::<f64>() {
                    Ok(n) if plain && n.is_finite() && text.len() <= 40 => {
                        serde_json::Number::from_f64(n)
                            .map(Value::Number)
                            .ok_or_else(|| "not a number".into())
                    }
                    _ => Err("not a decimal number".into()),
                }
            }
            ValueKind::Date => {
                if is_date(text) {
                    Ok(Value::String(text.to_string()))
                } else {
                    Err("not a date (YYYY-MM-DD)".into())
                }
            }
            ValueKind::DateTime => {
                if is_datetime(text) {
                    Ok(Value::String(text.to_string()))
                } else {
                    Err("not a date and time (YYYY-MM-DDThh:mm:ssZ or ±hh:mm)".into())
                }
            }
            ValueKind::Id => {
                if is_record_id(text) {
                    Ok(Value::String(text.to_string()))
                } else {
                    Err("not a Salesforce id (15 or 18 characters with a valid suffix)".into())
                }
            }
        }
    }
}

fn digits(text: &str, n: usize) -> Option<u32> {
    (text.len() == n && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// `YYYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`, as Salesforce's REST API takes a dateTime.
fn is_datetime(text: &str) -> bool {
    let Some((date, time)) = text.split_once('T') else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    let (clock, zone) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, None)
    } else if time.len() > 6 && matches!(time.as_bytes()[time.len() - 6], b'+' | b'-') {
        (&time[..time.len() - 6], Some(&time[time.len() - 5..]))
    } else {
        return false;
    };
    if let Some(zone) = zone {
        let Some((h, m)) = zone.split_once(':') else {
            return false;
        };
        if !matches!((digits(h, 2), digits(m, 2)), (Some(h), Some(m)) if h <= 14 && m < 60) {
            return false;
        }
    }
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (clock, None),
    };
    if fraction.is_some_and(|f| digits(f, f.len()).is_none() || f.is_empty() || f.len() > 3) {
        return false;
    }
    let mut parts = hms.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(m), Some(s), None) => matches!(
            (digits(h, 2), digits(m, 2), digits(s, 2)),
            (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60
        ),
        _ => false,
    }
}

/// Literal text and `${variable}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Variable(String),
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl ValueTemplate {
    pub fn parse(text: &str) -> Result<ValueTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            if at > 0 {
                pieces.push(Piece::Literal(rest[..at].to_string()));
            }
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("\"{text}\": ${{ without a closing }}"))?;
            let name = &after[..end];
            if !is_variable_name(name) {
                return Err(format!(
                    "\"{text}\": ${{{name}}} is not a channel variable name (letters, digits, '_')"
                ));
            }
            pieces.push(Piece::Variable(name.to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        Ok(ValueTemplate { pieces })
    }

    /// The text, each variable replaced by its value (an unset variable by nothing).
    pub fn render(&self, var: &mut impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(name) => out.push_str(&var(name).unwrap_or_default()),
            }
        }
        out
    }

    /// The literal text when there is no variable in it.
    pub fn literal(&self) -> Option<String> {
        self.pieces
            .iter()
            .all(|p| matches!(p, Piece::Literal(_)))
            .then(|| self.render(&mut |_| None))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteField {
    pub name: String,
    pub kind: ValueKind,
    pub value: ValueTemplate,
    /// An empty value refuses the write; otherwise an empty value leaves the field out.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSpec {
    pub name: String,
    pub object: String,
    pub op: WriteOp,
    pub delivery: Delivery,
    /// `update`: the record's id.
    pub record_id: Option<ValueTemplate>,
    /// `upsert`: the External ID field and its value.
    pub external_id_field: Option<String>,
    pub external_id: Option<ValueTemplate>,
    /// `create`: an External ID field the write's key goes into, making the create an upsert
    /// on it (idempotent, so it may be retried and may go to the outbox).
    pub key_field: Option<String>,
    pub fields: Vec<WriteField>,
    /// Shortens the lookup deadline for a synchronous write.
    pub timeout: Option<Duration>,
}

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

fn template(
    element: &Element,
    attr: &str,
    ctx: &str,
) -> Result<Option<ValueTemplate>, ConfigError> {
    element
        .attr(attr)
        .map(|t| ValueTemplate::parse(t).map_err(|e| ConfigError(format!("{ctx}: {attr}: {e}"))))
        .transpose()
}

fn api_name_attr(element: &Element, attr: &str, ctx: &str) -> Result<Option<String>, ConfigError> {
    match element.attr(attr).map(str::trim) {
        None | Some("") => Ok(None),
        Some(name) if is_api_name(name) => Ok(Some(name.to_string())),
        Some(name) => err(format!(
            "{ctx}: {attr}=\"{name}\" is not a Salesforce API name"
        )),
    }
}

/// One `<write>`.
pub(crate) fn parse_write(element: &Element, org_ctx: &str) -> Result<WriteSpec, ConfigError> {
    let name = element.attr("name").unwrap_or("").trim().to_string();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return err(format!(
            "{org_ctx}: <write name=\"{name}\">: use 1 to 64 letters, digits, '_' or '-'"
        ));
    }
    let ctx = format!("{org_ctx} <write name=\"{name}\">");
    let object = api_name_attr(element, "object", &ctx)?
        .ok_or_else(|| ConfigError(format!("{ctx}: needs object=\"…\"")))?;
    let op = match element.attr("op").unwrap_or("") {
        "create" => WriteOp::Create,
        "update" => WriteOp::Update,
        "upsert" => WriteOp::Upsert,
        other => {
            return err(format!(
                "{ctx}: op=\"{other}\": expected create, update or upsert"
            ))
        }
    };
    let delivery = match element.attr("delivery").unwrap_or("sync") {
        "sync" => Delivery::Sync,
        "outbox" => Delivery::Outbox,
        other => {
            return err(format!(
                "{ctx}: delivery=\"{other}\": expected sync or outbox"
            ))
        }
    };
    let record_id = template(element, "record-id", &ctx)?;
    let external_id_field = api_name_attr(element, "external-id-field", &ctx)?;
    let external_id = template(element, "external-id", &ctx)?;
    let key_field = api_name_attr(element, "key-field", &ctx)?;
    let timeout = match element.attr("timeout-ms") {
        None => None,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ms) if (10..=60_000).contains(&ms) => Some(Duration::from_millis(ms)),
            _ => {
                return err(format!(
                    "{ctx}: timeout-ms=\"{text}\": expected 10 to 60000"
                ))
            }
        },
    };
    match op {
        WriteOp::Create => {
            if record_id.is_some() || external_id_field.is_some() || external_id.is_some() {
                return err(format!(
                    "{ctx}: a create takes no record-id, external-id-field or external-id (key-field makes it idempotent)"
                ));
            }
            if delivery == Delivery::Outbox && key_field.is_none() {
                return err(format!(
                    "{ctx}: delivery=\"outbox\" delivers at least once, so a create needs key-field=\"…\" (an External ID field for the call's write key) or it could create the record twice"
                ));
            }
        }
        WriteOp::Update => {
            if record_id.is_none() {
                return err(format!(
                    "{ctx}: an update needs record-id=\"${{variable}}\""
                ));
            }
            if external_id_field.is_some() || external_id.is_some() || key_field.is_some() {
                return err(format!(
                    "{ctx}: an update takes record-id only (use op=\"upsert\" for an External ID)"
                ));
            }
        }
        WriteOp::Upsert => {
            if external_id_field.is_none() || external_id.is_none() {
                return err(format!(
                    "{ctx}: an upsert needs external-id-field=\"…\" and external-id=\"…\""
                ));
            }
            if record_id.is_some() || key_field.is_some() {
                return err(format!("{ctx}: an upsert takes no record-id or key-field"));
            }
        }
    }
    let mut fields: Vec<WriteField> = Vec::new();
    for field in element.children_named("field") {
        let fname = api_name_attr(field, "name", &ctx)?
            .ok_or_else(|| ConfigError(format!("{ctx}: <field> needs name=\"…\"")))?;
        let fctx = format!("{ctx} <field name=\"{fname}\">");
        let type_word = field.attr("type").unwrap_or("string");
        let kind = ValueKind::parse(type_word).ok_or_else(|| {
            ConfigError(format!(
                "{fctx}: type=\"{type_word}\": expected string, boolean, int, double, date, datetime or id"
            ))
        })?;
        let value = template(field, "value", &fctx)?
            .ok_or_else(|| ConfigError(format!("{fctx}: needs value=\"…\"")))?;
        if let Some(literal) = value.literal() {
            if let Err(why) = kind.convert(&literal) {
                return err(format!(
                    "{fctx}: value \"{literal}\" is {why} (type=\"{}\")",
                    kind.as_str()
                ));
            }
        }
        let required = match field.attr("required").unwrap_or("false") {
            "true" => true,
            "false" => false,
            other => return err(format!("{fctx}: required=\"{other}\" is not true or false")),
        };
        let same = |n: &str| n.eq_ignore_ascii_case(&fname);
        if fields.iter().any(|f| same(&f.name))
            || external_id_field.as_deref().is_some_and(same)
            || key_field.as_deref().is_some_and(same)
            || same("Id")
        {
            return err(format!(
                "{fctx}: the field is set twice (or is the record's Id, External ID or key field)"
            ));
        }
        fields.push(WriteField {
            name: fname,
            kind,
            value,
            required,
        });
    }
    if fields.is_empty() {
        return err(format!("{ctx}: needs at least one <field>"));
    }
    Ok(WriteSpec {
        name,
        object,
        op,
        delivery,
        record_id,
        external_id_field,
        external_id,
        key_field,
        fields,
        timeout,
    })
}

/// What the org's describe says about one field, as far as a write needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WritableField {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(rename = "externalId", default)]
    pub external_id: bool,
    #[serde(rename = "idLookup", default)]
    pub id_lookup: bool,
    /// Characters, for text fields (0 when the describe gives none).
    #[serde(default)]
    pub length: usize,
}

/// An object's describe, reduced to what writes need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableObject {
    pub name: String,
    pub createable: bool,
    pub updateable: bool,
    pub fields: Vec<WritableField>,
}

impl WritableObject {
    pub fn from_describe(body: &Value) -> Result<WritableObject, String> {
        let flag = |name: &str| body.get(name).and_then(Value::as_bool).unwrap_or(false);
        Ok(WritableObject {
            name: body
                .get("name")
                .and_then(Value::as_str)
                .ok_or("describe has no name")?
                .to_string(),
            createable: flag("createable"),
            updateable: flag("updateable"),
            fields: serde_json::from_value(
                body.get("fields")
                    .cloned()
                    .ok_or("describe has no fields")?,
            )
            .map_err(|e| format!("describe fields: {e}"))?,
        })
    }

    pub fn field(&self, name: &str) -> Option<&WritableField> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// Everything the org would refuse about this write's declaration; empty when it fits.
pub fn check_against_describe(spec: &WriteSpec, object: &WritableObject) -> Vec<String> {
    let mut problems = Vec::new();
    let creates = spec.op != WriteOp::Update;
    let updates = spec.op != WriteOp::Create || spec.key_field.is_some();
    if creates && !object.createable {
        problems.push(format!("{} is not createable", object.name));
    }
    if updates && !object.updateable {
        problems.push(format!("{} is not updateable", object.name));
    }
    for field in &spec.fields {
        let Some(described) = object.field(&field.name) else {
            problems.push(format!("{}.{}: no such field", object.name, field.name));
            continue;
        };
        if !field.kind.fits(&described.field_type) {
            problems.push(format!(
                "{}.{}: declared type=\"{}\" but the field is a {}",
                object.name,
                described.name,
                field.kind.as_str(),
                described.field_type
            ));
        }
        if creates && !described.createable {
            problems.push(format!(
                "{}.{}: not createable",
                object.name, described.name
            ));
        }
        if spec.op == WriteOp::Update && !described.updateable {
            problems.push(format!(
                "{}.{}: not updateable",
                object.name, described.name
            ));
        }
    }
    for key in spec.external_id_field.iter().chain(&spec.key_field) {
        match object.field(key) {
            Some(f) if f.external_id || (f.id_lookup && f.name == "Id") => {}
            Some(f) => problems.push(format!(
                "{}.{}: not an External ID field",
                object.name, f.name
            )),
            None => problems.push(format!("{}.{key}: no such field", object.name)),
        }
    }
    problems
}

/// One write, with its values filled in and checked, ready to send (now or from the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWrite {
    pub org: String,
    /// `<call uuid>.<write name>`: the outbox keeps one row per key.
    pub key: String,
    pub call_uuid: String,
    pub write: String,
    pub object: String,
    pub op: WriteOp,
    /// `update`: the record's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// `upsert`, and a `create` with a key field: the External ID field and value to upsert by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upsert_by: Option<(String, String)>,
    pub fields: Map<String, Value>,
    pub created_at_ms: u64,
}

/// Why a write was not made from the call's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRefused(pub String);

impl std::fmt::Display for WriteRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest text value accepted when the describe gives no length (a Long Text Area's limit).
const MAX_TEXT_CHARS: usize = 131_072;

/// The write key for a call and a write.
pub fn write_key(call_uuid: &str, write: &str) -> String {
    format!("{call_uuid}.{write}")
}

impl WriteSpec {
    /// Fills the values from the call's variables and checks each against its type (and, when
    /// known, the field's length).
    pub fn build(
        &self,
        org: &str,
        call_uuid: &str,
        describe: Option<&WritableObject>,
        mut var: impl FnMut(&str) -> Option<String>,
        now_ms: u64,
    ) -> Result<RecordWrite, WriteRefused> {
        let mut fields = Map::new();
        for field in &self.fields {
            let text = field.value.render(&mut var);
            if text.is_empty() {
                if field.required {
                    return Err(WriteRefused(format!(
                        "{} is required and empty",
                        field.name
                    )));
                }
                continue;
            }
            let value = field
                .kind
                .convert(&text)
                .map_err(|why| WriteRefused(format!("{}: the value is {why}", field.name)))?;
            if field.kind == ValueKind::Text {
                let limit = describe
                    .and_then(|d| d.field(&field.name))
                    .map(|f| f.length)
                    .filter(|l| *l > 0)
                    .unwrap_or(MAX_TEXT_CHARS);
                let chars = text.chars().count();
                if chars > limit {
                    return Err(WriteRefused(format!(
                        "{}: {chars} characters, the field holds {limit}",
                        field.name
                    )));
                }
            }
            fields.insert(field.name.clone(), value);
        }
        let key = write_key(call_uuid, &self.name);
        let record_id = match &self.record_id {
            Some(t) => {
                let id = t.render(&mut var);
                if !is_record_id(&id) {
                    return Err(WriteRefused(format!(
                        "record-id is not a Salesforce id ({} characters)",
                        id.chars().count()
                    )));
                }
                Some(id)
            }
            None => None,
        };
        let upsert_by = match (&self.external_id_field, &self.external_id, &self.key_field) {
            (Some(field), Some(t), _) => {
                let value = t.render(&mut var);
                if value.is_empty() {
                    return Err(WriteRefused(format!("the External ID ({field}) is empty")));
                }
                Some((field.clone(), value))
            }
            (_, _, Some(field)) => Some((field.clone(), key.clone())),
            _ => None,
        };
        Ok(RecordWrite {
            org: org.to_string(),
            key,
            call_uuid: call_uuid.to_string(),
            write: self.name.clone(),
            object: self.object.clone(),
            op: self.op,
            record_id,
            upsert_by,
            fields,
            created_at_ms: now_ms,
        })
    }

    /// Whether sending it twice leaves one record (so a failed send may be retried).
    pub fn is_idempotent(&self) -> bool {
        self.op != WriteOp::Create || self.key_field.is_some()
    }
}

/// What Salesforce did with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub id: String,
    /// A new record (create, or an upsert that matched nothing).
    pub created: bool,
    pub limit: Option<LimitInfo>,
}

/// Sends one write: an upsert when it has an External ID (or a key field), else an update by
/// id, else a create. The same call for the module's synchronous writes and the sidecar's
/// outbox.
pub async fn send(
    client: &SalesforceClient,
    session: &Session,
    write: &RecordWrite,
) -> Result<Written, SfError> {
    let body = Value::Object(write.fields.clone());
    match (&write.upsert_by, &write.record_id) {
        (Some((field, value)), _) => {
            let (id, created, limit) = client
                .upsert(session, &write.object, field, value, &body)
                .await?;
            Ok(Written { id, created, limit })
        }
        (None, Some(id)) => {
            let limit = client.update(session, &write.object, id, &body).await?;
            Ok(Written {
                id: id.clone(),
                created: false,
                limit,
            })
        }
        (None, None) => {
            let (id, limit) = client
                .create_with_limit(session, &write.object, &body)
                .await?;
            Ok(Written {
                id,
                created: true,
                limit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(xml: &str) -> Result<WriteSpec, ConfigError> {
        let element = crate::xml::parse(xml).unwrap();
        parse_write(&element, "org \"acme\"")
    }

    #[test]
    fn parses_a_create_and_fills_it_from_variables() {
        let s = spec(
            r#"<write name="vip_case" object="Case" op="create" key-field="Call_Key__c">
                 <field name="Subject" value="VIP ${caller} says ${what}"/>
                 <field name="ContactId" value="${contact}" type="id"/>
                 <field name="Priority__c" value="${prio}" type="double"/>
               </write>"#,
        )
        .unwrap();
        assert!(s.is_idempotent());
        let vars = |n: &str| match n {
            "caller" => Some("+1 \"x\" ${y}".to_string()),
            "what" => Some("'); DROP".to_string()),
            "contact" => Some("003Em0000000008IAA".to_string()),
            _ => None,
        };
        let w = s.build("acme", "u-1", None, vars, 5).unwrap();
        assert_eq!(w.fields["Subject"], "VIP +1 \"x\" ${y} says '); DROP");
        assert_eq!(w.fields["ContactId"], "003Em0000000008IAA");
        assert!(!w.fields.contains_key("Priority__c"), "empty: left out");
        assert_eq!(w.key, "u-1.vip_case");
        assert_eq!(
            w.upsert_by,
            Some(("Call_Key__c".to_string(), "u-1.vip_case".to_string()))
        );
        let bad_id = |n: &str| (n == "contact").then(|| "003Em0000000008AAA".to_string());
        assert!(s.build("acme", "u", None, bad_id, 0).is_err());
    }

    #[test]
    fn refuses_what_cannot_be_right_at_load() {
        assert!(spec(r#"<write name="a" object="Case" op="create" delivery="outbox"><field name="Subject" value="x"/></write>"#)
            .unwrap_err().0.contains("key-field"));
        assert!(spec(
            r#"<write name="a" object="Case" op="update"><field name="Subject" value="x"/></write>"#
        )
        .is_err());
        assert!(spec(r#"<write name="a" object="Case" op="create"><field name="IsEscalated" value="yes" type="boolean"/></write>"#)
            .unwrap_err().0.contains("not true or false"));
        assert!(spec(r#"<write name="a" object="Case" op="create"><field name="X" value="${bad name}"/></write>"#).is_err());
        assert!(spec(
            r#"<write name="a" object="Ca se" op="create"><field name="X" value="1"/></write>"#
        )
        .is_err());
        assert!(spec(r#"<write name="a" object="Case" op="create"><field name="X" value="1" type="blob"/></write>"#).is_err());
    }

    #[test]
    fn values_convert_by_type() {
        assert_eq!(ValueKind::Integer.convert("-42").unwrap(), Value::from(-42));
        assert!(ValueKind::Integer.convert("4e2").is_err());
        assert!(ValueKind::Number.convert("NaN").is_err());
        assert!(ValueKind::Number.convert("1e999").is_err());
        assert_eq!(ValueKind::Number.convert("2.5").unwrap(), Value::from(2.5));
        assert!(ValueKind::Date.convert("2024-02-29").is_ok());
        assert!(ValueKind::Date.convert("2023-02-29").is_err());
        assert!(ValueKind::DateTime
            .convert("2024-02-29T23:59:59.123+05:30")
            .is_ok());
        assert!(ValueKind::DateTime.convert("2024-02-29T24:00:00Z").is_err());
        assert!(ValueKind::Boolean.convert("TRUE").is_err());
    }

    #[test]
    fn checks_declarations_against_the_describe() {
        let s = spec(
            r#"<write name="u" object="Contact" op="upsert" external-id-field="External_Id__c" external-id="${x}">
                 <field name="LastName" value="${n}"/><field name="Birthdate" value="${b}" type="string"/>
               </write>"#,
        )
        .unwrap();
        let describe = WritableObject::from_describe(&serde_json::json!({
            "name": "Contact", "createable": true, "updateable": true,
            "fields": [
                {"name": "LastName", "type": "string", "createable": true, "updateable": true, "length": 80},
                {"name": "Birthdate", "type": "date", "createable": true, "updateable": true},
                {"name": "External_Id__c", "type": "string", "externalId": true, "createable": true, "updateable": true}
            ]
        }))
        .unwrap();
        let problems = check_against_describe(&s, &describe);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("Birthdate"));
        let long = |n: &str| match n {
            "n" => Some("x".repeat(81)),
            "x" => Some("E1".into()),
            _ => None,
        };
        assert!(s
            .build("acme", "u", Some(&describe), long, 0)
            .unwrap_err()
            .0
            .contains("holds 80"));
    }
}
