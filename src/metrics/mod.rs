//! Every metric floe exports at `/metrics` (Prometheus text format 0.0.4),
//! defined in one place: name, type, labels and help of each are in
//! [`CATALOG`], and nothing outside this module names a metric.
//!
//! How the numbers get here:
//! Three parts: `catalog` names every metric (name, type, labels, help);
//! `counters` holds what hot paths bump; `scrape` reads everything else
//! when `/metrics` is asked for.
//! - **Hot paths bump plain atomics through handles resolved ahead of
//!   time.** A redirect increments its relay x mount counter (one table per
//!   topology, found by pointer identity with the snapshot's topology); a
//!   relay poller holds its own [`PollStats`]. No label is formatted, no map
//!   searched and no lock taken per request or poll.
//! - **Everything else is read at scrape time**: relay state, listeners,
//!   and what [`crate::select::decide`] says of each relay x mount (room,
//!   candidate) from one snapshot, snapshot generation and age, the reload
//!   report, the DNS workers' counters and the DNS plan's current decision
//!   per balanced name (read, never redrawn).
//!
//! Counters survive reloads: every counter series is one `Arc<AtomicU64>`
//! kept by its labels (stream, mount, relay), so a relay that stays in the
//! config keeps counting across a reload and one that comes back resumes.
//! Only relays and mounts of the current config are exported.

mod catalog;
mod counters;
mod scrape;

pub use catalog::*;
pub use counters::{Outcome, PollStats, RedirectCounts};

use crate::dns::DnsState;
use crate::dns::stats::Tally;
use crate::issued::Issued;
use crate::select::Pick;
use crate::snapshot::{MountId, PoolId, Snapshot};
use counters::Redirects;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};

/// floe's counters: redirects and refusals per relay and mount, polls per
/// relay, and the DNS workers' counters (attached once DNS runs). Owned by
/// the running instance; HTTP workers and pollers hold handles.
#[derive(Debug, Default)]
pub struct Metrics {
    redirects: Redirects,
    proxy_refused: [AtomicU64; ProxyRefusal::ALL.len()],
    held: AtomicU64,
    polls: Mutex<HashMap<Arc<str>, Arc<PollStats>>>,
    dns: OnceLock<Arc<DnsState>>,
    acme: OnceLock<Arc<Issued>>,
}

impl Metrics {
    /// Counters, all zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts a `302` for mount `m` of `snap` to a listener of `pool`, sent
    /// where `pick` says. Hot path: two atomic adds through the topology's
    /// table.
    #[inline]
    pub fn redirected(&self, snap: &Snapshot, m: MountId, pool: PoolId, pick: Pick) {
        self.redirects.sent(snap, m, pool, pick);
    }

    /// Counts an answer without a relay for mount `m` (503 or 400).
    #[inline]
    pub fn refused(&self, snap: &Snapshot, m: MountId, outcome: Outcome) {
        self.redirects.refused(snap, m, outcome);
    }

    /// Counts a 404 (a path that is no configured mount).
    #[inline]
    pub fn not_found(&self) {
        self.redirects.not_found();
    }

    /// Counts a connection a PROXY protocol listener closed before HTTP.
    #[inline]
    pub fn proxy_refused(&self, why: ProxyRefusal) {
        self.proxy_refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Counts a listener request held because the relays with room were
    /// quiet (once per request, however often it asks again).
    #[inline]
    pub fn held(&self) {
        self.held.fetch_add(1, Relaxed);
    }

    /// The redirect counts of `snap`'s topology.
    pub fn redirect_counts(&self, snap: &Snapshot) -> RedirectCounts {
        self.redirects.counts(snap)
    }

    /// The poll counters of relay `name` (kept across reloads by name). A
    /// poller resolves this once when it starts.
    pub fn poll_stats(&self, name: &Arc<str>) -> Arc<PollStats> {
        lock(&self.polls).entry(name.clone()).or_default().clone()
    }

    /// Attaches the DNS workers' counters (once; later calls are ignored).
    pub fn attach_dns(&self, dns: Arc<DnsState>) {
        let _ = self.dns.set(dns);
    }

    /// Attaches the ACME certificates and orders (once; later calls are
    /// ignored).
    pub fn attach_acme(&self, issued: Arc<Issued>) {
        let _ = self.acme.set(issued);
    }

    /// The ACME certificates and orders, if attached.
    pub fn acme(&self) -> Option<&Arc<Issued>> {
        self.acme.get()
    }

    /// The DNS counters so far, if DNS runs.
    pub fn dns_counts(&self) -> Option<Tally> {
        self.dns.get().map(|d| d.counts())
    }

    /// The `/metrics` document: counters, and every gauge from `snap`.
    pub fn render(&self, snap: &Arc<Snapshot>) -> String {
        let polls = {
            let map = lock(&self.polls);
            snap.topology
                .relays
                .iter()
                .map(|r| map.get(&r.name).cloned())
                .collect()
        };
        let mut scrape = scrape::Scrape::read(
            snap.clone(),
            self.redirect_counts(snap),
            polls,
            self.dns.get().map(|d| &**d),
        );
        scrape.proxy_refused = self.proxy_refused.each_ref().map(|c| c.load(Relaxed));
        scrape.held = self.held.load(Relaxed);
        scrape.acme = self.acme.get().map(|i| scrape::Acme::read(i));
        scrape::render(scrape)
    }
}

/// Why a PROXY protocol listener closed a connection before HTTP (the
/// `reason` of `floe_http_proxy_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRefusal {
    /// The peer is not in `[http] trusted_proxies`.
    Untrusted,
    /// The first bytes are no PROXY header.
    Missing,
    /// A PROXY header that does not parse.
    Malformed,
    /// A header past the size limits.
    TooLong,
    /// No whole header within `header_timeout`.
    Timeout,
    /// The peer closed the connection inside (or before) the header.
    Closed,
}

impl ProxyRefusal {
    /// Every reason, in counter order.
    pub const ALL: [ProxyRefusal; 6] = [
        ProxyRefusal::Untrusted,
        ProxyRefusal::Missing,
        ProxyRefusal::Malformed,
        ProxyRefusal::TooLong,
        ProxyRefusal::Timeout,
        ProxyRefusal::Closed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyRefusal::Untrusted => "untrusted",
            ProxyRefusal::Missing => "missing",
            ProxyRefusal::Malformed => "malformed",
            ProxyRefusal::TooLong => "too-long",
            ProxyRefusal::Timeout => "timeout",
            ProxyRefusal::Closed => "closed",
        }
    }
}

/// Locks a mutex, recovering from poisoning (the maps stay consistent:
/// every write is one insert).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
