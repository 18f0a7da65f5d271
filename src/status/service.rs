//! The background prober: schedules probe rounds and writes findings to the board.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::Semaphore;

use super::board::StatusBoard;
use super::conditions::{ready_finding, ConditionType, Finding};
use super::probe::{probe_connector, probe_listener};
use crate::registry::Registry;

/// Probes running at the same time (a large configuration must not open
/// thousands of connections at once).
const PROBE_CONCURRENCY: usize = 16;

/// How soon a proxy listener found down is checked again.
const LISTENER_RECHECK: Duration = Duration::from_millis(500);

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
    /// Probes the listener, then the due connectors, at most `PROBE_CONCURRENCY` (16) at once.
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
