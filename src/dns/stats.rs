//! DNS counters: queries answered per path and response code, for the
//! status page and `/metrics`.
//!
//! Each worker thread owns one [`Counters`] (on its own cache line) and is
//! its only writer: it adds a batch's counts with plain loads and stores, no
//! read-modify-write and no shared line on the query path. Readers sum every
//! worker's counters ([`super::DnsState::counts`],
//! [`super::DnsState::query_counts`]).

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
        QueryKey { zone, qtype, rcode }
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
        }
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
