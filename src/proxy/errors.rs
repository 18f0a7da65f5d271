//! The OCI errors the proxy produces, each naming the connector and never a credential.

use pingora_error::{Error, ErrorSource, ErrorType};

use super::oci_error::OciError;
use super::RequestCtx;
use crate::auth::{self, AuthError};
use crate::registry::ConnectorState;
use crate::routing::Selector;

/// 404 for a connector (or mirrored registry) the snapshot does not have.
pub(super) fn unknown_connector(sel: &Selector) -> OciError {
    let (what, hint) = match sel {
        Selector::Id(id) => (
            format!("connector {id} not found"),
            "check the namespace and name in the image reference; `oci-connector check` lists the connectors",
        ),
        Selector::RegistryHost(h) => (
            format!("no connector serves registry {h}"),
            "add a connector whose spec.address is that registry",
        ),
    };
    OciError::new(404, "NAME_UNKNOWN", what).hint(hint)
}

/// Why no upstream token could be had: unreachable (502), timed out (504), refused (401/403).
pub(super) fn auth_failed(state: &ConnectorState, e: &AuthError) -> OciError {
    let id = &state.connector.id;
    let msg = format!("connector {id}: {e}");
    match e {
        AuthError::Rejected { status } => {
            let code = if *status == 403 { "DENIED" } else { "UNAUTHORIZED" };
            OciError::new(*status, code, msg).hint(secret_hint(state))
        }
        AuthError::Timeout => OciError::new(504, "UNAVAILABLE", msg).hint(address_hint(state)),
        _ => OciError::new(502, "UNAVAILABLE", msg).hint(address_hint(state)),
    }
}

/// The registry refused a request made with the connector's credentials.
/// A token that lacks the scope (`insufficient_scope`) or a 403 means the
/// account may not do this: `DENIED`; anything else is `UNAUTHORIZED`.
pub(super) fn refused(
    state: &ConnectorState,
    ctx: &RequestCtx,
    status: u16,
    challenge: Option<&auth::Challenge>,
) -> OciError {
    let id = &state.connector.id;
    let write = ctx.scopes.iter().any(|s| s.ends_with("push") || s.ends_with("delete"));
    let what = if write { "push to" } else { "pull from" };
    let repo = &ctx.upstream_repo;
    let insufficient = matches!(challenge, Some(auth::Challenge::Bearer { error: Some(e), .. }) if e == "insufficient_scope");
    let (code, message) = match (&state.connector.credentials, status) {
        (None, _) => (
            "UNAUTHORIZED",
            format!("connector {id} is anonymous and the registry requires credentials to {what} {repo}"),
        ),
        (Some(_), 403) => ("DENIED", format!("connector {id}: the registry denied the connector's account to {what} {repo}")),
        (Some(_), _) if insufficient => (
            "DENIED",
            format!("connector {id}: the connector's account may not {what} {repo} (the registry granted too little access)"),
        ),
        (Some(_), _) => (
            "UNAUTHORIZED",
            format!("connector {id}: the registry refused the connector's credentials to {what} {repo}"),
        ),
    };
    OciError::new(status, code, message).hint(secret_hint(state))
}

/// A redirect chain longer than the proxy follows.
pub(super) fn too_many_redirects(state: &ConnectorState) -> OciError {
    OciError::new(
        502,
        "UNAVAILABLE",
        format!("connector {}: the registry redirected too many times", state.connector.id),
    )
}

/// A redirect that cannot be followed because the body was already streamed.
pub(super) fn redirect_failed(state: &ConnectorState) -> OciError {
    OciError::new(
        502,
        "UNAVAILABLE",
        format!(
            "connector {}: cannot follow the registry's redirect with this request body",
            state.connector.id
        ),
    )
}

/// An error the proxy cannot attribute to either side.
pub(super) fn internal(ctx: &RequestCtx) -> OciError {
    OciError::new(500, "UNKNOWN", format!("connector {}: internal error", ctx.connector_label()))
}

/// Turns a Pingora error into what the client is told.
pub(super) fn classify(e: &Error, ctx: &RequestCtx) -> Option<OciError> {
    use ErrorType::*;
    let who = ctx.connector_label();
    let target = ctx.connector.as_ref().map(|s| s.connector.upstream.authority()).unwrap_or_default();
    let (status, code, msg) = match e.etype() {
        ConnectTimedout => (504, "UNAVAILABLE", format!("connector {who}: timed out connecting to {target}")),
        ReadTimedout | WriteTimedout => {
            (504, "UNAVAILABLE", format!("connector {who}: registry {target} did not answer in time"))
        }
        ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure | InvalidCert
        | TLSHandshakeTimedout | ConnectProxyFailure | SocketError | BindError => (
            502,
            "UNAVAILABLE",
            format!("connector {who}: cannot connect to registry {target} ({})", e.etype().as_str()),
        ),
        HTTPStatus(c) => (*c, "UNKNOWN", format!("connector {who}: request failed")),
        _ => match e.esource() {
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => return None,
                _ => (400, "UNSUPPORTED", "malformed request".to_string()),
            },
            ErrorSource::Upstream => (
                502,
                "UNAVAILABLE",
                format!("connector {who}: registry {target} failed ({})", e.etype().as_str()),
            ),
            _ => return Some(internal(ctx)),
        },
    };
    Some(OciError::new(status, code, msg))
}

fn secret_hint(state: &ConnectorState) -> String {
    let c = &state.connector;
    match &c.secret_name {
        Some(s) => {
            format!("check the username/password in secret {}/{s} and the account's rights", c.id.namespace)
        }
        None => "add auth.secretRef with credentials the registry accepts".to_string(),
    }
}

fn address_hint(state: &ConnectorState) -> String {
    format!("check that {} is reachable from the proxy", state.connector.address)
}
