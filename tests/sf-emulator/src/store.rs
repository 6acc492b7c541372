//! Records of one org: load from the seed, validate and apply writes.

use crate::error::ApiError;
use crate::ids::{self, IdGen};
use crate::schema::{FieldDef, FieldType, ObjectDef, Schema};
use crate::seed::Seed;
use crate::util;
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Record {
    pub object: String,
    pub id: String,
    pub fields: Map<String, Value>,
    pub deleted: bool,
}

impl Record {
    pub fn get(&self, field: &str) -> &Value {
        self.fields.get(field).unwrap_or(&Value::Null)
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    records: HashMap<String, Record>,
    /// Object names and ids in insertion order (queries without ORDER BY return this order).
    order: Vec<(String, String)>,
    idgen: IdGen,
    case_number: u64,
    /// Where API writes are told, for Change Data Capture subscribers.
    changes: std::sync::Arc<crate::pubsub::ChangeFeed>,
}

impl Store {
    /// Builds the records of `seed`; `@ref` values are resolved to the ids of records (and
    /// users) with that `ref`.
    pub fn load(schema: &Schema, seed: &Seed) -> Result<Store, String> {
        let mut store = Store {
            records: HashMap::new(),
            order: vec![],
            idgen: IdGen::new("Em"),
            case_number: 1000,
            changes: Default::default(),
        };
        let mut refs: HashMap<String, String> = HashMap::new();
        let mut pending: Vec<(String, String, Map<String, Value>)> = vec![];
        let t0 = util::now_ms();
        for u in &seed.users {
            let id = match &u.id {
                Some(id) => {
                    ids::to18(id).ok_or_else(|| format!("user {}: bad id {id}", u.username))?
                }
                None => store.idgen.next("005"),
            };
            if let Some(r) = &u.reference {
                refs.insert(r.clone(), id.clone());
            }
            let mut f = Map::new();
            f.insert("Username".into(), Value::from(u.username.clone()));
            f.insert(
                "FirstName".into(),
                u.first_name.clone().map_or(Value::Null, Value::from),
            );
            f.insert("LastName".into(), Value::from(u.last_name.clone()));
            let email = u.email.clone().unwrap_or_else(|| u.username.clone());
            f.insert("Email".into(), Value::from(email));
            f.insert(
                "Phone".into(),
                u.phone.clone().map_or(Value::Null, Value::from),
            );
            f.insert(
                "MobilePhone".into(),
                u.mobile_phone.clone().map_or(Value::Null, Value::from),
            );
            f.insert(
                "Extension".into(),
                u.extension.clone().map_or(Value::Null, Value::from),
            );
            f.insert("IsActive".into(), Value::Bool(u.active));
            let alias: String = u
                .last_name
                .chars()
                .filter(|c| c.is_alphanumeric())
                .take(8)
                .collect();
            f.insert("Alias".into(), Value::from(alias));
            pending.push(("User".into(), id, f));
        }
        for (object, list) in &seed.records {
            let def = schema
                .object(object)
                .ok_or_else(|| format!("seed: unknown object {object}"))?;
            let list = list
                .as_array()
                .ok_or_else(|| format!("seed: records.{object} must be an array"))?;
            for rec in list {
                let mut fields = rec
                    .as_object()
                    .cloned()
                    .ok_or_else(|| format!("seed: {object} record must be an object"))?;
                let id = match fields.remove("Id").as_ref().and_then(Value::as_str) {
                    Some(id) => ids::to18(id).ok_or_else(|| format!("seed: bad id {id}"))?,
                    None => store.idgen.next(&def.key_prefix),
                };
                if let Some(Value::String(r)) = fields.remove("ref") {
                    refs.insert(r, id.clone());
                }
                pending.push((def.name.clone(), id, fields));
            }
        }
        let first_user = pending
            .iter()
            .find(|(o, _, _)| o == "User")
            .map(|(_, id, _)| id.clone())
            .unwrap_or_default();
        for (object, id, fields) in pending {
            let def = schema.object(&object).ok_or("seed: unknown object")?;
            let mut canon = Map::new();
            for (k, v) in fields {
                let fd = def
                    .field(&k)
                    .ok_or_else(|| format!("seed: no field {k} on {object}"))?;
                let v = match v {
                    Value::String(s) if s.starts_with('@') => Value::from(
                        refs.get(&s[1..])
                            .cloned()
                            .ok_or_else(|| format!("seed: unknown ref {s}"))?,
                    ),
                    other => other,
                };
                canon.insert(fd.name.clone(), v);
            }
            store.put_new(def, id, canon, &first_user, t0);
        }
        Ok(store)
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        let id18 = ids::to18(id)?;
        self.records.get(&id18)
    }

    /// Live (or, with `include_deleted`, all) records of one object in insertion order.
    pub fn iter_object<'a>(
        &'a self,
        object: &'a str,
        include_deleted: bool,
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.order
            .iter()
            .filter(move |(of, _)| of == object)
            .filter_map(|(_, id)| self.records.get(id))
            .filter(move |r| include_deleted || !r.deleted)
    }

    /// Inserts a validated record (fields in canonical case), filling defaults and system fields.
    fn put_new(
        &mut self,
        def: &ObjectDef,
        id: String,
        mut fields: Map<String, Value>,
        user: &str,
        now: u64,
    ) {
        for fd in &def.fields {
            if !fields.contains_key(&fd.name) {
                let v = match (&fd.default, fd.name.as_str()) {
                    (Some(d), _) => d.clone(),
                    (None, "OwnerId") => Value::from(user),
                    _ => Value::Null,
                };
                fields.insert(fd.name.clone(), v);
            }
        }
        fields.insert("Id".into(), Value::from(id.clone()));
        let ts = Value::from(util::sf_datetime(now));
        fields.insert("CreatedDate".into(), ts.clone());
        fields.insert("LastModifiedDate".into(), ts);
        fields.insert("CreatedById".into(), Value::from(user));
        fields.insert("LastModifiedById".into(), Value::from(user));
        fields.insert("IsDeleted".into(), Value::Bool(false));
        if def.name == "Case" {
            self.case_number += 1;
            fields.insert(
                "CaseNumber".into(),
                Value::from(format!("{:08}", self.case_number)),
            );
        }
        let mut rec = Record {
            object: def.name.clone(),
            id: id.clone(),
            fields,
            deleted: false,
        };
        self.derive(&mut rec);
        // Keep the schema's field order so full-record reads list fields like describe does.
        let mut ordered = Map::new();
        for fd in &def.fields {
            if let Some(v) = rec.fields.remove(&fd.name) {
                ordered.insert(fd.name.clone(), v);
            }
        }
        rec.fields = ordered;
        self.records.insert(id.clone(), rec);
        self.order.push((def.name.clone(), id));
    }

    /// Computed fields: Name from first/last name, Task.IsClosed and Task.AccountId.
    fn derive(&self, rec: &mut Record) {
        if matches!(rec.object.as_str(), "Contact" | "Lead" | "User") {
            let first = rec.get("FirstName").as_str().unwrap_or("").to_string();
            let last = rec.get("LastName").as_str().unwrap_or("").to_string();
            let name = if first.is_empty() {
                last
            } else {
                format!("{first} {last}")
            };
            rec.fields.insert("Name".into(), Value::from(name));
        }
        if rec.object == "Task" {
            let closed = rec.get("Status").as_str() == Some("Completed");
            rec.fields.insert("IsClosed".into(), Value::Bool(closed));
            let account = [rec.get("WhatId"), rec.get("WhoId")]
                .into_iter()
                .filter_map(Value::as_str)
                .find_map(|id| match ids::prefix(id) {
                    "001" => Some(id.to_string()),
                    "003" => self
                        .get(id)
                        .and_then(|c| c.get("AccountId").as_str().map(String::from)),
                    _ => None,
                });
            rec.fields
                .insert("AccountId".into(), account.map_or(Value::Null, Value::from));
        }
    }

    /// Validates and inserts; returns the new id.
    pub fn create(
        &mut self,
        def: &ObjectDef,
        input: &Map<String, Value>,
        user: &str,
    ) -> Result<String, ApiError> {
        let fields = self.validate(def, input, true)?;
        let id = self.idgen.next(&def.key_prefix);
        self.put_new(def, id.clone(), fields, user, util::now_ms());
        let created = self.get(&id).map(|r| r.fields.clone()).unwrap_or_default();
        if !def.is_event {
            self.changes.record(&def.name, "CREATE", &id, created, user);
        }
        Ok(id)
    }

    /// A new id for a record Salesforce itself creates (a VoiceCall from the Telephony
    /// Integration API): from the same generator, so it never collides with the API's.
    pub fn next_id(&mut self, key_prefix: &str) -> String {
        self.idgen.next(key_prefix)
    }

    /// Writes a record Salesforce itself maintains, without the API's field checks (every
    /// VoiceCall field is read-only over the API): inserted on the first write, its given
    /// fields replaced after.
    pub fn put_system(&mut self, def: &ObjectDef, id: &str, fields: &Map<String, Value>) {
        let canon: Map<String, Value> = def
            .fields
            .iter()
            .filter(|fd| fd.name != "Id")
            .filter_map(|fd| fields.get(&fd.name).map(|v| (fd.name.clone(), v.clone())))
            .collect();
        let now = util::now_ms();
        if let Some(rec) = self.records.get_mut(id) {
            rec.fields.extend(canon);
            rec.fields.insert(
                "LastModifiedDate".into(),
                Value::from(util::sf_datetime(now)),
            );
            return;
        }
        let user = self
            .iter_object("User", false)
            .next()
            .map(|u| u.id.clone())
            .unwrap_or_default();
        self.put_new(def, id.to_string(), canon, &user, now);
    }

    pub fn update(
        &mut self,
        def: &ObjectDef,
        id: &str,
        input: &Map<String, Value>,
        user: &str,
    ) -> Result<(), ApiError> {
        let existing = self.live(def, id)?.id.clone();
        let fields = self.validate(def, input, false)?;
        let mut rec = self
            .records
            .get(&existing)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        let mut changed = Map::new();
        for (k, v) in fields {
            if rec.fields.get(&k) != Some(&v) {
                changed.insert(k.clone(), v.clone());
            }
            rec.fields.insert(k, v);
        }
        if def.name == "Task" {
            Self::check_task(&rec.fields, self)?;
        }
        rec.fields.insert(
            "LastModifiedDate".into(),
            Value::from(util::sf_datetime(util::now_ms())),
        );
        rec.fields
            .insert("LastModifiedById".into(), Value::from(user));
        self.derive(&mut rec);
        changed.insert("LastModifiedById".into(), Value::from(user));
        changed.insert(
            "LastModifiedDate".into(),
            rec.get("LastModifiedDate").clone(),
        );
        self.records.insert(existing.clone(), rec);
        self.changes
            .record(&def.name, "UPDATE", &existing, changed, user);
        Ok(())
    }

    pub fn delete(&mut self, def: &ObjectDef, id: &str) -> Result<(), ApiError> {
        let id18 = self.live(def, id)?.id.clone();
        let mut user = String::new();
        if let Some(r) = self.records.get_mut(&id18) {
            r.deleted = true;
            r.fields.insert("IsDeleted".into(), Value::Bool(true));
            user = r.get("LastModifiedById").as_str().unwrap_or("").to_string();
        }
        self.changes
            .record(&def.name, "DELETE", &id18, Map::new(), &user);
        Ok(())
    }

    /// The change feed this store tells its writes to.
    pub fn changes(&self) -> &std::sync::Arc<crate::pubsub::ChangeFeed> {
        &self.changes
    }

    /// Tells writes to `feed` (a reset store keeps the org's feed, so replay ids only go up).
    pub fn set_changes(&mut self, feed: std::sync::Arc<crate::pubsub::ChangeFeed>) {
        self.changes = feed;
    }

    /// The live record `id` of type `def`, or Salesforce's error for it.
    pub fn live(&self, def: &ObjectDef, id: &str) -> Result<&Record, ApiError> {
        let rec = self.get(id).ok_or_else(ApiError::not_found)?;
        if rec.object != def.name {
            return Err(ApiError::not_found());
        }
        if rec.deleted {
            return Err(ApiError::new(404, "ENTITY_IS_DELETED", "entity is deleted"));
        }
        Ok(rec)
    }

    /// Checks a create/update body against the schema; returns the fields in canonical case.
    pub fn validate(
        &self,
        def: &ObjectDef,
        input: &Map<String, Value>,
        create: bool,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut out = Map::new();
        for (k, v) in input {
            if k == "attributes" {
                continue;
            }
            if k.eq_ignore_ascii_case("Id") {
                return Err(ApiError::bad_request(
                    "INVALID_FIELD",
                    "The Id field should not be specified in the sobject data.",
                ));
            }
            let fd = def.field(k).ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_FIELD",
                    format!("No such column '{k}' on sobject of type {}", def.name),
                )
            })?;
            if (create && !fd.createable) || (!create && !fd.updateable) {
                return Err(ApiError::bad_request(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        fd.name
                    ),
                )
                .with_fields(&[&fd.name]));
            }
            out.insert(fd.name.clone(), self.coerce(fd, v)?);
        }
        let mut missing: Vec<&str> = vec![];
        for fd in def.fields.iter().filter(|f| f.required) {
            let given = out.get(&fd.name);
            let absent = given.is_none_or(is_blank);
            if (create && absent) || (!create && given.is_some_and(is_blank)) {
                missing.push(&fd.name);
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::bad_request(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
            )
            .with_fields(&missing));
        }
        if create && def.name == "Task" {
            Self::check_task(&out, self)?;
        }
        Ok(out)
    }

    /// A Task whose WhoId is a Lead cannot also have a WhatId.
    fn check_task(fields: &Map<String, Value>, _store: &Store) -> Result<(), ApiError> {
        let who_is_lead = fields
            .get("WhoId")
            .and_then(Value::as_str)
            .is_some_and(|id| ids::prefix(id) == "00Q");
        let has_what = fields.get("WhatId").is_some_and(|v| !v.is_null());
        if who_is_lead && has_what {
            return Err(ApiError::bad_request(
                "FIELD_INTEGRITY_EXCEPTION",
                "Related To ID: You can't associate a task with a lead and another record (WhatId must be empty when WhoId is a Lead).",
            )
            .with_fields(&["WhatId"]));
        }
        Ok(())
    }

    fn coerce(&self, fd: &FieldDef, v: &Value) -> Result<Value, ApiError> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        let parse_err = |what: &str| {
            ApiError::bad_request(
                "JSON_PARSER_ERROR",
                format!(
                    "Cannot deserialize instance of {what} from {v} value for field {}",
                    fd.name
                ),
            )
        };
        match fd.ftype {
            t if t.is_text() || t == FieldType::Date || t == FieldType::DateTime => {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(parse_err("string")),
                };
                if fd.ftype == FieldType::Date && !is_date(&s) {
                    return Err(ApiError::bad_request(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        format!("{}: value not of required type: {s}", fd.label),
                    )
                    .with_fields(&[&fd.name]));
                }
                if t.is_text() && s.chars().count() > fd.length as usize {
                    return Err(ApiError::bad_request(
                        "STRING_TOO_LONG",
                        format!(
                            "{}: data value too large: {s} (max length={})",
                            fd.label, fd.length
                        ),
                    )
                    .with_fields(&[&fd.name]));
                }
                if fd.restricted && !fd.picklist.iter().any(|p| p == &s) {
                    return Err(ApiError::bad_request(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("{}: bad value for restricted picklist field: {s}", fd.label),
                    )
                    .with_fields(&[&fd.name]));
                }
                Ok(Value::from(s))
            }
            FieldType::Boolean => match v {
                Value::Bool(_) => Ok(v.clone()),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                _ => Err(parse_err("boolean")),
            },
            FieldType::Int => match v {
                Value::Number(n) if n.is_i64() => Ok(v.clone()),
                Value::Number(n) => Ok(Value::from(n.as_f64().unwrap_or(0.0) as i64)),
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| parse_err("int")),
                _ => Err(parse_err("int")),
            },
            FieldType::Double => match v {
                Value::Number(n) => Ok(Value::from(n.as_f64().unwrap_or(0.0))),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .map(Value::from)
                    .map_err(|_| parse_err("double")),
                _ => Err(parse_err("double")),
            },
            FieldType::Id | FieldType::Reference => {
                let s = v.as_str().ok_or_else(|| parse_err("id"))?;
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                let id = ids::to18(s).ok_or_else(|| {
                    ApiError::bad_request(
                        "MALFORMED_ID",
                        format!("{}: id value of incorrect type: {s}", fd.label),
                    )
                    .with_fields(&[&fd.name])
                })?;
                let wanted_type = fd.reference_to.iter().any(|t| {
                    t == "User" && ids::prefix(&id) == "005"
                        || self.type_of_prefix(ids::prefix(&id)).as_deref() == Some(t.as_str())
                });
                if !wanted_type {
                    return Err(ApiError::bad_request(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("{}: id value of incorrect type: {s}", fd.label),
                    )
                    .with_fields(&[&fd.name]));
                }
                // Only a queue can own a record; other groups are no owners.
                let not_a_queue = |r: &Record| {
                    fd.name == "OwnerId" && r.object == "Group" && r.get("Type") != "Queue"
                };
                match self.records.get(&id) {
                    Some(r) if !r.deleted && !not_a_queue(r) => Ok(Value::from(id)),
                    _ => Err(ApiError::bad_request(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                    )
                    .with_fields(&[&fd.name])),
                }
            }
            _ => Ok(v.clone()),
        }
    }

    fn type_of_prefix(&self, prefix: &str) -> Option<String> {
        Schema::standard_prefix(prefix).map(String::from)
    }
}

fn is_blank(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty())
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}
