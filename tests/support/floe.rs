//! The real `floe` binary as a child process: written config, ports
//! learned from its log, readiness from `/healthz`, killed on drop.

use super::net::{HttpResponse, http_get};
use super::procs::poll;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `floe serve`.
pub struct FloeProcess {
    child: Child,
    /// Directory holding its config and zones.
    pub dir: tempfile::TempDir,
    /// First HTTP address it listens on.
    pub http: SocketAddr,
    /// Every line it logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The example zone shipped in `zones/`.
pub fn example_zone() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/stream.example.org.zone")
}

impl FloeProcess {
    /// Writes `config` (TOML; `zones = "zones"` finds a copy of the example
    /// zone) and starts `floe serve` on it. `config` should listen on port
    /// 0; the real address is read from the log.
    pub fn start(config: &str) -> FloeProcess {
        Self::start_with(config, &[], &[])
    }

    /// [`FloeProcess::start`] with extra `floe serve` arguments (e.g.
    /// `--log-format json`) and environment (`None` removes a variable;
    /// `RUST_LOG` is `info` unless given here).
    pub fn start_with(config: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> FloeProcess {
        let dir = tempfile::Builder::new()
            .prefix("floe-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(dir.path().join("zones")).expect("zones dir");
        std::fs::copy(
            example_zone(),
            dir.path().join("zones/stream.example.org.zone"),
        )
        .expect("copy zone");
        let path = dir.path().join("floe.toml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_floe"));
        command.args(["serve", "--config"]).arg(&path).args(args);
        command.env("RUST_LOG", "info");
        for (key, value) in env {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn floe");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = logged_addr(&line, "HTTP listening on ") {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let http = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("address in log"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "floe did not report an HTTP address; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        FloeProcess {
            child,
            dir,
            http,
            log,
        }
    }

    /// The first DNS address it logged (`DNS listening on ADDR`).
    pub fn dns(&self) -> SocketAddr {
        self.logged("DNS listening on ")
    }

    /// The first PROXY protocol HTTP address it logged (`HTTP (PROXY
    /// protocol) listening on ADDR`, logged right after the plain ones:
    /// waited for).
    pub fn proxy_http(&self) -> SocketAddr {
        self.logged_soon("HTTP (PROXY protocol) listening on ")
    }

    /// The first HTTPS address it logged (`HTTPS listening on ADDR`,
    /// logged right after the plain ones: waited for).
    pub fn tls_http(&self) -> SocketAddr {
        self.logged_soon("HTTPS listening on ")
    }

    /// The first address logged after `prefix`, waited for up to 5 s (for
    /// lines logged after the plain HTTP ones the start waits for).
    fn logged_soon(&self, prefix: &str) -> SocketAddr {
        poll(Duration::from_secs(5), Duration::from_millis(10), || {
            let log = self.log.lock().unwrap();
            log.iter()
                .find_map(|l| logged_addr(l, prefix))?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {prefix:?} line in the log:\n{}", self.log_text()))
    }

    /// The first admin address it logged (`admin listening on ADDR`).
    pub fn admin(&self) -> SocketAddr {
        self.logged("admin listening on ")
    }

    fn logged(&self, prefix: &str) -> SocketAddr {
        let addr = self
            .log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| logged_addr(l, prefix));
        addr.and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in the log:\n{}", self.log_text()))
    }

    /// floe's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET `path` from floe.
    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(&self.url(path), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `/status.json`, parsed.
    pub fn status(&self) -> Value {
        serde_json::from_slice(&self.get("/status.json").body).expect("status.json is JSON")
    }

    /// Waits until `/healthz` answers 200 (first poll round done).
    pub fn wait_healthy(&self, timeout: Duration) {
        poll(timeout, Duration::from_millis(50), || {
            (self.get("/healthz").status == 200).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "floe not healthy after {timeout:?}; log:\n{}",
                self.log_text()
            )
        });
    }

    /// Waits until `/status.json` shows every relay up.
    pub fn wait_relays_up(&self, timeout: Duration) -> Value {
        self.wait_status(timeout, "every relay up", |s| {
            s["relays"]
                .as_array()
                .is_some_and(|relays| relays.iter().all(|r| r["state"] == "up"))
        })
    }

    /// Waits until `f(status.json)` holds; returns the document that did.
    pub fn wait_status(&self, timeout: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        poll(timeout, Duration::from_millis(50), || {
            last = self.status();
            f(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| panic!("timed out waiting for {what}; last status.json:\n{last:#}"))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether floe logs a line containing `needle` within `timeout` (its
    /// stderr is read by a thread: a line written just now may not be in
    /// [`Self::log_text`] yet).
    pub fn logs_within(&self, timeout: Duration, needle: &str) -> bool {
        poll(timeout, Duration::from_millis(20), || {
            self.log_text().contains(needle).then_some(())
        })
        .is_some()
    }

    /// Rewrites the config file (for reload tests).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("floe.toml")
    }

    /// Sends a signal to floe.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} floe");
    }

    /// Waits up to `timeout` for floe to exit (after a signal sent with
    /// [`FloeProcess::signal`]); `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        poll(timeout, Duration::from_millis(10), || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        poll(Duration::from_secs(10), Duration::from_millis(20), || {
            self.child.try_wait().ok().flatten()
        })
        .unwrap_or_else(|| panic!("floe did not exit after SIGTERM; log:\n{}", self.log_text()))
    }
}

impl Drop for FloeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `prefix` in a log line, text or JSON format.
fn logged_addr(line: &str, prefix: &str) -> Option<String> {
    let rest = line.split(prefix).nth(1)?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// The cell of `relay` and `mount` in a status.json document.
pub fn cell<'a>(status: &'a Value, relay: &str, mount: &str) -> &'a Value {
    let r = status["relays"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == relay))
        .unwrap_or_else(|| panic!("no relay {relay} in {status:#}"));
    r["mounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mount"] == mount))
        .unwrap_or_else(|| panic!("no mount {mount} on {relay}"))
}

/// The state of `relay` in a status.json document.
pub fn relay_state<'a>(status: &'a Value, relay: &str) -> &'a str {
    status["relays"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == relay))
        .and_then(|r| r["state"].as_str())
        .unwrap_or_else(|| panic!("no relay {relay} in {status:#}"))
}

/// `floe check --config config`: the exit code, stdout and stderr.
pub fn floe_check(config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("floe check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
