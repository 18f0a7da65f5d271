//! Idle keep-alive connections to registries. Plain connections are shared by
//! all connectors that reach the same address (credentials travel per request,
//! never per connection); TLS connections only within the connector whose trust
//! roots verified them.

// foldhash: read on every request; the keys are ours (connector ids, label sets, addresses), not chosen by clients.
use foldhash::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::Conn;
use crate::shard::{self, Sharded};

/// Which idle connections a request may reuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The registry's address.
    pub addr: SocketAddr,
    /// For TLS: the connector (and credential/CA fingerprint) that verified it.
    pub verified_for: Option<Arc<str>>,
    /// The thread that released it: with one runtime per thread, a connection
    /// is registered with its thread's runtime and is best reused there.
    pub thread: std::thread::ThreadId,
}

impl PoolKey {
    /// The key for a connection to `addr` used from the current thread.
    pub fn here(addr: SocketAddr, verified_for: Option<Arc<str>>) -> Self {
        PoolKey { addr, verified_for, thread: shard::thread_id() }
    }
}

/// Idle connections kept per upstream address; more are closed on release.
const MAX_IDLE_PER_ADDR: usize = 128;

/// A connection plus when it went idle.
struct Idle {
    stream: Conn,
    since: Instant,
}

/// Idle connections released on one thread, by key.
type Shard = Mutex<HashMap<PoolKey, Vec<Idle>>>;

/// The pool. A connection that the registry closed while idle is only found
/// out when it is used; the fast lane then retries once on a new connection,
/// which is safe because it only carries GET and HEAD.
///
/// Kept per thread ([`Sharded`]): a connection is reused on the thread that
/// released it anyway (its key names the thread), so each thread takes and
/// puts under a lock no other request thread touches.
pub struct Pool {
    idle: Sharded<Shard>,
    idle_timeout: Duration,
}

impl Pool {
    /// A pool that drops connections idle for longer than `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> Self {
        Pool { idle: Sharded::default(), idle_timeout }
    }

    /// The most recently released live-looking connection for `key`, as of
    /// `now` (a clock reading the caller already has).
    pub fn take(&self, key: &PoolKey, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.local().lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) < self.idle_timeout {
                return Some(c.stream);
            }
        }
        None
    }

    /// Returns a connection whose last response was read completely (at `now`).
    pub fn put(&self, key: &PoolKey, stream: Conn, now: Instant) {
        let mut idle = self.idle.local().lock().unwrap_or_else(|p| p.into_inner());
        let list = match idle.get_mut(key) {
            Some(list) => list,
            None => idle.entry(key.clone()).or_default(),
        };
        if list.len() >= MAX_IDLE_PER_ADDR {
            // Oldest first out: they are the likeliest to have been closed.
            list.remove(0);
        }
        list.push(Idle { stream, since: now });
    }

    /// Closes every connection idle for longer than the timeout, so a registry
    /// that is no longer used does not keep descriptors open.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.idle.all() {
            let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|_, list| {
                list.retain(|c| now.saturating_duration_since(c.since) < self.idle_timeout);
                !list.is_empty()
            });
        }
    }

    /// Idle connections for `key`.
    pub fn idle_count(&self, key: &PoolKey) -> usize {
        let count = |s: &Shard| s.lock().unwrap_or_else(|p| p.into_inner()).get(key).map_or(0, Vec::len);
        self.idle.all().map(count).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::proxy::fastlane::conn::Io;

    /// A connected client socket; the accepted end is kept open in `held`.
    async fn pair(listener: &tokio::net::TcpListener, held: &mut Vec<TcpStream>) -> Conn {
        let c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        held.push(listener.accept().await.unwrap().0);
        Conn::new(Io::Plain(c))
    }

    fn port(c: &Conn) -> u16 {
        c.plain().unwrap().local_addr().unwrap().port()
    }

    use tokio::net::TcpStream;

    #[tokio::test]
    async fn returns_the_latest_connection_and_expires_old_ones() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = &PoolKey::here(l.local_addr().unwrap(), None);
        let pool = Pool::new(Duration::from_millis(50));
        let mut held = Vec::new();
        let a = pair(&l, &mut held).await;
        let a_port = port(&a);
        pool.put(addr, a, Instant::now());
        assert_eq!(pool.idle_count(addr), 1);
        assert_eq!(port(&pool.take(addr, Instant::now()).unwrap()), a_port);
        assert!(pool.take(addr, Instant::now()).is_none());

        pool.put(addr, pair(&l, &mut held).await, Instant::now());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(pool.take(addr, Instant::now()).is_none(), "idle past the timeout");

        pool.put(addr, pair(&l, &mut held).await, Instant::now());
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.put(addr, pair(&l, &mut held).await, Instant::now());
        pool.sweep();
        assert_eq!(pool.idle_count(addr), 1, "only the fresh one survives a sweep");
    }

    #[tokio::test]
    async fn tls_connections_serve_only_the_connector_that_verified_them() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(60));
        let mut held = Vec::new();
        let a = PoolKey::here(addr, Some(Arc::from("ns/a\0fp1")));
        pool.put(&a, pair(&l, &mut held).await, Instant::now());
        assert!(pool.take(&PoolKey::here(addr, Some(Arc::from("ns/b\0fp2"))), Instant::now()).is_none());
        assert!(pool.take(&PoolKey::here(addr, None), Instant::now()).is_none());
        assert!(pool.take(&a, Instant::now()).is_some());
    }

    #[tokio::test]
    async fn keeps_a_bounded_number_per_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = &PoolKey::here(l.local_addr().unwrap(), None);
        let pool = Pool::new(Duration::from_secs(60));
        let mut held = Vec::new();
        for _ in 0..MAX_IDLE_PER_ADDR + 3 {
            pool.put(addr, pair(&l, &mut held).await, Instant::now());
        }
        assert_eq!(pool.idle_count(addr), MAX_IDLE_PER_ADDR);
    }
}
