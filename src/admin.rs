//! The admin listener: `/healthz`, `/readyz`, `/connectors` and `/metrics`.
//!
//! A small Pingora `ServeHttp` app on its own listener (`admin.listen`), so that
//! probes and scrapes never share a port, a client-auth rule or a queue with
//! registry traffic. It never shows a credential: `/connectors` is built from
//! [`crate::status::ConnectorView`], which has no field for one.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;

use crate::auth::UpstreamAuth;
use crate::config::raw::RawSettings;
use crate::config::Settings;
use crate::metrics::{Metrics, Sources};
use crate::registry::Registry;
use crate::status::{self, ConditionStatus, ConnectorList, StatusBoard};

/// The admin API's state: everything it reports on.
pub struct AdminApp {
    /// The proxy's settings (listen address, public URL).
    pub settings: Arc<Settings>,
    /// The live connectors.
    pub registry: Arc<Registry>,
    /// Conditions and the reload outcome.
    pub status: Arc<StatusBoard>,
    /// Request and reload counters.
    pub metrics: &'static Metrics,
    /// Token cache counters.
    pub auth: Arc<UpstreamAuth>,
}

impl AdminApp {
    /// Wraps the app in a Pingora listening service (listener not added yet).
    pub fn into_service(self) -> Service<AdminApp> {
        Service::new("oci-connector admin".to_string(), self)
    }

    /// Answers one admin request.
    pub async fn handle(&self, method: &Method, path: &str) -> Response<Vec<u8>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.readyz().await,
            "/connectors" => {
                let snapshot = self.registry.load();
                let list = self.status.connector_list(&self.settings, &snapshot);
                match serde_json::to_vec_pretty(&list) {
                    Ok(mut body) => {
                        body.push(b'\n');
                        respond(StatusCode::OK, "application/json", body)
                    }
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode the connectors: {e}\n"),
                    ),
                }
            }
            "/metrics" => {
                let body = self.metrics.render(Sources {
                    registry: &self.registry,
                    auth: &self.auth.stats,
                    status: &self.status,
                });
                respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body.into_bytes())
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /healthz, /readyz, /connectors or /metrics\n".into(),
            ),
        }
    }

    /// Ready when a configuration is loaded and the proxy listener accepts connections.
    async fn readyz(&self) -> Response<Vec<u8>> {
        let generation = self.registry.load().generation;
        if generation == 0 {
            return text(StatusCode::SERVICE_UNAVAILABLE, "not ready: no configuration loaded\n".into());
        }
        let listener = status::probe_listener(self.settings.listen).await;
        if listener.status != ConditionStatus::True {
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", listener.message));
        }
        text(StatusCode::OK, format!("ready: configuration generation {generation}, proxy listening\n"))
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_string());
        let mut resp = self.handle(&method, &path).await;
        if method == Method::HEAD {
            resp.body_mut().clear();
        }
        resp
    }
}

/// The admin address named by a settings file's `admin.listen`. Only that key is
/// read, so `status` works while the connectors files are broken.
pub fn address_from_settings(path: &Path) -> anyhow::Result<SocketAddr> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw: RawSettings = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a valid settings file", path.display()))?;
    let listen = raw.admin.and_then(|a| a.listen).with_context(|| {
        format!("{}: admin.listen is not set (hint: add `admin:\n  listen: 127.0.0.1:9090`)", path.display())
    })?;
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("{}: admin.listen {listen:?} is not ip:port", path.display()))?;
    Ok(status::dialable(addr))
}

/// Reads `/connectors` from a running proxy's admin API.
pub fn fetch_connectors(admin: SocketAddr) -> anyhow::Result<ConnectorList> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let url = format!("http://{admin}/connectors");
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        let resp = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {url} (is the proxy running?)"))?;
        if !resp.status().is_success() {
            anyhow::bail!("{url} answered {}", resp.status());
        }
        resp.json::<ConnectorList>().await.with_context(|| format!("{url}: unexpected answer"))
    })
}

fn text(status: StatusCode, body: String) -> Response<Vec<u8>> {
    respond(status, "text/plain; charset=utf-8", body.into_bytes())
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}
