//! Explanations against the real binary: `GET /explain/<mount>`, `GET
//! /explain?name=<dns name>` (text and JSON) and `floe explain`, for a
//! cluster with one relay excluded for each reason.

mod support;

use floe::demo::sim::SimRelay;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::floe::{FloeProcess, relay_state};
use support::net::http_request;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

fn sim(name: &str, ogg: u32, mp3: u32) -> SimRelay {
    sim_relay(name, Some(ogg), Some(mp3))
}

fn config(relays: &[(&SimRelay, &str)], select: &str) -> String {
    let c = TestConfig::new()
        .set("http", "workers", "1")
        .lines("select", select);
    relays
        .iter()
        .fold(c, |c, (r, extra)| c.relay(r, extra))
        .render()
}

/// `(relay, reason)` of every excluded relay in an explanation.
fn excluded(e: &Value) -> Vec<(String, String)> {
    e["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|x| {
            (
                x["relay"].as_str().unwrap().to_string(),
                x["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn candidates(e: &Value) -> Vec<&str> {
    e["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["relay"].as_str().unwrap())
        .collect()
}

fn json(floe: &FloeProcess, path: &str) -> Value {
    let r = floe.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("explanation is JSON")
}

fn floe_explain(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("explain")
        .args(args)
        .output()
        .expect("run floe explain")
}

/// A cluster with one relay per reason: a has room, b is full, c drained,
/// d down, e has no ogg source.
#[test]
fn every_other_relay_is_excluded_with_its_reason() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", 100, 100);
    let b = sim("relay-b", 5, 100);
    let c = sim("relay-c", 100, 100);
    let d = sim("relay-d", 100, 100);
    let e = sim("relay-e", 100, 100);
    b.set_fake_listeners("/live.ogg", 5);
    d.set_down(true).unwrap();
    e.set_source("/live.ogg", false);
    let relays = [(&a, ""), (&b, ""), (&c, "drain = true"), (&d, ""), (&e, "")];
    let floe = FloeProcess::start(&config(&relays, ""));
    floe.wait_healthy(T);
    floe.wait_status(T, "b full and d down", |s| {
        support::floe::cell(s, "relay-b", "/live.ogg")["listeners"] == 5
            && relay_state(s, "relay-d") == "down"
    });

    // Text, the default.
    let r = floe.get("/explain/live.ogg");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let generation = r.header("x-floe-generation").expect("generation header");
    assert!(
        text.contains(&format!("snapshot generation {generation} ")),
        "{text}"
    );
    assert!(
        text.contains("answer now: HTTP: 302 to one of 1 candidate"),
        "{text}"
    );
    assert!(text.contains("candidates (1):\n  relay-a "), "{text}");
    for (relay, reason) in [
        ("relay-b", "full"),
        ("relay-c", "draining"),
        ("relay-d", "down"),
        ("relay-e", "no-source"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(relay) && l.contains(&format!(" {reason} "))),
            "{relay} {reason}:\n{text}"
        );
    }
    assert!(text.contains("/live.ogg: 5 listeners (limit 5)"), "{text}");

    // JSON by parameter or by Accept header, the same verdicts.
    let e1 = json(&floe, "/explain/live.ogg?format=json");
    assert_eq!(e1["kind"], "mount");
    assert_eq!(e1["target"], "/live.ogg");
    assert_eq!(candidates(&e1), ["relay-a"]);
    assert_eq!(e1["candidates"][0]["chance"], 1.0);
    assert_eq!(e1["candidates"][0]["room"], 100);
    let reasons = [
        ("relay-b", "full"),
        ("relay-c", "draining"),
        ("relay-d", "down"),
        ("relay-e", "no-source"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(excluded(&e1), reasons);
    let r = http_request(
        "GET",
        &floe.url("/explain/live.ogg"),
        &[("Accept", "application/json")],
        T,
    )
    .unwrap();
    let e2: Value = serde_json::from_slice(&r.body).expect("JSON by Accept");
    assert_eq!(excluded(&e2), reasons);

    // The balanced name: judged on both mounts (e lacks the ogg).
    let n = json(&floe, "/explain?name=live.stream.example.org.&format=json");
    assert_eq!(n["kind"], "dns-name");
    assert_eq!(n["mounts"], serde_json::json!(["/live.ogg", "/live.mp3"]));
    assert_eq!(candidates(&n), ["relay-a"]);
    assert_eq!(excluded(&n), reasons);
    assert!(
        n["answer"]
            .as_str()
            .unwrap()
            .starts_with("DNS: A/AAAA of 1 of these 1 candidate")
    );
    // Any case, final dot optional; a stream by name.
    let n2 = json(&floe, "/explain?name=LIVE.Stream.Example.Org&format=json");
    assert_eq!(n2["target"], "live.stream.example.org.");
    assert_eq!(json(&floe, "/explain/live?format=json")["kind"], "stream");

    // Unknown names are 404; the bare path lists what can be explained.
    assert_eq!(floe.get("/explain/nothing.ogg").status, 404);
    let help = floe.get("/explain").text();
    assert!(
        help.contains("/live.mp3") && help.contains("live.stream.example.org."),
        "{help}"
    );

    // The CLI prints the same.
    let base = floe.url("");
    let out = floe_explain(&["--url", &base, "/live.ogg"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("candidates (1):\n  relay-a "), "{stdout}");
    assert!(
        stdout.contains("relay-d") && stdout.contains("down since"),
        "{stdout}"
    );
    let out = floe_explain(&["--url", &base, "--json", "live.stream.example.org."]);
    assert!(out.status.success(), "{out:?}");
    let cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    assert_eq!(excluded(&cli), reasons);
    let out = floe_explain(&["--url", &base, "/nothing.ogg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    // --client and --pool: without [[pool]] every listener is the default
    // pool's; a pool that does not exist is a 404 that names it.
    let out = floe_explain(&[
        "--url",
        &base,
        "--client",
        "203.0.113.7",
        "--json",
        "/live.ogg",
    ]);
    assert!(out.status.success(), "{out:?}");
    let cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    assert_eq!(
        (cli["pool"].as_str(), cli["group"].as_str()),
        (Some("default"), Some("*"))
    );
    let out = floe_explain(&["--url", &base, "--pool", "nowhere", "/live.ogg"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404 no pool named \"nowhere\""), "{stderr}");
}

/// Bad `--client`/`--pool` arguments are refused before any request, with
/// a message naming the option.
#[test]
fn explain_refuses_a_client_that_is_no_address() {
    for args in [
        &["--client", "203.0.113", "/live.ogg"][..],
        &["--client", "example.org", "/live.ogg"],
        &["--client", "203.0.113.7", "--pool", "hall", "/live.ogg"],
    ] {
        let out = floe_explain(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--client"), "{args:?}: {stderr}");
    }
}

/// The headroom reserve: room that only the reserve covers is held back
/// while no peer is down or full, and the explanation says so.
#[test]
fn a_relay_left_with_only_its_reserve_is_explained() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", 100, 100);
    let f = sim("relay-f", 10, 100);
    f.set_fake_listeners("/live.ogg", 9);
    let floe = FloeProcess::start(&config(&[(&a, ""), (&f, "")], "reserve = 0.1"));
    floe.wait_healthy(T);
    floe.wait_status(T, "f polled with 9 listeners", |s| {
        support::floe::cell(s, "relay-f", "/live.ogg")["listeners"] == 9
    });
    let e = json(&floe, "/explain/live.ogg?format=json");
    assert_eq!(candidates(&e), ["relay-a"]);
    assert_eq!(
        excluded(&e),
        [("relay-f".to_string(), "reserve".to_string())]
    );
    let detail = e["excluded"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("reserve is left (1 slots held back"),
        "{detail}"
    );
    // relay-a's own reserve (10 of 100) is held back from its room.
    assert_eq!(e["candidates"][0]["room"], 90);
}
