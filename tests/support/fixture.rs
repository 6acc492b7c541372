//! One emulated org (or two), a config and token dir in a temporary directory, the module
//! loaded into the host shim, and a stand-in for the sidecar's end of the event socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use natterbox_common::handoff::{self, TokenFile};
use natterbox_common::salesforce::oauth::TokenResponse;
use natterbox_common::wire::Message;
use sf_emulator::{Emulator, EmulatorOptions};

use super::shim::Shim;

/// A token from the emulator's token endpoint (client credentials, as the sidecar would: posted
/// to the org's My Domain, which is its instance URL).
pub fn fetch_token(emulator: &Emulator) -> TokenResponse {
    let mut client = reqwest::blocking::Client::builder();
    if let Some(ca) = emulator.ca_pem() {
        client =
            client.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    let response = client
        .build()
        .unwrap()
        .post(format!("{}/services/oauth2/token", emulator.instance_url()))
        .basic_auth("3MVG9Emu.CC.ClientId.natterbox", Some("cc-app-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("token request");
    assert_eq!(
        response.status(),
        200,
        "token endpoint refused client credentials"
    );
    response.json().expect("a token response")
}

pub struct Org {
    pub name: String,
    pub emulator: Emulator,
    pub generation: AtomicU64,
}

/// What the test's stand-in sidecar received.
#[derive(Default)]
pub struct Received {
    pub messages: Vec<Message>,
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub orgs: Vec<Arc<Org>>,
    pub shim: Shim,
    pub received: Arc<Mutex<Received>>,
    pub conf_dir: PathBuf,
    default_countries: Vec<(&'static str, &'static str)>,
}

pub struct Options {
    pub orgs: Vec<(&'static str, EmulatorOptions)>,
    pub settings: Vec<(&'static str, String)>,
    /// Extra attributes on every <org> element, e.g. `max-concurrent="1000"`.
    pub org_attrs: String,
    pub sidecar: bool,
    pub load: bool,
    /// `default-country` per org name; `US` for orgs not listed.
    pub default_countries: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            orgs: vec![("acme", EmulatorOptions::default_seed())],
            settings: Vec::new(),
            org_attrs: String::new(),
            sidecar: true,
            load: true,
            default_countries: Vec::new(),
        }
    }
}

pub const PROFILE: &str = r#"
      <profile name="default">
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Name,Owner.Extension,AccountId,Account.Name">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
          <map field="Account.Name" variable="sf_account_name"/>
        </object>
        <object name="Lead" fields="Id,Name,OwnerId,Company">
          <map field="Company" variable="sf_company"/>
        </object>
        <object name="Account" fields="Id,Name,OwnerId"/>
      </profile>
      <profile name="rules">
        <object name="Routing_Rule__c" fields="Id,Name,Queue__c" phone-fields="Phone__c">
          <map field="Queue__c" variable="sf_queue"/>
        </object>
      </profile>
      <call-log enabled="true"/>
      <screen-pop ttl-ms="30000"/>"#;

impl Fixture {
    pub fn start(options: Options) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("conf");
        std::fs::create_dir_all(conf_dir.join("autoload_configs")).unwrap();
        for sub in ["tokens", "spool"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let orgs: Vec<Arc<Org>> = options
            .orgs
            .into_iter()
            .map(|(name, opts)| {
                Arc::new(Org {
                    name: name.to_string(),
                    emulator: Emulator::start_background(opts).expect("start the emulator"),
                    generation: AtomicU64::new(0),
                })
            })
            .collect();
        let fixture_dir = dir.path().to_path_buf();
        let config = config_xml(
            &fixture_dir,
            &orgs,
            &options.settings,
            &options.org_attrs,
            &options.default_countries,
        );
        std::fs::write(
            conf_dir.join("autoload_configs/natterbox_sf.conf.xml"),
            config,
        )
        .unwrap();
        for org in &orgs {
            write_token(&fixture_dir, org);
        }
        let received = Arc::new(Mutex::new(Received::default()));
        if options.sidecar {
            spawn_sidecar(&fixture_dir, orgs.clone(), received.clone());
        }
        let mut shim = Shim::start(&conf_dir);
        if options.load {
            let reply = shim.cmd(&format!(
                "load {} mod_natterbox_sf",
                super::module_path().display()
            ));
            assert!(reply.ok, "load failed: {} {:?}", reply.error, reply.lines);
        }
        Fixture {
            dir,
            orgs,
            shim,
            received,
            conf_dir,
            default_countries: options.default_countries,
        }
    }

    pub fn org(&self, name: &str) -> &Org {
        self.orgs.iter().find(|o| o.name == name).expect("org")
    }

    pub fn acme(&self) -> &Emulator {
        &self.org("acme").emulator
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, xml: &str) {
        std::fs::write(
            self.conf_dir.join("autoload_configs/natterbox_sf.conf.xml"),
            xml,
        )
        .unwrap();
    }

    pub fn config_xml(&self, settings: &[(&str, String)], org_attrs: &str) -> String {
        config_xml(
            self.dir.path(),
            &self.orgs,
            settings,
            org_attrs,
            &self.default_countries,
        )
    }

    /// Runs `sf_lookup` on a new call and returns the call's variables.
    pub fn lookup(
        &mut self,
        uuid: &str,
        caller: &str,
        data: &str,
    ) -> std::collections::HashMap<String, String> {
        self.shim.ok(&format!(
            "call {uuid} caller_id_number={}",
            super::shim::escape_arg(caller)
        ));
        let reply = self.shim.ok(&format!("app {uuid} sf_lookup {data}"));
        assert!(
            !reply.text().contains("pre_answered"),
            "sf_lookup must not pre-answer the call: {:?}",
            reply.lines
        );
        self.shim.vars(uuid)
    }

    pub fn messages(&self) -> Vec<Message> {
        self.received.lock().unwrap().messages.clone()
    }
}

fn config_xml(
    dir: &Path,
    orgs: &[Arc<Org>],
    settings: &[(&str, String)],
    org_attrs: &str,
    default_countries: &[(&str, &str)],
) -> String {
    let mut params = vec![
        ("token-dir", dir.join("tokens").display().to_string()),
        (
            "event-socket",
            dir.join("events.sock").display().to_string(),
        ),
        ("spool-dir", dir.join("spool").display().to_string()),
        ("lookup-timeout-ms", "2000".to_string()),
        ("default-org", orgs[0].name.clone()),
    ];
    for (k, v) in settings {
        params.retain(|(name, _)| name != k);
        params.push((k, v.clone()));
    }
    let mut xml = String::from(
        "<configuration name=\"natterbox_sf.conf\" description=\"test\">\n  <settings>\n",
    );
    for (k, v) in params {
        xml.push_str(&format!("    <param name=\"{k}\" value=\"{v}\"/>\n"));
    }
    xml.push_str("  </settings>\n  <orgs>\n");
    for org in orgs {
        let country = default_countries
            .iter()
            .find(|(name, _)| *name == org.name)
            .map_or("US", |(_, country)| country);
        xml.push_str(&format!(
            "    <org name=\"{}\" api-version=\"68.0\" default-country=\"{country}\" login-url=\"{}\"{} {org_attrs}>{PROFILE}\n    </org>\n",
            org.name,
            org.emulator.login_url(),
            insecure_attr(&org.emulator.login_url())
        ));
    }
    xml.push_str("  </orgs>\n</configuration>\n");
    xml
}

/// Writes a fresh token for the org, as the sidecar does.
pub fn write_token(dir: &Path, org: &Org) {
    let token = fetch_token(&org.emulator);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let issued_at_ms = token.issued_at_ms_or(now_ms);
    let generation = org.generation.fetch_add(1, Ordering::SeqCst) + 1;
    handoff::write(
        &dir.join("tokens"),
        &TokenFile {
            org: org.name.clone(),
            access_token: token.access_token,
            instance_url: token.instance_url,
            issued_at_ms,
            generation,
        },
        None,
    )
    .unwrap();
}

/// The sidecar's side of the socket, reduced to what the module needs from it: refresh a token
/// when asked, acknowledge call logs, record everything.
fn spawn_sidecar(dir: &Path, orgs: Vec<Arc<Org>>, received: Arc<Mutex<Received>>) {
    let listener = UnixListener::bind(dir.join("events.sock")).unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (dir, orgs, received) = (dir.clone(), orgs.clone(), received.clone());
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let Ok(message) = Message::from_line(line.as_bytes()) else {
                        continue;
                    };
                    match &message {
                        Message::TokenRefresh {
                            org, generation, ..
                        } => {
                            if let Some(o) = orgs.iter().find(|o| &o.name == org) {
                                // Coalesced like the sidecar: only a report about the current token refreshes.
                                if *generation >= o.generation.load(Ordering::SeqCst)
                                    || *generation == 0
                                {
                                    write_token(&dir, o);
                                }
                            }
                        }
                        Message::CallLog(log) => {
                            let ack = Message::Ack {
                                call_uuid: log.call_uuid.clone(),
                            };
                            let _ = writer.write_all(&ack.to_line());
                        }
                        _ => {}
                    }
                    received.lock().unwrap().messages.push(message);
                }
            });
        }
    });
}

/// ` allow-insecure-http="true"` for an `http://` emulator (the default), else nothing: the
/// config refuses plain HTTP without it.
pub fn insecure_attr(login_url: &str) -> &'static str {
    if login_url.starts_with("http://") {
        r#" allow-insecure-http="true""#
    } else {
        ""
    }
}
