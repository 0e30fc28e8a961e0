//! Relay health: the up / full / down / unknown state machine with `rise` /
//! `fall` hysteresis, fed one poll outcome at a time.
//!
//! Pure: no I/O and no clock of its own (the caller passes `now`), so the
//! transitions are tested directly. Drain is not a health state: it is the
//! operator's flag, kept beside the health in the snapshot.

use crate::icecast::RelayStatus;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What one poll of a relay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// The status page answered and parsed.
    Status(RelayStatus),
    /// The relay answered `403` with `Icecast connection limit reached`: it
    /// is alive but its global client limit is reached, status pages
    /// included.
    ServerFull,
    /// No usable answer: connection error, timeout, HTTP error, or a status
    /// body that did not parse.
    Failed(PollFailure),
}

impl PollOutcome {
    /// The class of a failed poll (`None`: a good poll); a full relay
    /// counts as [`PollError::Full`].
    pub fn error(&self) -> Option<PollError> {
        match self {
            PollOutcome::Status(_) => None,
            PollOutcome::ServerFull => Some(PollError::Full),
            PollOutcome::Failed(f) => Some(f.class()),
        }
    }
}

/// Why a poll gave no usable status. The message (for people: reasons,
/// logs, the status page) and the class (for metric labels) come from
/// here, so rewording a message never changes a label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollFailure {
    /// No answer within `[poll] timeout`.
    #[error("timeout after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The connection could not be made (refused, unreachable, TLS...).
    #[error("connect failed{}", colon(.0))]
    Connect(String),
    /// The connection broke during the request or the body (reset...).
    #[error("request failed{}", colon(.0))]
    Request(String),
    /// An HTTP error status.
    #[error("HTTP {status} from {url}{}", hint(*.code))]
    Http {
        /// The status code.
        code: u16,
        /// The status line as the client gives it, e.g. `404 Not Found`.
        status: String,
        /// The URL polled.
        url: String,
    },
    /// A body that is not a valid status of the configured kind, or one
    /// too large to be one.
    #[error("{0}")]
    Body(String),
}

impl PollFailure {
    /// The class, label `reason` of `floe_poll_errors_total`.
    pub fn class(&self) -> PollError {
        match self {
            PollFailure::Timeout(_) => PollError::Timeout,
            PollFailure::Connect(_) | PollFailure::Request(_) => PollError::Connect,
            PollFailure::Http { .. } => PollError::Http,
            PollFailure::Body(_) => PollError::Parse,
        }
    }
}

/// Longest reason kept, in characters: a relay's own text (an error page,
/// a body that does not parse) can be megabytes; reasons go to logs,
/// `/status` and `/explain`.
pub const MAX_REASON: usize = 200;

/// `reason`, cut to [`MAX_REASON`] characters (with `…` when cut).
fn shorten(mut reason: String) -> String {
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// `": cause"`, or nothing when the cause is empty.
fn colon(cause: &str) -> String {
    if cause.is_empty() {
        String::new()
    } else {
        format!(": {cause}")
    }
}

/// What an operator should check after an HTTP error from a status page.
fn hint(code: u16) -> &'static str {
    match code {
        401 => ": check the status user and password",
        404 => ": wrong status path, or the stylesheet is not installed in the webroot",
        _ => "",
    }
}

/// The classes of failed polls (label `reason` of
/// `floe_poll_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// No answer within `[poll] timeout`.
    Timeout,
    /// Connection refused, reset or another transport error.
    Connect,
    /// An HTTP error status.
    Http,
    /// A body that is not a valid status.
    Parse,
    /// Icecast's global connection limit (up, but full).
    Full,
}

impl PollError {
    /// Every class, in label order.
    pub const ALL: [PollError; 5] = [
        PollError::Timeout,
        PollError::Connect,
        PollError::Http,
        PollError::Parse,
        PollError::Full,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PollError::Timeout => "timeout",
            PollError::Connect => "connect",
            PollError::Http => "http",
            PollError::Parse => "parse",
            PollError::Full => "full",
        }
    }
}

/// A relay's health as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayState {
    /// Not polled yet (or no conclusive poll yet).
    Unknown,
    /// Answering; whether it has room is decided per mount from its status.
    Up,
    /// Answering, but refusing every new client (global limit reached).
    Full,
    /// Not answering usefully for `fall` polls in a row.
    Down,
}

impl RelayState {
    /// Lower-case name used in logs, metrics and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Unknown => "unknown",
            RelayState::Up => "up",
            RelayState::Full => "full",
            RelayState::Down => "down",
        }
    }

    /// Every state, for metrics that export one series per state.
    pub const ALL: [RelayState; 4] = [
        RelayState::Unknown,
        RelayState::Up,
        RelayState::Full,
        RelayState::Down,
    ];
}

impl fmt::Display for RelayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One relay's health: its state, why, since when, and the streaks that
/// drive `rise` / `fall`.
#[derive(Debug, Clone)]
pub struct Health {
    state: RelayState,
    reason: Arc<str>,
    since: SystemTime,
    good_streak: u32,
    bad_streak: u32,
    /// The last status that parsed; kept while a few polls fail so the relay
    /// keeps its listener counts until it is declared down.
    last_status: Option<Arc<RelayStatus>>,
}

/// A change of state, for the one log line per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: RelayState,
    /// State after.
    pub to: RelayState,
}

impl Health {
    /// A relay not polled yet.
    pub fn new(now: SystemTime) -> Self {
        Health {
            state: RelayState::Unknown,
            reason: Arc::from("not polled yet"),
            since: now,
            good_streak: 0,
            bad_streak: 0,
            last_status: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> RelayState {
        self.state
    }

    /// Why the relay is in its state (or what the last poll said).
    pub fn reason(&self) -> &Arc<str> {
        &self.reason
    }

    /// When the current state began.
    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// The last status that parsed, if any.
    pub fn last_status(&self) -> Option<&Arc<RelayStatus>> {
        self.last_status.as_ref()
    }

    /// Feeds one poll outcome. The first conclusive poll decides the state
    /// of an unknown relay; after that a down relay needs `rise` answering
    /// polls in a row to come back, and an up or full relay `fall` failed
    /// polls in a row to go down. A full relay becomes up on the first poll
    /// that answers (it was answering all along).
    pub fn observe(
        &mut self,
        outcome: PollOutcome,
        rise: u32,
        fall: u32,
        now: SystemTime,
    ) -> Option<Transition> {
        let (answered_state, reason) = match outcome {
            PollOutcome::Status(status) => {
                let n = status.mounts.len();
                self.last_status = Some(Arc::new(status));
                (
                    Some(RelayState::Up),
                    format!("status ok, {n} mount{}", if n == 1 { "" } else { "s" }),
                )
            }
            PollOutcome::ServerFull => (
                Some(RelayState::Full),
                "server full: 403 Icecast connection limit reached".to_string(),
            ),
            PollOutcome::Failed(why) => (None, shorten(why.to_string())),
        };
        match answered_state {
            Some(to) => {
                self.good_streak = self.good_streak.saturating_add(1);
                self.bad_streak = 0;
                let comes_up = match self.state {
                    RelayState::Down => self.good_streak >= rise,
                    RelayState::Unknown | RelayState::Up | RelayState::Full => true,
                };
                if comes_up {
                    self.set(to, reason, now)
                } else {
                    self.reason = format!(
                        "recovering ({}/{rise} good polls): {reason}",
                        self.good_streak
                    )
                    .into();
                    None
                }
            }
            None => {
                self.bad_streak = self.bad_streak.saturating_add(1);
                self.good_streak = 0;
                let goes_down = match self.state {
                    RelayState::Unknown | RelayState::Down => true,
                    RelayState::Up | RelayState::Full => self.bad_streak >= fall,
                };
                if goes_down {
                    self.last_status = None;
                    self.set(RelayState::Down, reason, now)
                } else {
                    self.reason =
                        format!("failing ({}/{fall} bad polls): {reason}", self.bad_streak).into();
                    None
                }
            }
        }
    }

    fn set(&mut self, to: RelayState, reason: String, now: SystemTime) -> Option<Transition> {
        self.reason = reason.into();
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.since = now;
        Some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icecast::{MaxListeners, MountStatus};

    fn ok() -> PollOutcome {
        PollOutcome::Status(RelayStatus {
            mounts: vec![MountStatus {
                path: "/live.ogg".into(),
                listeners: 1,
                max_listeners: MaxListeners::Limited(5),
                bitrate_kbps: None,
            }],
        })
    }

    fn bad() -> PollOutcome {
        PollOutcome::Failed(PollFailure::Connect("connection refused".into()))
    }

    fn run(h: &mut Health, outcomes: Vec<PollOutcome>) -> Vec<RelayState> {
        outcomes
            .into_iter()
            .map(|o| {
                h.observe(o, 2, 3, SystemTime::UNIX_EPOCH);
                h.state()
            })
            .collect()
    }

    #[test]
    fn a_relay_cannot_write_megabytes_into_a_reason() {
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        let huge = format!("<html>{}</html>", "é".repeat(2_000_000));
        h.observe(
            PollOutcome::Failed(PollFailure::Body(huge)),
            1,
            1,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(h.reason().chars().count(), MAX_REASON + 1);
        assert!(h.reason().ends_with('…'));
    }

    #[test]
    fn first_poll_decides_an_unknown_relay() {
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        assert_eq!(run(&mut h, vec![ok()]), [RelayState::Up]);
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        assert_eq!(run(&mut h, vec![bad()]), [RelayState::Down]);
    }

    #[test]
    fn up_relay_goes_down_after_fall_bad_polls_and_keeps_its_counts_until_then() {
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        let states = run(&mut h, vec![ok(), bad(), bad()]);
        assert_eq!(states, [RelayState::Up, RelayState::Up, RelayState::Up]);
        assert!(
            h.last_status().is_some(),
            "counts survive until the relay is declared down"
        );
        assert!(
            h.reason().contains("2/3"),
            "reason shows progress: {}",
            h.reason()
        );
        assert_eq!(run(&mut h, vec![bad()]), [RelayState::Down]);
        assert!(h.last_status().is_none());
    }

    #[test]
    fn down_relay_needs_rise_good_polls_in_a_row() {
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        let states = run(&mut h, vec![bad(), ok(), bad(), ok(), ok()]);
        assert_eq!(
            states,
            [
                RelayState::Down,
                RelayState::Down,
                RelayState::Down,
                RelayState::Down,
                RelayState::Up
            ]
        );
    }

    #[test]
    fn server_full_is_alive_not_down() {
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        let states = run(&mut h, vec![ok(), PollOutcome::ServerFull, ok()]);
        assert_eq!(states, [RelayState::Up, RelayState::Full, RelayState::Up]);
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        let states = run(
            &mut h,
            vec![bad(), PollOutcome::ServerFull, PollOutcome::ServerFull],
        );
        assert_eq!(
            states,
            [RelayState::Down, RelayState::Down, RelayState::Full]
        );
    }

    #[test]
    fn transitions_are_reported_once_with_since() {
        let mut h = Health::new(SystemTime::UNIX_EPOCH);
        let t1 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5);
        assert_eq!(
            h.observe(ok(), 2, 2, t1),
            Some(Transition {
                from: RelayState::Unknown,
                to: RelayState::Up
            })
        );
        assert_eq!(
            h.observe(ok(), 2, 2, t1 + std::time::Duration::from_secs(2)),
            None
        );
        assert_eq!(h.since(), t1);
    }
}
