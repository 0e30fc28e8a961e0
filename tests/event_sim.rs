//! The event simulation's short version (`tests/sim/`; the full one is
//! `cargo bench --bench event_sim`): a tenth of the keynote, every
//! balancer on the same arrivals, and what floe must guarantee.

#[path = "sim/mod.rs"]
mod sim;

#[test]
fn floe_never_overfills_and_the_peer_exchange_beats_static_shares() {
    let scenario = sim::scenario::Scenario::keynote(7, 0.1);
    let t = sim::compare(&scenario);
    let table = sim::report::table(&scenario, &t);
    println!("{table}");
    let (rr, classic, floe, static_share, exchange) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
    for f in [floe, static_share, exchange] {
        assert_eq!(f.overfill, 0, "{}: overfill\n{table}", f.name);
        assert!(
            f.dead_for < 5.0,
            "{}: sent to a dead relay too long\n{table}",
            f.name
        );
    }
    assert!(
        rr.overfill > 0 && rr.sent_dead > 0,
        "round robin is blind\n{table}"
    );
    assert!(
        classic.overfill > 0,
        "the classic redirector overfills in a burst\n{table}"
    );
    assert!(
        floe.admitted >= classic.admitted.min(rr.admitted),
        "{table}"
    );
    assert!(
        static_share.refused_while_free > floe.refused_while_free,
        "a static share refuses while room is free when traffic is uneven\n{table}"
    );
    assert!(
        exchange.refused_while_free * 2 < static_share.refused_while_free,
        "the peer exchange lends the idle instances' room\n{table}"
    );
    // Quiet relays hold some requests, never past the quiet limit
    // (settle 500 ms + 100 ms + timeout 1 s + 500 ms).
    assert!(
        exchange.waited > 0 && exchange.longest_wait < 2.1,
        "held {} times, the longest {} s\n{table}",
        exchange.waited,
        exchange.longest_wait
    );
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("simulation.svg");
    sim::report::plot(&svg, &scenario, &t, &[0, 2]).unwrap();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("floe x3"),
        "the plot has its legend"
    );
}
