//! Batched UDP I/O with `recvmmsg`/`sendmmsg` (Linux): one system call
//! receives every queued query (up to a batch) and one sends every answer.
//!
//! Under load the kernel's per-call cost dominates a DNS server that answers
//! from pre-rendered bytes (BRIEF, "Performance notes": ~50 % of the time in
//! one `recvfrom` + one `sendto` per packet); batching is how gdnsd, nsd and
//! knot get below it. At low load a batch is one packet and this costs the
//! same as `recv_from`/`send_to`.
//!
//! The crate has no `libc` dependency, so the two calls and their structs are
//! declared here for 64-bit Linux (glibc and musl agree on this layout);
//! other targets use [`Batch`]'s portable fallback, one packet per call.

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
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
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
            #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
            sys: linux::Sys::default(),
        });
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        {
            let Batch { queries, replies, sys, .. } = &mut *b;
            sys.init(queries, query_size, replies, reply_size);
        }
        b
    }

    /// Receives up to [`BATCH`] datagrams: waits for the first (up to the
    /// socket's read timeout), then takes what is already queued. Returns
    /// how many.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received = 0;
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        let n = self.sys.recv(socket, &mut self.query_len, &mut self.sources)?;
        #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
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
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        self.sys.send(socket, &self.reply_len[..self.received]);
        #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
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

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod linux {
    //! The system calls and their C structs (64-bit Linux layout).

    use super::BATCH;
    use std::ffi::{c_int, c_uint, c_void};
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    /// recvmmsg: block for the first message only.
    const MSG_WAITFORONE: c_int = 0x10000;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct IoVec {
        base: *mut c_void,
        len: usize,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct MsgHdr {
        name: *mut c_void,
        namelen: u32,
        iov: *mut IoVec,
        iovlen: usize,
        control: *mut c_void,
        controllen: usize,
        flags: c_int,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct MMsgHdr {
        hdr: MsgHdr,
        len: c_uint,
    }

    /// `struct sockaddr_storage`: 128 bytes, 8-aligned.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Storage([u8; 128]);

    unsafe extern "C" {
        fn recvmmsg(fd: c_int, msgs: *mut MMsgHdr, vlen: c_uint, flags: c_int, timeout: *mut c_void) -> c_int;
        fn sendmmsg(fd: c_int, msgs: *mut MMsgHdr, vlen: c_uint, flags: c_int) -> c_int;
    }

    const NULL_HDR: MMsgHdr = MMsgHdr {
        hdr: MsgHdr {
            name: std::ptr::null_mut(),
            namelen: 0,
            iov: std::ptr::null_mut(),
            iovlen: 1,
            control: std::ptr::null_mut(),
            controllen: 0,
            flags: 0,
        },
        len: 0,
    };
    const NULL_IOV: IoVec = IoVec { base: std::ptr::null_mut(), len: 0 };

    /// The kernel-facing arrays. They point into the query and reply
    /// buffers of the owning `Batch` (heap memory that never moves) and into
    /// themselves, so a `Sys` lives in the `Box<Batch>` and is set up once
    /// by [`Sys::init`].
    pub(super) struct Sys {
        names: [Storage; BATCH],
        recv_iov: [IoVec; BATCH],
        recv_hdr: [MMsgHdr; BATCH],
        send_iov: [IoVec; BATCH],
        send_hdr: [MMsgHdr; BATCH],
        ready: bool,
    }

    impl Default for Sys {
        fn default() -> Self {
            Sys {
                names: [Storage([0; 128]); BATCH],
                recv_iov: [NULL_IOV; BATCH],
                recv_hdr: [NULL_HDR; BATCH],
                send_iov: [NULL_IOV; BATCH],
                send_hdr: [NULL_HDR; BATCH],
                ready: false,
            }
        }
    }

    // SAFETY: the raw pointers only point into the owning Batch's buffers
    // and into `Sys` itself; both move between threads together.
    unsafe impl Send for Sys {}

    impl Sys {
        /// Points the receive vectors at the query buffers. `self` must not
        /// move afterwards (it lives in a `Box<Batch>`).
        pub(super) fn init(&mut self, queries: &mut [u8], query_size: usize, replies: &mut [u8], reply_size: usize) {
            for i in 0..BATCH {
                self.recv_iov[i] = IoVec { base: queries[i * query_size..].as_mut_ptr().cast(), len: query_size };
                self.send_iov[i] = IoVec { base: replies[i * reply_size..].as_mut_ptr().cast(), len: 0 };
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
                self.recv_hdr[i].hdr.name = (&raw mut self.names[i]).cast();
                self.recv_hdr[i].hdr.namelen = 128;
                self.recv_hdr[i].hdr.iov = &raw mut self.recv_iov[i];
                self.recv_hdr[i].hdr.flags = 0;
            }
            // SAFETY: every header points at a live iovec over a buffer of
            // the stated length and at a 128-byte address buffer; the kernel
            // writes at most that much.
            let n = unsafe {
                recvmmsg(
                    socket.as_raw_fd(),
                    self.recv_hdr.as_mut_ptr(),
                    BATCH as c_uint,
                    MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for i in 0..n {
                lens[i] = self.recv_hdr[i].len as usize;
                sources[i] = decode(&self.names[i], self.recv_hdr[i].hdr.namelen);
            }
            Ok(n)
        }

        pub(super) fn send(&mut self, socket: &UdpSocket, lens: &[usize]) {
            let mut count = 0;
            for (i, &len) in lens.iter().enumerate() {
                if len == 0 {
                    continue;
                }
                self.send_iov[i].len = len;
                self.send_hdr[count] = self.recv_hdr[i];
                self.send_hdr[count].hdr.iov = &raw mut self.send_iov[i];
                self.send_hdr[count].hdr.flags = 0;
                count += 1;
            }
            let mut start = 0;
            while start < count {
                // SAFETY: headers [start, count) point at the reply buffers
                // (lengths within their size) and at the source addresses
                // the kernel filled in.
                let sent = unsafe {
                    sendmmsg(socket.as_raw_fd(), self.send_hdr[start..].as_mut_ptr(), (count - start) as c_uint, 0)
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
    fn decode(s: &Storage, len: u32) -> Option<SocketAddr> {
        let b = &s.0;
        let family = u16::from_ne_bytes([b[0], b[1]]);
        let port = u16::from_be_bytes([b[2], b[3]]);
        match family {
            AF_INET if len >= 16 => {
                Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(b[4], b[5], b[6], b[7]), port)))
            }
            AF_INET6 if len >= 28 => {
                let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&b[8..24]);
                let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
                Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope)))
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
            let Ok(server) = UdpSocket::bind(local) else { continue };
            server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
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
                    let who =
                        clients.iter().position(|c| Some(c.local_addr().unwrap()) == src).expect("source decoded");
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
        server.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut batch = Batch::new(512, 512);
        let e = batch.recv(&server).unwrap_err();
        assert!(matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));
    }
}
