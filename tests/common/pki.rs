//! A private test CA and a server certificate for 127.0.0.1 it signed, made
//! with the openssl CLI (P-256 keys: cheap to generate), and the Secret that
//! hands the CA to a connector.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of the files [`make`] wrote.
pub struct PkiFiles {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate for 127.0.0.1 (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `ca.crt`, `server.crt` and `server.key` into `dir`.
pub fn make(dir: &Path) -> PkiFiles {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["-x509", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca"];
    openssl(dir, &[&["req"][..], &ec, &ca].concat());
    let csr = ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"];
    openssl(dir, &[&["req"][..], &ec, &csr].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    PkiFiles { ca: dir.join("ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key") }
}

/// A `Secret` `ns/name` whose `ca.crt` is `pem`, for a connector's `caCertSecretRef`.
pub fn ca_secret_yaml(ns: &str, name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: Opaque\n\
         stringData:\n  ca.crt: |\n{indented}"
    )
}
