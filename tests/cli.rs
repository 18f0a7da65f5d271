//! The command line: `check` on the shipped example and on broken files, and a
//! `serve` that refuses to start on a broken configuration.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oci-connector")).args(args).output().expect("run cli")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn check_lists_the_shipped_connectors_with_their_proxy_addresses() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/oci-connector.yaml");
    let out = run(&["check", "--config", &conf.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("default/dockerhub"), "{stdout}");
    assert!(stdout.contains("http://127.0.0.1:5000/namespaces/default/connectors/dockerhub"), "{stdout}");
    assert!(stdout.contains("default/private"), "{stdout}");
    assert!(!stdout.contains("change-me"), "a password was printed");
}

fn broken_config(dir: &Path) -> String {
    std::fs::write(
        dir.join("settings.yaml"),
        "listen: 127.0.0.1:5999\nconnectors:\n  paths: [connectors.yaml]\nresolvr: path\n",
    )
    .expect("settings");
    std::fs::write(
        dir.join("connectors.yaml"),
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: a\n  namespace: ns\n\
         spec:\n  connectorClassName: git\n  address: https://r.example\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: b\n  namespace: ns\n\
         spec:\n  connectorClassName: oci\n  address: not a url\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: c\n  namespace: ns\n\
         spec:\n  connectorClassName: oci\n  address: https://r.example\n  auth:\n    name: tokenAuth\n    secretRef:\n      name: missing\n",
    )
    .expect("connectors");
    dir.join("settings.yaml").display().to_string()
}

#[test]
fn check_reports_every_problem_at_once_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = broken_config(dir.path());
    let out = run(&["check", "--config", &settings]);
    assert!(!out.status.success());
    let all = text(&out);
    for expected in ["resolvr", "connectorClassName", "not a url", "missing", "connectors.yaml", "hint"] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn serve_refuses_to_start_on_a_broken_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = broken_config(dir.path());
    let out = run(&["serve", "--config", &settings]);
    assert!(!out.status.success());
    assert!(text(&out).contains("connectorClassName"), "{}", text(&out));
}

#[test]
fn an_open_proxy_on_a_public_address_must_be_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("connectors.yaml"), "").expect("connectors");
    let settings = dir.path().join("settings.yaml");
    std::fs::write(&settings, "listen: 0.0.0.0:5999\nconnectors:\n  paths: [connectors.yaml]\n")
        .expect("settings");
    let out = run(&["check", "--config", &settings.display().to_string()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("allowAnonymousClients"), "{}", text(&out));
}

#[test]
fn keygen_never_overwrites_and_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("k").display().to_string();
    assert!(run(&["keygen", &key]).status.success());
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).expect("key");
    assert!(!run(&["keygen", &key]).status.success(), "an existing key must not be overwritten");
    assert_eq!(std::fs::read(&key).expect("key"), before);
}

/// A receive buffer the kernel would cut (above `net.core.rmem_max`) is still a
/// valid configuration, and `check` says that it will not be applied and why.
#[test]
fn check_notes_a_receive_buffer_the_kernel_would_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("connectors.yaml"), "").expect("connectors");
    let settings = dir.path().join("settings.yaml");
    let yaml =
        "listen: 127.0.0.1:5999\nconnectors:\n  paths: [connectors.yaml]\nupstream: {receiveBuffer: 1GiB}\n";
    std::fs::write(&settings, yaml).expect("settings");
    let out = run(&["check", "--config", &settings.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let rmem_max: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("rmem_max")
        .trim()
        .parse()
        .expect("a number");
    if rmem_max < 1 << 30 {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("note: upstream.receiveBuffer") && stdout.contains("rmem_max"), "{stdout}");
    }
}
