//! Smoke tests of the end-to-end harness itself, against a real `docker-registry` with no
//! proxy in between: every auth mode, push and pull with skopeo, digests preserved.

mod common;

use std::time::{Duration, Instant};

use common::images::{self, TestImage};
use common::registry::{Registry, RegistryAuth};
use common::skopeo::{self, Creds};
use common::token_server::{Fault, TokenFields, TokenServer, TokenServerConfig};
use common::{sha256_bytes, sha256_file};

/// Pushes `image` to `repo:v1`, pulls it back into a fresh layout and inspects it; every
/// digest must equal the layout's.
async fn roundtrip(registry: &Registry, image: &TestImage, repo: &str, creds: Option<&Creds>) {
    let dest = registry.docker_ref(repo, "v1");
    let pushed = skopeo::push_layout(image, &dest, creds).await.expect("push");
    assert_eq!(pushed, image.manifest_digest, "pushed digest of {}", image.name);

    let out = tempfile::tempdir().expect("temp dir");
    let pulled = skopeo::pull_to_layout(&dest, out.path(), creds, image.is_index()).await.expect("pull");
    assert_eq!(pulled, image.manifest_digest, "pulled digest of {}", image.name);

    let raw = skopeo::inspect_raw(&dest, creds).await.expect("inspect --raw");
    assert_eq!(sha256_bytes(&raw), image.manifest_digest, "served manifest of {}", image.name);
}

async fn roundtrip_all(registry: &Registry, creds: Option<&Creds>) {
    roundtrip(registry, &images::tiny(), "smoke/tiny", creds).await;
    roundtrip(registry, &images::multiarch(), "smoke/multiarch", creds).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_registry_push_pull() {
    let registry = Registry::start(RegistryAuth::Anonymous);
    roundtrip_all(&registry, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_push_pull_and_wrong_password() {
    let auth = RegistryAuth::Htpasswd { user: "alice".into(), password: "s3cret".into() };
    let registry = Registry::start(auth);
    roundtrip_all(&registry, Some(&Creds::new("alice", "s3cret"))).await;

    let dest = registry.docker_ref("smoke/tiny", "v1");
    let wrong = skopeo::inspect_raw(&dest, Some(&Creds::new("alice", "nope"))).await;
    assert!(wrong.is_err(), "wrong password must fail");
    let anonymous = skopeo::inspect_raw(&dest, None).await;
    assert!(anonymous.is_err(), "anonymous must fail");
}

async fn token_setup() -> (TokenServer, Registry) {
    let config = TokenServerConfig::default().user("writer", "w-pass", &["pull", "push"]).user(
        "reader",
        "r-pass",
        &["pull"],
    );
    let tokens = TokenServer::start(config).await;
    let registry = Registry::start(tokens.registry_auth());
    (tokens, registry)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_push_pull_counts_and_wrong_password() {
    let (tokens, registry) = token_setup().await;
    roundtrip_all(&registry, Some(&Creds::new("writer", "w-pass"))).await;
    assert!(tokens.request_count() > 0);
    assert!(tokens.requests_for_scope("repository:smoke/tiny:pull,push") > 0, "{:?}", tokens.requests());
    assert!(tokens.requests_for_repository("smoke/multiarch") > 0);

    tokens.reset_counts();
    let dest = registry.docker_ref("smoke/tiny", "v1");
    let wrong = skopeo::inspect_raw(&dest, Some(&Creds::new("writer", "nope"))).await;
    assert!(wrong.is_err(), "wrong password must fail");
    assert!(tokens.requests().iter().any(|r| r.status == 401), "{:?}", tokens.requests());
    let anonymous = skopeo::inspect_raw(&dest, None).await;
    assert!(anonymous.is_err(), "anonymous is not configured");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_pull_only_user_cannot_push() {
    let (_tokens, registry) = token_setup().await;
    let image = images::tiny();
    let dest = registry.docker_ref("smoke/readonly", "v1");
    let reader = Creds::new("reader", "r-pass");
    let err = skopeo::push_layout(&image, &dest, Some(&reader)).await.expect_err("reader pushed");
    assert!(err.stderr.contains("denied") || err.stderr.contains("unauthorized"), "{err}");

    // ...but it can pull what a writer pushed.
    skopeo::push_layout(&image, &dest, Some(&Creds::new("writer", "w-pass"))).await.expect("writer push");
    let raw = skopeo::inspect_raw(&dest, Some(&reader)).await.expect("reader pull");
    assert_eq!(sha256_bytes(&raw), image.manifest_digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_checks_signature_and_scope() {
    let (tokens, registry) = token_setup().await;
    let image = images::tiny();
    let writer = Creds::new("writer", "w-pass");
    skopeo::push_layout(&image, &registry.docker_ref("smoke/sig", "v1"), Some(&writer)).await.expect("push");
    let manifest = format!("{}/v2/smoke/sig/manifests/v1", registry.url());
    let get = |token: String| {
        let accept = "application/vnd.oci.image.manifest.v1+json";
        reqwest::Client::new().get(&manifest).bearer_auth(token).header("Accept", accept).send()
    };

    let good = tokens.issue_token("writer", &[("smoke/sig", &["pull"])]);
    assert_eq!(get(good).await.expect("send").status(), 200);
    let minted = tokens.mint_for_tests("repository:smoke/sig:pull");
    assert_eq!(get(minted).await.expect("send").status(), 200);
    let other_repo = tokens.issue_token("writer", &[("smoke/other", &["pull"])]);
    assert_eq!(get(other_repo).await.expect("send").status(), 401);
    let stranger = TokenServer::start(TokenServerConfig::default()).await;
    let foreign = stranger.issue_token("writer", &[("smoke/sig", &["pull"])]);
    assert_eq!(get(foreign).await.expect("send").status(), 401, "untrusted key");

    tokens.set_fault(Fault::GarbageToken);
    let garbage = skopeo::inspect_raw(&registry.docker_ref("smoke/sig", "v1"), Some(&writer)).await;
    assert!(garbage.is_err(), "registry must reject a garbage token");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_server_answers_and_faults() {
    let config = TokenServerConfig::default().user("u", "p", &["pull"]).anonymous(true);
    let tokens = TokenServer::start(config).await;
    let client = reqwest::Client::new();
    let url = format!("{}?service={}&scope=repository:a/b:pull,push", tokens.realm(), tokens.service());
    let get = |anon: bool| {
        let req = client.get(&url);
        if anon {
            req
        } else {
            req.basic_auth("u", Some("p"))
        }
    };

    let body: serde_json::Value = get(false).send().await.expect("send").json().await.expect("json");
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 20), "{body}");
    let claims = decode_claims(body["token"].as_str().expect("token"));
    assert_eq!(claims["aud"], tokens.service());
    assert_eq!(claims["access"][0]["name"], "a/b");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]), "pull-only user");
    assert_eq!(tokens.kid().len(), 59, "12 groups of 4 with 11 ':'");

    let anon = get(true).send().await.expect("send");
    assert_eq!(anon.status(), 200, "anonymous allowed");
    let bad = client.get(&url).basic_auth("u", Some("x")).send().await.expect("send");
    assert_eq!(bad.status(), 401);

    tokens.set_fields(TokenFields::AccessTokenOnly);
    tokens.set_expires_in(None);
    let body: serde_json::Value = get(false).send().await.expect("send").json().await.expect("json");
    assert!(body.get("token").is_none() && body.get("expires_in").is_none(), "{body}");

    tokens.set_fault(Fault::Status500);
    assert_eq!(get(false).send().await.expect("send").status(), 500);
    tokens.set_fault(Fault::GarbageToken);
    let body: serde_json::Value = get(false).send().await.expect("send").json().await.expect("json");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.starts_with("eyJ")));
    tokens.set_fault(Fault::None);
    tokens.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    get(false).send().await.expect("send");
    assert!(started.elapsed() >= Duration::from_millis(300));

    assert_eq!(tokens.request_count(), 7);
    assert_eq!(tokens.requests_for_scope("repository:a/b:pull,push"), 7);
    tokens.reset_counts();
    assert_eq!(tokens.request_count(), 0);
}

/// The claims of a JWT, signature not checked (the registry checks it in other tests).
fn decode_claims(token: &str) -> serde_json::Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.insecure_disable_signature_validation();
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_secret(b"");
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).expect("decode JWT").claims
}

#[test]
fn image_layouts_are_consistent() {
    for image in [images::tiny(), images::multilayer(), images::multiarch()] {
        for blob in image.blobs.iter().chain(&image.manifests) {
            let path = image.blob_path(&blob.digest);
            assert_eq!(sha256_file(&path).expect("hash blob"), blob.digest);
            assert_eq!(std::fs::metadata(&path).expect("stat").len(), blob.size);
        }
        for layer in image.layers() {
            let status = std::process::Command::new("tar")
                .arg("-tf")
                .arg(image.blob_path(&layer.digest))
                .output()
                .expect("run tar");
            assert!(status.status.success(), "{}: {status:?}", image.name);
        }
    }
    assert_eq!(images::multilayer().layers().count(), 4);
    assert_eq!(images::multiarch().manifests.len(), 2);
}

/// Builds (first time: a few seconds, 256 MiB of disk) and round-trips the large image.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "256 MiB image; run with --ignored"]
async fn large_image_roundtrip() {
    let image = tokio::task::spawn_blocking(images::large).await.expect("build large");
    let layer = image.layers().next().expect("one layer");
    assert_eq!(sha256_file(image.blob_path(&layer.digest)).expect("hash"), layer.digest);
    let registry = Registry::start(RegistryAuth::Anonymous);
    roundtrip(&registry, &image, "smoke/large", None).await;
}
