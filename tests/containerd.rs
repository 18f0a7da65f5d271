//! containerd, configured only by the rendered `hosts.toml`, pulls and pushes
//! through the proxy in mirror mode (`?ns=<registry>`): `ctr --hosts-dir` against
//! a containerd the test starts with its own root, state and socket.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli;
use common::fixture::{Mode, Upstream};
use common::images;
use common::proc::ChildGuard;

/// A containerd daemon in a temp dir; killed by PID on drop.
struct Containerd {
    _child: ChildGuard,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{root}/opt\"\n",
            root = p.join("root").display(),
            state = p.join("state").display(),
            sock = p.join("containerd.sock").display(),
        );
        std::fs::write(p.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(p.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn containerd");
        let guard = ChildGuard::new("containerd", child);
        let sock = p.join("containerd.sock");
        let ready = common::proc::poll_until(Duration::from_secs(20), || {
            let ok = Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .arg("version")
                .output()
                .ok()?
                .status
                .success();
            ok.then_some(())
        });
        assert!(
            ready.is_some(),
            "containerd did not start: {}",
            std::fs::read_to_string(p.join("containerd.log")).unwrap_or_default()
        );
        Containerd { _child: guard, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr images pull` with plain HTTP, the given hosts dir and the native snapshotter.
    fn pull(&self, hosts_dir: &str, reference: &str) -> Result<String, String> {
        self.ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--hosts-dir",
            hosts_dir,
            "--snapshotter",
            "native",
            reference,
        ])
    }

    /// Runs `ctr --address <sock> <args>`.
    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("ctr {args:?}: {text}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctr_pulls_and_pushes_with_the_rendered_hosts_toml() {
    // A token registry: containerd falling back to the registry itself (the
    // `server` line) would fail without credentials, so success proves the proxy path.
    let up = Upstream::start(Mode::Token).await;
    let image = images::multilayer();
    up.seed(&image, "team/app").await;
    let (proxy, _keys) = cli::proxy_with_client_tokens(&up.connector("team-a", "reg")).await;

    let out = tempfile::tempdir().expect("temp dir");
    cli::render(&proxy, "containerd", "team-a/reg", &["--push"], out.path());
    let hosts_dir = out.path().join("certs.d");
    assert!(hosts_dir.join(up.registry.addr()).join("hosts.toml").exists());

    let containerd = tokio::task::spawn_blocking(Containerd::start).await.expect("containerd");
    // The image is named by its *registry*; the hosts.toml sends it to the proxy.
    let reference = up.registry.image_ref("team/app", "v1");
    let hosts = hosts_dir.display().to_string();
    let pulled = containerd.pull(&hosts, &reference);
    assert!(pulled.is_ok(), "{pulled:?}\nproxy log:\n{}", proxy.log());
    let listed = containerd.ctr(&["images", "ls", "-q"]).expect("ls");
    assert!(listed.contains(&reference), "{listed}");
    let log = proxy.log();
    assert!(
        log.contains("path=/v2/namespaces/team-a/connectors/reg/team/app/manifests/v1"),
        "pull went elsewhere:\n{log}"
    );
    let digest = containerd.ctr(&["images", "ls"]).expect("ls");
    assert!(digest.contains(&image.manifest_digest), "{digest}");

    // Push under a new tag through the same hosts.toml.
    let pushed_ref = up.registry.image_ref("team/app", "from-ctr");
    containerd.ctr(&["images", "tag", &reference, &pushed_ref]).expect("tag");
    let pushed = containerd.ctr(&["images", "push", "--plain-http", "--hosts-dir", &hosts, &pushed_ref]);
    assert!(pushed.is_ok(), "{pushed:?}\nproxy log:\n{}", proxy.log());
    let raw = common::skopeo::inspect_raw(&format!("docker://{pushed_ref}"), up.creds.as_ref())
        .await
        .expect("inspect");
    assert_eq!(common::sha256_bytes(&raw), image.manifest_digest);

    // Mirror mode at the proxy's root URL: containerd appends `/v2/...` itself
    // and says which registry it means with `?ns=`; the proxy picks the connector
    // whose address is that registry.
    let toml_path = hosts_dir.join(up.registry.addr()).join("hosts.toml");
    let rendered = std::fs::read_to_string(&toml_path).expect("hosts.toml");
    let connector_url = format!("http://{}/v2/namespaces/team-a/connectors/reg", proxy.addr());
    let root = rendered
        .replace(&connector_url, &format!("http://{}", proxy.addr()))
        .replace("override_path = true\n", "");
    std::fs::write(&toml_path, root).expect("write");
    containerd.ctr(&["images", "rm", &reference]).expect("rm");
    let pulled = containerd.pull(&hosts, &reference);
    assert!(pulled.is_ok(), "{pulled:?}\nproxy log:\n{}", proxy.log());
    let log = proxy.log();
    let mirrored = log.lines().any(|l| {
        l.contains("connector=team-a/reg") && l.contains(" path=/v2/team/app/manifests/v1 status=200")
    });
    assert!(mirrored, "mirror request not seen:\n{log}");
}
