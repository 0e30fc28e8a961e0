//! Listener pools at the HTTP door, against the real binary: a listener
//! from the venue's network is sent to the venue's relays while they have
//! room and spills over to the others when they are full; listeners from
//! elsewhere never get the venue relays' last slots first, and never the
//! relays of an exclusive group; `/explain?client=` shows the pool's
//! decision. The DNS door answers per pool too, by EDNS Client Subnet or
//! the resolver's address.

mod support;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, UdpSocket};
use std::time::Duration;
use support::dns::dig;
use support::floe::FloeProcess;
use support::net::{client_address, from_address, http_request};
use support::prom::value;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

/// The groups and pools of these tests: the venue group of relays
/// `venue` (TOML strings) first for the hall (127.77/16), the partner's
/// exclusive relay for its network (127.78/16).
fn pools(venue: &str) -> String {
    format!(
        "[[group]]\nname = \"venue\"\nrelays = [{venue}]\n\
         [[group]]\nname = \"partner\"\nrelays = [\"partner-1\"]\nexclusive = true\n\
         [[pool]]\nname = \"hall\"\nnetworks = [\"127.77.0.0/16\"]\norder = [\"venue\", \"*\"]\n\
         [[pool]]\nname = \"partner-net\"\nnetworks = [\"127.78.0.0/16\"]\norder = [\"partner\"]\n"
    )
}

/// The relay a `GET /live.ogg` from `ip` is sent to (`None`: refused).
fn redirect_from(floe: &FloeProcess, ip: &str) -> Option<String> {
    let r = from_address(ip.parse().unwrap(), || {
        http_request("GET", &floe.url("/live.ogg"), &[], T).unwrap()
    });
    (r.status == 302).then(|| r.header("x-floe-relay").unwrap().to_string())
}

#[test]
fn venue_listeners_get_venue_relays_first_and_spill_over_by_room() {
    let rt = runtime();
    let _g = rt.enter();
    let venue = [
        sim_relay("venue-1", Some(3), None),
        sim_relay("venue-2", Some(2), None),
    ];
    let world = sim_relay("world-1", Some(100), None);
    let partner = sim_relay("partner-1", Some(100), None);
    let config = TestConfig::new()
        // Every listener of this test is its own client: no budget limits.
        .set("select", "grants_per_client", "1000")
        // The simulated relays never see the listeners sent there: a poll
        // amid the test would hand the venue its room back. One poll at
        // start, then none while the test runs.
        .set("poll", "interval", "\"60s\"")
        .relays(&[&venue[0], &venue[1], &world, &partner])
        .table(&pools(r#""venue-1", "venue-2""#))
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);

    // Explain, before any grant: the hall's candidates are the venue's.
    let e = http_request(
        "GET",
        &floe.url("/explain/live.ogg?client=127.77.1.1"),
        &[],
        T,
    )
    .unwrap();
    let text = e.text();
    assert!(
        text.contains("listener pool: hall (groups tried in order: venue, *; answering: venue)"),
        "{text}"
    );

    // Eight hall listeners: the venue's five slots first, then world-1.
    let hall: Vec<String> = (0..8)
        .map(|i| redirect_from(&floe, &format!("127.77.0.{}", i + 1)).expect("a 302"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &hall[..5] {
        *counts.entry(r).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("venue-1", 3), ("venue-2", 2)]),
        "{hall:?}"
    );
    assert!(hall[5..].iter().all(|r| r == "world-1"), "{hall:?}");

    // The partner's network gets the partner's relay only; nobody else
    // ever does.
    for i in 0..10 {
        assert_eq!(
            redirect_from(&floe, &format!("127.78.0.{}", i + 1)).as_deref(),
            Some("partner-1")
        );
        let other = client_address(i).to_string();
        assert_eq!(
            redirect_from(&floe, &other).as_deref(),
            Some("world-1"),
            "{other}"
        );
    }
    let e = http_request(
        "GET",
        &floe.url("/explain/live.ogg?client=127.0.0.9&format=json"),
        &[],
        T,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&e.text()).unwrap();
    assert_eq!(json["pool"], "default");
    let excluded: BTreeMap<String, String> = json["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["relay"].as_str().unwrap().into(),
                x["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(excluded["partner-1"], "not-in-pool");
    assert_eq!(excluded["venue-1"], "full");

    // /metrics: the 302s per pool and group, the hall's three spill-overs,
    // and each group's room and relays up.
    let text = http_request("GET", &floe.url("/metrics"), &[], T)
        .unwrap()
        .text();
    let answers = |door: &str, pool: &str, group: &str| {
        let labels = [("door", door), ("pool", pool), ("group", group)];
        value(&text, "floe_pool_answers_total", &labels)
    };
    assert_eq!(answers("http", "hall", "venue"), Some(5.0), "{text}");
    assert_eq!(answers("http", "hall", "*"), Some(3.0));
    assert_eq!(answers("http", "partner-net", "partner"), Some(10.0));
    assert_eq!(answers("http", "default", "*"), Some(10.0));
    let spilled = |pool: &str, group: &str| {
        let labels = [("door", "http"), ("pool", pool), ("group", group)];
        value(&text, "floe_spillovers_total", &labels)
    };
    assert_eq!(spilled("hall", "*"), Some(3.0));
    assert_eq!(
        spilled("hall", "venue"),
        None,
        "the first group never spills"
    );
    let room = |group: &str| {
        let labels = [("group", group), ("stream", "live"), ("mount", "/live.ogg")];
        value(&text, "floe_group_room", &labels)
    };
    // (Grants not seen by a poll yet expire meanwhile: room only grows.)
    assert!(room("venue").is_some_and(|n| n <= 5.0), "{text}");
    assert!(room("partner").is_some_and(|n| (90.0..=100.0).contains(&n)));
    assert_eq!(
        value(&text, "floe_group_relays_up", &[("group", "venue")]),
        Some(2.0)
    );

    // /status.json and the page: the groups' room, who answers each pool.
    let status: serde_json::Value = serde_json::from_str(
        &http_request("GET", &floe.url("/status.json"), &[], T)
            .unwrap()
            .text(),
    )
    .unwrap();
    let venue = &status["groups"][0];
    assert_eq!(venue["name"], "venue");
    assert_eq!(venue["relays_up"], 2);
    // The group's room is its relays' room, and the hall spills over
    // exactly when it is 0.
    let relay_room = |i: usize| {
        status["relays"][i]["mounts"][0]["room"]
            .as_u64()
            .unwrap_or(0)
    };
    let room = venue["mounts"][0]["room"].as_u64().unwrap();
    assert_eq!(room, relay_room(0) + relay_room(1), "{status}");
    let hall = &status["pools"][1];
    assert_eq!(hall["name"], "hall");
    assert_eq!(hall["networks"][0], "127.77.0.0/16");
    let (group, spilled) = if room == 0 {
        ("*", true)
    } else {
        ("venue", false)
    };
    assert_eq!(hall["answering"][0]["group"], group, "{status}");
    assert_eq!(hall["answering"][0]["spilled"], spilled);
    let page = http_request("GET", &floe.url("/status"), &[], T)
        .unwrap()
        .text();
    assert!(page.contains("<h2>Listener pools</h2>"), "{page}");
    assert!(page.contains("venue → *"));

    // floe explain --client: the CLI says the same as /explain?client=.
    let explain = |option: &str, value: &str| {
        let url = floe.url("/");
        let args = ["explain", "/live.ogg", "--url", &url, option, value];
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let text = explain("--client", "127.77.1.1");
    assert!(
        text.contains("listener pool: hall (groups tried in order: venue, *; answering: "),
        "{text}"
    );
    let text = explain("--pool", "partner-net");
    assert!(text.contains("listener pool: partner-net"), "{text}");
}

/// The DNS door answers each pool too: by the resolver's address, or by
/// the EDNS Client Subnet a resolver sends (asked with real `dig`), with
/// the scope a resolver caches the answer for; a malformed option is
/// FORMERR.
#[test]
fn balanced_names_answer_each_pool_by_client_subnet_or_resolver() {
    let rt = runtime();
    let _g = rt.enter();
    let venue = sim_relay("venue-1", Some(100), None);
    let world = sim_relay("world-1", Some(100), None);
    let partner = sim_relay("partner-1", Some(100), None);
    let config = TestConfig::new()
        .relays(&[&venue, &world, &partner])
        .table(&pools(r#""venue-1""#))
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let (venue_ip, world_ip, partner_ip) = (ip("127.0.0.1"), ip("127.0.0.2"), ip("127.0.0.3"));
    let name = "live.stream.example.org.";
    let ask = |extra: &[&str]| dig(floe.dns(), name, "A", extra);

    // Through a resolver outside every pool, the client subnet decides;
    // the scope is the pool's network, /16.
    let hall = ask(&["+subnet=127.77.1.0/24"]);
    assert_eq!(hall.status, "NOERROR", "{}", hall.text);
    assert_eq!(hall.addresses, BTreeSet::from([venue_ip]), "{}", hall.text);
    assert_eq!(hall.client_subnet.as_deref(), Some("127.77.1.0/24/16"));
    let p = ask(&["+subnet=127.78.200.0/24"]);
    assert_eq!(p.addresses, BTreeSet::from([partner_ip]), "{}", p.text);
    assert_eq!(p.client_subnet.as_deref(), Some("127.78.200.0/24/16"));
    // Everyone else: the non-exclusive relays, with a scope that keeps
    // the pools' networks out (192/8 and 127/8 part at the first bit).
    let w = ask(&["+subnet=192.0.2.0/24"]);
    assert_eq!(
        w.addresses,
        BTreeSet::from([venue_ip, world_ip]),
        "{}",
        w.text
    );
    assert_eq!(w.client_subnet.as_deref(), Some("192.0.2.0/24/1"));
    // A /32 is read to /24 only ([dns] ecs_max_prefix_v4).
    let one = ask(&["+subnet=127.77.1.9/32"]);
    assert_eq!(one.addresses, BTreeSet::from([venue_ip]));
    assert_eq!(one.client_subnet.as_deref(), Some("127.77.1.9/32/16"));

    // Without the option, the resolver's own address decides.
    let from_hall = ask(&["-b", "127.77.0.53"]);
    assert_eq!(
        from_hall.addresses,
        BTreeSet::from([venue_ip]),
        "{}",
        from_hall.text
    );
    assert_eq!(from_hall.client_subnet, None);
    let from_partner = ask(&["-b", "127.78.0.53"]);
    assert_eq!(from_partner.addresses, BTreeSet::from([partner_ip]));

    // A static name echoes the option with scope 0; TXT says which pool
    // and group answered.
    let apex = dig(
        floe.dns(),
        "stream.example.org.",
        "SOA",
        &["+subnet=127.77.1.0/24"],
    );
    assert_eq!(
        apex.client_subnet.as_deref(),
        Some("127.77.1.0/24/0"),
        "{}",
        apex.text
    );
    let txt = dig(floe.dns(), name, "TXT", &["+subnet=127.77.1.0/24"]);
    assert!(
        txt.txt.contains("relays=venue-1 pool=hall group=venue"),
        "{}",
        txt.text
    );

    // A malformed option (family 3, which no resolver sends): FORMERR.
    let mut m = Message::new(0x5150, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Unknown(8, vec![0, 3, 0, 0]));
    m.set_edns(edns);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&m.to_vec().unwrap(), floe.dns()).unwrap();
    socket.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 1232];
    let n = socket.recv(&mut buf).unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, 0x5150);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    // ...and floe goes on answering.
    assert_eq!(
        ask(&["+subnet=127.77.1.0/24"]).addresses,
        BTreeSet::from([venue_ip])
    );
}
