use super::*;
use crate::networks::NetworkMap;
use crate::snapshot::testkit;
use proptest::prelude::*;
use std::sync::Arc;

/// ECS option data: family, source, scope, the address bytes.
fn data(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
    let mut d = family.to_be_bytes().to_vec();
    d.extend([source, scope]);
    d.extend_from_slice(address);
    d
}

#[test]
fn well_formed_options_parse_and_echo_with_the_scope() {
    let e = ClientSubnet::parse(&data(1, 24, 0, &[192, 0, 2])).unwrap();
    assert_eq!(e.address, "192.0.2.0".parse::<IpAddr>().unwrap());
    assert_eq!(e.source, 24);
    let mut out = [0u8; 64];
    let n = e.write(16, &mut out).unwrap();
    assert_eq!(n, e.wire_len());
    assert_eq!(&out[..n], &[0, 8, 0, 7, 0, 1, 24, 16, 192, 0, 2]);
    assert_eq!(e.write(16, &mut [0u8; 10]), None, "too short a buffer");

    let e = ClientSubnet::parse(&data(2, 33, 0, &[0x20, 1, 0xd, 0xb8, 0x80])).unwrap();
    assert_eq!(e.address, "2001:db8:8000::".parse::<IpAddr>().unwrap());
    let e = ClientSubnet::parse(&data(1, 0, 0, &[])).unwrap();
    assert_eq!(e.source, 0);
    let e = ClientSubnet::parse(&data(2, 128, 0, &[0xff; 16])).unwrap();
    assert_eq!(e.source, 128);
}

#[test]
fn malformed_options_say_what_is_wrong() {
    let cases: [(Vec<u8>, EcsError); 8] = [
        (vec![0, 1, 24], EcsError::Short),
        (data(3, 0, 0, &[]), EcsError::Family(3)),
        (data(0, 0, 0, &[]), EcsError::Family(0)),
        (data(1, 33, 0, &[1, 2, 3, 4, 5]), EcsError::Source(33)),
        (data(2, 129, 0, &[0; 17]), EcsError::Source(129)),
        (data(1, 24, 8, &[192, 0, 2]), EcsError::Scope(8)),
        (data(1, 24, 0, &[192, 0, 2, 1]), EcsError::Length(4)),
        (data(1, 23, 0, &[192, 0, 3]), EcsError::Bits),
    ];
    for (bytes, error) in cases {
        assert_eq!(ClientSubnet::parse(&bytes), Err(error), "{bytes:?}");
        assert!(!error.to_string().is_empty());
    }
    assert_eq!(
        ClientSubnet::parse(&data(1, 16, 0, &[10])),
        Err(EcsError::Length(1))
    );
}

/// OPT RDATA with these options.
fn options(list: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, d) in list {
        out.extend(code.to_be_bytes());
        out.extend((d.len() as u16).to_be_bytes());
        out.extend_from_slice(d);
    }
    out
}

#[test]
fn find_reads_one_option_among_others_and_refuses_two() {
    let ecs = data(1, 24, 0, &[10, 1, 2]);
    assert_eq!(find(&options(&[(10, &[1; 8])])), Ok(None));
    let one = find(&options(&[(10, &[1; 8]), (8, &ecs), (12, &[0; 3])])).unwrap();
    assert_eq!(one.unwrap().address, "10.1.2.0".parse::<IpAddr>().unwrap());
    assert_eq!(
        find(&options(&[(8, &ecs), (8, &ecs)])),
        Err(EcsError::Repeated)
    );
    assert_eq!(
        find(&options(&[(8, &data(1, 8, 0, &[10, 1]))])),
        Err(EcsError::Length(2))
    );
    // A truncated option list is not an ECS problem.
    assert_eq!(find(&[0, 8, 0, 9, 0, 1]), Ok(None));
}

#[test]
fn opt_options_walks_questions_and_records_to_the_opt() {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("live.stream.example.org.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Subnet("198.51.100.0/24".parse().unwrap()));
    m.set_edns(edns);
    let raw = m.to_vec().unwrap();
    let found = find(opt_options(&raw).unwrap()).unwrap().unwrap();
    assert_eq!(found.address, "198.51.100.0".parse::<IpAddr>().unwrap());
    assert_eq!(found.source, 24);
    // Cut short, or no OPT: nothing.
    assert_eq!(opt_options(&raw[..raw.len() - 3]), None);
    let mut plain = Message::new(7, MessageType::Query, OpCode::Query);
    plain.add_query(Query::query(Name::root(), RecordType::NS));
    assert_eq!(opt_options(&plain.to_vec().unwrap()), None);
    assert_eq!(opt_options(&[0; 5]), None);
}

/// A topology with the venue pool on 10.1.0.0/16 (its hall on
/// 10.1.5.0/24) and the default pool.
fn topology(extra: &str) -> Arc<Topology> {
    let text = format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
{extra}
[http]
listen = ["127.0.0.1:0"]
[[relay]]
name = "venue-1"
url = "http://10.1.0.10:8000"
status = {{ kind = "xslt" }}
addresses = ["10.1.0.10"]
[[relay]]
name = "world-1"
url = "http://192.0.2.10:8000"
status = {{ kind = "xslt" }}
addresses = ["192.0.2.10"]
[[group]]
name = "venue"
relays = ["venue-1"]
[[pool]]
name = "venue"
networks = ["10.1.0.0/16", "2001:db8:1::/48"]
order = ["venue", "*"]
[[pool]]
name = "hall"
networks = ["10.1.5.0/24"]
order = ["venue"]
[[stream]]
name = "live"
mounts = ["/live.ogg"]
"#
    );
    testkit::topology(&text)
}

fn subnet(net: &str) -> ClientSubnet {
    let net: ipnet::IpNet = net.parse().unwrap();
    let (family, octets): (u16, Vec<u8>) = match net.network() {
        IpAddr::V4(a) => (1, a.octets().to_vec()),
        IpAddr::V6(a) => (2, a.octets().to_vec()),
    };
    let len = usize::from(net.prefix_len().div_ceil(8));
    ClientSubnet::parse(&data(family, net.prefix_len(), 0, &octets[..len])).unwrap()
}

#[test]
fn the_pool_comes_from_the_subnet_and_the_scope_from_the_network_table() {
    let t = topology("");
    let dns = &t.config.dns;
    let pool = |name: &str| t.pool_id(name).unwrap();
    let resolver: IpAddr = "192.0.2.53".parse().unwrap();
    let ask = |net: &str| client(&t, dns, resolver, Some(&subnet(net)), true);
    // Inside the venue, away from the hall: scope 22 leaves 10.1.5.0/24 out
    // (they share 21 bits).
    assert_eq!(
        ask("10.1.0.0/24"),
        Client {
            pool: pool("venue"),
            scope: 22
        }
    );
    assert_eq!(
        ask("10.1.5.0/24"),
        Client {
            pool: pool("hall"),
            scope: 24
        }
    );
    // Longer than ecs_max_prefix_v4 (24): cut to 24 bits, scope at most 24.
    assert_eq!(
        ask("10.1.5.77/32"),
        Client {
            pool: pool("hall"),
            scope: 24
        }
    );
    // Outside every pool network: the default pool, scope from the gap.
    let world = ask("203.0.113.0/24");
    assert_eq!(world.pool, crate::snapshot::DEFAULT_POOL);
    assert!((1..=24).contains(&world.scope), "{world:?}");
    // Too short a source: the network's pool, a scope longer than the
    // source (the resolver should ask with more bits).
    assert_eq!(
        ask("10.0.0.0/8"),
        Client {
            pool: crate::snapshot::DEFAULT_POOL,
            scope: 16
        }
    );
    assert_eq!(
        ask("2001:db8:1::/56"),
        Client {
            pool: pool("venue"),
            scope: 48
        }
    );
}

#[test]
fn without_a_usable_subnet_the_resolver_picks_the_pool_with_scope_zero() {
    let t = topology("");
    let dns = &t.config.dns;
    let venue_resolver: IpAddr = "10.1.9.9".parse().unwrap();
    let venue = t.pool_id("venue").unwrap();
    let c = client(&t, dns, venue_resolver, None, true);
    assert_eq!(
        c,
        Client {
            pool: venue,
            scope: 0
        }
    );
    // Source /0: the client asked that its address not be used.
    let c = client(&t, dns, venue_resolver, Some(&subnet("0.0.0.0/0")), true);
    assert_eq!(
        c,
        Client {
            pool: venue,
            scope: 0
        }
    );
    // An answer the same for every pool: scope 0, whoever asks.
    let c = client(&t, dns, venue_resolver, Some(&subnet("10.1.5.0/24")), false);
    assert_eq!(c.scope, 0);
    // ECS off: the option is ignored.
    let off = topology("ecs = false");
    let c = client(
        &off,
        &off.config.dns,
        "192.0.2.53".parse().unwrap(),
        Some(&subnet("10.1.5.0/24")),
        true,
    );
    assert_eq!(
        c,
        Client {
            pool: crate::snapshot::DEFAULT_POOL,
            scope: 0
        }
    );
}

#[test]
fn a_configured_maximum_caps_bits_and_scope() {
    let t = topology("ecs_max_prefix_v4 = 16\necs_max_prefix_v6 = 40");
    let dns = &t.config.dns;
    let resolver: IpAddr = "192.0.2.53".parse().unwrap();
    // The hall's /24 is invisible at 16 bits: 10.1.5.0/24 is cut to
    // 10.1.0.0, the venue's.
    let c = client(&t, dns, resolver, Some(&subnet("10.1.5.0/24")), true);
    assert_eq!(c.pool, t.pool_id("venue").unwrap());
    assert_eq!(c.scope, 16);
    let c = client(&t, dns, resolver, Some(&subnet("2001:db8:1::/48")), true);
    assert!(c.scope <= 40, "{c:?}");
}

#[test]
fn ipv4_mapped_subnets_count_the_mapping_in_their_scope() {
    let mut map = NetworkMap::new();
    map.insert(
        "10.1.0.0/16".parse().unwrap(),
        crate::snapshot::DEFAULT_POOL,
    );
    let mapped: IpAddr = "::ffff:10.1.2.0".parse().unwrap();
    assert_eq!(echo_scope(&map, mapped, 128), 96 + 16);
    assert_eq!(echo_scope(&map, mapped, 56), 56);
}

proptest! {
    /// Any bytes: a parse error or an option that echoes back what was
    /// sent, scope aside.
    #[test]
    fn parse_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..24), scope in any::<u8>()) {
        if let Ok(e) = ClientSubnet::parse(&bytes) {
            let mut out = [0u8; 4 + MAX_DATA];
            let n = e.write(scope, &mut out).unwrap();
            prop_assert_eq!(&out[4..n][..3], &bytes[..3]);
            prop_assert_eq!(out[7], scope);
            prop_assert_eq!(&out[8..n], &bytes[4..]);
        }
    }

    /// The scope answered never claims more than the source's network
    /// allows to differ: every address inside the answered scope finds the
    /// same pool.
    #[test]
    fn every_address_in_the_scope_finds_the_same_pool(a in any::<u32>(), source in 8u8..=24, probe in any::<u32>()) {
        let t = topology("");
        let dns = &t.config.dns;
        let mask = u32::MAX << (32 - source);
        let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(a & mask), source).unwrap();
        let c = client(&t, dns, "192.0.2.53".parse().unwrap(), Some(&subnet(&net.to_string())), true);
        let keep = u32::MAX.checked_shl(32 - u32::from(c.scope)).unwrap_or(0);
        let other = (a & mask & keep) | (probe & !keep);
        prop_assert_eq!(t.pool_of(IpAddr::V4(std::net::Ipv4Addr::from(other))), c.pool);
    }
}
