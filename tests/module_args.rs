//! Dialplan arguments no caller can rewrite (issue 8, class 7), through the real module in the
//! host shim: FreeSWITCH expands `${caller_id_number}` (and SIP headers) into an application's
//! data before the application reads it, so these tests put hostile text in the channel's
//! variables and let the shim expand it, as the switch does. Two orgs, each its own emulator:
//! what globex's emulator saw proves whether a caller could send a lookup there.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use natterbox_common::wire::Message;
use sf_emulator::{EmulatorOptions, FaultRule};
use support::fixture::{Fixture, Options};
use support::shim::escape_arg;

/// Caller numbers that try to add, repeat or override an argument.
const HOSTILE: &[&str] = &[
    "4155550123 org=globex",
    "+14155550123 org=globex",
    " org=globex",
    "4155550123 profile=rules",
    " profile=x",
    "4155550123 timeout_ms=60000",
    "4155550123 number=+14155550123 org=globex",
    "number=4155550123",
    "number_var=sf_org",
    "4155550123 org=acme org=globex",
    "4155550123 org=acme",
    "4155550123 timeout_ms=10 timeout_ms=20",
    "${sf_org} org=globex",
    "${caller_id_number}",
    "4155550123\norg=globex",
    "4155550123\r\norg=globex\r\n",
    "4155550123\torg=globex",
    "4155550123\u{b}org=globex\u{c}profile=rules",
    "\u{1b}[2J4155550123 org=globex",
    "\u{7}\u{1}\u{1f}\u{7f}",
    "4155550123 evil=1",
    "justaword",
];

/// Two tenants whose emulators both know the caller: a lookup that reached globex would find
/// its own Ada Lovelace.
fn two_tenants(settings: Vec<(&'static str, String)>) -> Fixture {
    let mut globex = EmulatorOptions::default_seed();
    globex.seed.org_id = "00DEm0000000002".into();
    Fixture::start(Options {
        orgs: vec![
            ("acme", EmulatorOptions::default_seed()),
            ("globex", globex),
        ],
        settings,
        ..Options::default()
    })
}

/// Requests globex's emulator answered other than for tokens.
fn globex_data_requests(f: &Fixture) -> u64 {
    let stats = f.org("globex").emulator.admin().stats();
    stats["total_requests"].as_u64().unwrap() - stats["endpoints"]["oauth_token"].as_u64().unwrap()
}

/// A new call whose `caller_id_number` is `caller` (plus `vars`), running `sf_lookup <data>`
/// with the data expanded by the shim, as FreeSWITCH expands it.
fn lookup_expanded(
    f: &mut Fixture,
    uuid: &str,
    caller: &str,
    vars: &str,
    data: &str,
) -> HashMap<String, String> {
    f.shim.ok(&format!(
        "call {uuid} caller_id_number={} {vars}",
        escape_arg(caller)
    ));
    f.shim.ok(&format!("app {uuid} sf_lookup {data}"));
    f.shim.vars(uuid)
}

#[test]
fn a_caller_number_never_chooses_the_org_the_profile_or_an_error() {
    let mut f = two_tenants(Vec::new());
    // The forms a dialplan writes: the org from a variable the dialplan set, or from its own
    // text before number=; the number from the channel, from number=, or from number_var=.
    let forms = [
        ("sf_org=acme", "number=${caller_id_number}"),
        ("", "org=acme number=${caller_id_number}"),
        (
            "",
            "org=acme profile=default timeout_ms=1500 number=${caller_id_number}",
        ),
        ("sf_org=acme", ""),
        ("", "org=acme"),
        (
            "nbx_number=${caller_id_number}",
            "org=acme number_var=nbx_number",
        ),
    ];
    let mut calls = 0;
    for (form, (vars, data)) in forms.iter().enumerate() {
        for (i, caller) in HOSTILE.iter().enumerate() {
            let uuid = format!("f{form}c{i}");
            let vars = if vars.starts_with("nbx_number") {
                // `set nbx_number=${caller_id_number}`: the variable holds the caller's text.
                format!("nbx_number={}", escape_arg(caller))
            } else {
                vars.to_string()
            };
            let got = lookup_expanded(&mut f, &uuid, caller, &vars, data);
            calls += 1;
            let status = got["sf_lookup_status"].as_str();
            assert!(
                ["invalid_number", "found", "not_found"].contains(&status),
                "{data:?} with caller {caller:?}: a caller caused {status}: {got:?}"
            );
            assert_eq!(
                got.get("sf_lookup_org").map(String::as_str),
                Some("acme"),
                "{data:?} with caller {caller:?}: {got:?}"
            );
        }
    }
    assert_eq!(calls, forms.len() * HOSTILE.len());
    assert_eq!(
        globex_data_requests(&f),
        0,
        "a caller sent a lookup to the other tenant: {:?}",
        f.org("globex").emulator.admin().queries()
    );
    // Whatever reached acme searched the profile's objects for digits only.
    for q in f.acme().admin().queries() {
        assert!(q.error.is_none(), "{q:?}");
        assert!(
            !q.text.contains("Routing_Rule__c"),
            "profile switched: {q:?}"
        );
    }

    // The same forms with a well-formed number: acme finds the caller, globex is asked only
    // when the dialplan itself names it.
    let ok = lookup_expanded(
        &mut f,
        "good",
        "+14155550123",
        "",
        "org=acme number=${caller_id_number}",
    );
    assert_eq!(ok["sf_lookup_status"], "found", "{ok:?}");
    let ok = lookup_expanded(
        &mut f,
        "good-var",
        "+1",
        "n=+14155550123",
        "org=acme number_var=n",
    );
    assert_eq!(ok["sf_lookup_status"], "found", "{ok:?}");
    assert_eq!(globex_data_requests(&f), 0);
    let theirs = lookup_expanded(
        &mut f,
        "theirs",
        "+14155550123",
        "",
        "org=globex number=${caller_id_number}",
    );
    assert_eq!(theirs["sf_lookup_status"], "found", "{theirs:?}");
    assert_eq!(theirs["sf_lookup_org"], "globex");
    assert_eq!(globex_data_requests(&f), 1);
}

#[test]
fn the_dialplan_keeps_its_own_strictness() {
    let mut f = two_tenants(Vec::new());
    for (i, data) in [
        "org=acme org=globex number=${caller_id_number}",
        "evil=1 number=${caller_id_number}",
        "org=acme number_var=x number=${caller_id_number}",
        "timeout_ms=60001",
        "justaword",
    ]
    .iter()
    .enumerate()
    {
        let got = lookup_expanded(&mut f, &format!("d{i}"), "+14155550123", "", data);
        assert_eq!(got["sf_lookup_status"], "error", "{data}: {got:?}");
        assert!(!got.contains_key("sf_lookup_org"), "{data}: {got:?}");
    }
    // An explicit number= that is empty is an invalid number, not the channel's caller id.
    let got = lookup_expanded(&mut f, "empty", "+14155550123", "", "org=acme number=");
    assert_eq!(got["sf_lookup_status"], "invalid_number", "{got:?}");
    let got = lookup_expanded(
        &mut f,
        "unset",
        "+14155550123",
        "",
        "org=acme number_var=nbx_unset",
    );
    assert_eq!(got["sf_lookup_status"], "invalid_number", "{got:?}");
    assert_eq!(globex_data_requests(&f), 0);
}

#[test]
fn no_argument_and_no_caller_lengthens_the_configured_deadline() {
    let configured = Duration::from_millis(600);
    let mut f = two_tenants(vec![(
        "lookup-timeout-ms",
        configured.as_millis().to_string(),
    )]);
    f.acme().admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 4000,
        ..FaultRule::default()
    });
    let mut held_calls = 0;
    let cases: Vec<(String, &str)> = [
        // The dialplan asks for more than the configured deadline: it gets the configured one.
        // (Two numbers: a lookup that joined the other's request would share its deadline.)
        ("+14155550123", "org=acme timeout_ms=5000"),
        (
            "+14155550124",
            "org=acme timeout_ms=60000 number=${caller_id_number}",
        ),
    ]
    .into_iter()
    .map(|(c, d)| (c.to_string(), d))
    .chain(
        HOSTILE
            .iter()
            .filter(|h| h.contains("timeout_ms"))
            .map(|h| (h.to_string(), "org=acme number=${caller_id_number}")),
    )
    .collect();
    for (i, (caller, data)) in cases.iter().enumerate() {
        let uuid = format!("t{i}");
        f.shim.ok(&format!(
            "call {uuid} caller_id_number={}",
            escape_arg(caller)
        ));
        let started = Instant::now();
        f.shim.ok(&format!("app {uuid} sf_lookup {data}"));
        let held = started.elapsed();
        let got = f.shim.vars(&uuid);
        let status = got["sf_lookup_status"].as_str();
        assert!(
            ["timeout", "invalid_number"].contains(&status),
            "{data} / {caller:?}: {got:?}"
        );
        // Salesforce answers after 4 s: a deadline taken from the data would hold the call that
        // long. The margin is for a loaded test machine.
        assert!(
            held < configured + Duration::from_millis(1400),
            "{data} / {caller:?}: held the call {held:?}, configured {configured:?}"
        );
        // The dialplan's own long timeouts, each its own request: held to the configured one.
        // (A caller's text is at most a number, looked up or not, under the same bound.)
        if i < 2 {
            assert_eq!(status, "timeout", "{data}: {got:?}");
            held_calls += 1;
            let ms: u64 = got["sf_lookup_ms"].parse().unwrap();
            assert!((550..2000).contains(&ms), "{data}: sf_lookup_ms={ms}");
        }
    }
    assert_eq!(held_calls, 2);
    // A shorter timeout_ms still shortens it.
    f.shim.ok("call short caller_id_number=+14155550125");
    let started = Instant::now();
    f.shim.ok("app short sf_lookup org=acme timeout_ms=200");
    assert!(started.elapsed() < configured);
    assert_eq!(f.shim.vars("short")["sf_lookup_status"], "timeout");
}

#[test]
fn a_screen_pop_target_from_data_never_chooses_the_org() {
    let mut f = two_tenants(Vec::new());
    for (i, hostile) in [
        "1001 org=globex",
        "1001 direction=outbound",
        "1001\norg=globex",
    ]
    .iter()
    .enumerate()
    {
        let uuid = format!("p{i}");
        f.shim.ok(&format!(
            "call {uuid} caller_id_number=+14155550123 nbx_ext={}",
            escape_arg(hostile)
        ));
        f.shim.ok(&format!(
            "app {uuid} sf_screen_pop org=acme direction=inbound extension=${{nbx_ext}}"
        ));
        assert_eq!(f.shim.vars(&uuid)["sf_screen_pop"], "sent");
    }
    // A pop whose dialplan names both agent and extension: the last one takes the rest.
    f.shim.ok("call both caller_id_number=+14155550123");
    f.shim
        .ok("app both sf_screen_pop org=acme agent=005Em0000000001AAA extension=1001");
    let deadline = Instant::now() + Duration::from_secs(5);
    let pops = loop {
        let pops: Vec<_> = f
            .messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::ScreenPop(pop) => Some(pop),
                _ => None,
            })
            .collect();
        if pops.len() >= 4 || Instant::now() > deadline {
            break pops;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pops.len(), 4, "{pops:?}");
    for (pop, hostile) in pops.iter().zip([
        "1001 org=globex",
        "1001 direction=outbound",
        "1001\norg=globex",
    ]) {
        assert_eq!(pop.org, "acme", "{pop:?}");
        assert_eq!(
            pop.direction,
            natterbox_common::wire::Direction::Inbound,
            "{pop:?}"
        );
        assert_eq!(pop.agent_extension.as_deref(), Some(hostile), "{pop:?}");
    }
    let both = &pops[3];
    assert_eq!(
        both.agent_user_id.as_deref(),
        Some("005Em0000000001AAA extension=1001")
    );
    assert_eq!(both.agent_extension, None);
}

#[test]
fn the_sf_lookup_command_takes_the_number_as_the_rest_of_the_line() {
    // A dialplan may run it as `${sf(lookup acme ${caller_id_number})}`: the number is last.
    let mut f = two_tenants(Vec::new());
    let answer: serde_json::Value =
        serde_json::from_str(&f.shim.api("lookup acme 4155550123 rules")).unwrap();
    assert_eq!(answer["status"], "invalid_number", "{answer}");
    let answer: serde_json::Value =
        serde_json::from_str(&f.shim.api("lookup acme +1 415 555 0123")).unwrap();
    assert_eq!(answer["status"], "found", "{answer}");
    assert!(f
        .acme()
        .admin()
        .queries()
        .iter()
        .all(|q| !q.text.contains("Routing_Rule__c")));
    // The profile is named with the org, where no number reaches.
    let answer: serde_json::Value =
        serde_json::from_str(&f.shim.api("lookup acme/rules +14155550123")).unwrap();
    assert_ne!(answer["status"], "error", "{answer}");
    assert!(f
        .acme()
        .admin()
        .queries()
        .iter()
        .any(|q| q.text.contains("Routing_Rule__c")));
    assert!(f.shim.api("lookup acme").starts_with("-ERR"));
    assert_eq!(globex_data_requests(&f), 0);
}
