//! Cross-references between documents: duplicates, and each connector's secrets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::connector::PendingConnector;
use super::diagnostics::{Diagnostic, Diagnostics};
use super::location::Origin;
use super::model::{Connector, ConnectorId, Credentials};
use super::secrets::{read_ca, read_credentials, LoadedSecret, SecretKey};

/// Everything read from all manifest files, before cross-references are checked.
#[derive(Default)]
pub(super) struct Catalog {
    connectors: BTreeMap<ConnectorId, (PendingConnector, Origin)>,
    secrets: HashMap<SecretKey, (LoadedSecret, Origin)>,
    credentials: HashMap<SecretKey, Option<Credentials>>,
    cas: HashMap<SecretKey, Option<Arc<Vec<Vec<u8>>>>>,
}

impl Catalog {
    /// Adds a connector, or reports it as a duplicate of one already added.
    pub(super) fn add_connector(
        &mut self,
        pending: PendingConnector,
        origin: Origin,
        diags: &mut Diagnostics,
    ) {
        let id = pending.connector.id.clone();
        if let Some((_, first)) = self.connectors.get(&id) {
            diags.push(
                origin.diag("metadata.name", format!("connector {id} is defined twice")).with_hint(format!(
                    "first defined in {}, {}",
                    first.file.display(),
                    first.prefix()
                )),
            );
            return;
        }
        self.connectors.insert(id, (pending, origin));
    }

    /// Adds a secret, or reports it as a duplicate of one already added.
    pub(super) fn add_secret(
        &mut self,
        key: SecretKey,
        secret: LoadedSecret,
        origin: Origin,
        diags: &mut Diagnostics,
    ) {
        if let Some((_, first)) = self.secrets.get(&key) {
            diags.push(
                origin
                    .diag("metadata.name", format!("secret {}/{} is defined twice", key.0, key.1))
                    .with_hint(format!("first defined in {}, {}", first.file.display(), first.prefix())),
            );
            return;
        }
        self.secrets.insert(key, (secret, origin));
    }

    /// Looks up every connector's secrets and returns the connectors sorted by id.
    pub(super) fn resolve(mut self, diags: &mut Diagnostics) -> Vec<Connector> {
        let connectors = std::mem::take(&mut self.connectors);
        let mut out = Vec::with_capacity(connectors.len());
        for (_, (pending, origin)) in connectors {
            let mut connector = pending.connector;
            if let Some(key) = pending.secret_ref {
                connector.credentials = self.credentials_for(&key, &origin, diags);
            }
            if let Some(key) = pending.ca_ref {
                connector.ca_certs = self.ca_for(&key, &origin, diags);
            }
            out.push(connector);
        }
        out
    }

    /// A connector names a secret that no document defines.
    fn missing_secret(&self, key: &SecretKey, origin: &Origin, path: &str) -> Diagnostic {
        let (namespace, name) = key;
        let elsewhere: Vec<&str> =
            self.secrets.keys().filter(|(_, n)| n == name).map(|(ns, _)| ns.as_str()).collect();
        let hint = if elsewhere.is_empty() {
            format!("add a Secret with `metadata.name: {name}` and `metadata.namespace: {namespace}`")
        } else {
            format!("secrets are looked up in the connector's namespace {namespace}; one named {name} exists in namespace {}", elsewhere.join(", "))
        };
        origin.diag(path, format!("secret {name} not found in namespace {namespace}")).with_hint(hint)
    }

    /// The credentials in secret `key`, read (and problems reported) once per secret.
    fn credentials_for(
        &mut self,
        key: &SecretKey,
        origin: &Origin,
        diags: &mut Diagnostics,
    ) -> Option<Credentials> {
        if let Some(done) = self.credentials.get(key) {
            return done.clone();
        }
        let Some((secret, secret_origin)) = self.secrets.get(key) else {
            diags.push(self.missing_secret(key, origin, "spec.auth.secretRef.name"));
            return None;
        };
        let credentials = read_credentials(secret, secret_origin, diags);
        self.credentials.insert(key.clone(), credentials.clone());
        credentials
    }

    /// The CA bundle in secret `key`, read (and problems reported) once per secret.
    fn ca_for(
        &mut self,
        key: &SecretKey,
        origin: &Origin,
        diags: &mut Diagnostics,
    ) -> Option<Arc<Vec<Vec<u8>>>> {
        if let Some(done) = self.cas.get(key) {
            return done.clone();
        }
        let Some((secret, secret_origin)) = self.secrets.get(key) else {
            diags.push(self.missing_secret(key, origin, "spec.caCertSecretRef.name"));
            return None;
        };
        let ca = read_ca(secret, secret_origin, diags);
        self.cas.insert(key.clone(), ca.clone());
        ca
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::load_connectors;
    use crate::config::test_support::{connector, find, ok, problems, secret, write, AUTH_REF, CREDS};

    #[test]
    fn secret_reference_problems() {
        // Missing secret; the hint names the namespace.
        let d = problems(&connector("x", "https://r.example", AUTH_REF));
        let problem = find(&d, "spec.auth.secretRef.name", "secret creds not found in namespace default");
        assert!(problem.hint.as_deref().is_some_and(|h| h.contains("metadata.namespace: default")));
        // Present in another namespace only.
        let other = secret("creds", "kubernetes.io/basic-auth", CREDS)
            .replace("name: creds", "name: creds\n  namespace: other");
        let d = problems(&format!("{}---\n{other}", connector("x", "https://r.example", AUTH_REF)));
        assert!(find(&d, "secretRef", "not found")
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("namespace other")));
        // ...which secretRef.namespace can name.
        let auth = "  auth:\n    secretRef: {name: creds, namespace: other}\n";
        assert!(ok(&format!("{}---\n{other}", connector("x", "https://r.example", auth)))[0]
            .credentials
            .is_some());
        // Wrong type, missing key, empty and newline values: reported at the secret.
        let d = problems(&format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "Opaque", "stringData: {username: a}\n")
        ));
        find(&d, "document 2 (Secret default/creds), type", "cannot hold registry credentials");
        let missing = find(&d, "Secret default/creds", "no `password` key");
        assert!(missing.hint.as_deref().is_some_and(|h| h.contains("password")));
        let body = "stringData:\n  username: ''\n  password: \"pw\\n\"\n";
        let d = problems(&format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        ));
        find(&d, "data.username", "empty");
        find(&d, "data.password", "line break");
        let d = problems(&connector("x", "https://r.example", "  auth:\n    secretRef: {}\n"));
        find(&d, "spec.auth.secretRef.name", "missing");
    }

    #[test]
    fn shared_secret_problems_are_reported_once() {
        let text = format!(
            "{}---\n{}---\n{}",
            connector("a", "https://r.example", AUTH_REF),
            connector("b", "https://r.example", AUTH_REF),
            secret("creds", "Opaque", CREDS)
        );
        assert_eq!(problems(&text).len(), 1);
        let text = format!(
            "{}---\n{}---\n{}",
            connector("a", "https://r.example", AUTH_REF),
            connector("b", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", CREDS)
        );
        assert!(ok(&text).iter().all(|c| c.credentials.is_some()));
    }

    #[test]
    fn duplicates_name_both_places() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(
            dir.path(),
            "a.yaml",
            format!("{}---\n{}", connector("x", "https://r.example", ""), secret("s", "Opaque", ""))
                .as_bytes(),
        );
        let b = write(
            dir.path(),
            "b.yaml",
            format!("{}---\n{}", secret("s", "Opaque", ""), connector("x", "https://other.example", ""))
                .as_bytes(),
        );
        let d = load_connectors(&[a, b]).err().unwrap_or_default();
        assert_eq!(d.len(), 2, "{d}");
        let dup = find(
            &d,
            "document 2 (Connector default/x), metadata.name",
            "connector default/x is defined twice",
        );
        assert!(dup.file.ends_with("b.yaml"));
        assert!(dup.hint.as_deref().is_some_and(|h| h.contains("a.yaml, document 1")));
        let dup = find(&d, "document 1 (Secret default/s)", "secret default/s is defined twice");
        assert!(dup.hint.as_deref().is_some_and(|h| h.contains("a.yaml, document 2")));
        // The same name in another namespace is a different connector.
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", ""),
            connector("x", "https://r.example", "").replace("name: x", "name: x\n  namespace: b")
        );
        assert_eq!(ok(&text).len(), 2);
    }

    #[test]
    fn connectors_are_sorted_by_id() {
        let text = ["zeta", "alpha", "mid"]
            .iter()
            .map(|n| connector(n, "https://r.example", ""))
            .collect::<Vec<_>>()
            .join("---\n");
        let text = format!(
            "{text}---\n{}",
            connector("zeta", "https://r.example", "").replace("name: zeta", "name: zeta\n  namespace: aaa")
        );
        let ids: Vec<String> = ok(&text).iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["aaa/zeta", "default/alpha", "default/mid", "default/zeta"]);
    }
}
