//! Open-loop HTTP latency at a fixed request rate, for
//! `tests/bench/http_redirect.sh` (BRIEF target: p99 under 1 ms at half of
//! the saturation rate).
//!
//! `cargo bench --bench http_latency -- URL RATE SECONDS [CONNECTIONS]`
//!
//! Requests are scheduled at RATE per second and handed round robin to
//! CONNECTIONS keep-alive HTTP/1.1 connections, one request in flight per
//! connection (a request whose connection is busy waits its turn). Each
//! latency runs from the request's *scheduled* time to the end of its
//! response, so a server that stalls shows in the percentiles instead of
//! slowing the client down (no coordinated omission). Closed-loop load
//! generators (hey, wrk) saturate their own core well before a fast server
//! is half loaded; this one is a single thread on mio that spins (zero poll
//! timeout: epoll's millisecond timeouts would batch the sends) and does no
//! allocation per request, so pin it to a core of its own.
//!
//! Prints one line: `rps p50_us p99_us p999_us max_us non_302 incomplete
//! max_send_lag_us` (the last: how far behind schedule the client ever
//! sent; if it is large the client, not the server, was the limit).

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

struct Conn {
    stream: TcpStream,
    /// Scheduled times of the requests handed to this connection and not
    /// answered yet; the front one is on the wire.
    queue: VecDeque<Instant>,
    buf: Vec<u8>,
    filled: usize,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = "usage: http_latency URL RATE SECONDS [CONNECTIONS]";
    let url = args.first().expect(usage);
    let rate: f64 = args.get(1).expect(usage).parse().expect("RATE");
    let secs: f64 = args.get(2).expect(usage).parse().expect("SECONDS");
    let conns: usize = args.get(3).map_or(32, |c| c.parse().expect("CONNECTIONS"));
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: floe-bench\r\n\r\n");

    let mut poll = Poll::new().expect("poll");
    let mut connections: Vec<Conn> = (0..conns)
        .map(|i| {
            let std = std::net::TcpStream::connect(host).expect("connect");
            std.set_nodelay(true).expect("nodelay");
            std.set_nonblocking(true).expect("nonblocking");
            let mut stream = TcpStream::from_std(std);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .expect("register");
            Conn {
                stream,
                queue: VecDeque::with_capacity(64),
                buf: vec![0; 64 * 1024],
                filled: 0,
            }
        })
        .collect();

    let total = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut latencies: Vec<u64> = Vec::with_capacity(total);
    let mut events = Events::with_capacity(conns);
    let (mut sent, mut non_302) = (0usize, 0usize);
    let mut max_lag = Duration::ZERO;
    let start = Instant::now();
    let give_up = start + Duration::from_secs_f64(secs) + Duration::from_secs(2);
    while latencies.len() < total && Instant::now() < give_up {
        // Hand out every request that is due.
        let now = Instant::now();
        while sent < total {
            let due = start + interval * sent as u32;
            if due > now {
                break;
            }
            max_lag = max_lag.max(now - due);
            let c = &mut connections[sent % conns];
            c.queue.push_back(due);
            if c.queue.len() == 1 {
                send(&mut c.stream, request.as_bytes());
            }
            sent += 1;
        }
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        for event in &events {
            let c = &mut connections[event.token().0];
            loop {
                match c.stream.read(&mut c.buf[c.filled..]) {
                    Ok(0) => panic!("the server closed a keep-alive connection"),
                    Ok(n) => c.filled += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => panic!("read: {e}"),
                }
                assert!(c.filled < c.buf.len(), "response larger than 64 KiB");
            }
            // Every complete response in the buffer.
            while let Some((len, status)) = response(&c.buf[..c.filled]) {
                let done = Instant::now();
                let due = c.queue.pop_front().expect("a response to a request sent");
                latencies.push((done - due).as_nanos() as u64);
                if status != 302 {
                    non_302 += 1;
                }
                c.buf.copy_within(len..c.filled, 0);
                c.filled -= len;
                if !c.queue.is_empty() {
                    send(&mut c.stream, request.as_bytes());
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let incomplete = total - latencies.len();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    println!(
        "{:.0} {:.1} {:.1} {:.1} {:.1} {} {} {:.1}",
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        non_302,
        incomplete,
        max_lag.as_secs_f64() * 1e6
    );
}

/// Writes one small request whole (a socket buffer always has room for it
/// with one request in flight per connection).
fn send(stream: &mut TcpStream, request: &[u8]) {
    match stream.write(request) {
        Ok(n) if n == request.len() => {}
        other => panic!("short or failed write of a request: {other:?}"),
    }
}

/// The length and status code of the complete response at the start of
/// `buf`, if it is all there (headers and a `Content-Length` body).
fn response(buf: &[u8]) -> Option<(usize, u16)> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).expect("ASCII response head");
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head + body).then_some((head + body, status))
}
