//! OCI error responses: `{"errors":[{"code","message","detail"}]}` with the right status.

use bytes::Bytes;
use serde::Serialize;

/// One error the proxy reports to a client, in the distribution spec's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    /// HTTP status.
    pub status: u16,
    /// Spec error code (`NAME_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, ...).
    pub code: &'static str,
    /// What went wrong, naming the connector where there is one.
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Detail<'a>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    hint: &'a str,
}

impl OciError {
    /// Builds an error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        OciError { status, code, message: message.into(), hint: None }
    }

    /// Adds a hint (sent as `detail.hint`).
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let body = Body {
            errors: [Entry {
                code: self.code,
                message: &self.message,
                detail: self.hint.as_deref().map(|hint| Detail { hint }),
            }],
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_spec_shape() {
        let e = OciError::new(404, "NAME_UNKNOWN", "connector ns/x not found").hint("check the name");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "connector ns/x not found");
        assert_eq!(v["errors"][0]["detail"]["hint"], "check the name");
        let plain: serde_json::Value =
            serde_json::from_slice(&OciError::new(502, "UNAVAILABLE", "m").body()).expect("json");
        assert!(plain["errors"][0].get("detail").is_none());
    }
}
