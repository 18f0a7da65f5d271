//! Client configuration renderers: one typed serde model per file format, never string templates.
//!
//! Every renderer takes a [`RenderInput`] (settings, the connectors, who the file is
//! for and their proxy token) and returns the files to write, relative to the
//! directory a client would mount them in. The address helpers here
//! ([`proxy_host`], [`connector_host`], [`http_address`], [`image_prefix`]) are the
//! single definition of "where a client reaches a connector"; `check` and the
//! status page use them too.
//!
//! Facts about each client's format are in section 3 of the product spec
//! (`shared/spec/oci-connector.md`) and cited in each renderer.

mod buildkitd;
mod containerd;
mod dockerd;
mod registries_conf;
mod registry_config;

#[cfg(test)]
mod golden_tests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::config::model::{Connector, ResolverKind, Settings};
use crate::secret::Secret;

/// Which client configuration to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientConfigKind {
    /// Docker/skopeo/podman credentials: `config.json` (`docker-config` is the old name).
    RegistryConfig,
    /// Docker daemon: `daemon.json`.
    Dockerd,
    /// BuildKit daemon: `buildkitd.toml`.
    Buildkitd,
    /// containerd: `certs.d/<registry>/hosts.toml`, one per connector.
    Containerd,
    /// podman/skopeo/buildah: `registries.conf`.
    RegistriesConf,
}

impl ClientConfigKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [ClientConfigKind; 5] = [
        ClientConfigKind::RegistryConfig,
        ClientConfigKind::Dockerd,
        ClientConfigKind::Buildkitd,
        ClientConfigKind::Containerd,
        ClientConfigKind::RegistriesConf,
    ];

    /// The canonical name, as accepted on the command line and in URLs.
    pub fn name(self) -> &'static str {
        match self {
            ClientConfigKind::RegistryConfig => "registry-config",
            ClientConfigKind::Dockerd => "dockerd",
            ClientConfigKind::Buildkitd => "buildkitd",
            ClientConfigKind::Containerd => "containerd",
            ClientConfigKind::RegistriesConf => "registries-conf",
        }
    }

    /// The conventional file name (for containerd, the name inside each `certs.d/<registry>/`).
    pub fn file_name(self) -> &'static str {
        match self {
            ClientConfigKind::RegistryConfig => "config.json",
            ClientConfigKind::Dockerd => "daemon.json",
            ClientConfigKind::Buildkitd => "buildkitd.toml",
            ClientConfigKind::Containerd => "hosts.toml",
            ClientConfigKind::RegistriesConf => "registries.conf",
        }
    }

    /// Media type to serve the rendered file with.
    pub fn content_type(self) -> &'static str {
        match self {
            ClientConfigKind::RegistryConfig | ClientConfigKind::Dockerd => "application/json",
            ClientConfigKind::Buildkitd | ClientConfigKind::Containerd | ClientConfigKind::RegistriesConf => {
                "application/toml"
            }
        }
    }
}

impl fmt::Display for ClientConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration name that is not one of [`ClientConfigKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client configuration `{0}`; expected one of: registry-config (or docker-config), dockerd, buildkitd, containerd, registries-conf")]
pub struct UnknownClientConfig(pub String);

impl FromStr for ClientConfigKind {
    type Err = UnknownClientConfig;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "registry-config" | "docker-config" => Ok(ClientConfigKind::RegistryConfig),
            "dockerd" => Ok(ClientConfigKind::Dockerd),
            "buildkitd" => Ok(ClientConfigKind::Buildkitd),
            "containerd" => Ok(ClientConfigKind::Containerd),
            "registries-conf" => Ok(ClientConfigKind::RegistriesConf),
            other => Err(UnknownClientConfig(other.to_string())),
        }
    }
}

/// Everything a renderer needs.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The proxy's settings (public URL, resolver, host domain).
    pub settings: &'a Settings,
    /// The connectors the file is for, in the order they should appear.
    pub connectors: Vec<&'a Connector>,
    /// Who the token was issued to; the username in `config.json`.
    pub subject: String,
    /// The client's proxy token, or `None` when client authentication is off.
    pub token: Option<Secret>,
    /// Whether the token grants push (containerd advertises the `push` capability only then).
    pub push: bool,
}

/// Rendered files, with paths relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `(relative path, contents)`; a single file for every kind but containerd.
    pub files: Vec<(PathBuf, String)>,
}

/// Why a configuration could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No connector was selected.
    #[error("no connectors selected")]
    NoConnectors,
    /// The format only carries credentials, and there is no token to put in it.
    #[error("{kind} carries only credentials, but client authentication is off (clientAuth.mode: none), so there is no token to embed")]
    NoToken {
        /// The requested configuration.
        kind: ClientConfigKind,
    },
    /// Two connectors front the same registry, but the format has one entry per registry.
    #[error("connectors {first} and {second} both front registry {registry}; {kind} has one entry per registry, so render them separately")]
    SharedRegistry {
        /// The requested configuration.
        kind: ClientConfigKind,
        /// The registry both connectors point at.
        registry: String,
        /// The first connector (`ns/name`).
        first: String,
        /// The second connector (`ns/name`).
        second: String,
    },
    /// JSON serialisation failed (not expected for these types).
    #[error("serialising JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// TOML serialisation failed (not expected for these types).
    #[error("serialising TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// Renders `kind` for `input`.
pub fn render(kind: ClientConfigKind, input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    if input.connectors.is_empty() {
        return Err(RenderError::NoConnectors);
    }
    let single = |text: String| Rendered { files: vec![(PathBuf::from(kind.file_name()), text)] };
    match kind {
        ClientConfigKind::RegistryConfig => registry_config::render(input).map(single),
        ClientConfigKind::Dockerd => dockerd::render(input).map(single),
        ClientConfigKind::Buildkitd => buildkitd::render(input).map(single),
        ClientConfigKind::Containerd => containerd::render(input),
        ClientConfigKind::RegistriesConf => registries_conf::render(input).map(single),
    }
}

/// `host[:port]` of the proxy's public URL, the port omitted when it is the scheme's default.
pub fn proxy_host(settings: &Settings) -> String {
    let url = &settings.public_url;
    // `host_str` keeps IPv6 brackets; `port` is `None` for the scheme's default port.
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Host name (`c-<name>.<ns>.<domain>[:port]`) of a connector under the host resolver;
/// the port is the public URL's, when not the default.
pub fn connector_host(settings: &Settings, connector: &Connector) -> String {
    let host = format!("c-{}.{}.{}", connector.id.name, connector.id.namespace, settings.host_domain);
    match settings.public_url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Where clients reach `connector` through the proxy (`status.proxy.httpAddress.url`):
/// `<publicUrl>/namespaces/<ns>/connectors/<name>` for the path resolver,
/// `<scheme>://c-<name>.<ns>.<domain>[:port]` for the host resolver.
pub fn http_address(settings: &Settings, connector: &Connector) -> String {
    match settings.resolver {
        ResolverKind::Path => format!("{}{}", public_base(settings), connector_path(connector)),
        ResolverKind::Host => {
            format!("{}://{}", settings.public_url.scheme(), connector_host(settings, connector))
        }
    }
}

/// Image name prefix for `connector`: [`http_address`] without the scheme, e.g.
/// `proxy:5000/namespaces/team/connectors/hub` (images are `<prefix>/<repo>:<tag>`).
pub fn image_prefix(settings: &Settings, connector: &Connector) -> String {
    let address = http_address(settings, connector);
    match address.split_once("://") {
        Some((_, rest)) => rest.to_string(),
        None => address,
    }
}

/// The public URL without its trailing slash, e.g. `http://proxy:5000`.
fn public_base(settings: &Settings) -> String {
    settings.public_url.as_str().trim_end_matches('/').to_string()
}

/// `/namespaces/<ns>/connectors/<name>`: the path resolver's connector prefix.
fn connector_path(connector: &Connector) -> String {
    format!("/namespaces/{}/connectors/{}", connector.id.namespace, connector.id.name)
}

/// Whether clients talk plain HTTP to the proxy.
fn plain_http(settings: &Settings) -> bool {
    settings.public_url.scheme() == "http"
}

/// The registry host names a client uses for these connectors, without duplicates,
/// in connector order: the proxy's host for the path resolver, one per connector
/// for the host resolver.
fn client_hosts(input: &RenderInput<'_>) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for connector in &input.connectors {
        let host = match input.settings.resolver {
            ResolverKind::Path => proxy_host(input.settings),
            ResolverKind::Host => connector_host(input.settings, connector),
        };
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::golden_tests::{connectors, settings};
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in ClientConfigKind::ALL {
            assert_eq!(kind.name().parse::<ClientConfigKind>().unwrap(), kind);
        }
        assert_eq!("docker-config".parse::<ClientConfigKind>().unwrap(), ClientConfigKind::RegistryConfig);
        assert!("Dockerd".parse::<ClientConfigKind>().is_err());
    }

    #[test]
    fn addresses() {
        let path = settings(ResolverKind::Path, "http://proxy.example.com:5000");
        let host = settings(ResolverKind::Host, "https://proxy.example.com/");
        let [hub, _] = connectors();
        assert_eq!(proxy_host(&path), "proxy.example.com:5000");
        assert_eq!(proxy_host(&host), "proxy.example.com");
        assert_eq!(http_address(&path, &hub), "http://proxy.example.com:5000/namespaces/team/connectors/hub");
        assert_eq!(image_prefix(&path, &hub), "proxy.example.com:5000/namespaces/team/connectors/hub");
        assert_eq!(http_address(&host, &hub), "https://c-hub.team.connectors.example.com");
        assert_eq!(image_prefix(&host, &hub), "c-hub.team.connectors.example.com");
        let default_port = settings(ResolverKind::Path, "https://[::1]:443");
        assert_eq!(proxy_host(&default_port), "[::1]");
    }

    #[test]
    fn errors() {
        let s = settings(ResolverKind::Path, "http://proxy:5000");
        let [hub, _] = connectors();
        let mut input =
            RenderInput { settings: &s, connectors: vec![], subject: "ci".into(), token: None, push: false };
        assert!(matches!(render(ClientConfigKind::Dockerd, &input), Err(RenderError::NoConnectors)));
        input.connectors = vec![&hub];
        let err = render(ClientConfigKind::RegistryConfig, &input).unwrap_err();
        assert!(matches!(err, RenderError::NoToken { .. }), "{err}");
        let mut hub2 = hub.clone();
        hub2.id.name = "hub2".into();
        input.connectors = vec![&hub, &hub2];
        let err = render(ClientConfigKind::Containerd, &input).unwrap_err();
        assert!(err.to_string().contains("team/hub and team/hub2 both front registry docker.io"), "{err}");
    }
}
