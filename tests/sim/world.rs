//! The relays as they are (what Icecast would count), whatever any
//! balancer believes: listeners per mount, which relays answer, which
//! mounts have a source, what a poll of a relay would read, and since when
//! each free slot has been free.

use super::Time;
use super::scenario::Scenario;
use floe::health::{PollFailure, PollOutcome};
use floe::icecast::{MaxListeners, MountStatus, RelayStatus};
use std::collections::VecDeque;

/// Why a relay did not take a listener that reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The relay does not answer.
    Down,
    /// The mount has no source there (404).
    NoSource,
    /// Icecast's limit is reached (403).
    Full,
}

/// One relay's truth.
#[derive(Debug, Clone)]
pub struct Relay {
    /// Listeners per mount.
    pub listeners: Vec<u32>,
    /// It answers.
    pub up: bool,
    /// Per mount: a source is connected.
    pub source: Vec<bool>,
    /// Icecast's limit.
    slots: u32,
    /// Listeners its uplink carries (`slots` if no cap).
    carried: u32,
    /// When each free slot (of `carried`) became free, oldest first; a
    /// slot a redirected player is on its way to is taken already.
    free: VecDeque<Time>,
    /// Listeners let in past what the uplink carries (they hold no slot).
    over: u32,
}

impl Relay {
    fn total(&self) -> u32 {
        self.listeners.iter().sum()
    }
}

/// Every relay's truth.
#[derive(Debug, Clone)]
pub struct World {
    /// The relays, in scenario order.
    pub relays: Vec<Relay>,
}

impl World {
    /// Every relay up, every source on, nobody listening, every slot free
    /// since time 0.
    pub fn new(s: &Scenario) -> World {
        // Every mount has the same bitrate in the scenarios: the uplink
        // carries uplink / bitrate listeners whatever they listen to.
        let kbps = s.mounts[0].kbps;
        World {
            relays: s
                .relays
                .iter()
                .map(|r| {
                    let carried = r.uplink_kbps.map_or(r.slots, |u| (u / kbps).min(r.slots));
                    Relay {
                        listeners: vec![0; s.mounts.len()],
                        up: true,
                        source: vec![true; s.mounts.len()],
                        slots: r.slots,
                        carried,
                        free: std::iter::repeat_n(0, carried as usize).collect(),
                        over: 0,
                    }
                })
                .collect(),
        }
    }

    /// Listeners on relay `r`, all mounts.
    pub fn total(&self, r: usize) -> u32 {
        self.relays[r].total()
    }

    /// A player was sent to relay `r`: it takes the oldest free slot, if
    /// any; its age is returned, to give back if the relay refuses.
    pub fn redirected(&mut self, r: usize) -> Option<Time> {
        self.relays[r].free.pop_front()
    }

    /// The player that took slot `held` (from [`Self::redirected`]) reaches
    /// relay `r` for `mount`: `Ok(true)` playing well, `Ok(false)` let in
    /// past what the uplink carries (overfill: everyone there stutters),
    /// `Err` refused (the slot goes back).
    pub fn connect(&mut self, r: usize, mount: usize, held: Option<Time>) -> Result<bool, Refusal> {
        let relay = &mut self.relays[r];
        let refusal = if !relay.up {
            Some(Refusal::Down)
        } else if !relay.source[mount] {
            Some(Refusal::NoSource)
        } else if relay.total() >= relay.slots {
            Some(Refusal::Full)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if let Some(t) = held
                && relay.up
            {
                relay.free.push_front(t);
            }
            return Err(refusal);
        }
        relay.listeners[mount] += 1;
        if held.is_none() {
            relay.over += 1;
        }
        Ok(held.is_some())
    }

    /// A listener of `mount` on relay `r` leaves at `now`.
    pub fn leave(&mut self, r: usize, mount: usize, now: Time) {
        let relay = &mut self.relays[r];
        if relay.listeners[mount] == 0 {
            return;
        }
        relay.listeners[mount] -= 1;
        // While listeners beyond what the uplink carries remain, a
        // departure frees no slot.
        if relay.over > 0 {
            relay.over -= 1;
        } else {
            relay.free.push_back(now);
        }
    }

    /// Relay `r` stops answering at `now`: its listeners are gone (the
    /// caller sends them back to the balancer) and so is its room.
    pub fn down(&mut self, r: usize) {
        let relay = &mut self.relays[r];
        relay.up = false;
        relay.listeners.iter_mut().for_each(|l| *l = 0);
        relay.free.clear();
        relay.over = 0;
    }

    /// Relay `r` answers again at `now`, empty.
    pub fn up(&mut self, r: usize, now: Time) {
        let relay = &mut self.relays[r];
        relay.up = true;
        relay.free = std::iter::repeat_n(now, relay.carried as usize).collect();
    }

    /// Whether a slot for `mount` has been free since `seen` or earlier: a
    /// balancer that polls every relay often enough could know of it.
    pub fn free_since(&self, mount: usize, seen: Time) -> bool {
        self.eligible(mount)
            .any(|r| r.free.front().is_some_and(|&t| t <= seen))
    }

    fn eligible(&self, mount: usize) -> impl Iterator<Item = &Relay> {
        self.relays.iter().filter(move |r| r.up && r.source[mount])
    }

    /// Listener slots of the relays that are up (what utilisation is of).
    pub fn capacity_up(&self) -> u64 {
        self.relays
            .iter()
            .filter(|r| r.up)
            .map(|r| u64::from(r.carried))
            .sum()
    }

    /// What a poll of relay `r` reads now: Icecast's status (mounts with a
    /// source, listeners, limit), or a connect failure.
    pub fn poll(&self, r: usize, paths: &[&str]) -> PollOutcome {
        let relay = &self.relays[r];
        if !relay.up {
            return PollOutcome::Failed(PollFailure::Connect("connection refused".into()));
        }
        PollOutcome::Status(RelayStatus {
            mounts: paths
                .iter()
                .enumerate()
                .filter(|&(m, _)| relay.source[m])
                .map(|(m, p)| MountStatus {
                    path: (*p).to_string(),
                    listeners: relay.listeners[m],
                    max_listeners: MaxListeners::Limited(relay.slots),
                    bitrate_kbps: None,
                })
                .collect(),
        })
    }
}
