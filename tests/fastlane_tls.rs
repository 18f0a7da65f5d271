//! The fast lane against `https://` registries: TLS connections are pooled per
//! connector (never shared between connectors, whose trust roots differ), large
//! bodies arrive intact through the user-space TLS relay, and `fastLane: false`
//! still reaches a TLS registry through the general path.
//!
//! The registry is a small rustls server written here, with a private CA made
//! by the openssl CLI and trusted through each connector's `caCertSecretRef`.
//! It counts accepted connections and completed handshakes, and records which
//! connection carried each request.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::proxy::{Proxy, Resolver};
use common::raw::{accept_loop, get, manifest_reply, random_bytes, read_head, response, MANIFEST};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Upper bound for any single operation: a hang fails the test instead of stalling it.
const PATIENCE: Duration = Duration::from_secs(4);

/// The test CA and a server certificate for 127.0.0.1 it signed, as PEM.
struct Pki {
    ca_pem: String,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// The PKI, made once per test binary (P-256 keys: cheap to generate).
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temp dir");
        let files = common::pki::make(tmp.path());
        let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Pki {
            ca_pem: String::from_utf8(read(&files.ca)).expect("PEM is ASCII"),
            cert_pem: read(&files.cert),
            key_pem: read(&files.key),
        }
    })
}

/// A rustls acceptor serving the PKI's server certificate, HTTP/1.1 by ALPN.
fn acceptor() -> TlsAcceptor {
    let pki = pki();
    let certs = rustls_pemfile::certs(&mut &pki.cert_pem[..]).collect::<Result<Vec<_>, _>>().expect("certs");
    let key = rustls_pemfile::private_key(&mut &pki.key_pem[..]).expect("key PEM").expect("a private key");
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// One request as the registry parsed it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    /// Which accepted connection (0-based, in accept order) carried it.
    conn: usize,
    /// Whether `Host` is the first header: the fast lane writes it there
    /// (`h1::request_head`); Pingora's general path forwards the client's
    /// headers in their order, and reqwest sends `accept` first.
    host_first: bool,
}

impl Request {
    /// Whether this is a registry API call other than the `GET /v2/` probe
    /// (which comes from the proxy's separate reqwest client).
    fn is_api(&self) -> bool {
        self.path != "/v2/"
    }
}

/// Decides the exact response bytes for each request other than `GET /v2/`.
type Respond = Arc<dyn Fn(&Request) -> Vec<u8> + Send + Sync>;

/// An HTTPS registry on a loopback port. Dropping it stops the accept loop and
/// every connection task.
struct TlsUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    /// Handshake errors as the server saw them.
    failures: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl TlsUpstream {
    /// Starts serving; `GET /v2/` is always answered 200 `{}` (anonymous),
    /// everything else by `respond`, on keep-alive connections.
    async fn start(respond: Respond) -> TlsUpstream {
        let tls = acceptor();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let (done, failed, log) = (handshakes.clone(), failures.clone(), requests.clone());
        let (addr, accepted, task) = accept_loop(move |tcp, conn| {
            let (tls, respond, done, failed, log) =
                (tls.clone(), respond.clone(), done.clone(), failed.clone(), log.clone());
            async move {
                let _ = tcp.set_nodelay(true);
                let stream = match tokio::time::timeout(PATIENCE, tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return failed.lock().expect("lock").push(format!("conn {conn}: {e}")),
                    Err(_) => return failed.lock().expect("lock").push(format!("conn {conn}: timed out")),
                };
                done.fetch_add(1, Ordering::SeqCst);
                serve_connection(stream, conn, respond, log).await;
            }
        })
        .await;
        TlsUpstream { addr, accepted, handshakes, failures, requests, task }
    }

    /// `https://127.0.0.1:<port>`.
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// TCP connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("lock").clone()
    }

    /// Every request other than the `GET /v2/` probe.
    fn api_requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").iter().filter(|r| r.is_api()).cloned().collect()
    }

    /// Distinct connections that carried an API request whose path contains `part`.
    fn api_connections(&self, part: &str) -> Vec<usize> {
        let mut conns: Vec<usize> =
            self.api_requests().iter().filter(|r| r.path.contains(part)).map(|r| r.conn).collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    /// A summary for assertion messages.
    fn report(&self) -> String {
        let reqs: Vec<String> = self
            .requests
            .lock()
            .expect("lock")
            .iter()
            .map(|r| format!("{} {} @{}", r.method, r.path, r.conn))
            .collect();
        format!(
            "accepted {}, handshakes {}, handshake failures {:?}, requests {reqs:?}",
            self.accepted(),
            self.handshakes(),
            self.failures()
        )
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers requests on one connection until the peer closes it.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    conn: usize,
    respond: Respond,
    log: Arc<Mutex<Vec<Request>>>,
) {
    let mut buf = Vec::new();
    while let Some(end) = read_head(&mut stream, &mut buf).await {
        let head: Vec<u8> = buf.drain(..end).collect();
        let Some(req) = parse_request(&head, conn) else { return };
        log.lock().expect("lock").push(req.clone());
        let reply = if req.method == "GET" && req.path == "/v2/" {
            response("200 OK", &[("Content-Type", "application/json")], b"{}")
        } else {
            respond(&req)
        };
        // TLS buffers what it encrypts: flush, or the tail may not leave.
        if stream.write_all(&reply).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// Parses a request head (no body: only GET and HEAD come here).
fn parse_request(head: &[u8], conn: usize) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, path) = (start.next()?.to_string(), start.next()?.to_string());
    let host_first = lines.next().is_some_and(|l| l.to_ascii_lowercase().starts_with("host:"));
    Some(Request { method, path, conn, host_first })
}

/// Anonymous connectors `team-a/<name>` for each of `names`, all pointing at
/// `upstream` and trusting the test CA (one shared Secret `registry-ca`).
fn connectors_yaml(upstream: &TlsUpstream, names: &[&str]) -> String {
    let mut y = String::new();
    for name in names {
        y.push_str(&format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\n\
             metadata:\n  name: {name}\n  namespace: team-a\n\
             spec:\n  connectorClassName: oci\n  address: {}\n\
             \x20 caCertSecretRef:\n    name: registry-ca\n---\n",
            upstream.url()
        ));
    }
    y.push_str(&common::pki::ca_secret_yaml("team-a", "registry-ca", &pki().ca_pem));
    y
}

/// The proxy URL of `suffix` (`app/manifests/v1`) under connector `team-a/<name>`.
fn api_url(proxy: &Proxy, name: &str, suffix: &str) -> String {
    format!("{}/{suffix}", proxy.api_base("team-a", name))
}

/// Sequential manifest GETs share pooled TLS connections instead of a
/// handshake per request.
#[tokio::test(flavor = "multi_thread")]
async fn tls_connections_are_pooled() {
    let upstream = TlsUpstream::start(Arc::new(|_| manifest_reply())).await;
    let proxy = Proxy::start(Resolver::Path, &connectors_yaml(&upstream, &["reg"]), "").await;
    let client = common::http_client();
    let url = api_url(&proxy, "reg", "app/manifests/v1");
    for i in 0..20 {
        let (status, body) = get(&client, &url, PATIENCE).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {}\n{}", upstream.report(), proxy.log());
        assert_eq!(body, MANIFEST, "request {i}");
    }
    let api = upstream.api_requests();
    assert_eq!(api.len(), 20, "one registry request per client request: {}", upstream.report());
    assert!(api.iter().all(|r| r.method == "GET" && r.path == "/v2/app/manifests/v1"), "{api:?}");
    assert!(api.iter().all(|r| r.host_first), "not served on the fast lane: {api:?}");
    let conns = upstream.api_connections("/manifests/");
    assert!(conns.len() <= 2, "20 sequential requests used connections {conns:?}: {}", upstream.report());
    // The probe's connection plus the lane's: no handshake per request.
    assert!(upstream.accepted() <= 3, "{}", upstream.report());
    assert_eq!(upstream.handshakes(), upstream.accepted(), "{}", upstream.report());
    assert!(upstream.failures().is_empty(), "{}", upstream.report());
}

/// Two connectors on the same registry address: a TLS connection verified for
/// one is never reused by the other, while each still reuses its own.
#[tokio::test(flavor = "multi_thread")]
async fn tls_connections_are_not_shared_between_connectors() {
    let upstream = TlsUpstream::start(Arc::new(|_| manifest_reply())).await;
    let proxy = Proxy::start(Resolver::Path, &connectors_yaml(&upstream, &["one", "two"]), "").await;
    let client = common::http_client();
    for i in 0..10 {
        let name = if i % 2 == 0 { "one" } else { "two" };
        let url = api_url(&proxy, name, &format!("{name}/app/manifests/v1"));
        let (status, body) = get(&client, &url, PATIENCE).await;
        assert_eq!(status, StatusCode::OK, "request {i} ({name}): {}\n{}", upstream.report(), proxy.log());
        assert_eq!(body, MANIFEST, "request {i} ({name})");
    }
    let api = upstream.api_requests();
    assert_eq!(api.len(), 10, "{}", upstream.report());
    assert!(api.iter().all(|r| r.host_first), "not served on the fast lane: {api:?}");
    let one = upstream.api_connections("/v2/one/app/");
    let two = upstream.api_connections("/v2/two/app/");
    assert_eq!(api.iter().filter(|r| r.path.starts_with("/v2/one/app/")).count(), 5, "{}", upstream.report());
    assert_eq!(api.iter().filter(|r| r.path.starts_with("/v2/two/app/")).count(), 5, "{}", upstream.report());
    let shared: Vec<usize> = one.iter().filter(|c| two.contains(c)).copied().collect();
    assert!(
        shared.is_empty(),
        "connections {shared:?} carried both connectors' requests: {}",
        upstream.report()
    );
    let mut all: Vec<usize> = api.iter().map(|r| r.conn).collect();
    all.sort_unstable();
    all.dedup();
    assert!(all.len() >= 2, "{}", upstream.report());
    // Within one connector, connections are still pooled.
    assert!(one.len() <= 2 && two.len() <= 2, "{}", upstream.report());
    assert_eq!(upstream.handshakes(), upstream.accepted(), "{}", upstream.report());
}

/// A 3 MiB blob (relayed through user space, since TLS bodies cannot be
/// spliced) arrives byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_over_tls_arrives_intact() {
    const SIZE: usize = 3 << 20;
    let blob = random_bytes(SIZE, 13);
    let digest = common::sha256_bytes(&blob);
    let source = blob.clone();
    let upstream = TlsUpstream::start(Arc::new(move |r| {
        if r.path.contains("/blobs/") {
            return response("200 OK", &[("Content-Type", "application/octet-stream")], &source);
        }
        manifest_reply()
    }))
    .await;
    let proxy = Proxy::start(Resolver::Path, &connectors_yaml(&upstream, &["reg"]), "").await;
    let client = common::http_client();
    let (status, body) =
        get(&client, &api_url(&proxy, "reg", &format!("app/blobs/{digest}")), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}\n{}", upstream.report(), proxy.log());
    assert_eq!(body.len(), SIZE);
    assert_eq!(common::sha256_bytes(&body), digest);
    // The connection, read to the body's end, serves the next request (the
    // pause lets the proxy pool it after the client has the last byte).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get(&client, &api_url(&proxy, "reg", "app/manifests/v1"), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(body, MANIFEST);
    let api = upstream.api_requests();
    assert_eq!(api.len(), 2, "{}", upstream.report());
    assert!(api.iter().all(|r| r.host_first), "not served on the fast lane: {api:?}");
    assert_eq!(api[0].conn, api[1].conn, "the connection was not reused: {}", upstream.report());
}

/// With `fastLane: false` Pingora's general path reaches the TLS registry,
/// trusting the connector's CA.
#[tokio::test(flavor = "multi_thread")]
async fn fast_lane_off_still_serves_tls() {
    let upstream = TlsUpstream::start(Arc::new(|_| manifest_reply())).await;
    let proxy =
        Proxy::start(Resolver::Path, &connectors_yaml(&upstream, &["reg"]), "upstream:\n  fastLane: false\n")
            .await;
    let (status, body) =
        get(&common::http_client(), &api_url(&proxy, "reg", "app/manifests/v1"), PATIENCE).await;
    assert_eq!(status, StatusCode::OK, "{}\n{}", upstream.report(), proxy.log());
    assert_eq!(body, MANIFEST);
    let api = upstream.api_requests();
    assert_eq!(api.len(), 1, "{}", upstream.report());
    assert_eq!(api[0].path, "/v2/app/manifests/v1");
    assert!(!api[0].host_first, "served on the fast lane although it is off: {api:?}");
    assert!(upstream.failures().is_empty(), "{}", upstream.report());
}
