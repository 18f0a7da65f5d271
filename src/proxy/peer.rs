//! Upstream peers: non-blocking DNS and `HttpPeer` construction per connector.
//!
//! Pingora's `HttpPeer::new("host:port", ..)` resolves names with a *blocking*
//! lookup inside the async runtime and panics when the lookup fails, so we
//! resolve ourselves (tokio's resolver runs on the blocking pool), cache the
//! answer briefly, and hand Pingora a `SocketAddr`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::future::Cache;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{Scheme, UpstreamSettings};
use crate::registry::ConnectorState;

/// How long a resolved address is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Names kept in the lock-free-to-read memo at most; it is cleared when full
/// (redirect targets can bring many storage host names).
const MEMO_MAX: usize = 1024;

/// Resolves host names without blocking, with a short cache; concurrent
/// lookups of one name share one query.
pub struct Resolver {
    cache: Cache<(String, u16), SocketAddr>,
    /// Answers recently taken from `cache`, by host: moka's `get` records every
    /// read for its eviction policy and the key needs an owned `String`, both
    /// per request; this is one read lock and a hash lookup.
    memo: RwLock<HashMap<String, (u16, SocketAddr, Instant)>>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            cache: Cache::builder().max_capacity(10_000).time_to_live(DNS_TTL).build(),
            memo: RwLock::default(),
        }
    }
}

impl Resolver {
    /// The first address of `host:port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let now = Instant::now();
        let memo = self.memo.read().unwrap_or_else(|p| p.into_inner()).get(host).copied();
        if let Some((p, addr, until)) = memo {
            if p == port && now < until {
                return Ok(addr);
            }
        }
        let lookup = async {
            let mut addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?;
            addrs.next().ok_or_else(|| "no addresses".to_string())
        };
        let addr =
            self.cache.try_get_with((host.to_string(), port), lookup).await.map_err(|e: Arc<String>| {
                Error::explain(ErrorType::ConnectNoRoute, format!("cannot resolve {host}: {e}"))
            })?;
        let mut memo = self.memo.write().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        // The memo may outlive the cache entry it copies by up to DNS_TTL, so
        // an address is reused for at most twice DNS_TTL.
        memo.insert(host.to_string(), (port, addr, now + DNS_TTL));
        Ok(addr)
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
    o.tcp_recv_buf = timeouts.receive_buffer;
    // The connector's CA only applies to its own registry, not to a CDN it redirects to.
    if let Some(ca) = state.and_then(|s| s.tls_ca.clone()) {
        o.ca = Some(ca);
    }
    Ok(Box::new(peer))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn names_are_memoised_per_port_and_literals_skip_the_resolver() {
        let r = Resolver::default();
        let a = r.resolve("localhost", 5000).await.unwrap();
        assert_eq!(a.port(), 5000);
        assert!(a.ip().is_loopback());
        assert_eq!(r.memo.read().unwrap().get("localhost").map(|e| (e.0, e.1)), Some((5000, a)));
        assert_eq!(r.resolve("localhost", 5000).await.unwrap(), a);
        // Another port is looked up again and replaces the memo entry.
        assert_eq!(r.resolve("localhost", 5001).await.unwrap().port(), 5001);
        assert_eq!(r.memo.read().unwrap().get("localhost").map(|e| e.0), Some(5001));
        assert_eq!(r.resolve("127.0.0.2", 80).await.unwrap(), "127.0.0.2:80".parse().unwrap());
        assert!(r.memo.read().unwrap().get("127.0.0.2").is_none());
    }
}
