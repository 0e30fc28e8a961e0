//! Relay status: what one poll of one Icecast relay says, in one shape for
//! every status format.
//!
//! Each format has its own module with one pure function
//! `parse(&[u8]) -> Result<RelayStatus, StatusError>`: no I/O, no clock, no
//! panics on any input. The poller picks the parser by [`StatusKind`]; the
//! health state machine and the snapshot builder only ever see
//! [`RelayStatus`].
//!
//! Formats:
//! - [`icecast_xml`]: `/admin/stats` (basic auth), the full stats XML. Carries
//!   `max_listeners`.
//! - [`icecast_json`]: `/status-json.xsl`, public; no `max_listeners` in 2.4.4.
//! - [`xslt`]: the `floe-slots` text produced by floe's stylesheet
//!   (`config/floe-slots.xsl`) installed in the relay's webroot. Carries
//!   `max_listeners` without credentials and ends with a mount count, so a
//!   truncated body is detected.
//!
//! What the parsers have in common lives here, written once: the errors
//! of a format ([`StatusKind`]'s `malformed`, `missing`, `truncated`), the
//! mount list that keeps paths unique (`MountList`) and the bitrate
//! fallback (`bitrate_kbps`); their tests share `test_support`.

use std::collections::HashSet;

pub mod icecast_json;
pub mod icecast_xml;
#[cfg(test)]
mod test_support;
pub mod xslt;

/// Which status format a relay is polled with (config `status.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// `GET /admin/stats` with HTTP basic auth.
    IcecastXml,
    /// `GET /status-json.xsl`.
    IcecastJson,
    /// `GET <path>` of floe's stylesheet (default `/floe-slots.xsl`).
    Xslt,
}

impl StatusKind {
    /// Parses a status body of this kind.
    pub fn parse(self, body: &[u8]) -> Result<RelayStatus, StatusError> {
        match self {
            StatusKind::IcecastXml => icecast_xml::parse(body),
            StatusKind::IcecastJson => icecast_json::parse(body),
            StatusKind::Xslt => xslt::parse(body),
        }
    }

    /// The name used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::IcecastXml => "icecast-xml",
            StatusKind::IcecastJson => "icecast-json",
            StatusKind::Xslt => "xslt",
        }
    }

    /// A [`StatusError::Malformed`] from this format's parser.
    fn malformed(self, message: String) -> StatusError {
        StatusError::Malformed {
            format: self.as_str(),
            message,
        }
    }

    /// A [`StatusError::Missing`] from this format's parser.
    fn missing(self, message: String) -> StatusError {
        StatusError::Missing {
            format: self.as_str(),
            message,
        }
    }

    /// A [`StatusError::Truncated`] from this format's parser.
    fn truncated(self, message: String) -> StatusError {
        StatusError::Truncated {
            format: self.as_str(),
            message,
        }
    }
}

/// Everything floe needs from one successful poll of a relay.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayStatus {
    /// One entry per mount that has a source connected, in the order the
    /// relay listed them. Mount paths are unique.
    pub mounts: Vec<MountStatus>,
}

impl RelayStatus {
    /// The status of `path`, if that mount has a source on this relay.
    pub fn mount(&self, path: &str) -> Option<&MountStatus> {
        self.mounts.iter().find(|m| m.path == path)
    }
}

/// One mount with a connected source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStatus {
    /// The mount path, always starting with `/` (e.g. `/live.ogg`). Taken
    /// from the `mount` attribute or from the *path* of `listenurl`, never
    /// from its host and port (those are the relay's `<hostname>`).
    pub path: String,
    /// Current listeners on this mount.
    pub listeners: u32,
    /// The mount's listener limit as the relay reports it.
    pub max_listeners: MaxListeners,
    /// Stream bitrate in kbit/s when the status carries one (`bitrate`,
    /// `ice-bitrate`, or `audio_bitrate` / 1000); `None` otherwise.
    pub bitrate_kbps: Option<u32>,
}

/// Most mounts one status may list: a real relay has tens; a body with
/// hundreds of thousands is refused before it costs memory and time.
pub const MAX_MOUNTS: usize = 10_000;

/// Lists up to this many mounts are checked for duplicates by a scan
/// (a relay has tens: cheaper than hashing and copying every path); longer
/// ones by a set of their paths.
const SCAN_LIMIT: usize = 32;

/// The mounts of one status body while it is parsed, in the order the relay
/// lists them, with unique paths, at most [`MAX_MOUNTS`].
///
/// Past [`SCAN_LIMIT`] mounts, a set of the paths makes the duplicate
/// check constant-time per mount: a hostile or broken relay may list
/// hundreds of thousands, and a scan of the list so far would make that
/// quadratic.
#[derive(Default)]
struct MountList {
    mounts: Vec<MountStatus>,
    /// The paths, once the list is longer than [`SCAN_LIMIT`].
    paths: Option<HashSet<String>>,
}

impl MountList {
    /// An empty list with room for `capacity` mounts.
    fn with_capacity(capacity: usize) -> Self {
        MountList {
            mounts: Vec::with_capacity(capacity.min(MAX_MOUNTS)),
            paths: None,
        }
    }

    /// Appends `mount`; if its path is already listed, the message
    /// `duplicate mount "/path"` instead (the caller knows the format and
    /// the place).
    fn push(&mut self, mount: MountStatus) -> Result<(), String> {
        if self.mounts.len() >= MAX_MOUNTS {
            return Err(format!(
                "more than {MAX_MOUNTS} mounts: not a status floe reads (a relay has tens)"
            ));
        }
        let duplicate = match &mut self.paths {
            Some(paths) => !paths.insert(mount.path.clone()),
            None => self.mounts.iter().any(|m| m.path == mount.path),
        };
        if duplicate {
            return Err(format!("duplicate mount {:?}", mount.path));
        }
        self.mounts.push(mount);
        if self.paths.is_none() && self.mounts.len() > SCAN_LIMIT {
            self.paths = Some(self.mounts.iter().map(|m| m.path.clone()).collect());
        }
        Ok(())
    }

    /// How many mounts are listed so far.
    fn len(&self) -> usize {
        self.mounts.len()
    }

    /// The complete status.
    fn finish(self) -> RelayStatus {
        RelayStatus {
            mounts: self.mounts,
        }
    }
}

/// The bitrate in kbit/s from the fields a status may carry: `bitrate`,
/// else `ice-bitrate` (both kbit/s), else `audio_bitrate` (bit/s), each
/// rounded to whole kbit/s. Which of them appear depends on the source
/// client and codec, so one that is absent or not a positive number below
/// 2^32 kbit/s (a bitrate of 0 says nothing) passes to the next.
fn bitrate_kbps(
    bitrate: Option<f64>,
    ice_bitrate: Option<f64>,
    audio_bitrate: Option<f64>,
) -> Option<u32> {
    let kbps = |value: f64| {
        let value = value.round();
        // NaN fails both comparisons; the cast is exact for whole values in range.
        (value >= 1.0 && value <= f64::from(u32::MAX)).then_some(value as u32)
    };
    bitrate
        .and_then(kbps)
        .or_else(|| ice_bitrate.and_then(kbps))
        .or_else(|| audio_bitrate.and_then(|bps| kbps(bps / 1000.0)))
}

/// A mount's listener limit as reported by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxListeners {
    /// A number: Icecast refuses listeners beyond it (403).
    Limited(u32),
    /// The relay says `unlimited` (no `<max-listeners>` or -1).
    Unlimited,
    /// The format does not carry the limit (status-json in 2.4.4).
    Unknown,
}

/// Why a status body could not be turned into a [`RelayStatus`].
///
/// A failed parse is a failed poll: the relay's health counts it as a bad
/// poll and the message is shown as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The body is not well-formed for its format (bad XML/JSON syntax, not
    /// UTF-8 where text is required).
    #[error("malformed {format} status: {message}")]
    Malformed {
        /// `icecast-xml`, `icecast-json` or `xslt`.
        format: &'static str,
        /// What is wrong, with a byte offset or line where known.
        message: String,
    },
    /// The body is well-formed but lacks something floe needs (e.g. a mount
    /// without `listeners`, a JSON document without `icestats`).
    #[error("{format} status: {message}")]
    Missing {
        /// `icecast-xml`, `icecast-json` or `xslt`.
        format: &'static str,
        /// Which field or element is missing, and where.
        message: String,
    },
    /// The body ended before its end marker, or the end marker's count does
    /// not match the lines received.
    #[error("truncated {format} status: {message}")]
    Truncated {
        /// `icecast-xml`, `icecast-json` or `xslt`.
        format: &'static str,
        /// What was expected and what arrived.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: String) -> MountStatus {
        MountStatus {
            path,
            listeners: 0,
            max_listeners: MaxListeners::Unknown,
            bitrate_kbps: None,
        }
    }

    #[test]
    fn duplicates_are_found_in_short_and_long_lists() {
        for n in [1, SCAN_LIMIT, SCAN_LIMIT + 1, 3 * SCAN_LIMIT] {
            let mut list = MountList::default();
            for i in 0..n {
                list.push(mount(format!("/m{i}"))).unwrap();
            }
            for i in [0, n / 2, n - 1] {
                assert_eq!(
                    list.push(mount(format!("/m{i}"))),
                    Err(format!("duplicate mount \"/m{i}\"")),
                    "{n} mounts"
                );
            }
            assert_eq!(list.len(), n);
            assert!(list.push(mount("/new".into())).is_ok());
        }
    }
}
