//! Upstream peers: non-blocking DNS and `HttpPeer` construction per connector.
//!
//! Pingora's `HttpPeer::new("host:port", ..)` resolves names with a *blocking*
//! lookup inside the async runtime and panics when the lookup fails, so we
//! resolve ourselves (tokio's resolver runs on the blocking pool), cache the
//! answer briefly, and hand Pingora a `SocketAddr`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{Scheme, UpstreamSettings};
use crate::registry::ConnectorState;

/// How long a resolved address is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Resolves host names without blocking, with a short cache; concurrent
/// lookups of one name share one query.
pub struct Resolver {
    cache: Cache<(String, u16), SocketAddr>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver { cache: Cache::builder().max_capacity(10_000).time_to_live(DNS_TTL).build() }
    }
}

impl Resolver {
    /// The first address of `host:port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let lookup = async {
            let mut addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?;
            addrs.next().ok_or_else(|| "no addresses".to_string())
        };
        self.cache.try_get_with((host.to_string(), port), lookup).await.map_err(|e: Arc<String>| {
            Error::explain(ErrorType::ConnectNoRoute, format!("cannot resolve {host}: {e}"))
        })
    }
}

/// Where one upstream attempt goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// http or https.
    pub scheme: Scheme,
    /// Host name (SNI and `Host`).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Builds the peer for the connector's registry, or for a redirect target.
pub async fn build(
    resolver: &Resolver,
    target: &Target,
    state: Option<&ConnectorState>,
    timeouts: &UpstreamSettings,
) -> Result<Box<HttpPeer>> {
    let addr = resolver.resolve(&target.host, target.port).await?;
    let tls = target.scheme == Scheme::Https;
    let mut peer = HttpPeer::new(addr, tls, target.host.clone());
    let o = &mut peer.options;
    o.connection_timeout = Some(timeouts.connect_timeout);
    o.total_connection_timeout = Some(timeouts.connect_timeout * 2);
    o.read_timeout = Some(timeouts.read_timeout);
    o.write_timeout = Some(timeouts.read_timeout);
    o.idle_timeout = Some(timeouts.idle_timeout);
    // The connector's CA only applies to its own registry, not to a CDN it redirects to.
    if let Some(ca) = state.and_then(|s| s.tls_ca.clone()) {
        o.ca = Some(ca);
    }
    Ok(Box::new(peer))
}
