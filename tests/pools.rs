//! Listener pools at the HTTP door, against the real binary: a listener
//! from the venue's network is sent to the venue's relays while they have
//! room and spills over to the others when they are full; listeners from
//! elsewhere never get the venue relays' last slots first, and never the
//! relays of an exclusive group; `/explain?client=` shows the pool's
//! decision.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::floe::FloeProcess;
use support::net::{client_address, from_address, http_request};
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

/// The relay a `GET /live.ogg` from `ip` is sent to (`None`: refused).
fn redirect_from(floe: &FloeProcess, ip: &str) -> Option<String> {
    let r = from_address(ip.parse().unwrap(), || {
        http_request("GET", &floe.url("/live.ogg"), &[], T).unwrap()
    });
    (r.status == 302).then(|| r.header("x-floe-relay").unwrap().to_string())
}

#[test]
fn venue_listeners_get_venue_relays_first_and_spill_over_by_room() {
    let rt = runtime();
    let _g = rt.enter();
    let venue = [
        sim_relay("venue-1", Some(3), None),
        sim_relay("venue-2", Some(2), None),
    ];
    let world = sim_relay("world-1", Some(100), None);
    let partner = sim_relay("partner-1", Some(100), None);
    let config = TestConfig::new()
        // Every listener of this test is its own client: no budget limits.
        .set("select", "grants_per_client", "1000")
        .relays(&[&venue[0], &venue[1], &world, &partner])
        .table(
            "[[group]]\nname = \"venue\"\nrelays = [\"venue-1\", \"venue-2\"]\n\
             [[group]]\nname = \"partner\"\nrelays = [\"partner-1\"]\nexclusive = true\n\
             [[pool]]\nname = \"hall\"\nnetworks = [\"127.77.0.0/16\"]\norder = [\"venue\", \"*\"]\n\
             [[pool]]\nname = \"partner-net\"\nnetworks = [\"127.78.0.0/16\"]\norder = [\"partner\"]\n",
        )
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    floe.wait_status(T, "every relay up", |s| {
        s["relays"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "up")
    });

    // Explain, before any grant: the hall's candidates are the venue's.
    let e = http_request(
        "GET",
        &floe.url("/explain/live.ogg?client=127.77.1.1"),
        &[],
        T,
    )
    .unwrap();
    let text = e.text();
    assert!(
        text.contains("listener pool: hall (groups tried in order: venue, *; answering: venue)"),
        "{text}"
    );

    // Eight hall listeners: the venue's five slots first, then world-1.
    let hall: Vec<String> = (0..8)
        .map(|i| redirect_from(&floe, &format!("127.77.0.{}", i + 1)).expect("a 302"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &hall[..5] {
        *counts.entry(r).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("venue-1", 3), ("venue-2", 2)]),
        "{hall:?}"
    );
    assert!(hall[5..].iter().all(|r| r == "world-1"), "{hall:?}");

    // The partner's network gets the partner's relay only; nobody else
    // ever does.
    for i in 0..10 {
        assert_eq!(
            redirect_from(&floe, &format!("127.78.0.{}", i + 1)).as_deref(),
            Some("partner-1")
        );
        let other = client_address(i).to_string();
        assert_eq!(
            redirect_from(&floe, &other).as_deref(),
            Some("world-1"),
            "{other}"
        );
    }
    let e = http_request(
        "GET",
        &floe.url("/explain/live.ogg?client=127.0.0.9&format=json"),
        &[],
        T,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&e.text()).unwrap();
    assert_eq!(json["pool"], "default");
    let excluded: BTreeMap<String, String> = json["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["relay"].as_str().unwrap().into(),
                x["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(excluded["partner-1"], "not-in-pool");
    assert_eq!(excluded["venue-1"], "full");
}
