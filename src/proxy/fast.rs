//! One GET or HEAD served on the fast lane: the same decisions as the general
//! path (token refresh on an unexpected 401, OCI errors naming the connector,
//! redirects, `Location`/`Link` rewriting), made on our own HTTP/1.1 exchange.
//! Bodies go out as the registry framed them: by length (spliced when large),
//! chunked (relayed verbatim, or de-chunked for HTTP/1.0 clients), or until close.

use std::future::Future;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use http::Method;
use pingora_error::{Error, Result};
use pingora_proxy::Session;

use super::fastlane::h1::{self, Framing};
use super::fastlane::{self, CopyError, Exchange, PoolKey, Relayed};
use super::oci_error::OciError;
use super::respond::{self, Reply};
use super::{client_origin, errors, is_redirect, request_host, Proxy, RequestCtx};
use crate::auth;
use crate::config::{RedirectPolicy, Scheme};
use crate::registry::ConnectorState;

/// What the general path must do after the fast lane gave up on a request.
pub(super) enum Handoff {
    /// The response was written (or the client is gone): the request is over.
    Done,
    /// Nothing was written: Pingora's general path serves the request
    /// (a redirect to follow).
    General,
}

/// The client side of a fast-lane request: Pingora's session, or a request
/// the front door read itself ([`super::front`]).
pub(super) trait Downstream: Send {
    /// The request method (`GET` or `HEAD` on the fast lane).
    fn method(&self) -> &Method;
    /// Whether the client speaks HTTP/1.0 (which cannot take chunks).
    fn http10(&self) -> bool;
    /// The `Host` the client used, empty if none.
    fn host(&self) -> &str;
    /// The client's request headers (sent upstream minus credentials and hop-by-hop ones).
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])>;
    /// Whether the client connection stays open after this response.
    fn keeps_alive(&self) -> bool;
    /// Closes the client connection after this response.
    fn close_after(&mut self);
    /// Writes a response of the proxy's own.
    fn answer(&mut self, reply: Reply) -> impl Future<Output = Result<()>> + Send;
    /// The client socket for writing the response head and body: `fd` where
    /// the downstream has no registered socket of its own (Pingora's session).
    fn client(&self, fd: RawFd, timeout: Duration) -> fastlane::Client<'_>;
}

impl Downstream for Session {
    fn method(&self) -> &Method {
        &self.req_header().method
    }

    fn http10(&self) -> bool {
        self.req_header().version == http::Version::HTTP_10
    }

    fn host(&self) -> &str {
        request_host(self.req_header())
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.req_header().headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    fn keeps_alive(&self) -> bool {
        self.as_downstream().get_keepalive().is_some()
    }

    fn close_after(&mut self) {
        self.set_keepalive(None);
    }

    fn answer(&mut self, reply: Reply) -> impl Future<Output = Result<()>> + Send {
        respond::send(self, reply)
    }

    fn client(&self, fd: RawFd, timeout: Duration) -> fastlane::Client<'_> {
        fastlane::Client::new(fd, timeout)
    }
}

impl Proxy {
    /// The client socket when this request may take the fast lane.
    pub(super) fn fast_lane_fd(&self, session: &Session, state: &ConnectorState) -> Option<RawFd> {
        let req = session.req_header();
        let eligible = self.fast_lane_reaches(state)
            && (req.method == http::Method::GET || req.method == http::Method::HEAD)
            && !fastlane::has_body(req);
        eligible.then(|| fastlane::client_fd(session)).flatten()
    }

    /// Whether the fast lane is on and can reach this connector's registry
    /// (plain HTTP, or TLS with a client configuration of its own).
    pub(super) fn fast_lane_reaches(&self, state: &ConnectorState) -> bool {
        self.settings.upstream.fast_lane
            && (state.connector.upstream.scheme == Scheme::Http || state.fast_tls.is_some())
    }

    /// Serves the request on the fast lane, writing to the client socket `fd`.
    pub(super) async fn serve_fast<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut RequestCtx,
        state: &ConnectorState,
        fd: RawFd,
    ) -> Result<Handoff> {
        let upstream = &state.connector.upstream;
        let addr = match self.resolver.resolve(&upstream.host, upstream.port).await {
            Ok(a) => a,
            Err(e) => return self.fail_fast(session, ctx, &e).await,
        };
        let head_request = session.method() == Method::HEAD;
        // TLS connections are pooled per connector identity: one verified with
        // this connector's CAs must not serve a connector without them.
        let key = PoolKey::here(addr, state.fast_tls.as_ref().map(|_| state.cache_key.clone()));
        let mut x = loop {
            let request = h1::request_head(
                session.method().as_str(),
                &ctx.upstream_uri,
                &state.authority,
                ctx.auth.header.as_ref().map(|h| h.expose()),
                session.headers(),
            );
            let sent = Instant::now();
            ctx.upstream_started.get_or_insert(sent);
            let tls = state.fast_tls.as_ref();
            let x = match self.fastlane.exchange(&key, tls, &request, head_request, sent).await {
                Ok(x) => x,
                Err(e) => return self.fail_fast(session, ctx, &e).await,
            };
            let answered = Instant::now();
            let status = x.head.status;
            ctx.upstream_status = Some(status);
            ctx.upstream_answered = Some(answered);
            if status != 401 && status != 403 {
                break x;
            }
            let challenge = x.head.header(&x.buf, "WWW-Authenticate").and_then(auth::challenge::parse);
            if status == 401 && !ctx.auth_retried {
                // Same recovery as the general path: forget the token, retry once.
                self.forget_token(state, ctx, challenge.as_ref()).await;
                match self.auth.authorization(state, &ctx.scopes).await {
                    Ok(a) => ctx.auth = a,
                    Err(e) => {
                        self.reject_fast(session, ctx, errors::auth_failed(state, &e)).await?;
                        return Ok(Handoff::Done);
                    }
                }
                continue;
            }
            let err = errors::refused(state, ctx, status, challenge.as_ref());
            self.reject_fast(session, ctx, err).await?;
            return Ok(Handoff::Done);
        };

        let status = x.head.status;
        if is_redirect_status(status) && state.connector.redirects == RedirectPolicy::Follow {
            if let Some(next) = x.head.header(&x.buf, "Location").and_then(|l| self.redirect_url(l, ctx)) {
                ctx.redirects = 1;
                ctx.redirect = Some(next);
                return Ok(Handoff::General);
            }
        }
        let framing = x.head.framing;
        if let Framing::Length(n) = framing {
            if n > 0 && n <= fastlane::SMALL_BODY {
                // Read it whole: a registry failing mid-body still gets a clean 502.
                if let Err(e) = self.fastlane.read_body(&mut x, n).await {
                    return self.fail_fast(session, ctx, &e).await;
                }
            }
        }
        // An HTTP/1.0 client cannot take chunks (RFC 9112 6.1): it gets the data
        // and the end of the body is the end of the connection, as for an
        // unframed body.
        let dechunk = session.http10() && framing == Framing::Chunked;
        if dechunk || framing == Framing::UntilClose {
            session.close_after();
        }
        // A body that came with the head leaves the connection idle from then
        // on; a streamed one when the stream ends (then the clock is read).
        let streamed = match framing {
            Framing::Empty => false,
            Framing::Length(n) => (x.body_prefix().len() as u64) < n,
            Framing::Chunked | Framing::UntilClose => true,
        };
        let head = self.client_head(session, ctx, state, &x, dechunk);
        ctx.status = Some(status);
        let mut client = session.client(fd, self.fastlane.io_timeout());
        let result = match framing {
            Framing::Empty | Framing::Length(_) => {
                let length = if let Framing::Length(n) = framing { n } else { 0 };
                let prefix_len = x.body_prefix().len().min(length as usize);
                let clean = x.body_prefix().len() as u64 <= length;
                match client.write_all(&[&head, &x.body_prefix()[..prefix_len]]).await {
                    Err(e) => Err(CopyError::Client(e)),
                    Ok(()) if (prefix_len as u64) < length => {
                        let rest = length - prefix_len as u64;
                        self.fastlane
                            .relay_length(&mut x, &mut client, rest)
                            .await
                            .map(|()| Relayed { bytes: length, clean })
                    }
                    Ok(()) => Ok(Relayed { bytes: length, clean }),
                }
            }
            Framing::Chunked | Framing::UntilClose => match client.write_all(&[&head]).await {
                Err(e) => Err(CopyError::Client(e)),
                Ok(()) if framing == Framing::Chunked => {
                    self.fastlane.relay_chunked(&mut x, &mut client, dechunk).await
                }
                Ok(()) => self.fastlane.relay_until_close(&mut x, &mut client).await,
            },
        };
        match result {
            Ok(relayed) => {
                ctx.bytes_out = relayed.bytes;
                let idle_since = match (streamed, ctx.upstream_answered) {
                    (false, Some(answered)) => answered,
                    _ => Instant::now(),
                };
                self.fastlane.release(x, relayed.clean, idle_since);
            }
            Err(e) => {
                // The head is out: the only honest end is closing the client
                // connection, so it sees a short body rather than a wrong one.
                session.close_after();
                ctx.aborted = Some(match &e {
                    CopyError::Upstream(_) => "upstream body",
                    CopyError::Client(_) => "client gone",
                });
                if matches!(e, CopyError::Upstream(_)) {
                    log::warn!("connector {}: response body cut short: {e}", state.label);
                }
            }
        }
        Ok(Handoff::Done)
    }

    /// Drops the refused token and widens the scopes to what the registry asked for.
    pub(super) async fn forget_token(
        &self,
        state: &ConnectorState,
        ctx: &mut RequestCtx,
        challenge: Option<&auth::Challenge>,
    ) {
        self.auth.refused(state, challenge, &ctx.scopes).await;
        if let Some(auth::Challenge::Bearer { scope: Some(s), .. }) = challenge {
            ctx.scopes = super::merge_scopes(&ctx.scopes, &auth::scope::split(s));
        }
        ctx.auth_retried = true;
    }

    /// Answers with the OCI error for an upstream failure before anything was written.
    async fn fail_fast<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut RequestCtx,
        e: &Error,
    ) -> Result<Handoff> {
        let err = errors::classify(e, ctx).unwrap_or_else(|| errors::internal(ctx));
        self.reject_fast(session, ctx, err).await?;
        Ok(Handoff::Done)
    }

    /// Answers with `err` (the registry's status is no longer the client's).
    async fn reject_fast<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut RequestCtx,
        err: OciError,
    ) -> Result<()> {
        ctx.upstream_status = None;
        ctx.status = Some(err.status);
        session.answer(Reply::error(&err)).await
    }

    /// The registry's response head as the client sees it.
    fn client_head<D: Downstream>(
        &self,
        session: &D,
        ctx: &RequestCtx,
        state: &ConnectorState,
        x: &Exchange,
        dechunk: bool,
    ) -> Vec<u8> {
        let connection = fastlane::connection_header(session.http10(), session.keeps_alive());
        let needs_view =
            x.head.header(&x.buf, "Location").is_some() || x.head.header(&x.buf, "Link").is_some();
        let origin = needs_view.then(|| client_origin(&self.settings, session.host()));
        let Some((view, tags)) = origin.as_deref().and_then(|o| ctx.client_view(state, o)) else {
            return x.head.client_head(&x.buf, connection, dechunk, |_, _| None);
        };
        x.head.client_head(&x.buf, connection, dechunk, |name, value| {
            view.header(std::str::from_utf8(name).ok()?, std::str::from_utf8(value).ok()?, tags)
        })
    }
}

fn is_redirect_status(status: u16) -> bool {
    http::StatusCode::from_u16(status).is_ok_and(is_redirect)
}
