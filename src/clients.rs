//! Per-client budgets of grants: no single client can take the room.
//!
//! Every redirect holds a slot on a relay (an in-flight grant) until a poll
//! shows the listener or the grant ages out. A client that asks for
//! redirects and never follows them would, unchecked, keep every free slot
//! granted and the stream "full" for everybody else. So each client, keyed
//! by its address prefix (IPv4 /32 and IPv6 /64 by default: one household,
//! one host), may take at most its budget of grants per window, the time a
//! grant stays outstanding; past it a request gets no grant.
//!
//! The table is fixed in size whatever the number of clients: a power of
//! two of slots, one `AtomicU64` each, chosen by a keyed hash of the
//! prefix. Two prefixes that share a slot share a budget (with the default
//! 65,536 slots, rare among real listeners; an attacker with many prefixes
//! only spends budget per prefix, which is the point). A slot counts the
//! grants of the current window and of the one before, and weighs the
//! previous window by how much of it still overlaps the last window's
//! length (a sliding window, lock-free: one CAS per grant). A leaf module:
//! no clock of its own (the caller passes `now`), no I/O.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bits of a slot: window number (24), previous window's count (20),
/// current window's count (20).
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << 24) - 1;

/// Whether `addr` (an IPv4-mapped IPv6 address counts as IPv4) lies in one
/// of `nets`: who may read the diagnostic pages, who is exempt from rate
/// limits.
pub fn in_networks(nets: &[ipnet::IpNet], addr: IpAddr) -> bool {
    let addr = addr.to_canonical();
    nets.iter().any(|n| n.contains(&addr))
}

/// A fixed-size table of atomics, one per slot, chosen by a per-process
/// keyed hash of a client prefix: the storage of every table here.
#[derive(Debug)]
struct Slots<A> {
    slots: Box<[A]>,
    hasher: RandomState,
}

impl<A: Default> Slots<A> {
    /// `n` slots, rounded up to a power of two.
    fn new(n: usize) -> Slots<A> {
        let n = n.max(1).next_power_of_two();
        Slots {
            slots: (0..n).map(|_| A::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The position of `prefix`'s slot.
    fn index(&self, prefix: Prefix) -> usize {
        self.hasher.hash_one(prefix.0) as usize & (self.slots.len() - 1)
    }

    /// `prefix`'s slot.
    fn of(&self, prefix: Prefix) -> &A {
        &self.slots[self.index(prefix)]
    }
}

/// The budgets of every client, in a fixed-size table.
#[derive(Debug)]
pub struct ClientBudgets {
    slots: Slots<AtomicU64>,
    origin: Instant,
}

/// The client prefix an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix(u128);

impl ClientBudgets {
    /// A table of `slots` budgets (rounded up to a power of two); windows
    /// are counted from `origin`.
    pub fn new(slots: usize, origin: Instant) -> ClientBudgets {
        ClientBudgets {
            slots: Slots::new(slots),
            origin,
        }
    }

    /// The prefix `addr` is counted under: its first `v4` bits (IPv4; an
    /// IPv4-mapped IPv6 address counts as its IPv4 address) or `v6` bits.
    pub fn prefix(addr: IpAddr, v4: u8, v6: u8) -> Prefix {
        let (bits, keep, tag) = match addr.to_canonical() {
            IpAddr::V4(a) => (u128::from(u32::from(a)), v4, 32u8),
            IpAddr::V6(a) => (u128::from(a), v6, 128u8),
        };
        let drop = u32::from(tag - keep.min(tag));
        let masked = if drop >= 128 {
            0
        } else {
            (bits >> drop) << drop
        };
        // The family goes into the key too: v4 0.0.0.0/0 and v6 ::/0 differ.
        Prefix(masked ^ (u128::from(tag == 32) << 127))
    }

    /// Takes one grant from `prefix`'s budget of `limit` per `window`, at
    /// `now`. False (nothing taken) when the client is past its budget.
    pub fn try_take(&self, prefix: Prefix, limit: u64, window: Duration, now: Instant) -> bool {
        let slot = self.slot(prefix);
        let (epoch, into) = self.position(window, now);
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (prev, cur) = counts_at(current, epoch);
            // The previous window still weighs by the share of it that
            // lies within one window of now.
            let carried = prev as f64 * (1.0 - into);
            if carried + cur as f64 + 1.0 > limit as f64 || cur >= COUNT_MAX {
                return false;
            }
            let next = pack(epoch, prev, cur + 1);
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back a grant taken at `now` that was not used (no relay had
    /// room). A no-op once its window has passed.
    pub fn give_back(&self, prefix: Prefix, window: Duration, now: Instant) {
        let slot = self.slot(prefix);
        let (epoch, _) = self.position(window, now);
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
            let (prev, cur) = counts_at(v, epoch);
            (v >> (2 * COUNT_BITS) == epoch && cur > 0).then(|| pack(epoch, prev, cur - 1))
        });
    }

    /// The number of slots (fixed at creation).
    pub fn capacity(&self) -> usize {
        self.slots.slots.len()
    }

    fn slot(&self, prefix: Prefix) -> &AtomicU64 {
        self.slots.of(prefix)
    }

    /// The number of the `window` at `now` (24 bits, wrapping) and how far
    /// into it.
    fn position(&self, window: Duration, now: Instant) -> (u64, f64) {
        let since = now.saturating_duration_since(self.origin);
        let w = window.as_nanos().max(1);
        let n = since.as_nanos() / w;
        let into = (since.as_nanos() % w) as f64 / w as f64;
        (n as u64 & EPOCH_MASK, into)
    }
}

/// Open connections per client (address prefix), in a fixed-size table
/// like [`ClientBudgets`]'s: a client at its cap gets no more, so one
/// address cannot hold every connection slot of a door. Two prefixes that
/// share a slot share a cap.
#[derive(Debug)]
pub struct ClientConnections {
    slots: Slots<AtomicU32>,
}

/// One open connection, counted until it is dropped.
#[derive(Debug)]
pub struct OpenConnection {
    table: Arc<ClientConnections>,
    slot: usize,
}

impl ClientConnections {
    /// A table of `slots` counters (rounded up to a power of two).
    pub fn new(slots: usize) -> Arc<ClientConnections> {
        Arc::new(ClientConnections {
            slots: Slots::new(slots),
        })
    }

    /// Counts one more connection of `prefix`, unless it has `cap` open.
    pub fn open(self: &Arc<Self>, prefix: Prefix, cap: u32) -> Option<OpenConnection> {
        let slot = self.slots.index(prefix);
        self.slots.slots[slot]
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        Some(OpenConnection {
            table: self.clone(),
            slot,
        })
    }

    /// Connections open now under `prefix`'s slot.
    pub fn count(&self, prefix: Prefix) -> u32 {
        self.slots.of(prefix).load(Ordering::Relaxed)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.table.slots.slots[self.slot].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Response-rate limits per client prefix (DNS over UDP, where the source
/// address can be spoofed to aim answers at a victim): a token bucket per
/// slot of a fixed-size table, refilled at `rate` per second up to one
/// second's worth, one CAS per answer. Two prefixes that share a slot share
/// a bucket.
#[derive(Debug)]
pub struct RateLimits {
    slots: Slots<AtomicU64>,
    origin: Instant,
}

/// What the rate limit says of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Within the client's rate: answer.
    Within,
    /// Over it: drop (or, every `slip`-th time, answer truncated).
    Over,
}

/// Milli-tokens per token: buckets count in thousandths so that low rates
/// refill smoothly.
const MILLI: u64 = 1000;

impl RateLimits {
    /// A table of `slots` buckets (rounded up to a power of two); time is
    /// counted from `origin`.
    pub fn new(slots: usize, origin: Instant) -> RateLimits {
        RateLimits {
            slots: Slots::new(slots),
            origin,
        }
    }

    /// Takes one answer from `prefix`'s bucket of `rate` answers per second
    /// at `now`.
    pub fn check(&self, prefix: Prefix, rate: u32, now: Instant) -> Rate {
        let slot = self.slots.of(prefix);
        // Bucket: milli-tokens (high 32 bits), last refill in ms (low 32).
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64 & 0xffff_ffff;
        let cap = u64::from(rate) * MILLI;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (tokens, last) = if current == 0 {
                (cap, ms) // a new bucket starts full
            } else {
                (current >> 32, current & 0xffff_ffff)
            };
            let elapsed = ms.wrapping_sub(last) & 0xffff_ffff;
            let tokens = (tokens + elapsed * u64::from(rate)).min(cap);
            let (left, verdict) = if tokens >= MILLI {
                (tokens - MILLI, Rate::Within)
            } else {
                (tokens, Rate::Over)
            };
            // Never store 0 (it means "new"): a drained bucket keeps 1.
            let next = ((left.max(1) & 0xffff_ffff) << 32) | ms;
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return verdict,
                Err(actual) => current = actual,
            }
        }
    }
}

/// The (previous, current) counts of slot value `v` seen from window
/// `epoch`: as stored in the same window, shifted by one a window later,
/// zero after that.
fn counts_at(v: u64, epoch: u64) -> (u64, u64) {
    let stored = v >> (2 * COUNT_BITS);
    let prev = (v >> COUNT_BITS) & COUNT_MAX;
    let cur = v & COUNT_MAX;
    if stored == epoch {
        (prev, cur)
    } else if (stored + 1) & EPOCH_MASK == epoch {
        (cur, 0)
    } else {
        (0, 0)
    }
}

fn pack(epoch: u64, prev: u64, cur: u64) -> u64 {
    (epoch << (2 * COUNT_BITS)) | (prev.min(COUNT_MAX) << COUNT_BITS) | cur.min(COUNT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: Duration = Duration::from_secs(2);

    fn budgets() -> (ClientBudgets, Instant) {
        let t0 = Instant::now();
        (ClientBudgets::new(1024, t0), t0)
    }

    fn key(a: &str) -> Prefix {
        ClientBudgets::prefix(addr(a), 32, 64)
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn one_client_stops_at_its_budget_and_others_keep_theirs() {
        // A table large enough that the ten others share the attacker's
        // slot (a keyed hash, new each run) once in ~6,500 runs; with 1,024
        // slots it was once in ~100, and the test failed then.
        let t0 = Instant::now();
        let b = ClientBudgets::new(1 << 16, t0);
        let attacker = key("203.0.113.7");
        let taken = (0..1000).filter(|_| b.try_take(attacker, 4, W, t0)).count();
        assert_eq!(taken, 4);
        for i in 1..=10 {
            let other = key(&format!("198.51.{i}.20"));
            assert!(b.try_take(other, 4, W, t0), "client {i} refused");
        }
    }

    #[test]
    fn prefixes_group_addresses() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        let wide = |a| ClientBudgets::prefix(addr(a), 24, 48);
        assert_eq!(wide("192.0.2.1"), wide("192.0.2.250"));
        assert_eq!(wide("2001:db8:1:2::1"), wide("2001:db8:1:3::1"));
        let all = |a| ClientBudgets::prefix(addr(a), 0, 0);
        assert_ne!(all("192.0.2.1"), all("2001:db8::1"));
    }

    #[test]
    fn the_budget_comes_back_as_the_window_slides() {
        let (b, t0) = budgets();
        let p = key("192.0.2.1");
        assert_eq!((0..10).filter(|_| b.try_take(p, 4, W, t0)).count(), 4);
        // Half a window later, the four still weigh fully (same window).
        assert!(!b.try_take(p, 4, W, t0 + W / 2));
        // One and a half windows after: the old four weigh half: two free.
        let later = t0 + W + W / 2;
        assert_eq!((0..10).filter(|_| b.try_take(p, 4, W, later)).count(), 2);
        // Two windows on, everything is free again.
        let much_later = t0 + 3 * W + W / 100;
        assert_eq!(
            (0..10).filter(|_| b.try_take(p, 4, W, much_later)).count(),
            4
        );
    }

    #[test]
    fn a_grant_given_back_can_be_taken_again() {
        let (b, t0) = budgets();
        let p = key("192.0.2.1");
        assert!(b.try_take(p, 1, W, t0));
        assert!(!b.try_take(p, 1, W, t0));
        b.give_back(p, W, t0);
        assert!(b.try_take(p, 1, W, t0));
    }

    #[test]
    fn connections_stop_at_the_cap_and_come_back_when_closed() {
        let table = ClientConnections::new(64);
        let p = key("192.0.2.1");
        let open: Vec<_> = (0..10).filter_map(|_| table.open(p, 3)).collect();
        assert_eq!(open.len(), 3);
        assert!(table.open(key("192.0.2.2"), 3).is_some(), "another client");
        drop(open);
        assert_eq!(table.count(p), 0);
        assert!(table.open(p, 3).is_some());
    }

    #[test]
    fn a_rate_limit_refills_at_its_rate() {
        let t0 = Instant::now();
        let limits = RateLimits::new(64, t0);
        let p = key("192.0.2.1");
        let within = |at| {
            (0..1000)
                .filter(|_| limits.check(p, 100, at) == Rate::Within)
                .count()
        };
        assert_eq!(within(t0), 100, "a full bucket: one second's worth");
        assert_eq!(
            within(t0 + Duration::from_millis(500)),
            50,
            "half a second refills half"
        );
        assert_eq!(
            limits.check(key("192.0.2.2"), 100, t0),
            Rate::Within,
            "another client"
        );
    }

    #[test]
    fn membership_counts_mapped_addresses_as_ipv4() {
        let nets: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(in_networks(&nets, addr("127.0.0.1")));
        assert!(in_networks(&nets, addr("::ffff:127.0.0.1")));
        assert!(in_networks(&nets, addr("2001:db8::5")));
        assert!(!in_networks(&nets, addr("192.0.2.1")));
        assert!(!in_networks(&[], addr("127.0.0.1")));
    }

    #[test]
    fn the_table_does_not_grow() {
        let (b, t0) = budgets();
        for i in 0..100_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            b.try_take(ClientBudgets::prefix(a, 32, 64), 4, W, t0);
        }
        assert_eq!(b.capacity(), 1024);
    }

    proptest! {
        /// However many threads race, one client never takes more than its
        /// budget in one window.
        #[test]
        fn concurrent_takes_never_exceed_the_budget(limit in 1u64..50) {
            let (b, t0) = budgets();
            let p = key("192.0.2.9");
            let taken: usize = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| (0..100).filter(|_| b.try_take(p, limit, W, t0)).count()))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            prop_assert_eq!(taken as u64, limit);
        }
    }
}
