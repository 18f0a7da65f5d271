//! HTTPS registries: a registry with a private CA is trusted through the
//! connector's `caCertSecretRef`, and refused (clearly) without it.

mod common;
use common::fixture::{PASSWORD, USER};
use common::images;
use common::pki;
use common::proxy::{Proxy, Resolver};
use common::registry::{Registry, RegistryAuth, TlsFiles};
use common::skopeo::{self, CopyOpts, Creds};
use reqwest::StatusCode;

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
        y.push_str("---\n");
        y.push_str(&pki::ca_secret_yaml("team-a", "registry-ca", pem));
    }
    y
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_per_connector() {
    let pki = tempfile::tempdir().expect("temp dir");
    let files = pki::make(pki.path());
    let tls = TlsFiles { cert: files.cert, key: files.key };
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
    let ca = std::fs::read_to_string(&files.ca).expect("ca");
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
