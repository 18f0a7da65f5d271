//! Child processes, free ports and readiness polling.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often the wait helpers poll.
const POLL: Duration = Duration::from_millis(25);

/// Owns a spawned child; on drop (also while unwinding from a panic) it sends SIGKILL to
/// that PID and reaps it, so no zombie or stray server outlives the test.
///
/// A test process killed by a signal cannot run `Drop`; nextest kills the whole process
/// group on timeout, which covers that case. (`PR_SET_PDEATHSIG` is no fix: it fires when
/// the *spawning thread* exits, and tokio's blocking threads come and go.)
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Wraps `child`; `name` is used in messages only.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self { name: name.into(), child }
    }

    /// The child's PID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` once the child has exited, without blocking.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills (SIGKILL) and reaps the child; harmless if it already exited.
    pub fn kill(&mut self) {
        if self.try_exit_status().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port that was free a moment ago. Another process can take it before we
/// bind it again, so spawners must retry with a new port when binding fails.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Polls `check` every 25 ms until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Blocks until a TCP connect to `addr` succeeds, or fails with `TimedOut`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    poll_until(timeout, || TcpStream::connect_timeout(&addr, POLL).ok().map(|_| ()))
        .ok_or_else(|| timed_out(format!("nothing listening on {addr} after {timeout:?}")))
}

/// One plain `GET path` over HTTP/1.1 to `addr`; returns the response status code.
/// Blocking and dependency-free, for readiness checks from synchronous code.
pub fn http_status(addr: SocketAddr, path: &str) -> io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    parse_status_line(&head[..n])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?;
    let code = line.strip_prefix("HTTP/1.")?.get(2..5)?;
    code.parse().ok()
}

/// Blocks until `GET http://addr/path` gets any HTTP response; returns its status code.
pub fn wait_for_http(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<u16> {
    poll_until(timeout, || http_status(addr, path).ok())
        .ok_or_else(|| timed_out(format!("no HTTP answer from {addr}{path} after {timeout:?}")))
}

/// Async: polls `url` with reqwest until it answers with any HTTP status; returns it.
pub async fn wait_for_url(url: &str, timeout: Duration) -> io::Result<reqwest::StatusCode> {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(io::Error::other)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(resp) = client.get(url).send().await {
            return Ok(resp.status());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out(format!("no HTTP answer from {url} after {timeout:?}")));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn timed_out(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}
