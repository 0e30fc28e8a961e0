//! Floods on loopback, bounded, and what a test measures under them.
//!
//! - [`Held`]: thousands of TCP connections held open from many source
//!   addresses (idle, slowloris, DNS over TCP), each reconnected when the
//!   server closes it, as an attacker would; all on one current-thread
//!   runtime on one thread.
//! - [`UdpFlood`]: datagrams (garbage or valid queries) from many source
//!   addresses at a fixed, paced rate (not "as fast as possible", which on
//!   a 2-core machine only measures the scheduler).
//! - [`Probe`]: a well-behaved client at a steady rate from its own
//!   address, recording each request's latency ([`Latencies`]).
//! - [`ProcStats`]: a process's RSS, open fds and threads from `/proc`.
//!
//! Flood threads can run at a lower priority ([`nice_this_thread`]): on
//! one machine the attacker's CPU is the server's CPU, which a real attack
//! from other machines does not take.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Raises this process's open-files limit to at least `want` if it can
/// (to the hard limit, and beyond it as root), so that floe, which
/// inherits it, can hold a flood's connections too; returns the limit.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers to local rlimits.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        // Beyond the hard limit only with CAP_SYS_RESOURCE (root).
        let beyond = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        let hard = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &beyond) == 0 {
            return want;
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &hard) == 0 {
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// The soft open-files limit of process `pid` (from `/proc/PID/limits`).
pub fn fd_limit_of(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
}

/// Lowers the calling thread's priority (`nice` 0..19; Linux applies
/// `setpriority(PRIO_PROCESS, tid)` to one thread).
pub fn nice_this_thread(nice: i32) {
    // SAFETY: plain syscalls on this thread's id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// The load average and whether a fuzzer (`afl-fuzz`) runs, for the
/// record beside a measurement: the machine may be shared.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let fuzzing = std::process::Command::new("pgrep")
        .arg("afl-fuzz")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    format!(
        "load {}{}",
        load.join(" "),
        if fuzzing { ", afl-fuzz running" } else { "" }
    )
}

/// A process's resident memory, open file descriptors and threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/PID/fd`.
    pub fds: usize,
    /// `Threads`.
    pub threads: usize,
}

impl ProcStats {
    /// RSS in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

impl std::fmt::Display for ProcStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, {} fds, {} threads",
            self.rss_mib(),
            self.fds,
            self.threads
        )
    }
}

/// [`ProcStats`] of process `pid` now (zeros if it is gone).
pub fn proc_stats(pid: u32) -> ProcStats {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    ProcStats {
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:") as usize,
    }
}

/// Samples [`proc_stats`] of `pid` every `every` on a thread until stopped;
/// keeps the peak of each figure.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<ProcStats>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(proc_stats(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = proc_stats(pid);
                let mut p = p.lock().unwrap();
                p.rss_kib = p.rss_kib.max(now.rss_kib);
                p.fds = p.fds.max(now.fds);
                p.threads = p.threads.max(now.threads);
                drop(p);
                std::thread::sleep(every);
            }
        });
        Sampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The peak of each figure so far.
    pub fn peak(&self) -> ProcStats {
        *self.peak.lock().unwrap()
    }

    /// Stops sampling; the peaks.
    pub fn stop(mut self) -> ProcStats {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak()
    }
}

/// Loopback address `i` of network 127.`net`.0.0/16: 127.net.(i / 250).(i
/// % 250 + 1), so addresses 0..249 share a /24, 250..499 the next, …
pub fn address(net: u8, i: usize) -> IpAddr {
    Ipv4Addr::new(127, net, (i / 250) as u8, (i % 250 + 1) as u8).into()
}

/// `n` addresses of 127.`net`.0.0/16 spread over `per24`-address groups,
/// one group per /24: `per24` sources in each of `n / per24` networks.
pub fn spread(net: u8, n: usize, per24: usize) -> Vec<IpAddr> {
    let per24 = per24.clamp(1, 250);
    (0..n)
        .map(|i| address(net, (i / per24) * 250 + i % per24))
        .collect()
}

// ---- Latencies ----

/// Latencies of one probe's requests, and its failures.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    pub samples: Vec<Duration>,
    pub failures: Vec<String>,
    /// Longest a request started after its scheduled time (the probe's own
    /// pacing, not the server).
    pub max_lag: Duration,
}

/// count, failures, p50, p99, max of a [`Latencies`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub failed: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// Requests served, in percent of those sent.
    pub fn served_pct(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        100.0 * (self.count - self.failed) as f64 / self.count as f64
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} served ({:.2} %), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.count,
            self.count - self.failed,
            self.served_pct(),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Latencies {
    /// Summary over every request; a failure counts in `count` and
    /// `failed` (and not in the percentiles: it has no latency).
    pub fn summary(&self) -> Summary {
        let mut s = self.samples.clone();
        s.sort();
        let at = |q: f64| {
            if s.is_empty() {
                Duration::ZERO
            } else {
                s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1]
            }
        };
        Summary {
            count: s.len() + self.failures.len(),
            failed: self.failures.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: s.last().copied().unwrap_or_default(),
        }
    }
}

// ---- A well-behaved client ----

/// A client from its own address sending one request every `1 / rate` on
/// its own thread until stopped, recording each latency. A request that
/// fails or times out is a failure.
pub struct Probe {
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Latencies>>,
    thread: Option<JoinHandle<()>>,
}

/// A well-behaved listener and resolver, `rate` requests a second each: a
/// `GET mount` to `http` from `http_from` (a redirect is served) and an A
/// query for `name` to `dns` from `dns_from` (an address is served).
/// Addresses of their own, as a listener's and a resolver's are: their
/// grant budget and response rate are theirs.
pub fn steady_client(
    rate: u32,
    (http, http_from, mount): (SocketAddr, IpAddr, &'static str),
    (dns, dns_from, name): (SocketAddr, IpAddr, &'static str),
) -> (Probe, Probe) {
    let redirects = Probe::start(rate, move || {
        get_redirect(http, http_from, mount, Duration::from_secs(2))
    });
    let resolver = UdpSocket::bind(SocketAddr::new(dns_from, 0)).unwrap();
    let answers = Probe::start(rate, move || {
        query_a(&resolver, dns, name, Duration::from_secs(1))
    });
    (redirects, answers)
}

impl Probe {
    /// Calls `request` `rate` times a second (open loop: on schedule, not
    /// after the previous answer, unless that one is late) until stopped.
    /// `request` returns `Err(why)` for a request not served.
    pub fn start(
        rate: u32,
        mut request: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let out = Arc::new(Mutex::new(Latencies::default()));
        let (s, o) = (stop.clone(), out.clone());
        let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                let started = Instant::now();
                let lag = started.saturating_duration_since(next);
                let result = request();
                let took = started.elapsed();
                let mut o = o.lock().unwrap();
                o.max_lag = o.max_lag.max(lag);
                match result {
                    Ok(()) => o.samples.push(took),
                    Err(why) => o.failures.push(why),
                }
                drop(o);
                // Late requests are not sent in a burst to catch up.
                next = (next + every).max(Instant::now() - every);
            }
        });
        Probe {
            stop,
            out,
            thread: Some(thread),
        }
    }

    /// What was recorded so far, and clears it (a new phase starts).
    pub fn take(&self) -> Latencies {
        std::mem::take(&mut *self.out.lock().unwrap())
    }

    /// Stops the client; what it recorded since the last [`Probe::take`].
    pub fn stop(mut self) -> Latencies {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.take()
    }
}

/// One redirect: `GET path` on a new connection from `source`; served when
/// the answer is `302` with a `Location`.
pub fn get_redirect(
    server: SocketAddr,
    source: IpAddr,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut s =
        super::net::tcp_from(source, server, None, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: stream.example.org\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]);
            let status = text.get(9..12).unwrap_or_default();
            let location = text
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("location:"));
            return if status == "302" && location {
                Ok(())
            } else {
                Err(format!("answer {:?}", text.lines().next().unwrap_or("")))
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => return Err("closed before an answer".into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// A DNS client on `socket` (bound to its own address): one A query for
/// `name`; served when the answer is NOERROR, not truncated, with at least
/// one address.
pub fn query_a(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let m = super::dns::query_on(socket, server, name, RecordType::A, timeout)
        .map_err(|e| format!("query: {e}"))?;
    if m.metadata.response_code != ResponseCode::NoError
        || m.metadata.truncation
        || super::dns::a_records(&m).is_empty()
    {
        return Err(format!(
            "answer {:?}, tc {}, {} records",
            m.metadata.response_code,
            m.metadata.truncation,
            m.answers.len()
        ));
    }
    Ok(())
}

// ---- Held TCP connections ----

/// What a held connection does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Sends nothing.
    Idle,
    /// Sends a request head one byte every `every`, never finishing it.
    Slowloris { every: Duration },
    /// DNS over TCP: announces the largest message (length 65,535) and
    /// sends its first 12 bytes, then nothing.
    DnsPartial,
}

/// One group of held connections: `per_source` from each of `sources`.
#[derive(Debug, Clone)]
pub struct HoldGroup {
    pub kind: Hold,
    pub target: SocketAddr,
    pub sources: Vec<IpAddr>,
    pub per_source: usize,
}

/// Counters of held connections.
#[derive(Debug, Default)]
pub struct HeldCounters {
    /// Open now.
    pub open: AtomicU64,
    /// Most open at once.
    pub peak: AtomicU64,
    /// Connections made.
    pub connects: AtomicU64,
    /// Closed by the server (then made again).
    pub closed_by_server: AtomicU64,
    /// Of those, closed within a second of connecting (refused by a cap).
    pub refused: AtomicU64,
    /// Connects that failed or timed out.
    pub connect_errors: AtomicU64,
    /// Bytes sent (slowloris, partial prefixes).
    pub bytes: AtomicU64,
}

/// A snapshot of [`HeldCounters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HeldFigures {
    pub open: u64,
    pub peak: u64,
    pub connects: u64,
    pub closed_by_server: u64,
    pub refused: u64,
    pub connect_errors: u64,
    pub bytes: u64,
}

/// Connections held open until [`Held::stop`] (or drop), on a thread of
/// their own; every one is closed when it stops.
pub struct Held {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    counters: Vec<Arc<HeldCounters>>,
}

impl Held {
    /// Opens every connection of `groups` over `ramp` (spread evenly, so
    /// the opening itself is no burst) and keeps them open: one closed by
    /// the server is made again after `reconnect` (an attacker does at
    /// once; the pause bounds the connect rate of a group the server closes
    /// at once). The flood thread runs at `nice`.
    pub fn start(groups: Vec<HoldGroup>, ramp: Duration, reconnect: Duration, nice: i32) -> Held {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let counters: Vec<Arc<HeldCounters>> = groups
            .iter()
            .map(|_| Arc::new(HeldCounters::default()))
            .collect();
        let cs = counters.clone();
        let thread = std::thread::Builder::new()
            .name("flood-tcp".into())
            .spawn(move || {
                nice_this_thread(nice);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("flood runtime");
                rt.block_on(async move {
                    let total: usize = groups.iter().map(|g| g.sources.len() * g.per_source).sum();
                    let step = ramp.div_f64(total.max(1) as f64);
                    let mut k = 0u32;
                    for (g, c) in groups.iter().zip(cs) {
                        for n in 0..g.per_source {
                            for &src in &g.sources {
                                let delay = step * k;
                                k += 1;
                                let (kind, target, c) = (g.kind, g.target, c.clone());
                                let salt = k as usize + n;
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    hold_one(kind, src, target, reconnect, &c, salt).await;
                                });
                            }
                        }
                    }
                    let _ = rx.await;
                });
                // Dropping the runtime drops every task and closes its socket.
                drop(rt);
            })
            .expect("flood thread");
        Held {
            stop: Some(tx),
            thread: Some(thread),
            counters,
        }
    }

    /// The figures of group `i`.
    pub fn figures(&self, i: usize) -> HeldFigures {
        let c = &self.counters[i];
        HeldFigures {
            open: c.open.load(Ordering::Relaxed),
            peak: c.peak.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            closed_by_server: c.closed_by_server.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            connect_errors: c.connect_errors.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    /// Connections open now, over every group.
    pub fn open(&self) -> u64 {
        (0..self.counters.len()).map(|i| self.figures(i).open).sum()
    }

    /// Closes every connection and stops the thread.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Counts a connection open while alive.
struct OpenGuard<'a>(&'a HeldCounters);

impl<'a> OpenGuard<'a> {
    fn new(c: &'a HeldCounters) -> OpenGuard<'a> {
        let now = c.open.fetch_add(1, Ordering::Relaxed) + 1;
        c.peak.fetch_max(now, Ordering::Relaxed);
        c.connects.fetch_add(1, Ordering::Relaxed);
        OpenGuard(c)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One held connection, made again whenever the server closes it, until
/// its task is dropped.
async fn hold_one(
    kind: Hold,
    source: IpAddr,
    target: SocketAddr,
    reconnect: Duration,
    c: &HeldCounters,
    salt: usize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A request head that never ends: one header line after another.
    const SLOW: &[u8] = b"GET /live.ogg HTTP/1.1\r\nHost: stream.example.org\r\nX-a: b\r\nX-c: d\r\nX-e: f\r\nX-g: h\r\nX-i: j\r\n";
    loop {
        let connected = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(target).await
        };
        let mut stream = match tokio::time::timeout(Duration::from_secs(3), connected).await {
            Ok(Ok(s)) => s,
            _ => {
                c.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(reconnect.max(Duration::from_millis(100))).await;
                continue;
            }
        };
        let _open = OpenGuard::new(c);
        let since = Instant::now();
        let mut buf = [0u8; 512];
        match kind {
            Hold::Idle => {
                // Until the server closes (EOF) or resets.
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            }
            Hold::DnsPartial => {
                let mut start = [0u8; 14];
                start[..2].copy_from_slice(&u16::MAX.to_be_bytes());
                if stream.write_all(&start).await.is_ok() {
                    c.bytes.fetch_add(start.len() as u64, Ordering::Relaxed);
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            }
            Hold::Slowloris { every } => {
                // Connections start at different points of the head and
                // of the period, so their bytes do not arrive in step.
                let mut at = salt % 16;
                tokio::time::sleep(every.mul_f64((salt % 97) as f64 / 97.0)).await;
                loop {
                    tokio::select! {
                        r = stream.read(&mut buf) => {
                            if !matches!(r, Ok(n) if n > 0) {
                                break;
                            }
                        }
                        _ = tokio::time::sleep(every) => {
                            let byte = SLOW[at % SLOW.len()];
                            at = if at + 1 >= SLOW.len() { 24 } else { at + 1 };
                            if stream.write_all(&[byte]).await.is_err() {
                                break;
                            }
                            c.bytes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        c.closed_by_server.fetch_add(1, Ordering::Relaxed);
        if since.elapsed() < Duration::from_secs(1) {
            c.refused.fetch_add(1, Ordering::Relaxed);
        }
        drop(_open);
        tokio::time::sleep(reconnect).await;
    }
}

// ---- UDP floods ----

/// Counters of a UDP flood.
#[derive(Debug, Default)]
pub struct UdpCounters {
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Sends that failed (buffer full).
    pub send_errors: AtomicU64,
    /// Datagrams received back.
    pub received: AtomicU64,
    /// Of those, with the TC bit (byte 2, bit 1) set.
    pub truncated: AtomicU64,
}

/// Datagrams sent from many source addresses at a fixed rate, cycling
/// through `payloads`, until stopped. Answers are read (and counted) every
/// 50 ms so they never pile up.
pub struct UdpFlood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<UdpCounters>,
}

/// A snapshot of [`UdpCounters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpFigures {
    pub sent: u64,
    pub send_errors: u64,
    pub received: u64,
    pub truncated: u64,
}

impl UdpFlood {
    /// Sends `rate` datagrams a second to `target` from one socket per
    /// source address, round robin, paced every millisecond (at most 5 ms'
    /// worth at once). The thread runs at `nice`.
    pub fn start(
        target: SocketAddr,
        sources: &[IpAddr],
        rate: u32,
        payloads: Vec<Vec<u8>>,
        nice: i32,
    ) -> io::Result<UdpFlood> {
        let sockets = sources
            .iter()
            .map(|&ip| {
                let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        assert!(!payloads.is_empty(), "a flood needs payloads");
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(UdpCounters::default());
        let (s, c) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("flood-udp".into())
            .spawn(move || {
                nice_this_thread(nice);
                let t0 = Instant::now();
                let tick = Duration::from_millis(1);
                // At most 5 ms' worth at once: a tick that comes late (a
                // sleep overshoots) catches up that much, and time the
                // thread was not scheduled at all is skipped, not sent in a
                // burst: the rate is an upper bound.
                let burst = (u64::from(rate) / 200).max(1);
                let (mut sent, mut k, mut last_drain) = (0u64, 0usize, t0);
                let mut buf = [0u8; 4096];
                while !s.load(Ordering::Relaxed) {
                    let due = (t0.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                    sent = sent.max(due.saturating_sub(burst));
                    for _ in sent..due {
                        let socket = &sockets[k % sockets.len()];
                        let payload = &payloads[k % payloads.len()];
                        k = k.wrapping_add(1);
                        match socket.send_to(payload, target) {
                            Ok(_) => c.sent.fetch_add(1, Ordering::Relaxed),
                            Err(_) => c.send_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    sent = sent.max(due);
                    if last_drain.elapsed() >= Duration::from_millis(50) {
                        last_drain = Instant::now();
                        for socket in &sockets {
                            while let Ok(n) = socket.recv(&mut buf) {
                                c.received.fetch_add(1, Ordering::Relaxed);
                                if n > 2 && buf[2] & 0x02 != 0 {
                                    c.truncated.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    std::thread::sleep(tick);
                }
            })
            .expect("flood thread");
        Ok(UdpFlood {
            stop,
            thread: Some(thread),
            counters,
        })
    }

    pub fn figures(&self) -> UdpFigures {
        let c = &self.counters;
        UdpFigures {
            sent: c.sent.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
        }
    }

    /// Stops sending; the figures.
    pub fn stop(mut self) -> UdpFigures {
        self.shut();
        self.figures()
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UdpFlood {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A small deterministic generator (xorshift64*) for garbage payloads.
pub struct Garbage(u64);

impl Garbage {
    pub fn new(seed: u64) -> Garbage {
        Garbage(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` datagrams of garbage: random bytes of 1 to 300 bytes, random
    /// bytes behind a plausible DNS header (one question), answers (QR
    /// set) and headers cut short.
    pub fn datagrams(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let len = 1 + (self.next_u64() % 300) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| self.next_u64() as u8).collect();
                match i % 4 {
                    // A header that claims one question, then noise.
                    1 if d.len() >= 12 => {
                        d[2] = 0x01;
                        d[3] = 0x00;
                        d[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
                    }
                    // A "response" (QR set): must not be answered.
                    2 if d.len() >= 12 => d[2] |= 0x80,
                    // Shorter than a header.
                    3 => d.truncate(1 + i % 11),
                    _ => {}
                }
                d
            })
            .collect()
    }
}

/// A DNS query for `name`/`qtype` in wire format (RD clear, with or
/// without an EDNS OPT record).
pub fn dns_query(name: &str, qtype: hickory_proto::rr::RecordType, edns: bool) -> Vec<u8> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::Name;
    let mut m = Message::new(0x5a5a, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().expect("query encodes")
}
