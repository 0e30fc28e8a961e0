//! floe behind a real HAProxy (Debian's `haproxy`): one frontend passes
//! connections to floe's PROXY protocol listener with `send-proxy-v2`,
//! another to its plain listener with `option forwardfor`. Listeners from
//! the venue's network (127.77.0.0/16) get the venue's relay through
//! either, everyone else (127.0.0.1, 127.78.0.0/16) the world's, and
//! `/explain?client=` says the same of each address. A client that writes
//! its own `X-Forwarded-For` gains nothing: HAProxy appends the real one.

mod support;

use floe::demo::sim::SimRelay;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::floe::FloeProcess;
use support::net::{free_port, from_address, http_request};
use support::procs::{Proc, poll, require_tool};
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

/// A running HAProxy, killed on drop.
struct Haproxy {
    proc: Proc,
    _dir: tempfile::TempDir,
    /// The frontend that sends PROXY v2 to floe's PROXY listener.
    via_proxy: SocketAddr,
    /// The frontend that adds X-Forwarded-For toward floe's plain listener.
    via_xff: SocketAddr,
}

impl Haproxy {
    /// HAProxy in the foreground (`-db`), its config in a temp dir, in
    /// front of floe's `proxy_listener` and `plain_listener`; returns once
    /// both frontends accept connections.
    fn start(proxy_listener: SocketAddr, plain_listener: SocketAddr) -> Haproxy {
        let haproxy = require_tool("haproxy");
        let dir = tempfile::Builder::new()
            .prefix("floe-haproxy")
            .tempdir()
            .unwrap();
        let via_proxy: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let via_xff: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = format!(
            "global\n\
             \x20   maxconn 200\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 10s\n\
             \x20   timeout server 10s\n\
             frontend via_proxy\n\
             \x20   bind {via_proxy}\n\
             \x20   default_backend floe_proxy\n\
             frontend via_xff\n\
             \x20   bind {via_xff}\n\
             \x20   option forwardfor\n\
             \x20   default_backend floe_plain\n\
             backend floe_proxy\n\
             \x20   server floe {proxy_listener} send-proxy-v2\n\
             backend floe_plain\n\
             \x20   server floe {plain_listener}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        check_config(&haproxy, &path);
        let mut cmd = Command::new(&haproxy);
        cmd.arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut proc = Proc::spawn("haproxy", &mut cmd).expect("spawn haproxy");
        for addr in [via_proxy, via_xff] {
            poll(T, Duration::from_millis(20), || {
                if let Some(status) = proc.try_wait() {
                    panic!("haproxy exited ({status}) before accepting on {addr}");
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(drop)
            })
            .unwrap_or_else(|| panic!("haproxy does not accept on {addr}"));
        }
        Haproxy {
            proc,
            _dir: dir,
            via_proxy,
            via_xff,
        }
    }
}

/// `haproxy -c`: a config HAProxy refuses fails here with its message.
fn check_config(haproxy: &Path, path: &Path) {
    let out = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c refuses the config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

/// The relay a `GET /live.ogg` to `front` from `ip` (with `headers`) is sent to.
fn relay_via(front: SocketAddr, ip: &str, headers: &[(&str, &str)]) -> String {
    let url = format!("http://{front}/live.ogg");
    let ip: IpAddr = ip.parse().unwrap();
    let r = from_address(ip, || http_request("GET", &url, headers, T).unwrap());
    assert_eq!(r.status, 302, "GET via {front} from {ip}: {}", r.text());
    r.header("x-floe-relay").unwrap().to_string()
}

/// The group `/explain/live.ogg?client=ip` answers from, and its candidates.
fn explained(floe: &FloeProcess, ip: &str) -> (String, Vec<String>) {
    let e = floe.get(&format!("/explain/live.ogg?client={ip}&format=json"));
    let json: serde_json::Value = serde_json::from_str(&e.text()).unwrap();
    let candidates = json["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["relay"].as_str().unwrap().to_string())
        .collect();
    (json["group"].as_str().unwrap_or("").to_string(), candidates)
}

#[test]
fn haproxy_in_front_keeps_the_real_client_address() {
    let rt = runtime();
    let guard = rt.enter();
    let relays: [SimRelay; 2] = [
        sim_relay("venue-1", Some(100), None),
        sim_relay("world-1", Some(100), None),
    ];
    let config = TestConfig::new()
        .set("select", "grants_per_client", "1000")
        .set("http", "proxy_protocol_listen", "[\"127.0.0.1:0\"]")
        .set("http", "trusted_proxies", "[\"127.0.0.1/32\"]")
        .relays(&[&relays[0], &relays[1]])
        .table(
            "[[group]]\nname = \"venue\"\nrelays = [\"venue-1\"]\n\
             [[group]]\nname = \"world\"\nrelays = [\"world-1\"]\n\
             [[pool]]\nname = \"default\"\norder = [\"world\"]\n\
             [[pool]]\nname = \"venue\"\nnetworks = [\"127.77.0.0/16\"]\norder = [\"venue\", \"world\"]\n",
        )
        .render();
    let floe = FloeProcess::start(&config);
    drop(guard);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    let haproxy = Haproxy::start(floe.proxy_http(), floe.http);

    for (client, expected) in [
        ("127.77.0.5", "venue-1"),
        ("127.77.200.9", "venue-1"),
        ("127.0.0.1", "world-1"),
        ("127.78.0.1", "world-1"),
    ] {
        let group = expected.trim_end_matches("-1");
        assert_eq!(
            explained(&floe, client),
            (group.to_string(), vec![expected.to_string()]),
            "/explain?client={client}"
        );
        for front in [haproxy.via_proxy, haproxy.via_xff] {
            for _ in 0..3 {
                assert_eq!(
                    relay_via(front, client, &[]),
                    expected,
                    "{client} via {front}"
                );
            }
        }
    }
    // Without HAProxy's word, floe sees only HAProxy: a client that names
    // the venue in its own X-Forwarded-For is still from where it is.
    let spoof = [("X-Forwarded-For", "127.77.0.5")];
    assert_eq!(relay_via(haproxy.via_xff, "127.78.0.1", &spoof), "world-1");
    // ... and going around HAProxy, to floe directly, it is not believed.
    assert_eq!(relay_via(floe.http, "127.78.0.1", &spoof), "world-1");
    // HAProxy's connections to the PROXY listener were all accepted.
    let metrics = floe.get("/metrics").text();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("floe_http_proxy_refused_total"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
    drop(haproxy);
    drop(relays);
}
