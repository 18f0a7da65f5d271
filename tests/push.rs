//! Pushes through the proxy into the real distribution registry: skopeo from OCI
//! layouts, a test-driven chunked upload, cross-repository mounts, deletes, and
//! the errors of a pull-only account.

mod common;

use bytes::Bytes;
use common::fixture::{Mode, Upstream, PASSWORD, PULL_PASSWORD, PULL_USER};
use common::http_client as client;
use common::images::{self, TestImage};
use common::proxy::{Proxy, Resolver};
use common::skopeo::{self, CopyOpts};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Pushes `image` through the proxy as `<repo>:v1`; returns the digest skopeo reports.
async fn push_through(proxy: &Proxy, image: &TestImage, repo: &str) -> String {
    let dest = format!("docker://{}/{repo}:v1", proxy.image_prefix("team-a", "reg"));
    let opts = CopyOpts { all: image.is_index(), env: proxy.client_env(), ..CopyOpts::default() };
    match skopeo::copy(&image.oci_ref(), &dest, &opts).await {
        Ok(d) => d,
        Err(e) => panic!("{e}\nproxy log:\n{}", proxy.log()),
    }
}

/// Pulls `repo:v1` straight from the registry (no proxy); returns the digest.
async fn pull_direct(up: &Upstream, repo: &str, all: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = format!("docker://{}", up.registry.image_ref(repo, "v1"));
    skopeo::pull_to_layout(&src, dir.path(), up.creds.as_ref(), all).await.expect("direct pull")
}

async fn pushes_everything(mode: Mode) {
    let up = Upstream::start(mode).await;
    let images = [images::tiny(), images::multilayer(), images::multiarch()];
    for resolver in [Resolver::Path, Resolver::Host] {
        let proxy = Proxy::start(resolver, &up.connector("team-a", "reg"), "").await;
        for image in &images {
            let repo = format!("{}/{}", if resolver == Resolver::Path { "p" } else { "h" }, image.name);
            let pushed = push_through(&proxy, image, &repo).await;
            assert_eq!(pushed, image.manifest_digest, "{mode:?} {resolver:?} {repo}");
            assert_eq!(pull_direct(&up, &repo, image.is_index()).await, image.manifest_digest);
        }
        assert!(!proxy.log().contains(PASSWORD), "the password reached the proxy log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_a_token_registry() {
    pushes_everything(Mode::Token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_an_htpasswd_registry() {
    pushes_everything(Mode::Htpasswd).await;
}

/// The 256 MiB layer goes up streamed; the proxy's memory stays flat.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_a_large_layer_with_flat_memory() {
    let image = tokio::task::spawn_blocking(images::large).await.expect("large image");
    let up = Upstream::start(Mode::Token).await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    assert_eq!(push_through(&proxy, &image, "big").await, image.manifest_digest);
    assert_eq!(pull_direct(&up, "big", false).await, image.manifest_digest);
    let rss_mib = proxy.peak_rss_kib() / 1024;
    println!("peak RSS of the proxy after pushing a 256 MiB layer: {rss_mib} MiB");
    assert!(rss_mib < 128, "proxy peak RSS {rss_mib} MiB: the upload was buffered");
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Opens an upload session through the proxy; returns the (rewritten) Location.
async fn open_session(proxy: &Proxy, repo: &str) -> String {
    let r = client()
        .post(format!("{}/{repo}/blobs/uploads/", proxy.api_base("team-a", "reg")))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", proxy.log());
    assert!(r.headers().contains_key("docker-upload-uuid"));
    let location = r.headers()[LOCATION].to_str().expect("location").to_string();
    let want = format!("http://{}/v2/namespaces/team-a/connectors/reg/{repo}/blobs/uploads/", proxy.addr());
    assert!(location.starts_with(&want), "{location} should start with {want}");
    assert!(location.contains("_state="), "the registry's state must survive: {location}");
    location
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_uploads_driven_by_hand_land_with_the_right_digest() {
    let up = Upstream::start(Mode::Token).await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = digest_of(&data);

    // Several PATCHes with Content-Range and Content-Length, then PUT ?digest=.
    let mut location = open_session(&proxy, "chunks").await;
    let mut offset = 0;
    for chunk in data.chunks(100_000) {
        let end = offset + chunk.len() - 1;
        let r = client()
            .patch(&location)
            .header("Content-Range", format!("{offset}-{end}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(chunk.to_vec())
            .send()
            .await
            .expect("patch");
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", proxy.log());
        assert_eq!(r.headers()["range"], format!("0-{end}").as_str());
        location = r.headers()[LOCATION].to_str().expect("location").to_string();
        offset += chunk.len();
    }
    // The session's status through the proxy.
    let r = client().get(&location).send().await.expect("status");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", data.len() - 1).as_str());
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client().put(format!("{location}{sep}digest={digest}")).send().await.expect("put");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", proxy.log());
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let blob_url = r.headers()[LOCATION].to_str().expect("location").to_string();
    assert!(blob_url.contains("/v2/namespaces/team-a/connectors/reg/chunks/blobs/"), "{blob_url}");
    let got = client().get(&blob_url).send().await.expect("get").bytes().await.expect("body");
    assert_eq!(got.as_ref(), data.as_slice());

    // A PATCH with chunked transfer encoding and no length, as some clients send.
    let location = open_session(&proxy, "streamed").await;
    let parts: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(70_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let r = client()
        .patch(&location)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(parts)))
        .send()
        .await
        .expect("chunked patch");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", proxy.log());
    let location = r.headers()[LOCATION].to_str().expect("location").to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client().put(format!("{location}{sep}digest={digest}")).send().await.expect("put");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", proxy.log());
    let direct = client()
        .get(format!("{}/v2/streamed/blobs/{digest}", up.registry.url()))
        .bearer_auth(up.tokens.as_ref().expect("tokens").mint_for_tests("repository:streamed:pull"))
        .send()
        .await
        .expect("direct get");
    assert_eq!(direct.bytes().await.expect("body").as_ref(), data.as_slice());

    // A monolithic upload: POST, then one PUT ?digest= carrying the whole body.
    // (Distribution 2.8 answers a single `POST ?digest=` with a session, 202,
    // which the spec allows; clients then PUT, as here.)
    let small = b"monolithic blob".to_vec();
    let small_digest = digest_of(&small);
    let location = open_session(&proxy, "mono").await;
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client()
        .put(format!("{location}{sep}digest={small_digest}"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(small.clone())
        .send()
        .await
        .expect("monolithic");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", proxy.log());
    assert_eq!(r.headers()["docker-content-digest"], small_digest.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_repository_mounts_blobs_instead_of_uploading_them() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::multilayer();
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    assert_eq!(push_through(&proxy, &image, "source/app").await, image.manifest_digest);

    // Mount every blob into another repository: 201 Created means mounted.
    let base = proxy.api_base("team-a", "reg");
    for blob in &image.blobs {
        let from = "namespaces/team-a/connectors/reg/source/app";
        let r = client()
            .post(format!("{base}/copy/app/blobs/uploads/?mount={}&from={from}", blob.digest))
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .expect("mount");
        assert_eq!(r.status(), StatusCode::CREATED, "blob {} was not mounted\n{}", blob.digest, proxy.log());
        let location = r.headers()[LOCATION].to_str().expect("location");
        assert_eq!(
            location,
            format!(
                "http://{}/v2/namespaces/team-a/connectors/reg/copy/app/blobs/{}",
                proxy.addr(),
                blob.digest
            )
        );
    }
    // The second tag needs nothing but its manifest now.
    let manifest = std::fs::read(image.blob_path(&image.manifest_digest)).expect("manifest");
    let r = client()
        .put(format!("{base}/copy/app/manifests/v1"))
        .header(CONTENT_TYPE, image.media_type.as_str())
        .body(manifest)
        .send()
        .await
        .expect("put manifest");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", proxy.log());
    assert_eq!(r.headers()["docker-content-digest"], image.manifest_digest.as_str());
    assert_eq!(pull_direct(&up, "copy/app", false).await, image.manifest_digest);

    // A mount from another connector's namespace cannot be honoured: the
    // registry opens a normal upload session instead (the spec's fallback).
    let r = client()
        .post(format!(
            "{base}/copy/other/blobs/uploads/?mount={}&from=namespaces/team-b/connectors/else/app",
            image.blobs[0].digest
        ))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .expect("foreign mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_can_be_deleted_where_the_registry_allows_it() {
    let up = Upstream::start(Mode::Htpasswd).await;
    let image = images::tiny();
    up.seed(&image, "gone").await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let url = format!("{}/gone/manifests/{}", proxy.api_base("team-a", "reg"), image.manifest_digest);
    let r = client().delete(&url).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", proxy.log());
    let r = client().get(&url).header("Accept", image.media_type.as_str()).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_only_account_gets_a_clear_denial() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let proxy =
        Proxy::start(Resolver::Path, &up.connector_as("team-a", "reg", PULL_USER, PULL_PASSWORD), "").await;

    // Pulling works.
    let dir = tempfile::tempdir().expect("temp dir");
    let src = format!("docker://{}/tiny:v1", proxy.image_prefix("team-a", "reg"));
    skopeo::pull_to_layout(&src, dir.path(), None, false).await.expect("pull-only account can pull");

    // Pushing fails with the registry's refusal naming the connector.
    let r = client()
        .post(format!("{}/tiny/blobs/uploads/", proxy.api_base("team-a", "reg")))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .expect("post");
    let status = r.status();
    let body: Value = r.json().await.expect("OCI error");
    let e = &body["errors"][0];
    assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{status}");
    assert_eq!(e["code"], "DENIED", "{body}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains("team-a/reg") && message.contains("push"), "{message}");
    assert!(!message.contains(PULL_PASSWORD));

    // And skopeo reports a failure, not a success.
    let dest = format!("docker://{}/tiny:denied", proxy.image_prefix("team-a", "reg"));
    let err = skopeo::copy(&image.oci_ref(), &dest, &CopyOpts::default()).await.expect_err("push must fail");
    assert!(err.stderr.contains("team-a/reg") || err.stderr.contains("denied"), "{err}");
}
