//! HTTPS registries: a registry with a private CA is trusted through the
//! connector's `caCertSecretRef`, and refused (clearly) without it.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture::{PASSWORD, USER};
use common::images;
use common::proxy::{Proxy, Resolver};
use common::registry::{Registry, RegistryAuth, TlsFiles};
use common::skopeo::{self, CopyOpts, Creds};
use reqwest::StatusCode;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_pki(dir: &Path) -> TlsFiles {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
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
    TlsFiles { cert: dir.join("server.crt"), key: dir.join("server.key") }
}

fn connector(registry: &Registry, ca_pem: Option<&str>) -> String {
    let mut y = format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: reg\n  namespace: team-a\n\
         spec:\n  connectorClassName: oci\n  address: {}\n  auth:\n    name: tokenAuth\n    secretRef:\n      name: creds\n",
        registry.url()
    );
    if ca_pem.is_some() {
        y.push_str("  caCertSecretRef:\n    name: registry-ca\n");
    }
    y.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: team-a\n\
         type: kubernetes.io/basic-auth\nstringData:\n  username: {USER}\n  password: {PASSWORD}\n"
    ));
    if let Some(pem) = ca_pem {
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-ca\n  namespace: team-a\ntype: Opaque\n\
             stringData:\n  ca.crt: |\n{indented}"
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_per_connector() {
    let pki = tempfile::tempdir().expect("temp dir");
    let tls = make_pki(pki.path());
    let auth = RegistryAuth::Htpasswd { user: USER.into(), password: PASSWORD.into() };
    let registry = tokio::task::spawn_blocking(move || Registry::start_with_tls(auth, Some(tls)))
        .await
        .expect("registry");
    assert!(registry.url().starts_with("https://"));
    let image = images::tiny();
    let creds = Creds::new(USER, PASSWORD);
    skopeo::push_layout(&image, &registry.docker_ref("tiny", "v1"), Some(&creds))
        .await
        .expect("seed over https");

    // With the CA: pulls work, TLS verified against the connector's CA only.
    let ca = std::fs::read_to_string(pki.path().join("ca.crt")).expect("ca");
    let proxy = Proxy::start(Resolver::Path, &connector(&registry, Some(&ca)), "").await;
    let layout = tempfile::tempdir().expect("temp dir");
    let digest = skopeo::copy(
        &format!("docker://{}/tiny:v1", proxy.image_prefix("team-a", "reg")),
        &format!("oci:{}:v1", layout.path().display()),
        &CopyOpts::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    assert_eq!(digest, image.manifest_digest);

    // Without it: a 502 that names the connector and says why.
    let untrusted = Proxy::start(Resolver::Path, &connector(&registry, None), "").await;
    let r = reqwest::get(format!("{}/tiny/manifests/v1", untrusted.api_base("team-a", "reg")))
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = r.json().await.expect("json");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("team-a/reg"), "{message}");
    assert!(
        message.to_lowercase().contains("certificate") || message.to_lowercase().contains("tls"),
        "{message}"
    );
}
