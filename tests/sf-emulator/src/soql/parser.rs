//! SOQL parser. Produces an unvalidated AST; `eval::compile` checks names against the schema.

use super::lexer::{lex, LikeChar, StrLit, Tok, Token};
use super::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    pub object: String,
    pub object_pos: usize,
    pub filter: Option<Cond>,
    pub order: Vec<OrderItem>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    Count,
    /// Plain field paths, and the `TYPEOF` clauses among them.
    Fields(Vec<FieldRef>, Vec<TypeOf>),
}

/// `TYPEOF Rel WHEN Type THEN f, … [WHEN …] [ELSE f, …] END` in a SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeOf {
    pub relationship: FieldRef,
    pub whens: Vec<(FieldRef, Vec<FieldRef>)>,
    pub otherwise: Option<Vec<FieldRef>>,
    /// How many plain fields precede it in the SELECT list (keeps the output's key order).
    pub fields_before: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef {
    pub path: String,
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub field: FieldRef,
    pub desc: bool,
    pub nulls_last: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(StrLit),
    Num(f64),
    Bool(bool),
    Null,
    Date(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp {
        field: FieldRef,
        op: &'static str,
        value: Lit,
        value_pos: usize,
    },
    In {
        field: FieldRef,
        negated: bool,
        values: Vec<(Lit, usize)>,
    },
    Like {
        field: FieldRef,
        pattern: Vec<LikeChar>,
        value_pos: usize,
    },
}

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET",
    "ASC", "DESC", "NULLS", "GROUP", "HAVING", "WITH", "FOR", "USING", "INCLUDES", "EXCLUDES",
    "TYPEOF", "WHEN", "THEN", "ELSE", "END", "NULL", "TRUE", "FALSE",
];

/// `(ORDER BY items, LIMIT, OFFSET)`
pub type Tail = (Vec<OrderItem>, Option<usize>, Option<usize>);

pub struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    /// Every string literal seen, after unescaping (the admin query log exposes them).
    pub literals: Vec<String>,
    /// Every comparison value, in order (the admin query log exposes them).
    pub values: Vec<String>,
}

pub fn parse(src: &str) -> Result<(Query, Vec<String>), QueryError> {
    parse_logged(src).map(|(q, literals, _)| (q, literals))
}

/// `parse`, also returning every comparison value as read (see `QueryLogEntry::values`).
pub fn parse_logged(src: &str) -> Result<(Query, Vec<String>, Vec<String>), QueryError> {
    if src.trim().is_empty() {
        return Err(QueryError::malformed(
            0,
            "A query string has to be specified",
        ));
    }
    let mut p = Parser::new(src)?;
    let q = p.query()?;
    p.expect_eof()?;
    Ok((q, p.literals, p.values))
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Result<Self, QueryError> {
        Ok(Parser {
            src,
            toks: lex(src)?,
            i: 0,
            literals: vec![],
            values: vec![],
        })
    }

    pub fn src(&self) -> &str {
        self.src
    }

    pub fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    pub fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    pub fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    pub fn unexpected(&self) -> QueryError {
        let t = self.peek();
        let text = match &t.tok {
            Tok::Eof => return QueryError::malformed(t.pos, "unexpected token: <EOF>"),
            Tok::Ident(s) | Tok::Num(s) | Tok::Date(s) => s.clone(),
            Tok::Str(s) => format!("'{}'", s.value),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Op(o) => (*o).into(),
        };
        QueryError::malformed(t.pos, format!("unexpected token: '{text}'"))
    }

    pub fn expect_kw(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    pub fn expect(&mut self, tok: Tok) -> Result<(), QueryError> {
        if self.peek().tok == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    pub fn expect_eof(&self) -> Result<(), QueryError> {
        if self.peek().tok == Tok::Eof {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// A field path (not a reserved word).
    pub fn field(&mut self) -> Result<FieldRef, QueryError> {
        match &self.peek().tok {
            Tok::Ident(s) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s)) => {
                let t = self.bump();
                let Tok::Ident(path) = t.tok else {
                    return Err(self.unexpected());
                };
                if path.starts_with('.') || path.ends_with('.') || path.contains("..") {
                    return Err(QueryError::malformed(
                        t.pos,
                        format!("unexpected token: '{path}'"),
                    ));
                }
                Ok(FieldRef { path, pos: t.pos })
            }
            _ => Err(self.unexpected()),
        }
    }

    /// An object name after FROM or RETURNING: a field-like name, or `Group` (the object whose
    /// name is also a keyword).
    pub fn object_name(&mut self) -> Result<FieldRef, QueryError> {
        if let Tok::Ident(s) = &self.peek().tok {
            if s.eq_ignore_ascii_case("Group") {
                let t = self.bump();
                let Tok::Ident(path) = t.tok else {
                    return Err(self.unexpected());
                };
                return Ok(FieldRef { path, pos: t.pos });
            }
        }
        self.field()
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.expect_kw("SELECT")?;
        let select = if self.is_kw("COUNT") {
            self.bump();
            self.expect(Tok::LParen)?;
            self.expect(Tok::RParen)?;
            Select::Count
        } else {
            self.select_list()?
        };
        self.expect_kw("FROM")?;
        let obj = self.object_name()?;
        if obj.path.contains('.') {
            return Err(QueryError::malformed(
                obj.pos,
                format!("unexpected token: '{}'", obj.path),
            ));
        }
        let filter = if self.eat_kw("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let (order, limit, offset) = self.tail()?;
        Ok(Query {
            select,
            object: obj.path,
            object_pos: obj.pos,
            filter,
            order,
            limit,
            offset,
        })
    }

    /// A SOQL SELECT list: fields and `TYPEOF` clauses.
    fn select_list(&mut self) -> Result<Select, QueryError> {
        let mut fields = vec![];
        let mut typeofs = vec![];
        loop {
            if self.is_kw("TYPEOF") {
                self.bump();
                typeofs.push(self.type_of(fields.len())?);
            } else {
                fields.push(self.field()?);
            }
            if self.peek().tok != Tok::Comma {
                break;
            }
            self.bump();
        }
        Ok(Select::Fields(fields, typeofs))
    }

    fn type_of(&mut self, fields_before: usize) -> Result<TypeOf, QueryError> {
        let relationship = self.field()?;
        let mut whens = vec![];
        while self.eat_kw("WHEN") {
            let object = self.object_name()?;
            self.expect_kw("THEN")?;
            whens.push((object, self.field_list()?));
        }
        if whens.is_empty() {
            return Err(self.unexpected());
        }
        let otherwise = if self.eat_kw("ELSE") {
            Some(self.field_list()?)
        } else {
            None
        };
        self.expect_kw("END")?;
        Ok(TypeOf {
            relationship,
            whens,
            otherwise,
            fields_before,
        })
    }

    pub fn field_list(&mut self) -> Result<Vec<FieldRef>, QueryError> {
        let mut fields = vec![self.field()?];
        while self.peek().tok == Tok::Comma {
            self.bump();
            fields.push(self.field()?);
        }
        Ok(fields)
    }

    /// `[ORDER BY …] [LIMIT n] [OFFSET n]`
    pub fn tail(&mut self) -> Result<Tail, QueryError> {
        let mut order = vec![];
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let field = self.field()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let nulls_last = if self.eat_kw("NULLS") {
                    if self.eat_kw("LAST") {
                        true
                    } else {
                        self.expect_kw("FIRST")?;
                        false
                    }
                } else {
                    desc
                };
                order.push(OrderItem {
                    field,
                    desc,
                    nulls_last,
                });
                if self.peek().tok != Tok::Comma {
                    break;
                }
                self.bump();
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            Some(self.count()?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET") {
            Some(self.count()?)
        } else {
            None
        };
        Ok((order, limit, offset))
    }

    fn count(&mut self) -> Result<usize, QueryError> {
        match &self.peek().tok {
            Tok::Num(n) => match n.parse::<usize>() {
                Ok(v) => {
                    self.bump();
                    Ok(v)
                }
                Err(_) => Err(self.unexpected()),
            },
            _ => Err(self.unexpected()),
        }
    }

    /// `cond := term ((AND term)* | (OR term)*)` — SOQL refuses AND and OR mixed without
    /// parentheses.
    pub fn condition(&mut self) -> Result<Cond, QueryError> {
        let first = self.unary()?;
        let joiner = if self.is_kw("AND") {
            "AND"
        } else if self.is_kw("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let mut parts = vec![first];
        while self.eat_kw(joiner) {
            parts.push(self.unary()?);
        }
        if self.is_kw("AND") || self.is_kw("OR") {
            return Err(self.unexpected());
        }
        Ok(if joiner == "AND" {
            Cond::And(parts)
        } else {
            Cond::Or(parts)
        })
    }

    fn unary(&mut self) -> Result<Cond, QueryError> {
        if self.eat_kw("NOT") {
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.bump();
            let c = self.condition()?;
            self.expect(Tok::RParen)?;
            return Ok(c);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Cond, QueryError> {
        let field = self.field()?;
        if self.eat_kw("LIKE") {
            let value_pos = self.peek().pos;
            return match self.bump().tok {
                Tok::Str(s) => {
                    self.literals.push(s.value.clone());
                    self.values.push(s.value.clone());
                    Ok(Cond::Like {
                        field,
                        pattern: s.pattern,
                        value_pos,
                    })
                }
                _ => {
                    self.i -= 1;
                    Err(self.unexpected())
                }
            };
        }
        let negated = if self.is_kw("NOT") {
            self.bump();
            if !self.is_kw("IN") {
                return Err(self.unexpected());
            }
            true
        } else {
            false
        };
        if self.eat_kw("IN") {
            self.expect(Tok::LParen)?;
            let mut values = vec![];
            loop {
                let pos = self.peek().pos;
                values.push((self.literal()?, pos));
                if self.peek().tok == Tok::RParen {
                    self.bump();
                    break;
                }
                self.expect(Tok::Comma)?;
            }
            return Ok(Cond::In {
                field,
                negated,
                values,
            });
        }
        let op = match self.peek().tok {
            Tok::Op(o) => o,
            _ => return Err(self.unexpected()),
        };
        self.bump();
        let value_pos = self.peek().pos;
        let value = self.literal()?;
        Ok(Cond::Cmp {
            field,
            op,
            value,
            value_pos,
        })
    }

    fn literal(&mut self) -> Result<Lit, QueryError> {
        let lit = match self.peek().tok.clone() {
            Tok::Str(s) => {
                if let Some(at) = s.like_escape_at {
                    return Err(like_only_escape(self.src, at, &s.raw));
                }
                self.literals.push(s.value.clone());
                self.values.push(s.value.clone());
                Lit::Str(s)
            }
            Tok::Num(n) => {
                self.values.push(n.clone());
                Lit::Num(n.parse().map_err(|_| self.unexpected())?)
            }
            Tok::Date(d) => {
                self.values.push(d.clone());
                Lit::Date(d)
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => {
                self.values.push("null".into());
                Lit::Null
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => {
                self.values.push("true".into());
                Lit::Bool(true)
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => {
                self.values.push("false".into());
                Lit::Bool(false)
            }
            _ => return Err(self.unexpected()),
        };
        self.bump();
        Ok(lit)
    }
}

/// `\%` and `\_` outside a LIKE pattern: "If you use a backslash character in any other
/// context, an error occurs" (SOQL, Quoted String Escape Sequences).
pub fn like_only_escape(src: &str, at: usize, raw: &str) -> QueryError {
    let seq = src.get(at..at + 2).unwrap_or("\\");
    QueryError::malformed(
        at,
        format!(
            "Invalid string literal '{raw}'. Illegal character sequence '{seq}' in string literal."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_query() {
        let (q, lits) = parse(
            "SELECT Id, Name, Owner.Name FROM Contact WHERE (Phone = '1' OR Name LIKE 'O\\'B%') AND NOT Id IN ('a','b') ORDER BY Name DESC NULLS FIRST LIMIT 5 OFFSET 2",
        )
        .unwrap();
        assert_eq!(q.object, "Contact");
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.offset, Some(2));
        assert!(q.order[0].desc && !q.order[0].nulls_last);
        assert_eq!(lits, vec!["1", "O'B%", "a", "b"]);
        match q.filter.unwrap() {
            Cond::And(parts) => assert_eq!(parts.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mixed_and_or_is_malformed() {
        let e = parse("SELECT Id FROM Contact WHERE A = '1' AND B = '2' OR C = '3'").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert_eq!(e.message, "unexpected token: 'OR'");
    }

    #[test]
    fn escaped_quote_cannot_break_out() {
        let (q, lits) = parse(r"SELECT Id FROM Contact WHERE Name = 'x\' OR Name != \'y'").unwrap();
        assert_eq!(lits, vec!["x' OR Name != 'y"]);
        assert!(matches!(q.filter, Some(Cond::Cmp { .. })));
    }

    #[test]
    fn injection_without_escaping_is_malformed() {
        assert!(parse("SELECT Id FROM Contact WHERE Name = 'x' OR Name != 'y' garbage").is_err());
        assert!(parse("SELECT Id FROM Contact WHERE Name = 'x'; DELETE").is_err());
    }

    #[test]
    fn count_and_errors() {
        let (q, _) = parse("select count() from Lead").unwrap();
        assert_eq!(q.select, Select::Count);
        assert_eq!(
            parse("").unwrap_err().message,
            "A query string has to be specified"
        );
        assert_eq!(
            parse("SELECT Id FROM").unwrap_err().message,
            "unexpected token: <EOF>"
        );
        assert!(parse("SELECT Id, (SELECT Id FROM Contacts) FROM Account").is_err());
        assert!(parse("SELECT Id FROM Contact GROUP BY Name").is_err());
    }
}
