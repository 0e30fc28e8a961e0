//! When a grant stops counting: the baseline arithmetic of one relay's
//! polls, as a pure value the poll loop (and the event simulation) drive
//! with the clock readings they choose.
//!
//! Before each poll the caller records a [`GrantSample`] (`settle` ahead of
//! the poll's start when the interval allows, see [`Reconciler::sample_at`]).
//! After a good poll, the newest sample at least `settle` older than the
//! poll's start becomes the baseline: the listeners of those grants have had
//! `settle` to show in the relay's counts. Whatever the polls say, a grant
//! older than `grant_ttl` stops counting (a sample that old is a floor of
//! the baseline), so grants nobody reconciles (polls failing, players that
//! gave up) age out.

use super::{GrantSample, RelayGrants};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much later than `settle` before a poll its grant sample may have
/// been taken and still be that poll's baseline (a timer wakes a little
/// late).
const SAMPLE_SLACK: Duration = Duration::from_millis(20);

/// One relay's grant samples and the baseline its last good poll reached.
#[derive(Debug, Clone)]
pub struct Reconciler {
    /// The baseline of the last good poll.
    baseline: GrantSample,
    /// Samples taken, oldest first; pruned to the one before `grant_ttl`.
    history: VecDeque<(Instant, GrantSample)>,
    settle: Duration,
    grant_ttl: Duration,
}

impl Reconciler {
    /// Starts from `baseline` (the counters when the relay was first seen, or
    /// the baseline a previous poll loop reached).
    pub fn new(baseline: GrantSample, settle: Duration, grant_ttl: Duration) -> Self {
        Reconciler {
            baseline,
            history: VecDeque::new(),
            settle,
            grant_ttl,
        }
    }

    /// When to take the sample for a poll due at `poll_at`: `settle` ahead
    /// of it, but not before `now` (with `settle` longer than the interval,
    /// right away; an earlier sample will be the baseline then).
    pub fn sample_at(&self, poll_at: Instant, now: Instant) -> Instant {
        poll_at.checked_sub(self.settle).unwrap_or(poll_at).max(now)
    }

    /// Records the counters as they were at `at`.
    pub fn record(&mut self, at: Instant, sample: GrantSample) {
        self.history.push_back((at, sample));
    }

    /// Re-expresses every sample for new counters after a reload changed the
    /// relay's mounts (counts carry over by mount path).
    pub fn remap(&mut self, old: &RelayGrants, new: &RelayGrants) {
        self.baseline = remap(&self.baseline, old, new);
        for (_, s) in &mut self.history {
            *s = remap(s, old, new);
        }
    }

    /// A poll that started at `started` ended at `now`, `good` when it read
    /// the relay's counts. Returns the baseline the relay's in-flight grants
    /// count from until the next poll.
    pub fn after_poll(&mut self, started: Instant, good: bool, now: Instant) -> GrantSample {
        if good {
            // The newest sample at least `settle` older than the poll: with
            // `settle` below the interval, the one taken for this poll; above
            // it, an earlier one, so a grant counts for `settle` whatever the
            // interval.
            if let Some((_, s)) = self
                .history
                .iter()
                .rev()
                .find(|(t, _)| *t + self.settle <= started + SAMPLE_SLACK)
            {
                self.baseline = s.clone();
            }
        }
        let cutoff = now.checked_sub(self.grant_ttl);
        let aged = |t: &Instant| cutoff.is_some_and(|c| *t <= c);
        while self.history.len() > 1 && aged(&self.history[1].0) {
            self.history.pop_front();
        }
        match self.history.front() {
            Some((t, oldest)) if aged(t) => max_sample(&self.baseline, oldest),
            _ => self.baseline.clone(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::WhenQuiet;
    use crate::ids::MountId;

    const A: MountId = MountId::new(0);
    const SETTLE: Duration = Duration::from_millis(1500);
    const TTL: Duration = Duration::from_secs(10);

    fn granted(g: &RelayGrants, n: usize) {
        for _ in 0..n {
            assert!(g.try_grant(A, 0, None, 0, None, WhenQuiet::Refuse));
        }
    }

    #[test]
    fn a_grant_counts_until_a_good_poll_settle_after_it() {
        let g = RelayGrants::new(["/a"]);
        let t0 = Instant::now();
        let mut r = Reconciler::new(g.sample(), SETTLE, TTL);
        // Interval 2 s: the sample for the poll at t0+2s is taken at t0+0.5s.
        let poll = t0 + Duration::from_secs(2);
        assert_eq!(r.sample_at(poll, t0), t0 + Duration::from_millis(500));
        granted(&g, 3); // before the sample: the poll counts them
        r.record(t0 + Duration::from_millis(500), g.sample());
        granted(&g, 2); // after it: still in flight after the poll
        let b = r.after_poll(poll, true, poll + Duration::from_millis(5));
        assert_eq!(g.in_flight(A, b.mounts[A]), 2);
    }

    #[test]
    fn a_failed_poll_keeps_the_baseline() {
        let g = RelayGrants::new(["/a"]);
        let t0 = Instant::now();
        let mut r = Reconciler::new(g.sample(), SETTLE, TTL);
        granted(&g, 4);
        r.record(t0, g.sample());
        let poll = t0 + Duration::from_secs(2);
        let b = r.after_poll(poll, false, poll);
        assert_eq!(g.in_flight(A, b.mounts[A]), 4);
    }

    #[test]
    fn with_settle_above_the_interval_an_older_sample_is_the_baseline() {
        let g = RelayGrants::new(["/a"]);
        let t0 = Instant::now();
        let mut r = Reconciler::new(g.sample(), Duration::from_secs(3), TTL);
        let ms = Duration::from_millis;
        granted(&g, 1);
        r.record(t0, g.sample()); // 3 s before the second poll
        granted(&g, 1);
        r.record(t0 + ms(1000), g.sample());
        let b = r.after_poll(t0 + ms(1000), true, t0 + ms(1000));
        assert_eq!(g.in_flight(A, b.mounts[A]), 2, "no sample is 3 s old yet");
        granted(&g, 1);
        r.record(t0 + ms(2000), g.sample());
        let b = r.after_poll(t0 + ms(3000), true, t0 + ms(3000));
        assert_eq!(
            g.in_flight(A, b.mounts[A]),
            2,
            "only the first grant settled"
        );
    }

    #[test]
    fn grants_older_than_the_ttl_stop_counting_without_a_good_poll() {
        let g = RelayGrants::new(["/a"]);
        let t0 = Instant::now();
        let mut r = Reconciler::new(g.sample(), SETTLE, TTL);
        granted(&g, 5);
        r.record(t0, g.sample());
        granted(&g, 1);
        r.record(t0 + Duration::from_secs(5), g.sample());
        let b = r.after_poll(t0 + TTL, false, t0 + TTL);
        assert_eq!(
            g.in_flight(A, b.mounts[A]),
            1,
            "the 5 are older than the ttl"
        );
    }
}
