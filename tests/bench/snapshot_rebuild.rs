//! Snapshot rebuild cost at scale: 1,000 relays x 20 mounts.
//!
//! BRIEF target: a rebuild under 5 ms. Run with
//! `cargo bench --bench snapshot_rebuild`; prints the median, p99 and max
//! of repeated `Snapshot::build` calls over a fully populated cluster, the
//! cost of one HTTP-style pick on it, and of drawing the DNS plan (every
//! balanced name's answers) from it, with IPv4-only and with dual-stack
//! relays (an IPv4-only cluster once made the plan draw every relay).

use floe::config;
use floe::dns::Plan;
use floe::dns::zones::Zones;
use floe::grants::GrantSample;
use floe::health::{Health, PollOutcome};
use floe::icecast::{MaxListeners, MountStatus, RelayStatus};
use floe::select;
use floe::snapshot::{DEFAULT_POOL, MountId, RelayObservation, Snapshot, Stamp, Topology};
use floe::zones::ZoneSet;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const RELAYS: usize = 1000;
const STREAMS: usize = 10;
const MOUNTS_PER_STREAM: usize = 2;

/// The cluster: topology (balanced names in the example zone; relays
/// IPv4-only, or with an IPv6 address too) and one poll per relay.
fn cluster(dual_stack: bool) -> (Arc<Topology>, Vec<RelayObservation>) {
    let mut toml = String::new();
    for s in 0..STREAMS {
        toml += &format!(
            "[[stream]]\nname = \"s{s}\"\nmounts = [\"/s{s}.ogg\", \"/s{s}.mp3\"]\ndns = [\"s{s}.stream.example.org.\"]\n"
        );
    }
    for r in 0..RELAYS {
        let v6 = if dual_stack {
            format!(", \"2001:db8::{r:x}\"")
        } else {
            String::new()
        };
        toml += &format!(
            "[[relay]]\nname = \"relay-{r}\"\nurl = \"http://relay-{r}.example.org:8000\"\naddresses = [\"10.{}.{}.1\"{v6}]\nstatus = {{ kind = \"xslt\" }}\nmax_listeners = 5000\n",
            r / 256,
            r % 256
        );
    }
    let (config, diags) = config::parse(Path::new("bench.toml"), &toml);
    let config = Arc::new(config.unwrap_or_else(|| panic!("{diags}")));
    let topology = Arc::new(Topology::new(config, None));
    let mounts = STREAMS * MOUNTS_PER_STREAM;
    let observations: Vec<RelayObservation> = (0..RELAYS)
        .map(|r| {
            let status = RelayStatus {
                mounts: topology
                    .mounts
                    .iter()
                    .enumerate()
                    .map(|(m, def)| MountStatus {
                        path: def.path.to_string(),
                        listeners: ((r * 7 + m * 13) % 200) as u32,
                        max_listeners: MaxListeners::Limited(250),
                        bitrate_kbps: Some(128),
                    })
                    .collect(),
            };
            let mut health = Health::new(SystemTime::now());
            health.observe(PollOutcome::Status(status), 2, 2, SystemTime::now());
            RelayObservation {
                health,
                baseline: GrantSample {
                    mounts: vec![0; mounts].into(),
                    relay: 0,
                },
                polled_at: Some(SystemTime::now()),
                polls: 1,
                poll_duration: None,
            }
        })
        .collect();
    (topology, observations)
}

fn main() {
    let (topology, observations) = cluster(false);
    let mounts = STREAMS * MOUNTS_PER_STREAM;
    let refs: Vec<Option<&RelayObservation>> = observations.iter().map(Some).collect();

    // What the poller does per snapshot: build it, then the redirects'
    // pick sums.
    let build = |generation| {
        let snap = Snapshot::build(
            topology.clone(),
            &refs,
            &[],
            Stamp::now(generation),
            Arc::default(),
        );
        select::prepare(&snap);
        snap
    };
    let mut times = Vec::new();
    let started = Instant::now();
    let mut generation = 1;
    while times.len() < 50 || (started.elapsed() < Duration::from_secs(3) && times.len() < 1000) {
        let t = Instant::now();
        let snap = build(generation);
        times.push(t.elapsed());
        generation += 1;
        std::hint::black_box(snap);
    }
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "snapshot rebuild, {RELAYS} relays x {mounts} mounts: median {:?}, p99 {:?}, max {:?} over {} builds (target < 5 ms)",
        pct(0.5),
        pct(0.99),
        times[times.len() - 1],
        times.len()
    );

    let snap = build(generation);
    let mut rng = SmallRng::seed_from_u64(1);
    let n = 20_000;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(
            select::pick_for_mount(
                &snap,
                MountId::new(i % mounts),
                DEFAULT_POOL,
                select::Grant::Record,
                &mut rng,
            )
            .ok(),
        );
    }
    println!(
        "pick_for_mount over {RELAYS} relays: {:?} per pick (index draw; scan once room runs out)",
        t.elapsed() / n as u32
    );

    // The DNS plan: every balanced name's answer variants, drawn from one
    // snapshot (floe draws one per snapshot, and at least once a second).
    let (zone_set, diags) = ZoneSet::load(Path::new("zones"));
    let zones = Arc::new(Zones::new(Arc::new(
        zone_set.unwrap_or_else(|| panic!("zones/: {diags}")),
    )));
    for dual_stack in [false, true] {
        let (topology, observations) = cluster(dual_stack);
        let refs: Vec<Option<&RelayObservation>> = observations.iter().map(Some).collect();
        let snap = Arc::new(Snapshot::build(
            topology,
            &refs,
            &[],
            Stamp::now(1),
            Arc::default(),
        ));
        let rounds = 50;
        let t = Instant::now();
        for _ in 0..rounds {
            let plan = Plan::build(
                snap.clone(),
                zones.clone(),
                Instant::now(),
                SystemTime::now(),
                &mut rng,
            );
            std::hint::black_box(plan);
        }
        println!(
            "DNS plan, {RELAYS} relays x {STREAMS} balanced names ({}): {:?} per plan",
            if dual_stack {
                "dual-stack"
            } else {
                "IPv4 only"
            },
            t.elapsed() / rounds
        );
    }
}
