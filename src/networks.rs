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
    /// Every network as (first address, prefix length), sorted: for
    /// [`NetworkMap::scope`]. IPv4 as `u128` below 2^32, with its own list.
    starts_v4: Vec<(u128, u8)>,
    starts_v6: Vec<(u128, u8)>,
    len: usize,
}

impl<T> Default for NetworkMap<T> {
    fn default() -> Self {
        NetworkMap {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            starts_v4: Vec::new(),
            starts_v6: Vec::new(),
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
        let net = net.trunc();
        let (old, starts, key) = match net {
            IpNet::V4(n) => (
                self.v4.insert(n, value),
                &mut self.starts_v4,
                (u128::from(u32::from(n.network())), n.prefix_len()),
            ),
            IpNet::V6(n) => (
                self.v6.insert(n, value),
                &mut self.starts_v6,
                (u128::from(n.network()), n.prefix_len()),
            ),
        };
        if old.is_none() {
            self.len += 1;
            let at = starts.partition_point(|k| *k < key);
            starts.insert(at, key);
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

impl<T> NetworkMap<T> {
    /// The shortest prefix of `addr` whose every address finds what `addr`
    /// finds (the same longest covering network, or none): the scope of an
    /// answer chosen by [`NetworkMap::lookup`] (EDNS Client Subnet, RFC
    /// 7871: a resolver caches the answer for that whole prefix). 0 for an
    /// empty map. O(log n): the networks that do not cover `addr` and
    /// share the longest prefix with it are its neighbours in address
    /// order.
    pub fn scope(&self, addr: IpAddr) -> u8 {
        let (bits, width, starts) = match addr.to_canonical() {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32u32, &self.starts_v4),
            IpAddr::V6(a) => (u128::from(a), 128u32, &self.starts_v6),
        };
        if starts.is_empty() {
            return 0;
        }
        // Common leading bits of two `width`-bit numbers.
        let common = |x: u128| -> u32 { ((x ^ bits) << (128 - width)).leading_zeros().min(width) };
        let covers = |&(start, len): &(u128, u8)| common(start) >= u32::from(len);
        // The longest covering network's length: the answer holds at least
        // for it.
        let matched = self
            .lookup(addr)
            .map_or(0, |(n, _)| u32::from(n.prefix_len()));
        // A network inside that one but not covering `addr` changes the
        // answer for the addresses it covers: the scope must leave it out,
        // one bit past what it shares with `addr`. Only the nearest such
        // network on either side in address order matters.
        let at = starts.partition_point(|&(start, _)| start <= bits);
        let below = starts[..at].iter().rev().find(|k| !covers(k));
        let above = starts[at..].first();
        let split = below
            .into_iter()
            .chain(above)
            .map(|&(start, _)| common(start) + 1)
            .max()
            .unwrap_or(0);
        matched.max(split).min(width) as u8
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

    #[test]
    fn the_scope_leaves_out_every_network_the_address_is_not_in() {
        let mut m = NetworkMap::new();
        assert_eq!(m.scope(ip("192.0.2.1")), 0, "no networks: no dependence");
        m.insert("10.0.0.0/8".parse().unwrap(), "wide");
        m.insert("10.1.0.0/16".parse().unwrap(), "narrow");
        // Inside 10.1/16: nothing narrower, the /16 is the scope.
        assert_eq!(m.scope(ip("10.1.2.3")), 16);
        // In 10/8 but close to 10.1/16: 10.0.0.0/15 holds 10.1/16, so the
        // scope is /16 (10.0/16 answers alike; 10.1/16 does not).
        assert_eq!(m.scope(ip("10.0.9.9")), 16);
        // Far from it: 10.128/9 has no narrower network.
        assert_eq!(m.scope(ip("10.200.0.1")), 9);
        // Outside every network: leave out 10/8 (11.x shares 7 bits).
        assert_eq!(m.scope(ip("11.0.0.1")), 8);
        assert_eq!(m.scope(ip("192.0.2.1")), 1);
        assert_eq!(m.scope(ip("2001:db8::1")), 0, "no IPv6 networks");
    }

    proptest! {
        /// Every address in the scope finds what the address finds.
        #[test]
        fn every_address_in_the_scope_finds_the_same(
            nets in proptest::collection::vec((any::<u8>(), 24u8..=32), 0..12),
            last: u8,
        ) {
            // A /24's worth of addresses: small enough to check all of
            // them, networks of /24 to /32 inside it.
            let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
            let mut m = NetworkMap::new();
            for (i, (a, len)) in nets.iter().enumerate() {
                let net = Ipv4Net::new((base | u32::from(*a)).into(), *len).unwrap();
                m.insert(IpNet::V4(net), i);
            }
            let addr = IpAddr::V4((base | u32::from(last)).into());
            let found = m.lookup(addr).map(|(n, _)| n);
            let scope = m.scope(addr);
            prop_assert!(scope <= 32);
            if m.is_empty() {
                prop_assert_eq!(scope, 0);
            } else {
                prop_assert!(scope >= 24, "scope {} covers addresses outside 10.0.0.0/24", scope);
                let block = Ipv4Net::new((base | u32::from(last)).into(), scope).unwrap().trunc();
                for other in block.hosts().chain([block.network(), block.broadcast()]) {
                    prop_assert_eq!(m.lookup(IpAddr::V4(other)).map(|(n, _)| n), found, "{} in {}", other, block);
                }
            }
        }
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
