//! The UDP fast path: balanced A/AAAA answers copied from wire bytes
//! rendered once per plan, patched per query.
//!
//! Each variant of a balanced name is encoded once per plan with hickory's
//! encoder ([`super::answer::Rendered`]). [`answer`] reads
//! only the header, the question and an optional OPT record of a query,
//! finds the name in the plan and the answer for the client's listener
//! pool (by the query's EDNS Client Subnet, else the resolver's address:
//! [`ecs::client`]), copies a variant and patches the ID, the RD and CD
//! bits and the question name (the client's 0x20 case), and appends an OPT
//! record when the query had one (with the ECS option echoed and its
//! scope, when the query had one). Anything it does not fully
//! understand — another opcode or type, a compressed or odd question, EDNS
//! version or options it does not know, an answer that would not fit —
//! returns `None` and goes to the hickory handler, which gives the same
//! answer for the same plan (tested) or the right error.
//!
//! No allocation, no lock, no system call: a lookup and a copy.

use super::answer::{Plan, pick};
use super::ecs::{self, ClientSubnet};
use super::stats::QueryKey;
use super::{EDNS_PAYLOAD, udp_limit};
use std::net::IpAddr;

/// Wire type codes the fast path answers.
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// EDNS options a query may carry on the fast path besides ECS (8, read by
/// [`ecs`]): they ask for nothing a response must echo (NSID 3 is only sent
/// when configured, which floe never does; COOKIE 10 may be ignored by a
/// server without cookie support; tcp-keepalive 11 and PADDING 12 are for
/// TCP and privacy).
const KNOWN_OPTIONS: [u16; 4] = [3, 10, 11, 12];

/// The OPT record floe appends to answers of EDNS queries: root owner,
/// type 41, our UDP payload size, extended RCODE 0, version 0, no flags, no
/// options.
const OPT: [u8; 11] = {
    let [hi, lo] = EDNS_PAYLOAD.to_be_bytes();
    [0, 0, 41, hi, lo, 0, 0, 0, 0, 0, 0]
};

/// Answers `query`, sent by `resolver`, from `plan` into `out` when it is
/// a plain A or AAAA question for a balanced name: the response length and
/// where the query is counted (the balanced name's zone, the query type,
/// NOERROR), or `None` when the hickory handler must answer.
#[inline]
pub fn answer(
    query: &[u8],
    plan: &Plan,
    variant: usize,
    resolver: IpAddr,
    out: &mut [u8],
) -> Option<(usize, QueryKey)> {
    if query.len() < 12 + 5 {
        return None;
    }
    // Header: a query (QR 0), opcode QUERY, one question, no answer or
    // authority records, at most one additional (the OPT).
    if query[2] & 0xf8 != 0 || query[4..10] != [0, 1, 0, 0, 0, 0] || query[10] != 0 || query[11] > 1
    {
        return None;
    }
    let mut lower = [0u8; 255];
    let name_end = read_name(query, &mut lower)?;
    let name_len = name_end - 12;
    let qtype = u16::from_be_bytes([*query.get(name_end)?, *query.get(name_end + 1)?]);
    let qclass = u16::from_be_bytes([*query.get(name_end + 2)?, *query.get(name_end + 3)?]);
    if qclass != CLASS_IN {
        return None;
    }
    let question_end = name_end + 4;
    let edns = if query[11] == 1 {
        Some(read_opt(query, question_end)?)
    } else {
        None
    };
    if edns.is_none() && question_end != query.len() {
        return None;
    }
    let balanced = plan.find_wire(&lower[..name_len])?;
    let snap = plan.snapshot();
    let dns = &snap.config().dns;
    let subnet = edns.and_then(|(_, e)| e).filter(|_| dns.ecs);
    let client = ecs::client(
        &snap.topology,
        dns,
        resolver,
        subnet.as_ref(),
        balanced.varies(),
    );
    let rendered = &balanced.for_pool(client.pool).rendered;
    let rendered: &[u8] = match qtype {
        TYPE_A => pick(&rendered.a, variant),
        TYPE_AAAA => pick(&rendered.aaaa, variant),
        _ => return None,
    };
    let opt = match (edns, subnet) {
        (None, _) => 0,
        (Some(_), None) => OPT.len(),
        (Some(_), Some(e)) => OPT.len() + e.wire_len(),
    };
    let len = rendered.len() + opt;
    if rendered.len() < 12 + name_len || len > udp_limit(edns.map(|e| e.0)) || len > out.len() {
        return None;
    }
    out[..rendered.len()].copy_from_slice(rendered);
    out[0] = query[0];
    out[1] = query[1];
    // QR and AA set, RD copied; RA clear; CD copied; RCODE as rendered.
    out[2] = 0x84 | (query[2] & 0x01);
    out[3] = (query[3] & 0x10) | (rendered[3] & 0x0f);
    out[12..12 + name_len].copy_from_slice(&query[12..name_end]);
    if edns.is_some() {
        let at = rendered.len();
        out[at..at + OPT.len()].copy_from_slice(&OPT);
        if let Some(e) = subnet {
            let options = e.write(client.scope, &mut out[at + OPT.len()..len])?;
            out[at + 9..at + 11].copy_from_slice(&(options as u16).to_be_bytes());
        }
        let arcount = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&arcount.to_be_bytes());
    }
    let key = QueryKey::new(
        Some(plan.zones.slot(balanced.zone)),
        qtype,
        u16::from(rendered[3] & 0x0f),
    )
    .with_pool(plan.pool_slot(balanced, client.pool));
    Some((len, key))
}

/// A truncated answer to `query` in `out` (its question, TC set, no
/// records: never larger than the query), for a client over its response
/// rate: a real resolver retries over TCP, a spoofed victim gets nothing
/// bigger than what was sent. `None` for a query that is not one plain
/// question (then it is dropped).
pub fn truncated(query: &[u8], out: &mut [u8]) -> Option<usize> {
    if query.len() < 12 + 5 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let name_end = read_name(query, &mut [0u8; 255])?;
    let len = name_end + 4;
    if len > query.len() || len > out.len() {
        return None;
    }
    out[..len].copy_from_slice(&query[..len]);
    // QR and TC set, opcode copied, RD copied for QUERY; AA, RA, CD clear.
    let rd = if query[2] & 0x78 == 0 {
        query[2] & 0x01
    } else {
        0
    };
    out[2] = 0x82 | (query[2] & 0x78) | rd;
    out[3] = 0;
    out[6..12].fill(0);
    Some(len)
}

/// Reads the uncompressed question name at offset 12 into `lower` (ASCII
/// lower case); returns the offset just past it.
#[inline]
fn read_name(query: &[u8], lower: &mut [u8; 255]) -> Option<usize> {
    let mut pos = 12;
    loop {
        let len = *query.get(pos)? as usize;
        if len == 0 {
            let total = pos - 12 + 1;
            if total > 255 {
                return None;
            }
            lower[total - 1] = 0;
            return Some(pos + 1);
        }
        // Compression pointers and extended label types go to the handler.
        if len > 63 {
            return None;
        }
        let end = pos + 1 + len;
        if end - 12 >= 255 {
            return None;
        }
        let label = query.get(pos + 1..end)?;
        lower[pos - 12] = len as u8;
        for (d, s) in lower[pos - 12 + 1..end - 12].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        pos = end;
    }
}

/// Reads the OPT record at `pos`, which must end the message; returns the
/// client's UDP payload size and its client subnet option. `None` for
/// anything but version 0 with well-formed, known options (a malformed
/// client subnet too: the handler answers FORMERR).
#[inline]
fn read_opt(query: &[u8], pos: usize) -> Option<(u16, Option<ClientSubnet>)> {
    let rr = query.get(pos..pos + 11)?;
    if rr[0] != 0 || u16::from_be_bytes([rr[1], rr[2]]) != TYPE_OPT {
        return None;
    }
    let payload = u16::from_be_bytes([rr[3], rr[4]]);
    // rr[5]: extended RCODE (0 in a query); rr[6]: version.
    if rr[5] != 0 || rr[6] != 0 {
        return None;
    }
    let rdlen = usize::from(u16::from_be_bytes([rr[9], rr[10]]));
    let mut at = pos + 11;
    if at + rdlen != query.len() {
        return None;
    }
    let mut subnet = None;
    while at < query.len() {
        let opt = query.get(at..at + 4)?;
        let code = u16::from_be_bytes([opt[0], opt[1]]);
        let len = usize::from(u16::from_be_bytes([opt[2], opt[3]]));
        if code == ecs::OPTION_CODE && subnet.is_none() {
            subnet = Some(ClientSubnet::parse(query.get(at + 4..at + 4 + len)?).ok()?);
        } else if !KNOWN_OPTIONS.contains(&code) {
            return None;
        }
        at += 4 + len;
    }
    (at == query.len()).then_some((payload, subnet))
}
