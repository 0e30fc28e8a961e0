//! What a person sees and types while `floe demo` runs: the banner with the
//! lines to try, the live line, stdin commands, and SIGINT/SIGTERM.

use super::embedded::{BALANCED_NAME, MOUNT_NAMES, MOUNTS, RELAYS, ZONE};
use super::sim::SimRelay;
use super::{Demo, DemoOptions};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often the live line is considered; it is printed when it changed.
const LIVE_EVERY: Duration = Duration::from_secs(2);
/// The live line is printed at least this often, changed or not.
const LIVE_AT_LEAST: Duration = Duration::from_secs(30);

impl Demo {
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
                .relay_id(r.name())
                .map(|i| &snap.relays[i])
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
}

/// The stdin commands, for the banner and `help`.
const COMMANDS_HELP: &str = "down N | up N | off N ogg|mp3 | on N ogg|mp3 | fill N ogg|mp3 COUNT | empty N  (N = relay number)";

fn fmt_max(max: Option<u32>) -> String {
    max.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
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
