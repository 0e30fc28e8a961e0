//! floe polling real Icecast 2.4 relays in all three status formats:
//! listeners and limits per mount, a full server (403 connection limit) is
//! full not down, and a stopped relay goes down.

mod support;

use std::time::Duration;
use support::floe::{FloeProcess, cell, relay_state};
use support::{Lab, RelaySpec, StreamListener};

const T: Duration = Duration::from_secs(15);

fn floe_config(relays: &str) -> String {
    format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zones = "zones"
[http]
listen = ["127.0.0.1:0"]
workers = 1
[poll]
interval = "300ms"
timeout = "1s"
rise = 1
fall = 2
{relays}
[[stream]]
name = "live"
mounts = ["/live.ogg", "/live.mp3"]
"#
    )
}

#[test]
fn one_relay_polled_three_ways_reports_listeners_and_limits() {
    let lab = Lab::start(vec![
        RelaySpec::new("lab")
            .hostname("relay-x.example.org")
            .mount("/live.ogg", Some(5))
            .mount("/live.mp3", None),
    ]);
    let relay = lab.relay(0);
    let _l1 = StreamListener::connect(&relay.url("/live.ogg"), T).expect("listener 1");
    let _l2 = StreamListener::connect(&relay.url("/live.ogg"), T).expect("listener 2");
    let _l3 = StreamListener::connect(&relay.url("/live.mp3"), T).expect("listener 3");
    relay.wait_for_listeners("/live.ogg", 2, T);
    relay.wait_for_listeners("/live.mp3", 1, T);

    let (user, password) = relay.admin_credentials();
    let base = relay.base_url();
    // The same credentials inline and from a password file.
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("relay.password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let password_file = password_file.display();
    let floe = FloeProcess::start(&floe_config(&format!(
        r#"
[[relay]]
name = "via-xml"
url = "{base}"
status = {{ kind = "icecast-xml", user = "{user}", password = "{password}" }}
[[relay]]
name = "via-xml-file"
url = "{base}"
status = {{ kind = "icecast-xml", user = "{user}", password_file = "{password_file}" }}
[[relay]]
name = "via-json"
url = "{base}"
status = {{ kind = "icecast-json" }}
mount_max_listeners = {{ "/live.ogg" = 4 }}
[[relay]]
name = "via-xslt"
url = "{base}"
status = {{ kind = "xslt" }}
"#
    )));
    floe.wait_healthy(T);
    let status = floe.wait_status(T, "listener counts on every relay", |s| {
        ["via-xml", "via-xml-file", "via-json", "via-xslt"]
            .iter()
            .all(|r| {
                cell(s, r, "/live.ogg")["listeners"] == 2
                    && cell(s, r, "/live.mp3")["listeners"] == 1
            })
    });
    for r in ["via-xml", "via-xml-file", "via-json", "via-xslt"] {
        assert_eq!(relay_state(&status, r), "up", "{r}: {status:#}");
    }
    // Icecast's own limits: 5 on /live.ogg, none on /live.mp3.
    for r in ["via-xml", "via-xml-file", "via-xslt"] {
        let ogg = cell(&status, r, "/live.ogg");
        assert_eq!(ogg["max_listeners"], 5, "{r}");
        assert_eq!(ogg["free"], 3, "{r}");
        let mp3 = cell(&status, r, "/live.mp3");
        assert!(mp3["max_listeners"].is_null(), "{r}: unlimited");
        assert_eq!(
            mp3["capacity_unknown"], false,
            "{r}: Icecast said unlimited"
        );
    }
    // status-json hides max_listeners: the config cap applies, else unknown.
    let ogg = cell(&status, "via-json", "/live.ogg");
    assert_eq!(ogg["max_listeners"], 4);
    assert_eq!(ogg["free"], 2);
    let mp3 = cell(&status, "via-json", "/live.mp3");
    assert!(mp3["max_listeners"].is_null());
    assert_eq!(mp3["capacity_unknown"], true);
}

#[test]
fn a_relay_at_its_client_limit_is_full_not_down_and_a_stopped_relay_goes_down() {
    // 2 sources + 2 listeners fill <clients>4</clients>: every request,
    // status pages included, gets 403 "Icecast connection limit reached".
    let mut lab = Lab::start(vec![
        RelaySpec::new("small")
            .clients(4)
            .mount("/live.ogg", None)
            .mount("/live.mp3", None),
        RelaySpec::new("other")
            .mount("/live.ogg", Some(10))
            .mount("/live.mp3", Some(10)),
    ]);
    let (small, other) = (lab.relay(0).base_url(), lab.relay(1).base_url());
    let floe = FloeProcess::start(&floe_config(&format!(
        r#"
[[relay]]
name = "small"
url = "{small}"
status = {{ kind = "xslt" }}
[[relay]]
name = "other"
url = "{other}"
status = {{ kind = "xslt" }}
"#
    )));
    floe.wait_healthy(T);
    floe.wait_status(T, "both relays up", |s| {
        relay_state(s, "small") == "up" && relay_state(s, "other") == "up"
    });

    let url = lab.relay(0).url("/live.ogg");
    let _a = StreamListener::connect(&url, T).expect("listener 1");
    let _b = StreamListener::connect(&url, T).expect("listener 2");
    let s = floe.wait_status(T, "small relay full", |s| relay_state(s, "small") == "full");
    assert!(
        s["relays"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("connection limit"),
        "{s:#}"
    );
    assert_eq!(cell(&s, "small", "/live.ogg")["excluded"], "server-full");
    // Redirects go to the other relay only (HEAD: the same choice, without
    // spending this address's client budget).
    for _ in 0..5 {
        let r = support::net::http_request("HEAD", &floe.url("/live.ogg"), &[], T).unwrap();
        assert_eq!(r.status, 302);
        assert!(
            r.header("location").unwrap().starts_with(&other),
            "{:?}",
            r.header("location")
        );
    }

    lab.relay_mut(1).stop();
    let s = floe.wait_status(T, "stopped relay down", |s| {
        relay_state(s, "other") == "down"
    });
    assert!(
        s["relays"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{s:#}"
    );
    // Nobody has room now: a 503 saying the stream is full, with Retry-After.
    let r = floe.get("/live.ogg");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("full"), "{}", r.text());
}
