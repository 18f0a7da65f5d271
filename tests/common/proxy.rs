//! The oci-connector binary as a child process, with its settings and connectors
//! files in a temp dir and its log captured for assertions.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::{free_port, ChildGuard};

/// Which resolver the proxy runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `/v2/namespaces/<ns>/connectors/<name>/...`
    Path,
    /// `c-<name>.<ns>.<domain>`.
    Host,
}

/// Domain of the host resolver in tests. Nothing resolves it: clients reach the
/// proxy with `HTTP_PROXY` pointing at it, so they send `Host: c-<name>.<ns>.oci.test`
/// without a DNS lookup (see [`Proxy::client_env`]).
pub const HOST_DOMAIN: &str = "oci.test";

/// A running proxy.
pub struct Proxy {
    child: ChildGuard,
    dir: tempfile::TempDir,
    port: u16,
    admin_port: Option<u16>,
    resolver: Resolver,
}

impl Proxy {
    /// Starts the proxy with `connectors` (YAML manifests) and extra settings lines.
    pub async fn start(resolver: Resolver, connectors: &str, extra_settings: &str) -> Proxy {
        Self::start_inner(resolver, connectors, extra_settings, false).await
    }

    /// Like [`Proxy::start`], with the admin listener on a free port (see [`Proxy::admin_url`]).
    pub async fn start_with_admin(resolver: Resolver, connectors: &str, extra_settings: &str) -> Proxy {
        Self::start_inner(resolver, connectors, extra_settings, true).await
    }

    async fn start_inner(resolver: Resolver, connectors: &str, extra_settings: &str, admin: bool) -> Proxy {
        let mut dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("connectors.yaml"), connectors).expect("write connectors");
        for _ in 0..5 {
            let port = free_port();
            let admin_port = admin.then(free_port);
            let admin_settings =
                admin_port.map(|p| format!("admin:\n  listen: 127.0.0.1:{p}\n")).unwrap_or_default();
            let settings = format!(
                "listen: 127.0.0.1:{port}\npublicUrl: http://127.0.0.1:{port}\nconnectors:\n  paths: [connectors.yaml]\n\
                 resolver: {}\nhostResolver:\n  domain: {HOST_DOMAIN}\nthreads: 2\n{admin_settings}{extra_settings}",
                match resolver {
                    Resolver::Path => "path",
                    Resolver::Host => "host",
                }
            );
            let settings_path = dir.path().join("settings.yaml");
            std::fs::write(&settings_path, settings).expect("write settings");
            let log = File::create(dir.path().join("proxy.log")).expect("log file");
            let child = Command::new(env!("CARGO_BIN_EXE_oci-connector"))
                .arg("serve")
                .arg("--config")
                .arg(&settings_path)
                .arg("--pid-file")
                .arg(dir.path().join("proxy.pid"))
                .arg("--upgrade-sock")
                .arg(dir.path().join("upgrade.sock"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::from(log.try_clone().expect("log fd")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn oci-connector");
            let mut proxy =
                Proxy { child: ChildGuard::new("oci-connector", child), dir, port, admin_port, resolver };
            if proxy.wait_ready().await {
                return proxy;
            }
            // Most likely the port was taken between probing and binding: retry.
            dir = proxy.into_dir();
        }
        panic!("oci-connector did not start");
    }

    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if self.child.try_exit_status().is_some() {
                eprintln!("proxy exited early:\n{}", self.log());
                return false;
            }
            if let Ok(r) = client.get(format!("http://127.0.0.1:{}/v2/", self.port)).send().await {
                let admin_up = match self.admin_port {
                    Some(p) => client.get(format!("http://127.0.0.1:{p}/healthz")).send().await.is_ok(),
                    None => true,
                };
                if (r.status().as_u16() == 200 || r.status().as_u16() == 401) && admin_up {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.child.kill();
        let tmp = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, tmp)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The image reference prefix for a connector, as a client writes it
    /// (`127.0.0.1:5000/namespaces/ns/connectors/name` or `c-name.ns.localhost:5000`).
    pub fn image_prefix(&self, namespace: &str, name: &str) -> String {
        match self.resolver {
            Resolver::Path => format!("127.0.0.1:{}/namespaces/{namespace}/connectors/{name}", self.port),
            Resolver::Host => format!("c-{name}.{namespace}.{HOST_DOMAIN}:{}", self.port),
        }
    }

    /// Base URL for API calls to a connector: `http://<image prefix>` for the path
    /// resolver and `http://127.0.0.1:<port>` for the host resolver (with a `Host` header).
    pub fn api_base(&self, namespace: &str, name: &str) -> String {
        match self.resolver {
            Resolver::Path => {
                format!("http://127.0.0.1:{}/v2/namespaces/{namespace}/connectors/{name}", self.port)
            }
            Resolver::Host => format!("http://127.0.0.1:{}/v2", self.port),
        }
    }

    /// The `Host` header a host-resolver request needs (None for the path resolver).
    pub fn host_header(&self, namespace: &str, name: &str) -> Option<String> {
        (self.resolver == Resolver::Host).then(|| format!("c-{name}.{namespace}.{HOST_DOMAIN}:{}", self.port))
    }

    /// Environment for a client (skopeo) to reach host-resolver names through
    /// the proxy's port without DNS: an HTTP proxy setting.
    pub fn client_env(&self) -> Vec<(String, String)> {
        match self.resolver {
            Resolver::Path => vec![],
            Resolver::Host => vec![
                ("HTTP_PROXY".into(), format!("http://127.0.0.1:{}", self.port)),
                ("http_proxy".into(), format!("http://127.0.0.1:{}", self.port)),
                ("NO_PROXY".into(), String::new()),
                ("no_proxy".into(), String::new()),
            ],
        }
    }

    /// `http://127.0.0.1:<admin port>` (only for [`Proxy::start_with_admin`]).
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port.expect("started without admin"))
    }

    /// GET `<admin>/<path>` and its body as text; panics unless it answers 200.
    pub async fn admin_get(&self, path: &str) -> String {
        let url = format!("{}/{}", self.admin_url(), path.trim_start_matches('/'));
        let resp = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text().await.expect("admin body")
    }

    /// `/connectors` as JSON.
    pub async fn connectors_status(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/connectors").await).expect("connectors JSON")
    }

    /// The value of a metric sample in `/metrics` (`name{labels}` exactly as
    /// rendered, or a bare name); 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.admin_get("/metrics").await;
        metric_value(&text, sample)
    }

    /// Path of the connectors file the proxy watches.
    pub fn connectors_path(&self) -> PathBuf {
        self.dir.path().join("connectors.yaml")
    }

    /// Path of the settings file.
    pub fn settings_path(&self) -> PathBuf {
        self.dir.path().join("settings.yaml")
    }

    /// Replaces the connectors file the way editors do: write a temp file, rename it over.
    pub fn write_connectors(&self, yaml: &str) {
        let tmp = self.dir.path().join(".connectors.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write connectors");
        std::fs::rename(&tmp, self.connectors_path()).expect("rename connectors");
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, `"QUIT"`) to the proxy.
    pub fn signal(&self, sig: &str) {
        let ok =
            Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// Waits (up to `within`) for `config_generation` to reach `generation`;
    /// returns the time it took.
    pub async fn wait_generation(&self, generation: u64, within: Duration) -> Duration {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            let list = self.connectors_status().await;
            if list["reload"]["generation"].as_u64().unwrap_or(0) >= generation {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("generation {generation} not reached within {within:?}; log:\n{}", self.log());
    }

    /// Whether the child has exited (and its status).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_exit_status()
    }

    /// The directory holding settings, connectors and the log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// The proxy's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The value of `sample` (`name{labels}` or a bare name) in a Prometheus text exposition; 0 when absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A Connector manifest (and its Secret when `credentials` is given).
pub fn connector_yaml(
    namespace: &str,
    name: &str,
    address: &str,
    credentials: Option<(&str, &str)>,
) -> String {
    let mut y = format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  connectorClassName: oci\n  address: {address}\n"
    );
    if let Some((user, password)) = credentials {
        y.push_str(&format!(
            "  auth:\n    name: tokenAuth\n    secretRef:\n      name: {name}-creds\n---\napiVersion: v1\nkind: Secret\n\
             metadata:\n  name: {name}-creds\n  namespace: {namespace}\ntype: cpaas.io/distribution-registry-token\n\
             stringData:\n  username: {user}\n  password: {password}\n"
        ));
    }
    y.push_str("---\n");
    y
}
