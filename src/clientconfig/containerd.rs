//! `containerd`: `certs.d/<registry>/hosts.toml` files that send a registry's traffic to the proxy.
//!
//! Spec §3 and containerd's `docs/hosts.md`: containerd looks up
//! `<config_path>/<registry host[:port]>/hosts.toml` for the registry named in the
//! image reference (`docker.io` for Docker Hub), tries each `[host."<url>"]` first
//! and falls back to `server`. `capabilities` says what a host may do (`push` only
//! when the token grants it). One file per connector, so two connectors in front of
//! the same registry cannot be rendered together.
//!
//! Requests to a host that differs from the registry carry `?ns=<registry host>`
//! (containerd's mirror convention). With the path resolver the host URL is
//! `<publicUrl>/v2/namespaces/<ns>/connectors/<name>` and `override_path = true`
//! tells containerd that this path already *is* the API root (it does not append
//! `/v2`), so the proxy receives
//! `/v2/namespaces/<ns>/connectors/<name>/<repo>/manifests/<ref>?ns=<registry>`,
//! an ordinary path-resolver request plus the `ns` parameter, which the proxy must
//! accept (and may use for containerd mirror mode). With the host resolver the host
//! URL is the connector's root URL and containerd adds `/v2` itself.
//!
//! containerd sends a host's `[host."<url>".header]` entries with every request to
//! that host (and to no other), so the client token travels as a static
//! `Authorization: Bearer` header and `ctr --hosts-dir` needs no `--user`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{
    connector_host, connector_path, public_base, ClientConfigKind, RenderError, RenderInput, Rendered,
};
use crate::config::model::{Connector, ResolverKind, Settings};

#[derive(Serialize)]
struct HostsToml {
    /// Fallback when every host fails: the registry itself.
    server: String,
    host: BTreeMap<String, Host>,
}

#[derive(Serialize)]
struct Host {
    capabilities: Vec<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    override_path: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    header: BTreeMap<&'static str, String>,
}

/// The registry namespace containerd derives from an image reference: `docker.io`
/// for Docker Hub, else `host[:port]` of the registry.
fn registry_namespace(connector: &Connector) -> String {
    if connector.docker_hub {
        "docker.io".to_string()
    } else {
        connector.upstream.authority()
    }
}

/// The `[host."..."]` URL for a connector and whether it needs `override_path`.
fn host_url(settings: &Settings, connector: &Connector) -> (String, bool) {
    match settings.resolver {
        ResolverKind::Path => (format!("{}/v2{}", public_base(settings), connector_path(connector)), true),
        ResolverKind::Host => {
            (format!("{}://{}", settings.public_url.scheme(), connector_host(settings, connector)), false)
        }
    }
}

pub(super) fn render(input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut seen: Vec<(String, &Connector)> = Vec::new();
    for connector in &input.connectors {
        let registry = registry_namespace(connector);
        if let Some((_, first)) = seen.iter().find(|(r, _)| *r == registry) {
            return Err(RenderError::SharedRegistry {
                kind: ClientConfigKind::Containerd,
                registry,
                first: first.id.to_string(),
                second: connector.id.to_string(),
            });
        }
        let (url, override_path) = host_url(input.settings, connector);
        let mut capabilities = vec!["pull", "resolve"];
        if input.push {
            capabilities.push("push");
        }
        let mut header = BTreeMap::new();
        if let Some(token) = &input.token {
            header.insert("Authorization", format!("Bearer {}", token.expose()));
        }
        let hosts = HostsToml {
            server: connector.upstream.base_url(),
            host: BTreeMap::from([(url, Host { capabilities, override_path, header })]),
        };
        let path = PathBuf::from("certs.d").join(&registry).join(ClientConfigKind::Containerd.file_name());
        files.push((path, toml::to_string(&hosts)?));
        seen.push((registry, connector));
    }
    Ok(Rendered { files })
}
