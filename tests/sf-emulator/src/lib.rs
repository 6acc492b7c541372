//! Salesforce org emulator: one running instance is one org (OAuth, REST, SOAP, admin API with
//! fault injection). See README.md for the seed format, the admin API and what is not emulated.

#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
pub mod faults;
pub mod http;
pub mod ids;
pub mod oauth;
pub mod omni;
pub mod phone_match;
pub mod pubsub;
pub mod rest;
pub mod rsakey;
pub mod schema;
pub mod search_term;
pub mod seed;
pub mod server;
pub mod sessions;
pub mod soap;
pub mod soql;
pub mod sosl;
pub mod state;
pub mod stats;
pub mod store;
pub mod telephony;
pub mod tls;
pub mod util;

pub use admin::{Admin, ConfigUpdate, LimitsUpdate};
pub use faults::FaultRule;
pub use phone_match::{PhoneMatch, PhoneMatchMode};
pub use seed::Seed;
pub use state::Limits;
pub use stats::QueryLogEntry;
pub use telephony::DuplicateCreate;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How to run one emulated org.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// Serve HTTPS with a generated CA + certificate (or `tls_cert_pem`/`tls_key_pem`).
    pub tls: bool,
    pub tls_cert_pem: Option<String>,
    pub tls_key_pem: Option<String>,
    pub seed: Seed,
    /// Records per query page (Salesforce: 2000).
    pub query_batch_size: usize,
    /// Inactivity timeout of access tokens (Salesforce default: 2 h).
    pub session_timeout: Duration,
    /// The `instance_url` handed out. Default: same scheme and port, host `localhost` when bound
    /// to 127.0.0.1 (a different origin from the login URL), else the login URL.
    pub instance_url: Option<String>,
    /// SOSL phone matching for this instance; `None` = the seed's `phone_match` (default
    /// `exact`). See `PhoneMatch`.
    pub phone_match: Option<PhoneMatch>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self::default_seed()
    }
}

impl EmulatorOptions {
    /// Options with the built-in seed (`fixtures/default-seed.json`).
    pub fn default_seed() -> Self {
        EmulatorOptions {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls: false,
            tls_cert_pem: None,
            tls_key_pem: None,
            seed: Seed::default_seed(),
            query_batch_size: 2000,
            session_timeout: Duration::from_secs(7200),
            instance_url: None,
            phone_match: None,
        }
    }

    /// The same options with another SOSL phone-matching rule.
    pub fn with_phone_match(mut self, phone_match: PhoneMatch) -> Self {
        self.phone_match = Some(phone_match);
        self
    }

    /// Options with a seed file (see README "Seed file").
    pub fn with_seed_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(EmulatorOptions {
            seed: Seed::from_file(path.as_ref())?,
            ..Self::default_seed()
        })
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    org: Arc<state::Org>,
    addr: SocketAddr,
    /// The Pub/Sub API's (gRPC) port, on the same address.
    pubsub_addr: SocketAddr,
    ca_pem: Option<String>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn urls(opts: &EmulatorOptions, addr: SocketAddr) -> (String, String) {
    let scheme = if opts.tls { "https" } else { "http" };
    let host = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let login = format!("{scheme}://{host}:{}", addr.port());
    let instance = match &opts.instance_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) => {
            format!("{scheme}://localhost:{}", addr.port())
        }
        None => login.clone(),
    };
    (login, instance)
}

impl Emulator {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(opts: EmulatorOptions) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(opts.bind).await?;
        let addr = listener.local_addr()?;
        let (login, instance) = urls(&opts, addr);
        let tls = if opts.tls {
            Some(match (&opts.tls_cert_pem, &opts.tls_key_pem) {
                (Some(c), Some(k)) => tls::from_pem(c, k)?,
                _ => tls::generate()?,
            })
        } else {
            None
        };
        let mut seed = opts.seed.clone();
        if let Some(m) = opts.phone_match {
            seed.phone_match = m;
        }
        let org = state::Org::new(
            seed,
            login,
            instance,
            opts.session_timeout,
            opts.query_batch_size,
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let org = Arc::new(org);
        let (tx, rx) = watch::channel(false);
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let pubsub_listener = tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let pubsub_addr = pubsub_listener.local_addr()?;
        tokio::spawn(pubsub::serve(pubsub_listener, org.clone(), rx.clone()));
        tokio::spawn(server::run(listener, acceptor, org.clone(), rx));
        Ok(Emulator {
            org,
            addr,
            pubsub_addr,
            ca_pem: tls.map(|t| t.ca_pem),
            shutdown: tx,
            thread: None,
        })
    }

    /// Starts on its own runtime thread, for tests that are not async. Stops on drop.
    pub fn start_background(opts: EmulatorOptions) -> std::io::Result<Emulator> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sf-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match Emulator::start(opts).await {
                        Ok(emu) => {
                            let mut stop = emu.shutdown.subscribe();
                            let _ = ready_tx.send(Ok(emu.handle_parts()));
                            let _ = stop.changed().await;
                            drop(emu);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let parts = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("emulator thread ended before starting"))??;
        Ok(Emulator {
            org: parts.0,
            addr: parts.1,
            ca_pem: parts.2,
            shutdown: parts.3,
            pubsub_addr: parts.4,
            thread: Some(thread),
        })
    }

    fn handle_parts(
        &self,
    ) -> (
        Arc<state::Org>,
        SocketAddr,
        Option<String>,
        watch::Sender<bool>,
        SocketAddr,
    ) {
        // The background handle shares the shutdown channel: sending on it ends the thread.
        let (tx, _) = watch::channel(false);
        let forward = tx.clone();
        let own = self.shutdown.clone();
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let _ = rx.changed().await;
            let _ = own.send(true);
            drop(forward);
        });
        (
            self.org.clone(),
            self.addr,
            self.ca_pem.clone(),
            tx,
            self.pubsub_addr,
        )
    }

    /// e.g. `http://127.0.0.1:PORT` (token endpoint and SOAP login live here).
    pub fn login_url(&self) -> String {
        self.org.login_url.clone()
    }

    /// The `instance_url` in token responses, e.g. `http://localhost:PORT`.
    pub fn instance_url(&self) -> String {
        self.org.instance_url.clone()
    }

    /// 18-char org id (`00D…`).
    pub fn org_id(&self) -> String {
        self.org.org_id.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Pub/Sub API (gRPC over plain HTTP/2), e.g. `http://127.0.0.1:PORT`.
    pub fn pubsub_url(&self) -> String {
        format!("http://{}", self.pubsub_addr)
    }

    /// PEM of the CA that signed the HTTPS certificate (when `tls`).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    pub fn admin(&self) -> Admin {
        Admin::new(self.org.clone())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
