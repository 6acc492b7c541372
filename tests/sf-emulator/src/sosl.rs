//! SOSL: `FIND {term} [IN ALL|NAME|EMAIL|PHONE|SIDEBAR FIELDS] [RETURNING Obj[(fields [WHERE …]
//! [ORDER BY …] [LIMIT n] [OFFSET n])], …] [LIMIT n]`, and the search itself.

use crate::error::{caret_message, ApiError};
use crate::phone_match::PhoneMatch;
use crate::schema::{FieldType, ObjectDef, Schema};
pub use crate::search_term::decode_search_term;
use crate::search_term::{self, SearchTerm};
use crate::soql::eval::{self, CCond, Path};
use crate::soql::lexer::Tok;
use crate::soql::parser::{FieldRef, Parser};
use crate::soql::QueryError;
use crate::store::{Record, Store};
use crate::util::digits;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Name,
    Email,
    Phone,
    Sidebar,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ALL" => Scope::All,
            "NAME" => Scope::Name,
            "EMAIL" => Scope::Email,
            "PHONE" => Scope::Phone,
            "SIDEBAR" => Scope::Sidebar,
            _ => return None,
        })
    }
}

pub struct Target {
    pub def: Arc<ObjectDef>,
    pub fields: Vec<Path>,
    pub filter: Option<CCond>,
    pub order: Vec<(Path, bool, bool)>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

pub struct Search {
    pub term: SearchTerm,
    pub scope: Scope,
    pub targets: Arc<Vec<Target>>,
    pub limit: Option<usize>,
}

/// What follows the search term, compiled: scope, RETURNING targets, LIMIT.
#[derive(Clone)]
struct Plan {
    scope: Scope,
    targets: Arc<Vec<Target>>,
    limit: Option<usize>,
}

/// Compiled plans by the text after the search term. A client sends the same RETURNING clause
/// with every caller's number, and compiling it is most of a search's cost.
#[derive(Default)]
pub struct PlanCache(std::sync::Mutex<std::collections::HashMap<String, Plan>>);

/// Plans kept before the cache starts over.
const MAX_CACHED_PLANS: usize = 256;

fn malformed(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("MALFORMED_SEARCH", msg)
}

/// Objects searched when RETURNING is absent.
pub const DEFAULT_OBJECTS: &[&str] = &["Account", "Contact", "Lead", "Case", "Routing_Rule__c"];

pub fn default_target(schema: &Schema, name: &str) -> Option<Target> {
    let def = schema.object_shared(name)?.clone();
    let id = eval::resolve(
        schema,
        &def,
        &FieldRef {
            path: "Id".into(),
            pos: 0,
        },
    )
    .ok()?;
    Some(Target {
        def,
        fields: vec![id],
        filter: None,
        order: vec![],
        limit: None,
        offset: None,
    })
}

/// Parses a SOSL string; also returns the unescaped term (for the query log).
pub fn parse(schema: &Schema, src: &str) -> Result<Search, ApiError> {
    parse_with(schema, None, src)
}

/// `parse`, reusing what `cache` compiled for the same text after the term.
pub fn parse_cached(schema: &Schema, cache: &PlanCache, src: &str) -> Result<Search, ApiError> {
    parse_with(schema, Some(cache), src)
}

fn parse_with(schema: &Schema, cache: Option<&PlanCache>, src: &str) -> Result<Search, ApiError> {
    let trimmed = src.trim_start();
    let lead = src.len() - trimmed.len();
    if !trimmed
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("FIND"))
    {
        return Err(malformed(caret_message(
            src,
            lead,
            "unexpected token: FIND expected",
        )));
    }
    let after_find = trimmed.get(4..).unwrap_or("");
    let open = after_find.trim_start();
    if !open.starts_with('{') {
        return Err(malformed(
            "No search term found. The search term must be enclosed in braces.",
        ));
    }
    let term_start = src.len() - open.len() + 1;
    let (term, end) = search_term::parse_braced(src, term_start)?;
    let plan = match cache {
        None => compile(schema, src, end)?,
        Some(cache) => {
            let rest = &src[end..];
            let cached = cache
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(rest)
                .cloned();
            match cached {
                Some(plan) => plan,
                None => {
                    let plan = compile(schema, src, end)?;
                    let mut plans = cache.0.lock().unwrap_or_else(|e| e.into_inner());
                    if plans.len() >= MAX_CACHED_PLANS {
                        plans.clear();
                    }
                    plans.insert(rest.to_string(), plan.clone());
                    plan
                }
            }
        }
    };
    Ok(Search {
        term,
        scope: plan.scope,
        targets: plan.targets,
        limit: plan.limit,
    })
}

/// Compiles what follows the term (`src[end..]`); error carets point into `src`.
fn compile(schema: &Schema, src: &str, end: usize) -> Result<Plan, ApiError> {
    let rest_src = &src[end..];
    let mut p = Parser::new(rest_src).map_err(|e| qerr(src, end, e, "MALFORMED_SEARCH"))?;
    let mut scope = Scope::All;
    if p.eat_kw("IN") {
        let t = p.bump();
        scope = match &t.tok {
            Tok::Ident(s) => Scope::parse(s),
            _ => None,
        }
        .ok_or_else(|| {
            malformed(caret_message(
                src,
                end + t.pos,
                "unexpected token: search group expected",
            ))
        })?;
        p.expect_kw("FIELDS")
            .map_err(|e| qerr(src, end, e, "MALFORMED_SEARCH"))?;
    }
    let mut targets = vec![];
    if p.eat_kw("RETURNING") {
        loop {
            targets.push(
                returning(schema, &mut p).map_err(|e| qerr(src, end, e, "MALFORMED_SEARCH"))?,
            );
            if p.peek().tok != Tok::Comma {
                break;
            }
            p.bump();
        }
    } else {
        targets = DEFAULT_OBJECTS
            .iter()
            .filter_map(|o| default_target(schema, o))
            .collect();
    }
    let mut limit = None;
    if p.eat_kw("LIMIT") {
        match p.bump().tok {
            Tok::Num(n) => limit = n.parse().ok(),
            _ => return Err(malformed("unexpected token after LIMIT")),
        }
    }
    p.expect_eof()
        .map_err(|e| qerr(src, end, e, "MALFORMED_SEARCH"))?;
    Ok(Plan {
        scope,
        targets: Arc::new(targets),
        limit,
    })
}

/// Maps a SOQL-parser error inside a SOSL string: schema errors keep their code, syntax
/// errors become MALFORMED_SEARCH.
fn qerr(src: &str, offset: usize, e: QueryError, syntax_code: &str) -> ApiError {
    let code = if e.code == "MALFORMED_QUERY" {
        syntax_code
    } else {
        e.code
    };
    ApiError::bad_request(code, caret_message(src, offset + e.pos, &e.message))
}

fn returning(schema: &Schema, p: &mut Parser) -> Result<Target, QueryError> {
    let obj = p.object_name()?;
    let name = &eval::object(schema, &obj.path, obj.pos)?.name;
    let mut t = default_target(schema, name).ok_or_else(|| p.unexpected())?;
    let def = t.def.clone();
    if p.peek().tok == Tok::LParen {
        p.bump();
        let list = p.field_list()?;
        t.fields = eval::compile_fields(schema, &def, &list)?;
        if p.eat_kw("WHERE") {
            let c = p.condition()?;
            t.filter = Some(eval::compile_cond(schema, &def, &c)?);
        }
        let (order, limit, offset) = p.tail()?;
        t.order = eval::compile_order(schema, &def, &order)?;
        t.limit = limit;
        t.offset = offset;
        p.expect(Tok::RParen)?;
    }
    Ok(t)
}

fn text_fields(def: &ObjectDef, scope: Scope) -> Vec<&str> {
    def.fields
        .iter()
        .filter(|f| match scope {
            Scope::Name => {
                f.name_field || matches!(f.name.as_str(), "FirstName" | "LastName" | "Company")
            }
            Scope::Email => f.ftype == FieldType::Email,
            Scope::Phone => false,
            Scope::All | Scope::Sidebar => f.ftype.is_text() && f.ftype != FieldType::Picklist,
        })
        .map(|f| f.name.as_str())
        .collect()
}

/// Whether one record matches the term: each operand is a hit when (phone scopes) a number-like
/// operand's digits match a phone field under the instance's `PhoneMatch`, or (other scopes)
/// its words appear in a searched text field.
fn record_matches(
    def: &ObjectDef,
    rec: &Record,
    term: &SearchTerm,
    scope: Scope,
    phone: &PhoneMatch,
) -> bool {
    let phone_scope = matches!(scope, Scope::All | Scope::Phone | Scope::Sidebar);
    let stored: Vec<String> = if phone_scope {
        def.phone_fields()
            .filter_map(|f| rec.get(&f.name).as_str())
            .map(digits)
            .collect()
    } else {
        vec![]
    };
    let values: Vec<&str> = if scope == Scope::Phone {
        vec![]
    } else {
        text_fields(def, scope)
            .iter()
            .filter_map(|f| rec.get(f).as_str())
            .collect()
    };
    term.expr.eval(&mut |o| {
        if let Some(d) = o.phone_digits() {
            if stored.iter().any(|s| phone.matches(s, &d)) {
                return true;
            }
        }
        values.iter().any(|v| o.matches_text(v))
    })
}

/// Runs a search; returns the `searchRecords` array.
pub fn run(store: &Store, s: &Search, phone: &PhoneMatch, version: &str) -> Vec<Value> {
    let mut out = vec![];
    for t in s.targets.iter() {
        let mut recs: Vec<&Record> = store
            .iter_object(&t.def.name, false)
            .filter(|r| record_matches(&t.def, r, &s.term, s.scope, phone))
            .filter(|r| t.filter.as_ref().is_none_or(|f| eval::matches(store, r, f)))
            .collect();
        eval::sort(store, &mut recs, &t.order);
        out.extend(
            recs.into_iter()
                .skip(t.offset.unwrap_or(0))
                .take(t.limit.unwrap_or(2000))
                .map(|r| eval::project(store, r, &t.fields, version)),
        );
    }
    out.truncate(s.limit.unwrap_or(2000).min(2000));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::standard()
    }

    #[test]
    fn reserved_chars_need_escaping() {
        let e = parse(&schema(), "FIND {415-555-0123} IN PHONE FIELDS")
            .err()
            .unwrap();
        assert_eq!(e.code, "MALFORMED_SEARCH");
        let s = parse(
            &schema(),
            r"FIND {415\-555\-0123} IN PHONE FIELDS RETURNING Contact(Id, Name)",
        )
        .unwrap();
        assert_eq!(s.term.single_literal(), Some("415-555-0123"));
        assert_eq!(s.scope, Scope::Phone);
        assert_eq!(s.targets.len(), 1);
        assert!(parse(&schema(), "FIND {+14155550123}").is_err());
        assert!(parse(&schema(), r"FIND {\+14155550123}").is_ok());
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            parse(&schema(), "FIND 4155550123").err().unwrap().code,
            "MALFORMED_SEARCH"
        );
        assert_eq!(
            parse(&schema(), "FIND {abc").err().unwrap().code,
            "MALFORMED_SEARCH"
        );
        assert_eq!(
            parse(&schema(), "FIND {abc} RETURNING Nope__c")
                .err()
                .unwrap()
                .code,
            "INVALID_TYPE"
        );
        assert_eq!(
            parse(&schema(), "FIND {abc} RETURNING Contact(Nope)")
                .err()
                .unwrap()
                .code,
            "INVALID_FIELD"
        );
        assert_eq!(
            parse(&schema(), "FIND {abc} IN BOGUS FIELDS")
                .err()
                .unwrap()
                .code,
            "MALFORMED_SEARCH"
        );
        assert_eq!(
            parse(&schema(), "FIND {a}").err().unwrap().code,
            "INVALID_SEARCH"
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        let s = schema();
        for q in NASTY {
            let _ = parse(&s, q);
            let _ = parse(&s, &format!("FIND {{{q}}} RETURNING Contact(Name)"));
            let _ = crate::soql::parser::parse(q);
            let _ =
                crate::soql::parser::parse(&format!("SELECT Id FROM Contact WHERE Name = '{q}'"));
        }
    }

    pub const NASTY: &[&str] = &[
        "",
        "é",
        "ééé",
        "FIN",
        "FINDé",
        "FIND {",
        "FIND {é",
        "FIND {\\",
        "FIND {\\é}",
        "FIND {ab} IN",
        "FIND {ab} RETURNING",
        "FIND {ab} RETURNING Contact(",
        "FIND {ab} RETURNING Contact(Name WHERE",
        "FIND {ab} LIMIT x",
        "SELECT",
        "SELECT Id FROM Contact WHERE Name = 'é",
        "SELECT Id FROM Contact WHERE Name = '\\é'",
        "SELECT Id FROM Contact WHERE Name LIKE",
        "SELECT Id FROM Contact WHERE Id IN (",
        "SELECT Id FROM Contact WHERE Id IN ()",
        "SELECT Id FROM Contact ORDER BY",
        "SELECT Id FROM Contact LIMIT -1",
        "SELECT Id FROM Contact LIMIT 99999999999999999999999",
        "SELECT .Id FROM Contact",
        "SELECT Id. FROM Contact",
        "SELECT a..b FROM Contact",
        "SELECT Id FROM Contact WHERE ((((((",
        "\u{0}\u{1}",
        "SELECT Id FROM Contact WHERE CreatedDate > 2026-13-45T99:99:99Z",
        "'; DROP TABLE x; --",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    ];
}
