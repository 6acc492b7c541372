//! Shared by the integration tests: a config in a temporary directory, the sidecar binary as a
//! child process, and small clients for its socket and HTTP listener.
#![allow(dead_code)]

#[path = "../../../tests/support/redis_server.rs"]
pub mod redis_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use natterbox_common::wire::Message;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_natterbox-sidecar");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory with everything one sidecar needs.
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// `admin-listen`: /healthz, /metrics, /status.
    pub admin: SocketAddr,
    /// `agent-listen`: the agents' /agent WebSocket.
    pub agent: SocketAddr,
    pub agents: Vec<(String, String, String)>,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        Setup {
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            agent: SocketAddr::from(([127, 0, 0, 1], free_port())),
            agents: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("natterbox_sf.conf.xml")
    }

    pub fn socket(&self) -> PathBuf {
        self.path("run/events.sock")
    }

    pub fn token_dir(&self) -> PathBuf {
        self.path("tokens")
    }

    pub fn outbox(&self) -> PathBuf {
        self.path("state/outbox.sqlite")
    }

    /// Writes a secret file (0600) and returns its path.
    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Adds an agent: (user id, extension, token).
    pub fn agent(&mut self, user_id: &str, extension: &str, token: &str) {
        self.agents
            .push((user_id.into(), extension.into(), token.into()));
    }

    /// Writes the config with `orgs` (the inner XML of `<orgs>`) and `extra_sidecar` params.
    pub fn write_config(&self, orgs: &str, extra_sidecar: &str) {
        let agents: Vec<serde_json::Value> = self
            .agents
            .iter()
            .map(|(u, e, t)| {
                serde_json::json!({"user_id": u, "extension": e,
                    "token_sha256": natterbox_sidecar::pops::hex(&natterbox_sidecar::pops::sha256(t.as_bytes()))})
            })
            .collect();
        std::fs::write(
            self.path("agents.json"),
            serde_json::json!({ "agents": agents }).to_string(),
        )
        .unwrap();
        let xml = format!(
            r#"<configuration name="natterbox_sf.conf" description="test">
  <settings>
    <param name="token-dir" value="{tokens}"/>
    <param name="event-socket" value="{socket}"/>
    <param name="spool-dir" value="{spool}"/>
  </settings>
  <sidecar>
    <param name="admin-listen" value="{admin}"/>
    <param name="agent-listen" value="{agent}"/>
    <param name="outbox-db" value="{outbox}"/>
    <param name="agent-tokens-file" value="{agents}"/>
    {extra_sidecar}
  </sidecar>
  <orgs>
{orgs}
  </orgs>
</configuration>"#,
            tokens = self.token_dir().display(),
            socket = self.socket().display(),
            spool = self.path("spool").display(),
            admin = self.admin,
            agent = self.agent,
            outbox = self.outbox().display(),
            agents = self.path("agents.json").display(),
        );
        std::fs::write(self.config_path(), xml).unwrap();
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null());
        // Logs to a file in the test directory, appended across restarts.
        if let Ok(log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("sidecar.log"))
        {
            cmd.stderr(log);
        }
        cmd
    }

    /// Starts the sidecar and waits until /healthz answers.
    pub async fn start(&self) -> Running {
        let child = self.command().spawn().expect("sidecar starts");
        let running = Running {
            child,
            admin: self.admin,
        };
        running.wait_healthy().await;
        running
    }

    /// The sidecar's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("sidecar.log")).unwrap_or_default()
    }

    pub fn token_file(&self, org: &str) -> Option<natterbox_common::handoff::TokenFile> {
        natterbox_common::handoff::read(&natterbox_common::handoff::token_path(
            &self.token_dir(),
            org,
        ))
        .ok()
    }
}

pub struct Running {
    pub child: Child,
    /// The admin listener, where /healthz, /metrics and /status are asked.
    pub admin: SocketAddr,
}

impl Running {
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client
                .get(format!("http://{}/healthz", self.admin))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "sidecar did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric's value (first series whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> u64 {
        let text = self.metrics().await;
        metric_in(&text, prefix).unwrap_or_else(|| panic!("no metric {prefix} in\n{text}"))
    }

    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/status", self.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        std::mem::forget(self);
        status
    }

    /// Waits for the exit after a signal the test already sent.
    pub fn stop_after_signal(mut self) -> std::process::ExitStatus {
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        std::mem::forget(self);
        status
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn metric_in(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The module's side of the event socket.
pub struct ModuleConn {
    write: tokio::net::unix::OwnedWriteHalf,
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
}

impl ModuleConn {
    pub async fn connect(path: &Path) -> ModuleConn {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot connect: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (read, write) = stream.into_split();
        ModuleConn {
            write,
            read: BufReader::new(read),
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.write.write_all(&message.to_line()).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// The next message from the sidecar, or None on timeout / end of stream.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let mut line = String::new();
        match tokio::time::timeout(timeout, self.read.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(Message::from_line(line.as_bytes()).unwrap()),
            _ => None,
        }
    }
}

/// An org without `<auth>` (no tokens), for tests that do not talk to Salesforce.
pub fn org_without_auth(name: &str) -> String {
    format!(
        r#"<org name="{name}"><profile name="default"><object name="Contact"/></profile>
           <screen-pop ttl-ms="30000"/></org>"#
    )
}

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sf-emulator/fixtures");
pub const JWT_CLIENT: &str = "3MVG9Emu.JWT.ClientId.natterbox";
pub const JWT_SECRET: &str = "jwt-app-secret";
pub const CC_CLIENT: &str = "3MVG9Emu.CC.ClientId.natterbox";
pub const CC_SECRET: &str = "cc-app-secret";
pub const REFRESH_TOKEN: &str = "5Aep861Emu.Refresh.Integration.0001";
pub const INTEGRATION_USER: &str = "integration@acme.example";

pub fn key_file(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

pub async fn emulator() -> sf_emulator::Emulator {
    sf_emulator::Emulator::start(sf_emulator::EmulatorOptions::default())
        .await
        .expect("emulator starts")
}

/// An org whose `<auth>` is `auth` (the element's attributes) and whose login URL is `login_url`.
/// A plain-HTTP emulator needs `allow-insecure-http`; an HTTPS one does not get it.
pub fn org_xml(name: &str, login_url: &str, auth: &str, extra: &str) -> String {
    let insecure = insecure_attr(login_url);
    format!(
        r#"<org name="{name}" login-url="{login_url}"{insecure} session-timeout-s="7200">
      <auth {auth}/>
      <profile name="default"><object name="Contact"/></profile>
      {extra}
    </org>"#
    )
}

pub fn jwt_auth(client_id: &str, username: &str, key: &str, audience: &str) -> String {
    format!(
        r#"flow="jwt-bearer" client-id="{client_id}" username="{username}" private-key-file="{key}" audience="{audience}""#
    )
}

/// How many token requests the emulator has seen.
pub fn token_requests(emu: &sf_emulator::Emulator) -> u64 {
    emu.admin().endpoint_count("oauth_token")
}

/// The org's entry in the sidecar's /status.
pub async fn org_status(running: &Running, org: &str) -> serde_json::Value {
    let status = running.status().await;
    status["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org"] == org)
        .cloned()
        .unwrap_or_else(|| panic!("no org {org} in {status}"))
}

/// A REST query with the handed-off token: proves the token works.
pub async fn token_works(token: &natterbox_common::handoff::TokenFile) -> bool {
    let url = format!(
        "{}/services/data/v62.0/query/?q=SELECT+Id+FROM+Account+LIMIT+1",
        token.instance_url
    );
    reqwest::Client::new()
        .get(url)
        .bearer_auth(&token.access_token)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// ` allow-insecure-http="true"` for an `http://` login URL (the emulator's default), else nothing.
pub fn insecure_attr(login_url: &str) -> &'static str {
    if login_url.starts_with("http://") {
        r#" allow-insecure-http="true""#
    } else {
        ""
    }
}

impl Running {
    /// Waits until `n` more outbox delivery rounds have finished than when called: a round that
    /// starts after this call sees everything committed before it, so afterwards the outbox and
    /// Salesforce reflect it (or the loop is not doing what it should).
    pub async fn delivery_rounds(&self, n: u64) {
        let series = "natterbox_sidecar_outbox_delivery_rounds_total";
        let start = self.metric(series).await;
        eventually(
            Duration::from_secs(10 + 2 * n),
            "outbox delivery rounds",
            || async { self.metric(series).await >= start + n },
        )
        .await;
    }
}
