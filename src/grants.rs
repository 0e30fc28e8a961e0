//! In-flight grants: listeners floe has sent to a relay that its last poll
//! cannot have counted yet.
//!
//! Icecast shows a new listener 0.2–0.5 s after floe redirected it (never,
//! if the player gives up), so between polls floe must remember what it
//! handed out, or a burst overfills the first relay with room. Each relay
//! owns a [`RelayGrants`]: one monotonic counter per configured mount and one
//! for the whole relay. A redirect increments them with a compare-and-swap
//! that fails when the room is used up, so concurrent redirects never grant
//! more than the room (no lock anywhere).
//!
//! Reconciliation is by baseline: just before a poll (and `settle` before it
//! starts) the poller takes a [`GrantSample`]; the listeners of every grant
//! counted in that sample are in the poll's counts, so after that poll the
//! relay's in-flight count is `counter - sample`. Samples older than
//! `grant_ttl` also serve as a baseline, which ages out grants that no poll
//! could reconcile (e.g. while polls fail).
//!
//! Quiet: with `[[peer]]`s, the instances split each poll's free slots
//! between them, and a grant made between a poll's sample and the poll
//! would be counted against that poll's part although the previous part
//! allowed it: when the new part is smaller, the part is overspent and the
//! relay can overfill. So the poller makes the relay quiet from its sample
//! until the poll's result is published ([`RelayGrants::set_quiet`]): no
//! grant goes through meanwhile. The flag is a bit of the relay counter,
//! so a grant either went through before the flag was set (and is in the
//! sample the poller takes after setting it) or fails.

mod reconcile;

pub use reconcile::Reconciler;

use crate::ids::{MountId, PerMount};
use std::sync::atomic::{AtomicU64, Ordering};

/// The grant counters of one relay. Shared (in an `Arc`) by the relay's
/// poller and every snapshot; survives reloads that keep the relay.
#[derive(Debug)]
pub struct RelayGrants {
    /// Mount paths, in the order of `mounts` (the config's mounts).
    paths: PerMount<Box<str>>,
    mounts: PerMount<AtomicU64>,
    /// Grants on the whole relay, and [`QUIET`] while the relay is quiet.
    relay: AtomicU64,
}

/// The bit of the relay counter that says the relay is quiet (no grant
/// goes through). Counts never reach it (2^63 grants).
const QUIET: u64 = 1 << 63;

/// The counters at one instant, per mount of the counters' topology.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantSample {
    /// Per mount.
    pub mounts: PerMount<u64>,
    /// Whole relay.
    pub relay: u64,
}

impl RelayGrants {
    /// Counters for the given mount paths, all zero.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let paths: PerMount<Box<str>> = paths.into_iter().map(Box::from).collect();
        let mounts = paths.map(|_| AtomicU64::new(0));
        RelayGrants {
            paths,
            mounts,
            relay: AtomicU64::new(0),
        }
    }

    /// Counters for `paths`, carrying over the counts of paths `self` has
    /// too (a reload must not forget what is in flight).
    pub fn carry_over<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Self {
        let next = RelayGrants::new(paths);
        for (i, p) in next.paths.iter_ids() {
            if let Some(j) = self.index(p) {
                next.mounts[i].store(self.mounts[j].load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        // With the quiet bit: the relay's poller clears it.
        next.relay
            .store(self.relay.load(Ordering::Relaxed), Ordering::Relaxed);
        next
    }

    /// Makes the relay quiet (no grant goes through) or lets grants through
    /// again. Every grant that went through before `set_quiet(true)`
    /// returned is in the counters a [`Self::sample`] reads afterwards.
    pub fn set_quiet(&self, quiet: bool) {
        if quiet {
            self.relay.fetch_or(QUIET, Ordering::AcqRel);
        } else {
            self.relay.fetch_and(!QUIET, Ordering::AcqRel);
        }
    }

    /// Whether the relay is quiet now (see [`Self::set_quiet`]).
    #[inline]
    pub fn is_quiet(&self) -> bool {
        self.relay.load(Ordering::Relaxed) & QUIET != 0
    }

    /// The mount paths these counters are for.
    pub fn paths(&self) -> &PerMount<Box<str>> {
        &self.paths
    }

    /// The mount of `path` in [`Self::paths`].
    pub fn index(&self, path: &str) -> Option<MountId> {
        self.paths.position(|p| &**p == path)
    }

    /// The counters now.
    pub fn sample(&self) -> GrantSample {
        GrantSample {
            mounts: self.mounts.map(|c| c.load(Ordering::Acquire)),
            relay: self.relay.load(Ordering::Acquire) & !QUIET,
        }
    }

    /// Grants on mount `m` not covered by `baseline`.
    pub fn in_flight(&self, m: MountId, baseline: u64) -> u64 {
        self.mounts
            .get(m)
            .map_or(0, |c| c.load(Ordering::Acquire).saturating_sub(baseline))
    }

    /// Grants on the whole relay not covered by `baseline`.
    pub fn relay_in_flight(&self, baseline: u64) -> u64 {
        (self.relay.load(Ordering::Acquire) & !QUIET).saturating_sub(baseline)
    }

    /// Records one listener sent to mount `m`, unless that would put more in
    /// flight than the room: `mount_room` above `mount_baseline` on the mount
    /// and `relay_room` above `relay_baseline` on the relay (`None` =
    /// unlimited), or while the relay is quiet unless `when_quiet` says to
    /// grant. Returns whether the grant was recorded.
    pub fn try_grant(
        &self,
        m: MountId,
        mount_baseline: u64,
        mount_room: Option<u64>,
        relay_baseline: u64,
        relay_room: Option<u64>,
        when_quiet: WhenQuiet,
    ) -> bool {
        let Some(mount) = self.mounts.get(m) else {
            return false;
        };
        let refused = match when_quiet {
            WhenQuiet::Refuse => QUIET,
            WhenQuiet::Grant => 0,
        };
        if !increment_within(&self.relay, relay_baseline, relay_room, refused) {
            return false;
        }
        if increment_within(mount, mount_baseline, mount_room, 0) {
            return true;
        }
        // Give the relay slot back. A poller sample taken between the two
        // steps sees one phantom grant; it only makes that one baseline one
        // higher, i.e. at worst one in-flight listener is forgotten a poll
        // early on the relay-wide cap (Icecast's own per-mount limit is the
        // mount counter, which is exact).
        self.relay.fetch_sub(1, Ordering::AcqRel);
        false
    }
}

/// Whether a grant goes through on a quiet relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenQuiet {
    /// No: the relay is skipped (the usual case).
    Refuse,
    /// Yes: no relay that is not quiet can take the listener (see
    /// `select`).
    Grant,
}

/// Adds one to `counter` if `counter - baseline < room` (always when `room`
/// is `None`) and none of the `refused` bits is set (the relay counter's
/// [`QUIET`]).
fn increment_within(counter: &AtomicU64, baseline: u64, room: Option<u64>, refused: u64) -> bool {
    let room = room.unwrap_or(u64::MAX);
    let mut current = counter.load(Ordering::Acquire);
    loop {
        let count = current & !QUIET;
        if current & refused != 0 || count.saturating_sub(baseline) >= room {
            return false;
        }
        match counter.compare_exchange_weak(
            current,
            current + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const A: MountId = MountId::new(0);
    const B: MountId = MountId::new(1);

    #[test]
    fn grants_stop_at_the_room_and_reconcile_by_baseline() {
        let g = RelayGrants::new(["/a", "/b"]);
        assert!(g.try_grant(A, 0, Some(2), 0, None, WhenQuiet::Refuse));
        assert!(g.try_grant(A, 0, Some(2), 0, None, WhenQuiet::Refuse));
        assert!(
            !g.try_grant(A, 0, Some(2), 0, None, WhenQuiet::Refuse),
            "room of 2 is used up"
        );
        assert_eq!(g.in_flight(A, 0), 2);
        let s = g.sample();
        assert_eq!(
            g.in_flight(A, s.mounts[A]),
            0,
            "a poll after the sample counted them"
        );
        assert!(g.try_grant(A, s.mounts[A], Some(2), s.relay, None, WhenQuiet::Refuse));
        assert_eq!(g.relay_in_flight(s.relay), 1);
    }

    #[test]
    fn relay_cap_spans_mounts_and_a_refused_mount_gives_the_relay_slot_back() {
        let g = RelayGrants::new(["/a", "/b"]);
        assert!(g.try_grant(A, 0, None, 0, Some(2), WhenQuiet::Refuse));
        assert!(
            !g.try_grant(B, 0, Some(0), 0, Some(2), WhenQuiet::Refuse),
            "mount has no room"
        );
        assert!(
            g.try_grant(B, 0, None, 0, Some(2), WhenQuiet::Refuse),
            "relay slot was given back"
        );
        assert!(
            !g.try_grant(A, 0, None, 0, Some(2), WhenQuiet::Refuse),
            "relay cap reached across mounts"
        );
    }

    #[test]
    fn a_quiet_relay_grants_nothing_and_counts_stay_exact() {
        let g = RelayGrants::new(["/a", "/b"]);
        assert!(g.try_grant(A, 0, None, 0, Some(10), WhenQuiet::Refuse));
        g.set_quiet(true);
        assert!(g.is_quiet());
        assert!(
            !g.try_grant(A, 0, None, 0, None, WhenQuiet::Refuse),
            "quiet, unlimited room"
        );
        assert!(
            !g.try_grant(B, 0, Some(5), 0, Some(10), WhenQuiet::Refuse),
            "quiet, room left"
        );
        let s = g.sample();
        assert_eq!((s.relay, s.mounts[A], s.mounts[B]), (1, 1, 0));
        assert_eq!(g.relay_in_flight(0), 1, "the quiet bit is not a count");
        // Unless the pick has nowhere else to go; the room still binds.
        assert!(g.try_grant(A, 0, None, 0, Some(2), WhenQuiet::Grant));
        assert!(!g.try_grant(A, 0, None, 0, Some(2), WhenQuiet::Grant));
        assert!(g.is_quiet(), "a grant keeps the flag");
        assert_eq!(g.relay_in_flight(0), 2);
        // A reload carries the flag over; the poller clears it.
        let h = g.carry_over(["/a"]);
        assert!(h.is_quiet());
        assert_eq!(h.relay_in_flight(0), 2);
        g.set_quiet(false);
        assert!(!g.is_quiet());
        assert!(g.try_grant(B, 0, Some(5), 0, Some(10), WhenQuiet::Refuse));
        assert_eq!(g.sample().relay, 3);
    }

    #[test]
    fn carry_over_keeps_counts_of_kept_mounts() {
        let g = RelayGrants::new(["/a", "/b"]);
        g.try_grant(B, 0, None, 0, None, WhenQuiet::Refuse);
        let h = g.carry_over(["/b", "/c"]);
        assert_eq!(h.in_flight(A, 0), 1);
        assert_eq!(h.in_flight(B, 0), 0);
        assert_eq!(h.relay_in_flight(0), 1);
    }

    #[test]
    fn concurrent_grants_never_exceed_the_room() {
        let g = Arc::new(RelayGrants::new(["/a"]));
        let granted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let g = g.clone();
                    s.spawn(move || {
                        (0..10_000)
                            .filter(|_| {
                                g.try_grant(A, 0, Some(1234), 0, Some(5000), WhenQuiet::Refuse)
                            })
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 1234);
        assert_eq!(g.in_flight(A, 0), 1234);
        assert_eq!(g.relay_in_flight(0), 1234);
    }
}
