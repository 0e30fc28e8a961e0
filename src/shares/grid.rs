//! The shared poll grid: with `[[peer]]`s, every instance of the NS set
//! polls a relay at the same wall-clock moments, so all of them read the
//! same free-slot count and their parts of it (which sum to at most one)
//! sum to at most what the relay has.
//!
//! Instances that polled a relay at different moments read different
//! counts: the one that polled earlier does not see the listeners that
//! arrived since, and its part of the larger count reaches into slots the
//! others have already handed out. On the grid the readings differ only by
//! the instances' clock offset and the polls' own time, which the grants
//! cover by counting [`GRID_MARGIN`] longer than `settle`.
//!
//! Relay `r` is polled at `k x interval + phase(r)` (seconds since the Unix
//! epoch), its phase a hash of its base URL, so the polls of many relays
//! stay spread over the interval as the jitter spreads them without peers,
//! and every instance computes the same phase whatever its config order.

use std::hash::Hasher;
use std::time::{Duration, SystemTime};

/// How far apart two instances' polls of one relay on the grid may be
/// (clock offset between the hosts under NTP plus a LAN poll's time) for
/// the parts to stay within the relay's room: grants count this much
/// longer than `settle`.
pub const GRID_MARGIN: Duration = Duration::from_millis(100);

/// How long grants count after a poll they may be in (the reconciler's
/// `settle`): `settle`, and [`GRID_MARGIN`] more on the grid.
pub fn grant_settle(settle: Duration, on_grid: bool) -> Duration {
    if on_grid {
        settle + GRID_MARGIN
    } else {
        settle
    }
}

/// How long past the longest quiet period a redirect waits before it takes
/// a quiet relay: a snapshot build's spacing at 5,000 relays.
const QUIET_SLACK: Duration = Duration::from_millis(500);

/// How long a redirect that found only quiet room ([`crate::grants`]) waits
/// for the quiet to end before it grants on a quiet relay: a relay is quiet
/// from its grant sample (`settle` + [`GRID_MARGIN`] before the poll)
/// through the poll (at most `timeout`) until a snapshot with the result is
/// published.
pub fn quiet_limit(settle: Duration, timeout: Duration) -> Duration {
    settle + GRID_MARGIN + timeout + QUIET_SLACK
}

/// Whether relays can be quiet between a poll's grant sample and its
/// result ([`crate::grants`]) with these poll settings: when the quiet
/// (`settle` + [`GRID_MARGIN`]) is at most half the interval. A longer one
/// would leave a relay open to grants for too little of each interval
/// (with `settle` at or above the interval, never), so the poller then
/// takes no quiet period, and a grant made in the `settle` before a poll
/// may again overspend its instance's part by a listener or two.
pub fn quiet_fits(settle: Duration, interval: Duration) -> bool {
    (settle + GRID_MARGIN) * 2 <= interval
}

/// Relay polls on a wall-clock grid of period `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollGrid {
    interval: Duration,
}

impl PollGrid {
    /// A grid of period `interval` (at least a millisecond).
    pub fn new(interval: Duration) -> PollGrid {
        PollGrid {
            interval: interval.max(Duration::from_millis(1)),
        }
    }

    /// The phase of the relay at base URL `url`: the same
    /// on every instance (FNV-1a, which does not change between builds,
    /// unlike std's hasher).
    pub fn phase(&self, url: &str) -> Duration {
        let mut h = fnv::FnvHasher::default();
        h.write(url.as_bytes());
        let period = self.interval.as_nanos() as u64;
        Duration::from_nanos(h.finish() % period)
    }

    /// The first poll time of a relay with `phase` strictly after `after`.
    pub fn next_after(&self, after: SystemTime, phase: Duration) -> SystemTime {
        let since = after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let period = self.interval.as_nanos();
        let at = match since.as_nanos().checked_sub(phase.as_nanos()) {
            Some(shifted) => (shifted / period + 1) * period + phase.as_nanos(),
            None => phase.as_nanos(),
        };
        SystemTime::UNIX_EPOCH
            + Duration::from_secs((at / 1_000_000_000) as u64)
            + Duration::from_nanos((at % 1_000_000_000) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_instance_polls_a_relay_at_the_same_moments() {
        let grid = PollGrid::new(Duration::from_secs(2));
        let phase = grid.phase("http://relay1.example.org:8000/floe-slots.xsl");
        assert_eq!(
            phase,
            grid.phase("http://relay1.example.org:8000/floe-slots.xsl")
        );
        let a = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let b = a + Duration::from_millis(700);
        let (na, nb) = (grid.next_after(a, phase), grid.next_after(b, phase));
        let on_grid = |t: SystemTime| {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            (d.as_nanos() - phase.as_nanos()).is_multiple_of(2_000_000_000)
        };
        assert!(on_grid(na) && on_grid(nb));
        assert!(na > a && nb > b);
        assert!(na == nb || nb.duration_since(na).unwrap() == Duration::from_secs(2));
    }

    #[test]
    fn relays_spread_over_the_interval() {
        let grid = PollGrid::new(Duration::from_secs(2));
        let mut quarters = [0; 4];
        for i in 0..400 {
            let p = grid.phase(&format!("http://10.0.{}.{}:8000/", i / 200, i % 200));
            quarters[(p.as_millis() / 500) as usize] += 1;
        }
        assert!(quarters.iter().all(|&q| q > 60), "{quarters:?}");
    }

    proptest! {
        #[test]
        fn the_next_poll_is_on_the_grid_within_one_interval(
            ms in 0u64..4_000_000_000_000,
            interval_ms in 1u64..60_000,
            url in ".{0,40}",
        ) {
            let grid = PollGrid::new(Duration::from_millis(interval_ms));
            let phase = grid.phase(&url);
            let after = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            let next = grid.next_after(after, phase);
            prop_assert!(next > after);
            prop_assert!(next.duration_since(after).unwrap() <= Duration::from_millis(interval_ms));
            let d = next.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
            prop_assert_eq!((d - phase.as_nanos()) % (interval_ms as u128 * 1_000_000), 0);
        }
    }
}
