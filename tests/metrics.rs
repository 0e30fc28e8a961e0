//! `/metrics` against the real binary: `promtool check metrics` accepts the
//! exposition, and the series show known traffic (redirects, 404, 503,
//! polls and poll errors, DNS answers, relay state, listeners, reloads).
//! Relays are `floe::demo::sim::SimRelay`s.

mod support;

use floe::demo::sim::SimRelay;
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::floe::FloeProcess;
use support::prom::{samples, value};
use support::{TestConfig, runtime, sim_relay};
use support::{free_port, poll, require_tool};

const T: Duration = Duration::from_secs(10);

fn sim(name: &str) -> SimRelay {
    sim_relay(name, Some(100), Some(100))
}

fn config(relays: &[&SimRelay], dns_port: u16) -> String {
    TestConfig::new()
        .set("dns", "listen", &format!("[\"127.0.0.1:{dns_port}\"]"))
        .stream("mount_dns = { \"/live.mp3\" = [\"live-mp3.stream.example.org.\"] }")
        .relays(relays)
        .render()
}

fn redirect_labels<'a>(
    mount: &'a str,
    relay: &'a str,
    outcome: &'a str,
    reason: &'a str,
) -> [(&'static str, &'a str); 5] {
    let stream = if mount.is_empty() { "" } else { "live" };
    [
        ("stream", stream),
        ("mount", mount),
        ("relay", relay),
        ("outcome", outcome),
        ("reason", reason),
    ]
}

/// Runs `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(text: &str) {
    let promtool = require_tool("promtool");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `/metrics` until `f` holds; returns that exposition.
fn wait_metrics(floe: &FloeProcess, what: &str, f: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    poll(T, Duration::from_millis(50), || {
        last = floe.get("/metrics").text();
        f(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("timed out waiting for {what}; last /metrics:\n{last}"))
}

/// A DNS query for `name` type `qtype`, id 0x1234, as wire bytes.
fn dns_query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

#[test]
fn metrics_pass_promtool_and_count_known_traffic() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a");
    let b = sim("relay-b");
    b.set_down(true).unwrap();
    let dns_port = free_port();
    let floe = FloeProcess::start(&config(&[&a, &b], dns_port));
    floe.wait_healthy(T);
    a.set_fake_listeners("/live.ogg", 5);
    a.set_source("/live.mp3", false);
    floe.wait_status(
        T,
        "relay-a polled with 5 listeners and no mp3 source",
        |s| {
            let c = support::floe::cell(s, "relay-a", "/live.ogg");
            c["listeners"] == 5
                && support::floe::cell(s, "relay-a", "/live.mp3")["present"] == false
                && support::floe::relay_state(s, "relay-b") == "down"
        },
    );

    for _ in 0..3 {
        let r = floe.get("/live.ogg");
        assert_eq!(r.status, 302);
        assert_eq!(r.header("x-floe-relay"), Some("relay-a"));
    }
    assert_eq!(
        floe.get("/live.mp3").status,
        503,
        "no relay has an mp3 source"
    );
    assert_eq!(floe.get("/no-such-mount").status, 404);

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(T)).unwrap();
    // (name, qtype, expected RCODE): 2 A and 1 AAAA for the balanced name
    // (fast path), 1 TXT (handler), 1 name the zone lacks, 1 outside it.
    let queries = [
        ("live.stream.example.org.", 1, 0),
        ("LIVE.stream.example.org.", 1, 0),
        ("live.stream.example.org.", 28, 0),
        ("live.stream.example.org.", 16, 0),
        ("nope.stream.example.org.", 1, 3),
        ("example.com.", 1, 5),
    ];
    for (name, qtype, rcode) in queries {
        udp.send_to(&dns_query(name, qtype), ("127.0.0.1", dns_port))
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = udp.recv_from(&mut buf).expect("DNS answer");
        assert!(
            n > 12 && buf[..2] == [0x12, 0x34] && buf[3] & 0x0f == rcode,
            "{name} type {qtype}: RCODE {rcode}"
        );
    }

    let text = wait_metrics(&floe, "the DNS answers to be counted", |t| {
        samples(t)
            .iter()
            .filter(|s| s.0 == "floe_dns_queries_total")
            .map(|s| s.2)
            .sum::<f64>()
            >= 6.0
    });
    promtool_check(&text);
    let v = |name: &str, labels: &[(&str, &str)]| {
        value(&text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };

    // DNS queries: exactly the traffic above, and nothing else.
    let zone = "stream.example.org.";
    let dns = |zone, qtype, rcode| {
        v(
            "floe_dns_queries_total",
            &[("zone", zone), ("qtype", qtype), ("rcode", rcode)],
        )
    };
    assert_eq!(dns(zone, "A", "NOERROR"), 2.0);
    assert_eq!(dns(zone, "AAAA", "NOERROR"), 1.0);
    assert_eq!(dns(zone, "TXT", "NOERROR"), 1.0);
    assert_eq!(dns(zone, "A", "NXDOMAIN"), 1.0);
    assert_eq!(dns("", "A", "REFUSED"), 1.0);
    let series = samples(&text)
        .into_iter()
        .filter(|s| s.0 == "floe_dns_queries_total")
        .count();
    assert_eq!(series, 5, "only counted series are exported:\n{text}");
    assert_eq!(v("floe_dns_answers_total", &[("path", "udp-fast")]), 3.0);
    assert_eq!(v("floe_dns_answers_total", &[("path", "udp-handler")]), 3.0);
    assert_eq!(v("floe_dns_responses_total", &[("rcode", "NOERROR")]), 4.0);
    assert_eq!(v("floe_dns_responses_total", &[("rcode", "REFUSED")]), 1.0);

    // What each balanced name answers: the stream name from relay-a (its
    // only mount on the air has room there); the mp3 name, with no source
    // anywhere, from the serve-all policy (every live relay: relay-a).
    let live = "live.stream.example.org.";
    let mp3 = "live-mp3.stream.example.org.";
    let answer = |name, decision, reason| {
        value(
            &text,
            "floe_dns_name_answer",
            &[("name", name), ("decision", decision), ("reason", reason)],
        )
    };
    assert_eq!(answer(live, "candidates", ""), Some(1.0), "{text}");
    assert_eq!(
        answer(mp3, "serve-all", "no-candidate:offline"),
        Some(1.0),
        "{text}"
    );
    let names = samples(&text)
        .into_iter()
        .filter(|s| s.0 == "floe_dns_name_answer")
        .count();
    assert_eq!(names, 2, "one series per balanced name");
    assert_eq!(v("floe_dns_name_relays", &[("name", live)]), 1.0);
    assert_eq!(v("floe_dns_name_relays", &[("name", mp3)]), 1.0);

    // Redirects: exactly the traffic above.
    let sent = |relay| {
        v(
            "floe_redirects_total",
            &redirect_labels("/live.ogg", relay, "302", ""),
        )
    };
    assert_eq!(sent("relay-a"), 3.0);
    assert_eq!(sent("relay-b"), 0.0);
    let mp3_offline = redirect_labels("/live.mp3", "", "503", "offline");
    assert_eq!(v("floe_redirects_total", &mp3_offline), 1.0);
    let ogg_full = redirect_labels("/live.ogg", "", "503", "full");
    assert_eq!(v("floe_redirects_total", &ogg_full), 0.0);
    assert_eq!(
        v("floe_redirects_total", &redirect_labels("", "", "404", "")),
        1.0
    );

    // Relay state and polls.
    assert_eq!(
        v("floe_relay_state", &[("relay", "relay-a"), ("state", "up")]),
        1.0
    );
    assert_eq!(
        v(
            "floe_relay_state",
            &[("relay", "relay-a"), ("state", "down")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "floe_relay_state",
            &[("relay", "relay-b"), ("state", "down")]
        ),
        1.0
    );
    assert!(v("floe_poll_duration_seconds_count", &[("relay", "relay-a")]) >= 2.0);
    let b_connect = [("relay", "relay-b"), ("reason", "connect")];
    assert!(v("floe_poll_errors_total", &b_connect) >= 1.0);
    let a_timeout = [("relay", "relay-a"), ("reason", "timeout")];
    assert_eq!(v("floe_poll_errors_total", &a_timeout), 0.0);

    // Listeners, limits, room and grants from the snapshot.
    let ogg = [
        ("relay", "relay-a"),
        ("stream", "live"),
        ("mount", "/live.ogg"),
    ];
    assert_eq!(v("floe_mount_listeners", &ogg), 5.0);
    assert_eq!(v("floe_mount_max_listeners", &ogg), 100.0);
    let in_flight = v("floe_mount_in_flight", &ogg);
    assert!(in_flight <= 3.0, "at most the 3 grants in flight");
    assert_eq!(v("floe_mount_room", &ogg), 95.0 - in_flight);
    assert_eq!(v("floe_mount_candidate", &ogg), 1.0);
    let mp3 = [
        ("relay", "relay-a"),
        ("stream", "live"),
        ("mount", "/live.mp3"),
    ];
    assert_eq!(v("floe_mount_source", &mp3), 0.0);
    assert_eq!(v("floe_relay_listeners", &[("relay", "relay-a")]), 5.0);
    assert!(v("floe_snapshot_generation", &[]) >= 2.0);
    assert!(v("floe_snapshot_age_seconds", &[]) < 5.0);
    assert_eq!(v("floe_first_poll_round_done", &[]), 1.0);
    assert_eq!(v("floe_reloads_total", &[("result", "failure")]), 0.0);
    assert_eq!(v("floe_reload_failed", &[]), 0.0);

    // A config that does not load is counted and flagged; floe keeps serving.
    std::fs::write(floe.config_path(), "[[relay]\nthis is not TOML\n").unwrap();
    floe.signal("HUP");
    let text = wait_metrics(&floe, "the failed reload", |t| {
        value(t, "floe_reload_failed", &[]) == Some(1.0)
    });
    assert!(value(&text, "floe_reloads_total", &[("result", "failure")]).unwrap() >= 1.0);
    assert_eq!(
        floe.get("/live.ogg").status,
        302,
        "the last good config serves"
    );
    promtool_check(&text);
}

#[test]
fn concurrent_redirects_are_all_counted() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a");
    let b = sim("relay-b");
    let floe = FloeProcess::start(&config(&[&a, &b], free_port()));
    floe.wait_healthy(T);
    let url = floe.url("/live.mp3");
    // Four threads, 25 listeners each, every listener from its own address
    // (within its client budget).
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                (0..25)
                    .filter(|k| {
                        let client = support::net::client_address(t * 25 + k);
                        support::net::from_address(client, || support::http_get(&url, T))
                            .is_ok_and(|r| r.status == 302)
                    })
                    .count()
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, 100);
    let text = floe.get("/metrics").text();
    let sent: f64 = ["relay-a", "relay-b"]
        .iter()
        .map(|r| {
            value(
                &text,
                "floe_redirects_total",
                &redirect_labels("/live.mp3", r, "302", ""),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(sent, 100.0, "every 302 counted once:\n{text}");
}
