//! End-to-end test harness: real servers on free loopback ports, cleaned up on `Drop`.
//!
//! Layout:
//! - [`proc`]: `ChildGuard` (kill + reap on drop), free ports, readiness polling.
//! - [`registry`]: a `docker-registry` (distribution 2.8) child with anonymous, htpasswd or
//!   token authentication and filesystem storage in a temp dir.
//! - [`token_server`]: an in-process Docker token server (hyper 1) with request counters
//!   and fault injection.
//! - [`images`]: deterministic OCI image layouts built on disk and cached across runs.
//! - [`skopeo`]: sandboxed `skopeo` wrappers (copy, push, pull, inspect).
//! - [`proxy`]: the oci-connector binary as a child process.
//! - [`fixture`]: an upstream registry per auth mode, seeded with test images.
//! - [`fake`]: in-process fake upstreams for faults the real registry cannot show.
//! - [`raw`]: raw HTTP/1.1 pieces for registries written byte by byte, and their clients.
//! - [`pki`]: a private test CA and a server certificate for 127.0.0.1.
//!
//! Each integration-test binary compiles this module separately and uses only part of it,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod cli;
pub mod fake;
pub mod fixture;
pub mod images;
pub mod pki;
pub mod proc;
pub mod proxy;
pub mod raw;
pub mod registry;
pub mod skopeo;
pub mod token_server;

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Returns the OCI digest (`sha256:<hex>`) of a file, streaming it in 1 MiB chunks.
pub fn sha256_file(path: impl AsRef<Path>) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Returns the OCI digest (`sha256:<hex>`) of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Every manifest media type a registry may serve, for `Accept`.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// An HTTP client that shows redirects instead of following them, so tests see
/// exactly what the proxy answered.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}
