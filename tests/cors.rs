//! CORS for web players, against the real binary: the preflight a
//! `fetch()` with `Icy-MetaData` makes is answered without taking a grant,
//! the 302 and the playlists carry `Access-Control-Allow-Origin`, a listed
//! origin is echoed and others get no CORS headers, and preflights asking
//! for other methods or headers are not allowed.

mod support;

use std::time::Duration;
use support::floe::FloeProcess;
use support::net::http_request;
use support::prom::value;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);
const PAGE: &str = "https://radio.example.org";

fn preflight<'a>(origin: &'a str, method: &'a str, headers: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
        ("Access-Control-Request-Headers", headers),
    ]
}

#[test]
fn web_players_get_cors_and_preflights_take_no_grant() {
    let rt = runtime();
    let _g = rt.enter();
    let relay = sim_relay("relay-1", Some(5), None);
    let config = TestConfig::new()
        // One poll at start: the simulated relay never sees the listeners.
        .set("poll", "interval", "\"60s\"")
        // Every request comes from one address: no per-client budget.
        .set("select", "grants_per_client", "1000")
        .relays(&[&relay])
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    let url = floe.url("/live.ogg");

    // Twenty preflights: 204 with what a fetch() with Icy-MetaData needs.
    for _ in 0..20 {
        let r = http_request("OPTIONS", &url, &preflight(PAGE, "GET", "icy-metadata"), T).unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("icy-metadata")
        );
        assert!(r.header("location").is_none(), "a preflight is no redirect");
    }
    // ...none took a grant or counted as a redirect: the relay's five
    // slots are all there for the GETs.
    let text = http_request("GET", &floe.url("/metrics"), &[], T)
        .unwrap()
        .text();
    let room = [
        ("relay", "relay-1"),
        ("stream", "live"),
        ("mount", "/live.ogg"),
    ];
    assert_eq!(value(&text, "floe_mount_room", &room), Some(5.0), "{text}");
    for i in 0..5 {
        let r = http_request("GET", &url, &[("Origin", PAGE), ("Icy-MetaData", "1")], T).unwrap();
        assert_eq!(r.status, 302, "listener {i}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let exposed = r
            .header("access-control-expose-headers")
            .unwrap_or_default();
        assert!(exposed.contains("x-floe-relay"), "{exposed}");
    }
    // Full now: the 503 carries CORS too, so the page can read why.
    let r = http_request("GET", &url, &[("Origin", PAGE)], T).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // A playlist, and a request without Origin (no CORS headers needed).
    let r = http_request("GET", &floe.url("/live.ogg.m3u"), &[("Origin", PAGE)], T).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = http_request("GET", &floe.url("/live.ogg.m3u"), &[], T).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Bad preflights: other methods, headers off the list, too many names.
    let many = vec!["range"; 17].join(",");
    for (method, headers) in [
        ("POST", "icy-metadata"),
        ("GET", "authorization"),
        ("GET", many.as_str()),
    ] {
        let r = http_request("OPTIONS", &url, &preflight(PAGE, method, headers), T).unwrap();
        assert_eq!(r.status, 204, "{method} {headers}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            None,
            "{method} {headers}"
        );
    }
    // OPTIONS elsewhere is still 405.
    let r = http_request(
        "OPTIONS",
        &floe.url("/status"),
        &preflight(PAGE, "GET", ""),
        T,
    )
    .unwrap();
    assert_eq!(r.status, 405);
}

#[test]
fn only_listed_origins_get_cors_headers() {
    let rt = runtime();
    let _g = rt.enter();
    let relay = sim_relay("relay-1", Some(100), None);
    let config = TestConfig::new()
        .set("http", "cors_origins", &format!("[\"{PAGE}\"]"))
        .relays(&[&relay])
        .render();
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    let url = floe.url("/live.ogg");
    let r = http_request("OPTIONS", &url, &preflight(PAGE, "GET", "range"), T).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE));
    assert!(r.header("vary").unwrap_or_default().contains("Origin"));
    let r = http_request("GET", &url, &[("Origin", PAGE)], T).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE));
    let other = "https://elsewhere.example";
    let r = http_request("OPTIONS", &url, &preflight(other, "GET", "range"), T).unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = http_request("GET", &url, &[("Origin", other)], T).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), None);
}
