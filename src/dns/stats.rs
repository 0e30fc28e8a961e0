//! DNS counters: queries answered per path and response code, for the
//! status page and `/metrics`.
//!
//! Each worker thread owns one [`Counters`] (on its own cache line) and is
//! its only writer: it adds a batch's counts with plain loads and stores, no
//! read-modify-write and no shared line on the query path. Readers sum every
//! worker's counters ([`super::DnsState::counts`],
//! [`super::DnsState::query_counts`]).

use crate::snapshot::{GroupId, PoolId, Topology};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Response codes counted one by one; others count as `other`.
pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

/// One worker's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    udp_fast: AtomicU64,
    udp_handler: AtomicU64,
    tcp: AtomicU64,
    unanswered: AtomicU64,
    rate_limited: AtomicU64,
    slipped: AtomicU64,
    rcode: [AtomicU64; 7],
    /// Queries by zone, type and RCODE (`floe_dns_queries_total`),
    /// replaced by a larger table when a new zone slot shows up.
    queries: ArcSwap<QueryTable>,
    /// Balanced answers by (listener pool, group) slot
    /// (`floe_pool_answers_total{door="dns"}`, see [`PoolRegistry`]).
    pools: PoolCounts,
}

/// Most (listener pool, group) pairs whose DNS answers are counted since
/// start (slot 0 means "not a balanced answer"); pairs past it are not
/// counted (logged once).
pub const POOL_SLOTS: usize = 256;

/// One worker's balanced answers per (pool, group) slot.
#[derive(Debug)]
struct PoolCounts(Box<[AtomicU64]>);

impl Default for PoolCounts {
    fn default() -> Self {
        PoolCounts((0..POOL_SLOTS).map(|_| AtomicU64::new(0)).collect())
    }
}

/// Which counter slot each (listener pool, group) pair is counted in:
/// slots are given out by name once and kept across reloads, so a pair's
/// count survives a reload that keeps its names.
#[derive(Debug, Default)]
pub struct PoolRegistry {
    /// `names[s - 1]`: the (pool, group) names of slot `s`; group `""`
    /// when no group had room (a policy answered).
    names: Mutex<Vec<(Box<str>, Box<str>)>>,
    /// The slots of the last topology asked for.
    current: ArcSwapOption<PoolSlots>,
}

/// The counter slots of one topology's (pool, group) pairs.
#[derive(Debug, Default)]
pub struct PoolSlots {
    /// The topology (identity only).
    topology: Weak<Topology>,
    /// Per pool: per group index, then one for "no group", the slot.
    slots: Vec<Box<[u8]>>,
}

impl PoolSlots {
    /// The slot of answers to `pool` from `group` (`None`: a policy
    /// answered); 0 when not counted.
    #[inline]
    pub fn slot(&self, pool: PoolId, group: Option<GroupId>) -> u8 {
        let Some(row) = self.slots.get(pool.index()) else {
            return 0;
        };
        let i = group.map_or(row.len().wrapping_sub(1), GroupId::index);
        row.get(i).copied().unwrap_or(0)
    }
}

impl PoolRegistry {
    /// The slots of `topology`'s pairs (given out on first sight).
    pub fn slots(&self, topology: &Arc<Topology>) -> Arc<PoolSlots> {
        if let Some(s) = &*self.current.load()
            && std::ptr::eq(s.topology.as_ptr(), Arc::as_ptr(topology))
        {
            return s.clone();
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let mut full = false;
        let mut slot_of = |pool: &str, group: &str| -> u8 {
            if let Some(i) = names
                .iter()
                .position(|(p, g)| &**p == pool && &**g == group)
            {
                return (i + 1) as u8;
            }
            if names.len() + 1 >= POOL_SLOTS {
                full = true;
                return 0;
            }
            names.push((pool.into(), group.into()));
            names.len() as u8
        };
        let slots = topology
            .pools
            .iter()
            .map(|p| {
                let groups = topology.groups.iter().map(|g| &*g.name);
                groups
                    .chain(std::iter::once(""))
                    .map(|g| slot_of(&p.name, g))
                    .collect()
            })
            .collect();
        if full {
            tracing::warn!(
                "DNS: more than {} listener pool x group pairs since start; answers of the others are not counted per pool",
                POOL_SLOTS - 1
            );
        }
        let slots = Arc::new(PoolSlots {
            topology: Arc::downgrade(topology),
            slots,
        });
        self.current.store(Some(slots.clone()));
        slots
    }

    /// The (pool, group) names of every slot in use, slot 1 first.
    pub fn names(&self) -> Vec<(Box<str>, Box<str>)> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Counts of one batch (or one TCP query), added to a worker's
/// [`Counters`] at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// UDP answers from the fast path.
    pub udp_fast: u64,
    /// UDP answers from the handler.
    pub udp_handler: u64,
    /// TCP answers.
    pub tcp: u64,
    /// Queries that got no answer (too short, a response, port 0).
    pub unanswered: u64,
    /// UDP queries dropped for their client's response rate.
    pub rate_limited: u64,
    /// UDP queries over their client's rate answered truncated (slip).
    pub slipped: u64,
    /// Answers per RCODE: [`RCODES`] in order, then every other code.
    pub rcode: [u64; 7],
}

impl Tally {
    /// Counts one answer with this wire response's RCODE.
    #[inline]
    pub fn answered(&mut self, response: &[u8]) {
        let code = response.get(3).map_or(2, |b| usize::from(b & 0x0f));
        self.rcode[code.min(6)] += 1;
    }
}

impl Counters {
    /// Adds `t`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, t: &Tally) {
        let bump = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            }
        };
        bump(&self.udp_fast, t.udp_fast);
        bump(&self.udp_handler, t.udp_handler);
        bump(&self.tcp, t.tcp);
        bump(&self.unanswered, t.unanswered);
        bump(&self.rate_limited, t.rate_limited);
        bump(&self.slipped, t.slipped);
        for (c, &n) in self.rcode.iter().zip(&t.rcode) {
            bump(c, n);
        }
    }

    /// Adds the counts so far to `total` (which sums every worker's).
    pub fn add_to(&self, total: &mut Tally) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        total.udp_fast += get(&self.udp_fast);
        total.udp_handler += get(&self.udp_handler);
        total.tcp += get(&self.tcp);
        total.unanswered += get(&self.unanswered);
        total.rate_limited += get(&self.rate_limited);
        total.slipped += get(&self.slipped);
        for (t, c) in total.rcode.iter_mut().zip(&self.rcode) {
            *t += get(c);
        }
    }
}

/// Query types counted one by one in `floe_dns_queries_total`; the last,
/// `other`, counts every other type.
pub const QTYPES: [&str; 9] = [
    "A", "AAAA", "TXT", "SOA", "NS", "ANY", "MX", "CNAME", "other",
];
/// Response codes of `floe_dns_queries_total`; the last, `other`, counts
/// every other code.
pub const QUERY_RCODES: [&str; 8] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "SERVFAIL", "BADVERS", "other",
];
const CELLS_PER_ZONE: usize = QTYPES.len() * QUERY_RCODES.len();

/// Counts of one zone slot: `[qtype][rcode]`, indexed like [`QTYPES`] and
/// [`QUERY_RCODES`].
pub type ZoneCounts = [[u64; QUERY_RCODES.len()]; QTYPES.len()];

/// Where one answered query is counted: its zone slot (0 = outside every
/// zone or rejected before its name was looked at; `s + 1` = the zone
/// origin interned as slot `s`, see [`super::DnsState`]), its query type
/// class and its response code class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueryKey {
    zone: u32,
    qtype: u8,
    rcode: u8,
    /// The (pool, group) slot of a balanced answer; 0 for any other.
    pool: u8,
}

impl QueryKey {
    /// The key of a query of wire type `qtype` answered with the (extended)
    /// response code `rcode`, in zone slot `zone` (`None`: outside every
    /// zone).
    #[inline]
    pub fn new(zone: Option<usize>, qtype: u16, rcode: u16) -> QueryKey {
        let qtype = match qtype {
            1 => 0,
            28 => 1,
            16 => 2,
            6 => 3,
            2 => 4,
            255 => 5,
            15 => 6,
            5 => 7,
            _ => 8,
        };
        let rcode = match rcode {
            0 => 0,
            3 => 1,
            5 => 2,
            1 => 3,
            4 => 4,
            2 => 5,
            16 => 6,
            _ => 7,
        };
        let zone = zone.map_or(0, |s| u32::try_from(s + 1).unwrap_or(u32::MAX));
        QueryKey {
            zone,
            qtype,
            rcode,
            pool: 0,
        }
    }

    /// This key, for a balanced answer counted in (pool, group) slot
    /// `slot` ([`PoolSlots::slot`]).
    #[inline]
    pub fn with_pool(mut self, slot: u8) -> QueryKey {
        self.pool = slot;
        self
    }

    /// A query with no usable question (FORMERR before parsing).
    #[inline]
    pub fn unparsed(rcode: u16) -> QueryKey {
        QueryKey::new(None, 0xffff, rcode)
    }

    #[inline]
    fn cell(self) -> usize {
        self.zone as usize * CELLS_PER_ZONE
            + usize::from(self.qtype) * QUERY_RCODES.len()
            + usize::from(self.rcode)
    }
}

/// One worker's queries by zone slot, query type and RCODE: a flat table,
/// zone-major, so a larger table starts with a smaller one's cells.
#[derive(Debug)]
pub struct QueryTable {
    /// Zone slots counted (slot 0 included).
    zones: usize,
    cells: Box<[AtomicU64]>,
}

impl Default for QueryTable {
    fn default() -> Self {
        QueryTable::new(1)
    }
}

impl QueryTable {
    fn new(zones: usize) -> QueryTable {
        QueryTable {
            zones,
            cells: (0..zones * CELLS_PER_ZONE)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// The counts of zone slot `zone` (0 = outside every zone); zero for a
    /// slot this table does not have yet.
    pub fn zone(&self, zone: usize) -> ZoneCounts {
        let mut out = ZoneCounts::default();
        if zone < self.zones {
            let base = zone * CELLS_PER_ZONE;
            for (q, row) in out.iter_mut().enumerate() {
                for (r, n) in row.iter_mut().enumerate() {
                    *n = self.cells[base + q * QUERY_RCODES.len() + r].load(Ordering::Relaxed);
                }
            }
        }
        out
    }
}

impl Counters {
    /// Counts `keys`, one query each. Only the owning worker calls this:
    /// plain loads and stores, no allocation unless a key's zone slot is
    /// new to this worker (after a reload added a zone), which grows the
    /// table once.
    #[inline]
    pub fn count_queries(&self, keys: &[QueryKey]) {
        let mut table = self.queries.load();
        for k in keys {
            if k.zone as usize >= table.zones {
                self.grow(k.zone as usize + 1);
                table = self.queries.load();
            }
            let c = &table.cells[k.cell()];
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            if k.pool != 0 {
                let c = &self.pools.0[usize::from(k.pool)];
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        }
    }

    /// This worker's balanced answers per (pool, group) slot.
    pub fn pool_answers(&self) -> impl Iterator<Item = u64> + '_ {
        self.pools.0.iter().map(|c| c.load(Ordering::Relaxed))
    }

    #[cold]
    fn grow(&self, zones: usize) {
        let old = self.queries.load_full();
        let new = QueryTable::new(zones.max(old.zones));
        for (n, o) in new.cells.iter().zip(old.cells.iter()) {
            n.store(o.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.queries.store(Arc::new(new));
    }

    /// This worker's query table so far.
    pub fn queries(&self) -> Arc<QueryTable> {
        self.queries.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_classify_types_and_codes() {
        for (k, want) in [
            (QueryKey::new(Some(2), 28, 3), (3, "AAAA", "NXDOMAIN")),
            (QueryKey::new(None, 99, 16), (0, "other", "BADVERS")),
            (QueryKey::unparsed(1), (0, "other", "FORMERR")),
            (QueryKey::new(None, 1, 9), (0, "A", "other")),
        ] {
            let (qtype, rcode) = (QTYPES[k.qtype as usize], QUERY_RCODES[k.rcode as usize]);
            assert_eq!((k.zone, qtype, rcode), want, "{k:?}");
        }
    }

    #[test]
    fn the_table_counts_per_cell_and_keeps_counts_when_it_grows() {
        let c = Counters::default();
        let a_ok = QueryKey::new(Some(0), 1, 0);
        let refused = QueryKey::new(None, 16, 5);
        c.count_queries(&[a_ok, a_ok, refused]);
        assert_eq!(c.queries().zone(1)[0][0], 2);
        assert_eq!(c.queries().zone(0)[2][2], 1);
        assert_eq!(
            c.queries().zone(4),
            ZoneCounts::default(),
            "a slot not seen yet reads 0"
        );
        // A zone slot added by a reload: the table grows, counts stay.
        let later = QueryKey::new(Some(3), 6, 3);
        c.count_queries(&[later, a_ok]);
        let t = c.queries();
        assert_eq!(t.zones, 5);
        assert_eq!(t.zone(4)[3][1], 1);
        assert_eq!(t.zone(1)[0][0], 3);
        assert_eq!(t.zone(0)[2][2], 1);
        let total: u64 = (0..t.zones).flat_map(|z| t.zone(z)).flatten().sum();
        assert_eq!(total, 5);
    }
}
