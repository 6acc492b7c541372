//! The real module, loaded into the host shim against the emulated org: owners come from the
//! module's owner directory (Users and Queues loaded in the background), and lookup profiles
//! are checked against the org's describe before they are used.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sf_emulator::{Emulator, EmulatorOptions, FaultRule};
use support::fixture::{fetch_token, Fixture, Options};

/// A config for the fixture's org with the given profiles (and `<owners>`, if any) and settings.
fn config(f: &Fixture, org_body: &str, settings: &[(&str, &str)]) -> String {
    let dir = f.path();
    let mut params = vec![
        (
            "token-dir".to_string(),
            dir.join("tokens").display().to_string(),
        ),
        (
            "event-socket".to_string(),
            dir.join("events.sock").display().to_string(),
        ),
        (
            "spool-dir".to_string(),
            dir.join("spool").display().to_string(),
        ),
        ("lookup-timeout-ms".to_string(), "2000".to_string()),
        ("default-org".to_string(), "acme".to_string()),
    ];
    for (k, v) in settings {
        params.push((k.to_string(), v.to_string()));
    }
    let params: String = params
        .iter()
        .map(|(k, v)| format!("    <param name=\"{k}\" value=\"{v}\"/>\n"))
        .collect();
    format!(
        "<configuration name=\"natterbox_sf.conf\">\n  <settings>\n{params}  </settings>\n  <orgs>\n    \
         <org name=\"acme\" api-version=\"68.0\" default-country=\"US\" login-url=\"{}\"{}>{org_body}</org>\n  </orgs>\n</configuration>\n",
        f.acme().login_url(),
        support::fixture::insecure_attr(&f.acme().login_url())
    )
}

/// The fixture with the module not yet loaded, so the test chooses the config.
fn fixture(emulator: EmulatorOptions) -> Fixture {
    Fixture::start(Options {
        orgs: vec![("acme", emulator)],
        load: false,
        ..Options::default()
    })
}

fn load(f: &mut Fixture, xml: &str) {
    f.write_config(xml);
    // The shim, like FreeSWITCH, serves config files from memory: reloadxml picks this one up.
    f.shim.ok("reloadxml");
    let reply = f.shim.cmd(&format!(
        "load {} mod_natterbox_sf",
        support::module_path().display()
    ));
    assert!(reply.ok, "load failed: {} {:?}", reply.error, reply.lines);
}

fn status(f: &mut Fixture) -> Value {
    let text = f.shim.api("status");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sf status is not JSON ({e}): {text}"))
}

/// Polls `sf status` until `done` holds for the org's entry, or fails after `limit`.
fn wait_for_org(f: &mut Fixture, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status(f);
        let org = status["orgs"][0].clone();
        if done(&org) {
            return org;
        }
        assert!(
            Instant::now() < deadline,
            "waited 20 s for {what}; sf status: {org:#}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn directory_loaded(f: &mut Fixture) -> Value {
    wait_for_org(f, "the owner directory", |org| {
        org["owners"]["loaded"] == true && org["owners"]["loading"] == false
    })
}

fn checked(f: &mut Fixture) -> Value {
    wait_for_org(f, "the config check", |org| {
        org["config_check"]["state"] != "pending"
    })
}

/// A REST call to the emulated org as an admin would make it.
fn rest(emulator: &Emulator, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let token = fetch_token(emulator);
    let mut request = reqwest::blocking::Client::new()
        .request(
            method,
            format!("{}/services/data/v68.0/{path}", token.instance_url),
        )
        .bearer_auth(&token.access_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn user_id(emulator: &Emulator, last_name: &str) -> String {
    emulator
        .admin()
        .records("User")
        .into_iter()
        .find(|u| u["LastName"] == last_name)
        .and_then(|u| u["Id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no user {last_name} in the seed"))
}

/// Asks only for OwnerId (added by default): every sf_owner_* comes from the directory.
const DIRECTORY_PROFILE: &str = r#"
      <profile name="default">
        <object name="Contact" fields="Id,Name,AccountId,Account.Name">
          <map field="Account.Name" variable="sf_account_name"/>
        </object>
        <object name="Lead" fields="Id,Name,Company"/>
      </profile>"#;

#[test]
fn owners_come_from_the_directory_and_a_renamed_owner_shows_after_a_refresh() {
    let mut f = fixture(EmulatorOptions::default_seed());
    let xml = config(&f, DIRECTORY_PROFILE, &[("owner-refresh-s", "3600")]);
    load(&mut f, &xml);
    let owners = directory_loaded(&mut f)["owners"].clone();
    let users = f.acme().admin().records("User").len() as u64;
    assert_eq!(owners["users"], users, "{owners:#}");

    let vars = f.lookup("c1", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
    assert_eq!(vars["sf_record_name"], "Ada Lovelace");
    assert_eq!(vars["sf_owner_id"], user_id(f.acme(), "Hopper"));
    assert_eq!(vars["sf_owner_type"], "User");
    assert_eq!(vars["sf_owner_name"], "Grace Hopper");
    assert_eq!(vars["sf_owner_extension"], "1001");
    assert_eq!(vars["sf_owner_email"], "grace.hopper@acme.example");
    assert!(!vars.contains_key("sf_owner_queue"), "{vars:?}");
    // The search asked for OwnerId and no Owner.* path.
    let searches: Vec<String> = f
        .acme()
        .admin()
        .queries()
        .into_iter()
        .filter(|q| q.kind == "sosl")
        .map(|q| q.text)
        .collect();
    assert!(
        searches
            .iter()
            .all(|q| q.contains("OwnerId") && !q.contains("Owner.")),
        "{searches:?}"
    );

    // Grace changes her name and extension in Salesforce.
    let grace = user_id(f.acme(), "Hopper");
    rest(
        f.acme(),
        reqwest::Method::PATCH,
        &format!("sobjects/User/{grace}"),
        Some(json!({"LastName": "Hopper-Murray", "Extension": "2001"})),
    );
    // Until the directory reloads, the answer (from the cache) still shows the old owner.
    let cached = f.lookup("c2", "+14155550123", "");
    assert_eq!(cached["sf_lookup_source"], "cache");
    assert_eq!(cached["sf_owner_name"], "Grace Hopper");

    // `sf reload` reloads the directory in the background; the cached answer then shows the
    // owner as she is now, without a new search.
    let searches_before = f.acme().admin().endpoint_count("search");
    assert!(f.shim.api("reload").starts_with("+OK"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let renamed = loop {
        n += 1;
        let vars = f.lookup(&format!("r{n}"), "+14155550123", "");
        if vars.get("sf_owner_name").map(String::as_str) == Some("Grace Hopper-Murray") {
            break vars;
        }
        assert!(
            Instant::now() < deadline,
            "the rename never showed: {vars:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(renamed["sf_owner_extension"], "2001");
    assert_eq!(renamed["sf_lookup_source"], "cache");
    assert_eq!(f.acme().admin().endpoint_count("search"), searches_before);
}

#[test]
fn the_directory_loads_every_page_of_users() {
    let mut emulator = EmulatorOptions::default_seed();
    emulator.query_batch_size = 2;
    let mut f = fixture(emulator);
    let xml = config(&f, DIRECTORY_PROFILE, &[]);
    load(&mut f, &xml);
    let owners = directory_loaded(&mut f)["owners"].clone();
    let users = f.acme().admin().records("User").len();
    assert!(users > 2, "the seed needs more users than a page");
    assert_eq!(owners["users"], users as u64, "{owners:#}");
    assert_eq!(owners["truncated"], false);
    assert!(
        f.acme().admin().endpoint_count("query_more") >= (users as u64 - 1) / 2,
        "pages followed: {}",
        f.acme().admin().endpoint_count("query_more")
    );
    // Ada's owner becomes Sinéad, whose record is on the second page.
    let sinead = user_id(f.acme(), "O'Brien");
    let ada = f
        .acme()
        .admin()
        .records("Contact")
        .into_iter()
        .find(|c| c["LastName"] == "Lovelace")
        .and_then(|c| c["Id"].as_str().map(str::to_string))
        .unwrap();
    rest(
        f.acme(),
        reqwest::Method::PATCH,
        &format!("sobjects/Contact/{ada}"),
        Some(json!({"OwnerId": sinead})),
    );
    let vars = f.lookup("c1", "+14155550123", "");
    assert_eq!(vars["sf_owner_id"], sinead, "{vars:?}");
    assert_eq!(vars["sf_owner_name"], "Sinéad O'Brien");
    assert_eq!(vars["sf_owner_extension"], "1003");
}

#[test]
fn an_owner_the_directory_lacks_is_its_id_and_type_and_no_call_waits_for_it() {
    let mut f = fixture(EmulatorOptions::default_seed());
    // The directory cannot load: every query fails.
    let fault = f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data/v68.0/query".into(),
        status: Some(503),
        ..FaultRule::default()
    });
    let xml = config(&f, DIRECTORY_PROFILE, &[]);
    load(&mut f, &xml);
    wait_for_org(&mut f, "a failed directory load", |org| {
        org["owners"]["error"].is_string()
    });
    let vars = f.lookup("c1", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
    assert_eq!(vars["sf_owner_id"], user_id(f.acme(), "Hopper"));
    assert_eq!(vars["sf_owner_type"], "User");
    for absent in ["sf_owner_name", "sf_owner_extension", "sf_owner_email"] {
        assert!(!vars.contains_key(absent), "{absent}: {vars:?}");
    }
    assert!(!f
        .shim
        .logs_containing("org acme: owner directory not loaded")
        .is_empty());

    // Salesforce is back; a reload loads the directory and the same call gets the owner.
    f.acme().admin().remove_fault(fault);
    assert!(f.shim.api("reload").starts_with("+OK"));
    directory_loaded(&mut f);
    let vars = f.lookup("c2", "+14155550123", "");
    assert_eq!(vars["sf_owner_name"], "Grace Hopper", "{vars:?}");
    assert_eq!(vars["sf_owner_extension"], "1001");
}

#[test]
fn extra_user_fields_become_variables_and_unknown_ones_are_left_out() {
    let mut f = fixture(EmulatorOptions::default_seed());
    let body = format!(
        "{DIRECTORY_PROFILE}\n      <owners>\n        <map field=\"Alias\" variable=\"sf_owner_alias\"/>\n        \
         <map field=\"Shoe_Size__c\" variable=\"sf_owner_shoe_size\"/>\n      </owners>"
    );
    let xml = config(&f, &body, &[]);
    load(&mut f, &xml);
    let owners = directory_loaded(&mut f)["owners"].clone();
    assert_eq!(owners["unknown_user_fields"], json!(["Shoe_Size__c"]));
    assert!(!f
        .shim
        .logs_containing("org acme: <owners> field User.Shoe_Size__c")
        .is_empty());
    let grace = f
        .acme()
        .admin()
        .records("User")
        .into_iter()
        .find(|u| u["LastName"] == "Hopper")
        .unwrap();
    let vars = f.lookup("c1", "+14155550123", "");
    assert_eq!(vars["sf_owner_name"], "Grace Hopper", "{vars:?}");
    match grace["Alias"].as_str() {
        Some(alias) => assert_eq!(vars["sf_owner_alias"], alias),
        None => assert!(!vars.contains_key("sf_owner_alias")),
    }
    assert!(!vars.contains_key("sf_owner_shoe_size"));
}

#[test]
fn the_config_check_leaves_out_what_the_org_does_not_have() {
    let mut f = fixture(EmulatorOptions::default_seed());
    let body = r#"
      <profile name="default">
        <object name="Contact" fields="Id,Name,Shoe_Size__c,Account.Name,Account.Nickname__c,Reports.Name">
          <map field="Account.Name" variable="sf_account_name"/>
          <map field="Shoe_Size__c" variable="sf_shoe_size"/>
        </object>
        <object name="Nope__c" phone-fields="Phone__c"/>
      </profile>
      <profile name="rules">
        <object name="Routing_Rule__c" fields="Id,Name,Queue__c" phone-fields="Phone__c,Queue__c">
          <map field="Queue__c" variable="sf_queue"/>
        </object>
      </profile>
      <profile name="broken">
        <object name="Nope__c" phone-fields="Phone__c"/>
      </profile>"#;
    let xml = config(&f, body, &[]);
    load(&mut f, &xml);
    let check = checked(&mut f)["config_check"].clone();
    assert_eq!(check["state"], "problems", "{check:#}");
    let problems: Vec<String> = check["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let expect = [
        "profile default: Contact field Shoe_Size__c: Contact has no field Shoe_Size__c",
        "profile default: Contact field Account.Nickname__c: Account has no field Nickname__c",
        "profile default: Contact field Reports.Name: Contact has no relationship Reports",
        "profile default: object Nope__c: the org has no such object",
        "profile rules: Routing_Rule__c field Queue__c: is a string field, not a phone field",
        "profile broken: object Nope__c",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "no problem starting {e:?} in {problems:#?}"
        );
    }
    // One log line per problem, naming the org, the object and the field.
    assert!(!f
        .shim
        .logs_containing("org acme: profile default: Contact field Shoe_Size__c:")
        .is_empty());

    // The rest still answers, and Salesforce is never sent a search it refuses.
    let vars = f.lookup("c1", "+14155550123", "");
    assert_eq!(vars["sf_lookup_status"], "found", "{vars:?}");
    assert_eq!(vars["sf_account_name"], "Acme Corporation");
    assert!(!vars.contains_key("sf_shoe_size"));
    let rule = f.lookup("c2", "+1 415 555 0100", "profile=rules");
    assert_eq!(rule["sf_lookup_status"], "found", "{rule:?}");
    assert!(!rule["sf_queue"].is_empty());
    for entry in f.acme().admin().queries() {
        assert!(entry.kind != "sosl" || entry.error.is_none(), "{entry:?}");
    }
    // A profile with nothing left answers error, with the reason, without asking Salesforce.
    let searches = f.acme().admin().endpoint_count("search");
    let broken = f.lookup("c3", "+14155550123", "profile=broken");
    assert_eq!(broken["sf_lookup_status"], "error");
    assert_eq!(f.acme().admin().endpoint_count("search"), searches);
    assert!(!f
        .shim
        .logs_containing("profile \"broken\" has no object the org can search")
        .is_empty());
}

/// The shipped example config, pointed at the test's directories and emulated org.
fn shipped_config(f: &Fixture) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/freeswitch-conf/autoload_configs/natterbox_sf.conf.xml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let dir = f.path().display().to_string();
    let replaced = [
        ("/var/lib/natterbox-sf/tokens", format!("{dir}/tokens")),
        (
            "/run/natterbox-sf/events.sock",
            format!("{dir}/events.sock"),
        ),
        ("/var/spool/natterbox-sf", format!("{dir}/spool")),
        (
            "https://login.salesforce.com\" max",
            format!(
                "{}\"{} max",
                f.acme().login_url(),
                support::fixture::insecure_attr(&f.acme().login_url())
            ),
        ),
    ]
    .iter()
    .fold(text, |text, (from, to)| {
        assert!(
            text.contains(from),
            "the shipped config no longer has {from}"
        );
        text.replace(from, to)
    });
    replaced
}

#[test]
fn the_shipped_example_config_routes_by_owner_against_the_strict_org() {
    let mut f = fixture(EmulatorOptions::default_seed());
    let xml = shipped_config(&f);
    load(&mut f, &xml);
    let org = checked(&mut f);
    assert_eq!(org["config_check"]["state"], "ok", "{org:#}");
    let owners = directory_loaded(&mut f)["owners"].clone();
    let queues = f
        .acme()
        .admin()
        .records("Group")
        .into_iter()
        .filter(|g| g["Type"] == "Queue")
        .count();
    assert!(queues > 0, "the seed has queues");
    assert_eq!(owners["queues"], queues as u64, "{owners:#}");
    assert!(owners["queue_error"].is_null(), "{owners:#}");

    // A Contact owned by a user: the user's extension.
    let contact = f.lookup("c1", "+14155550123", "");
    assert_eq!(contact["sf_lookup_status"], "found", "{contact:?}");
    assert_eq!(contact["sf_record_type"], "Contact");
    assert_eq!(contact["sf_owner_type"], "User");
    assert_eq!(contact["sf_owner_extension"], "1001");
    assert_eq!(contact["sf_owner_name"], "Grace Hopper");
    assert_eq!(contact["sf_account_name"], "Acme Corporation");

    // A Lead owned by a queue: the queue, no extension.
    let lead = f.lookup("c2", "+1 604 555 0188", "");
    assert_eq!(lead["sf_lookup_status"], "found", "{lead:?}");
    assert_eq!(lead["sf_record_type"], "Lead");
    assert_eq!(lead["sf_record_name"], "Noah Tremblay");
    assert!(lead["sf_owner_id"].starts_with("00G"), "{lead:?}");
    assert_eq!(lead["sf_owner_type"], "Queue");
    assert_eq!(lead["sf_owner_name"], "Support Queue");
    assert_eq!(lead["sf_owner_queue"], "Support_Queue");
    assert_eq!(lead["sf_owner_email"], "support@acme.example");
    assert!(!lead.contains_key("sf_owner_extension"), "{lead:?}");
    assert!(!lead["sf_company"].is_empty());

    // A second lookup in the same call leaves none of the first owner's variables behind.
    f.shim.ok("app c2 sf_lookup number=+14155550123");
    let again = f.shim.vars("c2");
    assert_eq!(again["sf_owner_type"], "User", "{again:?}");
    assert_eq!(again["sf_owner_extension"], "1001");
    assert!(!again.contains_key("sf_owner_queue"), "{again:?}");
    f.shim.ok("app c2 sf_lookup number=+14155550999");
    let none = f.shim.vars("c2");
    assert_eq!(none["sf_lookup_status"], "not_found", "{none:?}");
    for gone in [
        "sf_owner_id",
        "sf_owner_type",
        "sf_owner_name",
        "sf_owner_extension",
    ] {
        assert!(!none.contains_key(gone), "{gone}: {none:?}");
    }

    for entry in f.acme().admin().queries() {
        assert!(entry.error.is_none(), "{entry:?}");
    }
}

#[test]
fn owner_extension_on_a_lead_is_a_clear_check_failure_and_the_rest_still_answers() {
    let mut f = fixture(EmulatorOptions::default_seed());
    let body = r#"
      <profile name="default">
        <object name="Contact" fields="Id,Name,Owner.Extension">
          <map field="Owner.Extension" variable="sf_contact_owner_extension"/>
        </object>
        <object name="Lead" fields="Id,Name,Company,Owner.Name,Owner.Extension">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
          <map field="Owner.Name" variable="sf_lead_owner_name"/>
        </object>
      </profile>"#;
    let xml = config(&f, body, &[]);
    load(&mut f, &xml);
    let check = checked(&mut f)["config_check"].clone();
    assert_eq!(check["state"], "problems", "{check:#}");
    let problems = check["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{check:#}");
    let problem = problems[0].as_str().unwrap();
    assert!(
        problem.starts_with("profile default: Lead field Owner.Extension: Lead.OwnerId can be a ")
            && problem.contains("Name entity, which has no field Extension"),
        "{problem}"
    );
    let logged = f
        .shim
        .logs_containing("org acme: profile default: Lead field Owner.Extension:")
        .len();
    assert_eq!(logged, 1, "one log line per problem");

    // Owner.Extension through a Contact (owned by users only) is fine; through a Lead it is
    // left out, Owner.Name stays, and the lead is still found with its queue owner.
    let contact = f.lookup("c1", "+14155550123", "");
    assert_eq!(contact["sf_contact_owner_extension"], "1001", "{contact:?}");
    directory_loaded(&mut f);
    let lead = f.lookup("c2", "+1 604 555 0188", "");
    assert_eq!(lead["sf_lookup_status"], "found", "{lead:?}");
    assert_eq!(lead["sf_lead_owner_name"], "Support Queue");
    assert_eq!(lead["sf_owner_type"], "Queue");
    assert!(!lead.contains_key("sf_owner_extension"));
    for entry in f.acme().admin().queries() {
        assert!(entry.kind != "sosl" || entry.error.is_none(), "{entry:?}");
    }
}
