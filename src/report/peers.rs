//! The peer exchange in `/status.json` (and the status page): this
//! instance's name and shares, and per peer whether it is connected, when
//! it last answered and its demand.

use crate::snapshot::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;

/// The peer exchange as the snapshot saw it.
#[derive(Debug, Serialize)]
pub struct PeersStatus {
    /// This instance's `[peers] name`.
    pub name: String,
    /// Publish and fetch period, in milliseconds.
    pub interval_ms: u64,
    /// The static part kept for a peer not connected (`[select] share`).
    pub static_share: f64,
    /// This instance's share of each mount's free slots.
    pub shares: BTreeMap<String, f64>,
    /// This instance's share of the relay-wide free slots.
    pub relay_share: f64,
    /// This instance's demand at its last publication (requests per
    /// interval per mount).
    pub demand: BTreeMap<String, f64>,
    /// Every `[[peer]]`.
    pub peers: Vec<PeerStatus>,
}

/// One peer.
#[derive(Debug, Serialize)]
pub struct PeerStatus {
    /// Its name.
    pub name: String,
    /// Its admin URL.
    pub url: String,
    /// Connected both ways: its demand counts. When false, its static part
    /// is held back.
    pub connected: bool,
    /// This instance fetched it within the window.
    pub fetching: bool,
    /// Last good fetch (RFC 3339).
    pub last_fetch: Option<String>,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
    /// Its demand per mount at the last good fetch.
    pub demand: BTreeMap<String, f64>,
}

/// The peer section of `snap`, `None` without `[[peer]]`s.
pub fn peers_status(snap: &Snapshot) -> Option<PeersStatus> {
    let report = snap.peers.as_ref()?;
    let by_path = |values: &crate::ids::PerMount<f64>| -> BTreeMap<String, f64> {
        report
            .paths
            .iter()
            .zip(values.iter())
            .map(|(p, v)| (p.to_string(), *v))
            .collect()
    };
    let shares = snap
        .topology
        .mounts
        .iter()
        .zip(snap.shares.mounts.iter())
        .map(|(m, s)| (m.path.to_string(), *s))
        .collect();
    Some(PeersStatus {
        name: report.name.clone(),
        interval_ms: report.interval.as_millis() as u64,
        static_share: report.static_share,
        shares,
        relay_share: snap.shares.relay,
        demand: by_path(&report.published),
        peers: report
            .peers
            .iter()
            .map(|p| PeerStatus {
                name: p.name.clone(),
                url: p.url.clone(),
                connected: p.connected,
                fetching: p.fetching,
                last_fetch: p.last_fetch.map(super::rfc3339),
                last_error: p.last_error.clone(),
                demand: by_path(&p.demand),
            })
            .collect(),
    })
}
