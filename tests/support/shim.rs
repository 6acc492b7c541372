//! Drives tests/host-shim: line commands in, framed replies out (see tests/host-shim/README.md).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct Shim {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Every `@event` block seen so far.
    pub events: Vec<Event>,
    /// Every `@log` line seen so far.
    pub logs: Vec<String>,
    pending_event: Option<Event>,
}

#[derive(Debug, Clone, Default)]
pub struct Event {
    pub name: String,
    pub subclass: String,
    pub headers: Vec<(String, String)>,
}

impl Event {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub ok: bool,
    pub error: String,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Undoes the shim's escaping: `\\` and `\xNN`.
pub fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'\\' {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'x' && i + 3 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&text[i + 2..i + 4], 16) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes bytes for an `esc` command line (`\xNN` for anything unprintable, space, quote).
pub fn escape_arg(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'\\' && b != b'"' && b != b'\'' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

impl Shim {
    pub fn start(conf_dir: &Path) -> Shim {
        let mut child = Command::new(super::shim_path())
            .arg("--conf-dir")
            .arg(conf_dir)
            .arg("--log-stdout")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the host shim");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Shim {
            child,
            stdin,
            lines,
            events: Vec::new(),
            logs: Vec::new(),
            pending_event: None,
        }
    }

    fn absorb(&mut self, line: &str) -> bool {
        if let Some(rest) = line.strip_prefix("@log ") {
            self.logs.push(unescape(rest));
        } else if let Some(rest) = line.strip_prefix("@event ") {
            let mut words = rest.splitn(3, ' ');
            let _seq = words.next();
            self.pending_event = Some(Event {
                name: words.next().unwrap_or_default().to_string(),
                subclass: unescape(words.next().unwrap_or_default()),
                headers: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("@header ") {
            if let (Some(event), Some((k, v))) =
                (self.pending_event.as_mut(), rest.split_once(": "))
            {
                event.headers.push((unescape(k), unescape(v)));
            }
        } else if line.starts_with("@end ") {
            if let Some(event) = self.pending_event.take() {
                self.events.push(event);
            }
        } else if line.starts_with("@body ") {
        } else {
            return false;
        }
        true
    }

    /// Sends one command and returns its framed reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.cmd_within(line, Duration::from_secs(120))
    }

    pub fn cmd_within(&mut self, line: &str, limit: Duration) -> Reply {
        writeln!(self.stdin, "{line}").expect("write to the shim");
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + limit;
        let mut started = false;
        let mut body = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(remaining) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => panic!("no reply to {line:?} within {limit:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the shim exited during {line:?}; body so far: {body:?}")
                }
            };
            if self.absorb(&line) {
                continue;
            }
            if line.starts_with(">>> ") {
                started = true;
                continue;
            }
            if !started {
                continue;
            }
            if let Some(status) = line.strip_prefix("<<< ") {
                return Reply {
                    ok: status == "OK",
                    error: unescape(status.strip_prefix("ERR ").unwrap_or("")),
                    lines: body,
                };
            }
            body.push(unescape(&line));
        }
    }

    /// A command that must succeed.
    pub fn ok(&mut self, line: &str) -> Reply {
        let reply = self.cmd(line);
        assert!(
            reply.ok,
            "{line:?} failed: {} {:?}\nlogs: {:#?}",
            reply.error, reply.lines, self.logs
        );
        reply
    }

    pub fn vars(&mut self, uuid: &str) -> HashMap<String, String> {
        self.ok(&format!("vars {uuid}"))
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("var "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The `sf` API command's output.
    pub fn api(&mut self, args: &str) -> String {
        let reply = self.ok(&format!("api sf {args}"));
        let out: Vec<&str> = reply
            .lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("out ")
                    .or(if l == "out" { Some("") } else { None })
            })
            .collect();
        out.join("\n")
    }

    pub fn logs_containing(&self, needle: &str) -> Vec<&String> {
        self.logs.iter().filter(|l| l.contains(needle)).collect()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}
