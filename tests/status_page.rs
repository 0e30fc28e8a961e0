//! The status page in a real headless browser (Debian `chromium`): it
//! renders, names every relay of the config, draws its charts and refreshes
//! itself; a screenshot is left at `target/status-page.png`. Then a failed
//! reload shows on the page. Relays are `floe::demo::sim::SimRelay`s.

mod support;

use floe::demo::sim::SimRelay;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::floe::FloeProcess;
use support::procs::{Proc, temp_dir};
use support::require_tool;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

fn sim(name: &str, max: u32) -> SimRelay {
    sim_relay(name, Some(max), Some(max))
}

fn config(relays: &[&SimRelay]) -> String {
    // Slack for a loaded machine (chromium starting takes both cores): a
    // live relay must not time out into "down"; relay-c refuses
    // connections, so it is down after two polls all the same.
    TestConfig::new()
        .set("poll", "timeout", "\"2s\"")
        .set("poll", "fall", "2")
        .relays(relays)
        .render()
}

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=PATH`); returns its stdout. A fresh profile each time.
fn chromium(url: &str, mode: &str) -> String {
    let chromium = require_tool("chromium");
    let profile = temp_dir("floe-chromium");
    let out = profile.path().join("stdout");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1600",
        "--virtual-time-budget=5000",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.path().join("profile").display()
    ))
    .arg(mode)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(Stdio::null());
    let mut proc = Proc::spawn_group("chromium", &mut cmd).expect("start chromium");
    let status = proc
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("chromium {mode} {url} did not finish within 60 s"));
    assert!(status.success(), "chromium {mode} {url}: {status}");
    std::fs::read_to_string(&out).unwrap()
}

/// `target/status-page.png` (beside the test binaries' tmp dir).
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("status-page.png")
}

fn history_len(s: &Value) -> usize {
    s["history"]["t"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_status_page_renders_in_a_browser_with_relays_and_charts() {
    let rt = runtime();
    let _g = rt.enter();
    let a = sim("relay-a", 100);
    let b = sim("relay-b", 60);
    let c = sim("relay-c", 40);
    c.set_down(true).unwrap();
    let floe = FloeProcess::start(&config(&[&a, &b, &c]));
    floe.wait_healthy(T);

    // Some traffic between history samples, so the charts have lines.
    a.set_fake_listeners("/live.ogg", 20);
    a.set_fake_listeners("/live.mp3", 6);
    b.set_fake_listeners("/live.ogg", 11);
    floe.wait_status(T, "two history samples", |s| history_len(s) >= 2);
    for _ in 0..12 {
        assert_eq!(floe.get("/live.ogg").status, 302);
    }
    a.set_fake_listeners("/live.ogg", 31);
    b.set_fake_listeners("/live.ogg", 24);
    let status = floe.wait_status(T, "four history samples", |s| history_len(s) >= 4);
    assert_eq!(status["counters"]["redirects"], 12);
    assert_eq!(status["history"]["relays"].as_array().unwrap().len(), 3);
    assert_eq!(status["reload"]["failures"], 0);

    // The DOM after the page's script ran (it refreshes every 2 s).
    let url = floe.url("/status");
    let dom = chromium(&url, "--dump-dom");
    assert!(
        dom.contains("data-refreshed=\""),
        "the page's script fetched /status and swapped the page in:\n{dom}"
    );
    for relay in ["relay-a", "relay-b", "relay-c"] {
        assert!(
            dom.contains(&format!("data-relay=\"{relay}\"")),
            "{relay} listed:\n{dom}"
        );
    }
    for chart in [
        "chart-listeners",
        "chart-room",
        "chart-redirects",
        "chart-dns",
    ] {
        assert!(
            dom.contains(&format!("<svg class=\"chart\" id=\"{chart}\"")),
            "{chart}:\n{dom}"
        );
    }
    assert!(dom.matches("<polyline").count() >= 4, "chart lines:\n{dom}");
    assert!(
        dom.contains("badge down") && dom.contains("badge up"),
        "an up and a down relay:\n{dom}"
    );
    assert!(dom.contains("Stream <span class=\"name\">live</span>"));

    // A screenshot for people to look at.
    let png = screenshot_path();
    let _ = std::fs::remove_file(&png);
    chromium(&url, &format!("--screenshot={}", png.display()));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[1..4], b"PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 1600));
    assert!(bytes.len() > 20_000, "a page with content, not a blank one");

    // A config that fails to load shows on the page; floe keeps serving.
    std::fs::write(floe.config_path(), "[[stream]\nname = 1\n").unwrap();
    floe.signal("HUP");
    let status = floe.wait_status(T, "the failed reload", |s| {
        !s["reload"]["last_error"].is_null()
    });
    let message = status["reload"]["last_error"]["message"].as_str().unwrap();
    let page = floe.get("/status").text();
    assert!(page.contains("id=\"reload-error\""), "{page}");
    assert!(page.contains("Config reload failed"));
    let first_line = message.lines().next().unwrap();
    let escaped = first_line
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(page.contains(&escaped), "{escaped} in\n{page}");
    assert_eq!(floe.get("/live.ogg").status, 302);
}
