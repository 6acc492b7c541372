//! The way to FreeSWITCH: the module's connections on the event socket. A command goes to the
//! most recent connection and waits (bounded) for the module's `switch_result`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use natterbox_common::call_control::CallCommand;
use natterbox_common::wire::Message;
use tokio::sync::{mpsc, oneshot};

/// How long a command waits for FreeSWITCH.
pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// No module is connected.
    Unavailable,
    /// No answer in time (the command may still take effect).
    Timeout,
    /// FreeSWITCH (or the module) refused it; its words.
    Refused(String),
}

#[derive(Default)]
struct Links {
    /// Module connections by id, with the writer of each.
    modules: Vec<(u64, mpsc::Sender<Vec<u8>>)>,
    pending: HashMap<u64, oneshot::Sender<Result<(), String>>>,
}

#[derive(Default)]
pub struct SwitchLink {
    inner: std::sync::Mutex<Links>,
    next_id: AtomicU64,
}

impl SwitchLink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Links> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A module connection came up; returns its id for `detach`.
    pub fn attach(&self, writer: mpsc::Sender<Vec<u8>>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().modules.push((id, writer));
        id
    }

    pub fn detach(&self, id: u64) {
        self.lock().modules.retain(|(m, _)| *m != id);
    }

    /// Sends a message to every connected module (presence).
    pub fn broadcast(&self, message: &Message) {
        let line = message.to_line();
        for (_, writer) in &self.lock().modules {
            let _ = writer.try_send(line.clone());
        }
    }

    /// Sends `message` to every connected module; returns how many took it into their queue.
    pub fn broadcast_counted(&self, message: &Message) -> usize {
        let line = message.to_line();
        self.lock()
            .modules
            .iter()
            .filter(|(_, writer)| writer.try_send(line.clone()).is_ok())
            .count()
    }

    /// The module's answer to command `id`.
    pub fn resolve(&self, id: u64, ok: bool, error: Option<String>) {
        if let Some(waiter) = self.lock().pending.remove(&id) {
            let _ = waiter.send(if ok {
                Ok(())
            } else {
                Err(error.unwrap_or_else(|| "refused".into()))
            });
        }
    }

    pub async fn run(&self, command: CallCommand) -> Result<(), LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let writer = {
            let mut links = self.lock();
            let Some((_, writer)) = links.modules.last() else {
                return Err(LinkError::Unavailable);
            };
            let writer = writer.clone();
            links.pending.insert(id, tx);
            writer
        };
        let line = Message::SwitchCommand { id, command }.to_line();
        if writer.try_send(line).is_err() {
            self.lock().pending.remove(&id);
            return Err(LinkError::Unavailable);
        }
        match tokio::time::timeout(SWITCH_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(LinkError::Refused(e)),
            // The connection went away with the command.
            Ok(Err(_)) => Err(LinkError::Unavailable),
            Err(_) => {
                self.lock().pending.remove(&id);
                Err(LinkError::Timeout)
            }
        }
    }
}
