//! Sandboxed `skopeo` wrappers.
//!
//! Every run gets a private temp dir used as HOME, XDG dirs, DOCKER_CONFIG, `--authfile`
//! (`{"auths":{}}`), registries.conf and `--tmpdir`, so the host's credentials and
//! registry configuration never interfere. Docker references always get either explicit
//! `--creds` or `--no-creds`. Runs use `--insecure-policy`, `--retry-times 0` and
//! `--tls-verify=false`.
//!
//! Quirks:
//! - With `--tls-verify=false` skopeo (containers/image) still tries HTTPS first and falls
//!   back to plain HTTP when that fails, so every run opens one connection that sends a
//!   TLS ClientHello to the plain-HTTP port (registry or proxy); the server must simply
//!   reject/close it.
//! - Copies pass `--preserve-digests` unless [`CopyOpts::allow_digest_change`]: skopeo
//!   otherwise gzips our uncompressed layers on the way to a registry (or an OCI layout),
//!   which changes every layer and manifest digest.
//! - Running as root, skopeo keeps its blob-info cache in
//!   `/var/lib/containers/cache/blob-info-cache-v1.boltdb` (no flag or env var moves it).
//!   It remembers where it saw each blob digest, so a later push of the same test image to
//!   another repository on the *same* registry host:port may try a cross-repository
//!   mount (`POST .../blobs/uploads/?mount=..&from=..`) first; the registry answers 202
//!   (a plain upload) when the mount is impossible, so results do not change, but the
//!   request sequence seen by a proxy can.
//! - The async functions run skopeo on tokio's blocking pool, so an in-process token
//!   server keeps being served while skopeo waits on it.

use std::fmt;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::images::TestImage;

/// Registry credentials for `--creds user:password`.
#[derive(Clone, PartialEq, Eq)]
pub struct Creds {
    /// User name.
    pub user: String,
    /// Password (never printed by `Debug`).
    pub password: String,
}

impl Creds {
    /// `Creds { user, password }`.
    pub fn new(user: &str, password: &str) -> Self {
        Self { user: user.into(), password: password.into() }
    }

    fn arg(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }
}

impl fmt::Debug for Creds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Creds({}:<redacted>)", self.user)
    }
}

/// Options for [`copy`].
#[derive(Debug, Clone, Default)]
pub struct CopyOpts {
    /// `--all`: copy every image of an index, not just the host platform's.
    pub all: bool,
    /// Credentials for a `docker://` source (`None`: `--src-no-creds`).
    pub src_creds: Option<Creds>,
    /// Credentials for a `docker://` destination (`None`: `--dest-no-creds`).
    pub dest_creds: Option<Creds>,
    /// Drop `--preserve-digests` (skopeo may then recompress layers).
    pub allow_digest_change: bool,
    /// Extra arguments appended before the references.
    pub extra_args: Vec<String>,
    /// Extra environment for skopeo (e.g. `HTTP_PROXY`), set after the sandbox's own.
    pub env: Vec<(String, String)>,
    /// A client auth file (e.g. a rendered `config.json`) for both references,
    /// used instead of explicit credentials.
    pub authfile: Option<std::path::PathBuf>,
}

/// A failed skopeo run.
#[derive(Debug, Clone)]
pub struct SkopeoError {
    /// The arguments after `skopeo` (passwords redacted).
    pub args: Vec<String>,
    /// Exit code, `None` if killed by a signal or not started.
    pub code: Option<i32>,
    /// Standard error (or the spawn error).
    pub stderr: String,
}

impl fmt::Display for SkopeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skopeo {} failed ({:?}): {}", self.args.join(" "), self.code, self.stderr.trim())
    }
}

impl std::error::Error for SkopeoError {}

/// Result of a skopeo wrapper.
pub type SkopeoResult<T> = Result<T, SkopeoError>;

/// `skopeo copy src dest`; returns the digest skopeo wrote to `--digestfile`.
pub async fn copy(src: &str, dest: &str, opts: &CopyOpts) -> SkopeoResult<String> {
    let (src, dest, opts) = (src.to_string(), dest.to_string(), opts.clone());
    blocking(move || copy_blocking(&src, &dest, &opts)).await
}

/// Pushes a test image's layout to `dest` (e.g. `registry.image_ref("tiny", "v1")`),
/// with `--all` when it is an index; returns the pushed manifest digest.
pub async fn push_layout(image: &TestImage, dest: &str, creds: Option<&Creds>) -> SkopeoResult<String> {
    let opts = CopyOpts { all: image.is_index(), dest_creds: creds.cloned(), ..CopyOpts::default() };
    copy(&image.oci_ref(), dest, &opts).await
}

/// Pulls `src` into the OCI layout `dir` (tag `v1`; created if missing); returns the
/// manifest digest written there.
pub async fn pull_to_layout(src: &str, dir: &Path, creds: Option<&Creds>, all: bool) -> SkopeoResult<String> {
    let dest = format!("oci:{}:v1", dir.display());
    let opts = CopyOpts { all, src_creds: creds.cloned(), ..CopyOpts::default() };
    copy(src, &dest, &opts).await
}

/// `skopeo inspect --raw src`: the manifest bytes exactly as served.
pub async fn inspect_raw(src: &str, creds: Option<&Creds>) -> SkopeoResult<Vec<u8>> {
    let (src, creds) = (src.to_string(), creds.cloned());
    blocking(move || inspect_raw_blocking(&src, creds.as_ref())).await
}

/// Blocking [`copy`]; do not call on an async worker thread that a server needs.
pub fn copy_blocking(src: &str, dest: &str, opts: &CopyOpts) -> SkopeoResult<String> {
    let sandbox = Sandbox::new()?;
    let digest_file = sandbox.dir.path().join("digest");
    let mut args = vec!["copy".to_string()];
    args.extend(sandbox.command_args());
    if opts.all {
        args.push("--all".into());
    }
    if !opts.allow_digest_change {
        args.push("--preserve-digests".into());
    }
    match &opts.authfile {
        Some(f) => {
            let f = f.display().to_string();
            args.extend(["--src-authfile".into(), f.clone(), "--dest-authfile".into(), f]);
        }
        None => {
            args.extend(creds_args(src, "--src-creds", "--src-no-creds", opts.src_creds.as_ref()));
            args.extend(creds_args(dest, "--dest-creds", "--dest-no-creds", opts.dest_creds.as_ref()));
        }
    }
    args.extend(["--src-tls-verify=false".into(), "--dest-tls-verify=false".into()]);
    args.extend(["--digestfile".into(), digest_file.display().to_string()]);
    args.extend(opts.extra_args.iter().cloned());
    args.extend([src.to_string(), dest.to_string()]);
    sandbox.run(&args, &opts.env)?;
    let digest = std::fs::read_to_string(&digest_file).map_err(|e| spawn_error(&args, e))?;
    Ok(digest.trim().to_string())
}

/// Blocking [`inspect_raw`].
pub fn inspect_raw_blocking(src: &str, creds: Option<&Creds>) -> SkopeoResult<Vec<u8>> {
    let sandbox = Sandbox::new()?;
    let mut args = vec!["inspect".to_string(), "--raw".into(), "--tls-verify=false".into()];
    args.extend(sandbox.command_args());
    args.extend(creds_args(src, "--creds", "--no-creds", creds));
    args.push(src.to_string());
    sandbox.run(&args, &[])
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SkopeoResult<T> + Send + 'static,
) -> SkopeoResult<T> {
    tokio::task::spawn_blocking(f).await.expect("skopeo task panicked")
}

/// Credential flags, for `docker://` references only.
fn creds_args(reference: &str, with: &str, without: &str, creds: Option<&Creds>) -> Vec<String> {
    if !reference.starts_with("docker://") {
        return Vec::new();
    }
    match creds {
        Some(c) => vec![with.to_string(), c.arg()],
        None => vec![without.to_string()],
    }
}

/// A private directory isolating one skopeo run from the host configuration.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> SkopeoResult<Self> {
        let dir = tempfile::Builder::new().prefix("skopeo-").tempdir().map_err(|e| spawn_error(&[], e))?;
        for sub in ["home", "config", "runtime", "docker", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|e| spawn_error(&[], e))?;
        }
        std::fs::write(dir.path().join("auth.json"), br#"{"auths":{}}"#).map_err(|e| spawn_error(&[], e))?;
        std::fs::write(dir.path().join("registries.conf"), b"").map_err(|e| spawn_error(&[], e))?;
        Ok(Self { dir })
    }

    /// Per-command flags: the private authfile and no retries.
    fn command_args(&self) -> Vec<String> {
        let auth = self.dir.path().join("auth.json").display().to_string();
        vec!["--authfile".into(), auth, "--retry-times".into(), "0".into()]
    }

    /// Runs `skopeo --insecure-policy --tmpdir .. <args>`; returns stdout.
    fn run(&self, args: &[String], env: &[(String, String)]) -> SkopeoResult<Vec<u8>> {
        let p = self.dir.path();
        let started = std::time::Instant::now();
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .args(args)
            .env("HOME", p.join("home"))
            .env("XDG_CONFIG_HOME", p.join("config"))
            .env("XDG_RUNTIME_DIR", p.join("runtime"))
            .env("DOCKER_CONFIG", p.join("docker"))
            .env("REGISTRY_AUTH_FILE", p.join("auth.json"))
            .env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("TMPDIR", p.join("tmp"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| spawn_error(args, e))?;
        if started.elapsed() > std::time::Duration::from_secs(10) {
            // Shown by the test runner when the test fails or is slow.
            eprintln!("slow skopeo ({:?}): {:?}", started.elapsed(), redact(args));
        }
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Err(SkopeoError { args: redact(args), code: out.status.code(), stderr })
    }
}

fn spawn_error(args: &[String], e: std::io::Error) -> SkopeoError {
    SkopeoError { args: redact(args), code: None, stderr: e.to_string() }
}

/// Hides the password part of every `--*creds user:password` value.
fn redact(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    for arg in args {
        let after_creds = out.last().is_some_and(|prev| prev.ends_with("creds"));
        match arg.split_once(':') {
            Some((user, _)) if after_creds => out.push(format!("{user}:<redacted>")),
            _ => out.push(arg.clone()),
        }
    }
    out
}
