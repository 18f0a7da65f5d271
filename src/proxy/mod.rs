//! The Pingora `ProxyHttp` implementation: phase methods that orchestrate the
//! pure helpers in this module's children.
//!
//! The listener's connections are read by the front door (`front.rs`), which
//! serves GET and HEAD itself and hands every other request to Pingora, whose
//! phases below then run for it.
//!
//! Request flow: `request_filter` runs `Proxy::decide` (client token, route,
//! snapshot pinned, upstream `Authorization` obtained *before* any body is read:
//! a request body cannot be replayed beyond Pingora's 64 KiB retry buffer). `upstream_peer` and
//! `upstream_request_filter` aim the request at the registry (or at a redirect
//! target). `upstream_response_filter` retries once on an unexpected 401, follows
//! storage redirects server-side, rewrites `Location`/`Link`, and turns refusals
//! into OCI errors that name the connector.
//!
//! A GET or HEAD that still reaches `request_filter` leaves this flow there:
//! it is served on the fast lane (`fast.rs`, `fastlane/`), which hands a
//! request back here only when it needs the general path (redirects to follow).

pub mod client_auth;
mod errors;
mod fast;
pub mod fastlane;
pub mod front;
pub mod oci_error;
pub mod peer;
pub mod respond;
pub mod rewrite;
pub mod tcp;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use http::{Method, StatusCode};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use url::Url;

use crate::auth::client_token::{credential_from_authorization, KeySet};
use crate::auth::{self, Authorization, UpstreamAuth};
use crate::clientconfig::{self, ClientConfigKind, RenderInput};
use crate::config::{ConnectorId, RedirectPolicy, Scheme, Settings};
use crate::metrics::{InFlight, Metrics, RequestRecord, NO_CONNECTOR};
use crate::registry::{ConnectorState, Registry, Snapshot};
use crate::routing::{self, Endpoint, RegistryRoute, Route};
use client_auth::Admission;
use fast::Handoff;
use fastlane::FastLane;
use oci_error::OciError;
use peer::{Resolver, Target};
use respond::Reply;
use rewrite::ClientView;

/// What a client asked for, as far as [`Proxy::decide`] needs to know.
struct Ask<'a> {
    method: &'a Method,
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    authorization: Option<&'a [u8]>,
}

/// What the proxy makes of a request before any registry is contacted.
enum Decision {
    /// Answer with this (errors, `GET /v2/`, rendered configurations).
    Answer(Reply),
    /// Proxy to this connector; the context holds the route, upstream URI,
    /// scopes and `Authorization`.
    Proxy(Arc<ConnectorState>),
}

/// Redirects followed for one request before giving up.
const MAX_REDIRECTS: u8 = 5;

/// The proxy service. Dependencies are passed in; tests build their own.
#[derive(Clone)]
pub struct Proxy {
    /// The live connector snapshot.
    pub registry: Arc<Registry>,
    /// Upstream token machinery.
    pub auth: Arc<UpstreamAuth>,
    /// The proxy's settings.
    pub settings: Arc<Settings>,
    /// Non-blocking DNS.
    pub resolver: Arc<Resolver>,
    /// Client-token keys; `None` when client authentication is off.
    pub client_keys: Option<Arc<KeySet>>,
    /// Request counters and histograms (recorded in `logging`).
    pub metrics: &'static Metrics,
    /// The GET/HEAD fast lane and its upstream connection pool.
    pub fastlane: Arc<FastLane>,
}

/// Per-request state. `Proxy::decide` loads the snapshot once and keeps the
/// selected connector's state (an `Arc` from that snapshot) for every later phase,
/// so a reload mid-request changes nothing for it.
pub struct RequestCtx {
    started: Instant,
    connector: Option<Arc<ConnectorState>>,
    route: Option<RegistryRoute>,
    upstream_repo: String,
    upstream_uri: String,
    scopes: Vec<String>,
    auth: Authorization,
    auth_stale: bool,
    auth_retried: bool,
    redirect: Option<Url>,
    redirects: u8,
    retry_intended: bool,
    failure: Option<OciError>,
    upstream_status: Option<u16>,
    /// Status sent by the fast lane (Pingora did not write the response).
    status: Option<u16>,
    /// Why a fast-lane response was cut short, for the access log.
    aborted: Option<&'static str>,
    bytes_out: u64,
    bytes_in: u64,
    /// When the first upstream attempt started, and when the last upstream
    /// response header arrived (the upstream duration metric).
    upstream_started: Option<Instant>,
    upstream_answered: Option<Instant>,
    /// Counts the request in `requests_in_flight` until the context is dropped.
    _in_flight: InFlight,
}

impl RequestCtx {
    /// How the registry's URLs map back to what the client asked for (and
    /// whether this is a tag listing, whose `Link` is mapped too); `None`
    /// before routing.
    fn client_view<'a>(
        &'a self,
        state: &'a ConnectorState,
        origin: &'a str,
    ) -> Option<(ClientView<'a>, bool)> {
        let route = self.route.as_ref()?;
        let view = ClientView {
            upstream: &state.connector.upstream,
            upstream_repo: &self.upstream_repo,
            client_repo: &route.repository,
            client_prefix: &route.client_prefix,
            client_origin: origin,
        };
        Some((view, matches!(route.endpoint, Endpoint::Tags)))
    }

    /// `ns/name` of the connector, or `-` before one was selected.
    fn connector_label(&self) -> &str {
        self.connector.as_ref().map_or("-", |c| &*c.label)
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a (disabled) compression
    /// module that still runs on every request. Registry content is addressed
    /// by digest and must reach clients byte for byte, so it is never wanted.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            connector: None,
            route: None,
            upstream_repo: String::new(),
            upstream_uri: String::new(),
            scopes: Vec::new(),
            auth: Authorization::default(),
            auth_stale: false,
            auth_retried: false,
            redirect: None,
            redirects: 0,
            retry_intended: false,
            failure: None,
            upstream_status: None,
            status: None,
            aborted: None,
            bytes_out: 0,
            bytes_in: 0,
            upstream_started: None,
            upstream_answered: None,
            _in_flight: self.metrics.in_flight_guard(),
        }
    }

    /// Receives what the front door handed over with a request: the storage
    /// redirect it already got from the registry for it.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        prev_ctx: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Some(next) = front::redirect_of(prev_ctx) {
            ctx.redirects = 1;
            ctx.redirect = Some(next);
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let ask = Ask {
            method: &req.method,
            host: request_host(req),
            path: req.uri.path(),
            query: req.uri.query(),
            authorization: req.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes()),
        };
        let state = match self.decide(&ask, ctx).await {
            Decision::Answer(reply) => {
                respond::send(session, reply).await?;
                return Ok(true);
            }
            Decision::Proxy(state) => state,
        };
        if ctx.redirect.is_some() {
            // The front door already asked the registry and was sent elsewhere
            // (`on_connection_reuse`): Pingora goes straight there.
            return Ok(false);
        }
        if let Some(fd) = self.fast_lane_fd(session, &state) {
            return match self.serve_fast(session, ctx, &state, fd).await? {
                Handoff::Done => Ok(true),
                Handoff::General => Ok(false),
            };
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        // A retry starts over: a failure recorded by the attempt before is moot.
        ctx.failure = None;
        ctx.upstream_started.get_or_insert_with(Instant::now);
        let state =
            ctx.connector.clone().ok_or_else(|| Error::explain(ErrorType::InternalError, "no connector"))?;
        let upstream = &state.connector.upstream;
        let target = match &ctx.redirect {
            Some(url) => redirect_target(url)?,
            None => Target { scheme: upstream.scheme, host: upstream.host.clone(), port: upstream.port },
        };
        let same_registry = target.host == upstream.host && target.port == upstream.port;
        peer::build(&self.resolver, &target, same_registry.then_some(&*state), &self.settings.upstream).await
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let state =
            ctx.connector.clone().ok_or_else(|| Error::explain(ErrorType::InternalError, "no connector"))?;
        // The client's own credentials are for the proxy, never for the registry.
        req.remove_header("Authorization");
        req.remove_header("Proxy-Authorization");
        req.remove_header("Cookie");
        if let Some(url) = &ctx.redirect {
            // Storage/CDN redirects carry their own signature; credentials stay home.
            let uri = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            set_uri(req, &uri)?;
            req.insert_header("Host", url_authority(url))?;
            return Ok(());
        }
        if ctx.auth_stale {
            ctx.auth_stale = false;
            match self.auth.authorization(&state, &ctx.scopes).await {
                Ok(a) => ctx.auth = a,
                Err(e) => {
                    ctx.failure = Some(errors::auth_failed(&state, &e));
                    return Error::e_explain(ErrorType::Custom("upstream auth"), "token refresh failed");
                }
            }
        }
        let uri = ctx.upstream_uri.clone();
        set_uri(req, &uri)?;
        req.insert_header("Host", state.connector.upstream.authority())?;
        if let Some(h) = &ctx.auth.header {
            req.insert_header("Authorization", h.expose())?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if resp.status.is_informational() {
            return Ok(());
        }
        let status = resp.status.as_u16();
        ctx.upstream_status = Some(status);
        ctx.upstream_answered = Some(Instant::now());
        let state =
            ctx.connector.clone().ok_or_else(|| Error::explain(ErrorType::InternalError, "no connector"))?;
        let from_registry = ctx.redirect.is_none();

        let challenge = header_str(resp, "WWW-Authenticate").and_then(auth::challenge::parse);
        if from_registry && status == 401 && !ctx.auth_retried {
            // The registry refused a token it should have accepted (expired early,
            // revoked, or a scope we did not predict): learn its challenge, drop
            // the token, and try once more with a fresh one.
            self.forget_token(&state, ctx, challenge.as_ref()).await;
            ctx.auth_stale = true;
            return Err(self.retry(ctx, errors::refused(&state, ctx, 401, challenge.as_ref())));
        }
        if from_registry && (status == 401 || status == 403) {
            ctx.failure = Some(errors::refused(&state, ctx, status, challenge.as_ref()));
            return Error::e_explain(ErrorType::HTTPStatus(status), "registry refused the request");
        }
        if is_redirect(resp.status) && state.connector.redirects == RedirectPolicy::Follow && follows(session)
        {
            if let Some(next) = header_str(resp, "Location").and_then(|l| self.redirect_url(l, ctx)) {
                if ctx.redirects >= MAX_REDIRECTS {
                    ctx.failure = Some(errors::too_many_redirects(&state));
                    return Error::e_explain(ErrorType::HTTPStatus(502), "too many redirects");
                }
                ctx.redirects += 1;
                ctx.redirect = Some(next);
                return Err(self.retry(ctx, errors::redirect_failed(&state)));
            }
        }
        self.rewrite_headers(session, resp, ctx, &state)?;
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.bytes_in += b.len() as u64;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(b) = body {
            ctx.bytes_out += b.len() as u64;
        }
        Ok(None)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let truncated = session.as_ref().retry_buffer_truncated();
        if std::mem::take(&mut ctx.retry_intended) {
            // Our own retries (auth refresh, redirects) are safe whenever the
            // body, if any, is still in the retry buffer.
            e.set_retry(!truncated);
        } else if !session.req_header().method.is_idempotent() || truncated {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let err = ctx.failure.take().or_else(|| errors::classify(e, ctx));
        let code = match err {
            Some(err) if session.response_written().is_none() => {
                if let Err(we) = respond::send(session, Reply::error(&err)).await {
                    log::debug!("cannot send error response: {we}");
                }
                err.status
            }
            Some(err) => err.status,
            None => 0,
        };
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let req = session.req_header();
        let status = session.response_written().map(|r| r.status.as_u16()).or(ctx.status).unwrap_or(0);
        self.record(&req.method, req.uri.path(), status, e.map(|e| e.etype().as_str()), ctx);
    }
}

impl Proxy {
    /// Decides about a request before any registry is contacted: client
    /// authentication first (so an unauthenticated caller learns nothing about
    /// which connectors exist), then the route, the connector and its upstream
    /// `Authorization`, which is obtained before any request body is read.
    async fn decide(&self, ask: &Ask<'_>, ctx: &mut RequestCtx) -> Decision {
        let snapshot = self.registry.load();
        let admission =
            match client_auth::admit(self.client_keys.as_deref(), ask.authorization, SystemTime::now) {
                Ok(a) => a,
                Err(err) => return Decision::Answer(Reply::unauthorized(&err)),
            };
        let route = match routing::route(&snapshot.router, ask.host, ask.path, ask.query) {
            Route::Base => return Decision::Answer(Reply::api_base()),
            Route::NotFound(why) => {
                let path = ask.path;
                let err =
                    OciError::new(404, "NAME_INVALID", format!("no registry route for {path}")).hint(why);
                return Decision::Answer(Reply::error(&err));
            }
            Route::Configuration { connector, config } => {
                return Decision::Answer(
                    match self.configuration(&snapshot, &admission, ask.authorization, &connector, &config) {
                        Ok((kind, text)) => Reply::file(kind.content_type(), text),
                        Err(err) => Reply::error(&err),
                    },
                );
            }
            Route::Registry(r) => r,
        };
        let Some(state) = snapshot.select(&route.selector).cloned() else {
            return Decision::Answer(Reply::error(&errors::unknown_connector(&route.selector)));
        };
        if let Err(err) = admission.allows(&state.connector.id, client_auth::is_write(ask.method)) {
            return Decision::Answer(Reply::error(&err));
        }
        let connector = &state.connector;
        ctx.upstream_repo = rewrite::upstream_repository(connector, &route.repository);
        let uq = rewrite::upstream_query(ask.query, &route.client_prefix, connector);
        // One allocation, sized once by `concat`.
        let (endpoint, argument) = route.endpoint.path_parts();
        let (mark, query) = uq.query.as_deref().map_or(("", ""), |q| ("?", q));
        ctx.upstream_uri =
            ["/v2/", ctx.upstream_repo.as_str(), "/", endpoint, argument, mark, query].concat();
        ctx.scopes = auth::scope::predict(ask.method, &ctx.upstream_repo, uq.mount_from.as_deref());
        ctx.connector = Some(state.clone());
        ctx.route = Some(route);

        match self.auth.authorization_at(&state, &ctx.scopes, ctx.started).await {
            Ok(a) => ctx.auth = a,
            Err(e) => return Decision::Answer(Reply::error(&errors::auth_failed(&state, &e))),
        }
        Decision::Proxy(state)
    }

    /// Records a finished request: metrics, and the access log line when
    /// enabled. Returns when it ended (the clock reading its duration came from).
    fn record(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        error: Option<&str>,
        ctx: &RequestCtx,
    ) -> Instant {
        let ended = Instant::now();
        let duration = ended.saturating_duration_since(ctx.started);
        let endpoint = match &ctx.route {
            Some(r) => r.endpoint.kind(),
            None if path.trim_end_matches('/') == "/v2" => "base",
            None => "none",
        };
        self.metrics.record_request(&RequestRecord {
            connector: ctx.connector.as_ref().map_or(NO_CONNECTOR, |c| &*c.label),
            method,
            endpoint,
            status,
            duration,
            upstream_duration: ctx
                .upstream_started
                .zip(ctx.upstream_answered)
                .map(|(s, a)| a.saturating_duration_since(s)),
            bytes_in: ctx.bytes_in,
            bytes_out: ctx.bytes_out,
        });
        // Formatting the access line costs more than proxying a small request;
        // skip it entirely when the target is off (RUST_LOG=...,oci_connector::access=off).
        if log::log_enabled!(target: "oci_connector::access", log::Level::Info) {
            log::info!(
                target: "oci_connector::access",
                "connector={} method={} path={} status={} upstream_status={} bytes_in={} bytes_out={} duration_ms={} token_cached={} redirects={}{}",
                ctx.connector_label(),
                method,
                path,
                status,
                ctx.upstream_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                ctx.bytes_in,
                ctx.bytes_out,
                duration.as_millis(),
                ctx.auth.from_cache,
                ctx.redirects,
                error.or(ctx.aborted).map(|e| format!(" error=\"{e}\"")).unwrap_or_default(),
            );
        }
        ended
    }

    /// Renders a client configuration for one connector with the caller's own
    /// token: no new rights are minted this way.
    fn configuration(
        &self,
        snapshot: &Snapshot,
        admission: &Admission,
        authorization: Option<&[u8]>,
        id: &ConnectorId,
        config: &str,
    ) -> Result<(ClientConfigKind, String), OciError> {
        let kind: ClientConfigKind = config.parse().map_err(|_| {
            OciError::new(404, "UNSUPPORTED", format!("unknown configuration {config}")).hint(
                "one of registry-config, docker-config, dockerd, buildkitd, containerd, registries-conf",
            )
        })?;
        admission.allows(id, false)?;
        let state =
            snapshot.get(id).ok_or_else(|| errors::unknown_connector(&routing::Selector::Id(id.clone())))?;
        let (subject, push, token) = match admission {
            Admission::Open => ("oci-connector".to_string(), true, None),
            Admission::Granted(g) => {
                (g.subject.clone(), g.push, authorization.and_then(credential_from_authorization))
            }
        };
        let input = RenderInput {
            settings: &self.settings,
            connectors: vec![&state.connector],
            subject,
            token,
            push,
        };
        let rendered = clientconfig::render(kind, &input)
            .map_err(|e| OciError::new(404, "UNSUPPORTED", format!("cannot render {kind} for {id}: {e}")))?;
        let text = rendered.files.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join("\n");
        Ok((kind, text))
    }

    /// An error that asks Pingora to run the request again; `fallback` is what
    /// the client gets if a retry turns out impossible (body already streamed).
    fn retry(&self, ctx: &mut RequestCtx, fallback: OciError) -> Box<Error> {
        ctx.retry_intended = true;
        ctx.failure = Some(fallback);
        let mut e = Error::explain(ErrorType::Custom("retry upstream"), "retrying upstream request");
        e.set_retry(true);
        e
    }

    /// Where a redirect's `location` points, resolved against the current target.
    fn redirect_url(&self, location: &str, ctx: &RequestCtx) -> Option<Url> {
        let state = ctx.connector.as_ref()?;
        let base = match &ctx.redirect {
            Some(u) => u.clone(),
            None => {
                Url::parse(&format!("{}{}", state.connector.upstream.base_url(), ctx.upstream_uri)).ok()?
            }
        };
        let next = base.join(location).ok()?;
        matches!(next.scheme(), "http" | "https").then_some(next)
    }

    /// Maps `Location` and `Link` to the client's view and drops upstream auth hints.
    fn rewrite_headers(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &RequestCtx,
        state: &ConnectorState,
    ) -> Result<()> {
        // The registry's challenge points at its own token server; clients
        // authenticate to us, never there.
        resp.remove_header("WWW-Authenticate");
        let origin = client_origin(&self.settings, request_host(session.req_header()));
        let Some((view, tags)) = ctx.client_view(state, &origin) else { return Ok(()) };
        for name in ["Location", "Link"] {
            if let Some(v) = header_str(resp, name).and_then(|v| view.header(name, v, tags)) {
                resp.insert_header(name, v)?;
            }
        }
        Ok(())
    }
}

/// `Host` (HTTP/1) or the URI authority (HTTP/2).
fn request_host(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// `scheme://host[:port]` the client used to reach us (`host` is its `Host`).
fn client_origin(settings: &Settings, host: &str) -> String {
    if host.is_empty() {
        return settings.public_url.origin().ascii_serialization();
    }
    format!("{}://{host}", settings.public_url.scheme())
}

fn header_str<'a>(resp: &'a ResponseHeader, name: &str) -> Option<&'a str> {
    resp.headers.get(name).and_then(|v| v.to_str().ok())
}

fn set_uri(req: &mut RequestHeader, uri: &str) -> Result<()> {
    let parsed = uri
        .parse::<http::Uri>()
        .map_err(|_| Error::explain(ErrorType::InternalError, "cannot build the upstream URI"))?;
    req.set_uri(parsed);
    Ok(())
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Only bodiless reads are followed; a redirected upload is the client's business.
fn follows(session: &Session) -> bool {
    let m = &session.req_header().method;
    m == Method::GET || m == Method::HEAD
}

fn redirect_target(url: &Url) -> Result<Target> {
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        _ => Scheme::Http,
    };
    let host = url
        .host_str()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "redirect without host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(scheme.default_port());
    Ok(Target { scheme, host, port })
}

fn url_authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

fn merge_scopes(predicted: &[String], demanded: &[String]) -> Vec<String> {
    let mut all = predicted.to_vec();
    for s in demanded {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    all
}
