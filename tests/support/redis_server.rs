//! A real `redis-server` on a free loopback port, killed on drop: the fleet tests' Redis. Also
//! used by the sidecar's own tests (`sidecar/tests/support`, through `#[path]`), so there is one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

/// `redis-server` from PATH's usual place, or `REDIS_SERVER`. scripts/install-deps.sh installs
/// Debian's package; a missing one fails the test (it is not skipped).
fn redis_server_path() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

impl RedisServer {
    pub fn start(dir: &Path) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            port,
            child: None,
            dir: dir.to_path_buf(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again on the same port (after `kill`), and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let path = redis_server_path();
        assert!(
            path.is_file(),
            "{} is missing: scripts/install-deps.sh installs redis-server",
            path.display()
        );
        let child = Command::new(path)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One inline command, its first reply line (enough for PING, DBSIZE, EXISTS).
    pub fn command(&self, line: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .ok()?;
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().next().map(str::to_string)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
