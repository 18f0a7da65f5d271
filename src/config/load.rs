//! Loads the settings file and connector manifests into a [`Config`]: the public entry points.
//!
//! Every problem is collected into [`Diagnostics`] (file, location, message, hint);
//! nothing here stops at the first problem and nothing panics on any input, because
//! a hot reload runs this code inside the live proxy. The work is done by sibling
//! modules: `settings` validates the settings file, `files` lists manifest files,
//! `manifests` reads their documents, and `catalog` checks cross-references.

use std::path::{Path, PathBuf};

use super::catalog::Catalog;
use super::diagnostics::Diagnostics;
use super::files::manifest_files;
use super::manifests::read_manifest;
use super::model::{Config, Connector};
use super::settings::read_settings;

/// Loads the settings file and every connector manifest it names.
///
/// Relative paths in the settings file are resolved against the settings file's
/// directory. Returns every problem found, in settings and manifests alike.
pub fn load(settings_path: &Path) -> Result<Config, Diagnostics> {
    let mut diags = Diagnostics::new();
    let (connector_paths, settings) = read_settings(settings_path, &mut diags);
    // Connectors are read even when the settings have problems, to report everything at once.
    let connectors = load_connectors(&connector_paths).unwrap_or_else(|errors| {
        diags.extend(errors);
        Vec::new()
    });
    match settings {
        Some(settings) if diags.is_empty() => Ok(Config { settings, connectors }),
        _ => Err(diags),
    }
}

/// Loads connectors and their secrets from manifest files and directories.
///
/// A directory contributes every `*.yaml`, `*.yml` and `*.json` file directly in it,
/// in name order, skipping dotfiles (and so Kubernetes ConfigMap `..data` entries).
/// Connectors are returned sorted by id.
pub fn load_connectors(paths: &[PathBuf]) -> Result<Vec<Connector>, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut catalog = Catalog::default();
    for file in manifest_files(paths, &mut diags) {
        read_manifest(&file, &mut catalog, &mut diags);
    }
    let connectors = catalog.resolve(&mut diags);
    if diags.is_empty() {
        Ok(connectors)
    } else {
        Err(diags)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::model::ResolverKind;
    use crate::config::test_support::{connector, find, secret, write, AUTH_REF, CREDS};

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/oci-connector.yaml");
        let config = match load(&path) {
            Ok(c) => c,
            Err(d) => panic!("example config has problems:\n{d}"),
        };
        assert_eq!(config.settings.listen, SocketAddr::from(([127, 0, 0, 1], 5000)));
        assert_eq!(config.settings.public_url.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(config.settings.admin_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9090))));
        assert_eq!(config.settings.resolver, ResolverKind::Path);
        assert_eq!(config.settings.host_domain, "proxy.local");
        let ids: Vec<String> = config.connectors.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["default/dockerhub", "default/private"]);
        let hub = &config.connectors[0];
        assert!(hub.docker_hub && hub.credentials.is_none());
        assert_eq!(hub.upstream.base_url(), "https://registry-1.docker.io");
        assert_eq!(hub.health_repository.as_deref(), Some("library/alpine"));
        let private = &config.connectors[1];
        assert_eq!(private.secret_name.as_deref(), Some("private-registry-creds"));
        assert!(private.credentials.as_ref().is_some_and(|c| !c.password.is_empty()));
    }

    #[test]
    fn settings_and_connector_problems_come_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "connectors.yaml", connector("x", "ftp://x", "").as_bytes());
        let path = write(
            dir.path(),
            "s.yaml",
            b"listen: nope\nconnectors: {paths: [connectors.yaml, missing.yaml]}\n",
        );
        let d = load(&path).err().unwrap_or_default();
        find(&d, "listen", "invalid address");
        find(&d, "spec.address", "unsupported scheme");
        assert!(d.iter().any(|x| x.file.ends_with("missing.yaml")), "{d}");
    }

    #[test]
    fn several_problems_across_files_are_reported_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(
            dir.path(),
            "a.yaml",
            format!(
                "{}---\n{}",
                connector("x", "ftp://x", ""),
                connector("y", "https://r.example", "  bogus: 1\n")
            )
            .as_bytes(),
        );
        let b = write(dir.path(), "b.yaml", b"kind: [\n");
        let c = write(dir.path(), "c.yaml", connector("z", "https://r.example", AUTH_REF).as_bytes());
        let d = load_connectors(&[a, b, c, dir.path().join("nope.yaml")]).err().unwrap_or_default();
        assert_eq!(d.len(), 5, "{d}");
        let text = d.to_string();
        for needle in [
            "a.yaml: document 1 (Connector default/x), spec.address",
            "a.yaml: document 2 (Connector default/y), spec.bogus",
            "b.yaml: document 1",
            "c.yaml: document 1 (Connector default/z), spec.auth.secretRef.name",
            "nope.yaml: cannot read",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        assert_eq!(text.lines().count(), 5);
    }

    #[test]
    fn garbage_never_panics() {
        let deep_seq = "[".repeat(2_000);
        let deep_map = "a: ".repeat(10_000);
        let nested_status = format!(
            "{}status: {}{}\n",
            connector("x", "https://r.example", ""),
            "[".repeat(1_000),
            "]".repeat(1_000)
        );
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        let inputs: Vec<Vec<u8>> = vec![
            vec![0xff, 0xfe, 0x00, 0x01, 0x80],
            b"\x00\x01\x02binary".to_vec(),
            deep_seq.clone().into_bytes(),
            deep_map.into_bytes(),
            nested_status.into_bytes(),
            bomb.as_bytes().to_vec(),
            b"[]".to_vec(),
            b"null".to_vec(),
            b"{}".to_vec(),
            b"---\n---\n...\n".to_vec(),
            b"kind: Connector\nmetadata: 5\n".to_vec(),
            b"kind: Secret\nmetadata: {name: s}\ndata: {a: [1]}\nstringData: 5\n".to_vec(),
            b"kind: Connector\nspec: {auth: {params: 7}}\n".to_vec(),
            b"? [a]\n: b\n".to_vec(),
            b"\t\tkind: x\n".to_vec(),
            b"&a [*a]\n".to_vec(),
            b"kind: !!binary aGVsbG8=\n".to_vec(),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, input) in inputs.iter().enumerate() {
            for ext in ["yaml", "json"] {
                let file = write(dir.path(), &format!("g{i}.{ext}"), input);
                let _ = load_connectors(&[file]);
            }
            let settings = write(dir.path(), &format!("s{i}.yaml"), input);
            let _ = load(&settings);
        }
        // Pseudo-random byte soup.
        let mut state: u32 = 0x1234_5678;
        for round in 0..200 {
            let bytes: Vec<u8> = (0..(round * 7 % 300))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    b"{}[]:-,'\"&*!|>#\n ab?0\t\\"[(state as usize) % 23]
                })
                .collect();
            let file = write(dir.path(), "soup.yaml", &bytes);
            let _ = load_connectors(&[file]);
        }
    }

    #[test]
    fn a_thousand_connectors_load_quickly() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&connector(
                &format!("c{i}"),
                "https://r.example",
                &AUTH_REF.replace("creds", &format!("creds{i}")),
            ));
            text.push_str("---\n");
            text.push_str(&secret(&format!("creds{i}"), "cpaas.io/distribution-registry-token", CREDS));
            text.push_str("---\n");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "many.yaml", text.as_bytes());
        let start = std::time::Instant::now();
        let connectors = load_connectors(&[file]).unwrap_or_else(|d| panic!("{d}"));
        let elapsed = start.elapsed();
        assert_eq!(connectors.len(), 1000);
        // Generous for unoptimised test builds; release builds take a few milliseconds.
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}
