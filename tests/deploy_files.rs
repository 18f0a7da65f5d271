//! The shipped deployment files are valid: every YAML in `deploy/kubernetes/`
//! parses, the Kubernetes objects are well formed, the configuration inside the
//! ConfigMap and Secret loads, and so does the example in `conf/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_connector::config;
use serde::Deserialize;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every YAML file in `deploy/kubernetes/`, by file name.
fn deploy_documents() -> BTreeMap<String, Vec<Value>> {
    let dir = root().join("deploy/kubernetes");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        let path = entry.expect("entry").path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .filter(|v| !v.is_null())
            .collect();
        assert!(!docs.is_empty(), "{} is empty", path.display());
        out.insert(path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(), docs);
    }
    out
}

fn find<'a>(all: &'a BTreeMap<String, Vec<Value>>, kind: &str, name: &str) -> &'a Value {
    all.values()
        .flatten()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn every_kubernetes_file_parses_into_well_formed_objects() {
    let all = deploy_documents();
    for name in
        ["deployment.yaml", "service.yaml", "configmap.yaml", "secret.yaml", "pdb.yaml", "kustomization.yaml"]
    {
        assert!(all.contains_key(name), "missing {name}");
    }
    for (file, docs) in &all {
        for d in docs {
            assert!(d["apiVersion"].is_string() && d["kind"].is_string(), "{file}: {d:?}");
            if d["kind"] != "Kustomization" {
                assert!(d["metadata"]["name"].is_string(), "{file}: no metadata.name");
            }
        }
    }
    let listed: Vec<&str> = all["kustomization.yaml"][0]["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for file in all.keys().filter(|f| *f != "kustomization.yaml") {
        assert!(listed.contains(&file.as_str()), "kustomization.yaml does not list {file}");
    }

    let dep = find(&all, "Deployment", "oci-connector");
    let spec = &dep["spec"]["template"]["spec"];
    assert!(dep["spec"]["replicas"].as_u64().unwrap_or(0) >= 2);
    assert_eq!(spec["terminationGracePeriodSeconds"].as_u64(), Some(30));
    assert_eq!(spec["securityContext"]["runAsNonRoot"], Value::Bool(true));
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"].is_mapping() && c["resources"]["limits"].is_mapping());
    let selector = &dep["spec"]["selector"]["matchLabels"];
    assert_eq!(&find(&all, "Service", "oci-connector")["spec"]["selector"], selector);
    assert_eq!(
        &find(&all, "PodDisruptionBudget", "oci-connector")["spec"]["selector"]["matchLabels"],
        selector
    );
    // Every volume's ConfigMap or Secret is shipped, except the client-token key,
    // which operators create (a key in a public file would be everyone's key).
    for v in spec["volumes"].as_sequence().expect("volumes") {
        if let Some(cm) = v["configMap"]["name"].as_str() {
            find(&all, "ConfigMap", cm);
        }
        if let Some(s) = v["secret"]["secretName"].as_str() {
            if s != "oci-connector-client-keys" {
                find(&all, "Secret", s);
            }
        }
    }
}

/// Writes the ConfigMap and Secret contents where the Deployment mounts them
/// (under a temp dir instead of /etc/oci-connector) and loads them.
#[test]
fn the_configuration_in_the_manifests_loads() {
    let all = deploy_documents();
    let dir = tempfile::tempdir().expect("temp dir");
    let mount = |sub: &str| {
        let p = dir.path().join(sub);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    };
    let data = |kind: &str, name: &str, field: &str, key: &str| -> String {
        find(&all, kind, name)[field][key]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} {name} {field}.{key}"))
            .to_string()
    };
    let etc = dir.path().display().to_string();
    let settings = data("ConfigMap", "oci-connector-settings", "data", "oci-connector.yaml")
        .replace("/etc/oci-connector", &etc);
    std::fs::write(dir.path().join("oci-connector.yaml"), settings).expect("write");
    std::fs::write(
        mount("connectors").join("connectors.yaml"),
        data("ConfigMap", "oci-connector-connectors", "data", "connectors.yaml"),
    )
    .expect("write");
    std::fs::write(
        mount("credentials").join("credentials.yaml"),
        data("Secret", "oci-connector-credentials", "stringData", "credentials.yaml"),
    )
    .expect("write");
    let cfg = config::load(&dir.path().join("oci-connector.yaml")).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.connectors.len(), 2);
    assert!(cfg.connectors.iter().any(|c| c.credentials.is_some()), "the Secret's credentials resolved");
    assert_eq!(cfg.settings.admin_listen.map(|a| a.port()), Some(9090));
    assert_eq!(cfg.settings.listen.port(), 5000);
    // A non-loopback listener must not be an open proxy.
    assert_eq!(cfg.settings.client_auth.mode, config::ClientAuthMode::Token);
}

#[test]
fn the_shipped_example_configuration_loads() {
    let path: &Path = &root().join("conf/oci-connector.yaml");
    let cfg = config::load(path).unwrap_or_else(|d| panic!("{d}"));
    assert!(!cfg.connectors.is_empty());
    assert!(cfg.settings.admin_listen.is_some(), "the example enables the admin API");
}

#[test]
fn the_dockerfile_builds_a_non_root_image_with_the_example() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(text.contains("FROM rust:1.95-bookworm AS build"));
    assert!(text.contains("FROM debian:bookworm-slim"));
    assert!(text.contains("USER 10001"));
    assert!(text.contains("COPY conf/ /etc/oci-connector/"));
    assert!(text.contains("EXPOSE 5000 9090"));
}
