//! One relay's row of a snapshot: what a build derives from that relay's
//! last good status alone (its cells, its listeners, its relay-wide free
//! slots), and [`Rows`], which keeps each relay's row from one build to the
//! next so a status is turned into cells, and its mount paths resolved to
//! mount ids, once per poll instead of once per build.
//!
//! A row is a pure function of the topology (the relay's caps and uplink,
//! the mounts' bitrates, the reserve fraction) and the status: [`Rows`]
//! keys it on both (the topology's `Arc`, and a `Weak` of the status's,
//! which keeps its address from being reused while it is a key without
//! keeping the status: the poller frees a replaced status, not the
//! builder). What changes with every
//! poll without a new status (the grant baseline, the health) is read at
//! each build, never cached.
//!
//! [`Rows`] also keeps the cells of the last build in one grid, each
//! relay's row with the grant baseline of the observation it was filled
//! for: a build refills the rows of the relays polled since and copies the
//! grid whole, instead of gathering a thousand rows (and baselines) from
//! wherever they lie in memory.

use super::{Cell, RelayDef, RelayObservation, Topology};
use crate::icecast::{MaxListeners, RelayStatus};
use crate::ids::{Grid, MountId, RelayId};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

/// The cells of one relay and the relay-wide figures of one status.
#[derive(Debug, Clone)]
pub struct Row {
    /// Per mount of the topology; `baseline` is left 0 (the build fills it
    /// from the observation).
    pub(super) cells: Box<[Cell]>,
    /// Listeners on all mounts (every listed mount, configured or not).
    pub(super) listeners: u32,
    /// Free slots of the whole relay under its `max_listeners` and uplink
    /// (`None` = unlimited).
    pub(super) free: Option<u64>,
}

impl Row {
    /// The row of relay `r` of `topology` given its last good `status`
    /// (`None`: none yet, or forgotten after the relay went down). The
    /// poller makes it right after a poll, so builds only copy it.
    pub fn of(topology: &Topology, r: RelayId, status: Option<&RelayStatus>) -> Row {
        Row::new(topology, &topology.relays[r], status)
    }

    /// [`Row::of`] for relay `def`.
    fn new(topology: &Topology, def: &RelayDef, status: Option<&RelayStatus>) -> Row {
        let reserve_fraction = topology.config.select.reserve;
        let mut cells = vec![Cell::default(); topology.mounts.len()].into_boxed_slice();
        let mut listeners = 0u32;
        let mut used_kbps = 0u64;
        for ms in status.map_or(&[][..], |s| &s.mounts[..]) {
            listeners = listeners.saturating_add(ms.listeners);
            let mid = topology.mount_id(&ms.path);
            let bitrate = ms
                .bitrate_kbps
                .or_else(|| mid.and_then(|m| topology.mounts[m].bitrate_kbps));
            // Saturating: a relay may claim any counts.
            used_kbps = used_kbps.saturating_add(
                u64::from(ms.listeners).saturating_mul(u64::from(bitrate.unwrap_or(0))),
            );
            let Some(mid) = mid else { continue };
            let reported = match ms.max_listeners {
                MaxListeners::Limited(n) => Some(n),
                MaxListeners::Unlimited | MaxListeners::Unknown => None,
            };
            let capacity = match (reported, def.mount_caps[mid]) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let free = capacity.map(|c| u64::from(c.saturating_sub(ms.listeners)));
            let reserve = capacity.map_or(0, |c| (f64::from(c) * reserve_fraction).ceil() as u64);
            cells[mid.index()] = Cell {
                present: true,
                listeners: ms.listeners,
                capacity,
                capacity_unknown: capacity.is_none() && ms.max_listeners == MaxListeners::Unknown,
                free,
                reserve,
                baseline: 0,
                bitrate_kbps: bitrate,
            };
        }
        // Uplink: express the remaining bandwidth as slots of each mount's
        // bitrate, folded into the mount's free slots; and, since the mounts
        // share it, as slots of the highest bitrate, folded into the relay's
        // (grants on two mounts must not each spend the whole of it; with
        // mounts of different bitrates this counts the bandwidth left short
        // until the next poll, never over).
        let mut uplink_free = None;
        if let Some(uplink) = def.uplink_kbps {
            let left = u64::from(uplink).saturating_sub(used_kbps);
            let mut highest = 0u64;
            for cell in cells.iter_mut().filter(|c| c.present) {
                if let Some(b) = cell.bitrate_kbps.filter(|b| *b > 0) {
                    let slots = left / u64::from(b);
                    cell.free = Some(cell.free.map_or(slots, |f| f.min(slots)));
                    highest = highest.max(u64::from(b));
                }
            }
            uplink_free = (highest > 0).then(|| left / highest);
        }
        let cap_free = def
            .max_listeners
            .map(|c| u64::from(c.saturating_sub(listeners)));
        let free = match (cap_free, uplink_free) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Row {
            cells,
            listeners,
            free,
        }
    }
}

/// Each relay's row as of the last build, kept for the next: the snapshot
/// builder of the poller holds one, so a build recomputes only the rows of
/// the relays polled since (with a new status) and copies the others.
/// A `Rows::default()` is empty: every row is computed.
#[derive(Debug, Default)]
pub struct Rows {
    /// The topology the rows were computed for (another one empties them).
    topology: Option<Arc<Topology>>,
    /// Per relay: the status the row was computed from, and the row.
    rows: Vec<Option<(Option<Weak<RelayStatus>>, Row)>>,
    /// Per relay x mount: the last build's cells before shares (the
    /// relay's row with its observation's grant baseline; default cells
    /// for a relay not polled yet).
    cells: Grid<Cell>,
    /// Per relay: the observation its cells in `cells` were filled for
    /// (`None`: default cells).
    filled: Vec<Option<Filled>>,
}

/// Which observation a relay's cells were filled for: its poll count, when
/// that poll finished, and the address of its last good status. The poller
/// replaces a relay's observation once per poll, counting it, so another
/// poll is another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Filled {
    polls: u64,
    polled_at: Option<SystemTime>,
    status: *const RelayStatus,
}

// SAFETY: `Filled::status` is only compared, never dereferenced.
unsafe impl Send for Filled {}
// SAFETY: as above.
unsafe impl Sync for Filled {}

impl Rows {
    /// Makes the rows those of `topology` (emptied when it is another one).
    pub fn prepare(&mut self, topology: &Arc<Topology>) {
        if !self
            .topology
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, topology))
        {
            self.topology = Some(topology.clone());
            self.rows.clear();
            self.cells = Grid::new(topology.relays.len(), topology.mounts.len());
            self.filled.clear();
        }
        self.rows.resize_with(topology.relays.len(), || None);
        self.filled.resize(topology.relays.len(), None);
    }

    /// Keeps `row`, made for relay `r` of `topology` from `status` (see
    /// [`Row::of`]), for the next build; ignored when the rows are of
    /// another topology (the build makes the row again).
    pub fn offer(
        &mut self,
        topology: &Arc<Topology>,
        r: RelayId,
        status: Arc<RelayStatus>,
        row: Row,
    ) {
        let same = self
            .topology
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, topology));
        if let Some(slot) = self.rows.get_mut(r.index()).filter(|_| same) {
            *slot = Some((Some(Arc::downgrade(&status)), row));
            self.filled[r.index()] = None;
        }
    }

    /// The row of relay `r` for `status`: the kept one when it was computed
    /// from this very status, else a new one (kept in its place).
    pub(super) fn get(
        &mut self,
        topology: &Topology,
        r: RelayId,
        status: Option<&Arc<RelayStatus>>,
    ) -> &Row {
        let slot = &mut self.rows[r.index()];
        // A row whose cells went to the grid (see [`Rows::fill`]) is made
        // again when asked for.
        let whole = |row: &Row| row.cells.len() == topology.mounts.len();
        let fresh = match (slot.as_ref(), status) {
            (Some((Some(kept), row)), Some(s)) => {
                !std::ptr::eq(kept.as_ptr(), Arc::as_ptr(s)) || !whole(row)
            }
            (Some((None, row)), None) => !whole(row),
            _ => true,
        };
        if fresh {
            let row = Row::new(topology, &topology.relays[r], status.map(|s| &**s));
            *slot = Some((status.map(Arc::downgrade), row));
            self.filled[r.index()] = None;
        }
        &slot.as_ref().expect("filled above").1
    }

    /// Fills relay `r`'s cells in the grid from observation `obs` (its
    /// last good status's row, with the observation's grant baseline on
    /// every present mount), unless they were filled for this very
    /// observation; returns the row, for the relay-wide figures.
    pub(super) fn fill(&mut self, topology: &Topology, r: RelayId, obs: &RelayObservation) -> &Row {
        let status = obs.health.last_status();
        let key = Filled {
            polls: obs.polls,
            polled_at: obs.polled_at,
            status: status.map_or(std::ptr::null(), Arc::as_ptr),
        };
        let kept = self.filled[r.index()];
        if kept != Some(key) {
            let baseline = |m: usize| {
                obs.baseline
                    .mounts
                    .get(MountId::new(m))
                    .copied()
                    .unwrap_or(0)
            };
            if kept.is_some_and(|k| k.status == key.status) {
                // Another poll, the same status (its row was not replaced
                // since, so the address is still that status's): the cells
                // stand, only the baseline is new.
                for (m, cell) in self.cells.row_mut(r).iter_mut().enumerate() {
                    if cell.present {
                        cell.baseline = baseline(m);
                    }
                }
            } else {
                self.get(topology, r, status);
                let row = &mut self.rows[r.index()].as_mut().expect("made by get").1;
                let out = self.cells.row_mut(r);
                out.clone_from_slice(&row.cells);
                for (m, cell) in out.iter_mut().enumerate() {
                    if cell.present {
                        cell.baseline = baseline(m);
                    }
                }
                // The grid holds them now: one copy per relay, not two.
                row.cells = Box::default();
            }
            self.filled[r.index()] = Some(key);
        }
        let slot = &self.rows[r.index()];
        &slot.as_ref().expect("filled for this key").1
    }

    /// Makes relay `r`'s cells in the grid default ones (not polled yet).
    pub(super) fn clear(&mut self, r: RelayId) {
        if self.filled[r.index()].take().is_some() {
            self.cells.row_mut(r).fill(Cell::default());
        }
    }

    /// The grid of every relay's cells as filled (see [`Rows::fill`]).
    pub(super) fn cells(&self) -> &Grid<Cell> {
        &self.cells
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icecast::MountStatus;
    use crate::ids::MountId;
    use crate::snapshot::testkit::topology;

    fn status(listeners: u32) -> Arc<RelayStatus> {
        Arc::new(RelayStatus {
            mounts: vec![
                MountStatus {
                    path: "/b.ogg".into(),
                    listeners,
                    max_listeners: MaxListeners::Limited(100),
                    bitrate_kbps: Some(128),
                },
                MountStatus {
                    path: "/unknown.ogg".into(),
                    listeners: 5,
                    max_listeners: MaxListeners::Unlimited,
                    bitrate_kbps: None,
                },
            ],
        })
    }

    const CONFIG: &str = r#"
[[relay]]
name = "r1"
url = "http://r1:8000"
addresses = ["192.0.2.1"]
status = { kind = "xslt" }
max_listeners = 50
[[stream]]
name = "s"
mounts = ["/a.ogg", "/b.ogg"]
"#;

    #[test]
    fn a_row_resolves_paths_and_counts_every_listed_mount() {
        let t = topology(CONFIG);
        let row = Row::new(&t, &t.relays[RelayId::new(0)], Some(&status(10)));
        assert!(!row.cells[0].present, "/a.ogg is not listed");
        let b = &row.cells[MountId::new(1).index()];
        assert!(b.present);
        assert_eq!((b.listeners, b.capacity, b.free), (10, Some(100), Some(90)));
        // The unconfigured mount's listeners count for the relay's cap.
        assert_eq!((row.listeners, row.free), (15, Some(35)));
        let none = Row::new(&t, &t.relays[RelayId::new(0)], None);
        assert_eq!((none.listeners, none.free), (0, Some(50)));
        assert!(none.cells.iter().all(|c| !c.present));
    }

    #[test]
    fn rows_are_kept_for_the_same_status_and_topology_only() {
        let t = topology(CONFIG);
        let r = RelayId::new(0);
        let mut rows = Rows::default();
        rows.prepare(&t);
        let s = status(10);
        assert_eq!(rows.get(&t, r, Some(&s)).listeners, 15);
        // Same status object: the kept row (even a different one would be
        // returned: the key is the status's identity).
        rows.rows[0].as_mut().unwrap().1.listeners = 999;
        assert_eq!(rows.get(&t, r, Some(&s)).listeners, 999);
        // A new status (equal or not) is a new row.
        assert_eq!(rows.get(&t, r, Some(&status(10))).listeners, 15);
        assert_eq!(rows.get(&t, r, None).listeners, 0);
        // Another topology (a reload) empties the rows.
        rows.rows[0].as_mut().unwrap().1.listeners = 999;
        let t2 = topology(CONFIG);
        rows.prepare(&t2);
        assert_eq!(rows.get(&t2, r, None).listeners, 0);
    }

    #[test]
    fn an_offered_row_is_used_for_its_topology_only() {
        let t = topology(CONFIG);
        let r = RelayId::new(0);
        let mut rows = Rows::default();
        rows.prepare(&t);
        let s = status(10);
        let mut row = Row::of(&t, r, Some(&s));
        row.listeners = 777;
        rows.offer(&t, r, s.clone(), row.clone());
        assert_eq!(rows.get(&t, r, Some(&s)).listeners, 777);
        // Made for another topology: ignored.
        let other = topology(CONFIG);
        let s2 = status(11);
        rows.offer(&other, r, s2.clone(), row);
        assert_eq!(rows.get(&t, r, Some(&s2)).listeners, 16);
    }

    #[test]
    fn a_build_with_kept_rows_equals_a_fresh_build() {
        use crate::grants::GrantSample;
        use crate::health::{Health, PollOutcome};
        use crate::shares::Shares;
        use crate::snapshot::{RelayObservation, Snapshot, Stamp};
        const THREE: &str = r#"
[[relay]]
name = "r1"
url = "http://r1:8000"
addresses = ["192.0.2.1"]
status = { kind = "xslt" }
[[relay]]
name = "r2"
url = "http://r2:8000"
addresses = ["192.0.2.2"]
status = { kind = "xslt" }
max_listeners = 40
[[relay]]
name = "r3"
url = "http://r3:8000"
addresses = ["192.0.2.3"]
status = { kind = "xslt" }
[[stream]]
name = "s"
mounts = ["/a.ogg", "/b.ogg"]
"#;
        let t = topology(THREE);
        let at = std::time::SystemTime::UNIX_EPOCH;
        let observe = |polls: u64, listeners: u32, baseline: u64| {
            let mut health = Health::new(at);
            let status = (*status(listeners)).clone();
            health.observe(PollOutcome::Status(status), 1, 1, at);
            RelayObservation {
                health,
                baseline: GrantSample {
                    mounts: vec![baseline, baseline + 1].into(),
                    relay: baseline,
                },
                polled_at: Some(at + std::time::Duration::from_secs(polls)),
                polls,
                poll_duration: None,
            }
        };
        // Rounds of observations: a relay polled again (new counts, new
        // baseline), one not polled since, one going back to unpolled.
        let rounds: Vec<Vec<Option<RelayObservation>>> = vec![
            vec![Some(observe(1, 10, 0)), None, Some(observe(1, 5, 2))],
            vec![
                Some(observe(2, 12, 3)),
                Some(observe(1, 1, 0)),
                Some(observe(1, 5, 2)),
            ],
            vec![Some(observe(2, 12, 3)), None, Some(observe(2, 7, 4))],
            vec![
                Some(observe(3, 12, 9)),
                Some(observe(2, 3, 1)),
                Some(observe(2, 7, 4)),
            ],
        ];
        // Another poll with the same status (a failed one keeps the last
        // good status): a new baseline on the same cells.
        let mut rounds = rounds;
        let mut again = rounds[3].clone();
        for o in again.iter_mut().flatten() {
            o.polls += 1;
            o.baseline.mounts = vec![20, 21].into();
        }
        rounds.push(again);
        let mut rows = Rows::default();
        let shares = Shares::uniform(1.0, t.mounts.len());
        for (i, round) in rounds.iter().enumerate() {
            let refs: Vec<Option<&RelayObservation>> = round.iter().map(Option::as_ref).collect();
            let stamp = Stamp::now(i as u64 + 1);
            let kept = Snapshot::build_with(
                t.clone(),
                &refs,
                &[],
                stamp,
                Arc::default(),
                &shares,
                &mut rows,
            );
            let fresh = Snapshot::build(t.clone(), &refs, &[], stamp, Arc::default());
            for r in t.relays.ids() {
                let (a, b) = (&kept.relays[r], &fresh.relays[r]);
                assert_eq!(
                    (a.state, a.listeners, a.free, a.baseline),
                    (b.state, b.listeners, b.free, b.baseline),
                    "round {i}, relay {r:?}"
                );
                for m in t.mounts.ids() {
                    assert_eq!(
                        format!("{:?}", kept.cell(r, m)),
                        format!("{:?}", fresh.cell(r, m)),
                        "round {i}, relay {r:?}, mount {m:?}"
                    );
                }
            }
        }
    }
}
