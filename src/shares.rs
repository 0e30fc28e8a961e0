//! How several floe instances (the zone's NS set) split each relay's free
//! slots between them without overfilling it: each grants at most its share
//! of the poll-time free slots, and the shares of all instances sum to at
//! most one.
//!
//! A static share (`[select] share`, 1/n) refuses listeners while room is
//! free whenever traffic reaches the instances unevenly, and it always
//! does (resolvers prefer the name server with the lowest round-trip time,
//! browsers stick to one address). With `[[peer]]`s, the instances exchange
//! their demand (redirect requests per mount per poll interval) and each
//! takes the part of the room its demand is of the total:
//!
//! `share_i = pool_i x (own_i + P) / ((own_i + P) + sum over connected peers j of (seen_i(j) + P))`
//!
//! The shares sum to at most one however the views lag, by two rules:
//! an instance counts **its own** demand as the *lowest* it published over
//! the last [`WINDOW_INTERVALS`] intervals, and **a peer's** as the
//! *highest* it fetched over the same window. Every peer fetches every
//! interval, so whatever one instance believes of another is at least what
//! that other counts for itself, and each share is at most its owner's
//! part of the true total. `P` ([`PRIOR_DEMAND`]) makes the shares equal
//! while nobody has demand and lets an idle instance start.
//!
//! A peer not connected both ways (not fetched within the window, or not
//! fetching us) keeps its static part: `pool_i = 1 - static x unconnected`.
//! Two groups of instances that cannot see each other then split the room
//! by static parts between groups and by demand within each.
//!
//! **The remainder.** A part of a relay's free slots is rounded down, so
//! the parts of all instances never sum past the whole even though each
//! instance read the relay's count at its own poll. Rounding every part
//! down strands the last slot or two of every relay (0.9 x 1 rounds to 0),
//! and near the peak every listener refused while such a slot is free
//! counts. So one instance rounds up: the one holding **more than half** of
//! the demand, which at any moment at most one instance does (the shares
//! sum to at most one). Shares move, so the holder can change while the
//! previous holder's last rounded-up grant is still on its way to the
//! relay; an instance therefore rounds up only once it has held its
//! majority for [`Exchange::remainder_after`] (a grant's whole life, until
//! every instance's poll shows it, plus two exchange rounds), and by then
//! the previous holder stopped rounding up long enough ago that its grants
//! are in every instance's count.

pub mod grid;

use crate::config::PollConfig;
use crate::ids::{MountId, PerMount};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Intervals of demand history a share is computed over: a peer must have
/// been fetched within this many poll intervals to count as connected.
pub const WINDOW_INTERVALS: u32 = 2;

/// Publications a demand is averaged over (a sliding window, so one
/// quiet interval does not drop an instance's share).
pub const DEMAND_SPAN: usize = 4;

/// Demand (requests per interval) every instance is credited with on top of
/// its own: the shares start equal when nobody has demand yet, and an idle
/// instance keeps a foothold for its first listeners.
pub const PRIOR_DEMAND: f64 = 10.0;

/// This instance's demand: redirect requests answered per mount (a `302`
/// or a refusal; not `HEAD` or `OPTIONS`), cumulative. One relaxed atomic
/// add on the redirect path; [`Exchange::publish`] turns the counts into
/// requests per interval. Kept per topology and carried across reloads by
/// mount path, like the grant counters.
#[derive(Debug)]
pub struct Demand {
    paths: PerMount<Box<str>>,
    counts: PerMount<AtomicU64>,
}

impl Demand {
    /// Zero counts for `paths`, carrying over the counts of `previous` for
    /// the paths it has too.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>, previous: Option<&Demand>) -> Demand {
        let paths: PerMount<Box<str>> = paths.into_iter().map(Box::from).collect();
        let counts = paths
            .iter()
            .map(|p| {
                let old = previous
                    .and_then(|d| {
                        d.paths
                            .position(|q| q == p)
                            .map(|m| d.counts[m].load(Ordering::Relaxed))
                    })
                    .unwrap_or(0);
                AtomicU64::new(old)
            })
            .collect();
        Demand { paths, counts }
    }

    /// One request for mount `m`.
    #[inline]
    pub fn add(&self, m: MountId) {
        if let Some(c) = self.counts.get(m) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn counts(&self) -> PerMount<u64> {
        self.counts.map(|c| c.load(Ordering::Relaxed))
    }
}

/// The peer exchange as it stands, for the reports (`/status`,
/// `/metrics`, `/explain`) and the `/peer` answer: what this instance
/// published and what it knows of each peer. Made by the peer task, held
/// by the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerReport {
    /// This instance's `[peers] name`.
    pub name: String,
    /// The publish and fetch period.
    pub interval: Duration,
    /// The static part kept for each peer not connected (`[select] share`).
    pub static_share: f64,
    /// The mount paths, in the order of `published` and each peer's
    /// `demand` (the topology's at the round).
    pub paths: Vec<Box<str>>,
    /// This instance's demand per mount at its last publication (requests
    /// per interval): what its peers fetch.
    pub published: PerMount<f64>,
    /// Every `[[peer]]`, in config order.
    pub peers: Vec<PeerState>,
}

/// One peer as this instance sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerState {
    /// Its name.
    pub name: String,
    /// Its admin URL.
    pub url: String,
    /// Connected both ways (fetched within the window and it fetches us):
    /// its demand counts; else its static part is held back.
    pub connected: bool,
    /// Fetched within the window (what `/peer` tells it under `fetches`).
    pub fetching: bool,
    /// When the last good fetch finished.
    pub last_fetch: Option<std::time::SystemTime>,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
    /// Its demand per mount of this instance's topology at the last good
    /// fetch.
    pub demand: PerMount<f64>,
}

/// An instance's fraction of each relay's free slots, and whether it
/// rounds its part up (it holds the remainder: see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    /// Per mount (of the mount's free slots).
    pub mounts: PerMount<f64>,
    /// Per mount: this instance rounds its part up.
    pub remainder: PerMount<bool>,
    /// Of the relay-wide free slots (listener cap, uplink): from the demand
    /// summed over the mounts.
    pub relay: f64,
    /// This instance rounds its part of the relay-wide free slots up.
    pub relay_remainder: bool,
}

impl Shares {
    /// The same `share` of everything (the static split, or 1.0 alone).
    /// A static share above one half holds the remainder: the shares in the
    /// configs sum to at most one, so at most one instance has such a
    /// share, and it never changes hands.
    pub fn uniform(share: f64, mounts: usize) -> Shares {
        let majority = share > 0.5;
        Shares {
            mounts: (0..mounts).map(|_| share).collect(),
            remainder: (0..mounts).map(|_| majority).collect(),
            relay: share,
            relay_remainder: majority,
        }
    }

    /// `n` free slots, this instance's part of them: `share` of `n`,
    /// rounded up when it holds the remainder, else down.
    pub fn part(n: u64, share: f64, remainder: bool) -> u64 {
        if share >= 1.0 {
            return n;
        }
        let exact = n as f64 * share;
        (if remainder {
            exact.ceil()
        } else {
            exact.floor()
        }) as u64
    }
}

/// A peer's demand as this instance sees it: `None` when the peer is not
/// connected both ways; else the highest demand per mount (requests per
/// interval) fetched within the window.
pub type PeerDemand = Option<PerMount<f64>>;

/// This instance's shares from its own demand per mount (the lowest
/// published within the window) and its peers' (see [`PeerDemand`]), with
/// `static_share` as each unconnected peer's part.
pub fn split(static_share: f64, own: &PerMount<f64>, peers: &[PeerDemand]) -> Shares {
    let unconnected = peers.iter().filter(|p| p.is_none()).count();
    let pool = (1.0 - static_share * unconnected as f64).clamp(0.0, 1.0);
    let connected: Vec<&PerMount<f64>> = peers.iter().flatten().collect();
    let part =
        |mine: f64, theirs: f64| pool * (mine + PRIOR_DEMAND) / (mine + PRIOR_DEMAND + theirs);
    let mounts = own
        .iter_ids()
        .map(|(m, &mine)| {
            let theirs: f64 = connected
                .iter()
                .map(|p| p.get(m).copied().unwrap_or(0.0) + PRIOR_DEMAND)
                .sum();
            part(mine, theirs)
        })
        .collect();
    let total = |d: &PerMount<f64>| d.iter().sum::<f64>();
    let theirs: f64 = connected.iter().map(|p| total(p) + PRIOR_DEMAND).sum();
    let mounts: PerMount<f64> = mounts;
    Shares {
        remainder: mounts.iter().map(|_| false).collect(),
        mounts,
        relay: part(total(own), theirs),
        relay_remainder: false,
    }
}

/// One instance's side of the exchange, as a value driven with the clock
/// readings the caller chooses (the peer tasks, or the event simulation):
/// the demand it published, what it fetched from each peer, and the shares
/// that follow.
#[derive(Debug, Clone)]
pub struct Exchange {
    interval: Duration,
    static_share: f64,
    /// The request counts at the last [`DEMAND_SPAN`] + 1 publications.
    counted: VecDeque<PerMount<u64>>,
    /// Demand published (requests per mount since the previous
    /// publication), oldest first, pruned to the own window.
    published: VecDeque<(Instant, PerMount<f64>)>,
    peers: Vec<PeerView>,
    /// How long a majority must have been held before it rounds up.
    remainder_after: Duration,
    /// Since when this instance has held more than half of each mount's
    /// demand (by mount index), and of the relay-wide demand (the last
    /// entry), as of every [`Exchange::shares`] call.
    majority_since: Vec<Option<Instant>>,
    /// How long a grant counts against one poll's reading (a budget):
    /// the share applied is the lowest over this window.
    budget: Duration,
    /// The shares computed within `budget` (and the one before), oldest
    /// first.
    history: VecDeque<(Instant, Shares)>,
}

/// What this instance fetched from one peer.
#[derive(Debug, Clone, Default)]
struct PeerView {
    /// Demand per fetch, oldest first, pruned to the window.
    seen: VecDeque<(Instant, PerMount<f64>)>,
    /// The peer's last answer said it fetches from us.
    fetches_us: bool,
}

impl Exchange {
    /// An exchange with `peers` peers that publishes and fetches every
    /// `interval`, keeping `static_share` for peers not connected; an
    /// instance polling as `poll` says holds the remainder once it has had
    /// a majority for [`Exchange::remainder_after`].
    pub fn new(peers: usize, interval: Duration, static_share: f64, poll: &PollConfig) -> Exchange {
        Exchange {
            interval,
            static_share,
            counted: VecDeque::new(),
            published: VecDeque::new(),
            peers: vec![PeerView::default(); peers],
            remainder_after: Self::remainder_after(poll, interval),
            majority_since: Vec::new(),
            budget: poll.grant_window() + grid::GRID_MARGIN,
            history: VecDeque::new(),
        }
    }

    /// How long an instance must have held a majority before it rounds
    /// its parts up: a grant's whole life (until a poll that started
    /// `settle` after it shows it, [`PollConfig::grant_window`]) plus two
    /// exchange rounds (the previous holder's last round with a majority,
    /// and ours).
    pub fn remainder_after(poll: &PollConfig, interval: Duration) -> Duration {
        poll.grant_window() + interval * 2
    }

    /// How far back a peer's demand counts (and a peer must have been
    /// fetched to be connected).
    pub fn window(&self) -> Duration {
        self.interval * WINDOW_INTERVALS
    }

    /// How far back this instance's own demand counts: one interval more
    /// than the peers' window plus one of slack, so that every value a peer
    /// fetched within its window (published at most an interval before the
    /// fetch) is in it.
    fn own_window(&self) -> Duration {
        self.interval * (WINDOW_INTERVALS + 2)
    }

    /// Publishes the demand (requests per interval, averaged over the last
    /// [`DEMAND_SPAN`] intervals) from the cumulative request counts per
    /// mount `counts` (called every interval); returns it, which is what
    /// peers fetch until the next publication.
    pub fn publish(&mut self, now: Instant, counts: &PerMount<u64>) -> PerMount<f64> {
        self.counted.push_back(counts.clone());
        if self.counted.len() > DEMAND_SPAN + 1 {
            self.counted.pop_front();
        }
        let first = &self.counted[0];
        let span = (self.counted.len() - 1).max(1) as f64;
        let demand: PerMount<f64> = counts
            .iter_ids()
            .map(|(m, &c)| c.saturating_sub(first.get(m).copied().unwrap_or(0)) as f64 / span)
            .collect();
        let window = self.own_window();
        self.published.push_back((now, demand.clone()));
        prune(&mut self.published, now, window);
        demand
    }

    /// Peer `peer` answered at `now` with its latest published `demand`
    /// (per mount of this instance's topology), saying whether it fetches
    /// from this instance.
    pub fn fetched(&mut self, peer: usize, now: Instant, demand: PerMount<f64>, fetches_us: bool) {
        let window = self.window();
        if let Some(p) = self.peers.get_mut(peer) {
            p.seen.push_back((now, demand));
            prune(&mut p.seen, now, window);
            p.fetches_us = fetches_us;
        }
    }

    /// Per peer: fetched within the window (what this instance tells its
    /// peers it fetches).
    pub fn fetching(&self, now: Instant) -> Vec<bool> {
        self.peers
            .iter()
            .map(|p| fresh(&p.seen, now, self.window()))
            .collect()
    }

    /// Per peer: connected both ways (fetched within the window, and its
    /// last answer said it fetches from us): its demand counts.
    pub fn connected(&self, now: Instant) -> Vec<bool> {
        self.peers
            .iter()
            .map(|p| p.fetches_us && fresh(&p.seen, now, self.window()))
            .collect()
    }

    /// This instance's shares at `now`: per mount, the lowest share this
    /// instance has computed since the oldest poll reading its grants may
    /// still be counted against (shares move between polls, and two
    /// instances' parts of one reading sum to at most the whole only for
    /// shares computed at the same moment). Called after every change to
    /// the exchange (each round), so it sees every share and every majority
    /// this instance holds, and when it began.
    pub fn shares(&mut self, now: Instant, mounts: usize) -> Shares {
        let current = self.current_shares(now, mounts);
        self.history.push_back((now, current.clone()));
        // Keep the shares in effect at the window's start too.
        while self
            .history
            .get(1)
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.budget)
        {
            self.history.pop_front();
        }
        let lowest = |a: &mut Shares, b: &Shares| {
            for (x, y) in a.mounts.iter_mut().zip(b.mounts.iter()) {
                *x = x.min(*y);
            }
            a.relay = a.relay.min(b.relay);
        };
        let mut shares = current;
        for (_, past) in &self.history {
            if past.mounts.len() == shares.mounts.len() {
                lowest(&mut shares, past);
            }
        }
        shares
    }

    /// The shares the exchange gives at `now`, and whether this instance
    /// holds the remainder.
    fn current_shares(&mut self, now: Instant, mounts: usize) -> Shares {
        let own_window = self.own_window();
        let own: PerMount<f64> = (0..mounts)
            .map(|m| {
                self.published
                    .iter()
                    .filter(|(t, _)| now.saturating_duration_since(*t) <= own_window)
                    .map(|(_, d)| d.get(crate::ids::MountId::new(m)).copied().unwrap_or(0.0))
                    .reduce(f64::min)
                    .unwrap_or(0.0)
            })
            .collect();
        let connected = self.connected(now);
        let peers: Vec<PeerDemand> = self
            .peers
            .iter()
            .zip(connected)
            .map(|(p, connected)| {
                connected.then(|| {
                    (0..mounts)
                        .map(|m| {
                            p.seen
                                .iter()
                                .filter(|(t, _)| now.saturating_duration_since(*t) <= self.window())
                                .map(|(_, d)| {
                                    d.get(crate::ids::MountId::new(m)).copied().unwrap_or(0.0)
                                })
                                .fold(0.0, f64::max)
                        })
                        .collect()
                })
            })
            .collect();
        let mut shares = split(self.static_share, &own, &peers);
        self.majority_since.resize(mounts + 1, None);
        let mut holds = |i: usize, share: f64| {
            let since = &mut self.majority_since[i];
            *since = if share > 0.5 {
                since.or(Some(now))
            } else {
                None
            };
            since.is_some_and(|t| now.saturating_duration_since(t) >= self.remainder_after)
        };
        shares.remainder = shares
            .mounts
            .iter()
            .enumerate()
            .map(|(m, &s)| holds(m, s))
            .collect();
        shares.relay_remainder = holds(mounts, shares.relay);
        shares
    }
}

/// Drops entries older than `window` before `now`, keeping the newest.
fn prune<T>(q: &mut VecDeque<(Instant, T)>, now: Instant, window: Duration) {
    while q.len() > 1
        && q.front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
    {
        q.pop_front();
    }
}

/// Whether the newest entry is within `window` of `now`.
fn fresh<T>(q: &VecDeque<(Instant, T)>, now: Instant, window: Duration) -> bool {
    q.back()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) <= window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn demand(v: &[f64]) -> PerMount<f64> {
        v.iter().copied().collect()
    }

    #[test]
    fn demand_splits_the_room_and_an_idle_instance_keeps_a_foothold() {
        let s = split(
            1.0 / 3.0,
            &demand(&[890.0]),
            &[Some(demand(&[70.0])), Some(demand(&[10.0]))],
        );
        let m = s.mounts.iter().next().copied().unwrap();
        assert!((m - 0.9).abs() < 1e-9, "{m}");
        let idle = split(
            1.0 / 3.0,
            &demand(&[0.0]),
            &[Some(demand(&[890.0])), Some(demand(&[70.0]))],
        );
        let m = idle.mounts.iter().next().copied().unwrap();
        assert!(m > 0.0 && m < 0.02, "{m}");
    }

    #[test]
    fn demand_counts_carry_over_by_path() {
        let d = Demand::new(["/a", "/b"], None);
        d.add(MountId::new(1));
        d.add(MountId::new(1));
        let e = Demand::new(["/b", "/c"], Some(&d));
        assert_eq!(e.counts().iter().copied().collect::<Vec<_>>(), [2, 0]);
    }

    #[test]
    fn an_unconnected_peer_keeps_its_static_part() {
        let s = split(1.0 / 3.0, &demand(&[50.0]), &[None, Some(demand(&[50.0]))]);
        let m = s.mounts.iter().next().copied().unwrap();
        assert!(
            (m - 1.0 / 3.0).abs() < 1e-9,
            "half of the two thirds left: {m}"
        );
        let alone = split(0.5, &demand(&[100.0]), &[None]);
        assert_eq!(alone.relay, 0.5, "alone, the static share");
    }

    proptest! {
        /// Whatever the demands do between the instances' views, the shares
        /// of instances that follow the rules (own: lowest over the window,
        /// a peer's: highest over the window, which contains what that peer
        /// counts for itself) sum to at most one.
        #[test]
        fn shares_never_sum_past_one(
            history in proptest::collection::vec(
                proptest::collection::vec(0.0f64..1000.0, 3), 3),
            seen_at in proptest::collection::vec(0usize..3, 9),
        ) {
            // history[t][i]: instance i's published demand at interval t of
            // the window (one mount). Instance i counts itself at its lowest;
            // it saw peer j at some interval of the window and counts at
            // least that (here: exactly the value seen, a lower bound of the
            // highest).
            let n = 3;
            let mut sum = 0.0;
            for i in 0..n {
                let own = (0..3).map(|t| history[t][i]).fold(f64::INFINITY, f64::min);
                let peers: Vec<PeerDemand> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let seen = history[seen_at[i * n + j]][j];
                        Some(demand(&[seen]))
                    })
                    .collect();
                sum += split(1.0 / 3.0, &demand(&[own]), &peers).relay;
            }
            prop_assert!(sum <= 1.0 + 1e-9, "shares sum to {}", sum);
        }
    }
}
