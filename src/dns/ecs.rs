//! EDNS Client Subnet (RFC 7871): which listener pool a query is for, and
//! the option echoed in its answer.
//!
//! A resolver that sends ECS tells floe the network its client is in;
//! floe answers a balanced name for that network's pool and echoes the
//! option with a SCOPE PREFIX-LENGTH saying for how wide a network the
//! answer holds, so the resolver caches it per network and no wider
//! ([`crate::networks::NetworkMap::scope`]), or scope 0 when the name
//! answers the same for every pool.
//!
//! The option is read strictly, as gdnsd and the RFC (section 6) ask: an
//! unknown family, a source prefix longer than the family's address, an
//! ADDRESS of the wrong length or with bits set past the source prefix, a
//! non-zero scope in a query, or a second ECS option is malformed, and the
//! query gets FORMERR. A source prefix longer than `[dns] ecs_max_prefix_*`
//! is used only that far (RFC 7871 section 7.2.1 lets a server use fewer
//! bits), and the scope answered is then at most that. A source prefix of
//! 0 (a client that asked for privacy) carries no address: the resolver's
//! own address picks the pool, and the scope is 0.
//!
//! Pure, no allocation: the fast path reads and writes the option in
//! place.

use crate::config::DnsConfig;
use crate::networks::NetworkMap;
use crate::snapshot::{PoolId, Topology};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The option code of ECS.
pub const OPTION_CODE: u16 = 8;

/// Most bytes of an ECS option's data: family, source and scope prefix
/// lengths, a whole IPv6 address.
pub const MAX_DATA: usize = 4 + 16;

/// Why an ECS option is malformed (the query gets FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// Shorter than its fixed fields.
    #[error("client subnet option shorter than 4 bytes")]
    Short,
    /// FAMILY neither 1 (IPv4) nor 2 (IPv6).
    #[error("client subnet family {0} is neither IPv4 (1) nor IPv6 (2)")]
    Family(u16),
    /// SOURCE PREFIX-LENGTH longer than the family's addresses.
    #[error("client subnet source prefix /{0} is longer than the address")]
    Source(u8),
    /// SCOPE PREFIX-LENGTH set in a query (it must be 0).
    #[error("client subnet scope /{0} in a query (must be 0)")]
    Scope(u8),
    /// ADDRESS not exactly as long as the source prefix needs.
    #[error("client subnet address of {0} bytes for its source prefix")]
    Length(usize),
    /// ADDRESS bits set past the source prefix.
    #[error("client subnet address has bits set past its source prefix")]
    Bits,
    /// More than one ECS option in one query.
    #[error("more than one client subnet option")]
    Repeated,
}

/// A well-formed ECS option of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The option's data as received (family, source, scope 0, address):
    /// echoed with the scope set.
    data: [u8; MAX_DATA],
    /// How many bytes of `data` are the option.
    len: u8,
    /// The network's address (bits past the source prefix zero).
    pub address: IpAddr,
    /// SOURCE PREFIX-LENGTH.
    pub source: u8,
}

impl ClientSubnet {
    /// Reads an ECS option's data (after its code and length).
    pub fn parse(data: &[u8]) -> Result<ClientSubnet, EcsError> {
        let [f0, f1, source, scope, address @ ..] = data else {
            return Err(EcsError::Short);
        };
        let family = u16::from_be_bytes([*f0, *f1]);
        let width: u8 = match family {
            1 => 32,
            2 => 128,
            _ => return Err(EcsError::Family(family)),
        };
        if *source > width {
            return Err(EcsError::Source(*source));
        }
        if *scope != 0 {
            return Err(EcsError::Scope(*scope));
        }
        if address.len() != usize::from(source.div_ceil(8)) {
            return Err(EcsError::Length(address.len()));
        }
        let spare = source % 8;
        if spare != 0 && address.last().is_some_and(|&b| b & (0xff >> spare) != 0) {
            return Err(EcsError::Bits);
        }
        let mut bytes = [0u8; 16];
        bytes[..address.len()].copy_from_slice(address);
        let address = if family == 1 {
            IpAddr::V4(Ipv4Addr::from([bytes[0], bytes[1], bytes[2], bytes[3]]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        };
        let mut copy = [0u8; MAX_DATA];
        copy[..data.len()].copy_from_slice(data);
        Ok(ClientSubnet {
            data: copy,
            len: data.len() as u8,
            address,
            source: *source,
        })
    }

    /// The option (code, length, data) with SCOPE PREFIX-LENGTH `scope`,
    /// written at the start of `out`; its length, or `None` when `out` is
    /// too short.
    #[inline]
    pub fn write(&self, scope: u8, out: &mut [u8]) -> Option<usize> {
        let len = usize::from(self.len);
        let out = out.get_mut(..4 + len)?;
        out[..2].copy_from_slice(&OPTION_CODE.to_be_bytes());
        out[2..4].copy_from_slice(&u16::from(self.len).to_be_bytes());
        out[4..].copy_from_slice(&self.data[..len]);
        out[7] = scope;
        Some(4 + len)
    }

    /// Bytes [`ClientSubnet::write`] writes.
    #[inline]
    pub fn wire_len(&self) -> usize {
        4 + usize::from(self.len)
    }
}

/// Who a query is answered for: the listener pool, and the ECS scope to
/// echo (when the query had a usable option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The pool whose answer the query gets.
    pub pool: PoolId,
    /// The scope to echo in the query's ECS option.
    pub scope: u8,
}

/// The pool a query from `resolver` with client subnet `ecs` is answered
/// for, and the scope of that answer: `varies` says whether the answer
/// depends on the pool at all (scope 0 when it does not). With `[dns] ecs`
/// off, `ecs` is ignored (and must not be echoed: the caller checks).
#[inline]
pub fn client(
    topology: &Topology,
    dns: &DnsConfig,
    resolver: IpAddr,
    ecs: Option<&ClientSubnet>,
    varies: bool,
) -> Client {
    let networks: &NetworkMap<PoolId> = &topology.pool_networks;
    let subnet = ecs.filter(|e| dns.ecs && e.source > 0);
    let Some(e) = subnet else {
        return Client {
            pool: if varies {
                topology.pool_of(resolver)
            } else {
                crate::snapshot::DEFAULT_POOL
            },
            scope: 0,
        };
    };
    if !varies || networks.is_empty() {
        return Client {
            pool: crate::snapshot::DEFAULT_POOL,
            scope: 0,
        };
    }
    let (address, max) = clamp(e.address, e.source, dns);
    let pool = topology.pool_of(address);
    Client {
        pool,
        scope: echo_scope(networks, address, max),
    }
}

/// `address` cut to at most the configured bits, and the most scope an
/// answer for it may claim (`[dns] ecs_max_prefix_*`).
fn clamp(address: IpAddr, source: u8, dns: &DnsConfig) -> (IpAddr, u8) {
    match address {
        IpAddr::V4(a) => {
            let bits = source.min(dns.ecs_max_prefix_v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            (
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                dns.ecs_max_prefix_v4,
            )
        }
        IpAddr::V6(a) => {
            let bits = source.min(dns.ecs_max_prefix_v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            (
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                dns.ecs_max_prefix_v6,
            )
        }
    }
}

/// The scope of an answer chosen for `address`: the widest prefix of it
/// whose addresses all find the same network (so the same pool), at most
/// `max`. An IPv4-mapped IPv6 address is looked up as IPv4; its scope
/// counts the 96 bits of the mapping.
fn echo_scope(networks: &NetworkMap<PoolId>, address: IpAddr, max: u8) -> u8 {
    let scope = networks.scope(address);
    let scope = match address {
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() && scope > 0 => scope.saturating_add(96),
        _ => scope,
    };
    scope.min(max)
}

/// The ECS option of the OPT record's options `options` (its RDATA):
/// `Ok(None)` when there is none, an error when it is malformed or
/// repeated. Other options are skipped; a truncated option list is left to
/// the caller (it is not an ECS problem).
pub fn find(options: &[u8]) -> Result<Option<ClientSubnet>, EcsError> {
    let mut found = None;
    let mut at = 0;
    while let Some(head) = options.get(at..at + 4) {
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(data) = options.get(at + 4..at + 4 + len) else {
            break;
        };
        if code == OPTION_CODE {
            if found.is_some() {
                return Err(EcsError::Repeated);
            }
            found = Some(ClientSubnet::parse(data)?);
        }
        at += 4 + len;
    }
    Ok(found)
}

/// The ECS option of a response's OPT options: the option as its query
/// sent it (scope 0) and the scope answered; `None` when there is none or
/// it is malformed.
pub fn find_echoed(options: &[u8]) -> Option<(ClientSubnet, u8)> {
    let mut at = 0;
    while let Some(head) = options.get(at..at + 4) {
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let data = options.get(at + 4..at + 4 + len)?;
        if code == OPTION_CODE {
            let scope = *data.get(3)?;
            let mut sent = [0u8; MAX_DATA];
            let sent = sent.get_mut(..len)?;
            sent.copy_from_slice(data);
            sent[3] = 0;
            return ClientSubnet::parse(sent).ok().map(|e| (e, scope));
        }
        at += 4 + len;
    }
    None
}

/// The RDATA (options) of the OPT record of a whole DNS message `raw`,
/// found by walking its sections: `None` when it has none or the message
/// is cut short. For the handler path, which hickory parsed already (the
/// fast path knows where its OPT record is).
pub fn opt_options(raw: &[u8]) -> Option<&[u8]> {
    let count = |i: usize| usize::from(u16::from_be_bytes([raw[i], raw[i + 1]]));
    if raw.len() < 12 {
        return None;
    }
    let (questions, records) = (count(4), count(6) + count(8) + count(10));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(raw, at)? + 4;
    }
    for _ in 0..records {
        let name_end = skip_name(raw, at)?;
        let fixed = raw.get(name_end..name_end + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = raw.get(name_end + 10..name_end + 10 + rdlen)?;
        if rtype == 41 {
            return Some(rdata);
        }
        at = name_end + 10 + rdlen;
    }
    None
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(raw: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *raw.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return (at + 2 <= raw.len()).then_some(at + 2),
            l if l > 63 => return None,
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests;
