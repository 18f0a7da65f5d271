//! The checks behind the conditions: secret, registry liveness and auth, proxy listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::conditions::{ConditionStatus, ConditionType, Finding};
use crate::auth::{self, token_client, AuthError, Challenge};
use crate::registry::ConnectorState;

/// Longest wait for the proxy listener to accept a connection.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(1);

/// `SecretReady`: True with or without credentials (without, the reason is `SecretOptional`).
pub(super) fn secret_finding(state: &ConnectorState) -> Finding {
    let c = &state.connector;
    match (&c.credentials, &c.secret_name) {
        (Some(cred), name) => Finding::new(
            ConditionType::SecretReady,
            ConditionStatus::True,
            "SecretFound",
            format!(
                "secret {} provides the credentials of account {}",
                name.as_deref().unwrap_or("(inline)"),
                cred.username
            ),
        ),
        (None, _) => Finding::new(
            ConditionType::SecretReady,
            ConditionStatus::True,
            "SecretOptional",
            "no secretRef: the connector accesses the registry anonymously",
        ),
    }
}

/// Probes one connector's registry: liveness, then authentication.
pub async fn probe_connector(state: &ConnectorState) -> Vec<Finding> {
    use ConditionStatus::*;
    use ConditionType::*;
    let c = &state.connector;
    let base = c.upstream.base_url();
    let mut out = vec![secret_finding(state)];
    let resp = match state.http.get(format!("{base}/v2/")).send().await {
        Ok(r) => r,
        Err(e) => {
            let e = AuthError::from_transport(e);
            out.push(Finding::new(LivenessReady, False, "Unreachable", format!("GET {base}/v2/: {e}")));
            out.push(Finding::new(AuthReady, Unknown, "RegistryUnreachable", "the registry did not answer"));
            return out;
        }
    };
    let status = resp.status().as_u16();
    if status != 200 && status != 401 {
        let msg = format!("GET {base}/v2/ answered {status} (expected 200 or 401): is this an OCI registry?");
        out.push(Finding::new(LivenessReady, False, "UnexpectedStatus", msg));
        out.push(Finding::new(
            AuthReady,
            Unknown,
            "RegistryNotAlive",
            "the registry is not answering the OCI API",
        ));
        return out;
    }
    out.push(Finding::new(LivenessReady, True, "Alive", format!("GET {base}/v2/ answered {status}")));
    let challenge = resp
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth::challenge::parse);
    out.push(auth_finding(state, status, challenge).await);
    out
}

async fn auth_finding(state: &ConnectorState, status: u16, challenge: Option<Challenge>) -> Finding {
    use ConditionStatus::*;
    use ConditionType::AuthReady;
    let c = &state.connector;
    let base = c.upstream.base_url();
    let who = match (&c.credentials, &c.secret_name) {
        (Some(cred), Some(s)) => format!("account {} (secret {s})", cred.username),
        (Some(cred), None) => format!("account {}", cred.username),
        (None, _) => "anonymous access".to_string(),
    };
    match (status, challenge) {
        (200, _) => Finding::new(
            AuthReady,
            True,
            "NoAuthRequired",
            "the registry serves GET /v2/ without authentication",
        ),
        (_, None) => Finding::new(
            AuthReady,
            False,
            "NoChallenge",
            format!("GET {base}/v2/ answered 401 without a Bearer or Basic challenge"),
        ),
        (_, Some(Challenge::Basic)) => {
            let Some(cred) = &c.credentials else {
                return Finding::new(
                    AuthReady,
                    False,
                    "CredentialsRequired",
                    "the registry requires HTTP Basic credentials and the connector has no secretRef",
                );
            };
            let req = state
                .http
                .get(format!("{base}/v2/"))
                .basic_auth(&cred.username, Some(cred.password.expose()));
            match req.send().await {
                Ok(r) if r.status().is_success() => Finding::new(
                    AuthReady,
                    True,
                    "CredentialsAccepted",
                    format!("the registry accepted {who} at /v2/"),
                ),
                Ok(r) => Finding::new(
                    AuthReady,
                    False,
                    "CredentialsRejected",
                    format!(
                        "the registry refused {who} at /v2/ ({}): check username and password",
                        r.status().as_u16()
                    ),
                ),
                Err(e) => Finding::new(
                    AuthReady,
                    False,
                    "RegistryUnreachable",
                    AuthError::from_transport(e).to_string(),
                ),
            }
        }
        (_, Some(Challenge::Bearer { realm, service, .. })) => {
            let repo =
                c.health_repository.as_deref().map(|r| crate::proxy::rewrite::upstream_repository(c, r));
            let scopes: Vec<String> = repo.iter().map(|r| format!("repository:{r}:pull")).collect();
            let what = match &repo {
                Some(r) => format!("a pull token for {r}"),
                None => "a token (no `repository` param: pull access is not checked)".to_string(),
            };
            let realm_host = url::Url::parse(&realm)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            match token_client::fetch(&state.http, &realm, &service, &scopes, c.credentials.as_ref()).await {
                Ok(_) => Finding::new(
                    AuthReady,
                    True,
                    "TokenIssued",
                    format!("{who} obtained {what} from {realm_host}"),
                ),
                Err(AuthError::Rejected { status }) => {
                    let (reason, hint) = match c.credentials {
                        Some(_) => ("CredentialsRejected", "check the username and password in the secret"),
                        None => {
                            ("AnonymousAccessDenied", "the registry needs credentials: add auth.secretRef")
                        }
                    };
                    Finding::new(
                        AuthReady,
                        False,
                        reason,
                        format!("the token endpoint {realm_host} refused {who} ({status}) asking for {what}: {hint}"),
                    )
                }
                Err(e @ (AuthError::Timeout | AuthError::Unreachable(_))) => Finding::new(
                    AuthReady,
                    False,
                    "TokenEndpointUnreachable",
                    format!("token endpoint {realm_host}: {e}"),
                ),
                Err(e) => Finding::new(
                    AuthReady,
                    False,
                    "TokenEndpointFailed",
                    format!("token endpoint {realm_host}: {e}"),
                ),
            }
        }
    }
}

/// Whether the proxy listener accepts a TCP connection.
pub async fn probe_listener(listen: SocketAddr) -> Finding {
    let target = dialable(listen);
    let result = tokio::time::timeout(LISTENER_TIMEOUT, tokio::net::TcpStream::connect(target)).await;
    match result {
        Ok(Ok(_)) => Finding::new(
            ConditionType::ProxyServiceReady,
            ConditionStatus::True,
            "Listening",
            format!("the proxy listens on {listen}"),
        ),
        Ok(Err(e)) => Finding::new(
            ConditionType::ProxyServiceReady,
            ConditionStatus::False,
            "NotListening",
            format!("cannot connect to the proxy listener {target}: {e}"),
        ),
        Err(_) => Finding::new(
            ConditionType::ProxyServiceReady,
            ConditionStatus::False,
            "NotListening",
            format!("the proxy listener {target} did not accept within {LISTENER_TIMEOUT:?}"),
        ),
    }
}

/// A wildcard listen address is reached through loopback.
pub fn dialable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_dialled_on_loopback() {
        let a: SocketAddr = "0.0.0.0:5000".parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 5000)));
        assert_eq!(dialable(a), SocketAddr::from(([127, 0, 0, 1], 5000)));
        let b = SocketAddr::from(([10, 0, 0, 1], 80));
        assert_eq!(dialable(b), b);
    }
}
