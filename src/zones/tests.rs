//! Unit tests: loading, positions of parse errors, validation, lookup.

use std::fs;
use std::str::FromStr;

use hickory_proto::rr::{LowerName, Name, RecordType};
use hickory_proto::serialize::txt::{ParseError, Parser};
use hickory_server::zone_handler::{LookupControlFlow, LookupOptions, ZoneHandler};
use proptest::prelude::*;
use tempfile::TempDir;

use super::*;
use crate::diagnostic::Severity;

/// The head of a valid zone for `a.example.` (no `$ORIGIN`: the file name
/// gives it). Five lines.
const HEAD: &str = "\
$TTL 300
@ 60 IN SOA ns1.a.example. hostmaster.a.example. 1 3600 600 86400 60
@ IN NS ns1.a.example.
ns1 IN A 192.0.2.53
www IN A 192.0.2.80
";

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// A directory with these files; each zone file's text is also checked
/// with [`agrees_with_hickory`].
fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (file, text) in files {
        let path = dir.path().join(file);
        if let Some(origin) = origin_from_file_name(&path).filter(|_| !file.starts_with('.')) {
            agrees_with_hickory(text, &origin);
        }
        fs::write(path, text).unwrap();
    }
    dir
}

fn errors(d: &Diagnostics) -> Vec<&Diagnostic> {
    d.0.iter().filter(|d| d.is_error()).collect()
}

fn warnings(d: &Diagnostics) -> Vec<&Diagnostic> {
    d.0.iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect()
}

/// Loads one file's text as `a.example.zone`.
fn load(text: &str) -> (Option<Zone>, Diagnostics) {
    let load = load_text(Path::new("zones/a.example.zone"), text);
    (load.zone, load.diags)
}

/// [`load`], after checking the text with [`agrees_with_hickory`].
fn one(text: &str) -> (Option<Zone>, Diagnostics) {
    agrees_with_hickory(text, &name("a.example."));
    load(text)
}

/// The differential test of [`scan`] against hickory's parser: panics when
/// they read `text` (a zone file for `origin`) differently.
///
/// - Lexical errors: hickory's lexer fails exactly when the scanner finds
///   an error, unless hickory's parser fails first, on the tokens before it.
/// - Entries and tokens: the entries (before a lexical error hickory's lexer
///   also finds), rewritten one per line from the scanned tokens (words
///   quoted, comments dropped), read as the original text does: the same
///   records, or the same error.
/// - Owners and types: when hickory accepts the file, [`parse::analyze`]
///   finds an owner and type for exactly hickory's record sets.
fn agrees_with_hickory(text: &str, origin: &Name) {
    let hickory = |t: &str| Parser::new(t, None, Some(origin.clone())).parse();
    let entries = scan::scan(text);
    let lex_error = entries.last().is_some_and(|e| e.lex_error.is_some());
    let whole = hickory(text);
    let (read, entries_read) = match (&whole, lex_error) {
        (Err(ParseError::Lexer(e)), false) => panic!("only hickory finds `{e}` in:\n{text}"),
        (Ok(_), true) => panic!("hickory accepts what the scanner does not:\n{text}"),
        (Err(ParseError::Lexer(_)), true) => {
            let last = &entries[entries.len() - 1];
            (hickory(&text[..last.start]), &entries[..entries.len() - 1])
        }
        _ => (whole.clone(), &entries[..]),
    };
    let rewritten: String = entries_read.iter().map(|e| rewrite(text, e)).collect();
    match (&read, &hickory(&rewritten)) {
        (Ok(a), Ok(b)) => assert!(a == b, "rewritten text reads differently:\n{rewritten}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{rewritten}"),
        (a, b) => panic!(
            "hickory: {:?} for the text, {:?} rewritten:\n{rewritten}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
    if let Ok((_, records)) = whole {
        let ours: BTreeSet<_> = parse::analyze(&entries, origin)
            .iter()
            .filter_map(parse::owner_key)
            .collect();
        let theirs: BTreeSet<_> = records
            .keys()
            .map(|k| (k.name.clone(), k.record_type))
            .collect();
        assert_eq!(ours, theirs, "owners and types differ in:\n{text}");
    }
}

/// One entry written from its scanned tokens: words quoted, lists on one
/// line, no comments.
fn rewrite(text: &str, entry: &scan::Entry) -> String {
    let quoted = |t: &scan::Tok| {
        let line = text.split('\n').nth(t.line - 1);
        line.and_then(|l| l.chars().nth(t.col - 1)) == Some('"')
    };
    let parts: Vec<String> = entry
        .tokens
        .iter()
        .map(|t| match t.kind {
            scan::Kind::Dollar => format!("${}", t.text),
            scan::Kind::Word if quoted(t) => format!("\"{}\"", t.text),
            scan::Kind::Word => {
                format!("\"{}\"", t.text.replace('\\', "\\\\").replace('"', "\\\""))
            }
            // The blank (""), `@`, `(`, `)` and list items, as written.
            _ => t.text.clone(),
        })
        .collect();
    let end = if text[..entry.end].ends_with('\n') {
        "\n"
    } else {
        ""
    };
    parts.join(" ") + end
}

/// The single error of loading `text`, as (line, column, message).
fn only_error(text: &str) -> (usize, usize, String) {
    let (z, d) = one(text);
    assert!(z.is_none(), "loaded despite errors: {d}");
    let e = errors(&d);
    assert_eq!(e.len(), 1, "expected one error, got:\n{d}");
    (e[0].line, e[0].column, e[0].message.clone())
}

#[test]
fn example_zone_loads_without_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let (set, d) = ZoneSet::load(&dir);
    assert!(d.0.is_empty(), "example zone has diagnostics:\n{d}");
    let set = set.unwrap();
    let zone = set
        .find(&name("live.stream.example.org."))
        .expect("zone for the balanced name");
    assert_eq!(zone.origin, name("stream.example.org."));
    assert_eq!(zone.file, dir.join("stream.example.org.zone"));
    assert_eq!(zone.soa().minimum, 60);
    assert!(zone.soa_record().ttl <= zone.soa().minimum);
    assert_eq!(zone.negative_ttl(), 60);
    assert_eq!(
        zone.rrset(&zone.origin, RecordType::NS)
            .unwrap()
            .records_without_rrsigs()
            .count(),
        2
    );
    for glue in [
        "ns1.stream.example.org.",
        "ns2.stream.example.org.",
        "www.stream.example.org.",
    ] {
        assert!(zone.rrset(&name(glue), RecordType::A).is_some(), "{glue}");
    }
    assert!(zone.rrset(&zone.origin, RecordType::TXT).is_some());
    // floe synthesizes the balanced name: the file must not define it.
    assert!(!zone.contains_name(&name("live.stream.example.org.")));
}

#[test]
fn shipped_zones_agree_with_hickory() {
    for dir in ["zones", "config/zones"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for path in zone_files(&dir).unwrap_or_default() {
            let origin = origin_from_file_name(&path).unwrap();
            agrees_with_hickory(&fs::read_to_string(&path).unwrap(), &origin);
        }
    }
}

/// hickory 0.26 departs from RFC 1035 in these three ways, and [`scan`]
/// with it: each line reads like the one beside it. When this fails,
/// hickory has changed: make the scanner follow.
#[test]
fn hickory_departs_from_rfc_1035() {
    let origin = name("a.example.");
    let parse = |line: &str| {
        let text = format!("{HEAD}{line}\n");
        agrees_with_hickory(&text, &origin);
        Parser::new(text, None, Some(origin.clone()))
            .parse()
            .unwrap()
    };
    for (line, read_as) in [
        ("t TXT ( \"a b\" )", "t TXT \"\\\"a\" \"b\\\"\""),
        ("t TXT a\\;b c", "t TXT \"a\\\\\""),
        ("@TXT x", "@ TXT x"),
    ] {
        assert_eq!(parse(line), parse(read_as), "{line}");
    }
}

#[tokio::test]
async fn handler_serves_static_records() {
    let (zone, d) = one(HEAD);
    let zone = zone.unwrap_or_else(|| panic!("{d}"));
    let handler = zone.to_handler();
    let www = LowerName::new(&name("www.a.example."));
    let found = match handler
        .lookup(&www, RecordType::A, None, LookupOptions::default())
        .await
    {
        LookupControlFlow::Continue(Ok(found)) | LookupControlFlow::Break(Ok(found)) => found,
        other => panic!("www.a.example. A not found: {other}"),
    };
    let addrs: Vec<String> = found.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(addrs, ["192.0.2.80"]);
}

#[test]
fn syntax_error_names_file_line_and_column() {
    // Line 7: a bad address in column 10.
    let text = format!("{HEAD}; a comment\nbad IN A 300.1.2.3\nok IN A 192.0.2.9\n");
    let dir = dir_with(&[("a.example.zone", &text)]);
    let (set, d) = ZoneSet::load(dir.path());
    assert!(set.is_none());
    let e = errors(&d);
    assert_eq!(e.len(), 1, "{d}");
    assert_eq!(e[0].file, dir.path().join("a.example.zone"));
    assert_eq!((e[0].line, e[0].column), (7, 10));
    assert!(e[0].message.contains("300.1.2.3"), "{}", e[0].message);
    let shown = e[0].to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:7:10: error: ",
            dir.path().join("a.example.zone").display()
        )),
        "{shown}"
    );
}

/// Texts with exactly one error: where it is and words its message has.
#[test]
fn each_error_is_placed_and_explained() {
    let h = |lines: &str| format!("{HEAD}{lines}\n");
    let multi_line_soa = "\
$TTL 300
@ 60 IN SOA ns1.a.example. hostmaster.a.example. (
        1      ; serial
        1h     ; refresh
        10x    ; retry: not a time
        1w 60 )
@ IN NS ns1.a.example.
";
    let cases: &[(String, (usize, usize), &[&str])] = &[
        // An unknown type: at the type.
        (h("x 300 IN AA 192.0.2.1"), (6, 10), &["AA"]),
        // Inside a multi-line SOA: at the field.
        (multi_line_soa.into(), (5, 9), &["10x"]),
        // After multi-line records: on its own line.
        (
            h("long IN TXT ( \"part one; not a comment\"\n  \"part ( two\" ) ; comment \" with a quote\nlate IN A 192.0.2.300"),
            (8, 11),
            &[],
        ),
        // Lexical errors.
        (h("txt IN TXT \"never closed"), (6, 12), &["quoted"]),
        (h("x IN A 192.0.2.1 )"), (6, 18), &[]),
        // An unclosed quote is blamed even when a later quote closes it,
        // and even when the rest happens to parse.
        (
            h("txt IN TXT \"no end\nx IN A 192.0.2.1 ; a \"quote\" (\ny IN A 192.0.2.2"),
            (6, 12),
            &["closing"],
        ),
        (h("txt IN TXT \"no end\nx IN A 192.0.2.1 \""), (6, 12), &[]),
        // A failed record does not cascade: the SOA carries the only TTL;
        // the records after it inherit that TTL through the placeholder.
        (
            "@ 60 IN SOA ns1.a.example. hostmaster.a.example. 1 2 3 4 x5\n@ NS ns1.a.example.\nns1 A 192.0.2.1\n".into(),
            (1, 58),
            &[],
        ),
        // Directives; hickory would take `minutes` as the owner of the
        // records that follow.
        (HEAD.replacen("$TTL 300", "$TTL 5minutes", 1), (1, 6), &[]),
        (HEAD.replacen("$TTL 300", "$TTL 5 minutes", 1), (1, 8), &[]),
        (h("$GENERATE 1-5 x$ A 192.0.2.$"), (6, 1), &["$GENERATE"]),
        (h("$INCLUDE other.zone"), (6, 1), &["$INCLUDE"]),
        // Explained: `@` in record data, a missing TTL, extra record data.
        (h("alias IN CNAME @"), (6, 16), &["trailing dot"]),
        (
            "@ IN SOA ns1.a.example. h.a.example. 1 2 3 4 5\n".into(),
            (1, 1),
            &["$TTL"],
        ),
        (h("two IN A 192.0.2.1 192.0.2.2"), (6, 20), &["192.0.2.2"]),
        // A second SOA, an SOA below the apex.
        (h("@ IN SOA ns1.a.example. h.a.example. 2 2 3 4 5"), (6, 1), &["SOA"]),
        (h("sub IN SOA ns1.a.example. h.a.example. 2 2 3 4 5"), (6, 1), &["apex"]),
        // A CNAME with other data, twice at one name.
        (
            h("alias IN CNAME www.a.example.\nalias IN TXT \"x\""),
            (6, 1),
            &["CNAME", "TXT"],
        ),
        (h("www IN CNAME other.example."), (6, 1), &["CNAME"]),
        (
            h("alias IN CNAME www.a.example.\nalias IN CNAME ns1.a.example."),
            (7, 1),
            &["only one CNAME"],
        ),
        // A record outside the origin, a class other than IN.
        (h("www.b.example. IN A 192.0.2.1"), (6, 1), &["outside"]),
        (h("version CH TXT \"1\""), (6, 1), &["class"]),
    ];
    for (text, at, words) in cases {
        let (line, col, msg) = only_error(text);
        assert_eq!((line, col), *at, "{msg}\n{text}");
        for word in *words {
            assert!(msg.contains(word), "{msg}");
        }
    }
}

#[test]
fn several_record_errors_are_all_reported() {
    let text = format!(
        "{HEAD}a IN A 1.2.3\nb IN A 192.0.2.2\nc IN AAAA 192.0.2.3\nd IN MX ten mail.a.example.\n"
    );
    let (z, d) = one(&text);
    assert!(z.is_none());
    let lines: Vec<usize> = errors(&d).iter().map(|e| e.line).collect();
    assert_eq!(lines, [6, 8, 9], "{d}");
}

#[test]
fn invalid_utf8_is_placed() {
    let dir = TempDir::new().unwrap();
    let mut bytes = HEAD.as_bytes().to_vec();
    bytes.extend_from_slice(b"txt IN TXT \"caf\xe9\"\n");
    fs::write(dir.path().join("a.example.zone"), bytes).unwrap();
    let (set, d) = ZoneSet::load(dir.path());
    assert!(set.is_none());
    let e = errors(&d);
    assert_eq!((e[0].line, e[0].column), (6, 16), "{d}");
}

#[test]
fn bytes_load_as_the_same_file_in_a_directory_would() {
    let mut bad = HEAD.as_bytes().to_vec();
    bad.extend_from_slice(b"txt IN TXT \"caf\xe9\"\n");
    for bytes in [HEAD.as_bytes(), &bad, b"(((", b"$ORIGIN b.example.\n"] {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("a.example.zone");
        fs::write(&path, bytes).unwrap();
        let (from_dir, d1) = ZoneSet::load(dir.path());
        let (from_bytes, d2) = ZoneSet::load_file_bytes(&path, bytes);
        assert_eq!(d1, d2);
        let origins = |s: Option<ZoneSet>| {
            s.map(|s| {
                s.zones()
                    .iter()
                    .map(|z| z.origin.clone())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(origins(from_dir), origins(from_bytes));
    }
}

#[test]
fn missing_soa_and_missing_ns() {
    let (z, d) = one("$TTL 60\n@ IN NS ns1.a.example.\nns1 IN A 192.0.2.1\n");
    assert!(z.is_none());
    assert!(
        errors(&d).iter().any(|e| e.message.contains("no SOA")),
        "{d}"
    );
    let (z, d) =
        one("$TTL 60\n@ IN SOA ns1.a.example. h.a.example. 1 2 3 4 60\nns1 IN A 192.0.2.1\n");
    assert!(z.is_none());
    assert!(
        errors(&d).iter().any(|e| e.message.contains("no NS")),
        "{d}"
    );
}

#[test]
fn duplicate_origin_names_both_files() {
    let other = HEAD.replace("$TTL 300", "$ORIGIN a.example.\n$TTL 300");
    let dir = dir_with(&[("a.example.zone", HEAD), ("b.zone", &other)]);
    let (set, d) = ZoneSet::load(dir.path());
    assert!(set.is_none());
    let e = errors(&d);
    assert_eq!(e.len(), 1, "{d}");
    assert_eq!(e[0].file, dir.path().join("b.zone"));
    assert_eq!(e[0].line, 1, "points at the $ORIGIN line");
    assert!(
        e[0].message
            .contains(&dir.path().join("a.example.zone").display().to_string()),
        "{}",
        e[0].message
    );
    assert!(e[0].message.contains("a.example."));
}

#[test]
fn duplicate_origin_is_reported_even_when_one_copy_is_broken() {
    let broken = format!("{HEAD}x IN A nope\n");
    let other = HEAD.replace("$TTL 300", "$ORIGIN A.Example.\n$TTL 300");
    let dir = dir_with(&[("a.example.zone", &broken), ("b.zone", &other)]);
    let (set, d) = ZoneSet::load(dir.path());
    assert!(set.is_none());
    let e = errors(&d);
    assert_eq!(e.len(), 2, "{d}");
    assert!(e[1].message.contains("also defined"), "{d}");
}

#[test]
fn soa_ttl_above_minimum_is_a_warning() {
    let (z, d) = one(&HEAD.replace("@ 60 IN SOA", "@ 3600 IN SOA"));
    assert!(z.is_some(), "a warning does not stop loading: {d}");
    let w = warnings(&d);
    assert_eq!(w.len(), 1, "{d}");
    assert_eq!(w[0].line, 2);
    assert!(w[0].message.contains("MINIMUM"), "{}", w[0].message);
    assert_eq!(z.unwrap().negative_ttl(), 60);
}

#[test]
fn missing_trailing_dot_and_glue_are_warned() {
    let text = HEAD.replace(
        "@ IN NS ns1.a.example.",
        "@ IN NS ns1.a.example\n@ IN NS ns2.a.example.",
    );
    let (z, d) = one(&text);
    assert!(z.is_some(), "{d}");
    let w = warnings(&d);
    assert!(w.iter().any(|w| w.message.contains("trailing dot")), "{d}");
    assert!(
        w.iter()
            .any(|w| w.message.contains("ns2.a.example.") && w.message.contains("glue")),
        "{d}"
    );
}

#[test]
fn origin_from_file_name_or_origin_line() {
    let dir = dir_with(&[
        ("a.example.zone", HEAD),
        (
            "named-by-origin.zone",
            &HEAD
                .replace("a.example.", "b.example.")
                .replace("$TTL", "$ORIGIN b.example.\n$TTL"),
        ),
        // A $ORIGIN after the first record only shortens names: the zone is
        // still the file's.
        (
            "c.example.zone",
            &format!(
                "{}$ORIGIN sub.c.example.\nx IN A 192.0.2.7\n",
                HEAD.replace("a.example.", "c.example.")
            ),
        ),
    ]);
    let (set, d) = ZoneSet::load(dir.path());
    let set = set.unwrap_or_else(|| panic!("{d}"));
    let origins: Vec<String> = set.zones().iter().map(|z| z.origin.to_string()).collect();
    assert_eq!(
        origins,
        ["a.example.", "c.example.", "b.example."],
        "sorted by file name"
    );
    let c = set.find(&name("x.sub.c.example.")).unwrap();
    assert!(c.contains_name(&name("x.sub.c.example.")));
    assert!(
        c.contains_name(&name("sub.c.example.")),
        "empty non-terminal"
    );
}

#[test]
fn file_name_that_is_not_a_name_needs_an_origin_line() {
    let path = Path::new("zones/bad..name.zone");
    let load = load_text(path, HEAD);
    assert!(load.zone.is_none());
    assert!(
        errors(&load.diags)[0].message.contains("$ORIGIN"),
        "{}",
        load.diags
    );
    let load = load_text(path, &format!("$ORIGIN a.example.\n{HEAD}"));
    assert!(load.zone.is_some(), "{}", load.diags);
}

#[test]
fn find_picks_the_longest_suffix_case_insensitively() {
    let parent = HEAD.replace("a.example.", "example.");
    let dir = dir_with(&[("example.zone", &parent), ("a.example.zone", HEAD)]);
    let (set, d) = ZoneSet::load(dir.path());
    let set = set.unwrap_or_else(|| panic!("{d}"));
    for (n, origin) in [
        ("www.a.example.", Some("a.example.")),
        ("WWW.A.Example.", Some("a.example.")),
        ("a.example.", Some("a.example.")),
        ("deep.er.a.EXAMPLE.", Some("a.example.")),
        ("b.example.", Some("example.")),
        ("Example.", Some("example.")),
        // Label boundaries, not string suffixes.
        ("aa.example.", Some("example.")),
        ("example.org.", None),
        (".", None),
    ] {
        let found = set.find(&name(n)).map(|z| z.origin.to_string());
        assert_eq!(found.as_deref(), origin, "{n}");
    }
    let lower = LowerName::new(&name("WWW.A.EXAMPLE."));
    assert_eq!(set.find(&lower).unwrap().origin, name("a.example."));
}

#[test]
fn contains_name() {
    let (z, d) = one(&format!("{HEAD}x.y.z IN A 192.0.2.1\n*.w IN A 192.0.2.2\n"));
    let z = z.unwrap_or_else(|| panic!("{d}"));
    for present in [
        "a.example.",
        "WWW.a.example.",
        "x.y.z.a.example.",
        "y.z.a.example.",
        "z.a.example.",
        "*.w.a.example.",
    ] {
        assert!(z.contains_name(&name(present)), "{present}");
    }
    for absent in [
        "live.a.example.",
        "q.x.y.z.a.example.",
        "example.",
        "www.b.example.",
        "v.w.a.example.",
    ] {
        assert!(!z.contains_name(&name(absent)), "{absent}");
    }
    assert!(
        z.contains_name(&Name::from_ascii("www.a.example").unwrap()),
        "relative taken as FQDN"
    );
}

#[test]
fn only_visible_zone_files_are_read() {
    let dir = dir_with(&[
        ("a.example.zone", HEAD),
        ("README", "not a zone"),
        ("a.example.zone~", "backup ((("),
        ("a.example.zone.bak", "backup ((("),
        (".#a.example.zone", "editor lock ((("),
        ("notes.txt", "((("),
    ]);
    fs::create_dir(dir.path().join("sub.zone")).unwrap();
    fs::write(dir.path().join("sub.zone").join("x.zone"), "(((").unwrap();
    let (set, d) = ZoneSet::load(dir.path());
    assert!(d.0.is_empty(), "{d}");
    assert_eq!(set.unwrap().zones().len(), 1);
}

#[test]
fn empty_or_missing_directory_is_an_error() {
    let dir = dir_with(&[("README", "nothing here")]);
    let (set, d) = ZoneSet::load(dir.path());
    assert!(set.is_none());
    assert_eq!(errors(&d).len(), 1);
    assert!(errors(&d)[0].message.contains("no *.zone files"), "{d}");
    assert_eq!(errors(&d)[0].file, dir.path());

    let missing = dir.path().join("does-not-exist");
    let (set, d) = ZoneSet::load(&missing);
    assert!(set.is_none());
    assert_eq!(errors(&d)[0].file, missing);
}

#[test]
fn one_bad_file_fails_the_set_but_all_files_are_checked() {
    let dir = dir_with(&[
        ("a.example.zone", &format!("{HEAD}x IN A nope\n")),
        ("b.example.zone", "$TTL 60\n"),
    ]);
    let (set, d) = ZoneSet::load(dir.path());
    assert!(set.is_none());
    let files: BTreeSet<PathBuf> = errors(&d).iter().map(|e| e.file.clone()).collect();
    assert_eq!(files.len(), 2, "{d}");
}

// ---- properties ----

/// Lines that are valid anywhere after [`HEAD`], some spanning lines, with
/// quotes, parentheses and semicolons in awkward places.
const GOOD: &[&str] = &[
    "h1 IN A 192.0.2.1",
    "h2 300 IN AAAA 2001:db8::2",
    "  IN A 192.0.2.3",
    "; a comment with \"quote and ( paren",
    "",
    "   ",
    "t1 IN TXT \"semi ; colon\" \"paren ( in quotes\"",
    "t2 IN TXT ( \"over\"\n   \"two lines\" )",
    "t3 IN TXT ( \"comment inside\" ; a ) comment\n  \"list\" )",
    "t4 IN TXT \"escaped \\\" quote\"",
    "mx 60 IN MX 10 mail.a.example.",
    "srv IN SRV 0 5 8000 relay.example.org.",
    "Upper.Case IN A 192.0.2.9",
    "$ORIGIN sub.a.example.",
    "$ORIGIN a.example.",
    "$TTL 120",
    "s2 IN SRV ( 0 5\n 8000 relay.example.org. )",
];

/// Lines that fail to parse in any context.
const BAD: &[&str] = &[
    "bad1 IN A 300.1.2.3",
    "bad2 IN NOTATYPE x",
    "bad3 IN A",
    "bad4 IN TXT \"unterminated",
    "bad5 IN A 192.0.2.1 )",
    "bad6 1x2y IN A 192.0.2.1",
    "bad7 IN MX ten mail.a.example.",
    "$TTL forever",
    "bad8 IN SOA a. b. (\n 1 2 3 4 nope )",
];

fn lines_of(parts: &[&str]) -> usize {
    parts.iter().map(|p| p.matches('\n').count() + 1).sum()
}

/// Loads `text`: every diagnostic's line is inside it.
fn lines_inside(text: &str) -> Result<(), TestCaseError> {
    let (_, d) = load(text);
    let lines = text.matches('\n').count() + 1;
    for diag in &d.0 {
        prop_assert!(diag.line <= lines, "{diag} beyond {lines} lines");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the text, loading returns diagnostics instead of panicking,
    /// and every position is inside the file.
    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        lines_inside(&text)?;
    }

    /// Zone-like text (the characters that matter to the lexer) never
    /// panics either; and where hickory's lexer fails, the scanner agrees
    /// that there is a lexical error.
    #[test]
    fn zone_like_text_never_panics(text in "[a-z@$(); \"\\\\\t\r\n.0-9A-Z]{0,300}") {
        lines_inside(&text)?;
        let origin = name("a.example.");
        if let Err(ParseError::Lexer(e)) = Parser::new(text.as_str(), None, Some(origin)).parse() {
            prop_assert!(scan::scan(&text).iter().any(|e| e.lex_error.is_some()), "hickory: {e}");
        }
    }

    /// Entry boundaries are places where hickory's parser can stop: when a
    /// file parses, every prefix ending at an entry boundary parses too.
    #[test]
    fn entry_boundaries_are_parser_boundaries(picks in prop::collection::vec(0..GOOD.len(), 0..12)) {
        let parts: Vec<&str> = picks.iter().map(|&i| GOOD[i]).collect();
        let text = format!("{HEAD}{}\n", parts.join("\n"));
        let origin = name("a.example.");
        prop_assert!(Parser::new(text.as_str(), None, Some(origin.clone())).parse().is_ok());
        agrees_with_hickory(&text, &origin);
        for e in scan::scan(&text) {
            let prefix = &text[..e.end];
            prop_assert!(Parser::new(prefix, None, Some(origin.clone())).parse().is_ok(), "prefix fails:\n{prefix}");
        }
    }

    /// One bad line among good ones is reported on exactly its line.
    #[test]
    fn the_bad_line_is_found(
        before in prop::collection::vec(0..GOOD.len(), 0..10),
        bad in 0..BAD.len(),
        after in prop::collection::vec(0..GOOD.len(), 0..10),
    ) {
        let mut parts = vec![HEAD.trim_end()];
        parts.extend(before.iter().map(|&i| GOOD[i]));
        let bad_line = lines_of(&parts) + 1;
        parts.push(BAD[bad]);
        parts.extend(after.iter().map(|&i| GOOD[i]));
        let text = format!("{}\n", parts.join("\n"));
        let (z, d) = one(&text);
        prop_assert!(z.is_none());
        let first = errors(&d).first().map(|e| e.line);
        let lines = bad_line..=bad_line + BAD[bad].matches('\n').count();
        prop_assert!(
            first.is_some_and(|l| lines.contains(&l)),
            "first error on line {first:?}, not {lines:?}:\n{d}in:\n{text}"
        );
    }

    /// Through the directory too: random bytes in a zone file never panic.
    #[test]
    fn arbitrary_bytes_in_a_file_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = TempDir::new().unwrap();
        fs::write(dir.path().join("a.example.zone"), &bytes).unwrap();
        let (set, d) = ZoneSet::load(dir.path());
        prop_assert!(set.is_some() != d.has_errors());
    }
}
