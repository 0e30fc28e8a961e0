//! The peer exchange with real processes: three `floe serve` instances,
//! `[[peer]]`s of each other, in front of three simulated relays (and, in
//! the last test, three real Icecast relays with real listeners). A burst
//! of listeners reaching them unevenly (90/8/2) overfills no relay and
//! admits at least 95 % of the room; killing one instance leaves the other
//! two serving, reporting it unconnected (/status.json, /metrics,
//! /explain) with its static part held back; when it comes back they use
//! its figures again.

mod support;

use floe::demo::sim::SimRelay;
use serde_json::Value;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::floe::FloeProcess;
use support::net::StreamListener;
use support::net::{free_port, http_get, http_request};
use support::{Lab, RelaySpec, TestConfig, prom, runtime, sim_relay};

const T: Duration = Duration::from_secs(20);
const TOKEN: &str = "peer-exchange-token-5b2e9d41";
const NAMES: [&str; 3] = ["ns1", "ns2", "ns3"];
/// Listener slots on `/live.ogg` per relay.
const SLOTS: u32 = 100;

/// Instance `i`'s config: admin on `ports[i]`, the others as peers.
fn config(relays: &[&SimRelay], ports: &[u16; 3], i: usize) -> String {
    config_with(TestConfig::new().relays(relays), ports, i)
}

/// [`config`] over `base`, which has the relays.
fn config_with(base: TestConfig, ports: &[u16; 3], i: usize) -> String {
    let mut c = base
        .lines(
            "admin",
            &format!("listen = [\"127.0.0.1:{}\"]\ntoken = \"{TOKEN}\"", ports[i]),
        )
        // Every request of the burst comes from 127.0.0.1.
        .set("select", "grants_per_client", "100000")
        .set("select", "client_share", "1.0")
        .set("peers", "name", &format!("\"{}\"", NAMES[i]))
        .set("peers", "interval", "\"250ms\"");
    for j in (0..3).filter(|&j| j != i) {
        c = c.table(&format!(
            "[[peer]]\nname = \"{}\"\nurl = \"http://127.0.0.1:{}\"\n",
            NAMES[j], ports[j]
        ));
    }
    c.render()
}

/// Starts instance `i`; `None` when it did not come up (its admin port was
/// taken meanwhile).
fn try_start(relays: &[&SimRelay], ports: &[u16; 3], i: usize) -> Option<FloeProcess> {
    try_start_text(&config(relays, ports, i))
}

fn try_start_text(text: &str) -> Option<FloeProcess> {
    std::panic::catch_unwind(AssertUnwindSafe(|| FloeProcess::start(text))).ok()
}

/// The three instances, on admin ports picked free (new ports for all when
/// one is taken before its instance binds it).
fn start_all(relays: &[&SimRelay]) -> ([u16; 3], Vec<FloeProcess>) {
    start_all_with(|ports, i| config(relays, ports, i))
}

/// [`start_all`] with the config of instance `i` on `ports` from `text`.
fn start_all_with(text: impl Fn(&[u16; 3], usize) -> String) -> ([u16; 3], Vec<FloeProcess>) {
    for _ in 0..5 {
        let ports = [free_port(), free_port(), free_port()];
        let started: Vec<Option<FloeProcess>> =
            (0..3).map(|i| try_start_text(&text(&ports, i))).collect();
        if started.iter().all(Option::is_some) {
            return (ports, started.into_iter().flatten().collect());
        }
    }
    panic!("could not start three instances on free ports");
}

fn peer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["peers"]["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no peer {name} in {status:#}"))
}

fn all_connected(status: &Value) -> bool {
    status["peers"]["peers"]
        .as_array()
        .is_some_and(|ps| ps.iter().all(|p| p["connected"] == true))
}

fn metrics(floe: &FloeProcess) -> String {
    floe.get("/metrics").text()
}

#[test]
fn three_instances_share_the_room_by_demand_and_survive_a_dead_peer() {
    let rt = runtime();
    let _guard = rt.enter();
    let sims: Vec<SimRelay> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| sim_relay(n, Some(SLOTS), Some(SLOTS)))
        .collect();
    let relays: Vec<&SimRelay> = sims.iter().collect();
    let (ports, mut floes) = start_all(&relays);
    for f in &floes {
        f.wait_healthy(T);
        f.wait_relays_up(T);
        f.wait_status(T, "every peer connected", all_connected);
    }
    // The /peer answer: behind the token.
    let url = format!("http://127.0.0.1:{}/peer", ports[0]);
    let denied = http_get(&url, T).unwrap();
    assert_eq!(denied.status, 401);
    let auth = format!("Bearer {TOKEN}");
    let ok = http_request("GET", &url, &[("Authorization", &auth)], T).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let answer: Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(answer["name"], "ns1");
    assert_eq!(answer["fetches"]["ns2"], true, "{answer}");
    assert!(answer["demand"]["/live.ogg"].is_number(), "{answer}");

    // The burst: 1,200 listeners over about 4 s, 90/8/2 across the
    // instances; a listener sent to a relay shows in its count at once.
    let room = 3 * SLOTS as u64;
    let split = [1080usize, 96, 24];
    let sent: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let per_instance: Arc<Mutex<[u64; 3]>> = Arc::default();
    let started = Instant::now();
    std::thread::scope(|s| {
        for (i, &n) in split.iter().enumerate() {
            let (floe, sims, sent) = (&floes[i], &sims, sent.clone());
            let per_instance = per_instance.clone();
            s.spawn(move || {
                let pace = Duration::from_secs(4) / n as u32;
                for k in 0..n {
                    let due = started + pace * k as u32;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let r = floe.get("/live.ogg");
                    if r.status == 302 {
                        let relay = r.header("x-floe-relay").expect("relay header").to_string();
                        let sim = sims.iter().find(|s| s.name() == relay).unwrap();
                        sim.add_fake_listeners("/live.ogg", 1);
                        *sent.lock().unwrap().entry(relay).or_default() += 1;
                        per_instance.lock().unwrap()[i] += 1;
                    } else {
                        assert_eq!(r.status, 503, "{}", r.text());
                    }
                }
            });
        }
    });
    let sent = sent.lock().unwrap().clone();
    let admitted: u64 = sent.values().sum();
    let per_instance = *per_instance.lock().unwrap();
    eprintln!(
        "burst: {admitted} of {room} slots admitted, per relay {sent:?}, per instance {per_instance:?}"
    );
    // Static thirds would have kept ns1 at 100 and left ns3's unused.
    assert!(
        per_instance[0] > room / 3 + room / 10,
        "ns1 took more than its static third: {per_instance:?}"
    );
    for (relay, n) in &sent {
        assert!(
            *n <= SLOTS as u64,
            "relay {relay} got {n} listeners for {SLOTS} slots"
        );
    }
    assert!(
        admitted * 100 >= room * 95,
        "admitted {admitted} of {room}: {sent:?}"
    );

    // Room again, then kill ns3.
    for s in &sims {
        s.set_fake_listeners("/live.ogg", 0);
    }
    drop(floes.pop());
    for f in &floes {
        let status = f.wait_status(T, "ns3 not connected", |s| {
            peer(s, "ns3")["connected"] == false
        });
        let other = if f.get("/status.json").status == 200 && status["peers"]["name"] == "ns1" {
            "ns2"
        } else {
            "ns1"
        };
        assert_eq!(peer(&status, other)["connected"], true, "{status:#}");
        let m = metrics(f);
        assert_eq!(
            prom::value(&m, "floe_peer_connected", &[("peer", "ns3")]),
            Some(0.0),
            "{m}"
        );
        let share = prom::value(&m, "floe_share", &[("mount", "/live.ogg")]).unwrap();
        assert!(
            share <= 1.0 - 1.0 / 3.0 + 1e-9,
            "ns3's static third held back: share {share}"
        );
        let explain = f.get("/explain/live.ogg").text();
        assert!(explain.contains("ns3"), "{explain}");
        let page = f.get("/status").text();
        assert!(
            page.contains("peer ns3") && page.contains("is held back"),
            "the status page says so"
        );
        let r = f.get("/live.ogg");
        assert_eq!(r.status, 302, "keeps serving: {}", r.text());
    }
    // ns3 comes back on its port: the others use its figures again.
    let back = (0..20)
        .find_map(|_| {
            let f = try_start(&relays, &ports, 2);
            if f.is_none() {
                std::thread::sleep(Duration::from_millis(250));
            }
            f
        })
        .expect("ns3 restarts on its admin port");
    floes.push(back);
    for f in &floes {
        f.wait_status(T, "every peer connected again", all_connected);
    }
    for f in &floes[..2] {
        let m = metrics(f);
        assert_eq!(
            prom::value(&m, "floe_peer_connected", &[("peer", "ns3")]),
            Some(1.0),
            "{m}"
        );
    }
}

/// A stand-in peer `ns2`: answers every request with the body set last
/// (`401` without the token), counting the requests.
struct FakePeer {
    port: u16,
    body: Arc<Mutex<Vec<u8>>>,
}

impl FakePeer {
    fn start() -> FakePeer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body: Arc<Mutex<Vec<u8>>> = Arc::default();
        let current = body.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut authorized = false;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}\r\n")) {
                        authorized = true;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let body = current.lock().unwrap().clone();
                let (status, body) = if authorized {
                    ("200 OK", body)
                } else {
                    ("401 Unauthorized", Vec::new())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        FakePeer { port, body }
    }

    fn answer(&self, body: &[u8]) {
        *self.body.lock().unwrap() = body.to_vec();
    }
}

#[test]
fn bad_peer_answers_count_as_no_answer() {
    let rt = runtime();
    let _guard = rt.enter();
    let relay = sim_relay("r1", Some(SLOTS), Some(SLOTS));
    let fake = FakePeer::start();
    let good = br#"{"name":"ns2","demand":{"/live.ogg":30,"/live.mp3":0},"fetches":{"ns1":true}}"#;
    fake.answer(good);
    let text = TestConfig::new()
        .lines(
            "admin",
            &format!("listen = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\""),
        )
        .set("peers", "name", "\"ns1\"")
        .set("peers", "interval", "\"200ms\"")
        .relays(&[&relay])
        .table(&format!(
            "[[peer]]\nname = \"ns2\"\nurl = \"http://127.0.0.1:{}\"\n",
            fake.port
        ))
        .render();
    let floe = FloeProcess::start(&text);
    floe.wait_healthy(T);
    let status = floe.wait_status(T, "ns2 connected", all_connected);
    assert_eq!(peer(&status, "ns2")["demand"]["/live.ogg"], 30.0);
    let huge = {
        let mut b = br#"{"name":"ns2","demand":{},"fetches":{"ns1":true},"pad":""#.to_vec();
        b.extend(std::iter::repeat_n(b'x', 100 * 1024));
        b.extend_from_slice(b"\"}");
        b
    };
    let cases: [(&[u8], &str); 5] = [
        (b"<html>garbage</html>", "not a /peer answer"),
        (&huge, "longer than"),
        (
            br#"{"name":"ns9","demand":{},"fetches":{"ns1":true}}"#,
            "expected \"ns2\"",
        ),
        (
            br#"{"name":"ns2","demand":{"/live.ogg":NaN},"fetches":{"ns1":true}}"#,
            "not a /peer answer",
        ),
        (
            br#"{"name":"ns2","demand":{"/live.ogg":-5},"fetches":{"ns1":true}}"#,
            "not a finite non-negative number",
        ),
    ];
    for (body, want) in cases {
        fake.answer(body);
        let status = floe.wait_status(T, want, |s| {
            let p = peer(s, "ns2");
            p["connected"] == false && p["last_error"].as_str().is_some_and(|e| e.contains(want))
        });
        // Its static half is held back; the instance keeps serving.
        let share = status["peers"]["shares"]["/live.ogg"].as_f64().unwrap();
        assert!(share <= 0.5 + 1e-9, "share {share} with ns2 unconnected");
        assert_eq!(floe.get("/live.ogg").status, 302);
        // Back to a good answer: connected again.
        fake.answer(good);
        floe.wait_status(T, "ns2 connected again", all_connected);
    }
}

/// The issue's ask with real Icecast: three relays (10 slots on
/// `/live.mp3` each, fed by ffmpeg), three peered instances, real
/// listeners following the 302 and holding the stream: a 90/8/2 burst and
/// a few late listeners after it get no refusal from a relay (no overfill)
/// and fill at least 95 % of the room.
#[test]
fn three_instances_in_front_of_real_icecast_overfill_nothing() {
    const MAX: u32 = 10;
    let lab = Lab::start(
        ["r1", "r2", "r3"]
            .iter()
            .map(|n| RelaySpec::new(n).mount("/live.mp3", Some(MAX)))
            .collect(),
    );
    let mut base = TestConfig::new()
        .set("select", "grants_per_client", "100000")
        .set("select", "client_share", "1.0");
    for (i, r) in lab.relays.iter().enumerate() {
        base = base.table(&format!(
            "[[relay]]\nname = \"{}\"\nurl = \"{}\"\naddresses = [\"127.0.0.{}\"]\nstatus = {{ kind = \"xslt\" }}\n",
            r.name(),
            r.base_url(),
            i + 1
        ));
    }
    let (_, floes) = start_all_with(|ports, i| config_with(base.clone(), ports, i));
    for f in &floes {
        f.wait_healthy(T);
        f.wait_status(T, "every relay up with /live.mp3", |s| {
            ["r1", "r2", "r3"].iter().all(|r| {
                support::floe::relay_state(s, r) == "up"
                    && support::floe::cell(s, r, "/live.mp3")["present"] == true
            })
        });
        f.wait_status(T, "every peer connected", all_connected);
    }
    let room = 3 * MAX as usize;
    // Over 4 s: an instance counts its own demand at its lowest over the
    // last second or so (the rule that keeps the shares' sum at most one),
    // so the busiest one takes its part only after about 2 s. 600/53/13
    // requests (90/8/2), the busiest instance's from three threads.
    let split = [(0usize, 200usize), (0, 200), (0, 200), (1, 53), (2, 13)];
    let started = Instant::now();
    let runs: Vec<(usize, Vec<StreamListener>, usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = split
            .iter()
            .map(|&(i, n)| {
                let floe = &floes[i];
                s.spawn(move || {
                    let url = floe.url("/live.mp3");
                    let pace = Duration::from_secs(4) / n as u32;
                    let (mut held, mut refused, mut by_relay) = (Vec::new(), 0, Vec::new());
                    for k in 0..n {
                        let due = started + pace * k as u32;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        match StreamListener::connect_following(&url, T) {
                            Ok(l) => held.push(l),
                            Err(e)
                                if e.to_string().starts_with(&url)
                                    && matches!(e.status(), Some(503 | 429)) =>
                            {
                                refused += 1
                            }
                            Err(e) => by_relay.push(e.to_string()),
                        }
                    }
                    (i, held, refused, by_relay)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut results: Vec<(usize, Vec<StreamListener>, usize, Vec<String>)> =
        (0..3).map(|i| (i, Vec::new(), 0, Vec::new())).collect();
    for (i, held, refused, by_relay) in runs {
        results[i].1.extend(held);
        results[i].2 += refused;
        results[i].3.extend(by_relay);
    }
    // Late listeners keep arriving at the busiest instance (every 50 ms for
    // 2 s) while the burst's last grants settle (a grant counts until a
    // poll `settle` after it, though Icecast shows its listener at once).
    let url = floes[0].url("/live.mp3");
    let tail = Instant::now();
    while tail.elapsed() < Duration::from_secs(2)
        && results.iter().map(|r| r.1.len()).sum::<usize>() < room
    {
        match StreamListener::connect_following(&url, T) {
            Ok(l) => results[0].1.push(l),
            Err(e) if e.to_string().starts_with(&url) && matches!(e.status(), Some(503 | 429)) => {
                results[0].2 += 1
            }
            Err(e) => results[0].3.push(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let admitted: Vec<usize> = results.iter().map(|r| r.1.len()).collect();
    let total: usize = admitted.iter().sum();
    let by_relay: Vec<&String> = results.iter().flat_map(|r| &r.3).collect();
    eprintln!(
        "real icecast burst: admitted {total} of {room} (per instance {admitted:?}), refused by floe {:?}, refused by relays {}",
        results.iter().map(|r| r.2).collect::<Vec<_>>(),
        by_relay.len()
    );
    assert!(
        by_relay.is_empty(),
        "relays refused listeners floe sent: {by_relay:#?}"
    );
    if total * 100 < room * 95 {
        let st = floes[0].status();
        eprintln!("ns1 peers: {:#}", st["peers"]);
        for r in ["r1", "r2", "r3"] {
            eprintln!("ns1 {r}: {}", support::floe::cell(&st, r, "/live.mp3"));
        }
    }
    assert!(total * 100 >= room * 95, "admitted {total} of {room}");
}

/// With `[[peer]]`s a relay is quiet (takes no grant) from each poll's
/// grant sample until the poll's result is published, about a third of
/// every interval. A listener who asks then while no other relay has
/// room is held until the quiet ends, never refused: here one relay,
/// listeners asking every 50 ms for three intervals through the fast path
/// and three through hyper's, all get their 302, and the ones that came
/// during a quiet period got it late.
#[test]
fn a_lone_relay_is_never_refused_for_being_quiet() {
    let rt = runtime();
    let _guard = rt.enter();
    let relay = sim_relay("r1", Some(1000), Some(1000));
    let text = TestConfig::new()
        .relays(&[&relay])
        .lines(
            "admin",
            &format!("listen = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\""),
        )
        .set("select", "grants_per_client", "100000")
        // Quiet needs settle + 100 ms within half the interval.
        .set("poll", "interval", "\"2s\"")
        .set("peers", "name", "\"ns1\"")
        // A peer that never answers: the static share, and the grid.
        .table(&format!(
            "[[peer]]\nname = \"ns2\"\nurl = \"http://127.0.0.1:{}\"\n",
            free_port()
        ))
        .render();
    let floe = FloeProcess::start(&text);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    // HTTP/1.1 (the fast path, which hands a held request to hyper's)
    // for three intervals, then HTTP/1.0 (hyper's path) for three.
    let url = floe.url("/live.ogg");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/live.ogg");
    let fast = |_: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let head = "GET /live.ogg HTTP/1.1\r\nHost: floe\r\nConnection: close\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let hyper = |url: &str| {
        let close = [("Connection", "close")];
        let resp = http_request("GET", url, &close, T).unwrap();
        format!("HTTP/1.0 {} {}", resp.status, resp.text())
    };
    type Get<'a> = &'a dyn Fn(&str) -> String;
    let doors: [(&str, Get); 2] = [("fast path", &fast), ("hyper", &hyper)];
    for (door, get) in doors {
        let started = Instant::now();
        let mut latencies = Vec::new();
        while started.elapsed() < Duration::from_secs(6) {
            let t = Instant::now();
            let answer = get(&url);
            assert!(answer[9..].starts_with("302"), "{door}: {answer}");
            latencies.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        // A quiet period is settle (500 ms) + 100 ms; the listener who
        // comes first in one waits most of it, the others are answered at
        // once, and none waits past the quiet limit.
        latencies.sort();
        let (median, slowest) = (
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1],
        );
        assert!(
            median < Duration::from_millis(50) && slowest >= Duration::from_millis(250),
            "{door}: no listener of {} was held, or all were: median {median:?}, slowest {slowest:?}",
            latencies.len()
        );
        assert!(
            slowest < Duration::from_millis(2500),
            "{door}: held past the quiet limit: {slowest:?}"
        );
    }
    // Counted once per held request: at least one per door, and far fewer
    // than were asked.
    let held = prom::value(&metrics(&floe), "floe_redirects_held_total", &[]).unwrap();
    assert!(
        (2.0..40.0).contains(&held),
        "floe_redirects_held_total {held}"
    );
}
