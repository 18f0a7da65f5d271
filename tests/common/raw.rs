//! Raw HTTP/1.1 pieces for fake registries written byte by byte (fault
//! injection, connection counting) and for the clients that talk to them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The manifest the fake registries serve.
pub const MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#;

/// A fake server's accept loop on a free loopback port: each accepted
/// connection runs `serve(stream, index)` (0-based, in accept order) in a task
/// of its own. Returns the address, the count of accepted connections, and
/// the loop's task; aborting it (e.g. in `Drop`) also aborts every connection task.
pub async fn accept_loop<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        // Dropped (aborting every connection task) when this task is aborted.
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let conn = count.fetch_add(1, Ordering::SeqCst);
            conns.spawn(serve(stream, conn));
            while conns.try_join_next().is_some() {}
        }
    });
    (addr, accepted, task)
}

/// Awaits `f`, failing the test if it takes longer than `patience`: a hang
/// fails the test instead of stalling it.
pub async fn within<T>(patience: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(patience, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {patience:?}"))
}

/// GET `url`: its status and whole body, within `patience`.
pub async fn get(client: &reqwest::Client, url: &str, patience: Duration) -> (StatusCode, Vec<u8>) {
    within(patience, url, async {
        let r = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = r.status();
        (status, r.bytes().await.unwrap_or_else(|e| panic!("GET {url} body: {e}")).to_vec())
    })
    .await
}

/// Reads until `buf` holds a complete head; returns its length including the
/// blank line, or `None` at end of stream.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A response with `Content-Length` framing: `status` is e.g. `"200 OK"`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = response_head(status, headers, body.len());
    out.extend_from_slice(body);
    out
}

/// Just the head of [`response`], announcing `length` body bytes.
pub fn response_head(status: &str, headers: &[(&str, &str)], length: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {length}\r\n\r\n").as_bytes());
    out
}

/// [`MANIFEST`] as a keep-alive 200.
pub fn manifest_reply() -> Vec<u8> {
    response(
        "200 OK",
        &[
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            ("Docker-Content-Digest", "sha256:00"),
        ],
        MANIFEST,
    )
}

/// `n` bytes that do not repeat (seeded, so every run sees the same blob).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// A response read off a raw client socket by [`read_response`].
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names lowercased, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if present and numeric.
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    /// Whether `Connection` lists `token` (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        self.header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Reads one whole response from `stream` within `patience`. `buf` holds bytes
/// already read past the previous response and keeps those past this one, so
/// pipelined responses can be read one after another. The body is framed by
/// `Content-Length`, by chunks, or (neither) by the end of the connection; a
/// response to HEAD (`head_request`), a 1xx, 204 or 304 has none. Panics when
/// the connection ends before the response does.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    head_request: bool,
    patience: Duration,
) -> RawResponse {
    within(patience, "response", async {
        let end = read_head(stream, buf).await.expect("connection closed before a response head");
        let head: Vec<u8> = buf.drain(..end).collect();
        let text = String::from_utf8(head).expect("UTF-8 response head");
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(status_line.starts_with("HTTP/1."), "not a status line: {status_line:?}");
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = RawResponse { status, headers, body: Vec::new() };
        if head_request || matches!(status, 100..=199 | 204 | 304) {
            return resp;
        }
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            resp.body = read_chunks(stream, buf).await;
        } else if let Some(len) = resp.content_length() {
            fill(stream, buf, len).await;
            resp.body = buf.drain(..len).collect();
        } else {
            resp.body = std::mem::take(buf);
            let _ = stream.read_to_end(&mut resp.body).await;
        }
        resp
    })
    .await
}

/// Whether the peer ends `stream` (EOF or reset) within `patience` without
/// sending another byte.
pub async fn closes_without_more<S: AsyncRead + Unpin>(stream: &mut S, patience: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(within(patience, "connection close", stream.read(&mut byte)).await, Ok(0) | Err(_))
}

/// Reads until `buf` holds at least `n` bytes; panics at end of stream.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, n: usize) {
    while buf.len() < n {
        let mut chunk = vec![0u8; 64 * 1024];
        let got = stream.read(&mut chunk).await.unwrap_or(0);
        assert!(got > 0, "connection closed with {} of {n} expected bytes", buf.len());
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Takes one CRLF-terminated line off `buf` (reading more as needed), without the CRLF.
async fn line<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).take(i).collect();
            return String::from_utf8(line).expect("UTF-8 chunk line");
        }
        let want = buf.len() + 1;
        fill(stream, buf, want).await;
    }
}

/// A chunked body, de-chunked (trailers are read and dropped).
async fn read_chunks<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let size_line = line(stream, buf).await;
        let size = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("chunk size {size_line:?}"));
        if size == 0 {
            while !line(stream, buf).await.is_empty() {}
            return body;
        }
        fill(stream, buf, size + 2).await;
        body.extend(buf.drain(..size));
        assert_eq!(buf.drain(..2).collect::<Vec<u8>>(), b"\r\n", "chunk not followed by CRLF");
    }
}
