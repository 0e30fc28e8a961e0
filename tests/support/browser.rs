//! A real browser for the web-player tests: Debian's headless Chromium,
//! driven by `chromedriver` over the W3C WebDriver HTTP API (reqwest).
//!
//! The browser trusts a test CA the way a person's browser trusts a root:
//! through an NSS database (`certutil` from `libnss3-tools`) in a temporary
//! `$HOME/.pki/nssdb`; never `--ignore-certificate-errors`. Names such as
//! `stream.test` are mapped to loopback with `--host-resolver-rules`, so
//! certificates carry real names and each server is its own origin.
//!
//! chromedriver leads its own process group (Chromium and its helpers are
//! in it): the session is closed and the whole group killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::net::free_port;
use super::procs::{self, Proc};

/// How long chromedriver and a new session may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one WebDriver command beyond the script's own deadline.
const COMMAND_SLACK: Duration = Duration::from_secs(15);

/// A headless Chromium session. Closed and killed on drop.
pub struct Browser {
    driver: Mutex<Proc>,
    base: String,
    session: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// Console messages read so far (reading drains Chromium's buffer).
    console: Mutex<Vec<String>>,
    // Last: the processes are gone before their profile is removed.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session that trusts the CA in
    /// `ca_pem` and resolves each of `hosts` to 127.0.0.1.
    pub fn start(ca_pem: &Path, hosts: &[&str]) -> Browser {
        let chromium = procs::require_tool("chromium");
        let chromedriver = procs::require_tool("chromedriver");
        let dir = procs::temp_dir("floe-browser-");
        let home = dir.path().join("home");
        trust_ca(&home.join(".pki/nssdb"), ca_pem);

        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("WebDriver HTTP client");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("WebDriver runtime");

        let log = dir.path().join("chromedriver.log");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            let mut cmd = Command::new(&chromedriver);
            cmd.arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                // Chromium's own output goes to the same log.
                .arg("--enable-chrome-logs")
                .env("HOME", &home)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut driver = Proc::spawn_group("chromedriver", &mut cmd)
                .unwrap_or_else(|e| panic!("spawn {}: {e}", chromedriver.display()));
            match wait_driver(&client, &runtime, &base, &mut driver) {
                Ok(()) => {
                    let mut browser = Browser {
                        driver: Mutex::new(driver),
                        base,
                        session: String::new(),
                        client,
                        runtime,
                        console: Mutex::new(Vec::new()),
                        dir,
                    };
                    browser.new_session(&chromium, hosts);
                    return browser;
                }
                // Another process took the port meanwhile: try another.
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "chromedriver did not come up: {failures:#?}\nlog: {}",
            procs::file_tail(&log, 4096)
        );
    }

    fn new_session(&mut self, chromium: &Path, hosts: &[&str]) {
        let rules = hosts
            .iter()
            .map(|h| format!("MAP {h} 127.0.0.1"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut args = vec![
            "--headless=new".to_string(),
            format!(
                "--user-data-dir={}",
                self.dir.path().join("profile").display()
            ),
            "--autoplay-policy=no-user-gesture-required".to_string(),
            format!("--host-resolver-rules={rules}"),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--disable-gpu".to_string(),
        ];
        // Chromium's sandbox cannot run as root (it exits "Running as root
        // without --no-sandbox is not supported"); tests/run runs as root in
        // CI. As another user the sandbox stays on.
        if procs::is_root() {
            args.push("--no-sandbox".to_string());
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": false,
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let value = self
            .call("POST", "/session", Some(caps), START_TIMEOUT)
            .unwrap_or_else(|e| panic!("new Chromium session: {e}\n{}", self.logs()));
        self.session = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_string();
        self.session_call(
            "POST",
            "/timeouts",
            Some(json!({ "script": 120_000, "pageLoad": 30_000 })),
            START_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("set timeouts: {e}\n{}", self.logs()));
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        call(
            &self.client,
            &self.runtime,
            &self.base,
            method,
            path,
            body,
            timeout,
        )
    }

    fn session_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.call(
            method,
            &format!("/session/{}{path}", self.session),
            body,
            timeout,
        )
    }

    /// Loads `url` and waits for its load event. A page Chromium refuses
    /// (a certificate it does not trust) loads its error page instead
    /// (`chrome-error://chromewebdata/`), without a WebDriver error.
    pub fn goto(&self, url: &str) {
        self.session_call(
            "POST",
            "/url",
            Some(json!({ "url": url })),
            Duration::from_secs(30) + COMMAND_SLACK,
        )
        .unwrap_or_else(|e| panic!("load {url}: {e}\n{}", self.logs()));
    }

    /// The current page's URL.
    pub fn current_url(&self) -> String {
        self.session_call("GET", "/url", None, COMMAND_SLACK)
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|e| panic!("current URL: {e}\n{}", self.logs()))
    }

    /// Runs `script` as an async function body in the page: it gets `args`
    /// as `arguments[0..]` and its result callback last; the result is what
    /// it passes to the callback. `limit` bounds the script (it should
    /// keep its own, shorter deadline and report what it saw).
    pub fn run_async(&self, script: &str, args: Vec<Value>, limit: Duration) -> Value {
        self.session_call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
            limit + COMMAND_SLACK,
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\nscript: {script}\n{}", self.logs()))
    }

    /// Runs `script` as a function body in the page; its return value.
    pub fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
            COMMAND_SLACK,
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\nscript: {script}\n{}", self.logs()))
    }

    /// Every console message (and network error Chromium logged for the
    /// page) so far, as `LEVEL message`.
    pub fn console(&self) -> Vec<String> {
        let mut seen = self.console.lock().unwrap();
        if let Ok(Value::Array(entries)) = self.session_call(
            "POST",
            "/se/log",
            Some(json!({ "type": "browser" })),
            COMMAND_SLACK,
        ) {
            seen.extend(entries.iter().map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or_default()
                )
            }));
        }
        seen.clone()
    }

    /// The browser console and the tail of chromedriver's log (with
    /// Chromium's own output), for failure messages.
    pub fn logs(&self) -> String {
        let console = if self.session.is_empty() {
            Vec::new()
        } else {
            self.console()
        };
        format!(
            "browser console:\n  {}\nchromedriver log (tail, without Chromium's ALSA and D-Bus \
             complaints of a machine with neither):\n{}",
            console.join("\n  "),
            self.driver_log_tail(8000)
        )
    }

    /// The last `max` bytes of chromedriver's log, less the lines every
    /// run has on a machine without sound card or D-Bus.
    fn driver_log_tail(&self, max: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with("ALSA lib") && !l.contains("alsa_util.cc") && !l.contains("dbus/")
            })
            .collect();
        let kept = kept.join("\n");
        let start = kept.len().saturating_sub(max);
        let start = (start..kept.len())
            .find(|&i| kept.is_char_boundary(i))
            .unwrap_or(kept.len());
        kept[start..].to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("chromedriver.log")
    }
}

/// Waits until chromedriver at `base` says it is ready.
fn wait_driver(
    client: &reqwest::Client,
    runtime: &tokio::runtime::Runtime,
    base: &str,
    driver: &mut Proc,
) -> Result<(), String> {
    let mut last = String::new();
    let ready = procs::poll(START_TIMEOUT, Duration::from_millis(50), || {
        if !driver.is_running() {
            last = "chromedriver exited".to_string();
            return Some(false);
        }
        match call(
            client,
            runtime,
            base,
            "GET",
            "/status",
            None,
            Duration::from_secs(2),
        ) {
            Ok(v) if v["ready"] == true => Some(true),
            Ok(v) => {
                last = v.to_string();
                None
            }
            Err(e) => {
                last = e;
                None
            }
        }
    });
    match ready {
        Some(true) => Ok(()),
        _ => Err(format!("{base} not ready: {last}")),
    }
}

/// One WebDriver command to the chromedriver at `base`: the answer's
/// `value`, or the error it answered.
fn call(
    client: &reqwest::Client,
    runtime: &tokio::runtime::Runtime,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<Value, String> {
    let url = format!("{base}{path}");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let request = client
        .request(method.clone(), &url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(body.map_or_else(Vec::new, |b| b.to_string().into_bytes()));
    runtime.block_on(async {
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{method} {url}: HTTP {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if status.is_success() {
            Ok(doc["value"].clone())
        } else {
            Err(format!(
                "{method} {url}: HTTP {status}: {}: {}",
                doc["value"]["error"], doc["value"]["message"]
            ))
        }
    })
}

/// A new NSS database at `nssdb` trusting `ca_pem` to identify servers
/// (`-t C,,`), as Chromium on Linux reads it from `$HOME/.pki/nssdb`.
fn trust_ca(nssdb: &Path, ca_pem: &Path) {
    let certutil = procs::require_tool("certutil");
    std::fs::create_dir_all(nssdb).unwrap_or_else(|e| panic!("create {}: {e}", nssdb.display()));
    let db = format!("sql:{}", nssdb.display());
    let run = |args: &[&str]| {
        let out = Command::new(&certutil)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run certutil: {e}"));
        assert!(
            out.status.success(),
            "certutil {args:?}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-d", &db, "-N", "--empty-password"]);
    let ca = ca_pem.display().to_string();
    run(&[
        "-d",
        &db,
        "-A",
        "-t",
        "C,,",
        "-n",
        "floe-test-ca",
        "-i",
        &ca,
    ]);
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Closes Chromium; the group kill below gets whatever is left.
            let _ = self.session_call("DELETE", "", None, Duration::from_secs(5));
        }
        self.driver.lock().unwrap_or_else(|e| e.into_inner()).kill();
    }
}
