//! The front door: reads HTTP/1 requests on the proxy listener itself and
//! serves GET and HEAD without Pingora's downstream session; any other request
//! is handed, with its connection, to Pingora's `HttpProxy` for that one
//! request, and the connection comes back here afterwards.
//!
//! Why: with the fast lane in place, Pingora's downstream session (request
//! header maps, the session and context boxes, phase machinery) was the
//! larger half of a small request's CPU cost. See docs/performance.md.
//!
//! What the front door does itself: parse the head (httparse), keep-alive
//! (HTTP/1.1 by default, HTTP/1.0 when asked), idle and read timeouts, closing
//! on shutdown, the proxy's own answers (`GET /v2/`, OCI errors, rendered
//! configurations), the access log and metrics. Everything unusual — a body,
//! `Upgrade`, `Expect`, an absolute-form target, an oversized or malformed
//! head, a connector the fast lane cannot reach, a TLS client — goes to
//! Pingora, which answers exactly as it would without the front door.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::Method;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::ShutdownWatch;
use pingora_error::{Error, ErrorType, Result};
use pingora_proxy::{HttpProxy, ProxyHttp};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use url::Url;

use super::fast::{Downstream, Handoff};
use super::fastlane::{self, Client};
use super::respond::Reply;
use super::{Ask, Decision, Proxy};

/// Largest request head the front door reads; a larger one goes to Pingora.
const MAX_HEAD: usize = 64 * 1024;
/// Request headers the front door parses at most; more go to Pingora.
const MAX_HEADERS: usize = 64;
/// How long an idle client connection is kept open (Pingora's default).
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4 * 1024;

/// The proxy listener's application: the front door in front of Pingora's
/// `HttpProxy` (which serves everything the front door does not).
pub struct FrontDoor {
    proxy: Proxy,
    general: Arc<HttpProxy<Proxy>>,
}

/// A storage redirect the front door received for a request it then handed
/// to Pingora: the general path goes straight there instead of asking the
/// registry again. Travels as the session's connection user context, which
/// Pingora's `process_new_http` takes out and gives to
/// `ProxyHttp::on_connection_reuse` (see [`redirect_of`]).
pub(super) struct FrontRedirect(Url);

/// The redirect in a connection user context set by the front door, if any.
pub(super) fn redirect_of(context: Box<dyn std::any::Any + Send + Sync>) -> Option<Url> {
    context.downcast::<FrontRedirect>().ok().map(|r| r.0)
}

/// What became of one request read by the front door.
enum Outcome {
    /// Answered at `ended`; the connection stays open when `keep` is true.
    Served { keep: bool, ended: Instant },
    /// Pingora serves this request (still at the start of the buffer), with
    /// the redirect the front door already received, if any.
    HandOver(Option<Url>),
}

/// One client connection and the bytes read from it but not yet consumed.
struct Inbound {
    /// The client socket, registered with the runtime this connection's task
    /// runs on (see [`adopt`]).
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Takes the client socket out of Pingora's stream and registers it with the
/// current runtime: with one runtime per thread (`work_stealing: false`),
/// Pingora spawns the connection's task on a random runtime while the socket
/// stays registered with the accepting one, so every wake-up would cross
/// threads. The descriptor is duplicated and Pingora's stream dropped (which
/// deregisters and closes only its descriptor; the socket lives on). Pingora's
/// stream comes back untouched when this is not a TCP socket or fails.
fn adopt(stream: Stream) -> Result<TcpStream, Stream> {
    let fd = stream.id();
    if fd < 0 {
        return Err(stream);
    }
    // SAFETY: `fd` is the open socket of `stream`; the duplicate is a new
    // descriptor that the std stream below owns and closes.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(stream);
    }
    // SAFETY: `dup` is a fresh descriptor owned by nothing else.
    let std = unsafe { std::net::TcpStream::from_raw_fd(dup) };
    // A Unix socket has no TCP address.
    if std.local_addr().is_err() || std.set_nonblocking(true).is_err() {
        return Err(stream);
    }
    match TcpStream::from_std(std) {
        Ok(own) => {
            drop(stream);
            Ok(own)
        }
        Err(_) => Err(stream),
    }
}

impl FrontDoor {
    /// The front door for `proxy`, with Pingora's `HttpProxy` built from the
    /// same proxy for everything else.
    pub fn new(conf: &Arc<ServerConf>, proxy: Proxy) -> FrontDoor {
        FrontDoor { general: Arc::new(pingora_proxy::http_proxy(conf, proxy.clone())), proxy }
    }

    /// Serves one parsed request, answering on `stream`.
    async fn serve(
        &self,
        req: &httparse::Request<'_, '_>,
        stream: &TcpStream,
        shutting_down: bool,
    ) -> Outcome {
        let fd = stream.as_raw_fd();
        let Some(parts) = Parts::of(req) else { return Outcome::HandOver(None) };
        let mut ctx = ProxyHttp::new_ctx(&self.proxy);
        let ask = Ask {
            method: &parts.method,
            host: parts.host,
            path: parts.path,
            query: parts.query,
            authorization: parts.authorization,
        };
        let mut front = FrontRequest {
            method: parts.method.clone(),
            http10: parts.http10,
            host: parts.host,
            headers: req.headers,
            keep: parts.keep_alive && !shutting_down,
            stream,
            timeout: self.proxy.fastlane.io_timeout(),
        };
        let result = match self.proxy.decide(&ask, &mut ctx).await {
            Decision::Answer(reply) => {
                ctx.status = Some(reply.status);
                front.answer(reply).await
            }
            Decision::Proxy(state) => {
                if !self.proxy.fast_lane_reaches(&state) {
                    return Outcome::HandOver(None);
                }
                match self.proxy.serve_fast(&mut front, &mut ctx, &state, fd).await {
                    Ok(Handoff::Done) => Ok(()),
                    Ok(Handoff::General) => return Outcome::HandOver(ctx.redirect.take()),
                    Err(e) => Err(e),
                }
            }
        };
        let error = result.as_ref().err().map(|e| e.etype().as_str());
        let ended = self.proxy.record(&parts.method, parts.path, ctx.status.unwrap_or(0), error, &ctx);
        Outcome::Served { keep: front.keep && result.is_ok(), ended }
    }

    /// Gives the connection to Pingora for the request at the start of
    /// `inbound.buf`; the connection if it may serve another request.
    async fn hand_over(
        self: &Arc<Self>,
        inbound: Inbound,
        redirect: Option<Url>,
        shutdown: &ShutdownWatch,
    ) -> Option<TcpStream> {
        let Inbound { stream, buf } = inbound;
        let mut l4 = Box::new(L4Stream::from(stream));
        l4.rewind(&buf);
        let mut session = ServerSession::new_http1(l4);
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(KEEPALIVE.as_secs()) });
        if let Some(url) = redirect {
            session.set_connection_user_context(Some(Box::new(FrontRedirect(url))));
        }
        let reused = self.general.process_new_http(session, shutdown).await?;
        match adopt(reused.consume().0) {
            Ok(own) => Some(own),
            Err(stream) => {
                // Cannot take it back: Pingora keeps the connection.
                let _ = ServerApp::process_new(&self.general, stream, shutdown).await;
                None
            }
        }
    }
}

#[async_trait]
impl ServerApp for FrontDoor {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if stream.get_ssl_digest().is_some() {
            // Bytes written straight to the socket would bypass TLS.
            return ServerApp::process_new(&self.general, stream, shutdown).await;
        }
        let io_timeout = self.proxy.fastlane.io_timeout();
        let stream = match adopt(stream) {
            Ok(own) => own,
            Err(stream) => return ServerApp::process_new(&self.general, stream, shutdown).await,
        };
        let mut inbound = Inbound { stream, buf: Vec::with_capacity(READ_CHUNK) };
        let mut timer = fastlane::ReadTimer::new();
        // When the wait for the next head began, if a clock reading says so
        // (the end of the request just served).
        let mut began = None;
        loop {
            let outcome = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&inbound.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let shutting_down = *shutdown.borrow();
                        match self.serve(&req, &inbound.stream, shutting_down).await {
                            Outcome::Served { keep, ended } => {
                                began = Some(ended);
                                Some(Ok((keep, len)))
                            }
                            Outcome::HandOver(redirect) => Some(Err((redirect, request_len(&req, len)))),
                        }
                    }
                    Ok(httparse::Status::Partial) if inbound.buf.len() < MAX_HEAD => None,
                    // Malformed, oversized, too many headers: Pingora answers.
                    _ => Some(Err((None, None))),
                }
            };
            match outcome {
                Some(Ok((keep, len))) => {
                    if !keep {
                        return None;
                    }
                    inbound.buf.drain(..len);
                    if !inbound.buf.is_empty() {
                        continue;
                    }
                }
                Some(Err((redirect, len))) => {
                    // Pingora gets this request's bytes only: with pipelining
                    // off it would not reuse a connection it read past, so what
                    // follows (pipelined requests) stays here. A request whose
                    // end is unknown (chunked, malformed) takes all of it.
                    let rest = match len {
                        Some(len) if len <= inbound.buf.len() => inbound.buf.split_off(len),
                        _ => Vec::with_capacity(READ_CHUNK),
                    };
                    let stream = self.hand_over(inbound, redirect, shutdown).await?;
                    inbound = Inbound { stream, buf: rest };
                    continue;
                }
                None => {}
            }
            // Waiting for (more of) a request head: the keep-alive timeout
            // between requests, the read timeout within one.
            let wait = if inbound.buf.is_empty() { KEEPALIVE } else { io_timeout };
            if inbound.buf.capacity() - inbound.buf.len() < READ_CHUNK / 4 {
                inbound.buf.reserve(READ_CHUNK);
            }
            match timer.run(began.take(), wait, inbound.stream.read_buf(&mut inbound.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    async fn cleanup(&self) {
        self.general.http_cleanup().await;
    }
}

/// Bytes of the request whose head is `head_len` long, body included, when
/// its length is known from the head (`None` for chunked or malformed framing).
fn request_len(req: &httparse::Request<'_, '_>, head_len: usize) -> Option<usize> {
    let mut body = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok()?;
        }
    }
    head_len.checked_add(body)
}

/// The parts of a request head the front door acts on; `None` when the
/// request is not one it serves.
struct Parts<'a> {
    method: Method,
    http10: bool,
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    authorization: Option<&'a [u8]>,
    keep_alive: bool,
}

impl<'a> Parts<'a> {
    fn of(req: &httparse::Request<'_, 'a>) -> Option<Parts<'a>> {
        let method = match req.method? {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            _ => return None,
        };
        let http10 = match req.version? {
            0 => true,
            1 => false,
            _ => return None,
        };
        let target = req.path?;
        if !target.starts_with('/') {
            return None;
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut host = None;
        let mut authorization = None;
        let mut keep_alive = !http10;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                if host.is_some() {
                    return None;
                }
                host = Some(std::str::from_utf8(h.value).ok()?.trim());
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(h.value);
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                if h.value != b"0" {
                    return None;
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                return None;
            }
        }
        Some(Parts { method, http10, host: host.unwrap_or(""), path, query, authorization, keep_alive })
    }
}

/// A request read by the front door, as the fast lane sees its client.
struct FrontRequest<'a> {
    method: Method,
    http10: bool,
    host: &'a str,
    headers: &'a [httparse::Header<'a>],
    keep: bool,
    stream: &'a TcpStream,
    timeout: Duration,
}

impl Downstream for FrontRequest<'_> {
    fn method(&self) -> &Method {
        &self.method
    }

    fn http10(&self) -> bool {
        self.http10
    }

    fn host(&self) -> &str {
        self.host
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    fn keeps_alive(&self) -> bool {
        self.keep
    }

    fn close_after(&mut self) {
        self.keep = false;
    }

    fn client(&self, _fd: RawFd, timeout: Duration) -> Client<'_> {
        Client::on(self.stream, timeout)
    }

    async fn answer(&mut self, reply: Reply) -> Result<()> {
        let connection = fastlane::connection_header(self.http10, self.keep);
        let bytes = reply.h1(connection, self.method == Method::HEAD);
        Client::on(self.stream, self.timeout)
            .write_all(&[&bytes])
            .await
            .map_err(|e| Error::because(ErrorType::WriteError, "writing the response", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(head: impl AsRef<[u8]>, check: impl FnOnce(Option<Parts<'_>>)) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(head.as_ref()).expect("parses").is_complete());
        check(Parts::of(&req));
    }

    #[test]
    fn takes_bodiless_reads_in_origin_form() {
        parts_of(
            "GET /v2/a/manifests/x?n=1 HTTP/1.1\r\nHost: p:5000\r\nAuthorization: Basic eA==\r\n\r\n",
            |p| {
                let p = p.expect("served");
                assert_eq!(
                    (p.method, p.http10, p.host, p.path),
                    (Method::GET, false, "p:5000", "/v2/a/manifests/x")
                );
                assert_eq!(p.query, Some("n=1"));
                assert_eq!(p.authorization, Some(&b"Basic eA=="[..]));
                assert!(p.keep_alive);
            },
        );
        parts_of("HEAD /v2/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", |p| {
            assert_eq!(p.expect("served").host, "")
        });
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        parts_of("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", |p| assert!(!p.expect("served").keep_alive));
        parts_of("GET / HTTP/1.0\r\n\r\n", |p| assert!(!p.expect("served").keep_alive));
        parts_of("GET / HTTP/1.0\r\nConnection: te, Keep-Alive\r\n\r\n", |p| {
            assert!(p.expect("served").keep_alive)
        });
    }

    #[test]
    fn leaves_everything_unusual_to_pingora() {
        let heads: [&[u8]; 8] = [
            b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: p\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET http://p/v2/ HTTP/1.1\r\nHost: p\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nHost: \xff\r\n\r\n",
        ];
        for head in heads {
            parts_of(head, |p| assert!(p.is_none(), "{:?}", String::from_utf8_lossy(head)));
        }
    }
}
