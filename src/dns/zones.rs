//! The zones as the DNS server serves them: each loaded [`Zone`] with
//! hickory's in-memory handler for its static records and its SOA ready
//! for negative answers. Swapped as one value on reload.

use crate::zones::{Zone, ZoneSet};
use hickory_proto::rr::{Name, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use std::sync::Arc;

/// Every zone floe serves, with what answering needs.
pub struct Zones {
    set: Arc<ZoneSet>,
    /// `handlers[i]` serves `set.zones()[i]`.
    handlers: Box<[InMemoryZoneHandler]>,
    /// `negative_soa[i]`: the apex SOA with TTL min(SOA TTL, MINIMUM), for
    /// the authority section of NXDOMAIN and NODATA (RFC 2308).
    negative_soa: Box<[Record]>,
    /// `slots[i]`: zone i's slot in the query counters (its origin's
    /// place among every origin served since start; see
    /// [`super::DnsState::query_counts`]).
    slots: Box<[usize]>,
}

impl std::fmt::Debug for Zones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origins: Vec<_> = self.set.zones().iter().map(|z| &z.origin).collect();
        f.debug_struct("Zones").field("zones", &origins).finish()
    }
}

impl Zones {
    /// Prepares `set` for serving.
    pub fn new(set: Arc<ZoneSet>) -> Zones {
        let handlers = set.zones().iter().map(Zone::to_handler).collect();
        let negative_soa = set
            .zones()
            .iter()
            .map(|z| {
                let mut soa = z.soa_record().clone();
                soa.ttl = z.negative_ttl();
                soa
            })
            .collect();
        let slots = (0..set.zones().len()).collect();
        Zones {
            set,
            handlers,
            negative_soa,
            slots,
        }
    }

    /// The zone `name` belongs to (longest origin that is a suffix), with
    /// its index; `None` when floe is not authoritative for it.
    pub fn find(&self, name: &Name) -> Option<(usize, &Zone)> {
        let zone = self.set.find(name)?;
        let i = self
            .set
            .zones()
            .iter()
            .position(|z| std::ptr::eq(z, zone))?;
        Some((i, zone))
    }

    /// The in-memory handler of zone `i`.
    pub fn handler(&self, i: usize) -> &InMemoryZoneHandler {
        &self.handlers[i]
    }

    /// The SOA of zone `i` for negative answers.
    pub fn negative_soa(&self, i: usize) -> &Record {
        &self.negative_soa[i]
    }

    /// Zone `i`'s slot in the query counters.
    #[inline]
    pub fn slot(&self, i: usize) -> usize {
        self.slots[i]
    }

    /// These zones with counter slots from `origins` (every origin served
    /// so far, lower case; new ones are appended).
    pub(super) fn with_slots(mut self, origins: &mut Vec<Name>) -> Zones {
        for (i, z) in self.set.zones().iter().enumerate() {
            let origin = z.origin.to_lowercase();
            self.slots[i] = match origins.iter().position(|o| *o == origin) {
                Some(s) => s,
                None => {
                    origins.push(origin);
                    origins.len() - 1
                }
            };
        }
        self
    }

    /// The zone set this was built from.
    pub fn set(&self) -> &Arc<ZoneSet> {
        &self.set
    }
}
