//! The front door (`src/proxy/front.rs`), seen from raw client sockets so the
//! connection each response arrives on is certain: GET/HEAD it serves mixed on
//! one connection with requests it hands to Pingora, pipelining, a storage
//! redirect handed over without asking the registry twice, HTTP/1.0
//! keep-alive, bad and oversized heads left to Pingora, and the metrics and
//! access log lines of what it served.
//!
//! Writes that must land go to the real distribution registry; redirects and
//! pipelining use in-process fakes that record every request they get.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::fake::{FakeServer, Handler, Seen};
use common::fixture::{Mode, Upstream};
use common::proxy::{connector_yaml, Proxy, Resolver};
use common::raw::{
    closes_without_more, random_bytes, read_head, read_response, within, RawResponse, MANIFEST,
};
use common::{images, sha256_bytes, MANIFEST_TYPES};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Upper bound for any single client operation: a hang fails the test instead of stalling it.
const PATIENCE: Duration = Duration::from_secs(10);

/// A second manifest, longer than [`MANIFEST`], so two responses cannot be mistaken for each other.
const MANIFEST_B: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[],"annotations":{"tag":"b"}}"#;

/// One client connection to the proxy, written byte by byte.
struct Conn {
    stream: TcpStream,
    /// Bytes read past the last response.
    buf: Vec<u8>,
    /// The `Host` every request carries (the proxy's address).
    host: String,
}

impl Conn {
    async fn open(proxy: &Proxy) -> Conn {
        let stream = within(PATIENCE, "connect", TcpStream::connect(proxy.addr())).await.expect("connect");
        Conn { stream, buf: Vec::new(), host: proxy.addr() }
    }

    /// An HTTP/1.1 request to this connection's host.
    fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        request(method, target, "HTTP/1.1", &self.host, headers, body)
    }

    async fn send(&mut self, bytes: &[u8]) {
        within(PATIENCE, "write", self.stream.write_all(bytes)).await.expect("write request");
    }

    /// The next response on this connection.
    async fn response(&mut self, head_request: bool) -> RawResponse {
        read_response(&mut self.stream, &mut self.buf, head_request, PATIENCE).await
    }

    /// Sends one HTTP/1.1 request and reads its response.
    async fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let req = self.request(method, target, headers, body);
        self.send(&req).await;
        self.response(method == "HEAD").await
    }

    /// Whether another response head arrives (false: the proxy ended the connection).
    async fn answers_again(&mut self) -> bool {
        within(PATIENCE, "next response", read_head(&mut self.stream, &mut self.buf)).await.is_some()
    }

    /// Whether the proxy ends the connection with nothing after the last response.
    async fn ends(&mut self) -> bool {
        assert!(
            self.buf.is_empty(),
            "stray bytes after the last response: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        closes_without_more(&mut self.stream, PATIENCE).await
    }
}

/// A request head (and body, with its `Content-Length` unless `headers` has one).
fn request(
    method: &str,
    target: &str,
    version: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} {version}\r\nHost: {host}\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    let has_length = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !body.is_empty() && !has_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The request path of `suffix` (`app/manifests/a`) under connector `team-a/reg`.
fn api_path(suffix: &str) -> String {
    format!("/v2/namespaces/team-a/connectors/reg/{suffix}")
}

/// A manifest answer with its real digest.
fn manifest(body: &'static [u8]) -> (u16, Vec<(String, String)>, Bytes) {
    let headers = vec![
        ("Content-Type".to_string(), "application/vnd.oci.image.manifest.v1+json".to_string()),
        ("Docker-Content-Digest".to_string(), sha256_bytes(body)),
    ];
    (200, headers, Bytes::from_static(body))
}

/// An anonymous registry serving `app:a` ([`MANIFEST`]) and `app:b`
/// ([`MANIFEST_B`]), opening upload sessions and accepting manifest deletes.
fn fake_registry() -> Handler {
    Arc::new(|s: &Seen| {
        let path = s.uri.split('?').next().unwrap_or_default();
        let json = vec![("Content-Type".to_string(), "application/json".to_string())];
        match (s.method.as_str(), path) {
            ("GET", "/v2/") => (200, json, Bytes::from_static(b"{}")),
            ("GET" | "HEAD", "/v2/app/manifests/a") => manifest(MANIFEST),
            ("GET" | "HEAD", "/v2/app/manifests/b") => manifest(MANIFEST_B),
            ("POST", "/v2/app/blobs/uploads/") => {
                let headers = vec![
                    ("Location".to_string(), "/v2/app/blobs/uploads/u-1".to_string()),
                    ("Docker-Upload-UUID".to_string(), "u-1".to_string()),
                    ("Range".to_string(), "0-0".to_string()),
                ];
                (202, headers, Bytes::new())
            }
            ("DELETE", p) if p.starts_with("/v2/app/manifests/") => (202, vec![], Bytes::new()),
            _ => (
                404,
                json,
                Bytes::from_static(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#),
            ),
        }
    })
}

/// The proxy with one anonymous connector `team-a/reg` pointing at `registry`.
async fn proxy_for(registry: &FakeServer) -> Proxy {
    Proxy::start(Resolver::Path, &connector_yaml("team-a", "reg", &registry.url(), None), "").await
}

/// How many requests `server` saw with `method` and exactly `path` (no query).
fn count(server: &FakeServer, method: &str, path: &str) -> usize {
    server.seen().iter().filter(|s| s.method == method && s.uri.split('?').next() == Some(path)).count()
}

/// Pulls, pushes and deletes interleaved on ONE client connection against the
/// real registry: GET and HEAD served by the front door, POST/PUT/DELETE handed
/// to Pingora with the connection, which comes back to the front door after
/// each. Every response arrives on the test's one socket, in order, and right;
/// the pushed blob really landed in the registry, and its deletion really
/// happened (the front door's next GET of it is a 404).
#[tokio::test(flavor = "multi_thread")]
async fn one_connection_mixes_front_door_and_handed_over_requests() {
    let up = Upstream::start(Mode::Anonymous).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let mut conn = Conn::open(&proxy).await;
    let accept = [("Accept", MANIFEST_TYPES)];
    let manifest_path = api_path("tiny/manifests/v1");

    // 1. Front door: the seeded manifest.
    let r = conn.exchange("GET", &manifest_path, &accept, b"").await;
    assert_eq!(r.status, 200, "GET manifest: {r:?}\n{}", proxy.log());
    assert_eq!(sha256_bytes(&r.body), image.manifest_digest);

    // 2. Handed over: POST opens an upload session.
    let r = conn.exchange("POST", &api_path("tiny/blobs/uploads/"), &[("Content-Length", "0")], b"").await;
    assert_eq!(r.status, 202, "POST upload: {r:?}\n{}", proxy.log());
    let location = r.header("location").expect("Location").to_string();
    let origin = format!("http://{}", proxy.addr());
    let upload = location.strip_prefix(&origin).unwrap_or_else(|| panic!("{location} is not under {origin}"));
    assert!(upload.starts_with(&api_path("tiny/blobs/uploads/")), "{upload}");

    // 3. Handed over, with a body: PUT completes the upload.
    let blob = random_bytes(100_000, 21);
    let digest = sha256_bytes(&blob);
    let sep = if upload.contains('?') { '&' } else { '?' };
    let put = format!("{upload}{sep}digest={digest}");
    let r = conn.exchange("PUT", &put, &[("Content-Type", "application/octet-stream")], &blob).await;
    assert_eq!(r.status, 201, "PUT upload: {r:?}\n{}", proxy.log());
    // The write landed: the registry itself serves the blob.
    let direct = format!("{}/v2/tiny/blobs/{digest}", up.registry.url());
    let (status, stored) = common::raw::get(&common::http_client(), &direct, PATIENCE).await;
    assert_eq!(status, 200, "the blob did not land in the registry");
    assert!(stored == blob, "the registry stored {} different bytes", stored.len());

    // 4. Front door again: the blob, then its HEAD.
    let blob_path = api_path(&format!("tiny/blobs/{digest}"));
    let r = conn.exchange("GET", &blob_path, &[], b"").await;
    assert_eq!(r.status, 200, "GET blob: {r:?}\n{}", proxy.log());
    assert_eq!(sha256_bytes(&r.body), digest, "GET blob: {} bytes", r.body.len());
    let r = conn.exchange("HEAD", &blob_path, &[], b"").await;
    assert_eq!(r.status, 200, "HEAD blob: {r:?}");
    assert_eq!(r.content_length(), Some(blob.len()), "HEAD blob: {r:?}");

    // 5. Handed over: DELETE; then the front door sees it gone, and the manifest still there.
    let r = conn.exchange("DELETE", &blob_path, &[], b"").await;
    assert_eq!(r.status, 202, "DELETE blob: {r:?}\n{}", proxy.log());
    let r = conn.exchange("GET", &blob_path, &[], b"").await;
    assert_eq!(r.status, 404, "GET deleted blob: {r:?}");
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("an OCI error body");
    assert_eq!(json["errors"][0]["code"], "BLOB_UNKNOWN", "{json}");
    let r = conn.exchange("HEAD", &manifest_path, &accept, b"").await;
    assert_eq!(r.status, 200, "HEAD manifest: {r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(image.manifest_digest.as_str()), "{r:?}");

    // The one connection carried all eight exchanges and is still open and clean.
    assert!(conn.buf.is_empty(), "stray bytes: {:?}", String::from_utf8_lossy(&conn.buf));
    let r = conn.exchange("GET", "/v2/", &[("Connection", "close")], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]), "{r:?}");
    assert!(conn.ends().await, "Connection: close must end the connection");
}

/// Four requests written in ONE write (`GET /v2/`, `GET app:a`, `HEAD app:b`,
/// `GET app:b`) are answered in order on that connection: the proxy's own
/// answer, A's bytes, B's length without a body, then B's bytes (a stray HEAD
/// body would be read as the fourth status line and fail it).
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let registry = FakeServer::start(fake_registry()).await;
    let proxy = proxy_for(&registry).await;
    let mut conn = Conn::open(&proxy).await;
    let (a, b) = (api_path("app/manifests/a"), api_path("app/manifests/b"));
    let mut batch = conn.request("GET", "/v2/", &[], b"");
    batch.extend(conn.request("GET", &a, &[], b""));
    batch.extend(conn.request("HEAD", &b, &[], b""));
    batch.extend(conn.request("GET", &b, &[("Connection", "close")], b""));
    conn.send(&batch).await;

    let base = conn.response(false).await;
    assert_eq!(base.status, 200, "{base:?}");
    assert_eq!(base.header("docker-distribution-api-version"), Some("registry/2.0"));
    assert_eq!(base.body, b"{}");
    let got_a = conn.response(false).await;
    assert_eq!(got_a.status, 200, "GET a: {got_a:?}\n{}", proxy.log());
    assert_eq!(got_a.body, MANIFEST, "GET a");
    let head_b = conn.response(true).await;
    assert_eq!(head_b.status, 200, "HEAD b: {head_b:?}");
    assert_eq!(head_b.content_length(), Some(MANIFEST_B.len()), "HEAD b: {head_b:?}");
    let got_b = conn.response(false).await;
    assert_eq!(got_b.status, 200, "GET b: {got_b:?}");
    assert_eq!(got_b.body, MANIFEST_B, "GET b");
    assert!(got_b.connection_has("close"), "{got_b:?}");
    assert!(conn.ends().await, "the last request asked to close");

    assert_eq!(count(&registry, "GET", "/v2/app/manifests/a"), 1);
    assert_eq!(count(&registry, "HEAD", "/v2/app/manifests/b"), 1);
    assert_eq!(count(&registry, "GET", "/v2/app/manifests/b"), 1);
}

/// A request the front door hands over, pipelined between two it serves
/// (`GET a`, `DELETE b`, `GET b` in one write): all three are answered, in
/// order, on the one connection. The bytes behind the handed-over request were
/// already read when it was handed over; none may be lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_handed_over_request_inside_a_pipeline_loses_nothing_behind_it() {
    let registry = FakeServer::start(fake_registry()).await;
    let proxy = proxy_for(&registry).await;
    let mut conn = Conn::open(&proxy).await;
    let (a, b) = (api_path("app/manifests/a"), api_path("app/manifests/b"));
    let mut batch = conn.request("GET", &a, &[], b"");
    batch.extend(conn.request("DELETE", &b, &[], b""));
    batch.extend(conn.request("GET", &b, &[("Connection", "close")], b""));
    conn.send(&batch).await;

    let got_a = conn.response(false).await;
    assert_eq!((got_a.status, got_a.body.as_slice()), (200, MANIFEST), "GET a: {got_a:?}");
    let deleted = conn.response(false).await;
    assert_eq!(deleted.status, 202, "DELETE b: {deleted:?}\n{}", proxy.log());
    assert_eq!(count(&registry, "DELETE", "/v2/app/manifests/b"), 1);
    assert!(
        conn.answers_again().await,
        "the proxy closed the connection instead of answering the GET pipelined after the \
         handed-over DELETE (the registry saw {} GET b); the DELETE's response was {deleted:?}",
        count(&registry, "GET", "/v2/app/manifests/b")
    );
    let got_b = conn.response(false).await;
    assert_eq!((got_b.status, got_b.body.as_slice()), (200, MANIFEST_B), "GET b: {got_b:?}");
    assert!(conn.ends().await);
}

/// A blob GET the registry answers with 307 to storage: the front door hands
/// the request (with the redirect it already received) to Pingora, which goes
/// straight to storage. The client gets the blob's exact bytes (and its length
/// for HEAD); the registry got exactly one GET and one HEAD for the blob;
/// storage got each once, never with credentials; and the connection comes
/// back to the front door for the next request.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_redirect_is_handed_over_without_asking_the_registry_again() {
    let blob = random_bytes(40_000, 5);
    let digest = sha256_bytes(&blob);
    let stored = Bytes::from(blob.clone());
    let storage = FakeServer::start(Arc::new(move |s: &Seen| {
        if !s.uri.contains("X-Signature=abc") {
            return (403, vec![], Bytes::new());
        }
        (200, vec![("Content-Type".into(), "application/octet-stream".into())], stored.clone())
    }))
    .await;
    let basic = format!("Basic {}", base64_encode("robot:pw-redirect"));
    let (storage_url, blob_digest) = (storage.url(), digest.clone());
    let registry = FakeServer::start(Arc::new(move |s: &Seen| {
        if s.authorization.as_deref() != Some(basic.as_str()) {
            return (401, vec![("WWW-Authenticate".into(), r#"Basic realm="fake""#.into())], Bytes::new());
        }
        if s.uri.contains("/blobs/") {
            let location = format!("{storage_url}/bucket/{blob_digest}?X-Signature=abc");
            return (307, vec![("Location".into(), location)], Bytes::new());
        }
        manifest(MANIFEST)
    }))
    .await;
    let connector = connector_yaml("team-a", "reg", &registry.url(), Some(("robot", "pw-redirect")));
    let proxy = Proxy::start(Resolver::Path, &connector, "").await;
    let mut conn = Conn::open(&proxy).await;
    let blob_path = api_path(&format!("app/blobs/{digest}"));

    let r = conn.exchange("GET", &blob_path, &[], b"").await;
    assert_eq!(r.status, 200, "GET blob: {r:?}\n{}", proxy.log());
    assert_eq!(sha256_bytes(&r.body), digest, "{} bytes", r.body.len());
    let r = conn.exchange("HEAD", &blob_path, &[], b"").await;
    assert_eq!(r.status, 200, "HEAD blob: {r:?}\n{}", proxy.log());
    assert_eq!(r.content_length(), Some(blob.len()), "HEAD blob: {r:?}");
    // Back at the front door: the same connection serves the next request.
    let r = conn.exchange("GET", &api_path("app/manifests/a"), &[], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST), "GET manifest after the redirects: {r:?}");

    let upstream_blob = format!("/v2/app/blobs/{digest}");
    let asked: Vec<String> = registry
        .seen()
        .iter()
        .filter(|s| s.uri.contains("/blobs/"))
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(count(&registry, "GET", &upstream_blob), 1, "the registry was asked again: {asked:?}");
    assert_eq!(count(&registry, "HEAD", &upstream_blob), 1, "the registry was asked again: {asked:?}");
    let fetched = storage.seen();
    let storage_path = format!("/bucket/{digest}");
    assert_eq!(count(&storage, "GET", &storage_path), 1, "{fetched:?}");
    assert_eq!(count(&storage, "HEAD", &storage_path), 1, "{fetched:?}");
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    let storage_host = storage.url().trim_start_matches("http://").to_string();
    for s in &fetched {
        assert_eq!(s.authorization, None, "credentials must not follow a redirect to storage: {s:?}");
        assert!(s.uri.ends_with("?X-Signature=abc"), "the signed query must survive: {s:?}");
        assert_eq!(s.host.as_deref(), Some(storage_host.as_str()), "{s:?}");
    }
}

/// HTTP/1.0 without `Connection: keep-alive` gets `Connection: close` and a
/// closed socket, for the proxy's own answer and for a proxied manifest alike
/// (as does HTTP/1.1 with `Connection: close`); HTTP/1.0 with keep-alive gets
/// `Connection: keep-alive` and the same socket serves a second request.
#[tokio::test(flavor = "multi_thread")]
async fn http10_closes_unless_asked_to_keep_alive() {
    let registry = FakeServer::start(fake_registry()).await;
    let proxy = proxy_for(&registry).await;
    let a = api_path("app/manifests/a");
    let host = proxy.addr();

    for (target, body) in [("/v2/", &b"{}"[..]), (a.as_str(), MANIFEST)] {
        let mut conn = Conn::open(&proxy).await;
        conn.send(&request("GET", target, "HTTP/1.0", &host, &[], b"")).await;
        let r = conn.response(false).await;
        assert_eq!((r.status, r.body.as_slice()), (200, body), "HTTP/1.0 GET {target}: {r:?}");
        assert!(r.connection_has("close"), "HTTP/1.0 GET {target}: {r:?}");
        assert!(conn.ends().await, "HTTP/1.0 GET {target}: the proxy must close the connection");
    }

    let mut conn = Conn::open(&proxy).await;
    let r = conn.exchange("GET", &a, &[("Connection", "close")], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST), "{r:?}");
    assert!(r.connection_has("close"), "{r:?}");
    assert!(conn.ends().await, "HTTP/1.1 with Connection: close");

    let mut conn = Conn::open(&proxy).await;
    let keep = [("Connection", "keep-alive")];
    for (target, body) in [(a.as_str(), MANIFEST), ("/v2/", &b"{}"[..])] {
        conn.send(&request("GET", target, "HTTP/1.0", &host, &keep, b"")).await;
        let r = conn.response(false).await;
        assert_eq!((r.status, r.body.as_slice()), (200, body), "HTTP/1.0 keep-alive GET {target}: {r:?}");
        assert!(r.connection_has("keep-alive"), "HTTP/1.0 keep-alive GET {target}: {r:?}");
    }
    conn.send(&request("HEAD", &a, "HTTP/1.0", &host, &[], b"")).await;
    let r = conn.response(true).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.content_length(), Some(MANIFEST.len()), "{r:?}");
    assert!(r.connection_has("close"), "{r:?}");
    assert!(conn.ends().await, "the third request did not ask for keep-alive");
}

/// Heads httparse rejects (junk after the version, a control byte in a header
/// name, a TLS ClientHello on the plain port) go to Pingora, which answers
/// 400-class promptly (its own `Server: Pingora` shows it was Pingora) and
/// closes; a new connection is served normally after each.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_heads_get_a_4xx_and_break_nothing() {
    let registry = FakeServer::start(fake_registry()).await;
    let proxy = proxy_for(&registry).await;
    let host = proxy.addr();
    let mut client_hello = vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03];
    client_hello.extend(random_bytes(32, 9));
    let bad: [(&str, Vec<u8>); 3] = [
        ("junk after the version", format!("GET /v2/ HTTP/1.1 junk\r\nHost: {host}\r\n\r\n").into_bytes()),
        (
            "control byte in a header name",
            format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nBad\x01Name: x\r\n\r\n").into_bytes(),
        ),
        ("TLS ClientHello", client_hello),
    ];
    for (what, bytes) in bad {
        let mut conn = Conn::open(&proxy).await;
        conn.send(&bytes).await;
        let r = conn.response(false).await;
        assert!((400..500).contains(&r.status), "{what}: expected a 4xx, got {r:?}");
        assert_eq!(r.header("server"), Some("Pingora"), "{what}: answered by Pingora: {r:?}");
        assert!(r.connection_has("close"), "{what}: {r:?}");
        assert!(conn.ends().await, "{what}: the connection must end after the error");

        let mut fresh = Conn::open(&proxy).await;
        let r = fresh.exchange("GET", &api_path("app/manifests/a"), &[], b"").await;
        assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST), "after {what}: {r:?}\n{}", proxy.log());
    }
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}

/// Heads beyond the front door's limits (one of more than 64 KiB, one with more
/// than 64 headers) are handed to Pingora, whose own limits are higher (1 MiB,
/// 256 headers): it serves them as it would without the front door, without a
/// hang, and the connection comes back for the next request; a new connection
/// is served too.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_are_served_by_pingora_and_the_connection_returns() {
    let registry = FakeServer::start(fake_registry()).await;
    let proxy = proxy_for(&registry).await;
    let (a, b) = (api_path("app/manifests/a"), api_path("app/manifests/b"));

    let padding = "p".repeat(70 * 1024);
    let mut conn = Conn::open(&proxy).await;
    let r = conn.exchange("GET", &a, &[("X-Padding", &padding)], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST), "70 KiB head: {r:?}\n{}", proxy.log());
    let r = conn.exchange("GET", &b, &[], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST_B), "after the 70 KiB head: {r:?}");

    let names: Vec<(String, String)> = (0..80).map(|i| (format!("X-Extra-{i}"), i.to_string())).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = conn.exchange("GET", &b, &many, b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST_B), "80 headers: {r:?}\n{}", proxy.log());
    let r = conn.exchange("HEAD", &a, &[], b"").await;
    assert_eq!((r.status, r.content_length()), (200, Some(MANIFEST.len())), "after 80 headers: {r:?}");

    let mut fresh = Conn::open(&proxy).await;
    let r = fresh.exchange("GET", &a, &[], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST), "new connection: {r:?}");
    assert_eq!(count(&registry, "GET", "/v2/app/manifests/a"), 2);
    assert_eq!(count(&registry, "GET", "/v2/app/manifests/b"), 2);
}

/// Requests the front door serves are recorded like any other: after 5 GETs,
/// 1 HEAD and a `GET /v2/` on one connection (plus one POST handed to Pingora),
/// `/metrics` counts each once for connector `team-a/reg` with a 2xx status,
/// with the bytes sent and a duration each, nothing left in flight; and the
/// access log has a `status=200` line for each front-door request.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_access_log_count_front_door_requests() {
    const GETS: usize = 5;
    let registry = FakeServer::start(fake_registry()).await;
    let proxy =
        Proxy::start_with_admin(Resolver::Path, &connector_yaml("team-a", "reg", &registry.url(), None), "")
            .await;
    let base =
        r#"oci_connector_requests_total{connector="none",method="GET",endpoint="base",status_class="2xx"}"#;
    let base_before = proxy.metric(base).await;

    let mut conn = Conn::open(&proxy).await;
    let a = api_path("app/manifests/a");
    for i in 0..GETS {
        let r = conn.exchange("GET", &a, &[], b"").await;
        assert_eq!((r.status, r.body.as_slice()), (200, MANIFEST), "GET {i}: {r:?}");
    }
    let r = conn.exchange("HEAD", &a, &[], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = conn.exchange("GET", "/v2/", &[], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = conn.exchange("POST", &api_path("app/blobs/uploads/"), &[("Content-Length", "0")], b"").await;
    assert_eq!(r.status, 202, "{r:?}\n{}", proxy.log());

    let labels = |method: &str, endpoint: &str| {
        format!(r#"connector="team-a/reg",method="{method}",endpoint="{endpoint}""#)
    };
    let requests = |method: &str, endpoint: &str| {
        format!(r#"oci_connector_requests_total{{{},status_class="2xx"}}"#, labels(method, endpoint))
    };
    // The front door records a request just after its response went out: wait for the last one.
    let text = settled_metrics(&proxy, &requests("POST", "upload"), 1.0).await;
    let m = |sample: &str| common::proxy::metric_value(&text, sample);
    assert_eq!(m(&requests("GET", "manifest")), GETS as f64, "{text}");
    assert_eq!(m(&requests("HEAD", "manifest")), 1.0, "{text}");
    assert_eq!(m(&requests("POST", "upload")), 1.0, "handed over, counted once: {text}");
    assert_eq!(m(base), base_before + 1.0, "{text}");
    let bytes_out = m(&format!("oci_connector_response_bytes_total{{{}}}", labels("GET", "manifest")));
    assert_eq!(bytes_out, (GETS * MANIFEST.len()) as f64, "{text}");
    assert_eq!(m(&format!("oci_connector_response_bytes_total{{{}}}", labels("HEAD", "manifest"))), 0.0);
    let durations =
        r#"oci_connector_request_duration_seconds_count{connector="team-a/reg",endpoint="manifest"}"#;
    assert_eq!(m(durations), (GETS + 1) as f64, "{text}");
    let upstream =
        r#"oci_connector_upstream_duration_seconds_count{connector="team-a/reg",endpoint="manifest"}"#;
    assert_eq!(m(upstream), (GETS + 1) as f64, "{text}");
    assert_eq!(m("oci_connector_requests_in_flight"), 0.0, "{text}");

    let post = format!("method=POST path={} status=202 ", api_path("app/blobs/uploads/"));
    let log = settled_log(&proxy, &post).await;
    let line = |method: &str| {
        format!("connector=team-a/reg method={method} path={a} status=200 upstream_status=200 ")
    };
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines(&line("GET")), GETS, "{log}");
    assert_eq!(lines(&line("HEAD")), 1, "{log}");
    assert_eq!(lines(&post), 1, "{log}");
}

/// `/metrics` once `sample` reached `want` (or after 2 s, for the assertion to show).
async fn settled_metrics(proxy: &Proxy, sample: &str, want: f64) -> String {
    let mut text = proxy.admin_get("/metrics").await;
    for _ in 0..100 {
        if common::proxy::metric_value(&text, sample) >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = proxy.admin_get("/metrics").await;
    }
    text
}

/// The proxy's log once it has a line containing `needle` (or after 2 s, for the assertion to show).
async fn settled_log(proxy: &Proxy, needle: &str) -> String {
    for _ in 0..100 {
        let log = proxy.log();
        if log.contains(needle) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.log()
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
