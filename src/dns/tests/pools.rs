//! Listener pools at the DNS door: a balanced name answers each pool from
//! its own groups, chosen by the query's EDNS Client Subnet or the
//! resolver's address, with the ECS scope a resolver caches by; the fast
//! path and the handler agree on every such answer.

use super::*;
use crate::snapshot::{DEFAULT_POOL, RelayId};
use hickory_proto::rr::rdata::opt::{ClientSubnet as HickorySubnet, EdnsCode, EdnsOption};

/// Relay r0 is the venue group; the hall pool (10.1.0.0/16) prefers it,
/// then any relay. r2 is a partner's, exclusive to 10.9.0.0/16.
const POOLS: &str = "[[group]]\nname = \"venue\"\nrelays = [\"r0\"]\n\
    [[group]]\nname = \"partner\"\nrelays = [\"r2\"]\nexclusive = true\n\
    [[pool]]\nname = \"hall\"\nnetworks = [\"10.1.0.0/16\"]\norder = [\"venue\", \"*\"]\n\
    [[pool]]\nname = \"partner-net\"\nnetworks = [\"10.9.0.0/16\"]\norder = [\"partner\"]\n";

/// An A query for `qname` with an OPT record, carrying an ECS option with
/// `ecs` (raw option data) when given.
fn ecs_query(qname: &str, ecs: Option<&[u8]>) -> Vec<u8> {
    let mut raw = query(qname, RecordType::A, Some(1232));
    if let Some(data) = ecs {
        append_option(&mut raw, data);
    }
    raw
}

/// Appends an ECS option with `data` to `raw`, whose OPT record ends it.
fn append_option(raw: &mut Vec<u8>, data: &[u8]) {
    let rdlen_at = {
        // The OPT record: root, type, class, TTL, RDLEN, then the options
        // so far; find RDLEN by walking back over them.
        let mut at = 12;
        while raw[at] != 0 {
            at += 1 + usize::from(raw[at]);
        }
        at + 1 + 4 + 1 + 2 + 2 + 4
    };
    raw.extend(8u16.to_be_bytes());
    raw.extend((data.len() as u16).to_be_bytes());
    raw.extend_from_slice(data);
    let rdlen = (raw.len() - rdlen_at - 2) as u16;
    raw[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// ECS data for IPv4 network `a`/`source`.
fn v4_subnet(a: [u8; 4], source: u8) -> Vec<u8> {
    let mut d = vec![0, 1, source, 0];
    d.extend_from_slice(&a[..usize::from(source.div_ceil(8))]);
    d
}

/// The full answer path (fast, else handler) for `raw` from `resolver`,
/// and whether the fast path answered.
fn ask_from(state: &Arc<DnsState>, raw: &[u8], resolver: IpAddr) -> (Message, bool) {
    let plan = state.plan(Instant::now());
    let mut out = [0u8; 1232];
    if let Some((n, _)) = fast::answer(raw, &plan, 0, resolver, &mut out) {
        return (
            Message::from_vec(&out[..n]).expect("fast answer parses"),
            true,
        );
    }
    let handler = FloeHandler::new(state.clone());
    let src = SocketAddr::new(resolver, 5353);
    let (bytes, _) = rt()
        .block_on(handler.answer(raw, src, Protocol::Udp))
        .expect("a response");
    (Message::from_vec(&bytes).expect("response parses"), false)
}

fn addresses(m: &Message) -> BTreeSet<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The ECS option of a response: (address, source, scope).
fn echoed(m: &Message) -> Option<(IpAddr, u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn each_pool_gets_its_own_answer_and_equal_ones_are_shared() {
    let plan = plan_of(&[idle(), idle(), idle()], POOLS);
    let topology = &plan.snapshot.topology;
    let b = plan.find(&name(LIVE)).unwrap();
    let pool = |n: &str| topology.pool_id(n).unwrap();
    assert!(b.varies());
    assert_eq!(&*b.for_pool(pool("hall")).relays, &[RelayId::new(0)]);
    assert_eq!(
        &*b.for_pool(DEFAULT_POOL).relays,
        &[RelayId::new(0), RelayId::new(1)],
        "the default pool never gets the partner's exclusive relay"
    );
    assert_eq!(&*b.for_pool(pool("partner-net")).relays, &[RelayId::new(2)]);
    let hall = b.for_pool(pool("hall"));
    assert!(hall.v4.iter().all(|v| **v == [v4(1)]));
    let text = b.explain(&plan.snapshot, plan.generation, pool("hall"));
    assert!(text.ends_with(" relays=r0 pool=hall group=venue"), "{text}");

    // The venue relay full: the hall spills over to every relay with room,
    // the default pool's answer, which both pools now share.
    let plan = plan_of(&[both(100, 100), idle(), R::Down], POOLS);
    let b = plan.find(&name(LIVE)).unwrap();
    let hall = b.for_pool(pool("hall"));
    assert_eq!(&*hall.relays, &[RelayId::new(1)]);
    assert!(std::ptr::eq(hall, b.default_answer()));
    assert_eq!(
        b.answers.len(),
        2,
        "shared by hall and default; partner apart"
    );
    assert_eq!(&*hall.pools, &[DEFAULT_POOL, pool("hall")]);
    let group = |p| b.group(p).map(|g| &*topology.groups[g].name);
    assert_eq!(group(pool("hall")), Some("*"), "spilled over");
    assert_eq!(
        group(pool("partner-net")),
        None,
        "the partner's relay is down"
    );
}

#[test]
fn serve_all_stays_within_the_pool() {
    // Every relay down: the partner's pool's serve-all answers its own
    // relay; the default pool's never names it.
    let plan = plan_of(&[R::Down, R::Down, R::Down], POOLS);
    let topology = &plan.snapshot.topology;
    let b = plan.find(&name(LIVE)).unwrap();
    let partner = b.for_pool(topology.pool_id("partner-net").unwrap());
    assert!(matches!(partner.decision, Decision::Policy { .. }));
    assert_eq!(&*partner.relays, &[RelayId::new(2)]);
    assert!(!b.default_answer().relays.contains(&RelayId::new(2)));
}

#[test]
fn the_subnet_or_else_the_resolver_picks_the_answer() {
    let state = state(cluster(&[idle(), idle(), idle()], POOLS));
    let outside = ip("192.0.2.200");
    // The hall's subnet through an outside resolver: the venue relay, the
    // option echoed with the hall's /16 as scope.
    let hall = ecs_query(LIVE, Some(&v4_subnet([10, 1, 2, 0], 24)));
    let (m, fast) = ask_from(&state, &hall, outside);
    assert!(fast, "ECS queries stay on the fast path");
    assert_eq!(addresses(&m), BTreeSet::from([v4(1)]));
    assert_eq!(echoed(&m), Some((ip("10.1.2.0"), 24, 16)));
    // The world's subnet through a resolver in the hall: relays r0 and r1,
    // a scope that leaves both pool networks out (203/8 and 10/8 part at
    // bit 1).
    let world = ecs_query(LIVE, Some(&v4_subnet([203, 0, 113, 0], 24)));
    let (m, _) = ask_from(&state, &world, ip("10.1.0.53"));
    assert_eq!(addresses(&m), BTreeSet::from([v4(1), v4(2)]));
    assert_eq!(echoed(&m), Some((ip("203.0.113.0"), 24, 1)));
    // No option: the resolver's own address.
    let (m, _) = ask_from(&state, &ecs_query(LIVE, None), ip("10.9.0.53"));
    assert_eq!(addresses(&m), BTreeSet::from([v4(3)]));
    assert_eq!(echoed(&m), None);
    // Source /0: the resolver's address, scope 0.
    let private = ecs_query(LIVE, Some(&[0, 1, 0, 0]));
    let (m, _) = ask_from(&state, &private, ip("10.1.0.53"));
    assert_eq!(addresses(&m), BTreeSet::from([v4(1)]));
    assert_eq!(echoed(&m), Some((ip("0.0.0.0"), 0, 0)));
}

#[test]
fn answers_that_do_not_depend_on_the_client_have_scope_zero() {
    let subnet = v4_subnet([10, 1, 2, 0], 24);
    // No pools: the balanced name answers everyone alike.
    let state = state(cluster(&[idle(), idle(), idle()], ""));
    let (m, _) = ask_from(&state, &ecs_query(LIVE, Some(&subnet)), ip("192.0.2.200"));
    assert_eq!(echoed(&m), Some((ip("10.1.2.0"), 24, 0)));
    // With pools, a static name and a missing one: scope 0, echoed.
    let state = super::state(cluster(&[idle(), idle(), idle()], POOLS));
    for qname in [WWW, "nothing.stream.example.org."] {
        let (m, fast) = ask_from(&state, &ecs_query(qname, Some(&subnet)), ip("192.0.2.200"));
        assert!(!fast);
        assert_eq!(echoed(&m), Some((ip("10.1.2.0"), 24, 0)), "{qname}");
    }
}

#[test]
fn with_ecs_off_the_option_is_ignored_and_not_echoed() {
    let dns = format!("ecs = false\n{POOLS}");
    let state = state(cluster(&[idle(), idle(), idle()], &dns));
    let raw = ecs_query(LIVE, Some(&v4_subnet([10, 1, 2, 0], 24)));
    let (m, fast) = ask_from(&state, &raw, ip("192.0.2.200"));
    assert!(fast);
    assert_eq!(
        addresses(&m),
        BTreeSet::from([v4(1), v4(2)]),
        "the resolver's pool"
    );
    assert_eq!(echoed(&m), None);
    let raw = ecs_query(WWW, Some(&v4_subnet([10, 1, 2, 0], 24)));
    assert_eq!(echoed(&ask_from(&state, &raw, ip("10.1.0.1")).0), None);
}

#[test]
fn malformed_client_subnets_are_formerr_on_every_path() {
    let state = state(cluster(&[idle(), idle(), idle()], POOLS));
    let bad: [(&str, Vec<u8>); 6] = [
        ("unknown family", vec![0, 3, 0, 0]),
        ("source past the address", vec![0, 1, 33, 0, 1, 2, 3, 4, 5]),
        ("scope in a query", vec![0, 1, 24, 8, 10, 1, 2]),
        ("address too long", vec![0, 1, 16, 0, 10, 1, 2]),
        ("bits past the source", vec![0, 1, 23, 0, 10, 1, 3]),
        ("too short", vec![0, 1]),
    ];
    let good = v4_subnet([10, 1, 2, 0], 24);
    for qname in [LIVE, WWW] {
        for (what, data) in &bad {
            let (m, fast) = ask_from(&state, &ecs_query(qname, Some(data)), ip("192.0.2.200"));
            assert!(!fast, "{what}");
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::FormErr,
                "{qname}: {what}"
            );
        }
        let mut twice = ecs_query(qname, Some(&good));
        append_option(&mut twice, &good);
        let (m, _) = ask_from(&state, &twice, ip("192.0.2.200"));
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::FormErr,
            "{qname}: two options"
        );
    }
}

#[test]
fn fast_path_and_handler_agree_for_every_pool_and_subnet() {
    let clusters = [
        vec![idle(), idle(), idle()],
        vec![both(100, 100), idle(), R::Down],
        vec![R::Down, R::Down, R::Down],
    ];
    let subnets: [Option<Vec<u8>>; 6] = [
        None,
        Some(v4_subnet([10, 1, 2, 0], 24)),
        Some(v4_subnet([10, 9, 0, 0], 16)),
        Some(v4_subnet([10, 0, 0, 0], 8)),
        Some(vec![0, 1, 0, 0]),
        Some(vec![0, 2, 48, 0, 0x20, 1, 0xd, 0xb8, 0, 1]),
    ];
    for relays in clusters {
        let state = state(cluster(&relays, POOLS));
        let plan = state.plan(Instant::now());
        for resolver in [ip("127.0.0.1"), ip("10.1.0.53"), ip("10.9.7.7")] {
            for subnet in &subnets {
                let raw = ecs_query(LIVE_OGG, subnet.as_deref());
                for k in 0..VARIANTS {
                    let mut out = [0u8; 1232];
                    let (n, _) = fast::answer(&raw, &plan, k, resolver, &mut out)
                        .unwrap_or_else(|| panic!("fast path declined {subnet:?}"));
                    let fast = Message::from_vec(&out[..n]).expect("fast answer parses");
                    let src = SocketAddr::new(resolver, 53);
                    let slow = Message::from_vec(&via_handler_from(&state, &plan, &raw, k, src))
                        .expect("handler answer parses");
                    assert_eq!(
                        fast, slow,
                        "{relays:?} from {resolver} with {subnet:?}, variant {k}"
                    );
                }
            }
        }
    }
}

#[test]
fn hickory_reads_the_echoed_option_as_written() {
    let e = ecs::ClientSubnet::parse(&v4_subnet([10, 1, 2, 0], 24)).unwrap();
    let mut out = [0u8; 32];
    let n = e.write(16, &mut out).unwrap();
    let theirs = HickorySubnet::try_from(&out[4..n]).unwrap();
    assert_eq!(theirs.addr(), ip("10.1.2.0"));
    assert_eq!((theirs.source_prefix(), theirs.scope_prefix()), (24, 16));
}

#[test]
fn answers_are_counted_per_pool_and_group() {
    let state = state(cluster(&[both(100, 100), idle(), idle()], POOLS));
    let counters = state.register();
    let plan = state.plan(Instant::now());
    let mut out = [0u8; 1232];
    let mut keys = Vec::new();
    for (subnet, resolver) in [
        (Some(v4_subnet([10, 1, 2, 0], 24)), "192.0.2.200"),
        (None, "10.1.0.53"),
        (None, "10.9.0.53"),
        (None, "192.0.2.200"),
    ] {
        let raw = ecs_query(LIVE, subnet.as_deref());
        let (_, key) = fast::answer(&raw, &plan, 0, ip(resolver), &mut out).unwrap();
        keys.push(key);
    }
    // The handler counts A answers, not TXT.
    let handler = FloeHandler::new(state.clone());
    let src = SocketAddr::new(ip("10.9.0.53"), 53);
    for qtype in [RecordType::A, RecordType::TXT] {
        let raw = query(LIVE, qtype, None);
        let (_, key) = rt()
            .block_on(handler.answer(&raw, src, Protocol::Tcp))
            .unwrap();
        keys.push(key);
    }
    counters.count_queries(&keys);
    let counts: BTreeSet<(String, String, u64)> = state
        .pool_answer_counts()
        .into_iter()
        .filter(|c| c.2 > 0)
        .map(|(p, g, n)| (p.into(), g.into(), n))
        .collect();
    // The venue relay is full: the hall spilled over to "*".
    let want = [
        ("hall", "*", 2),
        ("partner-net", "partner", 2),
        ("default", "*", 1),
    ];
    let want: BTreeSet<(String, String, u64)> = want
        .iter()
        .map(|&(p, g, n)| (p.into(), g.into(), n))
        .collect();
    assert_eq!(counts, want);
}
