//! The HTTP door behind a load balancer, against the real binary: on a
//! PROXY protocol listener the header's source is the client (pool, grant
//! budget, diagnostic pages, per-client connection cap); a bad, missing,
//! over-long or trickled header, or one from a peer outside
//! `trusted_proxies`, closes the connection and is counted; on the plain
//! listener `X-Forwarded-For` is believed from trusted proxies only.
//!
//! The test process plays the load balancer from 127.0.0.1 (trusted:
//! 127.0.0.0/24) and untrusted peers from 127.78.0.0/16; the venue's
//! listeners are 127.77.0.0/16 (pool `hall`: venue-1), everyone else is
//! the default pool (world-1).

mod support;

use floe::demo::sim::SimRelay;
use ppp::v2::{Builder, Command, Protocol, Version};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::floe::FloeProcess;
use support::net::{http_request, tcp_from};
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);
const REQUEST: &[u8] = b"GET /live.ogg HTTP/1.1\r\nHost: floe\r\nConnection: close\r\n\r\n";

/// The balancer's address (trusted) and an untrusted peer's.
const PROXY: &str = "127.0.0.1";
const STRANGER: &str = "127.78.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What keeps the simulated relays running.
type Relays = (SimRelay, SimRelay, tokio::runtime::Runtime);

/// floe with venue-1 for the hall (127.77/16) and world-1 for everyone
/// else, a PROXY listener, and `extra` `[http]`/`[select]` keys.
fn start(extra: &[(&'static str, &str, &str)]) -> (FloeProcess, Relays) {
    let rt = runtime();
    let guard = rt.enter();
    let venue = sim_relay("venue-1", Some(100), None);
    let world = sim_relay("world-1", Some(100), None);
    let mut config = TestConfig::new()
        .set("select", "grants_per_client", "1000")
        .set("http", "proxy_protocol_listen", "[\"127.0.0.1:0\"]")
        .set("http", "trusted_proxies", "[\"127.0.0.0/24\"]")
        .set("http", "diagnostics_from", "[\"127.0.0.0/8\"]")
        .relays(&[&venue, &world])
        .table(
            "[[group]]\nname = \"venue\"\nrelays = [\"venue-1\"]\n\
             [[group]]\nname = \"world\"\nrelays = [\"world-1\"]\n\
             [[pool]]\nname = \"default\"\norder = [\"world\"]\n\
             [[pool]]\nname = \"hall\"\nnetworks = [\"127.77.0.0/16\"]\norder = [\"venue\", \"world\"]\n",
        );
    for (section, key, value) in extra {
        config = config.set(section, key, value);
    }
    let floe = FloeProcess::start(&config.render());
    drop(guard);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    (floe, (venue, world, rt))
}

/// Sends `bytes` to `addr` from `from` and reads until floe closes: what
/// came back and how long that took.
fn exchange(addr: SocketAddr, from: &str, bytes: &[u8]) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut s = tcp_from(ip(from), addr, None, T).expect("connect");
    s.write_all(bytes).expect("write");
    (read_all(&mut s), start.elapsed())
}

fn read_all(s: &mut std::net::TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(T)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("reading from floe: {e} (after {} bytes)", out.len()),
        }
    }
}

/// Status and `X-Floe-Relay` of a response.
fn answer(reply: &[u8]) -> (u16, Option<String>) {
    let text = String::from_utf8_lossy(reply);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let relay = text
        .lines()
        .find_map(|l| l.strip_prefix("x-floe-relay: "))
        .map(str::to_string);
    (status, relay)
}

fn v1(src: &str) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    let dst = if src.is_ipv4() { "127.0.0.1" } else { "::1" };
    format!("PROXY {family} {} {dst} {} 80\r\n", src.ip(), src.port()).into_bytes()
}

fn v2(command: Command, src: &str, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = if src.is_ipv4() {
        "127.0.0.1:80".parse().unwrap()
    } else {
        "[::1]:80".parse().unwrap()
    };
    let mut b = Builder::with_addresses(Version::Two | command, Protocol::Stream, (src, dst));
    for (kind, value) in tlvs {
        b = b.write_tlv(*kind, value).unwrap();
    }
    b.build().unwrap()
}

fn with_request(header: Vec<u8>, request: &[u8]) -> Vec<u8> {
    [header, request.to_vec()].concat()
}

/// The value of `floe_http_proxy_refused_total{reason}`.
fn refused(floe: &FloeProcess, reason: &str) -> u64 {
    let text = floe.get("/metrics").text();
    let series = format!("floe_http_proxy_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

#[test]
fn a_proxy_header_names_the_client() {
    let (floe, _relays) = start(&[("http", "max_connections_per_client", "2")]);
    let door = floe.proxy_http();
    let redirect = |bytes: Vec<u8>| {
        let (reply, _) = exchange(door, PROXY, &with_request(bytes, REQUEST));
        answer(&reply)
    };
    let venue = (302, Some("venue-1".to_string()));
    let world = (302, Some("world-1".to_string()));

    assert_eq!(
        redirect(v1("127.77.0.5:40000")),
        venue,
        "v1 TCP4 from the hall"
    );
    assert_eq!(
        redirect(v1("192.0.2.7:40000")),
        world,
        "v1 TCP4 from elsewhere"
    );
    assert_eq!(redirect(v1("[2001:db8::7]:1")), world, "v1 TCP6");
    assert_eq!(
        redirect(v1("[::ffff:127.77.0.6]:1")),
        venue,
        "v1 TCP6, IPv4-mapped"
    );
    assert_eq!(
        redirect(b"PROXY UNKNOWN\r\n".to_vec()),
        world,
        "v1 UNKNOWN: the balancer itself"
    );
    assert_eq!(redirect(v2(Command::Proxy, "127.77.3.4:5", &[])), venue);
    assert_eq!(
        redirect(v2(
            Command::Proxy,
            "127.77.3.4:5",
            &[(0x05, b"unique-id"), (0xEA, b"\x01vpce-0123456789abcdef")]
        )),
        venue,
        "v2 with TLVs (skipped)"
    );
    assert_eq!(redirect(v2(Command::Proxy, "[2001:db8::9]:5", &[])), world);
    assert_eq!(
        redirect(v2(Command::Local, "127.77.3.4:5", &[])),
        world,
        "v2 LOCAL (a health check): the balancer itself"
    );

    // diagnostics_from (127/8) judges the client the header names.
    let page = |src: &str| {
        let req = b"GET /status.json HTTP/1.1\r\nHost: floe\r\nConnection: close\r\n\r\n";
        answer(&exchange(door, PROXY, &with_request(v1(src), req)).0).0
    };
    assert_eq!(page("127.77.0.5:1"), 200);
    assert_eq!(page("192.0.2.7:1"), 403);

    // Keep-alive: the header comes once, every request on the connection
    // is from its client.
    let mut s = tcp_from(ip(PROXY), door, None, T).unwrap();
    s.write_all(&v1("127.77.0.8:1")).unwrap();
    let keep = b"GET /live.ogg HTTP/1.1\r\nHost: floe\r\n\r\n";
    s.write_all(&[keep.as_slice(), keep, REQUEST].concat())
        .unwrap();
    let replies = String::from_utf8_lossy(&read_all(&mut s)).to_string();
    assert_eq!(
        replies.matches("x-floe-relay: venue-1").count(),
        3,
        "{replies}"
    );

    // The per-client connection cap (2) counts the header's client, not
    // the balancer: two open keep-alive connections of 198.51.100.50 (each
    // answered once, so counted) ...
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = tcp_from(ip(PROXY), door, None, T).unwrap();
            s.write_all(&with_request(v1("198.51.100.50:1"), keep))
                .unwrap();
            s.set_read_timeout(Some(T)).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"302 Found\n") {
                let n = s.read(&mut buf).expect("a keep-alive answer");
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            s
        })
        .collect();
    // ... and a third is closed at once,
    let (reply, _) = exchange(door, PROXY, &with_request(v1("198.51.100.50:1"), REQUEST));
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    // ... while its neighbour in another /24 and the balancer's other
    // clients go on.
    assert_eq!(redirect(v1("198.51.101.50:1")), world);
    assert_eq!(redirect(v1("127.77.0.5:1")), venue);
    drop(held);
}

#[test]
fn bad_headers_and_untrusted_peers_are_closed_and_counted() {
    let (floe, _relays) = start(&[("http", "header_timeout", "\"1s\"")]);
    let door = floe.proxy_http();

    // Plain HTTP instead of a header: closed without an answer.
    let (reply, _) = exchange(door, PROXY, REQUEST);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    // TLS instead of a header.
    let (reply, _) = exchange(door, PROXY, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    assert!(reply.is_empty());
    // v1 with a bad address, and a line longer than 107 bytes.
    let (reply, _) = exchange(
        door,
        PROXY,
        b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\nGET / HTTP/1.1\r\n\r\n",
    );
    assert!(reply.is_empty());
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    let (reply, took) = exchange(door, PROXY, &long);
    assert!(reply.is_empty());
    assert!(
        took < Duration::from_millis(900),
        "refused at once: {took:?}"
    );
    // v2 whose length field says 60,000 bytes: refused from its first 16
    // bytes, not waited for.
    let mut h = v2(Command::Proxy, "127.77.0.5:1", &[]);
    h[14..16].copy_from_slice(&60_000u16.to_be_bytes());
    let (reply, took) = exchange(door, PROXY, &h);
    assert!(reply.is_empty());
    assert!(
        took < Duration::from_millis(900),
        "refused at once: {took:?}"
    );

    // A header trickled slower than header_timeout (1 s): closed at the
    // deadline, before it is whole.
    let start = Instant::now();
    let mut s = tcp_from(ip(PROXY), door, None, T).unwrap();
    let header = v1("127.77.0.5:40000");
    let mut closed_at = None;
    for b in &header {
        if s.write_all(&[*b]).is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let rest = read_all(&mut s);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let took = closed_at.unwrap_or(start.elapsed());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );

    // A whole header from a peer outside trusted_proxies: closed at once.
    let (reply, _) = exchange(door, STRANGER, &with_request(v1("127.77.0.5:1"), REQUEST));
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    // A balancer that connects and says nothing (a TCP health check).
    let s = tcp_from(ip(PROXY), door, None, T).unwrap();
    drop(s);

    // Each counted by reason (missing: HTTP and TLS; too-long: v1 and v2); the doors still serve.
    support::poll(T, Duration::from_millis(50), || {
        (refused(&floe, "missing") == 2
            && refused(&floe, "malformed") == 1
            && refused(&floe, "too-long") == 2
            && refused(&floe, "timeout") == 1
            && refused(&floe, "untrusted") == 1
            && refused(&floe, "closed") == 1)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{}", floe.get("/metrics").text()));
    let (reply, _) = exchange(door, PROXY, &with_request(v1("127.77.0.5:1"), REQUEST));
    assert_eq!(answer(&reply), (302, Some("venue-1".into())));
    assert_eq!(floe.get("/live.ogg").status, 302);
}

#[test]
fn x_forwarded_for_is_believed_from_trusted_proxies_only() {
    let (floe, _relays) = start(&[
        ("select", "grants_per_client", "2"),
        ("select", "client_share", "0.01"),
    ]);
    let url = floe.url("/live.ogg");
    let relay = |from: &str, xff: &[&str]| {
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("X-Forwarded-For", *v)).collect();
        let r = support::net::from_address(ip(from), || {
            http_request("GET", &url, &headers, T).unwrap()
        });
        match r.status {
            302 => r.header("x-floe-relay").unwrap().to_string(),
            s => s.to_string(),
        }
    };
    // From the trusted balancer: the header's client.
    assert_eq!(relay(PROXY, &["127.77.1.9"]), "venue-1");
    // From anyone else: ignored, the peer is the client.
    assert_eq!(relay(STRANGER, &["127.77.1.9"]), "world-1");
    // A chain: the rightmost hop that is not a trusted proxy (127.0.0.2 is
    // one) is the client; what the client wrote left of it is not read.
    assert_eq!(
        relay(PROXY, &["192.0.2.1, 127.77.2.10, 127.0.0.2"]),
        "venue-1"
    );
    assert_eq!(relay(PROXY, &["127.77.3.11, 192.0.2.2"]), "world-1");
    // Two header lines are one list.
    assert_eq!(
        relay(PROXY, &["192.0.2.3, 127.77.4.12", "127.0.0.2"]),
        "venue-1"
    );
    // Malformed: the peer (the balancer, default pool).
    assert_eq!(relay(PROXY, &["127.77.5.13, unknown"]), "world-1");
    assert_eq!(relay(PROXY, &["127.77.6.14 127.77.6.15"]), "world-1");

    // The grant budget (2 per window) is the forwarded client's: two
    // listeners behind the same balancer each get their own.
    assert_eq!(relay(PROXY, &["198.51.100.1"]), "world-1");
    assert_eq!(relay(PROXY, &["198.51.100.1"]), "world-1");
    assert_eq!(relay(PROXY, &["198.51.100.1"]), "429");
    assert_eq!(relay(PROXY, &["203.0.113.1"]), "world-1");

    // diagnostics_from judges the forwarded client.
    let page = |xff: &str| {
        http_request(
            "GET",
            &floe.url("/status.json"),
            &[("X-Forwarded-For", xff)],
            T,
        )
        .unwrap()
        .status
    };
    assert_eq!(page("127.77.0.9"), 200);
    assert_eq!(page("192.0.2.9"), 403);
}
