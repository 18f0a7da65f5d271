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
    resolver: Resolver,
}

impl Proxy {
    /// Starts the proxy with `connectors` (YAML manifests) and extra settings lines.
    pub async fn start(resolver: Resolver, connectors: &str, extra_settings: &str) -> Proxy {
        let mut dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("connectors.yaml"), connectors).expect("write connectors");
        for _ in 0..5 {
            let port = free_port();
            let settings = format!(
                "listen: 127.0.0.1:{port}\npublicUrl: http://127.0.0.1:{port}\nconnectors:\n  paths: [connectors.yaml]\n\
                 resolver: {}\nhostResolver:\n  domain: {HOST_DOMAIN}\nthreads: 2\n{extra_settings}",
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
            let mut proxy = Proxy { child: ChildGuard::new("oci-connector", child), dir, port, resolver };
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
                if r.status().as_u16() == 200 || r.status().as_u16() == 401 {
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
