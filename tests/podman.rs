//! A real container engine pushes and pulls through the proxy: podman with vfs
//! storage in a private root, plain HTTP (`--tls-verify=false`).

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture::{Mode, Upstream};
use common::images;
use common::proxy::{Proxy, Resolver};
use common::skopeo;

/// Runs podman with its own storage and config under `dir`, never the host's.
fn podman(dir: &Path, args: &[&str]) -> Result<String, String> {
    let auth = dir.join("auth.json");
    if !auth.exists() {
        std::fs::write(&auth, r#"{"auths":{}}"#).map_err(|e| e.to_string())?;
    }
    let out = Command::new("podman")
        .args(["--root", &dir.join("root").display().to_string()])
        .args(["--runroot", &dir.join("run").display().to_string()])
        .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"])
        .args(args)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_RUNTIME_DIR", dir.join("xdg-run"))
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("podman {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pushes_and_pulls_through_the_proxy() {
    let up = Upstream::start(Mode::Token).await;
    let proxy = Proxy::start(Resolver::Path, &up.connector("team-a", "reg"), "").await;
    let image = images::multilayer();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().to_path_buf();
    let prefix = proxy.image_prefix("team-a", "reg");
    let digest_file = dir.join("digest");

    let layout = image.oci_ref();
    let target = format!("docker://{prefix}/podman/app:v1");
    let digest_path = digest_file.display().to_string();
    let dir2 = dir.clone();
    let pushed = tokio::task::spawn_blocking(move || {
        let id = podman(&dir2, &["pull", "-q", &layout])?;
        podman(&dir2, &["push", "--tls-verify=false", "--digestfile", &digest_path, &id, &target])?;
        std::fs::read_to_string(&digest_path).map_err(|e| e.to_string())
    })
    .await
    .expect("join");
    let pushed = pushed.unwrap_or_else(|e| panic!("{e}\nproxy log:\n{}", proxy.log()));

    // The registry holds exactly what podman says it pushed.
    let direct = format!("docker://{}", up.registry.image_ref("podman/app", "v1"));
    let raw = skopeo::inspect_raw(&direct, up.creds.as_ref()).await.expect("direct inspect");
    assert_eq!(common::sha256_bytes(&raw), pushed.trim());

    // And podman pulls it back through the proxy.
    let source = format!("{prefix}/podman/app:v1");
    let pulled = tokio::task::spawn_blocking(move || {
        podman(&dir, &["rmi", "-a", "-f"])?;
        podman(&dir, &["pull", "-q", "--tls-verify=false", &source])
    })
    .await
    .expect("join");
    assert!(pulled.is_ok(), "{pulled:?}\nproxy log:\n{}", proxy.log());
}
