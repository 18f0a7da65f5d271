//! The live connector snapshot: immutable, swapped whole on reload.
//!
//! A request loads the current [`Snapshot`] once and uses it to the end, so a
//! reload never changes a connector under a request in flight.

// foldhash: read on every request; the keys are ours (connector ids, label sets, addresses), not chosen by clients.
use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::utils::tls::WrappedX509;

use crate::config::{Connector, ConnectorId, Settings};
use crate::routing::{RouterConfig, Selector};

/// A connector plus what the proxy derives from it once per load.
pub struct ConnectorState {
    /// The validated connector.
    pub connector: Connector,
    /// Fingerprint of address + credentials + CA (token cache key part).
    pub fingerprint: String,
    /// `ns/name`, shared by metrics labels and log lines.
    pub label: Arc<str>,
    /// Connector id plus fingerprint: the token cache's per-connector key part.
    pub cache_key: Arc<str>,
    /// HTTP client for the token endpoint and probes (carries the connector's CA).
    pub http: reqwest::Client,
    /// Extra trusted CAs for the proxied connection, parsed once.
    pub tls_ca: Option<Arc<[WrappedX509]>>,
    /// `host[:port]` of the registry as sent in `Host` (computed once).
    pub authority: String,
    /// Recent upstream `Authorization` answers (the token cache's hot path).
    pub auth_memo: crate::auth::AuthMemo,
    /// TLS for the fast lane to an `https://` registry (system roots plus the
    /// connector's CAs); `None` for `http://`, or when it cannot be built.
    pub fast_tls: Option<crate::proxy::fastlane::conn::TlsTarget>,
}

impl std::fmt::Debug for ConnectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorState").field("connector", &self.connector).finish_non_exhaustive()
    }
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A connector's CA bundle was refused by the TLS library.
    #[error("connector {connector}: cannot build an HTTP client with its CA certificates: {reason}")]
    HttpClient {
        /// Which connector.
        connector: ConnectorId,
        /// What the TLS library said.
        reason: String,
    },
}

/// One immutable generation of the configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every successful reload.
    pub generation: u64,
    /// Routing inputs from the settings.
    pub router: RouterConfig,
    connectors: HashMap<ConnectorId, Arc<ConnectorState>>,
    by_registry_host: HashMap<String, Arc<ConnectorState>>,
    ordered: Vec<Arc<ConnectorState>>,
}

impl Snapshot {
    /// Builds a snapshot. `shared_http` is the client used by connectors without
    /// their own CA; cloning it shares its connection pool.
    pub fn build(
        generation: u64,
        settings: &Settings,
        connectors: Vec<Connector>,
        shared_http: &reqwest::Client,
    ) -> Result<Snapshot, SnapshotError> {
        let mut map = HashMap::with_capacity(connectors.len());
        let mut by_host: HashMap<String, Arc<ConnectorState>> = HashMap::new();
        let mut ordered = Vec::with_capacity(connectors.len());
        for c in connectors {
            let (http, tls_ca) = match &c.ca_certs {
                Some(cas) => (client_with_ca(settings, cas, &c.id)?, Some(wrap_cas(cas))),
                None => (shared_http.clone(), None),
            };
            let fast_tls = (c.upstream.scheme == crate::config::Scheme::Https)
                .then(|| {
                    let cas = c.ca_certs.as_deref().map(Vec::as_slice).unwrap_or_default();
                    crate::proxy::fastlane::conn::TlsTarget::new(&c.upstream.host, cas)
                })
                .flatten();
            let fingerprint = c.fingerprint();
            let label: Arc<str> = Arc::from(c.id.to_string());
            let cache_key: Arc<str> = Arc::from(format!("{label}\0{fingerprint}"));
            let state = Arc::new(ConnectorState {
                fingerprint,
                label,
                cache_key,
                authority: c.upstream.authority(),
                connector: c,
                http,
                tls_ca,
                auth_memo: Default::default(),
                fast_tls,
            });
            for host in registry_hosts(&state.connector) {
                // Connectors are sorted by id, so the first one wins deterministically.
                by_host.entry(host).or_insert_with(|| state.clone());
            }
            map.insert(state.connector.id.clone(), state.clone());
            ordered.push(state);
        }
        Ok(Snapshot {
            generation,
            router: RouterConfig { resolver: settings.resolver, host_domain: settings.host_domain.clone() },
            connectors: map,
            by_registry_host: by_host,
            ordered,
        })
    }

    /// Finds the connector a route selects.
    pub fn select(&self, selector: &Selector) -> Option<&Arc<ConnectorState>> {
        match selector {
            Selector::Id(id) => self.connectors.get(id),
            Selector::RegistryHost(h) => self.by_registry_host.get(&h.to_ascii_lowercase()),
        }
    }

    /// Looks a connector up by id.
    pub fn get(&self, id: &ConnectorId) -> Option<&Arc<ConnectorState>> {
        self.connectors.get(id)
    }

    /// All connectors, sorted by id.
    pub fn connectors(&self) -> &[Arc<ConnectorState>] {
        &self.ordered
    }
}

/// The names containerd may use for a connector's registry in `?ns=`.
fn registry_hosts(c: &Connector) -> Vec<String> {
    if c.docker_hub {
        return ["docker.io", "index.docker.io", "registry-1.docker.io"].map(String::from).to_vec();
    }
    let mut hosts = vec![c.upstream.authority().to_ascii_lowercase()];
    let bare = c.upstream.host.to_ascii_lowercase();
    if !hosts.contains(&bare) {
        hosts.push(bare);
    }
    hosts
}

/// The shared HTTP client for token endpoints and probes (system roots).
pub fn shared_http_client(settings: &Settings) -> reqwest::Client {
    base_builder(settings).build().unwrap_or_default()
}

fn base_builder(settings: &Settings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(settings.upstream.connect_timeout)
        .timeout(settings.upstream.token_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("oci-connector/", env!("CARGO_PKG_VERSION")))
}

fn client_with_ca(
    settings: &Settings,
    cas: &[Vec<u8>],
    id: &ConnectorId,
) -> Result<reqwest::Client, SnapshotError> {
    let mut b = base_builder(settings);
    for der in cas {
        let cert = reqwest::Certificate::from_der(der)
            .map_err(|e| SnapshotError::HttpClient { connector: id.clone(), reason: e.to_string() })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| SnapshotError::HttpClient { connector: id.clone(), reason: e.to_string() })
}

/// Wraps DER certificates for Pingora. Validation already parsed each one
/// (Pingora's parser panics on bad DER, so it must never see unchecked input).
fn wrap_cas(cas: &[Vec<u8>]) -> Arc<[WrappedX509]> {
    let certs: Vec<WrappedX509> =
        cas.iter().map(|der| WrappedX509::new(der.clone(), pingora_core::utils::tls::parse_x509)).collect();
    Arc::from(certs)
}

/// The live snapshot, replaced atomically on reload.
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    /// Starts with `initial`.
    pub fn new(initial: Snapshot) -> Self {
        Registry { current: ArcSwap::from_pointee(initial) }
    }

    /// The snapshot a new request should pin.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot; requests in flight keep the one they pinned.
    pub fn swap(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}
