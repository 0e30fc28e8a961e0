//! `floe serve`: wires the poller engine and the front doors into one
//! running instance, and reloads it.
//!
//! [`Instance::start`] binds every socket first (so a bad address fails
//! before anything runs), then starts the engine and the front doors. The
//! binary, `floe demo` and the integration tests all start floe this way.

use crate::admin::AdminServer;
use crate::challenges::Challenges;
use crate::config::Loaded;
use crate::diagnostic::Diagnostics;
use crate::dns::{DnsServer, DnsState};
use crate::history::History;
use crate::http::{self, HttpServer};
use crate::issued::Issued;
use crate::metrics::Metrics;
use crate::poll::Engine;
use crate::reload::Reloader;
use crate::shutdown::Shutdown;
use crate::snapshot::Snapshots;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Errors that stop floe from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a zone file is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(Diagnostics),
    /// A socket could not be bound.
    #[error("{0}")]
    Bind(#[from] std::io::Error),
    /// The relay pollers' HTTP client could not be built.
    #[error("poll client: {0}")]
    PollClient(String),
    /// The ACME state directory could not be made.
    #[error("[acme] state_dir: {0}")]
    Acme(#[from] crate::acme::store::StoreError),
    /// A worker thread or its runtime could not be started.
    #[error("starting worker threads: {0}")]
    Threads(std::io::Error),
}

/// A running floe: engine, HTTP workers, and the shutdown that stops them.
pub struct Instance {
    /// Where the config came from (reloads read it again).
    pub config_path: PathBuf,
    /// The HTTP addresses actually bound.
    pub http_addrs: Vec<SocketAddr>,
    /// The HTTP addresses bound for PROXY protocol connections.
    pub http_proxy_addrs: Vec<SocketAddr>,
    /// The HTTPS (TLS) addresses bound.
    pub http_tls_addrs: Vec<SocketAddr>,
    /// The DNS addresses actually bound (each on UDP and TCP).
    pub dns_addrs: Vec<SocketAddr>,
    /// The admin endpoint's addresses (empty: disabled, no token).
    pub admin_addrs: Vec<SocketAddr>,
    /// What the DNS workers answer from (zones swapped on reload).
    pub dns: Arc<DnsState>,
    /// The poller engine.
    pub engine: Engine,
    /// floe's counters (redirects, polls, DNS).
    pub metrics: Arc<Metrics>,
    /// The last minutes, for the status page.
    pub history: Arc<History>,
    /// Triggers and observes shutdown.
    pub shutdown: Shutdown,
    reloader: Reloader,
    threads: Vec<JoinHandle<()>>,
}

impl Instance {
    /// Starts floe from a loaded config. Must be called inside a tokio
    /// runtime (the engine's); the front doors run on their own threads.
    pub fn start(loaded: Loaded) -> Result<Instance, StartError> {
        let config = loaded.config.clone();
        let http = HttpServer::bind(
            &config.http.listen,
            &config.http.proxy_protocol_listen,
            &config.http.tls_listen,
            config.http.workers,
        )?;
        let dns_server = DnsServer::bind(&config.dns.listen, config.dns.udp_workers)?;
        let admin = AdminServer::bind(&config.admin)?;
        let shutdown = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let history = Arc::new(History::default());
        let engine = Engine::start(config.clone(), metrics.clone(), shutdown.clone())
            .map_err(|e| StartError::PollClient(e.to_string()))?;
        let http_addrs = http.addrs.clone();
        let http_proxy_addrs = http.proxy_addrs.clone();
        let http_tls_addrs = http.tls_addrs.clone();
        let challenges = Challenges::new();
        let issued = Issued::new();
        metrics.attach_acme(issued.clone());
        let shared = Arc::new(
            http::Shared::new(
                engine.snapshots(),
                metrics.clone(),
                history.clone(),
                config.http.max_connections,
            )
            .with_acme(challenges.clone(), issued.obtained()),
        );
        let stop = |e| {
            shutdown.trigger();
            StartError::Threads(e)
        };
        tokio::spawn(give_back_memory(shared.clone(), shutdown.clone()));
        let mut threads = http.spawn(shared, shutdown.clone()).map_err(stop)?;
        let dns_addrs = dns_server.addrs.clone();
        let dns =
            DnsState::with_challenges(engine.snapshots(), loaded.zones.clone(), challenges.clone());
        metrics.attach_dns(dns.clone());
        tokio::spawn(crate::history::run(
            engine.snapshots(),
            metrics.clone(),
            history.clone(),
            shutdown.clone(),
        ));
        threads.extend(
            dns_server
                .spawn(dns.clone(), &config, shutdown.clone())
                .map_err(stop)?,
        );
        if let Some(acme) = &config.acme
            && let Err(e) = crate::acme::start(acme.clone(), challenges, issued, shutdown.clone())
        {
            shutdown.trigger();
            return Err(e.into());
        }
        let admin_addrs = admin.as_ref().map(|a| a.addrs.clone()).unwrap_or_default();
        crate::peers::spawn(engine.clone(), shutdown.clone());
        if let Some(admin) = admin {
            admin.spawn(engine.clone(), shutdown.clone());
        }
        let reloader = Reloader::new(config.path.clone(), dns.clone(), engine.clone());
        Ok(Instance {
            config_path: config.path.clone(),
            http_addrs,
            http_proxy_addrs,
            http_tls_addrs,
            dns_addrs,
            admin_addrs,
            dns,
            engine,
            metrics,
            history,
            shutdown,
            reloader,
            threads,
        })
    }

    /// The published snapshots.
    pub fn snapshots(&self) -> Arc<Snapshots> {
        self.engine.snapshots()
    }

    /// Loads the config file again and swaps it in (see [`Reloader`]). On
    /// any error the running config stays and the diagnostics are returned.
    pub fn reload(&self) -> Result<Diagnostics, Diagnostics> {
        self.reloader.reload()
    }

    /// Reloads whenever the config file or a zone file changes, until
    /// shutdown (see [`crate::reload::watch`]).
    pub fn watch_files(&mut self) -> notify::Result<()> {
        let thread = crate::reload::watch(self.reloader.clone(), self.shutdown.clone())?;
        self.threads.push(thread);
        Ok(())
    }

    /// Stops everything and waits for the front-door threads to finish their
    /// in-flight requests.
    pub fn stop(self) {
        self.shutdown.trigger();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Open HTTP connections that must have closed (from their highest since
/// memory was last given back) before it is given back again.
const GIVE_BACK_AFTER: usize = 1000;

/// Gives the memory of connections back to the system after a flood of
/// them has ended. glibc keeps what a thread freed in that thread's arena
/// and returns only the free top of a heap, which a few live allocations
/// above the freed buffers pin: the flood of `tests/floods.rs` (4,000
/// connections) left floe's RSS 20 MiB above its start after every one
/// had closed (docs/robustness.md, "Floods and soak"). `malloc_trim`
/// releases the free pages of every arena, in about 3 ms. It runs when the open HTTP connections have fallen by
/// [`GIVE_BACK_AFTER`] from their highest since it last ran: after a
/// flood, not during one, and never in steady state.
async fn give_back_memory(shared: Arc<http::Shared>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut highest = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let open = shared.open_connections();
        highest = highest.max(open);
        if highest - open < GIVE_BACK_AFTER {
            continue;
        }
        let before = resident_mib();
        let t = std::time::Instant::now();
        let released = trim();
        tracing::info!(
            "{} HTTP connections closed: gave their memory back{} (RSS {before:.1} -> {:.1} MiB in {:.1?})",
            highest - open,
            if released {
                ""
            } else {
                " (nothing to release)"
            },
            resident_mib(),
            t.elapsed()
        );
        highest = open;
    }
}

/// Releases the free memory of every malloc arena to the system (glibc's
/// `malloc_trim`); whether any was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and is thread-safe.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// This process's resident memory in MiB (0 where /proc is not).
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
