//! Authentication: to registries (challenges, scopes, tokens) and of clients (proxy tokens).
//!
//! [`UpstreamAuth`] answers one question for the proxy: which `Authorization`
//! header to send upstream for a connector and a set of scopes. It learns each
//! registry's auth scheme once (a `GET /v2/` probe, or any 401 it sees), caches
//! tokens in moka keyed by (connector, credential fingerprint, realm, service,
//! scope), and makes exactly one token request per key however many requests
//! miss at once. In front of moka, each connector's [`AuthMemo`] answers the
//! common case (a warm token for a scope seen recently) with one read lock.

pub mod challenge;
pub mod client_token;
pub mod scope;
pub mod token_client;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use moka::future::Cache;
use moka::Expiry;

use crate::registry::ConnectorState;
use crate::secret::Secret;
use crate::shard::Sharded;
pub use challenge::Challenge;

/// Why no upstream authorization could be obtained. Messages never contain
/// credentials or tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The registry or its token endpoint could not be reached.
    #[error("cannot reach the registry or its token endpoint: {0}")]
    Unreachable(String),
    /// The registry or its token endpoint did not answer in time.
    #[error("the registry or its token endpoint timed out")]
    Timeout,
    /// The token endpoint refused the connector's credentials.
    #[error("the registry refused the connector's credentials (token endpoint answered {status})")]
    Rejected {
        /// 401 or 403.
        status: u16,
    },
    /// The token endpoint failed.
    #[error("the registry's token endpoint answered {status}")]
    TokenEndpoint {
        /// Its HTTP status.
        status: u16,
    },
    /// The token endpoint's answer had no usable token.
    #[error("the registry's token endpoint sent no usable token")]
    BadTokenResponse,
    /// The challenge's realm is not an http(s) URL.
    #[error("the registry's challenge names an unusable token realm")]
    BadRealm,
    /// `GET /v2/` answered something that is neither 200 nor a usable 401.
    #[error("the registry answered {status} to GET /v2/ without a usable challenge")]
    NoChallenge {
        /// Its HTTP status.
        status: u16,
    },
}

impl AuthError {
    /// Classifies a transport error without echoing its URL (which may carry a username).
    pub fn from_transport(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return AuthError::Timeout;
        }
        let what = if e.is_connect() { "connection failed" } else { "request failed" };
        // The innermost cause says what really happened (refused, unknown CA, ...);
        // reqwest's own message would carry the URL, which may carry a username.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let root = cause.to_string();
        AuthError::Unreachable(if std::ptr::addr_eq(cause, &e) {
            what.to_string()
        } else {
            format!("{what}: {root}")
        })
    }
}

/// How a registry wants to be authenticated, learnt once per connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `GET /v2/` answered 200: no auth.
    Anonymous,
    /// HTTP Basic.
    Basic,
    /// Token auth against `realm` for `service` (shared strings: they are part
    /// of every token cache key).
    Bearer {
        /// Token endpoint.
        realm: Arc<str>,
        /// The service parameter.
        service: Arc<str>,
    },
}

impl Scheme {
    /// The scheme a challenge asks for.
    pub fn from_challenge(c: &Challenge) -> Self {
        match c {
            Challenge::Basic => Scheme::Basic,
            Challenge::Bearer { realm, service, .. } => {
                Scheme::Bearer { realm: Arc::from(realm.as_str()), service: Arc::from(service.as_str()) }
            }
        }
    }
}

/// The header to send upstream, and whether it came from the cache.
#[derive(Debug, Clone, Default)]
pub struct Authorization {
    /// `Authorization` value, or `None` for anonymous.
    pub header: Option<Secret>,
    /// True when a cached token was used (no token request made).
    pub from_cache: bool,
}

/// (connector id, credential fingerprint), precomputed per connector load.
type SchemeKey = Arc<str>;

/// Cache key of a token: every part but the scope is shared, so building a key
/// for a lookup allocates only the scope string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    connector: Arc<str>,
    realm: Arc<str>,
    service: Arc<str>,
    scope: String,
}

#[derive(Debug)]
struct CachedToken {
    header: Secret,
    /// When it was obtained.
    obtained: Instant,
    /// When the entry stops being handed out: before the token expires.
    refresh_after: Duration,
}

/// Entries an [`AuthMemo`] holds before it starts over.
const MEMO_CAPACITY: usize = 4096;
/// How long a memoised Basic or anonymous answer is reused before the scheme
/// cache is consulted again.
const MEMO_SCHEME_TTL: Duration = Duration::from_secs(60);

/// One connector's recent answers, by scope. Entries end when the token they
/// copy is due for refresh; any refusal by the registry clears them all.
/// Lives in the connector's state, so a reload starts it afresh (the moka
/// caches behind it survive reloads).
///
/// Kept per thread ([`Sharded`]): each thread memoises what it looked up, in
/// its own copy of the header, so a hit takes only its thread's (uncontended)
/// lock and bumps no count another core writes too (each thread's first
/// request for a scope goes to moka, which is shared).
#[derive(Debug, Default)]
pub struct AuthMemo {
    shards: Sharded<MemoShard>,
}

/// One thread's memo: locked by that thread, and by [`AuthMemo::clear`] after
/// a refusal, so the lock is uncontended.
type MemoShard = Mutex<HashMap<String, (Authorization, Instant)>>;

impl AuthMemo {
    fn get(&self, scope: &str, now: Instant) -> Option<Authorization> {
        let entries = self.shards.local().lock().unwrap_or_else(|p| p.into_inner());
        let (a, until) = entries.get(scope)?;
        (now < *until).then(|| Authorization { header: a.header.clone(), from_cache: true })
    }

    fn put(&self, scope: Cow<'_, str>, auth: &Authorization, until: Instant) {
        // A copy of the value, not of the shared handle: its count is this thread's.
        let own =
            Authorization { header: auth.header.as_ref().map(Secret::copy), from_cache: auth.from_cache };
        let mut entries = self.shards.local().lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MEMO_CAPACITY {
            entries.clear();
        }
        entries.insert(scope.into_owned(), (own, until));
    }

    fn clear(&self) {
        for shard in self.shards.all() {
            shard.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// The memo key of a scope list: the scope itself when there is one.
fn memo_key(scopes: &[String]) -> Cow<'_, str> {
    match scopes {
        [one] => Cow::Borrowed(one.as_str()),
        many => Cow::Owned(many.join(" ")),
    }
}

/// Refresh margin: a token is replaced when a quarter of its life (at most
/// 30 s) remains, so a request never starts with a token about to expire.
fn refresh_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / 4).min(Duration::from_secs(30));
    lifetime.saturating_sub(margin).max(Duration::from_millis(100))
}

struct TokenExpiry;

impl Expiry<TokenKey, Arc<CachedToken>> for TokenExpiry {
    fn expire_after_create(&self, _k: &TokenKey, v: &Arc<CachedToken>, _now: Instant) -> Option<Duration> {
        Some(v.refresh_after)
    }
}

/// Counters of the token machinery (exported as metrics).
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Requests served with a cached token (per thread: counted on every
    /// request; [`AuthStats::cache_hit_count`] sums them).
    pub cache_hits: Sharded<AtomicU64>,
    /// Requests that had to wait for a token request.
    pub cache_misses: AtomicU64,
    /// Token requests that succeeded.
    pub fetch_ok: AtomicU64,
    /// Token requests that failed.
    pub fetch_failed: AtomicU64,
}

impl AuthStats {
    /// Requests served with a cached token, all threads.
    pub fn cache_hit_count(&self) -> u64 {
        self.cache_hits.all().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// Upstream authorization for all connectors: scheme discovery plus token cache.
pub struct UpstreamAuth {
    schemes: Cache<SchemeKey, Scheme>,
    tokens: Cache<TokenKey, Arc<CachedToken>>,
    /// Counters for metrics.
    pub stats: AuthStats,
}

impl Default for UpstreamAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamAuth {
    /// An empty cache.
    pub fn new() -> Self {
        UpstreamAuth {
            // A registry may change its auth setup; relearn it now and then.
            schemes: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(600)).build(),
            tokens: Cache::builder().max_capacity(1_000_000).expire_after(TokenExpiry).build(),
            stats: AuthStats::default(),
        }
    }

    /// The `Authorization` header for `scopes` on `state`'s registry.
    pub async fn authorization(
        &self,
        state: &ConnectorState,
        scopes: &[String],
    ) -> Result<Authorization, AuthError> {
        self.authorization_at(state, scopes, Instant::now()).await
    }

    /// [`authorization`](Self::authorization) with a clock reading the caller
    /// already has (a request's start), so a memo hit reads no clock.
    pub async fn authorization_at(
        &self,
        state: &ConnectorState,
        scopes: &[String],
        now: Instant,
    ) -> Result<Authorization, AuthError> {
        let key = memo_key(scopes);
        if let Some(hit) = state.auth_memo.get(&key, now) {
            self.stats.cache_hits.local().fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        let (auth, until) = self.lookup(state, scopes).await?;
        state.auth_memo.put(key, &auth, until.unwrap_or(now + MEMO_SCHEME_TTL));
        Ok(auth)
    }

    /// The answer from the scheme and token caches (fetching on a miss), and
    /// until when it may be memoised (`None`: the scheme TTL).
    async fn lookup(
        &self,
        state: &ConnectorState,
        scopes: &[String],
    ) -> Result<(Authorization, Option<Instant>), AuthError> {
        let scheme = match self.schemes.get(&state.cache_key).await {
            Some(s) => s,
            None => self
                .schemes
                .try_get_with(state.cache_key.clone(), probe(state))
                .await
                .map_err(|e: Arc<AuthError>| (*e).clone())?,
        };
        match scheme {
            Scheme::Anonymous => Ok((Authorization::default(), None)),
            Scheme::Basic => Ok((Authorization { header: basic_header(state), from_cache: true }, None)),
            Scheme::Bearer { realm, service } => {
                let (auth, token) = self.bearer(state, realm, service, scopes).await?;
                Ok((auth, Some(token.obtained + token.refresh_after)))
            }
        }
    }

    async fn bearer(
        &self,
        state: &ConnectorState,
        realm: Arc<str>,
        service: Arc<str>,
        scopes: &[String],
    ) -> Result<(Authorization, Arc<CachedToken>), AuthError> {
        let key = TokenKey { connector: state.cache_key.clone(), realm, service, scope: scopes.join(" ") };
        if let Some(hit) = self.tokens.get(&key).await {
            self.stats.cache_hits.local().fetch_add(1, Ordering::Relaxed);
            return Ok((Authorization { header: Some(hit.header.clone()), from_cache: true }, hit));
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let fetch = async {
            let issued = token_client::fetch(
                &state.http,
                &key.realm,
                &key.service,
                scopes,
                state.connector.credentials.as_ref(),
            )
            .await;
            match issued {
                Ok(t) => {
                    self.stats.fetch_ok.fetch_add(1, Ordering::Relaxed);
                    let header = Secret::new(format!("Bearer {}", t.token.expose()));
                    let refresh_after = refresh_after(t.lifetime);
                    Ok(Arc::new(CachedToken { header, obtained: Instant::now(), refresh_after }))
                }
                Err(e) => {
                    self.stats.fetch_failed.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        };
        let token = self.tokens.try_get_with(key.clone(), fetch).await.map_err(|e| (*e).clone())?;
        Ok((Authorization { header: Some(token.header.clone()), from_cache: false }, token))
    }

    /// Records a challenge seen on a refused request and drops the token that
    /// was refused, so the retry fetches a fresh one.
    pub async fn refused(&self, state: &ConnectorState, challenge: Option<&Challenge>, scopes: &[String]) {
        state.auth_memo.clear();
        let skey: &SchemeKey = &state.cache_key;
        if let Some(Scheme::Bearer { realm, service }) = self.schemes.get(skey).await {
            let key = TokenKey { connector: skey.clone(), realm, service, scope: scopes.join(" ") };
            self.tokens.invalidate(&key).await;
        }
        match challenge.map(Scheme::from_challenge) {
            Some(new) => self.schemes.insert(skey.clone(), new).await,
            None => self.schemes.invalidate(skey).await,
        }
    }

    /// Number of cached tokens (for tests and metrics).
    pub fn cached_tokens(&self) -> u64 {
        self.tokens.entry_count()
    }
}

/// `Basic base64(user:password)` for connectors with credentials.
fn basic_header(state: &ConnectorState) -> Option<Secret> {
    let c = state.connector.credentials.as_ref()?;
    let raw = format!("{}:{}", c.username, c.password.expose());
    Some(Secret::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))))
}

/// Learns a registry's scheme from `GET /v2/`: 200 is anonymous, 401 carries the challenge.
async fn probe(state: &ConnectorState) -> Result<Scheme, AuthError> {
    let url = format!("{}/v2/", state.connector.upstream.base_url());
    let resp = state.http.get(url).send().await.map_err(AuthError::from_transport)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(Scheme::Anonymous);
    }
    let challenge = resp
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(challenge::parse);
    match (status.as_u16(), challenge) {
        (401, Some(c)) => Ok(Scheme::from_challenge(&c)),
        (s, _) => Err(AuthError::NoChallenge { status: s }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_before_expiry() {
        assert_eq!(refresh_after(Duration::from_secs(300)), Duration::from_secs(270));
        assert_eq!(refresh_after(Duration::from_secs(60)), Duration::from_secs(45));
        assert_eq!(refresh_after(Duration::from_secs(2)), Duration::from_millis(1500));
        assert_eq!(refresh_after(Duration::ZERO), Duration::from_millis(100));
    }
}
