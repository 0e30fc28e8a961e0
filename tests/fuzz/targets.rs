//! The fuzz targets: one function per parser or handler that takes bytes
//! from outside, each asserting what must hold for any input (a panic is a
//! finding). Plain Rust over floe's public API, so two crates build it:
//! `tests/fuzz_corpus.rs` replays the corpus as a normal test, and the AFL
//! binary (`tests/fuzz/src/main.rs`, run by `tests/fuzz/run`) fuzzes it.
//!
//! The DNS and HTTP targets answer from one fixed world built once: the
//! config and zone below, and a snapshot in which the relays reported the
//! Icecast fixtures (`tests/fixtures/icecast`), one relay down, one full,
//! one drained.

use floe::config::{self, Config};
use floe::diagnostic::Diagnostics;
use floe::dns::{self, DnsState, FloeHandler, Plan, ecs, fast, handler};
use floe::grants::GrantSample;
use floe::health::{Health, PollFailure, PollOutcome};
use floe::http::routes::OnQuiet;
use floe::http::{self, forwarded, proxy, routes};
use floe::icecast::{self, RelayStatus, StatusKind};
use floe::poll::http1::{Progress, Response};
use floe::select;
use floe::snapshot::{RelayObservation, ReloadReport, Snapshot, Snapshots, Stamp, Topology};
use floe::zones::ZoneSet;
use hickory_proto::op::{Edns, Message, MessageType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hyper::header::{HeaderName, HeaderValue, LOCATION};
use hyper::{Method, StatusCode};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

/// A fuzz target: takes any bytes, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name (the corpus directory `tests/fuzz/corpus/<name>`,
/// and the AFL binary's first argument).
pub const TARGETS: &[(&str, Target)] = &[
    ("dns_fast", dns_fast),
    ("dns_handler", dns_handler),
    ("dns_differential", dns_differential),
    ("dns_truncated", dns_truncated),
    ("dns_ecs", dns_ecs),
    ("http_routes", http_routes),
    ("http_fast", http_fast),
    ("proxy_header", proxy_header),
    ("peer_answer", peer_answer),
    ("poll_response", poll_response),
    ("icecast_xml", icecast_xml),
    ("icecast_json", icecast_json),
    ("icecast_xslt", icecast_xslt),
    ("config", config),
    ("zones", zones),
    ("acme_account", acme_account),
];

/// The HTTP-01 token live in the world (its key authorization is
/// `<token>.thumbprint`).
const ACME_TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

/// The world's config: seven relays in every state a poll gives, two
/// streams (one that no relay carries), per-mount names, listener pools
/// (a hall preferring a venue group, a partner's network with an
/// exclusive relay).
const CONFIG: &str = r#"
[dns]
zones = "zones"
answers = 2
[http]
public_url = "http://stream.example.org"
diagnostics_from = ["127.0.0.0/8"]
[poll]
stale_after = "100000h"
[select]
seed = 7
grants_per_client = 1000000000
[[relay]]
name = "r1"
url = "http://r1.example.org:8000"
addresses = ["192.0.2.1", "2001:db8::1"]
status = { kind = "xslt" }
[[relay]]
name = "r2"
url = "http://r2.example.org:8000"
addresses = ["192.0.2.2", "2001:db8::2"]
status = { kind = "icecast-xml", user = "admin", password = "x" }
[[relay]]
name = "r3"
url = "https://r3.example.org"
addresses = ["192.0.2.3"]
status = { kind = "icecast-json" }
mount_max_listeners = { "/live.ogg" = 200, "/live.mp3" = 200 }
weight = 2
[[relay]]
name = "r4"
url = "http://r4.example.org:8000"
addresses = ["2001:db8::4"]
status = { kind = "xslt" }
[[relay]]
name = "r5"
url = "http://r5.example.org:8000"
addresses = ["192.0.2.5"]
status = { kind = "xslt" }
[[relay]]
name = "r6"
url = "http://r6.example.org:8000"
addresses = ["192.0.2.6", "2001:db8::6"]
status = { kind = "xslt" }
drain = true
[[relay]]
name = "r7"
url = "http://r7.example.org:8000"
addresses = ["192.0.2.7"]
status = { kind = "xslt" }
[[group]]
name = "venue"
relays = ["r1", "r3"]
[[group]]
name = "partner"
relays = ["r7"]
exclusive = true
[[pool]]
name = "hall"
networks = ["10.1.0.0/16", "10.1.5.0/24", "2001:db8:1::/48"]
order = ["venue", "*"]
[[pool]]
name = "partner-net"
networks = ["10.9.0.0/16"]
order = ["partner"]
[[stream]]
name = "live"
mounts = ["/live.ogg", "/live.mp3"]
dns = ["live.stream.example.org."]
mount_dns = { "/live.ogg" = ["live-ogg.stream.example.org."], "/live.mp3" = ["live-mp3.stream.example.org."] }
[[stream]]
name = "talk"
mounts = ["/talk.ogg"]
dns = ["talk.stream.example.org."]
"#;

/// The world's zone: apex SOA, NS with glue, A and AAAA, a CNAME, an empty
/// non-terminal (`b` above `a.b`), a delegation with glue, a wildcard, and
/// a TXT set too big for 512 bytes.
const ZONE: &str = r#"$ORIGIN stream.example.org.
$TTL 300
@ 120 IN SOA ns1.stream.example.org. hostmaster.example.org. ( 1 3600 600 1209600 60 )
@ IN NS ns1.stream.example.org.
@ IN NS ns2.stream.example.org.
ns1 IN A 192.0.2.53
ns2 IN AAAA 2001:db8::53
@ IN A 192.0.2.80
@ IN AAAA 2001:db8::80
@ IN MX 10 mail.stream.example.org.
mail IN A 192.0.2.25
www IN A 192.0.2.80
alias IN CNAME www.stream.example.org.
a.b IN A 192.0.2.81
sub IN NS ns.sub.stream.example.org.
ns.sub IN A 192.0.2.54
*.wild IN TXT "wildcard"
big IN TXT "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
big IN TXT "1123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
big IN TXT "2123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
big IN TXT "3123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
big IN TXT "4123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
big IN TXT "5123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
"#;

/// What relays r1..r7 reported at their one poll.
fn outcomes() -> Vec<PollOutcome> {
    let status = |kind: StatusKind, body: &[u8]| {
        PollOutcome::Status(kind.parse(body).expect("a fixture parses"))
    };
    vec![
        status(
            StatusKind::Xslt,
            include_bytes!("../fixtures/icecast/floe-slots-listeners.txt"),
        ),
        status(
            StatusKind::IcecastXml,
            include_bytes!("../fixtures/icecast/admin-stats-mount-full.xml"),
        ),
        status(
            StatusKind::IcecastJson,
            include_bytes!("../fixtures/icecast/status-json-listeners.json"),
        ),
        status(
            StatusKind::Xslt,
            include_bytes!("../fixtures/icecast/floe-slots-unlimited.txt"),
        ),
        PollOutcome::Failed(PollFailure::Connect("connection refused".into())),
        status(
            StatusKind::Xslt,
            include_bytes!("../fixtures/icecast/floe-slots-one-mount.txt"),
        ),
        PollOutcome::ServerFull,
    ]
}

/// Where queries and requests come from: a client allowed the diagnostic
/// pages, and one that is not.
const INSIDE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);
const OUTSIDE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 5353);

/// Resolvers the DNS targets answer: the default pool's, the hall's and
/// the partner's; the query's last byte picks one.
const RESOLVERS: [SocketAddr; 3] = [
    INSIDE,
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 53)), 5353),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 53)), 5353),
];

fn resolver(data: &[u8]) -> SocketAddr {
    RESOLVERS[usize::from(data.last().copied().unwrap_or(0)) % RESOLVERS.len()]
}

/// Everything the DNS and HTTP targets answer from, built once.
struct World {
    topology: Arc<Topology>,
    observations: Vec<RelayObservation>,
    handler: FloeHandler,
    /// A plan drawn once, so the fast path and the handler answer from the
    /// same one (the state's own plan is redrawn as it expires).
    plan: Arc<Plan>,
    shared: http::Shared,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let config = parse_config(CONFIG);
        let topology = Arc::new(Topology::new(Arc::new(config), None));
        let at = SystemTime::now();
        let observations: Vec<RelayObservation> =
            outcomes().into_iter().map(|o| observed(o, at)).collect();
        let snap = snapshot(&topology, &observations);
        let snapshots = Arc::new(Snapshots::new(snap));
        let file = Path::new("/fuzz/zones/stream.example.org.zone");
        let (zones, diags) = ZoneSet::load_file_bytes(file, ZONE.as_bytes());
        let zones = zones.unwrap_or_else(|| panic!("the fuzz zone is invalid:\n{diags}"));
        let dns = DnsState::new(snapshots.clone(), Arc::new(zones));
        let metrics = Arc::new(floe::metrics::Metrics::new());
        metrics.attach_dns(dns.clone());
        let shared = http::Shared::new(
            snapshots,
            metrics,
            Arc::new(floe::history::History::default()),
            1,
        );
        shared
            .challenges
            .add_http(ACME_TOKEN, &format!("{ACME_TOKEN}.thumbprint"));
        World {
            topology,
            observations,
            plan: dns.current_plan(),
            handler: FloeHandler::new(dns),
            shared,
        }
    })
}

fn parse_config(text: &str) -> Config {
    let (config, diags) = config::parse(Path::new("/fuzz/floe.toml"), text);
    config.unwrap_or_else(|| panic!("the fuzz config is invalid:\n{diags}"))
}

/// A relay after one poll with `outcome` at `at`.
fn observed(outcome: PollOutcome, at: SystemTime) -> RelayObservation {
    let mut health = Health::new(at);
    health.observe(outcome, 1, 1, at);
    RelayObservation {
        health,
        baseline: GrantSample::default(),
        polled_at: Some(at),
        polls: 1,
        poll_duration: None,
    }
}

/// A snapshot of `topology` from `observations`, prepared as the poller
/// prepares it.
fn snapshot(topology: &Arc<Topology>, observations: &[RelayObservation]) -> Snapshot {
    let refs: Vec<Option<&RelayObservation>> = observations.iter().map(Some).collect();
    let snap = Snapshot::build(
        topology.clone(),
        &refs,
        &[],
        Stamp::now(1),
        Arc::new(ReloadReport::default()),
    );
    select::prepare(&snap);
    snap
}

/// Builds what the targets share (the world, this thread's runtime, the
/// repository's path) now rather than at the first input: the AFL binary
/// calls it before the fork server starts, so each fork has it built.
pub fn warm_up() {
    world();
    block_on(async {});
    repo();
}

/// Runs `f` to completion on this thread's runtime (what the UDP workers
/// do with the handler).
fn block_on<F: Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

/// The balanced-answer variant a query is answered with: any, as long as
/// both sides of a comparison use the same.
fn variant(data: &[u8]) -> usize {
    data.len() % dns::answer::VARIANTS
}

/// The query from `src` as the handler parses it, with the UDP size it
/// allows.
fn request(data: &[u8], src: SocketAddr) -> Option<(Request, usize)> {
    let request = Request::from_bytes(data.to_vec(), src, Protocol::Udp).ok()?;
    let limit = dns::udp_limit(request.edns.as_ref().map(Edns::max_payload));
    Some((request, limit))
}

/// The fast path (the UDP answer for plain A/AAAA questions on balanced
/// names): never panics; an answer is one the handler would accept the
/// query of, no bigger than the client allows (512 without EDNS), a
/// parseable authoritative response with the query's ID and question
/// (the client's case kept), echoing the query's client subnet with a
/// scope within the configured maximum; a buffer too small for it makes it
/// decline.
pub fn dns_fast(data: &[u8]) {
    let w = world();
    let k = variant(data);
    let src = resolver(data);
    let mut out = [0u8; dns::EDNS_PAYLOAD as usize];
    let Some((n, _)) = fast::answer(data, &w.plan, k, src.ip(), &mut out) else {
        return;
    };
    let (request, limit) =
        request(data, src).expect("the fast path answered a query the handler cannot parse");
    assert!(n <= limit, "{n} bytes answered, {limit} allowed");
    let answer = Message::from_vec(&out[..n]).expect("the fast path's answer parses");
    assert_eq!(answer.metadata.id, request.metadata.id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert!(answer.metadata.authoritative && !answer.metadata.truncation);
    let question = 12 + request.queries.queries()[0].original().name().len();
    assert_eq!(
        out[12..question],
        data[12..question],
        "the question as asked"
    );
    let sent = ecs::opt_options(data).map(|o| ecs::find(o).expect("a well-formed client subnet"));
    let echoed = ecs::opt_options(&out[..n]).map(ecs::find_echoed);
    match (sent.flatten(), echoed.flatten()) {
        (None, None) => {}
        (Some(sent), Some((got, scope))) => {
            assert_eq!(sent, got, "the client subnet echoed as sent");
            let dns = &w.topology.config.dns;
            let max = match sent.address {
                IpAddr::V4(_) => dns.ecs_max_prefix_v4,
                IpAddr::V6(_) => dns.ecs_max_prefix_v6,
            };
            assert!(scope <= max, "scope /{scope} over the maximum /{max}");
        }
        (sent, got) => panic!("client subnet {sent:?} answered with {got:?}"),
    }
    let mut small = vec![0u8; n - 1];
    assert!(fast::answer(data, &w.plan, k, src.ip(), &mut small).is_none());
}

/// The hickory handler over UDP and TCP: never panics; no answer only for
/// what is not a query (shorter than a header, or QR set); an answer is a
/// parseable response with the query's ID, no bigger than the client
/// allows, never with RA set.
pub fn dns_handler(data: &[u8]) {
    let w = world();
    let id = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let Some((bytes, _)) = block_on(w.handler.answer(data, INSIDE, protocol)) else {
            assert!(
                data.len() < 12 || data[2] & 0x80 != 0,
                "a query left unanswered"
            );
            continue;
        };
        let limit = match (protocol, request(data, INSIDE)) {
            (Protocol::Udp, Some((_, limit))) => limit,
            (Protocol::Udp, None) => 512,
            _ => usize::from(u16::MAX),
        };
        assert!(
            bytes.len() <= limit,
            "{} bytes answered, {limit} allowed",
            bytes.len()
        );
        let answer = Message::from_vec(&bytes).expect("the handler's answer parses");
        assert_eq!(Some(answer.metadata.id), id);
        assert_eq!(answer.metadata.message_type, MessageType::Response);
        assert!(!answer.metadata.recursion_available);
    }
}

/// Where the fast path answers, the handler gives the same answer for the
/// same plan and variant: equal as parsed messages (header flags, question,
/// every section and the OPT record), which is what
/// `src/dns/tests.rs` `fast_path_and_handler_give_the_same_answers`
/// compares. Nothing is left out of the comparison.
pub fn dns_differential(data: &[u8]) {
    let w = world();
    let k = variant(data);
    let src = resolver(data);
    let mut out = [0u8; dns::EDNS_PAYLOAD as usize];
    let Some((n, _)) = fast::answer(data, &w.plan, k, src.ip(), &mut out) else {
        return;
    };
    let (request, limit) =
        request(data, src).expect("the fast path answered a query the handler cannot parse");
    let subnet = ecs::opt_options(data)
        .map(|o| ecs::find(o).expect("the fast path answered a malformed client subnet"))
        .unwrap_or_default();
    let reply = block_on(w.handler.reply(&request, &w.plan, k, subnet.as_ref()))
        .expect("the handler replies");
    let slow = handler::encode(&request, reply, limit);
    let fast = Message::from_vec(&out[..n]).expect("the fast path's answer parses");
    let slow = Message::from_vec(&slow).expect("the handler's answer parses");
    assert_eq!(fast, slow, "the fast path and the handler differ");
}

/// EDNS Client Subnet options (the input is an OPT record's options, the
/// last byte also picks the resolver): never panics; a well-formed option
/// echoes back byte for byte but its scope; the pool chosen for it is the
/// pool of every address within the scope answered, which never exceeds
/// the configured maximum.
pub fn dns_ecs(data: &[u8]) {
    let w = world();
    let topology = &w.topology;
    let dns = &topology.config.dns;
    let Ok(Some(subnet)) = ecs::find(data) else {
        return;
    };
    let scope_byte = data.first().copied().unwrap_or(0);
    let mut out = [0u8; 4 + ecs::MAX_DATA];
    let n = subnet
        .write(scope_byte, &mut out)
        .expect("room for the option");
    assert_eq!(
        ecs::find_echoed(&out[..n]),
        Some((subnet, scope_byte)),
        "the option reads back as written"
    );
    let client = ecs::client(topology, dns, resolver(data).ip(), Some(&subnet), true);
    if subnet.source == 0 {
        assert_eq!(client.scope, 0, "no address, no scope");
        return;
    }
    let (width, max, bits) = match subnet.address {
        IpAddr::V4(a) => (32, dns.ecs_max_prefix_v4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, dns.ecs_max_prefix_v6, u128::from(a)),
    };
    assert!(client.scope <= max, "scope /{} over /{max}", client.scope);
    // Every address within the scope of the address looked up (the
    // subnet cut to the configured maximum) finds the same pool.
    let mask = |len: u8| {
        u128::MAX.checked_shl(u32::from(width - len)).unwrap_or(0) & (u128::MAX >> (128 - width))
    };
    let looked_up = bits & mask(subnet.source.min(max));
    let keep = mask(client.scope);
    let noise = data
        .iter()
        .fold(0u128, |a, &b| a.rotate_left(8) ^ u128::from(b));
    let probe = (looked_up & keep) | (noise & !keep & mask(width));
    let probe = match subnet.address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(probe as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(probe)),
    };
    assert_eq!(
        topology.pool_of(probe),
        client.pool,
        "{probe} is within /{} of {} but finds another pool",
        client.scope,
        subnet.address
    );
}

/// The response-rate limiter's slip answer: never panics, never bigger
/// than the query or the buffer; a response with TC set, the query's ID
/// and question, no records.
pub fn dns_truncated(data: &[u8]) {
    for size in [dns::EDNS_PAYLOAD as usize, data.len() / 2] {
        let mut out = vec![0u8; size];
        let Some(len) = fast::truncated(data, &mut out) else {
            continue;
        };
        assert!(len <= data.len() && len <= size);
        assert_eq!(out[..2], data[..2], "the query's ID");
        assert_eq!(out[2] & 0x82, 0x82, "QR and TC set");
        assert_eq!(out[4..6], [0, 1], "one question");
        assert_eq!(out[6..12], [0; 6], "no records");
        assert_eq!(out[12..len], data[12..len], "the question as asked");
    }
}

/// The statuses an HTTP request may get from the routes.
const HTTP_STATUSES: [StatusCode; 9] = [
    StatusCode::OK,
    StatusCode::NO_CONTENT,
    StatusCode::FOUND,
    StatusCode::BAD_REQUEST,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// A request head as hyper reads it (httparse, up to 100 headers; a
/// method, URI or header hyper would refuse is refused), routed from a
/// client allowed the diagnostic pages and from one that is not: never
/// panics; the status is one of [`HTTP_STATUSES`]; OPTIONS on a stream
/// route gets 204 (the CORS preflight) and takes no grant, other methods
/// than GET and HEAD get 405; a 302 goes to a configured relay's URL for
/// the requested mount (plus the query), never elsewhere; CORS headers
/// name `*` or the request's own origin; diagnostic pages are 403 outside
/// `diagnostics_from`.
pub fn http_routes(data: &[u8]) {
    let Some(req) = http_request(data) else {
        return;
    };
    let w = world();
    let snap = w.shared.snapshots.load_full();
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
    for peer in [INSIDE, OUTSIDE] {
        let answer = routes::respond(&snap, &w.shared, &req, Some(local), peer, OnQuiet::Take);
        let resp = answer.expect("OnQuiet::Take never asks to wait");
        let status = resp.status();
        assert!(HTTP_STATUSES.contains(&status), "status {status}");
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        let options = req.method() == Method::OPTIONS && status == StatusCode::NO_CONTENT;
        assert_eq!(status == StatusCode::METHOD_NOT_ALLOWED, !get && !options);
        assert_eq!(status == StatusCode::NO_CONTENT, options);
        if let Some(allowed) = resp.headers().get("access-control-allow-origin") {
            let origin = req.headers().get("origin");
            assert!(
                allowed == "*" || Some(allowed) == origin,
                "CORS for {allowed:?}"
            );
        }
        let path = req.uri().path();
        if status == StatusCode::FOUND {
            let m = w.topology.mount_id(path).expect("a 302 for a mount");
            let location = resp.headers()[LOCATION].as_bytes();
            let target = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            assert!(
                w.topology.relays.iter().any(|r| {
                    location.strip_prefix(&r.locations[m][..]) == Some(target.as_bytes())
                }),
                "302 to {location:?}"
            );
        }
        // An ACME HTTP-01 answer only for the live token, exactly.
        if let Some(token) = path.strip_prefix(routes::ACME_CHALLENGE_PATH) {
            let live = token == ACME_TOKEN;
            assert_eq!(status == StatusCode::OK, live && get, "{path}");
            if !live {
                assert!(status == StatusCode::NOT_FOUND || !get, "{path}: {status}");
            }
        }
        let diagnostic = ["/status", "/status.json", "/metrics", "/explain"].contains(&path)
            || path.starts_with("/explain/");
        if peer == OUTSIDE && diagnostic && get {
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }
}

/// The HTTP fast path's reader of raw request bytes and its answer:
/// never panics; a head it takes is one hyper reads the same way (a `GET`
/// on HTTP/1.1, the same path and query, the same wish to close, none of
/// the headers that change the answer, nothing after the head); its answer
/// (for a mount) is one whole response, of a status the routes give a
/// mount, with a `content-length` that is the body's, and a `302` goes to
/// a configured relay's URL for the mount plus the query, never elsewhere.
pub fn http_fast(data: &[u8]) {
    let Some(fast) = http::fast::parse(data) else {
        return;
    };
    let req = http_request(data).expect("hyper reads a head the fast path reads");
    let (mut headers, mut head) = ([httparse::EMPTY_HEADER; 100], 0);
    let mut whole = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(n)) = whole.parse(data) {
        head = n;
    }
    assert_eq!(head, data.len(), "nothing after the head");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.version(), hyper::Version::HTTP_11);
    assert_eq!(req.uri().path(), fast.path);
    assert_eq!(req.uri().query(), fast.query);
    let close = req.headers().get_all("connection").iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    assert_eq!(fast.close, close);
    for name in http::fast::HYPER_HEADERS {
        assert!(!req.headers().contains_key(name), "{name}");
    }
    let w = world();
    let snap = w.shared.snapshots.load_full();
    let mut out = Vec::new();
    for peer in [INSIDE, OUTSIDE] {
        let answered = http::fast::answer(&snap, &w.shared, &fast, peer, &mut out);
        assert_eq!(answered, w.topology.mount_id(fast.path).is_some());
        if !answered {
            continue;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(&out) else {
            panic!("a whole response: {:?}", String::from_utf8_lossy(&out));
        };
        let status = resp.code.expect("a status");
        assert!([302, 400, 429, 503].contains(&status), "status {status}");
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| h.value)
        };
        let length = header("content-length").expect("a content-length");
        assert_eq!(
            std::str::from_utf8(length).unwrap(),
            (out.len() - n).to_string()
        );
        assert_eq!(header("connection").is_some(), fast.close);
        if status == 302 {
            let m = w.topology.mount_id(fast.path).expect("a mount");
            let location = header("location").expect("a location");
            let target = fast.query.map(|q| format!("?{q}")).unwrap_or_default();
            assert!(
                w.topology.relays.iter().any(|r| {
                    location.strip_prefix(&r.locations[m][..]) == Some(target.as_bytes())
                }),
                "302 to {location:?}"
            );
        }
    }
}

/// `data` as hyper would hand it to the routes: `None` where hyper answers
/// 400 itself or waits for more.
fn http_request(data: &[u8]) -> Option<hyper::Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = head.parse(data).ok()? else {
        return None;
    };
    let mut req = hyper::Request::builder()
        .method(Method::from_bytes(head.method?.as_bytes()).ok()?)
        .uri(head.path?)
        .version(match head.version? {
            0 => hyper::Version::HTTP_10,
            _ => hyper::Version::HTTP_11,
        });
    for h in head.headers.iter() {
        req = req.header(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    req.body(()).ok()
}

/// A relay status body: never panics; a parsed status lists at most
/// [`icecast::MAX_MOUNTS`] mounts, with unique paths that start with `/`;
/// a snapshot with it as relay r1's status builds, and every redirect and
/// balanced name is decided from it without a panic.
fn relay_status(kind: StatusKind, data: &[u8]) {
    let Ok(status) = kind.parse(data) else {
        return;
    };
    check_status(&status);
    let w = world();
    let mut observations = w.observations.clone();
    observations[0] = observed(PollOutcome::Status(status), SystemTime::now());
    let snap = snapshot(&w.topology, &observations);
    let now = Instant::now();
    for (stream, def) in w.topology.streams.iter_ids() {
        let _ = select::decide(
            &snap,
            select::Target::Name {
                stream,
                mount: None,
            },
            now,
        );
        for &m in def.mounts.iter() {
            let _ = select::decide(
                &snap,
                select::Target::Name {
                    stream,
                    mount: Some(m),
                },
                now,
            );
            for pool in snap.topology.pools.ids() {
                let _ = select::client_budget(&snap, m, pool);
            }
        }
    }
}

fn check_status(status: &RelayStatus) {
    assert!(status.mounts.len() <= icecast::MAX_MOUNTS);
    let mut paths = HashSet::new();
    for m in &status.mounts {
        assert!(m.path.starts_with('/'), "mount path {:?}", m.path);
        assert!(paths.insert(&m.path), "duplicate mount {:?}", m.path);
    }
}

/// A relay's answer to a status poll over `http://` (floe's own HTTP/1.1
/// framing): never panics; a body is at most the limit; without the
/// connection's end, a complete answer is framed (by length or chunks), so
/// the bytes it took frame the same answer again.
pub fn poll_response(data: &[u8]) {
    const MAX: usize = 1 << 16;
    for eof in [false, true] {
        let parsed = Response::parse(data, eof, MAX);
        let Ok(Progress::Done(r)) = &parsed else {
            continue;
        };
        assert!(r.body.len() <= MAX && r.used <= data.len(), "{r:?}");
        if !eof {
            assert_eq!(Response::parse(&data[..r.used], false, MAX), parsed);
        }
    }
}

/// `/admin/stats` XML: see [`relay_status`].
pub fn icecast_xml(data: &[u8]) {
    relay_status(StatusKind::IcecastXml, data);
}

/// `/status-json.xsl`: see [`relay_status`].
pub fn icecast_json(data: &[u8]) {
    relay_status(StatusKind::IcecastJson, data);
}

/// floe's stylesheet's text: see [`relay_status`].
pub fn icecast_xslt(data: &[u8]) {
    relay_status(StatusKind::Xslt, data);
}

/// The repository (for the config target's zones directory), from either
/// crate that builds this file.
fn repo() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|d| d.join("config/floe.toml").is_file())
            .expect("the repository above this crate")
            .to_path_buf()
    })
}

/// Config text, loaded as `config/floe.toml` of the repository (so
/// `zones = "zones"` loads the example zone): never panics; a failed load
/// has an error; every diagnostic about the config file is at a place in
/// its text (line 0 only for the whole file), and every error is at a
/// line but those about the whole file ([`WHOLE_FILE`]); a config that
/// loads makes a topology.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = repo().join("config/floe.toml");
    let diags = match config::load_str(&path, text) {
        Ok(loaded) => {
            assert!(!loaded.warnings.has_errors());
            Topology::new(loaded.config, None);
            loaded.warnings
        }
        Err(diags) => {
            assert!(diags.has_errors(), "a failed load without an error");
            diags
        }
    };
    check_places(&diags, &path, text);
    for d in diags.0.iter().filter(|d| d.file == path && d.is_error()) {
        assert!(
            d.line > 0 || WHOLE_FILE.iter().any(|w| d.message.starts_with(w)),
            "an error without a place: {d}"
        );
    }
}

/// The config errors about the whole file, which have no place in it:
/// something missing.
const WHOLE_FILE: &[&str] = &["no [[relay]] defined", "no [[stream]] defined"];

/// A zone file's bytes, loaded as `stream.example.org.zone`: never panics;
/// loads exactly when there is no error; every diagnostic is at a place in
/// the text; a loaded zone gives its in-memory handler (which `to_handler`
/// promises).
pub fn zones(data: &[u8]) {
    let path = Path::new("/fuzz/zones/stream.example.org.zone");
    let (set, diags) = ZoneSet::load_file_bytes(path, data);
    assert_eq!(set.is_some(), !diags.has_errors());
    if let Ok(text) = std::str::from_utf8(data) {
        check_places(&diags, path, text);
    }
    for zone in set.iter().flat_map(|s| s.zones()) {
        zone.to_handler();
        zone.negative_ttl();
    }
}

/// Every diagnostic about `file` is at a line of `text` (or the line just
/// after a final newline) and a column of it (1-based, characters, or one
/// past the end); line 0 (the whole file) has column 0.
fn check_places(diags: &Diagnostics, file: &Path, text: &str) {
    let lines: Vec<&str> = text.split('\n').collect();
    for d in diags.0.iter().filter(|d| d.file == file) {
        if d.line == 0 {
            assert_eq!(d.column, 0, "{d}");
            continue;
        }
        let line = lines
            .get(d.line - 1)
            .unwrap_or_else(|| panic!("no such line: {d}"));
        assert!(
            d.column >= 1 && d.column <= line.chars().count() + 1,
            "no such column: {d}"
        );
    }
}

/// A PROXY protocol header (the start of a connection on a PROXY
/// listener) and the same bytes as `X-Forwarded-For` lines: never panics.
/// A whole header lies within the input and the limits (v1: one line of
/// at most 107 bytes ending in CRLF), parses the same alone, and every
/// shorter prefix of it is incomplete; an incomplete input's prefixes are
/// incomplete too; a refused input stays refused whatever follows. The
/// client is the header's source (canonical: no IPv4-mapped address) or
/// the peer. `X-Forwarded-For` gives the peer unless the peer is trusted,
/// and otherwise the peer or an address written in the lines.
pub fn proxy_header(data: &[u8]) {
    use proxy::{HeaderError, Parsed};
    let peer: SocketAddr = "10.9.8.7:4000".parse().unwrap();
    match proxy::parse(data) {
        Ok(Parsed::Complete(h)) => {
            assert!(h.len > 0 && h.len <= data.len() && h.len <= proxy::MAX_HEADER);
            if data[0] == b'P' {
                assert!(h.len <= proxy::V1_MAX);
                assert!(data[..h.len].ends_with(b"\r\n"));
            }
            assert_eq!(proxy::parse(&data[..h.len]), Ok(Parsed::Complete(h)));
            for end in 0..h.len {
                assert_eq!(proxy::parse(&data[..end]), Ok(Parsed::Incomplete), "{end}");
            }
            let client = h.client(peer);
            match h.source {
                None => assert_eq!(client, peer),
                Some(s) => {
                    assert_eq!(client.port(), s.port());
                    assert_eq!(client.ip(), s.ip().to_canonical());
                    assert!(
                        !matches!(client.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
                    );
                }
            }
        }
        Ok(Parsed::Incomplete) => {
            assert!(data.len() < proxy::MAX_HEADER);
            for end in [0, data.len() / 2, data.len().saturating_sub(1)] {
                assert_eq!(proxy::parse(&data[..end]), Ok(Parsed::Incomplete), "{end}");
            }
        }
        Err(e) => {
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
            let again = proxy::parse(&more);
            assert!(again.is_err(), "{e:?} then {again:?}");
            if e == HeaderError::TooLong {
                assert!(data.len() >= 16);
            }
        }
    }

    let mut headers = hyper::HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(forwarded::X_FORWARDED_FOR, v);
        }
    }
    let trusted: Vec<ipnet::IpNet> = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let untrusted = IpAddr::from([192, 0, 2, 1]);
    assert_eq!(forwarded::client(&headers, untrusted, &trusted), untrusted);
    let got = forwarded::client(&headers, peer.ip(), &trusted);
    if got != peer.ip() {
        // An address written in the lines, never an invented one.
        let written: Vec<IpAddr> = data
            .split(|&b| b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok())
            .flat_map(|l| l.split(','))
            .filter_map(|e| {
                let e = e.trim();
                e.parse::<IpAddr>()
                    .ok()
                    .or_else(|| e.parse::<SocketAddr>().ok().map(|a| a.ip()))
                    .or_else(|| e.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
            })
            .map(|ip| ip.to_canonical())
            .collect();
        assert!(written.contains(&got), "{got} not in {written:?}");
    }
}

/// An ACME account file (`[acme] state_dir`/account.json) as floe reads
/// it: any bytes give credentials or an error, never a panic; what parses
/// survives being written and read again.
pub fn acme_account(data: &[u8]) {
    use floe::acme::store::{StateDir, parse_account};
    if let Ok((directory, _credentials)) = parse_account(data) {
        let dir = std::env::temp_dir().join(format!("floe-fuzz-acme-{}", std::process::id()));
        let state = StateDir::open(&dir).expect("the state dir");
        std::fs::write(state.account_path(), data).expect("write the account");
        let Ok(Some(credentials)) = state.account(&directory) else {
            panic!("an account that parsed does not load");
        };
        state.save_account(&directory, &credentials).expect("save");
        assert!(matches!(state.account(&directory), Ok(Some(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A `/peer` answer from a peer (`ns2`, to `ns1`, which serves `/a` and
/// `/b`): refused, or a demand per known mount that is finite and not
/// negative, within the size limit, and that renders and parses back to
/// the same figures.
pub fn peer_answer(data: &[u8]) {
    use floe::ids::MountId;
    use floe::peers::answer::{self, AnswerError};
    use floe::shares::{PeerReport, PeerState};
    let mount = |p: &str| match p {
        "/a" => Some(MountId::new(0)),
        "/b" => Some(MountId::new(1)),
        _ => None,
    };
    match answer::parse(data, "ns2", "ns1", 2, mount) {
        Ok(a) => {
            assert!(data.len() <= answer::MAX_ANSWER_BYTES);
            assert_eq!(a.demand.len(), 2);
            assert!(a.demand.iter().all(|d| d.is_finite() && *d >= 0.0));
            let report = PeerReport {
                name: "ns2".into(),
                paths: vec!["/a".into(), "/b".into()],
                published: a.demand.clone(),
                peers: vec![PeerState {
                    name: "ns1".into(),
                    fetching: a.fetches_us,
                    ..PeerState::default()
                }],
                ..PeerReport::default()
            };
            let again = answer::parse(answer::render(&report).as_bytes(), "ns2", "ns1", 2, mount)
                .expect("a rendered answer parses");
            assert_eq!(again.fetches_us, a.fetches_us);
            for (x, y) in a.demand.iter().zip(again.demand.iter()) {
                assert!((x - y).abs() <= x.abs() * 1e-12, "{x} then {y}");
            }
        }
        Err(AnswerError::TooLong) => assert!(data.len() > answer::MAX_ANSWER_BYTES),
        Err(_) => {}
    }
}
