//! The catalog: name, type, labels and help of every metric floe exports
//! at `/metrics` (Prometheus text format 0.0.4). Nothing outside
//! [`crate::metrics`] names a metric.

use prometheus_client::metrics::MetricType;

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
     starting), 429 (reason client-budget: the client's address prefix is past its budget of \
     grants), 400 (query string unusable in a Location), 404 (unknown path; no stream or mount).",
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
/// UDP answers withheld by response-rate limiting.
pub const DNS_RATE_LIMITED: Desc = counter(
    "floe_dns_rate_limited",
    &["action"],
    "UDP queries over their client prefix's response rate ([dns] rrl_*): action drop (no answer) \
     or slip (answered truncated, so a real resolver retries over TCP).",
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
/// Connections a PROXY protocol listener closed before HTTP.
pub const PROXY_REFUSED: Desc = counter(
    "floe_http_proxy_refused",
    &["reason"],
    "Connections to an [http] proxy_protocol_listen address closed before HTTP, by reason: \
     untrusted (peer not in trusted_proxies), missing (no PROXY header), malformed, too-long, \
     timeout (no whole header within header_timeout), closed (the peer left mid-header).",
);
/// Redirects held because the relays with room were quiet.
pub const REDIRECTS_HELD: Desc = counter(
    "floe_redirects_held",
    &[],
    "Listener requests held (not refused) because the only relays with room were quiet: with \
     [[peer]]s, between a poll's grant sample and the publication of its result.",
);
/// Answers per listener pool and group.
pub const POOL_ANSWERS: Desc = counter(
    "floe_pool_answers",
    &["door", "pool", "group"],
    "Listeners answered per listener pool and the relay group that answered: door http counts \
     302s, door dns balanced A/AAAA answers (group \"\" when no group had room and a [dns] policy \
     answered).",
);
/// Spill-overs per listener pool and group.
pub const SPILLOVERS: Desc = counter(
    "floe_spillovers",
    &["door", "pool", "group"],
    "Of floe_pool_answers_total, the answers from a group that is not the first of the pool's \
     order (the earlier groups had no room for the mount): listeners that spilled over.",
);
/// Room per relay group and mount.
pub const GROUP_ROOM: Desc = gauge(
    "floe_group_room",
    &["group", "stream", "mount"],
    "New listeners the group's relays can take on the mount now, after in-flight grants and \
     reserve (absent: a relay of the group is unlimited).",
);
/// Relays up per relay group.
pub const GROUP_RELAYS_UP: Desc = gauge(
    "floe_group_relays_up",
    &["group"],
    "Relays of the group that are up (polled, not full, not failing).",
);
/// TLS certificate expiry.
pub const TLS_CERT_EXPIRY: Desc = gauge(
    "floe_tls_cert_expiry_seconds",
    &["name", "file"],
    "End of validity (Unix seconds) of each TLS certificate served, from the config or obtained \
     by ACME, labelled by its first DNS name and its file (alert on \
     floe_tls_cert_expiry_seconds - time() < 14 * 86400).",
);
/// ACME orders.
pub const ACME_ORDERS: Desc = counter(
    "floe_acme_orders",
    &["result"],
    "ACME orders finished since start ([acme]): valid (a certificate was issued and is served) \
     or failed (CA unreachable, validation failed, bad answer; retried with backoff).",
);
/// ACME name state.
pub const ACME_NAME_STATE: Desc = gauge(
    "floe_acme_name_state",
    &["name", "state"],
    "1 for the state each [acme] name is in (starting, ordering, valid, failed), 0 for the \
     others; failed still serves the last certificate, if any.",
);
/// ACME next attempt.
pub const ACME_NEXT_ATTEMPT: Desc = gauge(
    "floe_acme_next_attempt_seconds",
    &["name"],
    "When the next ACME order for the name starts (Unix seconds): renewal of a valid \
     certificate, or the retry after a failure.",
);
/// Peer exchange: each peer connected.
pub const PEER_CONNECTED: Desc = gauge(
    "floe_peer_connected",
    &["peer"],
    "1 when the peer is connected both ways (its demand counts in the shares), 0 when not \
     (its static [select] share is held back); absent without [[peer]]s.",
);
/// Peer exchange: last good fetch.
pub const PEER_LAST_FETCH: Desc = gauge(
    "floe_peer_last_fetch_seconds",
    &["peer"],
    "Unix time of the last good fetch of the peer's /peer answer (0: never).",
);
/// Peer exchange: this instance's share per mount.
pub const SHARE: Desc = gauge(
    "floe_share",
    &["mount"],
    "This instance's fraction of each mount's free slots (the peer exchange's demand share, \
     or the static [select] share); 1 for a lone instance.",
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
    DNS_RATE_LIMITED,
    DNS_NAME_ANSWER,
    DNS_NAME_RELAYS,
    PROXY_REFUSED,
    POOL_ANSWERS,
    SPILLOVERS,
    GROUP_ROOM,
    GROUP_RELAYS_UP,
    TLS_CERT_EXPIRY,
    ACME_ORDERS,
    ACME_NAME_STATE,
    ACME_NEXT_ATTEMPT,
    PEER_CONNECTED,
    PEER_LAST_FETCH,
    SHARE,
    BUILD_INFO,
];

/// Upper bounds of the poll duration histogram, in seconds.
pub const POLL_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
