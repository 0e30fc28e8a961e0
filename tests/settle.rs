//! `[poll] settle` holds whatever the interval: a grant keeps counting
//! until a poll that started at least `settle` after it, also when
//! `settle` is longer than the interval (found by tests/e2e_pools.rs: the
//! grant sample was never older than the previous poll, so with 300 ms
//! polls a grant stopped counting after ~0.5 s, not the configured 1.5 s).

mod support;

use std::time::{Duration, Instant};
use support::floe::FloeProcess;
use support::net::http_request;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

/// relay-1's room for /live.ogg as `/explain` (never cached) says now.
fn room(floe: &FloeProcess) -> u64 {
    let r = http_request("GET", &floe.url("/explain/live.ogg?format=json"), &[], T).unwrap();
    let json: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    json["candidates"][0]["room"].as_u64().unwrap_or(0)
}

#[test]
fn a_grant_counts_for_settle_even_when_settle_is_longer_than_the_interval() {
    let rt = runtime();
    let _g = rt.enter();
    // The simulated relay never sees the listener: only the grant holds
    // its slot.
    let relay = sim_relay("relay-1", Some(10), None);
    let config = TestConfig::new()
        .set("poll", "interval", "\"300ms\"")
        .set("poll", "settle", "\"1500ms\"")
        .relays(&[&relay])
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    support::poll(T, Duration::from_millis(50), || {
        (room(&floe) == 10).then_some(())
    })
    .expect("relay-1 polled with its room");

    let sent = Instant::now();
    let r = http_request("GET", &floe.url("/live.ogg"), &[], T).unwrap();
    assert_eq!(r.status, 302);
    let released = loop {
        let n = room(&floe);
        if n == 10 {
            break sent.elapsed();
        }
        assert_eq!(n, 9, "the grant holds one slot");
        assert!(sent.elapsed() < T, "the grant never stopped counting");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        released >= Duration::from_millis(1400),
        "the grant stopped counting after {released:?}, before settle (1.5 s)"
    );
}
