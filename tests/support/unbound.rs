//! A real recursive resolver: `unbound -d` on a loopback port with a
//! stub zone pointing at floe, in its own temp dir (config, log), killed
//! on drop. The test adds the `server:` lines its subject needs (e.g. the
//! `subnetcache` module and `send-client-subnet` for EDNS Client Subnet).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::dns::dig;
use super::net::free_port;
use super::procs::{self, Proc};

/// A running unbound. Killed on drop.
pub struct Unbound {
    proc: Proc,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Unbound {
    /// Starts unbound on 127.0.0.1 (a free port) answering everyone on
    /// 127.0.0.0/8, with `zone` (e.g. `stream.example.org`) a stub zone
    /// whose only server is `stub`, and `server_lines` (unbound.conf
    /// `server:` lines, one a line) added. Returns once it answers the
    /// zone's SOA through the stub (panics with its log if it does not
    /// within `timeout`).
    pub fn start(zone: &str, stub: SocketAddr, server_lines: &str, timeout: Duration) -> Unbound {
        let unbound = procs::require_tool("unbound");
        let dir = procs::temp_dir("floe-unbound-");
        let port = free_port();
        let conf = dir.path().join("unbound.conf");
        let log = dir.path().join("unbound.log");
        let extra: String = server_lines
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("  {l}\n"))
            .collect();
        std::fs::write(
            &conf,
            format!(
                "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  num-threads: 1\n\
                 \x20 access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n\
                 \x20 username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n\
                 \x20 use-syslog: no\n  logfile: \"{log}\"\n  verbosity: 1\n{extra}\
                 stub-zone:\n  name: \"{zone}\"\n  stub-addr: {ip}@{stub_port}\n",
                dir = dir.path().display(),
                log = log.display(),
                ip = stub.ip(),
                stub_port = stub.port(),
            ),
        )
        .expect("write unbound.conf");
        let mut cmd = Command::new(unbound);
        cmd.args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn("unbound", &mut cmd).expect("spawn unbound");
        let mut u = Unbound {
            proc,
            addr: ([127, 0, 0, 1], port).into(),
            dir,
        };
        let apex = format!("{}.", zone.trim_end_matches('.'));
        let ready = procs::poll(timeout, Duration::from_millis(50), || {
            if u.proc.try_wait().is_some() {
                return Some(false);
            }
            (dig(u.addr, &apex, "SOA", &["+rec"]).status == "NOERROR").then_some(true)
        });
        if ready != Some(true) {
            panic!(
                "unbound did not answer {apex} SOA within {timeout:?} (exited: {:?}); config:\n{}\nlog:\n{}",
                u.proc.try_wait(),
                std::fs::read_to_string(&conf).unwrap_or_default(),
                u.log()
            );
        }
        u
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last 4 KiB of its log.
    pub fn log(&self) -> String {
        procs::file_tail(&self.dir.path().join("unbound.log"), 4096)
    }
}

impl std::fmt::Debug for Unbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unbound({})", self.addr)
    }
}
