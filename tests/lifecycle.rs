//! Graceful lifecycle of the real process: SIGTERM lets a request in flight
//! finish and then exits early (not after the whole grace period); a
//! zero-downtime upgrade (`serve --upgrade` + SIGQUIT to the old process) hands
//! the listeners over without a failed request.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fixture::{Mode, Upstream};
use common::images;
use common::proc::ChildGuard;
use common::proxy::{Proxy, Resolver};
use reqwest::header::ACCEPT;
use reqwest::StatusCode;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json";

async fn wait_exit(proxy: &mut Proxy, within: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(s) = proxy.try_exit_status() {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_request_in_flight_then_exits_early() {
    let up = Upstream::start(Mode::Token).await;
    up.seed(&images::tiny(), "tiny").await;
    let tokens = up.tokens.as_ref().expect("token server");
    let mut proxy = Proxy::start_with_admin(Resolver::Path, &up.connector("team-a", "reg"), "").await;

    // A cold request waits 2 s for its token: it is in flight when SIGTERM arrives.
    tokens.set_delay(Duration::from_secs(2));
    let url = format!("{}/tiny/manifests/v1", proxy.api_base("team-a", "reg"));
    let request = tokio::spawn(async move {
        let r = reqwest::Client::new().get(url).header(ACCEPT, MANIFEST_TYPES).send().await;
        r.map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    proxy.signal("TERM");
    let status = request.await.expect("task").expect("the request in flight was answered");
    assert_eq!(status, StatusCode::OK);
    let exit = wait_exit(&mut proxy, Duration::from_secs(25)).await.expect("the proxy exited");
    let took = sent.elapsed();
    println!("SIGTERM with a 2 s request in flight: exited after {} ms", took.as_millis());
    assert!(exit.success(), "{exit:?}\n{}", proxy.log());
    assert!(took < Duration::from_secs(6), "drained early, not after the 20 s grace period: {took:?}");
    assert!(proxy.log().contains("drained, exiting"), "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_hands_over_the_listeners_without_failing_a_request() {
    let up = Upstream::start(Mode::Anonymous).await;
    let image = images::tiny();
    up.seed(&image, "tiny").await;
    let mut old = Proxy::start_with_admin(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let old_pid = old.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("{}/tiny/manifests/v1", old.api_base("team-a", "reg"));
    let pulls = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A fresh connection each time: the test is about the listener.
                let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
                match client.get(&url).header(ACCEPT, MANIFEST_TYPES).send().await {
                    Ok(r) if r.status() == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // The new process waits on the upgrade socket; SIGQUIT makes the old one send its listeners.
    let dir = old.dir();
    let log = File::create(dir.join("new.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_oci-connector"))
        .args(["serve", "--upgrade", "--config"])
        .arg(old.settings_path())
        .arg("--pid-file")
        .arg(dir.join("new.pid"))
        .arg("--upgrade-sock")
        .arg(dir.join("upgrade.sock"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().expect("fd")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn the new process");
    let mut new = ChildGuard::new("oci-connector (new)", child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("QUIT");
    let exit = wait_exit(&mut old, Duration::from_secs(30)).await.expect("the old process exited");
    assert!(exit.success(), "{exit:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    pulls.await.expect("pull loop");

    let new_log = std::fs::read_to_string(dir.join("new.log")).unwrap_or_default();
    assert!(new.try_exit_status().is_none(), "the new process died:\n{new_log}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("upgrade: old pid {old_pid} handed over; {ok} requests served, {failed} failed");
    assert_eq!(failed, 0, "old log:\n{}\nnew log:\n{new_log}", old.log());
    assert!(ok > 20);
    // The new process serves the proxy and the admin API on the same ports.
    let r = reqwest::get(format!("{}/readyz", old.admin_url())).await.expect("readyz");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(new_log.contains("configuration loaded"), "{new_log}");
}
