//! Longest-prefix match of client addresses to values: which listener pool
//! an address belongs to.
//!
//! A [`NetworkMap`] is built once per config (a prefix trie per address
//! family, `prefix-trie`) and read on every redirect without a lock. An
//! IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, as a dual-stack socket
//! reports IPv4 peers) is looked up as its IPv4 address. A leaf module.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::net::IpAddr;

/// Networks (CIDR) mapped to values; a lookup finds the longest network
/// that covers an address.
#[derive(Clone)]
pub struct NetworkMap<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
    len: usize,
}

impl<T> Default for NetworkMap<T> {
    fn default() -> Self {
        NetworkMap {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            len: 0,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for NetworkMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.v4.iter().map(|(n, v)| (IpNet::V4(*n), v)))
            .entries(self.v6.iter().map(|(n, v)| (IpNet::V6(*n), v)))
            .finish()
    }
}

impl<T> NetworkMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `net` (host bits cleared) to `value`, replacing what it had.
    pub fn insert(&mut self, net: IpNet, value: T) {
        let old = match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n, value),
            IpNet::V6(n) => self.v6.insert(n, value),
        };
        if old.is_none() {
            self.len += 1;
        }
    }

    /// How many networks are mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no network is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of the longest network covering `addr`, and that network.
    pub fn lookup(&self, addr: IpAddr) -> Option<(IpNet, &T)> {
        match addr.to_canonical() {
            IpAddr::V4(a) => self
                .v4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(n, v)| (IpNet::V4(*n), v)),
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(n, v)| (IpNet::V6(*n), v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_longest_covering_network_wins() {
        let mut m = NetworkMap::new();
        m.insert("10.0.0.0/8".parse().unwrap(), "wide");
        m.insert("10.1.0.0/16".parse().unwrap(), "narrow");
        m.insert("10.1.2.3/16".parse().unwrap(), "same network again");
        m.insert("2001:db8::/32".parse().unwrap(), "v6");
        assert_eq!(m.len(), 3);
        let value = |s: &str| m.lookup(ip(s)).map(|(_, v)| *v);
        assert_eq!(value("10.1.200.1"), Some("same network again"));
        assert_eq!(value("10.2.0.1"), Some("wide"));
        assert_eq!(value("11.0.0.1"), None);
        assert_eq!(value("2001:db8:5::1"), Some("v6"));
        assert_eq!(value("2001:db9::1"), None);
        // A dual-stack socket's view of an IPv4 peer.
        assert_eq!(value("::ffff:10.1.0.9"), Some("same network again"));
        assert_eq!(
            m.lookup(ip("10.2.0.1")).map(|(n, _)| n),
            Some("10.0.0.0/8".parse().unwrap())
        );
    }

    proptest! {
        /// The trie agrees with a scan for the longest covering network.
        #[test]
        fn lookup_is_the_longest_covering_network(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            addrs in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let nets: Vec<IpNet> = nets
                .into_iter()
                .map(|(a, len)| IpNet::V4(Ipv4Net::new(a.into(), len).unwrap().trunc()))
                .collect();
            let mut m = NetworkMap::new();
            for (i, n) in nets.iter().enumerate() {
                m.insert(*n, i);
            }
            for a in addrs {
                let a = IpAddr::V4(a.into());
                let best = nets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.contains(&a))
                    .max_by_key(|(i, n)| (n.prefix_len(), *i))
                    .map(|(_, n)| *n);
                prop_assert_eq!(m.lookup(a).map(|(n, _)| n), best);
            }
        }
    }
}
