//! Golden files for every renderer under both resolvers, compared byte for byte.
//!
//! The files live in `tests/golden/<kind>-<resolver>/<relative path>`. After an
//! intended change to a renderer, re-bless them and review the diff:
//!
//! ```text
//! BLESS=1 cargo test --lib clientconfig::golden_tests
//! git diff tests/golden
//! ```
//!
//! Fixtures: the path resolver uses a plain-HTTP public URL on port 5000 and a
//! pull+push token; the host resolver uses HTTPS on the default port and a
//! pull-only token, so both transport and both capability variants are covered.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use url::Url;

use super::{render, ClientConfigKind, RenderInput};
use crate::config::model::{
    ClientAuthMode, ClientAuthSettings, Connector, ConnectorId, Credentials, RedirectPolicy, ResolverKind,
    Scheme, Settings, Upstream, UpstreamSettings,
};
use crate::secret::Secret;

/// A fixed token: golden files must not change from run to run.
const TOKEN: &str = "ocit1.0badc0de.eyJzdWIiOiJjaS1qb2IifQ.c2lnbmF0dXJlLW5vdC1jaGVja2Vk";
const SUBJECT: &str = "ci-job";

pub(super) fn settings(resolver: ResolverKind, public_url: &str) -> Settings {
    Settings {
        listen: "127.0.0.1:5000".parse().unwrap(),
        public_url: Url::parse(public_url).unwrap(),
        admin_listen: None,
        connector_paths: Vec::new(),
        resolver,
        host_domain: "connectors.example.com".to_string(),
        client_auth: ClientAuthSettings {
            mode: ClientAuthMode::Token,
            key_files: vec![PathBuf::from("proxy.key")],
        },
        allow_anonymous_clients: false,
        upstream: UpstreamSettings::default(),
        threads: 1,
    }
}

/// An anonymous Docker Hub connector and a private registry on port 8443.
pub(super) fn connectors() -> [Connector; 2] {
    let hub = Connector {
        id: ConnectorId::new("team", "hub"),
        address: "https://index.docker.io".to_string(),
        upstream: Upstream { scheme: Scheme::Https, host: "registry-1.docker.io".to_string(), port: 443 },
        docker_hub: true,
        credentials: None,
        secret_name: None,
        ca_certs: None,
        health_repository: Some("library/alpine".to_string()),
        redirects: RedirectPolicy::Follow,
        description: None,
    };
    let private = Connector {
        id: ConnectorId::new("team", "private"),
        address: "https://registry.example.com:8443".to_string(),
        upstream: Upstream { scheme: Scheme::Https, host: "registry.example.com".to_string(), port: 8443 },
        docker_hub: false,
        credentials: Some(Credentials {
            username: "robot".to_string(),
            password: Secret::new("registry-password"),
        }),
        secret_name: Some("registry-secret".to_string()),
        ca_certs: None,
        health_repository: None,
        redirects: RedirectPolicy::Follow,
        description: Some("private registry".to_string()),
    };
    [hub, private]
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
fn golden_files() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let [hub, private] = connectors();
    let cases = [
        ("path", settings(ResolverKind::Path, "http://proxy.example.com:5000"), true),
        ("host", settings(ResolverKind::Host, "https://proxy.example.com"), false),
    ];
    let mut failures = Vec::new();
    for (resolver, settings, push) in &cases {
        let input = RenderInput {
            settings,
            connectors: vec![&hub, &private],
            subject: SUBJECT.to_string(),
            token: Some(Secret::new(TOKEN)),
            push: *push,
        };
        for kind in ClientConfigKind::ALL {
            let dir = root.join(format!("{kind}-{resolver}"));
            let rendered = render(kind, &input).unwrap();
            if bless {
                let _ = std::fs::remove_dir_all(&dir);
                for (rel, text) in &rendered.files {
                    let path = dir.join(rel);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, text).unwrap();
                }
                continue;
            }
            let expected: BTreeSet<PathBuf> = rendered.files.iter().map(|(p, _)| p.clone()).collect();
            let present = files_under(&dir);
            if expected != present {
                failures.push(format!("{}: files {present:?}, rendered {expected:?}", dir.display()));
            }
            for (rel, text) in &rendered.files {
                let path = dir.join(rel);
                match std::fs::read_to_string(&path) {
                    Ok(golden) if golden == *text => {}
                    Ok(golden) => failures.push(format!(
                        "{} differs\n--- golden\n{golden}--- rendered\n{text}",
                        path.display()
                    )),
                    Err(e) => failures.push(format!("{}: {e}", path.display())),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: BLESS=1 cargo test --lib clientconfig::golden_tests",
        failures.join("\n\n")
    );
}

#[test]
fn dockerd_host_resolver_over_http_marks_every_host_insecure() {
    let settings = settings(ResolverKind::Host, "http://proxy.example.com:5000");
    let [hub, private] = connectors();
    let input = RenderInput {
        settings: &settings,
        connectors: vec![&hub, &private],
        subject: SUBJECT.into(),
        token: None,
        push: false,
    };
    let text = &render(ClientConfigKind::Dockerd, &input).unwrap().files[0].1;
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "insecure-registries": [
                "c-hub.team.connectors.example.com:5000",
                "c-private.team.connectors.example.com:5000"
            ],
            "registry-mirrors": ["http://c-hub.team.connectors.example.com:5000"]
        })
    );
}

#[test]
fn containerd_without_token_has_no_header() {
    let settings = settings(ResolverKind::Path, "http://proxy.example.com:5000");
    let [hub, _] = connectors();
    let input = RenderInput {
        settings: &settings,
        connectors: vec![&hub],
        subject: SUBJECT.into(),
        token: None,
        push: false,
    };
    let text = &render(ClientConfigKind::Containerd, &input).unwrap().files[0].1;
    assert!(!text.contains("Authorization") && !text.contains("push"), "{text}");
    let _: toml::Table = toml::from_str(text).unwrap();
}

#[test]
fn rendered_files_parse_and_carry_the_token() {
    // Guards the golden files themselves: each is valid JSON/TOML and, where the
    // format carries credentials, decodes to the subject and token.
    let settings = settings(ResolverKind::Path, "http://proxy.example.com:5000");
    let [hub, private] = connectors();
    let input = RenderInput {
        settings: &settings,
        connectors: vec![&hub, &private],
        subject: SUBJECT.into(),
        token: Some(Secret::new(TOKEN)),
        push: true,
    };
    for kind in ClientConfigKind::ALL {
        for (_, text) in render(kind, &input).unwrap().files {
            match kind.content_type() {
                "application/json" => drop(serde_json::from_str::<serde_json::Value>(&text).unwrap()),
                _ => drop(toml::from_str::<toml::Table>(&text).unwrap()),
            }
        }
    }
    let text = &render(ClientConfigKind::RegistryConfig, &input).unwrap().files[0].1;
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let auth = json["auths"]["proxy.example.com:5000"]["auth"].as_str().unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), format!("{SUBJECT}:{TOKEN}"));
}
