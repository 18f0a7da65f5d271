//! An in-process Docker token server (the "token authentication" spec of CNCF
//! distribution) on a free loopback port, with request counters and fault injection.
//!
//! `GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=..][&account=..]` with
//! optional HTTP Basic credentials answers
//! `{"token", "access_token", "expires_in", "issued_at"}`; the JWT is RS256-signed and
//! carries a libtrust `kid`, which is how distribution 2.8 picks the verifying key from
//! its `rootcertbundle`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jsonwebtoken::EncodingKey;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::registry::RegistryAuth;

mod endpoint;
mod jwt;
mod keys;

use endpoint::accept_loop;
use jwt::{parse_scope, sign, Access};
use keys::make_keys;

// Helpers for tests; unused re-exports are no warning in binaries that skip them.
#[allow(unused_imports)]
pub use jwt::rfc3339;
#[allow(unused_imports)]
pub use keys::libtrust_key_id;

/// Which of the two token fields the answer carries. The token spec allows either or
/// both; a client must accept whichever is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFields {
    /// Both `token` and `access_token` (same value), like distribution's reference server.
    Both,
    /// Only `token` (Docker Hub style).
    TokenOnly,
    /// Only `access_token` (OAuth2 style).
    AccessTokenOnly,
}

/// A failure the server injects into every `/token` answer while set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// `500 Internal Server Error` with a JSON error body.
    Status500,
    /// `200` with a token that is not a JWT (the registry will reject it).
    GarbageToken,
}

/// One configured account.
#[derive(Debug, Clone)]
pub struct TokenUser {
    /// Password expected in HTTP Basic.
    pub password: String,
    /// Actions this user may be granted, e.g. `["pull"]`; `"*"` grants whatever is asked.
    pub allowed: Vec<String>,
}

/// Start-up configuration; everything but `service`/`issuer` can also change at runtime.
#[derive(Debug, Clone)]
pub struct TokenServerConfig {
    /// `aud` of issued tokens; requests for another `service` get 400.
    pub service: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// user name -> account.
    pub users: HashMap<String, TokenUser>,
    /// Whether requests without `Authorization` get a (pull-only) token.
    pub anonymous: bool,
    /// `expires_in` of answers; `None` omits the field (spec default: 60 s).
    pub expires_in: Option<u64>,
    /// Lifetime written into the JWT `exp` (seconds, may be negative); defaults to
    /// `expires_in` (or 60). Note distribution 2.8 allows 60 s of clock-skew leeway on
    /// `exp`/`nbf`: a token whose `exp` is 59 s past is still accepted, 65 s past is
    /// rejected (measured), so "expired upstream token" tests need a lifetime <= -61.
    pub jwt_lifetime: Option<i64>,
    /// Which token fields the answer carries.
    pub fields: TokenFields,
}

impl Default for TokenServerConfig {
    fn default() -> Self {
        Self {
            service: "test-registry".into(),
            issuer: "test-token-issuer".into(),
            users: HashMap::new(),
            anonymous: false,
            expires_in: Some(300),
            jwt_lifetime: None,
            fields: TokenFields::Both,
        }
    }
}

impl TokenServerConfig {
    /// Adds a user allowed `actions` (e.g. `&["pull", "push"]`, or `&["*"]`).
    pub fn user(mut self, name: &str, password: &str, actions: &[&str]) -> Self {
        let allowed = actions.iter().map(|a| a.to_string()).collect();
        self.users.insert(name.into(), TokenUser { password: password.into(), allowed });
        self
    }

    /// Allows anonymous requests (granted `pull` only).
    pub fn anonymous(mut self, allow: bool) -> Self {
        self.anonymous = allow;
        self
    }

    /// Sets `expires_in` (`None` omits it).
    pub fn expires_in(mut self, secs: Option<u64>) -> Self {
        self.expires_in = secs;
        self
    }

    /// Sets which token fields the answer carries.
    pub fn fields(mut self, fields: TokenFields) -> Self {
        self.fields = fields;
        self
    }
}

/// One `/token` request as the server saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The Basic user name, `None` when anonymous.
    pub user: Option<String>,
    /// The `account` query parameter.
    pub account: Option<String>,
    /// The `service` query parameter.
    pub service: Option<String>,
    /// Every scope, in request order (multiple `scope=` and space-separated both split).
    pub scopes: Vec<String>,
    /// The status code answered.
    pub status: u16,
}

/// Runtime-mutable behaviour.
#[derive(Debug, Clone)]
struct Settings {
    config: TokenServerConfig,
    fault: Fault,
    delay: Duration,
}

#[derive(Default)]
struct Counts {
    per_scope: HashMap<String, u64>,
    log: Vec<TokenRequest>,
}

/// Every token answered over HTTP, kept across `reset_counts` (for leak checks).
#[derive(Default)]
struct Issued(Vec<String>);

struct State {
    settings: Mutex<Settings>,
    counts: Mutex<Counts>,
    issued: Mutex<Issued>,
    total: AtomicU64,
    key: EncodingKey,
    kid: String,
}

/// A running token server; its task is aborted and its key files deleted on drop.
pub struct TokenServer {
    state: Arc<State>,
    addr: SocketAddr,
    task: JoinHandle<()>,
    cert_path: PathBuf,
    service: String,
    issuer: String,
    _dir: TempDir,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

impl TokenServer {
    /// Generates an RSA key + self-signed certificate with `openssl`, binds a free
    /// loopback port and serves `/token` on the current tokio runtime.
    pub async fn start(config: TokenServerConfig) -> TokenServer {
        let dir = tempfile::Builder::new().prefix("token-server-").tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        let keys = tokio::task::spawn_blocking(move || make_keys(&path))
            .await
            .expect("key generation task")
            .expect("generate token signing key with openssl");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind token server");
        let addr = listener.local_addr().expect("token server address");
        let (service, issuer) = (config.service.clone(), config.issuer.clone());
        let state = Arc::new(State {
            settings: Mutex::new(Settings { config, fault: Fault::None, delay: Duration::ZERO }),
            counts: Mutex::new(Counts::default()),
            issued: Mutex::new(Issued::default()),
            total: AtomicU64::new(0),
            key: keys.key,
            kid: keys.kid,
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        TokenServer { state, addr, task, cert_path: keys.cert_path, service, issuer, _dir: dir }
    }

    /// `http://127.0.0.1:<port>/token`, the realm to announce.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The listening socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service (token audience).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The PEM certificate of the signing key (a distribution `rootcertbundle`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The libtrust key ID put in every token's `kid` header.
    pub fn kid(&self) -> &str {
        &self.state.kid
    }

    /// `RegistryAuth::Token` pointing a [`Registry`](super::registry::Registry) here.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm(),
            service: self.service.clone(),
            issuer: self.issuer.clone(),
            root_cert_bundle: self.cert_path.clone(),
        }
    }

    /// Requests to `/token` since start or the last [`reset_counts`](Self::reset_counts),
    /// including failed ones.
    pub fn request_count(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    /// Requests that asked for exactly this scope string, e.g. `repository:a/b:pull,push`
    /// (a scope repeated within one request counts once).
    pub fn requests_for_scope(&self, scope: &str) -> u64 {
        lock(&self.state.counts).per_scope.get(scope).copied().unwrap_or(0)
    }

    /// Requests with any scope on repository `name` (whatever the actions).
    pub fn requests_for_repository(&self, name: &str) -> u64 {
        let counts = lock(&self.state.counts);
        let hits = counts
            .log
            .iter()
            .filter(|r| r.scopes.iter().any(|s| parse_scope(s).is_some_and(|p| p.name == name)));
        hits.count() as u64
    }

    /// Every request seen, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.counts).log.clone()
    }

    /// Every token answered over HTTP since start (not cleared by `reset_counts`), so a
    /// test can assert none of them leaked into proxy output.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state.issued).0.clone()
    }

    /// Zeroes every counter and clears the request log (issued tokens are kept).
    pub fn reset_counts(&self) {
        let mut counts = lock(&self.state.counts);
        *counts = Counts::default();
        self.state.total.store(0, Ordering::SeqCst);
    }

    /// Injects `fault` into every following answer (`Fault::None` to stop).
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.state.settings).fault = fault;
    }

    /// Delays every following answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state.settings).delay = delay;
    }

    /// Changes `expires_in` (`None` omits it).
    pub fn set_expires_in(&self, secs: Option<u64>) {
        lock(&self.state.settings).config.expires_in = secs;
    }

    /// Changes the JWT lifetime (see [`TokenServerConfig::jwt_lifetime`]).
    pub fn set_jwt_lifetime(&self, secs: Option<i64>) {
        lock(&self.state.settings).config.jwt_lifetime = secs;
    }

    /// Changes which token fields answers carry.
    pub fn set_fields(&self, fields: TokenFields) {
        lock(&self.state.settings).config.fields = fields;
    }

    /// Adds or replaces a user at runtime.
    pub fn set_user(&self, name: &str, password: &str, actions: &[&str]) {
        let allowed = actions.iter().map(|a| a.to_string()).collect();
        let user = TokenUser { password: password.into(), allowed };
        lock(&self.state.settings).config.users.insert(name.into(), user);
    }

    /// Signs a token granting exactly `scope` (`type:name:actions`, several separated by
    /// spaces), subject `test`, bypassing HTTP; not recorded in `issued_tokens`.
    pub fn mint_for_tests(&self, scope: &str) -> String {
        let settings = lock(&self.state.settings).clone();
        let scopes: Vec<String> = scope.split(' ').map(String::from).collect();
        let access = jwt::grant(&scopes, &["*".to_string()]);
        sign(&self.state, &settings.config, "test", access).expect("sign token")
    }

    /// Signs a token for `user` granting `access` (`(repository, actions)`), bypassing
    /// HTTP; for tests that need a valid upstream token directly.
    pub fn issue_token(&self, user: &str, access: &[(&str, &[&str])]) -> String {
        let settings = lock(&self.state.settings).clone();
        let access = access
            .iter()
            .map(|(name, actions)| Access {
                kind: "repository".into(),
                name: name.to_string(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        sign(&self.state, &settings.config, user, access).expect("sign token")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not poison the server for everyone else.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
