//! Batched UDP I/O with `recvmmsg`/`sendmmsg` (Linux): one system call
//! receives every queued query (up to a batch) and one sends every answer.
//!
//! Under load the kernel's per-call cost dominates a DNS server that answers
//! from pre-rendered bytes (BRIEF, "Performance notes": ~50 % of the time in
//! one `recvfrom` + one `sendto` per packet); batching is how gdnsd, nsd and
//! knot get below it. At low load a batch is one packet and this costs the
//! same as `recv_from`/`send_to`.
//!
//! On a wildcard socket (`0.0.0.0`, `[::]`) each answer must leave from the
//! address its query came to, or the client (which expects the answer from
//! the address it asked) drops it. [`enable_destination`] asks the kernel
//! for each datagram's destination (`IP_PKTINFO`, `IPV6_RECVPKTINFO`); the
//! batch hands it back on the answer as its source, as unbound and NSD do.
//!
//! The calls and their structs come from the `libc` crate (Linux); other
//! targets use [`Batch`]'s portable fallback, one packet per call (and no
//! wildcard support: [`enable_destination`] fails there).

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Queries received (and answers sent) per system call at most.
pub const BATCH: usize = 32;

/// Asks the kernel to report each datagram's destination address on
/// `socket`, so that [`Batch::send`] answers from it. Needed on wildcard
/// sockets only (a socket bound to one address answers from it anyway).
pub fn enable_destination(socket: &UdpSocket, ipv6: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::enable_destination(socket, ipv6)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, ipv6);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "answering from the queried address of a wildcard socket needs Linux",
        ))
    }
}

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
        /// Per datagram: the ancillary data the kernel wrote (the
        /// destination, when asked for), rewritten into what `sendmmsg`
        /// takes to answer from it.
        control: [Control; BATCH],
        ready: bool,
    }

    /// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message (32 and
    /// 40 bytes on 64-bit Linux), aligned for `cmsghdr`.
    #[derive(Clone, Copy)]
    #[repr(C, align(8))]
    struct Control([u8; CONTROL_LEN]);
    const CONTROL_LEN: usize = 64;

    /// See [`super::enable_destination`].
    pub(super) fn enable_destination(socket: &UdpSocket, ipv6: bool) -> io::Result<()> {
        let (level, name) = if ipv6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
        } else {
            (libc::IPPROTO_IP, libc::IP_PKTINFO)
        };
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the stated size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Turns the control messages the kernel wrote for a received datagram
    /// into the one `sendmsg` needs to answer from the datagram's
    /// destination: `IP_PKTINFO` with the interface index cleared (the
    /// routing table picks the way out; only the source address is set), or
    /// `IPV6_PKTINFO` as received (the interface matters for link-local
    /// addresses). Without one, the answer carries no control data.
    fn answer_control(hdr: &mut libc::msghdr) {
        /// The destination of a datagram, as its control message said it.
        enum Destination {
            V4(libc::in_pktinfo),
            V6(libc::in6_pktinfo),
        }
        let mut found = None;
        // SAFETY: `hdr` is the header recvmmsg filled: msg_control points at
        // this datagram's `Control` buffer and msg_controllen is what the
        // kernel wrote into it; the CMSG_* macros walk within that length,
        // and a payload is read only when cmsg_len covers it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() && found.is_none() {
                let len = (*c).cmsg_len as usize;
                let fits = |size: usize| len >= libc::CMSG_LEN(size as u32) as usize;
                found = match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_PKTINFO)
                        if fits(std::mem::size_of::<libc::in_pktinfo>()) =>
                    {
                        let info = libc::CMSG_DATA(c).cast::<libc::in_pktinfo>();
                        Some(Destination::V4(info.read_unaligned()))
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                        if fits(std::mem::size_of::<libc::in6_pktinfo>()) =>
                    {
                        let info = libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>();
                        Some(Destination::V6(info.read_unaligned()))
                    }
                    _ => None,
                };
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        // SAFETY (both arms): msg_control points at a `Control` (64 bytes,
        // aligned for cmsghdr), more than CMSG_SPACE of either struct.
        unsafe fn put<T>(hdr: &mut libc::msghdr, level: libc::c_int, kind: libc::c_int, v: T) {
            let size = std::mem::size_of::<T>() as u32;
            unsafe {
                hdr.msg_controllen = libc::CMSG_SPACE(size) as _;
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = level;
                (*c).cmsg_type = kind;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                libc::CMSG_DATA(c).cast::<T>().write_unaligned(v);
            }
        }
        match found {
            Some(Destination::V4(mut info)) => {
                info.ipi_ifindex = 0;
                // SAFETY: see `put`.
                unsafe { put(hdr, libc::IPPROTO_IP, libc::IP_PKTINFO, info) }
            }
            // SAFETY: see `put`.
            Some(Destination::V6(info)) => unsafe {
                put(hdr, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
            },
            None => {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
        }
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
                hdr.msg_control = (&raw mut self.control[i]).cast();
                hdr.msg_controllen = CONTROL_LEN as _;
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
                answer_control(&mut self.recv_hdr[i].msg_hdr);
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

    /// Echoes one batch of queries on `server`, answering each with `ok`.
    fn answer_all(server: &UdpSocket, expected: usize) {
        let mut batch = Batch::new(512, 64);
        let mut seen = 0;
        while seen < expected {
            let n = batch.recv(server).unwrap();
            for i in 0..n {
                let (_, _, out) = batch.query(i);
                out[..2].copy_from_slice(b"ok");
                batch.reply(i, 2);
            }
            batch.send(server);
            seen += n;
        }
    }

    /// A client connected to `to`: it takes answers from `to` only, as a
    /// resolver does (an answer from another address is dropped).
    fn asks(to: SocketAddr) -> io::Result<UdpSocket> {
        let local = if to.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let c = UdpSocket::bind(local)?;
        c.connect(to)?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.send(b"q")?;
        Ok(c)
    }

    #[test]
    fn a_wildcard_socket_answers_from_the_address_each_query_came_to() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        enable_destination(&server, false).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        // 127.0.0.2 is on loopback (127/8) but is not the address the
        // kernel would pick as the source towards 127.0.0.1.
        let clients: Vec<UdpSocket> = ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"]
            .iter()
            .map(|ip| asks(SocketAddr::new(ip.parse().unwrap(), port)).unwrap())
            .collect();
        answer_all(&server, clients.len());
        for c in &clients {
            let mut buf = [0u8; 8];
            let n = c
                .recv(&mut buf)
                .expect("an answer from the queried address");
            assert_eq!(&buf[..n], b"ok");
        }

        // IPv6: the destination is reported and handed back (one loopback
        // address only, so this shows the v6 control message round trip).
        if let Ok(server6) = UdpSocket::bind("[::]:0") {
            enable_destination(&server6, true).unwrap();
            let port = server6.local_addr().unwrap().port();
            if let Ok(c) = asks(SocketAddr::new("::1".parse().unwrap(), port)) {
                server6
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                answer_all(&server6, 1);
                let mut buf = [0u8; 8];
                assert_eq!(c.recv(&mut buf).unwrap(), 2);
            }
        }
    }

    #[test]
    fn without_the_destination_a_wildcard_socket_answers_from_the_wrong_address() {
        // What the test above guards against: the kernel's own choice of
        // source for an answer to 127.0.0.2 is 127.0.0.1, and a connected
        // client never sees it.
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let c = asks(SocketAddr::new("127.0.0.2".parse().unwrap(), port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        answer_all(&server, 1);
        let mut buf = [0u8; 8];
        assert!(
            c.recv(&mut buf).is_err(),
            "answered from 127.0.0.2 without IP_PKTINFO"
        );
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
