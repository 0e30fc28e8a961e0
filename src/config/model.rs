//! The typed config every other module reads: one struct per section, with
//! every value checked and every default filled in by validation, so serving
//! code never sees an unset or out-of-range setting.
//!
//! The listen defaults are public constants because `floe demo` and the
//! command line use them too: config owns every default.

use crate::icecast::StatusKind;
use hickory_proto::rr::Name;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// `[dns] listen` when the config gives none (and `floe demo`'s `--dns`).
pub const DEFAULT_DNS_LISTEN: SocketAddr = loopback(8053);
/// `[http] listen` when the config gives none (and `floe demo`'s `--http`).
pub const DEFAULT_HTTP_LISTEN: SocketAddr = loopback(8080);
/// `[admin] listen` when the config gives none (and `floe drain`'s endpoint).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = loopback(8081);

/// `127.0.0.1:port`: the defaults listen on loopback only.
const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// The whole validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `[dns]`.
    pub dns: DnsConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[acme]`: certificates floe obtains itself; `None` without the
    /// section.
    pub acme: Option<AcmeConfig>,
    /// `[poll]`.
    pub poll: PollConfig,
    /// `[select]`.
    pub select: SelectConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// Every `[[relay]]`, in file order; names are unique.
    pub relays: Vec<RelayConfig>,
    /// Every `[[stream]]`, in file order; mount paths are unique across
    /// streams.
    pub streams: Vec<StreamConfig>,
    /// Every `[[group]]`, in file order; names are unique.
    pub groups: Vec<GroupConfig>,
    /// The listener pools: first the default pool (everyone no network of
    /// another pool covers; `[[pool]] name = "default"`, or every relay
    /// not in an exclusive group when there is none), then every other
    /// `[[pool]]` in file order.
    pub pools: Vec<PoolConfig>,
    /// `[peers]` and every `[[peer]]`: the other instances of the NS set
    /// this one exchanges demand with (none: no exchange).
    pub peers: PeersConfig,
}

/// `[peers] interval` when the config gives none.
pub const DEFAULT_PEER_INTERVAL: Duration = Duration::from_millis(500);

/// `[peers]` and the `[[peer]]`s: the instances of one NS set split each
/// relay's free slots by their demand (see [`crate::shares`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PeersConfig {
    /// This instance's name as its peers know it (required with peers).
    pub name: String,
    /// How often this instance publishes its demand and fetches its
    /// peers'.
    pub interval: Duration,
    /// The other instances, in file order; names unique and not `name`.
    pub peers: Vec<PeerConfig>,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            name: String::new(),
            interval: DEFAULT_PEER_INTERVAL,
            peers: Vec::new(),
        }
    }
}

/// One `[[peer]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// Its `[peers] name`.
    pub name: String,
    /// Its admin listener's base URL (http or https, no path): floe
    /// fetches `<url>/peer` with the shared `[admin]` token.
    pub url: String,
}

/// The name of the pool of every listener that no pool's networks cover.
pub const DEFAULT_POOL: &str = "default";

/// In a pool's `order`, every relay that is not in an exclusive group.
pub const ANY_GROUP: &str = "*";

/// One `[[group]]`: relays that serve listeners of the pools naming it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// Unique name (not `*`).
    pub name: String,
    /// Its relays, by name (each configured; a relay may be in several
    /// groups).
    pub relays: Vec<String>,
    /// Its relays serve only pools that name the group (`*` leaves them
    /// out), e.g. a partner network's relays for its own users.
    pub exclusive: bool,
}

/// One listener pool: client networks and the relay groups that serve
/// them, tried in order (a listener goes to the first group with room).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Unique name; [`DEFAULT_POOL`] for everyone else.
    pub name: String,
    /// Client networks (empty for the default pool). A client belongs to
    /// the pool with the longest network that covers its address.
    pub networks: Vec<ipnet::IpNet>,
    /// Group names ([`ANY_GROUP`] for every non-exclusive relay), in the
    /// order they are tried; each configured, none twice.
    pub order: Vec<String>,
}

/// What DNS answers for a balanced name when the normal policy has nothing
/// to say (no candidate, first poll not done, or snapshot stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsPolicy {
    /// Keep answering from the last snapshot as if it were fresh (only for
    /// `when_stale`).
    LastKnown,
    /// Every relay that is not drained and is up or full (or, before the
    /// first poll, every relay not drained): a monitoring failure never takes
    /// a stream off the air.
    ServeAll,
    /// NOERROR with no answer records (NODATA) and the SOA in authority.
    Nodata,
    /// The fixed `[dns] fallback` addresses.
    Fallback,
}

impl DnsPolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsPolicy::LastKnown => "last-known",
            DnsPolicy::ServeAll => "serve-all",
            DnsPolicy::Nodata => "nodata",
            DnsPolicy::Fallback => "fallback",
        }
    }
}

/// `[dns]`: the authoritative server.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Addresses served on UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Directory of `*.zone` files, resolved against the config file.
    pub zones: PathBuf,
    /// Maximum addresses in a balanced answer.
    pub answers: usize,
    /// Upper bound of a balanced answer's TTL (when the cluster is idle).
    pub ttl: Duration,
    /// Lower bound of a balanced answer's TTL (when room is running out).
    pub min_ttl: Duration,
    /// Policy when no relay qualifies.
    pub when_no_candidate: DnsPolicy,
    /// Policy before the first poll round completes.
    pub before_first_poll: DnsPolicy,
    /// Policy when the snapshot is older than `[poll] stale_after`.
    pub when_stale: DnsPolicy,
    /// Addresses for the `fallback` policy.
    pub fallback: Vec<IpAddr>,
    /// A TCP connection with no query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections at once; more are refused.
    pub tcp_max_connections: usize,
    /// Most TCP connections at once from one client (address prefix, as
    /// `[select] client_prefix_v4/v6`); more are refused.
    pub tcp_max_connections_per_client: u32,
    /// A TCP connection is closed after this long, however busy.
    pub tcp_max_connection_age: Duration,
    /// Response-rate limiting of UDP answers per client prefix: answers per
    /// second (0 = off).
    pub rrl_responses_per_second: u32,
    /// Every `rrl_slip`-th answer over the rate goes out truncated (TC, so
    /// a real resolver retries over TCP); the others are dropped. 0: drop
    /// all.
    pub rrl_slip: u32,
    /// Leading bits of an IPv4 source that make one rate-limited client.
    pub rrl_prefix_v4: u8,
    /// Leading bits of an IPv6 source that make one rate-limited client.
    pub rrl_prefix_v6: u8,
    /// Sources never rate limited (loopback by default).
    pub rrl_exempt: Vec<ipnet::IpNet>,
    /// A TXT query on a balanced name answers why it answers what it does
    /// (relay names, the decision); off: NODATA, for public deployments
    /// that do not want to show relay names.
    pub diagnostic_txt: bool,
    /// UDP sockets (each with its own thread) per listen address; 0 = one per
    /// core.
    pub udp_workers: usize,
    /// Whether balanced names are answered for the listener pool of the
    /// EDNS Client Subnet a resolver sends (RFC 7871), and the option
    /// echoed with its scope; off: the option is ignored and the resolver's
    /// own address picks the pool.
    pub ecs: bool,
    /// Most leading bits of an IPv4 client subnet floe looks at; longer
    /// source prefixes are used only this far (and answered with a scope of
    /// at most this), so a resolver never caches per single address.
    pub ecs_max_prefix_v4: u8,
    /// The same for IPv6 client subnets.
    pub ecs_max_prefix_v6: u8,
}

/// `[http]`: the redirecting front door.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// floe's own public base URL, for playlists when a request has no
    /// usable `Host` header.
    pub public_url: Option<url::Url>,
    /// Time a client has to send its request headers; also how long an
    /// idle keep-alive connection may wait for its next request.
    pub header_timeout: Duration,
    /// Most client connections at once, across all workers; more wait in
    /// the kernel's backlog.
    pub max_connections: usize,
    /// Most connections at once from one client (address prefix, as
    /// `[select] client_prefix_v4/v6`); more are closed at once.
    pub max_connections_per_client: u32,
    /// A connection is closed after this long (after its request in
    /// flight, if any), however busy.
    pub max_connection_age: Duration,
    /// A response the client does not read for this long closes the
    /// connection.
    pub write_timeout: Duration,
    /// Networks that may read the diagnostic pages (`/status`,
    /// `/status.json`, `/metrics`, `/explain`); others get `403`.
    pub diagnostics_from: Vec<ipnet::IpNet>,
    /// `/metrics` has the relay x mount series (`floe_mount_*`, and
    /// `floe_redirects_total` per relay); off for very large clusters,
    /// where they are most of a scrape (20,000 series at 1,000 x 20).
    pub metrics_per_mount: bool,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// `Retry-After` on a 503.
    pub retry_after: Duration,
    /// Accept loops (each on its own SO_REUSEPORT socket); 0 = one per core.
    pub workers: usize,
    /// Extra listeners where every connection starts with a PROXY protocol
    /// header (v1 or v2) from a load balancer in `trusted_proxies`; the
    /// header's source is the client.
    pub proxy_protocol_listen: Vec<SocketAddr>,
    /// The load balancers whose PROXY headers and `X-Forwarded-For` are
    /// believed; empty: none (the connection's peer is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Web origins whose pages may use the stream routes from scripts and
    /// `fetch()` (CORS): `*` for every origin, or origins such as
    /// `https://radio.example.org` (lower case, no trailing slash); empty:
    /// no CORS headers at all.
    pub cors_origins: Vec<Box<str>>,
    /// Listeners that speak TLS (then HTTP/2 or HTTP/1.1 by ALPN), with the
    /// same limits and routes as `listen`.
    pub tls_listen: Vec<SocketAddr>,
    /// The certificates of `tls_listen` (`[[http.tls_certificate]]`),
    /// loaded and checked; chosen by SNI, the first for clients without
    /// one. Empty when there are none.
    pub tls_certificates: std::sync::Arc<crate::tls::CertStore>,
    /// Whether a request that came over TLS may be sent to a relay's plain
    /// `url` when it has no `https_url` (else `503`: a listener on an HTTPS
    /// page cannot play a plain HTTP stream).
    pub tls_redirect_to_http: bool,
}

/// `[acme]`: certificates floe obtains from an ACME CA (RFC 8555) for
/// its TLS listeners, and renews.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The CA's directory URL (https).
    pub directory: url::Url,
    /// Account contacts (`mailto:` URLs).
    pub contact: Vec<String>,
    /// The names to obtain a certificate for, one certificate each
    /// (lowercase, no trailing dot). Without `names` in the file: the apex
    /// of every zone floe serves and the host of `[http] public_url`
    /// (filled in once the zones are loaded).
    pub names: Vec<String>,
    /// Whether `names` was written in the file (else the default above).
    pub names_given: bool,
    /// Where the account and the certificates are kept (0700; files 0600).
    pub state_dir: PathBuf,
    /// How the CA validates each name.
    pub challenge: AcmeChallenge,
    /// Fraction of a certificate's lifetime after which it is renewed.
    pub renew_after: f64,
    /// First wait after a failed order (then doubled, with jitter).
    pub retry_min: Duration,
    /// Longest wait between failed orders.
    pub retry_max: Duration,
    /// PEM roots that sign the CA's own HTTPS certificate (a test CA such
    /// as pebble's), instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// `[acme] challenge`: how the CA checks that floe controls a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A TXT record at `_acme-challenge.<name>`, answered by floe's own DNS
    /// (the name must be inside one of floe's zones).
    Dns01,
    /// `GET http://<name>/.well-known/acme-challenge/<token>` on floe's
    /// plain HTTP door (port 80 for a real CA).
    Http01,
}

impl AcmeChallenge {
    /// The name RFC 8555 gives it (`dns-01`, `http-01`).
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Dns01 => "dns-01",
            AcmeChallenge::Http01 => "http-01",
        }
    }
}

/// `[poll]`: how relays are polled and how health follows.
#[derive(Debug, Clone, PartialEq)]
pub struct PollConfig {
    /// Time between polls of one relay (jittered).
    pub interval: Duration,
    /// Time a poll may take before it counts as failed.
    pub timeout: Duration,
    /// Good polls in a row for a relay to come up.
    pub rise: u32,
    /// Bad polls in a row for a relay to go down.
    pub fall: u32,
    /// Fraction of `interval` by which each wait is randomly shortened or
    /// lengthened, so relays are not polled in lockstep.
    pub jitter: f64,
    /// How long after a redirect the listener surely shows in Icecast's count
    /// (0.2–0.5 s measured): grants younger than this at a poll's start keep
    /// counting after that poll.
    pub settle: Duration,
    /// A grant stops counting after this long even if no poll reconciled it.
    pub grant_ttl: Duration,
    /// A snapshot not rebuilt for this long is stale.
    pub stale_after: Duration,
}

impl PollConfig {
    /// How long a grant usually stays outstanding: until a poll that starts
    /// `settle` after it has answered, so at most about one (jittered)
    /// interval, plus `settle`, plus the poll's own time. Client budgets
    /// count grants over this window.
    pub fn grant_window(&self) -> Duration {
        self.interval.mul_f64(1.0 + self.jitter) + self.settle + self.timeout
    }
}

/// `[select]`: the selection policy's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectConfig {
    /// Fraction of each mount's capacity kept out of rotation until a peer
    /// relay is down or full.
    pub reserve: f64,
    /// Room assumed, for weighting only, for a mount with no known limit.
    pub unlimited_room: u32,
    /// Seed for the selection RNG (deterministic choices, for tests).
    pub seed: Option<u64>,
    /// This instance's share of every relay's free slots, when several floe
    /// instances serve the same relays (e.g. 0.5 for two NS): poll-time free
    /// slots (and the reserve) are scaled by it, rounded down, before grants.
    pub share: f64,
    /// Grants one client (address prefix) may take per window whatever the
    /// room (see [`crate::clients`]).
    pub grants_per_client: u32,
    /// Fraction of a mount's room one client may take per window, when that
    /// is more than `grants_per_client` (a venue's NAT while room is
    /// plentiful).
    pub client_share: f64,
    /// Leading bits of an IPv4 address that make one client.
    pub client_prefix_v4: u8,
    /// Leading bits of an IPv6 address that make one client.
    pub client_prefix_v6: u8,
}

/// `[admin]`: the runtime control endpoint (drain and undrain relays).
/// Disabled unless a token is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Addresses to listen on (loopback by default).
    pub listen: Vec<SocketAddr>,
    /// The bearer token every request must carry; `None` disables the
    /// endpoint.
    pub token: Option<AdminToken>,
}

/// The admin bearer token. A secret: `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub(super) String);

impl AdminToken {
    /// The token's bytes, for a constant-time comparison.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// How one relay's status is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    /// Format, hence parser.
    pub kind: StatusKind,
    /// Path below the relay url (e.g. `/admin/stats`).
    pub path: String,
    /// Basic-auth credentials (`icecast-xml`).
    pub credentials: Option<Credentials>,
}

/// A relay's Basic-auth user and password (`icecast-xml`). `Debug` never
/// prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The Icecast admin user.
    pub user: String,
    pub(super) password: String,
}

impl Credentials {
    /// The password, for the Authorization header.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One `[[relay]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Unique name, used in logs, metrics and the status page.
    pub name: String,
    /// Base URL: the 302 Location is this plus the mount; polled too.
    /// Stored without a trailing slash.
    pub url: String,
    /// Base URL for listeners who came over TLS (`https://`, no trailing
    /// slash): the 302 of a request to `[http] tls_listen` goes here.
    pub https_url: Option<String>,
    /// What DNS answers for this relay.
    pub addresses: Vec<IpAddr>,
    /// Status format and path.
    pub status: StatusConfig,
    /// Relative weight in selection (default 1).
    pub weight: u32,
    /// Cap on listeners of the whole relay (all mounts).
    pub max_listeners: Option<u32>,
    /// Per-mount caps, for formats that do not report them (icecast-json) or
    /// to cap below Icecast's own limit.
    pub mount_max_listeners: BTreeMap<String, u32>,
    /// Uplink capacity in kbit/s; with known bitrates it bounds listeners.
    pub uplink_kbps: Option<u32>,
    /// Keep current listeners, send no new ones.
    pub drain: bool,
}

/// One `[[stream]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Unique name.
    pub name: String,
    /// Mount paths carrying this stream, each starting with `/`.
    pub mounts: Vec<String>,
    /// Balanced DNS names (lower-case FQDNs) for the whole stream.
    pub dns: Vec<Name>,
    /// Balanced DNS names per mount: only relays with room on that mount.
    pub mount_dns: BTreeMap<String, Vec<Name>>,
    /// Bitrate (kbit/s) assumed when a relay's status does not report one.
    pub bitrate_kbps: Option<u32>,
}

impl Config {
    /// The relay named `name`.
    pub fn relay(&self, name: &str) -> Option<&RelayConfig> {
        self.relays.iter().find(|r| r.name == name)
    }

    /// Every balanced DNS name with the stream it belongs to and, for a
    /// per-mount name, the mount.
    pub fn balanced_names(&self) -> impl Iterator<Item = (&Name, &StreamConfig, Option<&str>)> {
        self.streams.iter().flat_map(|s| {
            let whole = s.dns.iter().map(move |n| (n, s, None));
            let per_mount = s
                .mount_dns
                .iter()
                .flat_map(move |(m, names)| names.iter().map(move |n| (n, s, Some(m.as_str()))));
            whole.chain(per_mount)
        })
    }
}
