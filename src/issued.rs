//! The certificates floe obtained itself (ACME) and where each name's
//! order stands: what the ACME client writes and the doors and reports
//! read.
//!
//! [`Issued`] sits below both sides: the ACME client (`acme`, a write
//! side) publishes a certificate with [`Issued::serve`] and records each
//! attempt; the TLS listeners read [`Issued::obtained`] per handshake (an
//! `ArcSwap` load, no lock); `/status`, `/status.json` and `/metrics` read
//! [`Issued::names`] and the order counters (a short mutex: they are not
//! hot paths). Nothing here does I/O.

use crate::tls::{CertStore, Certificate, Obtained};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where one name's certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not looked at yet (floe just started).
    Starting,
    /// An order is running.
    Ordering,
    /// A certificate is served; the next order is due at renewal.
    Valid,
    /// The last order failed; it is retried (the old certificate, if any,
    /// is still served).
    Failed,
}

impl Phase {
    /// The word `/status` and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ordering => "ordering",
            Phase::Valid => "valid",
            Phase::Failed => "failed",
        }
    }
}

/// One ACME name: its phase, the certificate served for it, when the next
/// order is due.
#[derive(Debug, Clone, PartialEq)]
pub struct NameStatus {
    /// The name (lowercase).
    pub name: String,
    /// `dns-01` or `http-01`.
    pub challenge: &'static str,
    /// Where it stands.
    pub phase: Phase,
    /// End of validity of the certificate served (Unix seconds), if any.
    pub not_after: Option<i64>,
    /// When the next order starts (renewal or retry; Unix seconds).
    pub next_attempt: Option<i64>,
    /// Orders failed in a row.
    pub failures: u32,
    /// The last failure's message, while the last order failed.
    pub last_error: Option<String>,
}

/// Outcome of one ACME order, the label of `floe_acme_orders_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderResult {
    /// A certificate was issued and is served.
    Valid,
    /// The order failed (CA unreachable, validation failed, bad answer).
    Failed,
}

impl OrderResult {
    /// Every result, in label order.
    pub const ALL: [OrderResult; 2] = [OrderResult::Valid, OrderResult::Failed];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderResult::Valid => "valid",
            OrderResult::Failed => "failed",
        }
    }
}

/// Obtained certificates and the state of every ACME name.
#[derive(Debug, Default)]
pub struct Issued {
    obtained: Arc<Obtained>,
    /// Name -> (its status, its certificate if one is served).
    names: Mutex<BTreeMap<String, (NameStatus, Option<Certificate>)>>,
    orders: [AtomicU64; 2],
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Issued {
    /// Nothing obtained, no name known.
    pub fn new() -> Arc<Issued> {
        Arc::new(Issued::default())
    }

    /// The store the TLS listeners serve from (swapped whole on change).
    pub fn obtained(&self) -> Arc<Obtained> {
        self.obtained.clone()
    }

    /// Records `status` for its name (a certificate served stays served).
    pub fn set_status(&self, status: NameStatus) {
        let mut names = lock(&self.names);
        let entry = names
            .entry(status.name.clone())
            .or_insert_with(|| (status.clone(), None));
        entry.0 = status;
    }

    /// Serves `cert` for `name` from now on (replacing the one before) and
    /// records `status`.
    pub fn serve(&self, status: NameStatus, cert: Certificate) {
        let mut names = lock(&self.names);
        names.insert(status.name.clone(), (status, Some(cert)));
        let certs = names.values().filter_map(|(_, c)| c.clone()).collect();
        self.obtained.store(Arc::new(CertStore::new(certs)));
    }

    /// Counts one finished order.
    pub fn count(&self, result: OrderResult) {
        self.orders[result as usize].fetch_add(1, Relaxed);
    }

    /// Orders finished so far, by result (in [`OrderResult::ALL`] order).
    pub fn orders(&self) -> [u64; 2] {
        [self.orders[0].load(Relaxed), self.orders[1].load(Relaxed)]
    }

    /// Every ACME name's status, by name.
    pub fn names(&self) -> Vec<NameStatus> {
        lock(&self.names).values().map(|(s, _)| s.clone()).collect()
    }

    /// The status of `name`, if it is known.
    pub fn status(&self, name: &str) -> Option<NameStatus> {
        lock(&self.names).get(name).map(|(s, _)| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cert(name: &str) -> Certificate {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Certificate::from_pem(
            Path::new("c.pem"),
            c.cert.pem().as_bytes(),
            Path::new("k.pem"),
            c.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap()
    }

    fn status(name: &str, phase: Phase) -> NameStatus {
        NameStatus {
            name: name.into(),
            challenge: "dns-01",
            phase,
            not_after: None,
            next_attempt: None,
            failures: 0,
            last_error: None,
        }
    }

    #[test]
    fn a_served_certificate_stays_until_replaced() {
        let issued = Issued::new();
        let store = issued.obtained();
        issued.set_status(status("a.example.org", Phase::Ordering));
        assert!(store.load().certificates().is_empty());
        issued.serve(status("a.example.org", Phase::Valid), cert("a.example.org"));
        issued.serve(status("b.example.org", Phase::Valid), cert("b.example.org"));
        issued.set_status(status("a.example.org", Phase::Failed));
        assert_eq!(store.load().certificates().len(), 2);
        assert!(store.load().find("a.example.org").is_some());
        assert_eq!(issued.status("a.example.org").unwrap().phase, Phase::Failed);
        issued.count(OrderResult::Failed);
        assert_eq!(issued.orders(), [0, 1]);
    }
}
