//! The poll loop of one relay: when to poll, the grant samples that
//! reconcile in-flight grants, and the health that follows each outcome.

use super::fetch::{self, PollTarget};
use crate::config::PollConfig;
use crate::grants::{Reconciler, RelayGrants};
use crate::health::{Health, PollFailure, PollOutcome};
use crate::metrics::PollStats;
use crate::shutdown::Shutdown;
use crate::snapshot::RelayObservation;
use arc_swap::ArcSwap;
use rand::Rng;
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
        let mut grants = self.slot.grants.load_full();
        let (mut health, baseline, mut polls) = match &*lock(&self.slot.observation) {
            Some(o) => (o.health.clone(), o.baseline.clone(), o.polls),
            None => (Health::new(SystemTime::now()), grants.sample(), 0),
        };
        let mut reconciler = Reconciler::new(baseline, self.poll.settle, self.poll.grant_ttl);
        // Spread the first polls of many relays over a short window.
        let first_delay = Duration::from_millis(rand::rng().random_range(0..50));
        let mut next = Instant::now() + first_delay;
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
            reconciler.record(Instant::now(), grants.sample());
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
            let good = matches!(outcome, PollOutcome::Status(_));
            let baseline = reconciler.after_poll(started, good, now);
            if let Some(t) =
                health.observe(outcome, self.poll.rise, self.poll.fall, SystemTime::now())
            {
                tracing::info!(relay = %self.name, from = %t.from, to = %t.to, reason = %health.reason(), "relay state changed");
            }
            polls += 1;
            *lock(&self.slot.observation) = Some(RelayObservation {
                health: health.clone(),
                baseline,
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

/// Locks a mutex, recovering from poisoning (a panicked holder leaves the
/// value usable: it is replaced whole on every write).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
