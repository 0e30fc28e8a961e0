//! `X-Forwarded-For` from trusted proxies: the client address a request
//! came from when the connection's peer is a load balancer floe was told
//! to trust (`[http] trusted_proxies`).
//!
//! The rules: the header is believed only when the peer (after a PROXY
//! header, if any) is in `trusted_proxies`; then the client is the
//! rightmost address that is not a trusted proxy (each hop appends the
//! address it received from, so everything left of the first untrusted
//! address was written by the client and proves nothing). Several header
//! lines count as one list, in order. A malformed entry met before the
//! client (not an IP address, `unknown`, an empty element, a value that is
//! not ASCII) makes the whole header unbelievable: the peer is the client.
//! At most [`MAX_HOPS`] entries are read from the right; when all of them
//! are trusted, the leftmost one read is the client, as when the whole
//! list is trusted. No allocation, no lock: this runs on every request
//! from a trusted peer.

use crate::clients::in_networks;
use hyper::HeaderMap;
use hyper::header::HeaderName;
use std::net::{IpAddr, SocketAddr};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Most `X-Forwarded-For` entries read, from the right.
pub const MAX_HOPS: usize = 16;

/// The client a request from `peer` with `headers` is for: `peer`, or the
/// `X-Forwarded-For` client when `peer` is in `trusted` (see the module
/// doc for the rules).
pub fn client(headers: &HeaderMap, peer: IpAddr, trusted: &[ipnet::IpNet]) -> IpAddr {
    if trusted.is_empty() || !in_networks(trusted, peer) {
        return peer;
    }
    let mut last = peer;
    let mut read = 0;
    for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            return peer;
        };
        for entry in line.rsplit(',') {
            if read == MAX_HOPS {
                return last;
            }
            read += 1;
            let Some(ip) = parse_entry(entry.trim()) else {
                return peer;
            };
            if !in_networks(trusted, ip) {
                return ip;
            }
            last = ip;
        }
    }
    last
}

/// One list entry: an address, optionally with a port (`192.0.2.1:80`,
/// `[2001:db8::1]:80`) or in brackets (`[2001:db8::1]`), as some balancers
/// write them.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.7"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("203.0.113.7"));
        assert_eq!(client(&h, ip("192.0.2.9"), &trusted), ip("192.0.2.9"));
        assert_eq!(client(&h, ip("10.1.1.1"), &[]), ip("10.1.1.1"));
        assert_eq!(
            client(&HeaderMap::new(), ip("10.1.1.1"), &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client wrote 1.1.1.1 itself; a CDN hop 10.2.2.2 appended the
        // real client 198.51.100.4.
        let h = headers(&["1.1.1.1, 198.51.100.4, 10.2.2.2"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("198.51.100.4"));
        // Two header lines are one list.
        let h = headers(&["1.1.1.1, 198.51.100.4", "10.2.2.2"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("198.51.100.4"));
        // Ports and brackets.
        let h = headers(&["[2001:db8::7]:443, [2001:db8:ffff::1]"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("2001:db8::7"));
        let h = headers(&["203.0.113.7:5000"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("203.0.113.7"));
        // v4-mapped is IPv4.
        let h = headers(&["::ffff:203.0.113.7"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("203.0.113.7"));
        // Every hop trusted: the leftmost.
        let h = headers(&["10.9.9.9, 10.2.2.2"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("10.9.9.9"));
    }

    #[test]
    fn malformed_falls_back_to_the_peer() {
        let trusted = nets(&["10.0.0.0/8"]);
        for bad in [
            "unknown",
            "",
            "203.0.113.7,",
            "1.2.3",
            "example.org",
            "1.2.3.4 5.6.7.8",
        ] {
            let h = headers(&[bad]);
            assert_eq!(
                client(&h, ip("10.1.1.1"), &trusted),
                ip("10.1.1.1"),
                "{bad:?}"
            );
        }
        // Garbage left of the client is never read.
        let h = headers(&["garbage, 203.0.113.7"]);
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("203.0.113.7"));
        let mut h = HeaderMap::new();
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
        );
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("10.1.1.1"));
    }

    #[test]
    fn at_most_max_hops_are_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        let hops: Vec<String> = (0..40).map(|i| format!("10.0.0.{i}")).collect();
        let mut line = String::from("203.0.113.7, ");
        line.push_str(&hops.join(", "));
        let h = headers(&[&line]);
        // 16 from the right: 10.0.0.39 .. 10.0.0.24.
        assert_eq!(client(&h, ip("10.1.1.1"), &trusted), ip("10.0.0.24"));
    }
}
