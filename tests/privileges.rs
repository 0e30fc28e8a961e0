//! floe runs unprivileged, as the systemd unit runs it: a user that is not
//! root, with `CAP_NET_BIND_SERVICE` and no other capability, serves DNS on
//! port 53 and HTTP on port 80; without that capability it stops at once
//! with a clear error. (`tests/deb/run` checks the same of the installed
//! package and its `floe` user.)
//!
//! Needs root, to start floe as another user with chosen capabilities
//! (`setpriv`): as `tests/run` and CI run. It fails, never skips, without.

mod support;

use hickory_proto::rr::RecordType;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::dns::query;
use support::net::http_request;
use support::{TestConfig, require_tool, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

/// `setpriv` arguments for user `nobody` with only `caps` (e.g.
/// `+net_bind_service`, or empty for none) in every capability set.
fn as_nobody(caps: &str) -> Vec<String> {
    let set =
        |flag: &str| format!("--{flag}=-all{}", if caps.is_empty() { "" } else { "," }) + caps;
    let mut args = vec![
        "--reuid=nobody".to_string(),
        "--regid=nogroup".to_string(),
        "--clear-groups".to_string(),
        set("inh-caps"),
        set("bounding-set"),
    ];
    if !caps.is_empty() {
        args.push(set("ambient-caps"));
    }
    args
}

/// A `CapXxx:` line of `/proc/<pid>/status`.
fn caps(pid: u32, set: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{set}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn serves_ports_53_and_80_with_only_cap_net_bind_service() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test starts floe as another user with chosen capabilities: run it as root (tests/run, CI)"
    );
    let setpriv = require_tool("setpriv");
    let rt = runtime();
    let _g = rt.enter();
    let relay = sim_relay("relay-a", None, None);

    // A loopback address of its own: another server may hold 127.0.0.1:53.
    let pid_bits = std::process::id();
    let ip: IpAddr = format!("127.{}.{}.1", 100 + pid_bits % 100, (pid_bits / 100) % 250)
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::copy(
        support::floe::example_zone(),
        dir.path().join("zones/stream.example.org.zone"),
    )
    .unwrap();
    // The binary where `nobody` may run it (the build's own directory may
    // be under a home it cannot enter).
    let floe = dir.path().join("floe");
    std::fs::copy(env!("CARGO_BIN_EXE_floe"), &floe).unwrap();
    let config = TestConfig::new()
        .set("dns", "listen", &format!("[\"{ip}:53\"]"))
        .set("http", "listen", &format!("[\"{ip}:80\"]"))
        .relays(&[&relay])
        .render();
    let config_path = dir.path().join("floe.toml");
    std::fs::write(&config_path, config).unwrap();
    for p in [dir.path().join("zones"), floe.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for p in [
        config_path.clone(),
        dir.path().join("zones/stream.example.org.zone"),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let serve = |caps: &str| {
        let mut c = Command::new(&setpriv);
        c.args(as_nobody(caps))
            .arg(&floe)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };

    // Without the capability: refused at once, saying what and why.
    let out = serve("").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "served port 80/53 without the capability:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("bind {ip}:")) && stderr.contains("Permission denied"),
        "no clear error without the capability:\n{stderr}"
    );

    // With only CAP_NET_BIND_SERVICE: serves both ports.
    let mut child = serve("+net_bind_service").spawn().unwrap();
    let pid = child.id();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let ready = loop {
        match rx.recv_timeout(T) {
            Ok(line) => {
                log.push(line);
                let seen = |what: &str| log.iter().any(|l| l.contains(what));
                if seen("DNS listening on") && seen("HTTP listening on") {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let stop = |mut child: std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if !ready {
        stop(child);
        panic!(
            "floe did not start as nobody with CAP_NET_BIND_SERVICE:\n{}",
            log.join("\n")
        );
    }
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").map(str::to_string))
        .unwrap_or_default();
    let effective: Vec<&str> = uid.split_whitespace().collect();
    let sets: Vec<(&str, String)> = ["CapEff", "CapPrm", "CapBnd"]
        .iter()
        .map(|s| (*s, caps(pid, s)))
        .collect();
    let health = http_request("GET", &format!("http://{ip}:80/healthz"), &[], T);
    let www = query(
        SocketAddr::new(ip, 53),
        "www.stream.example.org.",
        RecordType::A,
        T,
    );
    stop(child);
    assert_eq!(effective.get(1), Some(&"65534"), "effective uid: {uid}");
    for (set, value) in &sets {
        // Bit 10: CAP_NET_BIND_SERVICE, and nothing else.
        assert_eq!(value, "0000000000000400", "{set}");
    }
    assert!(health.is_ok_and(|r| r.status == 200 || r.status == 503));
    let www = www.expect("a DNS answer on port 53");
    assert_eq!(www.answers.len(), 1, "{www:?}");
}
