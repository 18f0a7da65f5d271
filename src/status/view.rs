//! The `/connectors` document: connector objects as the admin API serves them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::board::ReloadStatus;
use super::conditions::Condition;

/// API version of the connector objects.
pub const API_VERSION: &str = "connectors.alauda.io/v1alpha1";

/// `/connectors`: every connector with its conditions, plus the reload outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorList {
    /// [`API_VERSION`].
    pub api_version: String,
    /// `ConnectorList`.
    pub kind: String,
    /// The last reload's outcome (errors of a failed reload are here).
    pub reload: ReloadStatus,
    /// The connectors, sorted by id.
    pub items: Vec<ConnectorView>,
}

/// One connector as the admin API shows it; never a credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorView {
    /// [`API_VERSION`].
    pub api_version: String,
    /// `Connector`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// Address and auth reference.
    pub spec: SpecView,
    /// Conditions and proxy address.
    pub status: StatusView,
}

/// Object metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Connector name.
    pub name: String,
    /// Connector namespace.
    pub namespace: String,
    /// The description annotation, if any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The connector's spec without secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    /// Always `oci`.
    pub connector_class_name: String,
    /// The registry address as configured.
    pub address: String,
    /// Auth type, secret name and params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthView>,
}

/// `spec.auth` without the secret's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthView {
    /// `tokenAuth`.
    pub name: String,
    /// The secret's name (never its values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NameRef>,
    /// Auth params (`repository`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamView>,
}

/// A reference by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRef {
    /// The name.
    pub name: String,
}

/// An auth param.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamView {
    /// Param name.
    pub name: String,
    /// Param value.
    pub value: String,
}

/// `status` of a connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The conditions.
    pub conditions: Vec<Condition>,
    /// Where clients reach the connector.
    pub proxy: ProxyView,
    /// When this proxy instance first loaded the connector (the table's AGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// When the connector was last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
}

/// `status.proxy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyView {
    /// `status.proxy.httpAddress`.
    pub http_address: UrlView,
}

/// `{url: ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UrlView {
    /// The URL.
    pub url: String,
}
