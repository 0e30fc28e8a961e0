//! Selection: which relays may take a new listener for a mount or a stream,
//! and a random pick among them weighted by room x weight.
//!
//! A pure function of a [`Snapshot`] plus the grant counters and an RNG the
//! caller passes (seeded in tests): no I/O, no lock, no allocation. HTTP and
//! DNS both call it, so both doors agree on the same snapshot.
//!
//! A relay is a candidate for a mount when it is up, not draining, the mount
//! is present on it and it has room: the mount's free slots and the relay's
//! (caps, uplink) at the last poll, minus grants in flight since, minus the
//! headroom reserve unless a peer is down or full.

use crate::health::RelayState;
use crate::snapshot::{MountId, RelayId, Snapshot, StreamId};
use rand::Rng;
use std::fmt;

/// Room left on one relay for one mount, after grants and reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Slots on the mount (`None` = unlimited).
    pub mount: Option<u64>,
    /// Slots on the relay (`None` = unlimited).
    pub relay: Option<u64>,
}

impl Room {
    /// The binding limit (`None` = unlimited).
    pub fn slots(self) -> Option<u64> {
        match (self.mount, self.relay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why a relay is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exclusion {
    /// Not polled yet.
    Unknown,
    /// Down.
    Down,
    /// Answering but refusing every client (global limit).
    ServerFull,
    /// Operator drain.
    Draining,
    /// The mount has no source on this relay.
    NoSource,
    /// No free slot on the mount or relay (counting grants in flight).
    Full,
    /// The only slots left are the headroom reserve, held until a peer is
    /// down or full.
    Reserve,
}

impl Exclusion {
    /// Short name for logs, metrics and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::Unknown => "unknown",
            Exclusion::Down => "down",
            Exclusion::ServerFull => "server-full",
            Exclusion::Draining => "draining",
            Exclusion::NoSource => "no-source",
            Exclusion::Full => "full",
            Exclusion::Reserve => "reserve",
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no relay could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCandidate {
    /// No relay has been polled yet.
    Starting,
    /// No live relay has a source for the mount: the stream is off the air.
    Offline,
    /// Sources are there but every relay carrying them is full, down,
    /// draining or reserved.
    Full,
}

impl NoCandidate {
    /// Short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCandidate::Starting => "starting",
            NoCandidate::Offline => "offline",
            NoCandidate::Full => "full",
        }
    }
}

/// Whether relay `r` can take a listener on mount `m`, and how much room it
/// has if so.
pub fn mount_room(snap: &Snapshot, r: RelayId, m: MountId) -> Result<Room, Exclusion> {
    let relay = &snap.relays[r];
    match relay.state {
        RelayState::Up => {}
        RelayState::Unknown => return Err(Exclusion::Unknown),
        RelayState::Down => return Err(Exclusion::Down),
        RelayState::Full => return Err(Exclusion::ServerFull),
    }
    if relay.drain {
        return Err(Exclusion::Draining);
    }
    let cell = snap.cell(r, m);
    if !cell.present {
        return Err(Exclusion::NoSource);
    }
    let grants = &snap.topology.relays[r].grants;
    let reserve = if snap.reserve_released[m] {
        0
    } else {
        cell.reserve
    };
    let mount = cell
        .free
        .map(|f| f.saturating_sub(grants.in_flight(m, cell.baseline)));
    let relay_room = relay
        .free
        .map(|f| f.saturating_sub(grants.relay_in_flight(relay.baseline)));
    let raw = Room {
        mount,
        relay: relay_room,
    };
    if raw.slots() == Some(0) {
        return Err(Exclusion::Full);
    }
    let after_reserve = Room {
        mount: mount.map(|s| s.saturating_sub(reserve)),
        relay: relay_room,
    };
    if after_reserve.slots() == Some(0) {
        return Err(Exclusion::Reserve);
    }
    Ok(after_reserve)
}

/// Whether relay `r` can take a listener of stream `s` on any of the mounts
/// the stream currently has on the air (a DNS client may ask for any of
/// them), and the smallest room among those mounts.
pub fn stream_room(snap: &Snapshot, r: RelayId, s: StreamId) -> Result<Room, Exclusion> {
    let required = &snap.stream_required[s];
    if required.is_empty() {
        // Nothing is on the air; report the relay's own state.
        return match snap.topology.streams[s].mounts.first() {
            Some(&m) => mount_room(snap, r, m),
            None => Err(Exclusion::NoSource),
        };
    }
    let mut least: Option<Room> = None;
    for &m in required.iter() {
        let room = mount_room(snap, r, m)?;
        least = Some(match least {
            None => room,
            Some(l) => {
                if weight_room(room.slots(), u64::MAX) < weight_room(l.slots(), u64::MAX) {
                    room
                } else {
                    l
                }
            }
        });
    }
    least.ok_or(Exclusion::NoSource)
}

fn weight_room(slots: Option<u64>, unlimited: u64) -> u64 {
    slots.unwrap_or(unlimited)
}

/// The selection weight of a candidate: room (unlimited counts as
/// `[select] unlimited_room`) times the relay's weight.
fn weight(snap: &Snapshot, r: RelayId, room: Room) -> u64 {
    let unlimited = u64::from(snap.config().select.unlimited_room);
    weight_room(room.slots(), unlimited) * u64::from(snap.topology.relays[r].weight)
}

/// Why no relay qualifies for any of `mounts` (one mount for a redirect,
/// a stream's mounts for a stream name): nothing polled yet, no live relay
/// has a source (offline, also when every relay is down), or sources are
/// there but no room (full). HTTP, DNS and explanations all give this
/// reason.
pub fn no_candidate(snap: &Snapshot, mounts: &[MountId]) -> NoCandidate {
    if !snap.first_round_done && snap.relays.iter().all(|r| r.state == RelayState::Unknown) {
        return NoCandidate::Starting;
    }
    let on_air = (0..snap.relays.len()).any(|r| {
        matches!(snap.relays[r].state, RelayState::Up | RelayState::Full)
            && mounts.iter().any(|&m| snap.cell(r, m).present)
    });
    if on_air {
        NoCandidate::Full
    } else {
        NoCandidate::Offline
    }
}

fn no_candidate_for_mount(snap: &Snapshot, m: MountId) -> NoCandidate {
    no_candidate(snap, std::slice::from_ref(&m))
}

/// Draws from a mount's [`PickIndex`] before [`pick_for_mount`] falls back
/// to scanning every relay. Rejections are rare until a mount's room is
/// mostly granted away within one snapshot; then the scan answers.
const INDEXED_DRAWS: usize = 8;

/// Relays with selection weights kept as running sums, so a weighted draw
/// is one binary search. Redirects draw from one per mount ([`PickIndex`]),
/// DNS plans from one per balanced name, each with its own weights.
#[derive(Debug, Default)]
pub struct RunningSums {
    relays: Vec<RelayId>,
    cumulative: Vec<u64>,
}

impl RunningSums {
    /// Empty, with room for `n` relays.
    pub fn with_capacity(n: usize) -> RunningSums {
        RunningSums {
            relays: Vec::with_capacity(n),
            cumulative: Vec::with_capacity(n),
        }
    }

    /// Adds relay `r` with weight `w`.
    pub fn push(&mut self, r: RelayId, w: u64) {
        let sum = self.total().saturating_add(w);
        self.relays.push(r);
        self.cumulative.push(sum);
    }

    /// The sum of every weight.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The relays, in the order they were added.
    pub fn relays(&self) -> &[RelayId] {
        &self.relays
    }

    /// The position whose share of `0..total()` holds `target`.
    pub fn find(&self, target: u64) -> usize {
        self.cumulative.partition_point(|&c| c <= target)
    }

    /// The relay at position `i` and its weight.
    pub fn entry(&self, i: usize) -> (RelayId, u64) {
        let below = if i == 0 { 0 } else { self.cumulative[i - 1] };
        (self.relays[i], self.cumulative[i] - below)
    }
}

/// Per mount: the relays that had room when the snapshot was built, with
/// their selection weights then. Grants only shrink room while a snapshot
/// is current, so a draw by those weights accepted with probability
/// (weight now / weight then) picks exactly in proportion to the weights
/// now, in O(log relays) instead of two passes over them. (The one
/// exception, a failed two-step grant giving its relay slot back, can leave
/// a build-time weight one slot low; the acceptance is then capped at 1, a
/// bias of one slot for that relay until the next snapshot.)
pub type PickIndex = RunningSums;

/// The [`PickIndex`] of every mount of `snap`, from each relay's room now
/// (the snapshot builds it once, before it is published).
pub fn pick_index(snap: &Snapshot) -> Box<[PickIndex]> {
    (0..snap.topology.mounts.len())
        .map(|m| {
            let mut index = RunningSums::default();
            for r in 0..snap.relays.len() {
                let Ok(room) = mount_room(snap, r, m) else {
                    continue;
                };
                let w = weight(snap, r, room);
                if w > 0 {
                    index.push(r, w);
                }
            }
            index
        })
        .collect()
}

/// Picks a relay for one new listener of mount `m` and records the grant.
/// Weighted by room x weight; a relay whose room a concurrent pick used up
/// in the meantime is skipped. Never blocks, never allocates.
pub fn pick_for_mount<R: Rng + ?Sized>(
    snap: &Snapshot,
    m: MountId,
    rng: &mut R,
) -> Result<RelayId, NoCandidate> {
    if let Some(r) = pick_indexed(snap, m, rng) {
        return Ok(r);
    }
    pick_by_scan(snap, m, rng)
}

/// Up to [`INDEXED_DRAWS`] draws from the mount's [`PickIndex`], each
/// accepted with probability (weight now / weight at build) and then
/// granted; `None` when none went through.
fn pick_indexed<R: Rng + ?Sized>(snap: &Snapshot, m: MountId, rng: &mut R) -> Option<RelayId> {
    let index = snap.pick_index(m)?;
    let total = index.total();
    if total == 0 {
        return None;
    }
    for _ in 0..INDEXED_DRAWS {
        let (r, built) = index.entry(index.find(rng.random_range(0..total)));
        let Ok(room) = mount_room(snap, r, m) else {
            continue;
        };
        let now = weight(snap, r, room);
        if now < built && rng.random_range(0..built) >= now {
            continue;
        }
        if grant(snap, r, m) {
            return Some(r);
        }
    }
    None
}

/// [`pick_for_mount`] by two passes over every relay with their room now.
fn pick_by_scan<R: Rng + ?Sized>(
    snap: &Snapshot,
    m: MountId,
    rng: &mut R,
) -> Result<RelayId, NoCandidate> {
    let n = snap.relays.len();
    // A handful of retries covers races with concurrent picks; each retry
    // re-reads the counters, so a relay that filled up drops out.
    for _ in 0..4 {
        let total: u64 = (0..n)
            .filter_map(|r| {
                mount_room(snap, r, m)
                    .ok()
                    .map(|room| weight(snap, r, room))
            })
            .sum();
        if total == 0 {
            return Err(no_candidate_for_mount(snap, m));
        }
        let mut target = rng.random_range(0..total);
        let mut chosen = None;
        for r in 0..n {
            let Ok(room) = mount_room(snap, r, m) else {
                continue;
            };
            let w = weight(snap, r, room);
            chosen = Some(r);
            if target < w {
                break;
            }
            target -= w;
        }
        let Some(r) = chosen else { continue };
        if grant(snap, r, m) {
            return Ok(r);
        }
    }
    Err(no_candidate_for_mount(snap, m))
}

/// Records one listener sent to relay `r` on mount `m`, unless a concurrent
/// pick used up the room in the meantime. The counters are bounded by the
/// poll-time free slots (less the reserve) above their baselines, so the
/// bound holds however many pickers race.
fn grant(snap: &Snapshot, r: RelayId, m: MountId) -> bool {
    let relay = &snap.relays[r];
    let cell = snap.cell(r, m);
    let reserve = if snap.reserve_released[m] {
        0
    } else {
        cell.reserve
    };
    let mount_limit = cell.free.map(|f| f.saturating_sub(reserve));
    snap.topology.relays[r].grants.try_grant(
        m,
        cell.baseline,
        mount_limit,
        relay.baseline,
        relay.free,
    )
}

/// Up to `out.len()` distinct relays for stream `s` (or, with `mount`, for
/// that mount only), drawn without replacement weighted by room x weight.
/// Returns how many were written. Records no grants: a DNS answer is cached
/// and shared by resolvers, so it is not one listener.
pub fn pick_many<R: Rng + ?Sized>(
    snap: &Snapshot,
    s: StreamId,
    mount: Option<MountId>,
    rng: &mut R,
    out: &mut [RelayId],
) -> usize {
    let room_of = |r| match mount {
        Some(m) => mount_room(snap, r, m),
        None => stream_room(snap, r, s),
    };
    let n = snap.relays.len();
    let mut picked = 0;
    while picked < out.len() {
        let taken = &out[..picked];
        let eligible = |r: &RelayId| !taken.contains(r);
        let total: u64 = (0..n)
            .filter(eligible)
            .filter_map(|r| room_of(r).ok().map(|room| weight(snap, r, room)))
            .sum();
        if total == 0 {
            break;
        }
        let mut target = rng.random_range(0..total);
        let mut chosen = None;
        for r in (0..n).filter(eligible) {
            let Ok(room) = room_of(r) else { continue };
            let w = weight(snap, r, room);
            chosen = Some(r);
            if target < w {
                break;
            }
            target -= w;
        }
        match chosen {
            Some(r) => {
                out[picked] = r;
                picked += 1;
            }
            None => break,
        }
    }
    picked
}

/// For one mount: every relay with its room or the reason it is excluded,
/// in topology order. For explanations and the status page.
pub fn explain_mount(
    snap: &Snapshot,
    m: MountId,
) -> impl Iterator<Item = (RelayId, Result<Room, Exclusion>)> + '_ {
    (0..snap.relays.len()).map(move |r| (r, mount_room(snap, r, m)))
}

/// [`explain_mount`] for a whole stream.
pub fn explain_stream(
    snap: &Snapshot,
    s: StreamId,
) -> impl Iterator<Item = (RelayId, Result<Room, Exclusion>)> + '_ {
    (0..snap.relays.len()).map(move |r| (r, stream_room(snap, r, s)))
}

#[cfg(test)]
mod tests;
