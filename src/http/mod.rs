//! The HTTP front door: sockets, connections and limits.
//!
//! One worker thread per core (or `[http] workers`), each with its own
//! current-thread tokio runtime and its own `SO_REUSEPORT` socket per listen
//! address, so the kernel spreads connections and no state is shared
//! between workers but the published snapshots. What to answer is decided in
//! [`routes`]; this module only moves bytes and enforces limits: header read
//! timeout (which also bounds idle keep-alive), header size, connections
//! per worker.
//!
//! The kernel hands a listener's connection over only once its first
//! bytes arrived, or a second after its handshake when none came
//! ([`DEFER_ACCEPT_SECS`], `TCP_DEFER_ACCEPT`): every door's client speaks
//! first, so the request is nearly always there at accept. A plain
//! connection from an untrusted peer starts on the fast path ([`fast`]):
//! the accept loop accepts the queued connections, then reads each once
//! and answers a plain `GET /<mount>` itself (no task, no registration
//! with the poller: accept, read, write, close); a connection whose
//! request is not there yet, or that stays open, gets a task that goes on
//! the same way; the first request the fast path does not take goes to
//! hyper, which reads the bytes already read first (`rewind.rs`). The
//! header timeout and the per-client cap count from the hand-over.
//!
//! On a TLS listener (`[http] tls_listen`) the handshake (certificates of
//! the current config, see [`crate::tls`]) is held to the same deadline as
//! the first request head, then hyper-util's auto builder serves HTTP/2 or
//! HTTP/1.1 as ALPN says; requests carry [`OverTls`], so routes send them
//! to relays' `https_url`. HTTP/2 has no header timeout in hyper, so a TLS
//! connection with no request for `header_timeout` is closed here (GOAWAY).
//!
//! Who the client is: the connection's peer; on a PROXY protocol listener
//! (`[http] proxy_protocol_listen`, see [`proxy`]) the source its header
//! names, from a peer in `trusted_proxies` only (others are closed at
//! once); and per request, `X-Forwarded-For` when the peer (after PROXY)
//! is a trusted proxy (see [`forwarded`]). That client is what the listener
//! pool, the grant budget and `diagnostics_from` judge. The per-client
//! connection cap counts the connection's client (the PROXY source, known
//! at connection start); trusted proxies themselves are not capped (one
//! balancer carries many clients).

pub mod cors;
pub mod fast;
pub mod forwarded;
pub mod pages;
mod playlist;
pub mod proxy;
mod rewind;
pub mod routes;
pub mod status_page;

use crate::challenges::Challenges;
use crate::clients::{ClientBudgets, ClientConnections, OpenConnection, in_networks};
use crate::config::Config;
use crate::history::History;
use crate::metrics::{Metrics, ProxyRefusal};
use crate::shutdown::Shutdown;
use crate::snapshot::Snapshots;
use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::Socket;
use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;

/// Longest time in-flight requests get to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound HTTP sockets, ready to serve.
pub struct HttpServer {
    /// The addresses actually bound (port 0 resolved), one per `listen`.
    pub addrs: Vec<SocketAddr>,
    /// The PROXY protocol listeners actually bound, one per
    /// `proxy_protocol_listen`.
    pub proxy_addrs: Vec<SocketAddr>,
    /// The TLS listeners actually bound, one per `tls_listen`.
    pub tls_addrs: Vec<SocketAddr>,
    /// `sockets[w]`: worker w's socket for each address.
    sockets: Vec<Vec<(StdListener, Door)>>,
}

/// What a listener expects a connection to start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// HTTP.
    Plain,
    /// A PROXY protocol header (v1 or v2), then HTTP.
    Proxy,
    /// A TLS handshake, then HTTP/2 or HTTP/1.1 (ALPN).
    Tls,
}

impl HttpServer {
    /// Binds `workers` `SO_REUSEPORT` sockets on each address of `listen`,
    /// `proxy_listen` and `tls_listen` (0 workers = one per core). Port 0
    /// is resolved once, so every worker shares the port.
    pub fn bind(
        listen: &[SocketAddr],
        proxy_listen: &[SocketAddr],
        tls_listen: &[SocketAddr],
        workers: usize,
    ) -> io::Result<HttpServer> {
        let workers = if workers == 0 {
            available_cores()
        } else {
            workers
        };
        let (mut addrs, mut proxy_addrs, mut tls_addrs) = (Vec::new(), Vec::new(), Vec::new());
        let mut sockets: Vec<Vec<(StdListener, Door)>> = (0..workers).map(|_| Vec::new()).collect();
        let doors = (listen.iter().map(|&a| (a, Door::Plain)))
            .chain(proxy_listen.iter().map(|&a| (a, Door::Proxy)))
            .chain(tls_listen.iter().map(|&a| (a, Door::Tls)));
        for (addr, door) in doors {
            refuse_taken_port(addr)?;
            let mut actual = addr;
            for per_worker in sockets.iter_mut() {
                let l = reuseport_listener(actual)?;
                actual = l.local_addr()?;
                per_worker.push((l, door));
            }
            match door {
                Door::Plain => addrs.push(actual),
                Door::Proxy => proxy_addrs.push(actual),
                Door::Tls => tls_addrs.push(actual),
            }
        }
        Ok(HttpServer {
            addrs,
            proxy_addrs,
            tls_addrs,
            sockets,
        })
    }

    /// Starts the worker threads, answering from `shared`. They serve until
    /// `shutdown`, then stop accepting, let in-flight requests finish (up to
    /// [`DRAIN_TIMEOUT`]) and exit.
    /// Fails when a worker's runtime or thread cannot be made (then the
    /// workers already started stop with `shutdown`).
    pub fn spawn(self, shared: Arc<Shared>, shutdown: Shutdown) -> io::Result<Vec<JoinHandle<()>>> {
        let n = self.sockets.len();
        let mut threads = Vec::with_capacity(n);
        for (w, sockets) in self.sockets.into_iter().enumerate() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("floe-http-{w}"))
                    .spawn(move || worker(w, rt, sockets, shared, shutdown))?,
            );
        }
        Ok(threads)
    }
}

/// What every HTTP worker answers from and counts into.
#[derive(Debug)]
pub struct Shared {
    /// The published snapshots.
    pub snapshots: Arc<Snapshots>,
    /// Redirect counters, and `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The status page's charts.
    pub history: Arc<History>,
    /// Every client's budget of grants (one table for all workers).
    pub clients: ClientBudgets,
    /// The diagnostic pages' last renderings.
    pub pages: pages::PageCache,
    /// Connections open per client (one table for all workers).
    pub connections: Arc<ClientConnections>,
    /// Connection slots of all workers together (`[http] max_connections`,
    /// read at start): a busy worker takes from the same pool as idle
    /// ones instead of refusing while they idle.
    pub slots: Arc<Semaphore>,
    /// How many `slots` there are.
    pub slot_count: usize,
    /// The ACME challenges live now (`/.well-known/acme-challenge/`).
    pub challenges: Arc<Challenges>,
    /// The certificates floe obtained itself, served on `tls_listen`
    /// beside the config's.
    pub obtained: Arc<crate::tls::Obtained>,
    /// TLS session tickets and cache of every TLS listener's config, kept
    /// across reloads (see [`crate::tls::Resumption`]).
    pub tls_resumption: crate::tls::Resumption,
}

impl Shared {
    /// What the workers share, with empty client tables and page cache and
    /// `max_connections` connection slots (at least one).
    pub fn new(
        snapshots: Arc<Snapshots>,
        metrics: Arc<Metrics>,
        history: Arc<History>,
        max_connections: usize,
    ) -> Shared {
        let slot_count = max_connections.max(1);
        Shared {
            snapshots,
            metrics,
            history,
            clients: ClientBudgets::new(CLIENT_SLOTS, std::time::Instant::now()),
            pages: pages::PageCache::default(),
            connections: ClientConnections::new(CLIENT_SLOTS),
            slots: Arc::new(Semaphore::new(slot_count)),
            slot_count,
            challenges: Challenges::new(),
            obtained: Arc::default(),
            tls_resumption: crate::tls::Resumption::new().unwrap_or_else(|e| {
                tracing::error!("TLS session tickets: {e}; sessions resume from a cache only");
                crate::tls::Resumption::without_tickets()
            }),
        }
    }

    /// Answers the ACME client's `challenges` and serves the certificates
    /// it `obtained` (else none are live and none obtained).
    pub fn with_acme(
        mut self,
        challenges: Arc<Challenges>,
        obtained: Arc<crate::tls::Obtained>,
    ) -> Shared {
        self.challenges = challenges;
        self.obtained = obtained;
        self
    }

    /// HTTP connections open now, over every worker (each accept loop
    /// waiting for a connection holds a slot too).
    pub fn open_connections(&self) -> usize {
        self.slot_count
            .saturating_sub(self.slots.available_permits())
    }
}

/// Slots of the client budget table: 65,536 x 8 bytes, whatever the number
/// of clients (see [`crate::clients`]).
pub const CLIENT_SLOTS: usize = 1 << 16;

/// The number of cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Fails if another socket already holds `addr`. SO_REUSEPORT would
/// otherwise let a second floe (same user) silently share the port with the
/// first; a plain socket's bind still sees the port as taken.
pub(crate) fn refuse_taken_port(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    StdListener::bind(addr)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("HTTP bind {addr}: {e}")))
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<StdListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    defer_accept(&socket)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("HTTP bind {addr}: {e}")))?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The accept queue of each listener socket, which is also the most
/// connections the kernel holds for it while they wait for their first
/// byte ([`defer_accept`]).
const LISTEN_BACKLOG: i32 = 1024;

/// How long, in seconds, the kernel holds a connection that has sent
/// nothing before it hands it to floe anyway (`TCP_DEFER_ACCEPT`; 1 s is
/// one SYN-ACK retransmission, the least there is, as nginx's `deferred`).
pub const DEFER_ACCEPT_SECS: u32 = 1;

/// Has the kernel hand floe a connection only once its first bytes have
/// arrived, or [`DEFER_ACCEPT_SECS`] after its handshake when none came
/// (Linux `TCP_DEFER_ACCEPT`): every door's client speaks first, so the
/// fast path's one read then almost always finds the request, instead of
/// half or more of the connections taking a task, a registration with
/// the poller and a second read because the request was a few
/// microseconds behind the handshake. Until then the connection is a
/// request socket in the listener's SYN queue (a few hundred bytes of
/// kernel memory; no file, slot, task or per-client count in floe). When
/// that queue is full the kernel answers with SYN cookies, whose
/// connections are handed over at once, not deferred (see
/// docs/operations.md, "Connections the kernel holds").
#[cfg(any(target_os = "linux", target_os = "android"))]
fn defer_accept(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = DEFER_ACCEPT_SECS as libc::c_int;
    // SAFETY: a valid socket and a c_int option value of the stated size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere connections are handed over at once.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn defer_accept(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

thread_local! {
    /// The selection RNG of this worker thread.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// Runs `f` with this thread's selection RNG.
pub(crate) fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

fn worker(
    w: usize,
    rt: tokio::runtime::Runtime,
    sockets: Vec<(StdListener, Door)>,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    let config = shared.snapshots.load().topology.config.clone();
    if let Some(seed) = config.select.seed {
        RNG.with(|r| *r.borrow_mut() = SmallRng::seed_from_u64(seed.wrapping_add(w as u64)));
    }
    rt.block_on(async move {
        let mut accepts = Vec::new();
        for (s, door) in sockets {
            // SAFETY: the socket owns its descriptor: it stays open, and
            // the same, for as long as the `AsyncFd` holds the socket.
            let listener = unsafe {
                AsyncFd::register_with_interest(Socket::from(s), tokio::io::Interest::READABLE)
            };
            let listener = match listener.map_err(io::Error::from) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("HTTP worker {w}: {e}");
                    continue;
                }
            };
            accepts.push(tokio::spawn(accept_loop(
                listener,
                door,
                shared.clone(),
                shutdown.clone(),
            )));
        }
        for a in accepts {
            let _ = a.await;
        }
        // Wait for connections to finish (every slot back), up to the bound.
        let all = config.http.max_connections.max(1) as u32;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, shared.slots.acquire_many(all)).await;
    });
}

/// Accepts a connection on `listener` (non-blocking, so the fast path can
/// read and answer it before it is registered with the runtime, if ever),
/// calling `idle` each time the queue is found empty, before waiting.
async fn accept(
    listener: &AsyncFd<Socket>,
    mut idle: impl FnMut(),
) -> io::Result<(Socket, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        match ready.try_io(|l| l.get_ref().accept4(ACCEPT_FLAGS)) {
            Ok(r) => {
                let (socket, peer) = r?;
                return Ok((socket, ip_peer(&peer)?));
            }
            Err(_would_block) => idle(),
        }
    }
}

/// The IP address and port of an accepted connection's peer.
fn ip_peer(peer: &socket2::SockAddr) -> io::Result<SocketAddr> {
    peer.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "accepted a non-IP socket"))
}

async fn accept_loop(
    listener: AsyncFd<Socket>,
    door: Door,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    // The connection builder follows the config (rebuilt only when a reload
    // swapped it), so per-connection setup copies no settings.
    let config = shared.snapshots.load().topology.config.clone();
    let mut spawner = Spawner {
        builder: Arc::new(Builders::new(&config.http, door, &shared)),
        config,
        bound: (listener.get_ref().local_addr().ok())
            .and_then(|a| a.as_socket())
            .filter(|a| !a.ip().is_unspecified()),
        door,
        shared,
        shutdown,
    };
    let (shared, shutdown) = (spawner.shared.clone(), spawner.shutdown.clone());
    // Fast connections accepted, not read yet.
    let mut waiting: Vec<Waiting> = Vec::with_capacity(MAX_WAITING);
    loop {
        // Waiting connections hold slots: serve them before waiting for one.
        let permit = match shared.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                spawner.serve_waiting(&mut waiting);
                tokio::select! {
                    p = shared.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = shutdown.wait() => return,
                }
            }
        };
        // The loop awaits nothing while connections are queued: let the
        // worker's other tasks run now and then.
        tokio::task::coop::consume_budget().await;
        // Accept while connections are queued; once none is, serve the fast
        // ones accepted (their requests have had the time of the batch to
        // come), then wait.
        let accepted = tokio::select! {
            r = accept(&listener, || spawner.serve_waiting(&mut waiting)) => r,
            _ = shutdown.wait() => return,
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("HTTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let current = &shared.snapshots.load().topology.config;
        if !Arc::ptr_eq(current, &spawner.config) {
            spawner.config = current.clone();
            spawner.builder = Arc::new(Builders::new(&spawner.config.http, door, &shared));
        }
        let config = &spawner.config;
        // The per-client cap of a plain connection is known now; a PROXY
        // connection's client is known once its header is read.
        let open = match door {
            Door::Plain | Door::Tls => match open_for(&shared, config, peer.ip()) {
                Ok(open) => open,
                Err(AtCap) => continue,
            },
            Door::Proxy if !in_networks(&config.http.trusted_proxies, peer.ip()) => {
                tracing::debug!(%peer, "HTTP: PROXY listener, peer not in trusted_proxies; closing");
                shared.metrics.proxy_refused(ProxyRefusal::Untrusted);
                continue;
            }
            Door::Proxy => None,
        };
        let conn = Waiting {
            socket,
            peer,
            open,
            permit,
        };
        if door != Door::Plain || conn.open.is_none() {
            spawner.spawn(conn, None);
            continue;
        }
        // A plain connection's request is usually there once the queued
        // connections are accepted: read it then and answer it if the fast
        // path can, without a task or the poller (a `Connection: close`
        // client then costs accept, read, write, close).
        waiting.push(conn);
        if waiting.len() == MAX_WAITING {
            spawner.serve_waiting(&mut waiting);
        }
    }
}

/// `accept4` flags: accepted sockets are non-blocking (the fast path reads
/// them at once) and not inherited by child processes.
const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

/// Most fast connections an accept loop accepts before it reads them (it
/// reads them when the accept queue is empty, or when it has so many).
const MAX_WAITING: usize = 64;

/// An accepted connection not yet served: its socket, client and slots.
struct Waiting {
    socket: Socket,
    peer: SocketAddr,
    /// Its slot in the per-client table (see [`Conn::open`]).
    open: Option<OpenConnection>,
    /// Its slot of `[http] max_connections`.
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// The fast path's first read and answer on a just accepted connection.
fn fast_first(shared: &Shared, conn: &Waiting) -> First {
    let socket = &conn.socket;
    fast_step(
        shared,
        conn.peer,
        |b| (&*socket).read(b),
        |b, last| send(socket, b, last),
    )
}

/// What an accept loop starts connections with.
struct Spawner {
    shared: Arc<Shared>,
    shutdown: Shutdown,
    /// The config the builders were made from.
    config: Arc<Config>,
    builder: Arc<Builders>,
    /// See [`Conn::local`].
    bound: Option<SocketAddr>,
    door: Door,
}

impl Spawner {
    /// Reads the `waiting` fast connections, each then as
    /// [`Spawner::finish`].
    fn serve_waiting(&self, waiting: &mut Vec<Waiting>) {
        for conn in waiting.drain(..) {
            let first = fast_first(&self.shared, &conn);
            self.finish(conn, first);
        }
    }

    /// Closes a fast connection the fast path is done with, or gives it a
    /// task from where `first` left it.
    fn finish(&self, conn: Waiting, first: First) {
        match first {
            First::Done => {}
            First::Answered {
                ref unwritten,
                close: true,
            } if unwritten.is_empty() => {}
            first => self.spawn(conn, Some(first)),
        }
    }

    /// Gives `conn` a task: the fast path from `fast` (fast connections),
    /// else hyper.
    fn spawn(&self, conn: Waiting, fast: Option<First>) {
        let Waiting {
            socket,
            peer,
            open,
            permit,
        } = conn;
        let stream = match tokio::net::TcpStream::from_std(socket.into()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("HTTP connection: {e}");
                return;
            }
        };
        let config = self.config.clone();
        // TCP_NODELAY comes from the listener (accepted sockets inherit it).
        let limits = Lifetime {
            head: config.http.header_timeout,
            age: config.http.max_connection_age,
            write: config.http.write_timeout,
        };
        let (shared, shutdown) = (self.shared.clone(), self.shutdown.clone());
        let builder = self.builder.clone();
        let conn = Conn {
            stream,
            peer,
            local: self.bound,
            door: self.door,
            open,
            fast,
        };
        tokio::spawn(async move {
            serve_connection(conn, shared, &config, &builder, limits, shutdown).await;
            drop(permit);
        });
    }
}

/// A client at its connection cap (`[http] max_connections_per_client`).
#[derive(Debug)]
struct AtCap;

/// The connection slot of a connection from `client` in the per-client
/// table: `None` for a trusted proxy (it carries many clients, so is not
/// capped as one), `AtCap` when the client has its most connections open.
fn open_for(
    shared: &Arc<Shared>,
    config: &Config,
    client: IpAddr,
) -> Result<Option<OpenConnection>, AtCap> {
    if in_networks(&config.http.trusted_proxies, client) {
        return Ok(None);
    }
    let select = &config.select;
    let prefix = ClientBudgets::prefix(client, select.client_prefix_v4, select.client_prefix_v6);
    match shared
        .connections
        .open(prefix, config.http.max_connections_per_client)
    {
        Some(open) => Ok(Some(open)),
        None => {
            tracing::debug!(%client, "HTTP: client at its connection cap; closing");
            Err(AtCap)
        }
    }
}

/// An accepted connection.
struct Conn {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    /// The listener's address when it is bound to one address (then every
    /// connection's local address): saves a `getsockname` per connection.
    /// `None` for a wildcard listener.
    local: Option<SocketAddr>,
    door: Door,
    /// Its slot in the per-client table (plain connections from untrusted
    /// peers; PROXY connections take theirs after the header).
    open: Option<OpenConnection>,
    /// Plain connections from untrusted peers, which the fast path serves
    /// until a request needs hyper: what the first read came to.
    fast: Option<First>,
}

/// What one read of a connection on the fast path came to.
#[derive(Debug)]
enum First {
    /// Close the connection: answered and asked to close, or the client
    /// left or failed.
    Done,
    /// Nothing to read yet.
    Nothing,
    /// Not a fast request: hyper must read these bytes first.
    Hyper(Bytes),
    /// Answered: the part of the answer the socket did not take yet
    /// (usually none), and whether to close after it.
    Answered { unwritten: Bytes, close: bool },
}

thread_local! {
    /// This worker's buffer for fast answers.
    static ANSWER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Sends `bytes` on `socket` without waiting; when they are the `last` the
/// connection sends, they wait for its close (`MSG_MORE`) so that they and
/// the FIN leave in one segment.
fn send(socket: &Socket, bytes: &[u8], last: bool) -> io::Result<usize> {
    let more = if last { libc::MSG_MORE } else { 0 };
    socket.send_with_flags(bytes, libc::MSG_NOSIGNAL | more)
}

/// One read of a connection from `peer` and, when it is a fast request
/// ([`fast::parse`]) for a mount, its answer, written without waiting.
/// `read` and `write` are the socket's non-blocking calls (`write` is told
/// whether the connection closes after these bytes).
fn fast_step(
    shared: &Shared,
    peer: SocketAddr,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    write: impl FnOnce(&[u8], bool) -> io::Result<usize>,
) -> First {
    let mut buf = [0u8; fast::MAX_HEAD];
    let head = match read(&mut buf) {
        Ok(0) => return First::Done,
        Ok(n) => &buf[..n],
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return First::Nothing;
        }
        Err(_) => return First::Done,
    };
    let Some(req) = fast::parse(head) else {
        return First::Hyper(Bytes::copy_from_slice(head));
    };
    let snap = shared.snapshots.load();
    ANSWER.with(|out| {
        let mut out = out.borrow_mut();
        if !fast::answer(&snap, shared, &req, peer, &mut out) {
            return First::Hyper(Bytes::copy_from_slice(head));
        }
        let written = match write(&out, req.close) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => return First::Done,
        };
        First::Answered {
            unwritten: Bytes::copy_from_slice(&out[written..]),
            close: req.close,
        }
    })
}

/// Serves fast requests on `stream` (starting from `first`) until one
/// needs hyper: then the bytes read and when the wait for that request's
/// head began; `None` when the connection is done (closed, idle past
/// `header_timeout`, older than `max_connection_age`, shutdown).
async fn fast_loop(
    stream: &mut tokio::net::TcpStream,
    shared: &Shared,
    peer: SocketAddr,
    mut first: First,
    limits: Lifetime,
    accepted: tokio::time::Instant,
    shutdown: &Shutdown,
) -> Option<(Bytes, tokio::time::Instant)> {
    let age_due = accepted + limits.age;
    // When the wait for the current request head began.
    let mut since = accepted;
    // One timer and one shutdown wait for the whole connection, not one
    // per request (a later deadline only moves the timer's expiry).
    let deadline = tokio::time::sleep_until((since + limits.head).min(age_due));
    let stop = shutdown.wait();
    tokio::pin!(deadline, stop);
    loop {
        match first {
            First::Done => return None,
            First::Hyper(pre) => return Some((pre, since)),
            First::Nothing => {}
            First::Answered { unwritten, close } => {
                if !unwritten.is_empty() {
                    let wrote = tokio::time::timeout(limits.write, stream.write_all(&unwritten));
                    if !matches!(wrote.await, Ok(Ok(()))) {
                        return None;
                    }
                }
                since = tokio::time::Instant::now();
                if close || since >= age_due {
                    return None;
                }
            }
        }
        let due = (since + limits.head).min(age_due);
        if deadline.deadline() != due {
            deadline.as_mut().reset(due);
        }
        tokio::select! {
            biased;
            r = stream.readable() => if r.is_err() {
                return None;
            },
            _ = &mut deadline => return None,
            _ = &mut stop => return None,
        }
        let s = &*stream;
        first = fast_step(
            shared,
            peer,
            |b| s.try_read(b),
            |b, last| {
                // A partial write (rare) is finished by `write_all` above, which
                // also pushes out what `MSG_MORE` held back.
                s.try_io(tokio::io::Interest::WRITABLE, || {
                    send(&socket2::SockRef::from(s), b, last)
                })
            },
        );
    }
}

/// The metric reason of a PROXY header refusal.
fn refusal(e: proxy::HeaderError) -> ProxyRefusal {
    match e {
        proxy::HeaderError::Missing => ProxyRefusal::Missing,
        proxy::HeaderError::Malformed => ProxyRefusal::Malformed,
        proxy::HeaderError::TooLong => ProxyRefusal::TooLong,
        proxy::HeaderError::Closed => ProxyRefusal::Closed,
    }
}

/// hyper's HTTP/1 settings from `[http]`: header read timeout (which also
/// bounds idle keep-alive), header size, keep-alive on.
fn connection_builder(http: &crate::config::HttpConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        .max_buf_size(http.max_header_bytes.max(8192))
        .keep_alive(true);
    b
}

/// Most HTTP/2 streams (requests) open at once on one connection: a player
/// asks one thing at a time; this bounds what one connection can make floe
/// hold.
pub const H2_MAX_STREAMS: u32 = 16;

/// The auto (HTTP/2 or HTTP/1.1, as ALPN or the preface says) builder of a
/// TLS connection: HTTP/1 as [`connection_builder`], HTTP/2 with a bounded
/// header list and [`H2_MAX_STREAMS`].
fn auto_builder(http: &crate::config::HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        .max_buf_size(http.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(http.max_header_bytes.max(8192) as u32);
    b
}

/// What a listener's connections are served with, rebuilt when a reload
/// swaps the config (new certificates included).
struct Builders {
    /// Plain and PROXY connections.
    h1: http1::Builder,
    /// TLS connections: the handshake (certificates of the config) and the
    /// HTTP/2-or-1 builder. `None` on other listeners, or when the
    /// certificates make no rustls config (then TLS connections are closed).
    tls: Option<(tokio_rustls::TlsAcceptor, auto::Builder<TokioExecutor>)>,
}

impl Builders {
    fn new(http: &crate::config::HttpConfig, door: Door, shared: &Shared) -> Builders {
        let tls = (door == Door::Tls)
            .then(|| {
                crate::tls::server_config(
                    http.tls_certificates.clone(),
                    shared.obtained.clone(),
                    &shared.tls_resumption,
                )
            })
            .and_then(|r| {
                r.map_err(|e| tracing::error!("HTTP TLS listener: {e}"))
                    .ok()
            })
            .map(|c| (tokio_rustls::TlsAcceptor::from(c), auto_builder(http)));
        Builders {
            h1: connection_builder(http),
            tls,
        }
    }
}

/// Marks a request that came over TLS (a request extension routes read).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// How long one connection may live, and how long a write may stall.
#[derive(Debug, Clone, Copy)]
struct Lifetime {
    /// The first request's head must be complete this long after the
    /// connection was accepted (later ones: hyper's header read timeout,
    /// the same duration).
    head: Duration,
    /// After this long the connection is closed once its request in flight
    /// (if any) is answered, and at most [`DRAIN_TIMEOUT`] later anyway.
    age: Duration,
    /// A response the client does not read for this long ends the
    /// connection.
    write: Duration,
}

async fn serve_connection(
    conn: Conn,
    shared: Arc<Shared>,
    config: &Config,
    builders: &Builders,
    limits: Lifetime,
    shutdown: Shutdown,
) {
    let Conn {
        mut stream,
        peer,
        local,
        door,
        mut open,
        fast,
    } = conn;
    let accepted = tokio::time::Instant::now();
    // The PROXY header and the first request head are due by the same
    // deadline.
    let mut first_head_due = accepted + limits.head;
    // The client: the peer, or the source a PROXY header names.
    let mut request_started = false;
    let client = match door {
        Door::Plain | Door::Tls => peer,
        Door::Proxy => {
            let header = tokio::select! {
                r = tokio::time::timeout_at(first_head_due, proxy::read_header(&mut stream)) => r,
                _ = shutdown.wait() => return,
            };
            let header = match header {
                Ok(Ok((h, more))) => {
                    request_started = more;
                    h
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "HTTP: {e}; closing");
                    shared.metrics.proxy_refused(refusal(e));
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "HTTP: no whole PROXY header in time; closing");
                    shared.metrics.proxy_refused(ProxyRefusal::Timeout);
                    return;
                }
            };
            let client = header.client(peer);
            match open_for(&shared, config, client.ip()) {
                Ok(o) => open = o,
                Err(AtCap) => return,
            }
            client
        }
    };
    let _open = open;
    // hyper allocates 16 KiB of buffers for a connection as soon as it
    // starts on it (its write buffer at once, its read buffer at the first
    // read): start it only once the client has sent something, so that a
    // connection that sends nothing costs its socket and this task only
    // (thousands of idle connections held 16 KiB each, see
    // docs/robustness.md, "Floods and soak"). A peek, not `readable()`:
    // tokio marks an accepted stream readable before any byte arrives.
    // (A PROXY header usually comes in one segment with the request: then
    // its first byte is known to be there.)
    let mut first = [0u8; 1];
    let mut pre = Bytes::new();
    if let Some(fast) = fast {
        // The fast path reads instead (a read holds no buffer while it
        // waits: an idle connection still costs its socket and task only).
        let started = fast_loop(
            &mut stream,
            &shared,
            peer,
            fast,
            limits,
            accepted,
            &shutdown,
        );
        let Some((read, since)) = started.await else {
            return;
        };
        pre = read;
        first_head_due = since + limits.head;
    } else if !request_started {
        tokio::select! {
            r = tokio::time::timeout_at(first_head_due, stream.peek(&mut first)) => {
                if !matches!(r, Ok(Ok(_))) {
                    return;
                }
            }
            _ = shutdown.wait() => return,
        }
    }
    let local = local.or_else(|| stream.local_addr().ok());
    let mut stream = tokio_io_timeout::TimeoutStream::new(rewind::Rewind::new(pre, stream));
    stream.set_write_timeout(Some(limits.write));
    // When hyper last read a whole request head: milliseconds since the
    // connection was accepted, plus one (0: none yet). Only TLS connections
    // (HTTP/2 has no header timeout of its own to end idle connections)
    // read the clock for it; the others store 1.
    let asked = Arc::new(AtomicU64::new(0));
    let over_tls = door == Door::Tls;
    let service = {
        let asked = asked.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let at = if over_tls {
                accepted.elapsed().as_millis() as u64 + 1
            } else {
                1
            };
            asked.store(at, Ordering::Relaxed);
            if over_tls {
                req.extensions_mut().insert(OverTls);
            }
            let client = {
                let snap = shared.snapshots.load();
                let trusted = &snap.config().http.trusted_proxies;
                let ip = forwarded::client(req.headers(), client.ip(), trusted);
                if ip == client.ip() {
                    client
                } else {
                    SocketAddr::new(ip, 0)
                }
            };
            let shared = shared.clone();
            async move {
                let resp = routes::respond_waiting(&shared, &req, local, client).await;
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let timing = Timing {
        peer,
        accepted,
        first_head_due,
        age_due: accepted + limits.age,
        asked,
        idle: over_tls.then_some(limits.head),
    };
    match (door, &builders.tls) {
        // A TLS listener without a rustls config (logged when it was
        // built) never falls back to plain HTTP.
        (Door::Tls, None) => {}
        (_, None) => {
            let conn = builders
                .h1
                .serve_connection(TokioIo::new(Box::pin(stream)), service);
            drive(conn, |c| c.graceful_shutdown(), timing, shutdown).await;
        }
        (_, Some((acceptor, auto))) => {
            // Boxed: the handshake and HTTP/2 states are large, and every
            // plain connection's task would otherwise be as large as them.
            Box::pin(serve_tls(
                Box::pin(stream),
                acceptor,
                auto,
                service,
                timing,
                shutdown,
            ))
            .await;
        }
    }
}

/// A TLS connection: the handshake, held to the first head's deadline, then
/// HTTP/2 or HTTP/1.1 as ALPN says.
async fn serve_tls<S, F>(
    stream: std::pin::Pin<Box<S>>,
    acceptor: &tokio_rustls::TlsAcceptor,
    auto: &auto::Builder<TokioExecutor>,
    service: F,
    timing: Timing,
    shutdown: Shutdown,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + ?Sized,
    std::pin::Pin<Box<S>>: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<http_body_util::Full<bytes::Bytes>>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    F::Future: Send + 'static,
{
    let peer = timing.peer;
    let tls = tokio::select! {
        r = tokio::time::timeout_at(timing.first_head_due, acceptor.accept(stream)) => r,
        _ = shutdown.wait() => return,
    };
    let stream = match tls {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "HTTP TLS handshake: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP TLS handshake not done in time; closing");
            return;
        }
    };
    let conn = auto.serve_connection(TokioIo::new(Box::pin(stream)), service);
    drive(conn, |c| c.graceful_shutdown(), timing, shutdown).await;
}

/// The deadlines of one connection, for [`drive`].
struct Timing {
    peer: SocketAddr,
    accepted: tokio::time::Instant,
    first_head_due: tokio::time::Instant,
    age_due: tokio::time::Instant,
    /// When the last whole request head was read (ms since `accepted`,
    /// plus one; 0: none yet).
    asked: Arc<AtomicU64>,
    /// Close the connection when no request came for this long after the
    /// last one (TLS connections, which may be HTTP/2: hyper's HTTP/1
    /// header timeout does this for HTTP/1).
    idle: Option<Duration>,
}

/// Serves a hyper connection until it ends, its first head is late, it is
/// too old or floe shuts down (then gracefully, up to [`DRAIN_TIMEOUT`]).
async fn drive<C, E>(
    conn: C,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    timing: Timing,
    shutdown: Shutdown,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let Timing {
        peer,
        accepted,
        first_head_due,
        age_due,
        asked,
        idle,
    } = timing;
    let last_request = || accepted + Duration::from_millis(asked.load(Ordering::Relaxed));
    let idle_timer = tokio::time::sleep_until(first_head_due);
    let head_timeout = tokio::time::sleep_until(first_head_due);
    let age = tokio::time::sleep_until(age_due);
    tokio::pin!(conn, head_timeout, age, idle_timer);
    // hyper's header timer started when hyper did; the first head is held
    // to the time since the connection was accepted.
    let mut head_pending = true;
    // How long the graceful close may take: an idle HTTP/2 client that
    // does not answer the GOAWAY's PING gets no more than its idle time.
    let mut drain = DRAIN_TIMEOUT;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "HTTP connection: {e}");
                }
                return;
            }
            _ = &mut head_timeout, if head_pending => {
                if asked.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(%peer, "HTTP connection: no request head in time");
                    return;
                }
                head_pending = false;
                if let Some(idle) = idle {
                    idle_timer.as_mut().reset(last_request() + idle);
                }
            }
            _ = &mut idle_timer, if !head_pending && idle.is_some() => {
                let due = last_request() + idle.unwrap_or_default();
                if tokio::time::Instant::now() >= due {
                    tracing::debug!(%peer, "HTTP connection: idle; closing");
                    drain = idle.unwrap_or(DRAIN_TIMEOUT).min(DRAIN_TIMEOUT);
                    break;
                }
                idle_timer.as_mut().reset(due);
            }
            _ = &mut age => break,
            _ = shutdown.wait() => break,
        }
    }
    graceful(conn.as_mut());
    let _ = tokio::time::timeout(drain, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_another_process_is_refused_not_shared() {
        let first = HttpServer::bind(&["127.0.0.1:0".parse().unwrap()], &[], &[], 2).unwrap();
        assert_eq!(first.sockets.len(), 2, "one socket per worker");
        let taken = first.addrs[0];
        let second = HttpServer::bind(&[], &[taken], &[], 2);
        let err = second.err().expect("second bind on the same port fails");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn listeners_defer_accept_until_the_first_byte() {
        use std::os::fd::AsRawFd;
        let server = HttpServer::bind(&["127.0.0.1:0".parse().unwrap()], &[], &[], 1).unwrap();
        let (listener, _) = &server.sockets[0][0];
        let mut secs: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket and a c_int buffer of the stated size.
        let r = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw mut secs).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        assert_eq!(secs, DEFER_ACCEPT_SECS as libc::c_int);
    }
}
