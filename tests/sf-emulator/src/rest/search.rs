//! `search` (SOSL) and `parameterizedSearch`.

use super::Ctx;
use crate::error::ApiError;
use crate::http::{HandlerResult, Response};
use crate::search_term::SearchTerm;
use crate::soql::eval;
use crate::soql::parser::FieldRef;
use crate::sosl::{self, Scope, Search};
use crate::stats::QueryLogEntry;
use hyper::Method;
use serde_json::{json, Value};

fn respond(ctx: &Ctx, s: &Search) -> Response {
    let phone = ctx.org.runtime().phone_match;
    let records = {
        let data = ctx.org.data();
        sosl::run(&data.store, s, &phone, &ctx.version)
    };
    let v: u32 = ctx.version.trim_end_matches(".0").parse().unwrap_or(68);
    if v < 36 {
        Response::json(200, &Value::Array(records))
    } else {
        Response::json(200, &json!({"searchRecords": records}))
    }
}

pub fn search(ctx: &Ctx) -> HandlerResult {
    ctx.org.stats.endpoint("search");
    let q = ctx.req.query_param("q").unwrap_or_default();
    let parsed = sosl::parse_cached(&ctx.org.schema, &ctx.org.search_plans, &q);
    ctx.org.stats.query(QueryLogEntry {
        kind: "sosl".into(),
        text: q.clone(),
        values: vec![],
        literals: parsed
            .as_ref()
            .map(|s| s.term.literals())
            .unwrap_or_default(),
        error: parsed.as_ref().err().map(|e| e.code.clone()),
    });
    Ok(respond(ctx, &parsed?))
}

struct ObjSpec {
    name: String,
    fields: Vec<String>,
    limit: Option<usize>,
}

pub fn parameterized(ctx: &Ctx, m: &Method) -> HandlerResult {
    ctx.org.stats.endpoint("parameterizedSearch");
    let (q, scope, specs, overall, default_fields) = if *m == Method::POST {
        let body: Value = serde_json::from_slice(&ctx.req.body)
            .map_err(|e| ApiError::bad_request("JSON_PARSER_ERROR", format!("{e}")))?;
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let specs: Vec<ObjSpec> = body["sobjects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| ObjSpec {
                        name: o["name"].as_str().unwrap_or("").to_string(),
                        fields: strs(&o["fields"]),
                        limit: o["limit"].as_u64().map(|n| n as usize),
                    })
                    .collect()
            })
            .unwrap_or_default();
        (
            body["q"].as_str().map(String::from),
            body["in"].as_str().map(String::from),
            specs,
            body["overallLimit"].as_u64().map(|n| n as usize),
            strs(&body["fields"]),
        )
    } else {
        let params = ctx.req.query();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let split = |s: Option<String>| -> Vec<String> {
            s.map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        let specs = params
            .iter()
            .filter(|(k, _)| k == "sobject")
            .map(|(_, name)| ObjSpec {
                name: name.clone(),
                fields: split(get(&format!("{name}.fields"))),
                limit: get(&format!("{name}.limit")).and_then(|l| l.parse().ok()),
            })
            .collect();
        (
            get("q"),
            get("in"),
            specs,
            get("overallLimit").and_then(|l| l.parse().ok()),
            split(get("fields")),
        )
    };
    let q = q.filter(|q| !q.trim().is_empty()).ok_or_else(|| {
        ApiError::bad_request("MISSING_ARGUMENT", "Missing required query parameter: q")
    })?;
    let scope = match scope {
        Some(s) => Scope::parse(&s).ok_or_else(|| {
            ApiError::bad_request("INVALID_SEARCH_SCOPE", format!("Invalid search scope: {s}"))
        })?,
        None => Scope::All,
    };
    ctx.org.stats.query(QueryLogEntry {
        kind: "parameterized_search".into(),
        text: q.clone(),
        literals: vec![q.clone()],
        values: vec![],
        error: None,
    });
    if q.chars()
        .filter(|c| !c.is_whitespace() && *c != '*')
        .count()
        < 2
    {
        return Err(ApiError::bad_request(
            "INVALID_SEARCH",
            "search term must be longer than one character",
        ));
    }
    let schema = &ctx.org.schema;
    let specs = if specs.is_empty() {
        sosl::DEFAULT_OBJECTS
            .iter()
            .map(|n| ObjSpec {
                name: n.to_string(),
                fields: vec![],
                limit: None,
            })
            .collect()
    } else {
        specs
    };
    let mut targets = vec![];
    for spec in specs {
        let mut t = sosl::default_target(schema, &spec.name)
            .filter(|t| !t.def.is_event)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_TYPE",
                    format!("sObject type '{}' is not supported.", spec.name),
                )
            })?;
        let names = if spec.fields.is_empty() {
            default_fields.clone()
        } else {
            spec.fields
        };
        if !names.is_empty() {
            let refs: Vec<FieldRef> = names
                .iter()
                .map(|n| FieldRef {
                    path: n.clone(),
                    pos: 0,
                })
                .collect();
            t.fields = eval::compile_fields(schema, &t.def, &refs)
                .map_err(|e| ApiError::bad_request(e.code, e.message))?;
        }
        t.limit = spec.limit;
        targets.push(t);
    }
    let s = Search {
        term: SearchTerm::literal(&q),
        scope,
        targets: std::sync::Arc::new(targets),
        limit: overall,
    };
    Ok(respond(ctx, &s))
}
