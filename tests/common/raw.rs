//! Raw HTTP/1.1 pieces for fake registries written byte by byte (fault
//! injection, connection counting) and for the clients that talk to them.

use std::future::Future;
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The manifest the fake registries serve.
pub const MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#;

/// Awaits `f`, failing the test if it takes longer than `patience`: a hang
/// fails the test instead of stalling it.
pub async fn within<T>(patience: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(patience, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {patience:?}"))
}

/// GET `url`: its status and whole body, within `patience`.
pub async fn get(client: &reqwest::Client, url: &str, patience: Duration) -> (StatusCode, Vec<u8>) {
    within(patience, url, async {
        let r = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = r.status();
        (status, r.bytes().await.unwrap_or_else(|e| panic!("GET {url} body: {e}")).to_vec())
    })
    .await
}

/// Reads until `buf` holds a complete head; returns its length including the
/// blank line, or `None` at end of stream.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A response with `Content-Length` framing: `status` is e.g. `"200 OK"`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = response_head(status, headers, body.len());
    out.extend_from_slice(body);
    out
}

/// Just the head of [`response`], announcing `length` body bytes.
pub fn response_head(status: &str, headers: &[(&str, &str)], length: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {length}\r\n\r\n").as_bytes());
    out
}

/// [`MANIFEST`] as a keep-alive 200.
pub fn manifest_reply() -> Vec<u8> {
    response(
        "200 OK",
        &[
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            ("Docker-Content-Digest", "sha256:00"),
        ],
        MANIFEST,
    )
}

/// `n` bytes that do not repeat (seeded, so every run sees the same blob).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}
