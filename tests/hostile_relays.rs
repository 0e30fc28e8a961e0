//! Broken and hostile relays against the real binary: each ends in the right
//! state with the right reason within a few polls, floe's memory stays put,
//! and a good relay polled beside them keeps being polled and chosen.
//!
//! Each fake relay is a raw TCP server on loopback that answers every
//! connection with one misbehaviour.

mod support;

use floe::demo::sim::SimRelay;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::floe::{FloeProcess, relay_state};

const T: Duration = Duration::from_secs(15);

/// What a fake relay does with each connection.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Accepts and never answers.
    Silent,
    /// Answers one byte a second.
    Trickle,
    /// A 100 MB body (floe reads at most 4 MiB).
    Huge,
    /// Resets the connection in the middle of the body.
    ResetMidBody,
    /// `HTTP 500`.
    Error500,
    /// `HTTP 401`.
    Unauthorized,
    /// Icecast's `403 connection limit reached`: up, but full.
    ServerFull,
    /// Valid XML of another server.
    OtherXml,
    /// 250,000 mounts in one floe-slots body (400,000 would pass the 4 MiB
    /// body cap first).
    ManyMounts,
    /// An error page of a megabyte of text (it must not end up in reasons).
    LongErrorPage,
}

/// A fake relay serving `how` until dropped.
struct FakeRelay {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeRelay {
    fn start(how: Misbehaviour) -> FakeRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let flag = flag.clone();
                        std::thread::spawn(move || serve(s, how, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRelay { addr, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut s: TcpStream, how: Misbehaviour, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut head = [0u8; 4096];
    let _ = s.read(&mut head);
    let respond = |s: &mut TcpStream, status: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body);
    };
    match how {
        Misbehaviour::Silent => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Misbehaviour::Trickle => {
            for b in b"HTTP/1.0 200 OK\r\n\r\n#floe-slots 1\n" {
                if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Misbehaviour::Huge => {
            let _ =
                s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 100000000\r\n\r\n#floe-slots 1\n");
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..(100_000_000 / chunk.len()) {
                if stop.load(Ordering::Relaxed) || s.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        Misbehaviour::ResetMidBody => {
            let _ = s.write_all(
                b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n#floe-slots 1\n/live.ogg\t1",
            );
            // Linger 0: the close is a reset.
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
        Misbehaviour::Error500 => respond(&mut s, "500 Internal Server Error", b"oops"),
        Misbehaviour::Unauthorized => respond(&mut s, "401 Unauthorized", b"auth"),
        Misbehaviour::ServerFull => {
            respond(&mut s, "403 Forbidden", b"Icecast connection limit reached")
        }
        Misbehaviour::OtherXml => respond(
            &mut s,
            "200 OK",
            b"<?xml version=\"1.0\"?><rss><channel><title>not icecast</title></channel></rss>",
        ),
        Misbehaviour::ManyMounts => {
            let mut body = String::from("#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n");
            for i in 0..250_000 {
                body.push_str(&format!("/m{i}\t1\t5\t4\n"));
            }
            body.push_str("END\t250000\n");
            respond(&mut s, "200 OK", body.as_bytes());
        }
        Misbehaviour::LongErrorPage => {
            let page = format!("<html>{}</html>", "broken ".repeat(150_000));
            respond(&mut s, "200 OK", page.as_bytes());
        }
    }
}

/// floe's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn broken_relays_end_in_the_right_state_and_the_good_one_is_unaffected() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let good = SimRelay::builder("good")
        .mount("/live.ogg", Some(1000))
        .start()
        .expect("sim relay");
    use Misbehaviour::*;
    let cases: Vec<(&str, Misbehaviour, &str, &str)> = vec![
        ("silent", Silent, "down", "timeout"),
        ("trickle", Trickle, "down", "timeout"),
        ("huge", Huge, "down", "larger than 4 MiB"),
        ("reset", ResetMidBody, "down", "failed"),
        ("error500", Error500, "down", "HTTP 500"),
        ("unauthorized", Unauthorized, "down", "user and password"),
        ("full", ServerFull, "full", "connection limit"),
        ("otherxml", OtherXml, "down", "floe-slots"),
        ("manymounts", ManyMounts, "down", "more than 10000 mounts"),
        ("longpage", LongErrorPage, "down", "floe-slots"),
    ];
    let fakes: Vec<FakeRelay> = cases.iter().map(|c| FakeRelay::start(c.1)).collect();
    let mut relays = format!(
        "[[relay]]\nname = \"good\"\nurl = \"{}\"\naddresses = [\"127.0.0.1\"]\nstatus = {{ kind = \"xslt\" }}\n",
        good.url()
    );
    for ((name, ..), fake) in cases.iter().zip(&fakes) {
        relays += &format!(
            "[[relay]]\nname = \"{name}\"\nurl = \"{}\"\naddresses = [\"127.0.0.2\"]\nstatus = {{ kind = \"xslt\" }}\n",
            fake.url()
        );
    }
    // Plus a host name that does not resolve (.invalid never does).
    relays += "[[relay]]\nname = \"nowhere\"\nurl = \"http://relay.invalid:8000\"\naddresses = [\"127.0.0.3\"]\nstatus = { kind = \"xslt\" }\n";
    let floe = FloeProcess::start(&format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zones = "zones"
[http]
listen = ["127.0.0.1:0"]
[poll]
interval = "500ms"
timeout = "1s"
rise = 1
fall = 1
{relays}
[[stream]]
name = "live"
mounts = ["/live.ogg"]
"#
    ));
    let started = Instant::now();
    floe.wait_healthy(T);
    let rss_start = rss_kib(floe.pid());
    let status = floe.wait_status(T, "every broken relay in its state", |s| {
        cases
            .iter()
            .all(|(name, _, state, _)| relay_state(s, name) == *state)
            && relay_state(s, "nowhere") == "down"
            && relay_state(s, "good") == "up"
    });
    eprintln!("all states reached {:?} after start", started.elapsed());
    let reason = |name: &str| -> String {
        status["relays"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    for (name, _, _, says) in &cases {
        let r = reason(name);
        assert!(r.contains(says), "{name}: reason {r:?} should say {says:?}");
        assert!(
            r.chars().count() <= 201,
            "{name}: a reason of {} chars",
            r.chars().count()
        );
    }
    assert!(
        reason("nowhere").contains("failed"),
        "{}",
        reason("nowhere")
    );
    // Several more rounds of polls: the good relay keeps being polled and
    // chosen, and floe's memory does not grow with what the others send.
    let polled = |s: &serde_json::Value| {
        s["relays"][0]["polled_at"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let before = polled(&floe.status());
    std::thread::sleep(Duration::from_secs(4));
    let after = floe.status();
    assert_ne!(polled(&after), before, "the good relay is still polled");
    assert_eq!(relay_state(&after, "good"), "up");
    for _ in 0..3 {
        let r = support::net::http_request("HEAD", &floe.url("/live.ogg"), &[], T).unwrap();
        assert_eq!(r.status, 302);
        assert!(r.header("location").unwrap().starts_with(&good.url()));
    }
    let rss_end = rss_kib(floe.pid());
    eprintln!("floe RSS {rss_start} KiB -> {rss_end} KiB over 4 s of broken relays");
    assert!(
        rss_end < rss_start + 32 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}
