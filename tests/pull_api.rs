//! The pull API through the proxy, request by request, against the real registry:
//! token coalescing and refresh, headers, ranges, pagination, and the errors a
//! client gets when something is wrong.

mod common;

use std::time::{Duration, Instant};

use common::fixture::{Mode, Upstream, PASSWORD, USER};
use common::images;
use common::proxy::{connector_yaml, Proxy, Resolver};
use common::token_server::{Fault, TokenServerConfig};
use common::{http_client as client, MANIFEST_TYPES};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;
use serde_json::Value;

fn get(proxy: &Proxy, path: &str) -> reqwest::RequestBuilder {
    let mut r = client().get(format!("{}/{path}", proxy.api_base("team-a", "reg")));
    if let Some(h) = proxy.host_header("team-a", "reg") {
        r = r.header("Host", h);
    }
    r
}

async fn oci_error(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let body: Value = resp.json().await.expect("an OCI error body");
    let e = &body["errors"][0];
    (status, e["code"].as_str().unwrap_or_default().into(), e["message"].as_str().unwrap_or_default().into())
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_cold_pulls_make_one_token_request() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let tokens = up.tokens.as_ref().expect("token server");
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    tokens.reset_counts();

    let pulls = (0..20).map(|_| {
        let req =
            get(&proxy, &format!("tiny/manifests/{}", image.manifest_digest)).header(ACCEPT, MANIFEST_TYPES);
        async move { req.send().await.expect("send").status() }
    });
    let statuses = futures_join_all(pulls).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(tokens.requests_for_scope("repository:tiny:pull"), 1, "{:?}", tokens.requests());
    // Warm: more pulls, still one token request. (Counts are per scope: the
    // status prober asks for scope-less tokens in the background.)
    for _ in 0..5 {
        let r = get(&proxy, "tiny/manifests/v1").header(ACCEPT, MANIFEST_TYPES).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(tokens.requests_for_scope("repository:tiny:pull"), 1);
}

async fn futures_join_all<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_are_refreshed_not_failed() {
    let up = Upstream::start_with(Mode::Token, TokenServerConfig::default().expires_in(Some(2))).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let tokens = up.tokens.as_ref().expect("token server");
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    tokens.reset_counts();
    for _ in 0..3 {
        let r = get(&proxy, "tiny/manifests/v1").header(ACCEPT, MANIFEST_TYPES).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    assert_eq!(tokens.requests_for_scope("repository:tiny:pull"), 3, "one fresh token per lifetime");
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_and_blob_headers_ranges_and_tags() {
    let up = Upstream::start(Mode::Htpasswd).await;
    let image = images::multilayer();
    up.seed(&image, "app").await;
    // More tags for pagination.
    for tag in ["v2", "v3"] {
        let src = format!("docker://{}", up.registry.image_ref("app", "v1"));
        let dst = format!("docker://{}", up.registry.image_ref("app", tag));
        let opts = common::skopeo::CopyOpts {
            src_creds: up.creds.clone(),
            dest_creds: up.creds.clone(),
            ..Default::default()
        };
        common::skopeo::copy(&src, &dst, &opts).await.expect("tag");
    }
    for resolver in [Resolver::Path, Resolver::Host] {
        let proxy = Proxy::start(resolver, &up.connector("team-a", "reg"), "").await;

        // HEAD and GET of a manifest keep the registry's headers.
        let head = client()
            .head(format!("{}/app/manifests/v1", proxy.api_base("team-a", "reg")))
            .header(ACCEPT, MANIFEST_TYPES);
        let head = match proxy.host_header("team-a", "reg") {
            Some(h) => head.header("Host", h),
            None => head,
        };
        let r = head.send().await.expect("head");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["docker-content-digest"], image.manifest_digest.as_str());
        assert_eq!(r.headers()[CONTENT_TYPE], image.media_type.as_str());
        let manifest_path = image.blob_path(&image.manifest_digest);
        let manifest = std::fs::read(&manifest_path).expect("manifest");
        assert_eq!(r.headers()[CONTENT_LENGTH], manifest.len().to_string().as_str());
        let r = get(&proxy, "app/manifests/v1").header(ACCEPT, MANIFEST_TYPES).send().await.expect("get");
        assert_eq!(r.bytes().await.expect("body").as_ref(), manifest.as_slice());

        // A whole blob, byte for byte, and a range of it.
        let blob = image.largest_blob().clone();
        let bytes = std::fs::read(image.blob_path(&blob.digest)).expect("blob");
        let r = get(&proxy, &format!("app/blobs/{}", blob.digest)).send().await.expect("blob");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["docker-content-digest"], blob.digest.as_str());
        assert_eq!(r.bytes().await.expect("body").as_ref(), bytes.as_slice());
        let r = get(&proxy, &format!("app/blobs/{}", blob.digest))
            .header(RANGE, "bytes=1000-1999")
            .send()
            .await
            .expect("range");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.bytes().await.expect("body").as_ref(), &bytes[1000..2000]);

        // The tag list (distribution 2.8 ignores `n`, so pagination is
        // exercised against a fake upstream in upstream_quirks.rs).
        let body: Value =
            get(&proxy, "app/tags/list").send().await.expect("tags").json().await.expect("json");
        assert_eq!(body["name"], "app");
        assert_eq!(body["tags"], serde_json::json!(["v1", "v2", "v3"]));

        // A missing manifest is the registry's own 404.
        let r = get(&proxy, "app/manifests/nope").header(ACCEPT, MANIFEST_TYPES).send().await.expect("404");
        assert_eq!(oci_error(r).await.1, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_give_a_clear_error_naming_the_connector() {
    for mode in [Mode::Token, Mode::Htpasswd] {
        let up = Upstream::start(mode).await;
        up.seed(&images::tiny(), "tiny").await;
        let wrong = "definitely-not-the-password";
        let proxy = Proxy::start(Resolver::Path, &up.connector_as("team-a", "reg", USER, wrong), "").await;
        let r = get(&proxy, "tiny/manifests/v1").header(ACCEPT, MANIFEST_TYPES).send().await.expect("send");
        assert!(
            r.headers().get("www-authenticate").is_none(),
            "the registry's challenge must not reach the client"
        );
        let (status, code, message) = oci_error(r).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{mode:?}: {message}");
        assert_eq!(code, "UNAUTHORIZED");
        assert!(message.contains("team-a/reg"), "{message}");
        assert!(!message.contains(wrong) && !proxy.log().contains(wrong), "password leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_connector_to_a_protected_registry_says_so() {
    let up = Upstream::start(Mode::Htpasswd).await;
    up.seed(&images::tiny(), "tiny").await;
    let proxy =
        Proxy::start(Resolver::Path, &connector_yaml("team-a", "reg", &up.registry.url(), None), "").await;
    let r = get(&proxy, "tiny/manifests/v1").header(ACCEPT, MANIFEST_TYPES).send().await.expect("send");
    let (status, code, message) = oci_error(r).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    assert!(message.contains("team-a/reg") && message.contains("anonymous"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_registry_gives_502_quickly() {
    // A port nobody listens on.
    let port = common::proc::free_port();
    let proxy = Proxy::start(
        Resolver::Path,
        &connector_yaml("team-a", "reg", &format!("http://127.0.0.1:{port}"), None),
        "",
    )
    .await;
    let started = Instant::now();
    let r = get(&proxy, "tiny/manifests/v1").send().await.expect("send");
    let (status, code, message) = oci_error(r).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{message}");
    assert_eq!(code, "UNAVAILABLE");
    assert!(message.contains("team-a/reg"), "{message}");
    // Not a timing benchmark: a refused connection must not wait for a timeout.
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_connectors_and_bad_paths_are_oci_errors() {
    let up = Upstream::start(Mode::Anonymous).await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let base = format!("http://{}", proxy.addr());
    let r = client()
        .get(format!("{base}/v2/namespaces/team-a/connectors/nope/x/manifests/v1"))
        .send()
        .await
        .expect("send");
    let (status, code, message) = oci_error(r).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));
    assert!(message.contains("team-a/nope"), "{message}");
    for bad in
        ["/v2/x/manifests/v1", "/v2/namespaces/team-a/connectors/reg/UPPER/manifests/v1", "/etc/passwd"]
    {
        let r = client().get(format!("{base}{bad}")).send().await.expect("send");
        let (status, code, _) = oci_error(r).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(code, "NAME_INVALID", "{bad}");
    }
    let r = client().get(format!("{base}/v2/")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_authorization_is_replaced_not_forwarded() {
    // htpasswd: the client's bogus Basic credentials would be refused; the proxy's win.
    let up = Upstream::start(Mode::Htpasswd).await;
    up.seed(&images::tiny(), "tiny").await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let r = get(&proxy, "tiny/manifests/v1")
        .header(ACCEPT, MANIFEST_TYPES)
        .basic_auth("intruder", Some("guess"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!proxy.log().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_refreshed_once_and_never_reused() {
    let up = Upstream::start(Mode::Token).await;
    up.seed(&images::tiny(), "tiny").await;
    let tokens = up.tokens.as_ref().expect("token server");
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let pull = || get(&proxy, "tiny/manifests/v1").header(ACCEPT, MANIFEST_TYPES).send();

    // The token server hands out tokens the registry refuses: the proxy fetches,
    // is refused, refreshes exactly once, is refused again, and says so.
    tokens.set_fault(Fault::GarbageToken);
    tokens.reset_counts();
    let (status, code, message) = oci_error(pull().await.expect("send")).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{message}");
    // Counted per scope: the status prober asks for scope-less tokens in the background.
    let pulls = || tokens.requests_for_scope("repository:tiny:pull");
    assert_eq!(pulls(), 2, "one fetch plus one refresh: {:?}", tokens.requests());

    // Once the token server behaves, the refused token is not reused.
    tokens.set_fault(Fault::None);
    let r = pull().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pulls(), 3);
    let r = pull().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pulls(), 3, "the good token is cached");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unresolvable_registry_gives_502_without_blocking_or_panicking() {
    let proxy = Proxy::start(
        Resolver::Path,
        &connector_yaml("team-a", "reg", "https://no-such-registry.invalid", None),
        "",
    )
    .await;
    let pulls = (0..5).map(|_| get(&proxy, "tiny/manifests/v1").send());
    for r in futures_util::future::join_all(pulls).await {
        let (status, _, message) = oci_error(r.expect("send")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{message}");
        assert!(message.contains("team-a/reg"), "{message}");
    }
    // Still serving.
    let r = client().get(format!("http://{}/v2/", proxy.addr())).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}
