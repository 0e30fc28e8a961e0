//! Child processes the harness starts, tools it needs, polling, temp dirs.
//!
//! Every process is wrapped in a [`Proc`], which kills it on drop. Signals
//! are only ever sent to a child that has not been reaped yet, so the pid
//! cannot have been reused by another process.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Directories searched after `$PATH` (daemons live in sbin, which is not in
/// a normal user's `$PATH`).
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The absolute path of `tool`, if it is installed.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool);
        if let Ok(meta) = fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Some(candidate);
        }
    }
    None
}

/// Whether `tool` is installed.
pub fn have_tool(tool: &str) -> bool {
    find_tool(tool).is_some()
}

/// The absolute path of `tool`; panics naming it when it is missing. The
/// end-to-end tests never skip silently.
pub fn require_tool(tool: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| {
        panic!(
            "required tool `{tool}` is not installed (not in $PATH nor /usr/sbin, /sbin): \
             run `tests/run --install-only` as root to install the end-to-end test dependencies"
        )
    })
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// uid and primary gid of a user from /etc/passwd.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// gid of a group from /etc/group.
pub fn lookup_group(name: &str) -> Option<u32> {
    let group = fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3 && f[0] == name {
            f[2].parse().ok()
        } else {
            None
        }
    })
}

/// A fresh temp dir under the system temp dir, mode 0755 so that daemons
/// that drop privileges (Icecast) can traverse it.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir ({prefix}): {e}"));
    set_mode(dir.path(), 0o755);
    dir
}

/// chmod, panicking with the path on failure.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The process state letter from /proc/PID/stat (`R`, `S`, `Z`, ...), or
/// `None` when there is no such process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces or ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Alive = exists and is neither a zombie nor dead.
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X' && s != 'x')
}

/// Poll `f` every `interval` until it returns `Some` or `timeout` passes.
/// `f` is always called at least once, and once more at the deadline.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// The last `max` bytes of a file as (lossy) text, for panic messages.
pub fn file_tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if start > 0 {
                format!("...{text}")
            } else {
                text
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// A child process the harness started. Killed (SIGKILL) and reaped on drop.
pub struct Proc {
    name: String,
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
    /// Leads its own process group: kill() kills the whole group.
    group: bool,
}

impl Proc {
    /// Spawn `cmd`; `name` labels it in messages.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> io::Result<Proc> {
        let name = name.into();
        let child = cmd.spawn()?;
        let pid = child.id();
        Ok(Proc {
            name,
            child,
            pid,
            status: None,
            group: false,
        })
    }

    /// Spawn `cmd` as the leader of a new process group; kill() then also
    /// kills whatever it forked (MPlayer's cache process, for one). Such a
    /// process does not get the terminal's Ctrl-C: use it for short-lived
    /// children only.
    pub fn spawn_group(name: impl Into<String>, cmd: &mut Command) -> io::Result<Proc> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut proc = Proc::spawn(name, cmd)?;
        proc.group = true;
        Ok(proc)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status once it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Running: not reaped, and not a zombie in /proc.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none() && pid_alive(self.pid)
    }

    /// Send a signal by name (`INT`, `TERM`, `KILL`, `HUP`, `STOP`, `CONT`).
    /// Returns false when the process has already exited.
    pub fn signal(&mut self, sig: &str) -> bool {
        if self.try_wait().is_some() {
            return false;
        }
        if sig == "KILL" {
            return self.child.kill().is_ok();
        }
        // std has no kill(2) for arbitrary signals; the child is not reaped
        // yet, so its pid is still ours.
        let kill = require_tool("kill");
        Command::new(kill)
            .args(["-s", sig, &self.pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Wait up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, Duration::from_millis(10), || self.try_wait())
    }

    /// SIGKILL (the whole group for [`Proc::spawn_group`]) and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            if self.group {
                // The leader is not reaped, so its pid (= the group id)
                // cannot have been reused: the group is ours.
                if let Some(kill) = find_tool("kill") {
                    let _ = Command::new(kill)
                        .args(["-s", "KILL", "--", &format!("-{}", self.pid)])
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.stop_with("TERM", grace)
    }

    /// Send `sig`, wait up to `grace`, then SIGKILL.
    pub fn stop_with(&mut self, sig: &str, grace: Duration) -> Option<ExitStatus> {
        if self.signal(sig)
            && let Some(status) = self.wait_timeout(grace)
        {
            return Some(status);
        }
        self.kill()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proc({} pid {})", self.name, self.pid)
    }
}
