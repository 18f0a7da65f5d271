//! `registries-conf`: a containers-image `registries.conf` (podman, skopeo, buildah).
//!
//! Spec §3: one `[[registry]]` per connector with `prefix` and `location` set to the
//! connector's image prefix, and `insecure = true` when the proxy is plain HTTP.
//! Credentials come from `config.json` (`--authfile`), keyed by the same host.

use serde::Serialize;

use super::{image_prefix, plain_http, RenderError, RenderInput};

#[derive(Serialize)]
struct RegistriesConf {
    registry: Vec<Registry>,
}

#[derive(Serialize)]
struct Registry {
    prefix: String,
    location: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
}

pub(super) fn render(input: &RenderInput<'_>) -> Result<String, RenderError> {
    let insecure = plain_http(input.settings);
    let registry = input
        .connectors
        .iter()
        .map(|c| {
            let prefix = image_prefix(input.settings, c);
            Registry { location: prefix.clone(), prefix, insecure }
        })
        .collect();
    Ok(toml::to_string(&RegistriesConf { registry })?)
}
