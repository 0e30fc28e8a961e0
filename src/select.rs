//! Selection: the one place that decides what a target gets now.
//!
//! [`decide`] answers "what does this target get now" for every consumer:
//! given a snapshot, a [`Target`] (an HTTP redirect for a mount, or a
//! balanced DNS name) and the time, it returns every relay's verdict (its
//! [`Room`] or the [`Exclusion`] that keeps it out) and the [`Answer`]:
//! candidates, or the [`Fallback`] and why. The DNS plan draws from it,
//! `/explain` prints it, `/status` and `/metrics` show it. The redirect hot
//! path, [`pick_for_mount`], draws from the same room function and weights
//! (through per-mount running sums, O(log relays)) and, when it finds no
//! room, gives the reason [`decide`] gives.
//!
//! One room function ([`mount_room`], [`stream_room`], [`relay_room`]), one
//! reserve rule ([`reserve`]), one weight ([`weight`]), one weighted draw
//! ([`crate::draw`]). Pure: a function of a [`Snapshot`], the grant counters
//! and an RNG the caller passes (seeded in tests); no I/O, no lock.
//!
//! A relay is a candidate for a mount when it is up, not draining, the mount
//! is present on it and it has room: the mount's free slots and the relay's
//! (caps, uplink) at the last poll, minus grants in flight since, minus the
//! headroom reserve unless a peer is down or full.

use crate::config::{DnsConfig, DnsPolicy};
use crate::draw::{self, RunningSums};
use crate::grants::WhenQuiet;
use crate::health::RelayState;
use crate::snapshot::{
    DEFAULT_POOL, GroupId, MountId, PerGroup, PerMount, PerRelay, PoolId, RelayId, Snapshot,
    StreamId,
};
use crate::snapshot::{GroupDef, MountPicks};
use rand::Rng;
use std::cell::Cell;
use std::fmt;
use std::time::Instant;

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
    /// In none of the groups the listener's pool is served from.
    NotInPool,
    /// Has room, but a group earlier in the listener's pool order has room
    /// too (listeners spill over to later groups only when it is full).
    EarlierGroup,
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
            Exclusion::NotInPool => "not-in-pool",
            Exclusion::EarlierGroup => "earlier-group",
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no relay could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoCandidate {
    /// No relay has been polled yet.
    Starting,
    /// No live relay has a source for the mount: the stream is off the air.
    Offline,
    /// Sources are there but every relay carrying them is full, down,
    /// draining or reserved.
    Full,
    /// Only from a [`Grant::RecordUnlessQuiet`] pick: the relays with room
    /// in the first group that has any are quiet for a moment (see
    /// [`crate::grants`]); ask again when the quiet ends.
    Quiet,
}

impl NoCandidate {
    /// Short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCandidate::Starting => "starting",
            NoCandidate::Offline => "offline",
            NoCandidate::Full => "full",
            NoCandidate::Quiet => "quiet",
        }
    }
}

/// What a decision is about. The door matters: a DNS name has fallback
/// policies (stale snapshot, first poll) that a redirect does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// An HTTP redirect for a mount.
    Redirect(MountId),
    /// A balanced DNS name: a whole stream, or one mount of it.
    Name {
        /// The stream it balances.
        stream: StreamId,
        /// For a per-mount name, the mount.
        mount: Option<MountId>,
    },
}

/// Why no candidate answers: the DNS policies' reasons, and the 503's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// The snapshot is older than `[poll] stale_after` (DNS `when_stale`).
    Stale,
    /// No relay qualifies yet and the first poll round is not done (DNS
    /// `before_first_poll`).
    FirstPoll,
    /// No relay qualifies (DNS `when_no_candidate`; HTTP answers 503).
    NoCandidate(NoCandidate),
}

impl Fallback {
    /// Short name for explanations, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::NoCandidate(NoCandidate::Starting) => "no-candidate:starting",
            Fallback::NoCandidate(NoCandidate::Offline) => "no-candidate:offline",
            Fallback::NoCandidate(NoCandidate::Full) => "no-candidate:full",
            Fallback::NoCandidate(NoCandidate::Quiet) => "no-candidate:quiet",
            Fallback::FirstPoll => "first-poll",
            Fallback::Stale => "stale",
        }
    }

    /// The DNS policy `[dns]` configures for this reason.
    pub fn policy(self, dns: &DnsConfig) -> DnsPolicy {
        match self {
            Fallback::Stale => dns.when_stale,
            Fallback::FirstPoll => dns.before_first_poll,
            Fallback::NoCandidate(_) => dns.when_no_candidate,
        }
    }
}

/// What a target gets now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Relays with room, chosen by room x weight.
    Candidates,
    /// No candidate can be used, for this reason.
    Fallback(Fallback),
}

/// The decision for one target from one snapshot.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What was decided.
    pub target: Target,
    /// For whom: the listener's pool.
    pub pool: PoolId,
    /// The group of the pool's order the candidates come from (`None`
    /// when no group has room).
    pub group: Option<GroupId>,
    /// The mounts a relay was judged on (one for a mount; a stream's mounts
    /// on the air, or its first mount when none is).
    pub judged: Box<[MountId]>,
    /// Every relay's room, or why it is excluded.
    pub verdicts: PerRelay<Result<Room, Exclusion>>,
    /// Candidates, or which fallback and why.
    pub answer: Answer,
}

impl Decision {
    /// The relays with room, in topology order.
    pub fn candidates(&self) -> impl Iterator<Item = (RelayId, Room)> + '_ {
        self.verdicts
            .iter_ids()
            .filter_map(|(r, v)| v.ok().map(|room| (r, room)))
    }

    /// The relays with room and their selection weights, as running sums
    /// to draw from.
    pub fn weighted(&self, snap: &Snapshot) -> RunningSums {
        let mut sums = RunningSums::with_capacity(self.verdicts.len());
        for (r, room) in self.candidates() {
            sums.push(r, weight(snap, r, room));
        }
        sums
    }
}

/// [`decide_for`] the default pool (every listener when the config has
/// no `[[pool]]`).
pub fn decide(snap: &Snapshot, target: Target, now: Instant) -> Decision {
    decide_for(snap, target, DEFAULT_POOL, now)
}

/// Decides what `target` gets for a listener of `pool` from `snap` at
/// `now`: every relay's verdict and the answer. The candidates are the
/// relays with room of the first group in the pool's order that has any
/// (spill-over by room); relays of later groups are
/// [`Exclusion::EarlierGroup`], relays of no group in the order
/// [`Exclusion::NotInPool`]. The answer, in this order: a stale snapshot
/// (DNS names, unless `when_stale = "last-known"`), candidates, the first
/// poll round not done (DNS names), no candidate (starting, offline or
/// full, judged on the pool's relays).
pub fn decide_for(snap: &Snapshot, target: Target, pool: PoolId, now: Instant) -> Decision {
    let topology = &snap.topology;
    let order = &topology.pools[pool].order;
    let rooms: PerRelay<Result<Room, Exclusion>> = snap
        .relays
        .ids()
        .map(|r| {
            if order.iter().any(|&g| topology.groups[g].members[r]) {
                room(snap, r, target)
            } else {
                Err(Exclusion::NotInPool)
            }
        })
        .collect();
    let group = order
        .iter()
        .copied()
        .find(|&g| topology.groups[g].relays.iter().any(|&r| rooms[r].is_ok()));
    let verdicts = rooms
        .iter_ids()
        .map(|(r, v)| match (v, group) {
            (Ok(_), Some(g)) if !topology.groups[g].members[r] => Err(Exclusion::EarlierGroup),
            _ => *v,
        })
        .collect();
    Decision {
        target,
        pool,
        group,
        judged: judged(snap, target),
        answer: answer(snap, target, pool, group.is_some(), now),
        verdicts,
    }
}

/// The answer for `target` given whether any relay has room.
fn answer(
    snap: &Snapshot,
    target: Target,
    pool: PoolId,
    any_candidate: bool,
    now: Instant,
) -> Answer {
    let dns = matches!(target, Target::Name { .. });
    if dns && snap.config().dns.when_stale != DnsPolicy::LastKnown && snap.is_stale(now) {
        return Answer::Fallback(Fallback::Stale);
    }
    if any_candidate {
        return Answer::Candidates;
    }
    if dns && !snap.first_round_done {
        return Answer::Fallback(Fallback::FirstPoll);
    }
    Answer::Fallback(Fallback::NoCandidate(no_candidate(snap, target, pool)))
}

/// The room group `group`'s relays have for new listeners of mount `m`
/// (the sum of [`mount_room`] over them, 0 for excluded relays); `None`
/// when one of them has no limit.
pub fn group_room(snap: &Snapshot, group: &GroupDef, m: MountId) -> Option<u64> {
    group
        .relays
        .iter()
        .try_fold(0u64, |sum, &r| match mount_room(snap, r, m) {
            Ok(room) => room.slots().map(|n| sum + n),
            Err(_) => Some(sum),
        })
}

/// The room relay `r` has for `target`, or why it has none.
pub fn room(snap: &Snapshot, r: RelayId, target: Target) -> Result<Room, Exclusion> {
    match target {
        Target::Redirect(m) | Target::Name { mount: Some(m), .. } => mount_room(snap, r, m),
        Target::Name {
            stream,
            mount: None,
        } => stream_room(snap, r, stream),
    }
}

/// The mounts a relay is judged on for `target`.
fn judged(snap: &Snapshot, target: Target) -> Box<[MountId]> {
    match target {
        Target::Redirect(m) | Target::Name { mount: Some(m), .. } => Box::new([m]),
        Target::Name {
            stream,
            mount: None,
        } => match &*snap.stream_required[stream] {
            [] => snap.topology.streams[stream]
                .mounts
                .iter()
                .take(1)
                .copied()
                .collect(),
            on_air => on_air.into(),
        },
    }
}

/// The slots held back as headroom reserve on relay `r`, mount `m`: the
/// cell's reserve, unless a peer is down or full.
#[inline]
pub fn reserve(snap: &Snapshot, r: RelayId, m: MountId) -> u64 {
    if snap.reserve_released(r, m) {
        0
    } else {
        snap.cell(r, m).reserve
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
        mount: mount.map(|s| s.saturating_sub(reserve(snap, r, m))),
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
        let slots = |room: Room| room.slots().unwrap_or(u64::MAX);
        least = Some(match least {
            Some(l) if slots(l) <= slots(room) => l,
            _ => room,
        });
    }
    least.ok_or(Exclusion::NoSource)
}

/// Room relay `r` has for new listeners on any of its mounts now: the sum
/// of its mounts' room, bounded by the relay's own (`None`: unlimited; 0
/// when it is a candidate for none).
pub fn relay_room(snap: &Snapshot, r: RelayId) -> Option<u64> {
    let mut mounts: Option<u64> = Some(0);
    let mut relay: Option<u64> = None;
    let mut any = false;
    for m in snap.topology.mounts.ids() {
        if let Ok(room) = mount_room(snap, r, m) {
            any = true;
            mounts = mounts.zip(room.mount).map(|(a, b)| a + b);
            relay = room.relay;
        }
    }
    if !any {
        return Some(0);
    }
    Room {
        mount: mounts,
        relay,
    }
    .slots()
}

/// The selection weight of a candidate: room (unlimited counts as
/// `[select] unlimited_room`) times the relay's weight.
#[inline]
pub fn weight(snap: &Snapshot, r: RelayId, room: Room) -> u64 {
    let unlimited = u64::from(snap.config().select.unlimited_room);
    room.slots()
        .unwrap_or(unlimited)
        .saturating_mul(u64::from(snap.topology.relays[r].weight))
}

/// Why no relay qualifies for `target`: nothing polled yet, no live relay
/// has a source for its mounts (offline, also when every relay is down), or
/// sources are there but no room (full).
fn no_candidate(snap: &Snapshot, target: Target, pool: PoolId) -> NoCandidate {
    if !snap.first_round_done && snap.relays.iter().all(|r| r.state == RelayState::Unknown) {
        return NoCandidate::Starting;
    }
    let mounts: &[MountId] = match &target {
        Target::Redirect(m) | Target::Name { mount: Some(m), .. } => std::slice::from_ref(m),
        Target::Name {
            stream,
            mount: None,
        } => &snap.topology.streams[*stream].mounts,
    };
    let topology = &snap.topology;
    let in_pool = |r: RelayId| {
        topology.pools[pool]
            .order
            .iter()
            .any(|&g| topology.groups[g].members[r])
    };
    let on_air = snap.relays.iter_ids().any(|(r, v)| {
        matches!(v.state, RelayState::Up | RelayState::Full)
            && in_pool(r)
            && mounts.iter().any(|&m| snap.cell(r, m).present)
    });
    if on_air {
        NoCandidate::Full
    } else {
        NoCandidate::Offline
    }
}

/// Draws from a mount's pick sums before [`pick_for_mount`] falls back to
/// scanning every relay. Rejections are rare until a mount's room is mostly
/// granted away within one snapshot; then the scan answers.
const INDEXED_DRAWS: usize = 8;

/// Makes `snap`'s per-mount picks, so that the first redirect from it
/// does not pay for them (the poller calls this before publishing).
pub fn prepare(snap: &Snapshot) {
    picks(snap);
}

/// Per mount: the relays that had room when the picks were made, with
/// their selection weights then, and their room. Grants only shrink room
/// while a snapshot is current, so a draw by those weights accepted with
/// probability (weight now / weight then) picks exactly in proportion to
/// the weights now, in O(log relays). (The one exception, a failed
/// two-step grant giving its relay slot back, can leave a weight one slot
/// low; the acceptance is then capped at 1, a bias of one slot for that
/// relay until the next snapshot.)
fn picks(snap: &Snapshot) -> &PerGroup<PerMount<MountPicks>> {
    snap.picks(|snap| {
        let unlimited = u64::from(snap.config().select.unlimited_room);
        let mounts = snap.topology.mounts.len();
        snap.topology.groups.map(|group| {
            let mut picks: Vec<MountPicks> = (0..mounts)
                .map(|_| MountPicks {
                    sums: RunningSums::with_capacity(group.relays.len()),
                    room: 0,
                })
                .collect();
            // Relay by relay, each relay's mounts in turn: the cells, grant
            // counters and relay views are read in the order they are laid
            // out (a pass mount by mount strides across every relay's row
            // once per mount). Each mount's sums still list the group's
            // relays in order.
            for &r in &group.relays {
                if !maybe_room(snap, r) {
                    continue;
                }
                for (m, picks) in snap.topology.mounts.ids().zip(picks.iter_mut()) {
                    if let Ok(room) = mount_room(snap, r, m) {
                        picks.sums.push(r, weight(snap, r, room));
                        picks.room = picks.room.saturating_add(room.slots().unwrap_or(unlimited));
                    }
                }
            }
            picks.into_iter().collect()
        })
    })
}

/// Whether relay `r` can have room on any mount ([`mount_room`]'s checks
/// of the relay alone): false lets a pass over its mounts skip them all.
#[inline]
fn maybe_room(snap: &Snapshot, r: RelayId) -> bool {
    let relay = &snap.relays[r];
    relay.state == RelayState::Up && !relay.drain
}

/// How many grants one client (one address prefix) of `pool` may take per
/// window for mount `m` now: `[select] grants_per_client`, or
/// `client_share` of the mount's room when the snapshot was made (in the
/// largest group of the pool's order) if that is more (so a venue's NAT is
/// not refused while room is plentiful, and no client takes more than that
/// share when it is scarce).
pub fn client_budget(snap: &Snapshot, m: MountId, pool: PoolId) -> u64 {
    let select = &snap.config().select;
    let picks = picks(snap);
    let room = snap.topology.pools[pool]
        .order
        .iter()
        .filter_map(|&g| picks[g].get(m))
        .map(|p| p.room)
        .max()
        .unwrap_or(0);
    let share = (room as f64 * select.client_share).floor() as u64;
    u64::from(select.grants_per_client).max(share)
}

/// Whether a pick records a grant, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A listener will follow: count it against the room. Quiet relays
    /// ([`crate::grants`]) only when no other relay of the group has room.
    Record,
    /// As [`Grant::Record`], but never on a quiet relay: when the first
    /// group with room has only quiet relays with room, the pick fails with
    /// [`NoCandidate::Quiet`] (the caller waits for the quiet to end).
    RecordUnlessQuiet,
    /// Only the answer is wanted (`HEAD`): draw the same way, take nothing.
    None,
}

/// A relay picked for one listener, and the group of the pool's order it
/// came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The relay the listener is sent to.
    pub relay: RelayId,
    /// The group it was picked in.
    pub group: GroupId,
    /// Whether that group is not the first of the pool's order: the
    /// listener spilled over (the earlier groups had no room).
    pub spilled: bool,
}

/// Picks a relay for one new listener of `pool` on mount `m` and, with
/// [`Grant::Record`], records the grant: from the first group of the
/// pool's order with room, weighted by room x weight; a relay whose room a
/// concurrent pick used up in the meantime is skipped. Never blocks, never
/// allocates (once the snapshot is [`prepare`]d).
pub fn pick<R: Rng + ?Sized>(
    snap: &Snapshot,
    m: MountId,
    pool: PoolId,
    grant: Grant,
    rng: &mut R,
) -> Result<Pick, NoCandidate> {
    pick_where(snap, m, pool, grant, |_| true, rng)
}

/// [`pick`] among the relays `eligible` accepts only (e.g. those with an
/// `https_url`, for a request that came over TLS): the others are never
/// drawn or granted, and a group whose eligible relays have no room spills
/// over like a full one. The draw among the eligible relays keeps their
/// proportions (draws of others are rejected). `NoCandidate` says why the
/// pool has no relay at all; that relays with room exist but none is
/// eligible is for the caller to find out (a [`pick`] with [`Grant::None`]).
pub fn pick_where<R: Rng + ?Sized>(
    snap: &Snapshot,
    m: MountId,
    pool: PoolId,
    grant: Grant,
    eligible: impl Fn(RelayId) -> bool + Copy,
    rng: &mut R,
) -> Result<Pick, NoCandidate> {
    for (rank, &g) in snap.topology.pools[pool].order.iter().enumerate() {
        // Quiet relays last: only when no other relay of the group can
        // take the listener, and not at all for RecordUnlessQuiet (a group
        // with only quiet room is not full: no spill-over either).
        let skipped = Cell::new(false);
        let quiet = Quiet::Skip(&skipped);
        let mut picked = pick_indexed(snap, g, m, grant, quiet, eligible, rng)
            .or_else(|| pick_by_scan(snap, g, m, grant, quiet, eligible, rng));
        if picked.is_none() && skipped.get() {
            if grant == Grant::RecordUnlessQuiet {
                return Err(NoCandidate::Quiet);
            }
            picked = pick_by_scan(snap, g, m, grant, Quiet::Take, eligible, rng);
        }
        if let Some(relay) = picked {
            return Ok(Pick {
                relay,
                group: g,
                spilled: rank > 0,
            });
        }
    }
    Err(no_candidate(snap, Target::Redirect(m), pool))
}

/// [`pick`], the relay only.
pub fn pick_for_mount<R: Rng + ?Sized>(
    snap: &Snapshot,
    m: MountId,
    pool: PoolId,
    grant: Grant,
    rng: &mut R,
) -> Result<RelayId, NoCandidate> {
    pick(snap, m, pool, grant, rng).map(|p| p.relay)
}

/// Up to [`INDEXED_DRAWS`] draws from group `g`'s pick sums for the mount,
/// each accepted with probability (weight now / weight then) and then
/// granted; `None` when none went through.
fn pick_indexed<R: Rng + ?Sized>(
    snap: &Snapshot,
    g: GroupId,
    m: MountId,
    grant: Grant,
    quiet: Quiet,
    eligible: impl Fn(RelayId) -> bool,
    rng: &mut R,
) -> Option<RelayId> {
    let sums = &picks(snap).get(g)?.get(m)?.sums;
    for _ in 0..INDEXED_DRAWS {
        let (r, then) = sums.draw(rng)?;
        if !eligible(r) {
            continue;
        }
        let Ok(room) = mount_room(snap, r, m) else {
            continue;
        };
        if quiet.skips(snap, r, grant) {
            continue;
        }
        let now = weight(snap, r, room);
        if now < then && rng.random_range(0..then) >= now {
            continue;
        }
        if take(snap, r, m, grant, quiet) {
            return Some(r);
        }
    }
    None
}

/// A pick from group `g` by a pass over its relays with their room now.
fn pick_by_scan<R: Rng + ?Sized>(
    snap: &Snapshot,
    g: GroupId,
    m: MountId,
    grant: Grant,
    quiet: Quiet,
    eligible: impl Fn(RelayId) -> bool + Copy,
    rng: &mut R,
) -> Option<RelayId> {
    let relays = &snap.topology.groups[g].relays;
    let weighted = || {
        relays
            .iter()
            .filter(move |&&r| eligible(r))
            .filter_map(move |&r| {
                let room = mount_room(snap, r, m).ok()?;
                (!quiet.skips(snap, r, grant)).then(|| (r, weight(snap, r, room)))
            })
    };
    // A handful of retries covers races with concurrent picks; each retry
    // re-reads the counters, so a relay that filled up drops out.
    for _ in 0..4 {
        let Some((r, _)) = draw::linear(weighted, rng) else {
            break;
        };
        if take(snap, r, m, grant, quiet) {
            return Some(r);
        }
    }
    None
}

/// What a pick does with a quiet relay ([`crate::grants`]: with
/// `[[peer]]`s, a relay between a poll's grant sample and the publication
/// of its result, whose grants would be counted against a part they were
/// not made under).
#[derive(Clone, Copy)]
enum Quiet<'a> {
    /// Skips it, noting that it did.
    Skip(&'a Cell<bool>),
    /// Grants on it all the same: no other relay of the group can take the
    /// listener.
    Take,
}

impl Quiet<'_> {
    /// Whether a pick passes over relay `r`, which has room (only picks
    /// that record a grant care).
    #[inline]
    fn skips(self, snap: &Snapshot, r: RelayId, grant: Grant) -> bool {
        match self {
            Quiet::Skip(skipped) => {
                let quiet = grant != Grant::None && snap.topology.relays[r].grants.is_quiet();
                if quiet {
                    skipped.set(true);
                }
                quiet
            }
            Quiet::Take => false,
        }
    }
}

/// [`grant`] when the pick records one; always true otherwise.
fn take(snap: &Snapshot, r: RelayId, m: MountId, grant: Grant, quiet: Quiet) -> bool {
    match grant {
        Grant::Record | Grant::RecordUnlessQuiet => self::grant(snap, r, m, quiet),
        Grant::None => true,
    }
}

/// Records one listener sent to relay `r` on mount `m`, unless a concurrent
/// pick used up the room in the meantime. The counters are bounded by the
/// poll-time free slots (less the reserve) above their baselines, so the
/// bound holds however many pickers race.
fn grant(snap: &Snapshot, r: RelayId, m: MountId, quiet: Quiet) -> bool {
    let relay = &snap.relays[r];
    let cell = snap.cell(r, m);
    let mount_limit = cell.free.map(|f| f.saturating_sub(reserve(snap, r, m)));
    let when_quiet = match quiet {
        Quiet::Skip(_) => WhenQuiet::Refuse,
        Quiet::Take => WhenQuiet::Grant,
    };
    snap.topology.relays[r].grants.try_grant(
        m,
        cell.baseline,
        mount_limit,
        relay.baseline,
        relay.free,
        when_quiet,
    )
}

#[cfg(test)]
mod tests;
