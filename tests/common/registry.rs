//! A real `docker-registry` (CNCF distribution 2.8) child process on a free loopback port.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::proc::{free_port, http_status, poll_until, ChildGuard};

/// How a [`Registry`] authenticates its clients.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    /// No authentication at all.
    Anonymous,
    /// HTTP Basic against an htpasswd file (bcrypt, made with `htpasswd -Bbn`).
    Htpasswd {
        /// The only user.
        user: String,
        /// Its password.
        password: String,
    },
    /// Bearer tokens from a token server (see `TokenServer::registry_auth`).
    Token {
        /// URL of the token endpoint, announced in `WWW-Authenticate: Bearer realm=..`.
        realm: String,
        /// Expected `aud` claim, announced as `service=..`.
        service: String,
        /// Expected `iss` claim.
        issuer: String,
        /// PEM certificate(s) whose public keys may sign tokens.
        root_cert_bundle: PathBuf,
    },
}

/// A running registry; killed by PID and its storage deleted on drop.
pub struct Registry {
    // Field order matters: the child dies before its directory is removed.
    child: ChildGuard,
    dir: TempDir,
    addr: SocketAddr,
    auth: RegistryAuth,
    tls: bool,
}

/// A server certificate and key (PEM files) for a TLS registry.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Attempts before giving up; a free port can be taken between probing and binding.
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(15);

impl Registry {
    /// Starts a registry and blocks (briefly, ~0.1-0.5 s) until `GET /v2/` answers
    /// (200 anonymous, 401 otherwise). Panics with the registry log if it cannot start.
    pub fn start(auth: RegistryAuth) -> Registry {
        Self::start_with_tls(auth, None)
    }

    /// Like [`Registry::start`], serving HTTPS with `tls` when given.
    pub fn start_with_tls(auth: RegistryAuth, tls: Option<TlsFiles>) -> Registry {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start_with(auth.clone(), tls.clone()) {
                Ok(registry) => return registry,
                Err(e) => {
                    eprintln!("docker-registry start attempt failed, retrying: {e}");
                    last_err = e.to_string();
                }
            }
        }
        panic!("docker-registry did not start after {START_ATTEMPTS} attempts: {last_err}");
    }

    /// One attempt on one port; `Err` carries the tail of the registry log.
    pub fn try_start(auth: RegistryAuth) -> io::Result<Registry> {
        Self::try_start_with(auth, None)
    }

    /// One attempt, optionally serving HTTPS. (The readiness probe speaks plain
    /// HTTP; a TLS registry answers it with 400, which is an answer.)
    pub fn try_start_with(auth: RegistryAuth, tls: Option<TlsFiles>) -> io::Result<Registry> {
        let dir = tempfile::Builder::new().prefix("registry-").tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = write_config(dir.path(), addr, &auth, tls.as_ref())?;
        let mut child = spawn(dir.path(), &config)?;
        let ready = poll_until(READY_TIMEOUT, || {
            if child.try_exit_status().is_some() {
                return Some(false); // e.g. "bind: address already in use"
            }
            http_status(addr, "/v2/").ok().map(|_| true)
        });
        if ready == Some(true) {
            return Ok(Registry { child, dir, addr, auth, tls: tls.is_some() });
        }
        child.kill();
        let log = fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        Err(io::Error::other(format!("registry on {addr} not ready; log:\n{log}")))
    }

    /// `127.0.0.1:<port>`, the registry host as image references spell it.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The listening socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (`https` for a TLS registry).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// `127.0.0.1:<port>/<repo>:<tag>`, an image reference without transport.
    pub fn image_ref(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// `docker://127.0.0.1:<port>/<repo>:<tag>`, a skopeo reference into this registry.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}", self.image_ref(repo, tag))
    }

    /// The authentication this registry was started with.
    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// The filesystem storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's combined stdout/stderr log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The registry's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn spawn(dir: &Path, config: &Path) -> io::Result<ChildGuard> {
    let log = File::create(dir.join("registry.log"))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        // Writing to a file, not a pipe: a full pipe would block the registry.
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    Ok(ChildGuard::new("docker-registry", child))
}

/// Writes `config.yml` (distribution config version 0.1) into `dir`.
fn write_config(
    dir: &Path,
    addr: SocketAddr,
    auth: &RegistryAuth,
    tls: Option<&TlsFiles>,
) -> io::Result<PathBuf> {
    let storage = dir.join("storage");
    fs::create_dir_all(&storage)?;
    // The access log stays on (it goes to registry.log, handy when a test fails). The
    // health storagedriver check is off: `/v2/` readiness is all we need.
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {storage:?}\n  delete:\n    enabled: true\n\
         health:\n  storagedriver:\n    enabled: false\n\
         http:\n  addr: {addr}\n"
    );
    if let Some(t) = tls {
        let _ = write!(yaml, "  tls:\n    certificate: {:?}\n    key: {:?}\n", t.cert, t.key);
    }
    yaml.push_str(&auth_section(dir, auth)?);
    let path = dir.join("config.yml");
    fs::write(&path, yaml)?;
    Ok(path)
}

fn auth_section(dir: &Path, auth: &RegistryAuth) -> io::Result<String> {
    let mut yaml = String::new();
    match auth {
        RegistryAuth::Anonymous => {}
        RegistryAuth::Htpasswd { user, password } => {
            let file = write_htpasswd(dir, user, password)?;
            let _ = write!(yaml, "auth:\n  htpasswd:\n    realm: test-registry\n    path: {file:?}\n");
        }
        RegistryAuth::Token { realm, service, issuer, root_cert_bundle } => {
            // distribution 2.8 trusts a token when its header `kid` equals the libtrust key
            // ID of a public key in this bundle (or via x5c/jwk). The token server sends
            // `aud` as a plain string equal to `service`: 2.8 declares the claim a string
            // (audience arrays came with distribution 3).
            let _ = write!(
                yaml,
                "auth:\n  token:\n    realm: {realm:?}\n    service: {service:?}\n    \
                 issuer: {issuer:?}\n    rootcertbundle: {root_cert_bundle:?}\n"
            );
        }
    }
    Ok(yaml)
}

/// `htpasswd -Bbn user password` into `dir/htpasswd` (distribution accepts bcrypt only).
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> io::Result<PathBuf> {
    let out = Command::new("htpasswd").args(["-Bbn", user, password]).output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("htpasswd failed: {stderr}")));
    }
    let path = dir.join("htpasswd");
    fs::write(&path, out.stdout)?;
    Ok(path)
}
