//! The last minutes of the cluster, for the status page's charts: a
//! bounded ring of samples, one every [`INTERVAL`], [`CAPACITY`] of them
//! (ten minutes), taken by a small task ([`run`]) from the current snapshot
//! and the counters.
//!
//! A sample holds per relay its listeners and room, and the cumulative
//! redirect, refusal and DNS answer counts; rates are computed when a
//! report is made. Memory is bounded: `CAPACITY x relays x 12 bytes` plus
//! one shared list of relay names per config.

use crate::metrics::Metrics;
use crate::select;
use crate::shutdown::Shutdown;
use crate::snapshot::{Snapshot, Snapshots, Topology};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: ten minutes at [`INTERVAL`].
pub const CAPACITY: usize = 300;

/// The relay names of one config, shared by its samples.
pub type RelayNames = Arc<[Arc<str>]>;

/// The cluster at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken.
    pub at: SystemTime,
    /// The snapshot it was taken from.
    pub generation: u64,
    /// The relays of that snapshot's config (shared between samples of one
    /// config), in topology order.
    pub relays: Arc<[Arc<str>]>,
    /// Per relay: listeners at its last poll.
    pub listeners: Box<[u32]>,
    /// Per relay: room for new listeners on any mount (`None`: unlimited),
    /// at most `u32::MAX` (as listener counts are: 8 bytes, where an
    /// `Option<u64>` takes 16).
    pub room: Box<[Option<u32>]>,
    /// 302s sent so far (all relays and mounts of the config).
    pub redirects: u64,
    /// 503s (and 400s) for configured mounts so far.
    pub refused: u64,
    /// DNS responses sent so far (`None`: no DNS).
    pub dns_answers: Option<u64>,
}

/// The ring of samples. Written by [`run`] every [`INTERVAL`], read by the
/// status page.
#[derive(Debug)]
pub struct History {
    ring: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        History::with_capacity(CAPACITY)
    }
}

impl History {
    /// A ring keeping the last `capacity` samples (at least one).
    pub fn with_capacity(capacity: usize) -> History {
        let capacity = capacity.max(1);
        History {
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Adds `sample`, dropping the oldest when full.
    pub fn push(&self, sample: Sample) {
        let mut ring = self.lock();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No sample yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The history as series for charts and `/status.json`: one entry per
    /// sample, relays of the newest sample's config, rates per second
    /// between consecutive samples.
    pub fn report(&self) -> HistoryReport {
        let ring = self.lock();
        let mut out = HistoryReport {
            interval_seconds: INTERVAL.as_secs_f64(),
            ..HistoryReport::default()
        };
        let Some(newest) = ring.back() else {
            return out;
        };
        out.relays = newest
            .relays
            .iter()
            .map(|n| RelayHistory {
                name: n.to_string(),
                listeners: Vec::new(),
                room: Vec::new(),
            })
            .collect();
        let mut prev: Option<&Sample> = None;
        for s in ring.iter() {
            out.t.push(unix_seconds(s.at));
            out.generation.push(s.generation);
            let dt = prev
                .and_then(|p| s.at.duration_since(p.at).ok())
                .map(|d| d.as_secs_f64())
                .filter(|d| *d > 0.0);
            let rate = |now: Option<u64>, before: Option<u64>| match (now, before, dt) {
                (Some(a), Some(b), Some(dt)) if a >= b => Some((a - b) as f64 / dt),
                _ => None,
            };
            out.redirects_per_second
                .push(rate(Some(s.redirects), prev.map(|p| p.redirects)));
            out.refused_per_second
                .push(rate(Some(s.refused), prev.map(|p| p.refused)));
            out.dns_answers_per_second
                .push(rate(s.dns_answers, prev.and_then(|p| p.dns_answers)));
            let same_config = Arc::ptr_eq(&s.relays, &newest.relays);
            for (i, series) in out.relays.iter_mut().enumerate() {
                let at = if same_config {
                    Some(i)
                } else {
                    s.relays.iter().position(|n| **n == *series.name)
                };
                series
                    .listeners
                    .push(at.and_then(|j| s.listeners.get(j).copied()));
                series
                    .room
                    .push(at.and_then(|j| s.room.get(j).copied().flatten().map(u64::from)));
            }
            prev = Some(s);
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The history as series (`/status.json` `history`, the status page's
/// charts). Every vector has one entry per sample, oldest first.
#[derive(Debug, Default, Serialize)]
pub struct HistoryReport {
    /// Seconds between samples.
    pub interval_seconds: f64,
    /// Sample times, Unix seconds.
    pub t: Vec<f64>,
    /// Snapshot generation of each sample.
    pub generation: Vec<u64>,
    /// 302s per second since the previous sample (null for the first).
    pub redirects_per_second: Vec<Option<f64>>,
    /// 503s/400s for configured mounts per second.
    pub refused_per_second: Vec<Option<f64>>,
    /// DNS responses per second.
    pub dns_answers_per_second: Vec<Option<f64>>,
    /// Per relay of the current config.
    pub relays: Vec<RelayHistory>,
}

/// One relay's series.
#[derive(Debug, Serialize)]
pub struct RelayHistory {
    /// Relay name.
    pub name: String,
    /// Listeners (null: the relay was not configured then).
    pub listeners: Vec<Option<u32>>,
    /// Room for new listeners (null: unlimited, or not configured then).
    pub room: Vec<Option<u64>>,
}

/// Takes one sample of `snap` and the counters in `metrics`; `relays` are
/// the names of `snap`'s relays (shared between samples of one config).
pub fn sample(snap: &Snapshot, metrics: &Metrics, relays: Arc<[Arc<str>]>) -> Sample {
    let counts = metrics.redirect_counts(snap);
    Sample {
        at: SystemTime::now(),
        generation: snap.generation,
        relays,
        listeners: snap.relays.iter().map(|v| v.listeners).collect(),
        room: snap
            .relays
            .ids()
            .map(|r| select::relay_room(snap, r).map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
            .collect(),
        redirects: counts.sent_total(),
        refused: counts.refused_total(),
        dns_answers: metrics
            .dns_counts()
            .map(|t| t.udp_fast + t.udp_handler + t.tcp),
    }
}

/// Samples the current snapshot of `snapshots` and the counters of
/// `metrics` every [`INTERVAL`] into `history` until `shutdown`, from the
/// first snapshot in which every relay has been polled.
pub async fn run(
    snapshots: Arc<Snapshots>,
    metrics: Arc<Metrics>,
    history: Arc<History>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut names: Option<(Arc<Topology>, RelayNames)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let snap = snapshots.load_full();
        if !snap.first_round_done {
            // Unpolled relays would chart as zero listeners and room.
            continue;
        }
        let relays = match &names {
            Some((topo, n)) if Arc::ptr_eq(topo, &snap.topology) => n.clone(),
            _ => {
                let n: Arc<[Arc<str>]> = snap
                    .topology
                    .relays
                    .iter()
                    .map(|r| r.name.clone())
                    .collect();
                names = Some((snap.topology.clone(), n.clone()));
                n
            }
        };
        history.push(sample(&snap, &metrics, relays));
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn names(n: &[&str]) -> Arc<[Arc<str>]> {
        n.iter().map(|s| Arc::from(*s)).collect()
    }

    fn sample_at(secs: u64, relays: &Arc<[Arc<str>]>, listeners: &[u32], redirects: u64) -> Sample {
        Sample {
            at: at(secs),
            generation: secs,
            relays: relays.clone(),
            listeners: listeners.into(),
            room: listeners.iter().map(|l| Some(100 - l)).collect(),
            redirects,
            refused: 0,
            dns_answers: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_up_to_its_capacity() {
        let h = History::with_capacity(3);
        let r = names(&["a"]);
        assert!(h.is_empty());
        for i in 0..5 {
            h.push(sample_at(i * 2, &r, &[i as u32], 0));
        }
        assert_eq!(h.len(), 3);
        let rep = h.report();
        assert_eq!(rep.generation, vec![4, 6, 8]);
        assert_eq!(rep.relays[0].listeners, vec![Some(2), Some(3), Some(4)]);
        assert_eq!(rep.relays[0].room, vec![Some(98), Some(97), Some(96)]);
    }

    #[test]
    fn rates_are_per_second_between_consecutive_samples() {
        let h = History::default();
        let r = names(&["a"]);
        h.push(sample_at(0, &r, &[0], 10));
        h.push(sample_at(2, &r, &[0], 16));
        h.push(sample_at(4, &r, &[0], 16));
        let rep = h.report();
        assert_eq!(rep.redirects_per_second, vec![None, Some(3.0), Some(0.0)]);
        assert_eq!(rep.dns_answers_per_second, vec![None, None, None]);
        assert_eq!(rep.interval_seconds, 2.0);
        assert_eq!(rep.t.len(), 3);
    }

    #[test]
    fn relays_follow_the_newest_config_by_name() {
        let h = History::default();
        let old = names(&["a", "b"]);
        let new = names(&["b", "c"]);
        h.push(sample_at(0, &old, &[1, 2], 0));
        h.push(sample_at(2, &new, &[3, 4], 0));
        let rep = h.report();
        let by_name: Vec<_> = rep
            .relays
            .iter()
            .map(|r| (r.name.as_str(), r.listeners.clone()))
            .collect();
        assert_eq!(
            by_name,
            vec![("b", vec![Some(2), Some(3)]), ("c", vec![None, Some(4)])]
        );
    }

    #[test]
    fn an_empty_history_reports_no_samples() {
        let rep = History::default().report();
        assert!(rep.t.is_empty() && rep.relays.is_empty());
    }
}
