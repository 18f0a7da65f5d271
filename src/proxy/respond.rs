//! Responses the proxy writes itself: OCI errors, `GET /v2/`, rendered files.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::oci_error::OciError;

/// Writes a complete response (no body for HEAD).
pub async fn send(session: &mut Session, mut header: ResponseHeader, body: Bytes) -> Result<()> {
    header.insert_header("Content-Length", body.len().to_string())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(header), head_only || body.is_empty()).await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes an OCI error response.
pub async fn error(session: &mut Session, err: &OciError) -> Result<()> {
    let body = err.body();
    let header = err.header(body.len())?;
    send(session, header, body).await
}

/// Answers `GET /v2/`: the API version check.
pub async fn api_base(session: &mut Session) -> Result<()> {
    let mut h = ResponseHeader::build(200, Some(3))?;
    h.insert_header("Content-Type", "application/json")?;
    h.insert_header("Docker-Distribution-API-Version", "registry/2.0")?;
    send(session, h, Bytes::from_static(b"{}")).await
}

/// Answers 401 with a Basic challenge for the proxy's own realm.
pub async fn unauthorized(session: &mut Session, err: &OciError) -> Result<()> {
    let body = err.body();
    let mut header = err.header(body.len())?;
    header.insert_header("WWW-Authenticate", r#"Basic realm="oci-connector""#)?;
    send(session, header, body).await
}
