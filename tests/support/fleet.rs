//! Fleet tests: a real `redis-server` on a free loopback port (killed on drop), and more hosts
//! (host shim processes with the module loaded) beside a fixture's, sharing its emulated org.

use std::time::{Duration, Instant};

use super::fixture::{write_token, Fixture};
pub use super::redis_server::RedisServer;
use super::shim::Shim;

/// `<fleet>` for a config.
pub fn fleet_xml(redis: &RedisServer, extra: &[(&str, &str)]) -> String {
    let mut xml = format!(
        "  <fleet>\n    <param name=\"redis-url\" value=\"{}\"/>\n",
        redis.url()
    );
    for (k, v) in extra {
        xml.push_str(&format!("    <param name=\"{k}\" value=\"{v}\"/>\n"));
    }
    xml.push_str("  </fleet>\n");
    xml
}

/// The fixture's config with `<fleet>` and `settings`.
pub fn config_with_fleet(f: &Fixture, settings: &[(&str, String)], fleet: &str) -> String {
    config_with_fleet_and(
        f,
        HostConfig {
            settings,
            ..HostConfig::default()
        },
        fleet,
    )
}

/// What a test adds to every host's config besides `<fleet>`.
#[derive(Default, Clone, Copy)]
pub struct HostConfig<'a> {
    pub settings: &'a [(&'a str, String)],
    /// Extra attributes on every `<org>`.
    pub org_attrs: &'a str,
    /// Extra elements inside every `<org>` (named queries).
    pub org_body: &'a str,
}

/// The fixture's config with `<fleet>` and what `host` adds.
pub fn config_with_fleet_and(f: &Fixture, host: HostConfig<'_>, fleet: &str) -> String {
    let xml = f
        .config_xml(host.settings, host.org_attrs)
        .replace("</configuration>", &format!("{fleet}</configuration>"));
    if host.org_body.is_empty() {
        return xml;
    }
    let anchor = "<screen-pop ttl-ms=\"30000\"/>";
    assert!(xml.contains(anchor), "the profile has no {anchor}");
    xml.replace(anchor, &format!("{anchor}{}", host.org_body))
}

/// Loads the module into the fixture's own shim with `<fleet>`.
pub fn load_first_host(f: &mut Fixture, fleet: &str) {
    load_first_host_with(f, HostConfig::default(), fleet);
}

/// As `load_first_host`, with what `host` adds to the config.
pub fn load_first_host_with(f: &mut Fixture, host: HostConfig<'_>, fleet: &str) {
    let xml = config_with_fleet_and(f, host, fleet);
    f.write_config(&xml);
    // The shim, as FreeSWITCH, reads the config files into its registry at start.
    f.shim.ok("reloadxml");
    let reply = f.shim.cmd(&format!(
        "load {} mod_natterbox_sf",
        super::module_path().display()
    ));
    assert!(reply.ok, "load failed: {} {:?}", reply.error, reply.lines);
}

/// Another host: its own shim process, config, token dir, spool and event socket, the same
/// emulated orgs and Redis.
pub fn another_host(f: &Fixture, name: &str, fleet: &str) -> Shim {
    another_host_with(f, name, HostConfig::default(), fleet)
}

/// As `another_host`, with what `host` adds to the config.
pub fn another_host_with(f: &Fixture, name: &str, host: HostConfig<'_>, fleet: &str) -> Shim {
    let dir = f.path().join(name);
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("autoload_configs")).unwrap();
    for sub in ["tokens", "spool"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut settings = vec![
        ("token-dir", dir.join("tokens").display().to_string()),
        (
            "event-socket",
            dir.join("events.sock").display().to_string(),
        ),
        ("spool-dir", dir.join("spool").display().to_string()),
    ];
    settings.extend(host.settings.iter().cloned());
    std::fs::write(
        conf.join("autoload_configs/natterbox_sf.conf.xml"),
        config_with_fleet_and(
            f,
            HostConfig {
                settings: &settings,
                ..host
            },
            fleet,
        ),
    )
    .unwrap();
    for org in &f.orgs {
        write_token(&dir, org);
    }
    let mut shim = Shim::start(&conf);
    let reply = shim.cmd(&format!(
        "load {} mod_natterbox_sf",
        super::module_path().display()
    ));
    assert!(reply.ok, "load failed: {} {:?}", reply.error, reply.lines);
    shim
}

/// Runs `sf_lookup` on a new call in `shim` and returns the call's variables.
pub fn lookup(
    shim: &mut Shim,
    uuid: &str,
    caller: &str,
) -> std::collections::HashMap<String, String> {
    shim.ok(&format!(
        "call {uuid} caller_id_number={}",
        super::shim::escape_arg(caller)
    ));
    shim.ok(&format!("app {uuid} sf_lookup"));
    shim.vars(uuid)
}

/// `sf status` as JSON.
pub fn status(shim: &mut Shim) -> serde_json::Value {
    serde_json::from_str(&shim.api("status")).expect("sf status is JSON")
}

/// Polls `sf status` until `ready` holds for it, or panics with the last status.
pub fn wait_for_status(
    shim: &mut Shim,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(shim);
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
