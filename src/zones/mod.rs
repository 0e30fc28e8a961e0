//! The operator's RFC 1035 zone files: loading, checking, and lookup.
//!
//! floe is authoritative for one or more zones (e.g. `stream.example.org.`).
//! Their static records (SOA, NS and glue, `www`, TXT, ...) live in zone
//! files, one zone per `*.zone` file in the directory `[dns] zones` names.
//! Balanced names (`live.stream.example.org.`) are *not* written there: floe
//! synthesizes their answers from the relay state.
//!
//! [`ZoneSet::load`] reads every `*.zone` file, parses it with hickory-proto
//! 0.26's zone-file parser (so floe serves exactly what hickory reads),
//! places every parse error at `file:line:col` (hickory's errors carry no
//! position; the private `parse` module explains how floe finds it), and
//! checks what a parser does not: one SOA and some NS at the apex, no names
//! outside the origin, a CNAME alone at its name, class IN. The DNS server then finds the zone for
//! a query name with [`ZoneSet::find`] and serves its static records through
//! hickory's in-memory handler built by [`Zone::to_handler`].
//!
//! A zone's origin is the `$ORIGIN` in effect at the file's first record, or
//! else the file name without `.zone` (`stream.example.org.zone` ->
//! `stream.example.org.`).

mod parse;
mod scan;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::iter;
use std::path::{Path, PathBuf};

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, ZoneType};

use crate::diagnostic::{Diagnostic, Diagnostics};

/// The file-name suffix of zone files.
const ZONE_SUFFIX: &str = ".zone";

/// Every zone floe is authoritative for, loaded and checked.
///
/// Only [`ZoneSet::load`] makes one, and only when no file had an error, so
/// each zone is known to be servable.
#[derive(Debug, Clone)]
pub struct ZoneSet {
    /// In file-name order.
    zones: Vec<Zone>,
    /// Indices into `zones`, deepest origin first, for longest-suffix match.
    by_depth: Vec<usize>,
}

/// One zone: its origin, the file it came from and its static records.
///
/// The fields are public to read; a `Zone` is only made by
/// [`ZoneSet::load`], which guarantees an SOA and NS at the apex, so do not
/// remove records from a copy and then call [`Zone::soa`].
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone's origin (apex), fully qualified.
    pub origin: Name,
    /// The file the zone was loaded from (the zones directory joined with
    /// the file name).
    pub file: PathBuf,
    /// The static records as hickory's parser produced them, keyed by
    /// (lower-cased name, type).
    pub records: BTreeMap<RrKey, RecordSet>,
    /// Every name that exists: record owners and the empty non-terminals
    /// between them and the origin (ordered case-insensitively by hickory).
    names: BTreeSet<Name>,
}

impl ZoneSet {
    /// Loads every `*.zone` file directly in `dir` (sorted by name; hidden
    /// files such as editor lock files are skipped).
    ///
    /// Returns the zones only when there is no error, together with every
    /// diagnostic found (errors and warnings, each with its file and, where
    /// known, line and column). A missing or unreadable directory, a
    /// directory without zone files, a zone defined by two files, and any
    /// error in any file are errors: the caller keeps serving what it had.
    pub fn load(dir: &Path) -> (Option<ZoneSet>, Diagnostics) {
        let files = match zone_files(dir) {
            Ok(files) => files,
            Err(e) => return (None, Diagnostics(vec![Diagnostic::error(dir, 0, 0, e)])),
        };
        let loads = files.into_iter().map(|path| {
            let load = match std::fs::read(&path) {
                Ok(bytes) => load_bytes(&path, &bytes),
                Err(e) => FileLoad::failed(Diagnostic::error(
                    &path,
                    0,
                    0,
                    format!("cannot read zone file: {e}"),
                )),
            };
            (path, load)
        });
        ZoneSet::collect(loads)
    }

    /// The zone of one file's bytes, loaded and checked as [`ZoneSet::load`]
    /// loads `file` (whose name gives the origin when there is no
    /// `$ORIGIN`), without reading the disk: for bytes that are not in a
    /// directory (the fuzz targets in `tests/fuzz`).
    pub fn load_file_bytes(file: &Path, bytes: &[u8]) -> (Option<ZoneSet>, Diagnostics) {
        ZoneSet::collect(iter::once((file.to_path_buf(), load_bytes(file, bytes))))
    }

    /// The set of the files' zones when none has an error (a zone defined
    /// by two files is one), with every diagnostic.
    fn collect(loads: impl Iterator<Item = (PathBuf, FileLoad)>) -> (Option<ZoneSet>, Diagnostics) {
        let mut diags = Diagnostics::default();
        let mut zones: Vec<Zone> = Vec::new();
        // Every origin seen so far, also from files with errors, so a
        // duplicate is reported even when one copy is broken.
        let mut seen: Vec<(Name, PathBuf)> = Vec::new();
        for (path, file) in loads {
            diags.0.extend(file.diags.0);
            if let Some((origin, (line, col))) = file.origin {
                if let Some((_, first)) = seen.iter().find(|(o, _)| *o == origin) {
                    diags.push(Diagnostic::error(
                        &path,
                        line,
                        col,
                        format!(
                            "zone {origin} is also defined by {}: each zone must come from exactly one file",
                            first.display()
                        ),
                    ));
                    continue;
                }
                seen.push((origin, path.clone()));
            }
            zones.extend(file.zone);
        }
        if diags.has_errors() {
            return (None, diags);
        }
        let mut by_depth: Vec<usize> = (0..zones.len()).collect();
        by_depth.sort_by_key(|&i| std::cmp::Reverse(zones[i].origin.iter().count()));
        (Some(ZoneSet { zones, by_depth }), diags)
    }

    /// All zones, in the order of their file names.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone `name` belongs to: the one whose origin is the longest
    /// suffix of `name`, compared case-insensitively. `None` means floe is
    /// not authoritative for the name (answer REFUSED).
    ///
    /// Takes a `&LowerName` too (it dereferences to `Name`).
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.by_depth
            .iter()
            .map(|&i| &self.zones[i])
            .find(|z| z.origin.zone_of(name))
    }
}

impl Zone {
    /// The record set of `rtype` at `name`, if the zone file has one.
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&RecordSet> {
        self.records.get(&RrKey::new(LowerName::new(name), rtype))
    }

    /// The apex SOA record (name, TTL, class and data).
    pub fn soa_record(&self) -> &Record {
        self.rrset(&self.origin, RecordType::SOA)
            .and_then(|s| s.records_without_rrsigs().next())
            .expect("a loaded zone has an SOA at its apex (checked by ZoneSet::load)")
    }

    /// The apex SOA data (serial, timers, MINIMUM).
    pub fn soa(&self) -> &SOA {
        match &self.soa_record().data {
            RData::SOA(soa) => soa,
            _ => unreachable!("the SOA record set holds SOA data"),
        }
    }

    /// The TTL of negative answers and of the SOA in their authority
    /// section: min(SOA TTL, MINIMUM), per RFC 2308.
    pub fn negative_ttl(&self) -> u32 {
        self.soa_record().ttl.min(self.soa().minimum)
    }

    /// True when `name` exists in the zone: it owns records, or it is an
    /// empty non-terminal (a name with no records but with names below it).
    /// Case-insensitive; a relative name is taken as fully qualified.
    /// Wildcard owners (`*.x`) match only themselves here.
    pub fn contains_name(&self, name: &Name) -> bool {
        if name.is_fqdn() {
            self.names.contains(name)
        } else {
            self.names.contains(&fqdn(name.clone()))
        }
    }

    /// hickory-server's in-memory authoritative handler for this zone
    /// (`ZoneType::Primary`, zone transfers denied), holding a copy of the
    /// records; hand it to a `Catalog` or call it directly.
    pub fn to_handler(&self) -> InMemoryZoneHandler {
        self.try_handler()
            .expect("hickory accepted this zone when it was loaded (checked by ZoneSet::load)")
    }

    fn try_handler(&self) -> Result<InMemoryZoneHandler, String> {
        InMemoryZoneHandler::new(
            self.origin.clone(),
            self.records.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
    }

    fn new(origin: Name, file: PathBuf, records: BTreeMap<RrKey, RecordSet>) -> Self {
        let mut names = BTreeSet::new();
        let depth = origin.iter().count();
        for key in records.keys() {
            let mut name = fqdn(Name::from(&key.name));
            if !origin.zone_of(&name) {
                continue;
            }
            while name.iter().count() > depth && names.insert(name.clone()) {
                name = name.base_name();
            }
            names.insert(name);
        }
        names.insert(origin.clone());
        Zone {
            origin,
            file,
            records,
            names,
        }
    }
}

/// The `*.zone` files directly in `dir`, sorted by file name, or why there
/// are none.
fn zone_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let unreadable = |e| format!("cannot read the zones directory: {e}");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        // Hidden files (`.zone` too) and names that are not UTF-8 are left
        // out. Follows symlinks: a linked zone file counts, a directory does
        // not.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
        if !name.starts_with('.') && name.ends_with(ZONE_SUFFIX) && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err("no *.zone files in the zones directory".into());
    }
    files.sort();
    Ok(files)
}

/// One file's bytes, loaded: UTF-8 text (an invalid byte is reported at
/// its position) parsed and checked.
fn load_bytes(path: &Path, bytes: &[u8]) -> FileLoad {
    match std::str::from_utf8(bytes) {
        Ok(text) => load_text(path, text),
        Err(e) => {
            // The prefix is valid UTF-8 by construction.
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let line = valid.matches('\n').count() + 1;
            let col = valid.chars().rev().take_while(|&c| c != '\n').count() + 1;
            FileLoad::failed(Diagnostic::error(
                path,
                line,
                col,
                "zone file is not valid UTF-8",
            ))
        }
    }
}

/// The origin a file name implies: `stream.example.org.zone` ->
/// `stream.example.org.`.
fn origin_from_file_name(path: &Path) -> Option<Name> {
    let name = path.file_name()?.to_str()?.strip_suffix(ZONE_SUFFIX)?;
    Name::from_utf8(name)
        .ok()
        .filter(|_| !name.is_empty())
        .map(fqdn)
}

/// `name`, fully qualified.
fn fqdn(mut name: Name) -> Name {
    name.set_fqdn(true);
    name
}

/// What loading one file's text found.
#[derive(Default)]
struct FileLoad {
    /// The zone, when the file has no error.
    zone: Option<Zone>,
    /// The zone's origin when it could be told, with the position of the
    /// `$ORIGIN` line that set it ((0, 0) when the file name did).
    origin: Option<(Name, (usize, usize))>,
    /// Errors and warnings, whole-file ones first, then in file order.
    diags: Diagnostics,
}

impl FileLoad {
    /// A file that could not be read as text: `why`, nothing else.
    fn failed(why: Diagnostic) -> FileLoad {
        FileLoad {
            diags: Diagnostics(vec![why]),
            ..FileLoad::default()
        }
    }
}

/// Parses and checks one file's text.
fn load_text(path: &Path, text: &str) -> FileLoad {
    let mut load = FileLoad::default();
    let entries = scan::scan(text);
    let (declared, origin_pos) = match parse::declared_origin(&entries) {
        Some((name, i)) => (Some(name), entries[i].position()),
        None => (None, (0, 0)),
    };
    let from_name = origin_from_file_name(path);
    let Some(origin) = declared.or_else(|| from_name.clone()) else {
        load.diags.push(Diagnostic::error(
            path,
            0,
            0,
            "cannot tell the zone's origin: the file name (without .zone) is not a domain name \
             and there is no $ORIGIN line before the first record",
        ));
        return load;
    };
    load.origin = Some((origin.clone(), origin_pos));
    // hickory starts from the file-name origin, as floe documents; a leading
    // $ORIGIN then replaces it before any record is read.
    let start = from_name.unwrap_or_else(|| origin.clone());
    let infos = parse::analyze(&entries, &start);
    let parsed = parse::parse(path, text, &entries, &infos, &start);
    load.diags.0.extend(parsed.errors);
    if let Some(records) = parsed.records {
        let diags = &mut load.diags.0;
        diags.extend(parse::extra_tokens(path, &entries, &infos));
        diags.extend(validate::validate(
            path, &origin, &records, &entries, &infos,
        ));
        if !load.diags.has_errors() {
            let zone = Zone::new(origin, path.to_path_buf(), records);
            match zone.try_handler() {
                Ok(_) => load.zone = Some(zone),
                Err(e) => load.diags.push(Diagnostic::error(
                    path,
                    0,
                    0,
                    format!("hickory's in-memory zone handler refused the zone: {e}"),
                )),
            }
        }
    }
    load.diags.0.sort_by_key(|d| (d.line, d.column));
    load
}
