//! The call-log spool on disk, written and read on a thread of its own (`sf-spool`): neither
//! FreeSWITCH's threads nor the runtime thread that serves lookups ever wait on the disk.
//!
//! One file per call log (`<uuid>.calllog.json`, mode 0600). Operations arrive on a bounded
//! channel and are applied in arrival order, in batches: each new file is written to a temporary
//! name, fsynced and renamed; the directory is fsynced once per batch (not once per file), so a
//! batch of N call logs costs N + 1 fsyncs. A file is deleted only when the sidecar has
//! acknowledged the call log, which it does after committing it to its own outbox; deletions are
//! not fsynced (one lost in a crash makes the sidecar see the call log again, and it keeps one
//! Task per call UUID). At every moment a call log is therefore in memory on its way here (at
//! most one batch, as before in the outbox queue), on disk, or in the sidecar's outbox.
//!
//! Reading the spool back (after a reconnection) streams the files to the outbox task through a
//! bounded channel, so a spool of 100 000 call logs costs the runtime one small message at a
//! time and never a directory scan.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use natterbox_common::record_write::RecordWrite;
use natterbox_common::wire::{CallLog, Message};
use tokio::sync::mpsc;

use crate::outbox::OutboxCounters;

/// Operations applied per batch before the directory is fsynced.
const BATCH_MAX: usize = 256;
/// While reading the spool back, other operations are applied every this many files.
const REPLAY_INTERLEAVE: usize = 64;

/// What the spool keeps until the sidecar has it: call logs, and record writes for the
/// sidecar's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spooled {
    CallLog(CallLog),
    RecordWrite(RecordWrite),
}

/// What the sidecar acknowledges: a call log by its call UUID, a write by its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpoolKey {
    CallLog(String),
    RecordWrite(String),
}

impl Spooled {
    pub fn key(&self) -> SpoolKey {
        match self {
            Spooled::CallLog(log) => SpoolKey::CallLog(log.call_uuid.clone()),
            Spooled::RecordWrite(w) => SpoolKey::RecordWrite(w.key.clone()),
        }
    }

    pub fn to_message(&self) -> Message {
        match self {
            Spooled::CallLog(log) => Message::CallLog(log.clone()),
            Spooled::RecordWrite(w) => Message::RecordWrite(w.clone()),
        }
    }

    fn from_message(message: Message) -> Option<Spooled> {
        match message {
            Message::CallLog(log) => Some(Spooled::CallLog(log)),
            Message::RecordWrite(w) => Some(Spooled::RecordWrite(w)),
            _ => None,
        }
    }
}

pub enum SpoolOp {
    /// A call log or write the outbox task sends itself.
    Write(Spooled),
    /// One the outbox task never saw (its queue was full): spooled, then handed to it.
    Overflow(Spooled),
    /// The sidecar acknowledged this call UUID or write key.
    Remove(SpoolKey),
    /// Read everything spooled back for connection `epoch`.
    Replay(u64),
}

/// A call log or write read back (or spooled on overflow) for the outbox task to send.
/// `epoch` 0: for whatever connection is up.
pub struct Replayed {
    pub epoch: u64,
    pub item: Spooled,
}

/// A call UUID as a file name: FreeSWITCH UUIDs pass through; anything else (an
/// `origination_uuid` set from outside) is reduced to safe characters.
pub fn spool_path(dir: &Path, call_uuid: &str) -> PathBuf {
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

/// A write key (`<call uuid>.<write name>`) as a file name, reduced to safe characters.
pub fn write_spool_path(dir: &Path, key: &str) -> PathBuf {
    let safe: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(160)
        .collect();
    let safe = safe.trim_start_matches('.');
    dir.join(format!(
        "{}.write.json",
        if safe.is_empty() { "write" } else { safe }
    ))
}

fn path_for(dir: &Path, key: &SpoolKey) -> PathBuf {
    match key {
        SpoolKey::CallLog(uuid) => spool_path(dir, uuid),
        SpoolKey::RecordWrite(key) => write_spool_path(dir, key),
    }
}

/// Writes the file under a temporary name, fsynced and renamed; the caller fsyncs the directory.
/// Returns whether the file is new.
fn write_unsynced_dir(dir: &Path, item: &Spooled) -> std::io::Result<bool> {
    let path = path_for(dir, &item.key());
    let existed = path.exists();
    let tmp = path.with_extension("json.tmp");
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(&item.to_message().to_line())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| !existed)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The spooled call-log files, oldest first.
fn spooled_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".calllog.json") || name.ends_with(".write.json")
        })
        .map(|e| {
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (modified, e.path())
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, path)| path).collect()
}

fn read_spooled(path: &Path) -> Option<Spooled> {
    match fs::read(path).map(|b| Message::from_line(&b).map(Spooled::from_message)) {
        Ok(Ok(Some(item))) => Some(item),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => {
            tracing::warn!(
                "spool file {} is not a call log or write; left in place",
                path.display()
            );
            None
        }
    }
}

struct SpoolWriter {
    dir: PathBuf,
    counters: Arc<OutboxCounters>,
    replayed: mpsc::Sender<Replayed>,
    /// The outbox task's current connection: a replay for an older one stops early.
    epoch: Arc<AtomicU64>,
    dir_dirty: bool,
    overflowed: Vec<Spooled>,
}

impl SpoolWriter {
    /// Applies one operation; a replay is handed back to run after the batch.
    fn apply(&mut self, op: SpoolOp, replays: &mut VecDeque<u64>) {
        match op {
            SpoolOp::Write(item) => {
                self.write(&item);
            }
            SpoolOp::Overflow(item) => {
                // Sent even when it could not be spooled: the sidecar's outbox keeps it then.
                self.write(&item);
                self.overflowed.push(item);
            }
            SpoolOp::Remove(key) => match fs::remove_file(path_for(&self.dir, &key)) {
                Ok(()) => {
                    self.counters.spool_depth.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove the spooled {key:?}: {e}"),
            },
            SpoolOp::Replay(epoch) => replays.push_back(epoch),
        }
    }

    fn write(&mut self, item: &Spooled) {
        match write_unsynced_dir(&self.dir, item) {
            Ok(new) => {
                self.dir_dirty = true;
                if new {
                    self.counters.spool_depth.fetch_add(1, Ordering::Relaxed);
                }
                match item {
                    Spooled::CallLog(_) => &self.counters.call_logs_spooled,
                    Spooled::RecordWrite(_) => &self.counters.writes_spooled,
                }
                .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("cannot spool {:?}: {e}", item.key());
            }
        }
    }

    /// Makes the batch's renames durable, then hands over the call logs spooled on overflow.
    /// False when the outbox task is gone.
    fn end_batch(&mut self) -> bool {
        if self.dir_dirty {
            if let Err(e) = sync_dir(&self.dir) {
                self.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("cannot fsync the spool dir {}: {e}", self.dir.display());
            }
            self.dir_dirty = false;
        }
        for item in std::mem::take(&mut self.overflowed) {
            if self
                .replayed
                .blocking_send(Replayed { epoch: 0, item })
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Streams every spooled call log to the outbox task, applying the operations that arrive
    /// meanwhile. False when the outbox task is gone.
    fn replay(
        &mut self,
        epoch: u64,
        ops: &mut mpsc::Receiver<SpoolOp>,
        replays: &mut VecDeque<u64>,
    ) -> bool {
        let files = spooled_files(&self.dir);
        self.counters
            .spool_depth
            .store(files.len() as u64, Ordering::Relaxed);
        for (i, path) in files.iter().enumerate() {
            if self.epoch.load(Ordering::Relaxed) != epoch {
                // That connection is gone; the next one asks again.
                return true;
            }
            if let Some(item) = read_spooled(path) {
                if self
                    .replayed
                    .blocking_send(Replayed { epoch, item })
                    .is_err()
                {
                    return false;
                }
            }
            if i % REPLAY_INTERLEAVE == REPLAY_INTERLEAVE - 1 {
                while let Ok(op) = ops.try_recv() {
                    self.apply(op, replays);
                }
                if !self.end_batch() {
                    return false;
                }
            }
        }
        true
    }
}

/// Starts the `sf-spool` thread. It ends when every sender of `ops` is gone, after applying
/// what they sent (pending call logs are spooled, not lost).
pub fn start(
    dir: PathBuf,
    mut ops: mpsc::Receiver<SpoolOp>,
    replayed: mpsc::Sender<Replayed>,
    counters: Arc<OutboxCounters>,
    epoch: Arc<AtomicU64>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sf-spool".into())
        .spawn(move || {
            let mut writer = SpoolWriter {
                counters,
                replayed,
                epoch,
                dir_dirty: false,
                overflowed: Vec::new(),
                dir,
            };
            writer
                .counters
                .spool_depth
                .store(spooled_files(&writer.dir).len() as u64, Ordering::Relaxed);
            let mut replays = VecDeque::new();
            while let Some(op) = ops.blocking_recv() {
                writer.apply(op, &mut replays);
                let mut applied = 1;
                while applied < BATCH_MAX {
                    match ops.try_recv() {
                        Ok(op) => writer.apply(op, &mut replays),
                        Err(_) => break,
                    }
                    applied += 1;
                }
                let mut alive = writer.end_batch();
                while let Some(epoch) = replays.pop_front() {
                    alive = alive && writer.replay(epoch, &mut ops, &mut replays);
                    alive = alive && writer.end_batch();
                }
                if !alive {
                    // The outbox task is gone (shutdown): keep applying writes until the
                    // senders are gone too, so nothing handed over is lost.
                    continue;
                }
            }
            writer.end_batch();
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::wire::Direction;

    fn log(uuid: &str) -> CallLog {
        CallLog {
            org: "acme".into(),
            call_uuid: uuid.into(),
            from: "+14155550123".into(),
            to: "1000".into(),
            direction: Direction::Inbound,
            start_ms: 1,
            answer_ms: None,
            end_ms: 3,
            duration_s: 0,
            agent_user_id: None,
            who_id: None,
            what_id: None,
            hangup_cause: "NORMAL_CLEARING".into(),
            recording_url: None,
        }
    }

    #[test]
    fn spool_names_are_safe() {
        let p = spool_path(Path::new("/s"), "../../etc/passwd");
        assert_eq!(p, Path::new("/s/etcpasswd.calllog.json"));
        let w = write_spool_path(Path::new("/s"), "../../x/y.vip_case");
        assert_eq!(w, Path::new("/s/xy.vip_case.write.json"));
    }

    #[test]
    fn writes_removes_and_replays_in_order_on_its_own_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (ops, ops_rx) = mpsc::channel(16);
        let (replay_tx, mut replayed) = mpsc::channel(16);
        let counters = Arc::new(OutboxCounters::default());
        let epoch = Arc::new(AtomicU64::new(7));
        let thread = start(
            dir.path().to_path_buf(),
            ops_rx,
            replay_tx,
            counters.clone(),
            epoch,
        )
        .unwrap();
        for op in [
            SpoolOp::Write(Spooled::CallLog(log("a"))),
            SpoolOp::Write(Spooled::CallLog(log("b"))),
            SpoolOp::Overflow(Spooled::CallLog(log("c"))),
            SpoolOp::Remove(SpoolKey::CallLog("a".into())),
            SpoolOp::Replay(7),
        ] {
            ops.blocking_send(op).unwrap();
        }
        let mut got: Vec<(u64, String)> = (0..3)
            .map(|_| {
                let r = replayed.blocking_recv().expect("a replayed call log");
                match r.item {
                    Spooled::CallLog(log) => (r.epoch, log.call_uuid),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        got.sort();
        // The overflow once for any connection, then b and c for connection 7; a is gone.
        assert_eq!(
            got,
            [
                (0, "c".to_string()),
                (7, "b".to_string()),
                (7, "c".to_string())
            ]
        );
        assert_eq!(counters.spool_depth.load(Ordering::Relaxed), 2);
        assert_eq!(counters.call_logs_spooled.load(Ordering::Relaxed), 3);
        let mode = fs::metadata(spool_path(dir.path(), "b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Writes handed over before the last sender goes are applied, then the thread ends.
        ops.blocking_send(SpoolOp::Write(Spooled::CallLog(log("d"))))
            .unwrap();
        drop(ops);
        thread.join().unwrap();
        assert!(spool_path(dir.path(), "d").exists());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
    }
}
