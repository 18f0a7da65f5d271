//! The fast lane: GET and HEAD to registries over our own pooled HTTP/1.1
//! connections (plain or TLS), the response written straight onto the client
//! socket and large bodies from plain registries spliced, bypassing Pingora's
//! general upstream machinery.
//!
//! Why: on the 2-core machines we measure on, Pingora 0.9's per-request
//! upstream path (connector pool with a task per idle connection, the duplex
//! between two tasks over a channel, header maps built and re-serialised) made
//! a small request cost 39-43 µs of CPU against nginx's 13-14 for the same
//! proxying, and its body path copies every chunk through user space twice.
//! See docs/performance.md.
//!
//! Its requests come from the front door (`super::front`, which read them
//! itself) or, for a request Pingora read, from `request_filter`. What stays
//! with Pingora: listening, and every request the lane does not take (writes,
//! TLS or HTTP/2 clients, redirects it hands back).

pub mod conn;
pub mod h1;
pub mod io;
pub mod pool;
pub mod timer;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_error::{Error, ErrorType};
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use conn::{Conn, Io, TlsTarget};

use crate::config::UpstreamSettings;
use h1::{Parsed, ResponseHead};
pub use io::{Client, CopyError};
pub use pool::{Pool, PoolKey};
pub use timer::{ReadTimer, TimedOut};

/// Bodies up to this size are read whole and written with the head in one call.
pub const SMALL_BODY: u64 = 256 * 1024;
/// First read size for a response head (and a small body behind it).
const HEAD_READ: usize = 16 * 1024;

/// Connection pool plus the timeouts the lane applies.
pub struct FastLane {
    pool: Pool,
    timeouts: UpstreamSettings,
}

/// A registry response whose head has been read.
pub struct Exchange {
    stream: Conn,
    key: PoolKey,
    /// Bytes read so far: the head, then possibly body bytes.
    pub buf: Vec<u8>,
    /// The parsed head (ranges into `buf`).
    pub head: ResponseHead,
}

impl Exchange {
    /// Body bytes already read behind the head.
    pub fn body_prefix(&self) -> &[u8] {
        &self.buf[self.head.len..]
    }
}

impl FastLane {
    /// A lane with an empty pool.
    pub fn new(timeouts: UpstreamSettings) -> Self {
        FastLane { pool: Pool::new(timeouts.idle_timeout), timeouts }
    }

    /// The timeout for a single wait on either socket.
    pub fn io_timeout(&self) -> Duration {
        self.timeouts.read_timeout
    }

    /// Sends `request` (a bodiless head) and reads the response head, over a
    /// pooled connection for `key` or a new one (secured with `tls` if given).
    /// A pooled connection that fails before the first response byte (the
    /// registry closed it while idle) is replaced by a new one, once. `now` is
    /// a clock reading from just before (pool ages and the read timeout count
    /// from it).
    pub async fn exchange(
        &self,
        key: &PoolKey,
        tls: Option<&TlsTarget>,
        request: &[u8],
        head_request: bool,
        now: Instant,
    ) -> Result<Exchange, Box<Error>> {
        if let Some(stream) = self.pool.take(key, now) {
            match self.attempt(stream, key, request, head_request, Some(now)).await {
                Ok(x) => return Ok(x),
                Err(Attempt::Stale) => {}
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        let stream = self.connect(key.addr, tls).await?;
        match self.attempt(stream, key, request, head_request, None).await {
            Ok(x) => Ok(x),
            Err(Attempt::Stale) => Err(Error::explain(
                ErrorType::ConnectionClosed,
                "registry closed the connection before answering",
            )
            .into_up()),
            Err(Attempt::Failed(e)) => Err(e),
        }
    }

    async fn connect(&self, addr: SocketAddr, tls: Option<&TlsTarget>) -> Result<Conn, Box<Error>> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
        let socket =
            socket.map_err(|e| Error::because(ErrorType::ConnectError, "cannot create a socket", e))?;
        // Before connecting, so the window scale offered in the SYN fits it.
        if let Some(size) = self.timeouts.receive_buffer {
            let _ = socket.set_recv_buffer_size(u32::try_from(size).unwrap_or(u32::MAX));
        }
        let stream = match tokio::time::timeout(self.timeouts.connect_timeout, socket.connect(addr)).await {
            Err(_) => return Err(Error::explain(ErrorType::ConnectTimedout, "connect timed out")),
            Ok(Err(e)) => {
                let etype = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                    _ => ErrorType::ConnectError,
                };
                return Err(Error::because(etype, "connect failed", e));
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls else { return Ok(Conn::new(Io::Plain(stream))) };
        match tokio::time::timeout(self.timeouts.connect_timeout, tls.connect(stream)).await {
            Err(_) => Err(Error::explain(ErrorType::TLSHandshakeTimedout, "TLS handshake timed out")),
            Ok(Err(e)) => {
                let why = if conn::is_certificate_error(&e) {
                    "the registry's certificate is not trusted"
                } else {
                    "TLS handshake failed"
                };
                Err(Error::because(ErrorType::TLSHandshakeFailure, why, e))
            }
            Ok(Ok(c)) => Ok(c),
        }
    }

    async fn attempt(
        &self,
        mut stream: Conn,
        key: &PoolKey,
        request: &[u8],
        head_request: bool,
        mut sent: Option<Instant>,
    ) -> Result<Exchange, Attempt> {
        // TLS buffers what it encrypts: flush, or the request may not leave.
        if stream.io.write_all(request).await.is_err() || stream.io.flush().await.is_err() {
            return Err(Attempt::Stale);
        }
        let mut buf = Vec::with_capacity(HEAD_READ);
        loop {
            let n = self.read_some(&mut stream, &mut buf, sent.take()).await.map_err(|e| {
                if buf.is_empty() && e.etype() != &ErrorType::ReadTimedout {
                    Attempt::Stale
                } else {
                    Attempt::Failed(e)
                }
            })?;
            if n == 0 {
                return Err(if buf.is_empty() {
                    Attempt::Stale
                } else {
                    Attempt::Failed(upstream_error(ErrorType::ConnectionClosed, "registry closed mid-head"))
                });
            }
            match h1::parse_response(&buf, head_request) {
                Ok(Parsed::Partial) => continue,
                Ok(Parsed::Head(head)) if (100..200).contains(&head.status) => {
                    // An interim response (100 Continue, 103 Early Hints): skip it.
                    buf.drain(..head.len);
                }
                Ok(Parsed::Head(head)) => return Ok(Exchange { stream, key: key.clone(), buf, head }),
                Err(e) => {
                    return Err(Attempt::Failed(upstream_error(ErrorType::InvalidHTTPHeader, e.to_string())))
                }
            }
        }
    }

    /// Appends one read to `buf`; `Ok(0)` at end of stream.
    ///
    /// `read_buf` (not `try_read`): tokio forgets the socket's readiness after
    /// a short read, so the next exchange waits for the reactor instead of
    /// spending a system call on `EAGAIN`. The connection's own `ReadTimer`
    /// keeps the timeout from costing a timer per read; `began` is when the
    /// wait began, if the caller has that clock reading.
    async fn read_some(
        &self,
        stream: &mut Conn,
        buf: &mut Vec<u8>,
        began: Option<Instant>,
    ) -> Result<usize, Box<Error>> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(HEAD_READ);
        }
        match stream.timer.run(began, self.timeouts.read_timeout, stream.io.read_buf(buf)).await {
            Err(_) => Err(upstream_error(ErrorType::ReadTimedout, "registry did not answer")),
            Ok(Err(e)) => Err(Error::because(ErrorType::ReadError, "reading", e).into_up()),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Reads the rest of a body of `len` bytes into the exchange's buffer.
    pub async fn read_body(&self, x: &mut Exchange, len: u64) -> Result<(), Box<Error>> {
        let want = x.head.len + len as usize;
        x.buf.reserve(want.saturating_sub(x.buf.len()));
        while x.buf.len() < want {
            if self.read_some(&mut x.stream, &mut x.buf, None).await? == 0 {
                return Err(upstream_error(ErrorType::ConnectionClosed, "registry closed mid-body"));
            }
        }
        Ok(())
    }

    /// Returns the connection for reuse when the response was consumed exactly
    /// (`clean`: nothing read beyond its end) and the registry keeps it open;
    /// otherwise it is closed. `now`: when the response was read to its end.
    pub fn release(&self, x: Exchange, clean: bool, now: Instant) {
        if x.head.keep_alive && clean {
            self.pool.put(&x.key, x.stream, now);
        }
    }

    /// Moves the remaining `len` bytes of a length-framed body to the client:
    /// spliced from a plain connection, through a buffer from a TLS one (or
    /// where the kernel offers no splice).
    pub async fn relay_length(
        &self,
        x: &mut Exchange,
        client: &mut Client<'_>,
        len: u64,
    ) -> Result<(), CopyError> {
        client.bound_unsent();
        if let Some(tcp) = x.stream.plain() {
            if io::splice_to_client(tcp, client, len, self.io_timeout()).await? {
                return Ok(());
            }
        }
        let mut buf = Vec::with_capacity(RELAY_BUF);
        let mut left = len;
        while left > 0 {
            buf.clear();
            self.read_more(x, &mut buf).await?;
            let n = buf.len().min(left as usize);
            client.write_all(&[&buf[..n]]).await.map_err(CopyError::Client)?;
            left -= n as u64;
            if buf.len() > n {
                return Err(CopyError::Upstream(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "registry sent more than Content-Length",
                )));
            }
        }
        Ok(())
    }

    /// Relays a chunked body to the client: verbatim, or only its data when
    /// `dechunk` (an HTTP/1.0 client, whose response ends when we close).
    pub async fn relay_chunked(
        &self,
        x: &mut Exchange,
        client: &mut Client<'_>,
        dechunk: bool,
    ) -> Result<Relayed, CopyError> {
        client.bound_unsent();
        let mut scanner = h1::ChunkScanner::default();
        let mut buf = Vec::with_capacity(RELAY_BUF);
        buf.extend_from_slice(x.body_prefix());
        let mut data = Vec::new();
        let mut sent = 0u64;
        loop {
            let end = scanner
                .feed(&buf, |d| {
                    if dechunk {
                        data.extend_from_slice(d)
                    }
                })
                .map_err(|e| CopyError::Upstream(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
            let out = if dechunk { &data[..] } else { &buf[..end.unwrap_or(buf.len())] };
            client.write_all(&[out]).await.map_err(CopyError::Client)?;
            sent += out.len() as u64;
            data.clear();
            if let Some(n) = end {
                return Ok(Relayed { bytes: sent, clean: n == buf.len() });
            }
            buf.clear();
            self.read_more(x, &mut buf).await?;
        }
    }

    /// Relays a body that ends when the registry closes the connection.
    pub async fn relay_until_close(
        &self,
        x: &mut Exchange,
        client: &mut Client<'_>,
    ) -> Result<Relayed, CopyError> {
        client.bound_unsent();
        let mut buf = Vec::with_capacity(RELAY_BUF);
        buf.extend_from_slice(x.body_prefix());
        let mut sent = 0u64;
        loop {
            client.write_all(&[&buf]).await.map_err(CopyError::Client)?;
            sent += buf.len() as u64;
            buf.clear();
            match self.read_more(x, &mut buf).await {
                Ok(()) => {}
                Err(CopyError::Upstream(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(Relayed { bytes: sent, clean: false })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One more read of the registry socket into `buf`; end of stream is an error.
    async fn read_more(&self, x: &mut Exchange, buf: &mut Vec<u8>) -> Result<(), CopyError> {
        match self.read_some(&mut x.stream, buf, None).await {
            Ok(0) => Err(CopyError::Upstream(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "registry closed mid-body",
            ))),
            Ok(_) => Ok(()),
            Err(e) => {
                let kind = match e.etype() {
                    ErrorType::ReadTimedout => std::io::ErrorKind::TimedOut,
                    _ => std::io::ErrorKind::Other,
                };
                Err(CopyError::Upstream(std::io::Error::new(kind, e.to_string())))
            }
        }
    }
}

/// Read buffer for relayed (chunked or unframed) bodies.
const RELAY_BUF: usize = 64 * 1024;

/// What a relay delivered.
#[derive(Debug, Clone, Copy)]
pub struct Relayed {
    /// Body bytes written to the client (wire bytes for a verbatim chunked relay).
    pub bytes: u64,
    /// The registry connection ended exactly at the body's end.
    pub clean: bool,
}

/// Closes idle pooled connections past their timeout, every few seconds.
pub struct PoolSweeper(pub Arc<FastLane>);

#[async_trait::async_trait]
impl BackgroundService for PoolSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let period =
            (self.0.timeouts.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(15));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => self.0.pool.sweep(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

enum Attempt {
    /// Nothing came back: the connection was dead before we used it.
    Stale,
    Failed(Box<Error>),
}

fn upstream_error(etype: ErrorType, why: impl Into<String>) -> Box<Error> {
    Error::explain(etype, why.into()).into_up()
}

/// `Connection` header for the client: HTTP/1.1 keeps by default, HTTP/1.0
/// only when told (ApacheBench and old tools send 1.0 with keep-alive).
pub fn connection_header(http10: bool, keep: bool) -> Option<&'static str> {
    match (http10, keep) {
        (_, false) => Some("close"),
        (true, true) => Some("keep-alive"),
        (false, true) => None,
    }
}

/// The client socket of an HTTP/1.x plain-TCP session, if this request may
/// use the fast lane: nothing else may then write to it until the response
/// is complete.
pub fn client_fd(session: &Session) -> Option<RawFd> {
    let ServerSession::H1(h1) = session.as_downstream() else { return None };
    let version = session.req_header().version;
    if h1.digest().ssl_digest.is_some()
        || (version != http::Version::HTTP_11 && version != http::Version::HTTP_10)
    {
        return None;
    }
    let fd = h1.stream().id();
    (fd >= 0).then_some(fd)
}

/// Whether the client request has a body (the fast lane takes none).
pub fn has_body(req: &pingora_http::RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req.headers.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::AsRawFd;

    use super::*;
    use crate::proxy::tcp;

    /// The lane's registry sockets carry `upstream.receiveBuffer` (the kernel
    /// reports double what was set: it counts its bookkeeping), or keep the
    /// kernel's autotuned buffer when it is `auto`.
    #[tokio::test]
    async fn registry_sockets_get_the_configured_receive_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Below a stock kernel's rmem_max (208 KiB), so the kernel takes it as is.
        let size = 128 * 1024;
        let rcvbuf = |conn: &Conn| {
            tcp::get_int(conn.plain().unwrap().as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap()
        };

        let lane =
            FastLane::new(UpstreamSettings { receive_buffer: Some(size), ..UpstreamSettings::default() });
        let conn = lane.connect(addr, None).await.unwrap();
        assert_eq!(rcvbuf(&conn), 2 * size);

        let lane = FastLane::new(UpstreamSettings { receive_buffer: None, ..UpstreamSettings::default() });
        let conn = lane.connect(addr, None).await.unwrap();
        let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap();
        let initial: usize = default.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(rcvbuf(&conn), initial, "autotuning starts from tcp_rmem[1]");
    }
}
