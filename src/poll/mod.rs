//! The poller: one task per relay polling its Icecast status, and the
//! snapshot builder that folds their observations into a new [`Snapshot`].
//!
//! [`Engine`] owns both. It is the only writer of the [`Snapshots`];
//! DNS and HTTP only read it. Builds are coalesced: after a build the
//! builder waits [`rebuild_spacing`] (at least [`MIN_REBUILD_SPACING`], and
//! [`REBUILD_SPACING_FACTOR`] times what the build took), so 1,000 relays
//! polled every 2 s cost about 11 rebuilds a second, not 500, and
//! builds never take more than about 1.6 % of a core. A build copies the
//! rows of relays not polled since the last one ([`Rows`]); a poller makes
//! its relay's row itself after a good poll.
//!
//! Reload: [`Engine::reload`] swaps in a new config. Relays whose name,
//! status URL and poll settings are unchanged keep their task and health;
//! others are stopped or started; every relay keeps its in-flight grants.

mod fetch;
pub mod http1;
mod relay;

pub use fetch::PollTarget;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::select;
use crate::shares::grid::PollGrid;
use crate::shares::{PeerReport, Shares};
use crate::shutdown::Shutdown;
use crate::snapshot::{RelayObservation, ReloadReport, Rows, Snapshot, Snapshots, Stamp, Topology};
use arc_swap::ArcSwap;
use relay::{RelayPoller, Slot, lock};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Shortest time between two snapshot builds.
pub const MIN_REBUILD_SPACING: Duration = Duration::from_millis(20);

/// After a build, the builder waits at least this many times as long as the
/// build took: builds use at most 1/61 (1.6 %) of a core, whatever the size
/// of the cluster. A 1,000 x 20 build (~1.4 ms in a live process, cold
/// caches, half of it `select::prepare`) is followed by ~85 ms of quiet: a
/// poll is served within about 90 ms, far below the failover bound
/// (interval + timeout x fall, seconds).
pub const REBUILD_SPACING_FACTOR: u32 = 60;

/// How long the builder waits after a build that took `took`.
pub fn rebuild_spacing(took: Duration) -> Duration {
    took.saturating_mul(REBUILD_SPACING_FACTOR)
        .max(MIN_REBUILD_SPACING)
}

/// Runs the relay pollers and publishes snapshots.
#[derive(Clone)]
pub struct Engine {
    snapshots: Arc<Snapshots>,
    /// floe's metrics (pollers count into them).
    metrics: Arc<Metrics>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    shutdown: Shutdown,
}

struct State {
    topology: Arc<Topology>,
    /// Per relay of `topology`, in order.
    slots: Vec<Arc<Slot>>,
    tasks: HashMap<Arc<str>, Task>,
    client: reqwest::Client,
    client_timeout: Duration,
    generation: u64,
    runtime_drain: HashSet<String>,
    reload: Arc<ReloadReport>,
    /// The peer exchange's latest report and shares (`None`: no exchange;
    /// builds use the static `[select] share`).
    peers: Option<Arc<PeerReport>>,
    shares: Option<Shares>,
    /// The relay rows of the last build, reused by the next.
    rows: Rows,
}

/// A running relay poller.
struct Task {
    target: PollTarget,
    poll: crate::config::PollConfig,
    /// Polled on the shared grid (with `[[peer]]`s).
    on_grid: bool,
    slot: Arc<Slot>,
    stop: Shutdown,
}

impl Engine {
    /// Publishes a first snapshot (every relay unknown) and starts polling
    /// every relay of `config`, counting polls in `metrics`. Must run inside
    /// a tokio runtime. Everything stops when `shutdown` fires. Fails only
    /// when no HTTP client can be built.
    pub fn start(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Result<Engine, reqwest::Error> {
        let topology = Arc::new(Topology::new(config.clone(), None));
        let first = Snapshot::build(
            topology.clone(),
            &vec![None; topology.relays.len()],
            &[],
            Stamp::now(1),
            Arc::default(),
        );
        let snapshots = Arc::new(Snapshots::new(first));
        let timeout = config.poll.timeout;
        let state = State {
            topology: topology.clone(),
            slots: Vec::new(),
            tasks: HashMap::new(),
            client: fetch::client(timeout)?,
            client_timeout: timeout,
            generation: 1,
            runtime_drain: HashSet::new(),
            reload: Arc::default(),
            peers: None,
            shares: None,
            rows: Rows::default(),
        };
        let engine = Engine {
            metrics,
            snapshots,
            state: Arc::new(Mutex::new(state)),
            notify: Arc::new(Notify::new()),
            shutdown,
        };
        engine.apply(topology);
        tokio::spawn(engine.clone().build_loop());
        Ok(engine)
    }

    /// The published snapshots.
    pub fn snapshots(&self) -> Arc<Snapshots> {
        self.snapshots.clone()
    }

    /// Swaps in a validated new config: pollers of changed relays restart,
    /// the rest keep their state; in-flight grants carry over. A snapshot of
    /// the new config is published before this returns.
    pub fn reload(&self, config: Arc<Config>) {
        let previous = lock(&self.state).topology.clone();
        let topology = Arc::new(Topology::new(config, Some(&previous)));
        self.apply(topology);
        {
            let mut st = lock(&self.state);
            let mut report = (*st.reload).clone();
            report.successes += 1;
            report.last_success = Some(std::time::SystemTime::now());
            report.last_error = None;
            st.reload = Arc::new(report);
        }
        self.rebuild();
        tracing::info!("config reloaded");
    }

    /// Records a reload that failed: the running config stays, and the
    /// error shows in the next snapshot's [`ReloadReport`] (status page,
    /// metrics) until a reload succeeds.
    pub fn reload_failed(&self, error: &str) {
        {
            let mut st = lock(&self.state);
            let mut report = (*st.reload).clone();
            report.failures += 1;
            report.last_error = Some((std::time::SystemTime::now(), error.to_string()));
            st.reload = Arc::new(report);
        }
        self.rebuild();
        tracing::error!("reload failed; the last good config keeps serving:\n{error}");
    }

    /// Sets or clears a runtime drain on relay `name` (on top of the
    /// config's `drain`). Returns false when no such relay exists.
    pub fn set_drain(&self, name: &str, drain: bool) -> bool {
        {
            let mut st = lock(&self.state);
            if st.topology.relay_by_name(name).is_none() {
                return false;
            }
            if drain {
                st.runtime_drain.insert(name.to_string());
            } else {
                st.runtime_drain.remove(name);
            }
        }
        self.rebuild();
        true
    }

    /// The peer exchange's latest state (from [`crate::peers`]): its report,
    /// and the shares when a round has computed them. New shares, or a peer
    /// connecting or disconnecting, notify the snapshot builder; `None`
    /// ends the exchange (builds use the static share again).
    pub fn set_peers(&self, update: Option<(PeerReport, Option<Shares>)>) {
        let changed = {
            let mut st = lock(&self.state);
            match update {
                None => {
                    let changed = st.peers.is_some() || st.shares.is_some();
                    st.peers = None;
                    st.shares = None;
                    changed
                }
                Some((report, shares)) => {
                    let links =
                        |r: &PeerReport| r.peers.iter().map(|p| p.connected).collect::<Vec<_>>();
                    let mut changed = st.peers.as_deref().map(links) != Some(links(&report));
                    st.peers = Some(Arc::new(report));
                    if let Some(shares) = shares
                        && st.shares.as_ref() != Some(&shares)
                    {
                        st.shares = Some(shares);
                        changed = true;
                    }
                    changed
                }
            }
        };
        if changed {
            self.notify.notify_one();
        }
    }

    /// The peer exchange's latest report (what `/peer` answers), `None`
    /// without `[[peer]]`s.
    pub fn peer_report(&self) -> Option<Arc<PeerReport>> {
        lock(&self.state).peers.clone()
    }

    /// Starts, keeps or stops relay tasks to match `topology`.
    fn apply(&self, topology: Arc<Topology>) {
        let mut st = lock(&self.state);
        let config = &topology.config;
        if st.client_timeout != config.poll.timeout {
            // A client that cannot be built keeps the old one (and its timeout).
            match fetch::client(config.poll.timeout) {
                Ok(client) => {
                    st.client = client;
                    st.client_timeout = config.poll.timeout;
                }
                Err(e) => tracing::error!("poll client for the new timeout: {e}"),
            }
        }
        let mut old_tasks = std::mem::take(&mut st.tasks);
        let mut slots = Vec::with_capacity(topology.relays.len());
        for ((rid, def), rc) in topology.relays.iter_ids().zip(&config.relays) {
            let target = PollTarget {
                url: format!("{}{}", rc.url, rc.status.path),
                status: rc.status.clone(),
            };
            let kept = old_tasks.remove(&def.name);
            let on_grid = !config.peers.peers.is_empty();
            let slot = match kept {
                Some(task)
                    if task.target == target
                        && task.poll == config.poll
                        && task.on_grid == on_grid =>
                {
                    task.slot.grants.store(def.grants.clone());
                    task.slot.place.store(Arc::new((topology.clone(), rid)));
                    let slot = task.slot.clone();
                    st.tasks.insert(def.name.clone(), task);
                    slot
                }
                other => {
                    // Changed or new: a changed relay's health carries over
                    // only if it is still polled at the same URL.
                    let observation = match other {
                        Some(task) => {
                            task.stop.trigger();
                            let obs = lock(&task.slot.observation).clone();
                            obs.filter(|_| task.target == target)
                        }
                        None => None,
                    };
                    let slot = Arc::new(Slot {
                        observation: Mutex::new(observation),
                        grants: ArcSwap::new(def.grants.clone()),
                        place: ArcSwap::from_pointee((topology.clone(), rid)),
                        row: Mutex::new(None),
                        quiet_until_published: AtomicBool::new(false),
                    });
                    let stop = Shutdown::new();
                    let poller = RelayPoller {
                        name: def.name.clone(),
                        fetcher: fetch::Fetcher::new(target.clone(), st.client.clone()),
                        poll: config.poll.clone(),
                        slot: slot.clone(),
                        notify: self.notify.clone(),
                        shutdown: stop.clone(),
                        stats: self.metrics.poll_stats(&def.name),
                        grid: on_grid.then(|| {
                            let grid = PollGrid::new(config.poll.interval);
                            (grid, grid.phase(&def.url))
                        }),
                    };
                    let global = self.shutdown.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = poller.run() => {}
                            _ = global.wait() => {}
                        }
                    });
                    st.tasks.insert(
                        def.name.clone(),
                        Task {
                            target,
                            poll: config.poll.clone(),
                            on_grid,
                            slot: slot.clone(),
                            stop,
                        },
                    );
                    slot
                }
            };
            slots.push(slot);
        }
        for (name, task) in old_tasks {
            tracing::info!(relay = %name, "relay removed from config; polling stopped");
            task.stop.trigger();
        }
        st.runtime_drain
            .retain(|n| topology.relay_by_name(n).is_some());
        st.slots = slots;
        st.topology = topology;
    }

    /// Builds and publishes a snapshot from the latest observations.
    fn rebuild(&self) {
        let mut st = lock(&self.state);
        st.generation += 1;
        // Relays whose poll this build publishes: quiet until then. Taken
        // before their observations are read (a poller stores its
        // observation, then sets the flag).
        let unquiet: Vec<usize> = (st.slots.iter().enumerate())
            .filter(|(_, s)| s.quiet_until_published.swap(false, Ordering::AcqRel))
            .map(|(i, _)| i)
            .collect();
        let mut rows = std::mem::take(&mut st.rows);
        rows.prepare(&st.topology);
        for slot in &st.slots {
            if let Some((topology, r, status, row)) = lock(&slot.row).take() {
                rows.offer(&topology, r, status, row);
            }
        }
        let guards: Vec<_> = st.slots.iter().map(|s| lock(&s.observation)).collect();
        let observations: Vec<Option<&RelayObservation>> =
            guards.iter().map(|g| g.as_ref()).collect();
        // No runtime drain (the usual case): no lookup per relay.
        let drains: Vec<bool> = if st.runtime_drain.is_empty() {
            Vec::new()
        } else {
            st.topology
                .relays
                .iter()
                .map(|r| st.runtime_drain.contains(&*r.name))
                .collect()
        };
        let stamp = Stamp::now(st.generation);
        // Shares of the exchange apply to the mounts they were computed
        // for: right after a reload that changed the mounts, the static
        // share until the next round.
        let same_mounts = |paths: &[Box<str>]| {
            paths.len() == st.topology.mounts.len()
                && paths
                    .iter()
                    .zip(st.topology.mounts.iter())
                    .all(|(p, m)| *p == m.path)
        };
        let usable = st.peers.as_deref().is_some_and(|p| same_mounts(&p.paths));
        let uniform;
        let shares = match st.shares.as_ref().filter(|_| usable) {
            Some(shares) => shares,
            None => {
                uniform =
                    Shares::uniform(st.topology.config.select.share, st.topology.mounts.len());
                &uniform
            }
        };
        let (topology, reload) = (st.topology.clone(), st.reload.clone());
        let mut snapshot = Snapshot::build_with(
            topology,
            &observations,
            &drains,
            stamp,
            reload,
            shares,
            &mut rows,
        );
        snapshot.peers = st.peers.clone();
        drop(guards);
        st.rows = rows;
        select::prepare(&snapshot);
        self.snapshots.store(snapshot);
        if !unquiet.is_empty() {
            for &i in &unquiet {
                st.slots[i].grants.load().set_quiet(false);
            }
            self.snapshots.quiet_ended();
        }
    }

    async fn build_loop(self) {
        loop {
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = self.shutdown.wait() => return,
            }
            let start = std::time::Instant::now();
            self.rebuild();
            tokio::time::sleep(rebuild_spacing(start.elapsed())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_are_spaced_by_their_cost() {
        // Small clusters: the floor.
        assert_eq!(
            rebuild_spacing(Duration::from_micros(50)),
            MIN_REBUILD_SPACING
        );
        // Large ones: 60x the build, so builds use at most 1.6 % of a core.
        assert_eq!(
            rebuild_spacing(Duration::from_millis(1)),
            Duration::from_millis(60)
        );
    }
}
