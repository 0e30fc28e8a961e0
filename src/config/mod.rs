//! The operator's TOML config, parsed once into typed, validated values.
//!
//! [`load`] reads the file, reports every problem it can find as a
//! [`Diagnostic`] with file, line and column (syntax errors, unknown keys,
//! bad values, cross-section mistakes such as a duplicate relay or a balanced
//! name outside every zone), loads the zone files the config points at, and
//! returns a [`Loaded`] only when nothing is an error. Serving code only ever
//! sees [`Config`] and the other types of `model`, re-exported here; raw TOML
//! stays in `raw`, and `validate` turns one into the other.
//!
//! Relative paths are relative to the config file's directory; durations are
//! strings such as `"500ms"`.

mod duration;
mod model;
mod raw;
mod validate;

pub use model::*;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::zones::ZoneSet;
use std::path::Path;
use std::sync::Arc;
use validate::Cx;

/// A validated config plus the zones it points at: everything `serve` needs
/// from disk, swapped as one value on reload.
#[derive(Debug)]
pub struct Loaded {
    /// The validated config.
    pub config: Arc<Config>,
    /// The zone files of `[dns] zones`.
    pub zones: Arc<ZoneSet>,
    /// Warnings found while loading (the load succeeded).
    pub warnings: Diagnostics,
}

/// Loads and validates the config at `path` and the zones it names, exactly
/// as `serve` and reload do. `Err` carries every diagnostic (at least one
/// error); `Ok` carries the warnings.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(path, &text),
        Err(e) => {
            let message = format!("cannot read config: {e}");
            Err(Diagnostics(vec![Diagnostic::error(path, 0, 0, message)]))
        }
    }
}

/// [`load`] for config text already in memory; `path` names the file in
/// diagnostics and anchors relative paths.
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, Diagnostics> {
    let mut cx = Cx::new(path, text);
    let mut config = cx.config();
    // Zones load even when other sections have errors, so one run of
    // `floe check` reports the problems of every file.
    let zones_dir = config
        .as_ref()
        .map(|c| c.dns.zones.clone())
        .or(cx.zones_dir.take());
    let zones = zones_dir.and_then(|dir| {
        let (zones, zd) = ZoneSet::load(&dir);
        cx.diags.0.extend(zd.0);
        zones
    });
    if let (Some(config), Some(zones)) = (&mut config, &zones) {
        cx.check_names_in_zones(config, zones);
        cx.acme_names(config, zones);
    }
    match (config, zones) {
        (Some(config), Some(zones)) if !cx.diags.has_errors() => Ok(Loaded {
            config: Arc::new(config),
            zones: Arc::new(zones),
            warnings: cx.diags,
        }),
        _ => Err(cx.diags),
    }
}

/// Parses and validates config text without touching the zone files: the
/// config (when it has no error) and every diagnostic found.
pub fn parse(path: &Path, text: &str) -> (Option<Config>, Diagnostics) {
    let mut cx = Cx::new(path, text);
    let config = cx.config().filter(|_| !cx.diags.has_errors());
    (config, cx.diags)
}

#[cfg(test)]
mod tests;
