//! Durations written as strings (`"500ms"`, `"2s"`, `"1m"`) in the config.

use serde::{Deserialize, Deserializer, de::Error as _};
use std::time::Duration;

/// A duration as the config writes it: a humantime string such as `"500ms"`
/// or `"2s"`, with a message an operator can act on when it does not parse.
#[derive(Debug, Clone, Copy)]
pub struct Human(pub Duration);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Human).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {s:?} ({e}); write e.g. \"500ms\", \"2s\", \"1m\""
            ))
        })
    }
}
