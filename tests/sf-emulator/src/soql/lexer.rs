//! SOQL tokens. String literals are unescaped here with SOQL's backslash rules; an unknown
//! escape is a MALFORMED_QUERY error.

use super::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword; may contain dots (`Owner.Name`).
    Ident(String),
    Str(StrLit),
    Num(String),
    /// Unquoted date or datetime literal (`2026-11-23`, `2026-11-23T10:00:00Z`).
    Date(String),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
    Eof,
}

/// A string literal: its value, and the LIKE pattern (where `\%` and `\_` are literal).
#[derive(Debug, Clone, PartialEq)]
pub struct StrLit {
    pub value: String,
    pub pattern: Vec<LikeChar>,
    /// Byte position of the first `\%` or `\_`: SOQL allows those escapes in LIKE only.
    pub like_escape_at: Option<usize>,
    /// The source text between the quotes (error messages quote it).
    pub raw: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LikeChar {
    Any,
    One,
    Lit(char),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

pub fn lex(src: &str) -> Result<Vec<Token>, QueryError> {
    let mut out = vec![];
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' => {
                i += 1;
                Tok::Op("=")
            }
            '!' if next_is(&chars, i, '=') => {
                i += 2;
                Tok::Op("!=")
            }
            '<' if next_is(&chars, i, '>') => {
                i += 2;
                Tok::Op("!=")
            }
            '<' if next_is(&chars, i, '=') => {
                i += 2;
                Tok::Op("<=")
            }
            '>' if next_is(&chars, i, '=') => {
                i += 2;
                Tok::Op(">=")
            }
            '<' => {
                i += 1;
                Tok::Op("<")
            }
            '>' => {
                i += 1;
                Tok::Op(">")
            }
            '\'' => {
                let (lit, next) = string(src, &chars, i)?;
                i = next;
                Tok::Str(lit)
            }
            c if c.is_ascii_digit()
                || (c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit()) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].1.is_ascii_alphanumeric()
                        || matches!(chars[i].1, '.' | ':' | '-' | '+'))
                {
                    i += 1;
                }
                let end = chars.get(i).map_or(src.len(), |(p, _)| *p);
                let text = &src[chars[start].0..end];
                if is_date_literal(text) {
                    Tok::Date(text.to_string())
                } else if text.parse::<f64>().is_ok() && !text.contains(['e', 'E']) {
                    Tok::Num(text.to_string())
                } else {
                    return Err(QueryError::malformed(
                        pos,
                        format!("unexpected token: '{text}'"),
                    ));
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '.'))
                {
                    i += 1;
                }
                let end = chars.get(i).map_or(src.len(), |(p, _)| *p);
                Tok::Ident(src[chars[start].0..end].to_string())
            }
            other => {
                return Err(QueryError::malformed(
                    pos,
                    format!("unexpected token: '{other}'"),
                ));
            }
        };
        out.push(Token { tok, pos });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

fn next_is(chars: &[(usize, char)], i: usize, c: char) -> bool {
    chars.get(i + 1).is_some_and(|(_, d)| *d == c)
}

fn string(src: &str, chars: &[(usize, char)], open: usize) -> Result<(StrLit, usize), QueryError> {
    let mut value = String::new();
    let mut pattern = vec![];
    let mut like_escape_at = None;
    let mut i = open + 1;
    let illegal = |pos: usize, seq: &str| {
        let literal_end = src[pos..].find('\'').map_or(src.len(), |k| pos + k);
        QueryError::malformed(
            pos,
            format!(
                "Invalid string literal '{}'. Illegal character sequence '{seq}' in string literal.",
                &src[chars[open].0 + 1..literal_end]
            ),
        )
    };
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            '\'' => {
                let lit = StrLit {
                    value,
                    pattern,
                    like_escape_at,
                    raw: src[chars[open].0 + 1..pos].to_string(),
                };
                return Ok((lit, i + 1));
            }
            '\\' => {
                let Some(&(_, e)) = chars.get(i + 1) else {
                    break;
                };
                let (lit, used) = match e {
                    'n' | 'N' => ('\n', 2),
                    'r' | 'R' => ('\r', 2),
                    't' | 'T' => ('\t', 2),
                    'b' | 'B' => ('\u{8}', 2),
                    'f' | 'F' => ('\u{c}', 2),
                    '"' | '\'' | '\\' => (e, 2),
                    '%' | '_' => {
                        like_escape_at.get_or_insert(pos);
                        (e, 2)
                    }
                    'u' => unicode_escape(chars, i).ok_or_else(|| {
                        let end = (i + 6).min(chars.len());
                        let seq: String = chars[i..end].iter().map(|(_, c)| *c).collect();
                        illegal(pos, &seq)
                    })?,
                    other => return Err(illegal(pos, &format!("\\{other}"))),
                };
                value.push(lit);
                pattern.push(LikeChar::Lit(lit));
                i += used;
            }
            '%' => {
                value.push(c);
                pattern.push(LikeChar::Any);
                i += 1;
            }
            '_' => {
                value.push(c);
                pattern.push(LikeChar::One);
                i += 1;
            }
            _ => {
                value.push(c);
                pattern.push(LikeChar::Lit(c));
                i += 1;
            }
        }
    }
    Err(QueryError::malformed(
        chars[open].0,
        "line 1:0 mismatched character '<EOF>' expecting '''".to_string(),
    ))
}

/// `\uXXXX` at `chars[i]` (exactly four hex digits); a UTF-16 surrogate pair written as two
/// escapes is one character. Returns the character and how many chars the escape used. A lone
/// surrogate is refused: it is no character.
fn unicode_escape(chars: &[(usize, char)], i: usize) -> Option<(char, usize)> {
    let hex4 = |at: usize| -> Option<u32> {
        let s: String = chars.get(at..at + 4)?.iter().map(|(_, c)| *c).collect();
        if !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(&s, 16).ok()
    };
    let high = hex4(i + 2)?;
    if (0xD800..0xDC00).contains(&high) {
        let escape_follows = chars.get(i + 6).map(|c| c.1) == Some('\\')
            && chars.get(i + 7).map(|c| c.1) == Some('u');
        if !escape_follows {
            return None;
        }
        let low = hex4(i + 8)?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        return char::from_u32(code).map(|c| (c, 12));
    }
    char::from_u32(high).map(|c| (c, 6))
}

/// A date literal `YYYY-MM-DD` (a real calendar day) or a date-time literal
/// `YYYY-MM-DDThh:mm:ss[.s{1,3}](Z|±hh:mm)`, as Salesforce's Date Formats and Date Literals list
/// them; anything else that starts like a date is malformed.
fn is_date_literal(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if !(1..=days).contains(&d) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if b.len() < 19 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    if !matches!((num(11..13), num(14..16), num(17..19)), (Some(h), Some(mi), Some(se)) if h < 24 && mi < 60 && se < 60)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=3).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3].parse::<u32>().is_ok_and(|h| h < 24)
            && rest[4..6].parse::<u32>().is_ok_and(|m| m < 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(src: &str) -> Vec<String> {
        lex(src)
            .unwrap()
            .into_iter()
            .filter_map(|t| match t.tok {
                Tok::Str(s) => Some(s.value),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn escapes() {
        assert_eq!(strs(r"x = 'O\'Brien'"), vec!["O'Brien"]);
        assert_eq!(strs(r"x = 'a\\b\nc'"), vec!["a\\b\nc"]);
    }

    #[test]
    fn unknown_escape_is_malformed() {
        let e = lex(r"x = 'a\qb'").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(
            e.message.contains("Illegal character sequence '\\q'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unterminated_is_malformed() {
        assert_eq!(lex("x = 'abc").unwrap_err().code, "MALFORMED_QUERY");
    }

    #[test]
    fn tokens() {
        let t: Vec<Tok> = lex("SELECT Owner.Name FROM Contact WHERE n >= -1.5 AND d > 2026-01-01")
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect();
        assert_eq!(t[1], Tok::Ident("Owner.Name".into()));
        assert!(t.contains(&Tok::Num("-1.5".into())));
        assert!(t.contains(&Tok::Date("2026-01-01".into())));
        assert!(t.contains(&Tok::Op(">=")));
    }
}
