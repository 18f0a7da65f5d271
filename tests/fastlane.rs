//! Fault injection for the fast lane (GET/HEAD to plain-HTTP registries on our
//! own pooled HTTP/1.1 connections): connection reuse, stale pooled
//! connections, bodies cut short, chunked answers handed to the general path,
//! HTTP/1.0 keep-alive clients, `fastLane: false`, and large spliced bodies.
//!
//! The upstream is a raw TCP server written here, because these faults live
//! below what a hyper-based fake can express: exact bytes, closes at chosen
//! moments, and a count of accepted connections.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::{connector_yaml, Proxy, Resolver};
use common::raw::{
    accept_loop, get, manifest_reply, random_bytes, read_head, response, response_head, within, MANIFEST,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Upper bound for any single client operation: a hang fails the test instead of stalling it.
const PATIENCE: Duration = Duration::from_secs(10);

/// One request as the raw upstream parsed it.
#[derive(Debug, Clone)]
struct RawRequest {
    method: String,
    path: String,
    /// Header names lowercased, in wire order.
    headers: Vec<(String, String)>,
    /// Which accepted connection (0-based, in accept order) carried it.
    conn: usize,
}

impl RawRequest {
    /// The first header called `name` (lowercase).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether this is a registry API call other than the `GET /v2/` probe.
    fn is_api(&self) -> bool {
        self.path != "/v2/"
    }
}

/// What the raw upstream does with the connection after writing a reply.
#[derive(Debug, Clone, Copy)]
enum After {
    /// Wait for the next request.
    KeepOpen,
    /// Close at once.
    Close,
    /// Close after this long, having said nothing about it in the response.
    CloseLater(Duration),
}

/// Exact bytes to write, then what to do with the connection.
struct Reply {
    bytes: Vec<u8>,
    after: After,
}

impl Reply {
    /// `bytes` on a connection that stays open.
    fn keep(bytes: Vec<u8>) -> Reply {
        Reply { bytes, after: After::KeepOpen }
    }
}

/// Decides the reply to each request.
type Respond = Arc<dyn Fn(&RawRequest) -> Reply + Send + Sync>;

/// A registry speaking HTTP/1.1 by hand on a loopback port: it records every
/// request and counts accepted connections. Dropping it stops the accept loop
/// and every connection task.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    /// Connections this side has closed (by accept index).
    closed: Arc<Mutex<Vec<usize>>>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    /// Starts serving; `GET /v2/` is always answered 200 `{}` (the anonymous
    /// probe), everything else by `respond`.
    async fn start(respond: Respond) -> RawUpstream {
        let requests: Arc<Mutex<Vec<RawRequest>>> = Arc::default();
        let closed: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (log, closed_log) = (requests.clone(), closed.clone());
        let (addr, accepted, task) = accept_loop(move |stream, conn| {
            let (respond, log, closed) = (respond.clone(), log.clone(), closed_log.clone());
            async move {
                serve_connection(stream, conn, respond, log).await;
                closed.lock().expect("lock").push(conn);
            }
        })
        .await;
        RawUpstream { addr, accepted, requests, closed, task }
    }

    /// `http://127.0.0.1:<port>`.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every request other than the `GET /v2/` probe.
    fn api_requests(&self) -> Vec<RawRequest> {
        self.requests.lock().expect("lock").iter().filter(|r| r.is_api()).cloned().collect()
    }

    /// Waits until this side has closed connection `conn`.
    async fn wait_closed(&self, conn: usize) {
        within(PATIENCE, "upstream close", async {
            while !self.closed.lock().expect("lock").contains(&conn) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// Distinct connections that carried an API request.
    fn api_connections(&self) -> usize {
        let mut conns: Vec<usize> = self.api_requests().iter().map(|r| r.conn).collect();
        conns.sort_unstable();
        conns.dedup();
        conns.len()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers requests on one connection until the peer closes or a reply says to close.
async fn serve_connection(
    mut stream: TcpStream,
    conn: usize,
    respond: Respond,
    log: Arc<Mutex<Vec<RawRequest>>>,
) {
    let mut buf = Vec::new();
    while let Some(end) = read_head(&mut stream, &mut buf).await {
        let head: Vec<u8> = buf.drain(..end).collect();
        let Some(req) = parse_request(&head, conn) else { return };
        log.lock().expect("lock").push(req.clone());
        let reply = if req.method == "GET" && req.path == "/v2/" {
            Reply::keep(response("200 OK", &[("Content-Type", "application/json")], b"{}"))
        } else {
            respond(&req)
        };
        if stream.write_all(&reply.bytes).await.is_err() {
            return;
        }
        match reply.after {
            After::KeepOpen => {}
            After::Close => return,
            After::CloseLater(d) => {
                tokio::time::sleep(d).await;
                return;
            }
        }
    }
}

/// Parses a request head (no body: the fast lane only carries GET and HEAD).
fn parse_request(head: &[u8], conn: usize) -> Option<RawRequest> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, path) = (start.next()?.to_string(), start.next()?.to_string());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(RawRequest { method, path, headers, conn })
}

/// The manifest as a keep-alive 200 in three chunks.
fn chunked_manifest_reply() -> Vec<u8> {
    let (a, rest) = MANIFEST.split_at(20);
    let (b, c) = rest.split_at(30);
    let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                      Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for chunk in [a, b, c] {
        bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

/// Starts the proxy with one anonymous connector `team-a/reg` pointing at `upstream`.
async fn proxy_for(upstream: &RawUpstream, extra_settings: &str) -> Proxy {
    Proxy::start(Resolver::Path, &connector_yaml("team-a", "reg", &upstream.url(), None), extra_settings)
        .await
}

/// The proxy URL of `suffix` (`app/manifests/v1`) under the connector.
fn api_url(proxy: &Proxy, suffix: &str) -> String {
    format!("{}/{suffix}", proxy.api_base("team-a", "reg"))
}

/// The request path (no origin) of `suffix` under the connector, for raw clients.
fn api_path(suffix: &str) -> String {
    format!("/v2/namespaces/team-a/connectors/reg/{suffix}")
}

/// A response read off a raw client socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// Reads one response head from `stream` (bytes past it stay in `buf`).
async fn read_response_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> RawResponse {
    let end = within(PATIENCE, "response head", read_head(stream, buf))
        .await
        .expect("connection closed before a response");
    let head: Vec<u8> = buf.drain(..end).collect();
    let text = String::from_utf8(head).expect("UTF-8 head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse { status, headers, body: Vec::new() }
}

/// Reads one `Content-Length`-framed response (no body when `head_request`).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> RawResponse {
    let mut resp = read_response_head(stream, buf).await;
    let len = if head_request { 0 } else { resp.content_length().expect("Content-Length") };
    while buf.len() < len {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = within(PATIENCE, "response body", stream.read(&mut chunk)).await.expect("read body");
        assert!(n > 0, "connection closed after {} of {len} body bytes", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    resp.body = buf.drain(..len).collect();
    resp
}

/// Whether the peer closes `stream` (EOF or reset) with no further bytes.
async fn closes_without_more(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(within(PATIENCE, "connection close", stream.read(&mut byte)).await, Ok(0) | Err(_))
}

/// Sequential manifest GETs share one pooled upstream connection.
#[tokio::test(flavor = "multi_thread")]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = RawUpstream::start(Arc::new(|_| Reply::keep(manifest_reply()))).await;
    let proxy = proxy_for(&upstream, "").await;
    let client = common::http_client();
    let url = api_url(&proxy, "app/manifests/v1");
    for i in 0..20 {
        let (status, body) = get(&client, &url, PATIENCE).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {}", proxy.log());
        assert_eq!(body, MANIFEST, "request {i}");
    }
    assert_eq!(upstream.api_requests().len(), 20);
    let conns = upstream.api_connections();
    assert!(conns <= 2, "20 sequential requests used {conns} upstream connections");
    assert!(upstream.accepted() <= 3, "{} connections accepted in all", upstream.accepted());
}

/// A pooled connection the registry closed while idle (without announcing it)
/// is replaced by a fresh one: GET is idempotent, so the client never sees it.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_while_idle_is_retried_on_a_fresh_one() {
    let upstream = RawUpstream::start(Arc::new(|_| Reply {
        bytes: manifest_reply(),
        after: After::CloseLater(Duration::from_millis(50)),
    }))
    .await;
    let proxy = proxy_for(&upstream, "").await;
    let client = common::http_client();
    let url = api_url(&proxy, "app/manifests/v1");

    let (status, body) = get(&client, &url, PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "request A: {}", proxy.log());
    assert_eq!(body, MANIFEST);
    // The registry closes the connection the proxy pooled after request A.
    let first = upstream.api_requests()[0].conn;
    upstream.wait_closed(first).await;
    // Give the FIN time to land on the proxy's side (loopback: at once).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = get(&client, &url, PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "request B: {}", proxy.log());
    assert_eq!(body, MANIFEST);

    assert_eq!(upstream.api_requests().len(), 2);
    assert_eq!(upstream.api_connections(), 2, "request B came on a new connection");
}

/// A large body the registry cuts short after the head went out: the client
/// must see a broken response (short body, connection closed), never a
/// complete-looking one; the proxy keeps serving afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_cut_short_reaches_the_client_truncated() {
    const ANNOUNCED: usize = 4 << 20;
    const SENT: usize = 1 << 20;
    let blob = random_bytes(ANNOUNCED, 3);
    let digest = common::sha256_bytes(&blob);
    let source = blob.clone();
    let upstream = RawUpstream::start(Arc::new(move |r| {
        if r.path.contains("/blobs/") {
            let mut bytes =
                response_head("200 OK", &[("Content-Type", "application/octet-stream")], ANNOUNCED);
            bytes.extend_from_slice(&source[..SENT]);
            return Reply { bytes, after: After::Close };
        }
        Reply::keep(manifest_reply())
    }))
    .await;
    let proxy = proxy_for(&upstream, "").await;
    let blob_suffix = format!("app/blobs/{digest}");

    // reqwest: the body read fails.
    let url = api_url(&proxy, &blob_suffix);
    let result = within(PATIENCE, "truncated blob", async {
        let r = common::http_client().get(&url).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await
    })
    .await;
    assert!(
        result.is_err(),
        "a body cut short must not look complete ({} bytes)",
        result.map_or(0, |b| b.len())
    );

    // Raw: the announced length, fewer bytes, then the connection ends.
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let req = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", api_path(&blob_suffix), proxy.addr());
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let head = read_response_head(&mut stream, &mut buf).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), Some(ANNOUNCED));
    let mut body = buf;
    // Ends in EOF or a reset; either way no more than the registry sent.
    let _ = within(PATIENCE, "truncated body", stream.read_to_end(&mut body)).await;
    assert!(body.len() <= SENT, "{} body bytes, the registry sent {SENT}", body.len());
    assert!(blob[..body.len()] == body[..], "the bytes that arrived are not the blob's");

    // The proxy is fine: a normal request still works.
    let (status, got) = get(&common::http_client(), &api_url(&proxy, "app/manifests/v1"), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(got, MANIFEST);
}

/// A small body (read whole before anything is written) cut short becomes a
/// clean 502 naming the connector.
#[tokio::test(flavor = "multi_thread")]
async fn a_small_body_cut_short_is_a_502_naming_the_connector() {
    let upstream = RawUpstream::start(Arc::new(|r| {
        if r.path.contains("/manifests/broken") {
            let mut bytes = response_head("200 OK", &[("Content-Type", "application/json")], 1000);
            bytes.extend_from_slice(&[b'x'; 100]);
            return Reply { bytes, after: After::Close };
        }
        Reply::keep(manifest_reply())
    }))
    .await;
    let proxy = proxy_for(&upstream, "").await;
    let client = common::http_client();

    let url = api_url(&proxy, "app/manifests/broken");
    let (status, body) = get(&client, &url, PATIENCE).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("an OCI error body");
    assert_eq!(json["errors"][0]["code"], "UNAVAILABLE", "{json}");
    let message = json["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("team-a/reg"), "{message}");

    let (status, body) = get(&client, &api_url(&proxy, "app/manifests/v1"), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(body, MANIFEST);
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}

/// A chunked answer is relayed by the fast lane itself: the client gets the
/// exact de-chunked body, with one registry request per client request.
#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_response_is_served_whole() {
    let upstream = RawUpstream::start(Arc::new(|_| Reply::keep(chunked_manifest_reply()))).await;
    let proxy = proxy_for(&upstream, "").await;
    let client = common::http_client();
    for i in 0..2 {
        let (status, body) = get(&client, &api_url(&proxy, "app/manifests/v1"), PATIENCE).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {}", proxy.log());
        assert_eq!(body, MANIFEST, "request {i}");
    }
    // Relayed by the fast lane itself: one registry request per client request,
    // and the connection, read to the end of the last chunk, is reused.
    assert_eq!(upstream.api_requests().len(), 2, "{:?}", upstream.api_requests());
    assert_eq!(upstream.api_connections(), 1);
}

/// An HTTP/1.0 client cannot take chunked encoding: it gets the plain data,
/// no `Transfer-Encoding`, and the end of the connection ends the body.
#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_get_chunked_answers_dechunked() {
    let upstream = RawUpstream::start(Arc::new(|_| Reply::keep(chunked_manifest_reply()))).await;
    let proxy = proxy_for(&upstream, "").await;
    let path = api_path("app/manifests/v1");
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", proxy.addr());
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    within(PATIENCE, "response to EOF", stream.read_to_end(&mut raw)).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(!lower.contains("content-length"), "{head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert_eq!(body.as_bytes(), MANIFEST);
    assert_eq!(upstream.api_requests().len(), 1);
}

/// A body without length or chunking ends when the registry closes; the
/// client gets all of it and a closed connection, and the registry's
/// connection is not pooled.
#[tokio::test(flavor = "multi_thread")]
async fn an_unframed_body_is_relayed_until_the_registry_closes() {
    let blob = random_bytes(600 * 1024, 7);
    let sent = blob.clone();
    let upstream = RawUpstream::start(Arc::new(move |_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        bytes.extend_from_slice(&sent);
        Reply { bytes, after: After::Close }
    }))
    .await;
    let proxy = proxy_for(&upstream, "").await;
    let client = common::http_client();
    for i in 0..2 {
        let (status, body) = get(&client, &api_url(&proxy, "app/blobs/sha256:00"), PATIENCE).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {}", proxy.log());
        assert!(body == blob, "request {i}: {} bytes differ from the {} sent", body.len(), blob.len());
    }
    assert_eq!(upstream.api_connections(), 2, "an unframed answer's connection is never reused");
}

/// HTTP/1.0 clients that ask for keep-alive keep their connection, and are
/// told so; one that does not ask gets its connection closed.
#[tokio::test(flavor = "multi_thread")]
async fn http10_keep_alive_clients_keep_their_connection() {
    let upstream = RawUpstream::start(Arc::new(|_| Reply::keep(manifest_reply()))).await;
    let proxy = proxy_for(&upstream, "").await;
    let path = api_path("app/manifests/v1");
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut buf = Vec::new();
    for i in 0..2 {
        let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", proxy.addr());
        stream.write_all(req.as_bytes()).await.expect("write");
        let resp = read_response(&mut stream, &mut buf, false).await;
        assert_eq!(resp.status, 200, "request {i}: {resp:?}");
        assert_eq!(resp.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"));
        assert_eq!(resp.content_length(), Some(MANIFEST.len()), "request {i}");
        assert_eq!(resp.body, MANIFEST, "request {i}");
    }
    let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", proxy.addr());
    stream.write_all(req.as_bytes()).await.expect("write");
    let resp = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, MANIFEST);
    assert!(buf.is_empty(), "stray bytes after the response: {buf:?}");
    assert!(closes_without_more(&mut stream).await, "the proxy must close an HTTP/1.0 connection");
}

/// With `fastLane: false` the general path serves the same requests, and each
/// reaches the registry once.
#[tokio::test(flavor = "multi_thread")]
async fn fast_lane_off_serves_through_the_general_path() {
    let blob = random_bytes(512 * 1024, 7);
    let digest = common::sha256_bytes(&blob);
    let source = blob.clone();
    let upstream = RawUpstream::start(Arc::new(move |r| {
        if r.path.contains("/blobs/") {
            return Reply::keep(response("200 OK", &[("Content-Type", "application/octet-stream")], &source));
        }
        if r.path.ends_with("/chunked") {
            return Reply::keep(chunked_manifest_reply());
        }
        Reply::keep(manifest_reply())
    }))
    .await;
    let proxy = proxy_for(&upstream, "upstream:\n  fastLane: false\n").await;
    let client = common::http_client();

    let (status, body) = get(&client, &api_url(&proxy, "app/manifests/v1"), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(body, MANIFEST);
    let (status, body) = get(&client, &api_url(&proxy, &format!("app/blobs/{digest}")), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert!(body == blob, "blob differs ({} bytes)", body.len());
    let (status, body) = get(&client, &api_url(&proxy, "app/manifests/chunked"), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(body, MANIFEST);

    let paths: Vec<String> = upstream.api_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 3, "one registry request per client request: {paths:?}");
}

/// An 8 MiB blob (spliced) arrives byte for byte; HEAD gives its length and no
/// body; `Range` travels upstream and the 206 comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_blob_head_and_range_through_the_fast_lane() {
    const SIZE: usize = 8 << 20;
    let blob = random_bytes(SIZE, 11);
    let digest = common::sha256_bytes(&blob);
    let source = blob.clone();
    let upstream = RawUpstream::start(Arc::new(move |r| {
        if !r.path.contains("/blobs/") {
            return Reply::keep(manifest_reply());
        }
        let octets = ("Content-Type", "application/octet-stream");
        if r.method == "HEAD" {
            return Reply::keep(response_head("200 OK", &[octets], SIZE));
        }
        let range = r.header("range").and_then(|v| v.strip_prefix("bytes=")).and_then(|v| v.split_once('-'));
        if let Some((from, to)) = range {
            let (from, to): (usize, usize) = (from.parse().expect("from"), to.parse().expect("to"));
            let content_range = format!("bytes {from}-{to}/{SIZE}");
            let headers = [octets, ("Content-Range", content_range.as_str())];
            return Reply::keep(response("206 Partial Content", &headers, &source[from..=to]));
        }
        Reply::keep(response("200 OK", &[octets], &source))
    }))
    .await;
    let proxy = proxy_for(&upstream, "").await;
    let suffix = format!("app/blobs/{digest}");

    let (status, body) = get(&common::http_client(), &api_url(&proxy, &suffix), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(body.len(), SIZE);
    assert_eq!(common::sha256_bytes(&body), digest);

    // HEAD then a ranged GET on one raw connection: a stray body after the
    // HEAD response would be read as the next response's head.
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut buf = Vec::new();
    let path = api_path(&suffix);
    let req = format!("HEAD {path} HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr());
    stream.write_all(req.as_bytes()).await.expect("write HEAD");
    let head = read_response(&mut stream, &mut buf, true).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.content_length(), Some(SIZE));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nRange: bytes=10-19\r\n\r\n", proxy.addr());
    stream.write_all(req.as_bytes()).await.expect("write GET");
    let ranged = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(ranged.status, 206, "{ranged:?}");
    assert_eq!(ranged.header("content-range"), Some(format!("bytes 10-19/{SIZE}").as_str()));
    assert_eq!(ranged.body, &blob[10..20]);

    let ranged_upstream: Vec<_> =
        upstream.api_requests().into_iter().filter(|r| r.header("range").is_some()).collect();
    assert_eq!(ranged_upstream.len(), 1, "{ranged_upstream:?}");
    assert_eq!(ranged_upstream[0].header("range"), Some("bytes=10-19"));
    assert_eq!(ranged_upstream[0].method, "GET");
}
