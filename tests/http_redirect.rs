//! The HTTP front door against the real binary: redirects, errors,
//! playlists, health, limits, and a burst that must not overfill relays.
//! Relays are `floe::demo::sim::SimRelay`s (real HTTP servers on loopback
//! speaking Icecast's status formats).

mod support;

use floe::demo::sim::SimRelay;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::floe::{FloeProcess, relay_state};
use support::net::{client_address, from_address, http_request};
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

fn config(relays: &[&SimRelay], extra: &str) -> String {
    TestConfig::new()
        .set("http", "header_timeout", "\"1s\"")
        .set("http", "retry_after", "\"7s\"")
        .lines("http", extra)
        .without_stream_dns()
        .relays(relays)
        .render()
}

fn sim(name: &str, ogg: Option<u32>, mp3: Option<u32>) -> SimRelay {
    sim_relay(name, ogg, mp3)
}

fn req(
    floe: &FloeProcess,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> support::HttpResponse {
    http_request(method, &floe.url(path), headers, T)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Sends raw bytes and returns the raw answer (until close or 2 s).
fn raw(floe: &FloeProcess, request: &[u8]) -> String {
    let mut s = TcpStream::connect(floe.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn get_and_head_redirect_to_a_relay_with_the_query_string() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", Some(100), Some(100));
    let floe = FloeProcess::start(&config(&[&a], ""));
    floe.wait_healthy(T);

    let r = req(&floe, "GET", "/live.ogg", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/live.ogg", a.url()).as_str())
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-floe-relay"), Some("relay-a"));
    let generation: u64 = r
        .header("x-floe-generation")
        .expect("generation header")
        .parse()
        .unwrap();
    assert!(generation >= 1);
    assert!(r.body.len() < 64, "tiny body");

    let r = req(&floe, "HEAD", "/live.mp3?token=abc&x=1", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/live.mp3?token=abc&x=1", a.url()).as_str())
    );
    assert!(r.body.is_empty(), "HEAD has no body");
}

#[test]
fn unknown_paths_are_404_and_nothing_redirects_off_the_configured_relays() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", None, None);
    let floe = FloeProcess::start(&config(&[&a], ""));
    floe.wait_healthy(T);
    for path in [
        "/",
        "/live",
        "/live.ogg/",
        "/LIVE.OGG",
        "/live%2Eogg",
        "//live.ogg",
        "/live.ogg/../x",
        "/x.m3u",
    ] {
        assert_eq!(req(&floe, "GET", path, &[]).status, 404, "{path}");
    }
    // Absolute-form target naming another host: still only a relay URL.
    let answer = raw(&floe, b"GET http://evil.example/live.ogg HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 302"), "{answer}");
    assert!(
        answer.contains(&format!("location: {}/live.ogg\r\n", a.url())),
        "{answer}"
    );
    // Garbage is a 400, and the server keeps serving.
    let answer = raw(&floe, b"\x16\x03\x01garbage\r\n\r\n");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(req(&floe, "GET", "/live.ogg", &[]).status, 302);
}

#[test]
fn other_methods_get_405_with_allow_and_options_the_preflight() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", None, None);
    let floe = FloeProcess::start(&config(&[&a], ""));
    floe.wait_healthy(T);
    for method in ["POST", "PUT", "DELETE", "SOURCE"] {
        let r = req(&floe, method, "/live.ogg", &[]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{method}");
        let r = req(&floe, method, "/status", &[]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // OPTIONS: the CORS preflight on a stream route (tests/cors.rs), 405
    // elsewhere.
    let r = req(&floe, "OPTIONS", "/live.ogg", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(req(&floe, "OPTIONS", "/status", &[]).status, 405);
}

#[test]
fn no_candidate_is_503_with_retry_after_saying_offline_or_full() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", Some(2), Some(2));
    let floe = FloeProcess::start(&config(&[&a], ""));
    floe.wait_healthy(T);
    a.set_fake_listeners("/live.ogg", 2);
    a.set_source("/live.mp3", false);
    floe.wait_status(T, "ogg full, mp3 gone", |s| {
        let ms = &s["relays"][0]["mounts"];
        ms[0]["excluded"] == "full" && ms[1]["excluded"] == "no-source"
    });
    let full = req(&floe, "GET", "/live.ogg", &[]);
    assert_eq!(full.status, 503);
    assert_eq!(full.header("retry-after"), Some("7"));
    assert!(full.text().contains("full"), "{}", full.text());
    let offline = req(&floe, "GET", "/live.mp3", &[]);
    assert_eq!(offline.status, 503);
    assert!(offline.text().contains("offline"), "{}", offline.text());
}

#[test]
fn playlists_point_back_at_floe() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", None, None);
    let floe = FloeProcess::start(&config(&[&a], ""));
    floe.wait_healthy(T);
    let host = [("Host", "stream.example.org:8080")];
    let m3u = req(&floe, "GET", "/live.ogg.m3u", &host);
    assert_eq!(m3u.status, 200);
    assert_eq!(m3u.header("content-type"), Some("audio/x-mpegurl"));
    assert_eq!(m3u.text(), "http://stream.example.org:8080/live.ogg\n");
    let pls = req(&floe, "GET", "/live.mp3.pls", &host);
    assert_eq!(pls.header("content-type"), Some("audio/x-scpls"));
    assert!(
        pls.text()
            .contains("File1=http://stream.example.org:8080/live.mp3\n"),
        "{}",
        pls.text()
    );
    let xspf = req(&floe, "GET", "/live.ogg.xspf", &host);
    assert_eq!(xspf.header("content-type"), Some("application/xspf+xml"));
    assert!(
        xspf.text()
            .contains("<location>http://stream.example.org:8080/live.ogg</location>")
    );
    // A Host that is not a plain host[:port] is not used.
    let odd = req(&floe, "GET", "/live.ogg.m3u", &[("Host", "x/<y>")]);
    assert!(!odd.text().contains('<'), "{}", odd.text());

    // With a public URL configured, playlists use it whatever the Host says
    // (a cache in front must not be poisoned by a forged Host).
    let public = FloeProcess::start(&config(
        &[&a],
        "public_url = \"https://stream.example.org\"",
    ));
    public.wait_healthy(T);
    for h in ["stream.example.org:8080", "evil.example.net", "x/<y>"] {
        let m3u = req(&public, "GET", "/live.ogg.m3u", &[("Host", h)]);
        assert_eq!(
            m3u.text(),
            "https://stream.example.org/live.ogg\n",
            "Host {h}"
        );
    }
}

#[test]
fn healthz_is_503_until_the_first_poll_round_is_done() {
    // A "relay" that accepts connections but never answers: the first poll
    // only ends at its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zones = "zones"
[http]
listen = ["127.0.0.1:0"]
[poll]
timeout = "3s"
fall = 1
[[relay]]
name = "silent"
url = "http://{}"
status = {{ kind = "xslt" }}
[[stream]]
name = "live"
mounts = ["/live.ogg"]
"#,
        silent.local_addr().unwrap()
    );
    let started = Instant::now();
    let floe = FloeProcess::start(&cfg);
    let r = floe.get("/healthz");
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(r.status, 503, "before the first poll finished");
        let r = floe.get("/live.ogg");
        assert_eq!(r.status, 503);
        assert!(r.text().contains("starting"), "{}", r.text());
    }
    floe.wait_healthy(T);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "healthy only after the poll timed out"
    );
    assert_eq!(relay_state(&floe.status(), "silent"), "down");
}

#[test]
fn slow_and_idle_clients_do_not_stop_redirects() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", None, None);
    let floe = FloeProcess::start(&config(&[&a], "max_connections = 64"));
    floe.wait_healthy(T);
    // 40 clients that send half a request head and stall.
    let stalled: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(floe.http).unwrap();
            s.write_all(b"GET /live.ogg HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(req(&floe, "GET", "/live.ogg", &[]).status, 302);
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "redirects served while others stall: {:?}",
        t.elapsed()
    );
    // The header timeout (1 s) closes the stalled ones.
    std::thread::sleep(Duration::from_millis(1500));
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || text.starts_with("HTTP/1.1 408"),
            "stalled client got: {text}"
        );
    }
    // An oversized head is refused.
    let big = format!(
        "GET /live.ogg HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw(&floe, big.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

#[test]
fn a_burst_within_one_poll_interval_never_overfills_a_relay() {
    let rt = runtime();
    let _g = rt.enter();
    // Room: a 5+2, b 3+0 (mp3 full), c 10+10 minus 4 listeners on ogg.
    let a = sim("relay-a", Some(5), Some(2));
    let b = sim("relay-b", Some(3), Some(3));
    let c = sim("relay-c", Some(10), Some(10));
    b.set_fake_listeners("/live.mp3", 3);
    c.set_fake_listeners("/live.ogg", 4);
    let mut cfg = config(&[&a, &b, &c], "");
    cfg = cfg.replace("interval = \"300ms\"", "interval = \"5s\"");
    let floe = FloeProcess::start(&cfg);
    floe.wait_healthy(T);
    floe.wait_status(T, "fake listeners visible", |s| {
        s["relays"][2]["mounts"][0]["listeners"] == 4
    });

    // 300 concurrent requests per mount, far more than the room (14 ogg, 12
    // mp3), each from its own client (the per-client budget is another
    // test's subject).
    let results: Vec<(String, u16, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..600)
            .map(|i| {
                let floe = &floe;
                s.spawn(move || {
                    let mount = if i % 2 == 0 { "/live.ogg" } else { "/live.mp3" };
                    let r = from_address(client_address(i), || req(floe, "GET", mount, &[]));
                    (
                        mount.to_string(),
                        r.status,
                        r.header("location").map(str::to_string),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |mount: &str, relay: &SimRelay| {
        let target = format!("{}{mount}", relay.url());
        results
            .iter()
            .filter(|(m, s, l)| m == mount && *s == 302 && l.as_deref() == Some(&target))
            .count()
    };
    assert_eq!(count("/live.ogg", &a), 5);
    assert_eq!(count("/live.ogg", &b), 3);
    assert_eq!(count("/live.ogg", &c), 6);
    assert_eq!(count("/live.mp3", &a), 2);
    assert_eq!(count("/live.mp3", &b), 0);
    assert_eq!(count("/live.mp3", &c), 10);
    let refused = results.iter().filter(|(_, s, _)| *s == 503).count();
    assert_eq!(refused, 600 - 26);
    eprintln!(
        "burst of 600: 26 admitted (exactly the room), {refused} refused with 503, 0 overfilled"
    );
}

#[test]
fn one_address_asking_without_listening_cannot_take_the_room() {
    let rt = runtime();
    let _g = rt.enter();
    // 15 free slots on /live.ogg across three relays; the attacker never
    // follows its redirects, so it shows in no relay's count.
    let relays = [
        sim("relay-a", Some(5), Some(5)),
        sim("relay-b", Some(5), Some(5)),
        sim("relay-c", Some(5), Some(5)),
    ];
    let floe = FloeProcess::start(&config(&[&relays[0], &relays[1], &relays[2]], ""));
    floe.wait_healthy(T);
    let attacker = "127.2.0.1".parse().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (attacks, admitted) = std::thread::scope(|s| {
        let hammer = s.spawn(|| {
            let mut n = 0u32;
            let started = Instant::now();
            // Bounded: at most 4 s or 50,000 requests.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(4)
                && n < 50_000
            {
                from_address(attacker, || req(&floe, "GET", "/live.ogg", &[]));
                n += 1;
            }
            n
        });
        // Ten listeners from ten other networks arrive during the attack.
        std::thread::sleep(Duration::from_millis(500));
        let mut admitted = 0;
        for k in 0..10 {
            let ip = format!("127.3.{k}.1").parse().unwrap();
            let r = from_address(ip, || req(&floe, "GET", "/live.ogg", &[]));
            if r.status == 302 {
                admitted += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (hammer.join().unwrap(), admitted)
    });
    let metrics = floe.get("/metrics").text();
    let limited = metrics
        .lines()
        .find(|l| {
            l.starts_with("floe_redirects_total{")
                && l.contains("outcome=\"429\"")
                && l.contains("mount=\"/live.ogg\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    eprintln!(
        "attacker sent {attacks} requests ({limited} answered 429); {admitted} of 10 other listeners admitted"
    );
    assert!(
        admitted >= 9,
        "only {admitted} of 10 listeners from other networks got in"
    );
    assert!(limited > 0.0, "the attacker was never limited");
    let explain = floe.get("/explain/live.ogg").text();
    assert!(explain.contains("per client: at most"), "{explain}");
}

#[test]
fn head_answers_like_get_but_takes_no_slot() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", Some(1), None);
    let mut cfg = config(&[&a], "");
    cfg = cfg.replace("interval = \"300ms\"", "interval = \"5s\"");
    let floe = FloeProcess::start(&cfg);
    floe.wait_healthy(T);
    for _ in 0..5 {
        let r = req(&floe, "HEAD", "/live.ogg", &[]);
        assert_eq!(r.status, 302);
        assert!(
            r.header("location")
                .is_some_and(|l| l.ends_with("/live.ogg"))
        );
    }
    // The one slot is still free for a listener, and then it is taken.
    assert_eq!(req(&floe, "GET", "/live.ogg", &[]).status, 302);
    let r = from_address(client_address(1), || req(&floe, "GET", "/live.ogg", &[]));
    assert_eq!(r.status, 503);
    assert_eq!(req(&floe, "HEAD", "/live.ogg", &[]).status, 503);
}

#[test]
fn a_host_without_ca_certificates_still_polls_http_relays() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", Some(5), None);
    // No CA roots anywhere (as without the ca-certificates package): the
    // poll client used to panic at start.
    let empty = tempfile::tempdir().unwrap();
    let floe = FloeProcess::start_with(
        &config(&[&a], ""),
        &[],
        &[
            ("SSL_CERT_FILE", Some("/nonexistent/ca.pem")),
            ("SSL_CERT_DIR", empty.path().to_str()),
        ],
    );
    floe.wait_healthy(T);
    assert_eq!(req(&floe, "GET", "/live.ogg", &[]).status, 302);
}

/// Connects to `addr` from `ip` with a small receive buffer (a client that
/// reads slowly fills it soon).
fn connect_from(ip: &str, addr: std::net::SocketAddr) -> TcpStream {
    support::net::tcp_from(ip.parse().unwrap(), addr, Some(4096), T).unwrap()
}

/// True when the server closes `s` within `within` (EOF or reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn connections_are_capped_per_client_aged_and_unread_responses_time_out() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", None, None);
    let floe = FloeProcess::start(&config(
        &[&a],
        "max_connections_per_client = 2\nmax_connection_age = \"1500ms\"\nwrite_timeout = \"1s\"",
    ));
    floe.wait_healthy(T);

    // Cap: a third connection from one address is closed at once; another
    // address is served meanwhile. Each starts a request head: the kernel
    // hands floe a connection at its first byte (`TCP_DEFER_ACCEPT`; a
    // silent one only after 1 s), and the cap counts the connections floe
    // holds.
    let started = |ip| {
        let mut s = connect_from(ip, floe.http);
        s.write_all(b"GET /live.ogg HTTP/1.1\r\n").unwrap();
        s
    };
    let _one = started("127.5.0.1");
    let _two = started("127.5.0.1");
    std::thread::sleep(Duration::from_millis(100));
    let mut three = started("127.5.0.1");
    assert!(
        closed_within(&mut three, Duration::from_millis(700)),
        "a third connection from one address is closed before the header timeout"
    );
    let other = from_address("127.5.0.2".parse().unwrap(), || {
        req(&floe, "GET", "/live.ogg", &[])
    });
    assert_eq!(other.status, 302);

    // Age: a busy keep-alive connection is closed after max_connection_age.
    let mut busy = connect_from("127.5.1.1", floe.http);
    busy.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut closed = None;
    while started.elapsed() < Duration::from_secs(6) {
        let sent = busy.write_all(b"HEAD /live.ogg HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 1024];
        match (sent, busy.read(&mut buf)) {
            (Err(_), _) | (_, Ok(0)) | (_, Err(_))
                if started.elapsed() > Duration::from_millis(200) =>
            {
                closed = Some(started.elapsed());
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(150)),
        }
    }
    let closed = closed.expect("a busy connection is closed by its age");
    assert!(
        closed >= Duration::from_millis(1300) && closed < Duration::from_secs(4),
        "closed after {closed:?} (age 1.5 s)"
    );

    // Write timeout: two connections that keep asking for pages and never
    // read hold this address's two slots until their writes stall for 1 s.
    let ask = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (ask, stop, http) = (&ask, &stop, floe.http);
            scope.spawn(move || {
                let mut s = connect_from("127.5.2.1", http);
                s.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(ask.as_bytes()).is_err() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        support::poll(T, Duration::from_millis(100), || {
            let mut s = connect_from("127.5.2.1", floe.http);
            let _ = s.write_all(b"HEAD /live.ogg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 64];
            matches!(s.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 302"))
                .then_some(())
        })
        .expect("a slot of this address frees up");
        let freed = t.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "cap: third closed; age: closed after {closed:?}; unread responses freed their slots after {freed:?}"
        );
        assert!(
            freed > Duration::from_millis(300) && freed < Duration::from_millis(3500),
            "slots of unread connections freed after {freed:?} (write timeout 1 s; age 1.5 s + drain 5 s)"
        );
    });
}

#[test]
fn diagnostic_pages_are_served_to_the_configured_networks_only() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", Some(5), None);
    let floe = FloeProcess::start(&config(&[&a], "diagnostics_from = [\"127.7.0.0/16\"]"));
    floe.wait_healthy(T);
    let at = |ip: &str, path: &str| {
        from_address(ip.parse().unwrap(), || req(&floe, "GET", path, &[])).status
    };
    for path in [
        "/status",
        "/status.json",
        "/metrics",
        "/explain",
        "/explain/live.ogg",
    ] {
        assert_eq!(at("127.7.0.1", path), 200, "{path} from an allowed network");
        assert_eq!(at("127.8.0.1", path), 403, "{path} from elsewhere");
    }
    // Listeners and health checks are served to everyone.
    assert_eq!(at("127.8.0.1", "/live.ogg"), 302);
    assert_eq!(at("127.8.0.1", "/healthz"), 200);
}
