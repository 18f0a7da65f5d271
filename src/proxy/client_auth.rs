//! Client admission: who may use which connector, from the proxy token a client presents.

use std::time::SystemTime;

use crate::auth::client_token::{credential_from_authorization, Grant, KeySet, TokenRejection};
use crate::config::ConnectorId;

use super::oci_error::OciError;

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Client authentication is off: everyone may use every connector.
    Open,
    /// A valid token with this grant.
    Granted(Grant),
}

impl Admission {
    /// Whether this admission may use `id` (for a push when `push`).
    pub fn allows(&self, id: &ConnectorId, push: bool) -> Result<(), OciError> {
        match self {
            Admission::Open => Ok(()),
            Admission::Granted(g) if g.allows(id, push) => Ok(()),
            Admission::Granted(g) => {
                let action = if push { "push to" } else { "pull from" };
                Err(OciError::new(403, "DENIED", format!("this token may not {action} connector {id}")).hint(
                    if g.allows(id, false) {
                        "ask for a token with push rights (`oci-connector token --push`)"
                    } else {
                        "ask for a token that grants this connector"
                    },
                ))
            }
        }
    }
}

/// Checks the `Authorization` header against `keys` (`None`: authentication off).
/// Every failure is a 401 `UNAUTHORIZED` whose message says why, never echoing the token.
/// `now` is read only when there is a token to check.
pub fn admit(
    keys: Option<&KeySet>,
    authorization: Option<&[u8]>,
    now: impl FnOnce() -> SystemTime,
) -> Result<Admission, OciError> {
    let Some(keys) = keys else { return Ok(Admission::Open) };
    let unauthorized = |why: &str| {
        OciError::new(401, "UNAUTHORIZED", format!("authentication required: {why}"))
            .hint("log in with a proxy token: any username, the token as password (`oci-connector token`)")
    };
    let token = authorization
        .and_then(credential_from_authorization)
        .ok_or_else(|| unauthorized("no proxy token presented"))?;
    match keys.verify(token.expose(), now()) {
        Ok(grant) => Ok(Admission::Granted(grant)),
        Err(TokenRejection::Expired) => Err(unauthorized("the proxy token has expired")),
        Err(TokenRejection::Malformed) => Err(unauthorized("the proxy token is malformed")),
        Err(TokenRejection::UnknownKey | TokenRejection::BadSignature) => {
            Err(unauthorized("the proxy token's signature is not valid"))
        }
    }
}

/// Whether a method writes (needs push rights).
pub fn is_write(method: &http::Method) -> bool {
    method != http::Method::GET && method != http::Method::HEAD
}
