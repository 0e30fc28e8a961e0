//! The operator's TOML config, parsed once into typed, validated values.
//!
//! [`load`] reads the file, reports every problem it can find as a
//! [`Diagnostic`] with file, line and column (syntax errors, unknown keys,
//! bad values, cross-section mistakes such as a duplicate relay or a balanced
//! name outside every zone), loads the zone files the config points at, and
//! returns a [`Loaded`] only when nothing is an error. Serving code only ever
//! sees [`Config`]; raw TOML stays in [`raw`].
//!
//! Relative paths are relative to the config file's directory; durations are
//! strings such as `"500ms"`.

mod duration;
mod raw;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::icecast::StatusKind;
use crate::zones::ZoneSet;
use hickory_proto::rr::Name;
use raw::{RawAdmin, RawDns, RawHttp, RawPoll, RawRelay, RawSelect, RawStatus, RawStream};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A validated config plus the zones it points at: everything `serve` needs
/// from disk, swapped as one value on reload.
#[derive(Debug)]
pub struct Loaded {
    /// The validated config.
    pub config: Arc<Config>,
    /// The zone files of `[dns] zones`.
    pub zones: Arc<ZoneSet>,
    /// Warnings found while loading (the load succeeded).
    pub warnings: Diagnostics,
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
    /// UDP sockets (each with its own thread) per listen address; 0 = one per
    /// core.
    pub udp_workers: usize,
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
    /// Most client connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// `Retry-After` on a 503.
    pub retry_after: Duration,
    /// Accept loops (each on its own SO_REUSEPORT socket); 0 = one per core.
    pub workers: usize,
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
pub struct AdminToken(String);

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
    pub credentials: Option<(String, String)>,
}

/// One `[[relay]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Unique name, used in logs, metrics and the status page.
    pub name: String,
    /// Base URL: the 302 Location is this plus the mount; polled too.
    /// Stored without a trailing slash.
    pub url: String,
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

/// Loads and validates the config at `path` and the zones it names, exactly
/// as `serve` and reload do. `Err` carries every diagnostic (at least one
/// error); `Ok` carries the warnings.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic::error(
                path,
                0,
                0,
                format!("cannot read config: {e}"),
            )]));
        }
    };
    load_str(path, &text)
}

/// [`load`] for config text already in memory; `path` names the file in
/// diagnostics and anchors relative paths.
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, Diagnostics> {
    let mut cx = Cx {
        file: path,
        text,
        diags: Diagnostics::default(),
        zones_dir: None,
    };
    let config = cx.config();
    // Zones load even when other sections have errors, so one run of
    // `floe check` reports the problems of every file.
    let zones_dir = config
        .as_ref()
        .map(|c| c.dns.zones.clone())
        .or(cx.zones_dir.take());
    let zones = zones_dir.and_then(|dir| {
        let (zones, zd) = ZoneSet::load(&dir);
        cx.diags.0.extend(zd.0);
        zones
    });
    if let (Some(config), Some(zones)) = (&config, &zones) {
        cx.check_names_in_zones(config, zones);
    }
    match (config, zones) {
        (Some(config), Some(zones)) if !cx.diags.has_errors() => Ok(Loaded {
            config: Arc::new(config),
            zones: Arc::new(zones),
            warnings: cx.diags,
        }),
        _ => Err(cx.diags),
    }
}

/// Parses and validates config text without touching the zone files: the
/// config (when it has no error) and every diagnostic found.
pub fn parse(path: &Path, text: &str) -> (Option<Config>, Diagnostics) {
    let mut cx = Cx {
        file: path,
        text,
        diags: Diagnostics::default(),
        zones_dir: None,
    };
    let config = cx.config();
    let config = if cx.diags.has_errors() { None } else { config };
    (config, cx.diags)
}

/// Loading context: the file being read and what was found wrong so far.
struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
    diags: Diagnostics,
    /// `[dns] zones` as written, kept even when `[dns]` has errors.
    zones_dir: Option<PathBuf>,
}

const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:8053";
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";

impl Cx<'_> {
    /// 1-based line and column of a byte offset in the config text.
    /// The directory relative paths are resolved against.
    fn base_dir(&self) -> PathBuf {
        self.file.parent().unwrap_or(Path::new(".")).to_path_buf()
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, col) = span.map_or((0, 0), |s| self.line_col(s.start));
        self.diags
            .push(Diagnostic::error(self.file, line, col, message));
    }

    fn warning(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, col) = span.map_or((0, 0), |s| self.line_col(s.start));
        self.diags
            .push(Diagnostic::warning(self.file, line, col, message));
    }

    /// Deserializes one section, reporting its error (if any) with position.
    fn section<T: DeserializeOwned>(
        &mut self,
        what: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    e.span().or(Some(span)),
                    format!("{what}: {}", e.message().trim_end()),
                );
                None
            }
        }
    }

    fn config(&mut self) -> Option<Config> {
        let (table, errors) = DeTable::parse_recoverable(self.text);
        for e in &errors {
            self.error(e.span(), format!("TOML syntax: {}", e.message().trim_end()));
        }
        if !errors.is_empty() {
            return None;
        }
        let table = table.into_inner();
        let (mut dns, mut http, mut poll, mut select) = (None, None, None, None);
        let mut admin = None;
        let mut relays = Vec::new();
        let mut streams = Vec::new();
        let mut ok = true;
        for (key, value) in table {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "dns" => {
                    self.zones_dir = zones_key(&value).map(|z| self.base_dir().join(z));
                    dns = self
                        .section::<RawDns>("[dns]", value)
                        .or_else(|| fail(&mut ok));
                }
                "http" => {
                    http = self
                        .section::<RawHttp>("[http]", value)
                        .or_else(|| fail(&mut ok))
                }
                "poll" => {
                    poll = self
                        .section::<RawPoll>("[poll]", value)
                        .or_else(|| fail(&mut ok))
                }
                "select" => {
                    select = self
                        .section::<RawSelect>("[select]", value)
                        .or_else(|| fail(&mut ok))
                }
                "admin" => {
                    admin = self
                        .section::<RawAdmin>("[admin]", value)
                        .or_else(|| fail(&mut ok))
                }
                "relay" => self.array("relay", value, &mut relays, &mut ok),
                "stream" => self.array("stream", value, &mut streams, &mut ok),
                other => {
                    self.error(
                        Some(key_span),
                        format!("unknown section `{other}`; expected dns, http, poll, select, admin, relay or stream"),
                    );
                    ok = false;
                }
            }
        }
        let dns = self.dns(dns);
        let http = self.http(http);
        let poll = self.poll(poll);
        let select = self.select(select);
        let admin = self.admin(admin);
        let relays = self.relays(relays);
        let streams = self.streams(streams);
        let (dns, http, poll, select, admin, relays, streams) =
            (dns?, http?, poll?, select?, admin?, relays?, streams?);
        let config = Config {
            path: self.file.to_path_buf(),
            dns,
            http,
            poll,
            select,
            admin,
            relays,
            streams,
        };
        self.cross_checks(&config);
        ok.then_some(config)
    }

    /// Deserializes each element of an array of tables on its own, so one bad
    /// `[[relay]]` does not hide the errors of the next.
    fn array<T: DeserializeOwned>(
        &mut self,
        name: &str,
        value: Spanned<DeValue<'_>>,
        out: &mut Vec<T>,
        ok: &mut bool,
    ) {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(
                Some(span),
                format!("`{name}` must be an array of tables: write [[{name}]]"),
            );
            *ok = false;
            return;
        };
        for (i, item) in items.into_iter().enumerate() {
            match self.section::<T>(&format!("[[{name}]] #{}", i + 1), item) {
                Some(v) => out.push(v),
                None => *ok = false,
            }
        }
    }

    fn addr_list(
        &mut self,
        what: &str,
        list: Option<Vec<Spanned<String>>>,
        default: &str,
    ) -> Option<Vec<SocketAddr>> {
        let Some(list) = list else {
            return Some(vec![
                default.parse().expect("default listen address parses"),
            ]);
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in list {
            match item.get_ref().parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => {
                    self.error(
                        Some(item.span()),
                        format!("{what}: {:?} is not an address:port (e.g. \"127.0.0.1:8053\" or \"[::1]:8053\")", item.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn policy(
        &mut self,
        key: &str,
        v: Option<Spanned<String>>,
        default: DnsPolicy,
        allow_last_known: bool,
    ) -> DnsPolicy {
        let Some(v) = v else { return default };
        match v.get_ref().as_str() {
            "serve-all" => DnsPolicy::ServeAll,
            "nodata" => DnsPolicy::Nodata,
            "fallback" => DnsPolicy::Fallback,
            "last-known" if allow_last_known => DnsPolicy::LastKnown,
            other => {
                let choices = if allow_last_known {
                    "last-known, serve-all, nodata or fallback"
                } else {
                    "serve-all, nodata or fallback"
                };
                self.error(
                    Some(v.span()),
                    format!("[dns] {key}: unknown policy {other:?}; expected {choices}"),
                );
                default
            }
        }
    }

    fn dns(&mut self, raw: Option<RawDns>) -> Option<DnsConfig> {
        let raw = raw.unwrap_or_else(|| toml::from_str("").expect("empty [dns] deserializes"));
        let listen = self.addr_list("[dns] listen", raw.listen, DEFAULT_DNS_LISTEN);
        let base = self.base_dir();
        let zones = match raw.zones {
            Some(z) => base.join(z.into_inner()),
            None => base.join("zones"),
        };
        let answers = match raw.answers {
            Some(a) if !(1..=16).contains(a.get_ref()) => {
                self.error(Some(a.span()), "[dns] answers must be between 1 and 16");
                2
            }
            Some(a) => *a.get_ref() as usize,
            None => 2,
        };
        let ttl = raw.ttl.unwrap_or(Duration::from_secs(20));
        let min_ttl = raw.min_ttl.unwrap_or(Duration::from_secs(5)).min(ttl);
        let when_no_candidate = self.policy(
            "when_no_candidate",
            raw.when_no_candidate,
            DnsPolicy::ServeAll,
            false,
        );
        let before_first_poll = self.policy(
            "before_first_poll",
            raw.before_first_poll,
            DnsPolicy::ServeAll,
            false,
        );
        let when_stale = self.policy("when_stale", raw.when_stale, DnsPolicy::LastKnown, true);
        let mut fallback = Vec::new();
        for a in &raw.fallback {
            match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => fallback.push(ip),
                Err(_) => self.error(
                    Some(a.span()),
                    format!("[dns] fallback: {:?} is not an IP address", a.get_ref()),
                ),
            }
        }
        let uses_fixed =
            [when_no_candidate, before_first_poll, when_stale].contains(&DnsPolicy::Fallback);
        if uses_fixed && raw.fallback.is_empty() {
            self.error(
                None,
                "[dns]: a policy is \"fallback\" but `fallback` lists no addresses",
            );
        }
        Some(DnsConfig {
            listen: listen?,
            zones,
            answers,
            ttl,
            min_ttl,
            when_no_candidate,
            before_first_poll,
            when_stale,
            fallback,
            tcp_idle_timeout: raw.tcp_idle_timeout.unwrap_or(Duration::from_secs(10)),
            tcp_max_connections: raw.tcp_max_connections.unwrap_or(1024) as usize,
            udp_workers: raw.udp_workers.unwrap_or(0) as usize,
        })
    }

    fn http(&mut self, raw: Option<RawHttp>) -> Option<HttpConfig> {
        let raw = raw.unwrap_or_else(|| toml::from_str("").expect("empty [http] deserializes"));
        let listen = self.addr_list("[http] listen", raw.listen, DEFAULT_HTTP_LISTEN);
        let public_url = match raw.public_url {
            Some(u) => match parse_base_url(u.get_ref()) {
                Ok(url) => Some(url),
                Err(e) => {
                    self.error(Some(u.span()), format!("[http] public_url: {e}"));
                    None
                }
            },
            None => None,
        };
        let max_header_bytes = match raw.max_header_bytes {
            Some(v) if *v.get_ref() < 8192 => {
                self.error(
                    Some(v.span()),
                    "[http] max_header_bytes must be at least 8192",
                );
                8192
            }
            Some(v) => *v.get_ref() as usize,
            None => 8192,
        };
        Some(HttpConfig {
            listen: listen?,
            public_url,
            header_timeout: raw.header_timeout.unwrap_or(Duration::from_secs(5)),
            max_connections: raw.max_connections.unwrap_or(10_000) as usize,
            max_header_bytes,
            retry_after: raw.retry_after.unwrap_or(Duration::from_secs(10)),
            workers: raw.workers.unwrap_or(0) as usize,
        })
    }

    fn poll(&mut self, raw: Option<RawPoll>) -> Option<PollConfig> {
        let raw = raw.unwrap_or_else(|| toml::from_str("").expect("empty [poll] deserializes"));
        let interval = raw.interval.unwrap_or(Duration::from_secs(2));
        let timeout = raw.timeout.unwrap_or(Duration::from_secs(1));
        if interval < Duration::from_millis(100) {
            self.error(None, "[poll] interval must be at least 100ms");
        }
        if timeout.is_zero() {
            self.error(None, "[poll] timeout must be more than 0");
        }
        let mut count = |v: Option<Spanned<u32>>, name: &str| match v {
            Some(v) if *v.get_ref() == 0 => {
                self.error(Some(v.span()), format!("[poll] {name} must be at least 1"));
                1
            }
            Some(v) => *v.get_ref(),
            None => 2,
        };
        let rise = count(raw.rise, "rise");
        let fall = count(raw.fall, "fall");
        let jitter = match raw.jitter {
            Some(j) if !(0.0..=0.5).contains(j.get_ref()) => {
                self.error(Some(j.span()), "[poll] jitter must be between 0.0 and 0.5");
                0.1
            }
            Some(j) => *j.get_ref(),
            None => 0.1,
        };
        let settle = raw.settle.unwrap_or(Duration::from_millis(500));
        let grant_ttl = raw.grant_ttl.unwrap_or(interval * 3 + timeout + settle);
        if grant_ttl < settle + timeout {
            self.warning(None, "[poll] grant_ttl is shorter than settle + timeout: grants may expire before a poll sees their listeners, and relays can overfill");
        }
        let stale_after = raw.stale_after.unwrap_or((interval + timeout) * 5);
        Some(PollConfig {
            interval,
            timeout,
            rise,
            fall,
            jitter,
            settle,
            grant_ttl,
            stale_after,
        })
    }

    fn select(&mut self, raw: Option<RawSelect>) -> Option<SelectConfig> {
        let raw = raw.unwrap_or_else(|| toml::from_str("").expect("empty [select] deserializes"));
        let reserve = match raw.reserve {
            Some(r) if !(0.0..0.9).contains(r.get_ref()) => {
                self.error(
                    Some(r.span()),
                    "[select] reserve is a fraction of capacity from 0.0 to below 0.9",
                );
                0.0
            }
            Some(r) => *r.get_ref(),
            None => 0.0,
        };
        let unlimited_room = match raw.unlimited_room {
            Some(u) if *u.get_ref() == 0 => {
                self.error(Some(u.span()), "[select] unlimited_room must be at least 1");
                1000
            }
            Some(u) => *u.get_ref(),
            None => 1000,
        };
        let share = match raw.share {
            Some(s) if !(*s.get_ref() > 0.0 && *s.get_ref() <= 1.0) => {
                self.error(
                    Some(s.span()),
                    "[select] share is this instance's fraction of the free slots: more than 0.0, at most 1.0 (1 / number of floe instances)",
                );
                1.0
            }
            Some(s) => *s.get_ref(),
            None => 1.0,
        };
        Some(SelectConfig {
            reserve,
            unlimited_room,
            seed: raw.seed,
            share,
        })
    }

    fn admin(&mut self, raw: Option<RawAdmin>) -> Option<AdminConfig> {
        let raw = raw.unwrap_or_else(|| toml::from_str("").expect("empty [admin] deserializes"));
        let listen = self.addr_list("[admin] listen", raw.listen, DEFAULT_ADMIN_LISTEN)?;
        let (text, span, what) = match (raw.token, raw.token_file) {
            (None, None) => {
                return Some(AdminConfig {
                    listen,
                    token: None,
                });
            }
            (Some(_), Some(file)) => {
                self.error(
                    Some(file.span()),
                    "[admin]: give either token or token_file, not both",
                );
                return None;
            }
            (Some(token), None) => (token.get_ref().clone(), token.span(), "token"),
            (None, Some(file)) => {
                let path = self.base_dir().join(file.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) => (text, file.span(), "token_file"),
                    Err(e) => {
                        self.error(
                            Some(file.span()),
                            format!("[admin] token_file: cannot read {}: {e}", path.display()),
                        );
                        return None;
                    }
                }
            }
        };
        let token = text.trim();
        if token.is_empty() {
            self.error(Some(span), format!("[admin] {what}: the token is empty"));
            return None;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.error(
                Some(span),
                format!("[admin] {what}: the token must be printable ASCII without spaces (it is sent in an Authorization header)"),
            );
            return None;
        }
        if token.len() < 16 {
            self.warning(
                Some(span.clone()),
                format!("[admin] {what}: the token is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)"),
            );
        }
        if listen.is_empty() {
            self.error(
                Some(span),
                "[admin] listen is empty: give an address or remove the token to disable the endpoint",
            );
            return None;
        }
        for a in &listen {
            if !a.ip().is_loopback() {
                self.warning(
                    None,
                    format!("[admin] listen {a} is not a loopback address: the token travels unencrypted over plain HTTP; prefer loopback (and ssh) or a private network"),
                );
            }
        }
        Some(AdminConfig {
            listen,
            token: Some(AdminToken(token.to_string())),
        })
    }

    fn relays(&mut self, raws: Vec<RawRelay>) -> Option<Vec<RelayConfig>> {
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for raw in raws {
            let name = raw.name.get_ref().trim().to_string();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                self.error(
                    Some(raw.name.span()),
                    format!(
                        "relay name {name:?} must be non-empty letters, digits, '-', '_' or '.'"
                    ),
                );
                ok = false;
            }
            if let Some(first_line) = seen.get(&name) {
                self.error(
                    Some(raw.name.span()),
                    format!("duplicate relay name {name:?} (first defined on line {first_line})"),
                );
                ok = false;
            } else {
                let line = self.line_col(raw.name.span().start).0;
                seen.insert(name.clone(), line);
            }
            let url = match parse_base_url(raw.url.get_ref()) {
                Ok(u) => u.as_str().trim_end_matches('/').to_string(),
                Err(e) => {
                    self.error(Some(raw.url.span()), format!("relay {name:?} url: {e}"));
                    ok = false;
                    String::new()
                }
            };
            let mut addresses = Vec::new();
            for a in &raw.addresses {
                match a.get_ref().parse::<IpAddr>() {
                    Ok(ip) => addresses.push(ip),
                    Err(_) => {
                        self.error(
                            Some(a.span()),
                            format!(
                                "relay {name:?}: address {:?} is not an IPv4 or IPv6 address",
                                a.get_ref()
                            ),
                        );
                        ok = false;
                    }
                }
            }
            let status_span = raw.status.span();
            let status = match raw.status.into_inner() {
                RawStatus::IcecastXml {
                    user,
                    password,
                    path,
                } => StatusConfig {
                    kind: StatusKind::IcecastXml,
                    path: path.unwrap_or_else(|| "/admin/stats".into()),
                    credentials: Some((user, password)),
                },
                RawStatus::IcecastJson { path } => StatusConfig {
                    kind: StatusKind::IcecastJson,
                    path: path.unwrap_or_else(|| "/status-json.xsl".into()),
                    credentials: None,
                },
                RawStatus::Xslt { path } => StatusConfig {
                    kind: StatusKind::Xslt,
                    path: path.unwrap_or_else(|| "/floe-slots.xsl".into()),
                    credentials: None,
                },
            };
            if !status.path.starts_with('/') {
                self.error(
                    Some(status_span.clone()),
                    format!(
                        "relay {name:?}: status path {:?} must start with '/'",
                        status.path
                    ),
                );
                ok = false;
            }
            let weight = match raw.weight {
                Some(w) if *w.get_ref() == 0 => {
                    self.error(Some(w.span()), format!("relay {name:?}: weight must be at least 1 (use drain = true to take a relay out)"));
                    ok = false;
                    1
                }
                Some(w) => *w.get_ref(),
                None => 1,
            };
            for m in raw.mount_max_listeners.keys() {
                if !m.starts_with('/') {
                    self.error(Some(status_span.clone()), format!("relay {name:?}: mount_max_listeners key {m:?} must be a mount path starting with '/'"));
                    ok = false;
                }
            }
            out.push(RelayConfig {
                name,
                url,
                addresses,
                status,
                weight,
                max_listeners: raw.max_listeners,
                mount_max_listeners: raw.mount_max_listeners,
                uplink_kbps: raw.uplink_kbps,
                drain: raw.drain,
            });
        }
        ok.then_some(out)
    }

    fn dns_name(&mut self, stream: &str, raw: &Spanned<String>) -> Option<Name> {
        let s = raw.get_ref();
        match Name::from_ascii(s) {
            Ok(n) if n.is_fqdn() && !n.is_root() => Some(n.to_lowercase()),
            Ok(_) => {
                self.error(
                    Some(raw.span()),
                    format!(
                        "stream {stream:?}: DNS name {s:?} must be fully qualified, ending in '.'"
                    ),
                );
                None
            }
            Err(e) => {
                self.error(
                    Some(raw.span()),
                    format!("stream {stream:?}: {s:?} is not a DNS name: {e}"),
                );
                None
            }
        }
    }

    fn streams(&mut self, raws: Vec<RawStream>) -> Option<Vec<StreamConfig>> {
        let mut out = Vec::new();
        let mut ok = true;
        let mut names = HashSet::new();
        let mut mounts_seen: HashMap<String, String> = HashMap::new();
        let mut dns_seen: HashSet<Name> = HashSet::new();
        for raw in raws {
            let name = raw.name.get_ref().clone();
            if !names.insert(name.clone()) {
                self.error(
                    Some(raw.name.span()),
                    format!("duplicate stream name {name:?}"),
                );
                ok = false;
            }
            if raw.mounts.get_ref().is_empty() {
                self.error(
                    Some(raw.mounts.span()),
                    format!("stream {name:?} has no mounts"),
                );
                ok = false;
            }
            let mut mounts = Vec::new();
            for m in raw.mounts.get_ref() {
                let path = m.get_ref();
                if let Err(why) = check_mount_path(path) {
                    self.error(
                        Some(m.span()),
                        format!("stream {name:?}: mount {path:?} {why}"),
                    );
                    ok = false;
                    continue;
                }
                if let Some(other) = mounts_seen.insert(path.clone(), name.clone()) {
                    self.error(
                        Some(m.span()),
                        format!("mount {path:?} is listed twice (streams {other:?} and {name:?})"),
                    );
                    ok = false;
                    continue;
                }
                mounts.push(path.clone());
            }
            let mut dns = Vec::new();
            for d in &raw.dns {
                match self.dns_name(&name, d) {
                    Some(n) if !dns_seen.insert(n.clone()) => {
                        self.error(Some(d.span()), format!("DNS name {n} is used twice"));
                        ok = false;
                    }
                    Some(n) => dns.push(n),
                    None => ok = false,
                }
            }
            let mut mount_dns = BTreeMap::new();
            for (mount, list) in &raw.mount_dns {
                if !mounts.contains(mount) {
                    let span = list.first().map(|d| d.span()).unwrap_or(raw.name.span());
                    self.error(Some(span), format!("stream {name:?}: mount_dns names {mount:?}, which is not one of its mounts"));
                    ok = false;
                    continue;
                }
                let mut names = Vec::new();
                for d in list {
                    match self.dns_name(&name, d) {
                        Some(n) if !dns_seen.insert(n.clone()) => {
                            self.error(Some(d.span()), format!("DNS name {n} is used twice"));
                            ok = false;
                        }
                        Some(n) => names.push(n),
                        None => ok = false,
                    }
                }
                mount_dns.insert(mount.clone(), names);
            }
            out.push(StreamConfig {
                name,
                mounts,
                dns,
                mount_dns,
                bitrate_kbps: raw.bitrate_kbps,
            });
        }
        ok.then_some(out)
    }

    /// Checks that need more than one section.
    fn cross_checks(&mut self, config: &Config) {
        if config.relays.is_empty() {
            self.error(
                None,
                "no [[relay]] defined: floe needs at least one relay to send listeners to",
            );
        }
        if config.streams.is_empty() {
            self.error(
                None,
                "no [[stream]] defined: floe needs at least one stream to balance",
            );
        }
        let all_mounts: Vec<&str> = config
            .streams
            .iter()
            .flat_map(|s| s.mounts.iter().map(String::as_str))
            .collect();
        let any_dns = config.balanced_names().next().is_some();
        for relay in &config.relays {
            for m in relay.mount_max_listeners.keys() {
                if !all_mounts.contains(&m.as_str()) {
                    self.warning(
                        None,
                        format!(
                            "relay {:?}: mount_max_listeners names {m:?}, which no stream lists",
                            relay.name
                        ),
                    );
                }
            }
            if relay.status.kind == StatusKind::IcecastJson && relay.max_listeners.is_none() {
                let unknown: Vec<&str> = all_mounts
                    .iter()
                    .copied()
                    .filter(|m| !relay.mount_max_listeners.contains_key(*m))
                    .collect();
                if !unknown.is_empty() {
                    self.warning(
                        None,
                        format!(
                            "relay {:?} is polled with icecast-json, which carries no max_listeners, and the config gives no cap for {}: its room is unknown and treated as unlimited (set max_listeners or mount_max_listeners, or use icecast-xml / xslt)",
                            relay.name,
                            unknown.join(", ")
                        ),
                    );
                }
            }
            if any_dns && relay.addresses.is_empty() {
                self.warning(
                    None,
                    format!(
                        "relay {:?} has no addresses: DNS answers can never include it",
                        relay.name
                    ),
                );
            }
        }
    }

    /// Balanced names must sit inside a loaded zone and must not clash with
    /// static records there.
    fn check_names_in_zones(&mut self, config: &Config, zones: &ZoneSet) {
        for (name, stream, _) in config.balanced_names() {
            match zones.find(name) {
                None => self.error(
                    None,
                    format!("stream {:?}: balanced name {name} is not inside any zone loaded from {}", stream.name, config.dns.zones.display()),
                ),
                Some(zone) if zone.contains_name(name) => self.error(
                    None,
                    format!("stream {:?}: balanced name {name} also has records in {}; floe answers it from relay state, remove them there", stream.name, zone.file.display()),
                ),
                Some(_) => {}
            }
        }
    }
}

/// The string value of `zones` in a `[dns]` table, however broken the rest
/// of the table is.
fn zones_key(dns: &Spanned<DeValue<'_>>) -> Option<String> {
    let table = dns.get_ref().as_table()?;
    table
        .iter()
        .find(|(k, _)| k.get_ref() == "zones")
        .and_then(|(_, v)| v.get_ref().as_str())
        .map(str::to_string)
}

fn fail<T>(ok: &mut bool) -> Option<T> {
    *ok = false;
    None
}

/// A relay or public base URL: http(s), a host, no query or fragment, no
/// path beyond `/` (the mount is appended to it).
fn parse_base_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{s:?} must be a base URL without credentials, query or fragment"
        ));
    }
    if url.path() != "/" {
        return Err(format!(
            "{s:?} must be a base URL without a path (the mount is appended to it)"
        ));
    }
    Ok(url)
}

/// Mount paths are matched exactly against request paths, so only plain
/// absolute paths are allowed.
fn check_mount_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') || path.len() < 2 {
        return Err("must start with '/' and name a mount");
    }
    if path
        .bytes()
        .any(|b| b <= b' ' || b == b'?' || b == b'#' || b == b'%' || b >= 0x7f)
    {
        return Err("must not contain spaces, '?', '#', '%' or non-ASCII characters");
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") || path.contains("//") {
        return Err("must not contain '.', '..' or empty segments");
    }
    for reserved in ["/status", "/status.json", "/metrics", "/healthz"] {
        if path == reserved {
            return Err("is one of floe's own paths (/status, /status.json, /metrics, /healthz)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
