//! `query`, `queryAll` and query locators (shared with SOAP).

use super::Ctx;
use crate::error::ApiError;
use crate::http::{HandlerResult, Response};
use crate::ids;
use crate::soql::{eval, parser};
use crate::state::{Cursor, Org, MAX_CURSORS_PER_USER};
use crate::stats::QueryLogEntry;
use serde_json::{json, Value};

pub struct Page {
    pub total: usize,
    pub records: Vec<Value>,
    /// `01g…-N` when more records remain.
    pub locator: Option<String>,
}

fn invalid_locator() -> ApiError {
    ApiError::bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
}

/// Parses, checks and runs `soql`; logs it; opens a cursor when the result spans pages.
pub fn run(
    org: &Org,
    soql: &str,
    all: bool,
    version: &str,
    user: &str,
    batch: usize,
    kind: &str,
) -> Result<Page, ApiError> {
    let parsed = parser::parse_logged(soql);
    let (literals, values) = parsed
        .as_ref()
        .map(|(_, l, v)| (l.clone(), v.clone()))
        .unwrap_or_default();
    let result = parsed
        .and_then(|(q, _, _)| eval::compile(&org.schema, &q))
        .map_err(|e| e.to_api(soql));
    org.stats.query(QueryLogEntry {
        kind: kind.into(),
        text: soql.into(),
        literals,
        values,
        error: result.as_ref().err().map(|e| e.code.clone()),
    });
    let compiled = result?;
    let mut data = org.data();
    let out = eval::run(&data.store, &compiled, all, version);
    if compiled.count {
        return Ok(Page {
            total: out.total,
            records: vec![],
            locator: None,
        });
    }
    let total = out.rows.len();
    if total <= batch {
        return Ok(Page {
            total,
            records: out.rows,
            locator: None,
        });
    }
    let n = data.next_cursor;
    data.next_cursor += 1;
    let id15 = format!("01gEm0{}", ids::base62(n, 9));
    let cid = format!("{id15}{}", ids::checksum(&id15));
    let first: Vec<Value> = out.rows[..batch].to_vec();
    data.cursors.insert(
        cid.clone(),
        Cursor {
            user: user.into(),
            version: version.into(),
            rows: out.rows,
        },
    );
    // Salesforce keeps at most 10 open cursors per user; older ones become invalid.
    data.cursor_order.push(cid.clone());
    let mine: Vec<String> = data
        .cursor_order
        .iter()
        .filter(|c| data.cursors.get(*c).is_some_and(|x| x.user == user))
        .cloned()
        .collect();
    if mine.len() > MAX_CURSORS_PER_USER {
        for old in &mine[..mine.len() - MAX_CURSORS_PER_USER] {
            data.cursors.remove(old);
        }
        let cursors = std::mem::take(&mut data.cursor_order);
        data.cursor_order = cursors
            .into_iter()
            .filter(|c| data.cursors.contains_key(c))
            .collect();
    }
    Ok(Page {
        total,
        records: first,
        locator: Some(format!("{cid}-{batch}")),
    })
}

/// The page at `locator` (`<cursor id>-<offset>`).
pub fn fetch(org: &Org, locator: &str, user: &str, batch: usize) -> Result<Page, ApiError> {
    let (cid, offset) = locator.rsplit_once('-').ok_or_else(invalid_locator)?;
    let offset: usize = offset.parse().map_err(|_| invalid_locator())?;
    let data = org.data();
    let cursor = data.cursors.get(cid).ok_or_else(invalid_locator)?;
    if cursor.user != user || offset == 0 || offset > cursor.rows.len() {
        return Err(invalid_locator());
    }
    let end = (offset + batch).min(cursor.rows.len());
    let records = cursor.rows[offset..end].to_vec();
    let locator = (end < cursor.rows.len()).then(|| format!("{cid}-{end}"));
    Ok(Page {
        total: cursor.rows.len(),
        records,
        locator,
    })
}

/// Batch size: the org's configured size, or a `Sforce-Query-Options: batchSize=N` hint
/// (200–2000, as Salesforce clamps it; below 200 only when the org's own size is below 200).
pub fn batch_size(ctx: &Ctx) -> usize {
    let configured = ctx.org.runtime().batch_size;
    let hint = ctx.req.header("sforce-query-options").and_then(|h| {
        h.split([',', ';'])
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
    });
    match hint {
        Some(n) => n.clamp(configured.min(200), 2000).max(1),
        None => configured,
    }
}

fn page_json(ctx: &Ctx, p: Page) -> Value {
    let mut v = json!({"totalSize": p.total, "done": p.locator.is_none(), "records": p.records});
    if let Some(loc) = p.locator {
        v["nextRecordsUrl"] = Value::from(format!("/services/data/v{}/query/{loc}", ctx.version));
    }
    v
}

pub fn query(ctx: &Ctx, all: bool) -> HandlerResult {
    ctx.org
        .stats
        .endpoint(if all { "queryAll" } else { "query" });
    let q = ctx.req.query_param("q").unwrap_or_default();
    let page = run(
        ctx.org,
        &q,
        all,
        &ctx.version,
        &ctx.session.user_id,
        batch_size(ctx),
        if all { "soql_all" } else { "soql" },
    )?;
    Ok(Response::json(200, &page_json(ctx, page)))
}

pub fn more(ctx: &Ctx, locator: &str) -> HandlerResult {
    ctx.org.stats.endpoint("query_more");
    let page = fetch(ctx.org, locator, &ctx.session.user_id, batch_size(ctx))?;
    Ok(Response::json(200, &page_json(ctx, page)))
}
