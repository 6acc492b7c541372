//! The whole product on this machine: the org emulator, the real sidecar binary as a child process
//! (JWT bearer flow, event socket, agent WebSocket, outbox), and the real module in the host shim.
//! Unlike `fixture`, nothing stands in for the sidecar.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use serde_json::Value;
use sf_emulator::{Emulator, EmulatorOptions};

use super::shim::Shim;

pub const JWT_CLIENT: &str = "3MVG9Emu.JWT.ClientId.natterbox";
pub const INTEGRATION_USER: &str = "integration@acme.example";

/// The sidecar binary as cargo builds it now, next to the test executable's profile directory
/// (built once per test binary, like `module_path`).
pub fn sidecar_path() -> PathBuf {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "natterbox-sidecar",
            "--bin",
            "natterbox-sidecar",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the sidecar");
        assert!(status.success(), "cargo build -p natterbox-sidecar failed");
    });
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let path = profile_dir.join("natterbox-sidecar");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls `check` every 20 ms until it gives `Some`, or panics with `what` after `limit`.
pub fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sidecar as a child process (`--config <file>`), its stderr appended to a log file.
pub struct Sidecar {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    /// `admin-listen`: /healthz, /metrics, /status.
    pub admin: SocketAddr,
    /// `agent-listen`: the agents' /agent WebSocket.
    pub agent: SocketAddr,
}

impl Sidecar {
    pub fn start(config: &Path, log: &Path, admin: SocketAddr, agent: SocketAddr) -> Sidecar {
        let mut sidecar = Sidecar {
            child: None,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            admin,
            agent,
        };
        sidecar.restart();
        sidecar
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (again) and waits until `/healthz` answers 200.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the sidecar is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(sidecar_path())
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the sidecar");
        self.child = Some(child);
        let client = reqwest::blocking::Client::new();
        let url = format!("http://{}/healthz", self.admin);
        poll(Duration::from_secs(30), "the sidecar's /healthz", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the sidecar exited with {status}:\n{}", self.log());
            }
            client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
    }

    /// SIGKILL: no drain, no flush, the socket file left behind.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("a running sidecar");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and a clean exit within 30 s.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.pid().expect("a running sidecar");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM)");
        self.stop_after_signal()
    }

    /// Waits (30 s at most) for the exit after a signal the test sent.
    pub fn stop_after_signal(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running sidecar");
        poll(Duration::from_secs(30), "the sidecar to exit", || {
            child.try_wait().unwrap()
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Value {
        reqwest::blocking::get(format!("http://{}/status", self.admin))
            .unwrap()
            .json()
            .unwrap()
    }

    /// The org's entry in `/status`.
    pub fn org_status(&self, org: &str) -> Value {
        let status = self.status();
        status["orgs"]
            .as_array()
            .and_then(|orgs| orgs.iter().find(|o| o["org"] == org).cloned())
            .unwrap_or_else(|| panic!("no org {org} in {status}"))
    }

    pub fn generation(&self, org: &str) -> u64 {
        self.org_status(org)["generation"].as_u64().unwrap()
    }

    pub fn metrics(&self) -> String {
        reqwest::blocking::get(format!("http://{}/metrics", self.admin))
            .unwrap()
            .text()
            .unwrap()
    }

    /// A series' value: the line is `<series> <value>` exactly.
    pub fn metric(&self, series: &str) -> Option<u64> {
        self.metrics()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Agent {
    pub user_id: String,
    pub extension: String,
    pub token: String,
}

pub struct ProductOptions {
    pub emulator: EmulatorOptions,
    /// Another host's emulator (the same org, seen from a second host): `emulator` is then not
    /// used.
    pub shared_emulator: Option<Arc<Emulator>>,
    /// `session-timeout-s` of the org (the config allows 60 to 86400).
    pub session_timeout_s: u64,
    pub agents: Vec<Agent>,
    /// More of the org's elements (`<call-log>`, `<click-to-dial>`), before the lookup profile.
    pub org_extra: String,
    /// More elements in the org, after the fixture's profiles (e.g. `<write>`s).
    pub org_children: String,
    /// More top-level sections of the config (e.g. `<fleet>`).
    pub config_tail: String,
    /// More `<param>`s in `<settings>`.
    pub settings_extra: String,
    /// Agents whose entry in the agents file names their org (the config's name).
    pub agents_of_orgs: Vec<(Agent, String)>,
    /// Orgs besides acme, on the same emulator with the same credentials and profile: each
    /// org's name and more of its elements (e.g. its `<click-to-dial>`).
    pub more_orgs: Vec<(String, String)>,
}

impl Default for ProductOptions {
    fn default() -> Self {
        ProductOptions {
            emulator: EmulatorOptions::default_seed(),
            shared_emulator: None,
            session_timeout_s: 7200,
            agents: Vec::new(),
            org_extra: String::new(),
            org_children: String::new(),
            config_tail: String::new(),
            settings_extra: String::new(),
            agents_of_orgs: Vec::new(),
            more_orgs: Vec::new(),
        }
    }
}

/// Field order matters for drop: the shim (and the module in it) goes first, then the sidecar,
/// then the emulator, then the directory.
pub struct Product {
    pub shim: Shim,
    pub sidecar: Sidecar,
    /// Shared with another `Product` when it was started with `shared_emulator`.
    pub emulator: Arc<Emulator>,
    pub dir: tempfile::TempDir,
}

impl Product {
    pub fn start(options: ProductOptions) -> Product {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("conf");
        std::fs::create_dir_all(conf_dir.join("autoload_configs")).unwrap();
        for sub in ["tokens", "spool", "state"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let emulator = match options.shared_emulator {
            Some(emulator) => emulator,
            None => {
                Arc::new(Emulator::start_background(options.emulator).expect("start the emulator"))
            }
        };
        let agents: Vec<Value> = options
            .agents
            .iter()
            .map(|a| {
                serde_json::json!({"user_id": a.user_id, "extension": a.extension,
                                   "token_sha256": sha256_hex(a.token.as_bytes())})
            })
            .chain(options.agents_of_orgs.iter().map(|(a, org)| {
                serde_json::json!({"user_id": a.user_id, "extension": a.extension, "org": org,
                                   "token_sha256": sha256_hex(a.token.as_bytes())})
            }))
            .collect();
        let agents_file = dir.path().join("agents.json");
        std::fs::write(
            &agents_file,
            serde_json::json!({ "agents": agents }).to_string(),
        )
        .unwrap();
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let agent = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sf-emulator/fixtures/test-jwt-private-key.pem"
        );
        let d = dir.path().display();
        let config = format!(
            r#"<configuration name="natterbox_sf.conf" description="end to end">
  <settings>
    <param name="default-org" value="acme"/>
    <param name="lookup-timeout-ms" value="2000"/>
    <param name="token-dir" value="{d}/tokens"/>
    <param name="event-socket" value="{d}/events.sock"/>
    <param name="spool-dir" value="{d}/spool"/>{settings_extra}
  </settings>
  <sidecar>
    <param name="admin-listen" value="{admin}"/>
    <param name="agent-listen" value="{agent}"/>
    <param name="outbox-db" value="{d}/state/outbox.sqlite"/>
    <param name="agent-tokens-file" value="{agents}"/>
  </sidecar>
  <orgs>
    <org name="acme" api-version="68.0" default-country="US" login-url="{login}"{insecure} session-timeout-s="{timeout}">
      <auth flow="jwt-bearer" client-id="{JWT_CLIENT}" username="{INTEGRATION_USER}"
            private-key-file="{key}" audience="https://login.salesforce.com"/>{extra}{profile}{children}
    </org>{more_orgs}
  </orgs>
{tail}</configuration>
"#,
            agents = agents_file.display(),
            login = emulator.login_url(),
            insecure = super::fixture::insecure_attr(&emulator.login_url()),
            timeout = options.session_timeout_s,
            profile = super::fixture::PROFILE,
            // `{pubsub_url}`: the emulator's Pub/Sub API, known once it runs.
            // `{login_url}`, `{org_id}`: the emulator's, e.g. for `<service-cloud-voice>`.
            extra = options
                .org_extra
                .replace("{pubsub_url}", &emulator.pubsub_url())
                .replace("{login_url}", &emulator.login_url())
                .replace("{org_id}", &emulator.org_id()),
            settings_extra = options.settings_extra,
            children = options.org_children,
            tail = options.config_tail,
            more_orgs = options
                .more_orgs
                .iter()
                .map(|(name, extra)| format!(
                    r#"
    <org name="{name}" api-version="68.0" default-country="US" login-url="{login}"{insecure} session-timeout-s="{timeout}">
      <auth flow="jwt-bearer" client-id="{JWT_CLIENT}" username="{INTEGRATION_USER}"
            private-key-file="{key}" audience="https://login.salesforce.com"/>{extra}{profile}
    </org>"#,
                    login = emulator.login_url(),
                    insecure = super::fixture::insecure_attr(&emulator.login_url()),
                    timeout = options.session_timeout_s,
                    profile = super::fixture::PROFILE,
                ))
                .collect::<String>(),
        );
        let config_path = conf_dir.join("autoload_configs/natterbox_sf.conf.xml");
        std::fs::write(&config_path, config).unwrap();
        let sidecar = Sidecar::start(&config_path, &dir.path().join("sidecar.log"), admin, agent);
        let token_file = dir.path().join("tokens/acme.json");
        poll(
            Duration::from_secs(20),
            "the sidecar's first token file",
            || token_file.is_file().then_some(()),
        );
        let mut shim = Shim::start(&conf_dir);
        shim.ok(&format!(
            "load {} mod_natterbox_sf",
            super::module_path().display()
        ));
        Product {
            shim,
            sidecar,
            emulator,
            dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new call from `caller` that runs `sf_lookup` (synchronously); returns its variables.
    pub fn lookup(&mut self, uuid: &str, caller: &str) -> HashMap<String, String> {
        self.shim.ok(&format!(
            "call {uuid} caller_id_number={} destination_number=2000",
            super::shim::escape_arg(caller)
        ));
        let reply = self.shim.ok(&format!("app {uuid} sf_lookup"));
        assert!(
            reply.text().contains("app_status SUCCESS"),
            "{:?}",
            reply.lines
        );
        self.shim.vars(uuid)
    }

    /// The module's `sf status`.
    pub fn module_status(&mut self) -> Value {
        serde_json::from_str(&self.shim.api("status")).expect("sf status is JSON")
    }

    /// The generation of the token the module holds for acme.
    pub fn module_generation(&mut self) -> u64 {
        let status = self.module_status();
        status["orgs"][0]["token"]["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no token generation in {status}"))
    }

    /// Call logs spooled by the module and not yet acknowledged by the sidecar.
    pub fn spooled(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path().join("spool"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".calllog.json").map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Tasks in the org whose `CallObject` is `call_uuid`.
    pub fn tasks_for(&self, call_uuid: &str) -> Vec<Value> {
        self.emulator
            .admin()
            .records("Task")
            .into_iter()
            .filter(|t| t["CallObject"] == call_uuid)
            .collect()
    }

    /// A record's id by a field value.
    pub fn record_id(&self, object: &str, field: &str, value: &str) -> String {
        self.emulator
            .admin()
            .records(object)
            .into_iter()
            .find(|r| r[field] == value)
            .and_then(|r| r["Id"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no {object} with {field}={value}"))
    }
}

/// An agent console: a WebSocket client of the sidecar's `/agent`.
pub type AgentSocket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// Connects to `/agent` on the agent listener as a browser console does: the token in the
/// subprotocol list (`natterbox.agent.v1`, `natterbox.token.<token>`), the server answering
/// `natterbox.agent.v1`. `Err` carries the HTTP status of a refused upgrade.
pub fn connect_agent(agent_listen: SocketAddr, token: &str) -> Result<AgentSocket, u16> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{agent_listen}/agent")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("natterbox.agent.v1, natterbox.token.{token}")
            .parse()
            .unwrap(),
    );
    match tungstenite::connect(request) {
        Ok((socket, response)) => {
            assert_eq!(
                response.headers()["sec-websocket-protocol"],
                "natterbox.agent.v1",
                "the server names the protocol and never echoes the token"
            );
            if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
            }
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("WebSocket connect failed: {e}"),
    }
}

/// The next JSON text frame within `limit` (pings are answered by tungstenite), or None (also
/// when the connection is closed).
pub fn next_json(socket: &mut AgentSocket, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                return Some(serde_json::from_str(text.as_str()).expect("a JSON frame"))
            }
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // Closed or reset (the sidecar went away): no more frames.
            Err(_) => return None,
        }
    }
    None
}
