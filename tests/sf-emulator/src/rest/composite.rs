//! `POST /composite`: up to 25 subrequests run in order with `@{ref.path}` references, one API
//! call; `allOrNone` rolls back every write when one subrequest fails.

use super::{route, Ctx};
use crate::error::ApiError;
use crate::http::{HandlerResult, Request, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

const MAX_SUBREQUESTS: usize = 25;

fn halted(message: &str) -> Value {
    json!([{"errorCode": "PROCESSING_HALTED", "message": message}])
}

/// Value at `records[0].Id`-style path inside a JSON body.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        let (name, index) = match part.find('[') {
            Some(i) => (
                &part[..i],
                part[i + 1..]
                    .strip_suffix(']')
                    .and_then(|n| n.parse::<usize>().ok()),
            ),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Replaces every `@{ref.path}` in `text`; Err names the first unresolved reference.
fn substitute(text: &str, results: &HashMap<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let expr = &rest[start + 2..start + end];
        let (refid, path) = expr.split_once('.').unwrap_or((expr, ""));
        let value = results
            .get(refid)
            .and_then(|body| lookup(body, path))
            .ok_or_else(|| expr.to_string())?;
        match value {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn sub_body(v: &Value, results: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute(s, results)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| sub_body(x, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, x) in o {
                m.insert(k.clone(), sub_body(x, results)?);
            }
            Value::Object(m)
        }
        other => other.clone(),
    })
}

/// Runs one subrequest through the REST router with the caller's session.
fn run_one(ctx: &Ctx, sub: &Value, results: &HashMap<String, Value>) -> Result<Response, Value> {
    let method = sub["method"].as_str().unwrap_or("GET").to_ascii_uppercase();
    let url = substitute(sub["url"].as_str().unwrap_or(""), results).map_err(|r| {
        halted(&format!(
            "Invalid reference specified. No value for {r} found in any previous subrequest."
        ))
    })?;
    let body = match sub.get("body") {
        Some(b) => sub_body(b, results)
            .map_err(|r| halted(&format!("Invalid reference specified. No value for {r} found in any previous subrequest.")))?
            .to_string(),
        None => String::new(),
    };
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let Some(rest) = path.strip_prefix("/services/data/") else {
        return Err(
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
        );
    };
    let (vseg, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let version = super::parse_version(vseg).map_err(|e| Value::Array(vec![e.rest_json()]))?;
    let req = Request {
        method: hyper::Method::from_bytes(method.as_bytes()).unwrap_or(hyper::Method::GET),
        path: path.to_string(),
        raw_query: query.to_string(),
        headers: ctx.req.headers.clone(),
        body: body.into(),
        peer: ctx.req.peer,
    };
    let sub_ctx = Ctx {
        org: ctx.org,
        req: &req,
        session: ctx.session.clone(),
        version: format!("{version}.0"),
    };
    let tail = tail.trim_end_matches('/');
    let segs: Vec<&str> = if tail.is_empty() {
        vec![]
    } else {
        tail.split('/').collect()
    };
    if segs.first() == Some(&"composite") {
        return Err(
            json!([{"errorCode": "INVALID_API_INPUT", "message": "Composite requests cannot be nested"}]),
        );
    }
    Ok(route(&sub_ctx, &segs).unwrap_or_else(|e| Response::error(&e)))
}

pub fn composite(ctx: &Ctx) -> HandlerResult {
    ctx.org.stats.endpoint("composite");
    let body: Value = serde_json::from_slice(&ctx.req.body)
        .map_err(|e| ApiError::bad_request("JSON_PARSER_ERROR", format!("{e}")))?;
    let subs = body["compositeRequest"].as_array().ok_or_else(|| {
        ApiError::bad_request("JSON_PARSER_ERROR", "compositeRequest is required")
    })?;
    if subs.is_empty() || subs.len() > MAX_SUBREQUESTS {
        return Err(ApiError::bad_request(
            "INVALID_API_INPUT",
            format!(
                "The composite request must contain between 1 and {MAX_SUBREQUESTS} subrequests"
            ),
        ));
    }
    let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
    let snapshot = all_or_none.then(|| {
        let data = ctx.org.data();
        (data.store.clone(), data.created.len(), data.events.len())
    });
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut out: Vec<Value> = vec![];
    let mut failed = false;
    for sub in subs {
        let reference = sub["referenceId"].as_str().unwrap_or("").to_string();
        let (status, headers, body) = if failed && all_or_none {
            (400, Map::new(), halted("The transaction was rolled back since another operation in the same transaction failed."))
        } else {
            match run_one(ctx, sub, &results) {
                Ok(r) => {
                    let body = if r.body.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
                    };
                    let mut h = Map::new();
                    if let Some(loc) = r.header("Location") {
                        h.insert("Location".into(), Value::from(loc));
                    }
                    (r.status, h, body)
                }
                Err(body) => (400, Map::new(), body),
            }
        };
        if status >= 400 {
            failed = true;
        } else {
            results.insert(reference.clone(), body.clone());
        }
        out.push(json!({"body": body, "httpHeaders": headers, "httpStatusCode": status, "referenceId": reference}));
    }
    if failed {
        if let Some((store, created, events)) = snapshot {
            {
                let mut data = ctx.org.data();
                data.store = store;
                data.created.truncate(created);
                data.events.truncate(events);
            }
            let rolled = halted("The transaction was rolled back since another operation in the same transaction failed.");
            for r in out.iter_mut() {
                if r["httpStatusCode"].as_u64().is_some_and(|s| s < 400) {
                    r["httpStatusCode"] = Value::from(400);
                    r["body"] = rolled.clone();
                    r["httpHeaders"] = json!({});
                }
            }
        }
    }
    Ok(Response::json(200, &json!({"compositeResponse": out})))
}
