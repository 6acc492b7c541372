//! Events from the module to the sidecar over the local socket, without ever blocking a call
//! thread: a bounded queue with counted drops. Call logs are spooled to disk (by the `sf-spool`
//! thread, see `spool.rs`) while they are sent, and deleted when the sidecar acknowledges them,
//! so none is lost while the sidecar is away or restarting. Screen pops wait for the sidecar only
//! until their time-to-live.
//!
//! The outbox task runs on the engine's runtime and never touches the disk: it hands spool
//! operations to the spool thread without waiting (a local backlog absorbs a slow disk) and
//! receives spooled call logs back from it when a connection needs them.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use natterbox_common::call_control::CallState;
use natterbox_common::record_write::RecordWrite;
use natterbox_common::wire::{CallLog, CallProgress, Message, ScreenPop, MAX_LINE_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::spool::{self, Replayed, SpoolKey, SpoolOp, Spooled};

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
const MAX_WAITING_POPS: usize = 1000;
/// Spool operations in the channel to the spool thread (at least the queue's capacity).
const SPOOL_QUEUE_MIN: usize = 4096;
/// Spooled call logs on their way back from the spool thread.
const REPLAY_QUEUE: usize = 256;
/// Spool operations the outbox task holds while the spool thread is behind; past this it stops
/// taking new messages (the queue then fills and call logs go to the spool thread directly).
const BACKLOG_MAX: usize = 65_536;

#[derive(Debug, Default)]
pub struct OutboxCounters {
    pub sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_pops_expired: AtomicU64,
    pub call_logs_spooled: AtomicU64,
    pub call_logs_acked: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Call logs that found both the queue and the spool thread's channel full.
    pub call_logs_lost: AtomicU64,
    pub connected: AtomicU64,
    /// Call-log and write files in the spool (sent and not yet acknowledged, or waiting for
    /// the sidecar).
    pub spool_depth: AtomicU64,
    /// Record writes handed to the outbox (`delivery="outbox"`, or a sync write that failed).
    pub writes_queued: AtomicU64,
    pub writes_spooled: AtomicU64,
    pub writes_acked: AtomicU64,
    /// Writes that found both the queue and the spool thread's channel full.
    pub writes_lost: AtomicU64,
}

/// What the sidecar must hear again on every new connection: the live state the module holds
/// and a new sidecar (after a restart, even `kill -9`) cannot know (the agents' live calls).
pub type Resync = Arc<dyn Fn() -> Vec<Message> + Send + Sync>;

/// The sending side, shared by call threads.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::Sender<Message>,
    spool: mpsc::Sender<SpoolOp>,
    counters: Arc<OutboxCounters>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The outbox task's side of the spool thread.
struct SpoolLink {
    ops: mpsc::Sender<SpoolOp>,
    /// Operations the channel had no room for, in order.
    backlog: VecDeque<SpoolOp>,
    replayed: mpsc::Receiver<Replayed>,
    epoch: Arc<AtomicU64>,
}

impl SpoolLink {
    /// Hands the operation over without waiting.
    fn push(&mut self, op: SpoolOp) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(op);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(op)) = self.ops.try_send(op) {
            self.backlog.push_back(op);
        }
    }
}

impl Outbox {
    /// Creates the outbox, starts its spool thread, and returns the task that owns the
    /// connection; the task ends when `stop` turns true (pending call logs stay spooled). The
    /// spool thread ends once every `Outbox` clone and the task are gone.
    pub fn new(
        socket: PathBuf,
        spool_dir: PathBuf,
        capacity: usize,
        stop: watch::Receiver<bool>,
        inbound: std::sync::mpsc::Sender<Message>,
        resync: Resync,
    ) -> std::io::Result<(
        Outbox,
        impl std::future::Future<Output = ()>,
        std::thread::JoinHandle<()>,
    )> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (spool_tx, spool_rx) = mpsc::channel(capacity.max(SPOOL_QUEUE_MIN));
        let (replay_tx, replay_rx) = mpsc::channel(REPLAY_QUEUE);
        let counters = Arc::new(OutboxCounters::default());
        let epoch = Arc::new(AtomicU64::new(0));
        let thread = spool::start(
            spool_dir,
            spool_rx,
            replay_tx,
            counters.clone(),
            epoch.clone(),
        )?;
        let outbox = Outbox {
            queue: tx,
            spool: spool_tx.clone(),
            counters: counters.clone(),
        };
        let link = SpoolLink {
            ops: spool_tx,
            backlog: VecDeque::new(),
            replayed: replay_rx,
            epoch,
        };
        Ok((
            outbox,
            run(socket, rx, link, counters, stop, inbound, resync),
            thread,
        ))
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

    /// A change of an agent's call, for their console.
    pub fn call_state(&self, state: CallState) {
        self.offer_or_drop(Message::CallState(state));
    }

    /// The answer to the sidecar's `SwitchCommand` `id`.
    pub fn switch_result(&self, id: u64, error: Option<String>) {
        self.offer_or_drop(Message::SwitchResult {
            id,
            ok: error.is_none(),
            error,
        });
    }

    /// Best effort: the call log at hangup carries what a dropped one would have said.
    pub fn call_progress(&self, progress: CallProgress) {
        self.offer_or_drop(Message::CallProgress(progress));
    }

    /// A call handed to Omni-Channel, or leaving its routing point without an agent (best
    /// effort: the sidecar also clears the routing of an unbridged call when its call log
    /// arrives).
    pub fn omni(&self, message: Message) {
        self.offer_or_drop(message);
    }

    /// The module's metrics for the sidecar's `/metrics`; a newer one follows, so a full queue
    /// drops it.
    pub fn module_metrics(&self, text: String) {
        self.offer_or_drop(Message::ModuleMetrics { text });
    }

    /// A hand-off, never file I/O on the caller's thread: the queue, or when it is full the
    /// spool thread, which spools the record and passes it on to be sent.
    pub fn call_log(&self, log: CallLog) {
        self.durable(Message::CallLog(log));
    }

    /// A record write for the sidecar's outbox, handed off like a call log. False when it was
    /// lost (the queue and the spool thread were both full).
    pub fn record_write(&self, write: RecordWrite) -> bool {
        self.counters.writes_queued.fetch_add(1, Ordering::Relaxed);
        self.durable(Message::RecordWrite(write))
    }

    fn durable(&self, message: Message) -> bool {
        let item = match self.offer(message) {
            None => return true,
            Some(Message::CallLog(log)) => Spooled::CallLog(log),
            Some(Message::RecordWrite(w)) => Spooled::RecordWrite(w),
            Some(_) => return false,
        };
        if let Err(
            mpsc::error::TrySendError::Full(SpoolOp::Overflow(item))
            | mpsc::error::TrySendError::Closed(SpoolOp::Overflow(item)),
        ) = self.spool.try_send(SpoolOp::Overflow(item))
        {
            match &item {
                Spooled::CallLog(_) => &self.counters.call_logs_lost,
                Spooled::RecordWrite(_) => &self.counters.writes_lost,
            }
            .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "{:?} lost: the event queue and the spool writer are both full",
                item.key()
            );
            return false;
        }
        true
    }
}

struct Connection {
    writer: tokio::net::unix::OwnedWriteHalf,
    acks: mpsc::UnboundedReceiver<SpoolKey>,
    /// Call logs and writes sent on this connection and not yet acknowledged.
    unacked: HashSet<SpoolKey>,
    epoch: u64,
}

/// `inbound` takes what the sidecar sends besides acks (call-control commands, presence).
async fn connect(
    socket: &Path,
    epoch: u64,
    inbound: std::sync::mpsc::Sender<Message>,
) -> std::io::Result<Connection> {
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
                Ok(_) => match Message::from_line(&line) {
                    Ok(Message::Ack { call_uuid }) => {
                        if ack_tx.send(SpoolKey::CallLog(call_uuid)).is_err() {
                            return;
                        }
                    }
                    Ok(Message::WriteAck { key }) => {
                        if ack_tx.send(SpoolKey::RecordWrite(key)).is_err() {
                            return;
                        }
                    }
                    Ok(other) => {
                        // Nobody listening (module stopping): nothing to do with it.
                        let _ = inbound.send(other);
                    }
                    Err(_) => {}
                },
            }
        }
    });
    Ok(Connection {
        writer,
        acks,
        unacked: HashSet::new(),
        epoch,
    })
}

async fn run(
    socket: PathBuf,
    mut queue: mpsc::Receiver<Message>,
    mut spool: SpoolLink,
    counters: Arc<OutboxCounters>,
    mut stop: watch::Receiver<bool>,
    inbound: std::sync::mpsc::Sender<Message>,
    resync: Resync,
) {
    let mut waiting_pops: VecDeque<ScreenPop> = VecDeque::new();
    let mut connection: Option<Connection> = None;
    let mut backoff = RECONNECT_MIN;
    let mut next_attempt = tokio::time::Instant::now();
    let mut epoch = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        if connection.is_none() && tokio::time::Instant::now() >= next_attempt {
            epoch += 1;
            match connect(&socket, epoch, inbound.clone()).await {
                Ok(mut c) => {
                    counters.connected.store(1, Ordering::Relaxed);
                    backoff = RECONNECT_MIN;
                    spool.epoch.store(epoch, Ordering::Relaxed);
                    spool.push(SpoolOp::Replay(epoch));
                    if resend_live_state(&resync, &mut c, &counters).await
                        && flush_pops(&mut waiting_pops, &mut c, &counters).await
                    {
                        connection = Some(c);
                    }
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
        let taking = spool.backlog.len() < BACKLOG_MAX;
        tokio::select! {
            _ = stop.changed() => {}
            message = queue.recv(), if taking => {
                let Some(message) = message else { return };
                let keep = handle(message, &mut spool, connection.as_mut(), &mut waiting_pops, &counters).await;
                if !keep {
                    connection = None;
                    counters.connected.store(0, Ordering::Relaxed);
                }
            }
            replayed = spool.replayed.recv() => {
                // None: the spool thread is gone (it only ends after this task).
                let Some(Replayed { epoch: wanted, item }) = replayed else { return };
                if let Some(c) = connection.as_mut() {
                    if (wanted == 0 || wanted == c.epoch) && !send_spooled(c, item, &counters).await {
                        connection = None;
                        counters.connected.store(0, Ordering::Relaxed);
                    }
                }
            }
            ack = async { connection.as_mut().unwrap().acks.recv().await }, if connected => {
                match ack {
                    Some(key) => {
                        let c = connection.as_mut().unwrap();
                        if c.unacked.remove(&key) {
                            match key {
                                SpoolKey::CallLog(_) => &counters.call_logs_acked,
                                SpoolKey::RecordWrite(_) => &counters.writes_acked,
                            }
                            .fetch_add(1, Ordering::Relaxed);
                            spool.push(SpoolOp::Remove(key));
                        }
                    }
                    // The sidecar went away.
                    None => {
                        connection = None;
                        counters.connected.store(0, Ordering::Relaxed);
                    }
                }
            }
            // The spool thread has room again for what it could not take.
            permit = spool.ops.clone().reserve_owned(), if !spool.backlog.is_empty() => {
                if let (Ok(permit), Some(op)) = (permit, spool.backlog.pop_front()) {
                    permit.send(op);
                }
            }
            _ = tokio::time::sleep_until(retry_at), if !connected => {
                expire_pops(&mut waiting_pops, &counters);
            }
        }
    }
}

/// Tells a new connection what it cannot know (see `Resync`). False when the connection broke.
async fn resend_live_state(resync: &Resync, c: &mut Connection, counters: &OutboxCounters) -> bool {
    for message in resync() {
        if !write(c, &message, counters).await {
            return false;
        }
    }
    true
}

async fn write(c: &mut Connection, message: &Message, counters: &OutboxCounters) -> bool {
    let ok = c.writer.write_all(&message.to_line()).await.is_ok();
    if ok {
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Sends a call log or write unless this connection already carries it. False when the
/// connection broke.
async fn send_spooled(c: &mut Connection, item: Spooled, counters: &OutboxCounters) -> bool {
    let key = item.key();
    if c.unacked.contains(&key) {
        return true;
    }
    if !write(c, &item.to_message(), counters).await {
        return false;
    }
    c.unacked.insert(key);
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
    spool: &mut SpoolLink,
    connection: Option<&mut Connection>,
    waiting_pops: &mut VecDeque<ScreenPop>,
    counters: &OutboxCounters,
) -> bool {
    match message {
        Message::CallLog(log) => {
            let item = Spooled::CallLog(log);
            spool.push(SpoolOp::Write(item.clone()));
            match connection {
                Some(c) => send_spooled(c, item, counters).await,
                None => true,
            }
        }
        Message::RecordWrite(w) => {
            let item = Spooled::RecordWrite(w);
            spool.push(SpoolOp::Write(item.clone()));
            match connection {
                Some(c) => send_spooled(c, item, counters).await,
                None => true,
            }
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
        // A snapshot nobody can hear: a newer one follows.
        Message::ModuleMetrics { .. } if connection.is_none() => true,
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
    use crate::spool::spool_path;
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
            recording_url: None,
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

    /// Polls `done` until it holds, for at most 5 s.
    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn every_new_connection_hears_the_live_state_first() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("events.sock");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let live = Message::TokenRefresh {
            org: "acme".into(),
            generation: 7,
            worked: true,
        };
        let resync_live = live.clone();
        let (outbox, task, spool_thread) = Outbox::new(
            socket.clone(),
            spool_dir,
            16,
            stop,
            std::sync::mpsc::channel().0,
            Arc::new(move || vec![resync_live.clone()]),
        )
        .unwrap();
        let task = tokio::spawn(task);
        let listener = UnixListener::bind(&socket).unwrap();
        for _ in 0..2 {
            // A sidecar (the first, then one started after the first died) hears it first.
            let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let (reader, _writer) = stream.into_split();
            let mut lines = BufReader::new(reader);
            assert_eq!(next_message(&mut lines).await, live);
            outbox.call_log(log("uuid-r"));
            assert_eq!(
                next_message(&mut lines).await,
                Message::CallLog(log("uuid-r"))
            );
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        drop(outbox);
        tokio::task::spawn_blocking(move || spool_thread.join().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn call_logs_survive_an_absent_sidecar_and_go_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("events.sock");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (outbox, task, spool_thread) = Outbox::new(
            socket.clone(),
            spool_dir.clone(),
            16,
            stop,
            std::sync::mpsc::channel().0,
            Arc::new(Vec::new),
        )
        .unwrap();
        let task = tokio::spawn(task);

        outbox.call_log(log("uuid-1"));
        // The spool thread writes the file, then counts it: wait for both.
        eventually("spooled while the sidecar is away", || {
            spool_path(&spool_dir, "uuid-1").exists()
                && outbox.counters().spool_depth.load(Ordering::Relaxed) == 1
        })
        .await;

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
        eventually("deleted on ack", || {
            !spool_path(&spool_dir, "uuid-1").exists()
                && outbox.counters().spool_depth.load(Ordering::Relaxed) == 0
        })
        .await;

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
        drop(outbox);
        tokio::task::spawn_blocking(move || spool_thread.join().unwrap())
            .await
            .unwrap();
    }

    /// With the queue full, the caller's thread hands the call log to the spool thread and
    /// returns; the spool thread writes it and passes it on to be sent.
    #[tokio::test]
    async fn a_full_queue_hands_call_logs_to_the_spool_thread() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("events.sock");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let (outbox, task, _spool_thread) = Outbox::new(
            socket.clone(),
            spool_dir.clone(),
            1,
            stop,
            std::sync::mpsc::channel().0,
            Arc::new(Vec::new),
        )
        .unwrap();
        // The task is not running yet: the queue holds one message.
        outbox.call_log(log("queued"));
        outbox.call_log(log("overflow-1"));
        outbox.call_log(log("overflow-2"));
        eventually("the overflowing call logs are spooled", || {
            spool_path(&spool_dir, "overflow-1").exists()
                && spool_path(&spool_dir, "overflow-2").exists()
        })
        .await;
        assert!(!spool_path(&spool_dir, "queued").exists());
        assert_eq!(outbox.counters().call_logs_lost.load(Ordering::Relaxed), 0);

        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(task);
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let (reader, _writer) = stream.into_split();
        let mut lines = BufReader::new(reader);
        let mut sent = Vec::new();
        for _ in 0..3 {
            match next_message(&mut lines).await {
                Message::CallLog(log) => sent.push(log.call_uuid),
                other => panic!("{other:?}"),
            }
        }
        sent.sort();
        assert_eq!(sent, ["overflow-1", "overflow-2", "queued"], "each once");
    }

    #[tokio::test]
    async fn expired_pops_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let (outbox, task, _spool_thread) = Outbox::new(
            dir.path().join("none.sock"),
            dir.path().to_path_buf(),
            16,
            stop,
            std::sync::mpsc::channel().0,
            Arc::new(Vec::new),
        )
        .unwrap();
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
            record: None,
        });
        eventually("the pop expires", || {
            outbox
                .counters()
                .dropped_pops_expired
                .load(Ordering::Relaxed)
                == 1
        })
        .await;
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
            record: None,
        }
    }

    #[tokio::test]
    async fn a_pop_written_to_a_sidecar_already_gone_waits_for_the_next_one() {
        // A connection whose far end was killed before its end of the socket was noticed.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let (_reader, writer) = ours.into_split();
        let (_ack_tx, acks) = mpsc::unbounded_channel();
        let mut connection = Connection {
            writer,
            acks,
            unacked: HashSet::new(),
            epoch: 1,
        };
        let (ops, _ops_rx) = mpsc::channel(4);
        let (_replay_tx, replayed) = mpsc::channel(4);
        let mut spool = SpoolLink {
            ops,
            backlog: VecDeque::new(),
            replayed,
            epoch: Arc::new(AtomicU64::new(1)),
        };
        let mut waiting = VecDeque::new();
        let counters = OutboxCounters::default();
        let keep = handle(
            Message::ScreenPop(pop("gone-1")),
            &mut spool,
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
            &mut spool,
            None,
            &mut waiting,
            &counters,
        )
        .await;
        assert!(keep);
        assert_eq!(waiting.len(), 2);
    }
}
