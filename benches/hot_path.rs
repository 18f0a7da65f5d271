//! Micro-benchmarks of the per-request work oci-connector does besides moving bytes:
//! routing, challenge parsing, the warm token-cache lookup, client token
//! verification, `Location`/`Link` rewriting, and the fast lane's HTTP/1.1
//! heads (upstream request written, registry response parsed and re-serialised),
//! and the read timeout around a read that has to wait once.
//!
//! `cargo bench --bench hot_path` measures; `cargo test --benches` (what CI runs)
//! executes every benchmark body once, untimed, as a smoke test. The token-cache
//! group talks to a tiny HTTP server on a loopback port chosen by the OS, and
//! checks afterwards that the measured path never fetched a token.

#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

use oci_connector::auth::client_token;
use oci_connector::auth::{challenge, scope, UpstreamAuth};
use oci_connector::config::{
    ClientAuthSettings, Connector, ConnectorId, RedirectPolicy, ResolverKind, Scheme, Settings, Upstream,
    UpstreamSettings,
};
use oci_connector::proxy::client_auth;
use oci_connector::proxy::fastlane::{h1, ReadTimer};
use oci_connector::proxy::rewrite::{upstream_repository, ClientView};
use oci_connector::registry::{shared_http_client, Snapshot};
use oci_connector::routing::{self, RouterConfig};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------- routing

fn bench_routing(c: &mut Criterion) {
    let path_cfg = RouterConfig { resolver: ResolverKind::Path, host_domain: "proxy.local".into() };
    let host_cfg = RouterConfig { resolver: ResolverKind::Host, host_domain: "proxy.local".into() };
    let manifest = "/v2/namespaces/bench/connectors/fast/library/alpine/manifests/3.19";
    let blob = format!("/v2/namespaces/bench/connectors/fast/org/team/app/blobs/{DIGEST}");
    // Sanity: the inputs really route (a typo would benchmark the 404 path).
    assert!(matches!(routing::route(&path_cfg, "h", manifest, None), routing::Route::Registry(_)));
    assert!(matches!(routing::route(&path_cfg, "h", &blob, None), routing::Route::Registry(_)));
    assert!(matches!(
        routing::route(&host_cfg, "c-fast.bench.proxy.local:5000", "/v2/library/alpine/manifests/3.19", None),
        routing::Route::Registry(_)
    ));

    let mut g = c.benchmark_group("routing");
    g.bench_function("path/manifest", |b| {
        b.iter(|| {
            routing::route(black_box(&path_cfg), black_box("127.0.0.1:5000"), black_box(manifest), None)
        })
    });
    g.bench_function("path/blob", |b| {
        b.iter(|| routing::route(black_box(&path_cfg), black_box("127.0.0.1:5000"), black_box(&blob), None))
    });
    g.bench_function("host/manifest", |b| {
        b.iter(|| {
            routing::route(
                black_box(&host_cfg),
                black_box("c-fast.bench.proxy.local:5000"),
                black_box("/v2/library/alpine/manifests/3.19"),
                None,
            )
        })
    });
    g.bench_function("mirror/manifest", |b| {
        b.iter(|| {
            routing::route(
                black_box(&path_cfg),
                black_box("127.0.0.1:5000"),
                black_box("/v2/library/alpine/manifests/3.19"),
                black_box(Some("ns=docker.io")),
            )
        })
    });
    g.bench_function("not_found", |b| {
        b.iter(|| routing::route(black_box(&path_cfg), black_box("h"), black_box("/v2/nothing/here"), None))
    });
    g.finish();
}

// ---------------------------------------------------------------- challenges

fn bench_challenge(c: &mut Criterion) {
    let cases = [
        (
            "docker_hub",
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        ),
        (
            "distribution_error",
            r#"Bearer realm="https://registry.example/auth",service="registry.example",scope="repository:org/app:pull,push",error="insufficient_scope""#,
        ),
        ("basic_then_bearer", r#"Basic realm="Registry", Bearer realm="https://t/token",service="s""#),
        ("basic", r#"Basic realm="Registry Realm""#),
    ];
    let mut g = c.benchmark_group("challenge_parse");
    for (name, header) in cases {
        assert!(challenge::parse(header).is_some(), "{name} must parse");
        g.bench_with_input(BenchmarkId::from_parameter(name), header, |b, h| {
            b.iter(|| challenge::parse(black_box(h)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- token cache

/// A registry stub: `/v2/` answers a Bearer challenge, `/token` issues a token
/// and counts how often it was asked.
struct StubRegistry {
    addr: SocketAddr,
    token_fetches: Arc<AtomicU64>,
}

fn start_stub_registry(rt: &Runtime) -> StubRegistry {
    let token_fetches = Arc::new(AtomicU64::new(0));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let fetches = token_fetches.clone();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let fetches = fetches.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let fetches = fetches.clone();
                    async move { Ok::<_, Infallible>(stub_response(addr, &req, &fetches)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    StubRegistry { addr, token_fetches }
}

fn stub_response(addr: SocketAddr, req: &Request<Incoming>, fetches: &AtomicU64) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/token" => {
            fetches.fetch_add(1, Ordering::Relaxed);
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(br#"{"token":"bench-token","expires_in":3600}"#)))
                .unwrap()
        }
        _ => Response::builder()
            .status(401)
            .header("www-authenticate", format!(r#"Bearer realm="http://{addr}/token",service="bench""#))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

fn bench_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: "http://127.0.0.1:5000".parse().unwrap(),
        admin_listen: None,
        connector_paths: Vec::new(),
        resolver: ResolverKind::Path,
        host_domain: "proxy.local".into(),
        client_auth: ClientAuthSettings::default(),
        allow_anonymous_clients: true,
        upstream: UpstreamSettings::default(),
        threads: 1,
    }
}

fn bench_connector(upstream: Upstream) -> Connector {
    Connector {
        id: ConnectorId::new("bench", "fast"),
        address: upstream.base_url(),
        upstream,
        docker_hub: false,
        credentials: None,
        secret_name: None,
        ca_certs: None,
        health_repository: None,
        redirects: RedirectPolicy::Follow,
        description: None,
    }
}

fn bench_token_cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let stub = start_stub_registry(&rt);
    let settings = bench_settings();
    let upstream = Upstream { scheme: Scheme::Http, host: "127.0.0.1".into(), port: stub.addr.port() };
    let snapshot =
        Snapshot::build(1, &settings, vec![bench_connector(upstream)], &shared_http_client(&settings))
            .unwrap();
    let state = snapshot.get(&ConnectorId::new("bench", "fast")).unwrap().clone();
    let auth = UpstreamAuth::new();

    // Warm 100 scopes, as a CI fleet pulling many repositories would.
    let scopes: Vec<Vec<String>> =
        (0..100).map(|i| scope::predict(&http::Method::GET, &format!("org/repo-{i}"), None)).collect();
    rt.block_on(async {
        for s in &scopes {
            let a = auth.authorization(&state, s).await.unwrap();
            assert!(a.header.is_some(), "the stub wants a bearer token");
        }
    });
    let warm_fetches = stub.token_fetches.load(Ordering::Relaxed);
    assert_eq!(warm_fetches, scopes.len() as u64, "one token fetch per scope");
    // The path measured below is the hit path (checked here, not after the
    // group: a name filter may skip every function in it).
    rt.block_on(auth.authorization(&state, &scopes[7])).unwrap();
    assert!(auth.stats.cache_hit_count() > 0);

    let mut g = c.benchmark_group("token_cache");
    // What `block_on` alone costs, to subtract from the figures below.
    g.bench_function("block_on_baseline", |b| b.iter(|| rt.block_on(async { black_box(1) })));
    g.bench_function("hit", |b| {
        b.iter(|| rt.block_on(auth.authorization(&state, black_box(&scopes[7]))).unwrap())
    });
    let mut i = 0usize;
    g.bench_function("hit_rotating_100_scopes", |b| {
        b.iter(|| {
            i = (i + 1) % scopes.len();
            rt.block_on(auth.authorization(&state, black_box(&scopes[i]))).unwrap()
        })
    });
    // The whole per-request auth work: predict the scope, then look it up.
    g.bench_function("predict_and_hit", |b| {
        b.iter(|| {
            let s = scope::predict(&http::Method::GET, black_box("org/repo-42"), None);
            rt.block_on(auth.authorization(&state, &s)).unwrap()
        })
    });
    g.finish();

    assert_eq!(
        stub.token_fetches.load(Ordering::Relaxed),
        warm_fetches,
        "the measured hit path must not fetch tokens"
    );
    drop(rt); // stops the stub
}

// ---------------------------------------------------------------- client tokens

fn bench_client_token(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
    client_token::generate_key_file(&k1).unwrap();
    client_token::generate_key_file(&k2).unwrap();
    let one_key = client_token::load_keys(std::slice::from_ref(&k1)).unwrap();
    // Rotation: a new signing key first, the old one still verifying.
    let rotated = client_token::load_keys(&[k2, k1]).unwrap();

    let connectors: Vec<ConnectorId> = (0..5).map(|i| ConnectorId::new("team", format!("c{i}"))).collect();
    let token = one_key.mint("ci-job-1234", &connectors, false, Duration::from_secs(1800));
    let now = SystemTime::now();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("ci:{}", token.expose()))
    );
    let bearer = format!("Bearer {}", token.expose());
    let mut forged = token.expose().to_string();
    forged.pop();
    forged.push(if token.expose().ends_with('A') { 'B' } else { 'A' });

    assert!(one_key.verify(token.expose(), now).is_ok());
    assert!(rotated.verify(token.expose(), now).is_ok(), "old keys keep verifying");
    assert!(one_key.verify(&forged, now).is_err());

    let mut g = c.benchmark_group("client_token");
    g.bench_function("verify", |b| b.iter(|| one_key.verify(black_box(token.expose()), now)));
    g.bench_function("verify_second_key", |b| b.iter(|| rotated.verify(black_box(token.expose()), now)));
    g.bench_function("verify_forged", |b| b.iter(|| one_key.verify(black_box(&forged), now)));
    g.bench_function("admit_basic_header", |b| {
        b.iter(|| client_auth::admit(Some(&one_key), Some(black_box(basic.as_bytes())), || now))
    });
    g.bench_function("admit_bearer_header", |b| {
        b.iter(|| client_auth::admit(Some(&one_key), Some(black_box(bearer.as_bytes())), || now))
    });
    g.bench_function("mint", |b| {
        b.iter(|| one_key.mint(black_box("ci-job-1234"), &connectors, false, Duration::from_secs(1800)))
    });
    g.finish();
}

// ---------------------------------------------------------------- rewriting

fn bench_rewrite(c: &mut Criterion) {
    let upstream = Upstream { scheme: Scheme::Https, host: "registry.example".into(), port: 443 };
    let hub = Connector { docker_hub: true, ..bench_connector(upstream.clone()) };
    let upstream_repo = upstream_repository(&hub, "alpine");
    let view = ClientView {
        upstream: &upstream,
        upstream_repo: &upstream_repo,
        client_repo: "alpine",
        client_prefix: "/v2/namespaces/bench/connectors/fast",
        client_origin: "http://127.0.0.1:5000",
    };
    let relative =
        "/v2/library/alpine/blobs/uploads/0f1e2d3c-4b5a?_state=eyJuYW1lIjoibGlicmFyeS9hbHBpbmUifQ%3D%3D";
    let absolute = format!("https://registry.example{relative}");
    let foreign = "https://s3.example/bucket/docker/registry/v2/blobs/sha256/01/data?X-Amz-Signature=abc";
    let link = r#"</v2/library/alpine/tags/list?last=3.19&n=100>; rel="next""#;
    assert!(view.location(relative).is_some());
    assert!(view.location(&absolute).is_some());
    assert!(view.location(foreign).is_none());
    assert!(view.link(link).is_some());

    let mut g = c.benchmark_group("rewrite");
    g.bench_function("location_relative", |b| b.iter(|| view.location(black_box(relative))));
    g.bench_function("location_absolute", |b| b.iter(|| view.location(black_box(&absolute))));
    g.bench_function("location_foreign", |b| b.iter(|| view.location(black_box(foreign))));
    g.bench_function("link", |b| b.iter(|| view.link(black_box(link))));
    g.bench_function("upstream_repository", |b| b.iter(|| upstream_repository(&hub, black_box("alpine"))));
    g.finish();
}

// ---------------------------------------------------------------- fast-lane heads

fn bench_fastlane_heads(c: &mut Criterion) {
    let client_headers: Vec<(&str, &[u8])> = vec![
        ("host", b"127.0.0.1:5000"),
        ("user-agent", b"containerd/1.7.24"),
        ("accept", b"application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"),
        ("authorization", b"Bearer ocit1.k1.eyJzdWIiOiJjaSJ9.c2ln"),
        ("connection", b"keep-alive"),
    ];
    let response = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 18:47:54 GMT\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 400\r\n\
         Docker-Content-Digest: {DIGEST}\r\nDocker-Distribution-API-Version: registry/2.0\r\n\
         ETag: \"{DIGEST}\"\r\nConnection: keep-alive\r\n\r\n"
    );
    let raw = response.as_bytes();
    let h1::Parsed::Head(head) = h1::parse_response(raw, false).unwrap() else { panic!("partial") };
    assert_eq!(head.framing, h1::Framing::Length(400));

    let mut g = c.benchmark_group("fastlane");
    g.bench_function("request_head", |b| {
        b.iter(|| {
            h1::request_head(
                "GET",
                black_box("/v2/library/alpine/manifests/3.19"),
                "registry.example",
                Some("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"),
                client_headers.iter().copied(),
            )
        })
    });
    g.bench_function("parse_response", |b| b.iter(|| h1::parse_response(black_box(raw), false)));
    g.bench_function("client_head", |b| {
        b.iter(|| head.client_head(black_box(raw), None, false, |_, _| None))
    });
    g.finish();
}

// ---------------------------------------------------------------- read timeouts

fn bench_read_timeout(c: &mut Criterion) {
    // One runtime thread, as Pingora's no-steal runtimes run the lane. The
    // "read" is `yield_now`: pending once, then ready, like a socket read
    // whose bytes arrive after the first poll.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let limit = Duration::from_secs(60);
    let mut g = c.benchmark_group("read_timeout");
    g.bench_function("none", |b| b.iter(|| rt.block_on(tokio::task::yield_now())));
    g.bench_function("pingora_fast_timeout", |b| {
        b.iter(|| rt.block_on(pingora_timeout::fast_timeout::fast_timeout(limit, tokio::task::yield_now())))
    });
    g.bench_function("tokio_timeout", |b| {
        b.iter(|| rt.block_on(async { tokio::time::timeout(limit, tokio::task::yield_now()).await }))
    });
    let mut timer = ReadTimer::new();
    g.bench_function("read_timer", |b| {
        b.iter(|| rt.block_on(timer.run(None, limit, tokio::task::yield_now())).unwrap())
    });
    // The caller passes a clock reading it already took (in the proxy: the
    // request's start or the end of the previous one): the wait reads no clock.
    let mut timer = ReadTimer::new();
    let began = std::time::Instant::now();
    g.bench_function("read_timer_given_start", |b| {
        b.iter(|| rt.block_on(timer.run(Some(began), 10 * limit, tokio::task::yield_now())).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_routing, bench_challenge, bench_token_cache, bench_client_token, bench_rewrite,
        bench_fastlane_heads, bench_read_timeout
}
criterion_main!(benches);
