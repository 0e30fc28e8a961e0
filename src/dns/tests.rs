//! DNS unit tests: balanced answers drawn from built snapshots, the
//! handler's protocol behaviour, and the fast path giving the same answers
//! as the handler for the same plan.

use super::*;
use crate::config;
use crate::health::{PollFailure, PollOutcome};
use crate::icecast::MaxListeners;
use crate::select::{self, Fallback as Why};
use crate::snapshot::{ReloadReport, Snapshot, StreamId, testkit};
use answer::{Decision, VARIANTS};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The test zone: apex SOA (TTL 120, MINIMUM 60) and NS with glue, a big
/// TXT set (does not fit 512 bytes), an empty non-terminal (`b` above
/// `a.b`), a CNAME, and a delegation with glue.
const ZONE: &str = "$ORIGIN stream.example.org.
$TTL 300
@ 120 IN SOA ns1.stream.example.org. hostmaster.example.org. ( 1 3600 600 1209600 60 )
@ IN NS ns1.stream.example.org.
ns1 IN A 192.0.2.53
@ IN A 192.0.2.80
www IN A 192.0.2.80
alias IN CNAME www.stream.example.org.
a.b IN A 192.0.2.81
sub IN NS ns.sub.stream.example.org.
ns.sub IN A 192.0.2.54
big IN TXT \"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"1123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"2123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"3123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"4123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"5123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
";

/// One relay of a test cluster.
#[derive(Debug, Clone)]
enum R {
    /// Up with (mount, listeners, max) per mount with a source.
    Up(Vec<(&'static str, u32, u32)>),
    /// Up but drained by the operator.
    Drained(Vec<(&'static str, u32, u32)>),
    /// Answering 403 (global limit).
    ServerFull,
    Down,
    Unpolled,
}

/// Up with both mounts of the stream: `ogg` and `mp3` listeners of 100.
fn both(ogg: u32, mp3: u32) -> R {
    R::Up(vec![("/live.ogg", ogg, 100), ("/live.mp3", mp3, 100)])
}

/// An idle relay carrying both mounts of the stream with room 100 each.
fn idle() -> R {
    both(0, 0)
}

/// The stream's name and its per-mount name for `/live.ogg`.
const LIVE: &str = "live.stream.example.org.";
const LIVE_OGG: &str = "live-ogg.stream.example.org.";
/// A static name of the test zone.
const WWW: &str = "www.stream.example.org.";

fn zones() -> Arc<ZoneSet> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("stream.example.org.zone"), ZONE).expect("write zone");
    let (zones, diags) = ZoneSet::load(dir.path());
    Arc::new(zones.unwrap_or_else(|| panic!("test zone invalid:\n{diags}")))
}

/// A snapshot of `relays` (relay i has 192.0.2.(i+1) and 2001:db8::(i+1)),
/// with `dns` appended to the `[dns]` section. States changed at
/// `changed`.
fn cluster_at(relays: &[R], dns: &str, changed: SystemTime) -> Snapshot {
    cluster_with(relays, dns, changed, &|i| {
        let v4 = if i < 254 {
            format!("192.0.2.{}", i + 1)
        } else {
            format!("10.0.{}.{}", i / 256, i % 256)
        };
        format!("\"{v4}\", \"2001:db8::{:x}\"", i + 1)
    })
}

/// [`cluster_at`] with relay `i`'s `addresses` list (TOML array items) from
/// `addresses(i)`.
fn cluster_with(
    relays: &[R],
    dns: &str,
    changed: SystemTime,
    addresses: &dyn Fn(usize) -> String,
) -> Snapshot {
    let defaults: String = ["answers = 2", "ttl = \"20s\"", "min_ttl = \"5s\""]
        .iter()
        .filter(|d| {
            !dns.lines()
                .any(|l| l.split('=').next() == d.split('=').next())
        })
        .map(|d| format!("{d}\n"))
        .collect();
    let mut toml = format!(
        "[dns]\n{defaults}{dns}\n\
         [[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\", \"/live.mp3\"]\n\
         dns = [\"live.stream.example.org.\"]\n\
         mount_dns = {{ \"/live.ogg\" = [\"live-ogg.stream.example.org.\"] }}\n"
    );
    for (i, r) in relays.iter().enumerate() {
        let drain = matches!(r, R::Drained(_));
        toml += &format!(
            "[[relay]]\nname = \"r{i}\"\nurl = \"http://r{i}.example.org:8000\"\n\
             addresses = [{addrs}]\nstatus = {{ kind = \"xslt\" }}\ndrain = {drain}\n",
            addrs = addresses(i),
        );
    }
    testkit::snapshot(
        testkit::topology(&toml),
        outcomes(relays),
        2,
        changed,
        7,
        ReloadReport::default(),
    )
}

/// The poll outcomes of `relays`.
fn outcomes(relays: &[R]) -> Vec<Option<PollOutcome>> {
    relays
        .iter()
        .map(|r| match r {
            R::Unpolled => None,
            R::Down => Some(PollOutcome::Failed(PollFailure::Connect(
                "connection refused".into(),
            ))),
            R::ServerFull => Some(PollOutcome::ServerFull),
            R::Up(mounts) | R::Drained(mounts) => {
                let limited: Vec<_> = mounts
                    .iter()
                    .map(|&(p, l, m)| (p, l, MaxListeners::Limited(m)))
                    .collect();
                Some(testkit::status(&limited))
            }
        })
        .collect()
}

fn cluster(relays: &[R], dns: &str) -> Snapshot {
    cluster_at(relays, dns, SystemTime::UNIX_EPOCH)
}

/// A plan drawn from `snap` at `now`.
fn plan_at(snap: &Arc<Snapshot>, zones: &Arc<Zones>, now: Instant, rng: &mut SmallRng) -> Plan {
    Plan::build(snap.clone(), zones.clone(), now, SystemTime::now(), rng)
}

fn state(snap: Snapshot) -> Arc<DnsState> {
    DnsState::new(Arc::new(Snapshots::new(snap)), zones())
}

fn plan_of(relays: &[R], dns: &str) -> Arc<Plan> {
    state(cluster(relays, dns)).plan(Instant::now()).clone()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

/// The default pool's answer of balanced name `n`.
fn balanced<'p>(plan: &'p Plan, n: &str) -> &'p answer::PoolAnswer {
    plan.find(&name(n))
        .unwrap_or_else(|| panic!("{n} is not balanced in the plan"))
        .default_answer()
}

/// Every IPv4 address any variant of `n` lists.
fn v4_union(plan: &Plan, n: &str) -> BTreeSet<Ipv4Addr> {
    balanced(plan, n).v4.iter().flatten().copied().collect()
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

/// 192.0.2.x for each x of `last`.
fn v4s(last: &[u8]) -> BTreeSet<Ipv4Addr> {
    last.iter().map(|&l| v4(l)).collect()
}

#[test]
fn balanced_answers_list_only_relays_with_room() {
    let relays = [
        idle(),
        both(100, 0), // ogg full
        R::Down,
        R::ServerFull,
        R::Drained(vec![("/live.ogg", 0, 100), ("/live.mp3", 0, 100)]),
        idle(),
        R::Up(vec![("/live.mp3", 0, 100)]), // no ogg source
    ];
    let plan = plan_of(&relays, "");
    let b = balanced(&plan, LIVE);
    assert_eq!(b.decision, Decision::Candidates);
    assert_eq!(v4_union(&plan, LIVE), v4s(&[1, 6]));
    for variant in b.v4.iter() {
        assert_eq!(variant.len(), 2, "answers = 2 and two candidates");
    }
    assert_eq!(b.v4.len(), VARIANTS);
    let v6: BTreeSet<Ipv6Addr> = b.v6.iter().flatten().copied().collect();
    let want = ["2001:db8::1", "2001:db8::6"].map(|a| a.parse().unwrap());
    assert_eq!(v6, BTreeSet::from(want));
    // The per-mount name for /live.ogg: relay 6 lacks the mount, but ogg
    // has room on relays 0 and 5 only.
    assert_eq!(v4_union(&plan, LIVE_OGG), v4s(&[1, 6]));
}

#[test]
fn per_mount_names_follow_their_mount_only() {
    // Relay 1 has room on ogg but its mp3 is full: in the ogg name, not in
    // the stream name (a client of the stream may ask for either mount).
    let relays = [idle(), both(0, 100)];
    let plan = plan_of(&relays, "");
    assert_eq!(v4_union(&plan, LIVE_OGG), v4s(&[1, 2]));
    assert_eq!(v4_union(&plan, LIVE), v4s(&[1]));
}

#[test]
fn answers_are_capped_and_spread_by_room() {
    let relays: Vec<R> = (0..6).map(|_| idle()).collect();
    let plan = plan_of(&relays, "");
    let b = balanced(&plan, LIVE);
    assert!(b.v4.iter().all(|v| v.len() == 2 && v[0] != v[1]));
    assert!(
        v4_union(&plan, LIVE).len() >= 3,
        "16 weighted draws over 6 equal relays use more than 2"
    );
}

#[test]
fn ttl_is_long_when_idle_short_when_room_runs_out_or_state_changes() {
    let ttl = |relays: &[R], dns| balanced(&plan_of(relays, dns), LIVE).ttl;
    assert_eq!(ttl(&[idle(), idle()], ""), 20);
    assert_eq!(ttl(&[both(90, 0), both(95, 0)], ""), 5);
    // Half full: in between.
    let half = ttl(&[both(50, 50)], "");
    assert!(5 < half && half < 20, "ttl {half}");
    // A relay changed state a moment ago: short.
    let changing = state(cluster_at(&[idle(), idle()], "", SystemTime::now()));
    assert_eq!(balanced(&changing.plan(Instant::now()), LIVE).ttl, 5);
    // Never above ttl.
    assert_eq!(ttl(&[idle()], "ttl = \"3s\"\nmin_ttl = \"1s\""), 3);
}

#[test]
fn no_candidate_serves_every_live_relay_by_default() {
    let relays = [
        both(100, 100),
        R::ServerFull,
        R::Down,
        R::Drained(vec![("/live.ogg", 0, 100), ("/live.mp3", 0, 100)]),
    ];
    let plan = plan_of(&relays, "");
    let b = balanced(&plan, LIVE);
    assert_eq!(
        b.decision,
        Decision::Policy {
            why: Why::NoCandidate(select::NoCandidate::Full),
            policy: config::DnsPolicy::ServeAll
        }
    );
    assert_eq!(b.ttl, 5, "policy answers use min_ttl");
    assert_eq!(v4_union(&plan, LIVE), v4s(&[1, 2]));
    // Every relay down: every relay not drained, rather than nothing.
    let plan = plan_of(&[R::Down, R::Down, R::Drained(vec![])], "");
    assert_eq!(v4_union(&plan, LIVE), v4s(&[1, 2]));
}

#[test]
fn no_candidate_nodata_and_fixed_policies() {
    let full = [both(100, 100)];
    let plan = plan_of(&full, "when_no_candidate = \"nodata\"");
    let b = balanced(&plan, LIVE);
    assert!(b.v4.iter().all(|v| v.is_empty()) && b.v6.iter().all(|v| v.is_empty()));
    let plan = plan_of(
        &full,
        "when_no_candidate = \"fallback\"\nfallback = [\"198.51.100.1\", \"198.51.100.2\", \"198.51.100.3\"]",
    );
    let b = balanced(&plan, LIVE);
    assert!(b.v4.iter().all(|v| v.len() == 2));
    assert!(b.v6.iter().all(|v| v.is_empty()));
    let all = v4_union(&plan, LIVE);
    assert_eq!(
        all.len(),
        3,
        "variants rotate through the fallback addresses"
    );
}

#[test]
fn before_first_poll_and_stale_policies() {
    // Nothing polled yet: before_first_poll (serve-all includes unknowns).
    let plan = plan_of(&[R::Unpolled, R::Unpolled], "");
    let b = balanced(&plan, LIVE);
    assert_eq!(
        b.decision,
        Decision::Policy {
            why: Why::FirstPoll,
            policy: config::DnsPolicy::ServeAll
        }
    );
    assert_eq!(v4_union(&plan, LIVE), v4s(&[1, 2]));
    // One relay known with room already: it is answered.
    let plan = plan_of(&[idle(), R::Unpolled], "before_first_poll = \"nodata\"");
    assert_eq!(balanced(&plan, LIVE).decision, Decision::Candidates);
    // Stale snapshot: when_stale decides; last-known keeps the candidates.
    let snap = Arc::new(cluster(&[idle()], "when_stale = \"nodata\""));
    let zones = Arc::new(Zones::new(zones()));
    let later = snap.built + snap.config().poll.stale_after + Duration::from_secs(1);
    let mut rng = SmallRng::seed_from_u64(1);
    let plan = plan_at(&snap, &zones, later, &mut rng);
    let b = balanced(&plan, LIVE);
    assert_eq!(
        b.decision,
        Decision::Policy {
            why: Why::Stale,
            policy: config::DnsPolicy::Nodata
        }
    );
    assert!(b.v4.iter().all(|v| v.is_empty()));
    let snap = Arc::new(cluster(&[idle()], ""));
    let plan = plan_at(&snap, &zones, later, &mut rng);
    assert_eq!(balanced(&plan, LIVE).decision, Decision::Candidates);
}

#[test]
fn plan_follows_the_snapshot_and_expires() {
    let cell = Arc::new(Snapshots::new(cluster(&[idle(), R::Down], "")));
    let state = DnsState::new(cell.clone(), zones());
    let now = Instant::now();
    let first = state.plan(now).clone();
    assert!(
        Arc::ptr_eq(&first, &state.plan(now)),
        "same snapshot, not expired: same plan"
    );
    cell.store(cluster(&[R::Down, idle()], ""));
    let second = state.plan(now).clone();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(v4_union(&second, LIVE), v4s(&[2]));
    let third = state
        .plan(second.expires + Duration::from_millis(1))
        .clone();
    assert!(
        !Arc::ptr_eq(&second, &third),
        "an expired plan is drawn again"
    );
}

#[test]
fn a_plan_holds_for_new_counts_but_not_for_a_relay_that_went_down_or_filled_up() {
    let first = cluster(&[both(10, 10), both(20, 20)], "");
    let topology = first.topology.clone();
    let again = |relays: &[R], generation| {
        let outcomes = outcomes(relays);
        let at = SystemTime::UNIX_EPOCH;
        testkit::snapshot(
            topology.clone(),
            outcomes,
            2,
            at,
            generation,
            ReloadReport::default(),
        )
    };
    let cell = Arc::new(Snapshots::new(first));
    let state = DnsState::new(cell.clone(), zones());
    let now = Instant::now();
    let drawn = state.plan(now).clone();
    assert!(drawn.hold_until > now, "a plan holds for its cost");
    // New counts, the same candidates for the same reasons: the plan holds
    // until its hold is over.
    cell.store(again(&[both(30, 12), both(20, 45)], 8));
    assert!(Arc::ptr_eq(&drawn, &state.plan(now)), "counts only: held");
    let later = state.plan(drawn.hold_until).clone();
    assert!(
        !Arc::ptr_eq(&drawn, &later),
        "redrawn once the hold is over"
    );
    assert_eq!(later.generation, 8);
    // A relay went down, or one filled up: redrawn at once.
    cell.store(again(&[both(30, 12), R::Down], 9));
    let down = state.plan(now).clone();
    assert_eq!((down.generation, v4_union(&down, LIVE)), (9, v4s(&[1])));
    cell.store(again(&[both(100, 12), both(20, 45)], 10));
    let full = state.plan(now).clone();
    assert_eq!((full.generation, v4_union(&full, LIVE)), (10, v4s(&[2])));
}

#[test]
fn txt_explains_the_answer() {
    let plan = plan_of(&[idle(), R::Down], "");
    let b = balanced(&plan, LIVE);
    assert_eq!(
        b.explain(&plan.snapshot, plan.generation),
        "generation=7 answer=candidates ttl=20 relays=r0"
    );
}

// ---- The handler and the fast path, through wire bytes. ----

/// A query for `qname`/`qtype`, with an OPT record of `edns` bytes when
/// given.
fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("encode query")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Where test queries come from.
const SRC: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);

/// The handler's response to `raw` over `protocol` (`None`: no answer).
fn handle(state: &Arc<DnsState>, raw: &[u8], protocol: Protocol) -> Option<Vec<u8>> {
    let handler = FloeHandler::new(state.clone());
    rt().block_on(handler.answer(raw, SRC, protocol))
        .map(|(bytes, _)| bytes)
}

/// The handler's response to `raw` over UDP with plan `plan`, variant `k`.
fn via_handler(state: &Arc<DnsState>, plan: &Plan, raw: &[u8], k: usize) -> Vec<u8> {
    via_handler_from(state, plan, raw, k, SRC)
}

/// [`via_handler`] for a query from `src`.
fn via_handler_from(
    state: &Arc<DnsState>,
    plan: &Plan,
    raw: &[u8],
    k: usize,
    src: SocketAddr,
) -> Vec<u8> {
    let handler = FloeHandler::new(state.clone());
    let request = Request::from_bytes(raw.to_vec(), src, Protocol::Udp).expect("request parses");
    let subnet = super::ecs::opt_options(raw)
        .map(|o| super::ecs::find(o).expect("a well-formed client subnet"))
        .unwrap_or_default();
    let reply = rt()
        .block_on(handler.reply(&request, plan, k, subnet.as_ref()))
        .expect("a reply");
    let max = udp_limit(request.edns.as_ref().map(Edns::max_payload));
    handler::encode(&request, reply, max)
}

/// The full answer path (fast path, else handler) for `raw` over UDP.
fn ask(state: &Arc<DnsState>, raw: &[u8]) -> Message {
    let plan = state.plan(Instant::now());
    let mut out = [0u8; 1232];
    let bytes = match fast::answer(raw, &plan, 0, SRC.ip(), &mut out) {
        Some((n, _)) => out[..n].to_vec(),
        None => handle(state, raw, Protocol::Udp).expect("a response"),
    };
    Message::from_vec(&bytes).expect("response parses")
}

/// The RCODE of the full answer path's response to `m`.
fn rcode(state: &Arc<DnsState>, m: &Message) -> ResponseCode {
    ask(state, &m.to_vec().unwrap()).metadata.response_code
}

fn ask_name(state: &Arc<DnsState>, qname: &str, qtype: RecordType) -> Message {
    ask(state, &query(qname, qtype, Some(1232)))
}

#[test]
fn fast_path_and_handler_give_the_same_answers() {
    let cases = [
        (vec![idle(), idle(), R::Down, idle()], ""),
        (vec![both(100, 100)], "when_no_candidate = \"nodata\""),
        (
            vec![R::Down],
            "when_no_candidate = \"fallback\"\nfallback = [\"198.51.100.1\"]",
        ),
        (vec![R::Unpolled, idle()], ""),
    ];
    for (relays, dns) in cases {
        let state = state(cluster(&relays, dns));
        let plan = state.plan(Instant::now());
        for qname in [LIVE, "LiVe.StReAm.ExAmPlE.oRg.", LIVE_OGG] {
            for qtype in [RecordType::A, RecordType::AAAA] {
                for edns in [None, Some(512), Some(4096)] {
                    let raw = query(qname, qtype, edns);
                    for k in 0..VARIANTS {
                        let mut out = [0u8; 1232];
                        let (n, _) = fast::answer(&raw, &plan, k, SRC.ip(), &mut out)
                            .unwrap_or_else(|| {
                                panic!("fast path declined {qname} {qtype} edns {edns:?}")
                            });
                        let fast = Message::from_vec(&out[..n]).expect("fast answer parses");
                        let slow = Message::from_vec(&via_handler(&state, &plan, &raw, k))
                            .expect("handler answer parses");
                        assert_eq!(
                            fast, slow,
                            "{qname} {qtype} edns {edns:?} variant {k} ({relays:?}, {dns})"
                        );
                        // The client's case comes back in the question.
                        assert_eq!(fast.queries[0].name().to_string(), qname);
                        assert_eq!(
                            &out[12..12 + qname.len() + 1],
                            &raw[12..12 + qname.len() + 1]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn fast_path_declines_what_it_does_not_understand() {
    let state = state(cluster(&[idle()], ""));
    let plan = state.plan(Instant::now());
    let mut out = [0u8; 1232];
    let mut declined = |raw: &[u8]| fast::answer(raw, &plan, 0, SRC.ip(), &mut out).is_none();
    for (qname, qtype) in [
        (LIVE, RecordType::MX),
        (LIVE, RecordType::ANY),
        (WWW, RecordType::A),
    ] {
        assert!(declined(&query(qname, qtype, None)), "{qname} {qtype}");
    }
    let mut notify = query(LIVE, RecordType::A, None);
    notify[2] |= 4 << 3;
    assert!(declined(&notify));
    let mut response = query(LIVE, RecordType::A, None);
    response[2] |= 0x80;
    assert!(declined(&response));
    let mut trailing = query(LIVE, RecordType::A, None);
    trailing.push(0);
    assert!(declined(&trailing));
    // An EDNS version above 0 (the handler answers BADVERS).
    let mut v1 = query(LIVE, RecordType::A, Some(1232));
    let n = v1.len();
    v1[n - 5] = 1;
    assert!(declined(&v1));
    assert!(declined(&v1[..14]));
}

#[test]
fn static_records_are_served_authoritatively_as_written() {
    let state = state(cluster(&[idle()], ""));
    let m = ask_name(&state, "WWW.stream.example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && !m.metadata.recursion_available);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].ttl, 300);
    assert_eq!(m.answers[0].data, RData::A(v4(80).into()));
    assert_eq!(m.queries[0].name().to_string(), "WWW.stream.example.org.");
    let m = ask_name(&state, "stream.example.org.", RecordType::NS);
    assert_eq!(m.answers.len(), 1);
    let m = ask_name(&state, "stream.example.org.", RecordType::SOA);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    assert_eq!(m.answers[0].ttl, 120, "the SOA itself keeps its TTL");
    let m = ask_name(&state, "alias.stream.example.org.", RecordType::A);
    assert_eq!(
        m.answers
            .iter()
            .map(|r| r.record_type())
            .collect::<Vec<_>>(),
        [RecordType::CNAME, RecordType::A]
    );
}

#[test]
fn negatives_carry_the_soa_with_the_negative_ttl() {
    let state = state(cluster(&[idle()], ""));
    let nx = ask_name(&state, "nope.stream.example.org.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert_eq!(nx.authorities.len(), 1);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(nx.authorities[0].ttl, 60, "min(SOA TTL 120, MINIMUM 60)");
    for (qname, qtype) in [
        (WWW, RecordType::AAAA),
        ("b.stream.example.org.", RecordType::A), // empty non-terminal
        (LIVE, RecordType::MX),
        (LIVE_OGG, RecordType::CAA),
    ] {
        let m = ask_name(&state, qname, qtype);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{qname} {qtype}"
        );
        assert!(m.answers.is_empty(), "{qname} {qtype}");
        assert_eq!(m.authorities.len(), 1, "{qname} {qtype}");
        assert_eq!(m.authorities[0].ttl, 60);
        assert!(m.metadata.authoritative);
    }
    // Below a balanced name nothing exists.
    let m = ask_name(&state, "x.live.stream.example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn names_outside_the_zones_and_other_classes_are_refused() {
    let state = state(cluster(&[idle()], ""));
    for qname in ["example.org.", "example.com.", "."] {
        let m = ask_name(&state, qname, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{qname}");
        assert!(!m.metadata.authoritative);
    }
    let mut chaos = Message::new(1, MessageType::Query, OpCode::Query);
    let mut q = Query::query(name("version.bind."), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    chaos.add_query(q);
    assert_eq!(rcode(&state, &chaos), ResponseCode::Refused);
    let m = ask_name(&state, "stream.example.org.", RecordType::AXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn malformed_and_unsupported_queries() {
    let state = state(cluster(&[idle()], ""));
    // Two questions.
    let mut two = Message::new(2, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(name(WWW), RecordType::A));
    two.add_query(Query::query(name(LIVE), RecordType::A));
    assert_eq!(rcode(&state, &two), ResponseCode::FormErr);
    // No question.
    let none = Message::new(3, MessageType::Query, OpCode::Query);
    assert_eq!(rcode(&state, &none), ResponseCode::FormErr);
    // A header claiming 65,535 questions: FORMERR with its ID, said
    // before parsing (hickory's parser would first reserve 11 MB).
    let mut many = query(WWW, RecordType::A, None);
    many[4..6].copy_from_slice(&[0xff, 0xff]);
    let m = ask(&state, &many);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    // A question cut short: FORMERR with the query's ID.
    let raw = query(WWW, RecordType::A, None);
    let m = ask(&state, &raw[..20]);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    // Opcodes other than QUERY.
    for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut m = Message::new(4, MessageType::Query, op);
        m.add_query(Query::query(name("stream.example.org."), RecordType::SOA));
        assert_eq!(rcode(&state, &m), ResponseCode::NotImp, "{op:?}");
    }
    // EDNS version 1.
    let mut m = Message::new(5, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(WWW), RecordType::A));
    let mut e = Edns::new();
    e.set_version(1);
    m.set_edns(e);
    let r = ask(&state, &m.to_vec().unwrap());
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    assert!(r.edns.is_some());
    // Too short for a header, or a response: no answer at all.
    assert!(handle(&state, &raw[..11], Protocol::Udp).is_none());
    let mut resp = raw.clone();
    resp[2] |= 0x80;
    assert!(handle(&state, &resp, Protocol::Udp).is_none());
}

/// Found by fuzzing (`tests/fuzz`, target `dns_handler`): a question name
/// compressed with a pointer into the header parsed, and the response,
/// which echoes the question section as received, pointed into its own
/// header and did not parse. Now FORMERR without a question.
#[test]
fn a_question_pointing_into_the_header_is_a_formerr() {
    let state = state(cluster(&[idle()], ""));
    // The name at offset 2 is the RD flag byte (a label of one byte) and
    // QDCOUNT's high byte (the root): `\000.`.
    let mut one = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    one.extend_from_slice(&[0xc0, 2, 0, 1, 0, 1]);
    // The second question points at the first question's type, which
    // points at offset 2.
    let mut two = vec![0, 8, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0];
    two.extend_from_slice(&[0, 0xc0, 2, 0, 1, 0xc0, 13, 0, 1, 0, 1]);
    for raw in [one, two] {
        let bytes = handle(&state, &raw, Protocol::Udp).expect("an answer");
        let m = Message::from_vec(&bytes).expect("the answer parses");
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, u16::from_be_bytes([raw[0], raw[1]]));
        assert!(m.queries.is_empty());
    }
    // Two questions with a pointer to the first one's name: FORMERR too,
    // said from the header before parsing (RFC 9619: at most one question).
    let mut two_fine = vec![0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0];
    two_fine.extend_from_slice(b"\x03www\x06stream\x07example\x03org\x00\x00\x01\x00\x01");
    two_fine.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let m = Message::from_vec(&handle(&state, &two_fine, Protocol::Udp).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.queries.is_empty());
}

#[test]
fn any_gets_a_minimal_answer() {
    let state = state(cluster(&[idle()], ""));
    let m = ask_name(&state, "stream.example.org.", RecordType::ANY);
    let types: BTreeSet<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "one RRset, not all of them: {types:?}");
    let m = ask_name(&state, LIVE, RecordType::ANY);
    assert!(m.answers.iter().all(|r| r.record_type() == RecordType::A) && !m.answers.is_empty());
    assert_eq!(m.queries[0].query_type(), RecordType::ANY);
}

#[test]
fn answers_that_do_not_fit_are_truncated_and_whole_over_tcp() {
    let state = state(cluster(&[idle()], ""));
    let big = |edns| query("big.stream.example.org.", RecordType::TXT, edns);
    let m = ask(&state, &big(None));
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    let m = ask(&state, &big(Some(512)));
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some(), "the OPT record survives truncation");
    let m = ask(&state, &big(Some(1232)));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 6);
    let bytes = handle(&state, &big(None), Protocol::Tcp).unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 6);
}

#[test]
fn referrals_below_delegations_carry_glue_and_no_aa() {
    let state = state(cluster(&[idle()], ""));
    let m = ask_name(&state, "host.sub.stream.example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::NS);
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(
        m.additionals[0].data,
        RData::A(Ipv4Addr::new(192, 0, 2, 54).into())
    );
}

#[test]
fn a_reload_serves_the_new_zones() {
    let state = state(cluster(&[idle()], ""));
    assert_eq!(
        ask_name(&state, "new.stream.example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stream.example.org.zone"),
        format!("{ZONE}new IN A 192.0.2.99\n"),
    )
    .unwrap();
    let (zones, _) = ZoneSet::load(dir.path());
    state.set_zones(Arc::new(zones.unwrap()));
    let m = ask_name(&state, "new.stream.example.org.", RecordType::A);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(ask_name(&state, LIVE, RecordType::A).answers.len(), 1);
}

#[test]
fn hickory_server_can_drive_the_handler() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let state = state(cluster(&[idle()], ""));
        let mut server = hickory_server::Server::new(FloeHandler::new(state));
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        server.register_socket(socket);
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (qname, rcode, answers) in [
            (LIVE, ResponseCode::NoError, 1),
            (WWW, ResponseCode::NoError, 1),
            ("nope.stream.example.org.", ResponseCode::NXDomain, 0),
            ("example.com.", ResponseCode::Refused, 0),
        ] {
            client
                .send_to(&query(qname, RecordType::A, None), addr)
                .await
                .unwrap();
            let mut buf = [0u8; 1232];
            let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(
                (m.metadata.response_code, m.answers.len()),
                (rcode, answers),
                "{qname}"
            );
        }
        server.shutdown_gracefully().await.unwrap();
    });
}

#[test]
fn binding_port_zero_gives_one_port_for_udp_and_tcp() {
    let mut listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        listen.push("[::1]:0".parse().unwrap());
    }
    let server = DnsServer::bind(&listen, 2).expect("bind");
    assert_eq!(server.addrs.len(), listen.len());
    for (i, a) in server.addrs.iter().enumerate() {
        assert_ne!(a.port(), 0);
        assert_eq!(a.ip(), listen[i].ip());
        assert_eq!(server.tcp[i].local_addr().unwrap(), *a);
        for per_worker in &server.udp {
            assert_eq!(per_worker[i].local_addr().unwrap(), *a);
        }
    }
}

#[test]
fn variants_are_drawn_like_select_picks() {
    // Rooms 10, 30 and 60 (x weight 1): a draw by the decision's weights
    // (as a redirect draws) and the plan's first address come out in the
    // same proportions.
    let relays = [both(90, 0), both(70, 0), both(40, 0)];
    let snap = Arc::new(cluster(&relays, "answers = 1"));
    let zones = Arc::new(Zones::new(zones()));
    let mut rng = SmallRng::seed_from_u64(5);
    let mut from_select = [0u32; 3];
    let mut from_plan = [0u32; 3];
    let rounds = 400;
    let ogg = snap.topology.mount_id("/live.ogg");
    let target = select::Target::Name {
        stream: StreamId::new(0),
        mount: ogg,
    };
    let weighted = select::decide(&snap, target, snap.built).weighted(&snap);
    for _ in 0..rounds {
        for _ in 0..VARIANTS {
            let (r, _) = weighted.draw(&mut rng).expect("candidates");
            from_select[r.index()] += 1;
        }
        let plan = plan_at(&snap, &zones, Instant::now(), &mut rng);
        for v in balanced(&plan, LIVE_OGG).v4.iter() {
            from_plan[usize::from(v[0].octets()[3]) - 1] += 1;
        }
    }
    let n = f64::from(rounds * VARIANTS as u32);
    for i in 0..3 {
        let (a, b) = (f64::from(from_select[i]) / n, f64::from(from_plan[i]) / n);
        assert!(
            (a - b).abs() < 0.02,
            "relay {i}: select {a:.3}, plan {b:.3}"
        );
    }
    assert!((f64::from(from_plan[2]) / n - 0.6).abs() < 0.02);
}

#[test]
fn each_family_is_drawn_among_the_relays_that_have_it() {
    // r0 and r1 IPv4 only, r2 IPv6 only, r3 both; rooms 10, 30, 20, 40.
    let relays = [both(90, 0), both(70, 0), both(80, 0), both(60, 0)];
    let addresses = |i: usize| match i {
        0 | 1 => format!("\"192.0.2.{}\"", i + 1),
        2 => "\"2001:db8::3\"".to_string(),
        _ => "\"192.0.2.4\", \"2001:db8::4\"".to_string(),
    };
    let snap = Arc::new(cluster_with(
        &relays,
        "answers = 2",
        SystemTime::UNIX_EPOCH,
        &addresses,
    ));
    let zones = Arc::new(Zones::new(zones()));
    let mut rng = SmallRng::seed_from_u64(7);
    // First answer of each variant: A among r0, r1, r3 by room 10:30:40;
    // AAAA among r2, r3 by room 20:40. Every variant is full (2 answers).
    let (mut first4, mut first6) = ([0u32; 4], [0u32; 4]);
    let rounds = 400;
    for _ in 0..rounds {
        let plan = plan_at(&snap, &zones, Instant::now(), &mut rng);
        let b = balanced(&plan, LIVE_OGG);
        for v in b.v4.iter() {
            assert_eq!(v.len(), 2, "{v:?}");
            assert_ne!(v[0], v[1]);
            first4[usize::from(v[0].octets()[3]) - 1] += 1;
        }
        for v in b.v6.iter() {
            assert_eq!(v.len(), 2, "{v:?}");
            first6[usize::from(v[0].octets()[15]) - 1] += 1;
        }
    }
    let n = f64::from(rounds * VARIANTS as u32);
    let share = |c: u32| f64::from(c) / n;
    for (i, want) in [(0, 10.0 / 80.0), (1, 30.0 / 80.0), (3, 40.0 / 80.0)] {
        assert!((share(first4[i]) - want).abs() < 0.02, "A r{i}: {first4:?}");
    }
    assert_eq!(first4[2], 0, "r2 has no IPv4 address");
    for (i, want) in [(2, 20.0 / 60.0), (3, 40.0 / 60.0)] {
        assert!(
            (share(first6[i]) - want).abs() < 0.02,
            "AAAA r{i}: {first6:?}"
        );
    }
    assert_eq!(first6[0] + first6[1], 0, "r0 and r1 have no IPv6 address");
}

#[test]
fn a_port_held_by_another_socket_is_refused() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for (what, taken) in [("UDP", udp.local_addr()), ("TCP", tcp.local_addr())] {
        let taken = taken.unwrap();
        assert!(
            DnsServer::bind(&[taken], 2).is_err(),
            "{what} port {taken} taken"
        );
    }
    // Two floes on one port: the second fails.
    let first = DnsServer::bind(&["127.0.0.1:0".parse().unwrap()], 2).unwrap();
    assert!(DnsServer::bind(&first.addrs, 2).is_err());
}

proptest::proptest! {
    /// The slip answer reads outside bytes: whatever arrives, it never
    /// panics, never writes past `out`, and what it sends is a response
    /// with TC set no bigger than the query (no amplification).
    #[test]
    fn truncated_answers_to_any_bytes_are_small_responses(
        query in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        out_len in 0usize..700,
    ) {
        let mut out = vec![0u8; out_len];
        if let Some(len) = fast::truncated(&query, &mut out) {
            proptest::prop_assert!(len <= query.len() && len <= out_len);
            proptest::prop_assert_eq!(out[2] & 0x82, 0x82, "QR and TC set");
            proptest::prop_assert_eq!(&out[6..12], &[0u8; 6], "no records");
            proptest::prop_assert_eq!(&out[12..len], &query[12..len], "the question as asked");
        }
    }
}

#[test]
fn a_plain_query_slips_as_its_question_with_tc() {
    let q = query("www.stream.example.org.", RecordType::A, Some(1232));
    let mut out = [0u8; 512];
    let len = fast::truncated(&q, &mut out).expect("a plain question");
    let m = Message::from_vec(&out[..len]).expect("parses");
    assert!(m.metadata.truncation && m.answers.is_empty() && m.queries.len() == 1);
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
    assert!(len < q.len(), "the OPT record is left out");
}

mod pools;

#[test]
fn a_live_acme_challenge_is_a_txt_record_of_its_zone_while_it_lasts() {
    let challenges = crate::challenges::Challenges::new();
    let snapshots = Arc::new(Snapshots::new(cluster(&[idle()], "")));
    let state = DnsState::with_challenges(snapshots, zones(), challenges.clone());
    let owner = "_acme-challenge.stream.example.org.";
    let m = ask_name(&state, owner, RecordType::TXT);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    challenges.add_txt("stream.example.org", "value-1");
    challenges.add_txt("stream.example.org", "value-2");
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let raw = query(
            "_ACME-Challenge.Stream.example.org.",
            RecordType::TXT,
            Some(1232),
        );
        let m = Message::from_vec(&handle(&state, &raw, protocol).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        let mut values: Vec<String> = m
            .answers
            .iter()
            .map(|r| {
                assert_eq!(r.ttl, handler::CHALLENGE_TTL);
                // The owner as asked (0x20 case kept).
                assert_eq!(r.name.to_ascii(), "_ACME-Challenge.Stream.example.org.");
                match &r.data {
                    RData::TXT(t) => t.to_string(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        values.sort();
        assert_eq!(values, ["value-1", "value-2"]);
    }
    // Another type: NODATA with the SOA (the name exists now).
    let m = ask_name(&state, owner, RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // Another name's challenge is not this one's; gone once removed.
    let m = ask_name(
        &state,
        "_acme-challenge.www.stream.example.org.",
        RecordType::TXT,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    challenges.remove_txt("stream.example.org", "value-1");
    challenges.remove_txt("stream.example.org", "value-2");
    let m = ask_name(&state, owner, RecordType::TXT);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}
