//! What the test modules of the three parsers share, written once: the
//! `fixtures!` macro, helpers that parse with a [`StatusKind`] and check the
//! result's variant and format name, the "every cut is truncated" check and
//! the pieces of the "never panics" property tests.

use proptest::prelude::*;

use super::{MaxListeners, MountStatus, RelayStatus, StatusError, StatusKind};

/// Declares a `const NAME: &[u8]` for each `NAME = "file";`, the bytes of
/// `tests/fixtures/icecast/<file>` (real Icecast output, see the README
/// there) embedded at compile time, and `ALL_FIXTURES` listing them all,
/// for the checks that run on every fixture.
macro_rules! fixtures {
    ($($name:ident = $file:literal;)+) => {
        $(const $name: &[u8] = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/icecast/",
            $file
        ))
        .as_slice();)+
        const ALL_FIXTURES: &[&[u8]] = &[$($name),+];
    };
}
pub(super) use fixtures;

/// A [`MountStatus`] in one line, for expected values.
pub(super) fn mount(
    path: &str,
    listeners: u32,
    max: MaxListeners,
    kbps: Option<u32>,
) -> MountStatus {
    MountStatus {
        path: path.to_owned(),
        listeners,
        max_listeners: max,
        bitrate_kbps: kbps,
    }
}

/// The mounts `kind` reads from `body`; a panic naming the error if it
/// does not parse.
pub(super) fn mounts(kind: StatusKind, body: &[u8]) -> Vec<MountStatus> {
    match kind.parse(body) {
        Ok(status) => status.mounts,
        Err(e) => panic!("{:?} should parse, got {e}", String::from_utf8_lossy(body)),
    }
}

/// Whether `result` is a [`StatusError::Truncated`] of `kind`'s format.
pub(super) fn is_truncated(kind: StatusKind, result: &Result<RelayStatus, StatusError>) -> bool {
    matches!(result, Err(StatusError::Truncated { format, .. }) if *format == kind.as_str())
}

/// The message of the [`StatusError::Malformed`] that `kind` returns for
/// `body`; a panic on any other result.
pub(super) fn malformed_message(kind: StatusKind, body: &str) -> String {
    match kind.parse(body.as_bytes()) {
        Err(StatusError::Malformed { format, message }) if format == kind.as_str() => message,
        other => panic!(
            "{body:?} should be {} Malformed, got {other:?}",
            kind.as_str()
        ),
    }
}

/// The message of the [`StatusError::Missing`] that `kind` returns for
/// `body`; a panic on any other result.
pub(super) fn missing_message(kind: StatusKind, body: &str) -> String {
    match kind.parse(body.as_bytes()) {
        Err(StatusError::Missing { format, message }) if format == kind.as_str() => message,
        other => panic!(
            "{body:?} should be {} Missing, got {other:?}",
            kind.as_str()
        ),
    }
}

/// Checks that every cut of `document` shorter than `complete` bytes is
/// [`StatusError::Truncated`] (never a success with fewer mounts), and
/// that every longer cut parses as the whole document.
pub(super) fn assert_cuts_truncated(kind: StatusKind, document: &[u8], complete: usize) {
    for cut in 0..complete {
        let result = kind.parse(&document[..cut]);
        assert!(
            is_truncated(kind, &result),
            "cut at {cut} ({:?}): {result:?}",
            String::from_utf8_lossy(&document[cut.saturating_sub(20)..cut])
        );
    }
    for cut in complete..=document.len() {
        assert_eq!(kind.parse(&document[..cut]), kind.parse(document));
    }
}

/// One of `fixtures` with 1 to 7 bytes overwritten, inserted or deleted.
pub(super) fn mutated(fixtures: &[&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), any::<u8>()),
        1..8,
    );
    (prop::sample::select(fixtures.to_vec()), edits).prop_map(|(body, edits)| {
        let mut body = body.to_vec();
        for (at, byte, op) in edits {
            match op % 3 {
                0 if !body.is_empty() => {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
                1 if !body.is_empty() => {
                    body.remove(at.index(body.len()));
                }
                _ => body.insert(at.index(body.len() + 1), byte),
            }
        }
        body
    })
}

/// What every successful parse promises: mount paths that start with `/`
/// and are unique. An error is fine (the property tests only ask for no
/// panic).
pub(super) fn assert_sound(result: &Result<RelayStatus, StatusError>) {
    let Ok(status) = result else { return };
    for (i, m) in status.mounts.iter().enumerate() {
        assert!(m.path.starts_with('/'), "{m:?}");
        assert!(
            !status.mounts[..i].iter().any(|o| o.path == m.path),
            "{m:?}"
        );
    }
}

/// Up to 40 pieces, each an arbitrary byte, a digit or one of `tokens`
/// (the byte, the digit and each token equally likely), so that random
/// input often gets past the first checks of a format.
pub(super) fn bytes_with(tokens: &[&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        1 => any::<u8>().prop_map(|b| vec![b]),
        tokens.len() as u32 => prop::sample::select(tokens.to_vec()).prop_map(<[u8]>::to_vec),
        1 => (0u32..10).prop_map(|n| n.to_string().into_bytes()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}
