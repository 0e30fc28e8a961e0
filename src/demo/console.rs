//! What a person sees and types while `floe demo` runs: the banner with the
//! lines to try, the live line, stdin commands, and SIGINT/SIGTERM.

use super::embedded::{BALANCED_NAME, MOUNT_NAMES, MOUNTS, RELAYS, ZONE};
use super::sim::SimRelay;
use super::{Demo, DemoOptions};
use crate::reload::Signals;
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
        let mut s = format!(
            "floe demo: floe in front of {} simulated Icecast 2.4.4 relays on loopback.\n\
             Each mount plays an endless WAV sine tone; each relay has its own pitch.\n\nRelays:\n",
            self.relays.len()
        );
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
        let _ = write!(
            s,
            "floe:\n  HTTP    {base}\n  DNS     {}  (zone {ZONE}, balanced name {BALANCED_NAME})\n  \
             config  {}\n\nTry:\n",
            self.dns,
            self.config_path().display()
        );
        let (mount, other) = (MOUNTS[0], MOUNTS[1]);
        let bare = |name: &str| name.trim_end_matches('.').to_string();
        let dig = format!("dig @{} -p {}", self.dns.ip(), self.dns.port());
        // One line to try per line: the command, a tab, what it shows.
        let mut tries = format!(
            "curl -sI {base}{mount}\t302 Found, Location: a relay with room\n\
             curl -s {base}/status.json\tfloe's view: relays, mounts, room, grants\n\
             curl -s {base}{mount}.m3u\tplaylists (.m3u .pls .xspf) point back at floe\n\
             mpv {base}{other}\tlisten; the pitch tells the relay\n\
             ffplay -nodisp {base}{mount}\tlisten with ffplay\n\
             ffmpeg -nostdin -i {base}{mount} -t 5 -f null -\tdecode 5 s\n\
             {dig} {} A +norec\trelays with room, short TTL\n",
            bare(BALANCED_NAME)
        );
        for (m, name) in MOUNT_NAMES {
            let _ = writeln!(tries, "{dig} {} A +norec\troom on {m}", bare(name));
        }
        let _ = writeln!(
            tries,
            "{dig} {} SOA +norec\tstatic records are served as written",
            bare(ZONE)
        );
        for (cmd, why) in tries.lines().filter_map(|l| l.split_once('\t')) {
            let _ = writeln!(s, "  {cmd:<62} # {why}");
        }
        let _ = write!(
            s,
            "\nFill the relays and watch floe spread the listeners (each stays 30 s):\n  \
             for i in $(seq 20); do curl -s -o /dev/null -L --max-time 30 {base}{mount} & done\n\
             \nType a command + Enter: {COMMANDS_HELP}\nCtrl-C stops the demo."
        );
        s
    }

    /// One line: per relay its state in floe and listeners/max per mount
    /// (the relay's own count), then the listeners relays refused.
    pub fn live_line(&self) -> String {
        let snap = self.instance.snapshots().load_full();
        let mut refused = 0;
        let mut parts = Vec::new();
        for r in &self.relays {
            let state = snap
                .topology
                .relay_id(r.name())
                .map_or("?", |i| snap.relays[i].state.as_str());
            // floe's view first; the sim's truth when they differ, so the
            // time floe takes to notice is visible.
            let sim = if r.is_down() { " (sim down)" } else { "" };
            let mounts = MOUNTS.iter().filter_map(|m| r.mount(m)).map(|m| {
                let short = m.path.rsplit_once('.').map_or(&*m.path, |(_, ext)| ext);
                if m.present {
                    format!("{short} {}/{}", m.listeners, fmt_max(m.max_listeners))
                } else {
                    format!("{short} off")
                }
            });
            let mounts = mounts.collect::<Vec<_>>().join(" ");
            parts.push(format!("{} {state}{sim} {mounts}", r.name()));
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
        let mount = |w: Option<&&str>| {
            let w = *w?;
            let path = w.strip_prefix('/').unwrap_or(w);
            MOUNTS
                .iter()
                .find(|m| m.strip_prefix('/') == Some(path) || m.ends_with(&format!(".{w}")))
                .map(|m| m.to_string())
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
    match run_until_signal(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// [`run`], with why it could not start.
fn run_until_signal(opts: &DemoOptions) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let demo = rt.block_on(async {
        // Handlers first: a signal during startup then stops the demo as
        // soon as it runs, instead of killing it half-started. SIGHUP is
        // left alone: the demo does not reload.
        let signals = Signals::new(false).map_err(|e| format!("signal handling: {e}"))?;
        let demo = Demo::start(opts).map_err(|e| e.to_string())?;
        println!("{}\n", demo.banner());
        console(&demo, signals).await;
        println!("floe demo: stopping");
        Ok::<_, String>(demo)
    })?;
    demo.stop();
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Prints the live line and applies stdin commands until SIGINT/SIGTERM.
async fn console(demo: &Demo, mut signals: Signals) {
    let mut lines = stdin_lines();
    let mut tick = tokio::time::interval(LIVE_EVERY);
    let mut last = (String::new(), Instant::now());
    loop {
        tokio::select! {
            _ = signals.next() => return,
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
