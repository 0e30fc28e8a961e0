//! Selection tests: examples for each rule, and properties over random
//! relay states.

use super::*;
use crate::health::{PollFailure, PollOutcome};
use crate::icecast::MaxListeners;
use crate::snapshot::{ReloadReport, testkit};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::time::SystemTime;

/// One relay of a test cluster: its poll outcome and config extras.
#[derive(Debug, Clone)]
struct R {
    outcome: Outcome,
    weight: u32,
    drain: bool,
    cap: Option<u32>,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// (mount path, listeners, max) for each mount with a source.
    Up(Vec<(&'static str, u32, MaxListeners)>),
    ServerFull,
    Down,
    Unpolled,
}

fn up(mounts: &[(&'static str, u32, u32)]) -> R {
    R {
        outcome: Outcome::Up(
            mounts
                .iter()
                .map(|&(p, l, m)| (p, l, MaxListeners::Limited(m)))
                .collect(),
        ),
        weight: 1,
        drain: false,
        cap: None,
    }
}

fn cluster(relays: &[R], select: &str) -> Snapshot {
    let mut toml =
        format!("[select]\n{select}\n[[stream]]\nname = \"live\"\nmounts = [\"/a\", \"/b\"]\n");
    for (i, r) in relays.iter().enumerate() {
        toml += &format!(
            "[[relay]]\nname = \"r{i}\"\nurl = \"http://r{i}.example.org:8000\"\naddresses = [\"192.0.2.{}\"]\nstatus = {{ kind = \"xslt\" }}\nweight = {}\ndrain = {}\n",
            i + 1,
            r.weight,
            r.drain
        );
        if let Some(c) = r.cap {
            toml += &format!("max_listeners = {c}\n");
        }
    }
    let outcomes = relays
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Unpolled => None,
            Outcome::Down => Some(PollOutcome::Failed(PollFailure::Connect(
                "connection refused".into(),
            ))),
            Outcome::ServerFull => Some(PollOutcome::ServerFull),
            Outcome::Up(mounts) => Some(testkit::status(mounts)),
        })
        .collect();
    let snap = testkit::snapshot(
        testkit::topology(&toml),
        outcomes,
        2,
        SystemTime::UNIX_EPOCH,
        1,
        ReloadReport::default(),
    );
    // As the poller does before publishing: the pick sums hold the room at
    // this point, before any grant.
    prepare(&snap);
    snap
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

const A: MountId = MountId::new(0);
const B: MountId = MountId::new(1);
const S: StreamId = StreamId::new(0);

/// Relay `i` of a test cluster.
fn r(i: usize) -> RelayId {
    RelayId::new(i)
}

#[test]
fn a_burst_fills_each_relay_to_its_free_slots_and_then_refuses() {
    let snap = cluster(
        &[
            up(&[("/a", 3, 5)]),
            up(&[("/a", 0, 4)]),
            up(&[("/a", 9, 9)]),
        ],
        "",
    );
    let mut counts = [0u32; 3];
    let mut refused = 0;
    let mut rng = rng();
    for _ in 0..100 {
        match pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng) {
            Ok(r) => counts[r.index()] += 1,
            Err(e) => {
                assert_eq!(e, NoCandidate::Full);
                refused += 1;
            }
        }
    }
    assert_eq!(counts, [2, 4, 0]);
    assert_eq!(refused, 94);
}

#[test]
fn offline_when_no_relay_has_the_source_full_when_none_has_room() {
    let snap = cluster(&[up(&[("/a", 5, 5)]), up(&[])], "");
    assert_eq!(
        pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng()),
        Err(NoCandidate::Full)
    );
    assert_eq!(
        pick_for_mount(&snap, B, DEFAULT_POOL, Grant::Record, &mut rng()),
        Err(NoCandidate::Offline)
    );
    let unpolled = R {
        outcome: Outcome::Unpolled,
        weight: 1,
        drain: false,
        cap: None,
    };
    let snap = cluster(&[unpolled], "");
    assert_eq!(
        pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng()),
        Err(NoCandidate::Starting)
    );
}

#[test]
fn exclusions_name_the_reason() {
    let mut drained = up(&[("/a", 0, 5)]);
    drained.drain = true;
    let snap = cluster(
        &[
            drained,
            R {
                outcome: Outcome::Down,
                weight: 1,
                drain: false,
                cap: None,
            },
            R {
                outcome: Outcome::ServerFull,
                weight: 1,
                drain: false,
                cap: None,
            },
            up(&[("/b", 0, 5)]),
            up(&[("/a", 5, 5)]),
            up(&[("/a", 1, 5)]),
        ],
        "",
    );
    let reasons: Vec<_> = decide(&snap, Target::Redirect(A), snap.built)
        .verdicts
        .iter()
        .copied()
        .collect();
    assert_eq!(
        reasons,
        [
            Err(Exclusion::Draining),
            Err(Exclusion::Down),
            Err(Exclusion::ServerFull),
            Err(Exclusion::NoSource),
            Err(Exclusion::Full),
            Ok(Room {
                mount: Some(4),
                relay: None
            }),
        ]
    );
}

#[test]
fn relay_cap_counts_listeners_of_every_mount() {
    let mut capped = up(&[("/a", 3, 100), ("/b", 4, 100)]);
    capped.cap = Some(10);
    let snap = cluster(&[capped], "");
    assert_eq!(
        mount_room(&snap, r(0), A),
        Ok(Room {
            mount: Some(97),
            relay: Some(3)
        })
    );
    let mut rng = rng();
    assert!((0..3).all(|i| {
        pick_for_mount(
            &snap,
            if i % 2 == 0 { A } else { B },
            DEFAULT_POOL,
            Grant::Record,
            &mut rng,
        )
        .is_ok()
    }));
    assert_eq!(
        pick_for_mount(&snap, B, DEFAULT_POOL, Grant::Record, &mut rng),
        Err(NoCandidate::Full)
    );
}

#[test]
fn reserve_is_held_until_a_peer_is_down_or_full() {
    let held = cluster(
        &[up(&[("/a", 8, 10)]), up(&[("/a", 0, 10)])],
        "reserve = 0.2",
    );
    assert_eq!(mount_room(&held, r(0), A), Err(Exclusion::Reserve));
    assert_eq!(
        mount_room(&held, r(1), A),
        Ok(Room {
            mount: Some(8),
            relay: None
        })
    );
    let down = R {
        outcome: Outcome::Down,
        weight: 1,
        drain: false,
        cap: None,
    };
    let released = cluster(&[up(&[("/a", 8, 10)]), down], "reserve = 0.2");
    assert_eq!(
        mount_room(&released, r(0), A),
        Ok(Room {
            mount: Some(2),
            relay: None
        })
    );
    let full_peer = cluster(
        &[up(&[("/a", 8, 10)]), up(&[("/a", 10, 10)])],
        "reserve = 0.2",
    );
    assert_eq!(
        mount_room(&full_peer, r(0), A),
        Ok(Room {
            mount: Some(2),
            relay: None
        })
    );
}

#[test]
fn choices_follow_room_times_weight() {
    let mut heavy = up(&[("/a", 0, 100_000)]);
    heavy.weight = 3;
    let snap = cluster(
        &[
            up(&[("/a", 0, 100_000)]),
            up(&[("/a", 50_000, 100_000)]),
            heavy,
        ],
        "",
    );
    // Expected shares: 100k x1 : 50k x1 : 100k x3 = 2 : 1 : 6.
    let mut counts = [0f64; 3];
    let mut rng = rng();
    let n = 9_000;
    for _ in 0..n {
        counts[pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng)
            .unwrap()
            .index()] += 1.0;
    }
    for (got, want) in counts.iter().zip([2.0 / 9.0, 1.0 / 9.0, 6.0 / 9.0]) {
        assert!(
            (got / n as f64 - want).abs() < 0.02,
            "share {} vs {want}",
            got / n as f64
        );
    }
}

#[test]
fn pick_where_draws_among_the_eligible_relays_in_their_proportions() {
    let mut heavy = up(&[("/a", 0, 100_000)]);
    heavy.weight = 3;
    let snap = cluster(
        &[up(&[("/a", 0, 100_000)]), up(&[("/a", 0, 100_000)]), heavy],
        "",
    );
    // Relay 1 is not eligible: relays 0 and 2 share 1 : 3.
    let eligible = |x: RelayId| x != r(1);
    let mut counts = [0f64; 3];
    let mut rng = rng();
    let n = 8_000;
    for _ in 0..n {
        let p = pick_where(&snap, A, DEFAULT_POOL, Grant::Record, eligible, &mut rng).unwrap();
        counts[p.relay.index()] += 1.0;
    }
    assert_eq!(counts[1], 0.0);
    assert!((counts[0] / n as f64 - 0.25).abs() < 0.02, "{counts:?}");
    // No eligible relay: refused.
    let none = |_: RelayId| false;
    assert!(pick_where(&snap, A, DEFAULT_POOL, Grant::None, none, &mut rng).is_err());
}

#[test]
fn stream_candidates_need_every_mount_that_is_on_the_air() {
    // /b is on the air on r1, so r0 (without /b) cannot take stream listeners.
    let snap = cluster(
        &[up(&[("/a", 0, 5)]), up(&[("/a", 0, 5), ("/b", 2, 5)])],
        "",
    );
    assert_eq!(stream_room(&snap, r(0), S), Err(Exclusion::NoSource));
    assert_eq!(
        stream_room(&snap, r(1), S),
        Ok(Room {
            mount: Some(3),
            relay: None
        })
    );
    // /b off the air everywhere: only /a matters.
    let snap = cluster(&[up(&[("/a", 0, 5)]), up(&[("/a", 0, 5)])], "");
    let stream = Target::Name {
        stream: S,
        mount: None,
    };
    let got: Vec<RelayId> = decide(&snap, stream, snap.built)
        .candidates()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(got, [r(0), r(1)]);
}

#[test]
fn quiet_relays_are_picked_last_and_never_unless_quiet_allows() {
    let relays = [up(&[("/a", 0, 5)]), up(&[("/a", 0, 5)])];
    let snap = cluster(&relays, "");
    let m = snap.topology.mount_id("/a").unwrap();
    let quiet = |i: usize, q: bool| snap.topology.relays[r(i)].grants.set_quiet(q);
    let mut rng = rng();
    let mut pick_with = |grant| pick_for_mount(&snap, m, DEFAULT_POOL, grant, &mut rng);
    // r0 quiet: every listener goes to r1 while it has room.
    quiet(0, true);
    for _ in 0..5 {
        assert_eq!(pick_with(Grant::RecordUnlessQuiet), Ok(r(1)));
    }
    // Only quiet room left: wait (no spill-over, no grant) ...
    assert_eq!(pick_with(Grant::RecordUnlessQuiet), Err(NoCandidate::Quiet));
    assert_eq!(snap.topology.relays[r(0)].grants.in_flight(m, 0), 0);
    // ... a HEAD still gets an answer ...
    assert_eq!(pick_with(Grant::None), Ok(r(0)));
    // ... and a listener who waited long enough takes the quiet relay.
    assert_eq!(pick_with(Grant::Record), Ok(r(0)));
    assert_eq!(snap.topology.relays[r(0)].grants.in_flight(m, 0), 1);
    // A quiet relay with no room is full, not quiet.
    for _ in 0..4 {
        assert_eq!(pick_with(Grant::Record), Ok(r(0)));
    }
    assert_eq!(pick_with(Grant::RecordUnlessQuiet), Err(NoCandidate::Full));
    // The quiet ends: r0's grants count as before.
    quiet(0, false);
    assert_eq!(pick_with(Grant::RecordUnlessQuiet), Err(NoCandidate::Full));
}

#[test]
fn picks_follow_room_left_after_grants_not_room_at_build() {
    // Both relays had room 10,000 when the snapshot was built; 9,000 of
    // r0's were granted since. Picks must follow the room left (1,000 :
    // 10,000, so r0 gets ~9 %), not the build-time index (50 %).
    let relays = [up(&[("/a", 0, 10_000)]), up(&[("/a", 0, 10_000)])];
    let snap = cluster(&relays, "");
    let m = snap.topology.mount_id("/a").unwrap();
    for _ in 0..9_000 {
        assert!(grant(&snap, r(0), m, Quiet::Take));
    }
    let mut rng = rng();
    let picks = 1_000;
    let to_r0 = (0..picks)
        .filter(|_| pick_for_mount(&snap, m, DEFAULT_POOL, Grant::Record, &mut rng) == Ok(r(0)))
        .count();
    // r0's share drifts from 9.1 % to 8.3 % as picks use up its room.
    let share = to_r0 as f64 / f64::from(picks);
    assert!((0.05..0.13).contains(&share), "r0 got {share:.3}");
}

#[test]
fn pick_is_deterministic_with_a_seed() {
    let relays = [
        up(&[("/a", 0, 1000)]),
        up(&[("/a", 0, 1000)]),
        up(&[("/a", 0, 1000)]),
    ];
    let picks = |seed| {
        let snap = cluster(&relays, "");
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..20)
            .map(|_| pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(1), picks(1));
    assert_ne!(picks(1), picks(2));
}

fn arb_relay() -> impl Strategy<Value = R> {
    let mount = (0u32..20, 0u32..20).prop_map(|(l, m)| (l, MaxListeners::Limited(m)));
    let outcome = prop_oneof![
        4 => (proptest::option::of(mount.clone()), proptest::option::of(mount)).prop_map(|(a, b)| {
            let mut v = Vec::new();
            if let Some((l, m)) = a { v.push(("/a", l, m)); }
            if let Some((l, m)) = b { v.push(("/b", l, m)); }
            Outcome::Up(v)
        }),
        1 => Just(Outcome::Down),
        1 => Just(Outcome::ServerFull),
        1 => Just(Outcome::Unpolled),
    ];
    (
        outcome,
        1u32..4,
        proptest::bool::weighted(0.2),
        proptest::option::of(0u32..30),
    )
        .prop_map(|(outcome, weight, drain, cap)| R {
            outcome,
            weight,
            drain,
            cap,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Relays list their mounts in any order, with unknown ones among them:
    /// each cell gets its own mount's numbers (the build remembers ids by
    /// position and must never carry one over to another path).
    #[test]
    fn cells_match_mounts_whatever_the_order(statuses in proptest::collection::vec(proptest::sample::subsequence(vec!["/a", "/b", "/x", "/y"], 0..=4).prop_shuffle(), 1..6), seed in 0u32..1000) {
        let listeners = |r: usize, p: &str| seed + r as u32 * 10 + p.as_bytes()[1] as u32;
        let relays: Vec<R> = statuses
            .iter()
            .enumerate()
            .map(|(r, paths)| R {
                outcome: Outcome::Up(
                    paths
                        .iter()
                        .map(|&p| (p, listeners(r, p), MaxListeners::Limited(5000)))
                        .collect(),
                ),
                weight: 1,
                drain: false,
                cap: None,
            })
            .collect();
        let snap = cluster(&relays, "");
        for (r, paths) in statuses.iter().enumerate() {
            for path in ["/a", "/b"] {
                let cell = snap.cell(RelayId::new(r), snap.topology.mount_id(path).unwrap());
                prop_assert_eq!(cell.present, paths.contains(&path), "r{} {}", r, path);
                if cell.present {
                    prop_assert_eq!(cell.listeners, listeners(r, path), "r{} {}", r, path);
                }
            }
        }
    }

    /// Whatever the states, picks never exceed any relay's free slots, never
    /// go to a down, full, drained, unpolled or sourceless relay, and stop
    /// only when no relay has room left.
    #[test]
    fn grants_never_exceed_room_and_skip_ineligible(relays in proptest::collection::vec(arb_relay(), 1..6), reserve in prop_oneof![Just(0.0), Just(0.25)], seed: u64) {
        let snap = cluster(&relays, &format!("reserve = {reserve}"));
        let before: Vec<Result<Room, Exclusion>> = snap.relays.ids().map(|r| mount_room(&snap, r, A)).collect();
        let mut counts = vec![0u64; relays.len()];
        let mut rng = SmallRng::seed_from_u64(seed);
        while let Ok(r) = pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng) {
            counts[r.index()] += 1;
            prop_assert!(counts[r.index()] < 10_000, "runaway");
        }
        for (r, room) in before.iter().enumerate() {
            match room {
                Err(_) => prop_assert_eq!(counts[r], 0, "relay {} excluded ({:?}) but chosen", r, room),
                Ok(room) => prop_assert_eq!(Some(counts[r]), room.slots(), "relay {} filled exactly to its room", r),
            }
        }
    }

    /// Concurrent pickers on several threads never grant more than the room.
    #[test]
    fn concurrent_picks_never_overfill(frees in proptest::collection::vec(0u32..50, 1..5)) {
        let relays: Vec<R> = frees.iter().map(|&f| up(&[("/a", 0, f)])).collect();
        let snap = cluster(&relays, "");
        let counts: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64).map(|t| {
                let snap = &snap;
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(t);
                    let mut c = vec![0u64; snap.relays.len()];
                    for _ in 0..200 {
                        if let Ok(r) = pick_for_mount(snap, A, DEFAULT_POOL, Grant::Record, &mut rng) { c[r.index()] += 1; }
                    }
                    c
                })
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap()).fold(vec![0; frees.len()], |mut acc, c| {
                acc.iter_mut().zip(c).for_each(|(a, b)| *a += b);
                acc
            })
        });
        let total: u64 = counts.iter().sum();
        let room: u64 = frees.iter().map(|&f| u64::from(f)).sum();
        prop_assert_eq!(total, room.min(800));
        for (c, f) in counts.iter().zip(&frees) {
            prop_assert!(*c <= u64::from(*f));
        }
    }
}

#[test]
fn with_a_share_each_instance_grants_at_most_its_part_of_the_free_slots() {
    // Two floe instances (share = 0.5) polling the same relays: each hands
    // out half the free slots, rounded down, so together they never
    // overfill a relay before their next polls.
    let relays = [
        up(&[("/a", 3, 10)]),
        up(&[("/a", 0, 5)]),
        R {
            cap: Some(4),
            ..up(&[("/a", 0, 100)])
        },
    ];
    let snap = cluster(&relays, "share = 0.5");
    let mut counts = [0u32; 3];
    let mut rng = rng();
    for _ in 0..100 {
        if let Ok(r) = pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng) {
            counts[r.index()] += 1;
        }
    }
    // 7 free -> 3; 5 free -> 2; relay cap 4 (mount free 100) -> 2.
    assert_eq!(counts, [3, 2, 2]);
    assert_eq!(snap.cell(r(0), A).free, Some(3));
    assert_eq!(snap.relays[r(2)].free, Some(2));

    // The reserve is held back in the same proportion (rounded up), and
    // released on the real free slots: a peer with one slot left is not
    // full even though its share of that slot rounds down to zero.
    let snap = cluster(
        &[up(&[("/a", 0, 10)]), up(&[("/a", 9, 10)])],
        "share = 0.5\nreserve = 0.3",
    );
    assert!(!snap.reserve_released(r(0), A));
    assert_eq!(snap.cell(r(0), A).reserve, 2);
    assert_eq!(mount_room(&snap, r(0), A).map(Room::slots), Ok(Some(3)));
    assert_eq!(mount_room(&snap, r(1), A), Err(Exclusion::Full));

    // share = 1 (the default) changes nothing.
    let whole = cluster(&relays, "share = 1.0");
    assert_eq!(whole.cell(r(0), A).free, Some(7));
}

/// Groups and pools after the `[select]` settings: `venue` = r0, r1;
/// `partner` = r3 (exclusive); listeners from 10.1/16 try `venue` then
/// `*`, from 10.2/16 `partner` then `*`; everyone else `*` (r0, r1, r2).
const POOLS: &str = "[[group]]\nname = \"venue\"\nrelays = [\"r0\", \"r1\"]\n\
    [[group]]\nname = \"partner\"\nrelays = [\"r3\"]\nexclusive = true\n\
    [[pool]]\nname = \"hall\"\nnetworks = [\"10.1.0.0/16\"]\norder = [\"venue\", \"*\"]\n\
    [[pool]]\nname = \"partner-net\"\nnetworks = [\"10.2.0.0/16\"]\norder = [\"partner\", \"*\"]\n";

fn pool(snap: &Snapshot, addr: &str) -> PoolId {
    snap.topology.pool_of(addr.parse().unwrap())
}

#[test]
fn listeners_go_to_their_pools_first_group_with_room_then_spill_over() {
    let snap = cluster(
        &[
            up(&[("/a", 0, 3)]),
            up(&[("/a", 0, 2)]),
            up(&[("/a", 0, 100)]),
            up(&[("/a", 0, 100)]),
        ],
        POOLS,
    );
    let (hall, partner, world) = (
        pool(&snap, "10.1.7.7"),
        pool(&snap, "10.2.0.1"),
        pool(&snap, "192.0.2.99"),
    );
    assert_eq!(world, DEFAULT_POOL);
    assert_eq!(&*snap.topology.pools[hall].name, "hall");
    let mut rng = rng();
    // The hall's first five listeners fill the venue relays (3 + 2), the
    // rest spill over to the world relay r2; never to the partner's r3.
    let picks: Vec<usize> = (0..8)
        .map(|_| {
            pick_for_mount(&snap, A, hall, Grant::Record, &mut rng)
                .unwrap()
                .index()
        })
        .collect();
    assert!(picks[..5].iter().all(|&r| r < 2), "{picks:?}");
    assert_eq!(picks[5..], [2, 2, 2], "{picks:?}");
    assert_eq!(snap.cell(r(0), A).free, Some(3));
    let d = decide_for(&snap, Target::Redirect(A), hall, snap.built);
    assert_eq!(d.group.map(|g| &*snap.topology.groups[g].name), Some("*"));
    assert_eq!(d.verdicts[r(0)], Err(Exclusion::Full));
    assert_eq!(d.verdicts[r(3)], Err(Exclusion::NotInPool));

    // The partner's listeners get r3; everyone else never does.
    for _ in 0..20 {
        assert_eq!(
            pick_for_mount(&snap, A, partner, Grant::None, &mut rng),
            Ok(r(3))
        );
        assert_eq!(
            pick_for_mount(&snap, A, world, Grant::None, &mut rng),
            Ok(r(2))
        );
    }
    let d = decide_for(&snap, Target::Redirect(A), partner, snap.built);
    assert_eq!(d.verdicts[r(2)], Err(Exclusion::EarlierGroup));
    assert_eq!(
        decide(&snap, Target::Redirect(A), snap.built).verdicts[r(3)],
        Err(Exclusion::NotInPool)
    );
}

#[test]
fn a_pool_whose_groups_are_all_full_is_refused_for_their_reason() {
    // Hall: venue then nothing else; venue full, the world relay has room.
    let pools = POOLS.replace("order = [\"venue\", \"*\"]", "order = [\"venue\"]");
    let snap = cluster(
        &[
            up(&[("/a", 3, 3)]),
            up(&[("/a", 2, 2)]),
            up(&[("/a", 0, 100)]),
            up(&[("/a", 0, 100)]),
        ],
        &pools,
    );
    let hall = pool(&snap, "10.1.0.1");
    assert_eq!(
        pick_for_mount(&snap, A, hall, Grant::Record, &mut rng()),
        Err(NoCandidate::Full)
    );
    assert_eq!(
        pick_for_mount(&snap, B, hall, Grant::Record, &mut rng()),
        Err(NoCandidate::Offline)
    );
    assert!(pick_for_mount(&snap, A, DEFAULT_POOL, Grant::Record, &mut rng()).is_ok());
    // The budget of a hall client follows the hall's room (none).
    assert_eq!(client_budget(&snap, A, hall), 4);
}

#[test]
fn the_reserve_is_released_by_a_peer_of_the_same_group() {
    // r3 (partner, exclusive) down: releases the reserve of its own group
    // only; the venue relays keep theirs until a venue or "*" peer fails.
    let down = R {
        outcome: Outcome::Down,
        ..up(&[])
    };
    let snap = cluster(
        &[
            up(&[("/a", 0, 10)]),
            up(&[("/a", 0, 10)]),
            up(&[("/a", 0, 10)]),
            down.clone(),
        ],
        &format!("reserve = 0.2\n{POOLS}"),
    );
    assert!(!snap.reserve_released(r(0), A));
    assert!(snap.reserve_released(r(3), A));
    let snap = cluster(
        &[
            up(&[("/a", 0, 10)]),
            up(&[("/a", 0, 10)]),
            down,
            up(&[("/a", 0, 10)]),
        ],
        &format!("reserve = 0.2\n{POOLS}"),
    );
    assert!(snap.reserve_released(r(0), A), "r2 is a peer in \"*\"");
    assert!(!snap.reserve_released(r(3), A));
}

#[test]
fn grants_on_two_mounts_share_one_uplink() {
    // 1,000 kbit/s left, mounts of 100 and 200 kbit/s: each mount alone
    // could take 10 or 5 listeners, but together the uplink is spent once.
    let topology = testkit::topology(
        "[[stream]]\nname = \"live\"\nmounts = [\"/a\", \"/b\"]\n\
         [[relay]]\nname = \"r0\"\nurl = \"http://r0.example.org:8000\"\n\
         status = { kind = \"xslt\" }\nuplink_kbps = 1000\n",
    );
    let status = |a, b| {
        PollOutcome::Status(crate::icecast::RelayStatus {
            mounts: vec![
                crate::icecast::MountStatus {
                    path: "/a".into(),
                    listeners: a,
                    max_listeners: MaxListeners::Limited(100),
                    bitrate_kbps: Some(100),
                },
                crate::icecast::MountStatus {
                    path: "/b".into(),
                    listeners: b,
                    max_listeners: MaxListeners::Limited(100),
                    bitrate_kbps: Some(200),
                },
            ],
        })
    };
    let snap = testkit::snapshot(
        topology,
        vec![Some(status(0, 0))],
        1,
        SystemTime::now(),
        1,
        ReloadReport::default(),
    );
    prepare(&snap);
    let (a, b) = (
        snap.topology.mount_id("/a").unwrap(),
        snap.topology.mount_id("/b").unwrap(),
    );
    assert_eq!(
        snap.relays[RelayId::new(0)].free,
        Some(5),
        "1,000 kbit/s in 200 kbit/s slots"
    );
    let mut rng = SmallRng::seed_from_u64(1);
    let granted = (0..20)
        .filter(|i| {
            let m = if i % 2 == 0 { a } else { b };
            pick_for_mount(&snap, m, PoolId::new(0), Grant::Record, &mut rng).is_ok()
        })
        .count();
    assert_eq!(granted, 5, "the uplink is spent once across the mounts");
}
