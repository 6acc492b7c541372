//! REST API under `/services/data/`: version handling, authentication, limits, routing.

pub mod composite;
pub mod query;
pub mod search;
pub mod sobjects;

use crate::error::ApiError;
use crate::http::{HandlerResult, Request, Response};
use crate::sessions::Session;
use crate::state::Org;
use hyper::Method;
use serde_json::{json, Value};

pub const MIN_VERSION: u32 = 31;
pub const MAX_VERSION: u32 = 68;

/// Release label for an API version (65.0 = Winter '26, three releases a year).
pub fn release_label(v: u32) -> String {
    let idx = v as i64 - 65;
    let season = ["Winter", "Spring", "Summer"][idx.rem_euclid(3) as usize];
    format!("{season} '{:02}", 26 + idx.div_euclid(3))
}

/// `GET /services/data/` (no auth): every served version, oldest first.
pub fn versions() -> Response {
    let list: Vec<Value> = (MIN_VERSION..=MAX_VERSION)
        .map(|v| json!({"label": release_label(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")}))
        .collect();
    Response::json(200, &Value::Array(list))
}

/// Parses `vNN.0`: Ok(number) when served, Err(response) otherwise.
pub fn parse_version(seg: &str) -> Result<u32, ApiError> {
    let n = seg
        .strip_prefix('v')
        .and_then(|s| s.strip_suffix(".0"))
        .filter(|s| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or_else(ApiError::not_found)?;
    if n < MIN_VERSION {
        return Err(ApiError::new(
            410,
            "GONE",
            "The requested resource is no longer available. API version retired.",
        ));
    }
    if n > MAX_VERSION {
        return Err(ApiError::not_found());
    }
    Ok(n)
}

/// The session for the request's `Authorization` header.
pub fn authenticate(org: &Org, req: &Request) -> Result<Session, ApiError> {
    let Some(h) = req.header("authorization") else {
        return Err(ApiError::invalid_session());
    };
    let bad_header = || ApiError::new(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE");
    let (scheme, token) = h.trim().split_once(' ').ok_or_else(bad_header)?;
    if !(scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("OAuth")) {
        return Err(bad_header());
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(bad_header());
    }
    let session = org
        .use_session(token)
        .ok_or_else(ApiError::invalid_session)?;
    if !session.scope.split(' ').any(|s| s == "api" || s == "full") {
        return Err(ApiError::new(
            401,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
        ));
    }
    Ok(session)
}

/// Counts one API request against the daily limit and checks the concurrent long-running
/// limit. Returns the `Sforce-Limit-Info` value.
pub fn charge(org: &Org) -> Result<String, (ApiError, String)> {
    let mut l = org.limits();
    let info = |l: &crate::state::Limits| format!("api-usage={}/{}", l.daily_used, l.daily_max);
    if l.daily_used >= l.daily_max {
        return Err((
            ApiError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ),
            info(&l),
        ));
    }
    if org.stats.long_running(l.long_running_ms) >= l.concurrent_max {
        return Err((
            ApiError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            ),
            info(&l),
        ));
    }
    l.daily_used += 1;
    Ok(info(&l))
}

pub struct Ctx<'a> {
    pub org: &'a Org,
    pub req: &'a Request,
    pub session: Session,
    pub version: String,
}

/// Everything under `/services/data/…`.
pub fn handle(org: &Org, req: &Request) -> Response {
    let path = req.path.trim_end_matches('/');
    let rest = path.strip_prefix("/services/data").unwrap_or("");
    if rest.is_empty() {
        org.stats.endpoint("versions");
        return versions();
    }
    let rest = &rest[1..];
    let (vseg, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let v = match parse_version(vseg) {
        Ok(v) => v,
        Err(e) => return Response::error(&e),
    };
    let session = match authenticate(org, req) {
        Ok(s) => s,
        Err(e) => return Response::error(&e),
    };
    let limit_info = match charge(org) {
        Ok(i) => i,
        Err((e, info)) => return Response::error(&e).with_header("Sforce-Limit-Info", info),
    };
    let ctx = Ctx {
        org,
        req,
        session,
        version: format!("{v}.0"),
    };
    let segs: Vec<&str> = if tail.is_empty() {
        vec![]
    } else {
        tail.split('/').collect()
    };
    let resp = route(&ctx, &segs).unwrap_or_else(|e| Response::error(&e));
    resp.with_header("Sforce-Limit-Info", limit_info)
}

fn method_not_allowed(m: &Method, allowed: &str) -> ApiError {
    ApiError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{m}' not allowed. Allowed are {allowed}"),
    )
}

/// The effective method (`POST ?_HttpMethod=PATCH` is PATCH).
pub fn method(req: &Request) -> Method {
    if req.method == Method::POST {
        if let Some(m) = req.query_param("_HttpMethod") {
            if let Ok(m) = Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                return m;
            }
        }
    }
    req.method.clone()
}

pub(crate) fn route(ctx: &Ctx, segs: &[&str]) -> HandlerResult {
    let m = method(ctx.req);
    let stats = &ctx.org.stats;
    match segs {
        [] => {
            stats.endpoint("resources");
            let v = &ctx.version;
            let base = format!("/services/data/v{v}");
            Ok(Response::json(
                200,
                &json!({
                    "limits": format!("{base}/limits"), "sobjects": format!("{base}/sobjects"),
                    "query": format!("{base}/query"), "queryAll": format!("{base}/queryAll"),
                    "search": format!("{base}/search"), "parameterizedSearch": format!("{base}/parameterizedSearch"),
                    "composite": format!("{base}/composite"),
                }),
            ))
        }
        ["query"] | ["queryAll"] if m == Method::GET => query::query(ctx, segs[0] == "queryAll"),
        ["query", loc] | ["queryAll", loc] if m == Method::GET => query::more(ctx, loc),
        ["query", ..] | ["queryAll", ..] => Err(method_not_allowed(&m, "GET,HEAD")),
        ["search"] if m == Method::GET => search::search(ctx),
        ["parameterizedSearch"] if m == Method::GET || m == Method::POST => {
            search::parameterized(ctx, &m)
        }
        ["limits"] if m == Method::GET => {
            stats.endpoint("limits");
            Ok(Response::json(200, &limits_body(ctx.org)))
        }
        ["composite"] if m == Method::POST => composite::composite(ctx),
        ["composite"] => Err(method_not_allowed(&m, "POST")),
        ["sobjects", ..] | ["composite", ..] => sobjects::route(ctx, &m, segs),
        _ => Err(ApiError::not_found()),
    }
}

pub fn limits_body(org: &Org) -> Value {
    let l = org.limits();
    let pair = |max: u64, rem: u64| json!({"Max": max, "Remaining": rem});
    json!({
        "ConcurrentAsyncGetReportInstances": pair(200, 200),
        "ConcurrentSyncReportRuns": pair(20, 20),
        "DailyApiRequests": pair(l.daily_max, l.daily_max.saturating_sub(l.daily_used)),
        "DailyAsyncApexExecutions": pair(250000, 250000),
        "DailyBulkApiBatches": pair(15000, 15000),
        "DailyBulkV2QueryJobs": pair(10000, 10000),
        "DailyStreamingApiEvents": pair(1000000, 1000000),
        "DataStorageMB": pair(1024, 1000),
        "FileStorageMB": pair(1024, 1024),
        "HourlyPublishedPlatformEvents": pair(250000, 250000),
        "HourlyODataCallout": pair(20000, 20000),
        "SingleEmail": pair(5000, 5000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(release_label(65), "Winter '26");
        assert_eq!(release_label(66), "Spring '26");
        assert_eq!(release_label(68), "Winter '27");
        assert_eq!(release_label(31), "Summer '14");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("v66.0"), Ok(66));
        assert_eq!(parse_version("v38").unwrap_err().status, 404);
        assert_eq!(parse_version("v30.0").unwrap_err().status, 410);
        assert_eq!(parse_version("v69.0").unwrap_err().status, 404);
        assert_eq!(parse_version("latest").unwrap_err().code, "NOT_FOUND");
    }
}
