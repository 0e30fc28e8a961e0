//! Reload: the one way a new config and new zones are swapped in, whether
//! SIGHUP, an edited file or a test asks for it.
//!
//! [`Reloader`] loads the config file and the zones it names on the
//! caller's thread (DNS and HTTP keep answering from the current snapshot
//! meanwhile), swaps the result in only when everything loads cleanly, and
//! runs one reload at a time, so a slow reload is never overtaken by an
//! older one. A config that fails to load is recorded in the snapshot's
//! reload report and logged with file:line; the last good config keeps
//! serving.
//!
//! [`watch`] reloads when the config file or a zone file changes. Editors
//! save by writing a new file and renaming it over the old one, so the
//! parent directories are watched, not the files, and a change reloads
//! once it has settled for [`DEBOUNCE`]. [`Signals`] is how SIGHUP (and
//! the signals that stop floe) arrive.

use crate::config::{self, Config};
use crate::diagnostic::Diagnostics;
use crate::dns::DnsState;
use crate::poll::Engine;
use crate::shutdown::Shutdown;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Quiet time after the last change before a reload: a save that takes
/// several writes (or several files) reloads once.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A file that keeps changing still reloads this long after the first
/// change.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// How often the watch thread looks at the shutdown flag when idle.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// Loads the config again and swaps it in; cheap to clone, shared by the
/// signal handler, the file watcher and [`crate::serve::Instance`].
#[derive(Clone)]
pub struct Reloader {
    config_path: PathBuf,
    dns: Arc<DnsState>,
    engine: Engine,
    /// One reload at a time.
    running: Arc<Mutex<()>>,
}

impl Reloader {
    /// A reloader of the config at `config_path` into `engine` and `dns`.
    pub fn new(config_path: PathBuf, dns: Arc<DnsState>, engine: Engine) -> Reloader {
        Reloader {
            config_path,
            dns,
            engine,
            running: Arc::default(),
        }
    }

    /// The config file it reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config serving now.
    fn current(&self) -> Arc<Config> {
        self.engine.snapshots().load().topology.config.clone()
    }

    /// Loads the config file and its zones and swaps them in. On any error
    /// the running config stays, the failure is recorded (status page,
    /// metrics, log) and the diagnostics are returned. Warnings of a
    /// successful load are logged and returned. Must run inside the
    /// engine's tokio runtime (new relays start pollers there).
    pub fn reload(&self) -> Result<Diagnostics, Diagnostics> {
        self.reload_unless(|| false)
            .unwrap_or_else(|| Err(Diagnostics::default()))
    }

    /// [`Reloader::reload`], except that a load that fails while
    /// `superseded()` holds is dropped without a trace (`None`): the caller
    /// will try again.
    fn reload_unless(
        &self,
        superseded: impl FnOnce() -> bool,
    ) -> Option<Result<Diagnostics, Diagnostics>> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        notify_systemd(&[sd_notify::NotifyState::Reloading]);
        let result = match config::load(&self.config_path) {
            Ok(loaded) => {
                for w in &loaded.warnings.0 {
                    tracing::warn!("{w}");
                }
                let old = self.current();
                let ignored = restart_only_changes(&old, &loaded.config);
                if !ignored.is_empty() {
                    tracing::warn!(
                        "reload: {} changed; these take effect only on restart",
                        ignored.join(", ")
                    );
                }
                self.dns.set_zones(loaded.zones);
                self.engine.reload(loaded.config);
                Ok(loaded.warnings)
            }
            Err(_) if superseded() => {
                tracing::debug!("the config did not load; trying again once the files settle");
                notify_systemd(&[sd_notify::NotifyState::Ready]);
                return None;
            }
            Err(diags) => {
                self.engine.reload_failed(diags.to_string().trim_end());
                Err(diags)
            }
        };
        let status = match &result {
            Ok(_) => "serving",
            Err(_) => "last reload failed; the last good config keeps serving",
        };
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
        Some(result)
    }
}

/// Tells systemd (with `Type=notify`) about a state change; nothing when
/// floe does not run under systemd.
pub fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Settings a running floe cannot change: the sockets are bound at start,
/// and the ACME tasks start with `[acme]`.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let admin_on = |c: &Config| c.admin.token.is_some();
    [
        (old.dns.listen != new.dns.listen, "[dns] listen"),
        (
            old.dns.udp_workers != new.dns.udp_workers,
            "[dns] udp_workers",
        ),
        (old.http.listen != new.http.listen, "[http] listen"),
        (
            old.http.proxy_protocol_listen != new.http.proxy_protocol_listen,
            "[http] proxy_protocol_listen",
        ),
        (
            old.http.tls_listen != new.http.tls_listen,
            "[http] tls_listen",
        ),
        (old.http.workers != new.http.workers, "[http] workers"),
        (old.acme != new.acme, "[acme]"),
        (
            old.admin.listen != new.admin.listen || admin_on(old) != admin_on(new),
            "[admin] listen or enabling/disabling the endpoint",
        ),
    ]
    .into_iter()
    .filter_map(|(changed, what)| changed.then_some(what))
    .collect()
}

/// SIGTERM and SIGINT (stop) and, when asked for, SIGHUP (reload), for
/// `floe serve` and `floe demo`. Installed before starting, so that a
/// signal arriving meanwhile is handled instead of killing a half-started
/// process.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime); without `hup`,
    /// SIGHUP keeps its default action.
    pub fn new(hup: bool) -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: hup.then(|| signal(SignalKind::hangup())).transpose()?,
        })
    }

    /// Waits for the next signal: `true` for SIGHUP, `false` for SIGTERM
    /// or SIGINT.
    pub async fn next(&mut self) -> bool {
        let hup = &mut self.hup;
        let hup = async move {
            match hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => false,
            _ = self.int.recv() => false,
            _ = hup => true,
        }
    }
}

/// What to watch for one config: the directories, and which paths in them
/// matter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Targets {
    /// Directories watched (non-recursively).
    dirs: BTreeSet<PathBuf>,
    /// The config file and the TLS certificate and key files, as named and,
    /// if they are symlinks, their targets.
    config_files: BTreeSet<PathBuf>,
    /// The zones directory.
    zones_dir: PathBuf,
}

/// `path` as named (its directory resolved) and, if it is a symlink, its
/// target: a certbot-style `live/` link renewed by pointing it elsewhere
/// changes either.
fn named_and_target(path: &Path, into: &mut BTreeSet<PathBuf>) {
    if let Some(name) = path.file_name() {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        into.insert(canonical(parent).join(name));
    }
    if let Ok(target) = path.canonicalize() {
        into.insert(target);
    }
}

impl Targets {
    /// The config file at `config_path` and the zones and TLS certificate
    /// and key files `config` names.
    fn of_config(config_path: &Path, config: &Config) -> Targets {
        let certs = config.http.tls_certificates.certificates();
        let files = certs
            .iter()
            .flat_map(|c| [c.cert_path.as_path(), c.key_path.as_path()]);
        Targets::of(config_path, &config.dns.zones, files)
    }

    /// The config file at `config_path`, the zones in `zones_dir`, and
    /// `files` (certificates and keys).
    fn of<'a>(
        config_path: &Path,
        zones_dir: &Path,
        files: impl IntoIterator<Item = &'a Path>,
    ) -> Targets {
        let mut config_files = BTreeSet::new();
        named_and_target(config_path, &mut config_files);
        for f in files {
            named_and_target(f, &mut config_files);
        }
        let zones_dir = canonical(zones_dir);
        let mut dirs: BTreeSet<PathBuf> = config_files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        dirs.insert(zones_dir.clone());
        Targets {
            dirs,
            config_files,
            zones_dir,
        }
    }

    /// Whether `event` may change what a reload would load.
    fn wants(&self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        match event.kind {
            // Reading a file (floe's own reloads do) changes nothing.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return false,
            _ => {}
        }
        event.paths.iter().any(|p| self.matters(p))
    }

    fn matters(&self, path: &Path) -> bool {
        if self.config_files.contains(path) || path == self.zones_dir {
            return true;
        }
        let in_zones = path.parent() == Some(self.zones_dir.as_path());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        in_zones && name.ends_with(".zone") && !name.starts_with('.')
    }
}

/// `path` with symlinks resolved, or as absolute as it gets when it does
/// not exist (yet).
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// When a burst of changes is due for a reload: [`DEBOUNCE`] after the
/// last change, at most [`MAX_DELAY`] after the first.
#[derive(Debug, Clone, Copy, Default)]
struct Debounce {
    /// (first, last) change not yet reloaded.
    pending: Option<(Instant, Instant)>,
}

impl Debounce {
    fn change(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
    }

    fn deadline(&self) -> Option<Instant> {
        self.pending
            .map(|(first, last)| (last + DEBOUNCE).min(first + MAX_DELAY))
    }

    /// True (and reset) when a reload is due at `now`.
    fn take_due(&mut self, now: Instant) -> bool {
        let due = self.deadline().is_some_and(|d| now >= d);
        if due {
            self.pending = None;
        }
        due
    }

    /// How long to wait for the next event.
    fn wait(&self, now: Instant) -> Duration {
        self.deadline().map_or(IDLE_TICK, |d| {
            d.saturating_duration_since(now).min(IDLE_TICK)
        })
    }
}

/// Watches the config file and the zones directory of the running config
/// and reloads through `reloader` after each settled change, on a thread of
/// its own until `shutdown`. Must be called inside the engine's tokio
/// runtime. Fails when the platform's file watcher cannot start.
pub fn watch(reloader: Reloader, shutdown: Shutdown) -> notify::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| notify::Error::generic(&format!("file watch needs a tokio runtime: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    let mut targets = Targets::of_config(reloader.config_path(), &reloader.current());
    let mut watched = BTreeSet::new();
    rewatch(&mut watcher, &mut watched, &targets);
    tracing::info!(
        "reloading on changes to {} and {}/*.zone",
        reloader.config_path().display(),
        targets.zones_dir.display()
    );
    let thread = std::thread::Builder::new()
        .name("floe-reload".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            let mut debounce = Debounce::default();
            let mut changed: Option<PathBuf> = None;
            let mut give_up: Option<Instant> = None;
            while !shutdown.is_triggered() {
                match rx.recv_timeout(debounce.wait(Instant::now())) {
                    Ok(Ok(event)) if targets.wants(&event) => {
                        debounce.change(Instant::now());
                        changed = changed.or_else(|| event.paths.first().cloned());
                    }
                    Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
                    Ok(Err(e)) => tracing::warn!("watching the config files: {e}"),
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if debounce.take_due(Instant::now()) {
                    let what = changed
                        .take()
                        .map_or_else(|| "config files".into(), |p| p.display().to_string());
                    if give_up.is_none() {
                        tracing::info!("{what} changed: reloading");
                    }
                    // A load that fails may have read a file half-written
                    // (a save caught between truncate and write): it is
                    // tried again every DEBOUNCE and counts as failed only
                    // when it still fails MAX_DELAY after the first try.
                    let now = Instant::now();
                    let last_try = now >= *give_up.get_or_insert(now + MAX_DELAY);
                    if reloader.reload_unless(|| !last_try).is_none() {
                        changed = changed.or(Some(reloader.config_path().to_path_buf()));
                        debounce.change(now);
                        continue;
                    }
                    give_up = None;
                    // The zones directory may have moved with the config.
                    let next = Targets::of_config(reloader.config_path(), &reloader.current());
                    if next != targets {
                        rewatch(&mut watcher, &mut watched, &next);
                        targets = next;
                    }
                }
            }
        })?;
    Ok(thread)
}

/// Watches exactly `targets.dirs`, logging directories that cannot be
/// watched (a missing zones directory, say) instead of failing.
fn rewatch(watcher: &mut impl Watcher, watched: &mut BTreeSet<PathBuf>, targets: &Targets) {
    for gone in watched
        .difference(&targets.dirs)
        .cloned()
        .collect::<Vec<_>>()
    {
        let _ = watcher.unwatch(&gone);
        watched.remove(&gone);
    }
    for dir in &targets.dirs {
        if watched.contains(dir) {
            continue;
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir.clone());
            }
            Err(e) => tracing::warn!(
                "cannot watch {} for changes: {e}; SIGHUP still reloads",
                dir.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, path: &Path) -> Event {
        Event::new(kind).add_path(path.to_path_buf())
    }

    #[test]
    fn only_writes_to_the_config_and_zone_files_matter() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("zones")).unwrap();
        std::fs::write(root.join("floe.toml"), "").unwrap();
        let t = Targets::of(&root.join("floe.toml"), &root.join("zones"), []);
        assert_eq!(t.dirs, BTreeSet::from([root.clone(), root.join("zones")]));
        let modify = EventKind::Modify(ModifyKind::Any);
        let create = EventKind::Create(CreateKind::File);
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        for (kind, path, wanted) in [
            (modify, "floe.toml", true),
            (create, "zones/b.zone", true),
            (rename, "floe.toml", true),
            (write, "floe.toml", true),
            // floe reading its own files, editor swap files, other files.
            (open, "floe.toml", false),
            (modify, ".floe.toml.swp", false),
            (modify, "zones/.b.zone.swp", false),
            (modify, "zones/notes.txt", false),
            (modify, "other.toml", false),
        ] {
            let e = event(kind, &root.join(path));
            assert_eq!(t.wants(&e), wanted, "{kind:?} {path}");
        }
    }

    #[test]
    fn a_relative_or_symlinked_config_is_matched_where_it_really_is() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("real/floe.toml"), "").unwrap();
        std::os::unix::fs::symlink(root.join("real/floe.toml"), root.join("etc/floe.toml"))
            .unwrap();
        let t = Targets::of(&root.join("etc/floe.toml"), &root.join("zones"), []);
        assert!(t.dirs.contains(&root.join("etc")) && t.dirs.contains(&root.join("real")));
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(t.wants(&event(modify, &root.join("real/floe.toml"))));
        assert!(t.wants(&event(modify, &root.join("etc/floe.toml"))));
    }

    #[test]
    fn certificate_and_key_files_matter_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("tls/live")).unwrap();
        std::fs::create_dir_all(root.join("tls/archive")).unwrap();
        std::fs::write(root.join("tls/archive/cert1.pem"), "").unwrap();
        std::os::unix::fs::symlink(
            root.join("tls/archive/cert1.pem"),
            root.join("tls/live/cert.pem"),
        )
        .unwrap();
        let (cert, key) = (root.join("tls/live/cert.pem"), root.join("tls/key.pem"));
        let t = Targets::of(
            &root.join("floe.toml"),
            &root.join("zones"),
            [cert.as_path(), key.as_path()],
        );
        let modify = EventKind::Modify(ModifyKind::Any);
        for path in ["tls/live/cert.pem", "tls/archive/cert1.pem", "tls/key.pem"] {
            assert!(t.wants(&event(modify, &root.join(path))), "{path}");
        }
        assert!(!t.wants(&event(modify, &root.join("tls/other.pem"))));
    }

    #[test]
    fn changes_reload_after_a_quiet_spell_or_at_most_max_delay_after_the_first() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert!(!d.take_due(t0 + MAX_DELAY * 10));
        assert_eq!(d.wait(t0), IDLE_TICK);
        d.change(t0);
        d.change(t0 + Duration::from_millis(100));
        assert!(!d.take_due(t0 + Duration::from_millis(250)));
        assert!(d.take_due(t0 + Duration::from_millis(300)));
        assert!(
            !d.take_due(t0 + Duration::from_millis(301)),
            "reset after firing"
        );
        // A file written every 100 ms still reloads after MAX_DELAY.
        let mut d = Debounce::default();
        let mut now = t0;
        while now < t0 + MAX_DELAY {
            d.change(now);
            assert!(!d.take_due(now));
            now += Duration::from_millis(100);
        }
        assert!(d.take_due(now));
    }
}
