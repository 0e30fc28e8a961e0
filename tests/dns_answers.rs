//! DNS front door, end to end: floe started in-process (and once as the
//! real binary, queried with `dig`) on port 0, in front of small fake
//! relays that serve the floe-slots status format on loopback; queries over
//! real UDP and TCP sockets with hickory-proto messages.
//!
//! Readiness is awaited by polling with deadlines, never fixed sleeps;
//! every port comes from the OS.

mod support;

use floe::config;
use floe::serve::Instance;
use floe::snapshot::RelayId;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---- Fake relays: a tiny HTTP server answering the floe-slots format. ----

/// A fake Icecast relay on 127.0.0.1:0 serving `/floe-slots.xsl`. Its
/// mounts can be changed, and it can be stopped (then connections are
/// refused: the relay is down).
struct FakeRelay {
    addr: SocketAddr,
    /// (mount, listeners, max) per mount with a source.
    mounts: Arc<Mutex<Vec<(String, u32, u32)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeRelay {
    fn start(mounts: &[(&str, u32, u32)]) -> FakeRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().unwrap();
        let mounts: Vec<(String, u32, u32)> = mounts
            .iter()
            .map(|&(m, l, x)| (m.to_string(), l, x))
            .collect();
        let mounts = Arc::new(Mutex::new(mounts));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mounts.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let body = slots(&m.lock().unwrap());
                        let _ = serve_one(stream, &body);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRelay {
            addr,
            mounts,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, mounts: &[(&str, u32, u32)]) {
        *self.mounts.lock().unwrap() = mounts
            .iter()
            .map(|&(m, l, x)| (m.to_string(), l, x))
            .collect();
    }

    /// Stops answering: the port is closed, polls are refused.
    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.kill();
    }
}

fn slots(mounts: &[(String, u32, u32)]) -> String {
    let mut s = String::from("#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n");
    for (m, l, x) in mounts {
        s += &format!("{m}\t{l}\t{x}\t{}\n", x.saturating_sub(*l));
    }
    s += &format!("END\t{}\n", mounts.len());
    s
}

fn serve_one(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

// ---- floe under test. ----

const ZONE: &str = "$ORIGIN stream.example.org.
$TTL 300
@ 120 IN SOA ns1.stream.example.org. hostmaster.example.org. ( 1 3600 600 1209600 60 )
@ IN NS ns1.stream.example.org.
ns1 IN A 192.0.2.53
www IN A 192.0.2.80
big IN TXT \"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"1123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"2123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"3123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"4123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
big IN TXT \"5123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"
";

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(200);
const FALL: u32 = 2;

/// The DNS address of relay `i` (what floe answers for it).
fn relay_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 11 + i as u8)
}

/// A config and zone directory for `relays`, with `dns_extra` added to
/// `[dns]`.
fn write_config(dir: &Path, relays: &[&FakeRelay], dns_extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("zones/stream.example.org.zone"), ZONE).unwrap();
    let defaults: String = [
        "listen = [\"127.0.0.1:0\"]",
        "answers = 2",
        "ttl = \"20s\"",
        "min_ttl = \"5s\"",
        "udp_workers = 2",
    ]
    .iter()
    .filter(|d| {
        !dns_extra
            .lines()
            .any(|l| l.split('=').next() == d.split('=').next())
    })
    .map(|d| format!("{d}\n"))
    .collect();
    let mut toml = format!(
        "[dns]\nzones = \"zones\"\n{defaults}{dns_extra}\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [poll]\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\nrise = 1\nfall = {FALL}\n\
         [[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\", \"/live.mp3\"]\ndns = [\"live.stream.example.org.\"]\n\
         mount_dns = {{ \"/live.ogg\" = [\"live-ogg.stream.example.org.\"] }}\n",
        INTERVAL.as_millis(),
        TIMEOUT.as_millis()
    );
    for (i, r) in relays.iter().enumerate() {
        toml += &format!(
            "[[relay]]\nname = \"relay-{i}\"\nurl = \"http://{}\"\naddresses = [\"{}\"]\nstatus = {{ kind = \"xslt\", path = \"/floe-slots.xsl\" }}\n",
            r.addr,
            relay_ip(i)
        );
    }
    let path = dir.join("floe.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// floe running in-process on its own runtime.
struct Floe {
    instance: Option<Instance>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Floe {
    fn start(relays: &[&FakeRelay], dns_extra: &str) -> Floe {
        // As `floe serve` does: the poller's HTTP client needs a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), relays, dns_extra);
        let loaded = config::load(&config).unwrap_or_else(|d| panic!("config invalid:\n{d}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let instance = {
            let _guard = rt.enter();
            Instance::start(loaded).expect("floe starts")
        };
        Floe {
            instance: Some(instance),
            rt,
            _dir: dir,
            config,
        }
    }

    fn instance(&self) -> &Instance {
        self.instance.as_ref().unwrap()
    }

    fn dns(&self) -> SocketAddr {
        self.instance().dns_addrs[0]
    }

    /// Waits until every relay has been polled.
    fn wait_first_round(&self) {
        let snaps = self.instance().snapshots();
        poll_until("first poll round", Duration::from_secs(10), || {
            snaps.load().first_round_done
        });
    }
}

impl Drop for Floe {
    fn drop(&mut self) {
        if let Some(i) = self.instance.take() {
            i.stop();
        }
    }
}

fn poll_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

// ---- A small DNS client. ----

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0x4242);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

/// Sends `raw` over UDP and returns the raw response (None on timeout).
fn udp_raw(server: SocketAddr, raw: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(raw, server).unwrap();
    let mut buf = [0u8; 65535];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn udp(server: SocketAddr, raw: &[u8]) -> Message {
    let bytes = udp_raw(server, raw).expect("a UDP response");
    assert_eq!(bytes[..2], raw[..2], "response ID matches");
    Message::from_vec(&bytes).expect("response parses")
}

fn tcp_send(stream: &mut TcpStream, raw: &[u8]) {
    let mut framed = (raw.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(raw);
    stream.write_all(&framed).unwrap();
}

fn tcp_recv(stream: &mut TcpStream) -> std::io::Result<Message> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body)?;
    Ok(Message::from_vec(&body).expect("TCP response parses"))
}

fn tcp(server: SocketAddr, raw: &[u8]) -> Message {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp_send(&mut s, raw);
    tcp_recv(&mut s).expect("a TCP response")
}

fn a_records(m: &Message) -> BTreeSet<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// Every address `qname` answers over `tries` UDP queries (variants rotate).
fn answered(server: SocketAddr, qname: &str, tries: usize) -> BTreeSet<Ipv4Addr> {
    (0..tries)
        .flat_map(|_| a_records(&udp(server, &query(qname, RecordType::A, None))))
        .collect()
}

const BOTH: &[(&str, u32, u32)] = &[("/live.ogg", 0, 100), ("/live.mp3", 0, 100)];

// ---- Balanced answers. ----

#[test]
fn balanced_name_answers_only_relays_with_room() {
    let room = FakeRelay::start(BOTH);
    let ogg_full = FakeRelay::start(&[("/live.ogg", 100, 100), ("/live.mp3", 0, 100)]);
    let no_source = FakeRelay::start(&[("/live.mp3", 0, 100)]);
    let also_room = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&room, &ogg_full, &no_source, &also_room], "");
    floe.wait_first_round();
    let dns = floe.dns();
    let m = udp(dns, &query("live.stream.example.org.", RecordType::A, None));
    assert!(m.metadata.authoritative, "aa set");
    assert!(!m.metadata.recursion_available, "ra clear");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.iter().all(|r| r.ttl <= 20));
    assert_eq!(
        answered(dns, "live.stream.example.org.", 40),
        BTreeSet::from([relay_ip(0), relay_ip(3)])
    );
    // Over TCP the same relays.
    let m = tcp(dns, &query("live.stream.example.org.", RecordType::A, None));
    assert!(a_records(&m).is_subset(&BTreeSet::from([relay_ip(0), relay_ip(3)])));
    // The per-mount ogg name: ogg room on relays 0 and 3 only.
    assert_eq!(
        answered(dns, "live-ogg.stream.example.org.", 40),
        BTreeSet::from([relay_ip(0), relay_ip(3)])
    );
    // AAAA: no relay has an IPv6 address: NODATA with the SOA.
    let m = udp(
        dns,
        &query("live.stream.example.org.", RecordType::AAAA, Some(1232)),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // The TXT explanation names the generation and the relays.
    let m = udp(
        dns,
        &query("live.stream.example.org.", RecordType::TXT, None),
    );
    let RData::TXT(txt) = &m.answers[0].data else {
        panic!("TXT expected")
    };
    let text = txt.to_string();
    assert!(
        text.contains("generation=") && text.contains("relays=relay-0,relay-3"),
        "{text}"
    );
}

/// Longest time a balanced answer may lag the snapshot (plan refresh is
/// immediate on a new snapshot; slack for a loaded machine).
const DNS_LAG: Duration = Duration::from_millis(300);

/// Waits until relay `r` is out of the answers of `live.stream.example.org.`
/// and checks that this happened at most [`DNS_LAG`] after the snapshot
/// first satisfied `changed`. Returns (snapshot time, DNS time) from now.
fn follow(
    floe: &Floe,
    r: usize,
    changed: impl Fn(&floe::snapshot::Snapshot) -> bool,
) -> (Duration, Duration) {
    let snaps = floe.instance().snapshots();
    let start = Instant::now();
    let mut snap_at = None;
    let dns_at = poll_until(
        &format!("relay-{r} out of the answer"),
        Duration::from_secs(10),
        || {
            if snap_at.is_none() && changed(&snaps.load()) {
                snap_at = Some(start.elapsed());
            }
            !a_records(&udp(
                floe.dns(),
                &query("live.stream.example.org.", RecordType::A, None),
            ))
            .contains(&relay_ip(r))
        },
    );
    let snap_at = snap_at.unwrap_or(dns_at);
    assert!(
        dns_at <= snap_at + DNS_LAG,
        "DNS dropped relay-{r} {:?} after the snapshot did",
        dns_at - snap_at
    );
    (snap_at, dns_at)
}

#[test]
fn relays_that_go_down_full_or_drained_leave_the_answer_in_time() {
    let a = FakeRelay::start(BOTH);
    let mut b = FakeRelay::start(BOTH);
    let c = FakeRelay::start(BOTH);
    let d = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a, &b, &c, &d], "answers = 4");
    floe.wait_first_round();
    let dns = floe.dns();
    let all = BTreeSet::from([relay_ip(0), relay_ip(1), relay_ip(2), relay_ip(3)]);
    poll_until("all four relays answered", Duration::from_secs(5), || {
        a_records(&udp(
            dns,
            &query("live.stream.example.org.", RecordType::A, None),
        )) == all
    });
    let bound = INTERVAL + TIMEOUT * FALL;
    // Down: relay 1 stops answering. DNS must drop it as soon as the
    // snapshot says it is down; the snapshot must say so within the bound
    // (the poller's timers slip on an overloaded machine: then only the
    // DNS half is asserted, with a note).
    b.kill();
    let (snap_at, dns_at) = follow(&floe, 1, |s| {
        s.relays[RelayId::new(1)].state == floe::health::RelayState::Down
    });
    if snap_at <= bound {
        assert!(
            dns_at <= bound + DNS_LAG,
            "down relay left after {dns_at:?}, bound {bound:?}"
        );
    } else {
        eprintln!(
            "note: the poller took {snap_at:?} (bound {bound:?}) to mark the relay down: machine overloaded?"
        );
    }
    // And it stays out.
    assert!(!answered(dns, "live.stream.example.org.", 20).contains(&relay_ip(1)));
    // Full: relay 2's ogg mount fills up (seen at its next poll).
    c.set(&[("/live.ogg", 100, 100), ("/live.mp3", 0, 100)]);
    follow(&floe, 2, |s| {
        s.topology
            .mount_id("/live.ogg")
            .is_some_and(|m| s.cell(RelayId::new(2), m).listeners == 100)
    });
    // Drained by the operator: the next snapshot, at once.
    let _runtime = floe.rt.enter();
    assert!(floe.instance().engine.set_drain("relay-3", true));
    let (_, dns_at) = follow(&floe, 3, |s| s.relays[RelayId::new(3)].drain);
    assert!(dns_at <= DNS_LAG, "drained relay left after {dns_at:?}");
    assert_eq!(
        answered(dns, "live.stream.example.org.", 20),
        BTreeSet::from([relay_ip(0)])
    );
}

#[test]
fn http_and_dns_agree_on_the_same_relays() {
    let a = FakeRelay::start(BOTH);
    let full = FakeRelay::start(&[("/live.ogg", 100, 100), ("/live.mp3", 100, 100)]);
    let c = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a, &full, &c], "");
    floe.wait_first_round();
    let in_dns = answered(floe.dns(), "live.stream.example.org.", 40);
    assert_eq!(in_dns, BTreeSet::from([relay_ip(0), relay_ip(2)]));
    let http = floe.instance().http_addrs[0];
    let mut redirected = BTreeSet::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(
            s,
            "GET /live.ogg HTTP/1.1\r\nHost: stream.example.org\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(resp.starts_with("HTTP/1.1 302"), "{resp}");
        let location = resp
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or(l.strip_prefix("Location: "))
            })
            .unwrap();
        redirected.insert(location.trim().to_string());
    }
    let expected: BTreeSet<String> = [&a, &c]
        .iter()
        .map(|r| format!("http://{}/live.ogg", r.addr))
        .collect();
    assert_eq!(
        redirected, expected,
        "HTTP sends listeners to exactly the relays DNS answers"
    );
}

// ---- Protocol. ----

#[test]
fn udp_and_tcp_answer_on_the_same_port() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    let dns = floe.dns();
    assert_ne!(dns.port(), 0, "the real port is reported");
    let u = udp(dns, &query("www.stream.example.org.", RecordType::A, None));
    let t = tcp(dns, &query("www.stream.example.org.", RecordType::A, None));
    assert_eq!(u.answers, t.answers);
    assert_eq!(
        u.answers[0].data,
        RData::A(Ipv4Addr::new(192, 0, 2, 80).into())
    );
    udp(dns, &query("live.stream.example.org.", RecordType::A, None));
    udp(dns, &query("nope.stream.example.org.", RecordType::A, None));
    // Counted per path and RCODE (added just after each send).
    let state = floe.instance().dns.clone();
    poll_until("counters", Duration::from_secs(2), || {
        let c = state.counts();
        c.udp_fast == 1 && c.udp_handler == 2 && c.tcp == 1 && c.rcode[0] == 3 && c.rcode[3] == 1
    });
}

#[test]
fn a_wildcard_listener_answers_from_the_address_each_query_came_to() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "listen = [\"0.0.0.0:0\"]");
    floe.wait_first_round();
    let port = floe.dns().port();
    // Clients connected to the address they ask, as resolvers are: an
    // answer from any other address never reaches them. 127.0.0.2 is not
    // the source the kernel would pick on its own (that is 127.0.0.1).
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let server = SocketAddr::new(ip.parse().unwrap(), port);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // The fast path (a balanced name), the handler (a static record,
        // a name that does not exist).
        for qname in [
            "live.stream.example.org.",
            "www.stream.example.org.",
            "nope.stream.example.org.",
        ] {
            let q = query(qname, RecordType::A, None);
            client.send(&q).unwrap();
            let mut buf = [0u8; 1232];
            let n = client
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{qname} asked of {server}: no answer from it ({e})"));
            assert!(n >= 12 && buf[..2] == q[..2], "{qname} asked of {server}");
        }
        let t = tcp(
            server,
            &query("www.stream.example.org.", RecordType::A, None),
        );
        assert_eq!(t.answers.len(), 1, "TCP to {server}");
    }
}

#[test]
fn static_records_and_negative_answers() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    let dns = floe.dns();
    let m = udp(dns, &query("www.stream.example.org.", RecordType::A, None));
    assert!(m.metadata.authoritative && !m.metadata.recursion_available);
    assert_eq!(m.answers[0].ttl, 300);
    // NXDOMAIN: SOA in authority with min(SOA TTL 120, MINIMUM 60).
    let m = udp(dns, &query("nope.stream.example.org.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60);
    // NODATA: the name exists, the type does not.
    let m = udp(dns, &query("www.stream.example.org.", RecordType::MX, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60);
    // NODATA at a balanced name for other types.
    let m = udp(
        dns,
        &query("live.stream.example.org.", RecordType::MX, None),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // REFUSED outside the zones, no AA, no recursion.
    let mut q = Message::new(9, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name("example.com."), RecordType::A));
    let m = udp(dns, &q.to_vec().unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative && !m.metadata.recursion_available);
    assert!(m.metadata.recursion_desired, "RD is copied");
}

#[test]
fn malformed_and_unsupported_queries() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    let dns = floe.dns();
    // FORMERR: a question cut short.
    let raw = query("www.stream.example.org.", RecordType::A, None);
    let m = udp(dns, &raw[..raw.len() - 3]);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // FORMERR: two questions.
    let mut two = Message::new(11, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(name("www.stream.example.org."), RecordType::A));
    two.add_query(Query::query(
        name("live.stream.example.org."),
        RecordType::A,
    ));
    assert_eq!(
        udp(dns, &two.to_vec().unwrap()).metadata.response_code,
        ResponseCode::FormErr
    );
    // NOTIMP: opcodes other than QUERY, known or not. RD and CD are
    // defined for QUERY only: clear in the answer even when the query set
    // them (a compliance tester found them echoed).
    for op in [
        OpCode::Notify,
        OpCode::Status,
        OpCode::Update,
        OpCode::Unknown(7),
    ] {
        let mut m = Message::new(12, MessageType::Query, op);
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = true;
        m.add_query(Query::query(name("stream.example.org."), RecordType::SOA));
        let answer = udp(dns, &m.to_vec().unwrap());
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NotImp,
            "{op:?}"
        );
        assert!(!answer.metadata.recursion_desired, "RD echoed for {op:?}");
        assert!(!answer.metadata.checking_disabled, "CD echoed for {op:?}");
    }
    // Garbage shorter than a header: no answer; the server keeps serving.
    assert!(udp_raw(dns, b"\x01\x02\x03").is_none());
    assert_eq!(
        udp(dns, &query("www.stream.example.org.", RecordType::A, None))
            .answers
            .len(),
        1
    );
}

#[test]
fn edns_truncation_and_tcp() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    let dns = floe.dns();
    // Six 100-byte TXT records do not fit in 512 bytes: TC, no answers.
    let m = udp(
        dns,
        &query("big.stream.example.org.", RecordType::TXT, None),
    );
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    // With EDNS the client's 512 is honoured too, and the OPT comes back.
    let m = udp(
        dns,
        &query("big.stream.example.org.", RecordType::TXT, Some(512)),
    );
    assert!(m.metadata.truncation);
    assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(1232));
    // A 1232-byte buffer holds it.
    let m = udp(
        dns,
        &query("big.stream.example.org.", RecordType::TXT, Some(1232)),
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 6);
    // TCP: the full answer whatever the size.
    let m = tcp(
        dns,
        &query("big.stream.example.org.", RecordType::TXT, None),
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 6);
    // Balanced answers with EDNS carry the OPT record as well.
    let m = udp(
        dns,
        &query("live.stream.example.org.", RecordType::A, Some(4096)),
    );
    assert!(m.edns.is_some());
    assert!(m.metadata.authoritative);
}

#[test]
fn any_gets_a_minimal_answer_and_case_is_preserved() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    floe.wait_first_round();
    let dns = floe.dns();
    let m = udp(dns, &query("stream.example.org.", RecordType::ANY, None));
    let types: BTreeSet<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "RFC 8482: one RRset, got {types:?}");
    for qname in ["LiVe.StReAm.ExAmPlE.OrG.", "wWw.sTrEaM.eXaMpLe.OrG."] {
        let raw = query(qname, RecordType::A, None);
        let bytes = udp_raw(dns, &raw).unwrap();
        assert_eq!(
            &bytes[12..12 + qname.len() + 1],
            &raw[12..12 + qname.len() + 1],
            "0x20 case kept for {qname}"
        );
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.queries[0].name().to_string(), qname);
        assert!(!m.answers.is_empty(), "{qname} matched case-insensitively");
    }
}

#[test]
fn tcp_idle_timeout_and_connection_limit() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(
        &[&a],
        "tcp_idle_timeout = \"300ms\"\ntcp_max_connections = 2",
    );
    let dns = floe.dns();
    // Idle: closed after the timeout.
    let mut idle = TcpStream::connect(dns).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "idle connection closed"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250) && start.elapsed() < Duration::from_secs(5)
    );
    // Limit: two connections in use, a third is closed at once; the two
    // keep answering, and one more fits once one of them closes.
    let mut one = TcpStream::connect(dns).unwrap();
    let mut two = TcpStream::connect(dns).unwrap();
    for s in [&mut one, &mut two] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tcp_send(s, &query("www.stream.example.org.", RecordType::A, None));
        assert_eq!(tcp_recv(s).unwrap().answers.len(), 1);
    }
    let mut three = TcpStream::connect(dns).unwrap();
    three
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    tcp_send(
        &mut three,
        &query("www.stream.example.org.", RecordType::A, None),
    );
    assert!(
        tcp_recv(&mut three).is_err(),
        "over the limit: closed without an answer"
    );
    tcp_send(
        &mut one,
        &query("www.stream.example.org.", RecordType::A, None),
    );
    assert_eq!(tcp_recv(&mut one).unwrap().answers.len(), 1);
    drop(one);
    poll_until("a connection slot frees up", Duration::from_secs(3), || {
        let mut s = TcpStream::connect(dns).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        tcp_send(
            &mut s,
            &query("www.stream.example.org.", RecordType::A, None),
        );
        tcp_recv(&mut s).is_ok()
    });
}

/// A TCP connection to `addr` from `ip`, reading with a 2 s timeout.
fn tcp_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let s =
        support::net::tcp_from(ip.parse().unwrap(), addr, None, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

#[test]
fn tcp_connections_are_capped_per_client_and_aged() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(
        &[&a],
        "tcp_max_connections_per_client = 2\ntcp_max_connection_age = \"1s\"",
    );
    let dns = floe.dns();
    let www = query("www.stream.example.org.", RecordType::A, None);
    let mut one = tcp_from("127.6.0.1", dns);
    let mut two = tcp_from("127.6.0.1", dns);
    for s in [&mut one, &mut two] {
        tcp_send(s, &www);
        assert_eq!(tcp_recv(s).unwrap().answers.len(), 1);
    }
    let mut three = tcp_from("127.6.0.1", dns);
    tcp_send(&mut three, &www);
    assert!(
        tcp_recv(&mut three).is_err(),
        "a third connection from one address: closed without an answer"
    );
    let mut other = tcp_from("127.6.0.2", dns);
    tcp_send(&mut other, &www);
    assert_eq!(tcp_recv(&mut other).unwrap().answers.len(), 1);
    // Age: a busy connection is closed after tcp_max_connection_age.
    let mut busy = tcp_from("127.6.1.1", dns);
    let started = Instant::now();
    let closed = loop {
        tcp_send(&mut busy, &www);
        if tcp_recv(&mut busy).is_err() || started.elapsed() > Duration::from_secs(5) {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(3),
        "busy connection closed after {closed:?} (age 1 s)"
    );
}

#[test]
fn a_reload_serves_the_new_zone() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    let dns = floe.dns();
    let m = udp(dns, &query("new.stream.example.org.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let zone = floe
        .config
        .parent()
        .unwrap()
        .join("zones/stream.example.org.zone");
    std::fs::write(&zone, format!("{ZONE}new IN A 192.0.2.99\n")).unwrap();
    let _runtime = floe.rt.enter();
    floe.instance().reload().expect("reload succeeds");
    let m = udp(dns, &query("new.stream.example.org.", RecordType::A, None));
    assert_eq!(
        a_records(&m),
        BTreeSet::from([Ipv4Addr::new(192, 0, 2, 99)])
    );
    // A broken zone keeps the last good one serving.
    std::fs::write(&zone, "this is not a zone\n").unwrap();
    assert!(floe.instance().reload().is_err());
    let m = udp(dns, &query("new.stream.example.org.", RecordType::A, None));
    assert_eq!(
        a_records(&m),
        BTreeSet::from([Ipv4Addr::new(192, 0, 2, 99)])
    );
}

// ---- The real binary, queried with dig. ----

struct Binary(Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn floe_serve_answers_dig_with_aa_and_only_relays_with_room() {
    let room = FakeRelay::start(BOTH);
    let full = FakeRelay::start(&[("/live.ogg", 100, 100), ("/live.mp3", 100, 100)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[&room, &full], "");
    let mut child = Binary(
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run floe serve"),
    );
    // The bound port is logged: "DNS listening on 127.0.0.1:PORT (UDP and TCP)".
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("DNS listening on ").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("floe logs its DNS address")
        .parse()
        .unwrap();
    let dig = |qname: &str, qtype: &str, extra: &[&str]| -> String {
        let out = Command::new("dig")
            .arg(format!("@{}", addr.ip()))
            .args([
                "-p",
                &addr.port().to_string(),
                qname,
                qtype,
                "+norec",
                "+time=2",
                "+tries=1",
            ])
            .args(extra)
            .output()
            .expect("dig is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Wait until the relays are polled: the answer is then candidates only.
    poll_until(
        "balanced answer from polled relays",
        Duration::from_secs(10),
        || dig("live.stream.example.org.", "TXT", &["+short"]).contains("answer=candidates"),
    );
    for _ in 0..10 {
        let out = dig("live.stream.example.org.", "A", &[]);
        assert!(
            out.contains("flags: qr aa;"),
            "aa set, rd and ra clear:\n{out}"
        );
        assert!(out.contains("status: NOERROR"), "{out}");
        let ips: BTreeSet<IpAddr> = out
            .lines()
            .filter(|l| l.starts_with("live.stream.example.org.") && l.contains("\tA\t"))
            .filter_map(|l| l.split_whitespace().last()?.parse().ok())
            .collect();
        assert_eq!(ips, BTreeSet::from([IpAddr::V4(relay_ip(0))]), "{out}");
    }
    let out = dig("live.stream.example.org.", "A", &["+tcp"]);
    assert!(
        out.contains("flags: qr aa;") && out.contains(&relay_ip(0).to_string()),
        "{out}"
    );
    let out = dig("nope.stream.example.org.", "A", &[]);
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("AUTHORITY: 1"),
        "{out}"
    );
}

// ---- Real delegation: unbound with a stub zone pointing at floe. ----

/// A port free on both UDP and TCP right now (for a peer that needs a
/// number in its config file).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn a_resolver_with_a_stub_zone_resolves_through_floe() {
    assert!(
        Command::new("unbound").arg("-V").output().is_ok(),
        "unbound is needed (apt install unbound; tests/run --install-only)"
    );
    let room = FakeRelay::start(BOTH);
    let full = FakeRelay::start(&[("/live.ogg", 100, 100), ("/live.mp3", 100, 100)]);
    let also = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&room, &full, &also], "");
    floe.wait_first_round();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n\
             \x20 do-not-query-localhost: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n\
             \x20 use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  module-config: \"iterator\"\n  use-caps-for-id: yes\n\
             \x20 qname-minimisation: yes\n  harden-referral-path: no\n\
             stub-zone:\n  name: \"stream.example.org\"\n  stub-addr: 127.0.0.1@{floe_port}\n",
            dir = dir.path().display(),
            floe_port = floe.dns().port()
        ),
    )
    .unwrap();
    let _unbound = Binary(
        Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unbound"),
    );
    let resolver: SocketAddr = ([127, 0, 0, 1], port).into();
    let recursive = |qname: &str, qtype: RecordType| -> Option<Message> {
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name(qname), qtype));
        let bytes = udp_raw(resolver, &m.to_vec().unwrap())?;
        Message::from_vec(&bytes).ok()
    };
    poll_until("unbound answers", Duration::from_secs(10), || {
        recursive("www.stream.example.org.", RecordType::A).is_some_and(|m| !m.answers.is_empty())
    });
    let m = recursive("www.stream.example.org.", RecordType::A).unwrap();
    assert_eq!(
        a_records(&m),
        BTreeSet::from([Ipv4Addr::new(192, 0, 2, 80)])
    );
    assert!(m.metadata.recursion_available, "the resolver recursed");
    // The balanced name resolves to relays with room only (unbound caches
    // one answer per TTL; each query here is a new name for it or a cached
    // copy, both drawn from floe's candidates).
    let m = recursive("live.stream.example.org.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let got = a_records(&m);
    assert!(
        !got.is_empty() && got.is_subset(&BTreeSet::from([relay_ip(0), relay_ip(2)])),
        "{got:?}"
    );
    let m = recursive("live-ogg.stream.example.org.", RecordType::A).unwrap();
    assert!(a_records(&m).is_subset(&BTreeSet::from([relay_ip(0), relay_ip(2)])));
    // Negatives pass through: NXDOMAIN, and NODATA.
    let m = recursive("nope.stream.example.org.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = recursive("www.stream.example.org.", RecordType::MX).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn response_rate_limiting_drops_and_slips_and_spares_other_clients() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(
        &[&a],
        "rrl_responses_per_second = 50\nrrl_slip = 2\nrrl_exempt = []",
    );
    let dns = floe.dns();
    let www = query("www.stream.example.org.", RecordType::A, None);
    // 400 queries as fast as one socket sends them, from one client.
    let client = UdpSocket::bind("127.9.1.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for _ in 0..400 {
        client.send_to(&www, dns).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = client.recv_from(&mut buf) {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(
                m.answers.is_empty() && n <= www.len(),
                "a slip answer is no bigger than the query"
            );
            truncated += 1;
        } else {
            full += 1;
        }
    }
    eprintln!(
        "RRL 50/s, slip 2: 400 queries -> {full} answers, {truncated} truncated, {} dropped",
        400 - full - truncated
    );
    assert!((45..=70).contains(&full), "{full} full answers at 50/s");
    assert!(
        (140..=200).contains(&truncated),
        "{truncated} slipped (every 2nd over the rate)"
    );
    // Another /24 is not limited by the first one's flood.
    let other = UdpSocket::bind("127.9.2.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    other.send_to(&www, dns).unwrap();
    let (n, _) = other.recv_from(&mut buf).unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert!(!m.metadata.truncation && m.answers.len() == 1);
    // Counted in /metrics.
    let instance = floe.instance();
    let metrics = instance.metrics.render(&instance.snapshots().load_full());
    assert!(
        metrics.contains("floe_dns_rate_limited_total{action=\"drop\"}"),
        "{metrics}"
    );
}

#[test]
fn amplification_is_bounded_for_every_query_type() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "");
    let dns = floe.dns();
    let mut rows = Vec::new();
    for (qname, qtype) in [
        ("live.stream.example.org.", RecordType::A),
        ("live.stream.example.org.", RecordType::AAAA),
        ("live.stream.example.org.", RecordType::TXT),
        ("stream.example.org.", RecordType::SOA),
        ("stream.example.org.", RecordType::NS),
        ("stream.example.org.", RecordType::ANY),
        ("big.stream.example.org.", RecordType::TXT),
        ("nothing.stream.example.org.", RecordType::A),
    ] {
        for edns in [None, Some(1232), Some(4096)] {
            let q = query(qname, qtype, edns);
            let r = udp_raw(dns, &q).expect("an answer");
            rows.push((qname, qtype, edns, q.len(), r.len()));
        }
    }
    let mut worst = 0.0f64;
    for (qname, qtype, edns, q, r) in &rows {
        let ratio = *r as f64 / *q as f64;
        worst = worst.max(ratio);
        eprintln!("{qname} {qtype} edns={edns:?}: query {q} B, answer {r} B, x{ratio:.1}");
    }
    eprintln!("largest answer/query ratio: x{worst:.1}");
    assert!(worst < 20.0, "amplification x{worst:.1}");
}

#[test]
fn the_diagnostic_txt_answer_can_be_turned_off() {
    let a = FakeRelay::start(BOTH);
    let floe = Floe::start(&[&a], "diagnostic_txt = false");
    floe.wait_first_round();
    let txt = udp(
        floe.dns(),
        &query("live.stream.example.org.", RecordType::TXT, None),
    );
    assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
    assert!(txt.answers.is_empty(), "no relay names: {:?}", txt.answers);
    assert_eq!(txt.authorities.len(), 1, "NODATA with the SOA");
    let a_records = udp(
        floe.dns(),
        &query("live.stream.example.org.", RecordType::A, None),
    );
    assert!(!a_records.answers.is_empty(), "addresses still answered");
}
