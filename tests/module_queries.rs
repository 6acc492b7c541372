//! Named queries (`sf_query`, `sf_search`, `sf query`) through the real module in the host shim
//! against the emulated org: each bind type with hostile values (the emulator's query log shows
//! every comparison value equals what the call bound), several rows, none, the cache, the
//! deadline, a refused token, the org's API limit, and the checks against the org.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sf_emulator::{FaultRule, LimitsUpdate};
use support::fixture::{Fixture, Options};
use support::shim::escape_arg;

const QUERIES: &str = r#"
      <query name="by_subject" soql="SELECT Id, Subject, Status FROM Case WHERE Subject = :subject"/>
      <query name="rule_by_priority" soql="SELECT Id, Name, Queue__c FROM Routing_Rule__c WHERE Priority__c = :priority"/>
      <query name="rule_by_active" soql="SELECT Id, Name FROM Routing_Rule__c WHERE Active__c = :active"/>
      <query name="rule_from" soql="SELECT Id, Name FROM Routing_Rule__c WHERE Valid_From__c = :valid_from"/>
      <query name="cases_before" soql="SELECT Id FROM Case WHERE CreatedDate &lt; :before ORDER BY CreatedDate" max-rows="10"/>
      <query name="open_case" cache-ttl-s="60" soql="SELECT Id, CaseNumber, Status, OwnerId FROM Case WHERE ContactId = :contact_id AND IsClosed = false ORDER BY CreatedDate DESC LIMIT 1">
        <bind name="contact_id" variable="sf_record_id"/>
        <map field="Status" variable="case_status"/>
      </query>
      <query name="cases" soql="SELECT Id, Subject FROM Case WHERE Id IN (:ids) ORDER BY Subject"/>
      <query name="cases_by_subjects" soql="SELECT Id FROM Case WHERE Subject IN :subjects"/>
      <search name="by_name" sosl="FIND {:name} IN NAME FIELDS RETURNING Contact(Id, Name)"/>
"#;

fn start() -> Fixture {
    start_with(QUERIES)
}

fn start_with(queries: &str) -> Fixture {
    let mut f = Fixture::start(Options::default());
    let xml = f.config_xml(&[], "").replace(
        "<screen-pop ttl-ms=\"30000\"/>",
        &format!("<screen-pop ttl-ms=\"30000\"/>{queries}"),
    );
    assert!(xml.contains("<query "));
    f.write_config(&xml);
    f.shim.ok("reloadxml");
    let reply = f.shim.api("reload");
    assert!(reply.starts_with("+OK reloaded"), "{reply}");
    f
}

/// Runs `app` (`sf_query …` or `sf_search …`) on a new call with these channel variables.
fn run(f: &mut Fixture, uuid: &str, vars: &[(&str, &str)], app: &str) -> HashMap<String, String> {
    let mut line = format!("call {uuid}");
    for (name, value) in vars {
        line.push_str(&format!(" {name}={}", escape_arg(value)));
    }
    f.shim.ok(&line);
    let reply = f.shim.ok(&format!("app {uuid} {app}"));
    assert!(
        !reply.text().contains("pre_answered"),
        "{app} must not pre-answer the call"
    );
    f.shim.vars(uuid)
}

/// Named queries' SOQL as the org received it (the owner directory's loads of Users and
/// Queues run in the background and are left out).
fn named_soql(f: &Fixture) -> Vec<sf_emulator::QueryLogEntry> {
    f.acme()
        .admin()
        .queries()
        .into_iter()
        .filter(|q| {
            q.kind == "soql" && !q.text.contains(" FROM User") && !q.text.contains(" FROM Group")
        })
        .collect()
}

/// The comparison values of the newest named query the org received.
fn last_soql_values(f: &Fixture) -> Vec<String> {
    named_soql(f).pop().expect("a SOQL query").values
}

fn soql_count(f: &Fixture) -> usize {
    named_soql(f).len()
}

fn record_id(f: &Fixture, object: &str, field: &str, value: &str) -> String {
    f.acme()
        .admin()
        .records(object)
        .into_iter()
        .find(|r| r[field] == value)
        .unwrap_or_else(|| panic!("no {object} with {field}={value}"))["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn string_binds_are_one_literal_whatever_the_caller_sends() {
    let mut f = start();
    let found = run(
        &mut f,
        "s0",
        &[("subject", "Phone line down")],
        "sf_query by_subject",
    );
    assert_eq!(found["sf_query_status"], "found", "{found:?}");
    assert_eq!(found["sf_by_subject_Status"], "New");
    assert_eq!(found["sf_by_subject_count"], "1");
    assert_eq!(found["sf_query_source"], "salesforce");
    for (i, hostile) in [
        "x' OR Subject != '",
        "it\\'s \\\\ \"quoted\" \n\r\t end",
        "Phone line down' OR Id != null OR Subject = '",
        "%_ Seán Ó Briain — 電話 ☎",
        "\u{1}\u{7f}",
    ]
    .iter()
    .enumerate()
    {
        let vars = run(
            &mut f,
            &format!("s{}", i + 1),
            &[("subject", hostile)],
            "sf_query by_subject",
        );
        assert_eq!(
            vars["sf_query_status"], "not_found",
            "{hostile:?}: {vars:?}"
        );
        assert_eq!(vars["sf_by_subject_count"], "0");
        assert_eq!(last_soql_values(&f), [hostile.to_string()], "{hostile:?}");
    }
}

#[test]
fn numbers_booleans_dates_and_date_times_bind_as_their_type_or_not_at_all() {
    let mut f = start();
    let by_priority = run(
        &mut f,
        "n1",
        &[("priority", "2")],
        "sf_query rule_by_priority",
    );
    assert_eq!(by_priority["sf_query_status"], "found", "{by_priority:?}");
    assert_eq!(by_priority["sf_rule_by_priority_Name"], "US Sales");
    assert_eq!(by_priority["sf_rule_by_priority_Queue__c"], "us-sales");
    assert_eq!(last_soql_values(&f), ["2"]);
    let negative = run(
        &mut f,
        "n2",
        &[("priority", "-1.5")],
        "sf_query rule_by_priority",
    );
    assert_eq!(negative["sf_query_status"], "not_found");
    assert_eq!(last_soql_values(&f), ["-1.5"]);

    let inactive = run(
        &mut f,
        "b1",
        &[("active", "FALSE")],
        "sf_query rule_by_active",
    );
    assert_eq!(inactive["sf_query_status"], "found", "{inactive:?}");
    assert_eq!(inactive["sf_rule_by_active_Name"], "VIP Desk");
    assert_eq!(last_soql_values(&f), ["false"]);

    let from = run(
        &mut f,
        "d1",
        &[("valid_from", "2026-03-15")],
        "sf_query rule_from",
    );
    assert_eq!(from["sf_query_status"], "found", "{from:?}");
    assert_eq!(from["sf_rule_from_Name"], "VIP Desk");
    assert_eq!(last_soql_values(&f), ["2026-03-15"]);

    let before = run(
        &mut f,
        "t1",
        &[("before", "2099-01-01T00:00:00Z")],
        "sf_query cases_before",
    );
    assert_eq!(before["sf_query_status"], "found", "{before:?}");
    assert_eq!(before["sf_cases_before_count"], "4");
    assert!(before["sf_cases_before_4_Id"].starts_with("500"));
    assert_eq!(last_soql_values(&f), ["2099-01-01T00:00:00Z"]);

    // Values that are not of the field's type never reach Salesforce.
    let sent = soql_count(&f);
    for (i, (query, var, hostile)) in [
        ("rule_by_priority", "priority", "2 OR Name != null"),
        ("rule_by_priority", "priority", "1e3"),
        ("rule_by_priority", "priority", " 2"),
        ("rule_by_active", "active", "true OR Name != null"),
        ("rule_by_active", "active", "1"),
        ("rule_from", "valid_from", "2026-02-30"),
        ("rule_from", "valid_from", "2026-03-15) OR (Name != null"),
        ("rule_from", "valid_from", "2026-03-15T00:00:00Z"),
        ("cases_before", "before", "2099-01-01"),
        (
            "cases_before",
            "before",
            "2099-01-01T00:00:00Z OR Id != null",
        ),
    ]
    .iter()
    .enumerate()
    {
        let vars = run(
            &mut f,
            &format!("x{i}"),
            &[(var, hostile)],
            &format!("sf_query {query}"),
        );
        assert_eq!(vars["sf_query_status"], "error", "{hostile:?}: {vars:?}");
        assert!(
            f.shim
                .logs_containing(&format!("variable {var}) is not a"))
                .len()
                > i,
            "the log says which value is wrong: {:#?}",
            f.shim.logs
        );
    }
    assert_eq!(soql_count(&f), sent, "no refused value reached Salesforce");
}

#[test]
fn ids_are_checked_and_15_and_18_characters_find_the_same_record_from_the_cache() {
    let mut f = start();
    let ada = record_id(&f, "Contact", "LastName", "Lovelace");
    let vars = run(
        &mut f,
        "i1",
        &[("sf_record_id", &ada)],
        "sf_query open_case",
    );
    assert_eq!(vars["sf_query_status"], "found", "{vars:?}");
    assert_eq!(vars["case_status"], "New", "the <map>ped name");
    assert!(vars["sf_open_case_CaseNumber"].len() >= 5);
    assert!(vars["sf_open_case_OwnerId"].starts_with("005"));
    // The owner, from the owner directory, as after sf_lookup.
    assert_eq!(vars["sf_owner_id"], vars["sf_open_case_OwnerId"]);
    assert_eq!(vars["sf_owner_type"], "User", "{vars:?}");
    assert_eq!(vars["sf_owner_extension"], "1001");
    assert_eq!(last_soql_values(&f), [ada.clone(), "false".to_string()]);

    // The 15-character form: bound as its 18-character id, the same literal.
    let sent = soql_count(&f);
    let short = run(
        &mut f,
        "i2",
        &[("sf_record_id", &ada[..15])],
        "sf_query open_case",
    );
    assert_eq!(short["sf_query_status"], "found");
    assert_eq!(short["sf_open_case_Id"], vars["sf_open_case_Id"]);
    assert_eq!(soql_count(&f), sent + 1);
    assert_eq!(last_soql_values(&f)[0], ada);

    // Again: from the cache, no request.
    let again = run(
        &mut f,
        "i3",
        &[("sf_record_id", &ada)],
        "sf_query open_case",
    );
    assert_eq!(again["sf_query_source"], "cache");
    assert_eq!(again["sf_open_case_Id"], vars["sf_open_case_Id"]);
    assert_eq!(soql_count(&f), sent + 1);

    // A wrong checksum, the wrong length, or text: refused before any request.
    let mut wrong = ada.clone();
    let last = if wrong.ends_with('A') { "B" } else { "A" };
    wrong.replace_range(17..18, last);
    for (i, bad) in [
        wrong.as_str(),
        &ada[..14],
        "003' OR Id != '",
        "003000000000001AAA' OR Name != '",
    ]
    .iter()
    .enumerate()
    {
        let vars = run(
            &mut f,
            &format!("bad{i}"),
            &[("sf_record_id", bad)],
            "sf_query open_case",
        );
        assert_eq!(vars["sf_query_status"], "error", "{bad:?}: {vars:?}");
    }
    assert_eq!(soql_count(&f), sent + 1);

    // No value at all: an error naming the variable.
    let none = run(&mut f, "i4", &[], "sf_query open_case");
    assert_eq!(none["sf_query_status"], "error");
    assert!(!f
        .shim
        .logs_containing("no value for :contact_id (variable sf_record_id)")
        .is_empty());
}

#[test]
fn in_lists_give_several_rows_numbered() {
    let mut f = start();
    let c1 = record_id(&f, "Case", "Subject", "Phone line down");
    let c2 = record_id(&f, "Case", "Subject", "Billing question");
    let ids = format!("{c1}, {}", &c2[..15]);
    let rows = run(&mut f, "l1", &[("ids", &ids)], "sf_query cases");
    assert_eq!(rows["sf_query_status"], "found", "{rows:?}");
    assert_eq!(rows["sf_cases_count"], "2");
    assert_eq!(rows["sf_cases_1_Subject"], "Billing question");
    assert_eq!(rows["sf_cases_2_Subject"], "Phone line down");
    assert!(!rows.contains_key("sf_cases_Subject"));
    assert_eq!(last_soql_values(&f), [c1.clone(), c2.clone()]);

    let subjects = "Phone line down,x') OR Subject != ('";
    let hostile = run(
        &mut f,
        "l2",
        &[("subjects", subjects)],
        "sf_query cases_by_subjects",
    );
    assert_eq!(hostile["sf_query_status"], "found", "{hostile:?}");
    assert_eq!(hostile["sf_cases_by_subjects_count"], "1");
    assert_eq!(
        last_soql_values(&f),
        ["Phone line down", "x') OR Subject != ('"]
    );
    let empty = run(&mut f, "l3", &[("ids", " ")], "sf_query cases");
    assert_eq!(empty["sf_query_status"], "error");
}

#[test]
fn a_named_search_binds_its_term_as_one_phrase() {
    let mut f = start();
    let found = run(
        &mut f,
        "f1",
        &[("name", "Ada Lovelace")],
        "sf_search by_name",
    );
    assert_eq!(found["sf_search_status"], "found", "{found:?}");
    assert_eq!(found["sf_by_name_type"], "Contact");
    assert_eq!(found["sf_by_name_Name"], "Ada Lovelace");
    let hostile = "Ada\" OR \"Smith} RETURNING User(Id";
    let vars = run(&mut f, "f2", &[("name", hostile)], "sf_search by_name");
    assert_eq!(vars["sf_search_status"], "not_found", "{vars:?}");
    let last = f
        .acme()
        .admin()
        .queries()
        .into_iter()
        .rev()
        .find(|q| q.kind == "sosl")
        .unwrap();
    assert_eq!(last.literals, [hostile.to_string()], "{}", last.text);
    // A search is not a query: each app runs its own kind.
    let wrong = run(&mut f, "f3", &[("name", "Ada")], "sf_query by_name");
    assert_eq!(wrong["sf_query_status"], "error");
}

#[test]
fn fs_cli_runs_the_apps_code_path() {
    let mut f = start();
    let ada = record_id(&f, "Contact", "LastName", "Lovelace");
    let out = f
        .shim
        .api(&format!("query acme open_case sf_record_id={ada}"));
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["status"], "found", "{json}");
    assert_eq!(json["variables"]["case_status"], "New");
    let again: Value = serde_json::from_str(
        &f.shim
            .api(&format!("query acme open_case contact_id={ada}")),
    )
    .unwrap();
    assert_eq!(
        again["source"], "cache",
        "the bind's name works too: {again}"
    );
    let unknown = f.shim.api("query acme open_case sf_record_id=1 org=other");
    assert!(
        unknown.starts_with("-ERR query open_case has no bind read from org"),
        "{unknown}"
    );
    assert!(f
        .shim
        .api(&format!(
            "query acme open_case sf_record_id={ada} sf_record_id={ada}"
        ))
        .starts_with("-ERR"));
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    assert_eq!(
        status["orgs"][0]["queries"]["open_case"]["types"],
        serde_json::json!(["id"])
    );
}

#[test]
fn the_deadline_holds_under_latency() {
    let mut f = start();
    // The query is checked against the org first, so only the query itself is slow.
    let ada = record_id(&f, "Contact", "LastName", "Lovelace");
    let warm = run(&mut f, "w", &[("sf_record_id", &ada)], "sf_query open_case");
    assert_eq!(warm["sf_query_status"], "found");
    f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 3000,
        ..FaultRule::default()
    });
    let started = Instant::now();
    let vars = run(
        &mut f,
        "slow",
        &[("sf_record_id", &ada[..15])],
        "sf_query open_case timeout_ms=300",
    );
    let held = started.elapsed();
    assert_eq!(vars["sf_query_status"], "timeout", "{vars:?}");
    assert!(held < Duration::from_millis(1000), "held {held:?}");
    let ms: u64 = vars["sf_query_ms"].parse().unwrap();
    assert!((250..1000).contains(&ms), "{ms}");
}

#[test]
fn a_refused_token_is_refreshed_and_a_spent_api_limit_throttles() {
    let mut f = start();
    let ada = record_id(&f, "Contact", "LastName", "Lovelace");
    let warm = run(
        &mut f,
        "a0",
        &[("sf_record_id", &ada)],
        "sf_query open_case",
    );
    assert_eq!(warm["sf_query_status"], "found");
    assert!(f.acme().admin().expire_sessions() > 0);
    let vars = run(
        &mut f,
        "a1",
        &[("subject", "Billing question")],
        "sf_query by_subject",
    );
    assert_eq!(vars["sf_query_status"], "found", "{vars:?}");
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    assert_eq!(status["orgs"][0]["unauthorized"], 1);

    f.acme().admin().set_limits(LimitsUpdate {
        daily_used: Some(15_000),
        daily_max: Some(15_000),
        ..LimitsUpdate::default()
    });
    let limited = run(
        &mut f,
        "a2",
        &[("subject", "Copy of invoice")],
        "sf_query by_subject",
    );
    assert_eq!(limited["sf_query_status"], "throttled", "{limited:?}");
    let sent = soql_count(&f);
    let backing_off = run(&mut f, "a3", &[("subject", "Other")], "sf_query by_subject");
    assert_eq!(backing_off["sf_query_status"], "throttled");
    assert_eq!(
        soql_count(&f),
        sent,
        "the breaker holds further queries back"
    );
    // Cached answers still serve.
    let cached = run(
        &mut f,
        "a4",
        &[("sf_record_id", &ada)],
        "sf_query open_case",
    );
    assert_eq!(cached["sf_query_status"], "found");
    assert_eq!(cached["sf_query_source"], "cache");
}

#[test]
fn queries_the_org_cannot_run_are_refused_with_the_reason() {
    let mut f = start_with(
        r#"<query name="typo" soql="SELECT Id FROM Case WHERE Subjct = :subject"/>
           <query name="no_object" soql="SELECT Id FROM Nothing__c WHERE Name = :n"/>"#,
    );
    let vars = run(&mut f, "t", &[("subject", "x")], "sf_query typo");
    assert_eq!(vars["sf_query_status"], "error");
    assert!(
        !f.shim
            .logs_containing("Case has no field Subjct")
            .is_empty(),
        "{:#?}",
        f.shim.logs
    );
    let vars = run(&mut f, "o", &[("n", "x")], "sf_query no_object");
    assert_eq!(vars["sf_query_status"], "error");
    assert!(!f
        .shim
        .logs_containing("the org has no object Nothing__c")
        .is_empty());
    let status: Value = serde_json::from_str(&f.shim.api("status")).unwrap();
    assert_eq!(status["orgs"][0]["queries"]["typo"]["check"], "failed");

    // A template that splices a bind where no field is compared is refused at load.
    let bad = f.config_xml(&[], "").replace(
        "<screen-pop ttl-ms=\"30000\"/>",
        "<screen-pop ttl-ms=\"30000\"/><query name=\"bad\" soql=\"SELECT Id FROM Case LIMIT :n\"/>",
    );
    f.write_config(&bad);
    f.shim.ok("reloadxml");
    let reply = f.shim.api("reload");
    assert!(
        reply.starts_with("-ERR") && reply.contains("query \"bad\"") && reply.contains(":n"),
        "{reply}"
    );
}
