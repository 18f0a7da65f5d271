//! Assembles the running proxy: loads the configuration, builds the snapshot and
//! the Pingora server with its services (proxy, admin, reload, status, drain), and runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;

use crate::admin::AdminApp;
use crate::metrics::Metrics;
use crate::reload::{ReloadService, Reloader};
use crate::status::{Prober, StatusBoard, PROBE_INTERVAL};

use crate::auth::UpstreamAuth;
use crate::config::{self, ClientAuthMode, Config, Settings};
use crate::proxy::fastlane::{FastLane, PoolSweeper};
use crate::proxy::front::FrontDoor;
use crate::proxy::peer::Resolver;
use crate::proxy::Proxy;
use crate::registry::{self, Registry, Snapshot};

/// Seconds a SIGTERM'd proxy keeps serving in-flight requests; fits inside
/// Kubernetes' default 30 s termination grace period with room for a preStop
/// delay. The process exits earlier once nothing is in flight ([`Drain`]).
pub const GRACEFUL_SHUTDOWN_SECONDS: u64 = 20;

/// Seconds the runtimes get to stop after the grace period (blocking tasks only).
pub const RUNTIME_SHUTDOWN_SECONDS: u64 = 3;

/// Options of `serve` beyond the settings file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Take over listening sockets from a running instance (Pingora's `-u`).
    pub upgrade: bool,
    /// Where the socket hand-over for upgrades lives.
    pub upgrade_sock: Option<String>,
    /// PID file (for upgrades and supervisors).
    pub pid_file: Option<String>,
}

/// Loads and validates the configuration, failing with every problem listed.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let config = config::load(path)
        .map_err(|d| anyhow::anyhow!("{d}"))
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    check_exposure(&config.settings)?;
    Ok(config)
}

/// Refuses an open proxy: anonymous clients on a non-loopback listener must be
/// asked for explicitly.
fn check_exposure(s: &Settings) -> anyhow::Result<()> {
    if s.client_auth.mode == ClientAuthMode::None
        && !s.listen.ip().is_loopback()
        && !s.allow_anonymous_clients
    {
        bail!(
            "listen {} is not a loopback address and clientAuth.mode is none: anyone who reaches it could use every \
             connector's credentials (hint: set clientAuth.mode: token, or allowAnonymousClients: true if a network \
             policy protects the proxy)",
            s.listen
        );
    }
    Ok(())
}

/// Runs the proxy until it is told to stop. Never returns on success.
///
/// Services: the proxy listener, the admin listener (when `admin.listen` is
/// set), the connector reloader, the status prober and the drain watcher.
pub fn serve(config_path: &Path, opts: ServeOptions) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let mut settings = config.settings;
    let (receive_buffer, warning) = crate::proxy::tcp::usable_receive_buffer(
        settings.upstream.receive_buffer,
        crate::proxy::tcp::rmem_max(),
    );
    // Info, not a warning: stock kernels (rmem_max 208 KiB) refuse the default,
    // and their autotuning ceiling (tcp_rmem[2], 6 MiB) is a bound of its own.
    if let Some(why) = warning {
        log::info!("{why}");
    }
    settings.upstream.receive_buffer = receive_buffer;
    let settings = Arc::new(settings);
    let http = registry::shared_http_client(&settings);
    let snapshot = Snapshot::build(1, &settings, config.connectors, &http)?;
    log::info!(
        "configuration loaded connectors={} resolver={:?} listen={} admin={}",
        snapshot.connectors().len(),
        settings.resolver,
        settings.listen,
        settings.admin_listen.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
    );
    let client_keys = match settings.client_auth.mode {
        ClientAuthMode::Token => Some(Arc::new(
            crate::auth::client_token::load_keys(&settings.client_auth.key_files)
                .context("cannot load the client token keys")?,
        )),
        ClientAuthMode::None => None,
    };
    let registry = Arc::new(Registry::new(snapshot));
    let auth = Arc::new(UpstreamAuth::new());
    let metrics = Metrics::leaked();
    let status = Arc::new(StatusBoard::new(1));
    let fastlane = Arc::new(FastLane::new(settings.upstream.clone()));
    let proxy = Proxy {
        client_keys,
        registry: registry.clone(),
        auth: auth.clone(),
        settings: settings.clone(),
        resolver: Arc::new(Resolver::default()),
        metrics,
        fastlane: fastlane.clone(),
    };

    let opt = Opt { upgrade: opts.upgrade, ..Opt::default() };
    let mut conf = ServerConf { threads: settings.threads, ..ServerConf::default() };
    // Pingora stops accepting at once on SIGTERM/SIGQUIT, then keeps the
    // process (and requests in flight) alive for `grace_period_seconds`; the
    // runtime shutdown after it cancels whatever still runs. [`Drain`] ends the
    // process early once nothing is in flight.
    // One runtime per thread when the front door serves the listener: it moves
    // each client socket to the runtime its task runs on, and the fast lane
    // pools upstream connections per thread, so a request never wakes another
    // thread (measured: docs/performance.md). Pingora's general path alone
    // keeps the shared work-stealing runtime.
    conf.work_stealing = !settings.upstream.fast_lane;
    conf.grace_period_seconds = Some(GRACEFUL_SHUTDOWN_SECONDS);
    conf.graceful_shutdown_timeout_seconds = Some(RUNTIME_SHUTDOWN_SECONDS);
    if let Some(sock) = opts.upgrade_sock {
        conf.upgrade_sock = sock;
    }
    if let Some(pid) = opts.pid_file {
        conf.pid_file = pid;
    }
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    // With the fast lane on, the front door reads requests and hands Pingora
    // only those it does not serve itself.
    if settings.upstream.fast_lane {
        let mut service = Service::new("oci-connector".into(), FrontDoor::new(&server.configuration, proxy));
        service.add_tcp(&settings.listen.to_string());
        server.add_service(service);
    } else {
        let mut service =
            pingora_proxy::http_proxy_service_with_name(&server.configuration, proxy, "oci-connector");
        service.add_tcp(&settings.listen.to_string());
        server.add_service(service);
    }

    if let Some(admin_listen) = settings.admin_listen {
        let mut admin = AdminApp {
            settings: settings.clone(),
            registry: registry.clone(),
            status: status.clone(),
            metrics,
            auth: auth.clone(),
        }
        .into_service();
        admin.add_tcp(&admin_listen.to_string());
        server.add_service(admin);
    }
    let reloader = Arc::new(Reloader::new(settings.clone(), registry.clone(), http, metrics, status.clone()));
    server.add_service(background_service("connector reload", ReloadService::new(reloader)));
    server.add_service(background_service(
        "connector status",
        Prober { registry, board: status, listen: settings.listen, interval: PROBE_INTERVAL },
    ));
    server.add_service(background_service("upstream pool sweep", PoolSweeper(fastlane)));
    server.add_service(background_service("drain", Drain { metrics }));
    server.run_forever()
}

/// Ends the process as soon as a graceful shutdown (SIGTERM) or upgrade
/// (SIGQUIT, after the sockets were handed over) has no request left in
/// flight, instead of always sitting out the whole grace period.
pub struct Drain {
    /// Source of the in-flight count.
    pub metrics: &'static Metrics,
}

#[async_trait::async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let started = std::time::Instant::now();
        log::info!(
            "draining in_flight={} grace_period_s={GRACEFUL_SHUTDOWN_SECONDS}",
            self.metrics.in_flight()
        );
        let mut idle_checks = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Two idle checks in a row: a request accepted just before the
            // listener closed has had time to reach the proxy's context.
            idle_checks = if self.metrics.in_flight() <= 0 { idle_checks + 1 } else { 0 };
            if idle_checks >= 3 {
                log::info!("drained, exiting duration_ms={}", started.elapsed().as_millis());
                std::process::exit(0);
            }
        }
    }
}
