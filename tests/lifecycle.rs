//! floe's lifecycle against the real binary: SIGTERM stops accepting,
//! finishes the requests in flight and exits 0 within the drain bound; the
//! log has a line per state change and none per request at the default
//! level; `--log-format json` writes one JSON object per line; systemd is
//! told READY, RELOADING and STOPPING.

mod support;

use floe::demo::sim::SimRelay;
use hickory_proto::rr::RecordType;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::dns::query_on;
use support::floe::FloeProcess;
use support::net::{client_address, from_address, http_request};
use support::poll;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

fn sim(name: &str) -> SimRelay {
    sim_relay(name, None, None)
}

fn config(relays: &[&SimRelay]) -> String {
    TestConfig::new()
        .set("http", "header_timeout", "\"3s\"")
        .relays(relays)
        .render()
}

fn wait_log(floe: &FloeProcess, what: &str) {
    assert!(
        floe.logs_within(T, what),
        "no {what:?} in the log:\n{}",
        floe.log_text()
    );
}

/// Reads until the peer closes or `timeout`; what was read.
fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> std::io::Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn sigterm_stops_accepting_finishes_requests_in_flight_and_exits_zero() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a");
    let mut floe = FloeProcess::start(&config(&[&a]));
    floe.wait_healthy(T);

    // In flight: a request whose head is half sent, and an idle keep-alive
    // connection after one answered request.
    let mut half = TcpStream::connect(floe.http).unwrap();
    half.write_all(b"GET /live.ogg HTTP/1.1\r\nHost: stream.example.org\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(floe.http).unwrap();
    idle.write_all(b"GET /live.ogg HTTP/1.1\r\nHost: stream.example.org\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    idle.set_read_timeout(Some(T)).unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 302"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    floe.signal("TERM");
    let t0 = Instant::now();
    wait_log(&floe, "shutting down");

    // No new connections.
    poll(T, Duration::from_millis(10), || {
        TcpStream::connect(floe.http).is_err().then_some(())
    })
    .expect("floe still accepts connections after SIGTERM");

    // The request in flight is finished; the idle connection is closed.
    half.write_all(b"\r\n").unwrap();
    let answer = read_to_close(&mut half, T).expect("the in-flight request is answered");
    assert!(answer.starts_with("HTTP/1.1 302"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    let rest = read_to_close(&mut idle, T).expect("the idle connection is closed");
    assert!(rest.is_empty(), "{rest:?}");

    let bound = floe::http::DRAIN_TIMEOUT + Duration::from_secs(2);
    let status = floe
        .wait_exit(bound)
        .unwrap_or_else(|| panic!("floe still runs {bound:?} after SIGTERM"));
    eprintln!("SIGTERM to exit: {:?}", t0.elapsed());
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        floe.log_text()
    );
    assert!(floe.log_text().contains("stopped"), "{}", floe.log_text());
}

#[test]
fn sigint_also_exits_zero() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a");
    let mut floe = FloeProcess::start(&config(&[&a]));
    floe.wait_healthy(T);
    floe.signal("INT");
    let status = floe.wait_exit(T).expect("floe exits on SIGINT");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_default_log_has_a_line_per_state_change_and_none_per_request() {
    let rt = runtime();
    let _g = rt.enter();
    let (a, b) = (sim("relay-a"), sim("relay-b"));
    // The binary's own default filter: no RUST_LOG.
    let floe = FloeProcess::start_with(&config(&[&a, &b]), &[], &[("RUST_LOG", None)]);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    wait_log(&floe, "relay state changed");
    let before = floe.log.lock().unwrap().len();

    let dns = floe.dns();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..1000 {
        // Each listener from its own address, within its client budget.
        let url = floe.url("/live.ogg");
        let r = from_address(client_address(i), || http_request("GET", &url, &[], T)).unwrap();
        assert_eq!(r.status, 302);
        query_on(&socket, dns, "live.stream.example.org.", RecordType::A, T).unwrap();
    }
    for path in ["/nope", "/status.json", "/metrics", "/healthz"] {
        http_request("GET", &floe.url(path), &[], T).unwrap();
    }
    // A known line after the requests: everything they logged is in by then.
    floe.signal("HUP");
    wait_log(&floe, "config reloaded");
    let lines = floe.log.lock().unwrap()[before..].to_vec();
    eprintln!(
        "log lines during 1000 redirects + 1000 DNS queries + a reload: {}",
        lines.len()
    );
    assert!(
        lines.len() <= 5,
        "the log grew by {} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );

    // A state change is one line.
    b.set_down(true).unwrap();
    wait_log(&floe, "to=down");
    let changes = floe
        .log_text()
        .lines()
        .filter(|l| l.contains("relay-b") && l.contains("to=down"))
        .count();
    assert_eq!(changes, 1, "{}", floe.log_text());
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a");
    let floe = FloeProcess::start_with(
        &config(&[&a]),
        &["--log-format", "json"],
        &[("RUST_LOG", None)],
    );
    floe.wait_healthy(T);
    wait_log(&floe, "relay state changed");
    let log = floe.log.clone();
    let status = floe.terminate();
    assert!(status.success());
    // The reader thread drains the pipe after the exit.
    let lines = poll(T, Duration::from_millis(10), || {
        let lines = log.lock().unwrap().clone();
        lines.iter().any(|l| l.contains("stopped")).then_some(lines)
    })
    .expect("the last line (stopped) is logged");
    assert!(lines.len() >= 5, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    let change = lines
        .iter()
        .find(|l| l.contains("relay state changed"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(change).unwrap();
    assert_eq!(
        v["fields"]["relay"], "relay-a",
        "structured fields: {change}"
    );
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(T)).unwrap();
    let next = || {
        let mut buf = [0u8; 1024];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut floe =
        FloeProcess::start_with(&config(&[&a]), &[], &[("NOTIFY_SOCKET", path.to_str())]);
    assert_eq!(next(), "READY=1\n");
    floe.signal("HUP");
    assert_eq!(next(), "RELOADING=1\n");
    assert_eq!(next(), "READY=1\nSTATUS=serving\n");
    floe.signal("TERM");
    assert_eq!(next(), "STOPPING=1\n");
    assert!(floe.wait_exit(T).expect("exit").success());
}
