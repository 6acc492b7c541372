//! One lookup profile turned into one SOSL search, and the search's records turned into an
//! outcome: only records whose stored number is the caller's number count, and the profile's
//! object order decides the winner.

use natterbox_common::config::{LookupProfile, ObjectLookup};
use natterbox_common::phone::{CallerNumber, Country};
use natterbox_common::salesforce::escape::sosl_any_phrase;
use natterbox_common::salesforce::QueryValue;
use serde_json::Value;

use std::sync::Arc;

use crate::outcome::{LookupStatus, Outcome, PackedVars, VarNames};

/// Records asked for per object: enough to see ties without paging.
const RECORDS_PER_OBJECT: usize = 20;
/// Ids listed in `sf_record_ids`.
const MAX_LISTED_IDS: usize = 10;

/// One profile's search, built when the config is loaded: everything after the search term,
/// already encoded for the URL, so a lookup only encodes the caller's digits.
#[derive(Debug, Clone)]
pub struct SearchTemplate {
    returning: QueryValue,
}

impl SearchTemplate {
    /// `… IN PHONE FIELDS RETURNING Contact(Id,Name,…,Phone,… LIMIT 20),Lead(…)`: object and
    /// field names were validated when the config was parsed.
    pub fn new(profile: &LookupProfile) -> SearchTemplate {
        let mut text = String::from(" IN PHONE FIELDS RETURNING ");
        for (i, object) in profile.objects.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&object.object);
            text.push('(');
            let mut fields: Vec<&str> = vec!["Id"];
            for f in object.fields.iter().chain(&object.phone_fields) {
                if !fields.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                    fields.push(f);
                }
            }
            text.push_str(&fields.join(","));
            text.push_str(&format!(" LIMIT {RECORDS_PER_OBJECT})"));
        }
        SearchTemplate {
            returning: QueryValue::from(text.as_str()),
        }
    }

    /// `FIND {"14155550123" OR "4155550123" OR …} IN PHONE FIELDS RETURNING …`, encoded: every
    /// digit form the caller may be stored as, each an escaped phrase (digits need no escaping;
    /// the escaper keeps it that way whatever the parser lets through).
    pub fn query(&self, caller: &CallerNumber) -> QueryValue {
        // Digit strings only: never empty, nothing SOSL refuses; were one refused, the empty
        // term makes Salesforce answer MALFORMED_SEARCH, an `error` lookup.
        let term = sosl_any_phrase(caller.search_forms()).unwrap_or_default();
        let mut query = QueryValue::with_capacity(self.returning.encoded().len() + 128);
        query
            .push_text("FIND {")
            .push_text(&term)
            .push_text("}")
            .push_encoded(&self.returning);
        query
    }
}

/// A field path (`Owner.Extension`) read from a record with nested parent objects.
fn field<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = record;
    for part in path.split('.') {
        let map = value.as_object()?;
        // Salesforce returns canonical case; configs are case-insensitive like SOQL.
        value = map.get(part).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)
        })?;
    }
    Some(value)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn record_type(record: &Value) -> Option<&str> {
    record.get("attributes")?.get("type")?.as_str()
}

/// The rank of the first of the object's phone fields that holds the caller's number.
fn matching_field(
    record: &Value,
    object: &ObjectLookup,
    caller: &CallerNumber,
    country: Country,
) -> Option<usize> {
    object.phone_fields.iter().position(|f| {
        field(record, f)
            .and_then(Value::as_str)
            .is_some_and(|stored| caller.matches_stored(stored, country))
    })
}

/// Why a search answer could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedAnswer(pub String);

/// One record that is the caller, with where it ranks.
struct Match<'a> {
    object: usize,
    field: usize,
    id: String,
    record: &'a Value,
}

/// Decides the outcome from the search's records. Every record that is the caller counts
/// (`sf_match_count`) and is listed (`sf_record_ids`) in priority order: the profile's object
/// order, then the order of the object's phone fields the number was found in, then record Id
/// (oldest first, and the same order on every search). The first is the winner (`found`)
/// unless the top object has several (`multiple`).
pub fn decide(
    profile: &LookupProfile,
    names: &Arc<VarNames>,
    caller: &CallerNumber,
    country: Country,
    records: &[Value],
) -> Result<Outcome, MalformedAnswer> {
    let mut matches: Vec<Match<'_>> = Vec::new();
    for record in records {
        let Some(kind) = record_type(record) else {
            return Err(MalformedAnswer(
                "a search record has no attributes.type".into(),
            ));
        };
        let Some((object, lookup)) = profile
            .objects
            .iter()
            .enumerate()
            .find(|(_, o)| o.object.eq_ignore_ascii_case(kind))
        else {
            continue;
        };
        if let Some(field_rank) = matching_field(record, lookup, caller, country) {
            let id = field(record, "Id")
                .and_then(text)
                .ok_or_else(|| MalformedAnswer("a search record has no Id".into()))?;
            matches.push(Match {
                object,
                field: field_rank,
                id,
                record,
            });
        }
    }
    matches.sort_by(|a, b| (a.object, a.field, &a.id).cmp(&(b.object, b.field, &b.id)));
    let Some(first) = matches.first() else {
        return Ok(Outcome::not_found());
    };
    let object = &profile.objects[first.object];
    let tied = matches.iter().filter(|m| m.object == first.object).count();
    let match_count = matches.len() as u32;
    let mut vars = PackedVars::builder(names);
    vars.push("sf_record_type", &object.object);
    let ids: Vec<&str> = matches
        .iter()
        .take(MAX_LISTED_IDS)
        .map(|m| m.id.as_str())
        .collect();
    vars.push("sf_record_ids", &ids.join(","));
    if tied > 1 {
        return Ok(Outcome {
            status: LookupStatus::Multiple,
            match_count,
            vars: vars.build(),
        });
    }
    let record = first.record;
    vars.push("sf_record_id", &first.id);
    if let Some(name) = field(record, "Name").and_then(text) {
        vars.push("sf_record_name", &name);
    }
    if let Some(owner) = field(record, "OwnerId").and_then(text) {
        vars.push("sf_owner_id", &owner);
    }
    for mapping in &object.mappings {
        if let Some(value) = field(record, &mapping.field).and_then(text) {
            vars.push(&mapping.variable, &value);
        }
    }
    Ok(Outcome {
        status: LookupStatus::Found,
        match_count,
        vars: vars.build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::config::Config;
    use serde_json::json;

    fn profile() -> LookupProfile {
        let config = Config::parse(
            r#"<configuration name="natterbox_sf.conf"><orgs><org name="acme"><profile name="default">
                 <object name="Contact" fields="Id,Name,OwnerId"><map field="Owner.Extension" variable="sf_owner_extension"/></object>
                 <object name="Lead" fields="Id,Name,Company"/>
               </profile></org></orgs></configuration>"#,
        )
        .unwrap();
        config.orgs[0].profiles[0].clone()
    }

    /// `decide` with the test profile and its variable names.
    fn decide_for_profile(
        caller: &CallerNumber,
        country: Country,
        records: &[Value],
    ) -> Result<Outcome, MalformedAnswer> {
        decide(
            &profile(),
            &VarNames::for_profile(&profile()),
            caller,
            country,
            records,
        )
    }

    fn us() -> Country {
        Country::parse("US").unwrap()
    }

    fn contact(id: &str, phone: &str) -> Value {
        json!({"attributes":{"type":"Contact","url":"/x"},"Id":id,"Name":"Ada O'Brien","OwnerId":"005000000000001AAA",
               "Owner":{"attributes":{"type":"User"},"Extension":"1001"},"Phone":phone,"MobilePhone":null})
    }

    fn lead(id: &str, phone: &str) -> Value {
        json!({"attributes":{"type":"Lead"},"Id":id,"Name":"L","Company":"C","Phone":phone,"MobilePhone":null})
    }

    #[test]
    fn builds_one_escaped_search_over_the_profile() {
        let caller = CallerNumber::parse("+1 (415) 555-0123", us()).unwrap();
        let query = SearchTemplate::new(&profile()).query(&caller);
        assert_eq!(
            query.encoded(),
            "FIND+%7B%2214155550123%22+OR+%224155550123%22+OR+%220014155550123%22%7D+IN+PHONE+FIELDS+RETURNING+\
             Contact(Id,Name,OwnerId,Owner.Extension,Phone,MobilePhone,HomePhone,OtherPhone,AssistantPhone+LIMIT+20),\
             Lead(Id,Name,Company,OwnerId,Phone,MobilePhone+LIMIT+20)"
        );
    }

    #[test]
    fn the_first_object_in_priority_order_wins() {
        let caller = CallerNumber::parse("4155550123", us()).unwrap();
        let records = [
            lead("00Q000000000001AAA", "415-555-0123"),
            contact("003000000000001AAA", "(415) 555-0123"),
        ];
        let outcome = decide_for_profile(&caller, us(), &records).unwrap();
        assert_eq!(outcome.status, LookupStatus::Found);
        assert_eq!(outcome.vars.get("sf_record_id"), Some("003000000000001AAA"));
        assert_eq!(outcome.vars.get("sf_record_type"), Some("Contact"));
        assert_eq!(outcome.vars.get("sf_owner_extension"), Some("1001"));
        assert_eq!(outcome.vars.get("sf_record_name"), Some("Ada O'Brien"));
        // Both records are the caller: counted and listed, the winner first.
        assert_eq!(outcome.match_count, 2);
        assert_eq!(
            outcome.vars.get("sf_record_ids"),
            Some("003000000000001AAA,00Q000000000001AAA")
        );
    }

    #[test]
    fn every_match_counts_in_priority_order() {
        let caller = CallerNumber::parse("+1 415 555 0123", us()).unwrap();
        let mobile = |id: &str| {
            json!({"attributes":{"type":"Contact"},"Id":id,"Name":"M","Phone":"(650) 555-0111",
                   "MobilePhone":"415 555 0123"})
        };
        let records = [
            lead("00Q000000000002AAA", "+1 415 555 0123"),
            mobile("003000000000001AAA"),
            lead("00Q000000000001AAA", "1-415-555-0123"),
            contact("003000000000009AAA", "(415) 555-0123"),
            contact("003000000000003AAA", "(415) 555-0199"),
        ];
        let outcome = decide_for_profile(&caller, us(), &records).unwrap();
        // Two Contacts tie at the top; the Leads count too. A match on Phone ranks before a
        // match on MobilePhone, then Ids.
        assert_eq!(outcome.status, LookupStatus::Multiple);
        assert_eq!(outcome.match_count, 4);
        assert_eq!(
            outcome.vars.get("sf_record_ids"),
            Some("003000000000009AAA,003000000000001AAA,00Q000000000001AAA,00Q000000000002AAA")
        );
        assert_eq!(outcome.vars.get("sf_record_type"), Some("Contact"));
        // Without the second Contact the first is found, and the Leads are still counted.
        let outcome = decide_for_profile(&caller, us(), &records[..3]).unwrap();
        assert_eq!(outcome.status, LookupStatus::Found);
        assert_eq!(outcome.match_count, 3);
        assert_eq!(outcome.vars.get("sf_record_id"), Some("003000000000001AAA"));
    }

    #[test]
    fn a_foreign_record_is_its_own_countrys_caller_only() {
        // In a German org, a US record typed the American way: the US caller, never the
        // German caller with the same national digits.
        let de = Country::parse("DE").unwrap();
        let records = [contact("003000000000001AAA", "(415) 555-0123")];
        let decide_for = |number: &str| {
            let caller = CallerNumber::parse(number, de).unwrap();
            decide_for_profile(&caller, de, &records).unwrap().status
        };
        assert_eq!(decide_for("+1 415 555 0123"), LookupStatus::Found);
        assert_eq!(decide_for("+49 4155 550123"), LookupStatus::NotFound);
        assert_eq!(decide_for("04155 550123"), LookupStatus::NotFound);
    }

    #[test]
    fn ties_are_reported() {
        let caller = CallerNumber::parse("4155550123", us()).unwrap();
        let records = [
            contact("003000000000001AAA", "(415) 555-0123"),
            contact("003000000000002AAA", "+14155550123"),
        ];
        let outcome = decide_for_profile(&caller, us(), &records).unwrap();
        assert_eq!(outcome.status, LookupStatus::Multiple);
        assert_eq!(outcome.match_count, 2);
        assert_eq!(
            outcome.vars.get("sf_record_ids"),
            Some("003000000000001AAA,003000000000002AAA")
        );
        assert_eq!(outcome.vars.get("sf_record_id"), None);
    }

    #[test]
    fn records_of_another_number_do_not_count() {
        // The digit index also finds +44 415 555 0123; it is not the caller.
        let caller = CallerNumber::parse("4155550123", us()).unwrap();
        let records = [contact("003000000000001AAA", "+44 415 555 0123")];
        assert_eq!(
            decide_for_profile(&caller, us(), &records).unwrap().status,
            LookupStatus::NotFound
        );
        assert!(decide_for_profile(&caller, us(), &[json!({"Id":"x"})]).is_err());
    }
}
