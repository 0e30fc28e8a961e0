//! Durations written as strings (`"500ms"`, `"2s"`, `"1m"`) in the config.

use serde::{Deserialize, Deserializer, de::Error as _};
use std::time::Duration;

/// Deserializes a humantime string such as `"500ms"` or `"2s"`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(D::Error::custom)
}

/// Parses a humantime duration, with a message an operator can act on.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"500ms\", \"2s\", \"1m\""))
}

/// `Option<Duration>` from an optional humantime string.
pub mod option {
    use super::*;

    /// Deserializes `Some(duration)` from a present string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}
