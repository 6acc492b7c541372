//! One host's connection to the fleet's Redis, and what it knows about its health.
//!
//! Every command runs under a deadline: the shorter of `redis-timeout-ms` and what is left of
//! the caller's own deadline. A command that times out or loses the connection marks the link
//! down; while it is down, commands are skipped at once (no I/O, no waiting) and one background
//! task reconnects. The module goes on to Salesforce: Redis never holds or fails a call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::config::FleetSettings;

/// Why a command was not answered; the caller goes on without Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The link is down (a reconnect is under way).
    Down,
    /// Nothing of the caller's deadline was left for a round trip.
    NoTime,
    /// No answer within the deadline; the link is now down.
    TimedOut,
    /// Redis answered with an error (the link stays up).
    Failed(String),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::Down => f.write_str("redis is down"),
            Skipped::NoTime => f.write_str("no time left for redis"),
            Skipped::TimedOut => f.write_str("redis did not answer in time"),
            Skipped::Failed(e) => write!(f, "redis error: {e}"),
        }
    }
}

/// A change of the link's health, for the host to announce (the module fires a CUSTOM event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    Up,
    Down { reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub up: bool,
    pub commands: u64,
    pub skipped_down: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

type Observer = Box<dyn Fn(&LinkChange) + Send + Sync>;

pub struct RedisLink {
    client: redis::Client,
    timeout: Duration,
    connection: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    reconnecting: AtomicBool,
    commands: AtomicU64,
    skipped_down: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    observer: Mutex<Option<Arc<Observer>>>,
    runtime: tokio::runtime::Handle,
    /// For background tasks, which end when the link is dropped.
    me: Weak<RedisLink>,
}

/// Longest wait for a new connection and its first PING while reconnecting (in the background).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const HEALTH_CHECK_EVERY: Duration = Duration::from_millis(500);
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause between reconnect attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

impl RedisLink {
    /// Starts connecting in the background on `runtime`; commands are skipped until it is up.
    pub fn start(
        settings: &FleetSettings,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<RedisLink>, String> {
        // The URL may hold a password: the error says what is wrong, never the URL.
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| format!("<fleet> redis-url is not a Redis URL ({:?})", e.kind()))?;
        let link = Arc::new_cyclic(|me| RedisLink {
            client,
            timeout: settings.redis_timeout,
            connection: RwLock::new(None),
            up: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            commands: AtomicU64::new(0),
            skipped_down: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(Some("not connected yet".into())),
            observer: Mutex::new(None),
            runtime,
            me: me.clone(),
        });
        link.spawn_reconnect();
        link.runtime.spawn(check_health(link.me.clone()));
        Ok(link)
    }

    /// Called on every change of health, from a runtime thread.
    pub fn observe(&self, observer: impl Fn(&LinkChange) + Send + Sync + 'static) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(Box::new(observer)));
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            up: self.is_up(),
            commands: self.commands.load(Ordering::Relaxed),
            skipped_down: self.skipped_down.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Runs one command (or pipeline, or script invocation) within the shorter of
    /// `redis-timeout-ms` and `deadline`.
    pub async fn run<T, F, Fut>(&self, deadline: Instant, command: F) -> Result<T, Skipped>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some(connection) = self.connection() else {
            self.skipped_down.fetch_add(1, Ordering::Relaxed);
            return Err(Skipped::Down);
        };
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(self.timeout);
        if budget.is_zero() {
            return Err(Skipped::NoTime);
        }
        self.commands.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(budget, command(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                // A budget cut short by the caller's deadline says nothing about Redis.
                if budget >= self.timeout {
                    self.mark_down(format!("no answer within {} ms", budget.as_millis()));
                }
                Err(Skipped::TimedOut)
            }
            Ok(Err(e)) if is_connection_error(&e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.mark_down(format!("connection lost ({:?})", e.kind()));
                Err(Skipped::Down)
            }
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(Skipped::Failed(e.to_string()))
            }
        }
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn mark_down(&self, reason: String) {
        let was_up = self.up.swap(false, Ordering::AcqRel);
        *self.connection.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        if was_up {
            tracing::warn!("redis link down: {reason}; lookups go on without it");
            self.notify(&LinkChange::Down { reason });
        }
        self.spawn_reconnect();
    }

    fn notify(&self, change: &LinkChange) {
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(observer) = observer {
            observer(change);
        }
    }

    fn spawn_reconnect(&self) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.runtime.spawn(reconnect(self.me.clone()));
    }
}

/// PINGs now and then while the link is up, so a Redis that died between lookups is known to be
/// down before a call finds out (and `sf status` says so). Ends when the link is dropped.
async fn check_health(link: Weak<RedisLink>) {
    loop {
        tokio::time::sleep(HEALTH_CHECK_EVERY).await;
        let Some(this) = link.upgrade() else { return };
        if this.is_up() {
            let deadline = Instant::now() + this.timeout.max(HEALTH_CHECK_TIMEOUT);
            let _ = this
                .run(deadline, |mut c| async move {
                    redis::cmd("PING").query_async::<String>(&mut c).await
                })
                .await;
        }
    }
}

/// Connects (and PINGs) until Redis answers, then swaps the new connection in. Ends when the
/// link is dropped.
async fn reconnect(link: Weak<RedisLink>) {
    loop {
        let Some(this) = link.upgrade() else { return };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT * 2, async {
            let mut connection = this
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(connection)
        })
        .await;
        match attempt {
            Ok(Ok(connection)) => {
                *this.connection.write().unwrap_or_else(|e| e.into_inner()) = Some(connection);
                *this.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                this.reconnects.fetch_add(1, Ordering::Relaxed);
                this.reconnecting.store(false, Ordering::Release);
                this.up.store(true, Ordering::Release);
                tracing::info!("redis link up");
                this.notify(&LinkChange::Up);
                return;
            }
            Ok(Err(e)) => {
                *this.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("cannot connect ({:?})", e.kind()));
            }
            Err(_) => {
                *this.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some("cannot connect (timed out)".into());
            }
        }
        drop(this);
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || e.is_timeout()
}
