//! sObject resources: describeGlobal, describe, create (and platform-event publish), read,
//! update, delete, upsert by external id, and `composite/sobjects`.

use super::{method_not_allowed, Ctx};
use crate::error::ApiError;
use crate::http::{decode_segment, HandlerResult, Response};
use crate::ids;
use crate::schema::ObjectDef;
use crate::soql::eval::{self, Path};
use crate::soql::parser::FieldRef;
use crate::state::Org;
use crate::util;
use hyper::Method;
use serde_json::{json, Map, Value};

pub fn route(ctx: &Ctx, m: &Method, segs: &[&str]) -> HandlerResult {
    let org = ctx.org;
    match segs {
        ["sobjects"] if *m == Method::GET => {
            org.stats.endpoint("describe_global");
            let list: Vec<Value> = org
                .schema
                .objects
                .iter()
                .map(|o| o.global_entry(&ctx.version))
                .collect();
            Ok(Response::json(
                200,
                &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list}),
            ))
        }
        ["composite", "sobjects"] => {
            let result = composite(ctx, m);
            // Counted once handled, so a test that sees the count sees every record it wrote.
            ctx.org.stats.endpoint("composite_sobjects");
            result
        }
        ["sobjects", "Name", "describe"] if *m == Method::GET => {
            org.stats.endpoint("describe:Name");
            Ok(Response::json(200, &name_describe(&ctx.version)))
        }
        ["sobjects", ty, rest @ ..] => {
            let def = org
                .schema
                .object(&decode_segment(ty))
                .ok_or_else(ApiError::not_found)?;
            match (rest, m.clone()) {
                ([], Method::GET) => {
                    org.stats.endpoint(&format!("sobject_info:{}", def.name));
                    Ok(Response::json(
                        200,
                        &json!({"objectDescribe": def.global_entry(&ctx.version), "recentItems": []}),
                    ))
                }
                ([], Method::POST) => create(ctx, def),
                ([], _) => Err(method_not_allowed(m, "GET,POST")),
                (["describe"], Method::GET) => {
                    org.stats.endpoint(&format!("describe:{}", def.name));
                    Ok(Response::json(200, &def.describe(&ctx.version)))
                }
                ([id], Method::GET) => read(ctx, def, &decode_segment(id)),
                ([id], Method::PATCH) => update(ctx, def, &decode_segment(id)),
                ([id], Method::DELETE) => delete(ctx, def, &decode_segment(id)),
                ([_], _) => Err(method_not_allowed(m, "GET,PATCH,DELETE")),
                ([field, value], Method::PATCH) => {
                    upsert(ctx, def, &decode_segment(field), &decode_segment(value))
                }
                ([field, value], Method::GET) => {
                    by_external_id(ctx, def, &decode_segment(field), &decode_segment(value))
                }
                ([_, _], _) => Err(method_not_allowed(m, "GET,PATCH")),
                _ => Err(ApiError::not_found()),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

/// The `Name` entity supports describe only (Object Reference: "Supported Calls:
/// describeSObjects()"): not creatable, queryable or searchable by itself, no key prefix.
fn name_describe(version: &str) -> Value {
    let mut d = crate::schema::name_entity().describe(version);
    if let Some(o) = d.as_object_mut() {
        for flag in [
            "createable",
            "updateable",
            "deletable",
            "queryable",
            "retrieveable",
            "searchable",
            "layoutable",
            "triggerable",
            "replicateable",
            "undeletable",
        ] {
            o.insert(flag.into(), Value::Bool(false));
        }
        o.insert("keyPrefix".into(), Value::Null);
    }
    d
}

fn body_object(ctx: &Ctx) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(&ctx.req.body).map_err(|e| {
        ApiError::bad_request(
            "JSON_PARSER_ERROR",
            format!("Unexpected character in request body: {e}"),
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of sobject from a non-object JSON value",
        )),
    }
}

/// Publishes a platform event: 201-style result with OPERATION_ENQUEUED.
fn publish(
    org: &Org,
    def: &ObjectDef,
    input: &Map<String, Value>,
    user: &str,
) -> Result<Value, ApiError> {
    let mut fields = Map::new();
    for (k, v) in input {
        if k == "attributes" {
            continue;
        }
        let fd = def.field(k).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_FIELD",
                format!("No such column '{k}' on sobject of type {}", def.name),
            )
        })?;
        if !fd.createable {
            return Err(ApiError::bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!("Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", fd.name),
            )
            .with_fields(&[&fd.name]));
        }
        fields.insert(fd.name.clone(), v.clone());
    }
    let uuid = util::uuid_v4();
    let mut data = org.data();
    let replay = data.events.len() + 1;
    fields.insert(
        "CreatedDate".into(),
        Value::from(util::sf_datetime(util::now_ms())),
    );
    fields.insert("CreatedById".into(), Value::from(user));
    fields.insert("EventUuid".into(), Value::from(uuid.clone()));
    fields.insert("ReplayId".into(), Value::from(replay.to_string()));
    data.events
        .push(json!({"type": def.name, "uuid": uuid, "replay_id": replay, "fields": fields}));
    Ok(json!({
        "id": format!("{}xx0000000001AAA", def.key_prefix),
        "success": true,
        "errors": [{"statusCode": "OPERATION_ENQUEUED", "message": uuid, "fields": []}],
    }))
}

/// Creates one record (or publishes an event); the per-record result body.
fn create_one(
    org: &Org,
    def: &ObjectDef,
    input: &Map<String, Value>,
    user: &str,
) -> Result<Value, ApiError> {
    if def.is_event {
        return publish(org, def, input, user);
    }
    let mut data = org.data();
    let id = data.store.create(def, input, user)?;
    let rec = data
        .store
        .get(&id)
        .map(|r| Value::Object(r.fields.clone()))
        .unwrap_or(Value::Null);
    data.created
        .push(json!({"type": def.name, "id": id, "fields": rec}));
    Ok(json!({"id": id, "success": true, "errors": []}))
}

fn create(ctx: &Ctx, def: &ObjectDef) -> HandlerResult {
    ctx.org
        .stats
        .endpoint(&format!("sobject_create:{}", def.name));
    let input = body_object(ctx)?;
    let result = create_one(ctx.org, def, &input, &ctx.session.user_id)?;
    let id = result["id"].as_str().unwrap_or("").to_string();
    let mut resp = Response::json(201, &result);
    if !def.is_event {
        resp = resp.with_header(
            "Location",
            format!("/services/data/v{}/sobjects/{}/{id}", ctx.version, def.name),
        );
    }
    Ok(resp)
}

fn read(ctx: &Ctx, def: &ObjectDef, id: &str) -> HandlerResult {
    ctx.org.stats.endpoint(&format!("sobject_get:{}", def.name));
    if def.is_event {
        return Err(ApiError::not_found());
    }
    let fields: Option<Vec<Path>> = match ctx.req.query_param("fields") {
        Some(list) => {
            let refs: Vec<FieldRef> = list
                .split(',')
                .map(|f| FieldRef {
                    path: f.trim().to_string(),
                    pos: 0,
                })
                .filter(|f| !f.path.is_empty())
                .collect();
            Some(
                eval::compile_fields(&ctx.org.schema, def, &refs)
                    .map_err(|e| ApiError::bad_request(e.code, e.message))?,
            )
        }
        None => None,
    };
    let data = ctx.org.data();
    let rec = data.store.live(def, id)?;
    Ok(Response::json(
        200,
        &record_json(ctx, &data.store, rec, fields.as_deref()),
    ))
}

fn record_json(
    ctx: &Ctx,
    store: &crate::store::Store,
    rec: &crate::store::Record,
    fields: Option<&[Path]>,
) -> Value {
    match fields {
        Some(f) => eval::project(store, rec, f, &ctx.version),
        None => {
            let mut out = Map::new();
            out.insert(
                "attributes".into(),
                eval::attributes(&rec.object, &rec.id, &ctx.version),
            );
            for (k, v) in &rec.fields {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(out)
        }
    }
}

fn update(ctx: &Ctx, def: &ObjectDef, id: &str) -> HandlerResult {
    ctx.org
        .stats
        .endpoint(&format!("sobject_update:{}", def.name));
    if def.is_event {
        return Err(ApiError::not_found());
    }
    let input = body_object(ctx)?;
    ctx.org
        .data()
        .store
        .update(def, id, &input, &ctx.session.user_id)?;
    Ok(Response::empty(204))
}

fn delete(ctx: &Ctx, def: &ObjectDef, id: &str) -> HandlerResult {
    ctx.org
        .stats
        .endpoint(&format!("sobject_delete:{}", def.name));
    if def.is_event {
        return Err(ApiError::not_found());
    }
    ctx.org.data().store.delete(def, id)?;
    Ok(Response::empty(204))
}

/// Ids of live records whose external-id `field` equals `value`; errors for unknown fields.
fn ext_matches(
    ctx: &Ctx,
    def: &ObjectDef,
    field: &str,
    value: &str,
) -> Result<(String, Vec<String>), ApiError> {
    let fd = def
        .field(field)
        .filter(|f| f.external_id || f.name == "Id")
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            )
        })?;
    let data = ctx.org.data();
    let ids: Vec<String> = if fd.name == "Id" {
        ids::to18(value)
            .into_iter()
            .filter(|id| data.store.live(def, id).is_ok())
            .collect()
    } else {
        data.store
            .iter_object(&def.name, false)
            .filter(|r| {
                r.get(&fd.name)
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
            })
            .map(|r| r.id.clone())
            .collect()
    };
    Ok((fd.name.clone(), ids))
}

fn multiple(ctx: &Ctx, def: &ObjectDef, ids: &[String]) -> Response {
    let urls: Vec<Value> = ids
        .iter()
        .map(|id| {
            Value::from(format!(
                "/services/data/v{}/sobjects/{}/{id}",
                ctx.version, def.name
            ))
        })
        .collect();
    Response::json(300, &Value::Array(urls))
}

fn upsert(ctx: &Ctx, def: &ObjectDef, field: &str, value: &str) -> HandlerResult {
    ctx.org
        .stats
        .endpoint(&format!("sobject_upsert:{}", def.name));
    let (fname, ids) = ext_matches(ctx, def, field, value)?;
    let mut input = body_object(ctx)?;
    let user = &ctx.session.user_id;
    // REST API Developer Guide, "Insert or Update (Upsert) a Record Using an External ID":
    // `created` is in the body from API 46.0; before that an update answers 204, no body.
    let reports_created = ctx
        .version
        .trim_end_matches(".0")
        .parse::<u32>()
        .is_ok_and(|v| v >= 46);
    match ids.as_slice() {
        [] => {
            if fname == "Id" {
                return Err(ApiError::not_found());
            }
            input.insert(fname, Value::from(value));
            let mut result = create_one(ctx.org, def, &input, user)?;
            if reports_created {
                result["created"] = Value::Bool(true);
            }
            Ok(Response::json(201, &result))
        }
        [id] => {
            input.retain(|k, _| !k.eq_ignore_ascii_case(&fname) || fname == "Id");
            ctx.org.data().store.update(def, id, &input, user)?;
            if !reports_created {
                return Ok(Response::empty(204));
            }
            Ok(Response::json(
                200,
                &json!({"id": id, "success": true, "errors": [], "created": false}),
            ))
        }
        many => Ok(multiple(ctx, def, many)),
    }
}

fn by_external_id(ctx: &Ctx, def: &ObjectDef, field: &str, value: &str) -> HandlerResult {
    ctx.org.stats.endpoint(&format!("sobject_get:{}", def.name));
    let (_, ids) = ext_matches(ctx, def, field, value)?;
    match ids.as_slice() {
        [] => Err(ApiError::not_found()),
        [id] => {
            let data = ctx.org.data();
            let rec = data.store.live(def, id)?;
            Ok(Response::json(
                200,
                &record_json(ctx, &data.store, rec, None),
            ))
        }
        many => Ok(multiple(ctx, def, many)),
    }
}

fn rolled_back() -> Value {
    json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]})
}

fn failure(e: &ApiError) -> Value {
    json!({"success": false, "errors": [e.record_json()]})
}

/// `/composite/sobjects`: POST (create), PATCH (update), DELETE `?ids=`. Always 200 with
/// per-record results (`statusCode`, not `errorCode`).
fn composite(ctx: &Ctx, m: &Method) -> HandlerResult {
    let org = ctx.org;
    let user = &ctx.session.user_id;
    if *m == Method::DELETE {
        let ids_param = ctx.req.query_param("ids").unwrap_or_default();
        let all_or_none = ctx
            .req
            .query_param("allOrNone")
            .is_some_and(|v| v == "true");
        let ids: Vec<&str> = ids_param.split(',').filter(|s| !s.is_empty()).collect();
        let mut results = vec![];
        let snapshot = all_or_none.then(|| org.data().store.clone());
        let mut failed = false;
        for id in &ids {
            let def = ids::to18(id).and_then(|i| {
                let data = org.data();
                data.store
                    .get(&i)
                    .and_then(|r| org.schema.object(&r.object).cloned())
            });
            let r = match def {
                Some(d) => org
                    .data()
                    .store
                    .delete(&d, id)
                    .map(|_| json!({"id": ids::to18(id), "success": true, "errors": []})),
                None => Err(ApiError::bad_request(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                )),
            };
            results.push(r.unwrap_or_else(|e| {
                failed = true;
                json!({"id": id, "success": false, "errors": [e.record_json()]})
            }));
        }
        if failed {
            if let Some(s) = snapshot {
                org.data().store = s;
                results = results
                    .iter()
                    .map(|r| {
                        if r["success"] == true {
                            rolled_back()
                        } else {
                            r.clone()
                        }
                    })
                    .collect();
            }
        }
        return Ok(Response::json(200, &Value::Array(results)));
    }
    if *m != Method::POST && *m != Method::PATCH {
        return Err(method_not_allowed(m, "POST,PATCH,DELETE"));
    }
    let body = body_object(ctx)?;
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("JSON_PARSER_ERROR", "records is required"))?;
    if records.len() > 200 {
        return Err(ApiError::bad_request(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ));
    }
    let snapshot = all_or_none.then(|| {
        let data = org.data();
        (data.store.clone(), data.created.len(), data.events.len())
    });
    let mut results = vec![];
    let mut failed = false;
    for rec in &records {
        let r = (|| -> Result<Value, ApiError> {
            let obj = rec.as_object().ok_or_else(|| {
                ApiError::bad_request("JSON_PARSER_ERROR", "record must be an object")
            })?;
            let ty = obj
                .get("attributes")
                .and_then(|a| a["type"].as_str())
                .ok_or_else(|| {
                    ApiError::bad_request("INVALID_TYPE", "Must specify a type in attributes field")
                })?;
            let def = org.schema.object(ty).ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_TYPE",
                    format!("sObject type '{ty}' is not supported."),
                )
            })?;
            if *m == Method::POST {
                create_one(org, def, obj, user)
            } else {
                let id = obj.get("Id").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::bad_request("MISSING_ARGUMENT", "Id not specified in an update call")
                })?;
                let mut fields = obj.clone();
                fields.remove("Id");
                org.data().store.update(def, id, &fields, user)?;
                Ok(json!({"id": ids::to18(id), "success": true, "errors": []}))
            }
        })();
        results.push(r.unwrap_or_else(|e| {
            failed = true;
            failure(&e)
        }));
    }
    if failed {
        if let Some((store, created, events)) = snapshot {
            let mut data = org.data();
            data.store = store;
            data.created.truncate(created);
            data.events.truncate(events);
            results = results
                .iter()
                .map(|r| {
                    if r["success"] == true {
                        rolled_back()
                    } else {
                        r.clone()
                    }
                })
                .collect();
        }
    }
    Ok(Response::json(200, &Value::Array(results)))
}
