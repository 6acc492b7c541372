//! The search term of a SOSL `FIND {…}`: its escapes, words, phrases, wildcards and operators,
//! read as Salesforce's "FIND {SearchQuery}" and "Example Text Searches" pages describe them.
//!
//! - Operands are single words or `"quoted phrases"`; `*` (any characters) and `?` (one
//!   character) are wildcards.
//! - `OR`, `AND`, `AND NOT` (any case) combine operands, left to right; words next to each other
//!   are ANDed; parentheses group. `"and"` / `"or"` in quotes are words.
//! - The reserved characters `& | ! ( ) { } [ ] ^ " ~ * ? : \ ' + -` are literal only when
//!   preceded by a backslash; unescaped, `"`, `*`, `?`, `(`, `)` keep their meaning above and the
//!   others are MALFORMED_SEARCH (also inside a phrase). Salesforce documents no other escape,
//!   so a backslash before any other character is MALFORMED_SEARCH too (the stricter reading).

use crate::error::{caret_message, ApiError};

/// Characters that are literal only after a backslash.
pub const RESERVED: &[char] = &[
    '&', '|', '!', '(', ')', '{', '}', '[', ']', '^', '"', '~', '*', '?', ':', '\\', '\'', '+', '-',
];

/// One character of an operand's pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pat {
    Lit(char),
    /// Unescaped `*`.
    Any,
    /// Unescaped `?`.
    One,
}

/// A word or a quoted phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    /// The unescaped text (wildcards shown as `*` and `?`).
    pub text: String,
    pub phrase: bool,
    pub pattern: Vec<Pat>,
}

impl Operand {
    pub fn has_wildcards(&self) -> bool {
        self.pattern.iter().any(|p| !matches!(p, Pat::Lit(_)))
    }

    /// The digits of a number-like operand (no letters, no wildcards, at least one digit): what
    /// the phone index compares.
    pub fn phone_digits(&self) -> Option<String> {
        if self.has_wildcards() || self.text.chars().any(char::is_alphabetic) {
            return None;
        }
        let d: String = self.text.chars().filter(char::is_ascii_digit).collect();
        (!d.is_empty()).then_some(d)
    }

    /// Text match against one field value: the operand's tokens appear, in order and adjacent,
    /// among the value's tokens (case-insensitive; wildcards within a token).
    pub fn matches_text(&self, value: &str) -> bool {
        if !self.has_wildcards() && value.to_lowercase() == self.text.to_lowercase() {
            return true;
        }
        let want = pattern_tokens(&self.pattern);
        if want.is_empty() {
            return false;
        }
        let have: Vec<Vec<char>> = value_tokens(value);
        have.windows(want.len())
            .any(|win| win.iter().zip(&want).all(|(h, w)| glob(h, w)))
    }
}

fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\''
}

fn value_tokens(s: &str) -> Vec<Vec<char>> {
    s.to_lowercase()
        .split(|c: char| !is_token_char(c))
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().collect())
        .collect()
}

fn pattern_tokens(p: &[Pat]) -> Vec<Vec<Pat>> {
    let mut out = vec![];
    let mut cur = vec![];
    for &c in p {
        match c {
            Pat::Lit(ch) if !is_token_char(ch) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            Pat::Lit(ch) => cur.extend(ch.to_lowercase().map(Pat::Lit)),
            other => cur.push(other),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn glob(s: &[char], p: &[Pat]) -> bool {
    let mut dp = vec![false; p.len() + 1];
    dp[0] = true;
    for j in 1..=p.len() {
        dp[j] = dp[j - 1] && p[j - 1] == Pat::Any;
    }
    for &ch in s {
        let mut next = vec![false; p.len() + 1];
        for j in 1..=p.len() {
            next[j] = match p[j - 1] {
                Pat::Any => next[j - 1] || dp[j],
                Pat::One => dp[j - 1],
                Pat::Lit(c) => dp[j - 1] && c == ch,
            };
        }
        dp = next;
    }
    dp[p.len()]
}

/// The term as a boolean expression over operands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermExpr {
    Operand(Operand),
    Or(Vec<TermExpr>),
    /// Every `all` matches and no `none` does (`a AND b AND NOT c`).
    And {
        all: Vec<TermExpr>,
        none: Vec<TermExpr>,
    },
}

impl TermExpr {
    pub fn eval(&self, hit: &mut dyn FnMut(&Operand) -> bool) -> bool {
        match self {
            TermExpr::Operand(o) => hit(o),
            TermExpr::Or(v) => v.iter().any(|e| e.eval(hit)),
            TermExpr::And { all, none } => {
                all.iter().all(|e| e.eval(hit)) && !none.iter().any(|e| e.eval(hit))
            }
        }
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Operand>) {
        match self {
            TermExpr::Operand(o) => out.push(o),
            TermExpr::Or(v) => v.iter().for_each(|e| e.collect(out)),
            TermExpr::And { all, none } => {
                all.iter().for_each(|e| e.collect(out));
                none.iter().for_each(|e| e.collect(out));
            }
        }
    }
}

/// A parsed search term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm {
    pub expr: TermExpr,
}

impl SearchTerm {
    /// A parameterized-search `q`: no syntax, the whole text is one phrase.
    pub fn literal(text: &str) -> SearchTerm {
        SearchTerm {
            expr: TermExpr::Operand(Operand {
                text: text.to_string(),
                phrase: true,
                pattern: text.chars().map(Pat::Lit).collect(),
            }),
        }
    }

    /// The operands, left to right.
    pub fn operands(&self) -> Vec<&Operand> {
        let mut out = vec![];
        self.expr.collect(&mut out);
        out
    }

    /// The unescaped operand texts, left to right (the admin query log's `literals`).
    pub fn literals(&self) -> Vec<String> {
        self.operands().iter().map(|o| o.text.clone()).collect()
    }

    /// When the term is one word or one phrase without wildcards: its unescaped text. This is
    /// the check for an escaper's round trip (`FIND {<escaped>}` searches exactly the input).
    pub fn single_literal(&self) -> Option<&str> {
        match &self.expr {
            TermExpr::Operand(o) if !o.has_wildcards() => Some(&o.text),
            _ => None,
        }
    }
}

fn malformed(src: &str, pos: usize, msg: &str) -> ApiError {
    ApiError::bad_request("MALFORMED_SEARCH", caret_message(src, pos, msg))
}

#[derive(Debug)]
enum Tok {
    Open(usize),
    Close(usize),
    Or(usize),
    And(usize),
    Not(usize),
    Operand(Operand, usize),
}

impl Tok {
    fn pos(&self) -> usize {
        match self {
            Tok::Open(p) | Tok::Close(p) | Tok::Or(p) | Tok::And(p) | Tok::Not(p) => *p,
            Tok::Operand(_, p) => *p,
        }
    }
}

/// Parses the term that starts after `{` at byte `start` of `src`, up to the closing `}`.
/// Returns the term and the byte after `}`. Error carets point into `src`.
pub fn parse_braced(src: &str, start: usize) -> Result<(SearchTerm, usize), ApiError> {
    let (toks, end, significant) = lex(src, start)?;
    if significant < 2 {
        return Err(ApiError::bad_request(
            "INVALID_SEARCH",
            "search term must be longer than one character",
        ));
    }
    let mut p = TermParser {
        src,
        toks,
        i: 0,
        end: end - 1,
    };
    let expr = p.or_expr()?;
    if let Some(t) = p.toks.get(p.i) {
        return Err(malformed(src, t.pos(), "unexpected token in search term"));
    }
    Ok((SearchTerm { expr }, end))
}

/// Decodes the text that goes between `FIND {` and `}` exactly as the emulator's SOSL parser
/// does (escapes, reserved characters, operators, the two-character minimum). Use it as the
/// decoder for a SOSL escaper's round trip: `decode_search_term(&escaped)?.single_literal()`
/// is the searched text when the escaper produced one word or phrase.
pub fn decode_search_term(inner: &str) -> Result<SearchTerm, ApiError> {
    let src = format!("FIND {{{inner}}}");
    let (term, end) = parse_braced(&src, 6)?;
    if end != src.len() {
        return Err(malformed(
            &src,
            end - 1,
            "unescaped '}' inside the search term",
        ));
    }
    Ok(term)
}

type Lexed = (Vec<Tok>, usize, usize);

/// Tokens, the byte after the closing `}`, and how many literal non-space characters.
fn lex(src: &str, start: usize) -> Result<Lexed, ApiError> {
    let mut toks = vec![];
    let mut significant = 0;
    // The operand being read: (pattern, text, escaped anywhere, start byte).
    let mut cur: Option<(Vec<Pat>, String, bool, usize)> = None;
    let mut phrase: Option<(Vec<Pat>, String, usize)> = None;
    let mut chars = src[start..].char_indices().peekable();
    let flush = |cur: &mut Option<(Vec<Pat>, String, bool, usize)>, toks: &mut Vec<Tok>| {
        if let Some((pattern, text, escaped, at)) = cur.take() {
            let op = text.to_ascii_uppercase();
            toks.push(match (op.as_str(), escaped) {
                ("OR", false) => Tok::Or(at),
                ("AND", false) => Tok::And(at),
                ("NOT", false) => Tok::Not(at),
                _ => Tok::Operand(
                    Operand {
                        text,
                        phrase: false,
                        pattern,
                    },
                    at,
                ),
            });
        }
    };
    while let Some((i, c)) = chars.next() {
        let pos = start + i;
        let push = |cur: &mut Option<(Vec<Pat>, String, bool, usize)>,
                    phrase: &mut Option<(Vec<Pat>, String, usize)>,
                    p: Pat,
                    shown: char,
                    escaped: bool| {
            if let Some((pat, text, _)) = phrase.as_mut() {
                pat.push(p);
                text.push(shown);
            } else {
                let entry = cur.get_or_insert_with(|| (vec![], String::new(), false, pos));
                entry.0.push(p);
                entry.1.push(shown);
                entry.2 |= escaped;
            }
        };
        match c {
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err(malformed(src, pos, "mismatched character '<EOF>'"));
                };
                if !RESERVED.contains(&e) {
                    return Err(malformed(
                        src,
                        pos,
                        &format!("Invalid escape sequence '\\{e}' in the search term: only reserved characters can be escaped"),
                    ));
                }
                significant += 1;
                push(&mut cur, &mut phrase, Pat::Lit(e), e, true);
            }
            '"' => match phrase.take() {
                Some((pattern, text, at)) => toks.push(Tok::Operand(
                    Operand {
                        text,
                        phrase: true,
                        pattern,
                    },
                    at,
                )),
                None => {
                    flush(&mut cur, &mut toks);
                    phrase = Some((vec![], String::new(), pos));
                }
            },
            '}' if phrase.is_none() => {
                flush(&mut cur, &mut toks);
                return Ok((toks, pos + 1, significant));
            }
            '(' | ')' if phrase.is_none() => {
                flush(&mut cur, &mut toks);
                toks.push(if c == '(' {
                    Tok::Open(pos)
                } else {
                    Tok::Close(pos)
                });
            }
            '*' => push(&mut cur, &mut phrase, Pat::Any, '*', false),
            '?' => push(&mut cur, &mut phrase, Pat::One, '?', false),
            c if RESERVED.contains(&c) => {
                return Err(malformed(
                    src,
                    pos,
                    &format!("mismatched character '{c}': reserved characters in the search term must be escaped with a backslash"),
                ));
            }
            c if c.is_whitespace() => match phrase.as_mut() {
                Some((pat, text, _)) => {
                    pat.push(Pat::Lit(c));
                    text.push(c);
                }
                None => flush(&mut cur, &mut toks),
            },
            c => {
                significant += 1;
                push(&mut cur, &mut phrase, Pat::Lit(c), c, false);
            }
        }
    }
    Err(malformed(
        src,
        src.len(),
        "mismatched character '<EOF>' expecting '}'",
    ))
}

struct TermParser<'a> {
    src: &'a str,
    toks: Vec<Tok>,
    i: usize,
    /// Position of the closing `}` (for "missing operand" carets).
    end: usize,
}

impl TermParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn pos(&self) -> usize {
        self.peek().map_or(self.end, Tok::pos)
    }

    fn or_expr(&mut self) -> Result<TermExpr, ApiError> {
        let mut parts = vec![self.and_expr()?];
        while matches!(self.peek(), Some(Tok::Or(_))) {
            self.i += 1;
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            TermExpr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<TermExpr, ApiError> {
        let mut all = vec![self.primary()?];
        let mut none = vec![];
        loop {
            match self.peek() {
                Some(Tok::And(_)) => {
                    self.i += 1;
                    if matches!(self.peek(), Some(Tok::Not(_))) {
                        self.i += 1;
                        none.push(self.primary()?);
                    } else {
                        all.push(self.primary()?);
                    }
                }
                Some(Tok::Operand(..) | Tok::Open(_) | Tok::Not(_)) => all.push(self.primary()?),
                _ => break,
            }
        }
        Ok(if all.len() == 1 && none.is_empty() {
            all.remove(0)
        } else {
            TermExpr::And { all, none }
        })
    }

    fn primary(&mut self) -> Result<TermExpr, ApiError> {
        let pos = self.pos();
        match self.toks.get_mut(self.i) {
            Some(Tok::Open(_)) => {
                self.i += 1;
                let e = self.or_expr()?;
                match self.peek() {
                    Some(Tok::Close(_)) => {
                        self.i += 1;
                        Ok(e)
                    }
                    _ => Err(malformed(
                        self.src,
                        self.pos(),
                        "missing ')' in search term",
                    )),
                }
            }
            Some(Tok::Operand(o, _)) => {
                let o = std::mem::replace(
                    o,
                    Operand {
                        text: String::new(),
                        phrase: false,
                        pattern: vec![],
                    },
                );
                self.i += 1;
                Ok(TermExpr::Operand(o))
            }
            // A NOT that does not follow AND is the word "not".
            Some(Tok::Not(_)) => {
                self.i += 1;
                Ok(TermExpr::Operand(Operand {
                    text: "NOT".into(),
                    phrase: false,
                    pattern: "not".chars().map(Pat::Lit).collect(),
                }))
            }
            _ => Err(malformed(
                self.src,
                pos,
                "unexpected token in search term: a word or phrase expected",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(inner: &str) -> Vec<String> {
        decode_search_term(inner).unwrap().literals()
    }

    #[test]
    fn phrases_and_operators() {
        let t = decode_search_term(r#""442079460958" OR "02079460958""#).unwrap();
        assert_eq!(t.literals(), ["442079460958", "02079460958"]);
        assert!(matches!(t.expr, TermExpr::Or(ref v) if v.len() == 2));
        assert_eq!(t.single_literal(), None);
        let t = decode_search_term("acme and not widgets").unwrap();
        match &t.expr {
            TermExpr::And { all, none } => {
                assert_eq!((all.len(), none.len()), (1, 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lits(r#""and" or "or""#), ["and", "or"]);
        assert_eq!(lits("(a1 OR b2) c3"), ["a1", "b2", "c3"]);
    }

    #[test]
    fn escapes_and_reserved_characters() {
        let t = decode_search_term(r"\+44 20 7946 0958").unwrap();
        assert_eq!(t.literals(), ["+44", "20", "7946", "0958"]);
        let t = decode_search_term(r#""\+1 \(415\) 555\-0123""#).unwrap();
        assert_eq!(t.single_literal(), Some("+1 (415) 555-0123"));
        assert_eq!(
            t.operands()[0].phone_digits().as_deref(),
            Some("14155550123")
        );
        let all = r#"\&\|\!\(\)\{\}\[\]\^\"\~\*\?\:\\\'\+\-"#;
        assert_eq!(
            decode_search_term(all).unwrap().single_literal(),
            Some(r#"&|!(){}[]^"~*?:\'+-"#)
        );
        for bad in [
            "415-555", "+44", "a:b", "O'Brien", r#""a-b""#, r"\n1", r"ab\", "(ab", "ab)", "ab OR",
            "AND ab", "ab}cd",
        ] {
            let e = decode_search_term(bad).unwrap_err();
            assert_eq!(e.code, "MALFORMED_SEARCH", "{bad}: {e:?}");
        }
        assert_eq!(decode_search_term("a").unwrap_err().code, "INVALID_SEARCH");
    }

    #[test]
    fn every_character_round_trips_as_one_phrase() {
        let escape = |s: &str| {
            let mut out = String::from("\"");
            for c in s.chars() {
                if RESERVED.contains(&c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        };
        let mut all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        all.push_str("😀𝔘 OR AND NOT");
        for chunk in all.chars().collect::<Vec<_>>().chunks(89) {
            let text: String = chunk.iter().collect();
            let term = decode_search_term(&escape(&text)).unwrap();
            assert_eq!(term.single_literal(), Some(text.as_str()));
        }
    }

    #[test]
    fn wildcards_and_text_matching() {
        let t = decode_search_term("Dupl*").unwrap();
        assert!(t.operands()[0].has_wildcards());
        assert_eq!(t.single_literal(), None);
        assert!(t.operands()[0].matches_text("Sam Duplicate"));
        let t = decode_search_term(r"Dupl\*").unwrap();
        assert_eq!(t.single_literal(), Some("Dupl*"));
        let o = &decode_search_term(r"O\'Brien").unwrap().operands()[0].clone();
        assert!(o.matches_text("Patrick O'Brien"));
        assert!(!o.matches_text("Patrick OBrien"));
        let o = decode_search_term(r#""joe smith""#).unwrap().operands()[0].clone();
        assert!(o.matches_text("Mr Joe Smith"));
        assert!(!o.matches_text("Smith Joe"));
        let o = decode_search_term("sm?th").unwrap().operands()[0].clone();
        assert!(o.matches_text("Joe Smyth"));
    }
}
