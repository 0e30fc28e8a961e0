//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on the listeners
//! of `[http] proxy_protocol_listen`: the header a load balancer sends
//! before the HTTP bytes, saying whom it accepted the connection from.
//!
//! Parsing is the `ppp` crate's; this module adds what a server needs
//! around it: the size limits (a v1 header is at most 107 bytes, a v2
//! header's payload at most [`V2_MAX_PAYLOAD`] bytes, TLVs skipped), which
//! client address a header gives ([`Header::source`]: the source of a
//! `PROXY` over TCP, else the connection's peer, as for v2 `LOCAL` health
//! checks and `UNKNOWN`/`UNSPEC`), and reading exactly the header's bytes
//! off the socket so that hyper gets the stream right after it
//! ([`read_header`]). The caller bounds the read with `header_timeout` and
//! closes the connection on any error, as HAProxy does.

use ppp::{PartialResult, v1, v2};
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest v1 header, `\r\n` included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family
/// and protocol, payload length.
pub const V2_FIXED: usize = 16;
/// Longest v2 payload (addresses and TLVs) accepted: room for the largest
/// addresses (216 bytes, `AF_UNIX`) and the TLVs cloud balancers add
/// (an endpoint or link id, an authority, a unique id: tens of bytes).
/// The length field allows 64 KiB; a longer header is refused.
pub const V2_MAX_PAYLOAD: usize = 512;
/// Longest header of either version.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_PAYLOAD;

/// Why a connection on a PROXY listener was closed before HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are not a PROXY header of either version.
    #[error("not a PROXY protocol header")]
    Missing,
    /// A PROXY header that does not parse.
    #[error("malformed PROXY protocol header")]
    Malformed,
    /// Longer than [`V1_MAX`] or than [`MAX_HEADER`].
    #[error("PROXY protocol header too long")]
    TooLong,
    /// The peer closed (or reset) the connection before the header ended.
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
}

/// A complete PROXY header: how many bytes it took and the client it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes of the header, `\r\n` (v1) or TLVs (v2) included.
    pub len: usize,
    /// The client's address, when the header gives one: `PROXY TCP4|TCP6`
    /// (v1) or a `PROXY` command over TCP on IPv4/IPv6 (v2). `None` for v1
    /// `UNKNOWN`, v2 `LOCAL` (a balancer's own health check) and v2
    /// `UNSPEC` or `AF_UNIX`: then the connection's peer is the client.
    pub source: Option<SocketAddr>,
}

impl Header {
    /// The client this connection is from: the header's source, or `peer`.
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        self.source.map_or(peer, canonical)
    }
}

/// An IPv4-mapped IPv6 address as IPv4 (what the rest of floe matches).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// What the bytes received so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header at the start of the bytes (more may follow it).
    Complete(Header),
    /// A valid beginning: more bytes are needed.
    Incomplete,
}

/// Parses the start of `buf` as a PROXY header of either version. Pure;
/// never reads past [`MAX_HEADER`] bytes of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let buf = &buf[..buf.len().min(MAX_HEADER)];
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(HeaderError::Missing),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    if !buf.starts_with(PREFIX) && !PREFIX.starts_with(buf) {
        return Err(HeaderError::Missing);
    }
    // A v1 header is one line: parse it whole. (ppp takes some beginnings
    // of a line, e.g. one ending in the space before the destination port,
    // for malformed headers.)
    let buf = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() == V1_MAX {
            Err(HeaderError::TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    // The line must end in CRLF, and ppp must take all of it (it accepts
    // `... \n` without the CR, and stops at the first CR).
    if end == 0 || buf[end - 1] != b'\r' {
        return Err(HeaderError::Malformed);
    }
    match v1::Header::try_from(&buf[..=end]) {
        Ok(h) if h.header.len() != end + 1 => Err(HeaderError::Malformed),
        Ok(h) => {
            let source = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(Parsed::Complete(Header {
                len: h.header.len(),
                source,
            }))
        }
        Err(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong)) => {
            Err(HeaderError::TooLong)
        }
        Err(_) => Err(HeaderError::Malformed),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    // Refuse an over-long header from its length field, before waiting for
    // (and buffering) its bytes.
    if buf.len() >= V2_FIXED && buf[..12] == *v2::PROTOCOL_PREFIX {
        let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if payload > V2_MAX_PAYLOAD {
            return Err(HeaderError::TooLong);
        }
    }
    match v2::Header::try_from(buf) {
        Ok(h) => {
            let source = match (h.command, h.protocol, &h.addresses) {
                (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok(Parsed::Complete(Header {
                len: h.len(),
                source,
            }))
        }
        Err(e) if e.is_incomplete() => Ok(Parsed::Incomplete),
        Err(v2::ParseError::Prefix) => Err(HeaderError::Missing),
        Err(_) => Err(HeaderError::Malformed),
    }
}

/// Reads a PROXY header off `stream`, exactly its bytes: what follows is
/// left in the socket for hyper. Peeks at what has arrived, parses, and
/// consumes either the whole header (complete) or what was peeked (a valid
/// beginning; the next peek then waits for new bytes), so a header
/// trickled byte by byte costs a few syscalls per segment and no busy
/// loop. Unbounded in time: the caller adds the deadline. The flag says
/// whether bytes after the header had arrived already (then the caller
/// need not wait for the request's first byte).
pub async fn read_header(stream: &mut TcpStream) -> Result<(Header, bool), HeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    let mut have = 0;
    loop {
        let n = stream
            .peek(&mut buf[have..])
            .await
            .map_err(|_| HeaderError::Closed)?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        let total = have + n;
        match parse(&buf[..total])? {
            Parsed::Complete(h) => {
                stream
                    .read_exact(&mut buf[have..h.len])
                    .await
                    .map_err(|_| HeaderError::Closed)?;
                return Ok((h, total > h.len));
            }
            Parsed::Incomplete if total == buf.len() => return Err(HeaderError::TooLong),
            Parsed::Incomplete => {
                stream
                    .read_exact(&mut buf[have..total])
                    .await
                    .map_err(|_| HeaderError::Closed)?;
                have = total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Command, Protocol, Version};

    fn peer() -> SocketAddr {
        "10.0.0.2:40000".parse().unwrap()
    }

    fn v2(command: Command, src: &str, dst: &str, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let addrs: (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut b = Builder::with_addresses(Version::Two | command, Protocol::Stream, addrs);
        for (kind, value) in tlvs {
            b = b.write_tlv(*kind, value).unwrap();
        }
        b.build().unwrap()
    }

    fn client_of(bytes: &[u8]) -> Result<Parsed, HeaderError> {
        parse(bytes)
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\nGET / HTTP/1.1\r\n\r\n";
        let Ok(Parsed::Complete(got)) = client_of(h) else {
            panic!("{:?}", parse(h))
        };
        assert_eq!(got.len, 43);
        assert_eq!(got.client(peer()), "203.0.113.7:51000".parse().unwrap());

        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 80\r\n";
        let Ok(Parsed::Complete(got)) = parse(h) else {
            panic!()
        };
        assert_eq!(got.len, h.len());
        assert_eq!(got.client(peer()), "[2001:db8::7]:51000".parse().unwrap());

        let h = b"PROXY UNKNOWN\r\nGET";
        let Ok(Parsed::Complete(got)) = parse(h) else {
            panic!()
        };
        assert_eq!(got.len, 15);
        assert_eq!(got.client(peer()), peer(), "UNKNOWN: the peer");
    }

    #[test]
    fn v2_proxy_local_and_tlvs() {
        let h = v2(Command::Proxy, "203.0.113.7:51000", "192.0.2.1:80", &[]);
        assert_eq!(h.len(), 28);
        let Ok(Parsed::Complete(got)) = parse(&h) else {
            panic!()
        };
        assert_eq!(got.len, 28);
        assert_eq!(got.client(peer()), "203.0.113.7:51000".parse().unwrap());

        let h = v2(
            Command::Proxy,
            "[2001:db8::7]:1",
            "[2001:db8::1]:80",
            &[(0x05, b"unique-id"), (0xEA, b"\x01vpce-0123456789")],
        );
        let mut with_http = h.clone();
        with_http.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let Ok(Parsed::Complete(got)) = parse(&with_http) else {
            panic!()
        };
        assert_eq!(got.len, h.len(), "TLVs are part of the header, skipped");
        assert_eq!(got.client(peer()), "[2001:db8::7]:1".parse().unwrap());

        let h = v2(Command::Local, "203.0.113.7:51000", "192.0.2.1:80", &[]);
        let Ok(Parsed::Complete(got)) = parse(&h) else {
            panic!()
        };
        assert_eq!(got.client(peer()), peer(), "LOCAL: the peer");
    }

    #[test]
    fn v4_mapped_sources_are_ipv4() {
        let h = b"PROXY TCP6 ::ffff:203.0.113.7 ::1 5 80\r\n";
        let Ok(Parsed::Complete(got)) = parse(h) else {
            panic!()
        };
        assert_eq!(got.client(peer()), "203.0.113.7:5".parse().unwrap());
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n".to_vec();
        let v2 = v2(
            Command::Proxy,
            "203.0.113.7:1",
            "192.0.2.1:80",
            &[(1, b"h2")],
        );
        for h in [v1, v2] {
            for end in 0..h.len() {
                assert_eq!(parse(&h[..end]), Ok(Parsed::Incomplete), "{end} of {h:?}");
            }
        }
    }

    #[test]
    fn garbage_too_long_and_malformed_are_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::Missing));
        assert_eq!(parse(b"\x16\x03\x01"), Err(HeaderError::Missing));
        assert_eq!(
            parse(b"PROXY TCP5 a b 1 2\r\n"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\n"),
            Err(HeaderError::Malformed)
        );
        // Found by the fuzz target: ppp takes a line ending in a space and
        // LF without the CR.
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 8 \n"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(parse(b"PROXY UNKNOWN \nGET"), Err(HeaderError::Malformed));
        assert_eq!(parse(b"PROXY UNKNOWN\rX\r\n"), Err(HeaderError::Malformed));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Err(HeaderError::TooLong));
        // v2 whose length field is past the limit: refused from 16 bytes.
        let mut h = v2(Command::Proxy, "203.0.113.7:1", "192.0.2.1:80", &[]);
        h[14..16].copy_from_slice(&(V2_MAX_PAYLOAD as u16 + 1).to_be_bytes());
        assert_eq!(parse(&h[..16]), Err(HeaderError::TooLong));
        let mut h = v2(Command::Proxy, "203.0.113.7:1", "192.0.2.1:80", &[]);
        h[12] = 0x31; // version 3
        assert_eq!(parse(&h), Err(HeaderError::Malformed));
    }
}
