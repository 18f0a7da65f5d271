//! The docker CLI against a dockerd the test starts (Debian's docker.io, vfs
//! storage, no networking of its own), configured only by the rendered
//! `config.json` (`DOCKER_CONFIG`): pull and push through the proxy.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli;
use common::fixture::{Mode, Upstream};
use common::images;
use common::proc::{poll_until, ChildGuard};

/// A dockerd with its own data root, exec root and socket.
struct Dockerd {
    child: ChildGuard,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::Builder::new().prefix("dkd").tempdir_in("/tmp").expect("temp dir");
        let p = dir.path();
        let log = std::fs::File::create(p.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none", "--storage-driver", "vfs", "--log-level", "warn"])
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", p.join("docker.sock").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn dockerd");
        let d = Dockerd { child: ChildGuard::new("dockerd", child), dir };
        let up = poll_until(Duration::from_secs(30), || d.docker(None, &["version"]).ok());
        assert!(
            up.is_some(),
            "dockerd did not start: {}",
            std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
        );
        d
    }

    fn docker(&self, config: Option<&Path>, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("docker");
        cmd.arg("--host").arg(format!("unix://{}", self.dir.path().join("docker.sock").display())).args(args);
        // Without a rendered config, an empty one: never the host's.
        let empty = self.dir.path().join("empty-config");
        let _ = std::fs::create_dir_all(&empty);
        cmd.env("DOCKER_CONFIG", config.unwrap_or(&empty));
        let out = cmd.output().map_err(|e| e.to_string())?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("docker {args:?}: {text}"))
        }
    }

    /// The containerd that dockerd started for itself, if it is still running.
    fn managed_containerd_pid(&self) -> Option<i32> {
        let pidfile: PathBuf = self.dir.path().join("exec/containerd/containerd.pid");
        std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // dockerd stops its own containerd on a clean shutdown; SIGTERM, then wait.
        let containerd = self.managed_containerd_pid();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = poll_until(Duration::from_secs(15), || self.child.try_exit_status());
        self.child.kill();
        if let Some(pid) = containerd {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pulls_and_pushes_with_the_rendered_config_json() {
    let up = Upstream::start(Mode::Token).await;
    let image = images::multilayer();
    up.seed(&image, "team/app").await;
    let (proxy, _keys) = cli::proxy_with_client_tokens(&up.connector("team-a", "reg")).await;
    let config_dir = tempfile::tempdir().expect("temp dir");
    cli::render(
        &proxy,
        "registry-config",
        "team-a/reg",
        &["--push", "--subject", "docker-test"],
        config_dir.path(),
    );

    let dockerd = tokio::task::spawn_blocking(Dockerd::start).await.expect("dockerd");
    let prefix = proxy.image_prefix("team-a", "reg");
    let source = format!("{prefix}/team/app:v1");
    let target = format!("{prefix}/team/pushed:v1");
    let cfg = config_dir.path().to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        // Without credentials the proxy refuses.
        let refused = dockerd.docker(None, &["pull", &source]);
        let pulled = dockerd.docker(Some(&cfg), &["pull", &source])?;
        dockerd.docker(Some(&cfg), &["tag", &source, &target])?;
        let pushed = dockerd.docker(Some(&cfg), &["push", &target])?;
        Ok::<_, String>((refused, pulled, pushed))
    })
    .await
    .expect("join");
    let (refused, pulled, pushed) = result.unwrap_or_else(|e| panic!("{e}\nproxy log:\n{}", proxy.log()));
    assert!(refused.is_err(), "a pull without the rendered config must be refused");
    assert!(pulled.contains(&image.manifest_digest), "{pulled}");
    assert!(pushed.contains("digest: sha256:"), "{pushed}");

    // The pushed image is in the registry, readable directly.
    let raw = common::skopeo::inspect_raw(
        &format!("docker://{}", up.registry.image_ref("team/pushed", "v1")),
        up.creds.as_ref(),
    )
    .await
    .expect("pushed image");
    assert!(pushed.contains(&common::sha256_bytes(&raw)), "{pushed}");
}
