//! `registry-config` (old name `docker-config`): a Docker `config.json` holding the proxy token.
//!
//! Spec §1/§3: `{"auths": {"<proxy host[:port]>": {"auth": "<base64 of user:token>"}}}`.
//! Docker, skopeo (`--authfile`), podman and BuildKit all read this format.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

use super::{client_hosts, ClientConfigKind, RenderError, RenderInput};

#[derive(Serialize)]
struct ConfigJson {
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Serialize)]
struct AuthEntry {
    /// base64 of `<username>:<password>`; the proxy ignores the username.
    auth: String,
}

pub(super) fn render(input: &RenderInput<'_>) -> Result<String, RenderError> {
    let token =
        input.token.as_ref().ok_or(RenderError::NoToken { kind: ClientConfigKind::RegistryConfig })?;
    let auth = STANDARD.encode(format!("{}:{}", input.subject, token.expose()));
    let auths =
        client_hosts(input).into_iter().map(|host| (host, AuthEntry { auth: auth.clone() })).collect();
    let mut text = serde_json::to_string_pretty(&ConfigJson { auths })?;
    text.push('\n');
    Ok(text)
}
