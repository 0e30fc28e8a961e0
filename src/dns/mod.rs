//! The DNS front door: floe as the authoritative server of its zones, with
//! balanced names answered from the current snapshot.
//!
//! Three layers, as in hickory-server:
//! - transport: `udp` (one blocking loop per worker thread, each on its
//!   own `SO_REUSEPORT` socket, batched with `recvmmsg`/`sendmmsg` in
//!   `mmsg`) and `tcp` (one current-thread runtime with a connection limit
//!   and an idle timeout);
//! - dispatch: [`fast`] answers plain A/AAAA questions for balanced names
//!   from pre-rendered wire bytes; everything else goes to [`handler`], a
//!   hickory `RequestHandler` over the zones and the same balanced answers;
//! - data: [`answer`] draws each balanced name's answers from a snapshot
//!   into a [`Plan`]; [`zones`] holds the zone files' records with hickory's
//!   in-memory handlers.
//!
//! [`DnsState`] ties them together: the published snapshots (written by the
//! poller), the zones (swapped on reload) and the current plan. Queries
//! never lock and never wait for the poller: they load the plan (lock-free),
//! and the first query that finds it out of date draws the next one.
//!
//! See `docs/dns.md` for the design of the fast path and the answers each
//! policy gives.

pub mod answer;
pub mod ecs;
pub mod fast;
pub mod handler;
mod mmsg;
pub mod stats;
mod tcp;
mod udp;
pub mod zones;

pub use answer::Plan;
pub use handler::FloeHandler;
pub use zones::Zones;

use crate::challenges::Challenges;
use crate::clients::RateLimits;
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::snapshot::Snapshots;
use crate::zones::ZoneSet;
use arc_swap::{ArcSwap, Guard};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use stats::{Counters, PoolRegistry, Tally, ZoneCounts};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

/// The UDP payload size floe advertises in its OPT record and the most it
/// sends over UDP to an EDNS client (the DNS Flag Day 2020 value, which
/// avoids IP fragmentation); a client's smaller size is honoured.
pub const EDNS_PAYLOAD: u16 = 1232;

/// How often a background thread checks that the plan is current.
const PLAN_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Largest UDP response for a client that advertised `edns` (its OPT
/// payload size) or none (RFC 1035: 512 bytes).
#[inline]
pub fn udp_limit(edns: Option<u16>) -> usize {
    match edns {
        None => 512,
        Some(size) => usize::from(size.clamp(512, EDNS_PAYLOAD)),
    }
}

/// What every DNS worker shares: the published snapshots, the zones and the
/// current plan of balanced answers.
pub struct DnsState {
    snapshots: Arc<Snapshots>,
    zones: ArcSwap<Zones>,
    plan: ArcSwap<Plan>,
    /// Set while one thread draws a new plan; the others keep answering
    /// from the current one instead of drawing it too.
    drawing: AtomicBool,
    /// Every worker's counters (registered at start; read for metrics).
    counters: Mutex<Vec<Arc<Counters>>>,
    /// Every zone origin served since start, in order of first appearance:
    /// origin `s` is counted in zone slot `s + 1` of the query counters
    /// (slot 0: outside every zone), so a zone keeps its counts across
    /// reloads.
    origins: Mutex<Vec<hickory_proto::rr::Name>>,
    /// Response-rate limits of UDP answers per client prefix, shared by
    /// every UDP worker (see `[dns] rrl_*`).
    pub(crate) rate_limits: RateLimits,
    /// The counter slots of (listener pool, group) pairs.
    pools: PoolRegistry,
    /// The ACME DNS-01 challenges live now (`_acme-challenge.<name>` TXT).
    pub(crate) challenges: Arc<Challenges>,
}

/// Buckets of the response-rate limit table (8 bytes each).
const RATE_SLOTS: usize = 1 << 16;

impl std::fmt::Debug for DnsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsState")
            .field("generation", &self.plan.load().generation)
            .finish()
    }
}

impl DnsState {
    /// State serving `zones` with balanced answers from `cell`.
    pub fn new(snapshots: Arc<Snapshots>, zones: Arc<ZoneSet>) -> Arc<DnsState> {
        DnsState::with_challenges(snapshots, zones, Challenges::new())
    }

    /// [`DnsState::new`] that also answers the ACME DNS-01 `challenges`.
    pub fn with_challenges(
        snapshots: Arc<Snapshots>,
        zones: Arc<ZoneSet>,
        challenges: Arc<Challenges>,
    ) -> Arc<DnsState> {
        let mut origins = Vec::new();
        let zones = Arc::new(Zones::new(zones).with_slots(&mut origins));
        let pools = PoolRegistry::default();
        let plan = draw(&snapshots, zones.clone(), &pools, Instant::now());
        log_plan(None, &plan);
        Arc::new(DnsState {
            snapshots,
            zones: ArcSwap::new(zones),
            plan: ArcSwap::from_pointee(plan),
            drawing: AtomicBool::new(false),
            counters: Mutex::new(Vec::new()),
            origins: Mutex::new(origins),
            rate_limits: RateLimits::new(RATE_SLOTS, Instant::now()),
            pools,
            challenges,
        })
    }

    /// Serves `zones` from now on (reload). Balanced answers are drawn
    /// again at once, against the new zones.
    pub fn set_zones(&self, zones: Arc<ZoneSet>) {
        let zones = Arc::new(Zones::new(zones).with_slots(&mut lock(&self.origins)));
        self.zones.store(zones.clone());
        let plan = draw(&self.snapshots, zones, &self.pools, Instant::now());
        log_plan(Some(&self.plan.load()), &plan);
        self.plan.store(Arc::new(plan));
    }

    /// The plan for the current snapshot at `now`: the published one when
    /// it is current (drawn from this snapshot, or from an older one that
    /// differs in counts only while it holds: [`Plan::holds_for`]), else a
    /// new one drawn by this thread (or, while another thread draws, the
    /// published one). Never blocks.
    #[inline]
    pub fn plan(&self, now: Instant) -> Guard<Arc<Plan>> {
        let plan = self.plan.load();
        let snap = self.snapshots.load();
        if now < plan.expires && (Arc::ptr_eq(&plan.snapshot, &snap) || plan.holds_for(&snap, now))
        {
            return plan;
        }
        self.redraw(plan, now)
    }

    /// The plan queries answer from now, as it is (never redrawn here: for
    /// readers such as `/metrics` that must not draw).
    pub fn current_plan(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    #[cold]
    fn redraw(&self, old: Guard<Arc<Plan>>, now: Instant) -> Guard<Arc<Plan>> {
        if self.drawing.swap(true, Ordering::Acquire) {
            return old;
        }
        let next = Arc::new(draw(
            &self.snapshots,
            self.zones.load_full(),
            &self.pools,
            now,
        ));
        log_plan(Some(&old), &next);
        // Only replace the plan this one was drawn after: a reload may have
        // stored a newer one meanwhile.
        let _ = self.plan.compare_and_swap(&*old, next);
        self.drawing.store(false, Ordering::Release);
        self.plan.load()
    }

    /// Counters for one more worker (called once per worker, at start).
    pub(crate) fn register(&self) -> Arc<Counters> {
        let c = Arc::new(Counters::default());
        lock(&self.counters).push(c.clone());
        c
    }

    /// Queries answered so far by zone, type and RCODE, summed over every
    /// worker: first those outside every zone (origin `None`), then each
    /// zone served now, by origin.
    pub fn query_counts(&self) -> Vec<(Option<String>, ZoneCounts)> {
        let zones = self.zones.load();
        let mut out: Vec<(Option<String>, usize)> = vec![(None, 0)];
        for (i, z) in zones.set().zones().iter().enumerate() {
            out.push((Some(z.origin.to_string()), zones.slot(i) + 1));
        }
        let tables: Vec<_> = lock(&self.counters).iter().map(|c| c.queries()).collect();
        out.into_iter()
            .map(|(origin, slot)| {
                let mut sum = ZoneCounts::default();
                for t in &tables {
                    let counts = t.zone(slot);
                    for (a, b) in sum.as_flattened_mut().iter_mut().zip(counts.as_flattened()) {
                        *a += b;
                    }
                }
                (origin, sum)
            })
            .collect()
    }

    /// Balanced answers so far per (listener pool, group that answered;
    /// `""` when a policy answered), summed over every worker, in the
    /// order the pairs were first seen.
    pub fn pool_answer_counts(&self) -> Vec<(Box<str>, Box<str>, u64)> {
        let names = self.pools.names();
        let mut sums = vec![0u64; names.len() + 1];
        for c in lock(&self.counters).iter() {
            for (sum, n) in sums.iter_mut().zip(c.pool_answers()) {
                *sum += n;
            }
        }
        names
            .into_iter()
            .zip(sums.into_iter().skip(1))
            .map(|((pool, group), n)| (pool, group, n))
            .collect()
    }

    /// Queries answered so far, summed over every worker.
    pub fn counts(&self) -> Tally {
        let mut total = Tally::default();
        for c in lock(&self.counters).iter() {
            c.add_to(&mut total);
        }
        total
    }

    /// Generation of the snapshot the current plan was drawn from.
    pub fn generation(&self) -> u64 {
        self.plan.load().generation
    }

    /// The published snapshots the answers are drawn from.
    pub fn snapshots(&self) -> &Arc<Snapshots> {
        &self.snapshots
    }
}

/// Locks `m`, also after a thread panicked holding it: what it guards (a
/// list of counters or of names) is whole at every step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Draws the plan of the current snapshot, holding for newer snapshots
/// that differ in counts only for as long as its cost allows
/// ([`answer::hold`]).
fn draw(snapshots: &Snapshots, zones: Arc<Zones>, pools: &PoolRegistry, now: Instant) -> Plan {
    let started = Instant::now();
    let snap = snapshots.load_full();
    let slots = pools.slots(&snap.topology);
    let mut plan = with_rng(snap.config().select.seed, |rng| {
        Plan::build(snap, zones, now, SystemTime::now(), rng)
    });
    plan.slots = slots;
    plan.hold_until = now + answer::hold(started.elapsed());
    plan
}

/// One log line per balanced name and listener pool whose decision changed
/// (candidates vs a policy), and the whole plan at debug level, with its
/// generation.
fn log_plan(old: Option<&Plan>, new: &Plan) {
    let topology = &new.snapshot().topology;
    for b in new.names.iter() {
        let before = old.and_then(|o| o.find(&b.name));
        for pool in topology.pools.ids() {
            let now = b.for_pool(pool).decision;
            let before = before.map(|o| o.for_pool(pool).decision);
            if before == Some(now) {
                continue;
            }
            let pool = &*topology.pools[pool].name;
            match now {
                answer::Decision::Candidates if before.is_none() => {}
                answer::Decision::Candidates => {
                    tracing::info!(name = %b.name, pool, generation = new.generation, "DNS: answering relays with room again");
                }
                answer::Decision::Policy { why, policy } => tracing::info!(
                    name = %b.name,
                    pool,
                    generation = new.generation,
                    "DNS: answering by policy {} ({})",
                    policy.as_str(),
                    why.as_str()
                ),
            }
        }
    }
    if old.is_none_or(|o| o.generation != new.generation) {
        tracing::debug!(generation = new.generation, "DNS plan: {}", new.describe());
    }
}

thread_local! {
    /// This thread's RNG for drawing plans.
    static RNG: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
    /// This thread's rotation through a plan's variants.
    static VARIANT: Cell<usize> = const { Cell::new(0) };
}

fn with_rng<T>(seed: Option<u64>, f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|r| {
        let mut r = r.borrow_mut();
        let rng = r.get_or_insert_with(|| match seed {
            Some(s) => SmallRng::seed_from_u64(s),
            None => SmallRng::from_os_rng(),
        });
        f(rng)
    })
}

/// The next variant index for a balanced answer on this thread.
#[inline]
pub(crate) fn next_variant() -> usize {
    VARIANT.with(|v| {
        let n = v.get().wrapping_add(1);
        v.set(n);
        n
    })
}

/// Bound DNS sockets, ready to serve.
pub struct DnsServer {
    /// The addresses actually bound (port 0 resolved), one per `listen`
    /// entry, each served on UDP and TCP.
    pub addrs: Vec<SocketAddr>,
    /// `udp[w]`: worker w's socket for each address.
    udp: Vec<Vec<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

impl DnsServer {
    /// Binds each address on UDP (`workers` `SO_REUSEPORT` sockets; 0 = one
    /// per core) and TCP, on the same port. Port 0 picks a port free for
    /// both.
    pub fn bind(listen: &[SocketAddr], workers: usize) -> io::Result<DnsServer> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        let mut addrs = Vec::new();
        let mut udp: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
        let mut tcp = Vec::new();
        for &addr in listen {
            let (actual, sockets, listener) = bind_one(addr, workers)?;
            for (per_worker, s) in udp.iter_mut().zip(sockets) {
                per_worker.push(s);
            }
            tcp.push(listener);
            addrs.push(actual);
        }
        Ok(DnsServer { addrs, udp, tcp })
    }

    /// Starts the UDP worker threads and the TCP thread. They answer from
    /// `state` until `shutdown`. Fails when a thread cannot be started (then
    /// those already started stop with `shutdown`).
    pub fn spawn(
        self,
        state: Arc<DnsState>,
        config: &Config,
        shutdown: Shutdown,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        for a in &self.addrs {
            tracing::info!("DNS listening on {a} (UDP and TCP)");
        }
        let handler = Arc::new(FloeHandler::new(state.clone()));
        let mut threads = Vec::new();
        for (w, sockets) in self.udp.into_iter().enumerate() {
            for (i, socket) in sockets.into_iter().enumerate() {
                let (state, handler, shutdown) = (state.clone(), handler.clone(), shutdown.clone());
                threads.push(thread(format!("floe-dns-{w}.{i}"), move || {
                    udp::worker(socket, state, handler, shutdown)
                })?);
            }
        }
        // Draw plans off the query path too, so policy changes are logged
        // when they happen and queries rarely draw one themselves.
        {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            threads.push(thread("floe-dns-plan".into(), move || {
                while !shutdown.is_triggered() {
                    drop(state.plan(Instant::now()));
                    std::thread::sleep(PLAN_TICK);
                }
            })?);
        }
        if !self.tcp.is_empty() {
            let limits = tcp::Limits {
                idle: config.dns.tcp_idle_timeout,
                max_connections: config.dns.tcp_max_connections,
                per_client: config.dns.tcp_max_connections_per_client,
                age: config.dns.tcp_max_connection_age,
                prefix: (
                    config.select.client_prefix_v4,
                    config.select.client_prefix_v6,
                ),
            };
            let listeners = self.tcp;
            threads.push(thread("floe-dns-tcp".into(), move || {
                tcp::serve(listeners, handler, state.register(), limits, shutdown)
            })?);
        }
        Ok(threads)
    }
}

/// Binds `addr` on UDP (`workers` sockets) and TCP. With port 0, retries a
/// few ports until one is free for both protocols.
fn bind_one(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(SocketAddr, Vec<UdpSocket>, TcpListener)> {
    if addr.port() != 0 {
        // SO_REUSEPORT would let this socket silently share the port with
        // another process's (a second floe, another server): a plain bind
        // still sees it taken. (TCP is bound without SO_REUSEPORT.)
        UdpSocket::bind(addr).map_err(bind_error("udp", addr))?;
    }
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let first = udp::bind(addr).map_err(bind_error("udp", addr))?;
        let actual = first.local_addr()?;
        match tcp::bind(actual) {
            Ok(listener) => {
                let mut sockets = vec![first];
                for _ in 1..workers {
                    sockets.push(udp::bind(actual).map_err(bind_error("udp", actual))?);
                }
                return Ok((actual, sockets, listener));
            }
            Err(e) => last = Some(bind_error("tcp", actual)(e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::other(format!("DNS bind {addr}: no port free for UDP and TCP"))
    }))
}

/// `e` saying what could not be bound (`udp`/`tcp` and the address).
fn bind_error(what: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("DNS bind {what} {addr}: {e}"))
}

/// Starts a thread named `name` running `f`.
fn thread(name: String, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

#[cfg(test)]
mod tests;
