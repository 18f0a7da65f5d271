//! Responses the proxy writes itself (OCI errors, `GET /v2/`, rendered files),
//! built once as a [`Reply`] and written through Pingora's session or, on the
//! front door, serialised straight to HTTP/1.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::oci_error::OciError;

/// A complete response the proxy answers itself.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length` (which follows the body).
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body (not sent for HEAD).
    pub body: Bytes,
}

const API_VERSION: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");
const JSON: (&str, &str) = ("Content-Type", "application/json");

impl Reply {
    /// An OCI error response.
    pub fn error(err: &OciError) -> Reply {
        Reply { status: err.status, headers: vec![JSON, API_VERSION], body: err.body() }
    }

    /// `GET /v2/`: the API version check.
    pub fn api_base() -> Reply {
        Reply { status: 200, headers: vec![JSON, API_VERSION], body: Bytes::from_static(b"{}") }
    }

    /// 401 with a Basic challenge for the proxy's own realm.
    pub fn unauthorized(err: &OciError) -> Reply {
        let mut reply = Reply::error(err);
        reply.headers.push(("WWW-Authenticate", r#"Basic realm="oci-connector""#));
        reply
    }

    /// A rendered file of the given content type.
    pub fn file(content_type: &'static str, text: String) -> Reply {
        Reply { status: 200, headers: vec![("Content-Type", content_type)], body: Bytes::from(text) }
    }

    /// The response as Pingora's header (with `Content-Length`).
    fn pingora_header(&self) -> Result<ResponseHeader> {
        let mut h = ResponseHeader::build(self.status, Some(self.headers.len() + 1))?;
        for (name, value) in &self.headers {
            h.insert_header(*name, *value)?;
        }
        h.insert_header("Content-Length", self.body.len().to_string())?;
        Ok(h)
    }

    /// The response serialised as HTTP/1.1 (head, and the body unless
    /// `head_only`), with `connection` as the `Connection` header if given.
    pub fn h1(&self, connection: Option<&str>, head_only: bool) -> Vec<u8> {
        use std::io::Write;
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut out = Vec::with_capacity(160 + self.body.len());
        let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        if let Some(c) = connection {
            let _ = write!(out, "Connection: {c}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Writes `reply` through Pingora's session (no body for HEAD).
pub async fn send(session: &mut Session, reply: Reply) -> Result<()> {
    let header = reply.pingora_header()?;
    let head_only = session.req_header().method == http::Method::HEAD;
    let body = reply.body;
    session.write_response_header(Box::new(header), head_only || body.is_empty()).await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h1_serialises_head_and_body() {
        let err = OciError::new(401, "UNAUTHORIZED", "no token");
        let reply = Reply::unauthorized(&err);
        let text = String::from_utf8(reply.h1(Some("keep-alive"), false)).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head end");
        assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
        assert!(head.contains("\r\nWWW-Authenticate: Basic realm=\"oci-connector\""));
        assert!(head.contains("\r\nDocker-Distribution-API-Version: registry/2.0"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(head.ends_with("\r\nConnection: keep-alive"));
        assert_eq!(body.as_bytes(), &err.body()[..]);
    }

    #[test]
    fn h1_head_only_keeps_the_length_and_drops_the_body() {
        let text = String::from_utf8(Reply::api_base().h1(None, true)).expect("utf-8");
        assert!(text.ends_with("Content-Length: 2\r\n\r\n"), "{text}");
        assert!(!text.contains("Connection"));
    }
}
