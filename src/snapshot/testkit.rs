//! Test clusters for the unit tests of the modules that read snapshots: a
//! topology from a config text, and a snapshot from poll outcomes, built
//! the way the poller builds one.

use super::{RelayObservation, ReloadReport, Snapshot, Stamp, Topology};
use crate::grants::GrantSample;
use crate::health::{Health, PollOutcome};
use crate::icecast::{MaxListeners, MountStatus, RelayStatus};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// The topology of config text `toml` (panics on an invalid test config).
pub(crate) fn topology(toml: &str) -> Arc<Topology> {
    let (config, diags) = crate::config::parse(Path::new("/test/floe.toml"), toml);
    let config = config.unwrap_or_else(|| panic!("test config invalid:\n{diags}"));
    Arc::new(Topology::new(Arc::new(config), None))
}

/// A status listing `(path, listeners, max)` mounts.
pub(crate) fn status(mounts: &[(&str, u32, MaxListeners)]) -> PollOutcome {
    PollOutcome::Status(RelayStatus {
        mounts: mounts
            .iter()
            .map(|&(path, listeners, max_listeners)| MountStatus {
                path: path.into(),
                listeners,
                max_listeners,
                bitrate_kbps: None,
            })
            .collect(),
    })
}

/// A snapshot (generation `generation`) of `topology` in which relay i
/// had one poll with `outcomes[i]` (`None`: not polled yet) at `at`,
/// judged with `rise = fall = rise_fall`, with the reload history `reload`.
pub(crate) fn snapshot(
    topology: Arc<Topology>,
    outcomes: Vec<Option<PollOutcome>>,
    rise_fall: u32,
    at: SystemTime,
    generation: u64,
    reload: ReloadReport,
) -> Snapshot {
    let observations: Vec<Option<RelayObservation>> = outcomes
        .into_iter()
        .map(|outcome| {
            let mut health = Health::new(at);
            health.observe(outcome?, rise_fall, rise_fall, at);
            Some(RelayObservation {
                health,
                baseline: GrantSample::default(),
                polled_at: Some(at),
                polls: 1,
                poll_duration: None,
            })
        })
        .collect();
    let refs: Vec<Option<&RelayObservation>> = observations.iter().map(Option::as_ref).collect();
    Snapshot::build(
        topology,
        &refs,
        &[],
        Stamp::now(generation),
        Arc::new(reload),
    )
}
