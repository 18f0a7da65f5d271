//! Hot reload against the real proxy process and a real registry: connectors added
//! while serving, a broken file that changes nothing, changed credentials that never
//! reuse a cached token, zero failed requests across 20 reloads, and the time to
//! reload 1,000 connectors.

mod common;

use common::MANIFEST_TYPES;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fixture::{Mode, Upstream, PASSWORD, PULL_PASSWORD, PULL_USER, USER};
use common::images;
use common::proxy::{connector_yaml, Proxy, Resolver};
use common::skopeo::{self, CopyOpts};
use reqwest::header::ACCEPT;
use reqwest::StatusCode;

async fn get_manifest(client: &reqwest::Client, proxy: &Proxy, ns: &str, name: &str) -> StatusCode {
    let url = format!("{}/tiny/manifests/v1", proxy.api_base(ns, name));
    match client.get(&url).header(ACCEPT, MANIFEST_TYPES).send().await {
        Ok(r) => r.status(),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// Token requests by `user` that asked for `scope` (the prober's scope-less ones excluded).
fn token_requests(up: &Upstream, user: &str, scope: &str) -> usize {
    let tokens = up.tokens.as_ref().expect("token server");
    tokens
        .requests()
        .iter()
        .filter(|r| r.user.as_deref() == Some(user) && r.scopes.iter().any(|s| s == scope))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_added_to_the_file_serves_within_seconds() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let first = up.connector("team-a", "reg");
    let proxy = Proxy::start_with_admin(Resolver::Path, &first, "").await;
    let client = reqwest::Client::new();
    assert_eq!(get_manifest(&client, &proxy, "team-b", "added").await, StatusCode::NOT_FOUND);

    let written = Instant::now();
    proxy.write_connectors(&format!("{first}{}", up.connector("team-b", "added")));
    let swapped = proxy.wait_generation(2, Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let src = format!("docker://{}/tiny:v1", proxy.image_prefix("team-b", "added"));
    let dest = format!("oci:{}:v1", dir.path().display());
    let digest = match skopeo::copy(&src, &dest, &CopyOpts::default()).await {
        Ok(d) => d,
        Err(e) => panic!("{e}\nproxy log:\n{}", proxy.log()),
    };
    assert_eq!(digest, image.manifest_digest);
    println!(
        "connector added: swapped in {} ms after the write, pulled through it {} ms after the write",
        swapped.as_millis(),
        written.elapsed().as_millis()
    );
    assert!(written.elapsed() < Duration::from_secs(10));
    assert!(
        proxy.log().contains("configuration reloaded generation=2 trigger=file-change"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_keeps_the_last_good_configuration_and_says_why() {
    let up = Upstream::start(Mode::Token).await;
    up.seed(&images::tiny(), "tiny").await;
    let good = up.connector("team-a", "reg");
    let proxy = Proxy::start_with_admin(Resolver::Path, &good, "").await;
    let client = reqwest::Client::new();
    assert_eq!(get_manifest(&client, &proxy, "team-a", "reg").await, StatusCode::OK);

    // A typo (`adress`) in a new connector: the whole file is refused.
    let broken = format!("{good}{}", up.connector("team-b", "typo").replace("  address:", "  adress:"));
    proxy.write_connectors(&broken);
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = proxy.connectors_status().await;
        if list["reload"]["lastOutcome"] == "error" {
            break list;
        }
        assert!(Instant::now() < deadline, "no failed reload reported; log:\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let errors: Vec<String> = list["reload"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().unwrap_or("").into())
        .collect();
    let joined = errors.join("\n");
    assert!(joined.contains("connectors.yaml") && joined.contains("adress"), "{joined}");
    assert!(joined.contains("did you mean `address`?"), "a hint: {joined}");
    assert_eq!(list["reload"]["generation"], 1, "the served generation is unchanged");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["reg"]);

    // The old connector still serves; the failure is logged and counted.
    assert_eq!(get_manifest(&client, &proxy, "team-a", "reg").await, StatusCode::OK);
    assert!(proxy
        .log()
        .contains("configuration reload failed, keeping the last good configuration generation=1"));
    assert!(proxy.log().contains("configuration problem: "), "{}", proxy.log());
    assert_eq!(proxy.metric("oci_connector_reloads_total{outcome=\"error\"}").await, 1.0);
    assert_eq!(proxy.metric("oci_connector_config_generation").await, 1.0);

    // Fixing the file clears the error.
    proxy.write_connectors(&format!("{good}{}", up.connector("team-b", "typo")));
    proxy.wait_generation(2, Duration::from_secs(10)).await;
    let list = proxy.connectors_status().await;
    assert_eq!(list["reload"]["lastOutcome"], "success");
    assert!(list["reload"].get("errors").is_none());
    assert_eq!(get_manifest(&client, &proxy, "team-b", "typo").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_credentials_never_reuse_a_cached_token() {
    let up = Upstream::start(Mode::Token).await;
    up.seed(&images::tiny(), "tiny").await;
    let tokens = up.tokens.as_ref().expect("token server");
    let scope = "repository:tiny:pull";
    let stable = up.connector_as("team-a", "stable", PULL_USER, PULL_PASSWORD);
    let with_password = |pw: &str| format!("{stable}{}", up.connector_as("team-a", "reg", USER, pw));
    let proxy = Proxy::start_with_admin(Resolver::Path, &with_password(PASSWORD), "").await;
    let client = reqwest::Client::new();

    for _ in 0..2 {
        assert_eq!(get_manifest(&client, &proxy, "team-a", "reg").await, StatusCode::OK);
        assert_eq!(get_manifest(&client, &proxy, "team-a", "stable").await, StatusCode::OK);
    }
    assert_eq!(token_requests(&up, USER, scope), 1, "warm pulls use the cached token");
    assert_eq!(token_requests(&up, PULL_USER, scope), 1);

    // The account's password changes at the registry and in the file. The old
    // token is still valid at the registry, yet a new one must be fetched.
    tokens.set_user(USER, "rotated-Pa55word", &["*"]);
    proxy.write_connectors(&with_password("rotated-Pa55word"));
    proxy.wait_generation(2, Duration::from_secs(10)).await;
    assert_eq!(get_manifest(&client, &proxy, "team-a", "reg").await, StatusCode::OK);
    assert_eq!(token_requests(&up, USER, scope), 2, "a changed connector fetches a new token");
    assert_eq!(get_manifest(&client, &proxy, "team-a", "stable").await, StatusCode::OK);
    assert_eq!(token_requests(&up, PULL_USER, scope), 1, "an unchanged connector keeps its token");

    // A wrong password: the pull fails, so no earlier token (still valid at the
    // registry, and cached) was used.
    proxy.write_connectors(&with_password("wrong-password"));
    proxy.wait_generation(3, Duration::from_secs(10)).await;
    let status = get_manifest(&client, &proxy, "team-a", "reg").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "log:\n{}", proxy.log());
    assert_eq!(get_manifest(&client, &proxy, "team-a", "stable").await, StatusCode::OK);
    assert!(!proxy.log().contains("rotated-Pa55word") && !proxy.log().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_reloads_under_a_pull_loop_fail_no_request() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::multilayer();
    up.seed(&image, "apps/multi").await;
    let base = up.connector("team-a", "reg");
    let proxy = Arc::new(Proxy::start_with_admin(Resolver::Path, &base, "").await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));

    let mut loops = Vec::new();
    for _ in 0..4 {
        let (proxy, stop, ok, failed) = (proxy.clone(), stop.clone(), ok.clone(), failed.clone());
        let blob = image.largest_blob().digest.clone();
        loops.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let api = proxy.api_base("team-a", "reg");
            while !stop.load(Ordering::Relaxed) {
                let manifest =
                    client.get(format!("{api}/apps/multi/manifests/v1")).header(ACCEPT, MANIFEST_TYPES);
                let blob = client.get(format!("{api}/apps/multi/blobs/{blob}"));
                for req in [manifest, blob] {
                    let outcome = match req.send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                        }
                        Ok(r) => Err(r.status().to_string()),
                        Err(e) => Err(format!("{e:?}")),
                    };
                    match outcome {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("failed request: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        }));
    }
    let started = Instant::now();
    for i in 0..20u64 {
        // Alternate file edits (with another connector coming and going) and SIGHUP.
        if i % 2 == 0 {
            let extra = if i % 4 == 0 {
                up.connector("team-b", format!("extra-{i}").as_str())
            } else {
                String::new()
            };
            proxy.write_connectors(&format!("{base}{extra}"));
        } else {
            proxy.signal("HUP");
        }
        proxy.wait_generation(i + 2, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.expect("pull loop");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("20 reloads in {} ms; {ok} requests served, {failed} failed", started.elapsed().as_millis());
    assert_eq!(failed, 0, "log:\n{}", proxy.log());
    assert!(ok > 40, "the loop ran: {ok}");
    assert_eq!(proxy.metric("oci_connector_reloads_total{outcome=\"success\"}").await, 20.0);
    assert!(proxy.log().contains("trigger=sighup"));
}

/// 1,000 connectors (each with its secret) in one file: the time from "reload"
/// to the new snapshot being live, measured in-process (no debounce), and the
/// time for the running proxy to pick up the file (with the 200 ms debounce).
#[tokio::test(flavor = "multi_thread")]
async fn reloading_a_thousand_connectors_takes_well_under_a_second() {
    use oci_connector::config;
    use oci_connector::metrics::Metrics;
    use oci_connector::registry::{self, Registry, Snapshot};
    use oci_connector::reload::{Reloader, Trigger};
    use oci_connector::status::StatusBoard;

    let many: String = (0..1000)
        .map(|i| {
            connector_yaml(
                "bulk",
                &format!("c{i:04}"),
                &format!("https://registry-{i}.example.com"),
                Some(("u", &format!("p{i}"))),
            )
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("connectors.yaml"), &many).expect("write");
    let settings_path = dir.path().join("settings.yaml");
    std::fs::write(&settings_path, "listen: 127.0.0.1:5000\nconnectors:\n  paths: [connectors.yaml]\n")
        .expect("write");
    let cfg = config::load(&settings_path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.connectors.len(), 1000);
    let settings = Arc::new(cfg.settings);
    let http = registry::shared_http_client(&settings);
    let snapshot = Snapshot::build(1, &settings, cfg.connectors, &http).expect("snapshot");
    let reg = Arc::new(Registry::new(snapshot));
    let reloader =
        Reloader::new(settings, reg.clone(), http, Metrics::leaked(), Arc::new(StatusBoard::new(1)));
    let mut times = Vec::new();
    for _ in 0..5 {
        let report = tokio::task::block_in_place(|| reloader.reload(Trigger::Manual)).expect("reload");
        assert_eq!(report.connectors, 1000);
        times.push(report.elapsed);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "reload of 1000 connectors + 1000 secrets ({} KiB): median {} ms, min {} ms, max {} ms ({} build)",
        many.len() / 1024,
        median.as_millis(),
        times[0].as_millis(),
        times[times.len() - 1].as_millis(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    assert_eq!(reg.load().generation, 6);
    let limit = if cfg!(debug_assertions) { Duration::from_secs(3) } else { Duration::from_millis(500) };
    assert!(median < limit, "median {median:?}");

    // The running proxy: write the file, time until the new generation serves.
    let proxy =
        Proxy::start_with_admin(Resolver::Path, &connector_yaml("a", "b", "http://127.0.0.1:9", None), "")
            .await;
    let written = Instant::now();
    proxy.write_connectors(&many);
    proxy.wait_generation(2, Duration::from_secs(10)).await;
    let picked_up = written.elapsed();
    let list = proxy.connectors_status().await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1000));
    println!(
        "running proxy: 1000-connector file live {} ms after the write (includes the 200 ms debounce)",
        picked_up.as_millis()
    );
}
