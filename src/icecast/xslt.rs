//! Parser for the `floe-slots` text served by floe's stylesheet
//! (`config/floe-slots.xsl`, installed in each relay's webroot).
//!
//! Icecast runs any `.xsl` in its webroot on the *public* stats, which carry
//! `max_listeners`, so this format gives floe every mount's limit without the
//! admin password. The stylesheet's output (UTF-8, tab-separated) is:
//!
//! ```text
//! #floe-slots 1
//! #mount\tlisteners\tmax_listeners\tfree
//! /live.mp3\t0\t2\t2
//! /live.ogg\t0\tunlimited\tunlimited
//! END\t2
//! ```
//!
//! (`\t` is one tab character, every line ends with `\n`.)
//!
//! - Line 1 is the format and version; only version 1 is understood.
//! - Every later line starting with `#` is a comment (line 2 is the column
//!   header). Blank lines carry nothing and are skipped.
//! - One line per mount: path, listeners, then `max_listeners` and `free`,
//!   each a number or `unlimited`. `free` is only checked for syntax: floe
//!   works from listeners and the limit.
//! - `END` and the number of mount lines. A poll can receive a body cut
//!   anywhere (a reset connection, a timeout mid-body), and a cut between
//!   two lines would otherwise look like a relay with fewer mounts; the
//!   count is how a complete body is told from a cut one. Nothing but
//!   comments and blank lines may follow `END`.
//!
//! A body that stops early is [`StatusError::Truncated`], even when the cut
//! falls inside a line (the last line has no newline and does not parse) or
//! inside a UTF-8 sequence; everything else that does not fit is
//! [`StatusError::Malformed`] with its line number. The trailing newline is
//! optional and CRLF line ends are accepted. Lines are parsed in place: the
//! only allocations are the mount list and its paths (twice: once in the
//! list, once in the set that refuses a duplicate).

use super::{MaxListeners, MountList, MountStatus, RelayStatus, StatusError, StatusKind};

/// The format this module parses, which names it in errors.
const KIND: StatusKind = StatusKind::Xslt;

/// The first line of every version-1 body.
const MAGIC: &str = "#floe-slots 1";

/// The first line's prefix, followed by the version.
const MAGIC_PREFIX: &str = "#floe-slots ";

/// Parses a `floe-slots` body (see the module docs for the format).
///
/// Mounts come back in the order the relay listed them. Errors:
/// [`StatusError::Truncated`] when the body ends before a complete `END` line
/// or `END`'s count differs from the number of mount lines;
/// [`StatusError::Malformed`] for an unknown first line or version, a line
/// that is neither a mount, `END` nor a comment, a bad number, a path not
/// starting with `/`, a duplicate mount or content after `END`.
pub fn parse(body: &[u8]) -> Result<RelayStatus, StatusError> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        // `error_len() == None`: the input ends inside a UTF-8 sequence.
        Err(e) if e.error_len().is_none() => {
            return Err(KIND.truncated(format!(
                "body ends inside a UTF-8 sequence at byte {}",
                e.valid_up_to()
            )));
        }
        Err(e) => {
            return Err(KIND.malformed(format!(
                "not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )));
        }
    };

    let mut lines = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, raw)| Line::new(i + 1, raw));

    match lines.next() {
        None => return Err(KIND.truncated("empty body".into())),
        Some(first) => check_magic(&first)?,
    }

    let mut mounts = MountList::default();
    let mut end_seen = false;
    for line in lines {
        let content = line.content;
        if content.trim().is_empty() || content.starts_with('#') {
            continue;
        }
        if end_seen {
            return Err(KIND.malformed(format!("line {}: content after the END line", line.number)));
        }
        if content.starts_with('/') {
            let mount = parse_mount(content).map_err(|e| line.error(e))?;
            mounts
                .push(mount)
                .map_err(|e| KIND.malformed(format!("line {}: {e}", line.number)))?;
        } else if content.starts_with("END") {
            let count = parse_end(content).map_err(|e| line.error(e))?;
            if count != mounts.len() {
                return Err(KIND.truncated(format!(
                    "END says {count} mount lines, {} received",
                    mounts.len()
                )));
            }
            end_seen = true;
        } else {
            return Err(line.error(format!(
                "expected a mount line (`/path<TAB>listeners<TAB>max<TAB>free`), \
                 `END<TAB>count` or a `#` comment, found {content:?}"
            )));
        }
    }

    if !end_seen {
        return Err(KIND.truncated(format!("no END line after {} mount lines", mounts.len())));
    }
    Ok(mounts.finish())
}

/// One line of the body, without its line end.
struct Line<'a> {
    /// 1-based line number, for messages.
    number: usize,
    /// The line without `\n` or `\r\n`.
    content: &'a str,
    /// Whether a `\n` ended the line. Only the body's last line can lack
    /// one; if that line does not parse, the body was cut inside it.
    terminated: bool,
}

impl<'a> Line<'a> {
    fn new(number: usize, raw: &'a str) -> Self {
        let (content, terminated) = match raw.strip_suffix('\n') {
            Some(content) => (content, true),
            None => (raw, false),
        };
        let content = content.strip_suffix('\r').unwrap_or(content);
        Line {
            number,
            content,
            terminated,
        }
    }

    /// The error for this line failing to parse: [`StatusError::Truncated`]
    /// if it is an unterminated last line, [`StatusError::Malformed`]
    /// otherwise.
    fn error(&self, problem: String) -> StatusError {
        if self.terminated {
            KIND.malformed(format!("line {}: {problem}", self.number))
        } else {
            KIND.truncated(format!("body ends inside line {} ({problem})", self.number))
        }
    }
}

/// Checks that line 1 is `#floe-slots 1`.
fn check_magic(first: &Line<'_>) -> Result<(), StatusError> {
    let content = first.content;
    if content == MAGIC {
        return Ok(());
    }
    if !first.terminated && MAGIC.starts_with(content) {
        return Err(KIND.truncated(format!("body ends inside the first line {content:?}")));
    }
    match content.strip_prefix(MAGIC_PREFIX) {
        Some(version) => Err(KIND.malformed(format!(
            "line 1: unsupported floe-slots version {version:?} (expected 1)"
        ))),
        None => Err(first.error(format!(
            "expected {MAGIC:?} (is the status path really floe-slots.xsl?), found {content:?}"
        ))),
    }
}

/// Parses `/path<TAB>listeners<TAB>max<TAB>free`.
fn parse_mount(content: &str) -> Result<MountStatus, String> {
    let mut fields = content.split('\t');
    let (Some(path), Some(listeners), Some(max), Some(free), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(format!(
            "expected 4 tab-separated fields, found {content:?}"
        ));
    };
    // `path` starts with '/': the caller only sends lines that do.
    let listeners = parse_count(listeners)
        .ok_or_else(|| format!("mount {path:?}: listeners {listeners:?} is not a count"))?;
    let max_listeners = match parse_limit(max) {
        Some(Some(n)) => MaxListeners::Limited(n),
        Some(None) => MaxListeners::Unlimited,
        None => {
            return Err(format!(
                "mount {path:?}: max_listeners {max:?} is neither a count nor `unlimited`"
            ));
        }
    };
    if parse_limit(free).is_none() {
        return Err(format!(
            "mount {path:?}: free {free:?} is neither a count nor `unlimited`"
        ));
    }
    Ok(MountStatus {
        path: path.to_owned(),
        listeners,
        max_listeners,
        bitrate_kbps: None,
    })
}

/// Parses `END<TAB>count`.
fn parse_end(content: &str) -> Result<usize, String> {
    content
        .strip_prefix("END\t")
        .filter(|count| !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|count| count.parse::<usize>().ok())
        .ok_or_else(|| format!("expected `END<TAB>count`, found {content:?}"))
}

/// A decimal count as the stylesheet prints it (digits only).
fn parse_count(field: &str) -> Option<u32> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// A count, or `unlimited` (`Some(None)`); `None` if it is neither.
fn parse_limit(field: &str) -> Option<Option<u32>> {
    if field == "unlimited" {
        Some(None)
    } else {
        parse_count(field).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::icecast::test_support::*;

    fixtures! {
        LISTENERS = "floe-slots-listeners.txt";
        MASTER_IDLE = "floe-slots-master-idle.txt";
        MOUNT_FULL = "floe-slots-mount-full.txt";
        NO_SOURCE = "floe-slots-no-source.txt";
        ONE_MOUNT = "floe-slots-one-mount.txt";
        UNLIMITED = "floe-slots-unlimited.txt";
    }

    const HEAD: &str = "#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n";

    #[test]
    fn relay_with_listeners_reports_each_mount_against_its_limit() {
        assert_eq!(
            mounts(KIND, LISTENERS),
            [
                mount("/live.mp3", 1, MaxListeners::Limited(5), None),
                mount("/live.ogg", 3, MaxListeners::Limited(5), None),
            ]
        );
    }

    #[test]
    fn idle_master_counts_its_two_pulling_relays_as_listeners() {
        assert_eq!(
            mounts(KIND, MASTER_IDLE),
            [
                mount("/live.mp3", 2, MaxListeners::Limited(5), None),
                mount("/live.ogg", 2, MaxListeners::Limited(5), None),
            ]
        );
    }

    #[test]
    fn full_mount_has_as_many_listeners_as_its_limit() {
        assert_eq!(
            mounts(KIND, MOUNT_FULL),
            [
                mount("/live.mp3", 1, MaxListeners::Limited(5), None),
                mount("/live.ogg", 5, MaxListeners::Limited(5), None),
            ]
        );
    }

    #[test]
    fn one_mount_relay_lists_only_that_mount() {
        assert_eq!(
            mounts(KIND, ONE_MOUNT),
            [mount("/live.ogg", 5, MaxListeners::Limited(5), None)]
        );
    }

    #[test]
    fn relay_without_sources_is_a_complete_status_with_no_mounts() {
        assert_eq!(mounts(KIND, NO_SOURCE), []);
    }

    #[test]
    fn unlimited_mount_is_unlimited_and_limited_mount_keeps_its_number() {
        assert_eq!(
            mounts(KIND, UNLIMITED),
            [
                mount("/live.mp3", 0, MaxListeners::Limited(2), None),
                mount("/live.ogg", 0, MaxListeners::Unlimited, None),
            ]
        );
    }

    #[test]
    fn status_kind_xslt_dispatches_here_and_uses_the_same_format_name() {
        assert_eq!(StatusKind::Xslt.parse(UNLIMITED), parse(UNLIMITED));
        assert_eq!(KIND, StatusKind::Xslt);
        assert_eq!(KIND.as_str(), "xslt");
    }

    #[test]
    fn crlf_line_ends_and_a_missing_final_newline_are_accepted() {
        let crlf = String::from_utf8_lossy(LISTENERS).replace('\n', "\r\n");
        assert_eq!(mounts(KIND, crlf.as_bytes()), mounts(KIND, LISTENERS));
        let no_final_newline = LISTENERS.strip_suffix(b"\n").unwrap();
        assert_eq!(mounts(KIND, no_final_newline), mounts(KIND, LISTENERS));
        let crlf_no_final = crlf.strip_suffix("\r\n").unwrap();
        assert_eq!(
            mounts(KIND, crlf_no_final.as_bytes()),
            mounts(KIND, LISTENERS)
        );
    }

    #[test]
    fn comments_and_blank_lines_anywhere_after_the_first_line_are_skipped() {
        let body = "#floe-slots 1\n\n# a comment\n/a\t1\t5\t4\n#another\n\nEND\t1\n# trailer\n\n";
        assert_eq!(
            mounts(KIND, body.as_bytes()),
            [mount("/a", 1, MaxListeners::Limited(5), None)]
        );
    }

    #[test]
    fn free_may_be_any_count_and_zero_limit_is_limited_zero() {
        let body = format!("{HEAD}/a\t0\t0\t0\n/b\t7\t5\t0\nEND\t2\n");
        assert_eq!(
            mounts(KIND, body.as_bytes()),
            [
                mount("/a", 0, MaxListeners::Limited(0), None),
                mount("/b", 7, MaxListeners::Limited(5), None),
            ]
        );
    }

    #[test]
    fn every_cut_of_every_fixture_before_its_final_newline_is_truncated() {
        for fixture in ALL_FIXTURES {
            // Every fixture ends with "END\tN\n"; only the newline is optional.
            assert_cuts_truncated(KIND, fixture, fixture.len() - 1);
        }
    }

    #[test]
    fn empty_body_is_truncated() {
        assert!(is_truncated(KIND, &parse(b"")));
    }

    #[test]
    fn missing_end_line_is_truncated() {
        let body = format!("{HEAD}/a\t1\t5\t4\n/b\t1\t5\t4\n");
        assert!(is_truncated(KIND, &parse(body.as_bytes())));
    }

    #[test]
    fn end_count_other_than_the_mount_lines_received_is_truncated() {
        for end in ["END\t1", "END\t3", "END\t0"] {
            let body = format!("{HEAD}/a\t1\t5\t4\n/b\t1\t5\t4\n{end}\n");
            assert!(is_truncated(KIND, &parse(body.as_bytes())), "{end}");
        }
    }

    #[test]
    fn body_cut_inside_a_utf8_sequence_is_truncated() {
        let body = format!("{HEAD}/caf\u{e9}\t1\t5\t4\nEND\t1\n");
        let cut = body.find('\u{e9}').unwrap() + 1;
        assert!(is_truncated(KIND, &parse(&body.as_bytes()[..cut])));
        assert_eq!(mounts(KIND, body.as_bytes())[0].path, "/caf\u{e9}");
    }

    #[test]
    fn unknown_version_is_malformed_on_line_1() {
        let message = malformed_message(KIND, "#floe-slots 2\nEND\t0\n");
        assert!(
            message.contains("line 1") && message.contains("version"),
            "{message}"
        );
    }

    #[test]
    fn other_documents_are_malformed_on_line_1() {
        for body in [
            "<html><body>404</body></html>\n",
            "{\"icestats\":{}}\n",
            "/live.ogg\t1\t5\t4\nEND\t1\n",
            "#floe-slots 1 \nEND\t0\n",
            "#floe-slots\nEND\t0\n",
        ] {
            let message = malformed_message(KIND, body);
            assert!(message.starts_with("line 1"), "{body:?}: {message}");
        }
    }

    #[test]
    fn bad_line_is_malformed_naming_its_line_number() {
        let cases = [
            ("/a\tx\t5\t4\n", "line 3"),
            ("/a\t1\t5\n", "line 3"),
            ("/a\t1\t5\t4\t9\n", "line 3"),
            ("/a\t1\t5\t4\n/b\t-1\t5\t4\n", "line 4"),
            ("/a\tNaN\t5\t4\n", "line 3"),
            ("/a\t1\t-1\t4\n", "line 3"),
            ("/a\t1\tlots\t4\n", "line 3"),
            ("/a\t1\t5\tmany\n", "line 3"),
            ("/a\t1\t4294967296\t4\n", "line 3"),
            ("/a 1 5 4\n", "line 3"),
            ("hello\n", "line 3"),
            ("END 0\n", "line 3"),
            ("END\t+0\n", "line 3"),
        ];
        for (lines, line) in cases {
            let body = format!("{HEAD}{lines}END\t1\n");
            let message = malformed_message(KIND, &body);
            assert!(message.starts_with(line), "{body:?}: {message}");
        }
    }

    #[test]
    fn mount_path_must_start_with_a_slash() {
        let message = malformed_message(KIND, &format!("{HEAD}live.ogg\t1\t5\t4\nEND\t1\n"));
        assert!(message.starts_with("line 3"), "{message}");
    }

    #[test]
    fn duplicate_mount_path_is_malformed() {
        let message = malformed_message(KIND, &format!("{HEAD}/a\t1\t5\t4\n/a\t2\t5\t3\nEND\t2\n"));
        assert!(
            message.contains("line 4") && message.contains("duplicate"),
            "{message}"
        );
    }

    #[test]
    fn many_mounts_are_checked_by_a_set_and_capped() {
        // 10,000 mounts (the cap): comparing each with every one before it
        // would be quadratic; the set of paths takes milliseconds.
        let n = crate::icecast::MAX_MOUNTS;
        let lines: String = (0..n).map(|i| format!("/m{i}\t0\t5\t5\n")).collect();
        let body = format!("{HEAD}{lines}END\t{n}\n");
        assert_eq!(mounts(KIND, body.as_bytes()).len(), n);
        let mut dup = lines.clone();
        dup.truncate(dup.len() - format!("/m{}\t0\t5\t5\n", n - 1).len());
        let message = malformed_message(KIND, &format!("{HEAD}{dup}/m7\t0\t5\t5\nEND\t1\n"));
        assert!(
            message.starts_with(&format!("line {}: duplicate", n + 2)),
            "{message}"
        );
        // One more than the cap (a hostile relay may list 400,000).
        let message = malformed_message(KIND, &format!("{HEAD}{lines}/x\t0\t5\t5\nEND\t1\n"));
        assert!(message.contains("more than 10000 mounts"), "{message}");
    }

    #[test]
    fn content_after_the_end_line_is_malformed() {
        let message = malformed_message(KIND, &format!("{HEAD}END\t0\n/a\t1\t5\t4\n"));
        assert!(
            message.contains("line 4") && message.contains("after"),
            "{message}"
        );
        malformed_message(KIND, &format!("{HEAD}END\t0\nEND\t0\n"));
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let mut body = HEAD.as_bytes().to_vec();
        body.extend_from_slice(b"/\xff\t1\t5\t4\nEND\t1\n");
        assert!(matches!(parse(&body), Err(StatusError::Malformed { .. })));
    }

    /// Bytes biased towards the format's own tokens.
    fn slots_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        bytes_with(&[
            b"\t",
            b"\n",
            b"#floe-slots 1\n",
            b"END\t",
            b"/live.ogg",
            b"unlimited",
        ])
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            assert_sound(&parse(&body));
        }

        #[test]
        fn format_like_bytes_never_panic(body in slots_like_bytes()) {
            assert_sound(&parse(&body));
        }

        #[test]
        fn mutated_fixtures_never_panic(body in mutated(ALL_FIXTURES)) {
            assert_sound(&parse(&body));
        }
    }
}
