//! Durations written as strings (`"500ms"`, `"2s"`, `"1m"`) in the config.

use serde::{Deserialize, Deserializer, de::Error as _};
use std::time::Duration;

/// A duration as the config writes it: a humantime string such as `"500ms"`
/// or `"2s"`, with a message an operator can act on when it does not parse.
/// At most [`MAX`].
#[derive(Debug, Clone, Copy)]
pub struct Human(pub Duration);

/// The longest duration a config may give (100 years): floe adds
/// durations to clocks and multiplies them (the default `grant_ttl` is
/// three intervals and more), which must not overflow.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {s:?} ({e}); write e.g. \"500ms\", \"2s\", \"1m\""
            ))
        })?;
        if d > MAX {
            return Err(D::Error::custom(format!(
                "duration {s:?} is longer than 100 years"
            )));
        }
        Ok(Human(d))
    }
}
