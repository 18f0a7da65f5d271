//! Helpers shared by the configuration modules' unit tests.

use std::fs;
use std::path::{Path, PathBuf};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::load::load_connectors;
use super::model::Connector;

/// Writes a test file into `dir` and returns its path.
pub(super) fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write test file");
    path
}

/// Loads `text` as the only manifest file.
pub(super) fn load_text(text: &str) -> Result<Vec<Connector>, Diagnostics> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "connectors.yaml", text.as_bytes());
    load_connectors(&[file])
}

/// Loads `text`, which must have no problems.
pub(super) fn ok(text: &str) -> Vec<Connector> {
    match load_text(text) {
        Ok(connectors) => connectors,
        Err(d) => panic!("unexpected problems:\n{d}"),
    }
}

/// Loads `text`, which must have problems, and returns them.
pub(super) fn problems(text: &str) -> Diagnostics {
    match load_text(text) {
        Ok(c) => panic!("expected problems, loaded {c:?}"),
        Err(d) => d,
    }
}

/// The one diagnostic whose location contains `location`; asserts it mentions `message`.
pub(super) fn find<'a>(d: &'a Diagnostics, location: &str, message: &str) -> &'a Diagnostic {
    let found = d.iter().find(|x| x.location.contains(location) && x.message.contains(message));
    found.unwrap_or_else(|| panic!("no diagnostic at {location:?} saying {message:?} in:\n{d}"))
}

/// A Connector document; `extra_spec` lines are appended to its spec.
pub(super) fn connector(name: &str, address: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\nspec:\n  connectorClassName: oci\n  address: {address}\n{extra_spec}"
    )
}

/// A Secret document; `body` holds its `data` or `stringData`.
pub(super) fn secret(name: &str, secret_type: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: {secret_type}\n{body}")
}

/// Spec lines naming the secret `creds`.
pub(super) const AUTH_REF: &str = "  auth:\n    name: tokenAuth\n    secretRef:\n      name: creds\n";
/// Secret body with a username and password.
pub(super) const CREDS: &str = "stringData:\n  username: robot\n  password: s3cret\n";
