//! Simulated Icecast relays: real HTTP servers on loopback that look like an
//! Icecast 2.4.4 relay to floe and to players, for `floe demo` and tests.
//!
//! A [`SimRelay`] serves:
//! - `/floe-slots.xsl` (the `xslt` status kind), `/status-json.xsl`
//!   (`icecast-json`) and `/admin/stats` with basic auth (`icecast-xml`), in
//!   the exact shapes the real server produces (rendered by the `pages`
//!   submodule);
//! - every configured mount as an endless, real-time WAV sine tone that
//!   players decode (the `tone` submodule), whatever the mount's extension;
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

mod mount;
mod pages;
mod server;
mod tone;

pub use tone::{SAMPLE_RATE, wav_header};

use crate::shutdown::Shutdown;
use mount::{Mount, lock};
use server::{accept_loop, base64, bind};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tone::Tone;

/// Time between a listener's request and its response (and count) when the
/// mount has room: the middle of the 0.2–0.5 s measured on Icecast 2.4.4.
pub const DEFAULT_ADMISSION_DELAY: Duration = Duration::from_millis(250);
/// Default cap on simultaneous connections (Icecast's `<clients>`).
pub const DEFAULT_MAX_CLIENTS: usize = 1000;

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
    life: Mutex<Option<Life>>,
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

    /// Counts `n` fewer fake listeners on `mount` (never below zero): fake
    /// listeners leaving. Returns `false` if the mount is unknown or has no
    /// source.
    pub fn remove_fake_listeners(&self, mount: &str, n: u32) -> bool {
        self.with_fake(mount, |fake| fake.saturating_sub(n))
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
        let listener = Arc::new(tokio::net::TcpListener::from_std(listener)?);
        let stop = Shutdown::new();
        *lock(&self.life) = Some(Life {
            stop: stop.clone(),
            listener: listener.clone(),
        });
        self.handle
            .spawn(accept_loop(self.shared.clone(), listener, stop));
        Ok(())
    }

    fn go_down(&self) {
        if let Some(life) = lock(&self.life).take() {
            // Stop listening now, not when the accept task next runs: a
            // connect right after set_down(true) is refused, and the port
            // can be bound again at once (Linux: shutdown on a listening
            // socket unhashes it).
            let _ = socket2::SockRef::from(&*life.listener).shutdown(std::net::Shutdown::Both);
            life.stop.trigger();
            for m in &self.shared.mounts {
                let mut s = m.lock();
                m.reset(&mut s);
            }
        }
    }
}

/// One period of serving, from `go_up` to `go_down`.
struct Life {
    /// Stops the accept loop and every connection.
    stop: Shutdown,
    /// The listening socket (shared with the accept loop).
    listener: Arc<tokio::net::TcpListener>,
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

#[cfg(test)]
mod tests;
