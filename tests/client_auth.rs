//! Client access with proxy tokens, end to end: tokens minted and configurations
//! rendered by the real CLI, used by real clients (skopeo with the rendered
//! `config.json`), and every way a token can be wrong.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::cli::{self, keygen, token_settings};
use common::fixture::{Mode, Upstream};
use common::images;
use common::proxy::{Proxy, Resolver};
use common::skopeo::{self, CopyOpts};
use reqwest::StatusCode;
use serde_json::Value;

fn settings_path(proxy: &Proxy) -> String {
    proxy.settings_path().display().to_string()
}

fn mint(proxy: &Proxy, connectors: &str, extra: &[&str]) -> String {
    let config = settings_path(proxy);
    let mut args = vec!["token", "--config", &config, "--connector", connectors];
    args.extend_from_slice(extra);
    cli::run(&args)
}

/// Two connectors on one registry, so "wrong connector" can be tested.
async fn setup(up: &Upstream, keys: &[&Path]) -> Proxy {
    let connectors = format!("{}{}", up.connector("team-a", "reg"), up.connector("team-b", "other"));
    Proxy::start(Resolver::Path, &connectors, &token_settings(keys)).await
}

async fn manifest_status(proxy: &Proxy, auth: Option<(&str, &str)>) -> (StatusCode, Option<String>, Value) {
    let url = format!("{}/tiny/manifests/v1", proxy.api_base("team-a", "reg"));
    let mut req =
        reqwest::Client::new().get(url).header("Accept", "application/vnd.oci.image.manifest.v1+json");
    match auth {
        Some(("bearer", t)) => req = req.bearer_auth(t),
        Some((user, t)) => req = req.basic_auth(user, Some(t)),
        None => {}
    }
    let r = req.send().await.expect("send");
    let status = r.status();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_string());
    let body = r.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rendered_config_json_lets_skopeo_pull_and_push() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::multilayer();
    up.seed(&image, "tiny").await;
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keygen(keys.path(), "proxy.key");
    let proxy = setup(&up, &[&key]).await;

    let out = tempfile::tempdir().expect("temp dir");
    cli::render(&proxy, "registry-config", "team-a/reg", &["--push"], out.path());
    let authfile = out.path().join("config.json");
    let rendered: Value =
        serde_json::from_slice(&std::fs::read(&authfile).expect("config.json")).expect("json");
    assert!(rendered["auths"][proxy.addr()]["auth"].is_string(), "{rendered}");

    let prefix = proxy.image_prefix("team-a", "reg");
    let layout = tempfile::tempdir().expect("temp dir");
    let pull = CopyOpts { authfile: Some(authfile.clone()), ..CopyOpts::default() };
    let pulled = skopeo::copy(
        &format!("docker://{prefix}/tiny:v1"),
        &format!("oci:{}:v1", layout.path().display()),
        &pull,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    assert_eq!(pulled, image.manifest_digest);
    let pushed = skopeo::copy(&image.oci_ref(), &format!("docker://{prefix}/copied:v1"), &pull)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    assert_eq!(pushed, image.manifest_digest);

    // Without the file, the same pull is refused.
    let refused = skopeo::copy(
        &format!("docker://{prefix}/tiny:v1"),
        &format!("oci:{}:v2", layout.path().display()),
        &CopyOpts::default(),
    )
    .await;
    assert!(refused.is_err(), "a pull without a token must fail");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_token_is_refused_with_the_right_status() {
    let up = Upstream::start(Mode::Anonymous).await;
    up.seed(&images::tiny(), "tiny").await;
    let keys = tempfile::tempdir().expect("temp dir");
    let old_key = keygen(keys.path(), "old.key");
    let key = keygen(keys.path(), "new.key");
    // The new key signs; the old one still verifies (rotation).
    let proxy = setup(&up, &[&key, &old_key]).await;

    let good = mint(&proxy, "team-a/reg", &[]);
    let (status, _, body) = manifest_status(&proxy, Some(("anyone", &good))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = manifest_status(&proxy, Some(("bearer", &good))).await;
    assert_eq!(status, StatusCode::OK, "Bearer works as well as Basic");

    // `GET /v2/` follows the same rule, so `docker login` works.
    let base = format!("http://{}/v2/", proxy.addr());
    let r = reqwest::Client::new().get(&base).basic_auth("x", Some(&good)).send().await.expect("v2");
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::get(&base).await.expect("v2");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // No token.
    let (status, challenge, body) = manifest_status(&proxy, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some(r#"Basic realm="oci-connector""#));
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    // Tampered signature.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let (status, _, body) = manifest_status(&proxy, Some(("x", &tampered))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Expired.
    let short = mint(&proxy, "team-a/reg", &["--ttl", "1s"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, body) = manifest_status(&proxy, Some(("x", &short))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("expired"), "{body}");

    // Valid, but for another connector.
    let other = mint(&proxy, "team-b/other", &[]);
    let (status, _, body) = manifest_status(&proxy, Some(("x", &other))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], "DENIED");

    // Pull-only token pushing.
    let url = format!("{}/tiny/blobs/uploads/", proxy.api_base("team-a", "reg"));
    let r = reqwest::Client::new().post(&url).basic_auth("x", Some(&good)).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let pusher = mint(&proxy, "team-a/reg", &["--push"]);
    let r = reqwest::Client::new().post(&url).basic_auth("x", Some(&pusher)).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "a push token may open an upload");

    // Signed by the old key: accepted while it is listed...
    let settings = std::fs::read_to_string(settings_path(&proxy)).expect("settings");
    let by_old_key = {
        let old_only = proxy.dir().join("old-only.yaml");
        let connectors = proxy.dir().join("connectors.yaml");
        let s = settings
            .replace(&format!("\"{}\", ", old_key.display()), "")
            .replace(&format!("\"{}\"", key.display()), &format!("\"{}\"", old_key.display()))
            .replace("paths: [connectors.yaml]", &format!("paths: [\"{}\"]", connectors.display()));
        std::fs::write(&old_only, s).expect("write");
        cli::run(&["token", "--config", &old_only.display().to_string(), "--connector", "team-a/reg"])
    };
    let (status, _, _) = manifest_status(&proxy, Some(("x", &by_old_key))).await;
    assert_eq!(status, StatusCode::OK, "a token of a still-listed key verifies");
    // ...and refused once the key is removed.
    let connectors = format!("{}{}", up.connector("team-a", "reg"), up.connector("team-b", "other"));
    let rotated = Proxy::start(Resolver::Path, &connectors, &token_settings(&[&key])).await;
    let (status, _, body) = manifest_status(&rotated, Some(("x", &by_old_key))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!proxy.log().contains(&good), "a client token reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn configurations_are_served_with_the_callers_own_token() {
    let up = Upstream::start(Mode::Anonymous).await;
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keygen(keys.path(), "proxy.key");
    let proxy = setup(&up, &[&key]).await;
    let token = mint(&proxy, "team-a/reg", &["--subject", "ci-job-42"]);
    let client = reqwest::Client::new();
    let url = |ns: &str, name: &str, kind: &str| {
        format!("http://{}/namespaces/{ns}/connectors/{name}/configurations/{kind}", proxy.addr())
    };

    let r = client
        .get(url("team-a", "reg", "registry-config"))
        .basic_auth("x", Some(&token))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let config: Value = r.json().await.expect("json");
    let auth = config["auths"][proxy.addr()]["auth"].as_str().expect("auth");
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).expect("base64");
    assert_eq!(
        String::from_utf8(decoded).expect("utf8"),
        format!("ci-job-42:{token}"),
        "the caller's own token"
    );

    let r =
        client.get(url("team-a", "reg", "dockerd")).basic_auth("x", Some(&token)).send().await.expect("get");
    let daemon: Value = r.json().await.expect("json");
    assert_eq!(daemon["insecure-registries"], serde_json::json!([proxy.addr()]));

    let r = client
        .get(url("team-a", "reg", "buildkitd"))
        .basic_auth("x", Some(&token))
        .send()
        .await
        .expect("get");
    let toml = r.text().await.expect("text");
    assert!(toml.contains("http = true") && !toml.contains("insecure = true"), "{toml}");

    // Another connector's configuration is not for this token; no token at all is 401.
    let r = client
        .get(url("team-b", "other", "registry-config"))
        .basic_auth("x", Some(&token))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client.get(url("team-a", "reg", "registry-config")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r =
        client.get(url("team-a", "reg", "nonsense")).basic_auth("x", Some(&token)).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
