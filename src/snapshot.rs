//! The snapshot: one immutable view of every relay and mount, built from the
//! config and the latest poll results, published through `arc-swap`.
//!
//! Two layers:
//! - [`Topology`]: what follows from the config alone (relays, mounts,
//!   streams, pre-rendered redirect targets, grant counters). Built once per
//!   config load and shared by every snapshot of that config.
//! - [`Snapshot`]: the dynamic part (each relay's health and each relay x
//!   mount cell's listeners, capacity and grant baseline) plus a generation
//!   number and build time. Rebuilt after polls; never mutated.
//!
//! DNS and HTTP load the current snapshot from [`Snapshots`] (lock-free,
//! wait-free for readers) and never wait for the poller. Only grant counters
//! (atomics, see [`crate::grants`]) change under a published snapshot.

use crate::config::{ANY_GROUP, Config, RelayConfig};
use crate::draw::RunningSums;
use crate::grants::{GrantSample, RelayGrants};
use crate::health::{Health, RelayState};
pub use crate::ids::{
    Grid, GroupId, MountId, PerGroup, PerMount, PerPool, PerRelay, PerStream, PoolId, RelayId,
    StreamId,
};
use crate::networks::NetworkMap;
use crate::shares::{Demand, PeerReport, Shares};
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

/// The config-derived, poll-independent part of every snapshot.
#[derive(Debug)]
pub struct Topology {
    /// The config this was built from.
    pub config: Arc<Config>,
    /// Every configured relay.
    pub relays: PerRelay<RelayDef>,
    /// Every configured mount, across streams.
    pub mounts: PerMount<MountDef>,
    /// Every configured stream.
    pub streams: PerStream<StreamDef>,
    /// The relay groups: the config's `[[group]]`s, then `*` (every relay
    /// not in an exclusive group).
    pub groups: PerGroup<GroupDef>,
    /// The listener pools, the default one first.
    pub pools: PerPool<PoolDef>,
    /// Client networks and the pool each belongs to.
    pub pool_networks: NetworkMap<PoolId>,
    /// Redirect requests per mount, for the peer exchange (carried over
    /// from the previous topology by path).
    pub demand: Arc<Demand>,
    mount_index: HashMap<Box<str>, MountId>,
}

/// One relay group.
#[derive(Debug)]
pub struct GroupDef {
    /// Name from the config (`*` for the implicit group).
    pub name: Box<str>,
    /// Its relays, in topology order.
    pub relays: Box<[RelayId]>,
    /// Per relay: whether it is in the group.
    pub members: PerRelay<bool>,
}

/// One listener pool.
#[derive(Debug)]
pub struct PoolDef {
    /// Name from the config (`default` for everyone else).
    pub name: Box<str>,
    /// The groups tried for its listeners, in order.
    pub order: Box<[GroupId]>,
}

/// The pool of listeners no pool's networks cover.
pub const DEFAULT_POOL: PoolId = PoolId::new(0);

/// One relay as configured.
#[derive(Debug)]
pub struct RelayDef {
    /// Name from the config.
    pub name: Arc<str>,
    /// The name as bytes, for response headers without a copy.
    pub name_bytes: Bytes,
    /// Base URL (no trailing slash).
    pub url: Box<str>,
    /// Base URL for requests that came over TLS (no trailing slash).
    pub https_url: Option<Box<str>>,
    /// DNS addresses.
    pub addresses: Box<[IpAddr]>,
    /// Selection weight.
    pub weight: u32,
    /// Cap on the relay's listeners (all mounts).
    pub max_listeners: Option<u32>,
    /// Uplink in kbit/s.
    pub uplink_kbps: Option<u32>,
    /// Config cap per mount.
    pub mount_caps: PerMount<Option<u32>>,
    /// `url + mount` for each mount: the 302 Location, rendered once.
    pub locations: PerMount<Bytes>,
    /// `https_url + mount` for each mount: the Location for a request that
    /// came over TLS (`None`: the relay has no `https_url`).
    pub https_locations: Option<PerMount<Bytes>>,
    /// In-flight grant counters; mount order = [`Topology::mounts`].
    pub grants: Arc<RelayGrants>,
    /// Drain set in the config.
    pub drain: bool,
}

/// One mount path.
#[derive(Debug)]
pub struct MountDef {
    /// The path, e.g. `/live.ogg`.
    pub path: Box<str>,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Bitrate assumed when the status gives none (from the stream).
    pub bitrate_kbps: Option<u32>,
}

/// One stream.
#[derive(Debug)]
pub struct StreamDef {
    /// Name from the config.
    pub name: Box<str>,
    /// Its mounts.
    pub mounts: Box<[MountId]>,
}

impl Topology {
    /// Builds the topology of `config`. Grant counters of relays that
    /// `previous` also has (same name) are carried over.
    pub fn new(config: Arc<Config>, previous: Option<&Topology>) -> Self {
        let mut mounts = Vec::new();
        let mut streams = Vec::new();
        for (sid, s) in config.streams.iter().enumerate() {
            let ids = s
                .mounts
                .iter()
                .map(|m| {
                    mounts.push(MountDef {
                        path: m.as_str().into(),
                        stream: StreamId::new(sid),
                        bitrate_kbps: s.bitrate_kbps,
                    });
                    MountId::new(mounts.len() - 1)
                })
                .collect();
            streams.push(StreamDef {
                name: s.name.as_str().into(),
                mounts: ids,
            });
        }
        let mounts: PerMount<MountDef> = mounts.into();
        let mount_index = mounts
            .iter_ids()
            .map(|(i, m)| (m.path.clone(), i))
            .collect();
        let paths: Vec<&str> = mounts.iter().map(|m| &*m.path).collect();
        let relays = config
            .relays
            .iter()
            .map(|r| {
                let grants = match previous.and_then(|p| p.relay_by_name(&r.name)) {
                    Some(old) => Arc::new(old.grants.carry_over(paths.iter().copied())),
                    None => Arc::new(RelayGrants::new(paths.iter().copied())),
                };
                RelayDef::new(r, &mounts, grants)
            })
            .collect();
        let (groups, pools, pool_networks) = pools(&config, &relays);
        let demand = Arc::new(Demand::new(
            paths.iter().copied(),
            previous.map(|p| &*p.demand),
        ));
        Topology {
            demand,
            config,
            relays,
            mounts,
            streams: streams.into(),
            groups,
            pools,
            pool_networks,
            mount_index,
        }
    }

    /// The pool a listener at `addr` belongs to: the pool of the longest
    /// configured network covering it, else the default pool.
    #[inline]
    pub fn pool_of(&self, addr: std::net::IpAddr) -> PoolId {
        if self.pool_networks.is_empty() {
            return DEFAULT_POOL;
        }
        self.pool_networks
            .lookup(addr)
            .map_or(DEFAULT_POOL, |(_, p)| *p)
    }

    /// The pool with this name.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools.position(|p| &*p.name == name)
    }

    /// The mount with exactly this path.
    pub fn mount_id(&self, path: &str) -> Option<MountId> {
        self.mount_index.get(path).copied()
    }

    /// The relay with this name.
    pub fn relay_by_name(&self, name: &str) -> Option<&RelayDef> {
        self.relay_id(name).map(|r| &self.relays[r])
    }

    /// The id of the relay with this name.
    pub fn relay_id(&self, name: &str) -> Option<RelayId> {
        self.relays.position(|r| &*r.name == name)
    }

    /// The stream with this name.
    pub fn stream_id(&self, name: &str) -> Option<StreamId> {
        self.streams.position(|s| &*s.name == name)
    }
}

/// The groups (config order, then `*`) and pools (default first) of
/// `config` over `relays`, and the network table of the pools. The config
/// was validated: every name resolves.
fn pools(
    config: &Config,
    relays: &PerRelay<RelayDef>,
) -> (PerGroup<GroupDef>, PerPool<PoolDef>, NetworkMap<PoolId>) {
    let group = |name: &str, members: PerRelay<bool>| GroupDef {
        name: name.into(),
        relays: members
            .iter_ids()
            .filter(|(_, m)| **m)
            .map(|(r, _)| r)
            .collect(),
        members,
    };
    let mut groups: Vec<GroupDef> = config
        .groups
        .iter()
        .map(|g| {
            group(
                &g.name,
                relays.map(|r| g.relays.iter().any(|n| **n == *r.name)),
            )
        })
        .collect();
    let exclusive = relays.map(|r| {
        config
            .groups
            .iter()
            .any(|g| g.exclusive && g.relays.iter().any(|n| **n == *r.name))
    });
    groups.push(group(ANY_GROUP, exclusive.map(|e| !e)));
    let groups: PerGroup<GroupDef> = groups.into();
    let mut networks = NetworkMap::new();
    let mut pools: Vec<PoolDef> = config
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            for n in &p.networks {
                networks.insert(*n, PoolId::new(i));
            }
            PoolDef {
                name: p.name.as_str().into(),
                order: p
                    .order
                    .iter()
                    .filter_map(|g| groups.position(|d| *d.name == **g))
                    .collect(),
            }
        })
        .collect();
    if pools.is_empty() {
        // A config not made by `config::load` (validation always adds it).
        pools.push(PoolDef {
            name: crate::config::DEFAULT_POOL.into(),
            order: groups
                .position(|g| &*g.name == ANY_GROUP)
                .into_iter()
                .collect(),
        });
    }
    (groups, pools.into(), networks)
}

impl RelayDef {
    fn new(r: &RelayConfig, mounts: &PerMount<MountDef>, grants: Arc<RelayGrants>) -> Self {
        RelayDef {
            name: r.name.as_str().into(),
            name_bytes: Bytes::from(r.name.clone()),
            url: r.url.as_str().into(),
            https_url: r.https_url.as_deref().map(Into::into),
            addresses: r.addresses.clone().into(),
            weight: r.weight,
            max_listeners: r.max_listeners,
            uplink_kbps: r.uplink_kbps,
            mount_caps: mounts.map(|m| r.mount_max_listeners.get(&*m.path).copied()),
            locations: mounts.map(|m| Bytes::from(format!("{}{}", r.url, m.path))),
            https_locations: r
                .https_url
                .as_ref()
                .map(|u| mounts.map(|m| Bytes::from(format!("{u}{}", m.path)))),
            grants,
            drain: r.drain,
        }
    }
}

/// What the poller last reported about one relay: its health and the grant
/// baseline its last poll reconciled.
#[derive(Debug, Clone)]
pub struct RelayObservation {
    /// Health after the last poll (with the last good status).
    pub health: Health,
    /// Grant counters already covered by the relay's counts (see
    /// [`crate::grants`]).
    pub baseline: GrantSample,
    /// When the last poll finished.
    pub polled_at: Option<SystemTime>,
    /// Polls done so far.
    pub polls: u64,
    /// How long the last poll took.
    pub poll_duration: Option<std::time::Duration>,
}

/// How config reloads went, for the status page and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Reloads that swapped in a new config.
    pub successes: u64,
    /// Reloads that failed (the last good config kept serving).
    pub failures: u64,
    /// When the running config was loaded (`None`: the one floe started with).
    pub last_success: Option<SystemTime>,
    /// The diagnostics of the last failed reload, if it failed after the
    /// last success (cleared by the next success).
    pub last_error: Option<(SystemTime, String)>,
}

/// When and as which generation a snapshot is built: the caller reads the
/// clocks, so building stays a pure function of its inputs.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// The generation to publish as.
    pub generation: u64,
    /// Monotonic build time (for staleness).
    pub built: Instant,
    /// Wall-clock build time (for people).
    pub built_at: SystemTime,
}

impl Stamp {
    /// Generation `generation`, built at the clocks' current readings.
    pub fn now(generation: u64) -> Stamp {
        Stamp {
            generation,
            built: Instant::now(),
            built_at: SystemTime::now(),
        }
    }
}

/// The immutable state DNS and HTTP answer from.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// `generation` in decimal, rendered once for response headers.
    pub generation_text: Bytes,
    /// Wall-clock build time (for people).
    pub built_at: SystemTime,
    /// Monotonic build time (for staleness).
    pub built: Instant,
    /// The config-derived part.
    pub topology: Arc<Topology>,
    /// True once every relay has been polled at least once.
    pub first_round_done: bool,
    /// Per relay, same order as the topology.
    pub relays: PerRelay<RelayView>,
    /// Per relay x mount.
    cells: Grid<Cell>,
    /// Per relay x mount: the headroom reserve is released because a peer
    /// (a relay sharing a group with it; with no `[[group]]`s, any relay) is
    /// down or full.
    reserve_released: Grid<bool>,
    /// Per stream: the mounts a relay must carry to be a DNS candidate for
    /// the stream (those present on at least one up relay).
    pub stream_required: PerStream<Box<[MountId]>>,
    /// A digest of everything that decides, before grants, which relays
    /// can be candidates and why others cannot: the first poll round, each
    /// relay's state, drain and whether its relay-wide free slots are
    /// zero, and each cell's source, zero free slots, free slots within the
    /// reserve and reserve release. Two snapshots of one topology with the
    /// same digest differ in counts only (room, listeners, baselines): the
    /// DNS door redraws its plan at once for a snapshot with another
    /// digest (a relay went down, filled up, drained) and no more often
    /// than its cost allows for one that differs in counts only.
    pub candidacy: u64,
    /// Reload history up to this snapshot.
    pub reload: Arc<ReloadReport>,
    /// This instance's shares of the free slots the snapshot applies
    /// (uniform `[select] share` without the peer exchange).
    pub shares: Shares,
    /// The peer exchange as it stood at the build (`None`: no `[[peer]]`s).
    pub peers: Option<Arc<PeerReport>>,
    /// Per group and mount: the relays with room, weighted, as
    /// [`crate::select`] draws redirects from them. Filled by `select` once
    /// per snapshot (the poller does it before publishing); the snapshot
    /// only holds it.
    picks: OnceLock<PerGroup<PerMount<MountPicks>>>,
}

/// For one mount, what [`crate::select`] prepares once per snapshot for
/// redirects.
#[derive(Debug, Default)]
pub struct MountPicks {
    /// The relays with room then, weighted by room x weight.
    pub sums: RunningSums,
    /// Their room then, in slots (a relay without a limit counts as
    /// `[select] unlimited_room`).
    pub room: u64,
}

/// One relay's dynamic state.
#[derive(Debug, Clone)]
pub struct RelayView {
    /// Health state.
    pub state: RelayState,
    /// Why (for people).
    pub reason: Arc<str>,
    /// Since when.
    pub since: SystemTime,
    /// Draining (config or runtime): no new listeners.
    pub drain: bool,
    /// Listeners on all mounts at the last poll.
    pub listeners: u32,
    /// Poll-time free slots of the whole relay under its caps (`None` =
    /// unlimited), before in-flight grants.
    pub free: Option<u64>,
    /// Relay-wide grant baseline.
    pub baseline: u64,
    /// When the last poll finished.
    pub polled_at: Option<SystemTime>,
}

/// What the last poll says of one relay and one mount.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// A source is connected (the mount is listed).
    pub present: bool,
    /// Listeners at the last poll.
    pub listeners: u32,
    /// Effective listener limit: the lower of Icecast's and the config's
    /// (`None` = unlimited or unknown).
    pub capacity: Option<u32>,
    /// The relay reported no limit and the config gives none.
    pub capacity_unknown: bool,
    /// Poll-time free slots (`None` = unlimited), before reserve and grants.
    pub free: Option<u64>,
    /// Slots held back as headroom reserve.
    pub reserve: u64,
    /// Mount grant baseline.
    pub baseline: u64,
    /// Bitrate (status, else stream config).
    pub bitrate_kbps: Option<u32>,
}

impl Snapshot {
    /// Builds a snapshot of `topology` from the latest observations
    /// (`observations[i]` for relay i; `None` = not polled yet), runtime
    /// drains (`runtime_drain[i]`, in addition to the config's) and the
    /// reload history, stamped with `stamp`.
    pub fn build(
        topology: Arc<Topology>,
        observations: &[Option<&RelayObservation>],
        runtime_drain: &[bool],
        stamp: Stamp,
        reload: Arc<ReloadReport>,
    ) -> Snapshot {
        let shares = Shares::uniform(topology.config.select.share, topology.mounts.len());
        Snapshot::build_shared(
            topology,
            observations,
            runtime_drain,
            stamp,
            reload,
            &shares,
        )
    }

    /// [`Snapshot::build`] with this instance's `shares` of the free slots
    /// (from the peer exchange, see [`crate::shares`]) instead of the
    /// config's static `[select] share`.
    pub fn build_shared(
        topology: Arc<Topology>,
        observations: &[Option<&RelayObservation>],
        runtime_drain: &[bool],
        stamp: Stamp,
        reload: Arc<ReloadReport>,
        shares: &Shares,
    ) -> Snapshot {
        Snapshot::build_with(
            topology,
            observations,
            runtime_drain,
            stamp,
            reload,
            shares,
            &mut Rows::default(),
        )
    }

    /// [`Snapshot::build_shared`] reusing the relay rows kept in `rows` by
    /// the previous build (and keeping this build's there): only the relays
    /// with a new status since are turned into cells. The poller's builder
    /// builds this way; the result is the same as without `rows`.
    pub fn build_with(
        topology: Arc<Topology>,
        observations: &[Option<&RelayObservation>],
        runtime_drain: &[bool],
        stamp: Stamp,
        reload: Arc<ReloadReport>,
        shares: &Shares,
        rows: &mut Rows,
    ) -> Snapshot {
        let mut relays = Vec::with_capacity(topology.relays.len());
        let mut first_round_done = true;
        rows.prepare(&topology);
        let mut not_polled: Option<Arc<str>> = None;
        for (rid, def) in topology.relays.iter_ids() {
            let obs = observations.get(rid.index()).copied().flatten();
            let drain = def.drain || runtime_drain.get(rid.index()).copied().unwrap_or(false);
            let Some(obs) = obs.filter(|o| o.polls > 0) else {
                first_round_done = false;
                rows.clear(rid);
                relays.push(RelayView {
                    state: RelayState::Unknown,
                    reason: not_polled
                        .get_or_insert_with(|| Arc::from("not polled yet"))
                        .clone(),
                    since: stamp.built_at,
                    drain,
                    listeners: 0,
                    free: Some(0),
                    baseline: 0,
                    polled_at: None,
                });
                continue;
            };
            let row = rows.fill(&topology, rid, obs);
            relays.push(RelayView {
                state: obs.health.state(),
                reason: obs.health.reason().clone(),
                since: obs.health.since(),
                drain,
                listeners: row.listeners,
                free: row.free,
                baseline: obs.baseline.relay,
                polled_at: obs.polled_at,
            });
        }
        // The rows filled above (only those of relays polled since the last
        // build were touched), in one copy.
        let mut cells = rows.cells().clone();
        let relays: PerRelay<RelayView> = relays.into();
        let out_of_service = |r: RelayId, m: MountId| {
            let (v, cell) = (&relays[r], &cells[(r, m)]);
            !v.drain
                && match v.state {
                    RelayState::Down | RelayState::Full => true,
                    RelayState::Up => cell.free == Some(0) && cell.present,
                    RelayState::Unknown => false,
                }
        };
        // Relay by relay (the order the cells lie in), each relay's mounts
        // in turn.
        let group_released: PerGroup<PerMount<bool>> = topology.groups.map(|g| {
            let mut released: PerMount<bool> = topology.mounts.map(|_| false);
            for &r in &g.relays {
                for (m, any) in topology.mounts.ids().zip(released.iter_mut()) {
                    *any = *any || out_of_service(r, m);
                }
            }
            released
        });
        let mut reserve_released = Grid::new(relays.len(), topology.mounts.len());
        for (g, def) in topology.groups.iter_ids() {
            for &r in &def.relays {
                for m in topology.mounts.ids() {
                    reserve_released[(r, m)] |= group_released[g][m];
                }
            }
        }
        let mut relays = relays;
        apply_share(shares, &mut cells, &mut relays);
        let stream_required = topology.streams.map(|s| {
            s.mounts
                .iter()
                .copied()
                .filter(|&m| {
                    relays
                        .iter_ids()
                        .any(|(r, v)| v.state == RelayState::Up && cells[(r, m)].present)
                })
                .collect()
        });
        let candidacy = candidacy(first_round_done, &relays, &cells, &reserve_released);
        Snapshot {
            candidacy,
            generation: stamp.generation,
            generation_text: Bytes::from(stamp.generation.to_string()),
            built_at: stamp.built_at,
            built: stamp.built,
            topology,
            first_round_done,
            relays,
            cells,
            reserve_released,
            stream_required,
            reload,
            shares: shares.clone(),
            peers: None,
            picks: OnceLock::new(),
        }
    }

    /// The per-mount picks, made by `init` on first use (see
    /// [`crate::select`]).
    #[inline]
    pub fn picks(
        &self,
        init: impl FnOnce(&Snapshot) -> PerGroup<PerMount<MountPicks>>,
    ) -> &PerGroup<PerMount<MountPicks>> {
        self.picks.get_or_init(|| init(self))
    }

    /// Whether the headroom reserve of relay `r` on mount `m` is released
    /// (a peer is down or full).
    #[inline]
    pub fn reserve_released(&self, r: RelayId, m: MountId) -> bool {
        self.reserve_released[(r, m)]
    }

    /// The cell of relay `r` and mount `m`.
    #[inline]
    pub fn cell(&self, r: RelayId, m: MountId) -> &Cell {
        &self.cells[(r, m)]
    }

    /// The config this snapshot was built from.
    pub fn config(&self) -> &Config {
        &self.topology.config
    }

    /// Whether the snapshot is older than `[poll] stale_after` at `now`.
    pub fn is_stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.built) > self.config().poll.stale_after
    }
}

/// [`Snapshot::candidacy`]: one pass over the relays and their cells, in
/// the order they lie in memory.
fn candidacy(
    first_round_done: bool,
    relays: &PerRelay<RelayView>,
    cells: &Grid<Cell>,
    reserve_released: &Grid<bool>,
) -> u64 {
    // FxHash's step: a digest to compare, not to resist anyone (its input
    // is the cluster's state, not a client's).
    let step = |h: u64, x: u64| (h.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    let mut h = step(0, u64::from(first_round_done));
    for (i, v) in relays.iter().enumerate() {
        let state = match v.state {
            RelayState::Up => 0,
            RelayState::Full => 1,
            RelayState::Down => 2,
            RelayState::Unknown => 3,
        };
        h = step(
            h,
            state | u64::from(v.drain) << 2 | u64::from(v.free == Some(0)) << 3,
        );
        let r = RelayId::new(i);
        let released = reserve_released.row(r);
        // Four bits per cell, sixteen cells per word.
        let mut word = 0u64;
        for (m, (c, &rel)) in cells.row(r).iter().zip(released).enumerate() {
            let bits = u64::from(c.present)
                | u64::from(c.free == Some(0)) << 1
                | u64::from(c.free.is_some_and(|f| f <= c.reserve)) << 2
                | u64::from(rel) << 3;
            word |= bits << (4 * (m % 16));
            if m % 16 == 15 {
                h = step(h, word);
                word = 0;
            }
        }
        h = step(h, word);
    }
    h
}

/// Several floe instances (the zone's NS set) poll the same relays on their
/// own and cannot see each other's grants, so each grants at most its share
/// of the poll-time free slots (rounded down, or up by the one instance
/// holding the remainder: see [`crate::shares`]) and holds back its share
/// of the reserve (rounded up): per mount for
/// the mount's slots, the relay's share for the relay-wide ones. Runs after
/// the reserve-release check, which looks at the real free slots.
fn apply_share(shares: &Shares, cells: &mut Grid<Cell>, relays: &mut PerRelay<RelayView>) {
    for (i, relay) in relays.iter_mut().enumerate() {
        relay.free = relay
            .free
            .map(|n| Shares::part(n, shares.relay, shares.relay_remainder));
        for (m, cell) in cells.row_mut(RelayId::new(i)).iter_mut().enumerate() {
            let m = MountId::new(m);
            let share = shares.mounts.get(m).copied().unwrap_or(shares.relay);
            if share < 1.0 {
                let remainder = shares.remainder.get(m).copied().unwrap_or(false);
                cell.free = cell.free.map(|n| Shares::part(n, share, remainder));
                cell.reserve = (cell.reserve as f64 * share).ceil() as u64;
            }
        }
    }
}

/// The published snapshots: the current one, swapped whole by one writer
/// (the snapshot builder), read lock-free by many readers.
#[derive(Debug)]
pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    /// Woken when relays stop being quiet ([`crate::grants`]).
    quiet_over: tokio::sync::Notify,
}

impl Snapshots {
    /// `first`, published.
    pub fn new(first: Snapshot) -> Self {
        Snapshots {
            current: ArcSwap::from_pointee(first),
            quiet_over: tokio::sync::Notify::new(),
        }
    }

    /// Completes when relays next stop being quiet (the snapshot with their
    /// poll's result is published): a redirect that found only quiet room
    /// asks again then. Create it before looking, so that an end in
    /// between is not missed ([`tokio::sync::futures::Notified::enable`]).
    pub fn quiet_end(&self) -> tokio::sync::futures::Notified<'_> {
        self.quiet_over.notified()
    }

    /// Wakes every [`Self::quiet_end`] waiter (the poller, after it lets
    /// grants through on relays again).
    pub fn quiet_ended(&self) {
        self.quiet_over.notify_waiters();
    }

    /// The current snapshot, for a short-lived read (no allocation, no lock).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, to keep.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `next`.
    pub fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}

mod rows;
#[cfg(test)]
pub(crate) mod testkit;

pub use rows::{Row, Rows};
