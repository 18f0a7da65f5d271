//! The oci-connector CLI as the tests use it: keys, tokens and rendered files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::proxy::Proxy;

/// Runs `oci-connector <args>`; returns stdout, or panics with stderr.
pub fn run(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_oci-connector")).args(args).output().expect("run oci-connector");
    assert!(out.status.success(), "oci-connector {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `oci-connector keygen <dir>/<name>`; returns the key's path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    run(&["keygen", &path.display().to_string()]);
    path
}

/// Settings lines turning client tokens on with `keys` (the first signs).
pub fn token_settings(keys: &[&Path]) -> String {
    let files: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.display())).collect();
    format!("clientAuth:\n  mode: token\n  keyFiles: [{}]\n", files.join(", "))
}

/// `oci-connector render <kind> --connector <connector> [extra] --out <out>` for `proxy`'s settings.
pub fn render(proxy: &Proxy, kind: &str, connector: &str, extra: &[&str], out: &Path) {
    let config = proxy.settings_path().display().to_string();
    let out = out.display().to_string();
    let mut args = vec!["render", kind, "--config", &config, "--connector", connector, "--out", &out];
    args.extend_from_slice(extra);
    run(&args);
}

/// A path-resolver proxy for `connectors` with client tokens on, signed by a
/// fresh key (kept in the returned directory, which must outlive the proxy).
pub async fn proxy_with_client_tokens(connectors: &str) -> (Proxy, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keygen(keys.path(), "proxy.key");
    let proxy = Proxy::start(super::proxy::Resolver::Path, connectors, &token_settings(&[&key])).await;
    (proxy, keys)
}
