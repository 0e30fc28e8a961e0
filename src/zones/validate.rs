//! Checks on a parsed zone that hickory's parser does not make: the rules an
//! authoritative server's data must follow (RFC 1034/1035/2181/2308), plus a
//! few warnings for classic operator mistakes.

use std::collections::BTreeMap;
use std::path::Path;

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, RecordSet, RecordType, RrKey};

use super::parse::{Info, owner_key};
use super::scan::Entry;
use crate::diagnostic::Diagnostic;

/// Where each record set and each name was first written in the file.
struct Positions<'a> {
    path: &'a Path,
    by_key: BTreeMap<(LowerName, RecordType), (usize, usize)>,
    by_name: BTreeMap<LowerName, (usize, usize)>,
}

impl<'a> Positions<'a> {
    fn new(path: &'a Path, entries: &[Entry], infos: &[Info]) -> Self {
        let mut by_key = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for (entry, info) in entries.iter().zip(infos) {
            if let Some((name, rtype)) = owner_key(info) {
                let pos = entry.position();
                by_name.entry(name.clone()).or_insert(pos);
                by_key.entry((name, rtype)).or_insert(pos);
            }
        }
        Positions {
            path,
            by_key,
            by_name,
        }
    }

    /// Where the record set was first written, or the whole file when that
    /// is unknown.
    fn of(&self, key: &RrKey) -> At<'a> {
        let (line, col) = self
            .by_key
            .get(&(key.name.clone(), key.record_type))
            .or_else(|| self.by_name.get(&key.name))
            .copied()
            .unwrap_or((0, 0));
        At(self.path, line, col)
    }
}

/// A place to report at: file, line and column ((0, 0): the whole file).
#[derive(Clone, Copy)]
struct At<'a>(&'a Path, usize, usize);

impl At<'_> {
    fn error(self, message: String) -> Diagnostic {
        Diagnostic::error(self.0, self.1, self.2, message)
    }

    fn warning(self, message: String) -> Diagnostic {
        Diagnostic::warning(self.0, self.1, self.2, message)
    }
}

/// All checks on one zone's records; `records` is hickory's parse result.
pub(super) fn validate(
    path: &Path,
    origin: &Name,
    records: &BTreeMap<RrKey, RecordSet>,
    entries: &[Entry],
    infos: &[Info],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let pos = Positions::new(path, entries, infos);
    let whole_file = At(path, 0, 0);
    let apex = LowerName::new(origin);

    for (key, rrset) in records {
        let at = pos.of(key);
        let (name, rtype) = (&key.name, key.record_type);
        if !apex.zone_of(name) {
            out.push(at.error(format!(
                "{name} {rtype} is outside the zone {origin}: a zone file may only hold names at or below its origin"
            )));
            continue;
        }
        if rrset.dns_class() != DNSClass::IN {
            out.push(at.error(format!(
                "{name} {rtype} has class {}: floe serves class IN only",
                rrset.dns_class()
            )));
        }
        if rtype == RecordType::SOA && *name != apex {
            out.push(at.error(format!(
                "SOA record at {name}: only the zone apex {origin} may have one (a separate zone needs its own file)"
            )));
        }
        if doubled_origin(origin, name) {
            out.push(at.warning(format!(
                "owner name {name} repeats the zone origin: is a trailing dot missing?"
            )));
        }
        for record in rrset.records_without_rrsigs() {
            for target in rdata_names(&record.data) {
                if doubled_origin(origin, target) {
                    out.push(at.warning(format!(
                        "{name} {rtype} points at {target}, which repeats the zone origin: is a trailing dot missing?"
                    )));
                }
            }
        }
    }

    // The apex: one SOA (hickory refuses a second at the same name) and NS.
    let soa_key = RrKey::new(apex.clone(), RecordType::SOA);
    match records
        .get(&soa_key)
        .and_then(|s| s.records_without_rrsigs().next())
    {
        None => out.push(whole_file.error(format!("no SOA record at the zone apex {origin}"))),
        Some(record) => {
            if let RData::SOA(soa) = &record.data
                && record.ttl > soa.minimum
            {
                let (ttl, min) = (record.ttl, soa.minimum);
                out.push(pos.of(&soa_key).warning(format!(
                    "the SOA record's TTL {ttl} is larger than its MINIMUM {min}: negative answers \
                     carry the SOA with TTL min({ttl}, {min}) = {min} (RFC 2308), so the larger TTL \
                     only applies to SOA queries"
                )));
            }
        }
    }
    let ns_key = RrKey::new(apex.clone(), RecordType::NS);
    match records.get(&ns_key) {
        None => out.push(whole_file.error(format!(
            "no NS record at the zone apex {origin}: list floe's name servers (the ones the parent zone delegates to)"
        ))),
        Some(ns_set) => {
            for record in ns_set.records_without_rrsigs() {
                let RData::NS(ns) = &record.data else {
                    continue;
                };
                let target = LowerName::new(&ns.0);
                let has_address = [RecordType::A, RecordType::AAAA]
                    .into_iter()
                    .any(|t| records.contains_key(&RrKey::new(target.clone(), t)));
                if apex.zone_of(&target) && !has_address {
                    out.push(pos.of(&ns_key).warning(format!(
                        "name server {} is inside {origin} but has no A or AAAA record here: resolvers need that glue to reach it",
                        ns.0
                    )));
                }
            }
        }
    }

    // A CNAME must be alone at its name (RFC 1034 3.6.2, RFC 2181 10.1).
    let mut by_name: BTreeMap<&LowerName, Vec<RecordType>> = BTreeMap::new();
    for key in records.keys() {
        by_name.entry(&key.name).or_default().push(key.record_type);
    }
    for (name, types) in &by_name {
        if types.contains(&RecordType::CNAME) && types.len() > 1 {
            let others: Vec<String> = types
                .iter()
                .filter(|t| **t != RecordType::CNAME)
                .map(ToString::to_string)
                .collect();
            let at = pos.of(&RrKey::new((*name).clone(), RecordType::CNAME));
            out.push(at.error(format!(
                "{name} has a CNAME and other data ({}): a CNAME must be the only record at its name",
                others.join(", ")
            )));
        }
    }
    // hickory keeps only the last of several CNAMEs at one name, silently.
    let mut first_cname: BTreeMap<LowerName, usize> = BTreeMap::new();
    for (entry, info) in entries.iter().zip(infos) {
        let Some((name, RecordType::CNAME)) = owner_key(info) else {
            continue;
        };
        let (line, col) = entry.position();
        if let Some(first) = first_cname.get(&name) {
            out.push(At(path, line, col).error(format!(
                "second CNAME at {name} (the first is on line {first}): a name can have only one CNAME"
            )));
        } else {
            first_cname.insert(name, line);
        }
    }
    out
}

/// Domain names inside record data that a missing trailing dot would mangle.
fn rdata_names(data: &RData) -> Vec<&Name> {
    match data {
        RData::NS(n) => vec![&n.0],
        RData::CNAME(n) => vec![&n.0],
        RData::PTR(n) => vec![&n.0],
        RData::MX(mx) => vec![&mx.exchange],
        RData::SRV(srv) => vec![&srv.target],
        RData::SOA(soa) => vec![&soa.mname, &soa.rname],
        _ => Vec::new(),
    }
}

/// True for `x.stream.example.org.stream.example.org.`: the result of writing
/// `x.stream.example.org` without the final dot in a zone whose origin is
/// `stream.example.org.`.
fn doubled_origin(origin: &Name, name: &Name) -> bool {
    let o: Vec<&[u8]> = origin.iter().collect();
    let n: Vec<&[u8]> = name.iter().collect();
    let k = o.len();
    if k == 0 || n.len() < 2 * k {
        return false;
    }
    let eq = |a: &[&[u8]], b: &[&[u8]]| a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y));
    let tail = &n[n.len() - 2 * k..];
    eq(&tail[..k], &o) && eq(&tail[k..], &o)
}
