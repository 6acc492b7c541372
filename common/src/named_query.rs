//! Named queries: `<query name=… soql=…>` and `<search name=… sosl=…>` in an org's config. The
//! template is parsed at load: every `:name` placeholder is found, with the field it is compared
//! with (`Field = :x`, `Field IN (:x)`, `Field IN :x`), so the engine can bind each value by the
//! field's describe type; a placeholder anywhere else is refused. A call's values become query
//! text only through `salesforce::bind`, never spliced in as text.

use std::time::Duration;

use crate::config::{is_field_path, is_variable_name, FieldMapping};
use crate::salesforce::bind::BindError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// `GET /query?q=`: rows of one object.
    Soql,
    /// `GET /search?q=`: records of the objects RETURNING names.
    Sosl,
}

impl QueryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Soql => "query",
            QueryKind::Sosl => "search",
        }
    }
}

/// One placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub name: String,
    /// The field the value is compared with (SOQL); None for a SOSL search term.
    pub field: Option<String>,
    /// `IN (:x)` / `IN :x`: a comma-separated list of values.
    pub list: bool,
    /// The channel variable the app reads the value from (`<bind variable=…>`, else the name).
    pub variable: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// Index into `binds`; `parens` when the template has none around an `IN` list.
    Bind {
        index: usize,
        add_parens: bool,
    },
}

/// A parsed template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTemplate {
    pieces: Vec<Piece>,
    pub binds: Vec<Bind>,
    /// The object of `FROM` (SOQL), or the objects of `RETURNING` (SOSL), with the fields
    /// selected from each, for the describe check and the result variables.
    pub objects: Vec<(String, Vec<String>)>,
}

impl QueryTemplate {
    /// The query text with each placeholder replaced by `literal(bind index)`.
    pub fn render(
        &self,
        mut literal: impl FnMut(usize) -> Result<String, BindError>,
    ) -> Result<String, (usize, BindError)> {
        let mut out = String::with_capacity(256);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Bind { index, add_parens } => {
                    let value = literal(*index).map_err(|e| (*index, e))?;
                    if *add_parens {
                        out.push('(');
                        out.push_str(&value);
                        out.push(')');
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every selected field of every object.
    pub fn columns_of_all(&self) -> impl Iterator<Item = &str> {
        self.objects
            .iter()
            .flat_map(|(_, fields)| fields.iter().map(String::as_str))
    }

    /// The selected fields (SOQL: of the one object).
    pub fn columns(&self) -> &[String] {
        self.objects.first().map_or(&[], |(_, f)| f)
    }
}

/// A named query of an org.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedQuery {
    pub name: String,
    pub kind: QueryKind,
    pub text: String,
    pub template: QueryTemplate,
    /// `<map field=… variable=…>`: a column's variable instead of `sf_<name>_<field>`.
    pub mappings: Vec<FieldMapping>,
    /// None: the cache's `cache-ttl-s` / `cache-negative-ttl-s`.
    pub cache_ttl: Option<Duration>,
    pub negative_ttl: Option<Duration>,
    /// Rows kept (SOQL pages are followed until this many).
    pub max_rows: usize,
}

impl NamedQuery {
    /// The variable a column's value becomes, for row `row` (1-based) of `rows`.
    pub fn variable(&self, column: &str, row: usize, rows: usize) -> String {
        let base = match self
            .mappings
            .iter()
            .find(|m| m.field.eq_ignore_ascii_case(column))
        {
            Some(m) => m.variable.clone(),
            None => format!("sf_{}_{}", self.name, column.replace('.', "_")),
        };
        if rows == 1 {
            base
        } else {
            match base.strip_prefix(&format!("sf_{}_", self.name)) {
                Some(rest) => format!("sf_{}_{row}_{rest}", self.name),
                None => format!("{base}_{row}"),
            }
        }
    }
}

/// Channel variables one answer may set at most (the cache packs names into a byte index).
pub const MAX_RESULT_VARIABLES: usize = 240;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str,
    Punct(String),
    Bind(String),
}

/// Splits a template into tokens with byte ranges; string literals are kept whole (a `:` in a
/// literal is text). `{…}` of a SOSL FIND is one token.
fn tokens(text: &str) -> Result<Vec<(Tok, usize, usize)>, String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            if i >= b.len() {
                return Err("a string literal is not closed".into());
            }
            i += 1;
            out.push((Tok::Str, start, i));
        } else if c == b':' {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let name = &text[start + 1..i];
            if name.is_empty() || !name.as_bytes()[0].is_ascii_alphabetic() {
                return Err(format!(
                    "':' at byte {start} is not followed by a bind name"
                ));
            }
            out.push((Tok::Bind(name.to_string()), start, i));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            out.push((Tok::Word(text[start..i].to_string()), start, i));
        } else {
            let two = text.get(i..i + 2).unwrap_or("");
            let len = if matches!(two, "!=" | "<=" | ">=" | "<>") {
                2
            } else {
                text[i..].chars().next().map_or(1, char::len_utf8)
            };
            i += len;
            out.push((Tok::Punct(text[start..i].to_string()), start, i));
        }
    }
    Ok(out)
}

fn is_kw(tok: Option<&(Tok, usize, usize)>, kw: &str) -> bool {
    matches!(tok, Some((Tok::Word(w), _, _)) if w.eq_ignore_ascii_case(kw))
}

/// Parses a SOQL template: `SELECT fields FROM Object …` with placeholders compared with fields.
pub fn parse_soql(text: &str) -> Result<QueryTemplate, String> {
    let toks = tokens(text)?;
    if !is_kw(toks.first(), "SELECT") {
        return Err("a query starts with SELECT".into());
    }
    let from = toks
        .iter()
        .position(|t| matches!(&t.0, Tok::Word(w) if w.eq_ignore_ascii_case("FROM")))
        .ok_or("no FROM")?;
    let mut columns: Vec<String> = Vec::new();
    for (tok, _, _) in &toks[1..from] {
        match tok {
            Tok::Word(w) if is_field_path(w) => {
                if !columns.iter().any(|c| c.eq_ignore_ascii_case(w)) {
                    columns.push(w.clone());
                }
            }
            Tok::Punct(p) if p == "," => {}
            _ => {
                return Err(
                    "SELECT lists field paths only (no functions, subqueries or TYPEOF)".into(),
                )
            }
        }
    }
    if columns.is_empty() {
        return Err("SELECT names no field".into());
    }
    let object = match toks.get(from + 1) {
        Some((Tok::Word(w), _, _)) if crate::config::is_api_name(w) => w.clone(),
        _ => return Err("FROM is not followed by an object name".into()),
    };
    let mut pieces = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let mut copied = 0;
    for (i, (tok, start, end)) in toks.iter().enumerate() {
        let Tok::Bind(name) = tok else { continue };
        let word = |k: usize| -> Option<&str> {
            match toks.get(k) {
                Some((Tok::Word(w), _, _)) => Some(w.as_str()),
                _ => None,
            }
        };
        let punct = |k: usize| -> Option<&str> {
            match toks.get(k) {
                Some((Tok::Punct(p), _, _)) => Some(p.as_str()),
                _ => None,
            }
        };
        let before = |n: usize| i.checked_sub(n);
        let (field_at, list, add_parens) = if punct(before(1).unwrap_or(usize::MAX)) == Some("(")
            && is_kw(before(2).and_then(|k| toks.get(k)), "IN")
        {
            if punct(i + 1) != Some(")") {
                return Err(format!("IN (:{name}) takes one bind and nothing else"));
            }
            (before(3), true, false)
        } else if is_kw(before(1).and_then(|k| toks.get(k)), "IN") {
            (before(2), true, true)
        } else if matches!(
            punct(before(1).unwrap_or(usize::MAX)),
            Some("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=")
        ) {
            (before(2), false, false)
        } else if is_kw(before(1).and_then(|k| toks.get(k)), "LIKE") {
            return Err(format!(
                    ":{name} after LIKE: a caller's text would choose the wildcards; compare with = instead"
                ));
        } else {
            return Err(format!(
                    ":{name} is not compared with a field (write Field = :{name} or Field IN (:{name}))"
                ));
        };
        // `Field NOT IN (:x)`.
        let field_at = match field_at {
            Some(k) if list && is_kw(toks.get(k), "NOT") => k.checked_sub(1),
            other => other,
        };
        let field = match field_at.and_then(word) {
            Some(f) if is_field_path(f) => f.to_string(),
            _ => {
                return Err(format!(
                    ":{name} is not compared with a field (write Field = :{name} or Field IN (:{name}))"
                ))
            }
        };
        if !is_variable_name(name) {
            return Err(format!(":{name}: use letters, digits and '_'"));
        }
        let index = match binds.iter().position(|b| b.name == *name) {
            Some(index) => {
                if binds[index].list != list {
                    return Err(format!(":{name} is used both as a list and as one value"));
                }
                index
            }
            None => {
                binds.push(Bind {
                    name: name.clone(),
                    field: Some(field),
                    list,
                    variable: name.clone(),
                });
                binds.len() - 1
            }
        };
        pieces.push(Piece::Text(text[copied..*start].to_string()));
        pieces.push(Piece::Bind { index, add_parens });
        copied = *end;
    }
    pieces.push(Piece::Text(text[copied..].to_string()));
    Ok(QueryTemplate {
        pieces,
        binds,
        objects: vec![(object, columns)],
    })
}

/// Parses a SOSL template: `FIND {:term} … RETURNING Object(fields …), …`. The search term is
/// one bind, written as a quoted phrase; binds anywhere else are refused.
pub fn parse_sosl(text: &str) -> Result<QueryTemplate, String> {
    let trimmed = text.trim_start();
    let lead = text.len() - trimmed.len();
    let after_find = trimmed
        .get(..4)
        .filter(|w| w.eq_ignore_ascii_case("FIND"))
        .map(|_| &trimmed[4..])
        .ok_or("a search starts with FIND")?;
    let open = after_find
        .find('{')
        .filter(|at| after_find[..*at].trim().is_empty())
        .ok_or("FIND is not followed by {:bind}")?;
    let close = after_find[open..]
        .find('}')
        .ok_or("FIND {… is not closed")?
        + open;
    let term = after_find[open + 1..close].trim();
    let name = term
        .strip_prefix(':')
        .filter(|n| is_variable_name(n))
        .ok_or("the search term must be one bind: FIND {:name}")?
        .to_string();
    let rest_at = lead + 4 + close + 1;
    let rest = &text[rest_at..];
    if rest.contains(':') {
        return Err("binds are allowed only in FIND {…}".into());
    }
    let toks = tokens(rest)?;
    let returning = toks
        .iter()
        .position(|t| matches!(&t.0, Tok::Word(w) if w.eq_ignore_ascii_case("RETURNING")))
        .ok_or("a named search needs RETURNING Object(fields)")?;
    let mut objects: Vec<(String, Vec<String>)> = Vec::new();
    let mut k = returning + 1;
    while let Some((Tok::Word(object), _, _)) = toks.get(k) {
        if !crate::config::is_api_name(object) {
            return Err(format!("RETURNING {object}: not an object name"));
        }
        let mut fields = Vec::new();
        k += 1;
        if matches!(toks.get(k), Some((Tok::Punct(p), _, _)) if p == "(") {
            k += 1;
            let mut in_fields = true;
            let mut depth = 1;
            while depth > 0 {
                match toks.get(k) {
                    None => return Err(format!("RETURNING {object}(… is not closed")),
                    Some((Tok::Punct(p), _, _)) if p == "(" => depth += 1,
                    Some((Tok::Punct(p), _, _)) if p == ")" => depth -= 1,
                    Some((Tok::Word(w), _, _))
                        if ["WHERE", "ORDER", "LIMIT", "OFFSET", "USING"]
                            .iter()
                            .any(|kw| w.eq_ignore_ascii_case(kw)) =>
                    {
                        in_fields = false
                    }
                    Some((Tok::Word(w), _, _)) if in_fields => {
                        if !is_field_path(w) {
                            return Err(format!("{object} field {w}: not a field path"));
                        }
                        fields.push(w.clone());
                    }
                    _ => {}
                }
                k += 1;
            }
        }
        if fields.is_empty() {
            fields.push("Id".to_string());
        }
        objects.push((object.clone(), fields));
        match toks.get(k) {
            Some((Tok::Punct(p), _, _)) if p == "," => k += 1,
            _ => break,
        }
    }
    if objects.is_empty() {
        return Err("RETURNING names no object".into());
    }
    Ok(QueryTemplate {
        pieces: vec![
            Piece::Text(text[..lead + 4 + open + 1].to_string()),
            Piece::Bind {
                index: 0,
                add_parens: false,
            },
            Piece::Text(text[lead + 4 + close..].to_string()),
        ],
        binds: vec![Bind {
            name: name.clone(),
            field: None,
            list: false,
            variable: name,
        }],
        objects,
    })
}

/// Parses an org's `<query>` and `<search>` elements.
pub(crate) fn parse_named_queries(
    org: &crate::xml::Element,
    org_ctx: &str,
) -> Result<Vec<NamedQuery>, crate::config::ConfigError> {
    use crate::config::ConfigError;
    let fail = |msg: String| Err(ConfigError(msg));
    let mut queries: Vec<NamedQuery> = Vec::new();
    let elements = org
        .children_named("query")
        .map(|e| (e, QueryKind::Soql, "soql"))
        .chain(
            org.children_named("search")
                .map(|e| (e, QueryKind::Sosl, "sosl")),
        );
    for (element, kind, text_attr) in elements {
        let Some(name) = element
            .attr("name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
        else {
            return fail(format!("{org_ctx}: <{}> needs name=\"…\"", element.name));
        };
        let ctx = format!("{org_ctx} {} \"{name}\"", kind.as_str());
        if !is_variable_name(name) || name.len() > 40 {
            return fail(format!(
                "{ctx}: use up to 40 letters, digits and '_' (the name is part of variable names)"
            ));
        }
        if queries.iter().any(|q| q.name == name) {
            return fail(format!(
                "{ctx}: a query or search of this name is defined twice"
            ));
        }
        let Some(text) = element
            .attr(text_attr)
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return fail(format!("{ctx}: needs {text_attr}=\"…\""));
        };
        let parsed = match kind {
            QueryKind::Soql => parse_soql(text),
            QueryKind::Sosl => parse_sosl(text),
        };
        let mut template = match parsed {
            Ok(t) => t,
            Err(e) => return fail(format!("{ctx}: {e}")),
        };
        for bind in element.children_named("bind") {
            let Some(bind_name) = bind.attr("name").map(|n| n.trim().trim_start_matches(':'))
            else {
                return fail(format!("{ctx}: <bind> needs name=\"…\""));
            };
            let Some(known) = template.binds.iter_mut().find(|b| b.name == bind_name) else {
                return fail(format!(
                    "{ctx}: <bind name=\"{bind_name}\">: the {text_attr} has no :{bind_name}"
                ));
            };
            if let Some(variable) = bind.attr("variable").map(str::trim) {
                if !is_variable_name(variable) {
                    return fail(format!(
                        "{ctx}: <bind variable=\"{variable}\">: use letters, digits and '_'"
                    ));
                }
                known.variable = variable.to_string();
            }
        }
        let mut mappings: Vec<FieldMapping> = Vec::new();
        for map in element.children_named("map") {
            let (Some(field), Some(variable)) = (map.attr("field"), map.attr("variable")) else {
                return fail(format!("{ctx}: <map> needs field=\"…\" and variable=\"…\""));
            };
            if !template
                .objects
                .iter()
                .any(|(_, fields)| fields.iter().any(|f| f.eq_ignore_ascii_case(field)))
            {
                return fail(format!(
                    "{ctx}: <map field=\"{field}\">: the {text_attr} does not select {field}"
                ));
            }
            if !is_variable_name(variable) {
                return fail(format!(
                    "{ctx}: map variable \"{variable}\": use letters, digits and '_'"
                ));
            }
            mappings.push(FieldMapping {
                field: field.to_string(),
                variable: variable.to_string(),
            });
        }
        let secs = |attr: &str| -> Result<Option<Duration>, ConfigError> {
            match element.attr(attr) {
                None => Ok(None),
                Some(t) => match t.trim().parse::<u64>() {
                    Ok(s) if s <= 86_400 => Ok(Some(Duration::from_secs(s))),
                    _ => Err(ConfigError(format!(
                        "{ctx}: {attr}=\"{t}\": expected a whole number from 0 to 86400"
                    ))),
                },
            }
        };
        let max_rows = match element.attr("max-rows") {
            None => 10,
            Some(t) => match t.trim().parse::<usize>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => return fail(format!("{ctx}: max-rows=\"{t}\": expected 1 to 200")),
            },
        };
        // Every row's columns (SOSL: of the widest object, plus its type) and the count.
        let widest = template
            .objects
            .iter()
            .map(|(_, f)| f.len())
            .max()
            .unwrap_or(0)
            + usize::from(kind == QueryKind::Sosl);
        if widest * max_rows + 1 > MAX_RESULT_VARIABLES {
            return fail(format!(
                "{ctx}: {widest} columns × max-rows {max_rows} would set more than {MAX_RESULT_VARIABLES} variables; lower max-rows"
            ));
        }
        queries.push(NamedQuery {
            name: name.to_string(),
            kind,
            text: text.to_string(),
            template,
            mappings,
            cache_ttl: secs("cache-ttl-s")?,
            negative_ttl: secs("negative-ttl-s")?,
            max_rows,
        });
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_with(t: &QueryTemplate, values: &[&str]) -> String {
        t.render(|i| Ok(values[i].to_string())).unwrap()
    }

    #[test]
    fn finds_binds_and_the_fields_they_compare_with() {
        let t = parse_soql(
            "SELECT Id, CaseNumber, Owner.Name FROM Case WHERE ContactId = :contact_id AND IsClosed = false AND Status NOT IN (:statuses) AND Priority IN :p ORDER BY CreatedDate DESC LIMIT 1",
        )
        .unwrap();
        let fields: Vec<_> = t
            .binds
            .iter()
            .map(|b| (b.name.as_str(), b.field.as_deref().unwrap(), b.list))
            .collect();
        assert_eq!(
            fields,
            [
                ("contact_id", "ContactId", false),
                ("statuses", "Status", true),
                ("p", "Priority", true)
            ]
        );
        assert_eq!(t.objects[0].0, "Case");
        assert_eq!(t.columns(), ["Id", "CaseNumber", "Owner.Name"]);
        assert_eq!(
            render_with(&t, &["'X'", "'a', 'b'", "'High'"]),
            "SELECT Id, CaseNumber, Owner.Name FROM Case WHERE ContactId = 'X' AND IsClosed = false AND Status NOT IN ('a', 'b') AND Priority IN ('High') ORDER BY CreatedDate DESC LIMIT 1"
        );
    }

    #[test]
    fn a_colon_in_a_literal_is_text() {
        let t = parse_soql("SELECT Id FROM Case WHERE Subject = 'a :b' AND Id = :id").unwrap();
        assert_eq!(t.binds.len(), 1);
    }

    #[test]
    fn refuses_binds_not_compared_with_a_field() {
        for bad in [
            "SELECT Id FROM Case WHERE :x = Id",
            "SELECT Id FROM Case WHERE Subject LIKE :x",
            "SELECT Id FROM Case LIMIT :n",
            "SELECT Id FROM Case WHERE Id = : x",
            "SELECT COUNT() FROM Case",
            "DELETE FROM Case",
            "SELECT Id FROM Case WHERE Subject = 'open",
        ] {
            assert!(parse_soql(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_a_named_search() {
        let t = parse_sosl(
            "FIND {:name} IN NAME FIELDS RETURNING Contact(Id, Name, Email WHERE Email != null LIMIT 5), Account(Id, Name)",
        )
        .unwrap();
        assert_eq!(t.binds[0].name, "name");
        assert_eq!(
            t.objects,
            [
                (
                    "Contact".to_string(),
                    vec!["Id".into(), "Name".into(), "Email".into()]
                ),
                ("Account".to_string(), vec!["Id".into(), "Name".into()])
            ]
        );
        assert_eq!(
            render_with(&t, &["\"Ann\""]),
            "FIND {\"Ann\"} IN NAME FIELDS RETURNING Contact(Id, Name, Email WHERE Email != null LIMIT 5), Account(Id, Name)"
        );
        assert!(parse_sosl("FIND {Ann} RETURNING Contact").is_err());
        assert!(parse_sosl("FIND {:a} RETURNING Contact(Id WHERE Name = :b)").is_err());
    }
}
