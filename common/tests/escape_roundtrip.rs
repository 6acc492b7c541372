//! The escapers' promise, for every string: what they write, Salesforce reads back as exactly
//! the given text. The decoder is the emulator's own SOQL lexer and SOSL parser, which follow
//! Salesforce's documented escapes; a character the escaper refuses must be one SOSL cannot carry.

use natterbox_common::salesforce::escape::{
    soql_like, soql_string, sosl_any_phrase, sosl_phrase, sosl_term, LikeMatch, SoslError,
};
use proptest::prelude::*;
use sf_emulator::schema::Schema;
use sf_emulator::soql::lexer::{lex, LikeChar, StrLit, Tok};

/// The string literal of `SELECT Id FROM Contact WHERE Name = <literal>`, as the emulator reads it.
fn soql_decode(literal: &str) -> Result<StrLit, String> {
    let query = format!("SELECT Id FROM Contact WHERE Name = {literal}");
    let tokens = lex(&query).map_err(|e| format!("{e:?}"))?;
    let strings: Vec<StrLit> = tokens
        .into_iter()
        .filter_map(|t| match t.tok {
            Tok::Str(s) => Some(s),
            _ => None,
        })
        .collect();
    match <[StrLit; 1]>::try_from(strings) {
        Ok([only]) => Ok(only),
        Err(all) => Err(format!(
            "{literal} is {} string literals, not one",
            all.len()
        )),
    }
}

/// The search term of `FIND {<term>} IN PHONE FIELDS RETURNING Contact(Id)`, unescaped, as the
/// emulator reads it.
fn sosl_decode(term: &str) -> Result<String, String> {
    let query = format!("FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id)");
    sf_emulator::sosl::parse(&Schema::standard(), &query)
        .map(|search| search.term.text)
        .map_err(|e| format!("{} {}", e.code, e.message))
}

/// Strings that stress the escapers: quotes, backslashes, LIKE wildcards, SOSL reserved
/// characters, every C0/C1 control, Unicode spaces, marks and astral characters.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        4 => prop::sample::select(vec![
            "'", "\"", "\\", "%", "_", "?", "&", "|", "!", "{", "}", "[", "]", "(", ")", "^",
            "~", "*", ":", "+", "-", " ", "\\u0041", "\\'", "OR", "and", "not",
            "\u{a0}", "\u{200b}", "\u{200f}", "\u{2028}", "\u{2212}", "\u{fffd}", "😀", "é",
        ])
        .prop_map(str::to_string),
        2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        1 => (0x7fu32..0xa0).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        4 => "[0-9a-zA-Z]{1,4}",
    ];
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn like_pattern(value: &str, how: LikeMatch) -> Vec<LikeChar> {
    let mut pattern = Vec::new();
    if matches!(how, LikeMatch::EndsWith | LikeMatch::Contains) {
        pattern.push(LikeChar::Any);
    }
    pattern.extend(value.chars().map(LikeChar::Lit));
    if matches!(how, LikeMatch::StartsWith | LikeMatch::Contains) {
        pattern.push(LikeChar::Any);
    }
    pattern
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn soql_literals_decode_to_the_input(value in hostile_text()) {
        let decoded = soql_decode(&soql_string(&value));
        prop_assert_eq!(decoded.map(|s| s.value), Ok(value));
    }

    #[test]
    fn like_patterns_decode_to_the_input_with_only_the_asked_wildcards(
        value in hostile_text(),
        how in prop::sample::select(vec![
            LikeMatch::Exactly, LikeMatch::StartsWith, LikeMatch::EndsWith, LikeMatch::Contains,
        ]),
    ) {
        let decoded = soql_decode(&soql_like(&value, how)).map(|s| s.pattern);
        prop_assert_eq!(decoded, Ok(like_pattern(&value, how)));
    }

    #[test]
    fn sosl_phrases_decode_to_the_input_or_are_refused_for_a_control_character(
        value in hostile_text(),
    ) {
        // A second phrase makes every term long enough for SOSL's two-character minimum.
        match sosl_any_phrase(["zz", value.as_str()]) {
            Ok(term) => prop_assert_eq!(sosl_decode(&term), Ok(format!("\"zz\" OR \"{value}\""))),
            Err(SoslError::Empty) => prop_assert!(value.trim().is_empty()),
            Err(SoslError::Unsearchable { character, at }) => {
                prop_assert!(character.is_control());
                prop_assert_eq!(value[at..].chars().next(), Some(character));
                prop_assert!(value[..at].chars().all(|c| !c.is_control()));
            }
            Err(e) => prop_assert!(false, "phrase refused for {e}"),
        }
    }

    #[test]
    fn sosl_terms_decode_to_the_input_or_are_refused_with_the_reason(value in hostile_text()) {
        match sosl_term(&value) {
            Ok(term) => {
                // The term is searched for as words, so it is padded to SOSL's minimum length.
                prop_assert_eq!(sosl_decode(&format!("zz {term}")), Ok(format!("zz {value}")));
            }
            Err(SoslError::Empty) => prop_assert!(value.trim().is_empty()),
            Err(SoslError::OperatorWord(word)) => {
                prop_assert!(["AND", "OR", "NOT"].contains(&word.to_ascii_uppercase().as_str()));
            }
            Err(SoslError::Unsearchable { character, .. }) => {
                prop_assert!(character.is_control());
            }
        }
    }
}

#[test]
fn the_phrase_builder_gives_what_a_lookup_searches() {
    let term = sosl_any_phrase(["442079460958", "02079460958"]).unwrap();
    assert_eq!(
        sosl_decode(&term),
        Ok("\"442079460958\" OR \"02079460958\"".to_string())
    );
    assert_eq!(sosl_phrase("+44 20-7946").unwrap(), r#""\+44 20\-7946""#);
}
