//! TCP transport: length-prefixed queries (RFC 1035 4.2.2, RFC 7766) on one
//! thread with a current-thread runtime, answered by the hickory handler
//! with no size limit.
//!
//! Limits from `[dns]`: at most `tcp_max_connections` connections at once,
//! and `tcp_max_connections_per_client` from one client prefix (one more is
//! accepted and closed at once); a connection that sends no complete query
//! for `tcp_idle_timeout`, or writes nothing for as long, is closed, and
//! every connection is closed after `tcp_max_connection_age`. Queries on
//! one connection are answered in order.

/// Slots of the per-client connection table (4 bytes each).
const CLIENT_SLOTS: usize = 1 << 14;

use super::handler::FloeHandler;
use super::stats::{Counters, Tally};
use crate::clients::{ClientBudgets, ClientConnections};
use crate::shutdown::Shutdown;
use hickory_server::net::xfer::Protocol;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// TCP limits from the config.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Close a connection with no complete query for this long.
    pub idle: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections at once from one client prefix.
    pub per_client: u32,
    /// Close a connection after this long, however busy.
    pub age: Duration,
    /// What makes one client: leading bits of IPv4 and IPv6 addresses.
    pub prefix: (u8, u8),
}

/// A listening TCP socket on `addr`.
pub(super) fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves `listeners` until `shutdown`.
pub(super) fn serve(
    listeners: Vec<StdListener>,
    handler: Arc<FloeHandler>,
    counters: Arc<Counters>,
    limits: Limits,
    shutdown: Shutdown,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("DNS TCP: runtime: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients = ClientConnections::new(CLIENT_SLOTS);
    rt.block_on(async move {
        let mut loops = Vec::new();
        for l in listeners {
            match TcpListener::from_std(l) {
                Ok(l) => {
                    let task = accept_loop(
                        l,
                        handler.clone(),
                        counters.clone(),
                        limits,
                        slots.clone(),
                        clients.clone(),
                        shutdown.clone(),
                    );
                    loops.push(tokio::spawn(task))
                }
                Err(e) => tracing::error!("DNS TCP listener: {e}"),
            }
        }
        for l in loops {
            let _ = l.await;
        }
    });
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<FloeHandler>,
    counters: Arc<Counters>,
    limits: Limits,
    slots: Arc<Semaphore>,
    clients: Arc<ClientConnections>,
    shutdown: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("DNS TCP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "DNS TCP: connection limit reached; closing");
            drop(stream);
            continue;
        };
        let prefix = ClientBudgets::prefix(peer.ip(), limits.prefix.0, limits.prefix.1);
        let Some(open) = clients.open(prefix, limits.per_client) else {
            tracing::debug!(%peer, "DNS TCP: client at its connection cap; closing");
            continue;
        };
        let (handler, counters, shutdown) = (handler.clone(), counters.clone(), shutdown.clone());
        tokio::spawn(async move {
            let served = connection(stream, peer, &handler, &counters, limits.idle);
            tokio::select! {
                r = tokio::time::timeout(limits.age, served) => {
                    if let Ok(Err(e)) = r {
                        tracing::debug!(%peer, "DNS TCP connection: {e}");
                    }
                }
                _ = shutdown.wait() => {}
            }
            drop((permit, open));
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &FloeHandler,
    counters: &Counters,
    idle: Duration,
) -> io::Result<()> {
    let mut query = Vec::new();
    loop {
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            // The buffer grows with the bytes that arrive, not with the
            // length announced: a client announcing 64 KiB and sending
            // nothing more must not make floe allocate (and zero) 64 KiB.
            let want = u16::from_be_bytes(len);
            query.clear();
            (&mut stream)
                .take(u64::from(want))
                .read_to_end(&mut query)
                .await?;
            if query.len() < usize::from(want) {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok::<(), io::Error>(())
        };
        match tokio::time::timeout(idle, read).await {
            Ok(Ok(())) => {}
            // Closed by the client between queries: done.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut tally = Tally {
            tcp: 1,
            ..Tally::default()
        };
        let response = handler.answer(&query, peer, Protocol::Tcp).await;
        match &response {
            Some((r, _)) => tally.answered(r),
            None => tally.unanswered = 1,
        }
        // All TCP connections run on this one thread: a single writer.
        counters.add(&tally);
        let Some((response, key)) = response else {
            continue;
        };
        counters.count_queries(&[key]);
        let Ok(n) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(2 + response.len());
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&response);
        match tokio::time::timeout(idle, stream.write_all(&framed)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        }
    }
}
