//! Typed, validated configuration: what the rest of the proxy works with.
//!
//! Nothing here is read from a file directly; `config::load` turns the raw serde
//! types into these after validation, so every value is known to be usable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

use crate::secret::Secret;

/// The proxy's own settings (the settings file).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the proxy listener binds.
    pub listen: SocketAddr,
    /// How clients reach the proxy; used to build proxy addresses and rendered configs.
    pub public_url: Url,
    /// Address of the admin listener (metrics, health, status), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Connector manifest files or directories, already resolved against the settings file.
    pub connector_paths: Vec<PathBuf>,
    /// How a request selects its connector.
    pub resolver: ResolverKind,
    /// Domain of the host resolver: `c-<name>.<namespace>.<domain>`.
    pub host_domain: String,
    /// How clients authenticate to the proxy.
    pub client_auth: ClientAuthSettings,
    /// Allow `clientAuth.mode: none` on a non-loopback listener.
    pub allow_anonymous_clients: bool,
    /// Timeouts and limits towards registries.
    pub upstream: UpstreamSettings,
    /// Worker threads of the proxy service.
    pub threads: usize,
}

/// Timeouts towards registries and token servers.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for any read from the registry (headers or a body chunk).
    pub read_timeout: Duration,
    /// Timeout of a whole token request.
    pub token_timeout: Duration,
    /// How long an idle upstream connection is kept for reuse.
    pub idle_timeout: Duration,
    /// Serve GET and HEAD on the fast lane (own
    /// connection pool, response written to the client socket, bodies spliced)
    /// instead of Pingora's general upstream path.
    pub fast_lane: bool,
    /// `SO_RCVBUF` for upstream connections (`None`: the kernel autotunes).
    /// Bounds what a registry can park in the kernel while a client reads
    /// slower than it sends; see `proxy::tcp`.
    pub receive_buffer: Option<usize>,
}

/// Default `upstream.receiveBuffer`: 4 MiB (the kernel doubles it for
/// bookkeeping), about stock Linux's autotuning ceiling (`tcp_rmem[2]`, 6 MiB)
/// and enough window for ~400 MB/s per stream at 10 ms round trip.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            token_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            fast_lane: true,
            receive_buffer: Some(DEFAULT_RECEIVE_BUFFER),
        }
    }
}

/// How clients authenticate to the proxy.
#[derive(Debug, Clone, Default)]
pub struct ClientAuthSettings {
    /// `none` or `token`.
    pub mode: ClientAuthMode,
    /// Key files: the first signs, all verify.
    pub key_files: Vec<PathBuf>,
}

/// Client authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// Any client may use any connector.
    #[default]
    None,
    /// Clients present a signed proxy token.
    Token,
}

/// How a request selects its connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResolverKind {
    /// `/v2/namespaces/<ns>/connectors/<name>/<repo>/...`
    #[default]
    Path,
    /// `Host: c-<name>.<ns>.<domain>`
    Host,
}

/// A connector's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorId {
    /// Kubernetes-style namespace.
    pub namespace: String,
    /// Connector name, unique in its namespace.
    pub name: String,
}

impl ConnectorId {
    /// Builds an id from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ConnectorId { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// URL scheme of a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port used when a URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where a connector's registry lives, after Docker Hub normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// http or https.
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Upstream {
    /// `host[:port]` as it goes into a `Host` header (port omitted when default).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The registry's base URL, e.g. `https://registry-1.docker.io`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }
}

/// What to do with a registry redirect (blob storage, CDN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectPolicy {
    /// Follow it server-side, without credentials; the client sees the final response.
    #[default]
    Follow,
    /// Hand the redirect to the client (which then needs to reach the other host).
    PassToClient,
}

/// Registry credentials from a connector's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Account name.
    pub username: String,
    /// Password or access token; never printed.
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// One validated connector.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Namespace and name.
    pub id: ConnectorId,
    /// The address exactly as configured (shown in status tables).
    pub address: String,
    /// The registry to talk to.
    pub upstream: Upstream,
    /// Docker Hub: single-name repositories become `library/<name>`.
    pub docker_hub: bool,
    /// Credentials, or `None` for anonymous access.
    pub credentials: Option<Credentials>,
    /// Name of the secret the credentials came from (for status messages).
    pub secret_name: Option<String>,
    /// Extra trusted CA certificates (DER), from `caCertSecretRef`.
    pub ca_certs: Option<Arc<Vec<Vec<u8>>>>,
    /// Repository used by the auth health check (`params.repository`).
    pub health_repository: Option<String>,
    /// What to do with registry redirects.
    pub redirects: RedirectPolicy,
    /// Description annotation, if any.
    pub description: Option<String>,
}

impl Connector {
    /// A fingerprint of everything that decides which tokens are valid for this
    /// connector (address, credentials, CA). Cached tokens are keyed by it, so a
    /// changed password or address never reuses an old token.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.upstream.base_url().as_bytes());
        h.update([0]);
        if let Some(c) = &self.credentials {
            h.update(c.username.as_bytes());
            h.update([0]);
            h.update(c.password.expose().as_bytes());
        }
        h.update([0]);
        if let Some(cas) = &self.ca_certs {
            for ca in cas.iter() {
                h.update(ca);
            }
        }
        hex::encode(&h.finalize()[..12])
    }
}

/// Everything loaded from the settings file and the connector manifests.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings file's values.
    pub settings: Settings,
    /// The connectors, sorted by id.
    pub connectors: Vec<Connector>,
}
