//! The file schema: serde types that mirror the settings file and connector manifests.
//!
//! Everything is optional here so that [`load`](mod@super::load) can report a missing value
//! with a location and a hint instead of serde stopping at the first one. Unknown
//! keys are rejected, so a typo is never silently ignored.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSettings {
    /// Listener address, `ip:port`.
    pub listen: Option<String>,
    /// How clients reach the proxy.
    pub public_url: Option<String>,
    /// The admin listener.
    pub admin: Option<RawAdmin>,
    /// Where the connector manifests are.
    pub connectors: Option<RawConnectorSources>,
    /// `path` or `host`.
    pub resolver: Option<RawResolver>,
    /// Settings of the host resolver.
    pub host_resolver: Option<RawHostResolver>,
    /// How clients authenticate to the proxy.
    pub client_auth: Option<RawClientAuth>,
    /// Allow unauthenticated clients on a non-loopback listener.
    pub allow_anonymous_clients: Option<bool>,
    /// Timeouts towards registries.
    pub upstream: Option<RawUpstream>,
    /// Worker threads.
    pub threads: Option<usize>,
}

/// `admin:` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAdmin {
    /// Admin listener address, `ip:port`.
    pub listen: Option<String>,
}

/// `connectors:` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConnectorSources {
    /// Manifest files or directories, relative to the settings file.
    pub paths: Option<Vec<String>>,
}

/// `resolver:` in the settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawResolver {
    /// Connector named in the request path.
    Path,
    /// Connector named in the `Host` header.
    Host,
}

/// `hostResolver:` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHostResolver {
    /// Domain under which connector host names live.
    pub domain: Option<String>,
}

/// `clientAuth:` in the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClientAuth {
    /// `none` or `token`.
    pub mode: Option<RawClientAuthMode>,
    /// Token signing/verification keys, relative to the settings file.
    pub key_files: Option<Vec<String>>,
}

/// `clientAuth.mode:` in the settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawClientAuthMode {
    /// No client authentication.
    None,
    /// Signed proxy tokens.
    Token,
}

/// `upstream:` in the settings file; durations such as `5s`, `500ms`, `2m`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawUpstream {
    /// TCP and TLS connect timeout.
    pub connect_timeout: Option<String>,
    /// Longest wait for a read from the registry.
    pub read_timeout: Option<String>,
    /// Timeout of a token request.
    pub token_timeout: Option<String>,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Option<String>,
    /// Serve GET/HEAD on the fast lane (default true).
    pub fast_lane: Option<bool>,
    /// `SO_RCVBUF` of upstream connections: a size (`4MiB`) or `auto`.
    pub receive_buffer: Option<String>,
}

/// One document of a manifest file: a `Connector` or a `Secret`.
///
/// Both kinds share this one type so that serde reads each document once, with
/// paths and line numbers in its errors; which fields belong to which kind is
/// checked afterwards.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDocument {
    /// `connectors.alauda.io/v1alpha1` or `v1`.
    pub api_version: Option<String>,
    /// `Connector` or `Secret`.
    pub kind: Option<String>,
    /// Name, namespace, annotations.
    pub metadata: Option<RawMetadata>,
    /// Connector only: the connector's definition.
    pub spec: Option<RawConnectorSpec>,
    /// Connector only: written by a controller; ignored.
    pub status: Option<IgnoredAny>,
    /// Secret only: the secret's type.
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    /// Secret only: base64-encoded values.
    pub data: Option<BTreeMap<String, String>>,
    /// Secret only: plain values (win over `data`).
    pub string_data: Option<BTreeMap<String, String>>,
    /// Secret only: ignored.
    pub immutable: Option<IgnoredAny>,
}

/// Kubernetes object metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMetadata {
    /// Object name.
    pub name: Option<String>,
    /// Namespace; `default` when absent.
    pub namespace: Option<String>,
    /// Annotations; a few configure the connector.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Ignored.
    pub labels: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored so that `kubectl get -o yaml` output loads.
    pub uid: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub resource_version: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub generation: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub creation_timestamp: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub deletion_timestamp: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub deletion_grace_period_seconds: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub generate_name: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub self_link: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub owner_references: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub finalizers: Option<IgnoredAny>,
    /// Set by Kubernetes; ignored.
    pub managed_fields: Option<IgnoredAny>,
}

/// A connector's `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConnectorSpec {
    /// Must be `oci`.
    pub connector_class_name: Option<String>,
    /// Registry URL.
    pub address: Option<String>,
    /// Authentication; absent for anonymous access.
    pub auth: Option<RawAuth>,
    /// Secret holding extra CA certificates (`ca.crt`).
    pub ca_cert_secret_ref: Option<RawLocalSecretRef>,
}

/// A connector's `spec.auth`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAuth {
    /// Must be `tokenAuth` when present.
    pub name: Option<String>,
    /// Secret with `username` and `password`; absent for anonymous access.
    pub secret_ref: Option<RawSecretRef>,
    /// Auth parameters, e.g. `repository`.
    pub params: Option<Vec<RawParam>>,
}

/// A reference to a secret, optionally in another namespace.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSecretRef {
    /// Secret name.
    pub name: Option<String>,
    /// Secret namespace; the connector's when absent.
    pub namespace: Option<String>,
}

/// A reference to a secret in the connector's namespace.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLocalSecretRef {
    /// Secret name.
    pub name: Option<String>,
}

/// One `{name, value}` auth parameter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawParam {
    /// Parameter name.
    pub name: Option<String>,
    /// Parameter value.
    pub value: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reject_unknown_keys_with_a_path() {
        let err = serde_yaml::from_str::<RawSettings>("listen: x\nclientAuth:\n  mdoe: token\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("clientAuth: unknown field `mdoe`"), "{err}");
    }

    #[test]
    fn documents_read_both_kinds() {
        let doc: RawDocument = serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, uid: abc}\ntype: Opaque\nstringData: {a: b}\n",
        )
        .unwrap_or_default();
        assert_eq!(doc.kind.as_deref(), Some("Secret"));
        assert_eq!(doc.string_data.unwrap_or_default().get("a").map(String::as_str), Some("b"));
    }
}
