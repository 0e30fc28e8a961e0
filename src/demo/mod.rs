//! `floe demo`: floe in front of simulated Icecast relays, in one process,
//! with nothing to install or configure.
//!
//! [`run`] starts three [`sim::SimRelay`]s on loopback (ports from the OS),
//! writes the embedded config and zone ([`embedded`]) to a private temporary
//! directory, starts floe from them with [`crate::serve::Instance::start`]
//! (the same path as `floe serve`), prints the `curl`, player and `dig` lines
//! to try with the addresses actually bound, then prints a live line while
//! relays fill up, until SIGINT or SIGTERM. Lines typed on stdin change the
//! relays (take one down, cut a source, add listeners) so failover can be
//! watched too.
//!
//! [`sim`] is also what integration tests use as Icecast relays.

pub mod embedded;
pub mod sim;

use crate::config;
use crate::diagnostic::Diagnostics;
use crate::serve::{Instance, StartError};
use embedded::{BALANCED_NAME, MOUNT_NAMES, MOUNTS, RELAYS, ZONE};
use sim::SimRelay;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default DNS listen address of `floe demo`.
pub const DEFAULT_DNS: &str = "127.0.0.1:8053";
/// Default HTTP listen address of `floe demo`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// How often the live line is considered; it is printed when it changed.
const LIVE_EVERY: Duration = Duration::from_secs(2);
/// The live line is printed at least this often, changed or not.
const LIVE_AT_LEAST: Duration = Duration::from_secs(30);

/// Where `floe demo` listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// DNS (UDP and TCP); kept in the config's `[dns] listen`.
    pub dns: SocketAddr,
    /// HTTP; port 0 picks a free port, printed in every line.
    pub http: SocketAddr,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dns: DEFAULT_DNS.parse().expect("default DNS address parses"),
            http: DEFAULT_HTTP.parse().expect("default HTTP address parses"),
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A simulated relay, the temporary directory or a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The embedded config did not load (a bug, or an unusable address).
    #[error("embedded config:\n{0}")]
    Config(Diagnostics),
    /// floe did not start (e.g. the HTTP address is in use).
    #[error("{0}")]
    Start(#[from] StartError),
}

/// A running demo: the simulated relays and floe in front of them.
pub struct Demo {
    /// The simulated relays, in [`embedded::RELAYS`] order.
    pub relays: Vec<SimRelay>,
    /// floe.
    pub instance: Instance,
    /// floe's HTTP address (bound; port 0 resolved).
    pub http: SocketAddr,
    /// floe's DNS address (bound; port 0 resolved).
    pub dns: SocketAddr,
    /// The temporary directory with the config and zone; removed on drop.
    pub dir: TempDir,
    started: Instant,
}

impl Demo {
    /// Starts the relays and floe. Must run inside a tokio runtime.
    pub fn start(opts: &DemoOptions) -> Result<Demo, DemoError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let relays = RELAYS
            .iter()
            .map(|spec| spec.builder().start())
            .collect::<Result<Vec<_>, _>>()?;
        let dir = TempDir::new("floe-demo")?;
        std::fs::create_dir(dir.path().join("zones"))?;
        std::fs::write(
            dir.path().join("zones").join(format!("{}zone", ZONE)),
            embedded::ZONE_FILE,
        )?;
        let text = embedded::config_toml(&relays, opts.dns, opts.http);
        let config_path = dir.path().join("floe.toml");
        std::fs::write(&config_path, &text)?;
        let loaded = config::load_str(&config_path, &text).map_err(DemoError::Config)?;
        for w in &loaded.warnings.0 {
            eprintln!("{w}");
        }
        let instance = Instance::start(loaded)?;
        let http = instance.http_addrs.first().copied().unwrap_or(opts.http);
        let dns = instance.dns_addrs.first().copied().unwrap_or(opts.dns);
        Ok(Demo {
            relays,
            instance,
            http,
            dns,
            dir,
            started: Instant::now(),
        })
    }

    /// The config file the demo wrote and loaded.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("floe.toml")
    }

    /// What to try, with the addresses actually bound.
    pub fn banner(&self) -> String {
        let base = format!("http://{}", self.http);
        let (dns_ip, dns_port) = (self.dns.ip(), self.dns.port());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "floe demo: floe in front of {} simulated Icecast 2.4.4 relays on loopback.",
            self.relays.len()
        );
        let _ = writeln!(
            s,
            "Each mount plays an endless WAV sine tone; each relay has its own pitch.\n"
        );
        let _ = writeln!(s, "Relays:");
        for (spec, r) in RELAYS.iter().zip(&self.relays) {
            let mounts = MOUNTS
                .iter()
                .filter_map(|m| r.mount(m))
                .map(|m| format!("{} max {}", m.path, fmt_max(m.max_listeners)))
                .collect::<Vec<_>>();
            let _ = writeln!(
                s,
                "  {:<8} {:<24} {:<36} {} Hz, DNS {}",
                spec.name,
                r.url(),
                mounts.join(", "),
                spec.tone_hz,
                spec.dns_address
            );
        }
        let _ = writeln!(s, "floe:");
        let _ = writeln!(s, "  HTTP    {base}");
        let _ = writeln!(
            s,
            "  DNS     {}  (zone {ZONE}, balanced name {BALANCED_NAME})",
            self.dns
        );
        let _ = writeln!(s, "  config  {}", self.config_path().display());
        let _ = writeln!(s, "\nTry:");
        let mount = MOUNTS[0];
        let other = MOUNTS[1];
        let lines = [
            (
                format!("curl -sI {base}{mount}"),
                "302 Found, Location: a relay with room",
            ),
            (
                format!("curl -s {base}/status.json"),
                "floe's view: relays, mounts, room, grants",
            ),
            (
                format!("curl -s {base}{mount}.m3u"),
                "playlists (.m3u .pls .xspf) point back at floe",
            ),
            (
                format!("mpv {base}{other}"),
                "listen; the pitch tells the relay",
            ),
            (
                format!("ffplay -nodisp {base}{mount}"),
                "listen with ffplay",
            ),
            (
                format!("ffmpeg -nostdin -i {base}{mount} -t 5 -f null -"),
                "decode 5 s",
            ),
        ];
        for (cmd, why) in lines {
            let _ = writeln!(s, "  {cmd:<62} # {why}");
        }
        let mut names = vec![(BALANCED_NAME, "A", "relays with room, short TTL")];
        names.extend(MOUNT_NAMES.iter().map(|(m, n)| {
            (
                *n,
                "A",
                if m.ends_with("ogg") {
                    "room on /live.ogg"
                } else {
                    "room on /live.mp3"
                },
            )
        }));
        names.push((ZONE, "SOA", "static records are served as written"));
        for (name, qtype, why) in names {
            let cmd = format!(
                "dig @{dns_ip} -p {dns_port} {} {qtype} +norec",
                name.trim_end_matches('.')
            );
            let _ = writeln!(s, "  {cmd:<62} # {why}");
        }
        let _ = writeln!(
            s,
            "\nFill the relays and watch floe spread the listeners (each stays 30 s):"
        );
        let _ = writeln!(
            s,
            "  for i in $(seq 20); do curl -s -o /dev/null -L --max-time 30 {base}{mount} & done"
        );
        let _ = writeln!(s, "\nType a command + Enter: {COMMANDS_HELP}");
        let _ = write!(s, "Ctrl-C stops the demo.");
        s
    }

    /// One line: per relay its state in floe and listeners/max per mount
    /// (the relay's own count), then the listeners relays refused.
    pub fn live_line(&self) -> String {
        let snap = self.instance.snapshots().load_full();
        let mut parts = Vec::new();
        let mut refused = 0;
        for r in &self.relays {
            let state = snap
                .topology
                .relays
                .iter()
                .position(|d| &*d.name == r.name())
                .and_then(|i| snap.relays.get(i))
                .map_or("?", |v| v.state.as_str());
            // floe's view first; the sim's truth when they differ, so the
            // time floe takes to notice is visible.
            let state = if r.is_down() {
                format!("{state} (sim down)")
            } else {
                state.to_string()
            };
            let mounts = MOUNTS
                .iter()
                .filter_map(|m| r.mount(m))
                .map(|m| {
                    let short = m
                        .path
                        .rsplit_once('.')
                        .map_or(m.path.as_str(), |(_, ext)| ext);
                    if m.present {
                        format!("{short} {}/{}", m.listeners, fmt_max(m.max_listeners))
                    } else {
                        format!("{short} off")
                    }
                })
                .collect::<Vec<_>>();
            parts.push(format!("{} {state} {}", r.name(), mounts.join(" ")));
            refused += r.counters().overfill();
        }
        format!(
            "[{:>4}s] {} | refused {refused}",
            self.started.elapsed().as_secs(),
            parts.join(" | ")
        )
    }

    /// Applies one command line typed by the user; returns what to print.
    pub fn command(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let relay = |w: Option<&&str>| -> Option<&SimRelay> {
            let w = w?;
            let i: usize = w.trim_start_matches("relay-").parse().ok()?;
            self.relays.get(i.checked_sub(1)?)
        };
        let mount = |w: Option<&&str>| -> Option<String> {
            let w = w?;
            let m = if w.starts_with('/') {
                w.to_string()
            } else {
                format!("/{w}")
            };
            let full = MOUNTS
                .iter()
                .find(|x| **x == m || x.ends_with(&format!(".{w}")))?;
            Some((*full).to_string())
        };
        let done = |r: &SimRelay, what: &str| format!("{}: {what}", r.name());
        match (words.first().copied(), relay(words.get(1))) {
            (None, _) => String::new(),
            (Some("down"), Some(r)) => {
                let _ = r.set_down(true);
                done(r, "down (connections refused, listeners dropped)")
            }
            (Some("up"), Some(r)) => match r.set_down(false) {
                Ok(()) => done(r, "up again"),
                Err(e) => done(r, &format!("cannot come back: {e}")),
            },
            (Some(cmd @ ("off" | "on")), Some(r)) => match mount(words.get(2)) {
                Some(m) => {
                    r.set_source(&m, cmd == "on");
                    done(r, &format!("source of {m} {cmd}"))
                }
                None => format!("which mount? {}", MOUNTS.join(" or ")),
            },
            (Some("fill"), Some(r)) => match (
                mount(words.get(2)),
                words.get(3).and_then(|n| n.parse().ok()),
            ) {
                (Some(m), Some(n)) => {
                    if r.add_fake_listeners(&m, n) {
                        done(r, &format!("{n} more listeners on {m}"))
                    } else {
                        done(r, &format!("{m} has no source"))
                    }
                }
                _ => "usage: fill N MOUNT COUNT".to_string(),
            },
            (Some("empty"), Some(r)) => {
                for m in MOUNTS {
                    r.set_fake_listeners(m, 0);
                }
                done(r, "simulated listeners removed")
            }
            _ => format!("commands: {COMMANDS_HELP}"),
        }
    }

    /// Stops floe and the relays; the temporary directory goes on drop.
    pub fn stop(self) {
        self.instance.stop();
        for r in &self.relays {
            r.stop();
        }
    }
}

/// The stdin commands, for the banner and `help`.
const COMMANDS_HELP: &str = "down N | up N | off N ogg|mp3 | on N ogg|mp3 | fill N ogg|mp3 COUNT | empty N  (N = relay number)";

fn fmt_max(max: Option<u32>) -> String {
    max.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// A directory under the system temp dir with a unique name, removed with
/// everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`.
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `floe demo`: runs until SIGINT or SIGTERM, then stops cleanly (exit 0).
/// Exit 1 when it cannot start (e.g. an address in use).
pub fn run(opts: DemoOptions) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floe demo: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let demo = rt.block_on(async {
        // Handlers first: a signal during startup then stops the demo as
        // soon as it runs, instead of killing it half-started.
        let signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("floe demo: signal handling: {e}");
                return None;
            }
        };
        let demo = match Demo::start(&opts) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("floe demo: {e}");
                return None;
            }
        };
        println!("{}\n", demo.banner());
        console(&demo, signals).await;
        println!("floe demo: stopping");
        Some(demo)
    });
    let Some(demo) = demo else {
        return ExitCode::FAILURE;
    };
    demo.stop();
    rt.shutdown_timeout(Duration::from_secs(2));
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT, registered once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Prints the live line and applies stdin commands until SIGINT/SIGTERM.
async fn console(demo: &Demo, mut signals: Signals) {
    let mut lines = stdin_lines();
    let mut tick = tokio::time::interval(LIVE_EVERY);
    let mut last = (String::new(), Instant::now());
    loop {
        tokio::select! {
            _ = signals.term.recv() => return,
            _ = signals.int.recv() => return,
            _ = tick.tick() => {
                let line = demo.live_line();
                // Compare without the elapsed-time prefix.
                let body = line.split_once(']').map_or(line.as_str(), |(_, b)| b).to_string();
                if body != last.0 || last.1.elapsed() >= LIVE_AT_LEAST {
                    println!("{line}");
                    last = (body, Instant::now());
                }
            }
            Some(cmd) = lines.recv() => {
                let out = demo.command(&cmd);
                if !out.is_empty() {
                    println!("{out}");
                }
            }
        }
    }
}

/// Lines from stdin, read on a plain thread (a blocked read must not hold up
/// the runtime's shutdown); the channel closes at end of input.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("floe-demo-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { return };
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("floe demo: no stdin commands: {e}");
    }
    rx
}
