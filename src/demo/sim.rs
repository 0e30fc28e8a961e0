//! Simulated Icecast relays: real HTTP servers on loopback that look like an
//! Icecast 2.4.4 relay to floe and to players, for `floe demo` and tests.
//!
//! A [`SimRelay`] serves:
//! - `/floe-slots.xsl` (the `xslt` status kind), `/status-json.xsl`
//!   (`icecast-json`) and `/admin/stats` with basic auth (`icecast-xml`), in
//!   the exact shapes the real server produces (see [`pages`]);
//! - every configured mount as an endless, real-time WAV sine tone that
//!   players decode (see [`tone`]), whatever the mount's extension;
//! - Icecast's refusals, byte for byte: `403 max listeners reached` for a
//!   full mount; `404 Mount unavailable` to a listener arriving while earlier
//!   ones are still being admitted and together they would overfill it;
//!   `404 The file you requested could not be found` for a mount without
//!   source; `403 Icecast connection limit reached` on every URL when the
//!   server is full. Every answer is HTTP/1.0 with `Connection: Close`.
//!
//! A listener counts from the moment its response headers are sent (after
//! the admission delay, 0.2–0.5 s on a real relay) until its connection
//! closes. Controls ([`SimRelay::set_source`], [`SimRelay::set_down`],
//! [`SimRelay::add_fake_listeners`], …) change what the relay does at once,
//! and counters ([`SimRelay::counters`]) tell a test how many listeners were
//! refused, so "zero overfill" is an assertion.
//!
//! A `SimRelay` runs on the tokio runtime it was started in; dropping it
//! stops it. Memory is bounded: connections are capped
//! ([`SimRelayBuilder::max_clients`]), request heads are limited and timed
//! out, and a listener costs a small fixed struct (its audio is slices of
//! one shared second of tone).

mod pages;
mod tone;

pub use tone::{SAMPLE_RATE, wav_header};

use crate::shutdown::Shutdown;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tone::{StillListening, Tone, ToneBody};

/// Time between a listener's request and its response (and count) when the
/// mount has room: the middle of the 0.2–0.5 s measured on Icecast 2.4.4.
pub const DEFAULT_ADMISSION_DELAY: Duration = Duration::from_millis(250);
/// Default cap on simultaneous connections (Icecast's `<clients>`).
pub const DEFAULT_MAX_CLIENTS: usize = 1000;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper's minimum buffer is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The content type of every stream.
const STREAM_TYPE: &str = "audio/wav";

/// Configures a [`SimRelay`]; start it with [`SimRelayBuilder::start`].
#[derive(Debug, Clone)]
pub struct SimRelayBuilder {
    name: String,
    bind: SocketAddr,
    hostname: Option<String>,
    mounts: Vec<(String, Option<u32>)>,
    tone_hz: u32,
    admission_delay: Duration,
    admin: (String, String),
    max_clients: usize,
}

impl SimRelayBuilder {
    /// Address to listen on (default `127.0.0.1:0`: a port from the OS).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Icecast's `<hostname>`: the host in every `listenurl` (default: the
    /// bound IP address). Only the port of `listenurl` is the real one.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Adds a mount with a connected source and its `<max-listeners>`
    /// (`None`: unlimited). A path given twice keeps the last limit.
    pub fn mount(mut self, path: impl Into<String>, max_listeners: Option<u32>) -> Self {
        let path = path.into();
        self.mounts.retain(|(p, _)| *p != path);
        self.mounts.push((path, max_listeners));
        self
    }

    /// The pitch of this relay's tone (default 440 Hz), so a person can hear
    /// which relay a player landed on.
    pub fn tone_hz(mut self, hz: u32) -> Self {
        self.tone_hz = hz;
        self
    }

    /// Time from a listener's request to its response and count (default
    /// [`DEFAULT_ADMISSION_DELAY`]; zero admits at once). Listeners arriving
    /// meanwhile that would overfill the mount get `404 Mount unavailable`,
    /// as on Icecast.
    pub fn admission_delay(mut self, delay: Duration) -> Self {
        self.admission_delay = delay;
        self
    }

    /// Credentials of `/admin/stats` (default `admin` / `hackme`).
    pub fn admin(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.admin = (user.into(), password.into());
        self
    }

    /// Most simultaneous connections (default [`DEFAULT_MAX_CLIENTS`]); more
    /// get `403 Icecast connection limit reached`, status pages included.
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n;
        self
    }

    /// Binds the socket and starts serving on the current tokio runtime.
    /// Errors when called outside a runtime or when the bind fails.
    pub fn start(self) -> io::Result<SimRelay> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("SimRelay: {e}")))?;
        let listener = bind(self.bind)?;
        let addr = listener.local_addr()?;
        let now = SystemTime::now();
        let tone = Tone::new(self.tone_hz);
        let mut mounts: Vec<Arc<Mount>> = self
            .mounts
            .into_iter()
            .map(|(path, max)| Arc::new(Mount::new(path, max, tone.clone(), now)))
            .collect();
        mounts.sort_by(|a, b| a.path.cmp(&b.path));
        let shared = Arc::new(Shared {
            hostname: self.hostname.unwrap_or_else(|| addr.ip().to_string()),
            name: self.name,
            addr,
            started: now,
            mounts,
            admission_delay: self.admission_delay,
            admin_auth: format!(
                "Basic {}",
                base64(format!("{}:{}", self.admin.0, self.admin.1).as_bytes())
            ),
            max_clients: self.max_clients,
            clients: AtomicUsize::new(0),
            server_full: AtomicBool::new(false),
            not_found: AtomicU64::new(0),
            server_full_refusals: AtomicU64::new(0),
            status_requests: AtomicU64::new(0),
        });
        let relay = SimRelay {
            shared,
            handle,
            life: Mutex::new(None),
            stopped: AtomicBool::new(false),
        };
        relay.go_up(listener)?;
        Ok(relay)
    }
}

/// A simulated Icecast relay (see the module docs). Stops when dropped.
pub struct SimRelay {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    /// `Some` while serving: triggering it closes the listening socket and
    /// every connection.
    life: Mutex<Option<Shutdown>>,
    stopped: AtomicBool,
}

/// One mount's counts and limits at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStats {
    /// The mount path.
    pub path: String,
    /// A source is connected (the mount is listed and playable).
    pub present: bool,
    /// What the status pages say: `connected + fake`.
    pub listeners: u32,
    /// Listeners with an open connection.
    pub connected: u32,
    /// Listeners added by [`SimRelay::add_fake_listeners`].
    pub fake: u32,
    /// Listeners being admitted (not counted yet).
    pub admitting: u32,
    /// Highest `listeners` since the source connected.
    pub peak: u32,
    /// `<max-listeners>` (`None`: unlimited).
    pub max_listeners: Option<u32>,
    /// Listeners admitted (200 served) since start.
    pub admitted: u64,
    /// `403 max listeners reached` served since start.
    pub refused_full: u64,
    /// `404 Mount unavailable` (burst over the limit) served since start.
    pub refused_busy: u64,
}

/// Relay-wide counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Listeners admitted on every mount.
    pub admitted: u64,
    /// `403 max listeners reached`: a listener sent to a full mount.
    pub refused_full: u64,
    /// `404 Mount unavailable`: a listener that arrived during a burst that
    /// would have overfilled the mount.
    pub refused_busy: u64,
    /// `404` for a path that is no mount or a mount without source.
    pub not_found: u64,
    /// `403 Icecast connection limit reached` (server full).
    pub server_full: u64,
    /// Status page requests answered (any format, any outcome).
    pub status_requests: u64,
}

impl SimCounters {
    /// Listeners a balancer overfilled the relay with: `403` plus burst
    /// `404`. A balancer that never overfills keeps this at zero.
    pub fn overfill(&self) -> u64 {
        self.refused_full + self.refused_busy
    }
}

impl SimRelay {
    /// A builder for a relay named `name` (used in its status pages), with
    /// no mounts yet.
    pub fn builder(name: impl Into<String>) -> SimRelayBuilder {
        SimRelayBuilder {
            name: name.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: None,
            mounts: Vec::new(),
            tone_hz: 440,
            admission_delay: DEFAULT_ADMISSION_DELAY,
            admin: ("admin".into(), "hackme".into()),
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }

    /// The relay's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address it listens on (kept across [`SimRelay::set_down`]).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Its base URL, `http://IP:PORT`, as a floe `[[relay]] url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The URL of one mount.
    pub fn mount_url(&self, mount: &str) -> String {
        format!("{}{mount}", self.url())
    }

    /// The mount paths configured, sorted.
    pub fn mount_paths(&self) -> Vec<String> {
        self.shared.mounts.iter().map(|m| m.path.clone()).collect()
    }

    /// Connects (`on`) or disconnects a mount's source. Off: the mount
    /// disappears from every status page at once, its listeners are
    /// disconnected within one chunk (100 ms) and stop counting at once, and
    /// new listeners get 404. On: the mount is back with no listeners.
    /// Returns `false` for a mount that was never configured.
    pub fn set_source(&self, mount: &str, on: bool) -> bool {
        let Some(m) = self.shared.mount(mount) else {
            return false;
        };
        let mut s = m.lock();
        if on && !s.present {
            s.present = true;
            s.source_since = SystemTime::now();
            s.peak = 0;
        } else if !on && s.present {
            s.present = false;
            m.reset(&mut s);
        }
        true
    }

    /// Takes the relay down (`true`: the listening socket closes, so
    /// connections are refused, and every open connection is dropped, like
    /// a crashed server) or brings it back on the same address with no
    /// listeners (sources stay as they were). Errors if the address cannot
    /// be bound again or after [`SimRelay::stop`].
    pub fn set_down(&self, down: bool) -> io::Result<()> {
        if down {
            self.go_down();
            return Ok(());
        }
        if self.stopped.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!(
                "SimRelay {} is stopped",
                self.shared.name
            )));
        }
        if self.is_down() {
            self.go_up(bind(self.shared.addr)?)?;
        }
        Ok(())
    }

    /// True while the relay is down or stopped.
    pub fn is_down(&self) -> bool {
        lock(&self.life).is_none()
    }

    /// Makes the server full (`true`): every request, status pages
    /// included, gets `403 Icecast connection limit reached`, as when
    /// Icecast's global `<clients>` limit is reached.
    pub fn set_server_full(&self, full: bool) {
        self.shared.server_full.store(full, Ordering::SeqCst);
    }

    /// Counts `n` more listeners on `mount` without connections (they never
    /// disconnect on their own), to show a relay filling up. Ignores the
    /// limit, like listeners that were there before it was lowered. Returns
    /// `false` if the mount is unknown or has no source.
    pub fn add_fake_listeners(&self, mount: &str, n: u32) -> bool {
        self.with_fake(mount, |fake| fake.saturating_add(n))
    }

    /// Sets the number of fake listeners on `mount` (0 removes them all).
    pub fn set_fake_listeners(&self, mount: &str, n: u32) -> bool {
        self.with_fake(mount, |_| n)
    }

    fn with_fake(&self, mount: &str, f: impl FnOnce(u32) -> u32) -> bool {
        let Some(m) = self.shared.mount(mount) else {
            return false;
        };
        let mut s = m.lock();
        if !s.present {
            return false;
        }
        s.fake = f(s.fake);
        s.note_peak();
        true
    }

    /// Listeners on `mount` as the status pages report them (connected plus
    /// fake); 0 for an unknown mount or one without source.
    pub fn listeners(&self, mount: &str) -> u32 {
        self.shared.mount(mount).map_or(0, |m| m.lock().listeners())
    }

    /// Waits until `mount` has exactly `n` listeners or `timeout` passes;
    /// true if it got there.
    pub async fn wait_for_listeners(&self, mount: &str, n: u32, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.listeners(mount) == n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Counts and limits of one mount.
    pub fn mount(&self, mount: &str) -> Option<MountStats> {
        self.shared.mount(mount).map(|m| m.stats())
    }

    /// Counts and limits of every mount, sorted by path.
    pub fn mounts(&self) -> Vec<MountStats> {
        self.shared.mounts.iter().map(|m| m.stats()).collect()
    }

    /// Relay-wide counters.
    pub fn counters(&self) -> SimCounters {
        let mut c = SimCounters {
            not_found: self.shared.not_found.load(Ordering::Relaxed),
            server_full: self.shared.server_full_refusals.load(Ordering::Relaxed),
            status_requests: self.shared.status_requests.load(Ordering::Relaxed),
            ..SimCounters::default()
        };
        for m in &self.shared.mounts {
            let s = m.lock();
            c.admitted += s.admitted;
            c.refused_full += s.refused_full;
            c.refused_busy += s.refused_busy;
        }
        c
    }

    /// Stops the relay for good: like [`SimRelay::set_down`]`(true)`, but it
    /// cannot come back. Dropping the relay does the same.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.go_down();
    }

    fn go_up(&self, listener: std::net::TcpListener) -> io::Result<()> {
        let _enter = self.handle.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let life = Shutdown::new();
        *lock(&self.life) = Some(life.clone());
        self.handle
            .spawn(accept_loop(self.shared.clone(), listener, life));
        Ok(())
    }

    fn go_down(&self) {
        if let Some(life) = lock(&self.life).take() {
            life.trigger();
            for m in &self.shared.mounts {
                let mut s = m.lock();
                m.reset(&mut s);
            }
        }
    }
}

impl Drop for SimRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for SimRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRelay")
            .field("name", &self.shared.name)
            .field("addr", &self.shared.addr)
            .finish()
    }
}

/// State shared by the relay handle and its connection tasks.
struct Shared {
    name: String,
    hostname: String,
    addr: SocketAddr,
    started: SystemTime,
    /// Sorted by path.
    mounts: Vec<Arc<Mount>>,
    admission_delay: Duration,
    /// The expected `Authorization` header of `/admin/stats`.
    admin_auth: String,
    max_clients: usize,
    /// Open connections.
    clients: AtomicUsize,
    server_full: AtomicBool,
    not_found: AtomicU64,
    server_full_refusals: AtomicU64,
    status_requests: AtomicU64,
}

impl Shared {
    fn mount(&self, path: &str) -> Option<&Arc<Mount>> {
        self.mounts.iter().find(|m| m.path == path)
    }

    /// What the status pages show now.
    fn render<T>(&self, f: impl FnOnce(&pages::RelayView<'_>) -> T) -> T {
        let guards: Vec<_> = self.mounts.iter().map(|m| (m, m.lock())).collect();
        let view = pages::RelayView {
            name: &self.name,
            hostname: &self.hostname,
            port: self.addr.port(),
            started: self.started,
            mounts: guards
                .iter()
                .filter(|(_, s)| s.present)
                .map(|(m, s)| pages::MountView {
                    path: &m.path,
                    listeners: s.listeners(),
                    peak: s.peak,
                    max_listeners: m.max,
                    source_since: s.source_since,
                    hz: m.tone.hz(),
                })
                .collect(),
        };
        f(&view)
    }
}

/// One mount: its limit, its tone and its counts.
struct Mount {
    path: String,
    max: Option<u32>,
    tone: Tone,
    /// Bumped whenever the mount's listeners are dropped (source off, relay
    /// down): listeners and admissions of an older epoch no longer count.
    epoch: AtomicU64,
    state: Mutex<MountState>,
}

#[derive(Debug)]
struct MountState {
    present: bool,
    connected: u32,
    fake: u32,
    pending: u32,
    peak: u32,
    source_since: SystemTime,
    admitted: u64,
    refused_full: u64,
    refused_busy: u64,
}

impl MountState {
    fn listeners(&self) -> u32 {
        self.connected.saturating_add(self.fake)
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.listeners());
    }
}

impl Mount {
    fn new(path: String, max: Option<u32>, tone: Tone, now: SystemTime) -> Self {
        let state = MountState {
            present: true,
            connected: 0,
            fake: 0,
            pending: 0,
            peak: 0,
            source_since: now,
            admitted: 0,
            refused_full: 0,
            refused_busy: 0,
        };
        Mount {
            path,
            max,
            tone,
            epoch: AtomicU64::new(0),
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MountState> {
        lock(&self.state)
    }

    /// Drops every listener and admission (the caller holds the lock).
    fn reset(&self, s: &mut MountState) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        s.connected = 0;
        s.fake = 0;
        s.pending = 0;
    }

    fn stats(&self) -> MountStats {
        let s = self.lock();
        MountStats {
            path: self.path.clone(),
            present: s.present,
            listeners: s.listeners(),
            connected: s.connected,
            fake: s.fake,
            admitting: s.pending,
            peak: s.peak,
            max_listeners: self.max,
            admitted: s.admitted,
            refused_full: s.refused_full,
            refused_busy: s.refused_busy,
        }
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the
/// counts consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A counted listener: uncounted when dropped (its connection closed),
/// unless the mount was reset meanwhile.
struct ListenerGuard {
    mount: Arc<Mount>,
    epoch: u64,
}

impl StillListening for ListenerGuard {
    fn still_listening(&self) -> bool {
        self.mount.epoch.load(Ordering::SeqCst) == self.epoch
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        let mut s = self.mount.lock();
        if self.mount.epoch.load(Ordering::SeqCst) == self.epoch {
            s.connected = s.connected.saturating_sub(1);
        }
    }
}

/// A listener being admitted: uncounted from `pending` by
/// [`PendingGuard::settle`], or when dropped (the client gave up during the
/// admission delay).
struct PendingGuard {
    mount: Arc<Mount>,
    epoch: u64,
    settled: bool,
}

impl PendingGuard {
    /// Uncounts the admission under the caller's lock, so that it and the
    /// listener's count change together.
    fn settle(mut self, s: &mut MountState) {
        self.settled = true;
        if self.mount.epoch.load(Ordering::SeqCst) == self.epoch {
            s.pending = s.pending.saturating_sub(1);
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut s = self.mount.lock();
        if self.mount.epoch.load(Ordering::SeqCst) == self.epoch {
            s.pending = s.pending.saturating_sub(1);
        }
    }
}

/// Why a listener was not admitted.
enum Refusal {
    /// No source: `404 The file you requested could not be found`.
    NoSource,
    /// `403 max listeners reached`.
    Full,
    /// `404 Mount unavailable`: earlier listeners still being admitted.
    Busy,
}

/// Icecast's admission: refuse when full (403) or when the listeners being
/// admitted would overfill the mount (404), else wait the admission delay
/// and count the listener.
async fn admit(delay: Duration, mount: &Arc<Mount>) -> Result<ListenerGuard, Refusal> {
    let pending = {
        let mut s = mount.lock();
        if !s.present {
            return Err(Refusal::NoSource);
        }
        if let Some(max) = mount.max {
            if s.listeners() >= max {
                s.refused_full += 1;
                return Err(Refusal::Full);
            }
            if s.listeners().saturating_add(s.pending) >= max {
                s.refused_busy += 1;
                return Err(Refusal::Busy);
            }
        }
        if delay.is_zero() {
            return Ok(count_listener(mount, &mut s));
        }
        s.pending += 1;
        PendingGuard {
            mount: mount.clone(),
            epoch: mount.epoch.load(Ordering::SeqCst),
            settled: false,
        }
    };
    tokio::time::sleep(delay).await;
    let epoch = pending.epoch;
    let mut s = mount.lock();
    pending.settle(&mut s);
    if mount.epoch.load(Ordering::SeqCst) != epoch || !s.present {
        return Err(Refusal::NoSource);
    }
    if mount.max.is_some_and(|max| s.listeners() >= max) {
        // Fake listeners arrived meanwhile.
        s.refused_full += 1;
        return Err(Refusal::Full);
    }
    Ok(count_listener(mount, &mut s))
}

fn count_listener(mount: &Arc<Mount>, s: &mut MountState) -> ListenerGuard {
    s.connected += 1;
    s.admitted += 1;
    s.note_peak();
    ListenerGuard {
        mount: mount.clone(),
        epoch: mount.epoch.load(Ordering::SeqCst),
    }
}

/// One open connection, counted against `max_clients`.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Rebinding the same port after set_down(true) must not wait for
    // TIME_WAIT connections.
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("SimRelay bind {addr}: {e}")))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::TcpListener, life: Shutdown) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = life.wait() => return,
        };
        let _ = stream.set_nodelay(true);
        let open = shared.clients.fetch_add(1, Ordering::SeqCst) + 1;
        let client = ClientGuard(shared.clone());
        let over_limit = open > shared.max_clients;
        tokio::spawn(serve_connection(
            shared.clone(),
            stream,
            client,
            over_limit,
            life.clone(),
        ));
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    client: ClientGuard,
    over_limit: bool,
    life: Shutdown,
) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&shared, req, over_limit).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .title_case_headers(true)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = life.wait() => {}
    }
    drop(client);
}

/// Answers one request the way Icecast 2.4.4 would.
async fn respond(shared: &Shared, req: Request<Incoming>, over_limit: bool) -> Response<SimBody> {
    if over_limit || shared.server_full.load(Ordering::SeqCst) {
        shared.server_full_refusals.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::FORBIDDEN, "Icecast connection limit reached");
    }
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let path = req.uri().path();
    match path {
        "/floe-slots.xsl" => {
            shared.status_requests.fetch_add(1, Ordering::Relaxed);
            let body = shared.render(pages::floe_slots);
            return page("text/plain; charset=UTF-8", body);
        }
        "/status-json.xsl" => {
            shared.status_requests.fetch_add(1, Ordering::Relaxed);
            let body = shared.render(pages::status_json);
            return page("application/json; charset=UTF-8", body);
        }
        "/admin/stats" | "/admin/stats.xml" => {
            shared.status_requests.fetch_add(1, Ordering::Relaxed);
            let authorized = req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == shared.admin_auth.as_bytes());
            if !authorized {
                let mut resp = plain(StatusCode::UNAUTHORIZED, "You need to authenticate\r\n");
                resp.extensions_mut()
                    .insert(ReasonPhrase::from_static(b"Authentication Required"));
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Icecast2 Server\""),
                );
                return resp;
            }
            let clients = shared.clients.load(Ordering::Relaxed);
            let body = shared.render(|v| pages::admin_stats(v, clients));
            return page("text/xml", body);
        }
        _ => {}
    }
    let Some(mount) = shared.mount(path) else {
        shared.not_found.fetch_add(1, Ordering::Relaxed);
        return not_found("The file you requested could not be found");
    };
    if method == Method::HEAD {
        // Headers only; Icecast does not count a HEAD as a listener.
        return if mount.lock().present {
            stream_response(shared, mount, SimBody::empty())
        } else {
            shared.not_found.fetch_add(1, Ordering::Relaxed);
            not_found("The file you requested could not be found")
        };
    }
    match admit(shared.admission_delay, mount).await {
        Ok(guard) => stream_response(
            shared,
            mount,
            SimBody::tone(ToneBody::new(mount.tone.clone(), guard)),
        ),
        Err(Refusal::Full) => plain(StatusCode::FORBIDDEN, "max listeners reached"),
        Err(Refusal::Busy) => not_found("Mount unavailable"),
        Err(Refusal::NoSource) => {
            shared.not_found.fetch_add(1, Ordering::Relaxed);
            not_found("The file you requested could not be found")
        }
    }
}

/// Icecast's common response head: HTTP/1.0, `Connection: Close`, no caching.
fn icecast(status: StatusCode, content_type: &str, body: SimBody) -> Response<SimBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.version_mut() = Version::HTTP_10;
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static("Icecast 2.4.4"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Close"));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Mon, 26 Jul 1997 05:00:00 GMT"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A text error (Icecast sends these without `Content-Length`).
fn plain(status: StatusCode, body: &'static str) -> Response<SimBody> {
    icecast(
        status,
        "text/plain; charset=utf-8",
        SimBody::close_delimited(Bytes::from_static(body.as_bytes())),
    )
}

/// Icecast's HTML 404 with `what` as its message.
fn not_found(what: &str) -> Response<SimBody> {
    let html = format!(
        "<html><head><title>Error 404</title></head><body><b>404 - {what}</b></body></html>\r\n"
    );
    let mut resp = icecast(
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        SimBody::close_delimited(Bytes::from(html)),
    );
    resp.extensions_mut()
        .insert(ReasonPhrase::from_static(b"File Not Found"));
    resp
}

/// A status page (with `Content-Length`).
fn page(content_type: &str, body: String) -> Response<SimBody> {
    icecast(
        StatusCode::OK,
        content_type,
        SimBody::full(Bytes::from(body)),
    )
}

/// The `200 OK` head of a stream, with Icecast's `icy-*` headers.
fn stream_response(shared: &Shared, mount: &Mount, body: SimBody) -> Response<SimBody> {
    let mut resp = icecast(StatusCode::OK, STREAM_TYPE, body);
    let h = resp.headers_mut();
    let kbps = tone::Tone::kbps();
    let info = format!("ice-samplerate={SAMPLE_RATE};ice-bitrate={kbps};ice-channels=1");
    let name = format!("floe demo {} {}", shared.name, mount.path);
    let description = format!("sine tone {} Hz", mount.tone.hz());
    for (k, v) in [
        ("icy-br", kbps.to_string()),
        ("ice-audio-info", info),
        ("icy-description", description),
        ("icy-genre", "demo".to_string()),
        ("icy-name", name),
        ("icy-pub", "0".to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

/// Every response body of a simulated relay.
struct SimBody(BodyKind);

enum BodyKind {
    /// One buffer; `known` says whether to announce its length.
    Once { data: Option<Bytes>, known: bool },
    /// An endless stream.
    Tone(Box<ToneBody<ListenerGuard>>),
}

impl SimBody {
    fn empty() -> Self {
        SimBody(BodyKind::Once {
            data: None,
            known: true,
        })
    }

    fn full(data: Bytes) -> Self {
        SimBody(BodyKind::Once {
            data: Some(data),
            known: true,
        })
    }

    fn close_delimited(data: Bytes) -> Self {
        SimBody(BodyKind::Once {
            data: Some(data),
            known: false,
        })
    }

    fn tone(body: ToneBody<ListenerGuard>) -> Self {
        SimBody(BodyKind::Tone(Box::new(body)))
    }
}

impl hyper::body::Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            BodyKind::Once { data, .. } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BodyKind::Tone(t) => t.poll_chunk(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.0,
            BodyKind::Once {
                data: None,
                known: true
            }
        )
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Once { data, known: true } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            _ => SizeHint::default(),
        }
    }
}

/// Standard base64 with padding (for the basic-auth header).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
