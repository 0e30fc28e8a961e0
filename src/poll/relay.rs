//! The poll loop of one relay: when to poll, the grant samples that
//! reconcile in-flight grants, and the health that follows each outcome.

use super::fetch::Fetcher;
use crate::config::PollConfig;
use crate::grants::{Reconciler, RelayGrants};
use crate::health::{Health, PollOutcome};
use crate::icecast::RelayStatus;
use crate::metrics::PollStats;
use crate::shares::grid::{self, PollGrid};
use crate::shutdown::Shutdown;
use crate::snapshot::{RelayId, RelayObservation, Row, Topology};
use arc_swap::ArcSwap;
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;
use tokio::time::sleep_until;

/// Where a relay's poller leaves its latest observation for the snapshot
/// builder, and where the builder hands the poller the grant counters of
/// the current topology.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The latest observation (`None` before the first poll).
    pub observation: Mutex<Option<RelayObservation>>,
    /// The grant counters to sample (replaced on reload).
    pub grants: ArcSwap<RelayGrants>,
    /// The topology the relay is in and its id there (replaced on reload).
    pub place: ArcSwap<(Arc<Topology>, RelayId)>,
    /// The snapshot row of the last good poll's status, made by the poller
    /// and taken by the next build (so builds, which are spaced by their
    /// cost, only copy rows).
    pub row: Mutex<Option<PolledRow>>,
    /// On the grid: the relay's poll is done and its grants are quiet until
    /// the build that takes this observation has published it (the builder
    /// then lets grants through again; see [`crate::grants`]).
    pub quiet_until_published: AtomicBool,
}

/// A row made by the poller: for which topology, relay and status.
pub(crate) type PolledRow = (Arc<Topology>, RelayId, Arc<RelayStatus>, Row);

/// One relay's poll loop, running until its shutdown fires.
pub(crate) struct RelayPoller {
    pub name: Arc<str>,
    pub fetcher: Fetcher,
    pub poll: PollConfig,
    pub slot: Arc<Slot>,
    pub notify: Arc<Notify>,
    pub shutdown: Shutdown,
    /// This relay's poll metrics (duration, errors by reason).
    pub stats: Arc<PollStats>,
    /// With `[[peer]]`s: the shared poll grid and this relay's phase on it
    /// (every instance polls the relay at the same moments; see
    /// [`crate::shares::grid`]).
    pub grid: Option<(PollGrid, Duration)>,
}

impl RelayPoller {
    /// Polls every `interval` (jittered) until shutdown. Before each poll it
    /// samples the grant counters `settle` ahead of the poll's start (or
    /// right after the previous poll, when `settle` is longer than the
    /// interval): the listeners of grants older than `settle` are in the
    /// poll's counts, so a good poll makes the newest sample at least
    /// `settle` old the new baseline.
    pub async fn run(mut self) {
        let mut grants = self.slot.grants.load_full();
        let (mut health, baseline, mut polls) = match &*lock(&self.slot.observation) {
            Some(o) => (o.health.clone(), o.baseline.clone(), o.polls),
            None => (Health::new(SystemTime::now()), grants.sample(), 0),
        };
        // On the grid, grants count GRID_MARGIN longer: the instances'
        // polls of one grid point are that far apart at most.
        let settle = grid::grant_settle(self.poll.settle, self.grid.is_some());
        let mut reconciler = Reconciler::new(baseline, settle, self.poll.grant_ttl);
        // A poller stopped while quiet (a reload) leaves its flag behind.
        grants.set_quiet(false);
        let quiet = self.grid.is_some() && grid::quiet_fits(self.poll.settle, self.poll.interval);
        // Spread the first polls of many relays over a short window (on the
        // grid: the relay's next grid point).
        let first_delay = Duration::from_millis(rand::rng().random_range(0..50));
        let mut next = match self.grid {
            Some((grid, phase)) => next_on_grid(grid, phase),
            None => on_tick(Instant::now() + first_delay),
        };
        loop {
            let sample_at = reconciler.sample_at(next, Instant::now());
            tokio::select! {
                _ = sleep_until(sample_at.into()) => {}
                _ = self.shutdown.wait() => return,
            }
            let current = self.slot.grants.load_full();
            if !Arc::ptr_eq(&current, &grants) {
                reconciler.remap(&grants, &current);
                grants = current;
            }
            if quiet {
                // Quiet from the sample until the result is published: a
                // grant in between would count against this poll's part
                // although the last poll's part allowed it. A grant that
                // passed the relay counter just before completes its mount
                // counter within QUIET_SETTLE, so the sample has both.
                grants.set_quiet(true);
                tokio::select! {
                    _ = tokio::time::sleep(QUIET_SETTLE) => {}
                    _ = self.shutdown.wait() => return,
                }
            }
            reconciler.record(Instant::now(), grants.sample());
            tokio::select! {
                _ = sleep_until(next.into()) => {}
                _ = self.shutdown.wait() => return,
            }
            let started = Instant::now();
            let outcome = self.fetcher.poll(self.poll.timeout).await;
            let now = Instant::now();
            self.stats.observe(now - started, outcome.error());
            let good = matches!(outcome, PollOutcome::Status(_));
            let baseline = reconciler.after_poll(started, good, now);
            if let Some(t) =
                health.observe(outcome, self.poll.rise, self.poll.fall, SystemTime::now())
            {
                tracing::info!(relay = %self.name, from = %t.from, to = %t.to, reason = %health.reason(), "relay state changed");
            }
            polls += 1;
            if good && let Some(status) = health.last_status() {
                let place = self.slot.place.load();
                let (topology, r) = (&place.0, place.1);
                let row = Row::of(topology, r, Some(status));
                *lock(&self.slot.row) = Some((topology.clone(), r, status.clone(), row));
            }
            *lock(&self.slot.observation) = Some(RelayObservation {
                health: health.clone(),
                baseline,
                polled_at: Some(SystemTime::now()),
                polls,
                poll_duration: Some(now - started),
            });
            if quiet {
                self.slot
                    .quiet_until_published
                    .store(true, Ordering::Release);
            }
            self.notify.notify_one();
            next = match self.grid {
                Some((grid, phase)) => next_on_grid(grid, phase),
                None => on_tick(started + jittered(self.poll.interval, self.poll.jitter)),
            };
            if next < Instant::now() {
                next = Instant::now();
            }
        }
    }
}

/// How long the poller waits between making a relay quiet and taking its
/// grant sample: a grant that passed the relay counter before the flag
/// takes nanoseconds to pass its mount counter (two compare-and-swaps,
/// `grants::RelayGrants::try_grant`), unless its thread is preempted in
/// between.
const QUIET_SETTLE: Duration = Duration::from_millis(1);

/// Polls fall due on multiples of this (from one origin for the whole
/// process), so the polls of many relays come due together and the
/// runtime wakes once for several: at 1,000 relays polled every 2 s, 100
/// wake-ups a second for the polls instead of about 500 (and as many for
/// the grant samples `settle` before them, when `settle` is a multiple of
/// it, as its default is). A poll is late by less than this.
const POLL_TICK: Duration = Duration::from_millis(10);

/// The relay's next point on `grid` after now, on the monotonic clock.
fn next_on_grid(grid: PollGrid, phase: Duration) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let at = grid.next_after(wall, phase);
    now + at.duration_since(wall).unwrap_or_default()
}

/// `t` rounded up to the next [`POLL_TICK`].
fn on_tick(t: Instant) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let Some(since) = t.checked_duration_since(origin) else {
        return t;
    };
    let tick = POLL_TICK.as_nanos();
    let ticks = since.as_nanos().div_ceil(tick);
    origin + Duration::from_nanos(u64::try_from(ticks * tick).unwrap_or(u64::MAX))
}

/// `interval` shortened or lengthened by up to `jitter` x interval.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return interval;
    }
    let f = rand::rng().random_range(-jitter..=jitter);
    interval.mul_f64(1.0 + f)
}

/// Locks a mutex, recovering from poisoning (a panicked holder leaves the
/// value usable: it is replaced whole on every write).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_fall_due_on_ticks() {
        let t = Instant::now() + Duration::from_millis(1234);
        let due = on_tick(t);
        assert!(due >= t && due - t < POLL_TICK, "{:?}", due - t);
        // Two times in one tick fall due together; on a tick, stays.
        assert_eq!(on_tick(due - Duration::from_millis(3)), due);
        assert_eq!(on_tick(due), due);
    }
}
