//! Checks a parsed query against the schema and runs it over the store.

use super::lexer::LikeChar;
use super::parser::{Cond, FieldRef, Lit, OrderItem, Query, Select};
use super::QueryError;
use crate::ids;
use crate::schema::{name_entity, name_entity_value, FieldType, ObjectDef, Schema};
use crate::store::{Record, Store};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::cmp::Ordering;

/// One lookup followed by a field path.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// The foreign-key field (`OwnerId`).
    pub fk: String,
    /// The relationship name (`Owner`): the key of the nested parent object.
    pub rel: String,
    /// The reference is polymorphic: the parent is seen through the `Name` entity.
    pub polymorphic: bool,
}

/// A field path checked against the schema, in canonical case.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub hops: Vec<Hop>,
    pub field: String,
    pub ftype: FieldType,
}

#[derive(Debug, Clone)]
pub enum CCond {
    And(Vec<CCond>),
    Or(Vec<CCond>),
    Not(Box<CCond>),
    Cmp(Path, &'static str, Lit),
    In(Path, bool, Vec<Lit>),
    Like(Path, Vec<LikeChar>),
}

/// A compiled `TYPEOF`: per parent type the fields to return, else the Name entity's.
#[derive(Debug, Clone)]
pub struct CTypeOf {
    pub hop: Hop,
    pub whens: Vec<(String, Vec<Path>)>,
    pub otherwise: Option<Vec<Path>>,
    pub fields_before: usize,
}

#[derive(Debug, Clone)]
pub struct Compiled {
    pub object: String,
    pub count: bool,
    pub fields: Vec<Path>,
    pub typeofs: Vec<CTypeOf>,
    pub filter: Option<CCond>,
    pub order: Vec<(Path, bool, bool)>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// SOQL refuses OFFSET above this.
pub const MAX_OFFSET: usize = 2000;

const NO_COLUMN_HINT: &str = "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.";

pub fn object<'s>(schema: &'s Schema, name: &str, pos: usize) -> Result<&'s ObjectDef, QueryError> {
    match schema.object(name) {
        Some(d) if !d.is_event => Ok(d),
        _ => Err(QueryError::new(
            "INVALID_TYPE",
            pos,
            format!("sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."),
        )),
    }
}

pub fn resolve(schema: &Schema, def: &ObjectDef, f: &FieldRef) -> Result<Path, QueryError> {
    let mut segs: Vec<&str> = f.path.split('.').collect();
    if segs.len() > 1 && segs[0].eq_ignore_ascii_case(&def.name) {
        segs.remove(0);
    }
    let mut defs: Vec<&ObjectDef> = vec![def];
    let mut hops = vec![];
    for seg in &segs[..segs.len() - 1] {
        let rel = defs.iter().find_map(|d| d.relationship(seg)).ok_or_else(|| {
            QueryError::new(
                "INVALID_FIELD",
                f.pos,
                format!("Didn't understand relationship '{seg}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."),
            )
        })?;
        hops.push(Hop {
            fk: rel.name.clone(),
            rel: rel.relationship_name.clone().unwrap_or_default(),
            polymorphic: rel.is_polymorphic(),
        });
        defs = if rel.is_polymorphic() {
            vec![name_entity()]
        } else {
            rel.reference_to
                .iter()
                .filter_map(|t| schema.object(t))
                .collect()
        };
    }
    let last = segs[segs.len() - 1];
    let fd = defs.iter().find_map(|d| d.field(last)).ok_or_else(|| {
        let entity = defs.first().map_or("Name", |d| d.name.as_str());
        QueryError::new(
            "INVALID_FIELD",
            f.pos,
            format!("No such column '{last}' on entity '{entity}'. {NO_COLUMN_HINT}"),
        )
    })?;
    Ok(Path {
        hops,
        field: fd.name.clone(),
        ftype: fd.ftype,
    })
}

pub fn compile(schema: &Schema, q: &Query) -> Result<Compiled, QueryError> {
    let def = object(schema, &q.object, q.object_pos)?;
    let (count, fields, typeofs) = match &q.select {
        Select::Count => (true, vec![], vec![]),
        Select::Fields(list, typeofs) => {
            let fields = compile_fields(schema, def, list)?;
            let typeofs = typeofs
                .iter()
                .map(|t| compile_type_of(schema, def, t, &fields))
                .collect::<Result<Vec<_>, _>>()?;
            (false, fields, typeofs)
        }
    };
    let filter = q
        .filter
        .as_ref()
        .map(|c| compile_cond(schema, def, c))
        .transpose()?;
    let order = compile_order(schema, def, &q.order)?;
    if q.offset.is_some_and(|o| o > MAX_OFFSET) {
        return Err(QueryError::new(
            "NUMBER_OUTSIDE_VALID_RANGE",
            q.object_pos,
            format!("Maximum SOQL offset allowed is {MAX_OFFSET}"),
        ));
    }
    Ok(Compiled {
        object: def.name.clone(),
        count,
        fields,
        typeofs,
        filter,
        order,
        limit: q.limit,
        offset: q.offset,
    })
}

/// `TYPEOF` works on polymorphic relationships only; each WHEN names one of its types and its
/// fields are that type's; ELSE fields are the Name entity's.
fn compile_type_of(
    schema: &Schema,
    def: &ObjectDef,
    t: &super::parser::TypeOf,
    fields: &[Path],
) -> Result<CTypeOf, QueryError> {
    let rel = &t.relationship;
    let fd = def
        .relationship(&rel.path)
        .filter(|f| f.is_polymorphic())
        .ok_or_else(|| {
            QueryError::new(
                "INVALID_FIELD",
                rel.pos,
                format!("TYPEOF is only supported on polymorphic relationships; '{}' on entity '{}' is not one", rel.path, def.name),
            )
        })?;
    let hop = Hop {
        fk: fd.name.clone(),
        rel: fd.relationship_name.clone().unwrap_or_default(),
        polymorphic: true,
    };
    if fields
        .iter()
        .any(|p| p.hops.first().is_some_and(|h| h.rel == hop.rel))
    {
        return Err(QueryError::malformed(
            rel.pos,
            format!("duplicate field selected: {}", rel.path),
        ));
    }
    let mut whens = vec![];
    for (object, list) in &t.whens {
        let target = fd
            .reference_to
            .iter()
            .find(|r| r.eq_ignore_ascii_case(&object.path))
            .and_then(|r| schema.object(r))
            .ok_or_else(|| {
                QueryError::new(
                    "INVALID_FIELD",
                    object.pos,
                    format!(
                        "'{}' is not a type of the '{}' relationship",
                        object.path, hop.rel
                    ),
                )
            })?;
        whens.push((target.name.clone(), compile_fields(schema, target, list)?));
    }
    let otherwise = t
        .otherwise
        .as_ref()
        .map(|list| compile_fields(schema, name_entity(), list))
        .transpose()?;
    Ok(CTypeOf {
        hop,
        whens,
        otherwise,
        fields_before: t.fields_before,
    })
}

pub fn compile_fields(
    schema: &Schema,
    def: &ObjectDef,
    list: &[FieldRef],
) -> Result<Vec<Path>, QueryError> {
    let mut out: Vec<Path> = vec![];
    for f in list {
        let p = resolve(schema, def, f)?;
        if out.contains(&p) {
            return Err(QueryError::malformed(
                f.pos,
                format!("duplicate field selected: {}", f.path),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

pub fn compile_order(
    schema: &Schema,
    def: &ObjectDef,
    order: &[OrderItem],
) -> Result<Vec<(Path, bool, bool)>, QueryError> {
    order
        .iter()
        .map(|o| Ok((resolve(schema, def, &o.field)?, o.desc, o.nulls_last)))
        .collect()
}

pub fn compile_cond(schema: &Schema, def: &ObjectDef, c: &Cond) -> Result<CCond, QueryError> {
    Ok(match c {
        Cond::And(v) => CCond::And(
            v.iter()
                .map(|c| compile_cond(schema, def, c))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Or(v) => CCond::Or(
            v.iter()
                .map(|c| compile_cond(schema, def, c))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Not(c) => CCond::Not(Box::new(compile_cond(schema, def, c)?)),
        Cond::Cmp {
            field,
            op,
            value,
            value_pos,
        } => {
            let p = resolve(schema, def, field)?;
            let v = check_literal(&p, &field.path, value, *value_pos)?;
            if matches!(p.ftype, FieldType::Boolean) && !matches!(*op, "=" | "!=") {
                return Err(QueryError::new(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    field.pos,
                    format!("invalid operator on boolean field: {}", field.path),
                ));
            }
            CCond::Cmp(p, op, v)
        }
        Cond::In {
            field,
            negated,
            values,
        } => {
            let p = resolve(schema, def, field)?;
            let vals = values
                .iter()
                .map(|(v, pos)| check_literal(&p, &field.path, v, *pos))
                .collect::<Result<_, _>>()?;
            CCond::In(p, *negated, vals)
        }
        Cond::Like {
            field,
            pattern,
            value_pos,
        } => {
            let p = resolve(schema, def, field)?;
            if !(p.ftype.is_text() || matches!(p.ftype, FieldType::Id | FieldType::Reference)) {
                return Err(QueryError::new(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    *value_pos,
                    format!("invalid operator on field: {}", field.path),
                ));
            }
            CCond::Like(p, pattern.clone())
        }
    })
}

/// Type-checks a literal against its field; ids are normalised to 18 chars.
fn check_literal(p: &Path, name: &str, v: &Lit, pos: usize) -> Result<Lit, QueryError> {
    let bad = |kind: &str, quoted: bool| {
        QueryError::new(
            "INVALID_FIELD",
            pos,
            format!(
                "value of filter criterion for field '{name}' must be of type {kind} and should {}be enclosed in quotes",
                if quoted { "" } else { "not " }
            ),
        )
    };
    match (p.ftype, v) {
        (_, Lit::Null) => Ok(Lit::Null),
        (FieldType::Id | FieldType::Reference, Lit::Str(s)) => match ids::to18(&s.value) {
            Some(id) => Ok(Lit::Str(super::lexer::StrLit { value: id, pattern: s.pattern.clone(), like_escape_at: None, raw: s.raw.clone() })),
            None => Err(QueryError::new("INVALID_QUERY_FILTER_OPERATOR", pos, format!("invalid ID field: {}", s.value))),
        },
        (FieldType::Id | FieldType::Reference, _) => Err(bad("id", true)),
        (FieldType::Int | FieldType::Double, Lit::Num(_)) => Ok(v.clone()),
        (FieldType::Int | FieldType::Double, _) => Err(bad("double", false)),
        (FieldType::Boolean, Lit::Bool(_)) => Ok(v.clone()),
        (FieldType::Boolean, _) => Err(bad("boolean", false)),
        // A date field takes a date, a dateTime field a date-time: Salesforce refuses the other.
        (FieldType::Date, Lit::Date(d)) if !d.contains('T') => Ok(v.clone()),
        (FieldType::DateTime, Lit::Date(d)) if d.contains('T') => Ok(v.clone()),
        (FieldType::Date | FieldType::DateTime, _) => Err(QueryError::new(
            "INVALID_FIELD",
            pos,
            format!(
                "value of filter criterion for field '{name}' must be of type {} and should not be enclosed in quotes",
                if p.ftype == FieldType::Date { "date" } else { "dateTime" }
            ),
        )),
        (_, Lit::Str(_)) => Ok(v.clone()),
        _ => Err(bad("string", true)),
    }
}

/// The value at `path` for `rec`, following lookups (a null link gives null; a polymorphic
/// link gives the parent's `Name` entity view).
pub fn value<'a>(store: &'a Store, rec: &'a Record, path: &Path) -> Cow<'a, Value> {
    let mut cur = rec;
    let mut through_name = false;
    for hop in &path.hops {
        match cur.get(&hop.fk).as_str().and_then(|id| store.get(id)) {
            Some(r) if !through_name => cur = r,
            _ => return Cow::Owned(Value::Null),
        }
        through_name = hop.polymorphic;
    }
    if through_name {
        Cow::Owned(name_entity_value(cur, &path.field))
    } else {
        Cow::Borrowed(cur.get(&path.field))
    }
}

pub fn matches(store: &Store, rec: &Record, c: &CCond) -> bool {
    match c {
        CCond::And(v) => v.iter().all(|c| matches(store, rec, c)),
        CCond::Or(v) => v.iter().any(|c| matches(store, rec, c)),
        CCond::Not(c) => !matches(store, rec, c),
        CCond::Cmp(p, op, lit) => {
            let v = value(store, rec, p);
            match (v.is_null(), lit) {
                (_, Lit::Null) => match *op {
                    "=" => v.is_null(),
                    "!=" => !v.is_null(),
                    _ => false,
                },
                (true, _) => *op == "!=",
                (false, _) => match compare(p.ftype, &v, lit) {
                    Some(ord) => match *op {
                        "=" => ord == Ordering::Equal,
                        "!=" => ord != Ordering::Equal,
                        "<" => ord == Ordering::Less,
                        "<=" => ord != Ordering::Greater,
                        ">" => ord == Ordering::Greater,
                        ">=" => ord != Ordering::Less,
                        _ => false,
                    },
                    None => *op == "!=",
                },
            }
        }
        CCond::In(p, negated, lits) => {
            let v = value(store, rec, p);
            let hit = lits.iter().any(|l| match l {
                Lit::Null => v.is_null(),
                _ => !v.is_null() && compare(p.ftype, &v, l) == Some(Ordering::Equal),
            });
            hit != *negated
        }
        CCond::Like(p, pattern) => match value(store, rec, p).as_ref() {
            Value::String(s) => like(
                &s.to_lowercase().chars().collect::<Vec<_>>(),
                &lower_pattern(pattern),
            ),
            _ => false,
        },
    }
}

fn lower_pattern(p: &[LikeChar]) -> Vec<LikeChar> {
    p.iter()
        .map(|c| match c {
            LikeChar::Lit(ch) => LikeChar::Lit(ch.to_lowercase().next().unwrap_or(*ch)),
            other => *other,
        })
        .collect()
}

fn like(s: &[char], p: &[LikeChar]) -> bool {
    // dp[j] = pattern[..j] matches s[..i]
    let mut dp = vec![false; p.len() + 1];
    dp[0] = true;
    for j in 1..=p.len() {
        dp[j] = dp[j - 1] && p[j - 1] == LikeChar::Any;
    }
    for &ch in s {
        let mut next = vec![false; p.len() + 1];
        for j in 1..=p.len() {
            next[j] = match p[j - 1] {
                LikeChar::Any => next[j - 1] || dp[j],
                LikeChar::One => dp[j - 1],
                LikeChar::Lit(c) => dp[j - 1] && c == ch,
            };
        }
        dp = next;
    }
    dp[p.len()]
}

fn compare(ftype: FieldType, v: &Value, lit: &Lit) -> Option<Ordering> {
    match lit {
        Lit::Str(s) => {
            let a = v.as_str()?;
            if matches!(ftype, FieldType::Id | FieldType::Reference) {
                Some(a.cmp(s.value.as_str()))
            } else {
                Some(a.to_lowercase().cmp(&s.value.to_lowercase()))
            }
        }
        Lit::Num(n) => v.as_f64()?.partial_cmp(n),
        Lit::Bool(b) => Some(v.as_bool()?.cmp(b)),
        Lit::Date(d) => {
            let a = v.as_str()?;
            let n = d.len().min(a.len()).min(19);
            Some(a.get(..n)?.cmp(d.get(..n)?))
        }
        Lit::Null => None,
    }
}

fn order_values(ftype: FieldType, a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y))
            if matches!(ftype, FieldType::Id | FieldType::Reference) =>
        {
            x.cmp(y)
        }
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        _ => Ordering::Equal,
    }
}

pub fn sort(store: &Store, recs: &mut [&Record], order: &[(Path, bool, bool)]) {
    recs.sort_by(|a, b| {
        for (p, desc, nulls_last) in order {
            let (va, vb) = (value(store, a, p), value(store, b, p));
            let (va, vb) = (va.as_ref(), vb.as_ref());
            let ord = match (va.is_null(), vb.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => {
                    if *nulls_last {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (false, true) => {
                    if *nulls_last {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, false) => {
                    let o = order_values(p.ftype, va, vb);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

pub fn attributes(object: &str, id: &str, version: &str) -> Value {
    json!({"type": object, "url": format!("/services/data/v{version}/sobjects/{object}/{id}")})
}

/// The REST JSON of `rec` with the selected paths; lookups become nested objects with their own
/// `attributes`, or `null` when the lookup is empty.
pub fn project(store: &Store, rec: &Record, paths: &[Path], version: &str) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        attributes(&rec.object, &rec.id, version),
    );
    let mut keys: Vec<String> = vec![];
    for p in paths {
        let key = p.hops.first().map_or(&p.field, |h| &h.rel).clone();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for key in keys {
        let direct = paths.iter().find(|p| p.hops.is_empty() && p.field == key);
        if let Some(p) = direct {
            out.insert(key, typed(p.ftype, rec.get(&p.field)));
            continue;
        }
        let sub: Vec<Path> = paths
            .iter()
            .filter(|p| p.hops.first().is_some_and(|h| h.rel == key))
            .map(|p| Path {
                hops: p.hops[1..].to_vec(),
                field: p.field.clone(),
                ftype: p.ftype,
            })
            .collect();
        let Some(hop) = paths
            .iter()
            .find_map(|p| p.hops.first().filter(|h| h.rel == key))
        else {
            continue;
        };
        let parent = rec.get(&hop.fk).as_str().and_then(|id| store.get(id));
        let nested = match parent {
            None => Value::Null,
            Some(r) if hop.polymorphic => project_name(r, &sub, version),
            Some(r) => project(store, r, &sub, version),
        };
        out.insert(key, nested);
    }
    Value::Object(out)
}

/// Adds the `TYPEOF` parents to a projected record: the matching WHEN's fields under the parent's
/// real type, else the ELSE fields under the Name entity (only `attributes` without ELSE); a
/// null link is `null`.
fn with_type_ofs(store: &Store, rec: &Record, row: Value, c: &Compiled, version: &str) -> Value {
    if c.typeofs.is_empty() {
        return row;
    }
    let Value::Object(row) = row else {
        return row;
    };
    let nested = |t: &CTypeOf| {
        let Some(parent) = rec.get(&t.hop.fk).as_str().and_then(|id| store.get(id)) else {
            return Value::Null;
        };
        match t.whens.iter().find(|(ty, _)| *ty == parent.object) {
            Some((_, paths)) => project(store, parent, paths, version),
            None => project_name(parent, t.otherwise.as_deref().unwrap_or(&[]), version),
        }
    };
    // Keys before each TYPEOF: "attributes" plus the distinct keys of the fields before it.
    let mut out = Map::new();
    let mut entries = row.into_iter().peekable();
    let mut seen_fields: Vec<&str> = vec![];
    let mut typeofs = c.typeofs.iter().peekable();
    if let Some((k, v)) = entries.next() {
        out.insert(k, v);
    }
    for (i, p) in c.fields.iter().enumerate() {
        while let Some(t) = typeofs.next_if(|t| t.fields_before == i) {
            out.insert(t.hop.rel.clone(), nested(t));
        }
        let key = p.hops.first().map_or(p.field.as_str(), |h| h.rel.as_str());
        if !seen_fields.contains(&key) {
            seen_fields.push(key);
            if let Some((k, v)) = entries.next() {
                out.insert(k, v);
            }
        }
    }
    for t in typeofs {
        out.insert(t.hop.rel.clone(), nested(t));
    }
    out.extend(entries);
    Value::Object(out)
}

/// A polymorphic parent as Salesforce returns it: `attributes.type` is `Name` and
/// `attributes.url` the real record's URL; the fields are the `Name` entity's view of it.
fn project_name(rec: &Record, paths: &[Path], version: &str) -> Value {
    let mut attrs = attributes(&rec.object, &rec.id, version);
    attrs["type"] = Value::from("Name");
    let mut out = Map::new();
    out.insert("attributes".into(), attrs);
    for p in paths {
        out.insert(
            p.field.clone(),
            typed(p.ftype, &name_entity_value(rec, &p.field)),
        );
    }
    Value::Object(out)
}

fn typed(ftype: FieldType, v: &Value) -> Value {
    match (ftype, v) {
        (FieldType::Double, Value::Number(n)) => Value::from(n.as_f64().unwrap_or(0.0)),
        _ => v.clone(),
    }
}

pub struct Outcome {
    pub total: usize,
    pub rows: Vec<Value>,
}

pub fn run(store: &Store, c: &Compiled, include_deleted: bool, version: &str) -> Outcome {
    let mut recs: Vec<&Record> = store
        .iter_object(&c.object, include_deleted)
        .filter(|r| c.filter.as_ref().is_none_or(|f| matches(store, r, f)))
        .collect();
    sort(store, &mut recs, &c.order);
    let recs: Vec<&Record> = recs
        .into_iter()
        .skip(c.offset.unwrap_or(0))
        .take(c.limit.unwrap_or(usize::MAX))
        .collect();
    if c.count {
        return Outcome {
            total: recs.len(),
            rows: vec![],
        };
    }
    let rows: Vec<Value> = recs
        .iter()
        .map(|r| with_type_ofs(store, r, project(store, r, &c.fields, version), c, version))
        .collect();
    Outcome {
        total: rows.len(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Vec<LikeChar> {
        s.chars()
            .map(|c| match c {
                '%' => LikeChar::Any,
                '_' => LikeChar::One,
                c => LikeChar::Lit(c),
            })
            .collect()
    }

    #[test]
    fn like_matching() {
        let s: Vec<char> = "o'brien".chars().collect();
        assert!(like(&s, &pat("o'b%")));
        assert!(like(&s, &pat("%brien")));
        assert!(like(&s, &pat("o_brien")));
        assert!(!like(&s, &pat("brien")));
        assert!(like(&s, &pat("%")));
    }
}
