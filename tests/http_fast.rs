//! The HTTP fast path (`src/http/fast.rs`) against the real binary: a plain
//! `GET /<mount>` answered without hyper gets the same bytes as hyper's
//! answer and is counted the same; requests split across segments,
//! pipelined, mixed with requests hyper answers, garbage, oversized, slow
//! or idle are answered (or closed) as hyper's path does.

mod support;

use floe::demo::sim::SimRelay;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::floe::FloeProcess;
use support::{TestConfig, prom, runtime};

const T: Duration = Duration::from_secs(10);

/// A relay with room on `/live.ogg` only: `/live.mp3` is offline.
fn relay() -> SimRelay {
    SimRelay::builder("relay-a")
        .mount("/live.ogg", Some(1000))
        .start()
        .expect("sim relay")
}

fn start(relay: &SimRelay, http: &str, select: &str) -> FloeProcess {
    let config = TestConfig::new()
        .set("http", "header_timeout", "\"1s\"")
        .set("http", "retry_after", "\"7s\"")
        .lines("http", http)
        .lines("select", select)
        .without_stream_dns()
        .relays(&[relay])
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    floe
}

fn connect(from: &str, addr: SocketAddr) -> TcpStream {
    let ip: IpAddr = from.parse().unwrap();
    let s = support::net::tcp_from(ip, addr, None, T).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Sends `request` from `from` and reads until floe closes.
fn exchange(addr: SocketAddr, from: &str, request: &str) -> String {
    let mut s = connect(from, addr);
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response (head and `content-length` body) off `s`.
fn response(s: &mut TcpStream) -> String {
    answer_to(s, "GET")
}

/// Reads one response to a `method` request off `s` (a `HEAD` answer has
/// no body, whatever its `content-length`).
fn answer_to(s: &mut TcpStream, method: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            let len = if method == "HEAD" { 0 } else { len };
            if body.len() >= len {
                return text;
            }
        }
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "closed or timed out after {text:?}");
        out.extend_from_slice(&buf[..n]);
    }
}

/// `answer` with the values that may differ between two answers (the date,
/// the snapshot generation) blanked.
fn normalized(answer: &str) -> String {
    answer
        .lines()
        .map(|l| {
            for name in ["date: ", "x-floe-generation: "] {
                if l.starts_with(name) {
                    return format!("{name}_");
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A header the fast path leaves to hyper and the routes ignore from an
/// untrusted peer: the same request, answered by hyper.
const TO_HYPER: &str = "X-Forwarded-For: 192.0.2.7\r\n";

#[test]
fn fast_answers_are_hypers_byte_for_byte_and_counted_the_same() {
    let rt = runtime();
    let _g = rt.enter();
    let a = relay();
    let floe = start(&a, "", "grants_per_client = 2\nclient_share = 0.001");
    let mut counted = [0u32; 3]; // 302, 503, 429
    let mut count = |answer: &str| {
        let i = ["HTTP/1.1 302", "HTTP/1.1 503", "HTTP/1.1 429"]
            .iter()
            .position(|s| answer.starts_with(s))
            .unwrap_or_else(|| panic!("unexpected answer {answer:?}"));
        counted[i] += 1;
    };
    let cases = [
        ("GET /live.ogg HTTP/1.1\r\nHost: x\r\n", "302"),
        (
            "GET /live.ogg?token=abc&x=%20/y HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n",
            "302",
        ),
        ("GET /live.mp3 HTTP/1.1\r\nHost: x\r\n", "503"),
    ];
    for (i, (head, status)) in cases.iter().enumerate() {
        // Connection: close, each from its own address (its own budget).
        let from = format!("127.9.{i}.1");
        let fast = exchange(
            floe.http,
            &from,
            &format!("{head}Connection: close\r\n\r\n"),
        );
        let hyper = exchange(
            floe.http,
            &from,
            &format!("{head}{TO_HYPER}Connection: close\r\n\r\n"),
        );
        assert!(fast.starts_with(&format!("HTTP/1.1 {status}")), "{fast}");
        assert!(fast.contains("\r\nconnection: close\r\n"), "{fast}");
        assert_eq!(normalized(&fast), normalized(&hyper), "{head}");
        count(&fast);
        count(&hyper);
        // Keep-alive: one connection, fast then hyper then fast.
        let mut s = connect(&format!("127.9.{}.1", i + 10), floe.http);
        s.write_all(format!("{head}\r\n").as_bytes()).unwrap();
        let fast = response(&mut s);
        s.write_all(format!("{head}{TO_HYPER}\r\n").as_bytes())
            .unwrap();
        let hyper = response(&mut s);
        assert!(!fast.contains("connection:"), "{fast}");
        assert_eq!(normalized(&fast), normalized(&hyper), "{head}");
        count(&fast);
        count(&hyper);
    }
    // Past the client's budget (2 grants): 429 from both paths.
    let from = "127.9.100.1";
    let ask = "GET /live.ogg HTTP/1.1\r\nHost: x\r\n";
    for _ in 0..2 {
        count(&exchange(
            floe.http,
            from,
            &format!("{ask}Connection: close\r\n\r\n"),
        ));
    }
    let fast = exchange(floe.http, from, &format!("{ask}Connection: close\r\n\r\n"));
    let hyper = exchange(
        floe.http,
        from,
        &format!("{ask}{TO_HYPER}Connection: close\r\n\r\n"),
    );
    assert!(fast.starts_with("HTTP/1.1 429"), "{fast}");
    assert!(fast.contains("\r\nretry-after: "), "{fast}");
    assert_eq!(normalized(&fast), normalized(&hyper));
    count(&fast);
    count(&hyper);

    // Both paths count in the same series.
    let metrics = floe.get("/metrics").text();
    let total = |outcome: &str| -> f64 {
        prom::samples(&metrics)
            .iter()
            .filter(|(name, labels, _)| {
                name == "floe_redirects_total"
                    && labels.get("outcome").map(String::as_str) == Some(outcome)
            })
            .map(|s| s.2)
            .sum()
    };
    assert_eq!(
        [total("302"), total("503"), total("429")],
        counted.map(f64::from),
        "{metrics}"
    );
}

#[test]
fn split_pipelined_mixed_bad_slow_and_idle_requests_are_served_as_hyper_would() {
    let rt = runtime();
    let _g = rt.enter();
    let a = relay();
    let floe = start(&a, "max_connection_age = \"2s\"", "");
    let get = "GET /live.ogg HTTP/1.1\r\nHost: x\r\n\r\n";

    // A head split across segments: the first read is partial.
    let mut s = connect("127.8.0.1", floe.http);
    s.write_all(b"GET /live.ogg HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"st: x\r\n\r\n").unwrap();
    assert!(response(&mut s).starts_with("HTTP/1.1 302"));
    // ... and after a fast answer on the same connection.
    s.write_all(get.as_bytes()).unwrap();
    assert!(response(&mut s).starts_with("HTTP/1.1 302"));
    s.write_all(b"GET /live.ogg HT").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"TP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(response(&mut s).starts_with("HTTP/1.1 302"));

    // Fast, HEAD (hyper), fast again on one connection.
    let mut s = connect("127.8.0.2", floe.http);
    for req in [get, "HEAD /live.ogg HTTP/1.1\r\nHost: x\r\n\r\n", get] {
        s.write_all(req.as_bytes()).unwrap();
        let answer = answer_to(&mut s, &req[..4]);
        assert!(answer.starts_with("HTTP/1.1 302"), "{req}: {answer}");
    }

    // Pipelined: both answered, in order, then closed as the last asked.
    let two = format!("{get}GET /live.mp3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = exchange(floe.http, "127.8.0.3", &two);
    let first = answer.find("HTTP/1.1 302").expect("the first answered");
    let second = answer.find("HTTP/1.1 503").expect("the second answered");
    assert!(first < second, "{answer}");

    // Garbage and a bad request line: hyper's 400 (or a close).
    for bad in [
        "\x16\x03\x01\x00\x05hello\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nBad Header: x\r\n\r\n",
    ] {
        let answer = exchange(floe.http, "127.8.0.4", bad);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{bad:?}: {answer}"
        );
    }
    // An oversized head: 431 (or a close), never a redirect.
    let big = format!(
        "GET /live.ogg HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = exchange(floe.http, "127.8.0.5", &big);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Slow: nothing, half a head, or nothing after a fast answer: closed
    // after the header timeout (1 s), not before. A connection that sends
    // nothing reaches floe only when the kernel hands it over, 1 s after
    // its handshake (`TCP_DEFER_ACCEPT`): its header timeout starts then.
    let idle_at = Instant::now();
    let idle = connect("127.8.0.6", floe.http);
    let mut half = connect("127.8.0.7", floe.http);
    half.write_all(b"GET /live.ogg HTTP/1.1\r\nHost").unwrap();
    let mut after = connect("127.8.0.8", floe.http);
    after.write_all(get.as_bytes()).unwrap();
    assert!(response(&mut after).starts_with("HTTP/1.1 302"));
    let t = Instant::now();
    let (second, deferred) = (Duration::from_secs(1), Duration::from_secs(2));
    for (what, mut s, since, least) in [
        ("idle", idle, idle_at, deferred),
        ("half a head", half, t, second),
        ("after an answer", after, t, second),
    ] {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
            "{what}: {rest}"
        );
        let waited = since.elapsed();
        assert!(
            waited > least - Duration::from_millis(300)
                && waited < least + Duration::from_millis(1500),
            "{what}: closed after {waited:?}"
        );
    }

    // A busy keep-alive connection of fast requests is closed by its age.
    let mut busy = connect("127.8.0.9", floe.http);
    let t = Instant::now();
    let closed = loop {
        assert!(t.elapsed() < Duration::from_secs(6), "never closed");
        let sent = busy.write_all(get.as_bytes());
        let mut buf = [0u8; 1024];
        match (sent, busy.read(&mut buf)) {
            (Ok(()), Ok(n)) if n > 0 => std::thread::sleep(Duration::from_millis(150)),
            _ => break t.elapsed(),
        }
    };
    assert!(
        closed >= Duration::from_millis(1800) && closed < Duration::from_secs(4),
        "closed after {closed:?} (age 2 s)"
    );
}
