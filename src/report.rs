//! Reports of a snapshot for people and tools: the `/status.json` document
//! (and the data behind the status page and `floe explain`).
//!
//! Read-only over a [`Snapshot`]: every figure in a report comes from one
//! snapshot, named by its generation, so it can be matched with the
//! `x-floe-generation` header of a redirect.

use crate::select::{self, Exclusion, Room};
use crate::snapshot::Snapshot;
use serde::Serialize;
use std::time::{Instant, SystemTime};

/// The whole `/status.json` document.
#[derive(Debug, Serialize)]
pub struct StatusReport<'a> {
    /// Snapshot generation.
    pub generation: u64,
    /// Build time, RFC 3339.
    pub built_at: String,
    /// Seconds since the build.
    pub age_seconds: f64,
    /// The snapshot is older than `[poll] stale_after`.
    pub stale: bool,
    /// Every relay has been polled at least once.
    pub first_round_done: bool,
    /// Per relay.
    pub relays: Vec<RelayReport<'a>>,
    /// Per stream, with candidates.
    pub streams: Vec<StreamReport<'a>>,
}

/// One relay.
#[derive(Debug, Serialize)]
pub struct RelayReport<'a> {
    /// Name.
    pub name: &'a str,
    /// Base URL.
    pub url: &'a str,
    /// `unknown`, `up`, `full`, `down`.
    pub state: &'static str,
    /// Why.
    pub reason: &'a str,
    /// Since when (RFC 3339).
    pub since: String,
    /// Draining.
    pub drain: bool,
    /// Listeners on all mounts at the last poll.
    pub listeners: u32,
    /// Relay-wide free slots at the last poll (null = unlimited).
    pub free: Option<u64>,
    /// Relay-wide grants in flight.
    pub in_flight: u64,
    /// Last poll (RFC 3339).
    pub polled_at: Option<String>,
    /// Per configured mount.
    pub mounts: Vec<CellReport<'a>>,
}

/// One relay x mount.
#[derive(Debug, Serialize)]
pub struct CellReport<'a> {
    /// Mount path.
    pub mount: &'a str,
    /// A source is connected.
    pub present: bool,
    /// Listeners at the last poll.
    pub listeners: u32,
    /// Effective limit (null = unlimited or unknown).
    pub max_listeners: Option<u32>,
    /// The limit is unknown (status format without it, no config cap).
    pub capacity_unknown: bool,
    /// Free at the last poll (null = unlimited).
    pub free: Option<u64>,
    /// Grants in flight since the last poll.
    pub in_flight: u64,
    /// Reserve slots held back (0 when released).
    pub reserve: u64,
    /// Room for new listeners now (null = unlimited); absent when excluded.
    pub room: Option<u64>,
    /// Why the relay is not a candidate for this mount, if it is not.
    pub excluded: Option<&'static str>,
    /// Bitrate in kbit/s, if known.
    pub bitrate_kbps: Option<u32>,
}

/// One stream.
#[derive(Debug, Serialize)]
pub struct StreamReport<'a> {
    /// Name.
    pub name: &'a str,
    /// Mount paths.
    pub mounts: Vec<&'a str>,
    /// Balanced DNS names.
    pub dns: Vec<String>,
    /// Relays that DNS may answer for the stream now.
    pub candidates: Vec<&'a str>,
}

/// RFC 3339 in UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Builds the report of `snap`.
pub fn status_report(snap: &Snapshot) -> StatusReport<'_> {
    let topo = &snap.topology;
    let relays = topo
        .relays
        .iter()
        .zip(snap.relays.iter())
        .enumerate()
        .map(|(r, (def, view))| RelayReport {
            name: &def.name,
            url: &def.url,
            state: view.state.as_str(),
            reason: &view.reason,
            since: rfc3339(view.since),
            drain: view.drain,
            listeners: view.listeners,
            free: view.free,
            in_flight: def.grants.relay_in_flight(view.baseline),
            polled_at: view.polled_at.map(rfc3339),
            mounts: topo
                .mounts
                .iter()
                .enumerate()
                .map(|(m, mount)| {
                    let cell = snap.cell(r, m);
                    let room: Result<Room, Exclusion> = select::mount_room(snap, r, m);
                    CellReport {
                        mount: &mount.path,
                        present: cell.present,
                        listeners: cell.listeners,
                        max_listeners: cell.capacity,
                        capacity_unknown: cell.capacity_unknown,
                        free: cell.free,
                        in_flight: def.grants.in_flight(m, cell.baseline),
                        reserve: if snap.reserve_released[m] { 0 } else { cell.reserve },
                        room: room.ok().and_then(Room::slots),
                        excluded: room.err().map(Exclusion::as_str),
                        bitrate_kbps: cell.bitrate_kbps,
                    }
                })
                .collect(),
        })
        .collect();
    let streams = topo
        .streams
        .iter()
        .enumerate()
        .map(|(s, def)| StreamReport {
            name: &def.name,
            mounts: def.mounts.iter().map(|&m| &*topo.mounts[m].path).collect(),
            dns: snap.config().streams[s].dns.iter().map(|n| n.to_string()).collect(),
            candidates: select::explain_stream(snap, s)
                .filter(|(_, room)| room.is_ok())
                .map(|(r, _)| &*topo.relays[r].name)
                .collect(),
        })
        .collect();
    StatusReport {
        generation: snap.generation,
        built_at: rfc3339(snap.built_at),
        age_seconds: Instant::now().saturating_duration_since(snap.built).as_secs_f64(),
        stale: snap.is_stale(Instant::now()),
        first_round_done: snap.first_round_done,
        relays,
        streams,
    }
}

/// `/status.json`.
pub fn status_json(snap: &Snapshot) -> String {
    serde_json::to_string_pretty(&status_report(snap)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
