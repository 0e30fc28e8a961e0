//! Balanced answers: what each balanced name answers for one snapshot.
//!
//! A [`Plan`] is built from one snapshot and the loaded zones, and holds, for
//! every balanced name (`[[stream]] dns` and `mount_dns`), the decision
//! ([`select::decide`]: candidates, or which fallback and so which policy),
//! the TTL, and [`VARIANTS`] pre-drawn address lists per family: each a
//! weighted draw without replacement among the candidates (room x weight,
//! [`select::Decision::weighted`]). Every variant is also rendered to wire
//! format once ([`Rendered`]). Queries then only choose a variant: the UDP
//! fast path copies its bytes, the hickory handler turns the same addresses
//! into records, so both paths give the same answers for the same plan.
//!
//! Pure: no I/O, no clock of its own (the caller passes the time), no lock.
//! A plan is rebuilt when the snapshot or the zones change, and at least
//! every [`REFRESH`] (grants in flight and the staleness of the snapshot
//! change under one snapshot).

use super::zones::Zones;
use crate::config::{DnsConfig, DnsPolicy};
use crate::draw::RunningSums;
use crate::health::RelayState;
use crate::select::{self, Answer, Fallback, Target};
use crate::snapshot::{GroupId, MountId, PerPool, PoolId, RelayId, Snapshot, StreamId};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Address lists drawn per balanced name and family for one plan. Queries
/// rotate through them, so the answers of one plan spread like the weighted
/// picks they were drawn from.
pub const VARIANTS: usize = 16;

/// Longest time one plan is used before it is drawn again from the same
/// snapshot (grants in flight change room between snapshots).
pub const REFRESH: Duration = Duration::from_secs(1);

/// A plan that took `cost` to draw is redrawn for a snapshot that differs
/// in counts only after this many times its cost: such redraws take at
/// most 1/[`HOLD_FACTOR`] of a core (0.4 %), however large the cluster.
pub const HOLD_FACTOR: u32 = 250;

/// How long a plan that took `cost` to draw holds for newer snapshots that
/// differ in counts only: [`HOLD_FACTOR`] x `cost`, at most [`REFRESH`]
/// (a small cluster's plan, drawn in microseconds, is redrawn for every
/// new snapshot, as it always was).
pub fn hold(cost: Duration) -> Duration {
    cost.saturating_mul(HOLD_FACTOR).min(REFRESH)
}

/// A relay whose state changed less than this long ago (up to the configured
/// `ttl`) makes balanced answers use `min_ttl`: the cluster is changing.
fn settling(config: &DnsConfig) -> Duration {
    config.ttl
}

/// The answers of every balanced name for one snapshot.
#[derive(Debug)]
pub struct Plan {
    /// Generation of the snapshot the plan was drawn from.
    pub generation: u64,
    /// That snapshot (identity tells whether the plan is current).
    pub(super) snapshot: Arc<Snapshot>,
    /// The zones the plan was drawn against.
    pub(super) zones: Arc<Zones>,
    /// When the plan must be drawn again even if nothing else changed.
    pub expires: Instant,
    /// Until when the plan also serves a newer snapshot that differs in
    /// counts only (see [`Plan::holds_for`]); `now` (none) unless the
    /// drawer sets it.
    pub(super) hold_until: Instant,
    /// Every balanced name inside a loaded zone.
    pub names: Box<[Balanced]>,
    /// Lower-case wire name -> index in `names`, when there are many names.
    index: Option<HashMap<Box<[u8]>, usize>>,
    /// Where answers are counted per (pool, group) (set by
    /// [`super::DnsState`]; none counted until then).
    pub(super) slots: Arc<super::stats::PoolSlots>,
}

/// Where a balanced answer comes from: [`select::decide`]'s answer, with
/// the policy `[dns]` configures for a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Relays with room, picked by room x weight.
    Candidates,
    /// A configured policy, because of `why`.
    Policy {
        /// Why the normal answer could not be used.
        why: Fallback,
        /// What answers instead.
        policy: DnsPolicy,
    },
}

/// One balanced name's answers in one plan: one per listener pool, pools
/// whose decisions name the same relays sharing one.
#[derive(Debug)]
pub struct Balanced {
    /// The name, lower case, fully qualified.
    pub name: Name,
    /// Its uncompressed wire form, lower case.
    pub(super) wire: Box<[u8]>,
    /// The stream it balances.
    pub stream: StreamId,
    /// For a per-mount name, the mount.
    pub mount: Option<MountId>,
    /// Index of its zone in [`Zones`].
    pub zone: usize,
    /// The distinct answers, the default pool's first.
    pub answers: Box<[PoolAnswer]>,
    /// Per listener pool, the index of its answer in `answers`.
    by_pool: PerPool<usize>,
    /// Per listener pool, the group of its order the answer comes from
    /// (pools sharing an answer may reach it through different groups).
    groups: PerPool<Option<GroupId>>,
}

/// What a balanced name answers for one or more listener pools.
#[derive(Debug)]
pub struct PoolAnswer {
    /// Candidates or a policy.
    pub decision: Decision,
    /// The pools answered this way.
    pub pools: Box<[PoolId]>,
    /// TTL of the address records.
    pub ttl: u32,
    /// The relays the variants were drawn from (candidates, or the
    /// policy's relays), in topology order.
    pub relays: Box<[RelayId]>,
    /// IPv4 variants (each possibly empty: NODATA).
    pub v4: Box<[Box<[Ipv4Addr]>]>,
    /// IPv6 variants.
    pub v6: Box<[Box<[Ipv6Addr]>]>,
    /// The variants in wire format.
    pub(super) rendered: Rendered,
}

impl Plan {
    /// Draws the answers of every balanced name of `snapshot`'s config that
    /// lies inside one of `zones`. `now`/`wall` are the current monotonic and
    /// wall-clock times; `rng` draws the variants.
    pub fn build<R: Rng + ?Sized>(
        snapshot: Arc<Snapshot>,
        zones: Arc<Zones>,
        now: Instant,
        wall: SystemTime,
        rng: &mut R,
    ) -> Plan {
        let snap = &*snapshot;
        let topology = &snap.topology;
        let mut names = Vec::new();
        for (name, stream, mount) in topology.config.balanced_names() {
            let Some((zone, _)) = zones.find(name) else {
                continue;
            };
            let Some(sid) = topology.stream_id(&stream.name) else {
                continue;
            };
            let mid = mount.map(|path| topology.mount_id(path));
            if mid == Some(None) {
                continue;
            }
            let mid = mid.flatten();
            names.push(balanced(snap, &zones, name, zone, sid, mid, now, wall, rng));
        }
        let index = (names.len() > 8).then(|| {
            names
                .iter()
                .enumerate()
                .map(|(i, b)| (b.wire.clone(), i))
                .collect()
        });
        let stale_at = snap.built + snap.config().poll.stale_after + Duration::from_millis(1);
        let expires = if now < stale_at {
            (now + REFRESH).min(stale_at)
        } else {
            now + REFRESH
        };
        Plan {
            generation: snap.generation,
            snapshot,
            zones,
            expires,
            hold_until: now,
            names: names.into(),
            index,
            slots: Arc::default(),
        }
    }

    /// Whether this plan may answer for `snap`, a snapshot newer than its
    /// own, at `now`: while it holds (see [`hold`]), for a snapshot of the
    /// same topology whose [`Snapshot::candidacy`] is its own's, i.e. one
    /// that differs in counts only. Then the same relays are candidates for
    /// the same reasons, and only the weights among them, and the TTL, lag
    /// by at most the hold ([`REFRESH`] at most, as for grants under one
    /// snapshot); a relay that went down, filled up or was drained makes
    /// the next query or plan tick redraw at once, as before.
    #[inline]
    pub fn holds_for(&self, snap: &Snapshot, now: Instant) -> bool {
        now < self.hold_until
            && self.snapshot.candidacy == snap.candidacy
            && Arc::ptr_eq(&self.snapshot.topology, &snap.topology)
    }

    /// The balanced name with this lower-case wire form.
    #[inline]
    pub fn find_wire(&self, lower: &[u8]) -> Option<&Balanced> {
        match &self.index {
            Some(index) => index.get(lower).map(|&i| &self.names[i]),
            None => self.names.iter().find(|b| &*b.wire == lower),
        }
    }

    /// The balanced name equal to `name` (case-insensitive).
    pub fn find(&self, name: &Name) -> Option<&Balanced> {
        self.names.iter().find(|b| b.name == *name)
    }

    /// True when `name` is a strict ancestor of a balanced name (an empty
    /// non-terminal unless the zone has records there).
    pub fn is_above_balanced(&self, name: &Name) -> bool {
        self.names
            .iter()
            .any(|b| name.zone_of(&b.name) && b.name.num_labels() > name.num_labels())
    }

    /// The counter slot of answers of `b` to listeners of `pool`.
    #[inline]
    pub fn pool_slot(&self, b: &Balanced, pool: PoolId) -> u8 {
        self.slots.slot(pool, b.group(pool))
    }

    /// The snapshot the plan was drawn from.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// One line per balanced name for debug logs: generation, decision, TTL
    /// and relays.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for b in self.names.iter() {
            for pool in self.snapshot.topology.pools.ids() {
                let _ = write!(
                    s,
                    "{} {}; ",
                    b.name,
                    b.explain(&self.snapshot, self.generation, pool)
                );
            }
        }
        s
    }
}

impl Balanced {
    /// The answer for listeners of `pool`.
    #[inline]
    pub fn for_pool(&self, pool: PoolId) -> &PoolAnswer {
        &self.answers[self.by_pool.get(pool).copied().unwrap_or(0)]
    }

    /// The default pool's answer (everyone's, without `[[pool]]`).
    pub fn default_answer(&self) -> &PoolAnswer {
        &self.answers[0]
    }

    /// Whether the answer depends on the listener's pool (else an ECS
    /// answer has scope 0).
    #[inline]
    pub fn varies(&self) -> bool {
        self.answers.len() > 1
    }

    /// The group of `pool`'s order its answer comes from (`None`: no group
    /// has room).
    pub fn group(&self, pool: PoolId) -> Option<GroupId> {
        self.groups.get(pool).copied().flatten()
    }

    /// The TXT explanation of `pool`'s answer (see [`Balanced::explain`]),
    /// split into strings of at most 255 bytes.
    pub fn explain_record(
        &self,
        snap: &Snapshot,
        generation: u64,
        pool: PoolId,
        owner: &Name,
    ) -> Record {
        let text = self.explain(snap, generation, pool);
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(255);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            parts.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
        // The explanation changes with every snapshot: never cache it long.
        Record::from_rdata(owner.clone(), 0, RData::TXT(TXT::new(parts)))
    }

    /// `pool`'s answer in words ([`PoolAnswer::explain`]); with listener
    /// pools configured, then ` pool=hall group=venue` (the pool the asker
    /// was answered as, and the group of its order answering, or `none`).
    pub fn explain(&self, snap: &Snapshot, generation: u64, pool: PoolId) -> String {
        let mut s = self.for_pool(pool).explain(snap, generation);
        let topology = &snap.topology;
        if topology.pools.len() > 1 {
            let group = self
                .group(pool)
                .map_or("none", |g| &topology.groups[g].name);
            let _ = write!(s, " pool={} group={group}", topology.pools[pool].name);
        }
        s
    }
}

impl PoolAnswer {
    /// The address records of variant `variant` for `rtype` (A or AAAA;
    /// anything else has none), owned by `owner` (the question's name, so
    /// its case is kept).
    pub fn records(&self, rtype: RecordType, variant: usize, owner: &Name) -> Vec<Record> {
        let record = |d| Record::from_rdata(owner.clone(), self.ttl, d);
        match rtype {
            RecordType::A => pick(&self.v4, variant)
                .iter()
                .map(|&a| record(RData::A(A(a))))
                .collect(),
            RecordType::AAAA => pick(&self.v6, variant)
                .iter()
                .map(|&a| record(RData::AAAA(AAAA(a))))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `generation=N answer=candidates ttl=T relays=relay-1,relay-2`, or
    /// `answer=serve-all reason=no-candidate:full ...` for a policy (see
    /// docs/dns.md).
    pub fn explain(&self, snap: &Snapshot, generation: u64) -> String {
        let mut s = format!("generation={generation} ");
        match self.decision {
            Decision::Candidates => s.push_str("answer=candidates"),
            Decision::Policy { why, policy } => {
                let _ = write!(s, "answer={} reason={}", policy.as_str(), why.as_str());
            }
        }
        let _ = write!(s, " ttl={} relays=", self.ttl);
        for (i, &r) in self.relays.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&snap.topology.relays[r].name);
        }
        s
    }
}

/// The wire-format answers of one balanced name: one message per variant
/// and type, ID 0, question in lower case, no OPT record.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The A variants.
    pub(super) a: Box<[Box<[u8]>]>,
    /// The AAAA variants.
    pub(super) aaaa: Box<[Box<[u8]>]>,
}

impl Rendered {
    /// Renders every variant of `answer` for `name`; `soa` is its zone's
    /// SOA with the negative TTL, for NODATA variants.
    pub fn render(name: &Name, answer: &PoolAnswer, soa: &Record) -> Rendered {
        let one = |rtype: RecordType, k: usize| -> Box<[u8]> {
            let mut m = Message::new(0, MessageType::Response, OpCode::Query);
            m.metadata.authoritative = true;
            m.add_query(Query::query(name.clone(), rtype));
            let records = answer.records(rtype, k, name);
            if records.is_empty() {
                m.add_authority(soa.clone());
            } else {
                m.add_answers(records);
            }
            // An encoding error leaves the variant empty: those queries go
            // to the handler.
            m.to_vec().unwrap_or_default().into()
        };
        let all = |rtype: RecordType, n: usize| (0..n.max(1)).map(|k| one(rtype, k)).collect();
        Rendered {
            a: all(RecordType::A, answer.v4.len()),
            aaaa: all(RecordType::AAAA, answer.v6.len()),
        }
    }
}

/// Variant `variant` of `variants` (empty when there are none).
#[inline]
pub(super) fn pick<T>(variants: &[Box<[T]>], variant: usize) -> &[T] {
    match variants.len() {
        0 => &[],
        n => &variants[variant % n],
    }
}

#[allow(clippy::too_many_arguments)]
fn balanced<R: Rng + ?Sized>(
    snap: &Snapshot,
    zones: &Zones,
    name: &Name,
    zone: usize,
    sid: StreamId,
    mid: Option<MountId>,
    now: Instant,
    wall: SystemTime,
    rng: &mut R,
) -> Balanced {
    let target = Target::Name {
        stream: sid,
        mount: mid,
    };
    let soa = zones.negative_soa(zone);
    let mut answers: Vec<PoolAnswer> = Vec::new();
    let mut by_pool = Vec::with_capacity(snap.topology.pools.len());
    let mut groups = Vec::with_capacity(snap.topology.pools.len());
    for pool in snap.topology.pools.ids() {
        let decided = select::decide_for(snap, target, pool, now);
        let decision = match decided.answer {
            Answer::Candidates => Decision::Candidates,
            Answer::Fallback(why) => Decision::Policy {
                why,
                policy: why.policy(&snap.config().dns),
            },
        };
        let relays = answer_relays(snap, &decided, decision);
        // Pools whose decisions name the same relays get the same answer
        // (the same draws, so an ECS answer can say it holds for everyone).
        let same = answers
            .iter()
            .position(|a| a.decision == decision && *a.relays == *relays);
        let index = match same {
            Some(i) => {
                let mut pools = std::mem::take(&mut answers[i].pools).into_vec();
                pools.push(pool);
                answers[i].pools = pools.into();
                i
            }
            None => {
                let mut a = pool_answer(snap, &decided, decision, relays, wall, rng);
                a.pools = Box::new([pool]);
                a.rendered = Rendered::render(name, &a, soa);
                answers.push(a);
                answers.len() - 1
            }
        };
        by_pool.push(index);
        groups.push(decided.group);
    }
    Balanced {
        name: name.clone(),
        wire: lower_wire(name),
        stream: sid,
        mount: mid,
        zone,
        answers: answers.into(),
        by_pool: by_pool.into_iter().collect(),
        groups: groups.into_iter().collect(),
    }
}

/// The relays a decision's answer is drawn from: its candidates, or the
/// policy's relays (none for `nodata` and `fallback`).
fn answer_relays(snap: &Snapshot, decided: &select::Decision, decision: Decision) -> Vec<RelayId> {
    match decision {
        Decision::Candidates => decided.candidates().map(|(r, _)| r).collect(),
        Decision::Policy { why, policy } => match policy {
            DnsPolicy::ServeAll | DnsPolicy::LastKnown => serve_all(snap, decided, why),
            DnsPolicy::Nodata | DnsPolicy::Fallback => Vec::new(),
        },
    }
}

/// The answer (without its rendering) drawn from `relays` of `decided`.
fn pool_answer<R: Rng + ?Sized>(
    snap: &Snapshot,
    decided: &select::Decision,
    decision: Decision,
    relays: Vec<RelayId>,
    wall: SystemTime,
    rng: &mut R,
) -> PoolAnswer {
    let dns = &snap.config().dns;
    let ((v4, v6), ttl) = match decision {
        Decision::Candidates => (
            draw_candidates(snap, decided, rng),
            candidate_ttl(snap, decided, wall),
        ),
        Decision::Policy { policy, .. } => {
            let variants = match policy {
                DnsPolicy::ServeAll | DnsPolicy::LastKnown => {
                    draw_shuffled(snap, &relays, dns.answers, rng)
                }
                DnsPolicy::Nodata => Variants::default(),
                DnsPolicy::Fallback => fixed(&dns.fallback, dns.answers),
            };
            (variants, secs(dns.min_ttl))
        }
    };
    PoolAnswer {
        decision,
        pools: Box::new([]),
        ttl,
        relays: relays.into(),
        v4: v4.into(),
        v6: v6.into(),
        rendered: Rendered::default(),
    }
}

/// `serve-all`: every relay of the decision's pool that is not drained and
/// is up or full (before the first poll round, not yet polled too); when
/// there is none, every relay of the pool not drained, so a monitoring
/// failure never takes a stream off the air. In topology order.
fn serve_all(snap: &Snapshot, decided: &select::Decision, why: Fallback) -> Vec<RelayId> {
    let live = |s: RelayState| match s {
        RelayState::Up | RelayState::Full => true,
        RelayState::Unknown => why == Fallback::FirstPoll,
        RelayState::Down => false,
    };
    let not_drained = || {
        snap.relays.ids().filter(|&r| {
            !snap.relays[r].drain && decided.verdicts[r] != Err(select::Exclusion::NotInPool)
        })
    };
    let preferred: Vec<RelayId> = not_drained()
        .filter(|&r| live(snap.relays[r].state))
        .collect();
    if preferred.is_empty() {
        not_drained().collect()
    } else {
        preferred
    }
}

type Variants = (Vec<Box<[Ipv4Addr]>>, Vec<Box<[Ipv6Addr]>>);

/// [`VARIANTS`] weighted draws among the candidates: each variant lists
/// `answers` relays drawn among the candidates that have an address of the
/// family (one address per relay, rotating through a relay's addresses
/// across variants).
///
/// Each family is drawn only among the relays that have it: drawing in
/// order of weight and skipping relays without the family gives the same
/// distribution, but with no (or few) relays of a family it would draw
/// every candidate for every variant. When every candidate has both
/// families, one draw serves both, so A and AAAA of a variant name the
/// same relays.
fn draw_candidates<R: Rng + ?Sized>(
    snap: &Snapshot,
    decided: &select::Decision,
    rng: &mut R,
) -> Variants {
    let answers = snap.config().dns.answers;
    let all = decided.weighted(snap);
    let has = |r: RelayId, v6: bool| {
        snap.topology.relays[r]
            .addresses
            .iter()
            .any(|a| a.is_ipv6() == v6)
    };
    let with = |v6: bool| -> RunningSums {
        let mut sums = RunningSums::with_capacity(all.len());
        for (r, w) in (0..all.len()).map(|i| all.entry(i)) {
            if has(r, v6) {
                sums.push(r, w);
            }
        }
        sums
    };
    let (w4, w6) = (with(false), with(true));
    let shared = w4.len() == all.len() && w6.len() == all.len();
    let mut order = Vec::with_capacity(answers);
    (0..VARIANTS)
        .map(|k| {
            w4.draw_distinct(answers, rng, &mut order);
            let (a, mut aaaa) = addresses(snap, &order, answers, k);
            if !shared {
                w6.draw_distinct(answers, rng, &mut order);
                aaaa = addresses(snap, &order, answers, k).1;
            }
            (a, aaaa)
        })
        .unzip()
}

/// [`VARIANTS`] uniform shuffles of `relays` (for fallback policies, where
/// there is no room to weight by).
fn draw_shuffled<R: Rng + ?Sized>(
    snap: &Snapshot,
    relays: &[RelayId],
    answers: usize,
    rng: &mut R,
) -> Variants {
    let mut order = relays.to_vec();
    (0..VARIANTS)
        .map(|k| {
            order.shuffle(rng);
            addresses(snap, &order, answers, k)
        })
        .unzip()
}

/// Up to `answers` addresses per family from `relays` in order, one per
/// relay (its `k`-th of that family, rotating).
fn addresses(
    snap: &Snapshot,
    relays: &[RelayId],
    answers: usize,
    k: usize,
) -> (Box<[Ipv4Addr]>, Box<[Ipv6Addr]>) {
    /// Adds `addrs`' `k`-th address of family `T` (rotating), if it has
    /// one and `out` is not full.
    fn add<T: Family>(out: &mut Vec<T>, addrs: &[IpAddr], answers: usize, k: usize) {
        let n = addrs.iter().filter_map(T::of).count();
        if out.len() < answers && n > 0 {
            out.extend(addrs.iter().filter_map(T::of).nth(k % n));
        }
    }
    let mut v4 = Vec::with_capacity(answers);
    let mut v6 = Vec::with_capacity(answers);
    for &r in relays {
        let addrs = &snap.topology.relays[r].addresses;
        add(&mut v4, addrs, answers, k);
        add(&mut v6, addrs, answers, k);
        if v4.len() >= answers && v6.len() >= answers {
            break;
        }
    }
    (v4.into(), v6.into())
}

/// The `fallback` policy: the configured addresses, up to `answers` per
/// family, rotating the starting point across variants.
fn fixed(fallback: &[IpAddr], answers: usize) -> Variants {
    fn rotate<T: Family>(fallback: &[IpAddr], answers: usize) -> Vec<Box<[T]>> {
        let all: Vec<T> = fallback.iter().filter_map(T::of).collect();
        (0..VARIANTS)
            .map(|k| {
                (0..answers.min(all.len()))
                    .map(|i| all[(k + i) % all.len()])
                    .collect()
            })
            .collect()
    }
    (rotate(fallback, answers), rotate(fallback, answers))
}

/// An address family: [`Ipv4Addr`] or [`Ipv6Addr`], so one piece of code
/// picks addresses of either.
trait Family: Copy {
    /// `a` when it is of this family.
    fn of(a: &IpAddr) -> Option<Self>;
}

impl Family for Ipv4Addr {
    fn of(a: &IpAddr) -> Option<Self> {
        match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        }
    }
}

impl Family for Ipv6Addr {
    fn of(a: &IpAddr) -> Option<Self> {
        match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        }
    }
}

/// The TTL of a candidate answer: `ttl` when the cluster is idle, falling
/// linearly to `min_ttl` as the free share of capacity on the name's mounts
/// drops from 80 % to 20 %; `min_ttl` while a relay's state changed within
/// the last `ttl` (the cluster is changing, or floe just started).
fn candidate_ttl(snap: &Snapshot, decided: &select::Decision, wall: SystemTime) -> u32 {
    let dns = &snap.config().dns;
    let (min, max) = (secs(dns.min_ttl), secs(dns.ttl));
    let recent = wall
        .checked_sub(settling(dns))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if snap.relays.iter().any(|r| r.since > recent) {
        return min;
    }
    let free = decided
        .judged
        .iter()
        .map(|&m| free_share(snap, m))
        .fold(1.0_f64, f64::min);
    let scale = ((free - 0.2) / 0.6).clamp(0.0, 1.0);
    min + ((f64::from(max - min)) * scale).round() as u32
}

/// Free share of the capacity of mount `m` over live relays carrying it
/// (room after grants and reserve, over capacity); 1.0 when some relay has
/// no limit.
fn free_share(snap: &Snapshot, m: MountId) -> f64 {
    let (mut room, mut capacity) = (0u64, 0u64);
    for (r, v) in snap.relays.iter_ids() {
        let cell = snap.cell(r, m);
        if v.state != RelayState::Up || v.drain || !cell.present {
            continue;
        }
        let Some(cap) = cell.capacity else { return 1.0 };
        capacity += u64::from(cap);
        if let Ok(rm) = select::mount_room(snap, r, m) {
            match rm.slots() {
                Some(s) => room += s,
                None => return 1.0,
            }
        }
    }
    if capacity == 0 {
        1.0
    } else {
        room as f64 / capacity as f64
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The uncompressed wire form of `name`, lower case.
pub(super) fn lower_wire(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(64);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into()
}
