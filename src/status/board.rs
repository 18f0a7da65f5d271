//! The status board: every connector's conditions plus the reload outcome.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::conditions::{merge, ready_finding, Condition, ConditionStatus, ConditionType, Finding};
use super::probe::secret_finding;
use super::rfc3339;
use super::view::{
    AuthView, ConnectorList, ConnectorView, NameRef, ObjectMeta, ParamView, ProxyView, SpecView, StatusView,
    UrlView, API_VERSION,
};
use crate::clientconfig;
use crate::config::{ConnectorId, Settings};
use crate::registry::{ConnectorState, Snapshot};

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
    /// Wakes the prober after a reload.
    pub(super) wake: Notify,
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
    pub(super) fn sync(&self, snapshot: &Snapshot, all: bool) -> Vec<Arc<ConnectorState>> {
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
    pub(super) fn update(&self, state: &ConnectorState, findings: Vec<Finding>) {
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
    pub(super) fn set_listening(&self, finding: &Finding) {
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

/// Locks `m`, recovering from poisoning (a panicked prober task must not wedge the board).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
