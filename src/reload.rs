//! Hot reload of the connectors: watch + debounce (or SIGHUP) -> load -> validate -> swap.
//!
//! The connectors paths' *parent directories* are watched, not the files: editors
//! save by writing a new file and renaming it over the old one, and Kubernetes
//! updates a mounted ConfigMap by swapping its `..data` symlink, and neither is
//! seen by a watch on the file itself. Events are debounced ([`DEBOUNCE`]) so one
//! save (or one ConfigMap update) is one reload.
//!
//! A reload parses and validates every file first and builds a complete new
//! [`Snapshot`]; only then is it swapped in. A broken file changes nothing: the
//! last good snapshot keeps serving and the problems are logged, counted
//! (`reloads_total{outcome="error"}`) and shown in the status API. Settings are
//! not reloaded (a listener or key change needs a restart or an upgrade).
//!
//! Cached registry tokens are keyed by the connector's fingerprint (address,
//! credentials, CA), so a connector whose credentials changed never reuses a
//! token, while unchanged connectors keep theirs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::config::{self, Diagnostics, Settings};
use crate::metrics::{Metrics, ReloadOutcome};
use crate::registry::{Registry, Snapshot, SnapshotError};
use crate::status::StatusBoard;

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in a watched directory.
    FileChange,
    /// `SIGHUP`.
    Signal,
    /// A direct call (tests, tools).
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChange => "file-change",
            Trigger::Signal => "sighup",
            Trigger::Manual => "manual",
        }
    }
}

/// Why a reload kept the last good configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files are invalid; every problem is listed.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The connectors are valid but a snapshot could not be built from them.
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    /// The reload task died (a bug); nothing was swapped.
    #[error("reload task failed: {0}")]
    Task(String),
}

impl ReloadError {
    /// One line per problem, for the status API.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(d) => d.iter().map(|d| d.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The new generation.
    pub generation: u64,
    /// Connectors in the new snapshot.
    pub connectors: usize,
    /// Connectors that were not in the old snapshot.
    pub added: usize,
    /// Connectors that are gone.
    pub removed: usize,
    /// Connectors whose address, credentials or CA changed (their tokens are not reused).
    pub changed: usize,
    /// Time to load, validate, build and swap.
    pub elapsed: Duration,
}

/// Loads, validates and swaps the connector snapshot.
pub struct Reloader {
    /// The proxy's settings (connector paths, timeouts).
    pub settings: Arc<Settings>,
    /// Where the snapshot is swapped.
    pub registry: Arc<Registry>,
    /// The shared HTTP client for connectors without their own CA.
    pub http: reqwest::Client,
    /// Reload counters.
    pub metrics: &'static Metrics,
    /// Reload outcome and prober wake-up.
    pub status: Arc<StatusBoard>,
    /// One reload at a time.
    serial: Mutex<()>,
}

impl Reloader {
    /// A reloader for the given components.
    pub fn new(
        settings: Arc<Settings>,
        registry: Arc<Registry>,
        http: reqwest::Client,
        metrics: &'static Metrics,
        status: Arc<StatusBoard>,
    ) -> Self {
        Reloader { settings, registry, http, metrics, status, serial: Mutex::new(()) }
    }

    /// Reloads now (blocking: reads files). On error the live snapshot is untouched.
    pub fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let old = self.registry.load();
        let result =
            config::load_connectors(&self.settings.connector_paths).map_err(ReloadError::Invalid).and_then(
                |connectors| Ok(Snapshot::build(old.generation + 1, &self.settings, connectors, &self.http)?),
            );
        let next = match result {
            Ok(next) => next,
            Err(e) => {
                self.metrics.record_reload(ReloadOutcome::Error);
                let lines = e.lines();
                log::error!(
                    "configuration reload failed, keeping the last good configuration generation={} trigger={} problems={}",
                    old.generation,
                    trigger.as_str(),
                    lines.len()
                );
                for line in &lines {
                    log::error!("configuration problem: {line}");
                }
                self.status.reload_failed(lines);
                return Err(e);
            }
        };
        let (added, removed, changed) = diff(&old, &next);
        let report = ReloadReport {
            generation: next.generation,
            connectors: next.connectors().len(),
            added,
            removed,
            changed,
            elapsed: Duration::ZERO,
        };
        let live = next.connectors().iter().map(|c| &*c.label).collect();
        self.metrics.retain_connectors(&live);
        self.registry.swap(next);
        let report = ReloadReport { elapsed: started.elapsed(), ..report };
        self.metrics.record_reload(ReloadOutcome::Success);
        self.status.reload_succeeded(report.generation);
        log::info!(
            "configuration reloaded generation={} trigger={} connectors={} added={} removed={} changed={} duration_ms={}",
            report.generation,
            trigger.as_str(),
            report.connectors,
            report.added,
            report.removed,
            report.changed,
            report.elapsed.as_millis()
        );
        Ok(report)
    }

    /// Starts watching the connectors paths; each relevant event is sent on `tx`.
    /// `None` (with a warning logged) when the platform watcher cannot start:
    /// SIGHUP still reloads.
    fn watch(&self, tx: mpsc::UnboundedSender<()>) -> Option<RecommendedWatcher> {
        let targets = WatchTargets::new(&self.settings.connector_paths);
        let filter = targets.clone();
        let handler = move |res: notify::Result<Event>| match res {
            Ok(event) if filter.is_relevant(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => log::warn!("connectors watch error error=\"{e}\""),
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("cannot watch the connectors files, reload with SIGHUP error=\"{e}\"");
                return None;
            }
        };
        for dir in &targets.dirs {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => log::info!("watching for connector changes dir={}", dir.display()),
                Err(e) => {
                    log::warn!("cannot watch dir={} error=\"{e}\" (SIGHUP still reloads)", dir.display())
                }
            }
        }
        Some(watcher)
    }
}

/// Counts added, removed and changed connectors between two snapshots.
fn diff(old: &Snapshot, new: &Snapshot) -> (usize, usize, usize) {
    let mut added = 0;
    let mut changed = 0;
    for s in new.connectors() {
        match old.get(&s.connector.id) {
            None => added += 1,
            Some(o) if o.fingerprint != s.fingerprint => changed += 1,
            Some(_) => {}
        }
    }
    let removed = old.connectors().iter().filter(|o| new.get(&o.connector.id).is_none()).count();
    (added, removed, changed)
}

/// Which directories to watch and which of their events matter.
#[derive(Debug, Clone, Default)]
pub struct WatchTargets {
    /// Directories handed to the watcher.
    pub dirs: Vec<PathBuf>,
    /// Connector files given by name: an event on one of them matters.
    files: HashSet<PathBuf>,
    /// Parents of those files: Kubernetes' `..data` swaps there matter too.
    file_parents: HashSet<PathBuf>,
    /// Connector directories: any event on an entry matters.
    source_dirs: HashSet<PathBuf>,
}

impl WatchTargets {
    /// Targets for the configured connector paths (files or directories).
    pub fn new(paths: &[PathBuf]) -> Self {
        let mut t = WatchTargets::default();
        for p in paths {
            // Absolute without resolving symlinks: a ConfigMap file is a symlink
            // into a directory that is replaced on every update.
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            if p.is_dir() {
                t.source_dirs.insert(p.clone());
                t.push_dir(p);
            } else if let Some(parent) = p.parent() {
                t.file_parents.insert(parent.to_path_buf());
                t.push_dir(parent.to_path_buf());
                t.files.insert(p);
            }
        }
        t
    }

    fn push_dir(&mut self, dir: PathBuf) {
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }

    /// Whether an event should trigger a reload. Reads (ours included) do not,
    /// nor do other files that happen to share a directory (logs, sockets).
    pub fn is_relevant(&self, event: &Event) -> bool {
        if matches!(event.kind, EventKind::Access(notify::event::AccessKind::Open(_)))
            || matches!(event.kind, EventKind::Access(notify::event::AccessKind::Read))
            || matches!(
                event.kind,
                EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Read))
            )
        {
            return false;
        }
        event.paths.iter().any(|p| self.path_matters(p))
    }

    fn path_matters(&self, p: &Path) -> bool {
        if self.files.contains(p) || self.source_dirs.contains(p) {
            return true;
        }
        let Some(parent) = p.parent() else { return false };
        if self.source_dirs.contains(parent) {
            return true;
        }
        let k8s_atomic = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".."));
        k8s_atomic && self.file_parents.contains(parent)
    }
}

/// The reload loop as a Pingora background service: file events and SIGHUP.
pub struct ReloadService {
    /// Does the work.
    pub reloader: Arc<Reloader>,
    /// Quiet time before a file-triggered reload.
    pub debounce: Duration,
}

impl ReloadService {
    /// A service around `reloader` with the default debounce.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        ReloadService { reloader, debounce: DEBOUNCE }
    }
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Kept alive for as long as the loop runs; dropping it stops the watch.
        let _watcher = self.reloader.watch(tx);
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("cannot handle SIGHUP error=\"{e}\"");
                None
            }
        };
        loop {
            let trigger = tokio::select! {
                Some(()) = rx.recv() => Trigger::FileChange,
                Some(()) = recv_signal(&mut hup) => Trigger::Signal,
                _ = shutdown.changed() => return,
            };
            if trigger == Trigger::FileChange {
                // Debounce: wait until the directory has been quiet for a while.
                while let Ok(Some(())) = tokio::time::timeout(self.debounce, rx.recv()).await {}
            }
            let reloader = self.reloader.clone();
            let result = tokio::task::spawn_blocking(move || reloader.reload(trigger)).await;
            if let Err(e) = result {
                log::error!("configuration reload task failed error=\"{e}\"");
                self.reloader.status.reload_failed(vec![ReloadError::Task(e.to_string()).to_string()]);
            }
        }
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};

    fn ev(kind: EventKind, p: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(p))
    }

    #[test]
    fn only_our_files_and_kubernetes_swaps_matter() {
        let t = WatchTargets {
            dirs: vec![],
            files: [PathBuf::from("/etc/oci/connectors.yaml")].into(),
            file_parents: [PathBuf::from("/etc/oci")].into(),
            source_dirs: [PathBuf::from("/etc/oci/more")].into(),
        };
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(t.is_relevant(&ev(modify, "/etc/oci/connectors.yaml")));
        assert!(t.is_relevant(&ev(EventKind::Modify(ModifyKind::Name(RenameMode::To)), "/etc/oci/..data")));
        assert!(t.is_relevant(&ev(EventKind::Create(CreateKind::File), "/etc/oci/more/x.yaml")));
        assert!(!t.is_relevant(&ev(modify, "/etc/oci/proxy.log")), "a log next to the file is not a change");
        assert!(!t.is_relevant(&ev(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/etc/oci/connectors.yaml"
        )));
        assert!(t.is_relevant(&ev(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/etc/oci/connectors.yaml"
        )));
    }

    #[test]
    fn files_watch_their_parent_and_dirs_themselves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("conf.d");
        std::fs::create_dir(&sub).expect("mkdir");
        let file = dir.path().join("connectors.yaml");
        let t = WatchTargets::new(&[file.clone(), sub.clone()]);
        assert_eq!(t.dirs, vec![dir.path().to_path_buf(), sub.clone()]);
        assert!(t.path_matters(&file));
        assert!(t.path_matters(&sub.join("a.yaml")));
        assert!(!t.path_matters(&dir.path().join("other.yaml")));
    }
}
