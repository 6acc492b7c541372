//! The module's event socket: a Unix stream socket, one JSON message per line.
//!
//! The reader never waits on Salesforce or the disk: call logs go to the outbox writer through a
//! bounded queue (full: dropped and counted; the module keeps them spooled and sends them again),
//! screen pops go to the in-memory hub, token reports to the token task. Acks go back through a
//! per-connection writer task.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use natterbox_common::wire::{CallLog, Message, MAX_LINE_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::backoff::now_ms;
use crate::App;

/// Acks queued per connection.
const ACK_QUEUE: usize = 4096;

/// A call log on its way to the outbox, with where to send the ack.
pub struct Accepted {
    pub log: CallLog,
    pub reply: mpsc::Sender<Vec<u8>>,
}

/// Binds the socket: parent directory created 0750 if missing, a stale socket file removed (one a
/// live sidecar answers on is not), mode 0660.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    crate::dirs::ensure_parent(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{}: another process is listening on it (is a sidecar already running?)",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("removing stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ))
        }
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, app.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(stream: UnixStream, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    app.metrics.socket_connections.inc();
    let (read, mut write) = stream.into_split();
    let (reply_tx, mut reply_rx) = mpsc::channel::<Vec<u8>>(ACK_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(line) = reply_rx.recv().await {
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    // This module can now carry agents' commands; it gets every agent's presence first.
    let link_id = app.desk.link.attach(reply_tx.clone());
    for presence in app.desk.presence.all() {
        let _ = reply_tx.try_send(Message::Presence(presence).to_line());
    }
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let read = tokio::select! {
            r = read_line(&mut reader, &mut line) => r,
            _ = shutdown.changed() => break,
        };
        match read {
            Ok(true) => dispatch(&app, &line, &reply_tx),
            Ok(false) => break,
            Err(e) => {
                app.metrics.events_malformed.inc();
                tracing::warn!(error = %e, "closing a module connection");
                break;
            }
        }
    }
    app.desk.link.detach(link_id);
    drop(reply_tx);
    // Let queued acks go out; the writer ends when the outbox writer drops its senders.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    app.metrics.socket_connections.dec();
}

/// One line into `line` (without the newline). False at a clean end of stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> Result<bool, String> {
    loop {
        let buf = reader.fill_buf().await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err("connection closed in the middle of a line".into())
            };
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                reader.consume(i + 1);
                if line.len() > MAX_LINE_BYTES {
                    return Err(format!("line over {MAX_LINE_BYTES} bytes"));
                }
                return Ok(true);
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                reader.consume(n);
                if line.len() > MAX_LINE_BYTES {
                    return Err(format!("line over {MAX_LINE_BYTES} bytes"));
                }
            }
        }
    }
}

fn dispatch(app: &Arc<App>, line: &[u8], reply: &mpsc::Sender<Vec<u8>>) {
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    let message = match Message::from_line(line) {
        Ok(m) => m,
        Err(e) => {
            app.metrics.events_malformed.inc();
            tracing::debug!(error = %e, "malformed event line");
            return;
        }
    };
    app.metrics.events_received.inc();
    match message {
        Message::TokenRefresh {
            org,
            generation,
            worked,
        } => {
            if app.tokens.report_rejected(&org, generation, worked) {
                tracing::info!(%org, generation, "module reports its token refused; refreshing");
            }
        }
        Message::ScreenPop(mut pop) => {
            let config = app.config();
            let Some(org) = config.org(&pop.org) else {
                app.metrics.events_malformed.inc();
                tracing::warn!(org = %pop.org, "screen pop for an unknown org");
                return;
            };
            // Defaults for a module that leaves them out: now, and the org's TTL.
            if pop.created_at_ms == 0 {
                pop.created_at_ms = now_ms();
            }
            if pop.ttl_ms == 0 {
                pop.ttl_ms = org.screen_pop.ttl.as_millis() as u64;
            }
            let salesforce_url = app
                .tokens
                .session(&org.name)
                .map(|(session, _)| session.instance_url.trim_end_matches('/').to_string());
            let kept = app.pops.publish_with_link(
                &pop,
                org.screen_pop.ttl.as_millis() as u64,
                salesforce_url,
            );
            if let (Some(fleet), Some(frame)) = (&app.fleet, kept) {
                fleet.pop_published(&frame, pop.ttl_ms);
            }
            if org.screen_pop.platform_event.is_some()
                && pop.created_at_ms.saturating_add(pop.ttl_ms) > now_ms()
                && app.platform_tx.try_send(pop).is_err()
            {
                app.metrics.events_dropped.inc();
            }
        }
        Message::CallLog(log) => {
            let config = app.config();
            if !config.org(&log.org).is_some_and(|o| o.call_log.enabled) {
                // Nothing to write: acknowledge so the module drops its spooled copy.
                app.metrics.call_logs_ignored.inc();
                let _ = reply.try_send(
                    Message::Ack {
                        call_uuid: log.call_uuid,
                    }
                    .to_line(),
                );
                return;
            }
            let accepted = Accepted {
                log,
                reply: reply.clone(),
            };
            if app.outbox_tx.try_send(accepted).is_err() {
                app.metrics.events_dropped.inc();
            }
        }
        Message::CallProgress(progress) => {
            let app = app.clone();
            tokio::spawn(async move { crate::voicecall::on_progress(&app, progress).await });
        }
        Message::OmniRoute(route) => {
            let app = app.clone();
            tokio::spawn(async move { crate::omni::on_route(&app, route).await });
        }
        Message::OmniUnrouted {
            org,
            call_uuid,
            reason,
        } => {
            let app = app.clone();
            tokio::spawn(
                async move { crate::omni::on_unrouted(&app, org, call_uuid, reason).await },
            );
        }
        Message::ModuleMetrics { text } => app.metrics.set_module_snapshot(&text),
        Message::SwitchResult { id, ok, error } => app.desk.link.resolve(id, ok, error),
        Message::CallState(state) => {
            if state.state == natterbox_common::call_control::CallPhase::Transferred {
                let (app, state) = (app.clone(), state.clone());
                tokio::spawn(async move { crate::voicecall::on_call_state(&app, state).await });
            }
            app.desk.on_call_state(state)
        }
        Message::RecordWrite(write) => crate::record_writes::accept(app, write, reply.clone()),
        // Only the sidecar sends these.
        Message::Ack { .. }
        | Message::WriteAck { .. }
        | Message::Invalidate { .. }
        | Message::SwitchCommand { .. }
        | Message::Presence(_) => {
            app.metrics.events_malformed.inc();
        }
    }
}

/// Commits accepted call logs in batches, then acks each on its connection.
pub async fn outbox_writer(app: Arc<App>, mut rx: mpsc::Receiver<Accepted>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        // Per org: a Task (the call_log rows), VoiceCall steps, or both; one transaction.
        let config = app.config();
        let mut logs: Vec<CallLog> = Vec::with_capacity(batch.len());
        let mut steps = Vec::new();
        for accepted in &batch {
            let log = &accepted.log;
            let org = config.org(&log.org);
            let record = org.map(|o| o.call_log.record).unwrap_or_default();
            if record.wants_task() {
                logs.push(log.clone());
            }
            if let Some(voice) = org
                .and_then(|o| o.voice.as_ref())
                .filter(|_| record.wants_voicecall())
            {
                steps.extend(crate::voicecall::steps_for_log(log, voice));
            }
        }
        let wakes_voicecall = !steps.is_empty();
        let outbox = app.outbox.clone();
        let result =
            tokio::task::spawn_blocking(move || outbox.insert_calls(&logs, &steps, now_ms()))
                .await
                .unwrap_or_else(|e| Err(format!("outbox task failed: {e}")));
        if result.is_ok() && wakes_voicecall {
            app.voicecall_wake.notify_one();
        }
        match result {
            Ok(()) => {
                for accepted in batch.drain(..) {
                    app.metrics.call_logs_accepted.inc();
                    let _ = accepted.reply.try_send(
                        Message::Ack {
                            call_uuid: accepted.log.call_uuid,
                        }
                        .to_line(),
                    );
                }
                app.delivery_wake.notify_one();
            }
            Err(e) => {
                // No ack: the module keeps the spooled copies and sends them again.
                tracing::error!(error = %e, records = batch.len(), "cannot commit call logs to the outbox");
                app.metrics.events_dropped.add(batch.len() as u64);
                batch.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut ok = BufReader::new(&b"{\"a\":1}\n{\"b\":2}"[..]);
        let mut line = Vec::new();
        assert!(read_line(&mut ok, &mut line).await.unwrap());
        assert_eq!(line, b"{\"a\":1}");
        line.clear();
        assert!(read_line(&mut ok, &mut line).await.is_err(), "unterminated");
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut reader = BufReader::new(&long[..]);
        line.clear();
        assert!(read_line(&mut reader, &mut line)
            .await
            .unwrap_err()
            .contains("over"));
    }

    #[test]
    fn binds_with_mode_0660_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/events.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = bind(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o660);
            let parent = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(parent & 0o777, 0o750);
            assert!(bind(&path).unwrap_err().contains("another process"));
            drop(first);
            bind(&path).expect("a stale socket file is replaced");
            let plain = dir.path().join("plain");
            std::fs::write(&plain, b"x").unwrap();
            assert!(bind(&plain).unwrap_err().contains("not a socket"));
        });
    }
}
