//! Validation: turns the sections of [`super::raw`] into the typed model,
//! filling in defaults and reporting every problem as a [`Diagnostic`] at the
//! line and column of the value at fault.
//!
//! Validation does not stop at the first problem: one run of `floe check`
//! names them all. A section that does not deserialize is reported and
//! replaced by its defaults so the other checks still run; cross-section
//! checks run only once every section could be built (a relay or stream
//! failing a check, a bad listen address or an unusable admin token stops
//! them), so they do not pile onto a mistake already reported.

use super::duration::Human;
use super::model::*;
use super::raw::{
    RawAcme, RawAdmin, RawDns, RawGroup, RawHttp, RawPeer, RawPeers, RawPoll, RawPool, RawRelay,
    RawSelect, RawStatus, RawStream, RawTlsCertificate,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::icecast::StatusKind;
use crate::zones::ZoneSet;
use hickory_proto::rr::Name;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

mod acme;
mod peers;
mod pools;

/// Fewest characters an admin token may have: 16 random characters are
/// enough that guessing, at the endpoint's limited rate of attempts, is
/// hopeless; shorter ones are usually words.
const MIN_ADMIN_TOKEN: usize = 16;

/// Whether `name` is fit to name a relay, group or pool.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Most bytes a secret file (`token_file`, `password_file`) may hold.
const MAX_SECRET_FILE: u64 = 4096;

/// The text of a secret file, read to at most [`MAX_SECRET_FILE`] bytes:
/// a path to a device or a huge file is an error, not a read that never
/// ends.
fn read_secret(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(std::io::Error::other(format!(
            "more than {MAX_SECRET_FILE} bytes: not a secret"
        )));
    }
    Ok(text)
}

/// A certificate that expires sooner than this gets a warning.
pub const TLS_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Validation context: the file being read and what was found wrong so far.
pub(super) struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
    /// Every problem found so far.
    pub(super) diags: Diagnostics,
    /// `[dns] zones` as written, kept even when `[dns]` has errors.
    pub(super) zones_dir: Option<PathBuf>,
    /// Where each balanced name is written, for the checks against the
    /// zones.
    name_spans: HashMap<Name, Range<usize>>,
    /// Where each `[acme] names` entry is written (or the `[acme]` table,
    /// for the default names), for the checks against the zones.
    acme_spans: HashMap<String, Range<usize>>,
    /// Where the `[acme]` table is.
    acme_span: Option<Range<usize>>,
}

impl<'a> Cx<'a> {
    /// A context for `text`, read from `file`, with nothing found yet.
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Cx {
            file,
            text,
            diags: Diagnostics::default(),
            zones_dir: None,
            name_spans: HashMap::new(),
            acme_spans: HashMap::new(),
            acme_span: None,
        }
    }

    /// The directory relative paths are resolved against.
    fn base_dir(&self) -> PathBuf {
        self.file.parent().unwrap_or(Path::new(".")).to_path_buf()
    }

    /// 1-based line and column of a byte offset in the config text.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
        (before.matches('\n').count() + 1, column)
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

    /// How many errors have been found so far: a step that adds none has
    /// found its input usable.
    fn errors(&self) -> usize {
        self.diags.0.iter().filter(|d| d.is_error()).count()
    }

    /// Deserializes one table, reporting its error (if any) with position.
    fn section<T: DeserializeOwned>(
        &mut self,
        what: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let span = value.span();
        T::deserialize(ValueDeserializer::from(value))
            .map_err(|e| {
                let message = format!("{what}: {}", e.message().trim_end());
                self.error(e.span().or(Some(span)), message);
            })
            .ok()
    }

    /// The whole config, or `None` when a section or a relay or stream is
    /// unusable; either way every problem found is in `diags`.
    pub(super) fn config(&mut self) -> Option<Config> {
        let (table, errors) = DeTable::parse_recoverable(self.text);
        for e in &errors {
            self.error(e.span(), format!("TOML syntax: {}", e.message().trim_end()));
        }
        if !errors.is_empty() {
            return None;
        }
        let (mut dns, mut http, mut poll, mut select, mut admin) = (None, None, None, None, None);
        let mut acme = None;
        let (mut relays, mut streams) = (Vec::new(), Vec::new());
        let (mut groups, mut pools): (Vec<RawGroup>, Vec<RawPool>) = (Vec::new(), Vec::new());
        let (mut peers, mut peer_list): (Option<RawPeers>, Vec<RawPeer>) = (None, Vec::new());
        let found = self.errors();
        for (key, value) in table.into_inner() {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "dns" => {
                    self.zones_dir = zones_key(&value).map(|z| self.base_dir().join(z));
                    dns = self.section("[dns]", value);
                }
                "http" => http = self.section("[http]", value),
                "poll" => poll = self.section("[poll]", value),
                "select" => select = self.section("[select]", value),
                "admin" => admin = self.section("[admin]", value),
                "acme" => {
                    self.acme_span = Some(value.span());
                    acme = Some(self.section::<RawAcme>("[acme]", value));
                }
                "relay" => relays = self.array("relay", value),
                "stream" => streams = self.array("stream", value),
                "group" => groups = self.array("group", value),
                "pool" => pools = self.array("pool", value),
                "peers" => peers = self.section("[peers]", value),
                "peer" => peer_list = self.array("peer", value),
                other => self.error(
                    Some(key_span),
                    format!("unknown section `{other}`; expected dns, http, acme, poll, select, admin, relay, stream, group, pool, peers or peer"),
                ),
            }
        }
        // A section that is not usable is checked as its defaults below, but
        // then there is no config.
        let ok = self.errors() == found;
        let dns = self.dns(dns.unwrap_or_default());
        let http = self.http(http.unwrap_or_default());
        let poll = self.poll(poll.unwrap_or_default());
        let share_given = select
            .as_ref()
            .is_some_and(|s: &RawSelect| s.share.is_some());
        let mut select = self.select(select.unwrap_or_default());
        let admin = self.admin(admin.unwrap_or_default());
        // `Some(None)`: an unusable `[acme]` (reported).
        let acme = acme.map(|raw| raw.and_then(|raw| self.acme(raw, http.as_ref())));
        let peers = self.peers(
            peers.unwrap_or_default(),
            peer_list,
            admin.as_ref(),
            &mut select,
            share_given,
        );
        let relays = self.relays(relays);
        let streams = self.streams(streams);
        let groups = relays
            .as_deref()
            .and_then(|relays| self.groups(groups, relays));
        let ecs_max = dns
            .as_ref()
            .filter(|d| d.ecs)
            .map(|d| (d.ecs_max_prefix_v4, d.ecs_max_prefix_v6));
        let pools = groups
            .as_deref()
            .and_then(|groups| self.pools(pools, groups, ecs_max));
        let config = Config {
            path: self.file.to_path_buf(),
            dns: dns?,
            http: http?,
            acme: match acme {
                Some(a) => Some(a?),
                None => None,
            },
            poll,
            select,
            admin: admin?,
            relays: relays?,
            streams: streams?,
            groups: groups?,
            pools: pools?,
            peers: peers?,
        };
        self.cross_checks(&config);
        ok.then_some(config)
    }

    /// Deserializes each element of an array of tables on its own, so one bad
    /// `[[relay]]` does not hide the errors of the next.
    fn array<T: DeserializeOwned>(&mut self, name: &str, value: Spanned<DeValue<'_>>) -> Vec<T> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            let message = format!("`{name}` must be an array of tables: write [[{name}]]");
            self.error(Some(span), message);
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| self.section(&format!("[[{name}]] #{}", i + 1), item))
            .collect()
    }

    /// `v` when present and `valid`, else `default`; an invalid value is
    /// reported at its span with `message`.
    fn checked<T: Copy>(
        &mut self,
        v: Option<Spanned<T>>,
        default: T,
        valid: impl Fn(T) -> bool,
        message: &str,
    ) -> T {
        match v {
            Some(v) if !valid(*v.get_ref()) => {
                self.error(Some(v.span()), message);
                default
            }
            Some(v) => *v.get_ref(),
            None => default,
        }
    }

    /// Parses every string of `list`, reporting each one that does not parse
    /// with `message(value)`; `None` when any did not.
    fn parse_each<T: FromStr>(
        &mut self,
        list: &[Spanned<String>],
        message: impl Fn(&str) -> String,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let found = self.errors();
        for item in list {
            match item.get_ref().parse() {
                Ok(v) => out.push(v),
                Err(_) => self.error(Some(item.span()), message(item.get_ref())),
            }
        }
        (self.errors() == found).then_some(out)
    }

    /// A `listen` list, or `[default]` when the key is absent.
    fn addr_list(
        &mut self,
        what: &str,
        list: Option<Vec<Spanned<String>>>,
        default: SocketAddr,
    ) -> Option<Vec<SocketAddr>> {
        let Some(list) = list else {
            return Some(vec![default]);
        };
        self.parse_each(&list, |a| {
            format!(
                "{what}: {a:?} is not an address:port (e.g. \"127.0.0.1:8053\" or \"[::1]:8053\")"
            )
        })
    }

    /// A list of networks (CIDR), or `default` when the key is absent.
    fn net_list(
        &mut self,
        what: &str,
        list: Option<&[Spanned<String>]>,
        default: &[&str],
    ) -> Option<Vec<ipnet::IpNet>> {
        let Some(list) = list else {
            return Some(default.iter().filter_map(|n| n.parse().ok()).collect());
        };
        self.parse_each(list, |n| {
            format!("{what}: {n:?} is not a network (e.g. \"192.0.2.0/24\" or \"2001:db8::/32\")")
        })
    }

    /// One `[dns]` policy key: `last-known` is only for `when_stale`
    /// (`stale`), where it is the default; elsewhere `serve-all` is.
    fn policy(&mut self, key: &str, v: Option<Spanned<String>>, stale: bool) -> DnsPolicy {
        use DnsPolicy::{Fallback, LastKnown, Nodata, ServeAll};
        let all = [LastKnown, ServeAll, Nodata, Fallback];
        let (allowed, choices) = if stale {
            (&all[..], "last-known, serve-all, nodata or fallback")
        } else {
            (&all[1..], "serve-all, nodata or fallback")
        };
        let default = allowed[0];
        let Some(v) = v else { return default };
        if let Some(&p) = allowed.iter().find(|p| p.as_str() == v.get_ref()) {
            return p;
        }
        let message = format!(
            "[dns] {key}: unknown policy {:?}; expected {choices}",
            v.get_ref()
        );
        self.error(Some(v.span()), message);
        default
    }

    fn dns(&mut self, raw: RawDns) -> Option<DnsConfig> {
        let listen = self.addr_list("[dns] listen", raw.listen, DEFAULT_DNS_LISTEN);
        let zones = raw
            .zones
            .map_or_else(|| "zones".into(), Spanned::into_inner);
        let answers = self.checked(
            raw.answers,
            2,
            |a| (1..=16).contains(&a),
            "[dns] answers must be between 1 and 16",
        ) as usize;
        let ttl = raw.ttl.map_or(Duration::from_secs(20), |d| d.0);
        let min_ttl = raw.min_ttl.map_or(Duration::from_secs(5), |d| d.0).min(ttl);
        let when_no_candidate = self.policy("when_no_candidate", raw.when_no_candidate, false);
        let before_first_poll = self.policy("before_first_poll", raw.before_first_poll, false);
        let when_stale = self.policy("when_stale", raw.when_stale, true);
        let fallback = self
            .parse_each(&raw.fallback, |a| {
                format!("[dns] fallback: {a:?} is not an IP address")
            })
            .unwrap_or_default();
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
            zones: self.base_dir().join(zones),
            answers,
            ttl,
            min_ttl,
            when_no_candidate,
            before_first_poll,
            when_stale,
            fallback,
            tcp_idle_timeout: raw
                .tcp_idle_timeout
                .map_or(Duration::from_secs(10), |d| d.0),
            tcp_max_connections: raw.tcp_max_connections.unwrap_or(1024) as usize,
            tcp_max_connections_per_client: self.checked(
                raw.tcp_max_connections_per_client,
                16,
                |n| n > 0,
                "[dns] tcp_max_connections_per_client must be at least 1",
            ),
            tcp_max_connection_age: raw
                .tcp_max_connection_age
                .map_or(Duration::from_secs(60), |d| d.0),
            rrl_responses_per_second: raw.rrl_responses_per_second.unwrap_or(1000),
            rrl_slip: self.checked(
                raw.rrl_slip,
                2,
                |n| n <= 100,
                "[dns] rrl_slip is from 0 (drop every answer over the rate) to 100",
            ),
            rrl_prefix_v4: self.checked(
                raw.rrl_prefix_v4,
                24,
                |p| (8..=32).contains(&p),
                "[dns] rrl_prefix_v4 is a prefix length from 8 to 32",
            ),
            rrl_prefix_v6: self.checked(
                raw.rrl_prefix_v6,
                56,
                |p| (16..=128).contains(&p),
                "[dns] rrl_prefix_v6 is a prefix length from 16 to 128",
            ),
            diagnostic_txt: raw.diagnostic_txt.unwrap_or(true),
            rrl_exempt: self.net_list(
                "[dns] rrl_exempt",
                raw.rrl_exempt.as_deref(),
                &["127.0.0.0/8", "::1/128"],
            )?,
            udp_workers: raw.udp_workers.unwrap_or(0) as usize,
            ecs: raw.ecs.unwrap_or(true),
            ecs_max_prefix_v4: self.checked(
                raw.ecs_max_prefix_v4,
                24,
                |p| (1..=32).contains(&p),
                "[dns] ecs_max_prefix_v4 is a prefix length from 1 to 32",
            ),
            ecs_max_prefix_v6: self.checked(
                raw.ecs_max_prefix_v6,
                56,
                |p| (1..=128).contains(&p),
                "[dns] ecs_max_prefix_v6 is a prefix length from 1 to 128",
            ),
        })
    }

    fn http(&mut self, raw: RawHttp) -> Option<HttpConfig> {
        let listen = self.addr_list("[http] listen", raw.listen, DEFAULT_HTTP_LISTEN);
        let public_url = raw.public_url.and_then(|u| {
            parse_base_url(u.get_ref())
                .map_err(|e| self.error(Some(u.span()), format!("[http] public_url: {e}")))
                .ok()
        });
        let max_header_bytes = self.checked(
            raw.max_header_bytes,
            8192,
            |v| v >= 8192,
            "[http] max_header_bytes must be at least 8192",
        ) as usize;
        let diagnostics_from = self.net_list(
            "[http] diagnostics_from",
            raw.diagnostics_from.as_deref(),
            &["0.0.0.0/0", "::/0"],
        )?;
        let (proxy_protocol_listen, trusted_proxies) = self.proxies(
            raw.proxy_protocol_listen,
            raw.trusted_proxies.as_deref(),
            listen.as_deref().unwrap_or_default(),
        )?;
        let tls_listen = self.tls_listen(
            raw.tls_listen,
            listen.as_deref().unwrap_or_default(),
            &proxy_protocol_listen,
            !raw.tls_certificate.is_empty() || self.acme_span.is_some(),
        );
        let tls_certificates = self.tls_certificates(raw.tls_certificate, public_url.as_ref());
        let (listen, tls_listen) = (listen?, tls_listen?);
        let public = listen
            .iter()
            .chain(&proxy_protocol_listen)
            .chain(&tls_listen)
            .any(|a| !a.ip().is_loopback());
        if public && raw.diagnostics_from.is_none() {
            self.warning(
                None,
                "[http] listens beyond loopback and serves /status, /status.json, /metrics and /explain to everyone: set diagnostics_from to the networks that may read them (see docs/robustness.md)",
            );
        }
        Some(HttpConfig {
            listen,
            public_url,
            header_timeout: raw.header_timeout.map_or(Duration::from_secs(5), |d| d.0),
            max_connections: raw.max_connections.unwrap_or(10_000) as usize,
            max_connections_per_client: self.checked(
                raw.max_connections_per_client,
                64,
                |n| n > 0,
                "[http] max_connections_per_client must be at least 1",
            ),
            max_connection_age: raw
                .max_connection_age
                .map_or(Duration::from_secs(60), |d| d.0),
            write_timeout: raw.write_timeout.map_or(Duration::from_secs(10), |d| d.0),
            diagnostics_from,
            metrics_per_mount: raw.metrics_per_mount.unwrap_or(true),
            max_header_bytes,
            retry_after: raw.retry_after.map_or(Duration::from_secs(10), |d| d.0),
            workers: raw.workers.unwrap_or(0) as usize,
            proxy_protocol_listen,
            trusted_proxies,
            cors_origins: self.cors_origins(raw.cors_origins.as_deref()),
            tls_listen,
            tls_certificates: Arc::new(tls_certificates),
            tls_redirect_to_http: raw.tls_redirect_to_http.unwrap_or(false),
        })
    }

    /// `[http] tls_listen`: addresses of no other listener, and
    /// certificates to serve on them.
    fn tls_listen(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        listen: &[SocketAddr],
        proxy_listen: &[SocketAddr],
        has_certificates: bool,
    ) -> Option<Vec<SocketAddr>> {
        let Some(raw) = raw else {
            return Some(Vec::new());
        };
        let at = raw.span();
        let raw = raw.into_inner();
        let tls: Vec<SocketAddr> = self.parse_each(&raw, |a| {
            format!("[http] tls_listen: {a:?} is not an address:port (e.g. \"0.0.0.0:443\")")
        })?;
        for (addr, item) in tls.iter().zip(&raw) {
            if addr.port() != 0 && (listen.contains(addr) || proxy_listen.contains(addr)) {
                self.error(
                    Some(item.span()),
                    format!("[http] tls_listen: {addr} is also in [http] listen or proxy_protocol_listen; a listener either speaks TLS or does not"),
                );
            }
        }
        if !tls.is_empty() && !has_certificates {
            self.error(
                Some(at),
                "[http] tls_listen needs at least one [[http.tls_certificate]] (cert = \"...pem\", key = \"...pem\") or an [acme] section",
            );
        }
        Some(tls)
    }

    /// `[[http.tls_certificate]]`: each loaded and checked (key matches,
    /// names, validity: an error once expired, a warning within
    /// [`TLS_EXPIRY_WARNING`]); an `https` `public_url` must be covered.
    fn tls_certificates(
        &mut self,
        raws: Vec<RawTlsCertificate>,
        public_url: Option<&url::Url>,
    ) -> crate::tls::CertStore {
        use crate::tls::{Certificate, TlsError};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut certs = Vec::new();
        let base = self.base_dir();
        for raw in raws {
            let (cert_path, key_path) =
                (base.join(raw.cert.get_ref()), base.join(raw.key.get_ref()));
            match Certificate::load(&cert_path, &key_path) {
                Ok(cert) => {
                    let names = cert.names.join(", ");
                    let days = (cert.not_after - now).div_euclid(86_400);
                    if cert.not_after <= now {
                        self.error(
                            Some(raw.cert.span()),
                            format!(
                                "[http] tls_certificate: {} ({names}) expired {} days ago",
                                cert_path.display(),
                                -days
                            ),
                        );
                    } else if cert.not_after - now < TLS_EXPIRY_WARNING.as_secs() as i64 {
                        self.warning(
                            Some(raw.cert.span()),
                            format!(
                                "[http] tls_certificate: {} ({names}) expires in {days} days",
                                cert_path.display()
                            ),
                        );
                    }
                    if cert.not_before > now {
                        self.warning(
                            Some(raw.cert.span()),
                            format!(
                                "[http] tls_certificate: {} ({names}) is not valid yet",
                                cert_path.display()
                            ),
                        );
                    }
                    certs.push(cert);
                }
                Err(e) => {
                    let span = match &e {
                        TlsError::NoKey { .. } | TlsError::KeyMismatch { .. } => raw.key.span(),
                        TlsError::Read { path, .. } | TlsError::TooLarge { path }
                            if *path == key_path =>
                        {
                            raw.key.span()
                        }
                        _ => raw.cert.span(),
                    };
                    self.error(Some(span), format!("[http] tls_certificate: {e}"));
                }
            }
        }
        let store = crate::tls::CertStore::new(certs);
        if let Some(url) = public_url.filter(|u| u.scheme() == "https")
            && let Some(host) = url.host_str()
            && !store.certificates().is_empty()
            && !store
                .certificates()
                .iter()
                .any(|c| c.covers(&host.to_ascii_lowercase()))
        {
            self.warning(
                None,
                format!(
                    "[http] public_url {url} names {host}, which no [[http.tls_certificate]] covers"
                ),
            );
        }
        store
    }

    /// `[http] cors_origins`: `*` or web origins (`scheme://host[:port]`),
    /// each normalized to lower case; `["*"]` when absent.
    fn cors_origins(&mut self, raw: Option<&[Spanned<String>]>) -> Vec<Box<str>> {
        let Some(list) = raw else {
            return vec!["*".into()];
        };
        let mut out = Vec::new();
        for item in list {
            let v = item.get_ref().trim();
            if v == "*" {
                out.push("*".into());
                continue;
            }
            let origin = url::Url::parse(v).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && !v.ends_with('/')
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
            });
            match origin {
                Some(u) => out.push(u.origin().ascii_serialization().into()),
                None => self.error(
                    Some(item.span()),
                    format!("[http] cors_origins: {v:?} is not \"*\" or a web origin such as \"https://radio.example.org\" (scheme, host and optional port; no path)"),
                ),
            }
        }
        out
    }

    /// `[http] proxy_protocol_listen` and `trusted_proxies`: a PROXY
    /// listener needs someone to trust, and takes no address of `listen`.
    fn proxies(
        &mut self,
        raw_listen: Option<Spanned<Vec<Spanned<String>>>>,
        raw_trusted: Option<&[Spanned<String>]>,
        listen: &[SocketAddr],
    ) -> Option<(Vec<SocketAddr>, Vec<ipnet::IpNet>)> {
        let trusted = self.net_list("[http] trusted_proxies", raw_trusted, &[]);
        if let (Some(nets), Some(items)) = (&trusted, raw_trusted) {
            for (net, item) in nets.iter().zip(items) {
                if net.prefix_len() == 0 {
                    self.warning(
                        Some(item.span()),
                        format!("[http] trusted_proxies: {net} trusts every address: any client can then choose its own address with X-Forwarded-For or a PROXY header"),
                    );
                }
            }
        }
        let Some(raw_listen) = raw_listen else {
            return Some((Vec::new(), trusted?));
        };
        let at = raw_listen.span();
        let raw_listen = raw_listen.into_inner();
        let proxy_listen: Vec<SocketAddr> = self.parse_each(&raw_listen, |a| {
            format!(
                "[http] proxy_protocol_listen: {a:?} is not an address:port (e.g. \"127.0.0.1:8081\")"
            )
        })?;
        for (addr, item) in proxy_listen.iter().zip(&raw_listen) {
            if addr.port() != 0 && listen.contains(addr) {
                self.error(
                    Some(item.span()),
                    format!("[http] proxy_protocol_listen: {addr} is also in [http] listen; a listener either expects PROXY headers or does not"),
                );
            }
        }
        let trusted = trusted?;
        if !proxy_listen.is_empty() && trusted.is_empty() {
            self.error(
                Some(at),
                "[http] proxy_protocol_listen needs trusted_proxies: the networks of the load balancers that may send PROXY headers (connections from anywhere else are closed at once)",
            );
        }
        Some((proxy_listen, trusted))
    }

    fn poll(&mut self, raw: RawPoll) -> PollConfig {
        let span = |d: &Option<Spanned<Human>>| d.as_ref().map(Spanned::span);
        let (interval_at, timeout_at) = (span(&raw.interval), span(&raw.timeout));
        let interval = raw
            .interval
            .map_or(Duration::from_secs(2), |d| d.into_inner().0);
        let timeout = raw
            .timeout
            .map_or(Duration::from_secs(1), |d| d.into_inner().0);
        if interval < Duration::from_millis(100) {
            self.error(interval_at, "[poll] interval must be at least 100ms");
        }
        if timeout.is_zero() {
            self.error(timeout_at, "[poll] timeout must be more than 0");
        }
        let rise = self.checked(raw.rise, 2, |n| n > 0, "[poll] rise must be at least 1");
        let fall = self.checked(raw.fall, 2, |n| n > 0, "[poll] fall must be at least 1");
        let jitter = self.checked(
            raw.jitter,
            0.1,
            |j| (0.0..=0.5).contains(&j),
            "[poll] jitter must be between 0.0 and 0.5",
        );
        let settle = raw.settle.map_or(Duration::from_millis(500), |d| d.0);
        let grant_ttl = raw
            .grant_ttl
            .map_or(interval * 3 + timeout + settle, |d| d.0);
        if grant_ttl < settle + timeout {
            self.warning(None, "[poll] grant_ttl is shorter than settle + timeout: grants may expire before a poll sees their listeners, and relays can overfill");
        }
        let stale_after = raw.stale_after.map_or((interval + timeout) * 5, |d| d.0);
        PollConfig {
            interval,
            timeout,
            rise,
            fall,
            jitter,
            settle,
            grant_ttl,
            stale_after,
        }
    }

    fn select(&mut self, raw: RawSelect) -> SelectConfig {
        SelectConfig {
            reserve: self.checked(
                raw.reserve,
                0.0,
                |r| (0.0..0.9).contains(&r),
                "[select] reserve is a fraction of capacity from 0.0 to below 0.9",
            ),
            unlimited_room: self.checked(
                raw.unlimited_room,
                1000,
                |u| u > 0,
                "[select] unlimited_room must be at least 1",
            ),
            seed: raw.seed,
            share: self.checked(
                raw.share,
                1.0,
                |s| s > 0.0 && s <= 1.0,
                "[select] share is this instance's fraction of the free slots: more than 0.0, at most 1.0 (1 / number of floe instances)",
            ),
            grants_per_client: self.checked(
                raw.grants_per_client,
                4,
                |g| g > 0,
                "[select] grants_per_client must be at least 1",
            ),
            client_share: self.checked(
                raw.client_share,
                0.25,
                |s| s > 0.0 && s <= 1.0,
                "[select] client_share is a fraction of a mount's room: more than 0.0, at most 1.0",
            ),
            client_prefix_v4: self.checked(
                raw.client_prefix_v4,
                32,
                |p| (8..=32).contains(&p),
                "[select] client_prefix_v4 is a prefix length from 8 to 32",
            ),
            client_prefix_v6: self.checked(
                raw.client_prefix_v6,
                64,
                |p| (16..=128).contains(&p),
                "[select] client_prefix_v6 is a prefix length from 16 to 128",
            ),
        }
    }

    fn admin(&mut self, raw: RawAdmin) -> Option<AdminConfig> {
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
                match read_secret(&path) {
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
        if token.len() < MIN_ADMIN_TOKEN {
            self.error(
                Some(span),
                format!("[admin] {what}: the token has {} characters, fewer than {MIN_ADMIN_TOKEN}; use a long random one (e.g. `openssl rand -hex 32`)", token.len()),
            );
            return None;
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

    /// An `icecast-xml` relay's password: given inline, or read from
    /// `password_file` (relative to the config; a reload reads it again).
    fn relay_password(
        &mut self,
        relay: &str,
        span: &Range<usize>,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Option<String> {
        let password = match (inline, file) {
            (Some(p), None) => p,
            (None, Some(file)) => {
                let path = self.base_dir().join(file);
                match read_secret(&path) {
                    // One line: a trailing newline is not part of it.
                    Ok(text) => text.trim_end_matches(['\n', '\r']).to_string(),
                    Err(e) => {
                        self.error(
                            Some(span.clone()),
                            format!(
                                "relay {relay:?}: password_file: cannot read {}: {e}",
                                path.display()
                            ),
                        );
                        return None;
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.error(
                    Some(span.clone()),
                    format!("relay {relay:?}: give either password or password_file, not both"),
                );
                return None;
            }
            (None, None) => {
                self.error(
                    Some(span.clone()),
                    format!("relay {relay:?}: the icecast-xml status needs a password or a password_file"),
                );
                return None;
            }
        };
        Some(password)
    }

    /// Reports `name` (a `what`) when it was seen before, else records it.
    fn unique(
        &mut self,
        seen: &mut HashMap<String, usize>,
        name: &str,
        span: &std::ops::Range<usize>,
        what: &str,
    ) {
        if let Some(first) = seen.get(name) {
            self.error(
                Some(span.clone()),
                format!("duplicate {what} name {name:?} (first defined on line {first})"),
            );
        } else {
            let line = self.line_col(span.start).0;
            seen.insert(name.to_string(), line);
        }
    }

    fn relays(&mut self, raws: Vec<RawRelay>) -> Option<Vec<RelayConfig>> {
        let mut out = Vec::new();
        let found = self.errors();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for raw in raws {
            let name = raw.name.get_ref().trim().to_string();
            if !valid_name(&name) {
                self.error(
                    Some(raw.name.span()),
                    format!(
                        "relay name {name:?} must be non-empty letters, digits, '-', '_' or '.'"
                    ),
                );
            }
            self.unique(&mut seen, &name, &raw.name.span(), "relay");
            let url = match parse_base_url(raw.url.get_ref()) {
                Ok(u) => u.as_str().trim_end_matches('/').to_string(),
                Err(e) => {
                    self.error(Some(raw.url.span()), format!("relay {name:?} url: {e}"));
                    String::new()
                }
            };
            let https_url =
                raw.https_url
                    .as_ref()
                    .and_then(|u| match parse_base_url(u.get_ref()) {
                        Ok(parsed) if parsed.scheme() == "https" => {
                            Some(parsed.as_str().trim_end_matches('/').to_string())
                        }
                        Ok(_) => {
                            self.error(
                                Some(u.span()),
                                format!(
                                    "relay {name:?} https_url: {:?} is not an https:// URL",
                                    u.get_ref()
                                ),
                            );
                            None
                        }
                        Err(e) => {
                            self.error(Some(u.span()), format!("relay {name:?} https_url: {e}"));
                            None
                        }
                    });
            let addresses = self
                .parse_each(&raw.addresses, |a| {
                    format!("relay {name:?}: address {a:?} is not an IPv4 or IPv6 address")
                })
                .unwrap_or_default();
            let status_span = raw.status.span();
            let (kind, path, default_path, credentials) = match raw.status.into_inner() {
                RawStatus::IcecastXml {
                    user,
                    password,
                    password_file,
                    path,
                } => {
                    let password =
                        self.relay_password(&name, &status_span, password, password_file);
                    let credentials = password.map(|password| Credentials { user, password });
                    (StatusKind::IcecastXml, path, "/admin/stats", credentials)
                }
                RawStatus::IcecastJson { path } => {
                    (StatusKind::IcecastJson, path, "/status-json.xsl", None)
                }
                RawStatus::Xslt { path } => (StatusKind::Xslt, path, "/floe-slots.xsl", None),
            };
            let path = path.unwrap_or_else(|| default_path.into());
            let clear_text = url::Url::parse(&url).is_ok_and(|u| {
                u.scheme() == "http"
                    && !u.host_str().is_some_and(|h| {
                        h == "localhost"
                            || h.trim_matches(['[', ']'])
                                .parse::<std::net::IpAddr>()
                                .is_ok_and(|ip| ip.is_loopback())
                    })
            });
            if credentials.is_some() && clear_text {
                self.warning(
                    Some(status_span.clone()),
                    format!("relay {name:?}: the icecast-xml user and password go in clear text over http:// to a host that is not loopback; use an https:// url, or the xslt kind, which needs no credentials"),
                );
            }
            if !path.starts_with('/') {
                self.error(
                    Some(status_span.clone()),
                    format!("relay {name:?}: status path {path:?} must start with '/'"),
                );
            }
            let weight = self.checked(
                raw.weight,
                1,
                |w| w > 0,
                &format!(
                    "relay {name:?}: weight must be at least 1 (use drain = true to take a relay out)"
                ),
            );
            for m in raw.mount_max_listeners.keys() {
                if !m.starts_with('/') {
                    self.error(Some(status_span.clone()), format!("relay {name:?}: mount_max_listeners key {m:?} must be a mount path starting with '/'"));
                }
            }
            out.push(RelayConfig {
                name,
                url,
                https_url,
                addresses,
                status: StatusConfig {
                    kind,
                    path,
                    credentials,
                },
                weight,
                max_listeners: raw.max_listeners,
                mount_max_listeners: raw.mount_max_listeners,
                uplink_kbps: raw.uplink_kbps,
                drain: raw.drain,
            });
        }
        (self.errors() == found).then_some(out)
    }

    /// A stream's balanced names, each fully qualified, lower-cased and not
    /// already used (`seen`); a bad one is reported.
    fn dns_names(
        &mut self,
        stream: &str,
        list: &[Spanned<String>],
        seen: &mut HashSet<Name>,
    ) -> Vec<Name> {
        let mut out = Vec::new();
        for raw in list {
            let s = raw.get_ref();
            let message = match Name::from_ascii(s) {
                Ok(n) if n.is_fqdn() && !n.is_root() => {
                    let n = n.to_lowercase();
                    if seen.insert(n.clone()) {
                        self.name_spans.insert(n.clone(), raw.span());
                        out.push(n);
                        continue;
                    }
                    format!("DNS name {n} is used twice")
                }
                Ok(_) => format!(
                    "stream {stream:?}: DNS name {s:?} must be fully qualified, ending in '.'"
                ),
                Err(e) => format!("stream {stream:?}: {s:?} is not a DNS name: {e}"),
            };
            self.error(Some(raw.span()), message);
        }
        out
    }

    fn streams(&mut self, raws: Vec<RawStream>) -> Option<Vec<StreamConfig>> {
        let mut out = Vec::new();
        let found = self.errors();
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
            }
            if raw.mounts.get_ref().is_empty() {
                self.error(
                    Some(raw.mounts.span()),
                    format!("stream {name:?} has no mounts"),
                );
            }
            let mut mounts = Vec::new();
            for m in raw.mounts.get_ref() {
                let path = m.get_ref();
                if let Err(why) = check_mount_path(path) {
                    self.error(
                        Some(m.span()),
                        format!("stream {name:?}: mount {path:?} {why}"),
                    );
                } else if let Some(other) = mounts_seen.insert(path.clone(), name.clone()) {
                    self.error(
                        Some(m.span()),
                        format!("mount {path:?} is listed twice (streams {other:?} and {name:?})"),
                    );
                } else {
                    mounts.push(path.clone());
                }
            }
            let dns = self.dns_names(&name, &raw.dns, &mut dns_seen);
            let mut mount_dns = BTreeMap::new();
            for (mount, list) in &raw.mount_dns {
                if mounts.contains(mount) {
                    let names = self.dns_names(&name, list, &mut dns_seen);
                    mount_dns.insert(mount.clone(), names);
                } else {
                    let span = list.first().map(|d| d.span()).unwrap_or(raw.name.span());
                    self.error(Some(span), format!("stream {name:?}: mount_dns names {mount:?}, which is not one of its mounts"));
                }
            }
            out.push(StreamConfig {
                name,
                mounts,
                dns,
                mount_dns,
                bitrate_kbps: raw.bitrate_kbps,
            });
        }
        (self.errors() == found).then_some(out)
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
    pub(super) fn check_names_in_zones(&mut self, config: &Config, zones: &ZoneSet) {
        for (name, stream, _) in config.balanced_names() {
            let at = self.name_spans.get(name).cloned();
            match zones.find(name) {
                None => self.error(
                    at,
                    format!("stream {:?}: balanced name {name} is not inside any zone loaded from {}", stream.name, config.dns.zones.display()),
                ),
                Some(zone) if zone.contains_name(name) => self.error(
                    at,
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

/// A relay or public base URL: http(s), a host, no query or fragment, no
/// path beyond `/` (the mount is appended to it).
pub(super) fn parse_base_url(s: &str) -> Result<url::Url, String> {
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
    if ["/status", "/status.json", "/metrics", "/healthz"].contains(&path) {
        return Err("is one of floe's own paths (/status, /status.json, /metrics, /healthz)");
    }
    Ok(())
}
