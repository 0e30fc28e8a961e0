//! What a PROXY protocol header and `X-Forwarded-For` cost a redirect:
//! floe's CPU per `GET /live.ogg` -> 302 on its plain listener and on its
//! PROXY listener, a new connection per request (the header comes once per
//! connection) and keep-alive, with and without `X-Forwarded-For` from a
//! trusted peer.
//!
//! `cargo bench --bench http_proxy -- [SECONDS per mode, default 5] [CLIENT THREADS, default 4]`
//!
//! Starts the real binary (one HTTP worker) and a simulated relay with
//! unlimited room, runs each mode closed-loop from CLIENT THREADS threads,
//! and prints per mode the requests/s and floe's CPU time (user + system,
//! from /proc/PID/stat) per request, the number that does not depend on
//! how fast the client is. Pin nothing: compare the modes of one run.

use floe::demo::sim::SimRelay;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
enum Mode {
    PlainClose,
    ProxyV1Close,
    ProxyV2Close,
    PlainKeepAlive,
    XffKeepAlive,
    ProxyV2KeepAlive,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PlainClose => "plain, new connection per request",
            Mode::ProxyV1Close => "PROXY v1, new connection per request",
            Mode::ProxyV2Close => "PROXY v2, new connection per request",
            Mode::PlainKeepAlive => "plain, keep-alive",
            Mode::XffKeepAlive => "plain + X-Forwarded-For (trusted), keep-alive",
            Mode::ProxyV2KeepAlive => "PROXY v2, keep-alive",
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let secs: f64 = args.first().map_or(5.0, |s| s.parse().expect("SECONDS"));
    let threads: usize = args.get(1).map_or(4, |s| s.parse().expect("THREADS"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let relay = SimRelay::builder("r1")
        .mount("/live.ogg", None)
        .start()
        .expect("sim relay");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/zones/stream.example.org.zone"),
        dir.path().join("zones/stream.example.org.zone"),
    )
    .unwrap();
    let config = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzones = \"zones\"\nudp_workers = 1\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol_listen = [\"127.0.0.1:0\"]\n\
         trusted_proxies = [\"127.0.0.0/8\"]\nworkers = 1\nmax_connections_per_client = 100000\n\
         [select]\ngrants_per_client = 1000000000\n\
         [poll]\ninterval = \"1s\"\n\
         [[relay]]\nname = \"r1\"\nurl = \"{}\"\nstatus = {{ kind = \"xslt\" }}\n\
         [[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\"]\n",
        relay.url()
    );
    let path = dir.path().join("floe.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut plain, mut proxy) = (None, None);
    while plain.is_none() || proxy.is_none() {
        let line = lines.next().expect("floe's log").unwrap();
        let addr = |p: &str| -> Option<SocketAddr> {
            line.split(p)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        plain = plain.or(addr("HTTP listening on "));
        proxy = proxy.or(addr("HTTP (PROXY protocol) listening on "));
    }
    std::thread::spawn(move || lines.for_each(drop));
    let (plain, proxy) = (plain.unwrap(), proxy.unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(
        plain,
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .starts_with(b"HTTP/1.1 200")
    {
        assert!(Instant::now() < deadline, "floe not healthy");
        std::thread::sleep(Duration::from_millis(100));
    }

    println!("{:<48} {:>10} {:>14}", "mode", "req/s", "floe CPU/req");
    for mode in [
        Mode::PlainClose,
        Mode::ProxyV1Close,
        Mode::ProxyV2Close,
        Mode::PlainKeepAlive,
        Mode::XffKeepAlive,
        Mode::ProxyV2KeepAlive,
    ] {
        let (n, took, cpu) = run(mode, plain, proxy, child.id(), secs, threads);
        println!(
            "{:<48} {:>10.0} {:>11.2} µs",
            mode.name(),
            n as f64 / took.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `header` + `request` on a new connection and reads until EOF.
fn get(addr: SocketAddr, header: &[u8], request: &[u8]) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Vec::new();
    };
    let _ = s.set_nodelay(true);
    let _ = s.write_all(&[header, request].concat());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// floe's CPU time so far (user + system).
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

fn v1(i: u64) -> Vec<u8> {
    format!(
        "PROXY TCP4 198.51.{}.{} 127.0.0.1 {} 80\r\n",
        i % 250,
        i / 250 % 250 + 1,
        40000 + i % 20000
    )
    .into_bytes()
}

fn v2(i: u64) -> Vec<u8> {
    let src: SocketAddr = ([198, 51, (i % 250) as u8, (i / 250 % 250 + 1) as u8], 40000).into();
    let dst: SocketAddr = ([127, 0, 0, 1], 80).into();
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap()
}

/// Runs `mode` for `secs`: (302s, wall time, floe's CPU time).
fn run(
    mode: Mode,
    plain: SocketAddr,
    proxy: SocketAddr,
    pid: u32,
    secs: f64,
    threads: usize,
) -> (u64, Duration, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (cpu0, t0) = (cpu(pid), Instant::now());
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || {
                let close = b"GET /live.ogg HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
                let mut i = t * 1_000_000;
                match mode {
                    Mode::PlainClose | Mode::ProxyV1Close | Mode::ProxyV2Close => {
                        while !stop.load(Ordering::Relaxed) {
                            i += 1;
                            let (addr, header) = match mode {
                                Mode::PlainClose => (plain, Vec::new()),
                                Mode::ProxyV1Close => (proxy, v1(i)),
                                _ => (proxy, v2(i)),
                            };
                            if get(addr, &header, close).starts_with(b"HTTP/1.1 302") {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        let (addr, header, request) = match mode {
                            Mode::PlainKeepAlive => (
                                plain,
                                Vec::new(),
                                "GET /live.ogg HTTP/1.1\r\nHost: b\r\n\r\n".to_string(),
                            ),
                            Mode::XffKeepAlive => (
                                plain,
                                Vec::new(),
                                format!(
                                    "GET /live.ogg HTTP/1.1\r\nHost: b\r\nX-Forwarded-For: 203.0.113.{}, 198.51.100.{}\r\n\r\n",
                                    t + 1,
                                    t + 1
                                ),
                            ),
                            _ => (
                                proxy,
                                v2(t),
                                "GET /live.ogg HTTP/1.1\r\nHost: b\r\n\r\n".to_string(),
                            ),
                        };
                        keep_alive(addr, &header, request.as_bytes(), &done, &stop);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let took = t0.elapsed();
    let n = done.load(Ordering::Relaxed);
    let used = cpu(pid).saturating_sub(cpu0);
    for w in workers {
        w.join().unwrap();
    }
    (n, took, used)
}

/// Requests `request` one at a time on one connection (reopened when floe
/// closes it at max_connection_age), counting 302s.
fn keep_alive(
    addr: SocketAddr,
    header: &[u8],
    request: &[u8],
    done: &AtomicU64,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        let _ = s.set_nodelay(true);
        if s.write_all(header).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(request).is_err() {
                break;
            }
            // One response: head + "302 Found\n" body (content-length 10).
            let mut filled = 0;
            let complete = loop {
                match s.read(&mut buf[filled..]) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => filled += n,
                }
                if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n")
                    && filled >= end + 4 + 10
                {
                    break true;
                }
            };
            if !complete {
                break;
            }
            if buf.starts_with(b"HTTP/1.1 302") {
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
