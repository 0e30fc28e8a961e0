//! One mount of a simulated relay: its limit, its tone, its counts, and
//! Icecast's admission rule.
//!
//! Counts live under one small mutex per mount; a listener is a guard that
//! uncounts itself when its connection goes. Dropping every listener at once
//! (source cut, relay down) bumps the mount's epoch instead of touching each
//! connection: guards of an older epoch no longer count and end their
//! streams at the next chunk.

use super::MountStats;
use super::tone::{StillListening, Tone};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// One mount: its limit, its tone and its counts.
pub(super) struct Mount {
    pub(super) path: String,
    pub(super) max: Option<u32>,
    pub(super) tone: Tone,
    /// Bumped whenever the mount's listeners are dropped (source off, relay
    /// down): listeners and admissions of an older epoch no longer count.
    pub(super) epoch: AtomicU64,
    pub(super) state: Mutex<MountState>,
}

#[derive(Debug)]
pub(super) struct MountState {
    pub(super) present: bool,
    pub(super) connected: u32,
    pub(super) fake: u32,
    pub(super) pending: u32,
    pub(super) peak: u32,
    pub(super) source_since: SystemTime,
    pub(super) admitted: u64,
    pub(super) refused_full: u64,
    pub(super) refused_busy: u64,
}

impl MountState {
    pub(super) fn listeners(&self) -> u32 {
        self.connected.saturating_add(self.fake)
    }

    pub(super) fn note_peak(&mut self) {
        self.peak = self.peak.max(self.listeners());
    }
}

impl Mount {
    pub(super) fn new(path: String, max: Option<u32>, tone: Tone, now: SystemTime) -> Self {
        let state = MountState {
            present: true,
            connected: 0,
            fake: 0,
            pending: 0,
            peak: 0,
            source_since: now,
            admitted: 0,
            refused_full: 0,
            refused_busy: 0,
        };
        Mount {
            path,
            max,
            tone,
            epoch: AtomicU64::new(0),
            state: Mutex::new(state),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, MountState> {
        lock(&self.state)
    }

    /// Drops every listener and admission (the caller holds the lock).
    pub(super) fn reset(&self, s: &mut MountState) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        s.connected = 0;
        s.fake = 0;
        s.pending = 0;
    }

    pub(super) fn stats(&self) -> MountStats {
        let s = self.lock();
        MountStats {
            path: self.path.clone(),
            present: s.present,
            listeners: s.listeners(),
            connected: s.connected,
            fake: s.fake,
            admitting: s.pending,
            peak: s.peak,
            max_listeners: self.max,
            admitted: s.admitted,
            refused_full: s.refused_full,
            refused_busy: s.refused_busy,
        }
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the
/// counts consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A counted listener: uncounted when dropped (its connection closed),
/// unless the mount was reset meanwhile.
pub(super) struct ListenerGuard {
    mount: Arc<Mount>,
    epoch: u64,
}

impl StillListening for ListenerGuard {
    fn still_listening(&self) -> bool {
        self.mount.epoch.load(Ordering::SeqCst) == self.epoch
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        let mut s = self.mount.lock();
        if self.mount.epoch.load(Ordering::SeqCst) == self.epoch {
            s.connected = s.connected.saturating_sub(1);
        }
    }
}

/// A listener being admitted: uncounted from `pending` by
/// [`PendingGuard::settle`], or when dropped (the client gave up during the
/// admission delay).
struct PendingGuard {
    mount: Arc<Mount>,
    epoch: u64,
    settled: bool,
}

impl PendingGuard {
    /// Uncounts the admission under the caller's lock, so that it and the
    /// listener's count change together.
    fn settle(mut self, s: &mut MountState) {
        self.settled = true;
        if self.mount.epoch.load(Ordering::SeqCst) == self.epoch {
            s.pending = s.pending.saturating_sub(1);
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut s = self.mount.lock();
        if self.mount.epoch.load(Ordering::SeqCst) == self.epoch {
            s.pending = s.pending.saturating_sub(1);
        }
    }
}

/// Why a listener was not admitted.
pub(super) enum Refusal {
    /// No source: `404 The file you requested could not be found`.
    NoSource,
    /// `403 max listeners reached`.
    Full,
    /// `404 Mount unavailable`: earlier listeners still being admitted.
    Busy,
}

/// Icecast's admission: refuse when full (403) or when the listeners being
/// admitted would overfill the mount (404), else wait the admission delay
/// and count the listener.
pub(super) async fn admit(delay: Duration, mount: &Arc<Mount>) -> Result<ListenerGuard, Refusal> {
    let pending = {
        let mut s = mount.lock();
        if !s.present {
            return Err(Refusal::NoSource);
        }
        if let Some(max) = mount.max {
            if s.listeners() >= max {
                s.refused_full += 1;
                return Err(Refusal::Full);
            }
            if s.listeners().saturating_add(s.pending) >= max {
                s.refused_busy += 1;
                return Err(Refusal::Busy);
            }
        }
        if delay.is_zero() {
            return Ok(count_listener(mount, &mut s));
        }
        s.pending += 1;
        PendingGuard {
            mount: mount.clone(),
            epoch: mount.epoch.load(Ordering::SeqCst),
            settled: false,
        }
    };
    tokio::time::sleep(delay).await;
    let epoch = pending.epoch;
    let mut s = mount.lock();
    pending.settle(&mut s);
    if mount.epoch.load(Ordering::SeqCst) != epoch || !s.present {
        return Err(Refusal::NoSource);
    }
    if mount.max.is_some_and(|max| s.listeners() >= max) {
        // Fake listeners arrived meanwhile.
        s.refused_full += 1;
        return Err(Refusal::Full);
    }
    Ok(count_listener(mount, &mut s))
}

fn count_listener(mount: &Arc<Mount>, s: &mut MountState) -> ListenerGuard {
    s.connected += 1;
    s.admitted += 1;
    s.note_peak();
    ListenerGuard {
        mount: mount.clone(),
        epoch: mount.epoch.load(Ordering::SeqCst),
    }
}
