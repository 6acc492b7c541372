//! Events from the module to the sidecar over the local socket, without ever blocking a call
//! thread: a bounded queue with counted drops. Call logs are spooled to disk before they are
//! sent and deleted when the sidecar acknowledges them, so none is lost while the sidecar is
//! away or restarting. Screen pops wait for the sidecar only until their time-to-live.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use natterbox_common::wire::{CallLog, Message, ScreenPop, MAX_LINE_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
const SPOOL_RESCAN: Duration = Duration::from_secs(5);
const MAX_WAITING_POPS: usize = 1000;

#[derive(Debug, Default)]
pub struct OutboxCounters {
    pub sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_pops_expired: AtomicU64,
    pub call_logs_spooled: AtomicU64,
    pub call_logs_acked: AtomicU64,
    pub spool_errors: AtomicU64,
    pub connected: AtomicU64,
}

/// The sending side, shared by call threads.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::Sender<Message>,
    spool_dir: PathBuf,
    counters: Arc<OutboxCounters>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A call UUID as a file name: FreeSWITCH UUIDs pass through; anything else (an
/// `origination_uuid` set from outside) is reduced to safe characters.
fn spool_path(dir: &Path, call_uuid: &str) -> PathBuf {
    let safe: String = call_uuid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    dir.join(format!(
        "{}.calllog.json",
        if safe.is_empty() { "call" } else { &safe }
    ))
}

fn spool(dir: &Path, log: &CallLog) -> std::io::Result<PathBuf> {
    let path = spool_path(dir, &log.call_uuid);
    natterbox_common::atomic_file::write(&path, &Message::CallLog(log.clone()).to_line(), None)?;
    Ok(path)
}

fn spooled_call_logs(dir: &Path) -> Vec<(PathBuf, CallLog)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut logs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with(".calllog.json") {
            continue;
        }
        match std::fs::read(&path).map(|b| Message::from_line(&b)) {
            Ok(Ok(Message::CallLog(log))) => logs.push((path, log)),
            _ => tracing::warn!(
                "spool file {} is not a call log; left in place",
                path.display()
            ),
        }
    }
    logs.sort_by_key(|(_, log)| log.end_ms);
    logs
}

impl Outbox {
    /// Creates the outbox and the task that owns the connection; the task ends when `stop`
    /// turns true (pending call logs stay spooled).
    pub fn new(
        socket: PathBuf,
        spool_dir: PathBuf,
        capacity: usize,
        stop: watch::Receiver<bool>,
    ) -> (Outbox, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(OutboxCounters::default());
        let outbox = Outbox {
            queue: tx,
            spool_dir: spool_dir.clone(),
            counters: counters.clone(),
        };
        (outbox, run(socket, spool_dir, rx, counters, stop))
    }

    pub fn counters(&self) -> &OutboxCounters {
        &self.counters
    }

    /// Queues the message, or hands it back when the queue is full or closed.
    fn offer(&self, message: Message) -> Option<Message> {
        match self.queue.try_send(message) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => {
                Some(m)
            }
        }
    }

    /// Queues a message that may be lost, counting it when it is.
    fn offer_or_drop(&self, message: Message) {
        if self.offer(message).is_some() {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `worked`: the refused token had served requests before.
    pub fn token_refresh(&self, org: &str, generation: u64, worked: bool) {
        self.offer_or_drop(Message::TokenRefresh {
            org: org.to_string(),
            generation,
            worked,
        });
    }

    pub fn screen_pop(&self, pop: ScreenPop) {
        self.offer_or_drop(Message::ScreenPop(pop));
    }

    /// Never loses the record: if the queue is full it is spooled here and now.
    pub fn call_log(&self, log: CallLog) {
        if let Some(Message::CallLog(log)) = self.offer(Message::CallLog(log)) {
            match spool(&self.spool_dir, &log) {
                Ok(_) => {
                    self.counters
                        .call_logs_spooled
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "call log for {} could not be queued or spooled: {e}",
                        log.call_uuid
                    );
                }
            }
        }
    }
}

struct Connection {
    writer: tokio::net::unix::OwnedWriteHalf,
    acks: mpsc::UnboundedReceiver<String>,
    /// Call logs written on this connection and not yet acknowledged.
    unacked: HashSet<String>,
}

async fn connect(socket: &Path) -> std::io::Result<Connection> {
    let stream = UnixStream::connect(socket).await?;
    let (reader, writer) = stream.into_split();
    let (ack_tx, acks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line.len() > MAX_LINE_BYTES => return,
                Ok(_) => {
                    if let Ok(Message::Ack { call_uuid }) = Message::from_line(&line) {
                        if ack_tx.send(call_uuid).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(Connection {
        writer,
        acks,
        unacked: HashSet::new(),
    })
}

async fn run(
    socket: PathBuf,
    spool_dir: PathBuf,
    mut queue: mpsc::Receiver<Message>,
    counters: Arc<OutboxCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut waiting_pops: VecDeque<ScreenPop> = VecDeque::new();
    let mut connection: Option<Connection> = None;
    let mut backoff = RECONNECT_MIN;
    let mut next_attempt = tokio::time::Instant::now();
    let mut rescan = tokio::time::interval(SPOOL_RESCAN);
    loop {
        if *stop.borrow() {
            return;
        }
        if connection.is_none() && tokio::time::Instant::now() >= next_attempt {
            match connect(&socket).await {
                Ok(mut c) => {
                    counters.connected.store(1, Ordering::Relaxed);
                    backoff = RECONNECT_MIN;
                    let ok = resend_spool(&spool_dir, &mut c, &counters).await
                        && flush_pops(&mut waiting_pops, &mut c, &counters).await;
                    connection = ok.then_some(c);
                }
                Err(_) => {
                    next_attempt = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
            if connection.is_none() {
                counters.connected.store(0, Ordering::Relaxed);
            }
        }
        let retry_at = next_attempt.max(tokio::time::Instant::now() + RECONNECT_MIN);
        let connected = connection.is_some();
        tokio::select! {
            _ = stop.changed() => {}
            message = queue.recv() => {
                let Some(message) = message else { return };
                let keep = handle(message, &spool_dir, connection.as_mut(), &mut waiting_pops, &counters).await;
                if !keep {
                    connection = None;
                    counters.connected.store(0, Ordering::Relaxed);
                }
            }
            ack = async { connection.as_mut().unwrap().acks.recv().await }, if connected => {
                match ack {
                    Some(call_uuid) => {
                        let c = connection.as_mut().unwrap();
                        if c.unacked.remove(&call_uuid) {
                            let _ = std::fs::remove_file(spool_path(&spool_dir, &call_uuid));
                            counters.call_logs_acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // The sidecar went away.
                    None => {
                        connection = None;
                        counters.connected.store(0, Ordering::Relaxed);
                    }
                }
            }
            _ = rescan.tick(), if connected => {
                let c = connection.as_mut().unwrap();
                if !resend_spool(&spool_dir, c, &counters).await {
                    connection = None;
                }
            }
            _ = tokio::time::sleep_until(retry_at), if !connected => {
                expire_pops(&mut waiting_pops, &counters);
            }
        }
    }
}

async fn write(c: &mut Connection, message: &Message, counters: &OutboxCounters) -> bool {
    let ok = c.writer.write_all(&message.to_line()).await.is_ok();
    if ok {
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Sends every spooled call log not already waiting for its ack on this connection.
async fn resend_spool(dir: &Path, c: &mut Connection, counters: &OutboxCounters) -> bool {
    for (_, log) in spooled_call_logs(dir) {
        if c.unacked.contains(&log.call_uuid) {
            continue;
        }
        let uuid = log.call_uuid.clone();
        if !write(c, &Message::CallLog(log), counters).await {
            return false;
        }
        c.unacked.insert(uuid);
    }
    true
}

fn expire_pops(pops: &mut VecDeque<ScreenPop>, counters: &OutboxCounters) {
    let now = now_ms();
    let before = pops.len();
    pops.retain(|p| p.created_at_ms + p.ttl_ms > now);
    counters
        .dropped_pops_expired
        .fetch_add((before - pops.len()) as u64, Ordering::Relaxed);
}

async fn flush_pops(
    pops: &mut VecDeque<ScreenPop>,
    c: &mut Connection,
    counters: &OutboxCounters,
) -> bool {
    expire_pops(pops, counters);
    while let Some(pop) = pops.pop_front() {
        if !write(c, &Message::ScreenPop(pop.clone()), counters).await {
            pops.push_front(pop);
            return false;
        }
    }
    true
}

/// Returns false when the connection broke.
async fn handle(
    message: Message,
    spool_dir: &Path,
    connection: Option<&mut Connection>,
    waiting_pops: &mut VecDeque<ScreenPop>,
    counters: &OutboxCounters,
) -> bool {
    match message {
        Message::CallLog(log) => {
            if let Err(e) = spool(spool_dir, &log) {
                counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("cannot spool call log {}: {e}", log.call_uuid);
            } else {
                counters.call_logs_spooled.fetch_add(1, Ordering::Relaxed);
            }
            let Some(c) = connection else { return true };
            let uuid = log.call_uuid.clone();
            let ok = write(c, &Message::CallLog(log), counters).await;
            if ok {
                c.unacked.insert(uuid);
            }
            ok
        }
        Message::ScreenPop(pop) => {
            if pop.created_at_ms + pop.ttl_ms <= now_ms() {
                counters
                    .dropped_pops_expired
                    .fetch_add(1, Ordering::Relaxed);
                return true;
            }
            // Without a sidecar, or when the write finds it gone (killed before its end of the
            // socket was noticed), the pop waits for the next connection, within its TTL.
            let keep = match connection {
                Some(c) => {
                    if write(c, &Message::ScreenPop(pop.clone()), counters).await {
                        return true;
                    }
                    false
                }
                None => true,
            };
            if waiting_pops.len() >= MAX_WAITING_POPS {
                counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            } else {
                waiting_pops.push_back(pop);
            }
            keep
        }
        other => match connection {
            Some(c) => write(c, &other, counters).await,
            None => {
                // A token refresh nobody can hear: the sidecar refreshes on its own schedule.
                counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                true
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::wire::Direction;
    use tokio::net::UnixListener;

    fn log(uuid: &str) -> CallLog {
        CallLog {
            org: "acme".into(),
            call_uuid: uuid.into(),
            from: "+14155550123".into(),
            to: "1000".into(),
            direction: Direction::Inbound,
            start_ms: 1,
            answer_ms: Some(2),
            end_ms: 3,
            duration_s: 0,
            agent_user_id: None,
            who_id: None,
            what_id: None,
            hangup_cause: "NORMAL_CLEARING".into(),
        }
    }

    async fn next_message(lines: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Message {
        let mut line = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), lines.read_until(b'\n', &mut line))
            .await
            .expect("a message in time")
            .unwrap();
        Message::from_line(&line).unwrap()
    }

    #[tokio::test]
    async fn call_logs_survive_an_absent_sidecar_and_go_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("events.sock");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (outbox, task) = Outbox::new(socket.clone(), spool_dir.clone(), 16, stop);
        let task = tokio::spawn(task);

        outbox.call_log(log("uuid-1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            spool_path(&spool_dir, "uuid-1").exists(),
            "spooled while the sidecar is away"
        );

        let listener = UnixListener::bind(&socket).unwrap();
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let (reader, mut writer) = stream.into_split();
        let mut lines = BufReader::new(reader);
        assert_eq!(
            next_message(&mut lines).await,
            Message::CallLog(log("uuid-1"))
        );
        writer
            .write_all(
                &Message::Ack {
                    call_uuid: "uuid-1".into(),
                }
                .to_line(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!spool_path(&spool_dir, "uuid-1").exists(), "deleted on ack");

        outbox.token_refresh("acme", 3, true);
        assert_eq!(
            next_message(&mut lines).await,
            Message::TokenRefresh {
                org: "acme".into(),
                generation: 3,
                worked: true,
            }
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn expired_pops_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let (outbox, task) = Outbox::new(
            dir.path().join("none.sock"),
            dir.path().to_path_buf(),
            16,
            stop,
        );
        tokio::spawn(task);
        outbox.screen_pop(ScreenPop {
            org: "acme".into(),
            call_uuid: "u".into(),
            agent_user_id: None,
            agent_extension: Some("1001".into()),
            caller_number: "+1".into(),
            record_ids: vec![],
            direction: Direction::Inbound,
            created_at_ms: now_ms(),
            ttl_ms: 50,
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            outbox
                .counters()
                .dropped_pops_expired
                .load(Ordering::Relaxed),
            1
        );
    }

    fn pop(call_uuid: &str) -> ScreenPop {
        ScreenPop {
            org: "acme".into(),
            call_uuid: call_uuid.into(),
            agent_user_id: None,
            agent_extension: Some("1001".into()),
            caller_number: "+14155550123".into(),
            record_ids: vec![],
            direction: Direction::Inbound,
            created_at_ms: now_ms(),
            ttl_ms: 30_000,
        }
    }

    #[tokio::test]
    async fn a_pop_written_to_a_sidecar_already_gone_waits_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        // A connection whose far end was killed before its end of the socket was noticed.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let (_reader, writer) = ours.into_split();
        let (_ack_tx, acks) = mpsc::unbounded_channel();
        let mut connection = Connection {
            writer,
            acks,
            unacked: HashSet::new(),
        };
        let mut waiting = VecDeque::new();
        let counters = OutboxCounters::default();
        let keep = handle(
            Message::ScreenPop(pop("gone-1")),
            dir.path(),
            Some(&mut connection),
            &mut waiting,
            &counters,
        )
        .await;
        assert!(!keep, "the broken connection is given up");
        assert_eq!(
            waiting
                .iter()
                .map(|p| p.call_uuid.as_str())
                .collect::<Vec<_>>(),
            ["gone-1"]
        );
        // Without a connection the pop waits too, and nothing is reported broken.
        let keep = handle(
            Message::ScreenPop(pop("away-2")),
            dir.path(),
            None,
            &mut waiting,
            &counters,
        )
        .await;
        assert!(keep);
        assert_eq!(waiting.len(), 2);
    }

    #[test]
    fn spool_names_are_safe() {
        let p = spool_path(Path::new("/s"), "../../etc/passwd");
        assert_eq!(p, Path::new("/s/etcpasswd.calllog.json"));
    }
}
