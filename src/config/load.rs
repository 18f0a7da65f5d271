//! Reads the settings file and connector manifests and validates them into the typed model.
//!
//! Every problem is collected into [`Diagnostics`] (file, location, message, hint);
//! nothing here stops at the first problem and nothing panics on any input, because
//! a hot reload runs this code inside the live proxy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use url::{Host, Url};

use super::diagnostics::{serde_hint, suggest, unknown_field_name, Diagnostic, Diagnostics};
use super::model::{
    ClientAuthMode, ClientAuthSettings, Config, Connector, ConnectorId, Credentials, RedirectPolicy,
    ResolverKind, Scheme, Settings, Upstream, UpstreamSettings,
};
use super::raw::{RawClientAuthMode, RawConnectorSpec, RawDocument, RawResolver, RawSettings};
use crate::secret::Secret;

const CONNECTOR_API_VERSION: &str = "connectors.alauda.io/v1alpha1";
const SECRET_API_VERSION: &str = "v1";
const KINDS: [&str; 2] = ["Connector", "Secret"];
const DEFAULT_NAMESPACE: &str = "default";
const CONNECTOR_CLASS: &str = "oci";
const AUTH_NAME: &str = "tokenAuth";
const KNOWN_PARAMS: [&str; 1] = ["repository"];
const REDIRECTS_ANNOTATION: &str = "oci-connector.io/redirects";
const DESCRIPTION_ANNOTATION: &str = "cpaas.io/description";
const CREDENTIAL_SECRET_TYPES: [&str; 2] =
    ["cpaas.io/distribution-registry-token", "kubernetes.io/basic-auth"];
const CA_KEY: &str = "ca.crt";
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
const DOCKER_HUB_UPSTREAM: &str = "registry-1.docker.io";
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

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

// ---------------------------------------------------------------------------
// Files

fn read_text(file: &Path, diags: &mut Diagnostics) -> Option<String> {
    let bytes = match fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            diags.push(Diagnostic::new(file, "", format!("cannot read the file: {e}")));
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) => {
            diags.push(
                Diagnostic::new(file, "", format!("the file is not UTF-8 text: {e}"))
                    .with_hint("configuration files must be YAML or JSON text"),
            );
            None
        }
    }
}

/// Expands directories into their manifest files; keeps files as given.
fn manifest_files(paths: &[PathBuf], diags: &mut Diagnostics) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Err(e) => diags.push(
                Diagnostic::new(path, "", format!("cannot read connector manifests: {e}"))
                    .with_hint("check connectors.paths in the settings file"),
            ),
            Ok(meta) if meta.is_dir() => files.extend(directory_manifests(path, diags)),
            Ok(_) => files.push(path.clone()),
        }
    }
    let mut seen = BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()));
    files
}

fn directory_manifests(dir: &Path, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diags.push(Diagnostic::new(dir, "", format!("cannot list the directory: {e}")));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .filter(|path| {
            let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            // `fs::metadata` follows symlinks, as ConfigMap mounts need.
            MANIFEST_EXTENSIONS.contains(&ext.as_str()) && fs::metadata(path).is_ok_and(|m| m.is_file())
        })
        .collect();
    files.sort();
    files
}

fn is_json(file: &Path) -> bool {
    file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

// ---------------------------------------------------------------------------
// Settings

/// Reads the settings file. Returns the connector paths found (even if other
/// settings are invalid) and the settings when they are complete.
fn read_settings(path: &Path, diags: &mut Diagnostics) -> (Vec<PathBuf>, Option<Settings>) {
    let Some(text) = read_text(path, diags) else { return (Vec::new(), None) };
    let raw = match serde_yaml::from_str::<Option<RawSettings>>(&text) {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            diags.push(
                Diagnostic::new(path, "", "the settings file is empty")
                    .with_hint("at least `listen` and `connectors.paths` are required"),
            );
            return (Vec::new(), None);
        }
        Err(e) => {
            let problem = SerdeProblem::from_yaml(&e);
            diags.push(
                Diagnostic::new(path, problem.location(""), problem.message).with_optional_hint(problem.hint),
            );
            return (Vec::new(), None);
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    validate_settings(&raw, path, base, diags)
}

/// Turns raw settings into typed ones, recording every problem. Returns the
/// connector paths and, unless a required value is unusable, the settings; the
/// caller must still check `diags`.
fn validate_settings(
    raw: &RawSettings,
    file: &Path,
    base: &Path,
    diags: &mut Diagnostics,
) -> (Vec<PathBuf>, Option<Settings>) {
    let mut problem = |location: &str, message: String, hint: &str| {
        diags.push(Diagnostic::new(file, location, message).with_hint(hint));
    };

    let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
        Some(Ok(addr)) => Some(addr),
        Some(Err(e)) => {
            problem(
                "listen",
                format!("invalid address {:?}: {e}", raw.listen.as_deref().unwrap_or("")),
                "write ip:port, e.g. 127.0.0.1:5000 or 0.0.0.0:5000",
            );
            None
        }
        None => {
            problem("listen", "`listen` is required".into(), "add e.g. `listen: 127.0.0.1:5000`");
            None
        }
    };

    let public_url = match (&raw.public_url, listen) {
        (Some(text), _) => match parse_public_url(text) {
            Ok(url) => Some(url),
            Err((message, hint)) => {
                problem("publicUrl", message, hint);
                None
            }
        },
        (None, Some(addr)) => Url::parse(&format!("http://{addr}")).ok(),
        (None, None) => None,
    };

    let admin_listen = match raw.admin.as_ref().and_then(|a| a.listen.as_deref()) {
        None => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                problem(
                    "admin.listen",
                    format!("invalid address {text:?}: {e}"),
                    "write ip:port, e.g. 127.0.0.1:9090",
                );
                None
            }
        },
    };

    let mut connector_paths = Vec::new();
    match raw.connectors.as_ref().and_then(|c| c.paths.as_ref()) {
        None => problem(
            "connectors.paths",
            "`connectors.paths` is required".into(),
            "list manifest files or directories, e.g. `connectors: {paths: [connectors.yaml]}`",
        ),
        Some(paths) if paths.is_empty() => problem(
            "connectors.paths",
            "`connectors.paths` is empty".into(),
            "list at least one manifest file or directory",
        ),
        Some(paths) => {
            for (i, p) in paths.iter().enumerate() {
                if p.trim().is_empty() {
                    problem(
                        &format!("connectors.paths[{i}]"),
                        "empty path".into(),
                        "remove it or name a file",
                    );
                } else {
                    connector_paths.push(base.join(p));
                }
            }
        }
    }

    let resolver = match raw.resolver {
        None | Some(RawResolver::Path) => ResolverKind::Path,
        Some(RawResolver::Host) => ResolverKind::Host,
    };
    let host_domain = match (raw.host_resolver.as_ref().and_then(|h| h.domain.as_deref()), resolver) {
        (Some(domain), _) => match validate_dns_name(domain) {
            Ok(()) => domain.to_ascii_lowercase(),
            Err(why) => {
                problem(
                    "hostResolver.domain",
                    format!("invalid domain {domain:?}: {why}"),
                    "write a DNS name such as proxy.local",
                );
                String::new()
            }
        },
        (None, ResolverKind::Host) => {
            problem(
                "hostResolver.domain",
                "`hostResolver.domain` is required with `resolver: host`".into(),
                "add e.g. `hostResolver: {domain: proxy.local}`",
            );
            String::new()
        }
        (None, ResolverKind::Path) => String::new(),
    };

    let raw_auth = raw.client_auth.as_ref();
    let mode = match raw_auth.and_then(|a| a.mode) {
        None | Some(RawClientAuthMode::None) => ClientAuthMode::None,
        Some(RawClientAuthMode::Token) => ClientAuthMode::Token,
    };
    let key_files: Vec<PathBuf> = raw_auth
        .and_then(|a| a.key_files.as_ref())
        .map(|files| files.iter().filter(|f| !f.trim().is_empty()).map(|f| base.join(f)).collect())
        .unwrap_or_default();
    if mode == ClientAuthMode::Token && key_files.is_empty() {
        problem(
            "clientAuth.keyFiles",
            "`clientAuth.keyFiles` must name at least one key with `mode: token`".into(),
            "generate one with `oci-connector keygen` and list it, e.g. `keyFiles: [keys/proxy.key]`",
        );
    }

    let allow_anonymous_clients = raw.allow_anonymous_clients.unwrap_or(false);
    if let Some(addr) = listen {
        if mode == ClientAuthMode::None && !addr.ip().is_loopback() && !allow_anonymous_clients {
            problem(
                "clientAuth.mode",
                format!("clients are not authenticated but the proxy listens on {addr}, reachable from other hosts"),
                "set `clientAuth.mode: token`, listen on 127.0.0.1, or set `allowAnonymousClients: true` if anyone who can reach the proxy may use every connector",
            );
        }
    }

    let defaults = UpstreamSettings::default();
    let raw_upstream = raw.upstream.as_ref();
    let mut duration = |key: &str, value: Option<&String>, default: Duration| match value {
        None => default,
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                problem(&format!("upstream.{key}"), format!("{key} must be greater than zero"), "e.g. 5s");
                default
            }
            Ok(d) => d,
            Err(why) => {
                problem(
                    &format!("upstream.{key}"),
                    format!("invalid duration {text:?}: {why}"),
                    "write a number and a unit: 500ms, 5s, 2m, 1h",
                );
                default
            }
        },
    };
    let upstream = UpstreamSettings {
        connect_timeout: duration(
            "connectTimeout",
            raw_upstream.and_then(|u| u.connect_timeout.as_ref()),
            defaults.connect_timeout,
        ),
        read_timeout: duration(
            "readTimeout",
            raw_upstream.and_then(|u| u.read_timeout.as_ref()),
            defaults.read_timeout,
        ),
        token_timeout: duration(
            "tokenTimeout",
            raw_upstream.and_then(|u| u.token_timeout.as_ref()),
            defaults.token_timeout,
        ),
        idle_timeout: duration(
            "idleTimeout",
            raw_upstream.and_then(|u| u.idle_timeout.as_ref()),
            defaults.idle_timeout,
        ),
    };

    let threads = match raw.threads {
        Some(0) => {
            problem("threads", "`threads` must be at least 1".into(), "omit it to use one thread per CPU");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };

    let settings = match (listen, public_url) {
        (Some(listen), Some(public_url)) => Some(Settings {
            listen,
            public_url,
            admin_listen,
            connector_paths: connector_paths.clone(),
            resolver,
            host_domain,
            client_auth: ClientAuthSettings { mode, key_files },
            allow_anonymous_clients,
            upstream,
            threads,
        }),
        _ => None,
    };
    (connector_paths, settings)
}

fn parse_public_url(text: &str) -> Result<Url, (String, &'static str)> {
    let hint = "write the proxy's root URL as clients reach it, e.g. http://proxy.example.com:5000";
    let url = Url::parse(text).map_err(|e| (format!("invalid URL {text:?}: {e}"), hint))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err((
            format!("unsupported scheme {:?} in {text:?}", url.scheme()),
            "use http:// or https://",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err((format!("{text:?} has a path, query or fragment"), hint));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((format!("{text:?} contains credentials"), hint));
    }
    Ok(url)
}

/// A humane duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| format!("{number} is too large"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let part = match unit.trim() {
            "ms" => Some(Duration::from_millis(value)),
            "s" => Some(Duration::from_secs(value)),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "h" => value.checked_mul(3600).map(Duration::from_secs),
            "" => return Err(format!("{number} has no unit")),
            other => return Err(format!("unknown unit {other:?}")),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(|| "duration is too large".to_string())?;
        rest = next.trim_start();
    }
    Ok(total)
}

/// A DNS name: dot-separated labels of letters, digits and `-`.
fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "label {label:?} must be 1 to 63 letters, digits or '-', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

/// A DNS-1123 label as Kubernetes requires for namespaces: lowercase letters,
/// digits and `-`, at most 63 characters.
fn validate_dns_label(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err("must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
            .into())
    }
}

/// A DNS-1123 subdomain as Kubernetes requires for most names (secrets).
fn validate_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    if name.split('.').all(|label| validate_dns_label(label).is_ok()) {
        Ok(())
    } else {
        Err("must be lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit"
            .into())
    }
}

// ---------------------------------------------------------------------------
// Serde errors

/// A serde error split into its parts: serde_yaml writes
/// `path: message at line L column C`, serde_json `message at line L column C`.
struct SerdeProblem {
    path: Option<String>,
    message: String,
    line_column: Option<(usize, usize)>,
    hint: Option<String>,
}

impl SerdeProblem {
    fn from_yaml(e: &serde_yaml::Error) -> Self {
        Self::split(e.to_string(), e.location().map(|l| (l.line(), l.column())))
    }

    fn from_json(e: &serde_json::Error) -> Self {
        let line_column = (e.line() > 0).then(|| (e.line(), e.column()));
        Self::split(e.to_string(), line_column)
    }

    fn split(mut message: String, line_column: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = line_column {
            let suffix = format!(" at line {line} column {column}");
            if message.ends_with(&suffix) {
                message.truncate(message.len() - suffix.len());
            }
        }
        let mut path = None;
        if let Some((head, tail)) = message.split_once(": ") {
            // A path has no spaces; "invalid type: ..." is a message, not a path.
            if !head.is_empty() && !head.contains(' ') && !head.contains('`') {
                path = Some(head.to_string());
                message = tail.to_string();
            }
        }
        if let Some(field) = unknown_field_name(&message) {
            path = Some(match path {
                Some(parent) => format!("{parent}.{field}"),
                None => field.to_string(),
            });
        }
        let hint = serde_hint(&message);
        SerdeProblem { path, message, line_column, hint }
    }

    /// `prefix, path (line L, column C)`, leaving out what is unknown.
    fn location(&self, prefix: &str) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            parts.push(prefix.to_string());
        }
        if let Some(path) = &self.path {
            parts.push(path.clone());
        }
        let mut location = parts.join(", ");
        if let Some((line, column)) = self.line_column {
            if !location.is_empty() {
                location.push(' ');
            }
            location.push_str(&format!("(line {line}, column {column})"));
        }
        location
    }
}

// ---------------------------------------------------------------------------
// Manifest documents

/// Where a document sits: file, 1-based index, and a label like `Connector default/hub`.
#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    document: usize,
    label: String,
}

impl Origin {
    fn prefix(&self) -> String {
        if self.label.is_empty() {
            format!("document {}", self.document)
        } else {
            format!("document {} ({})", self.document, self.label)
        }
    }

    fn at(&self, path: &str) -> String {
        if path.is_empty() {
            self.prefix()
        } else {
            format!("{}, {path}", self.prefix())
        }
    }

    fn diag(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file.clone(), self.at(path), message)
    }
}

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
fn read_manifest(file: &Path, catalog: &mut Catalog, diags: &mut Diagnostics) {
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

/// A connector before its secrets are looked up.
struct PendingConnector {
    connector: Connector,
    secret_ref: Option<SecretKey>,
    ca_ref: Option<SecretKey>,
}

/// (namespace, name) of a secret.
type SecretKey = (String, String);

fn validate_connector(
    id: ConnectorId,
    spec: RawConnectorSpec,
    annotations: &BTreeMap<String, String>,
    origin: &Origin,
    diags: &mut Diagnostics,
) -> PendingConnector {
    match spec.connector_class_name.as_deref() {
        Some(CONNECTOR_CLASS) => {}
        Some(other) => diags.push(
            origin
                .diag("spec.connectorClassName", format!("unsupported connector class {other:?}"))
                .with_hint("this proxy serves `connectorClassName: oci` only"),
        ),
        None => diags.push(
            origin
                .diag("spec.connectorClassName", "`spec.connectorClassName` is missing")
                .with_hint("add `connectorClassName: oci`"),
        ),
    }

    let address = spec.address.unwrap_or_default();
    let (upstream, docker_hub) = if address.is_empty() {
        diags.push(
            origin
                .diag("spec.address", "`spec.address` is missing")
                .with_hint("the registry's URL, e.g. https://index.docker.io"),
        );
        (placeholder_upstream(), false)
    } else {
        match parse_address(&address) {
            Ok(parsed) => parsed,
            Err((message, hint)) => {
                diags.push(origin.diag("spec.address", message).with_hint(hint));
                (placeholder_upstream(), false)
            }
        }
    };

    let mut secret_ref = None;
    let mut health_repository = None;
    if let Some(auth) = spec.auth {
        if let Some(name) = auth.name.as_deref().filter(|n| *n != AUTH_NAME) {
            diags.push(origin.diag("spec.auth.name", format!("unsupported auth type {name:?}")).with_hint(
                format!(
                    "{}; `{AUTH_NAME}` is the only auth type of OCI connectors",
                    suggest(name, &[AUTH_NAME])
                ),
            ));
        }
        if let Some(r) = auth.secret_ref {
            match r.name.filter(|n| !n.is_empty()) {
                Some(name) => secret_ref = Some((r.namespace.unwrap_or_else(|| id.namespace.clone()), name)),
                None => diags.push(
                    origin
                        .diag("spec.auth.secretRef.name", "`secretRef.name` is missing")
                        .with_hint("name the Secret holding username and password, or remove secretRef for anonymous access"),
                ),
            }
        }
        for (i, param) in auth.params.unwrap_or_default().into_iter().enumerate() {
            let path = format!("spec.auth.params[{i}]");
            match param.name.as_deref() {
                Some("repository") => {
                    let value = param.value.unwrap_or_default();
                    if health_repository.is_some() {
                        diags.push(origin.diag(&path, "`repository` is given twice").with_hint("keep one"));
                    } else if let Err(why) = validate_repository(&value) {
                        diags.push(
                            origin
                                .diag(
                                    &format!("{path}.value"),
                                    format!("invalid repository {value:?}: {why}"),
                                )
                                .with_hint("a repository the credentials may pull, e.g. library/alpine"),
                        );
                    } else {
                        health_repository = Some(value);
                    }
                }
                Some(other) => diags.push(
                    origin
                        .diag(&format!("{path}.name"), format!("unknown parameter {other:?}"))
                        .with_hint(suggest(other, &KNOWN_PARAMS)),
                ),
                None => diags.push(
                    origin
                        .diag(&format!("{path}.name"), "parameter `name` is missing")
                        .with_hint(format!("known parameters: {}", KNOWN_PARAMS.join(", "))),
                ),
            }
        }
    }

    let ca_ref = match spec.ca_cert_secret_ref {
        None => None,
        Some(r) => match r.name.filter(|n| !n.is_empty()) {
            Some(name) => Some((id.namespace.clone(), name)),
            None => {
                diags.push(
                    origin
                        .diag("spec.caCertSecretRef.name", "`caCertSecretRef.name` is missing")
                        .with_hint("name a Secret with a `ca.crt` key"),
                );
                None
            }
        },
    };

    let redirects = match annotations.get(REDIRECTS_ANNOTATION).map(String::as_str) {
        None | Some("follow") => RedirectPolicy::Follow,
        Some("client") => RedirectPolicy::PassToClient,
        Some(other) => {
            diags.push(
                origin
                    .diag(
                        &format!("metadata.annotations[{REDIRECTS_ANNOTATION}]"),
                        format!("invalid value {other:?}"),
                    )
                    .with_hint(format!(
                        "{}; `follow` fetches redirects server-side, `client` hands them to the client",
                        suggest(other, &["follow", "client"])
                    )),
            );
            RedirectPolicy::Follow
        }
    };
    let description = annotations.get(DESCRIPTION_ANNOTATION).filter(|d| !d.is_empty()).cloned();

    let connector = Connector {
        id,
        address,
        upstream,
        docker_hub,
        credentials: None,
        secret_name: secret_ref.as_ref().map(|(_, name)| name.clone()),
        ca_certs: None,
        health_repository,
        redirects,
        description,
    };
    PendingConnector { connector, secret_ref, ca_ref }
}

fn placeholder_upstream() -> Upstream {
    Upstream { scheme: Scheme::Https, host: "invalid".into(), port: 443 }
}

/// Validates a registry address and derives the upstream, normalising Docker Hub.
fn parse_address(address: &str) -> Result<(Upstream, bool), (String, String)> {
    let example = "write the registry's root URL, e.g. https://registry.example.com".to_string();
    let url = match Url::parse(address) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err((format!("{address:?} is not a URL"), format!("add a scheme: https://{address}")))
        }
        Err(e) => return Err((format!("invalid URL {address:?}: {e}"), example)),
    };
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => {
            return Err((
                format!("unsupported scheme {other:?}"),
                "use https:// (or http:// for a plain-HTTP registry)".into(),
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "the address must not contain credentials".into(),
            "put them in a Secret referenced by spec.auth.secretRef".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err((format!("{address:?} has a query or fragment"), example));
    }
    if !matches!(url.path(), "" | "/") {
        return Err((
            format!("{address:?} has a path; registries under a path prefix are not supported"),
            "use the registry's root URL; the repository goes into the image name".into(),
        ));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err((format!("{address:?} has no host"), example)),
    };
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        return Ok((Upstream { scheme: Scheme::Https, host: DOCKER_HUB_UPSTREAM.into(), port: 443 }, true));
    }
    let port = url.port().unwrap_or_else(|| scheme.default_port());
    Ok((Upstream { scheme, host, port }, false))
}

/// An OCI repository name: `/`-separated components of lowercase letters and
/// digits joined by `.`, `_`, `__` or runs of `-` (distribution spec, "name").
fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    match name.split('/').find(|component| !valid_repository_component(component)) {
        Some(component) => Err(format!(
            "component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
        )),
        None => Ok(()),
    }
}

fn valid_repository_component(component: &str) -> bool {
    let valid_separator = |sep: &str| matches!(sep, "." | "_" | "__") || sep.chars().all(|c| c == '-');
    let mut separator = String::new();
    let mut started = false;
    for c in component.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !separator.is_empty() {
                if !started || !valid_separator(&separator) {
                    return false;
                }
                separator.clear();
            }
            started = true;
        } else {
            separator.push(c);
        }
    }
    started && separator.is_empty()
}

/// A secret's values, decoded.
struct LoadedSecret {
    secret_type: String,
    values: BTreeMap<String, Vec<u8>>,
}

fn validate_secret(
    secret_type: Option<String>,
    data: Option<BTreeMap<String, String>>,
    string_data: Option<BTreeMap<String, String>>,
    origin: &Origin,
    diags: &mut Diagnostics,
) -> LoadedSecret {
    let mut values = BTreeMap::new();
    for (key, encoded) in data.unwrap_or_default() {
        let compact: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
            Ok(bytes) => {
                values.insert(key, bytes);
            }
            Err(e) => diags.push(
                origin
                    .diag(&key_path("data", &key), format!("not valid base64: {e}"))
                    .with_hint("encode with `base64 -w0`, or put the plain value under stringData"),
            ),
        }
    }
    // As in Kubernetes, stringData wins over data.
    for (key, value) in string_data.unwrap_or_default() {
        values.insert(key, value.into_bytes());
    }
    LoadedSecret { secret_type: secret_type.unwrap_or_else(|| "Opaque".into()), values }
}

/// `data.username`, or `data["ca.crt"]` when the key would read as a path.
fn key_path(section: &str, key: &str) -> String {
    if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        format!("{section}.{key}")
    } else {
        format!("{section}[{key:?}]")
    }
}

// ---------------------------------------------------------------------------
// Cross-references

/// Everything read from all manifest files, before cross-references are checked.
#[derive(Default)]
struct Catalog {
    connectors: BTreeMap<ConnectorId, (PendingConnector, Origin)>,
    secrets: HashMap<SecretKey, (LoadedSecret, Origin)>,
    credentials: HashMap<SecretKey, Option<Credentials>>,
    cas: HashMap<SecretKey, Option<Arc<Vec<Vec<u8>>>>>,
}

impl Catalog {
    fn add_connector(&mut self, pending: PendingConnector, origin: Origin, diags: &mut Diagnostics) {
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

    fn add_secret(&mut self, key: SecretKey, secret: LoadedSecret, origin: Origin, diags: &mut Diagnostics) {
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
    fn resolve(mut self, diags: &mut Diagnostics) -> Vec<Connector> {
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
        let ca = match secret.values.get(CA_KEY) {
            None => {
                diags.push(
                    secret_origin
                        .diag("", format!("the secret has no `{CA_KEY}` key, but a connector uses it as caCertSecretRef"))
                        .with_hint("add the CA certificates (PEM) under stringData[\"ca.crt\"]"),
                );
                None
            }
            Some(pem) => {
                match parse_ca_bundle(pem) {
                    Ok(certs) => Some(Arc::new(certs)),
                    Err(why) => {
                        diags.push(secret_origin.diag(&key_path("data", CA_KEY), why).with_hint(
                            "ca.crt must hold one or more PEM `-----BEGIN CERTIFICATE-----` blocks",
                        ));
                        None
                    }
                }
            }
        };
        self.cas.insert(key.clone(), ca.clone());
        ca
    }
}

fn read_credentials(secret: &LoadedSecret, origin: &Origin, diags: &mut Diagnostics) -> Option<Credentials> {
    let mut ok = true;
    if !CREDENTIAL_SECRET_TYPES.contains(&secret.secret_type.as_str()) {
        diags.push(
            origin
                .diag(
                    "type",
                    format!("secret type {:?} cannot hold registry credentials", secret.secret_type),
                )
                .with_hint(format!(
                    "use `type: {}` (or {})",
                    CREDENTIAL_SECRET_TYPES[0], CREDENTIAL_SECRET_TYPES[1]
                )),
        );
        ok = false;
    }
    let mut field = |key: &str| -> Option<String> {
        let Some(bytes) = secret.values.get(key) else {
            diags.push(
                origin
                    .diag("", format!("the secret has no `{key}` key"))
                    .with_hint(format!("add stringData.{key} (or base64 data.{key})")),
            );
            return None;
        };
        let problem = match std::str::from_utf8(bytes) {
            Err(_) => Some(("is not UTF-8 text", "check the base64 encoding")),
            Ok("") => Some(("is empty", "set the registry account's value")),
            Ok(v) if v.contains(['\n', '\r']) => Some((
                "contains a line break",
                "encode it with `echo -n ... | base64 -w0` (no trailing newline)",
            )),
            Ok(_) => None,
        };
        match problem {
            Some((what, hint)) => {
                diags.push(origin.diag(&key_path("data", key), format!("`{key}` {what}")).with_hint(hint));
                None
            }
            None => String::from_utf8(bytes.clone()).ok(),
        }
    };
    let username = field("username");
    let password = field("password");
    match (username, password) {
        (Some(username), Some(password)) if ok => {
            Some(Credentials { username, password: Secret::new(password) })
        }
        _ => None,
    }
}

/// Parses a PEM bundle and checks each certificate is X.509 DER.
///
/// This check is what keeps bad input from reaching Pingora's rustls
/// `WrappedX509`, which panics on invalid DER.
fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    let mut reader = pem;
    for (i, item) in rustls_pemfile::certs(&mut reader).enumerate() {
        let der = item.map_err(|e| format!("certificate {}: invalid PEM: {e}", i + 1))?;
        match x509_parser::parse_x509_certificate(der.as_ref()) {
            Ok(([], _)) => certs.push(der.as_ref().to_vec()),
            Ok(_) => return Err(format!("certificate {}: trailing bytes after the certificate", i + 1)),
            Err(e) => return Err(format!("certificate {}: not a valid X.509 certificate: {e}", i + 1)),
        }
    }
    if certs.is_empty() {
        return Err("`ca.crt` contains no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBejCCASGgAwIBAgIUXJ49XC6oAhzXR2F7rfHRJzUY2qcwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjExMjgxNjQyMjZaGA8yMTI2MTEwNDE2
NDIyNlowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABPGTOhy/n63Uy/3jLFRypeZgb3ScvUdq512BJKUgdRTHaRfB/GW/qQj+HoxZ
oF3dt7rG2tSF3WNGF0ij67e1AsqjUzBRMB0GA1UdDgQWBBRK4o1U6KJbvF7bgCAT
BPhvAD5M3zAfBgNVHSMEGDAWgBRK4o1U6KJbvF7bgCATBPhvAD5M3zAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCICaVm80TlMl1iBBf4VWclPuq2kIp
8jrtYH4N350c1qnKAiAKAH+GD0a3ICSRkqdJmO/mkmaS0a+bqwzpZEN48sjTBw==
-----END CERTIFICATE-----
";

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).expect("write test file");
        path
    }

    /// Loads `text` as the only manifest file.
    fn load_text(text: &str) -> Result<Vec<Connector>, Diagnostics> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "connectors.yaml", text.as_bytes());
        load_connectors(&[file])
    }

    fn ok(text: &str) -> Vec<Connector> {
        match load_text(text) {
            Ok(connectors) => connectors,
            Err(d) => panic!("unexpected problems:\n{d}"),
        }
    }

    fn problems(text: &str) -> Diagnostics {
        match load_text(text) {
            Ok(c) => panic!("expected problems, loaded {c:?}"),
            Err(d) => d,
        }
    }

    /// The one diagnostic whose location contains `location`; asserts it mentions `message`.
    fn find<'a>(d: &'a Diagnostics, location: &str, message: &str) -> &'a Diagnostic {
        let found = d.iter().find(|x| x.location.contains(location) && x.message.contains(message));
        found.unwrap_or_else(|| panic!("no diagnostic at {location:?} saying {message:?} in:\n{d}"))
    }

    fn connector(name: &str, address: &str, extra_spec: &str) -> String {
        format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\nspec:\n  connectorClassName: oci\n  address: {address}\n{extra_spec}"
        )
    }

    fn secret(name: &str, secret_type: &str, body: &str) -> String {
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: {secret_type}\n{body}")
    }

    const AUTH_REF: &str = "  auth:\n    name: tokenAuth\n    secretRef:\n      name: creds\n";
    const CREDS: &str = "stringData:\n  username: robot\n  password: s3cret\n";

    // --- the example configuration ------------------------------------------------

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

    // --- settings -------------------------------------------------------------------

    fn settings(text: &str) -> Result<Config, Diagnostics> {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "connectors.yaml", b"");
        let path = write(dir.path(), "settings.yaml", text.as_bytes());
        load(&path)
    }

    fn settings_problems(text: &str) -> Diagnostics {
        match settings(text) {
            Ok(c) => panic!("expected problems, got {c:?}"),
            Err(d) => d,
        }
    }

    #[test]
    fn settings_defaults() {
        let config = settings("listen: 127.0.0.1:5000\nconnectors:\n  paths: [connectors.yaml]\n")
            .unwrap_or_else(|d| panic!("{d}"));
        let s = &config.settings;
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(s.resolver, ResolverKind::Path);
        assert_eq!(s.client_auth.mode, ClientAuthMode::None);
        assert_eq!(s.upstream.connect_timeout, Duration::from_secs(5));
        assert!(s.threads >= 1);
        assert!(s.admin_listen.is_none());
        assert!(s.connector_paths[0].is_absolute());
        assert!(config.connectors.is_empty());
    }

    #[test]
    fn settings_full() {
        let config = settings(
            "listen: '[::]:5000'\npublicUrl: https://proxy.example.com\nconnectors: {paths: [connectors.yaml]}\n\
             resolver: host\nhostResolver: {domain: Proxy.Local}\nclientAuth: {mode: token, keyFiles: [keys/a.key, /abs/b.key]}\n\
             upstream: {connectTimeout: 500ms, readTimeout: 2m, tokenTimeout: 1m30s, idleTimeout: 1h}\nthreads: 3\n",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let s = &config.settings;
        assert_eq!(s.resolver, ResolverKind::Host);
        assert_eq!(s.host_domain, "proxy.local");
        assert_eq!(s.client_auth.mode, ClientAuthMode::Token);
        assert!(
            s.client_auth.key_files[0].ends_with("keys/a.key") && s.client_auth.key_files[0].is_absolute()
        );
        assert_eq!(s.client_auth.key_files[1], PathBuf::from("/abs/b.key"));
        assert_eq!(s.upstream.connect_timeout, Duration::from_millis(500));
        assert_eq!(s.upstream.token_timeout, Duration::from_secs(90));
        assert_eq!(s.upstream.idle_timeout, Duration::from_secs(3600));
        assert_eq!(s.threads, 3);
    }

    #[test]
    fn settings_unknown_key_has_location_and_hint() {
        let d = settings_problems(
            "listen: 127.0.0.1:5000\nconnectors: {paths: [c.yaml]}\nclientAuth:\n  mdoe: token\n",
        );
        let problem = find(&d, "clientAuth.mdoe", "unknown field");
        assert!(problem.location.contains("line 4"), "{problem}");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `mode`?"));
        let d = settings_problems("listen: 127.0.0.1:5000\nresolver: hots\n");
        assert_eq!(find(&d, "resolver", "unknown variant").hint.as_deref(), Some("did you mean `host`?"));
    }

    #[test]
    fn settings_report_every_problem() {
        let d = settings_problems(
            "listen: localhost:5000\npublicUrl: http://x/path\nresolver: host\nclientAuth: {mode: token}\n\
             upstream: {connectTimeout: '5', readTimeout: 0s, tokenTimeout: 5y}\nthreads: 0\nadmin: {listen: nope}\n",
        );
        for (location, message) in [
            ("listen", "invalid address"),
            ("publicUrl", "path"),
            ("connectors.paths", "required"),
            ("hostResolver.domain", "required"),
            ("clientAuth.keyFiles", "at least one key"),
            ("upstream.connectTimeout", "no unit"),
            ("upstream.readTimeout", "greater than zero"),
            ("upstream.tokenTimeout", "unknown unit"),
            ("threads", "at least 1"),
            ("admin.listen", "invalid address"),
        ] {
            assert!(find(&d, location, message).hint.is_some());
        }
        assert_eq!(d.len(), 10, "{d}");
    }

    #[test]
    fn anonymous_clients_on_a_public_listener_need_consent() {
        let d = settings_problems("listen: 0.0.0.0:5000\nconnectors: {paths: [connectors.yaml]}\n");
        let problem = find(&d, "clientAuth.mode", "not authenticated");
        assert!(problem.hint.as_deref().is_some_and(|h| h.contains("allowAnonymousClients")));
        let allowed = settings(
            "listen: 0.0.0.0:5000\nconnectors: {paths: [connectors.yaml]}\nallowAnonymousClients: true\n",
        );
        assert!(allowed.is_ok());
        let token = settings("listen: 0.0.0.0:5000\nconnectors: {paths: [connectors.yaml]}\nclientAuth: {mode: token, keyFiles: [k]}\n");
        assert!(token.is_ok());
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
    fn missing_or_empty_settings_file() {
        let d = load(Path::new("/nonexistent/oci-connector.yaml")).err().unwrap_or_default();
        assert!(d.to_string().contains("cannot read"), "{d}");
        find(&settings_problems(""), "", "empty");
        find(&settings_problems("[1, 2]"), "", "invalid type");
        find(&settings_problems("a: [\n"), "line", "");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 2m3s"), Ok(Duration::from_secs(3723)));
        for bad in
            ["", "5", "s", "5 parsecs", "-1s", "1.5s", "99999999999999999999s", "18446744073709551615h"]
        {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    // --- connectors -----------------------------------------------------------------

    #[test]
    fn minimal_connector() {
        let c = ok(&connector("reg", "http://localhost:5001", ""));
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.id, ConnectorId::new("default", "reg"));
        assert_eq!(c.address, "http://localhost:5001");
        assert_eq!(c.upstream, Upstream { scheme: Scheme::Http, host: "localhost".into(), port: 5001 });
        assert!(!c.docker_hub && c.credentials.is_none() && c.ca_certs.is_none() && c.secret_name.is_none());
        assert_eq!(c.redirects, RedirectPolicy::Follow);
    }

    #[test]
    fn upstream_from_address() {
        let up = |address: &str| ok(&connector("x", address, "")).remove(0).upstream;
        assert_eq!(up("https://[::1]"), Upstream { scheme: Scheme::Https, host: "::1".into(), port: 443 });
        assert_eq!(
            up("https://10.0.0.1:8443/"),
            Upstream { scheme: Scheme::Https, host: "10.0.0.1".into(), port: 8443 }
        );
        assert_eq!(up("https://Registry.Example.COM").host, "registry.example.com");
        assert_eq!(up("http://r.example:80").port, 80);
    }

    #[test]
    fn docker_hub_is_normalised() {
        for address in [
            "https://docker.io",
            "https://index.docker.io/",
            "https://registry-1.docker.io",
            "http://docker.io:8080",
        ] {
            let c = ok(&connector("hub", address, "")).remove(0);
            assert!(c.docker_hub, "{address}");
            assert_eq!(
                c.upstream,
                Upstream { scheme: Scheme::Https, host: "registry-1.docker.io".into(), port: 443 }
            );
            assert_eq!(c.address, address);
        }
        assert!(!ok(&connector("x", "https://ghcr.io", "")).remove(0).docker_hub);
    }

    #[test]
    fn invalid_addresses() {
        for (address, message) in [
            ("registry.example.com", "not a URL"),
            ("ftp://registry.example.com", "unsupported scheme"),
            ("https://u:p@registry.example.com", "credentials"),
            ("https://registry.example.com/v2/", "path"),
            ("https://registry.example.com?x=1", "query"),
            ("https://registry.example.com#frag", "fragment"),
            ("https://", "invalid URL"),
            ("'https://exa mple.com'", "invalid URL"),
        ] {
            let d = problems(&connector("x", address, ""));
            let problem = find(&d, "document 1 (Connector default/x), spec.address", message);
            assert!(problem.hint.is_some(), "{problem}");
            assert!(problem.file.ends_with("connectors.yaml"));
        }
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x}\nspec: {connectorClassName: oci}\n");
        find(&d, "spec.address", "missing");
    }

    #[test]
    fn unknown_spec_field_suggests_the_known_one() {
        let d = problems(&connector("x", "https://r.example", "  adress: https://r.example\n"));
        let problem = find(&d, "document 1 (Connector default/x), spec.adress", "unknown field `adress`");
        assert!(problem.location.contains("line 8"), "{problem}");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `address`?"));
        let d = problems(&connector("x", "https://r.example", "  auth:\n    secretRf: {name: a}\n"));
        assert_eq!(
            find(&d, "spec.auth.secretRf", "unknown field").hint.as_deref(),
            Some("did you mean `secretRef`?")
        );
        let d = problems(&connector(
            "x",
            "https://r.example",
            "  auth:\n    params:\n    - {name: repository, valeu: a}\n",
        ));
        find(&d, "spec.auth.params[0].valeu", "unknown field");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let d = problems(&connector("x", "[a, b]", ""));
        let problem = find(&d, "spec.address", "invalid type");
        assert!(problem.location.contains("line 7"), "{problem}");
    }

    #[test]
    fn auth_parameters() {
        let c = ok(&connector(
            "x",
            "https://r.example",
            "  auth:\n    params:\n    - name: repository\n      value: team/app\n",
        ));
        assert_eq!(c[0].health_repository.as_deref(), Some("team/app"));
        let d = problems(&connector("x", "https://r.example", "  auth:\n    params:\n    - name: repo\n      value: a\n    - value: b\n    - name: repository\n      value: Bad//Repo\n"));
        let unknown = find(&d, "spec.auth.params[0].name", "unknown parameter");
        assert_eq!(unknown.hint.as_deref(), Some("did you mean `repository`?"));
        find(&d, "spec.auth.params[1].name", "missing");
        find(&d, "spec.auth.params[2].value", "invalid repository");
        let d = problems(&connector(
            "x",
            "https://r.example",
            "  auth:\n    params:\n    - {name: zzzzzzzzz, value: a}\n",
        ));
        assert_eq!(
            find(&d, "params[0].name", "unknown").hint.as_deref(),
            Some("expected one of: repository")
        );
    }

    #[test]
    fn repositories() {
        for good in ["alpine", "library/alpine", "a/b/c", "my-app", "my__app", "v1.2", "a---b"] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "A", "a//b", "-a", "a-", "a..b", "a___b", "a b", "ä"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_name_and_class_are_checked() {
        let d = problems(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x}\nspec:\n  connectorClassName: git\n  address: https://r.example\n  auth:\n    name: tokenauth\n",
        );
        find(&d, "spec.connectorClassName", "unsupported connector class");
        assert!(find(&d, "spec.auth.name", "unsupported auth type")
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("`tokenAuth`")));
        assert_eq!(d.len(), 2);
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x}\n");
        find(&d, "spec", "missing");
    }

    #[test]
    fn annotations() {
        let c = ok(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: x\n  namespace: team-a\n  labels: {a: b}\n  uid: 123\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  annotations:\n    oci-connector.io/redirects: client\n    cpaas.io/description: hello\nspec: {connectorClassName: oci, address: 'https://r.example'}\nstatus:\n  conditions: [{type: Ready, status: 'True'}]\n",
        );
        assert_eq!(c[0].id, ConnectorId::new("team-a", "x"));
        assert_eq!(c[0].redirects, RedirectPolicy::PassToClient);
        assert_eq!(c[0].description.as_deref(), Some("hello"));
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: x\n  annotations: {oci-connector.io/redirects: folow}\nspec: {connectorClassName: oci, address: 'https://r.example'}\n");
        let problem = find(&d, "metadata.annotations[oci-connector.io/redirects]", "invalid value");
        assert!(problem.hint.as_deref().is_some_and(|h| h.starts_with("did you mean `follow`?")));
    }

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

    // --- secrets ----------------------------------------------------------------------

    #[test]
    fn credentials_from_string_data() {
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "cpaas.io/distribution-registry-token", CREDS)
        );
        let c = ok(&text).remove(0);
        let creds = c.credentials.expect("credentials");
        assert_eq!(creds.username, "robot");
        assert_eq!(creds.password.expose(), "s3cret");
        assert_eq!(c.secret_name.as_deref(), Some("creds"));
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn credentials_from_base64_data_and_basic_auth_type() {
        // cm9ib3Q= is "robot", czNjcmV0 is "s3cret"; stringData wins over data.
        let body = "data:\n  username: cm9ib3Q=\n  password: czNjcmV0\n";
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        );
        let creds = ok(&text).remove(0).credentials.expect("credentials");
        assert_eq!((creds.username.as_str(), creds.password.expose()), ("robot", "s3cret"));
        let body = "data:\n  password: czNjcmV0\nstringData:\n  username: robot\n  password: plain\n";
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        );
        assert_eq!(ok(&text).remove(0).credentials.expect("credentials").password.expose(), "plain");
    }

    #[test]
    fn invalid_base64_is_reported() {
        let body = "data:\n  username: cm9ib3Q=\n  password: '!!not base64!!'\n";
        let d = problems(&format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        ));
        let problem = find(&d, "document 2 (Secret default/creds), data.password", "base64");
        assert!(problem.hint.is_some());
    }

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

    fn ca_secret(pem: &str) -> String {
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        secret("ca", "Opaque", &format!("stringData:\n  ca.crt: |\n{indented}"))
    }

    const CA_REF: &str = "  caCertSecretRef:\n    name: ca\n";

    #[test]
    fn ca_certificates() {
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", CA_REF),
            ca_secret(&format!("{CA_PEM}{CA_PEM}"))
        );
        let c = ok(&text).remove(0);
        let cas = c.ca_certs.expect("ca certs");
        assert_eq!(cas.len(), 2);
        assert!(x509_parser::parse_x509_certificate(&cas[0]).is_ok());
        // Base64 in data works too.
        let data = base64::engine::general_purpose::STANDARD.encode(CA_PEM);
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", CA_REF),
            secret("ca", "Opaque", &format!("data:\n  ca.crt: {data}\n"))
        );
        assert_eq!(ok(&text)[0].ca_certs.as_ref().map(|c| c.len()), Some(1));
    }

    #[test]
    fn invalid_ca_certificates_are_caught_before_rustls() {
        // Valid PEM armour around bytes that are not DER: this would panic in Pingora.
        let garbage_der = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        for (pem, message) in [
            (garbage_der, "not a valid X.509 certificate"),
            ("just text\n", "no PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "invalid PEM"),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n", "invalid PEM"),
        ] {
            let text = format!("{}---\n{}", connector("x", "https://r.example", CA_REF), ca_secret(pem));
            let d = problems(&text);
            let problem = find(&d, "document 2 (Secret default/ca), data[\"ca.crt\"]", message);
            assert!(problem.hint.is_some());
        }
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", CA_REF),
            secret("ca", "Opaque", "stringData: {other: x}\n")
        );
        find(&problems(&text), "Secret default/ca", "no `ca.crt` key");
        find(
            &problems(&connector("x", "https://r.example", CA_REF)),
            "spec.caCertSecretRef.name",
            "not found",
        );
    }

    // --- documents and files ----------------------------------------------------------

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
    fn directories_are_read_sorted_and_filtered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "b.yaml", connector("b", "https://r.example", "").as_bytes());
        write(root, "a.yml", connector("a", "https://r.example", "").as_bytes());
        write(root, "c.JSON", br#"{"apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector", "metadata": {"name": "c"}, "spec": {"connectorClassName": "oci", "address": "https://r.example"}}"#);
        write(root, ".hidden.yaml", b"garbage: [");
        write(root, "notes.txt", b"garbage: [");
        fs::create_dir(root.join("..2024_01_01")).expect("mkdir");
        write(&root.join("..2024_01_01"), "x.yaml", b"garbage: [");
        fs::create_dir(root.join("nested.yaml")).expect("mkdir");
        write(&root.join("nested.yaml"), "d.yaml", b"garbage: [");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("..2024_01_01"), root.join("..data")).expect("symlink");
            let real = write(
                &root.join("..2024_01_01"),
                "e.yaml",
                connector("e", "https://r.example", "").as_bytes(),
            );
            std::os::unix::fs::symlink(real, root.join("e.yaml")).expect("symlink");
            fs::remove_file(root.join("..2024_01_01/x.yaml")).expect("rm");
        }
        let c = load_connectors(&[root.to_path_buf()]).unwrap_or_else(|d| panic!("{d}"));
        let names: Vec<&str> = c.iter().map(|c| c.id.name.as_str()).collect();
        #[cfg(unix)]
        assert_eq!(names, ["a", "b", "c", "e"]);
        #[cfg(not(unix))]
        assert_eq!(names, ["a", "b", "c"]);
        let files = directory_manifests(root, &mut Diagnostics::new());
        assert!(files.windows(2).all(|w| w[0] < w[1]));
        assert!(load_connectors(&[tempfile::tempdir().expect("tempdir").path().to_path_buf()])
            .is_ok_and(|c| c.is_empty()));
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
