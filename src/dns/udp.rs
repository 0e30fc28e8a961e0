//! UDP transport: one blocking receive loop per worker thread, each on its
//! own `SO_REUSEPORT` socket, so the kernel spreads queries across cores and
//! nothing is shared between workers but the plan.
//!
//! Per batch of queries ([`super::mmsg`]: one `recvmmsg`, one `sendmmsg`):
//! load the plan (lock-free); per query try the fast path, else hand the
//! query to the hickory handler on this thread's current-thread runtime.
//! The loop never waits for anything but the socket; a read timeout lets it
//! notice shutdown when idle.

use super::handler::FloeHandler;
use super::mmsg::{self, BATCH, Batch};
use super::stats::{QueryKey, Tally};
use super::{DnsState, fast, next_variant};
use crate::clients::{ClientBudgets, Rate, in_networks};
use crate::config::DnsConfig;
use crate::shutdown::Shutdown;
use hickory_server::net::xfer::Protocol;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle worker checks for shutdown.
const IDLE_CHECK: Duration = Duration::from_millis(200);
/// A busy worker checks for shutdown every this many packets.
const BUSY_CHECK: u32 = 1024;
/// Largest query read; longer datagrams are cut and fail to parse (FORMERR).
const MAX_QUERY: usize = 4096;
/// Receive buffer asked of the kernel, to absorb bursts.
const RECV_BUFFER: usize = 4 << 20;

/// A blocking UDP socket on `addr` with `SO_REUSEPORT`, for one worker.
pub(super) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(IDLE_CHECK))?;
    let socket: UdpSocket = socket.into();
    if addr.ip().is_unspecified() {
        // A wildcard socket answers from the address each query came to.
        mmsg::enable_destination(&socket, addr.is_ipv6())?;
    }
    Ok(socket)
}

/// Serves `socket` until `shutdown`.
pub(super) fn worker(
    socket: UdpSocket,
    state: Arc<DnsState>,
    handler: Arc<FloeHandler>,
    shutdown: Shutdown,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("DNS UDP worker: runtime: {e}");
            return;
        }
    };
    let mut batch = Batch::new(MAX_QUERY, usize::from(super::EDNS_PAYLOAD));
    let counters = state.register();
    let mut since_check = 0u32;
    // Answers over a client's rate so far, for the slip (every n-th one).
    let mut over = 0u32;
    loop {
        let n = match batch.recv(&socket) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shutdown.is_triggered() {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // ICMP errors from earlier sends (ECONNREFUSED) and the like.
                tracing::debug!("DNS UDP receive: {e}");
                continue;
            }
        };
        since_check += n as u32;
        if since_check >= BUSY_CHECK {
            since_check = 0;
            if shutdown.is_triggered() {
                return;
            }
        }
        let now = Instant::now();
        let plan = state.plan(now);
        let dns = &plan.snapshot().config().dns;
        let rrl = (dns.rrl_responses_per_second > 0).then_some(dns);
        let mut tally = Tally::default();
        let mut keys = [QueryKey::default(); BATCH];
        let mut counted = 0;
        for i in 0..n {
            let (query, src, out) = batch.query(i);
            // Nothing can be sent back to port 0.
            let Some(src) = src.filter(|s| s.port() != 0) else {
                tally.unanswered += 1;
                continue;
            };
            if let Some(dns) = rrl
                && over_rate(&state, dns, src, now)
            {
                over = over.wrapping_add(1);
                match (dns.rrl_slip > 0 && over.is_multiple_of(dns.rrl_slip))
                    .then(|| fast::truncated(query, out))
                    .flatten()
                {
                    Some(len) => {
                        tally.slipped += 1;
                        batch.reply(i, len);
                    }
                    None => tally.rate_limited += 1,
                }
                continue;
            }
            if let Some((len, key)) = fast::answer(query, &plan, next_variant(), src.ip(), out) {
                keys[counted] = key;
                counted += 1;
                tally.udp_fast += 1;
                tally.rcode[0] += 1;
                batch.reply(i, len);
                continue;
            }
            // A query that makes the handler panic (a bug) is dropped and
            // logged; the worker goes on with the next one.
            let answered = guarded(|| rt.block_on(handler.answer(query, src, Protocol::Udp)));
            let Some((response, key)) = answered.flatten() else {
                tally.unanswered += 1;
                continue;
            };
            // `encode` keeps a UDP answer within the client's limit, at
            // most EDNS_PAYLOAD, the size of `out`.
            let Some(out) = out.get_mut(..response.len()) else {
                tracing::error!(
                    "DNS UDP: an answer of {} bytes, over the limit",
                    response.len()
                );
                tally.unanswered += 1;
                continue;
            };
            out.copy_from_slice(&response);
            batch.reply(i, response.len());
            keys[counted] = key;
            counted += 1;
            tally.udp_handler += 1;
            tally.answered(&response);
        }
        drop(plan);
        batch.send(&socket);
        counters.add(&tally);
        counters.count_queries(&keys[..counted]);
    }
}

/// Whether `src` is over its response rate (and not exempt).
#[inline]
fn over_rate(state: &DnsState, dns: &DnsConfig, src: SocketAddr, now: Instant) -> bool {
    if in_networks(&dns.rrl_exempt, src.ip()) {
        return false;
    }
    let prefix = ClientBudgets::prefix(src.ip(), dns.rrl_prefix_v4, dns.rrl_prefix_v6);
    state
        .rate_limits
        .check(prefix, dns.rrl_responses_per_second, now)
        == Rate::Over
}

/// `f()`, or `None` (logged) when it panics: one bad query must not take a
/// worker, and its socket, out of service.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(e) => {
            let what = e.downcast_ref::<&str>().copied();
            let what = what.or(e.downcast_ref::<String>().map(String::as_str));
            tracing::error!(
                "DNS UDP: a query made floe panic ({}); dropped it",
                what.unwrap_or("?")
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_query_is_dropped_and_the_next_one_served() {
        assert_eq!(guarded(|| -> u32 { panic!("bad query") }), None);
        assert_eq!(guarded(|| 7), Some(7));
    }
}
