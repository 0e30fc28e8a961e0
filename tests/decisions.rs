//! One decision, many readers: on randomized clusters, every consumer of
//! "what does this target get now" says what [`select::decide`] says.
//!
//! For each random cluster (relay states, listeners, limits, drains,
//! weights, reserve, DNS policies, a fresh or stale snapshot) and each
//! target:
//! - the HTTP redirect picks a relay `decide` lists as a candidate, or
//!   refuses with the reason `decide` gives;
//! - the DNS plan answers with `decide`'s candidates, or with the policy
//!   configured for `decide`'s fallback reason;
//! - `/explain` lists the same candidates and the same exclusions, and an
//!   answer that matches;
//! - `/metrics` shows the same candidacy and room per relay x mount and the
//!   same decision per balanced name;
//! - `/status.json` shows the same room and exclusions per cell and the
//!   same candidates per stream.

use floe::config;
use floe::dns::DnsState;
use floe::dns::answer::{Decision, Plan};
use floe::dns::zones::Zones;
use floe::grants::GrantSample;
use floe::health::{Health, PollFailure, PollOutcome};
use floe::icecast::{MaxListeners, MountStatus, RelayStatus};
use floe::metrics::Metrics;
use floe::report::{self, explain};
use floe::select::{self, Answer, Exclusion, Target};
use floe::snapshot::{DEFAULT_POOL, RelayObservation, Snapshot, Snapshots, Stamp, Topology};
use floe::zones::ZoneSet;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

const ZONE: &str = "$ORIGIN stream.example.org.
$TTL 300
@ 120 IN SOA ns1.stream.example.org. hostmaster.example.org. ( 1 3600 600 1209600 60 )
@ IN NS ns1.stream.example.org.
ns1 IN A 192.0.2.53
";

const MOUNTS: [&str; 2] = ["/live.ogg", "/live.mp3"];
const NAMES: [&str; 2] = ["live.stream.example.org.", "live-ogg.stream.example.org."];

/// One relay of a random cluster.
#[derive(Debug, Clone)]
enum Relay {
    /// Up, with (listeners, max) for each mount that has a source.
    Up {
        mounts: [Option<(u32, u32)>; 2],
        drain: bool,
        weight: u32,
    },
    ServerFull,
    Down,
    Unpolled,
}

/// Cluster-wide settings.
#[derive(Debug, Clone)]
struct Settings {
    reserve: f64,
    when_no_candidate: &'static str,
    before_first_poll: &'static str,
    when_stale: &'static str,
    stale: bool,
    /// `[[group]]`s: members (a bit per relay) and exclusive.
    groups: Vec<(u8, bool)>,
    /// `[[pool]]`s: each one's order, as group indices (`None`: `*`).
    pools: Vec<Vec<Option<usize>>>,
}

fn zones() -> Arc<ZoneSet> {
    static ZONES: OnceLock<Arc<ZoneSet>> = OnceLock::new();
    ZONES
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join("stream.example.org.zone"), ZONE).expect("zone");
            let (set, diags) = ZoneSet::load(dir.path());
            Arc::new(set.unwrap_or_else(|| panic!("zone:\n{diags}")))
        })
        .clone()
}

fn snapshot(relays: &[Relay], s: &Settings) -> Snapshot {
    let mut toml = format!(
        "[dns]\nwhen_no_candidate = \"{}\"\nbefore_first_poll = \"{}\"\nwhen_stale = \"{}\"\n\
         fallback = [\"198.51.100.1\", \"2001:db8:ffff::1\"]\n\
         [poll]\nstale_after = \"30s\"\n[select]\nreserve = {}\n\
         [[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\", \"/live.mp3\"]\n\
         dns = [\"{}\"]\nmount_dns = {{ \"/live.ogg\" = [\"{}\"] }}\n",
        s.when_no_candidate, s.before_first_poll, s.when_stale, s.reserve, NAMES[0], NAMES[1]
    );
    for (i, r) in relays.iter().enumerate() {
        let (drain, weight) = match r {
            Relay::Up { drain, weight, .. } => (*drain, *weight),
            _ => (false, 1),
        };
        toml += &format!(
            "[[relay]]\nname = \"r{i}\"\nurl = \"http://r{i}.example.org:8000\"\n\
             addresses = [\"192.0.2.{}\", \"2001:db8::{:x}\"]\nstatus = {{ kind = \"xslt\" }}\n\
             drain = {drain}\nweight = {weight}\n",
            i + 1,
            i + 1
        );
    }
    for (g, (members, exclusive)) in s.groups.iter().enumerate() {
        let names: Vec<String> = (0..relays.len())
            .filter(|i| members & (1 << i) != 0)
            .chain([0]) // never empty
            .map(|i| format!("\"r{i}\""))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        toml += &format!(
            "[[group]]\nname = \"g{g}\"\nrelays = [{}]\nexclusive = {exclusive}\n",
            names.join(", ")
        );
    }
    for (p, order) in s.pools.iter().enumerate() {
        let mut names: Vec<String> = Vec::new();
        for g in order {
            let n = match g {
                Some(g) if *g < s.groups.len() => format!("\"g{g}\""),
                _ => "\"*\"".to_string(),
            };
            if !names.contains(&n) {
                names.push(n);
            }
        }
        toml += &format!(
            "[[pool]]\nname = \"p{p}\"\nnetworks = [\"10.{p}.0.0/16\"]\norder = [{}]\n",
            names.join(", ")
        );
    }
    let (config, diags) = config::parse(Path::new("/test/floe.toml"), &toml);
    let config = config.unwrap_or_else(|| panic!("config:\n{diags}"));
    let topology = Arc::new(Topology::new(Arc::new(config), None));
    let observations: Vec<Option<RelayObservation>> = relays
        .iter()
        .map(|r| {
            let outcome = match r {
                Relay::Unpolled => return None,
                Relay::Down => PollOutcome::Failed(PollFailure::Connect("refused".into())),
                Relay::ServerFull => PollOutcome::ServerFull,
                Relay::Up { mounts, .. } => PollOutcome::Status(RelayStatus {
                    mounts: MOUNTS
                        .iter()
                        .zip(mounts)
                        .filter_map(|(path, m)| {
                            m.map(|(l, max)| MountStatus {
                                path: (*path).into(),
                                listeners: l,
                                max_listeners: MaxListeners::Limited(max),
                                bitrate_kbps: None,
                            })
                        })
                        .collect(),
                }),
            };
            let mut health = Health::new(SystemTime::UNIX_EPOCH);
            health.observe(outcome, 1, 1, SystemTime::UNIX_EPOCH);
            Some(RelayObservation {
                health,
                baseline: GrantSample::default(),
                polled_at: Some(SystemTime::UNIX_EPOCH),
                polls: 1,
                poll_duration: None,
            })
        })
        .collect();
    let refs: Vec<Option<&RelayObservation>> = observations.iter().map(Option::as_ref).collect();
    let snap = Snapshot::build(topology, &refs, &[], Stamp::now(3), Arc::default());
    select::prepare(&snap);
    snap
}

fn arb_relay() -> impl Strategy<Value = Relay> {
    let mount = proptest::option::weighted(0.8, (0u32..12, 0u32..12));
    let up = (
        mount.clone(),
        mount,
        proptest::bool::weighted(0.15),
        1u32..4,
    )
        .prop_map(|(a, b, drain, weight)| Relay::Up {
            mounts: [a, b],
            drain,
            weight,
        });
    prop_oneof![
        6 => up,
        1 => Just(Relay::Down),
        1 => Just(Relay::ServerFull),
        1 => Just(Relay::Unpolled),
    ]
}

fn arb_settings() -> impl Strategy<Value = Settings> {
    let policy = || prop_oneof![Just("serve-all"), Just("nodata"), Just("fallback")];
    (
        prop_oneof![Just(0.0), Just(0.25)],
        policy(),
        policy(),
        prop_oneof![Just("last-known"), Just("serve-all"), Just("nodata")],
        proptest::bool::weighted(0.2),
        proptest::collection::vec((any::<u8>(), proptest::bool::weighted(0.3)), 0..4),
        // Each pool's order: a shuffle of the groups and `*`, cut short.
        proptest::collection::vec(
            (Just([Some(0), Some(1), Some(2), None]), 1usize..4).prop_flat_map(|(all, n)| {
                Just(all.to_vec())
                    .prop_shuffle()
                    .prop_map(move |o| o[..n].to_vec())
            }),
            1..3,
        ),
    )
        .prop_map(
            |(reserve, when_no_candidate, before_first_poll, when_stale, stale, groups, pools)| {
                Settings {
                    reserve,
                    when_no_candidate,
                    before_first_poll,
                    when_stale,
                    stale,
                    groups,
                    pools,
                }
            },
        )
}

/// Every target of the test config: both redirects and both names.
fn targets(snap: &Snapshot) -> Vec<(Target, explain::Target)> {
    let topo = &snap.topology;
    let ogg = topo.mount_id(MOUNTS[0]).expect("ogg");
    let mp3 = topo.mount_id(MOUNTS[1]).expect("mp3");
    let stream = topo.stream_id("live").expect("stream");
    vec![
        (Target::Redirect(ogg), explain::Target::Mount(ogg)),
        (Target::Redirect(mp3), explain::Target::Mount(mp3)),
        (
            Target::Name {
                stream,
                mount: None,
            },
            explain::resolve(snap, NAMES[0], true).expect("name"),
        ),
        (
            Target::Name {
                stream,
                mount: Some(ogg),
            },
            explain::resolve(snap, NAMES[1], true).expect("per-mount name"),
        ),
    ]
}

/// The value of the series `name{labels}` in a `/metrics` text.
fn series(text: &str, name: &str, labels: &str) -> Option<String> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn every_door_and_report_says_what_decide_says(
        relays in proptest::collection::vec(arb_relay(), 1..6),
        settings in arb_settings(),
        seed: u64,
    ) {
        let snap = Arc::new(snapshot(&relays, &settings));
        let now = if settings.stale {
            snap.built + Duration::from_secs(31)
        } else {
            snap.built
        };
        let topo = &snap.topology;
        let name = |r| &*topo.relays[r].name;

        // DNS: the plan of each balanced name, and /metrics' view of it.
        let zones = zones();
        let mut rng = SmallRng::seed_from_u64(seed);
        let plan = Plan::build(snap.clone(), Arc::new(Zones::new(zones.clone())), now, SystemTime::now(), &mut rng);
        for (target, asked) in targets(&snap) {
            let decided = select::decide(&snap, target, now);
            let candidates: Vec<&str> = decided.candidates().map(|(r, _)| name(r)).collect();

            // explain
            let e = explain::explain(&snap, &asked, DEFAULT_POOL, now);
            let listed: Vec<&str> = e.candidates.iter().map(|c| c.relay).collect();
            prop_assert_eq!(&listed, &candidates, "explain candidates for {:?}", target);
            let excluded: Vec<(&str, &str)> = e.excluded.iter().map(|x| (x.relay, x.reason)).collect();
            let verdicts: Vec<(&str, &str)> = decided
                .verdicts
                .iter_ids()
                .filter_map(|(r, v)| v.err().map(|x| (name(r), x.as_str())))
                .collect();
            prop_assert_eq!(excluded, verdicts, "explain exclusions for {:?}", target);

            match target {
                Target::Redirect(_) => {
                    let says_302 = e.answer.starts_with("HTTP: 302");
                    prop_assert_eq!(says_302, decided.answer == Answer::Candidates, "{}", e.answer);
                }
                Target::Name { mount, .. } => {
                    // The plan's answer for this name, for every pool.
                    let wanted = if mount.is_some() { NAMES[1] } else { NAMES[0] };
                    let b = plan.names.iter().find(|b| b.name.to_string() == wanted).expect("balanced");
                    let dns = &snap.config().dns;
                    for pool in topo.pools.ids() {
                        let decided = select::decide_for(&snap, target, pool, now);
                        let answer = b.for_pool(pool);
                        prop_assert!(answer.pools.contains(&pool));
                        prop_assert_eq!(b.group(pool), decided.group);
                        match decided.answer {
                            Answer::Candidates => {
                                prop_assert_eq!(answer.decision, Decision::Candidates);
                                let relays: Vec<&str> = answer.relays.iter().map(|&r| name(r)).collect();
                                let candidates: Vec<&str> = decided.candidates().map(|(r, _)| name(r)).collect();
                                prop_assert_eq!(&relays, &candidates);
                            }
                            Answer::Fallback(why) => {
                                prop_assert_eq!(answer.decision, Decision::Policy { why, policy: why.policy(dns) });
                            }
                        }
                    }
                    match decided.answer {
                        Answer::Candidates => {
                            prop_assert!(e.answer.starts_with("DNS: A/AAAA"), "{}", e.answer);
                        }
                        Answer::Fallback(why) => {
                            let says = format!("policy {} answers", why.policy(dns).as_str());
                            prop_assert!(e.answer.ends_with(&says), "{} / {}", e.answer, says);
                        }
                    }
                }
            }
        }

        // /status.json: per cell room and exclusion, per stream candidates.
        let status = report::status_report(&snap);
        for (target, _) in targets(&snap) {
            let decided = select::decide(&snap, target, now);
            match target {
                Target::Redirect(m) => {
                    for (r, v) in decided.verdicts.iter_ids() {
                        let cell = status.relays[r.index()].mounts.iter().find(|c| c.mount == &*topo.mounts[m].path).expect("cell");
                        prop_assert_eq!(cell.excluded, v.err().map(Exclusion::as_str));
                        prop_assert_eq!(cell.room, v.ok().and_then(|room| room.slots()));
                    }
                }
                Target::Name { mount: None, .. } if !settings.stale => {
                    let names: Vec<&str> = decided.candidates().map(|(r, _)| name(r)).collect();
                    prop_assert_eq!(&status.streams[0].candidates, &names);
                }
                Target::Name { .. } => {}
            }
        }

        // /metrics: candidacy and room per cell; decision per balanced name.
        let metrics = Metrics::new();
        let cell = Arc::new(Snapshots::new(snapshot(&relays, &settings)));
        let dns = DnsState::new(cell.clone(), zones);
        let current = cell.load_full();
        drop(dns.plan(now.max(current.built)));
        metrics.attach_dns(dns);
        let text = metrics.render(&current);
        for (target, _) in targets(&current) {
            let decided = select::decide(&current, target, now.max(current.built));
            match target {
                Target::Redirect(m) => {
                    for (r, v) in decided.verdicts.iter_ids() {
                        let labels = format!("relay=\"{}\",stream=\"live\",mount=\"{}\"", name(r), topo.mounts[m].path);
                        let candidate = series(&text, "floe_mount_candidate", &labels);
                        prop_assert_eq!(candidate.as_deref(), Some(if v.is_ok() { "1" } else { "0" }), "{}", labels);
                    }
                }
                Target::Name { mount, .. } if !settings.stale => {
                    let wanted = if mount.is_some() { NAMES[1] } else { NAMES[0] };
                    let (decision, reason) = match decided.answer {
                        Answer::Candidates => ("candidates", ""),
                        Answer::Fallback(why) => (why.policy(&current.config().dns).as_str(), why.as_str()),
                    };
                    let labels = format!("name=\"{wanted}\",decision=\"{decision}\",reason=\"{reason}\"");
                    let answer = series(&text, "floe_dns_name_answer", &labels);
                    prop_assert_eq!(answer.as_deref(), Some("1"), "{}", labels);
                }
                Target::Name { .. } => {}
            }
        }

        // Every pool: /explain for it says what decide_for says, and the
        // candidates are the members of the first group in its order with
        // room (spill-over by room).
        for (pool, def) in topo.pools.iter_ids() {
            for (target, asked) in targets(&snap) {
                let decided = select::decide_for(&snap, target, pool, now);
                let e = explain::explain(&snap, &asked, pool, now);
                let listed: Vec<&str> = e.candidates.iter().map(|c| c.relay).collect();
                let candidates: Vec<&str> = decided.candidates().map(|(r, _)| name(r)).collect();
                prop_assert_eq!(&listed, &candidates, "explain for pool {} of {:?}", &*def.name, target);
                let with_room = |g: floe::snapshot::GroupId| {
                    topo.groups[g].relays.iter().any(|&r| select::room(&snap, r, target).is_ok())
                };
                let first = def.order.iter().copied().find(|&g| with_room(g));
                prop_assert_eq!(decided.group, first);
                for (r, v) in decided.verdicts.iter_ids() {
                    let in_first = first.is_some_and(|g| topo.groups[g].members[r]);
                    prop_assert_eq!(v.is_ok(), in_first && select::room(&snap, r, target).is_ok());
                }
            }
        }

        // HTTP last (a redirect records a grant): each pick, for each pool,
        // is a candidate of the decision made just before it, or refused
        // for its reason.
        for m in topo.mounts.ids() {
            for i in 0..30 {
                let pool = floe::snapshot::PoolId::new(i % topo.pools.len());
                let decided = select::decide_for(&snap, Target::Redirect(m), pool, now);
                match select::pick_for_mount(&snap, m, pool, select::Grant::Record, &mut rng) {
                    Ok(r) => prop_assert!(decided.verdicts[r].is_ok(), "picked excluded {}", name(r)),
                    Err(why) => prop_assert_eq!(decided.answer, Answer::Fallback(select::Fallback::NoCandidate(why))),
                }
            }
        }
    }
}
