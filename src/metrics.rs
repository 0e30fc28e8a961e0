//! Every metric floe exports at `/metrics` (Prometheus text format 0.0.4),
//! defined in one place: name, type, labels and help of each are in
//! [`CATALOG`], and nothing outside this module names a metric.
//!
//! How the numbers get here:
//! - **Hot paths bump plain atomics through handles resolved ahead of
//!   time.** A redirect increments `RedirectTable::sent[mount][relay]` (one
//!   table per topology, found by pointer identity with the snapshot's
//!   topology); a relay poller holds its own [`PollStats`]. No label is
//!   formatted, no map searched and no lock taken per request or poll.
//! - **Everything else is read at scrape time** by one prometheus-client
//!   [`Collector`]: relay state, listeners, room and in-flight grants from the
//!   current snapshot (all from that one snapshot), snapshot generation and
//!   age, the reload report, and the DNS workers' counters.
//!
//! Counters survive reloads: every counter series is one `Arc<AtomicU64>`
//! kept by its labels (stream, mount, relay), so a relay that stays in the
//! config keeps counting across a reload and one that comes back resumes.
//! Only relays and mounts of the current config are exported.

use crate::dns::DnsState;
use crate::dns::answer::{Decision, Plan};
use crate::dns::stats::{QTYPES, QUERY_RCODES, RCODES, Tally, ZoneCounts};
use crate::health::{PollOutcome, RelayState};
use crate::history::History;
use crate::select::{self, NoCandidate, Room};
use crate::snapshot::{MountId, RelayId, Snapshot, SnapshotCell, Topology};
use arc_swap::ArcSwapOption;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

/// `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One exported metric family.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    /// Name as registered; the encoder appends `_total` to counters.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// Label names, in the order they are written.
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

impl Desc {
    /// The name as it appears in the exposition (`_total` for counters).
    pub fn exported_name(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Desc {
    Desc {
        name,
        kind: MetricType::Counter,
        labels,
        help,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Desc {
    Desc {
        name,
        kind: MetricType::Gauge,
        labels,
        help,
    }
}

const REDIRECT_LABELS: &[&str] = &["stream", "mount", "relay", "outcome", "reason"];
const RELAY: &[&str] = &["relay"];
const CELL: &[&str] = &["relay", "stream", "mount"];

/// HTTP answers to stream requests.
pub const REDIRECTS: Desc = counter(
    "floe_redirects",
    REDIRECT_LABELS,
    "HTTP answers to listener requests: outcome 302 (relay = where to), 503 (reason offline, full or \
     starting), 400 (query string unusable in a Location), 404 (unknown path; no stream or mount).",
);
/// Poll durations.
pub const POLL_DURATION: Desc = Desc {
    name: "floe_poll_duration_seconds",
    kind: MetricType::Histogram,
    labels: RELAY,
    help: "Time one poll of a relay's status page took, failed polls included.",
};
/// Failed polls.
pub const POLL_ERRORS: Desc = counter(
    "floe_poll_errors",
    &["relay", "reason"],
    "Polls without a usable status, by reason: timeout, connect (refused, reset, other transport \
     errors), http (non-2xx answer), parse (body not a valid status), full (Icecast's global \
     connection limit: the relay is up but full).",
);
/// Relay state, one series per state.
pub const RELAY_STATE: Desc = gauge(
    "floe_relay_state",
    &["relay", "state"],
    "1 for the relay's current health state, 0 for the others.",
);
/// When the state last changed.
pub const RELAY_STATE_SINCE: Desc = gauge(
    "floe_relay_state_since_timestamp_seconds",
    RELAY,
    "Unix time the relay entered its current state.",
);
/// Drain.
pub const RELAY_DRAINING: Desc = gauge(
    "floe_relay_draining",
    RELAY,
    "1 while the relay is drained (config or runtime): it gets no new listeners.",
);
/// Relay listeners.
pub const RELAY_LISTENERS: Desc = gauge(
    "floe_relay_listeners",
    RELAY,
    "Listeners on all mounts of the relay at its last poll.",
);
/// Relay cap.
pub const RELAY_MAX_LISTENERS: Desc = gauge(
    "floe_relay_max_listeners",
    RELAY,
    "The relay's configured listener cap (absent: no cap).",
);
/// Relay room.
pub const RELAY_ROOM: Desc = gauge(
    "floe_relay_room",
    RELAY,
    "New listeners the relay can take now on any of its mounts (sum of its mounts' room, within \
     its own cap); 0 when it is a candidate for none (absent: unlimited).",
);
/// Relay grants.
pub const RELAY_IN_FLIGHT: Desc = gauge(
    "floe_relay_in_flight",
    RELAY,
    "Listeners floe sent to the relay that its last poll did not count yet (in-flight grants).",
);
/// Source present.
pub const MOUNT_SOURCE: Desc = gauge(
    "floe_mount_source",
    CELL,
    "1 when the relay carries the mount (a source is connected), else 0.",
);
/// Mount listeners.
pub const MOUNT_LISTENERS: Desc = gauge(
    "floe_mount_listeners",
    CELL,
    "Listeners of the mount at the relay's last poll.",
);
/// Mount limit.
pub const MOUNT_MAX_LISTENERS: Desc = gauge(
    "floe_mount_max_listeners",
    CELL,
    "Effective listener limit of the mount on the relay (absent: unlimited or unknown).",
);
/// Mount room.
pub const MOUNT_ROOM: Desc = gauge(
    "floe_mount_room",
    CELL,
    "New listeners the relay can take on the mount now, after in-flight grants and reserve; 0 when \
     the relay is not a candidate (absent: unlimited).",
);
/// Mount grants.
pub const MOUNT_IN_FLIGHT: Desc = gauge(
    "floe_mount_in_flight",
    CELL,
    "In-flight grants of the mount on the relay (sent since its last poll).",
);
/// Candidate.
pub const MOUNT_CANDIDATE: Desc = gauge(
    "floe_mount_candidate",
    CELL,
    "1 when the relay is a candidate for new listeners of the mount, else 0.",
);
/// Generation.
pub const SNAPSHOT_GENERATION: Desc = gauge(
    "floe_snapshot_generation",
    &[],
    "Generation of the current snapshot (x-floe-generation of answers).",
);
/// Age.
pub const SNAPSHOT_AGE: Desc = gauge(
    "floe_snapshot_age_seconds",
    &[],
    "Seconds since the current snapshot was built.",
);
/// Staleness.
pub const SNAPSHOT_STALE: Desc = gauge(
    "floe_snapshot_stale",
    &[],
    "1 when the snapshot is older than [poll] stale_after (poller stuck).",
);
/// First round.
pub const FIRST_ROUND: Desc = gauge(
    "floe_first_poll_round_done",
    &[],
    "1 once every relay has been polled at least once (/healthz answers 200).",
);
/// Reloads.
pub const RELOADS: Desc = counter(
    "floe_reloads",
    &["result"],
    "Config reloads: success (swapped in) or failure (rejected; the last good config keeps serving).",
);
/// Reload failed.
pub const RELOAD_FAILED: Desc = gauge(
    "floe_reload_failed",
    &[],
    "1 while the last reload failed (the error is on /status), 0 after a success.",
);
/// DNS answers by path.
pub const DNS_ANSWERS: Desc = counter(
    "floe_dns_answers",
    &["path"],
    "DNS responses sent, by path: udp-fast (pre-rendered balanced answers), udp-handler, tcp.",
);
/// DNS answers by RCODE.
pub const DNS_RESPONSES: Desc = counter(
    "floe_dns_responses",
    &["rcode"],
    "DNS responses sent, by response code.",
);
/// DNS queries by zone, type and RCODE.
pub const DNS_QUERIES: Desc = counter(
    "floe_dns_queries",
    &["zone", "qtype", "rcode"],
    "DNS queries answered, by zone (origin; empty: outside every zone, or rejected before the \
     name was looked at), query type (A, AAAA, TXT, SOA, NS, ANY, MX, CNAME, other) and response \
     code (NOERROR, NXDOMAIN, REFUSED, FORMERR, NOTIMP, SERVFAIL, BADVERS, other). Only series \
     counted at least once are exported.",
);
/// DNS dropped.
pub const DNS_DROPPED: Desc = counter(
    "floe_dns_dropped",
    &[],
    "DNS packets that got no answer (too short, a response, source port 0).",
);
/// What each balanced DNS name answers now.
pub const DNS_NAME_ANSWER: Desc = gauge(
    "floe_dns_name_answer",
    &["name", "decision", "reason"],
    "Always 1, one series per balanced DNS name: what it answers now. decision: candidates \
     (relays with room) or the fallback policy in use (serve-all, nodata, fallback, last-known); \
     reason: why the policy answers (first-poll, stale, no-candidate:offline, no-candidate:full, \
     no-candidate:starting), empty for candidates.",
);
/// How many relays each balanced DNS name answers from.
pub const DNS_NAME_RELAYS: Desc = gauge(
    "floe_dns_name_relays",
    &["name"],
    "Relays a balanced DNS name's answers are drawn from now: its candidates, or the serve-all \
     policy's relays (0 for nodata and fallback).",
);
/// Build.
pub const BUILD_INFO: Desc = gauge(
    "floe_build_info",
    &["version"],
    "Always 1; the version of floe.",
);

/// Every metric floe exports, in exposition order.
pub const CATALOG: &[Desc] = &[
    REDIRECTS,
    POLL_DURATION,
    POLL_ERRORS,
    RELAY_STATE,
    RELAY_STATE_SINCE,
    RELAY_DRAINING,
    RELAY_LISTENERS,
    RELAY_MAX_LISTENERS,
    RELAY_ROOM,
    RELAY_IN_FLIGHT,
    MOUNT_SOURCE,
    MOUNT_LISTENERS,
    MOUNT_MAX_LISTENERS,
    MOUNT_ROOM,
    MOUNT_IN_FLIGHT,
    MOUNT_CANDIDATE,
    SNAPSHOT_GENERATION,
    SNAPSHOT_AGE,
    SNAPSHOT_STALE,
    FIRST_ROUND,
    RELOADS,
    RELOAD_FAILED,
    DNS_ANSWERS,
    DNS_RESPONSES,
    DNS_QUERIES,
    DNS_DROPPED,
    DNS_NAME_ANSWER,
    DNS_NAME_RELAYS,
    BUILD_INFO,
];

/// Upper bounds of the poll duration histogram, in seconds.
pub const POLL_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Why a poll gave no usable status (label `reason` of
/// `floe_poll_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// No answer within `[poll] timeout`.
    Timeout,
    /// Connection refused, reset or another transport error.
    Connect,
    /// An HTTP error status.
    Http,
    /// A body that is not a valid status.
    Parse,
    /// Icecast's global connection limit (up, but full).
    Full,
}

impl PollError {
    /// Every reason, in label order.
    pub const ALL: [PollError; 5] = [
        PollError::Timeout,
        PollError::Connect,
        PollError::Http,
        PollError::Parse,
        PollError::Full,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PollError::Timeout => "timeout",
            PollError::Connect => "connect",
            PollError::Http => "http",
            PollError::Parse => "parse",
            PollError::Full => "full",
        }
    }

    /// The class of a poll outcome (`None`: a good poll). Failures are
    /// told apart by the reasons `poll::fetch` writes: "timeout after …",
    /// "connect failed…" / "request failed…", "HTTP 404 from …"; anything
    /// else is a body that did not parse (or was too large).
    pub fn of(outcome: &PollOutcome) -> Option<PollError> {
        match outcome {
            PollOutcome::Status(_) => None,
            PollOutcome::ServerFull => Some(PollError::Full),
            PollOutcome::Failed(why) => Some(if why.starts_with("timeout") {
                PollError::Timeout
            } else if why.starts_with("connect failed") || why.starts_with("request failed") {
                PollError::Connect
            } else if why.starts_with("HTTP ") {
                PollError::Http
            } else {
                PollError::Parse
            }),
        }
    }
}

/// One relay poller's counters: the duration histogram and errors by
/// reason. The poller holds an `Arc` of it (resolved once when the poller
/// starts); the collector reads it at scrape time.
#[derive(Debug, Default)]
pub struct PollStats {
    /// Per bucket of [`POLL_BUCKETS`] (not cumulative), then the overflow.
    buckets: [AtomicU64; POLL_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    errors: [AtomicU64; PollError::ALL.len()],
}

impl PollStats {
    /// Records one poll that took `took` and failed with `error`, if it did.
    pub fn observe(&self, took: Duration, error: Option<PollError>) {
        let secs = took.as_secs_f64();
        let bucket = POLL_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(POLL_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
        if let Some(e) = error {
            self.errors[e as usize].fetch_add(1, Relaxed);
        }
    }

    /// Polls recorded so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// Failed polls recorded for `reason`.
    pub fn errors(&self, reason: PollError) -> u64 {
        self.errors[reason as usize].load(Relaxed)
    }
}

/// How a request for a configured mount was answered (labels `outcome`
/// and `reason` of `floe_redirects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `302` to a relay.
    Sent,
    /// `503`: no relay has a source.
    Offline,
    /// `503`: every relay carrying the mount is full, down, drained or
    /// reserved.
    Full,
    /// `503`: no relay polled yet.
    Starting,
    /// `400`: the query string cannot go into a `Location`.
    BadRequest,
}

impl Outcome {
    /// The answers without a relay, in `RedirectTable::refused` order.
    pub const REFUSED: [Outcome; 4] = [
        Outcome::Offline,
        Outcome::Full,
        Outcome::Starting,
        Outcome::BadRequest,
    ];

    /// `(outcome, reason)` label values.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Sent => ("302", ""),
            Outcome::Offline => ("503", "offline"),
            Outcome::Full => ("503", "full"),
            Outcome::Starting => ("503", "starting"),
            Outcome::BadRequest => ("400", ""),
        }
    }

    fn refused_index(self) -> usize {
        Outcome::REFUSED
            .iter()
            .position(|&o| o == self)
            .unwrap_or(0)
    }
}

impl From<NoCandidate> for Outcome {
    fn from(n: NoCandidate) -> Outcome {
        match n {
            NoCandidate::Offline => Outcome::Offline,
            NoCandidate::Full => Outcome::Full,
            NoCandidate::Starting => Outcome::Starting,
        }
    }
}

/// The redirect counters of one topology, indexed like the snapshot: the
/// hot path finds its counter by `[mount][relay]` without a lookup.
#[derive(Debug)]
struct RedirectTable {
    /// The topology it indexes (identity only; a `Weak` keeps the
    /// allocation, so the address cannot be reused by another topology).
    topology: Weak<Topology>,
    /// Generation of the snapshot the table was built for: a request still
    /// holding an older snapshot never replaces a newer table.
    generation: u64,
    relays: usize,
    /// `[m * relays + r]`: 302s to relay r for mount m.
    sent: Box<[Arc<AtomicU64>]>,
    /// `[m * 4 + k]`: answers without a relay, k in [`Outcome::REFUSED`] order.
    refused: Box<[Arc<AtomicU64>]>,
}

impl RedirectTable {
    #[inline]
    fn is_for(&self, topology: &Arc<Topology>) -> bool {
        std::ptr::eq(self.topology.as_ptr(), Arc::as_ptr(topology))
    }
}

/// A counter series' identity: stream, mount, relay ("" for none), outcome.
type SeriesKey = (Box<str>, Box<str>, Box<str>, Outcome);

/// The redirect counters: the current table plus every series by labels.
#[derive(Debug, Default)]
struct Redirects {
    table: ArcSwapOption<RedirectTable>,
    series: Mutex<HashMap<SeriesKey, Arc<AtomicU64>>>,
    not_found: AtomicU64,
}

impl Redirects {
    /// The table of `snap`'s topology; built (once per reload) if missing.
    #[inline]
    fn table(&self, snap: &Snapshot) -> Arc<RedirectTable> {
        if let Some(t) = &*self.table.load()
            && t.is_for(&snap.topology)
        {
            return t.clone();
        }
        self.build(snap)
    }

    #[inline]
    fn bump(&self, snap: &Snapshot, f: impl FnOnce(&RedirectTable) -> &AtomicU64) {
        let guard = self.table.load();
        match &*guard {
            Some(t) if t.is_for(&snap.topology) => {
                f(t).fetch_add(1, Relaxed);
            }
            _ => {
                drop(guard);
                f(&self.build(snap)).fetch_add(1, Relaxed);
            }
        }
    }

    #[cold]
    fn build(&self, snap: &Snapshot) -> Arc<RedirectTable> {
        let mut series = lock(&self.series);
        let current = self.table.load_full();
        if let Some(t) = &current
            && t.is_for(&snap.topology)
        {
            return t.clone();
        }
        let topo = &snap.topology;
        let mut get = |m: MountId, relay: &str, o: Outcome| {
            let mount = &topo.mounts[m];
            let key = (
                topo.streams[mount.stream].name.clone(),
                mount.path.clone(),
                Box::from(relay),
                o,
            );
            series.entry(key).or_default().clone()
        };
        let n = topo.relays.len();
        let mut sent = Vec::with_capacity(topo.mounts.len() * n);
        let mut refused = Vec::with_capacity(topo.mounts.len() * Outcome::REFUSED.len());
        for m in 0..topo.mounts.len() {
            for r in topo.relays.iter() {
                sent.push(get(m, &r.name, Outcome::Sent));
            }
            for o in Outcome::REFUSED {
                refused.push(get(m, "", o));
            }
        }
        let table = Arc::new(RedirectTable {
            topology: Arc::downgrade(topo),
            generation: snap.generation,
            relays: n,
            sent: sent.into(),
            refused: refused.into(),
        });
        if current
            .as_ref()
            .is_none_or(|c| c.generation <= snap.generation)
        {
            self.table.store(Some(table.clone()));
        }
        table
    }
}

/// Redirect counts of one topology, read at once (for reports).
#[derive(Debug, Clone, Default)]
pub struct RedirectCounts {
    relays: usize,
    /// `[m * relays + r]`: 302s.
    pub sent: Vec<u64>,
    /// `[m]`: answers without a relay, in [`Outcome::REFUSED`] order.
    pub refused: Vec<[u64; 4]>,
    /// 404s for paths that are no configured mount.
    pub not_found: u64,
}

impl RedirectCounts {
    /// 302s to relay `r` for mount `m`.
    pub fn sent_to(&self, m: MountId, r: RelayId) -> u64 {
        self.sent.get(m * self.relays + r).copied().unwrap_or(0)
    }

    /// 302s to relay `r`, all mounts.
    pub fn sent_to_relay(&self, r: RelayId) -> u64 {
        self.sent.iter().skip(r).step_by(self.relays.max(1)).sum()
    }

    /// All 302s.
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// All answers without a relay for a configured mount (503 and 400).
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().flatten().sum()
    }
}

/// floe's metrics: the redirect and poll counters, the DNS counters
/// (attached once DNS runs), the snapshot cell the gauges are read from and
/// the history ring behind the status page's charts.
#[derive(Debug)]
pub struct Metrics {
    cell: Arc<SnapshotCell>,
    redirects: Redirects,
    polls: Mutex<HashMap<Arc<str>, Arc<PollStats>>>,
    dns: OnceLock<Arc<DnsState>>,
    history: History,
}

impl Metrics {
    /// Metrics over the snapshots published in `cell`.
    pub fn new(cell: Arc<SnapshotCell>) -> Metrics {
        Metrics {
            cell,
            redirects: Redirects::default(),
            polls: Mutex::default(),
            dns: OnceLock::new(),
            history: History::default(),
        }
    }

    /// Counts a `302` to relay `r` for mount `m` of `snap`. Hot path: one
    /// atomic add through the topology's table.
    #[inline]
    pub fn redirected(&self, snap: &Snapshot, m: MountId, r: RelayId) {
        self.redirects.bump(snap, |t| &t.sent[m * t.relays + r]);
    }

    /// Counts an answer without a relay for mount `m` (503 or 400).
    #[inline]
    pub fn refused(&self, snap: &Snapshot, m: MountId, outcome: Outcome) {
        let k = outcome.refused_index();
        self.redirects
            .bump(snap, |t| &t.refused[m * Outcome::REFUSED.len() + k]);
    }

    /// Counts a 404 (a path that is no configured mount).
    #[inline]
    pub fn not_found(&self) {
        self.redirects.not_found.fetch_add(1, Relaxed);
    }

    /// The redirect counts of `snap`'s topology.
    pub fn redirect_counts(&self, snap: &Snapshot) -> RedirectCounts {
        let t = self.redirects.table(snap);
        let read = |c: &Arc<AtomicU64>| c.load(Relaxed);
        RedirectCounts {
            relays: t.relays,
            sent: t.sent.iter().map(read).collect(),
            refused: t
                .refused
                .chunks(Outcome::REFUSED.len())
                .map(|c| std::array::from_fn(|i| read(&c[i])))
                .collect(),
            not_found: self.redirects.not_found.load(Relaxed),
        }
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

    /// The DNS counters so far, if DNS runs.
    pub fn dns_counts(&self) -> Option<Tally> {
        self.dns.get().map(|d| d.counts())
    }

    /// The history ring of the status page's charts.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The snapshot cell the gauges are read from.
    pub fn snapshots(&self) -> &Arc<SnapshotCell> {
        &self.cell
    }

    /// The `/metrics` document, every gauge from the current snapshot.
    pub fn render(&self) -> String {
        let snap = self.cell.load_full();
        let polls = {
            let map = lock(&self.polls);
            snap.topology
                .relays
                .iter()
                .map(|r| map.get(&r.name).cloned())
                .collect()
        };
        let scrape = Scrape {
            redirects: self.redirect_counts(&snap),
            polls,
            dns: self.dns_counts(),
            dns_queries: self.dns.get().map(|d| d.query_counts()).unwrap_or_default(),
            dns_names: self
                .dns
                .get()
                .map(|d| dns_names(&d.plan(Instant::now())))
                .unwrap_or_default(),
            now: Instant::now(),
            snap,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!("encoding /metrics: {e}");
        }
        out
    }
}

/// Everything one scrape exports, read once: the collector only encodes.
#[derive(Debug)]
struct Scrape {
    snap: Arc<Snapshot>,
    redirects: RedirectCounts,
    /// Per relay of the snapshot's topology.
    polls: Vec<Option<Arc<PollStats>>>,
    dns: Option<Tally>,
    /// Per zone (`None`: outside every zone), for `floe_dns_queries_total`.
    dns_queries: Vec<(Option<String>, ZoneCounts)>,
    /// Per balanced name of the current DNS plan.
    dns_names: Vec<DnsName>,
    now: Instant,
}

/// One balanced name's current answer, for `floe_dns_name_*`.
#[derive(Debug)]
struct DnsName {
    name: String,
    decision: &'static str,
    reason: &'static str,
    relays: u64,
}

/// What every balanced name of `plan` answers.
fn dns_names(plan: &Plan) -> Vec<DnsName> {
    plan.names
        .iter()
        .map(|b| {
            let (decision, reason) = match b.decision {
                Decision::Candidates => ("candidates", ""),
                Decision::Policy { why, policy } => (policy.as_str(), why.as_str()),
            };
            DnsName {
                name: b.name.to_string(),
                decision,
                reason,
                relays: b.relays.len() as u64,
            }
        })
        .collect()
}

/// Writes one family: its descriptor, then each series from `series`.
fn family<'a>(
    enc: &'a mut DescriptorEncoder<'_>,
    d: &'a Desc,
    series: impl FnOnce(&mut MetricEncoder<'_>) -> fmt::Result,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(d.name, d.help, None, d.kind)?;
    series(&mut m)
}

fn put_gauge<L: EncodeLabelSet>(
    m: &mut MetricEncoder<'_>,
    labels: &L,
    v: impl Gauge,
) -> fmt::Result {
    v.put(&mut m.encode_family(labels)?)
}

fn put_counter<L: EncodeLabelSet>(m: &mut MetricEncoder<'_>, labels: &L, v: u64) -> fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A gauge value: integers or floats.
trait Gauge {
    fn put(self, m: &mut MetricEncoder<'_>) -> fmt::Result;
}

impl Gauge for u64 {
    fn put(self, m: &mut MetricEncoder<'_>) -> fmt::Result {
        m.encode_gauge(&self)
    }
}

impl Gauge for f64 {
    fn put(self, m: &mut MetricEncoder<'_>) -> fmt::Result {
        m.encode_gauge(&self)
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let snap = &*self.snap;
        let topo = &snap.topology;
        let relays = || topo.relays.iter().zip(snap.relays.iter()).enumerate();
        let cells = || {
            (0..topo.relays.len())
                .flat_map(move |r| (0..topo.mounts.len()).map(move |m| (r, m)))
                .map(move |(r, m)| {
                    let mount = &topo.mounts[m];
                    let labels = [
                        ("relay", &*topo.relays[r].name),
                        ("stream", &*topo.streams[mount.stream].name),
                        ("mount", &*mount.path),
                    ];
                    (r, m, labels)
                })
        };

        family(&mut enc, &REDIRECTS, |f| {
            for m in 0..topo.mounts.len() {
                let mount = &topo.mounts[m];
                let stream = &*topo.streams[mount.stream].name;
                for (r, def) in topo.relays.iter().enumerate() {
                    let (outcome, reason) = Outcome::Sent.labels();
                    let labels = [
                        ("stream", stream),
                        ("mount", &mount.path),
                        ("relay", &def.name),
                        ("outcome", outcome),
                        ("reason", reason),
                    ];
                    put_counter(f, &labels, self.redirects.sent_to(m, r))?;
                }
                for (k, o) in Outcome::REFUSED.into_iter().enumerate() {
                    let (outcome, reason) = o.labels();
                    let labels = [
                        ("stream", stream),
                        ("mount", &mount.path),
                        ("relay", ""),
                        ("outcome", outcome),
                        ("reason", reason),
                    ];
                    put_counter(
                        f,
                        &labels,
                        self.redirects.refused.get(m).map_or(0, |c| c[k]),
                    )?;
                }
            }
            let labels = [
                ("stream", ""),
                ("mount", ""),
                ("relay", ""),
                ("outcome", "404"),
                ("reason", ""),
            ];
            put_counter(f, &labels, self.redirects.not_found)
        })?;

        family(&mut enc, &POLL_DURATION, |f| {
            for (r, def) in topo.relays.iter().enumerate() {
                let Some(stats) = &self.polls[r] else {
                    continue;
                };
                let mut buckets: Vec<(f64, u64)> = POLL_BUCKETS
                    .iter()
                    .zip(&stats.buckets)
                    .map(|(&b, c)| (b, c.load(Relaxed)))
                    .collect();
                buckets.push((
                    f64::INFINITY,
                    stats.buckets[POLL_BUCKETS.len()].load(Relaxed),
                ));
                let count = buckets.iter().map(|b| b.1).sum();
                let sum = stats.sum_micros.load(Relaxed) as f64 / 1e6;
                f.encode_family(&[("relay", &*def.name)])?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
            Ok(())
        })?;
        family(&mut enc, &POLL_ERRORS, |f| {
            for (r, def) in topo.relays.iter().enumerate() {
                for e in PollError::ALL {
                    let n = self.polls[r].as_ref().map_or(0, |s| s.errors(e));
                    put_counter(f, &[("relay", &*def.name), ("reason", e.as_str())], n)?;
                }
            }
            Ok(())
        })?;

        family(&mut enc, &RELAY_STATE, |f| {
            for (_, (def, view)) in relays() {
                for s in RelayState::ALL {
                    put_gauge(
                        f,
                        &[("relay", &*def.name), ("state", s.as_str())],
                        u64::from(view.state == s),
                    )?;
                }
            }
            Ok(())
        })?;
        family(&mut enc, &RELAY_STATE_SINCE, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(f, &[("relay", &*def.name)], unix_seconds(view.since))
            })
        })?;
        family(&mut enc, &RELAY_DRAINING, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(f, &[("relay", &*def.name)], u64::from(view.drain))
            })
        })?;
        family(&mut enc, &RELAY_LISTENERS, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(f, &[("relay", &*def.name)], u64::from(view.listeners))
            })
        })?;
        family(&mut enc, &RELAY_MAX_LISTENERS, |f| {
            relays().try_for_each(|(_, (def, _))| match def.max_listeners {
                Some(c) => put_gauge(f, &[("relay", &*def.name)], u64::from(c)),
                None => Ok(()),
            })
        })?;
        family(&mut enc, &RELAY_ROOM, |f| {
            relays().try_for_each(|(r, (def, _))| match crate::report::relay_room(snap, r) {
                Some(n) => put_gauge(f, &[("relay", &*def.name)], n),
                None => Ok(()),
            })
        })?;
        family(&mut enc, &RELAY_IN_FLIGHT, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(
                    f,
                    &[("relay", &*def.name)],
                    def.grants.relay_in_flight(view.baseline),
                )
            })
        })?;

        family(&mut enc, &MOUNT_SOURCE, |f| {
            cells().try_for_each(|(r, m, l)| put_gauge(f, &l, u64::from(snap.cell(r, m).present)))
        })?;
        family(&mut enc, &MOUNT_LISTENERS, |f| {
            cells().try_for_each(|(r, m, l)| put_gauge(f, &l, u64::from(snap.cell(r, m).listeners)))
        })?;
        family(&mut enc, &MOUNT_MAX_LISTENERS, |f| {
            cells().try_for_each(|(r, m, l)| match snap.cell(r, m).capacity {
                Some(c) => put_gauge(f, &l, u64::from(c)),
                None => Ok(()),
            })
        })?;
        family(&mut enc, &MOUNT_ROOM, |f| {
            cells().try_for_each(|(r, m, l)| {
                match select::mount_room(snap, r, m).map(Room::slots) {
                    Ok(None) => Ok(()),
                    Ok(Some(n)) => put_gauge(f, &l, n),
                    Err(_) => put_gauge(f, &l, 0u64),
                }
            })
        })?;
        family(&mut enc, &MOUNT_IN_FLIGHT, |f| {
            cells().try_for_each(|(r, m, l)| {
                put_gauge(
                    f,
                    &l,
                    topo.relays[r].grants.in_flight(m, snap.cell(r, m).baseline),
                )
            })
        })?;
        family(&mut enc, &MOUNT_CANDIDATE, |f| {
            cells().try_for_each(|(r, m, l)| {
                put_gauge(f, &l, u64::from(select::mount_room(snap, r, m).is_ok()))
            })
        })?;

        let none: [(&str, &str); 0] = [];
        family(&mut enc, &SNAPSHOT_GENERATION, |f| {
            put_gauge(f, &none, snap.generation)
        })?;
        family(&mut enc, &SNAPSHOT_AGE, |f| {
            put_gauge(
                f,
                &none,
                self.now.saturating_duration_since(snap.built).as_secs_f64(),
            )
        })?;
        family(&mut enc, &SNAPSHOT_STALE, |f| {
            put_gauge(f, &none, u64::from(snap.is_stale(self.now)))
        })?;
        family(&mut enc, &FIRST_ROUND, |f| {
            put_gauge(f, &none, u64::from(snap.first_round_done))
        })?;
        family(&mut enc, &RELOADS, |f| {
            put_counter(f, &[("result", "success")], snap.reload.successes)?;
            put_counter(f, &[("result", "failure")], snap.reload.failures)
        })?;
        family(&mut enc, &RELOAD_FAILED, |f| {
            put_gauge(f, &none, u64::from(snap.reload.last_error.is_some()))
        })?;

        if let Some(dns) = &self.dns {
            family(&mut enc, &DNS_ANSWERS, |f| {
                put_counter(f, &[("path", "udp-fast")], dns.udp_fast)?;
                put_counter(f, &[("path", "udp-handler")], dns.udp_handler)?;
                put_counter(f, &[("path", "tcp")], dns.tcp)
            })?;
            family(&mut enc, &DNS_RESPONSES, |f| {
                for (i, n) in dns.rcode.iter().enumerate() {
                    put_counter(
                        f,
                        &[("rcode", RCODES.get(i).copied().unwrap_or("other"))],
                        *n,
                    )?;
                }
                Ok(())
            })?;
            family(&mut enc, &DNS_QUERIES, |f| {
                for (zone, counts) in &self.dns_queries {
                    let zone = zone.as_deref().unwrap_or("");
                    for (qtype, row) in QTYPES.iter().zip(counts) {
                        for (rcode, &n) in QUERY_RCODES.iter().zip(row) {
                            if n > 0 {
                                let labels = [("zone", zone), ("qtype", qtype), ("rcode", rcode)];
                                put_counter(f, &labels, n)?;
                            }
                        }
                    }
                }
                Ok(())
            })?;
            family(&mut enc, &DNS_DROPPED, |f| {
                put_counter(f, &none, dns.unanswered)
            })?;
            family(&mut enc, &DNS_NAME_ANSWER, |f| {
                for n in &self.dns_names {
                    let labels = [
                        ("name", n.name.as_str()),
                        ("decision", n.decision),
                        ("reason", n.reason),
                    ];
                    put_gauge(f, &labels, 1u64)?;
                }
                Ok(())
            })?;
            family(&mut enc, &DNS_NAME_RELAYS, |f| {
                for n in &self.dns_names {
                    put_gauge(f, &[("name", n.name.as_str())], n.relays)?;
                }
                Ok(())
            })?;
        }
        family(&mut enc, &BUILD_INFO, |f| {
            put_gauge(f, &[("version", env!("CARGO_PKG_VERSION"))], 1u64)
        })
    }
}

/// Locks a mutex, recovering from poisoning (the maps stay consistent:
/// every write is one insert).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
