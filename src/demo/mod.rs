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

mod console;
pub mod embedded;
pub mod sim;

pub use console::run;

use crate::config;
use crate::diagnostic::Diagnostics;
use crate::serve::{Instance, StartError};
use embedded::{RELAYS, ZONE};
use sim::SimRelay;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where `floe demo` listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// DNS (UDP and TCP); kept in the config's `[dns] listen`.
    pub dns: SocketAddr,
    /// HTTP; port 0 picks a free port, printed in every line.
    pub http: SocketAddr,
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

    /// Stops floe and the relays; the temporary directory goes on drop.
    pub fn stop(self) {
        self.instance.stop();
        for r in &self.relays {
            r.stop();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ephemeral() -> DemoOptions {
        let any = "127.0.0.1:0".parse().expect("address");
        DemoOptions {
            dns: any,
            http: any,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_config_loads_without_warnings() {
        let demo = Demo::start(&ephemeral()).expect("demo starts");
        let loaded = config::load(&demo.config_path()).expect("the written config loads");
        assert!(loaded.warnings.0.is_empty(), "{:?}", loaded.warnings.0);
        assert_eq!(loaded.config.relays.len(), RELAYS.len());
        assert_eq!(loaded.zones.zones().len(), 1);
        let dir = demo.dir.path().to_path_buf();
        demo.stop();
        assert!(!dir.exists(), "the temporary directory is removed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn banner_shows_bound_ports_and_commands_drive_the_relays() {
        let demo = Demo::start(&ephemeral()).expect("demo starts");
        let banner = demo.banner();
        assert_ne!(demo.http.port(), 0);
        assert_ne!(demo.dns.port(), 0);
        assert!(
            banner.contains(&format!("curl -sI http://{}/live.ogg", demo.http)),
            "{banner}"
        );
        assert!(banner.contains(&format!(
            "dig @127.0.0.1 -p {} live.stream.example.org A +norec",
            demo.dns.port()
        )));
        assert!(!banner.contains(":0/"), "{banner}");

        assert!(
            demo.command("fill 1 ogg 5")
                .contains("5 more listeners on /live.ogg")
        );
        assert_eq!(demo.relays[0].listeners("/live.ogg"), 5);
        assert!(demo.live_line().contains("ogg 5/5"));
        demo.command("off 3 mp3");
        assert!(!demo.relays[2].mount("/live.mp3").expect("mount").present);
        assert!(demo.live_line().contains("mp3 off"));
        demo.command("down 2");
        assert!(demo.relays[1].is_down());
        assert!(demo.live_line().contains("(sim down)"));
        assert!(demo.command("up 2").contains("up again"));
        assert!(!demo.relays[1].is_down());
        demo.command("empty 1");
        assert_eq!(demo.relays[0].listeners("/live.ogg"), 0);
        assert!(demo.command("frobnicate 9").starts_with("commands:"));
        assert!(demo.command("off 1 flac").starts_with("which mount?"));
        demo.stop();
    }
}
