//! Reads manifest files: multi-document YAML or JSON, each a Connector or a Secret.

use std::path::Path;

use serde::Deserialize;

use super::catalog::Catalog;
use super::connector::validate_connector;
use super::diagnostics::{suggest, Diagnostic, Diagnostics};
use super::files::{is_json, read_text};
use super::location::{Origin, SerdeProblem};
use super::model::ConnectorId;
use super::names::{validate_dns_label, validate_dns_subdomain};
use super::raw::{RawConnectorSpec, RawDocument};
use super::secrets::validate_secret;

const CONNECTOR_API_VERSION: &str = "connectors.alauda.io/v1alpha1";
const SECRET_API_VERSION: &str = "v1";
const KINDS: [&str; 2] = ["Connector", "Secret"];
/// The namespace of a document without `metadata.namespace`, as in Kubernetes.
const DEFAULT_NAMESPACE: &str = "default";

/// What a first, untyped pass learned about a document.
enum Shape {
    Empty,
    Mapping { kind: Option<String>, label: String },
    Other(&'static str),
}

fn document_label(kind: Option<&str>, namespace: Option<&str>, name: Option<&str>) -> String {
    let kind = kind.unwrap_or("");
    match name {
        Some(name) => format!("{kind} {}/{name}", namespace.unwrap_or(DEFAULT_NAMESPACE)).trim().to_string(),
        None => kind.to_string(),
    }
}

fn yaml_shape(value: &serde_yaml::Value) -> Shape {
    use serde_yaml::Value;
    match value {
        Value::Null => Shape::Empty,
        Value::Mapping(_) => {
            let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let kind = text(value.get("kind"));
            let meta = value.get("metadata");
            let label = document_label(
                kind.as_deref(),
                text(meta.and_then(|m| m.get("namespace"))).as_deref(),
                text(meta.and_then(|m| m.get("name"))).as_deref(),
            );
            Shape::Mapping { kind, label }
        }
        Value::Sequence(_) => Shape::Other("a sequence"),
        Value::String(_) => Shape::Other("a string"),
        Value::Number(_) => Shape::Other("a number"),
        Value::Bool(_) => Shape::Other("a boolean"),
        Value::Tagged(_) => Shape::Other("a tagged value"),
    }
}

fn json_shape(value: &serde_json::Value) -> Shape {
    use serde_json::Value;
    match value {
        Value::Null => Shape::Empty,
        Value::Object(map) => {
            let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let kind = text(map.get("kind"));
            let meta = map.get("metadata");
            let label = document_label(
                kind.as_deref(),
                text(meta.and_then(|m| m.get("namespace"))).as_deref(),
                text(meta.and_then(|m| m.get("name"))).as_deref(),
            );
            Shape::Mapping { kind, label }
        }
        Value::Array(_) => Shape::Other("an array"),
        Value::String(_) => Shape::Other("a string"),
        Value::Number(_) => Shape::Other("a number"),
        Value::Bool(_) => Shape::Other("a boolean"),
    }
}

/// Reads one manifest file into the catalog.
///
/// Two passes: an untyped one finds syntax errors, empty documents and each
/// document's kind and name (for labels even when the typed pass fails); the typed
/// one reads the documents that parsed, with serde's paths and line numbers.
pub(super) fn read_manifest(file: &Path, catalog: &mut Catalog, diags: &mut Diagnostics) {
    let Some(text) = read_text(file, diags) else { return };
    let mut shapes = Vec::new();
    let mut typed: Vec<Result<Option<RawDocument>, SerdeProblem>> = Vec::new();
    if is_json(file) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text.as_str());
        for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
            match value {
                Ok(value) => shapes.push(json_shape(&value)),
                Err(e) => {
                    syntax_error(file, shapes.len() + 1, SerdeProblem::from_json(&e), diags);
                    break;
                }
            }
        }
        let documents = serde_json::Deserializer::from_str(text).into_iter::<Option<RawDocument>>();
        typed.extend(documents.take(shapes.len()).map(|d| d.map_err(|e| SerdeProblem::from_json(&e))));
    } else {
        for document in serde_yaml::Deserializer::from_str(&text) {
            match serde_yaml::Value::deserialize(document) {
                Ok(value) => shapes.push(yaml_shape(&value)),
                Err(e) => {
                    // The stream is broken here; serde_yaml would repeat this error forever.
                    syntax_error(file, shapes.len() + 1, SerdeProblem::from_yaml(&e), diags);
                    break;
                }
            }
        }
        let documents = serde_yaml::Deserializer::from_str(&text).take(shapes.len());
        typed.extend(
            documents.map(|d| Option::<RawDocument>::deserialize(d).map_err(|e| SerdeProblem::from_yaml(&e))),
        );
    }

    for (i, (shape, result)) in shapes.into_iter().zip(typed).enumerate() {
        let document = i + 1;
        match shape {
            Shape::Empty => {}
            Shape::Other(what) => diags.push(
                Origin { file: file.to_path_buf(), document, label: String::new() }
                    .diag("", format!("expected a mapping (a Connector or a Secret), found {what}"))
                    .with_hint("each document needs apiVersion, kind, metadata"),
            ),
            Shape::Mapping { kind, label } => {
                let origin = Origin { file: file.to_path_buf(), document, label };
                match result {
                    Ok(Some(raw)) => validate_document(raw, origin, catalog, diags),
                    Ok(None) => {}
                    Err(problem) => {
                        // An unsupported kind explains the serde error better than serde does.
                        if !kind.as_deref().is_some_and(|k| KINDS.contains(&k)) {
                            diags.push(kind_problem(&origin, kind.as_deref()));
                        } else {
                            diags.push(
                                Diagnostic::new(file, problem.location(&origin.prefix()), problem.message)
                                    .with_optional_hint(problem.hint),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn syntax_error(file: &Path, document: usize, problem: SerdeProblem, diags: &mut Diagnostics) {
    let prefix = format!("document {document}");
    diags.push(
        Diagnostic::new(file, problem.location(&prefix), format!("cannot parse: {}", problem.message))
            .with_hint("documents after this one were not read; fix the syntax first"),
    );
}

fn kind_problem(origin: &Origin, kind: Option<&str>) -> Diagnostic {
    match kind {
        None => origin.diag("kind", "`kind` is missing").with_hint(format!(
            "use `kind: Connector` (apiVersion {CONNECTOR_API_VERSION}) or `kind: Secret` (apiVersion v1)"
        )),
        Some(kind) => origin.diag("kind", format!("unsupported kind {kind:?}")).with_hint(format!(
            "{}; only Connector ({CONNECTOR_API_VERSION}) and Secret (v1) documents are read",
            suggest(kind, &KINDS)
        )),
    }
}

fn validate_document(raw: RawDocument, origin: Origin, catalog: &mut Catalog, diags: &mut Diagnostics) {
    let (expected_api, foreign): (&str, Vec<(&str, bool)>) = match raw.kind.as_deref() {
        Some("Connector") => (
            CONNECTOR_API_VERSION,
            vec![
                ("type", raw.secret_type.is_some()),
                ("data", raw.data.is_some()),
                ("stringData", raw.string_data.is_some()),
                ("immutable", raw.immutable.is_some()),
            ],
        ),
        Some("Secret") => {
            (SECRET_API_VERSION, vec![("spec", raw.spec.is_some()), ("status", raw.status.is_some())])
        }
        other => {
            diags.push(kind_problem(&origin, other));
            return;
        }
    };
    let kind = raw.kind.as_deref().unwrap_or("");
    match raw.api_version.as_deref() {
        Some(v) if v == expected_api => {}
        Some(v) => diags.push(
            origin
                .diag("apiVersion", format!("apiVersion {v:?} is not supported for a {kind}"))
                .with_hint(format!("use `apiVersion: {expected_api}`")),
        ),
        None => diags.push(
            origin
                .diag("apiVersion", "`apiVersion` is missing")
                .with_hint(format!("add `apiVersion: {expected_api}`")),
        ),
    }
    for (field, present) in foreign {
        if present {
            diags.push(
                origin.diag(field, format!("`{field}` is not a field of a {kind}")).with_hint("remove it"),
            );
        }
    }

    let meta = raw.metadata.unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    if let Err(why) = validate_dns_label(&namespace) {
        diags.push(origin.diag("metadata.namespace", format!("invalid namespace {namespace:?}: {why}")));
    }
    let name = match meta.name.clone() {
        Some(name) => {
            let checked =
                if kind == "Connector" { validate_dns_label(&name) } else { validate_dns_subdomain(&name) };
            if let Err(why) = checked {
                let mut d = origin.diag("metadata.name", format!("invalid name {name:?}: {why}"));
                if kind == "Connector" {
                    d = d.with_hint("connector names appear in request paths and host names");
                }
                diags.push(d);
            }
            name
        }
        None => {
            diags.push(
                origin
                    .diag("metadata.name", "`metadata.name` is missing")
                    .with_hint("every object needs a name"),
            );
            return;
        }
    };
    let annotations = meta.annotations.unwrap_or_default();

    if kind == "Connector" {
        let spec = raw.spec.unwrap_or_else(|| {
            diags.push(
                origin
                    .diag("spec", "`spec` is missing")
                    .with_hint("a Connector needs `spec.connectorClassName: oci` and `spec.address`"),
            );
            RawConnectorSpec::default()
        });
        let id = ConnectorId::new(namespace, name);
        let pending = validate_connector(id, spec, &annotations, &origin, diags);
        catalog.add_connector(pending, origin, diags);
    } else {
        let secret = validate_secret(raw.secret_type, raw.data, raw.string_data, &origin, diags);
        catalog.add_secret((namespace, name), secret, origin, diags);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::load_connectors;
    use crate::config::test_support::{connector, find, ok, problems, secret, write};

    #[test]
    fn metadata_is_checked() {
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {namespace: a}\nspec: {connectorClassName: oci, address: 'https://r.example'}\n");
        find(&d, "document 1 (Connector), metadata.name", "missing");
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: My.Reg, namespace: Team_A}\nspec: {connectorClassName: oci, address: 'https://r.example'}\n");
        find(&d, "metadata.name", "invalid name");
        find(&d, "metadata.namespace", "invalid namespace");
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x, nmaespace: a}\nspec: {connectorClassName: oci, address: 'https://r.example'}\n");
        assert_eq!(
            find(&d, "metadata.nmaespace", "unknown field").hint.as_deref(),
            Some("did you mean `namespace`?")
        );
    }

    #[test]
    fn kinds_and_api_versions() {
        let d = problems("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n");
        find(&d, "document 1 (ConfigMap default/x), kind", "unsupported kind");
        let d = problems("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1}\n");
        assert_eq!(d.len(), 1, "{d}");
        find(&d, "kind", "unsupported kind \"Deployment\"");
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Conector\nmetadata: {name: x}\n");
        assert!(find(&d, "kind", "unsupported")
            .hint
            .as_deref()
            .is_some_and(|h| h.starts_with("did you mean `Connector`?")));
        let d = problems("metadata: {name: x}\n");
        find(&d, "kind", "missing");
        let d = problems(
            &connector("x", "https://r.example", "")
                .replace("connectors.alauda.io/v1alpha1", "connectors.alauda.io/v1"),
        );
        find(&d, "apiVersion", "not supported");
        let d = problems(&secret("s", "Opaque", "spec: {address: x}\n").replace("apiVersion: v1\n", ""));
        find(&d, "apiVersion", "missing");
        find(&d, "spec", "not a field of a Secret");
        let d = problems(&connector("x", "https://r.example", "data: {a: b}\n"));
        find(&d, "data", "not a field of a Connector");
    }

    #[test]
    fn non_mapping_and_empty_documents() {
        assert!(ok("").is_empty());
        assert!(ok("# only a comment\n---\n---\nnull\n---\n~\n").is_empty());
        let d = problems("[]\n---\nhello\n---\n42\n---\n- a\n");
        for (i, what) in [(1, "a sequence"), (2, "a string"), (3, "a number"), (4, "a sequence")] {
            find(&d, &format!("document {i}"), what);
        }
        assert_eq!(d.len(), 4);
        let d = problems("!tagged {a: 1}\n");
        find(&d, "document 1", "tagged");
    }

    #[test]
    fn syntax_errors_name_document_and_line() {
        let text = format!("{}---\nkind: [\n", connector("x", "https://r.example", ""));
        let d = problems(&text);
        assert_eq!(d.len(), 1, "{d}");
        let problem = find(&d, "document 2", "cannot parse");
        assert!(problem.location.contains("line 10"), "{problem}");
    }

    #[test]
    fn json_manifests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(dir.path(), "c.json", format!(
            "\u{feff}{{\"apiVersion\": \"connectors.alauda.io/v1alpha1\", \"kind\": \"Connector\", \"metadata\": {{\"name\": \"j\"}}, \"spec\": {{\"connectorClassName\": \"oci\", \"address\": \"https://docker.io\", \"auth\": {{\"secretRef\": {{\"name\": \"s\"}}}}}}}}\n{}",
            r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"username": "cm9ib3Q=", "password": "czNjcmV0"}}"#
        ).as_bytes());
        let c = load_connectors(&[good]).unwrap_or_else(|d| panic!("{d}"));
        assert!(c[0].docker_hub && c[0].credentials.is_some());
        let bad = write(dir.path(), "bad.json", b"{\"apiVersion\": \"connectors.alauda.io/v1alpha1\",\n \"kind\": \"Connector\",\n \"metadata\": {\"name\": \"j\"},\n \"spec\": {\"adress\": 1}}");
        let d = load_connectors(&[bad]).err().unwrap_or_default();
        let problem = find(&d, "document 1 (Connector default/j)", "unknown field `adress`");
        assert!(problem.location.contains("line 4"), "{problem}");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `address`?"));
        let broken = write(dir.path(), "broken.json", b"{\"a\": ");
        find(&load_connectors(&[broken]).err().unwrap_or_default(), "document 1", "cannot parse");
        let array = write(dir.path(), "array.json", b"[]");
        find(&load_connectors(&[array]).err().unwrap_or_default(), "document 1", "found an array");
    }
}
