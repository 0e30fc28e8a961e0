//! One zone file's text to hickory's record map, with every error placed at
//! a line and column.
//!
//! hickory-proto 0.26's `serialize::txt::Parser` is the parser: floe serves
//! exactly what it reads. Its errors carry no position, so this module finds
//! the position itself:
//!
//! 1. [`scan`](super::scan) splits the file into entries (newlines outside
//!    parentheses and quotes end them) by RFC 1035's rules as hickory
//!    applies them; `tests.rs` checks that the two agree.
//! 2. The parser is sequential and keeps no lookahead across entries, so if
//!    the file fails, the first failing entry is the smallest `k` such that
//!    the text of entries `0..=k` fails to parse. A binary search over those
//!    prefixes finds it with O(log n) re-parses.
//! 3. Within that entry, [`analyze`] mirrors the parser's owner, TTL, class
//!    and type steps on the scanned tokens to point at the token at fault;
//!    failures past the type are in the record data.
//! 4. To report more than one error, the failing record is replaced by a
//!    harmless placeholder that keeps the parser's state (owner, TTL, class)
//!    and the search continues after it. A bad `$ORIGIN` or `$TTL`, or a
//!    lexical error, stops the search: what follows would be noise.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, LowerName, Name, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::{LexerError, ParseError, Parser, Token, parse_ttl};

use super::fqdn;
use super::scan::{Entry, Kind, Tok};
use crate::diagnostic::Diagnostic;

/// Most parse errors reported for one file; later ones are usually echoes.
const MAX_PARSE_ERRORS: usize = 20;

/// Line and column, and the token there when one is to blame.
type Position<'e> = ((usize, usize), Option<&'e Tok>);

/// What the mirror of hickory's parser state machine learned about one entry.
#[derive(Debug, Clone, Default)]
pub(super) struct Info {
    /// Owner name of a record entry (explicit, `@` or inherited), FQDN.
    pub owner: Option<Name>,
    /// True when the owner was written on this entry (not inherited).
    pub explicit_owner: bool,
    /// Index into the entry's tokens of a valid TTL token, if any.
    pub ttl_tok: Option<usize>,
    /// Index of a valid class token, if any.
    pub class_tok: Option<usize>,
    /// Record type, when the entry is a record.
    pub rtype: Option<RecordType>,
    /// Index of the type token.
    pub type_tok: Option<usize>,
    /// Token indices of the record data.
    pub rdata: Vec<usize>,
    /// The entry is `$ORIGIN`, `$TTL` or `$INCLUDE`.
    pub directive: Option<String>,
    /// Index of the token where the mirrored parser fails before the data.
    pub fails_at: Option<usize>,
    /// The owner name failed to parse (so [`Info::fails_at`] is the owner).
    pub bad_owner: bool,
}

/// Mirrors hickory's parser states (StartLine, Origin, Ttl, TtlClassType,
/// Record) over the scanned tokens of every entry.
///
/// `origin` is the origin hickory starts with. The result has one [`Info`]
/// per entry.
pub(super) fn analyze(entries: &[Entry], origin: &Name) -> Vec<Info> {
    let mut origin = origin.clone();
    let mut current = None;
    entries
        .iter()
        .map(|entry| analyze_entry(&entry.tokens, &mut origin, &mut current))
        .collect()
}

/// [`analyze`] for one entry; `origin` and `current` (the owner in effect)
/// carry over to the next.
fn analyze_entry(tokens: &[Tok], origin: &mut Name, current: &mut Option<Name>) -> Info {
    let mut info = Info::default();
    let mut rest = tokens.iter().enumerate();
    let Some((i0, first)) = rest.next() else {
        return info;
    };
    match first.kind {
        Kind::Dollar => {
            info.directive = Some(first.text.clone());
            info.fails_at = match (first.text.as_str(), rest.next()) {
                ("ORIGIN", Some((i, t))) if t.kind == Kind::Word => {
                    match Name::parse(&t.text, None) {
                        Ok(n) => {
                            *origin = n;
                            None
                        }
                        Err(_) => Some(i),
                    }
                }
                ("TTL", Some((i, t))) if t.kind == Kind::Word => {
                    parse_ttl(&t.text).is_err().then_some(i)
                }
                ("INCLUDE", _) => None,
                (_, Some((i, _))) => Some(i),
                (_, None) => Some(i0),
            };
            return info;
        }
        Kind::Word => {
            info.explicit_owner = true;
            match Name::parse(&first.text, Some(origin)) {
                Ok(n) => *current = Some(n),
                Err(_) => {
                    info.fails_at = Some(i0);
                    info.bad_owner = true;
                    return info;
                }
            }
        }
        Kind::At => {
            info.explicit_owner = true;
            *current = Some(origin.clone());
        }
        Kind::Blank => {}
        _ => {
            info.fails_at = Some(i0);
            return info;
        }
    }
    info.owner = current.clone().map(fqdn);
    // TtlClassType
    for (i, t) in rest.by_ref() {
        if t.kind != Kind::Word {
            info.fails_at = Some(i);
            break;
        }
        if parse_ttl(&t.text).is_ok() {
            info.ttl_tok = Some(i);
            continue;
        }
        let upper = t.text.to_ascii_uppercase();
        if DNSClass::from_str(&upper).is_ok() {
            info.class_tok = Some(i);
            continue;
        }
        match RecordType::from_str(&upper) {
            Ok(rt) => {
                info.rtype = Some(rt);
                info.type_tok = Some(i);
            }
            Err(_) => info.fails_at = Some(i),
        }
        break;
    }
    if info.rtype.is_some() {
        // Record: words and list items; `@`, `$...` or a blank are errors.
        for (i, t) in rest {
            match t.kind {
                Kind::Word | Kind::ListItem => info.rdata.push(i),
                Kind::ListOpen | Kind::ListClose => {}
                _ => {
                    info.fails_at.get_or_insert(i);
                }
            }
        }
    }
    info
}

/// The zone origin a file declares: the `$ORIGIN` in effect when the first
/// record starts, if any. Returns the entry index of that `$ORIGIN` too.
pub(super) fn declared_origin(entries: &[Entry]) -> Option<(Name, usize)> {
    let mut found = None;
    for (idx, entry) in entries.iter().enumerate() {
        let mut toks = entry.tokens.iter();
        let Some(first) = toks.next() else { continue };
        match (first.kind, first.text.as_str()) {
            (Kind::Dollar, "ORIGIN") => {
                if let Some(t) = toks.next().filter(|t| t.kind == Kind::Word)
                    && let Ok(n) = Name::parse(&t.text, None)
                {
                    found = Some((fqdn(n), idx));
                }
            }
            (Kind::Dollar, _) => {}
            // A line with only blanks and a comment scans as one Blank.
            (Kind::Blank, _) if toks.next().is_none() => {}
            _ => break,
        }
    }
    found
}

/// The result of parsing one file.
pub(super) struct Parsed {
    /// hickory's record map; `None` when there were parse errors.
    pub records: Option<BTreeMap<RrKey, RecordSet>>,
    /// Errors, each placed at a line and column.
    pub errors: Vec<Diagnostic>,
}

/// Parses `text` (already scanned into `entries` and analyzed into `infos`)
/// with hickory, starting from `origin`.
pub(super) fn parse(
    path: &Path,
    text: &str,
    entries: &[Entry],
    infos: &[Info],
    origin: &Name,
) -> Parsed {
    let mut errors = Vec::new();
    let mut pieces: Vec<Cow<'_, str>> = entries
        .iter()
        .map(|e| Cow::Borrowed(entry_text(text, e)))
        .collect();

    // `$INCLUDE` would read files floe neither watches nor attributes errors
    // to; refuse it and leave the line out so the rest is still checked.
    for (idx, (entry, info)) in entries.iter().zip(infos).enumerate() {
        if info.directive.as_deref() == Some("INCLUDE") {
            let (line, col) = entry.position();
            errors.push(Diagnostic::error(
                path,
                line,
                col,
                "$INCLUDE is not supported: put the records in this file (floe loads and reloads only the *.zone files in the zones directory)",
            ));
            pieces[idx] = Cow::Owned(blank_like(text, entry));
        }
    }

    // A quoted string over a line end is legal but in practice a missing
    // closing quote that swallowed what follows; the errors it causes come
    // later in the file, so name the cause first (and only once: `locate`
    // blames it again for a lexical error after it).
    for entry in entries {
        if let Some(t) = entry.tokens.iter().find(|t| is_multi_line_quote(t)) {
            errors.push(Diagnostic::error(path, t.line, t.col, multi_line_quote(t)));
        }
    }

    let run = |upto: usize, pieces: &[Cow<'_, str>]| {
        let prefix: String = pieces[..upto].concat();
        // Operator input must not take the process down: a panic inside the
        // parser counts as a parse error, which the search then places.
        std::panic::catch_unwind(|| Parser::new(prefix, None, Some(origin.clone())).parse())
            .unwrap_or(Err(ParseError::Message(
                "hickory's zone-file parser crashed on this entry",
            )))
            .map(|(_, records)| records)
    };

    let n = entries.len();
    let mut from = 0;
    let mut last_failed: Option<usize> = None;
    let records = loop {
        let mut err = match run(n, &pieces) {
            Ok(records) => break Some(records),
            Err(e) => e,
        };
        if n == 0 {
            errors.push(Diagnostic::error(path, 0, 0, err.to_string()));
            break None;
        }
        // Smallest k in from..n whose prefix 0..=k fails; prefix 0..from is
        // known to parse and 0..n known to fail.
        let (mut lo, mut hi) = (from, n - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match run(mid + 1, &pieces) {
                Err(e) => {
                    hi = mid;
                    err = e;
                }
                Ok(_) => lo = mid + 1,
            }
        }
        let k = hi;
        if last_failed == Some(k) {
            // The placeholder failed too: nothing more to learn safely.
            break None;
        }
        let ((line, col), tok) = locate(&entries[k], &infos[k], &err);
        if !errors.iter().any(|e| (e.line, e.column) == (line, col)) {
            let msg = describe(&err, tok, text, &entries[k]);
            errors.push(Diagnostic::error(path, line, col, msg));
        }
        if errors.len() >= MAX_PARSE_ERRORS
            || entries[k].lex_error.is_some()
            || infos[k].directive.is_some()
        {
            break None;
        }
        pieces[k] = Cow::Owned(placeholder(&entries[k], &infos[k], text));
        last_failed = Some(k);
        from = k;
    };
    let records = records.filter(|_| errors.is_empty());
    Parsed { records, errors }
}

/// The original text of an entry.
fn entry_text<'t>(text: &'t str, entry: &Entry) -> &'t str {
    &text[entry.start..entry.end]
}

/// An empty entry ending the way `entry` ends (with or without a newline).
fn blank_like(text: &str, entry: &Entry) -> String {
    if entry_text(text, entry).ends_with('\n') {
        "\n".into()
    } else {
        String::new()
    }
}

/// A record that parses and leaves hickory's state as the failed entry would
/// have: same explicit owner, TTL and class.
fn placeholder(entry: &Entry, info: &Info, text: &str) -> String {
    let mut s = match &info.owner {
        Some(owner) if info.explicit_owner && !info.bad_owner => owner.to_string(),
        _ if info.explicit_owner => "@".into(),
        _ => String::new(),
    };
    s.push(' ');
    for i in [info.ttl_tok, info.class_tok].into_iter().flatten() {
        s.push_str(&entry.tokens[i].text);
        s.push(' ');
    }
    s + "TXT \"floe-placeholder\"" + &blank_like(text, entry)
}

/// Where in `entry` hickory's error `err` is: line and column, and the token
/// there when one is to blame.
fn locate<'e>(entry: &'e Entry, info: &Info, err: &ParseError) -> Position<'e> {
    let at = |i: usize| {
        let t = &entry.tokens[i];
        ((t.line, t.col), Some(t))
    };
    if let Some(lex_error) = entry.lex_error {
        // A quoted string that ran over a line end is the usual cause of a
        // lexical error further down: a missing closing quote.
        if let Some(i) = entry.tokens.iter().position(is_multi_line_quote) {
            return at(i);
        }
        // The scanner stopped where the file breaks the lexical rules; if
        // hickory reports something else first, the token analysis knows better.
        return match (err, info.fails_at) {
            (ParseError::Lexer(_), _) | (_, None) => (lex_error, None),
            (_, Some(i)) => at(i),
        };
    }
    if let Some(i) = info.fails_at {
        return at(i);
    }
    if let ParseError::Message(m) = err
        && (m.contains("not specified") || m.contains("already specified"))
    {
        return (entry.position(), None);
    }
    // A token the message quotes, among the record data.
    let quoted = match err {
        ParseError::ParseTime(s) | ParseError::Msg(s) => Some(s.as_str()),
        ParseError::UnexpectedToken(Token::CharData(s)) => Some(s.as_str()),
        _ => None,
    };
    if let Some(q) = quoted
        && let Some(&i) = info.rdata.iter().find(|&&i| entry.tokens[i].text == q)
    {
        return at(i);
    }
    let msg = err.to_string();
    if let Some(&i) = info.rdata.iter().find(|&&i| {
        let t = &entry.tokens[i].text;
        t.len() >= 2 && msg.contains(t.as_str())
    }) {
        return at(i);
    }
    match (info.rdata.first(), info.type_tok) {
        (Some(&i), _) | (None, Some(i)) => at(i),
        (None, None) => (entry.position(), None),
    }
}

/// hickory's error text, with the offending token and a hint where that
/// helps an operator more than the parser's wording.
fn describe(err: &ParseError, tok: Option<&Tok>, text: &str, entry: &Entry) -> String {
    match err {
        ParseError::Message("record ttl not specified") => {
            "no TTL for this record: give it one, or add a `$TTL` line before it".into()
        }
        ParseError::Message("record name not specified") => {
            "no owner name: the first record must start with a name or `@` in column 1".into()
        }
        ParseError::Message("SOA is already specified") => {
            "a second SOA record at the same name: a zone has exactly one SOA".into()
        }
        ParseError::UnexpectedToken(Token::At) if tok.is_some_and(|t| t.kind == Kind::At) => {
            "`@` is only accepted as an owner name: in record data write the name in full, with a trailing dot".into()
        }
        ParseError::MissingToken(what) => match tok.filter(|t| t.kind == Kind::Word) {
            Some(t) => format!("the `{}` record is missing its {what}", t.text),
            None => format!("missing {what}"),
        },
        ParseError::Lexer(LexerError::UnrecognizedDollar(_)) => {
            // hickory's message loses the word; take it from the text.
            let word: String = entry_text(text, entry)
                .trim_start()
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ';')
                .collect();
            format!("unknown directive `{word}`: floe accepts $ORIGIN and $TTL")
        }
        _ => {
            let msg = err.to_string();
            let msg = ["proto error: ", "decoding error: ", "lexer error: "]
                .iter()
                .fold(msg.as_str(), |m, p| m.strip_prefix(p).unwrap_or(m))
                .trim_end_matches([':', ' ']);
            match tok {
                Some(t) if !t.text.is_empty() && !msg.contains(t.text.as_str()) => {
                    format!("{msg}: `{}`", t.text)
                }
                _ => msg.to_string(),
            }
        }
    }
}

/// True for a quoted string that contains a line end (only quotes can).
fn is_multi_line_quote(t: &Tok) -> bool {
    t.kind == Kind::Word && t.text.contains('\n')
}

/// The message for a quoted string running over a line end.
fn multi_line_quote(t: &Tok) -> String {
    let end = t.line + t.text.matches('\n').count();
    format!("the quoted string opened here runs on to line {end}: is its closing `\"` missing?")
}

/// Fixed numbers of record-data tokens for the common types: hickory's
/// parsers silently ignore extra tokens (`www A 192.0.2.1 192.0.2.2` serves
/// only the first address), so floe reports them.
fn expected_rdata_tokens(rtype: RecordType) -> Option<usize> {
    Some(match rtype {
        RecordType::A
        | RecordType::AAAA
        | RecordType::CNAME
        | RecordType::NS
        | RecordType::PTR
        | RecordType::ANAME => 1,
        RecordType::MX => 2,
        RecordType::SRV => 4,
        RecordType::SOA => 7,
        _ => return None,
    })
}

/// Errors for text hickory accepted but would partly ignore or that is
/// almost surely a mistake.
pub(super) fn extra_tokens(path: &Path, entries: &[Entry], infos: &[Info]) -> Vec<Diagnostic> {
    let extra = |(entry, info): (&Entry, &Info)| {
        let (i, after) = match (info.directive.as_deref(), info.rtype) {
            // hickory reads a second word as the owner of the next records.
            (Some(d @ ("ORIGIN" | "TTL")), _) => (2, format!("the ${d} value")),
            (_, Some(rtype)) => (
                *info.rdata.get(expected_rdata_tokens(rtype)?)?,
                format!("the {rtype} record data: write one record per line"),
            ),
            _ => return None,
        };
        let t = entry.tokens.get(i)?;
        let msg = format!("unexpected `{}` after {after}", t.text);
        Some(Diagnostic::error(path, t.line, t.col, msg))
    };
    entries.iter().zip(infos).filter_map(extra).collect()
}

/// The lower-cased owner of a record entry, for matching diagnostics.
pub(super) fn owner_key(info: &Info) -> Option<(LowerName, RecordType)> {
    Some((LowerName::new(info.owner.as_ref()?), info.rtype?))
}
