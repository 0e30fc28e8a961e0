//! The admin endpoint and `floe drain` against the real binary: writes
//! without the token are refused, a runtime drain takes a relay out of both
//! doors at once, `/status.json` shows it emptying until "drain complete",
//! and undrain restores it.

mod support;

use floe::demo::sim::SimRelay;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::dns::{a_records, query};
use support::floe::FloeProcess;
use support::net::http_request;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);
const TOKEN: &str = "test-admin-token-7d1f3a9c2b";

fn sim(name: &str) -> SimRelay {
    sim_relay(name, None, None)
}

/// Two relays (127.0.0.1 and .2 in DNS); `admin` is the `[admin]` body.
fn config(a: &SimRelay, b: &SimRelay, admin: &str) -> String {
    TestConfig::new()
        .lines("admin", admin)
        .relays(&[a, b])
        .render()
}

/// floe with the admin endpoint on a free loopback port, its token in a
/// file (kept with the returned directory: reloads read it again).
fn start(a: &SimRelay, b: &SimRelay) -> (FloeProcess, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let admin = format!(
        "listen = [\"127.0.0.1:0\"]\ntoken_file = {:?}",
        token_file.display().to_string()
    );
    let floe = FloeProcess::start(&config(a, b, &admin));
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    (floe, dir, token_file)
}

fn post(floe: &FloeProcess, path: &str, auth: Option<&str>) -> support::HttpResponse {
    let url = format!("http://{}{path}", floe.admin());
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    http_request("POST", &url, &headers, T).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn relay<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
}

fn redirect(floe: &FloeProcess) -> String {
    let r = http_request("GET", &floe.url("/live.ogg"), &[], T).unwrap();
    assert_eq!(r.status, 302);
    r.header("x-floe-relay").unwrap().to_string()
}

fn live(floe: &FloeProcess) -> Vec<Ipv4Addr> {
    a_records(&query(floe.dns(), "live.stream.example.org.", RecordType::A, T).unwrap())
}

/// `floe drain ARGS...`: exit code and stdout.
fn floe_drain(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("drain")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn writes_without_the_token_are_refused() {
    let rt = runtime();
    let _g = rt.enter();
    let (a, b) = (sim("relay-a"), sim("relay-b"));
    let (floe, _dir, _) = start(&a, &b);
    assert!(floe.admin().ip().is_loopback());

    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some(&format!("Basic {TOKEN}")[..]),
        Some("Bearer "),
    ] {
        let r = post(&floe, "/drain/relay-a", auth);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer"))
        );
    }
    // Nothing about paths or relays is revealed before authentication.
    assert_eq!(post(&floe, "/nope", None).status, 401);
    assert_eq!(
        post(&floe, "/drain/no-such-relay", Some("Bearer nope")).status,
        401
    );

    let good = format!("Bearer {TOKEN}");
    assert_eq!(post(&floe, "/drain/no-such-relay", Some(&good)).status, 404);
    assert_eq!(post(&floe, "/reboot", Some(&good)).status, 404);
    let url = format!("http://{}/drain/relay-a", floe.admin());
    let get = http_request("GET", &url, &[("Authorization", &good)], T).unwrap();
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));

    // The CLI with a wrong token fails and changes nothing.
    let wrong = floe.dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let admin = format!("http://{}", floe.admin());
    let (code, _, stderr) = floe_drain(&[
        "relay-a",
        "--admin",
        &admin,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");

    let status = floe.status();
    assert_eq!(
        relay(&status, "relay-a")["drain"],
        false,
        "no refused request drained anything"
    );
    assert!(redirect_reaches(&floe, "relay-a"));
}

#[test]
fn wrong_tokens_are_limited_per_client_and_the_right_one_is_not_checked_past_it() {
    let rt = runtime();
    let _g = rt.enter();
    let (a, b) = (sim("relay-a"), sim("relay-b"));
    let (floe, _dir, _) = start(&a, &b);
    let good = format!("Bearer {TOKEN}");
    let guesser = support::net::client_address(7);
    support::net::from_address(guesser, || {
        // A right token is no failure: it spends nothing.
        for _ in 0..15 {
            assert_eq!(post(&floe, "/drain/no-such-relay", Some(&good)).status, 404);
        }
        // Ten wrong ones are told 401; from the eleventh on, every request
        // gets 429 without its token being looked at, the right one too.
        for i in 0..10 {
            let r = post(&floe, "/drain/relay-a", Some(&format!("Bearer guess-{i}")));
            assert_eq!(r.status, 401, "guess {i}");
        }
        for auth in [Some("Bearer guess-10"), Some(&good[..]), None] {
            let r = post(&floe, "/drain/relay-a", auth);
            assert_eq!(r.status, 429, "{auth:?}: {}", r.text());
            assert_eq!(r.header("retry-after"), Some("60"));
        }
    });
    // Another client is not locked out by the guesser.
    let r = support::net::from_address(support::net::client_address(8), || {
        post(&floe, "/drain/relay-a", Some(&good))
    });
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(floe.logs_within(
        Duration::from_secs(5),
        "admin: request without a valid token refused"
    ));
}

fn redirect_reaches(floe: &FloeProcess, name: &str) -> bool {
    (0..200).any(|_| redirect(floe) == name)
}

#[test]
fn a_runtime_drain_empties_a_relay_through_both_doors_and_undrain_restores_it() {
    let rt = runtime();
    let _g = rt.enter();
    let (a, b) = (sim("relay-a"), sim("relay-b"));
    // Listeners already on relay-a stay through the drain.
    a.set_fake_listeners("/live.ogg", 5);
    let (floe, _dir, token_file) = start(&a, &b);
    floe.wait_status(T, "relay-a's listeners", |s| {
        relay(s, "relay-a")["listeners"] == 5
    });
    assert!(live(&floe).contains(&Ipv4Addr::new(127, 0, 0, 1)));
    let admin = format!("http://{}", floe.admin());

    let (code, stdout, stderr) = floe_drain(&[
        "relay-a",
        "--admin",
        &admin,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("JSON answer");
    assert_eq!(answer["relay"], "relay-a");
    assert_eq!(answer["draining"], true);
    assert_eq!(answer["runtime_drain"], true);
    assert_eq!(answer["config_drain"], false);
    assert_eq!(answer["listeners"], 5);

    // The answer came after the snapshot that drains: both doors at once.
    for _ in 0..200 {
        assert_eq!(redirect(&floe), "relay-b");
    }
    for _ in 0..20 {
        assert_eq!(live(&floe), [Ipv4Addr::new(127, 0, 0, 2)]);
    }
    let status = floe.status();
    let ra = relay(&status, "relay-a");
    assert_eq!(ra["drain"], true);
    assert_eq!(ra["listeners"], 5, "current listeners stay");
    assert_eq!(ra["drain_complete"], false);

    // The listeners leave: drain complete.
    a.set_fake_listeners("/live.ogg", 0);
    floe.wait_status(T, "drain complete", |s| {
        relay(s, "relay-a")["drain_complete"] == true
    });

    // A reload keeps the runtime drain.
    floe.signal("HUP");
    floe.wait_status(T, "the reload", |s| {
        s["reload"]["successes"].as_u64() >= Some(1)
    });
    assert_eq!(
        relay(&floe.status(), "relay-a")["drain"],
        true,
        "a reload keeps a runtime drain"
    );

    // Undrain with the token from the config's own [admin] settings (the
    // address too, but this config listens on port 0).
    let config = floe.config_path();
    let (code, stdout, stderr) = floe_drain(&[
        "relay-a",
        "--undo",
        "--config",
        config.to_str().unwrap(),
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("\"draining\":false"), "{stdout}");
    assert!(redirect_reaches(&floe, "relay-a"));
    assert!(live(&floe).contains(&Ipv4Addr::new(127, 0, 0, 1)));
    let log = floe.log_text();
    assert!(
        log.contains("relay drained at runtime") && log.contains("runtime drain lifted"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token never shows in the log");
}

#[test]
fn secrets_never_show_on_the_public_pages_in_dns_or_in_the_log() {
    let rt = runtime();
    let _g = rt.enter();
    const RELAY_PASSWORD: &str = "relay-pass-5c0ffee9d2a1";
    let a = sim("relay-a");
    let b = SimRelay::builder("relay-b")
        .mount("/live.ogg", None)
        .mount("/live.mp3", None)
        .admin("admin", RELAY_PASSWORD)
        .start()
        .expect("sim relay");
    let with_b = |status: &str| {
        let admin = format!("listen = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"");
        config(&a, &b, &admin).replace(
            &format!(
                "url = \"{}\"\naddresses = [\"127.0.0.2\"]\nstatus = {{ kind = \"xslt\" }}",
                b.url()
            ),
            &format!(
                "url = \"{}\"\naddresses = [\"127.0.0.2\"]\nstatus = {status}",
                b.url()
            ),
        )
    };
    let good = with_b(&format!(
        "{{ kind = \"icecast-xml\", user = \"admin\", password = \"{RELAY_PASSWORD}\" }}"
    ));
    assert!(good.contains(RELAY_PASSWORD));
    let floe = FloeProcess::start(&good);
    floe.wait_status(T, "relay-b polled with its password", |s| {
        relay(s, "relay-b")["state"] == "up"
    });
    // A reload that fails on the line holding both secrets: its message
    // goes to /status, and must not quote them.
    let bad = with_b(&format!(
        "{{ kind = \"icecast-xml\", user = \"admin\", password = \"{RELAY_PASSWORD}\", token = \"{TOKEN}\" }}"
    ));
    std::fs::write(floe.config_path(), bad).unwrap();
    floe.signal("HUP");
    floe.wait_status(T, "the failed reload", |s| {
        s["reload"]["last_error"].is_object()
    });
    // Wrong admin tokens: refused and logged, the presented token too must
    // not be echoed.
    assert_eq!(
        post(
            &floe,
            "/drain/relay-a",
            Some("Bearer guessed-token-1234567")
        )
        .status,
        401
    );

    let mut seen = Vec::new();
    for path in [
        "/status",
        "/status.json",
        "/metrics",
        "/explain",
        "/explain/live.ogg",
        "/healthz",
        "/live.ogg.m3u",
        "/live.ogg",
    ] {
        let r = http_request("GET", &floe.url(path), &[], T).unwrap();
        seen.push((path.to_string(), format!("{:?}{}", r.headers, r.text())));
    }
    for qtype in [RecordType::A, RecordType::TXT, RecordType::ANY] {
        let m = query(floe.dns(), "live.stream.example.org.", qtype, T).unwrap();
        seen.push((format!("DNS {qtype}"), format!("{m:?}")));
    }
    seen.push(("the log".into(), floe.log_text()));
    for (what, text) in &seen {
        for secret in [TOKEN, RELAY_PASSWORD, "guessed-token-1234567"] {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
    assert!(
        seen.iter()
            .any(|(w, t)| w == "/status.json" && t.contains("unknown field")),
        "the reload error is shown (without secrets)"
    );
}

#[test]
fn without_a_token_there_is_no_admin_endpoint() {
    let rt = runtime();
    let _g = rt.enter();
    let (a, b) = (sim("relay-a"), sim("relay-b"));
    let floe = FloeProcess::start(&config(&a, &b, "listen = [\"127.0.0.1:0\"]"));
    floe.wait_healthy(T);
    assert!(
        !floe.log_text().contains("admin listening"),
        "{}",
        floe.log_text()
    );
    let (code, _, stderr) =
        floe_drain(&["relay-a", "--config", floe.config_path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("disabled"), "{stderr}");
}
