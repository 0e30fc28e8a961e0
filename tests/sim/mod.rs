//! The event simulation of issue #12: a live event of real size, in
//! simulated time (no sockets, no threads, one seed), with each balancer
//! in the loop on the same arrivals.
//!
//! floe's rows run floe's own code: `Topology` from a real config text,
//! `Health`, the grant `Reconciler`, `Snapshot::build`, `select::prepare`
//! and `select::pick_for_mount`, driven at the simulated instants the poll
//! loop and the snapshot builder would run them. Only the clock and the
//! network are simulated: the relays (`world`) and the listeners
//! (`scenario`). The other balancers (`policy`) are the setups people run
//! without floe.
//!
//! `tests/sim/bench.rs` is the full run (`cargo bench --bench event_sim`),
//! which writes the table and the plot of `docs/simulation.md`;
//! `tests/event_sim.rs` is the short version CI runs.

pub mod floe;
pub mod policy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod world;

/// Simulated time, in microseconds since the event started.
pub type Time = u64;

/// `s` seconds as [`Time`].
pub const fn secs(s: u64) -> Time {
    s * 1_000_000
}

/// `ms` milliseconds as [`Time`].
pub const fn millis(ms: u64) -> Time {
    ms * 1_000
}

/// Runs `scenario` under every balancer compared, in the table's order:
/// DNS round robin, the classic redirector, floe, floe as three instances
/// with static shares and with the peer exchange at a 90/8/2 traffic split.
pub fn compare(scenario: &scenario::Scenario) -> Vec<run::Tally> {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    let rng = |salt: u64| SmallRng::seed_from_u64(scenario.seed ^ salt);
    let slots: Vec<u32> = scenario.relays.iter().map(|r| r.slots).collect();
    let paths: Vec<&'static str> = scenario.mounts.iter().map(|m| m.path).collect();
    let mut balancers: Vec<Box<dyn policy::Balancer>> = vec![
        Box::new(policy::RoundRobin::new(slots.len(), rng(1))),
        Box::new(policy::Classic::new(slots, paths, secs(2), rng(2))),
        Box::new(floe::Floe::new("floe", scenario, &[1.0], 1.0, false)),
        Box::new(floe::Floe::new(
            "floe x3, static share, 90/8/2",
            scenario,
            &[0.9, 0.08, 0.02],
            1.0 / 3.0,
            false,
        )),
        Box::new(floe::Floe::new(
            "floe x3, peer exchange, 90/8/2",
            scenario,
            &[0.9, 0.08, 0.02],
            1.0 / 3.0,
            true,
        )),
    ];
    balancers
        .iter_mut()
        .map(|b| run::run(scenario, b.as_mut()))
        .collect()
}
