//! `/metrics` after known traffic through the proxy to a real registry: request
//! counts by connector, method, endpoint and status class, byte totals both ways,
//! histograms and token cache counters all match what the client did.

mod common;

use common::fixture::{Mode, Upstream};
use common::images;
use common::proxy::{metric_value, Proxy, Resolver};
use common::MANIFEST_TYPES;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_match_the_traffic() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let proxy = Proxy::start_with_admin(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let client = common::http_client();
    let api = proxy.api_base("team-a", "reg");
    let mut bytes_out = 0u64;

    // 3 manifest GETs, 1 manifest HEAD, 1 unknown tag (404), 2 blob GETs.
    for _ in 0..3 {
        let r = client
            .get(format!("{api}/tiny/manifests/v1"))
            .header(ACCEPT, MANIFEST_TYPES)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK);
        bytes_out += r.bytes().await.expect("body").len() as u64;
    }
    let r = client
        .head(format!("{api}/tiny/manifests/v1"))
        .header(ACCEPT, MANIFEST_TYPES)
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .get(format!("{api}/tiny/manifests/nope"))
        .header(ACCEPT, MANIFEST_TYPES)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    bytes_out += r.bytes().await.expect("body").len() as u64;
    let manifest_bytes = bytes_out;
    let layer = image.largest_blob().digest.clone();
    for _ in 0..2 {
        let r = client.get(format!("{api}/tiny/blobs/{layer}")).send().await.expect("get blob");
        assert_eq!(r.status(), StatusCode::OK);
        bytes_out += r.bytes().await.expect("body").len() as u64;
    }
    let blob_bytes = bytes_out - manifest_bytes;

    // An upload: POST opens the session, PUT carries the body.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let r = client
        .post(format!("{api}/tiny/blobs/uploads/"))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()[LOCATION].to_str().expect("location").to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client
        .put(format!("{location}{sep}digest={digest}"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);

    // An unrouted request and an unknown connector (the harness polled `/v2/` while starting).
    let base = "oci_connector_requests_total{connector=\"none\",method=\"GET\",endpoint=\"base\",status_class=\"2xx\"}";
    let base_before = proxy.metric(base).await;
    let r = client.get(format!("http://{}/v2/", proxy.addr())).send().await.expect("base");
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .get(format!("{}/tiny/manifests/v1", proxy.api_base("team-a", "missing")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let text = proxy.admin_get("/metrics").await;
    let m = |s: &str| metric_value(&text, s);
    let l = |method: &str, endpoint: &str| {
        format!("connector=\"team-a/reg\",method=\"{method}\",endpoint=\"{endpoint}\"")
    };
    let req = |method: &str, endpoint: &str, class: &str| {
        m(&format!("oci_connector_requests_total{{{},status_class=\"{class}\"}}", l(method, endpoint)))
    };
    assert_eq!(req("GET", "manifest", "2xx"), 3.0, "{text}");
    assert_eq!(req("GET", "manifest", "4xx"), 1.0, "{text}");
    assert_eq!(req("HEAD", "manifest", "2xx"), 1.0, "{text}");
    assert_eq!(req("GET", "blob", "2xx"), 2.0, "{text}");
    assert_eq!(req("POST", "upload", "2xx"), 1.0, "{text}");
    assert_eq!(req("PUT", "upload", "2xx"), 1.0, "{text}");
    assert_eq!(m(base), base_before + 1.0);
    assert_eq!(m("oci_connector_requests_total{connector=\"none\",method=\"GET\",endpoint=\"none\",status_class=\"4xx\"}"), 1.0);

    let out = |method: &str, endpoint: &str| {
        m(&format!("oci_connector_response_bytes_total{{{}}}", l(method, endpoint)))
    };
    assert_eq!(out("GET", "manifest"), manifest_bytes as f64, "{text}");
    assert_eq!(out("GET", "blob"), blob_bytes as f64, "{text}");
    assert_eq!(out("HEAD", "manifest"), 0.0);
    assert_eq!(blob_bytes, 2 * image.largest_blob().size);
    let inb = m(&format!("oci_connector_request_bytes_total{{{}}}", l("PUT", "upload")));
    assert_eq!(inb, body.len() as f64, "{text}");

    let hist = |name: &str, endpoint: &str, suffix: &str| {
        m(&format!("oci_connector_{name}_{suffix}{{connector=\"team-a/reg\",endpoint=\"{endpoint}\"}}"))
    };
    assert_eq!(hist("request_duration_seconds", "manifest", "count"), 5.0);
    assert_eq!(hist("upstream_duration_seconds", "manifest", "count"), 5.0);
    assert_eq!(hist("request_duration_seconds", "blob", "count"), 2.0);
    let inf = m("oci_connector_request_duration_seconds_bucket{connector=\"team-a/reg\",endpoint=\"blob\",le=\"+Inf\"}");
    assert_eq!(inf, 2.0);
    assert!(hist("request_duration_seconds", "manifest", "sum") > 0.0);

    // Tokens: one per scope (pull, then pull+push for the upload), the rest from cache.
    let tokens = up.tokens.as_ref().expect("token server");
    let fetched = m("oci_connector_token_fetches_total{outcome=\"success\"}");
    assert_eq!(m("oci_connector_token_cache_misses_total"), 2.0, "{text}");
    assert_eq!(fetched, 2.0, "{text}");
    assert_eq!(m("oci_connector_token_cache_hits_total"), 7.0, "{text}");
    assert_eq!(m("oci_connector_token_fetches_total{outcome=\"error\"}"), 0.0);
    assert!(tokens.request_count() >= 2);

    assert_eq!(m("oci_connector_config_generation"), 1.0);
    assert_eq!(m("oci_connector_connectors"), 1.0);
    assert_eq!(m("oci_connector_reloads_total{outcome=\"success\"}"), 0.0);
    assert_eq!(m("oci_connector_requests_in_flight"), 1.0 - 1.0, "no request in flight");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("sha256") && !line.contains("tiny") && !line.contains("v1\""),
            "unbounded label: {line}"
        );
    }
    // Every sample line parses as `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "bad sample: {line}");
    }
}
