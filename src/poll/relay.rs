//! The poll loop of one relay: when to poll, the grant samples that
//! reconcile in-flight grants, and the health that follows each outcome.

use super::fetch::{self, PollTarget};
use crate::config::PollConfig;
use crate::grants::{GrantSample, RelayGrants};
use crate::health::{Health, PollFailure, PollOutcome};
use crate::metrics::PollStats;
use crate::shutdown::Shutdown;
use crate::snapshot::RelayObservation;
use arc_swap::ArcSwap;
use rand::Rng;
use std::collections::VecDeque;
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
}

/// How much later than `settle` before a poll its grant sample may have
/// been taken and still be that poll's baseline (the timer wakes a little
/// late).
const SAMPLE_SLACK: Duration = Duration::from_millis(20);

/// One relay's poll loop, running until its shutdown fires.
pub(crate) struct RelayPoller {
    pub name: Arc<str>,
    pub target: PollTarget,
    pub poll: PollConfig,
    pub client: reqwest::Client,
    pub slot: Arc<Slot>,
    pub notify: Arc<Notify>,
    pub shutdown: Shutdown,
    /// This relay's poll metrics (duration, errors by reason).
    pub stats: Arc<PollStats>,
}

impl RelayPoller {
    /// Polls every `interval` (jittered) until shutdown. Before each poll it
    /// samples the grant counters `settle` ahead of the poll's start (or
    /// right after the previous poll, when `settle` is longer than the
    /// interval): the listeners of grants older than `settle` are in the
    /// poll's counts, so a good poll makes the newest sample at least
    /// `settle` old the new baseline.
    pub async fn run(self) {
        let (mut health, mut baseline, mut polls) = match &*lock(&self.slot.observation) {
            Some(o) => (o.health.clone(), o.baseline.clone(), o.polls),
            None => (
                Health::new(SystemTime::now()),
                self.slot.grants.load().sample(),
                0,
            ),
        };
        let mut grants = self.slot.grants.load_full();
        let mut history: VecDeque<(Instant, GrantSample)> = VecDeque::new();
        // Spread the first polls of many relays over a short window.
        let first_delay = Duration::from_millis(rand::rng().random_range(0..50));
        let mut next = Instant::now() + first_delay;
        loop {
            let sample_at = next
                .checked_sub(self.poll.settle)
                .unwrap_or(next)
                .max(Instant::now());
            tokio::select! {
                _ = sleep_until(sample_at.into()) => {}
                _ = self.shutdown.wait() => return,
            }
            let current = self.slot.grants.load_full();
            if !Arc::ptr_eq(&current, &grants) {
                baseline = remap(&baseline, &grants, &current);
                history = history
                    .iter()
                    .map(|(t, s)| (*t, remap(s, &grants, &current)))
                    .collect();
                grants = current;
            }
            history.push_back((Instant::now(), grants.sample()));
            tokio::select! {
                _ = sleep_until(next.into()) => {}
                _ = self.shutdown.wait() => return,
            }
            let started = Instant::now();
            // The client enforces the timeout; this bound only guards
            // against a stuck body stream.
            let outcome = match tokio::time::timeout(
                self.poll.timeout + Duration::from_millis(250),
                fetch::poll(&self.client, &self.target, self.poll.timeout),
            )
            .await
            {
                Ok(o) => o,
                Err(_) => PollOutcome::Failed(PollFailure::Timeout(self.poll.timeout)),
            };
            let now = Instant::now();
            self.stats.observe(now - started, outcome.error());
            if matches!(outcome, PollOutcome::Status(_)) {
                // The newest sample at least `settle` older than the poll:
                // this loop's own when `settle` is below the interval, an
                // earlier one (kept in `history`) when it is not, so a grant
                // counts for `settle` whatever the interval.
                baseline = history
                    .iter()
                    .rev()
                    .find(|(t, _)| *t + self.poll.settle <= started + SAMPLE_SLACK)
                    .map_or(baseline, |(_, s)| s.clone());
            }
            // Grants older than grant_ttl stop counting even if no poll
            // reconciled them.
            let cutoff = now.checked_sub(self.poll.grant_ttl);
            while history.len() > 1 && cutoff.is_some_and(|c| history[1].0 <= c) {
                history.pop_front();
            }
            let mut effective = baseline.clone();
            if let Some((t, aged)) = history.front()
                && cutoff.is_some_and(|c| *t <= c)
            {
                effective = max_sample(&effective, aged);
            }
            if let Some(t) =
                health.observe(outcome, self.poll.rise, self.poll.fall, SystemTime::now())
            {
                tracing::info!(relay = %self.name, from = %t.from, to = %t.to, reason = %health.reason(), "relay state changed");
            }
            polls += 1;
            *lock(&self.slot.observation) = Some(RelayObservation {
                health: health.clone(),
                baseline: effective,
                polled_at: Some(SystemTime::now()),
                polls,
                poll_duration: Some(now - started),
            });
            self.notify.notify_one();
            next = started + jittered(self.poll.interval, self.poll.jitter);
            if next < Instant::now() {
                next = Instant::now();
            }
        }
    }
}

/// `interval` shortened or lengthened by up to `jitter` x interval.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return interval;
    }
    let f = rand::rng().random_range(-jitter..=jitter);
    interval.mul_f64(1.0 + f)
}

/// Element-wise maximum of two samples of the same counters.
fn max_sample(a: &GrantSample, b: &GrantSample) -> GrantSample {
    GrantSample {
        mounts: a
            .mounts
            .iter()
            .zip(b.mounts.iter())
            .map(|(x, y)| (*x).max(*y))
            .collect(),
        relay: a.relay.max(b.relay),
    }
}

/// A sample of `old`'s counters expressed for `new`'s mount order (counts
/// carry over by path; mounts new to `new` start at zero like their
/// counters).
fn remap(sample: &GrantSample, old: &RelayGrants, new: &RelayGrants) -> GrantSample {
    GrantSample {
        mounts: new
            .paths()
            .iter()
            .map(|p| {
                old.index(p)
                    .and_then(|i| sample.mounts.get(i).copied())
                    .unwrap_or(0)
            })
            .collect(),
        relay: sample.relay,
    }
}

/// Locks a mutex, recovering from poisoning (a panicked holder leaves the
/// value usable: it is replaced whole on every write).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
