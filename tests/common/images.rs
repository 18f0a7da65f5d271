//! Deterministic OCI image layouts built on disk (no network), cached across runs under
//! `$CARGO_TARGET_TMPDIR/test-images/<version>/<name>`.
//!
//! Each image is built lazily by its own function, so a test pays only for what it uses;
//! [`large`] (256 MiB) in particular is built only by tests that call it. Building happens
//! in a private temp dir renamed into place atomically, so parallel test processes are
//! safe: the loser of a race discards its copy and uses the winner's.
//!
//! Layers are *uncompressed* tars (`application/vnd.oci.image.layer.v1.tar`), so each
//! layer digest equals its `diff_id`. Skopeo would gzip them when pushing to a registry
//! (changing every digest), which is why the skopeo wrappers pass `--preserve-digests`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Bump when the generated content changes, so stale caches are not reused.
const CACHE_VERSION: &str = "v1";
/// Metadata file kept inside each layout (ignored by OCI tools).
const META_FILE: &str = "harness-image.json";

/// Media type of an OCI image manifest.
pub const MANIFEST_V1: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const INDEX_V1: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_V1: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an uncompressed OCI layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A content-addressed blob (a descriptor without annotations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// A built OCI image layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestImage {
    /// Image name (also the cache directory name), e.g. `tiny`.
    pub name: String,
    /// The OCI layout directory (`oci-layout`, `index.json`, `blobs/`).
    #[serde(skip)]
    pub layout_dir: PathBuf,
    /// The tag in `index.json` (`org.opencontainers.image.ref.name`): always `v1`.
    pub tag: String,
    /// Digest of the top-level manifest (or index, for `multiarch`).
    pub manifest_digest: String,
    /// Media type of the top-level manifest: [`MANIFEST_V1`] or [`INDEX_V1`].
    pub media_type: String,
    /// Image manifests: the top-level one, or each platform's (amd64, arm64) for an index.
    pub manifests: Vec<Blob>,
    /// Config and layer blobs (what `/v2/<name>/blobs/` serves), without duplicates.
    pub blobs: Vec<Blob>,
    /// Bytes of everything pushed: blobs, manifests and index.
    pub total_size: u64,
}

impl TestImage {
    /// `oci:<layout_dir>:v1`, a skopeo source reference.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.layout_dir.display(), self.tag)
    }

    /// Whether the top level is an index (push it with `--all`).
    pub fn is_index(&self) -> bool {
        self.media_type == INDEX_V1
    }

    /// Path of a blob (or manifest) in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.layout_dir.join("blobs").join("sha256").join(hex)
    }

    /// Layer blobs only.
    pub fn layers(&self) -> impl Iterator<Item = &Blob> {
        self.blobs.iter().filter(|b| b.media_type == LAYER_TAR)
    }

    /// The biggest blob.
    pub fn largest_blob(&self) -> &Blob {
        self.blobs.iter().max_by_key(|b| b.size).expect("an image has blobs")
    }
}

/// One 1 KiB layer.
pub fn tiny() -> TestImage {
    cached("tiny", |w| {
        let manifest = w.image("amd64", &[("hello.txt", 1024)], 1)?;
        Ok((manifest, MANIFEST_V1))
    })
}

/// Four layers: 1 KiB, 64 KiB, 1 MiB + 17 B, 3 MiB.
pub fn multilayer() -> TestImage {
    cached("multilayer", |w| {
        let layers = [("a.bin", 1024), ("b.bin", 64 << 10), ("c.bin", (1 << 20) + 17), ("d.bin", 3 << 20)];
        let manifest = w.image("amd64", &layers, 2)?;
        Ok((manifest, MANIFEST_V1))
    })
}

/// An OCI index with linux/amd64 and linux/arm64 images (different layers each).
pub fn multiarch() -> TestImage {
    cached("multiarch", |w| {
        let amd64 = w.image("amd64", &[("arch.bin", 4096)], 3)?;
        let arm64 = w.image("arm64", &[("arch.bin", 5000)], 4)?;
        let index = w.index(&[(amd64, "amd64"), (arm64, "arm64")])?;
        Ok((index, INDEX_V1))
    })
}

/// EXPENSIVE: one layer holding a 256 MiB + 1 B file (the tar blob is 256 MiB + 2 KiB).
/// Written streaming (never held in memory); the first call in a fresh target dir takes
/// a few seconds and 256 MiB of disk, later calls reuse the cache.
pub fn large() -> TestImage {
    cached("large", |w| {
        let manifest = w.image("amd64", &[("large.bin", (256 << 20) + 1)], 5)?;
        Ok((manifest, MANIFEST_V1))
    })
}

/// Returns the cached layout `name`, building it first if absent.
fn cached<F>(name: &str, build: F) -> TestImage
where
    F: FnOnce(&mut LayoutWriter) -> io::Result<(Blob, &'static str)>,
{
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-images").join(CACHE_VERSION);
    let dir = root.join(name);
    if let Some(image) = load(&dir) {
        return image;
    }
    fs::create_dir_all(&root).expect("create test-images dir");
    let tmp =
        tempfile::Builder::new().prefix(&format!(".build-{name}-")).tempdir_in(&root).expect("temp dir");
    write_layout(tmp.path(), name, build).unwrap_or_else(|e| panic!("build image {name}: {e}"));
    // rename(2) of a directory is atomic; if another process got there first it fails
    // (ENOTEMPTY/EEXIST) and we use theirs. `tmp` is deleted either way.
    let _ = fs::rename(tmp.path(), &dir);
    load(&dir).unwrap_or_else(|| panic!("image {name} missing after build in {}", dir.display()))
}

fn load(dir: &Path) -> Option<TestImage> {
    let bytes = fs::read(dir.join(META_FILE)).ok()?;
    let mut image: TestImage = serde_json::from_slice(&bytes).ok()?;
    image.layout_dir = dir.to_path_buf();
    Some(image)
}

fn write_layout<F>(dir: &Path, name: &str, build: F) -> io::Result<()>
where
    F: FnOnce(&mut LayoutWriter) -> io::Result<(Blob, &'static str)>,
{
    let mut w = LayoutWriter::new(dir)?;
    let (top, media_type) = build(&mut w)?;
    w.write_index_json(&top, "v1")?;
    let total_size = w.blobs.iter().chain(&w.manifests).map(|b| b.size).sum::<u64>() + w.index_size;
    let image = TestImage {
        name: name.into(),
        layout_dir: dir.to_path_buf(),
        tag: "v1".into(),
        manifest_digest: top.digest.clone(),
        media_type: media_type.into(),
        manifests: w.manifests,
        blobs: w.blobs,
        total_size,
    };
    fs::write(dir.join(META_FILE), serde_json::to_vec_pretty(&image)?)
}

/// Writes blobs into an OCI layout and remembers what it wrote.
struct LayoutWriter {
    blob_dir: PathBuf,
    root: PathBuf,
    blobs: Vec<Blob>,
    manifests: Vec<Blob>,
    index_size: u64,
}

impl LayoutWriter {
    fn new(root: &Path) -> io::Result<Self> {
        let blob_dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&blob_dir)?;
        fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let (root, blobs, manifests) = (root.to_path_buf(), Vec::new(), Vec::new());
        Ok(Self { blob_dir, root, blobs, manifests, index_size: 0 })
    }

    /// Stores `bytes` as a blob.
    fn put(&mut self, media_type: &str, bytes: &[u8]) -> io::Result<Blob> {
        let digest = super::sha256_bytes(bytes);
        fs::write(self.blob_dir.join(&digest[7..]), bytes)?;
        Ok(Blob { media_type: media_type.into(), digest, size: bytes.len() as u64 })
    }

    /// Streams a one-file tar layer of `size` seeded-random bytes; returns its blob.
    fn layer(&mut self, file_name: &str, size: u64, rng: &mut StdRng) -> io::Result<Blob> {
        let tmp = self.blob_dir.join(format!(".layer-{file_name}"));
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, File::create(&tmp)?));
        write_tar(&mut out, file_name, size, rng)?;
        let (digest, written) = out.finish()?;
        fs::rename(&tmp, self.blob_dir.join(&digest[7..]))?;
        let blob = Blob { media_type: LAYER_TAR.into(), digest, size: written };
        self.remember(&blob);
        Ok(blob)
    }

    /// Lists a config or layer blob once.
    fn remember(&mut self, blob: &Blob) {
        if !self.blobs.contains(blob) {
            self.blobs.push(blob.clone());
        }
    }

    /// Layers + config + manifest for one linux/`arch` image; returns the manifest.
    fn image(&mut self, arch: &str, files: &[(&str, u64)], seed: u64) -> io::Result<Blob> {
        let mut rng = StdRng::seed_from_u64(seed);
        let layers =
            files.iter().map(|(n, s)| self.layer(n, *s, &mut rng)).collect::<io::Result<Vec<_>>>()?;
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/hello.txt"] },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>() },
        });
        let config = self.put(CONFIG_V1, &serde_json::to_vec(&config)?)?;
        self.remember(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_V1,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.put(MANIFEST_V1, &serde_json::to_vec(&manifest)?)?;
        self.manifests.push(manifest.clone());
        Ok(manifest)
    }

    /// An image index over `(manifest, arch)` pairs; returns the index blob.
    fn index(&mut self, images: &[(Blob, &str)]) -> io::Result<Blob> {
        let manifests: Vec<_> = images
            .iter()
            .map(|(m, arch)| {
                let mut d = descriptor(m);
                d["platform"] = json!({ "architecture": arch, "os": "linux" });
                d
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": INDEX_V1, "manifests": manifests });
        let index = self.put(INDEX_V1, &serde_json::to_vec(&index)?)?;
        self.index_size = index.size;
        Ok(index)
    }

    /// The layout's `index.json`, naming `top` by `tag`.
    fn write_index_json(&self, top: &Blob, tag: &str) -> io::Result<()> {
        let mut d = descriptor(top);
        d["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        let index = json!({ "schemaVersion": 2, "mediaType": INDEX_V1, "manifests": [d] });
        fs::write(self.root.join("index.json"), serde_json::to_vec(&index)?)
    }
}

fn descriptor(blob: &Blob) -> serde_json::Value {
    json!({ "mediaType": blob.media_type, "digest": blob.digest, "size": blob.size })
}

/// A ustar archive with one regular file: header, data, padding, two zero blocks.
fn write_tar(out: &mut impl Write, file_name: &str, size: u64, rng: &mut StdRng) -> io::Result<()> {
    out.write_all(&tar_header(file_name, size))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let padding = (512 - size % 512) % 512;
    out.write_all(&vec![0u8; padding as usize + 1024])
}

/// A 512-byte ustar header for a regular file, mode 0644, owner 0:0, mtime 0.
fn tar_header(file_name: &str, size: u64) -> [u8; 512] {
    assert!(file_name.len() < 100, "tar name too long: {file_name}");
    let mut h = [0u8; 512];
    h[..file_name.len()].copy_from_slice(file_name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    // The checksum is computed with its own field read as eight spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Writes through while hashing and counting.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), written: 0 }
    }

    /// Flushes; returns (`sha256:<hex>`, bytes written).
    fn finish(mut self) -> io::Result<(String, u64)> {
        self.inner.flush()?;
        Ok((format!("sha256:{}", hex::encode(self.hasher.finalize())), self.written))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
