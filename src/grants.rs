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
    relay: AtomicU64,
}

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
        next.relay
            .store(self.relay.load(Ordering::Relaxed), Ordering::Relaxed);
        next
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
            relay: self.relay.load(Ordering::Acquire),
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
        self.relay.load(Ordering::Acquire).saturating_sub(baseline)
    }

    /// Records one listener sent to mount `m`, unless that would put more in
    /// flight than the room: `mount_room` above `mount_baseline` on the mount
    /// and `relay_room` above `relay_baseline` on the relay (`None` =
    /// unlimited). Returns whether the grant was recorded.
    pub fn try_grant(
        &self,
        m: MountId,
        mount_baseline: u64,
        mount_room: Option<u64>,
        relay_baseline: u64,
        relay_room: Option<u64>,
    ) -> bool {
        let Some(mount) = self.mounts.get(m) else {
            return false;
        };
        if !increment_within(&self.relay, relay_baseline, relay_room) {
            return false;
        }
        if increment_within(mount, mount_baseline, mount_room) {
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

/// Adds one to `counter` if `counter - baseline < room` (always when `room`
/// is `None`).
fn increment_within(counter: &AtomicU64, baseline: u64, room: Option<u64>) -> bool {
    let Some(room) = room else {
        counter.fetch_add(1, Ordering::AcqRel);
        return true;
    };
    let mut current = counter.load(Ordering::Acquire);
    loop {
        if current.saturating_sub(baseline) >= room {
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
        assert!(g.try_grant(A, 0, Some(2), 0, None));
        assert!(g.try_grant(A, 0, Some(2), 0, None));
        assert!(!g.try_grant(A, 0, Some(2), 0, None), "room of 2 is used up");
        assert_eq!(g.in_flight(A, 0), 2);
        let s = g.sample();
        assert_eq!(
            g.in_flight(A, s.mounts[A]),
            0,
            "a poll after the sample counted them"
        );
        assert!(g.try_grant(A, s.mounts[A], Some(2), s.relay, None));
        assert_eq!(g.relay_in_flight(s.relay), 1);
    }

    #[test]
    fn relay_cap_spans_mounts_and_a_refused_mount_gives_the_relay_slot_back() {
        let g = RelayGrants::new(["/a", "/b"]);
        assert!(g.try_grant(A, 0, None, 0, Some(2)));
        assert!(!g.try_grant(B, 0, Some(0), 0, Some(2)), "mount has no room");
        assert!(
            g.try_grant(B, 0, None, 0, Some(2)),
            "relay slot was given back"
        );
        assert!(
            !g.try_grant(A, 0, None, 0, Some(2)),
            "relay cap reached across mounts"
        );
    }

    #[test]
    fn carry_over_keeps_counts_of_kept_mounts() {
        let g = RelayGrants::new(["/a", "/b"]);
        g.try_grant(B, 0, None, 0, None);
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
                            .filter(|_| g.try_grant(A, 0, Some(1234), 0, Some(5000)))
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
