//! Connector status: a background prober sets Knative-style conditions per connector.
//!
//! Conditions (the original product's): `SecretReady` (reason `SecretOptional`
//! without a secret), `LivenessReady` (`GET /v2/` answers 200 or 401),
//! `AuthReady` (the credentials obtain a token for the `repository` param, or are
//! accepted at `/v2/` for Basic registries), `ProxyServiceReady` (the proxy
//! listener accepts connections) and `Ready` (all of them). A condition's
//! `lastTransitionTime` changes only when its status changes.
//!
//! The prober runs every [`PROBE_INTERVAL`], first immediately, and again right
//! after a reload for connectors that are new or whose fingerprint changed.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use crate::auth::{self, token_client, AuthError, Challenge};
use crate::clientconfig;
use crate::config::{ConnectorId, Settings};
use crate::registry::{ConnectorState, Registry, Snapshot};

/// How often every connector is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Probes running at the same time (a large configuration must not open
/// thousands of connections at once).
const PROBE_CONCURRENCY: usize = 16;

/// How soon a proxy listener found down is checked again.
const LISTENER_RECHECK: Duration = Duration::from_millis(500);

/// Longest wait for the proxy listener to accept a connection.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(1);

/// The condition types, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    /// The connector's secret is usable (or none is needed).
    SecretReady,
    /// The registry answers `GET /v2/`.
    LivenessReady,
    /// The credentials are accepted.
    AuthReady,
    /// The proxy listener accepts connections.
    ProxyServiceReady,
    /// All of the above.
    Ready,
}

/// A condition's status (Kubernetes spells them as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (not probed, or a prerequisite failed).
    Unknown,
}

/// One Knative-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Which condition.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase word saying why.
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// What a probe found for one condition (no timestamp yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which condition.
    pub kind: ConditionType,
    /// Its status.
    pub status: ConditionStatus,
    /// Why.
    pub reason: String,
    /// For humans.
    pub message: String,
}

impl Finding {
    fn new(kind: ConditionType, status: ConditionStatus, reason: &str, message: impl Into<String>) -> Self {
        Finding { kind, status, reason: reason.to_string(), message: message.into() }
    }
}

/// The outcome of the last reload, shown by `/connectors` and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// Generation being served.
    pub generation: u64,
    /// `success` or `error`; absent before the first reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    /// When the last reload was attempted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<String>,
    /// When the served generation was loaded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// The problems of the last reload when it failed (file, location, hint), one per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

struct Entry {
    fingerprint: String,
    loaded_at: SystemTime,
    last_probe: Option<SystemTime>,
    conditions: Vec<Condition>,
}

/// Conditions of every connector plus the reload outcome; shared by the prober,
/// the reloader and the admin API.
pub struct StatusBoard {
    entries: Mutex<HashMap<ConnectorId, Entry>>,
    reload: Mutex<ReloadStatus>,
    listening: AtomicBool,
    wake: Notify,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    /// A board for `generation` (the configuration loaded at start).
    pub fn new(generation: u64) -> Self {
        let reload = ReloadStatus {
            generation,
            last_success_time: Some(rfc3339(SystemTime::now())),
            ..ReloadStatus::default()
        };
        StatusBoard {
            entries: Mutex::new(HashMap::new()),
            reload: Mutex::new(reload),
            listening: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Records a successful reload and wakes the prober for new or changed connectors.
    pub fn reload_succeeded(&self, generation: u64) {
        let now = rfc3339(SystemTime::now());
        let mut r = lock(&self.reload);
        *r = ReloadStatus {
            generation,
            last_outcome: Some("success".into()),
            last_attempt_time: Some(now.clone()),
            last_success_time: Some(now),
            errors: Vec::new(),
        };
        drop(r);
        self.wake.notify_one();
    }

    /// Records a failed reload; the served generation is unchanged.
    pub fn reload_failed(&self, errors: Vec<String>) {
        let mut r = lock(&self.reload);
        r.last_outcome = Some("error".into());
        r.last_attempt_time = Some(rfc3339(SystemTime::now()));
        r.errors = errors;
    }

    /// The last reload's outcome.
    pub fn reload_status(&self) -> ReloadStatus {
        lock(&self.reload).clone()
    }

    /// Whether the proxy listener accepted a connection at the last check.
    pub fn proxy_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Connectors whose `Ready` condition is True.
    pub fn ready_count(&self) -> usize {
        lock(&self.entries)
            .values()
            .filter(|e| {
                e.conditions
                    .iter()
                    .any(|c| c.kind == ConditionType::Ready && c.status == ConditionStatus::True)
            })
            .count()
    }

    /// The conditions of one connector (empty before it was seen).
    pub fn conditions(&self, id: &ConnectorId) -> Vec<Condition> {
        lock(&self.entries).get(id).map(|e| e.conditions.clone()).unwrap_or_default()
    }

    /// Aligns the board with `snapshot`: drops removed connectors, starts new or
    /// changed ones as Unknown. Returns the connectors to probe now (`all`, or
    /// only the new and changed ones).
    fn sync(&self, snapshot: &Snapshot, all: bool) -> Vec<Arc<ConnectorState>> {
        let now = SystemTime::now();
        let mut entries = lock(&self.entries);
        entries.retain(|id, _| snapshot.get(id).is_some());
        let mut due = Vec::new();
        for state in snapshot.connectors() {
            let c = &state.connector;
            let fresh = match entries.get(&c.id) {
                Some(e) if e.fingerprint == state.fingerprint => false,
                Some(_) | None => true,
            };
            if fresh {
                let loaded_at = entries.get(&c.id).map(|e| e.loaded_at).unwrap_or(now);
                let old = entries.remove(&c.id).map(|e| e.conditions).unwrap_or_default();
                let mut findings = vec![secret_finding(state)];
                for kind in
                    [ConditionType::LivenessReady, ConditionType::AuthReady, ConditionType::ProxyServiceReady]
                {
                    findings.push(Finding::new(kind, ConditionStatus::Unknown, "Probing", "not probed yet"));
                }
                findings.push(ready_finding(&findings));
                let conditions = merge(&old, findings, now);
                entries.insert(
                    c.id.clone(),
                    Entry { fingerprint: state.fingerprint.clone(), loaded_at, last_probe: None, conditions },
                );
            }
            if fresh || all {
                due.push(state.clone());
            }
        }
        due
    }

    /// Stores a probe's findings unless the connector changed meanwhile.
    fn update(&self, state: &ConnectorState, findings: Vec<Finding>) {
        let now = SystemTime::now();
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(&state.connector.id) else { return };
        if e.fingerprint != state.fingerprint {
            return;
        }
        let conditions = merge(&e.conditions, findings, now);
        for (new, old) in conditions.iter().map(|n| (n, e.conditions.iter().find(|o| o.kind == n.kind))) {
            if old.map(|o| o.status) != Some(new.status) && new.kind != ConditionType::Ready {
                log::info!(
                    "connector condition changed connector={} type={:?} status={:?} reason={} message=\"{}\"",
                    state.connector.id,
                    new.kind,
                    new.status,
                    new.reason,
                    new.message
                );
            }
        }
        e.conditions = conditions;
        e.last_probe = Some(now);
    }

    /// Sets `ProxyServiceReady` on every connector.
    fn set_listening(&self, finding: &Finding) {
        self.listening.store(finding.status == ConditionStatus::True, Ordering::Relaxed);
        let now = SystemTime::now();
        for e in lock(&self.entries).values_mut() {
            let mut findings: Vec<Finding> = e
                .conditions
                .iter()
                .filter(|c| c.kind != ConditionType::ProxyServiceReady && c.kind != ConditionType::Ready)
                .map(|c| Finding::new(c.kind, c.status, &c.reason, c.message.clone()))
                .collect();
            findings.push(finding.clone());
            findings.push(ready_finding(&findings));
            e.conditions = merge(&e.conditions, findings, now);
        }
    }

    /// The `/connectors` document for `snapshot`.
    pub fn connector_list(&self, settings: &Settings, snapshot: &Snapshot) -> ConnectorList {
        let entries = lock(&self.entries);
        let items = snapshot
            .connectors()
            .iter()
            .map(|state| {
                let c = &state.connector;
                let e = entries.get(&c.id);
                let mut annotations = BTreeMap::new();
                if let Some(d) = &c.description {
                    annotations.insert("cpaas.io/description".to_string(), d.clone());
                }
                let auth = (c.secret_name.is_some() || c.health_repository.is_some()).then(|| AuthView {
                    name: "tokenAuth".into(),
                    secret_ref: c.secret_name.as_ref().map(|n| NameRef { name: n.clone() }),
                    params: c
                        .health_repository
                        .iter()
                        .map(|r| ParamView { name: "repository".into(), value: r.clone() })
                        .collect(),
                });
                ConnectorView {
                    api_version: API_VERSION.into(),
                    kind: "Connector".into(),
                    metadata: ObjectMeta {
                        name: c.id.name.clone(),
                        namespace: c.id.namespace.clone(),
                        annotations,
                    },
                    spec: SpecView { connector_class_name: "oci".into(), address: c.address.clone(), auth },
                    status: StatusView {
                        conditions: e.map(|e| e.conditions.clone()).unwrap_or_default(),
                        proxy: ProxyView {
                            http_address: UrlView { url: clientconfig::http_address(settings, c) },
                        },
                        loaded_at: e.map(|e| rfc3339(e.loaded_at)),
                        last_probe_time: e.and_then(|e| e.last_probe).map(rfc3339),
                    },
                }
            })
            .collect();
        ConnectorList {
            api_version: API_VERSION.into(),
            kind: "ConnectorList".into(),
            reload: self.reload_status(),
            items,
        }
    }
}

/// Merges findings into conditions, keeping `lastTransitionTime` when the status is unchanged.
fn merge(old: &[Condition], findings: Vec<Finding>, now: SystemTime) -> Vec<Condition> {
    findings
        .into_iter()
        .map(|f| {
            let last_transition_time = match old.iter().find(|o| o.kind == f.kind) {
                Some(o) if o.status == f.status => o.last_transition_time.clone(),
                _ => rfc3339(now),
            };
            Condition {
                kind: f.kind,
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_transition_time,
            }
        })
        .collect()
}

/// `Ready` from the other findings: True when all are True; otherwise the first
/// False (or, failing that, Unknown) one's reason.
pub fn ready_finding(findings: &[Finding]) -> Finding {
    let others = || findings.iter().filter(|f| f.kind != ConditionType::Ready);
    let failing = others()
        .find(|f| f.status == ConditionStatus::False)
        .or_else(|| others().find(|f| f.status == ConditionStatus::Unknown));
    match failing {
        None => Finding::new(ConditionType::Ready, ConditionStatus::True, "Ready", "the connector is ready"),
        Some(f) => {
            Finding::new(ConditionType::Ready, f.status, &f.reason, format!("{:?}: {}", f.kind, f.message))
        }
    }
}

fn secret_finding(state: &ConnectorState) -> Finding {
    let c = &state.connector;
    match (&c.credentials, &c.secret_name) {
        (Some(cred), name) => Finding::new(
            ConditionType::SecretReady,
            ConditionStatus::True,
            "SecretFound",
            format!(
                "secret {} provides the credentials of account {}",
                name.as_deref().unwrap_or("(inline)"),
                cred.username
            ),
        ),
        (None, _) => Finding::new(
            ConditionType::SecretReady,
            ConditionStatus::True,
            "SecretOptional",
            "no secretRef: the connector accesses the registry anonymously",
        ),
    }
}

/// Probes one connector's registry: liveness, then authentication.
pub async fn probe_connector(state: &ConnectorState) -> Vec<Finding> {
    use ConditionStatus::*;
    use ConditionType::*;
    let c = &state.connector;
    let base = c.upstream.base_url();
    let mut out = vec![secret_finding(state)];
    let resp = match state.http.get(format!("{base}/v2/")).send().await {
        Ok(r) => r,
        Err(e) => {
            let e = AuthError::from_transport(e);
            out.push(Finding::new(LivenessReady, False, "Unreachable", format!("GET {base}/v2/: {e}")));
            out.push(Finding::new(AuthReady, Unknown, "RegistryUnreachable", "the registry did not answer"));
            return out;
        }
    };
    let status = resp.status().as_u16();
    if status != 200 && status != 401 {
        let msg = format!("GET {base}/v2/ answered {status} (expected 200 or 401): is this an OCI registry?");
        out.push(Finding::new(LivenessReady, False, "UnexpectedStatus", msg));
        out.push(Finding::new(
            AuthReady,
            Unknown,
            "RegistryNotAlive",
            "the registry is not answering the OCI API",
        ));
        return out;
    }
    out.push(Finding::new(LivenessReady, True, "Alive", format!("GET {base}/v2/ answered {status}")));
    let challenge = resp
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth::challenge::parse);
    out.push(auth_finding(state, status, challenge).await);
    out
}

async fn auth_finding(state: &ConnectorState, status: u16, challenge: Option<Challenge>) -> Finding {
    use ConditionStatus::*;
    use ConditionType::AuthReady;
    let c = &state.connector;
    let base = c.upstream.base_url();
    let who = match (&c.credentials, &c.secret_name) {
        (Some(cred), Some(s)) => format!("account {} (secret {s})", cred.username),
        (Some(cred), None) => format!("account {}", cred.username),
        (None, _) => "anonymous access".to_string(),
    };
    match (status, challenge) {
        (200, _) => Finding::new(
            AuthReady,
            True,
            "NoAuthRequired",
            "the registry serves GET /v2/ without authentication",
        ),
        (_, None) => Finding::new(
            AuthReady,
            False,
            "NoChallenge",
            format!("GET {base}/v2/ answered 401 without a Bearer or Basic challenge"),
        ),
        (_, Some(Challenge::Basic)) => {
            let Some(cred) = &c.credentials else {
                return Finding::new(
                    AuthReady,
                    False,
                    "CredentialsRequired",
                    "the registry requires HTTP Basic credentials and the connector has no secretRef",
                );
            };
            let req = state
                .http
                .get(format!("{base}/v2/"))
                .basic_auth(&cred.username, Some(cred.password.expose()));
            match req.send().await {
                Ok(r) if r.status().is_success() => Finding::new(
                    AuthReady,
                    True,
                    "CredentialsAccepted",
                    format!("the registry accepted {who} at /v2/"),
                ),
                Ok(r) => Finding::new(
                    AuthReady,
                    False,
                    "CredentialsRejected",
                    format!(
                        "the registry refused {who} at /v2/ ({}): check username and password",
                        r.status().as_u16()
                    ),
                ),
                Err(e) => Finding::new(
                    AuthReady,
                    False,
                    "RegistryUnreachable",
                    AuthError::from_transport(e).to_string(),
                ),
            }
        }
        (_, Some(Challenge::Bearer { realm, service, .. })) => {
            let repo =
                c.health_repository.as_deref().map(|r| crate::proxy::rewrite::upstream_repository(c, r));
            let scopes: Vec<String> = repo.iter().map(|r| format!("repository:{r}:pull")).collect();
            let what = match &repo {
                Some(r) => format!("a pull token for {r}"),
                None => "a token (no `repository` param: pull access is not checked)".to_string(),
            };
            let realm_host = url::Url::parse(&realm)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            match token_client::fetch(&state.http, &realm, &service, &scopes, c.credentials.as_ref()).await {
                Ok(_) => Finding::new(
                    AuthReady,
                    True,
                    "TokenIssued",
                    format!("{who} obtained {what} from {realm_host}"),
                ),
                Err(AuthError::Rejected { status }) => {
                    let (reason, hint) = match c.credentials {
                        Some(_) => ("CredentialsRejected", "check the username and password in the secret"),
                        None => {
                            ("AnonymousAccessDenied", "the registry needs credentials: add auth.secretRef")
                        }
                    };
                    Finding::new(
                        AuthReady,
                        False,
                        reason,
                        format!("the token endpoint {realm_host} refused {who} ({status}) asking for {what}: {hint}"),
                    )
                }
                Err(e @ (AuthError::Timeout | AuthError::Unreachable(_))) => Finding::new(
                    AuthReady,
                    False,
                    "TokenEndpointUnreachable",
                    format!("token endpoint {realm_host}: {e}"),
                ),
                Err(e) => Finding::new(
                    AuthReady,
                    False,
                    "TokenEndpointFailed",
                    format!("token endpoint {realm_host}: {e}"),
                ),
            }
        }
    }
}

/// Whether the proxy listener accepts a TCP connection.
pub async fn probe_listener(listen: SocketAddr) -> Finding {
    let target = dialable(listen);
    let result = tokio::time::timeout(LISTENER_TIMEOUT, tokio::net::TcpStream::connect(target)).await;
    match result {
        Ok(Ok(_)) => Finding::new(
            ConditionType::ProxyServiceReady,
            ConditionStatus::True,
            "Listening",
            format!("the proxy listens on {listen}"),
        ),
        Ok(Err(e)) => Finding::new(
            ConditionType::ProxyServiceReady,
            ConditionStatus::False,
            "NotListening",
            format!("cannot connect to the proxy listener {target}: {e}"),
        ),
        Err(_) => Finding::new(
            ConditionType::ProxyServiceReady,
            ConditionStatus::False,
            "NotListening",
            format!("the proxy listener {target} did not accept within {LISTENER_TIMEOUT:?}"),
        ),
    }
}

/// A wildcard listen address is reached through loopback.
pub fn dialable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The background prober (a Pingora background service).
pub struct Prober {
    /// The live connectors.
    pub registry: Arc<Registry>,
    /// Where findings go.
    pub board: Arc<StatusBoard>,
    /// The proxy listener to check.
    pub listen: SocketAddr,
    /// Time between full rounds.
    pub interval: Duration,
}

impl Prober {
    /// Probes the listener, then the due connectors, at most [`PROBE_CONCURRENCY`] at once.
    pub async fn round(&self, all: bool) {
        let snapshot = self.registry.load();
        let due = self.board.sync(&snapshot, all);
        self.board.set_listening(&probe_listener(self.listen).await);
        let limit = Arc::new(Semaphore::new(PROBE_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for state in due {
            let board = self.board.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let Ok(_permit) = limit.acquire().await else { return };
                let mut findings = probe_connector(&state).await;
                // ProxyServiceReady is owned by the listener check; keep its current value.
                let listening = board
                    .conditions(&state.connector.id)
                    .into_iter()
                    .find(|c| c.kind == ConditionType::ProxyServiceReady)
                    .map(|c| Finding::new(c.kind, c.status, &c.reason, c.message));
                findings.extend(listening);
                findings.push(ready_finding(&findings));
                board.update(&state, findings);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_full = tokio::time::Instant::now();
        let mut woken = false;
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_full {
                next_full = now + self.interval;
                self.round(true).await;
            } else if woken {
                self.round(false).await;
            } else {
                self.board.set_listening(&probe_listener(self.listen).await);
            }
            // The proxy listener may start after the first round: recheck it
            // soon rather than reporting it down for a whole interval.
            let wait = match self.board.proxy_listening() {
                true => next_full,
                false => next_full.min(tokio::time::Instant::now() + LISTENER_RECHECK),
            };
            woken = tokio::select! {
                _ = tokio::time::sleep_until(wait) => false,
                _ = self.board.wake.notified() => true,
                _ = shutdown.changed() => return,
            };
        }
    }
}

/// API version of the connector objects.
pub const API_VERSION: &str = "connectors.alauda.io/v1alpha1";

/// `/connectors`: every connector with its conditions, plus the reload outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorList {
    /// [`API_VERSION`].
    pub api_version: String,
    /// `ConnectorList`.
    pub kind: String,
    /// The last reload's outcome (errors of a failed reload are here).
    pub reload: ReloadStatus,
    /// The connectors, sorted by id.
    pub items: Vec<ConnectorView>,
}

/// One connector as the admin API shows it; never a credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorView {
    /// [`API_VERSION`].
    pub api_version: String,
    /// `Connector`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// Address and auth reference.
    pub spec: SpecView,
    /// Conditions and proxy address.
    pub status: StatusView,
}

/// Object metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Connector name.
    pub name: String,
    /// Connector namespace.
    pub namespace: String,
    /// The description annotation, if any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The connector's spec without secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    /// Always `oci`.
    pub connector_class_name: String,
    /// The registry address as configured.
    pub address: String,
    /// Auth type, secret name and params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthView>,
}

/// `spec.auth` without the secret's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthView {
    /// `tokenAuth`.
    pub name: String,
    /// The secret's name (never its values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NameRef>,
    /// Auth params (`repository`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamView>,
}

/// A reference by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRef {
    /// The name.
    pub name: String,
}

/// An auth param.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamView {
    /// Param name.
    pub name: String,
    /// Param value.
    pub value: String,
}

/// `status` of a connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The conditions.
    pub conditions: Vec<Condition>,
    /// Where clients reach the connector.
    pub proxy: ProxyView,
    /// When this proxy instance first loaded the connector (the table's AGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// When the connector was last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
}

/// `status.proxy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyView {
    /// `status.proxy.httpAddress`.
    pub http_address: UrlView,
}

/// `{url: ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UrlView {
    /// The URL.
    pub url: String,
}

/// The `status` table: NAME NAMESPACE ADDRESS READY REASON AGE, like `kubectl get`.
pub fn table(list: &ConnectorList, now: SystemTime) -> String {
    let mut rows = vec![["NAME", "NAMESPACE", "ADDRESS", "READY", "REASON", "AGE"].map(String::from)];
    for item in &list.items {
        let ready = item.status.conditions.iter().find(|c| c.kind == ConditionType::Ready);
        let age = item
            .status
            .loaded_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .map(short_age)
            .unwrap_or_else(|| "<unknown>".into());
        rows.push([
            item.metadata.name.clone(),
            item.metadata.namespace.clone(),
            item.spec.address.clone(),
            ready.map(|c| format!("{:?}", c.status)).unwrap_or_else(|| "Unknown".into()),
            ready.map(|c| c.reason.clone()).unwrap_or_default(),
            age,
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's short age: `45s`, `12m`, `5h`, `3d`.
fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// RFC 3339 with seconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionStatus::*;
    use ConditionType::*;

    fn f(kind: ConditionType, status: ConditionStatus, reason: &str) -> Finding {
        Finding::new(kind, status, reason, reason.to_lowercase())
    }

    #[test]
    fn ready_needs_everything_true() {
        let all = vec![f(SecretReady, True, "A"), f(LivenessReady, True, "B"), f(AuthReady, True, "C")];
        assert_eq!(ready_finding(&all).status, True);
        let mut some = all.clone();
        some[2] = f(AuthReady, False, "CredentialsRejected");
        some.push(f(ProxyServiceReady, Unknown, "Probing"));
        let r = ready_finding(&some);
        assert_eq!((r.status, r.reason.as_str()), (False, "CredentialsRejected"));
        assert!(r.message.starts_with("AuthReady: "), "{}", r.message);
        let unknown = vec![f(SecretReady, True, "A"), f(LivenessReady, Unknown, "Probing")];
        assert_eq!(ready_finding(&unknown).status, Unknown);
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t1 = t0 + Duration::from_secs(60);
        let first = merge(&[], vec![f(AuthReady, False, "X")], t0);
        let same = merge(&first, vec![f(AuthReady, False, "Y")], t1);
        assert_eq!(same[0].last_transition_time, first[0].last_transition_time);
        assert_eq!(same[0].reason, "Y", "reason and message follow the latest probe");
        let flipped = merge(&same, vec![f(AuthReady, True, "Z")], t1);
        assert_eq!(flipped[0].last_transition_time, rfc3339(t1));
    }

    #[test]
    fn wildcard_listeners_are_dialled_on_loopback() {
        let a: SocketAddr = "0.0.0.0:5000".parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 5000)));
        assert_eq!(dialable(a), SocketAddr::from(([127, 0, 0, 1], 5000)));
        let b = SocketAddr::from(([10, 0, 0, 1], 80));
        assert_eq!(dialable(b), b);
    }

    #[test]
    fn table_looks_like_kubectl() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let conditions = merge(&[], vec![f(Ready, False, "CredentialsRejected")], now);
        let item = ConnectorView {
            api_version: API_VERSION.into(),
            kind: "Connector".into(),
            metadata: ObjectMeta {
                name: "hub".into(),
                namespace: "team-a".into(),
                annotations: BTreeMap::new(),
            },
            spec: SpecView {
                connector_class_name: "oci".into(),
                address: "https://index.docker.io".into(),
                auth: None,
            },
            status: StatusView {
                conditions,
                proxy: ProxyView { http_address: UrlView { url: "http://p/x".into() } },
                loaded_at: Some(rfc3339(now - Duration::from_secs(300))),
                last_probe_time: None,
            },
        };
        let list = ConnectorList {
            api_version: API_VERSION.into(),
            kind: "ConnectorList".into(),
            reload: ReloadStatus::default(),
            items: vec![item],
        };
        assert_eq!(
            table(&list, now),
            "NAME   NAMESPACE   ADDRESS                   READY   REASON                AGE\n\
             hub    team-a      https://index.docker.io   False   CredentialsRejected   5m\n"
        );
        assert_eq!(short_age(Duration::from_secs(3 * 86_400)), "3d");
    }

    #[test]
    fn conditions_serialize_like_kubernetes() {
        let c = merge(&[], vec![f(SecretReady, True, "SecretOptional")], SystemTime::UNIX_EPOCH);
        let json = serde_json::to_value(&c[0]).unwrap_or_default();
        assert_eq!(json["type"], "SecretReady");
        assert_eq!(json["status"], "True");
        assert_eq!(json["lastTransitionTime"], "1970-01-01T00:00:00Z");
    }
}
