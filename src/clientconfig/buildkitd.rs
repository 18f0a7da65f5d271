//! `buildkitd`: a BuildKit daemon `buildkitd.toml` for reaching the proxy.
//!
//! Spec §3: for a plain-HTTP registry set only `http = true`; `insecure = true` means
//! HTTPS with an untrusted certificate, so it is never written. The
//! `insecure-entitlements` line mirrors the original product's mounted file and is
//! written with `http = true` only. Credentials come from `config.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{client_hosts, plain_http, RenderError, RenderInput};

#[derive(Serialize)]
struct BuildkitdToml {
    #[serde(rename = "insecure-entitlements", skip_serializing_if = "Vec::is_empty")]
    insecure_entitlements: Vec<&'static str>,
    registry: BTreeMap<String, RegistryEntry>,
}

#[derive(Serialize)]
struct RegistryEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<bool>,
}

pub(super) fn render(input: &RenderInput<'_>) -> Result<String, RenderError> {
    let http = plain_http(input.settings);
    let insecure_entitlements = if http { vec!["network.host", "security.insecure"] } else { Vec::new() };
    let registry = client_hosts(input)
        .into_iter()
        .map(|host| (host, RegistryEntry { http: http.then_some(true) }))
        .collect();
    Ok(toml::to_string(&BuildkitdToml { insecure_entitlements, registry })?)
}
