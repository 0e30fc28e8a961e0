//! Reports of a snapshot for people and tools: the `/status.json` document,
//! the data behind the status page ([`crate::http::status_page`]) and
//! `floe explain` ([`explain`]).
//!
//! Read-only over a [`Snapshot`]: every figure about relays in a report
//! comes from one snapshot, named by its generation, so it can be matched
//! with the `x-floe-generation` header of a redirect; room and candidates
//! are [`select::decide`]'s verdicts. Counters come from [`Metrics`] (for
//! that snapshot's config), charts from the [`History`].

pub mod explain;
pub mod peers;

use crate::dns::stats::RCODES;
use crate::health::RelayState;
use crate::history::{History, HistoryReport};
use crate::metrics::Metrics;
use crate::select::{self, Exclusion, Room, Target};
use crate::snapshot::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;
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
    /// Relay groups (`[[group]]`, then `*`) with their room.
    pub groups: Vec<GroupReport<'a>>,
    /// Listener pools (the default one first) and who answers them now.
    pub pools: Vec<PoolReport<'a>>,
    /// Config reloads: counts and the last error.
    pub reload: ReloadStatus,
    /// The TLS certificates served (`[[http.tls_certificate]]`), in config
    /// order (the first is the default); empty without TLS.
    pub tls_certificates: Vec<TlsCertificateReport<'a>>,
    /// Each `[acme]` name: where its certificate stands (absent without
    /// `[acme]` or without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeReport>,
    /// The peer exchange (absent without `[[peer]]`s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<peers::PeersStatus>,
    /// Redirect and DNS counters (absent without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<CountersReport>,
    /// The last minutes, sampled every few seconds (absent without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryReport>,
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
    /// Seconds in this state.
    pub since_seconds: f64,
    /// Draining.
    pub drain: bool,
    /// Draining and no listener left.
    pub drain_complete: bool,
    /// Listeners on all mounts at the last poll.
    pub listeners: u32,
    /// The relay's configured cap (null = none).
    pub max_listeners: Option<u32>,
    /// Relay-wide free slots at the last poll (null = unlimited).
    pub free: Option<u64>,
    /// Room for new listeners on any mount now (null = unlimited).
    pub room: Option<u64>,
    /// Relay-wide grants in flight.
    pub in_flight: u64,
    /// Last poll (RFC 3339).
    pub polled_at: Option<String>,
    /// 302s sent to this relay (all mounts; absent without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<u64>,
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
    /// 302s sent to this relay for this mount (absent without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<u64>,
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
    /// 302s for the stream's mounts (absent without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<u64>,
    /// 503s/400s for the stream's mounts (absent without metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
}

/// One relay group.
#[derive(Debug, Serialize)]
pub struct GroupReport<'a> {
    /// Name (`*`: every relay not in an exclusive group).
    pub name: &'a str,
    /// Its relays.
    pub relays: Vec<&'a str>,
    /// How many of them are up.
    pub relays_up: usize,
    /// Per mount: the room of its relays now (null = unlimited).
    pub mounts: Vec<GroupMountReport<'a>>,
}

/// A group's room on one mount.
#[derive(Debug, Serialize)]
pub struct GroupMountReport<'a> {
    /// Mount path.
    pub mount: &'a str,
    /// New listeners the group's relays can take (null = unlimited).
    pub room: Option<u64>,
}

/// One listener pool.
#[derive(Debug, Serialize)]
pub struct PoolReport<'a> {
    /// Name (`default`: everyone no other pool covers).
    pub name: &'a str,
    /// Its client networks (CIDR).
    pub networks: Vec<String>,
    /// Groups tried, in order.
    pub order: Vec<&'a str>,
    /// Per mount: the group a new listener of the pool gets now (null:
    /// none has room).
    pub answering: Vec<PoolMountReport<'a>>,
}

/// Which group answers a pool on one mount.
#[derive(Debug, Serialize)]
pub struct PoolMountReport<'a> {
    /// Mount path.
    pub mount: &'a str,
    /// The answering group (null: none has room).
    pub group: Option<&'a str>,
    /// It is not the first of the order: listeners spill over.
    pub spilled: bool,
}

/// Config reloads, from the snapshot's reload report.
#[derive(Debug, Serialize)]
pub struct ReloadStatus {
    /// Reloads swapped in.
    pub successes: u64,
    /// Reloads rejected (the last good config kept serving).
    pub failures: u64,
    /// When the running config was loaded by a reload (null: at start).
    pub last_success: Option<String>,
    /// The last reload's error, while it is newer than the last success.
    pub last_error: Option<ReloadError>,
}

/// One TLS certificate being served.
#[derive(Debug, Serialize)]
pub struct TlsCertificateReport<'a> {
    /// The certificate file.
    pub file: String,
    /// The DNS names it covers.
    pub names: &'a [String],
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Days of validity left (negative: expired), from the build time.
    pub days_left: i64,
}

/// `[acme]`: orders and names.
#[derive(Debug, Serialize)]
pub struct AcmeReport {
    /// Orders that gave a certificate, since start.
    pub orders_valid: u64,
    /// Orders that failed, since start.
    pub orders_failed: u64,
    /// Each name, by name.
    pub names: Vec<AcmeNameReport>,
}

/// One `[acme]` name.
#[derive(Debug, Serialize)]
pub struct AcmeNameReport {
    /// The name.
    pub name: String,
    /// `dns-01` or `http-01`.
    pub challenge: &'static str,
    /// `starting`, `ordering`, `valid` or `failed` (a failed name still
    /// serves its last certificate, if it has one).
    pub state: &'static str,
    /// End of validity of the certificate served (RFC 3339), if any.
    pub not_after: Option<String>,
    /// When the next order starts: renewal, or the retry after a failure
    /// (RFC 3339).
    pub next_attempt: Option<String>,
    /// Orders failed in a row.
    pub failures: u32,
    /// The last failure, while the last order failed.
    pub last_error: Option<String>,
}

/// A failed reload.
#[derive(Debug, Serialize)]
pub struct ReloadError {
    /// When (RFC 3339).
    pub at: String,
    /// The diagnostics, `file:line:col: message` per line.
    pub message: String,
}

/// Counters since start.
#[derive(Debug, Serialize)]
pub struct CountersReport {
    /// 302s sent (all mounts and relays of the config).
    pub redirects: u64,
    /// Answers without a relay for configured mounts, by reason.
    pub refused: RefusedReport,
    /// 404s (paths that are no configured mount).
    pub not_found: u64,
    /// DNS responses (absent when DNS does not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsReport>,
}

/// Answers without a relay.
#[derive(Debug, Serialize)]
pub struct RefusedReport {
    /// 503, no relay has a source.
    pub offline: u64,
    /// 503, every relay full, down, drained or reserved.
    pub full: u64,
    /// 503, no relay polled yet.
    pub starting: u64,
    /// 400, query string unusable in a Location.
    pub bad_request: u64,
    /// 429, the client's address prefix past its budget of grants.
    pub client_budget: u64,
}

/// DNS responses sent.
#[derive(Debug, Serialize)]
pub struct DnsReport {
    /// All responses.
    pub answers: u64,
    /// UDP, pre-rendered balanced answers.
    pub udp_fast: u64,
    /// UDP, through the handler.
    pub udp_handler: u64,
    /// TCP.
    pub tcp: u64,
    /// Packets that got no answer.
    pub dropped: u64,
    /// Responses by RCODE.
    pub rcodes: BTreeMap<&'static str, u64>,
}

/// RFC 3339 in UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Builds the report of `snap` (relays and streams only).
pub fn status_report(snap: &Snapshot) -> StatusReport<'_> {
    status_report_with(snap, None)
}

/// Counters and charts to add to a report.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The counters.
    pub metrics: &'a Metrics,
    /// The last minutes.
    pub history: &'a History,
}

/// Builds the report of `snap`, with counters and history if `observed`.
pub fn status_report_with<'a>(
    snap: &'a Snapshot,
    observed: Option<Observed<'_>>,
) -> StatusReport<'a> {
    let topo = &snap.topology;
    let now = SystemTime::now();
    let instant = Instant::now();
    let metrics = observed.map(|o| o.metrics);
    let counts = metrics.map(|m| m.redirect_counts(snap));
    let per_mount: Vec<select::Decision> = topo
        .mounts
        .ids()
        .map(|m| select::decide(snap, Target::Redirect(m), instant))
        .collect();
    let relays = topo
        .relays
        .iter_ids()
        .map(|(r, def)| (r, def, &snap.relays[r]))
        .map(|(r, def, view)| RelayReport {
            name: &def.name,
            url: &def.url,
            state: view.state.as_str(),
            reason: &view.reason,
            since: rfc3339(view.since),
            since_seconds: now
                .duration_since(view.since)
                .map_or(0.0, |d| d.as_secs_f64()),
            drain: view.drain,
            drain_complete: view.drain && view.listeners == 0 && view.polled_at.is_some(),
            listeners: view.listeners,
            max_listeners: def.max_listeners,
            free: view.free,
            room: select::relay_room(snap, r),
            in_flight: def.grants.relay_in_flight(view.baseline),
            polled_at: view.polled_at.map(rfc3339),
            redirects: counts.as_ref().map(|c| c.sent_to_relay(r)),
            mounts: topo
                .mounts
                .iter_ids()
                .map(|(m, mount)| {
                    let cell = snap.cell(r, m);
                    let room = per_mount[m.index()].verdicts[r];
                    CellReport {
                        mount: &mount.path,
                        present: cell.present,
                        listeners: cell.listeners,
                        max_listeners: cell.capacity,
                        capacity_unknown: cell.capacity_unknown,
                        free: cell.free,
                        in_flight: def.grants.in_flight(m, cell.baseline),
                        reserve: select::reserve(snap, r, m),
                        room: room.ok().and_then(Room::slots),
                        excluded: room.err().map(Exclusion::as_str),
                        bitrate_kbps: cell.bitrate_kbps,
                        redirects: counts.as_ref().map(|c| c.sent_to(m, r)),
                    }
                })
                .collect(),
        })
        .collect();
    let streams = topo
        .streams
        .iter_ids()
        .map(|(s, def)| StreamReport {
            name: &def.name,
            mounts: def.mounts.iter().map(|&m| &*topo.mounts[m].path).collect(),
            dns: snap.config().streams[s.index()]
                .dns
                .iter()
                .map(|n| n.to_string())
                .collect(),
            candidates: select::decide(
                snap,
                Target::Name {
                    stream: s,
                    mount: None,
                },
                instant,
            )
            .candidates()
            .map(|(r, _)| &*topo.relays[r].name)
            .collect(),
            redirects: counts.as_ref().map(|c| {
                def.mounts
                    .iter()
                    .map(|&m| topo.relays.ids().map(|r| c.sent_to(m, r)).sum::<u64>())
                    .sum()
            }),
            refused: counts.as_ref().map(|c| {
                def.mounts
                    .iter()
                    .map(|&m| c.refused[m].iter().sum::<u64>())
                    .sum()
            }),
        })
        .collect();
    let groups = topo
        .groups
        .iter()
        .map(|g| GroupReport {
            name: &g.name,
            relays: g.relays.iter().map(|&r| &*topo.relays[r].name).collect(),
            relays_up: g
                .relays
                .iter()
                .filter(|&&r| snap.relays[r].state == RelayState::Up)
                .count(),
            mounts: topo
                .mounts
                .iter_ids()
                .map(|(m, mount)| GroupMountReport {
                    mount: &mount.path,
                    room: select::group_room(snap, g, m),
                })
                .collect(),
        })
        .collect();
    let pools = topo
        .pools
        .iter_ids()
        .map(|(p, pool)| PoolReport {
            name: &pool.name,
            networks: snap.config().pools[p.index()]
                .networks
                .iter()
                .map(|n| n.to_string())
                .collect(),
            order: pool.order.iter().map(|&g| &*topo.groups[g].name).collect(),
            answering: topo
                .mounts
                .iter_ids()
                .map(|(m, mount)| {
                    let group = select::decide_for(snap, Target::Redirect(m), p, instant).group;
                    PoolMountReport {
                        mount: &mount.path,
                        group: group.map(|g| &*topo.groups[g].name),
                        spilled: group.is_some_and(|g| pool.order.first() != Some(&g)),
                    }
                })
                .collect(),
        })
        .collect();
    let counters = metrics.zip(counts.as_ref()).map(|(metrics, c)| {
        let refused = |k: usize| c.refused.iter().map(|per| per[k]).sum();
        CountersReport {
            redirects: c.sent_total(),
            refused: RefusedReport {
                offline: refused(0),
                full: refused(1),
                starting: refused(2),
                bad_request: refused(3),
                client_budget: refused(4),
            },
            not_found: c.not_found,
            dns: metrics.dns_counts().map(|t| DnsReport {
                answers: t.udp_fast + t.udp_handler + t.tcp,
                udp_fast: t.udp_fast,
                udp_handler: t.udp_handler,
                tcp: t.tcp,
                dropped: t.unanswered,
                rcodes: (t.rcode.iter().enumerate())
                    .map(|(i, &n)| (RCODES.get(i).copied().unwrap_or("other"), n))
                    .collect(),
            }),
        }
    });
    let reload = &snap.reload;
    StatusReport {
        generation: snap.generation,
        built_at: rfc3339(snap.built_at),
        age_seconds: instant.saturating_duration_since(snap.built).as_secs_f64(),
        stale: snap.is_stale(instant),
        first_round_done: snap.first_round_done,
        relays,
        streams,
        groups,
        pools,
        reload: ReloadStatus {
            successes: reload.successes,
            failures: reload.failures,
            last_success: reload.last_success.map(rfc3339),
            last_error: reload.last_error.as_ref().map(|(at, message)| ReloadError {
                at: rfc3339(*at),
                message: message.clone(),
            }),
        },
        tls_certificates: tls_certificates(snap),
        acme: metrics.and_then(|m| m.acme()).map(|i| acme(i)),
        peers: peers::peers_status(snap),
        counters,
        history: observed.map(|o| o.history.report()),
    }
}

/// The certificates of the running config, with days left at the
/// snapshot's build time.
fn tls_certificates(snap: &Snapshot) -> Vec<TlsCertificateReport<'_>> {
    let now = unix_seconds(snap.built_at);
    let store = &snap.config().http.tls_certificates;
    store
        .certificates()
        .iter()
        .map(|c| TlsCertificateReport {
            file: c.cert_path.display().to_string(),
            names: &c.names,
            not_after: u64::try_from(c.not_after).map_or_else(
                |_| "before 1970".into(),
                |s| rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)),
            ),
            days_left: (c.not_after - now).div_euclid(86_400),
        })
        .collect()
}

/// What `/status` says of ACME.
fn acme(issued: &crate::issued::Issued) -> AcmeReport {
    let [orders_valid, orders_failed] = issued.orders();
    let at = |s: i64| {
        u64::try_from(s).map_or_else(
            |_| "before 1970".into(),
            |s| rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)),
        )
    };
    AcmeReport {
        orders_valid,
        orders_failed,
        names: issued
            .names()
            .into_iter()
            .map(|n| AcmeNameReport {
                state: n.phase.as_str(),
                challenge: n.challenge,
                not_after: n.not_after.map(at),
                next_attempt: n.next_attempt.map(at),
                failures: n.failures,
                last_error: n.last_error,
                name: n.name,
            })
            .collect(),
    }
}

/// Seconds since the Unix epoch of `t` (negative before it).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// `/status.json` with counters and history.
pub fn status_json_with(snap: &Snapshot, observed: Observed<'_>) -> String {
    to_json(&status_report_with(snap, Some(observed)))
}

/// Pretty JSON of a report (never fails for these types; an error becomes
/// an `error` document).
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
