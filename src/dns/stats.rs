//! DNS counters: queries answered per path and response code, for the
//! status page and `/metrics`.
//!
//! Each worker thread owns one [`Counters`] (on its own cache line) and is
//! its only writer: it adds a batch's counts with plain loads and stores, no
//! read-modify-write and no shared line on the query path. Readers sum every
//! worker's counters ([`super::DnsState::counts`]).

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
    rcode: [AtomicU64; 7],
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
        for (c, &n) in self.rcode.iter().zip(&t.rcode) {
            bump(c, n);
        }
    }

    /// The counts so far.
    pub fn read(&self) -> Tally {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Tally {
            udp_fast: get(&self.udp_fast),
            udp_handler: get(&self.udp_handler),
            tcp: get(&self.tcp),
            unanswered: get(&self.unanswered),
            rcode: std::array::from_fn(|i| get(&self.rcode[i])),
        }
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.udp_fast += o.udp_fast;
        self.udp_handler += o.udp_handler;
        self.tcp += o.tcp;
        self.unanswered += o.unanswered;
        for (a, b) in self.rcode.iter_mut().zip(o.rcode) {
            *a += b;
        }
    }
}
