//! `dockerd`: a Docker daemon `daemon.json` that lets the daemon reach the proxy.
//!
//! Spec §3: `insecure-registries` takes `host[:port]` (needed only for plain HTTP);
//! `registry-mirrors` applies to Docker Hub pulls only and must be a root URL, so a
//! mirror is listed only for Docker Hub connectors under the host resolver (the path
//! resolver's connector URLs have a path). Credentials live in `config.json`, not here.

use serde::Serialize;

use super::{client_hosts, http_address, plain_http, RenderError, RenderInput};
use crate::config::model::ResolverKind;

#[derive(Serialize)]
struct DaemonJson {
    #[serde(rename = "insecure-registries", skip_serializing_if = "Vec::is_empty")]
    insecure_registries: Vec<String>,
    #[serde(rename = "registry-mirrors", skip_serializing_if = "Vec::is_empty")]
    registry_mirrors: Vec<String>,
}

pub(super) fn render(input: &RenderInput<'_>) -> Result<String, RenderError> {
    let insecure_registries = if plain_http(input.settings) { client_hosts(input) } else { Vec::new() };
    let registry_mirrors = match input.settings.resolver {
        ResolverKind::Host => input
            .connectors
            .iter()
            .filter(|c| c.docker_hub)
            .map(|c| http_address(input.settings, c))
            .collect(),
        ResolverKind::Path => Vec::new(),
    };
    let mut text = serde_json::to_string_pretty(&DaemonJson { insecure_registries, registry_mirrors })?;
    text.push('\n');
    Ok(text)
}
