//! The counters hot paths bump: per-relay poll statistics and the redirect
//! table (one atomic per relay x mount and per mount x refusal, indexed
//! like the snapshot, so a redirect adds to its counter without a lookup, a
//! label or a lock). Read at scrape time by [`super::scrape`] and by the
//! reports.

use super::catalog::POLL_BUCKETS;
use super::lock;
use crate::health::PollError;
use crate::select::{NoCandidate, Pick};
use crate::snapshot::{
    Grid, MountId, PerGroup, PerMount, PerPool, PoolId, RelayId, Snapshot, Topology,
};
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// One relay poller's counters: the duration histogram and errors by
/// reason. The poller holds an `Arc` of it (resolved once when the poller
/// starts); the collector reads it at scrape time.
#[derive(Debug, Default)]
pub struct PollStats {
    /// Per bucket of [`POLL_BUCKETS`] (not cumulative), then the overflow.
    pub(super) buckets: [AtomicU64; POLL_BUCKETS.len() + 1],
    pub(super) sum_micros: AtomicU64,
    errors: [AtomicU64; PollError::ALL.len()],
}

impl PollStats {
    /// Records one poll that took `took` and failed with `error`, if it did.
    pub fn observe(&self, took: Duration, error: Option<PollError>) {
        let secs = took.as_secs_f64();
        let bucket = POLL_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(POLL_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
        if let Some(e) = error {
            self.errors[e as usize].fetch_add(1, Relaxed);
        }
    }

    /// Polls recorded so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// Failed polls recorded for `reason`.
    pub fn errors(&self, reason: PollError) -> u64 {
        self.errors[reason as usize].load(Relaxed)
    }
}

/// How a request for a configured mount was answered (labels `outcome`
/// and `reason` of `floe_redirects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `302` to a relay.
    Sent,
    /// `503`: no relay has a source.
    Offline,
    /// `503`: every relay carrying the mount is full, down, drained or
    /// reserved.
    Full,
    /// `503`: no relay polled yet.
    Starting,
    /// `400`: the query string cannot go into a `Location`.
    BadRequest,
    /// `429`: the client (its address prefix) is past its budget of grants.
    ClientBudget,
    /// `503`: the request came over TLS, relays have room but none has an
    /// `https_url`, and `[http] tls_redirect_to_http` is off.
    NoHttps,
}

impl Outcome {
    /// The answers without a relay, in `RedirectTable::refused` order.
    pub const REFUSED: [Outcome; 6] = [
        Outcome::Offline,
        Outcome::Full,
        Outcome::Starting,
        Outcome::BadRequest,
        Outcome::ClientBudget,
        Outcome::NoHttps,
    ];

    /// `(outcome, reason)` label values.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Sent => ("302", ""),
            Outcome::Offline => ("503", "offline"),
            Outcome::Full => ("503", "full"),
            Outcome::Starting => ("503", "starting"),
            Outcome::BadRequest => ("400", ""),
            Outcome::ClientBudget => ("429", "client-budget"),
            Outcome::NoHttps => ("503", "no-https"),
        }
    }

    fn refused_index(self) -> usize {
        Outcome::REFUSED
            .iter()
            .position(|&o| o == self)
            .unwrap_or(0)
    }
}

impl From<NoCandidate> for Outcome {
    fn from(n: NoCandidate) -> Outcome {
        match n {
            NoCandidate::Offline => Outcome::Offline,
            NoCandidate::Full | NoCandidate::Quiet => Outcome::Full,
            NoCandidate::Starting => Outcome::Starting,
        }
    }
}

/// The redirect counters of one topology, indexed like the snapshot: the
/// hot path finds its counter by `[mount][relay]` without a lookup.
#[derive(Debug)]
pub(super) struct RedirectTable {
    /// The topology it indexes (identity only; a `Weak` keeps the
    /// allocation, so the address cannot be reused by another topology).
    topology: Weak<Topology>,
    /// Generation of the snapshot the table was built for: a request still
    /// holding an older snapshot never replaces a newer table.
    generation: u64,
    /// 302s to each relay for each mount.
    sent: Grid<Arc<AtomicU64>>,
    /// Per mount: answers without a relay, in [`Outcome::REFUSED`] order.
    refused: PerMount<[Arc<AtomicU64>; Outcome::REFUSED.len()]>,
    /// 302s per listener pool and the group that answered.
    by_group: PerPool<PerGroup<Arc<AtomicU64>>>,
}

impl RedirectTable {
    #[inline]
    pub(super) fn is_for(&self, topology: &Arc<Topology>) -> bool {
        std::ptr::eq(self.topology.as_ptr(), Arc::as_ptr(topology))
    }
}

/// A counter series' identity: stream, mount, relay ("" for none), outcome.
type SeriesKey = (Box<str>, Box<str>, Box<str>, Outcome);

/// The redirect counters: the current table plus every series by labels
/// (so counts outlive a reload that keeps the labels).
#[derive(Debug, Default)]
pub(super) struct Redirects {
    pub(super) table: ArcSwapOption<RedirectTable>,
    series: Mutex<Series>,
    not_found: AtomicU64,
}

/// Every counter series by its labels.
#[derive(Debug, Default)]
struct Series {
    /// `floe_redirects_total`.
    redirects: HashMap<SeriesKey, Arc<AtomicU64>>,
    /// `floe_pool_answers_total{door="http"}`, by pool and group name.
    groups: HashMap<(Box<str>, Box<str>), Arc<AtomicU64>>,
}

impl Redirects {
    /// Counts a `302` for mount `m` of `snap` to a listener of `pool`,
    /// picked as `pick` says.
    #[inline]
    pub(super) fn sent(&self, snap: &Snapshot, m: MountId, pool: PoolId, pick: Pick) {
        self.bump(snap, |t| {
            t.sent[(pick.relay, m)].fetch_add(1, Relaxed);
            if let Some(c) = t.by_group.get(pool).and_then(|g| g.get(pick.group)) {
                c.fetch_add(1, Relaxed);
            }
        });
    }

    /// Counts an answer without a relay for mount `m`.
    #[inline]
    pub(super) fn refused(&self, snap: &Snapshot, m: MountId, outcome: Outcome) {
        let k = outcome.refused_index();
        self.bump(snap, |t| {
            t.refused[m][k].fetch_add(1, Relaxed);
        });
    }

    /// Counts a 404.
    #[inline]
    pub(super) fn not_found(&self) {
        self.not_found.fetch_add(1, Relaxed);
    }

    /// The counts of `snap`'s topology.
    pub(super) fn counts(&self, snap: &Snapshot) -> RedirectCounts {
        let t = self.table(snap);
        let read = |c: &Arc<AtomicU64>| c.load(Relaxed);
        RedirectCounts {
            sent: t.sent.map(read),
            refused: t.refused.map(|k| k.each_ref().map(read)),
            not_found: self.not_found.load(Relaxed),
            by_group: t
                .by_group
                .iter()
                .map(|g| g.iter().map(read).collect())
                .collect(),
        }
    }

    /// The table of `snap`'s topology; built (once per reload) if missing.
    #[inline]
    fn table(&self, snap: &Snapshot) -> Arc<RedirectTable> {
        if let Some(t) = &*self.table.load()
            && t.is_for(&snap.topology)
        {
            return t.clone();
        }
        self.build(snap)
    }

    #[inline]
    fn bump(&self, snap: &Snapshot, f: impl FnOnce(&RedirectTable)) {
        let guard = self.table.load();
        match &*guard {
            Some(t) if t.is_for(&snap.topology) => f(t),
            _ => {
                drop(guard);
                f(&self.build(snap));
            }
        }
    }

    #[cold]
    fn build(&self, snap: &Snapshot) -> Arc<RedirectTable> {
        let mut series = lock(&self.series);
        let current = self.table.load_full();
        if let Some(t) = &current
            && t.is_for(&snap.topology)
        {
            return t.clone();
        }
        let topo = &snap.topology;
        let Series {
            redirects,
            groups: group_series,
        } = &mut *series;
        let mut get = |m: MountId, relay: &str, o: Outcome| {
            let mount = &topo.mounts[m];
            let key = (
                topo.streams[mount.stream].name.clone(),
                mount.path.clone(),
                Box::from(relay),
                o,
            );
            redirects.entry(key).or_default().clone()
        };
        let sent = Grid::build(topo.relays.len(), topo.mounts.len(), |r, m| {
            get(m, &topo.relays[r].name, Outcome::Sent)
        });
        let refused = topo
            .mounts
            .ids()
            .map(|m| Outcome::REFUSED.map(|o| get(m, "", o)))
            .collect();
        let by_group = topo
            .pools
            .iter()
            .map(|p| {
                topo.groups
                    .iter()
                    .map(|g| {
                        let key = (p.name.clone(), g.name.clone());
                        group_series.entry(key).or_default().clone()
                    })
                    .collect()
            })
            .collect();
        let table = Arc::new(RedirectTable {
            topology: Arc::downgrade(topo),
            generation: snap.generation,
            sent,
            refused,
            by_group,
        });
        if current
            .as_ref()
            .is_none_or(|c| c.generation <= snap.generation)
        {
            self.table.store(Some(table.clone()));
        }
        table
    }
}

/// Redirect counts of one topology, read at once (for reports).
#[derive(Debug, Clone, Default)]
pub struct RedirectCounts {
    /// 302s per relay and mount.
    pub sent: Grid<u64>,
    /// Per mount: answers without a relay, in [`Outcome::REFUSED`] order.
    pub refused: PerMount<[u64; Outcome::REFUSED.len()]>,
    /// 404s for paths that are no configured mount.
    pub not_found: u64,
    /// 302s per listener pool and the group that answered.
    pub by_group: PerPool<PerGroup<u64>>,
}

impl RedirectCounts {
    /// 302s to relay `r` for mount `m`.
    pub fn sent_to(&self, m: MountId, r: RelayId) -> u64 {
        self.sent[(r, m)]
    }

    /// 302s to relay `r`, all mounts.
    pub fn sent_to_relay(&self, r: RelayId) -> u64 {
        self.sent.row(r).iter().sum()
    }

    /// All 302s.
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// All answers without a relay for a configured mount (503 and 400).
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().flatten().sum()
    }
}
