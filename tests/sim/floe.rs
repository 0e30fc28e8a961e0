//! floe in the loop: one or several instances, each with its own topology
//! (config text -> `Topology`), grant counters, pollers' `Health` and
//! `Reconciler`, snapshots (`Snapshot::build` + `select::prepare`) and
//! picks (`select::pick`), run at the simulated instants the poll loop
//! (`poll/relay.rs`) and the snapshot builder (`poll/mod.rs`) would run
//! them. Nothing here decides: it only keeps the clock.

use super::Time;
use super::policy::{Balancer, PollClock, Route};
use super::scenario::Scenario;
use super::world::World;
use floe::config::PollConfig;
use floe::grants::Reconciler;
use floe::health::Health;
use floe::ids::{MountId, PoolId, RelayId};
use floe::poll::MIN_REBUILD_SPACING;
use floe::select::{self, Grant, NoCandidate};
use floe::shares::grid::{self, PollGrid};
use floe::shares::{Exchange, Shares};
use floe::snapshot::{RelayObservation, ReloadReport, Snapshot, Stamp, Topology};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often instances publish their demand and fetch their peers'.
const EXCHANGE_EVERY: Duration = Duration::from_millis(500);

/// The config text of one instance for `scenario`, with `[select] share`.
pub fn config_text(scenario: &Scenario, share: f64) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "[http]\nlisten = [\"127.0.0.1:0\"]\n");
    let _ = writeln!(t, "[select]\nshare = {share}\n");
    for r in &scenario.relays {
        let _ = writeln!(
            t,
            "[[relay]]\nname = \"{}\"\nurl = \"http://{}.example.org:8000\"",
            r.name, r.name
        );
        // The relay's Icecast `<clients>` limit, which its status does not
        // carry: the operator writes it in floe's config.
        let _ = writeln!(
            t,
            "status = {{ kind = \"icecast-json\" }}\nmax_listeners = {}",
            r.slots
        );
        if let Some(u) = r.uplink_kbps {
            let _ = writeln!(t, "uplink_kbps = {u}");
        }
        let _ = writeln!(t);
    }
    let paths: Vec<String> = scenario
        .mounts
        .iter()
        .map(|m| format!("\"{}\"", m.path))
        .collect();
    // Every mount of the scenarios has the same bitrate.
    let _ = writeln!(
        t,
        "[[stream]]\nname = \"live\"\nmounts = [{}]\nbitrate_kbps = {}",
        paths.join(", "),
        scenario.mounts[0].kbps
    );
    t
}

/// The simulated time of the first point of `grid` with `phase` after
/// simulated time `now` (`epoch` is simulated time 0).
fn on_grid(grid: &PollGrid, epoch: SystemTime, now: Time, phase: Duration) -> Time {
    let wall = epoch + Duration::from_micros(now);
    let next = grid.next_after(wall, phase);
    // Rounded up: the grid point is strictly after `now`.
    next.duration_since(epoch)
        .unwrap_or_default()
        .as_nanos()
        .div_ceil(1000) as Time
}

/// How often a listener held by quiet relays asks again (the snapshot
/// builder's shortest spacing: quiet ends with a build).
const QUIET_RECHECK: Time = MIN_REBUILD_SPACING.as_micros() as Time;

/// One relay's poller state, as `RelayPoller::run` keeps it.
struct Poller {
    health: Health,
    reconciler: Reconciler,
    observation: Option<RelayObservation>,
    polls: u64,
    /// The grant sample for the next poll is due at this time (`None`:
    /// taken).
    sample_due: Option<Time>,
}

/// One floe instance.
pub struct Instance {
    topology: Arc<Topology>,
    snapshot: Snapshot,
    pollers: Vec<Poller>,
    clock: PollClock,
    /// With peers: the shared poll grid and each relay's phase on it.
    grid: Option<(PollGrid, Vec<Duration>)>,
    /// Relays polled since the last build: quiet until it publishes them.
    polled_quiet: Vec<usize>,
    poll: PollConfig,
    /// A build is due at this time (the builder was notified).
    build_due: Option<Time>,
    last_build: Option<Time>,
    generation: u64,
    mounts: Vec<MountId>,
    paths: Vec<&'static str>,
    base: Instant,
    epoch: SystemTime,
    rng: SmallRng,
    /// With peers: the exchange, this instance's request counts per mount,
    /// what it published last, and when it next publishes and fetches.
    exchange: Option<Exchange>,
    requests: Vec<u64>,
    published: Vec<f64>,
    next_exchange: Time,
}

impl Instance {
    /// An instance for `scenario` with `share`, seeded with `seed`; `base`
    /// is simulated time 0.
    pub fn new(
        scenario: &Scenario,
        share: f64,
        peers: usize,
        seed: u64,
        base: Instant,
    ) -> Instance {
        let text = config_text(scenario, share);
        let (config, diags) = floe::config::parse(Path::new("sim.toml"), &text);
        let config = config.unwrap_or_else(|| panic!("simulation config:\n{diags}\n{text}"));
        let poll = config.poll.clone();
        let topology = Arc::new(Topology::new(Arc::new(config), None));
        let mut rng = SmallRng::seed_from_u64(seed);
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // With peers, relays are polled on the shared grid and grants count
        // GRID_MARGIN longer, as the poll loop does.
        let grid = (peers > 0).then(|| {
            let grid = PollGrid::new(poll.interval);
            let phases: Vec<Duration> =
                topology.relays.iter().map(|r| grid.phase(&r.url)).collect();
            (grid, phases)
        });
        let settle = grid::grant_settle(poll.settle, grid.is_some());
        let pollers = topology
            .relays
            .iter()
            .map(|def| Poller {
                health: Health::new(epoch),
                reconciler: Reconciler::new(def.grants.sample(), settle, poll.grant_ttl),
                observation: None,
                polls: 0,
                sample_due: None,
            })
            .collect();
        // Every `[poll] interval` with its jitter, as the poll loop does,
        // the first polls spread over 50 ms.
        let mut clock = PollClock::new(
            scenario.relays.len(),
            poll.interval.as_micros() as Time,
            poll.jitter,
            50_000,
            &mut rng,
        );
        if let Some((grid, phases)) = &grid {
            for (next, phase) in clock.next.iter_mut().zip(phases) {
                *next = on_grid(grid, epoch, 0, *phase);
            }
        }
        let paths: Vec<&'static str> = scenario.mounts.iter().map(|m| m.path).collect();
        let mounts = paths
            .iter()
            .map(|p| topology.mount_id(p).expect("mount in config"))
            .collect();
        let exchange = (peers > 0).then(|| Exchange::new(peers, EXCHANGE_EVERY, share, &poll));
        let next_exchange =
            rand::Rng::random_range(&mut rng, 0..EXCHANGE_EVERY.as_micros() as Time);
        let mut instance = Instance {
            snapshot: build(&topology, &[], 0, base, epoch, 0, None),
            exchange,
            requests: vec![0; paths.len()],
            published: vec![0.0; paths.len()],
            next_exchange,
            topology,
            pollers,
            clock,
            grid,
            polled_quiet: Vec::new(),
            poll,
            build_due: None,
            last_build: None,
            generation: 0,
            mounts,
            paths,
            base,
            epoch,
            rng,
        };
        for r in 0..instance.pollers.len() {
            instance.schedule_sample(r, 0);
        }
        instance
    }

    /// Whether relays are quiet from their grant sample until their poll
    /// is published, as the poll loop decides.
    fn quiet(&self) -> bool {
        self.grid.is_some() && grid::quiet_fits(self.poll.settle, self.poll.interval)
    }

    fn schedule_sample(&mut self, r: usize, now: Time) {
        let next = self.clock.next[r];
        let at = self.pollers[r]
            .reconciler
            .sample_at(self.instant(next), self.instant(now));
        self.pollers[r].sample_due = Some(self.time(at));
    }

    fn instant(&self, t: Time) -> Instant {
        self.base + Duration::from_micros(t)
    }

    fn time(&self, i: Instant) -> Time {
        i.saturating_duration_since(self.base).as_micros() as Time
    }

    fn wall(&self, t: Time) -> SystemTime {
        self.epoch + Duration::from_micros(t)
    }

    /// When this instance next has something to do.
    pub fn next_wakeup(&self) -> Option<Time> {
        let samples = self.pollers.iter().filter_map(|p| p.sample_due);
        let polls = self
            .clock
            .next
            .iter()
            .zip(&self.pollers)
            .filter(|(_, p)| p.sample_due.is_none())
            .map(|(t, _)| *t);
        samples.chain(polls).chain(self.build_due).min()
    }

    /// Runs everything due at `now`.
    pub fn wake(&mut self, now: Time, world: &World) {
        for r in 0..self.pollers.len() {
            if self.pollers[r].sample_due.is_some_and(|t| t <= now) {
                let grants = &self.topology.relays[RelayId::new(r)].grants;
                // On the grid, quiet from the sample until the poll's
                // result is published, as the poll loop does.
                if self.quiet() {
                    grants.set_quiet(true);
                }
                let sample = grants.sample();
                let at = self.instant(now);
                let p = &mut self.pollers[r];
                p.reconciler.record(at, sample);
                p.sample_due = None;
            }
            if self.pollers[r].sample_due.is_none() && self.clock.next[r] <= now {
                self.poll_relay(r, now, world);
            }
        }
        if self.build_due.is_some_and(|t| t <= now) {
            self.build_due = None;
            self.last_build = Some(now);
            self.generation += 1;
            let observations: Vec<Option<&RelayObservation>> = self
                .pollers
                .iter()
                .map(|p| p.observation.as_ref())
                .collect();
            let shares = self
                .exchange
                .as_mut()
                .map(|x| x.shares(self.base + Duration::from_micros(now), self.mounts.len()));
            self.snapshot = build(
                &self.topology,
                &observations,
                self.generation,
                self.base,
                self.epoch,
                now,
                shares.as_ref(),
            );
            for r in self.polled_quiet.drain(..) {
                self.topology.relays[RelayId::new(r)]
                    .grants
                    .set_quiet(false);
            }
        }
    }

    /// One poll of relay `r` at `now` (answered at once: a poll on a LAN
    /// takes a few milliseconds).
    fn poll_relay(&mut self, r: usize, now: Time, world: &World) {
        let outcome = world.poll(r, &self.paths);
        let good = matches!(outcome, floe::health::PollOutcome::Status(_));
        let (at, wall) = (self.instant(now), self.wall(now));
        let p = &mut self.pollers[r];
        let baseline = p.reconciler.after_poll(at, good, at);
        p.health
            .observe(outcome, self.poll.rise, self.poll.fall, wall);
        p.polls += 1;
        p.observation = Some(RelayObservation {
            health: p.health.clone(),
            baseline,
            polled_at: Some(wall),
            polls: p.polls,
            poll_duration: Some(Duration::from_millis(2)),
        });
        // The poll loop's jittered interval (or the next grid point), then
        // the next sample.
        self.clock.polled(r, now, &mut self.rng);
        if let Some((grid, phases)) = &self.grid {
            self.clock.next[r] = on_grid(grid, self.epoch, now, phases[r]);
        }
        self.schedule_sample(r, now);
        if self.quiet() {
            self.polled_quiet.push(r);
        }
        self.notify(now);
    }

    /// Notifies the snapshot builder (a poll or the exchange changed its
    /// inputs): it builds at once, or MIN_REBUILD_SPACING after its last
    /// build.
    fn notify(&mut self, now: Time) {
        if self.build_due.is_none() {
            let spacing = MIN_REBUILD_SPACING.as_micros() as Time;
            self.build_due = Some(self.last_build.map_or(now, |b| (b + spacing).max(now)));
        }
    }

    /// Publishes this instance's demand (every interval).
    fn publish(&mut self, now: Time) {
        let at = self.instant(now);
        let counts = self.requests.iter().copied().collect();
        if let Some(x) = &mut self.exchange {
            self.published = x.publish(at, &counts).iter().copied().collect();
        }
    }

    /// Picks a relay for one listener of mount index `mount` at `now`, as
    /// a redirect does (`routes::respond_waiting`): a listener who finds
    /// only quiet room waits for the quiet to end (asking again every
    /// [`QUIET_RECHECK`]; the real door is woken when it ends), up to
    /// `quiet_limit`, then takes a quiet relay; demand counts with the
    /// answer, once. `held`: how long its request has been held.
    pub fn route(&mut self, now: Time, mount: usize, held: Time) -> Route {
        let m = self.mounts[mount];
        let limit = grid::quiet_limit(self.poll.settle, self.poll.timeout);
        let grant = if held < limit.as_micros() as Time {
            Grant::RecordUnlessQuiet
        } else {
            Grant::Record
        };
        let route = match select::pick(&self.snapshot, m, PoolId::new(0), grant, &mut self.rng) {
            Ok(p) => Route::Relay(p.relay.index()),
            Err(NoCandidate::Quiet) => return Route::Wait(now + QUIET_RECHECK),
            Err(_) => Route::Refused,
        };
        self.requests[mount] += 1;
        route
    }
}

/// A snapshot of `topology` from `observations`, prepared for picks.
fn build(
    topology: &Arc<Topology>,
    observations: &[Option<&RelayObservation>],
    generation: u64,
    base: Instant,
    epoch: SystemTime,
    now: Time,
    shares: Option<&Shares>,
) -> Snapshot {
    let stamp = Stamp {
        generation,
        built: base + Duration::from_micros(now),
        built_at: epoch + Duration::from_micros(now),
    };
    let reload = Arc::new(ReloadReport::default());
    let snap = match shares {
        Some(shares) => {
            Snapshot::build_shared(topology.clone(), observations, &[], stamp, reload, shares)
        }
        None => Snapshot::build(topology.clone(), observations, &[], stamp, reload),
    };
    select::prepare(&snap);
    snap
}

/// floe as `instances` (one, or the NS set), each asked by its part of
/// the traffic.
pub struct Floe {
    label: String,
    instances: Vec<Instance>,
    /// Cumulative traffic split: listener draw < split[i] asks instance i.
    split: Vec<f64>,
}

impl Floe {
    /// One instance per entry of `traffic` (fractions summing to 1), each
    /// with `[select] share` = `share`, peers of each other when `peers`.
    pub fn new(label: &str, scenario: &Scenario, traffic: &[f64], share: f64, peers: bool) -> Floe {
        let base = Instant::now();
        let n_peers = if peers { traffic.len() - 1 } else { 0 };
        let instances = (0..traffic.len())
            .map(|i| {
                let seed = scenario.seed ^ (0xf10e + i as u64);
                Instance::new(scenario, share, n_peers, seed, base)
            })
            .collect();
        let split = traffic
            .iter()
            .scan(0.0, |acc, t| {
                *acc += t;
                Some(*acc)
            })
            .collect();
        Floe {
            label: label.into(),
            instances,
            split,
        }
    }
}

impl Balancer for Floe {
    fn name(&self) -> String {
        self.label.clone()
    }
    fn next_wakeup(&self) -> Option<Time> {
        self.instances
            .iter()
            .filter_map(Instance::next_wakeup)
            .min()
    }
    fn wake(&mut self, now: Time, world: &World) {
        // The exchange: an instance due publishes its demand, then fetches
        // every peer's latest (and whether that peer fetches it).
        for i in 0..self.instances.len() {
            let due =
                self.instances[i].exchange.is_some() && self.instances[i].next_exchange <= now;
            if !due {
                continue;
            }
            self.instances[i].publish(now);
            let at = self.instances[i].instant(now);
            for j in (0..self.instances.len()).filter(|&j| j != i) {
                let peer = &self.instances[j];
                let me_at_peer = if i < j { i } else { i - 1 };
                let fetches_me = peer
                    .exchange
                    .as_ref()
                    .is_some_and(|x| x.fetching(at).get(me_at_peer).copied().unwrap_or(false));
                let demand = peer.published.iter().copied().collect();
                let slot = if j < i { j } else { j - 1 };
                if let Some(x) = &mut self.instances[i].exchange {
                    x.fetched(slot, at, demand, fetches_me);
                }
            }
            self.instances[i].next_exchange = now + EXCHANGE_EVERY.as_micros() as Time;
            self.instances[i].notify(now);
        }
        for i in &mut self.instances {
            if i.next_wakeup().is_some_and(|t| t <= now) {
                i.wake(now, world);
            }
        }
    }
    fn route(&mut self, now: Time, mount: usize, instance_draw: f64, held: Time) -> Route {
        let i = self
            .split
            .iter()
            .position(|&s| instance_draw < s)
            .unwrap_or(self.instances.len() - 1);
        self.instances[i].route(now, mount, held)
    }
}
