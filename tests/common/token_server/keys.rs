//! The signing key: generated with the `openssl` CLI, named by its libtrust key ID.

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonwebtoken::EncodingKey;
use sha2::{Digest, Sha256};

/// The private key, its key ID and the certificate file.
pub(super) struct Keys {
    pub(super) key: EncodingKey,
    pub(super) kid: String,
    pub(super) cert_path: PathBuf,
}

/// Makes a key + self-signed certificate in `dir`.
pub(super) fn make_keys(dir: &Path) -> std::io::Result<Keys> {
    let (key_path, cert_path) = (dir.join("key.pem"), dir.join("cert.pem"));
    let (pub_pem, pub_der) = (dir.join("pub.pem"), dir.join("pub.der"));
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=token", "-days", "2"],
        &[("-keyout", &key_path), ("-out", &cert_path)],
    )?;
    openssl(&["x509", "-pubkey", "-noout"], &[("-in", &cert_path), ("-out", &pub_pem)])?;
    openssl(&["pkey", "-pubin", "-outform", "DER"], &[("-in", &pub_pem), ("-out", &pub_der)])?;
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&key_path)?).map_err(std::io::Error::other)?;
    let kid = libtrust_key_id(&std::fs::read(&pub_der)?);
    Ok(Keys { key, kid, cert_path })
}

fn openssl(args: &[&str], paths: &[(&str, &Path)]) -> std::io::Result<()> {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(std::io::Error::other(format!("openssl {args:?} failed: {stderr}")))
}

/// libtrust key ID: base32 (RFC 4648, no padding) of the first 30 bytes of
/// sha256(DER SubjectPublicKeyInfo), in 12 groups of 4 joined by ':'.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = base32(&digest[..30]);
    let groups: Vec<&str> = (0..b32.len()).step_by(4).map(|i| &b32[i..i + 4]).collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding; input length must be a multiple of 5.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 8];
        buf[3..3 + chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes(buf);
        for i in (0..8).rev() {
            out.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
        }
    }
    out
}
