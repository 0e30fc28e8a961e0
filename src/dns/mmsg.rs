//! Batched UDP I/O with `recvmmsg`/`sendmmsg` (Linux): one system call
//! receives every queued query (up to a batch) and one sends every answer.
//!
//! Under load the kernel's per-call cost dominates a DNS server that answers
//! from pre-rendered bytes (BRIEF, "Performance notes": ~50 % of the time in
//! one `recvfrom` + one `sendto` per packet); batching is how gdnsd, nsd and
//! knot get below it. At low load a batch is one packet and this costs the
//! same as `recv_from`/`send_to`.
//!
//! The calls and their structs come from the `libc` crate (Linux); other
//! targets use [`Batch`]'s portable fallback, one packet per call.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Queries received (and answers sent) per system call at most.
pub const BATCH: usize = 32;

/// Receive and send buffers for one worker, reused for every batch.
pub struct Batch {
    /// `BATCH` query buffers of `query_size` bytes.
    queries: Vec<u8>,
    query_size: usize,
    /// `BATCH` reply buffers of `reply_size` bytes.
    replies: Vec<u8>,
    reply_size: usize,
    /// Length of each query received, and of each reply (0 = none).
    query_len: [usize; BATCH],
    reply_len: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    received: usize,
    #[cfg(target_os = "linux")]
    sys: linux::Sys,
}

impl Batch {
    /// Buffers for queries of up to `query_size` bytes and replies of up to
    /// `reply_size` bytes.
    pub fn new(query_size: usize, reply_size: usize) -> Box<Batch> {
        let mut b = Box::new(Batch {
            queries: vec![0; BATCH * query_size],
            query_size,
            replies: vec![0; BATCH * reply_size],
            reply_size,
            query_len: [0; BATCH],
            reply_len: [0; BATCH],
            sources: [None; BATCH],
            received: 0,
            #[cfg(target_os = "linux")]
            sys: linux::Sys::default(),
        });
        #[cfg(target_os = "linux")]
        {
            let Batch {
                queries,
                replies,
                sys,
                ..
            } = &mut *b;
            sys.init(queries, query_size, replies, reply_size);
        }
        b
    }

    /// Receives up to [`BATCH`] datagrams: waits for the first (up to the
    /// socket's read timeout), then takes what is already queued. Returns
    /// how many.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received = 0;
        #[cfg(target_os = "linux")]
        let n = self
            .sys
            .recv(socket, &mut self.query_len, &mut self.sources)?;
        #[cfg(not(target_os = "linux"))]
        let n = {
            let (len, src) = socket.recv_from(&mut self.queries[..self.query_size])?;
            self.query_len[0] = len;
            self.sources[0] = Some(src);
            1
        };
        self.reply_len[..n].fill(0);
        self.received = n;
        Ok(n)
    }

    /// Query `i` of the last batch, its source (`None` when the address
    /// family is not IP), and the buffer for its reply.
    pub fn query(&mut self, i: usize) -> (&[u8], Option<SocketAddr>, &mut [u8]) {
        let q = &self.queries[i * self.query_size..i * self.query_size + self.query_len[i]];
        let r = &mut self.replies[i * self.reply_size..(i + 1) * self.reply_size];
        (q, self.sources[i], r)
    }

    /// Marks the first `len` bytes of reply `i`'s buffer as its reply.
    pub fn reply(&mut self, i: usize, len: usize) {
        self.reply_len[i] = len.min(self.reply_size);
    }

    /// Sends every reply of the batch to its query's source.
    pub fn send(&mut self, socket: &UdpSocket) {
        #[cfg(target_os = "linux")]
        self.sys.send(socket, &self.reply_len[..self.received]);
        #[cfg(not(target_os = "linux"))]
        for i in 0..self.received {
            if let (len @ 1.., Some(to)) = (self.reply_len[i], self.sources[i]) {
                let r = &self.replies[i * self.reply_size..i * self.reply_size + len];
                if let Err(e) = socket.send_to(r, to) {
                    tracing::debug!("DNS UDP send to {to}: {e}");
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! The system calls, with the C structs from the `libc` crate.

    use super::BATCH;
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    /// The kernel-facing arrays. They point into the query and reply
    /// buffers of the owning `Batch` (heap memory that never moves) and into
    /// themselves, so a `Sys` lives in the `Box<Batch>` and is set up once
    /// by [`Sys::init`].
    pub(super) struct Sys {
        names: [libc::sockaddr_storage; BATCH],
        recv_iov: [libc::iovec; BATCH],
        recv_hdr: [libc::mmsghdr; BATCH],
        send_iov: [libc::iovec; BATCH],
        send_hdr: [libc::mmsghdr; BATCH],
        ready: bool,
    }

    impl Default for Sys {
        fn default() -> Self {
            // SAFETY: every field is a plain C struct (integers and raw
            // pointers) or a bool, for which all-zero bytes are valid
            // (null pointers, `ready: false`).
            unsafe { std::mem::zeroed() }
        }
    }

    // SAFETY: the raw pointers only point into the owning Batch's buffers
    // and into `Sys` itself; both move between threads together.
    unsafe impl Send for Sys {}

    const STORAGE_LEN: libc::socklen_t =
        std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

    impl Sys {
        /// Points the receive vectors at the query buffers. `self` must not
        /// move afterwards (it lives in a `Box<Batch>`).
        pub(super) fn init(
            &mut self,
            queries: &mut [u8],
            query_size: usize,
            replies: &mut [u8],
            reply_size: usize,
        ) {
            for i in 0..BATCH {
                self.recv_iov[i] = libc::iovec {
                    iov_base: queries[i * query_size..].as_mut_ptr().cast(),
                    iov_len: query_size,
                };
                self.send_iov[i] = libc::iovec {
                    iov_base: replies[i * reply_size..].as_mut_ptr().cast(),
                    iov_len: 0,
                };
            }
            self.ready = true;
        }

        pub(super) fn recv(
            &mut self,
            socket: &UdpSocket,
            lens: &mut [usize; BATCH],
            sources: &mut [Option<SocketAddr>; BATCH],
        ) -> io::Result<usize> {
            assert!(self.ready, "Sys::init before recv");
            for i in 0..BATCH {
                let hdr = &mut self.recv_hdr[i].msg_hdr;
                hdr.msg_name = (&raw mut self.names[i]).cast();
                hdr.msg_namelen = STORAGE_LEN;
                hdr.msg_iov = &raw mut self.recv_iov[i];
                hdr.msg_iovlen = 1;
                hdr.msg_flags = 0;
            }
            // SAFETY: every header points at a live iovec over a buffer of
            // the stated length and at a sockaddr_storage; the kernel writes
            // at most that much.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.recv_hdr.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for i in 0..n {
                lens[i] = self.recv_hdr[i].msg_len as usize;
                sources[i] = decode(&self.names[i], self.recv_hdr[i].msg_hdr.msg_namelen);
            }
            Ok(n)
        }

        pub(super) fn send(&mut self, socket: &UdpSocket, lens: &[usize]) {
            let mut count = 0;
            for (i, &len) in lens.iter().enumerate() {
                if len == 0 {
                    continue;
                }
                self.send_iov[i].iov_len = len;
                self.send_hdr[count] = self.recv_hdr[i];
                self.send_hdr[count].msg_hdr.msg_iov = &raw mut self.send_iov[i];
                self.send_hdr[count].msg_hdr.msg_flags = 0;
                count += 1;
            }
            let mut start = 0;
            while start < count {
                // SAFETY: headers [start, count) point at the reply buffers
                // (lengths within their size) and at the source addresses
                // the kernel filled in.
                let sent = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.send_hdr[start..].as_mut_ptr(),
                        (count - start) as libc::c_uint,
                        0,
                    )
                };
                if sent <= 0 {
                    // The first message failed (unreachable peer, buffer
                    // full): drop it and go on with the rest.
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        tracing::debug!("DNS UDP send: {e}");
                        start += 1;
                    }
                    continue;
                }
                start += sent as usize;
            }
        }
    }

    /// The socket address in a `sockaddr_storage` filled by the kernel.
    fn decode(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match libc::c_int::from(s.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET);
                // sockaddr_storage is large and aligned enough for it.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    u32::from_be(a.sin6_flowinfo),
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_receives_queued_datagrams_and_answers_each_source() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(server) = UdpSocket::bind(local) else {
                continue;
            };
            server
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let addr = server.local_addr().unwrap();
            let clients: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind(local).unwrap()).collect();
            for (i, c) in clients.iter().enumerate() {
                c.send_to(&[i as u8; 5], addr).unwrap();
            }
            let mut batch = Batch::new(512, 64);
            let mut seen = 0;
            while seen < 3 {
                let n = batch.recv(&server).unwrap();
                for i in 0..n {
                    let (q, src, out) = batch.query(i);
                    assert_eq!(q.len(), 5);
                    let who = clients
                        .iter()
                        .position(|c| Some(c.local_addr().unwrap()) == src)
                        .expect("source decoded");
                    assert_eq!(q[0] as usize, who);
                    out[..3].copy_from_slice(b"ok!");
                    out[3] = q[0];
                    batch.reply(i, 4);
                }
                batch.send(&server);
                seen += n;
            }
            for (i, c) in clients.iter().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 16];
                let n = c.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[b'o', b'k', b'!', i as u8]);
            }
        }
    }

    #[test]
    fn an_idle_socket_times_out() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut batch = Batch::new(512, 512);
        let e = batch.recv(&server).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }
}
