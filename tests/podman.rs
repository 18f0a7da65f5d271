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

/// A symlink under `/tmp` whose path has no capitals; removed on drop.
struct LowercaseLink {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl LowercaseLink {
    fn new(target: &Path) -> LowercaseLink {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir =
            std::path::PathBuf::from(format!("/tmp/oci-connector-podman-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("link dir");
        let path = dir.join("layout");
        std::os::unix::fs::symlink(target, &path).expect("symlink");
        LowercaseLink { dir, path }
    }
}

impl Drop for LowercaseLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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

    // podman names an `oci:` image after its path, and image names must be
    // lowercase; a checkout (or temp dir) with capitals in its path would fail,
    // so the layout is reached through a lowercase symlink.
    let link = LowercaseLink::new(&image.layout_dir);
    let layout = format!("oci:{}:{}", link.path.display(), image.tag);
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
