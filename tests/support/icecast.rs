//! Real Icecast 2.4 relays (Debian `icecast2`) on loopback ports, each in
//! its own temp dir with a generated config (and, with [`RelaySpec::tls`],
//! a second port serving TLS with `<ssl-certificate>`), and a [`Lab`] of
//! several relays fed by ffmpeg sources.
//!
//! Icecast runs in the foreground (`icecast2 -c CONFIG`, no `-b`) as our
//! direct child: `-b` forks, the parent exits 0 at once (even when the child
//! then fails to bind its port), and the daemon is re-parented to PID 1,
//! which in containers often never reaps it. In the foreground the pid is
//! ours, a bind failure is an exit status, and stop() reaps it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::{self, HttpResponse};
use super::procs::{self, Proc};
use super::source::{Codec, Source, SourceOpts};

/// Timeout of one status request to a relay.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a relay may take to answer its status page after exec.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The copy of a TLS relay's `<ssl-certificate>` file in its dir.
const TLS_PEM: &str = "tls.pem";

/// Where the Debian package puts the stock web and admin roots.
const WEBROOTS: &[&str] = &["/usr/share/icecast2/web", "/usr/share/icecast/web"];
const ADMINROOTS: &[&str] = &["/usr/share/icecast2/admin", "/usr/share/icecast/admin"];

/// floe's stylesheet, installed into every test relay's webroot.
pub fn floe_slots_xsl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floe-slots.xsl")
}

/// One `<mount>` of a relay.
#[derive(Clone, Debug)]
pub struct MountSpec {
    /// Mount path, e.g. `/live.ogg`.
    pub path: String,
    /// `<max-listeners>`; `None` = unlimited.
    pub max_listeners: Option<u32>,
    /// Per-mount `<burst-size>`; `None` = the relay's default.
    pub burst_size: Option<u32>,
    /// What a [`Lab`] feeds it with; `None` = the Lab starts no source.
    pub feed: Option<Codec>,
}

impl MountSpec {
    /// Unlimited, fed with the codec its extension suggests.
    pub fn new(path: &str) -> MountSpec {
        MountSpec {
            path: path.to_string(),
            max_listeners: None,
            burst_size: None,
            feed: Some(Codec::for_mount(path)),
        }
    }

    pub fn max(mut self, max_listeners: u32) -> MountSpec {
        self.max_listeners = Some(max_listeners);
        self
    }

    pub fn codec(mut self, codec: Codec) -> MountSpec {
        self.feed = Some(codec);
        self
    }

    /// Configured on the relay, but the Lab starts no source for it.
    pub fn unfed(mut self) -> MountSpec {
        self.feed = None;
        self
    }

    pub fn burst_size(mut self, bytes: u32) -> MountSpec {
        self.burst_size = Some(bytes);
        self
    }
}

/// Everything that goes into one relay's config.
#[derive(Clone, Debug)]
pub struct RelaySpec {
    /// Label used in messages and temp dir names.
    pub name: String,
    /// `<hostname>` (what `listenurl` and playlists show).
    pub hostname: String,
    /// `<bind-address>`: the loopback address it listens on (default
    /// 127.0.0.1; another of 127.0.0.0/8 tells relays apart by address,
    /// as DNS answers do).
    pub bind: String,
    /// Global `<limits><clients>` (listeners + sources + status requests).
    pub clients: u32,
    /// `<limits><sources>`.
    pub sources: u32,
    /// Default `<burst-size>` in bytes.
    pub burst_size: u32,
    pub admin_user: String,
    pub admin_password: String,
    pub source_password: String,
    pub relay_password: String,
    pub mounts: Vec<MountSpec>,
    /// Raw XML appended inside `<icecast>` (e.g. `<relay>` blocks).
    pub extra_xml: String,
    /// A PEM file with certificate and key: the relay also serves TLS on a
    /// second `<listen-socket>` with `<ssl>1</ssl>` (its own port), with
    /// this file as `<ssl-certificate>`.
    pub tls: Option<PathBuf>,
    /// Headers of every answer (`<http-headers>`), after
    /// `Access-Control-Allow-Origin: *` (Debian's default config has it).
    pub headers: Vec<(String, String)>,
}

impl RelaySpec {
    pub fn new(name: &str) -> RelaySpec {
        RelaySpec {
            name: name.to_string(),
            hostname: "127.0.0.1".to_string(),
            bind: "127.0.0.1".to_string(),
            clients: 100,
            sources: 16,
            burst_size: 65535,
            admin_user: "admin".to_string(),
            admin_password: "floe-admin-pw".to_string(),
            source_password: "floe-source-pw".to_string(),
            relay_password: "floe-relay-pw".to_string(),
            mounts: Vec::new(),
            extra_xml: String::new(),
            tls: None,
            headers: Vec::new(),
        }
    }

    /// Add a mount fed with the codec its extension suggests (`.mp3` MP3,
    /// `.ogv` Theora, else Vorbis); `max` = `<max-listeners>`, None = unlimited.
    pub fn mount(mut self, path: &str, max: Option<u32>) -> RelaySpec {
        let mut m = MountSpec::new(path);
        m.max_listeners = max;
        self.mounts.push(m);
        self
    }

    pub fn mount_spec(mut self, mount: MountSpec) -> RelaySpec {
        self.mounts.push(mount);
        self
    }

    pub fn hostname(mut self, hostname: &str) -> RelaySpec {
        self.hostname = hostname.to_string();
        self
    }

    /// Listen on `address` (one of 127.0.0.0/8) instead of 127.0.0.1; also
    /// its `<hostname>`.
    pub fn bind(mut self, address: &str) -> RelaySpec {
        self.bind = address.to_string();
        self.hostname = address.to_string();
        self
    }

    pub fn clients(mut self, clients: u32) -> RelaySpec {
        self.clients = clients;
        self
    }

    pub fn sources(mut self, sources: u32) -> RelaySpec {
        self.sources = sources;
        self
    }

    pub fn burst_size(mut self, bytes: u32) -> RelaySpec {
        self.burst_size = bytes;
        self
    }

    pub fn admin(mut self, user: &str, password: &str) -> RelaySpec {
        self.admin_user = user.to_string();
        self.admin_password = password.to_string();
        self
    }

    pub fn source_password(mut self, password: &str) -> RelaySpec {
        self.source_password = password.to_string();
        self
    }

    pub fn extra_xml(mut self, xml: &str) -> RelaySpec {
        self.extra_xml.push_str(xml);
        self
    }

    /// Also serve TLS (a second port) with `pem` (certificate then key) as
    /// `<ssl-certificate>`; the relay reads a copy in its own dir.
    pub fn tls(mut self, pem: &Path) -> RelaySpec {
        self.tls = Some(pem.to_path_buf());
        self
    }

    /// One more `<http-headers>` header on every answer.
    pub fn header(mut self, name: &str, value: &str) -> RelaySpec {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Paths of all mounts.
    pub fn mount_paths(&self) -> Vec<&str> {
        self.mounts.iter().map(|m| m.path.as_str()).collect()
    }

    /// Paths of the mounts a Lab feeds.
    pub fn fed_mounts(&self) -> Vec<&str> {
        self.mounts
            .iter()
            .filter(|m| m.feed.is_some())
            .map(|m| m.path.as_str())
            .collect()
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The Icecast config for `spec` on `port` (and `tls_port`, the
/// `<ssl>1</ssl>` socket, when `spec` has TLS) under `dir`.
pub fn render_config(
    spec: &RelaySpec,
    port: u16,
    tls_port: Option<u16>,
    dir: &Path,
    adminroot: &Path,
    changeowner: Option<(&str, &str)>,
) -> String {
    let e = xml_escape;
    let d = |p: &Path| e(&p.display().to_string());
    let mut mounts = String::new();
    for m in &spec.mounts {
        mounts.push_str("  <mount type=\"normal\">\n");
        mounts.push_str(&format!("    <mount-name>{}</mount-name>\n", e(&m.path)));
        if let Some(max) = m.max_listeners {
            mounts.push_str(&format!("    <max-listeners>{max}</max-listeners>\n"));
        }
        if let Some(burst) = m.burst_size {
            mounts.push_str(&format!("    <burst-size>{burst}</burst-size>\n"));
        }
        mounts.push_str("  </mount>\n");
    }
    let owner = match changeowner {
        Some((user, group)) => format!(
            "    <changeowner><user>{}</user><group>{}</group></changeowner>\n",
            e(user),
            e(group)
        ),
        None => String::new(),
    };
    let tls_socket = match tls_port {
        Some(tls_port) => format!(
            "  <listen-socket>\n    <port>{tls_port}</port>\n    <bind-address>{}</bind-address>\n    <ssl>1</ssl>\n  </listen-socket>\n",
            e(&spec.bind)
        ),
        None => String::new(),
    };
    let ssl_certificate = match tls_port {
        Some(_) => format!(
            "    <ssl-certificate>{}</ssl-certificate>\n",
            d(&dir.join(TLS_PEM))
        ),
        None => String::new(),
    };
    let headers: String = spec
        .headers
        .iter()
        .map(|(name, value)| {
            format!(
                "    <header name=\"{}\" value=\"{}\" />\n",
                e(name),
                e(value)
            )
        })
        .collect();
    format!(
        r#"<icecast>
  <location>floe test lab</location>
  <admin>floe-tests@localhost</admin>
  <hostname>{hostname}</hostname>
  <limits>
    <clients>{clients}</clients>
    <sources>{sources}</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>{burst}</burst-size>
  </limits>
  <authentication>
    <source-password>{source_pw}</source-password>
    <relay-password>{relay_pw}</relay-password>
    <admin-user>{admin_user}</admin-user>
    <admin-password>{admin_pw}</admin-password>
  </authentication>
  <listen-socket>
    <port>{port}</port>
    <bind-address>{bind}</bind-address>
  </listen-socket>
{tls_socket}  <http-headers>
    <header name="Access-Control-Allow-Origin" value="*" />
{headers}  </http-headers>
{mounts}  <fileserve>1</fileserve>
  <paths>
    <basedir>{dir}</basedir>
    <logdir>{logdir}</logdir>
    <pidfile>{pidfile}</pidfile>
    <webroot>{webroot}</webroot>
    <adminroot>{adminroot}</adminroot>
{ssl_certificate}  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>3</loglevel>
    <logsize>10000</logsize>
  </logging>
  <security>
    <chroot>0</chroot>
{owner}  </security>
{extra}
</icecast>
"#,
        hostname = e(&spec.hostname),
        bind = e(&spec.bind),
        clients = spec.clients,
        sources = spec.sources,
        burst = spec.burst_size,
        source_pw = e(&spec.source_password),
        relay_pw = e(&spec.relay_password),
        admin_user = e(&spec.admin_user),
        admin_pw = e(&spec.admin_password),
        dir = d(dir),
        logdir = d(&dir.join("log")),
        pidfile = d(&dir.join("log/icecast.pid")),
        webroot = d(&dir.join("web")),
        adminroot = d(adminroot),
        extra = spec.extra_xml,
    )
}

fn first_existing(candidates: &[&str], what: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "Icecast {what} not found (looked in {candidates:?}): \
                 run `tests/run --install-only` as root to install icecast2"
            )
        })
}

/// `<changeowner>` user and group when running as root, with their ids.
fn run_as() -> Option<(String, String, u32, u32)> {
    if !procs::is_root() {
        return None;
    }
    if let (Some((uid, _)), Some(gid)) = (
        procs::lookup_user("icecast2"),
        procs::lookup_group("icecast"),
    ) {
        return Some(("icecast2".into(), "icecast".into(), uid, gid));
    }
    let (uid, _) = procs::lookup_user("nobody").expect("user nobody missing from /etc/passwd");
    let gid = procs::lookup_group("nogroup")
        .expect("group nogroup missing from /etc/group (and no icecast2:icecast user)");
    Some(("nobody".into(), "nogroup".into(), uid, gid))
}

/// One mount as listed by `/status-json.xsl`.
#[derive(Clone, Debug)]
pub struct MountStatus {
    /// Path from `listenurl`.
    pub mount: String,
    pub listeners: u64,
    /// The whole JSON object for this mount.
    pub raw: Value,
}

/// One line of `/floe-slots.xsl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub mount: String,
    pub listeners: u64,
    /// None = unlimited.
    pub max_listeners: Option<u64>,
    /// None = unlimited.
    pub free: Option<u64>,
}

/// Parse the floe-slots.xsl output, checking the header and the END count.
pub fn parse_slots(text: &str) -> Result<Vec<Slot>, String> {
    let mut lines = text.lines();
    if lines.next() != Some("#floe-slots 1") {
        return Err(format!("no `#floe-slots 1` header: {text:?}"));
    }
    let mut slots = Vec::new();
    for line in lines {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f[0] == "END" {
            let n: usize = f
                .get(1)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("bad END line {line:?}"))?;
            if n != slots.len() {
                return Err(format!(
                    "END says {n} mounts, got {}: {text:?}",
                    slots.len()
                ));
            }
            return Ok(slots);
        }
        if f.len() != 4 {
            return Err(format!("bad slots line {line:?}"));
        }
        let num = |s: &str| -> Result<Option<u64>, String> {
            if s == "unlimited" {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("bad number {s:?} in {line:?}"))
            }
        };
        slots.push(Slot {
            mount: f[0].to_string(),
            listeners: f[1]
                .parse()
                .map_err(|_| format!("bad listeners in {line:?}"))?,
            max_listeners: num(f[2])?,
            free: num(f[3])?,
        });
    }
    Err(format!("no END line (truncated?): {text:?}"))
}

/// The path part of a listenurl (`http://host:port/live.ogg` -> `/live.ogg`).
fn listenurl_path(listenurl: &str) -> String {
    match url::Url::parse(listenurl) {
        Ok(u) => u.path().to_string(),
        Err(_) => {
            let rest = listenurl.split_once("://").map_or(listenurl, |(_, r)| r);
            rest.find('/')
                .map_or("/".to_string(), |i| rest[i..].to_string())
        }
    }
}

/// Mounts in a `/status-json.xsl` document (`source` may be an object, an
/// array, or absent).
pub fn mounts_from_status_json(doc: &Value) -> Vec<MountStatus> {
    let sources = match doc.pointer("/icestats/source") {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    };
    sources
        .into_iter()
        .map(|s| MountStatus {
            mount: s
                .get("listenurl")
                .and_then(Value::as_str)
                .map(listenurl_path)
                .unwrap_or_default(),
            listeners: s.get("listeners").and_then(Value::as_u64).unwrap_or(0),
            raw: s,
        })
        .collect()
}

enum LaunchError {
    /// Could not bind the port: try another.
    PortInUse(String),
    /// Killed by SIGSEGV before its status page answered: Icecast 2.4.4
    /// crashes now and then when its first request comes in while it
    /// starts (5 of 110 starts polled every 20 ms on a loaded 2-core
    /// machine, 0 of 90 left alone): start it again.
    Crashed(String),
    Other(String),
}

/// A running Icecast server on `127.0.0.1:port` (or the address of
/// [`RelaySpec::bind`]). Killed on drop.
pub struct IcecastRelay {
    spec: RelaySpec,
    port: u16,
    /// The `<ssl>1</ssl>` socket's port, when the spec has TLS.
    tls_port: Option<u16>,
    icecast: PathBuf,
    config_path: PathBuf,
    proc: Mutex<Option<Proc>>,
    ready_in: Duration,
    // Last, so the process is gone before its dir is removed.
    dir: tempfile::TempDir,
}

impl IcecastRelay {
    /// Start a relay on a free port (retrying with a new port when the
    /// chosen one was taken meanwhile); returns once its status page
    /// answers. Its mounts appear only once sources connect.
    pub fn start(spec: RelaySpec) -> IcecastRelay {
        let icecast = procs::require_tool("icecast2");
        let safe: String = spec
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = procs::temp_dir(&format!("floe-icecast-{safe}-"));
        let webroot_src = first_existing(WEBROOTS, "webroot");
        let adminroot = first_existing(ADMINROOTS, "adminroot");
        let web = dir.path().join("web");
        fs::create_dir(&web).expect("create webroot");
        procs::set_mode(&web, 0o755);
        for entry in fs::read_dir(&webroot_src).expect("read Debian webroot") {
            let entry = entry.expect("webroot entry");
            // Debian's web files are symlinks into /etc/icecast2/web.
            if fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                let to = web.join(entry.file_name());
                fs::copy(entry.path(), &to).unwrap_or_else(|e| {
                    panic!("copy {} -> {}: {e}", entry.path().display(), to.display())
                });
                procs::set_mode(&to, 0o644);
            }
        }
        let xsl = floe_slots_xsl();
        let xsl_to = web.join("floe-slots.xsl");
        fs::copy(&xsl, &xsl_to).unwrap_or_else(|e| panic!("copy {}: {e}", xsl.display()));
        procs::set_mode(&xsl_to, 0o644);
        let log = dir.path().join("log");
        fs::create_dir(&log).expect("create log dir");
        procs::set_mode(&log, 0o755);
        let owner = run_as();
        if let Some((_, _, uid, gid)) = &owner {
            std::os::unix::fs::chown(&log, Some(*uid), Some(*gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", log.display()));
        }
        if let Some(pem) = &spec.tls {
            let to = dir.path().join(TLS_PEM);
            fs::copy(pem, &to).unwrap_or_else(|e| panic!("copy {}: {e}", pem.display()));
            procs::set_mode(&to, 0o644);
        }
        let config_path = dir.path().join("icecast.xml");
        let mut relay = IcecastRelay {
            spec,
            port: 0,
            tls_port: None,
            icecast,
            config_path,
            proc: Mutex::new(None),
            ready_in: Duration::ZERO,
            dir,
        };
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = net::free_port();
            let tls_port = relay.spec.tls.is_some().then(net::free_port);
            let config = render_config(
                &relay.spec,
                port,
                tls_port,
                relay.dir.path(),
                &adminroot,
                owner.as_ref().map(|(u, g, _, _)| (u.as_str(), g.as_str())),
            );
            fs::write(&relay.config_path, config).expect("write icecast config");
            procs::set_mode(&relay.config_path, 0o644);
            relay.port = port;
            relay.tls_port = tls_port;
            match relay.launch() {
                Ok(()) => return relay,
                Err(LaunchError::PortInUse(msg)) => failures.push(format!("port {port}: {msg}")),
                Err(LaunchError::Crashed(msg)) => {
                    eprintln!(
                        "relay {} crashed while starting (Icecast's startup crash), again: {msg}",
                        relay.spec.name
                    );
                    failures.push(format!("port {port}: {msg}"));
                }
                Err(LaunchError::Other(msg)) => panic!(
                    "relay {} (port {port}) failed to start: {msg}",
                    relay.spec.name
                ),
            }
        }
        panic!(
            "relay {} could not start after 5 tries: {failures:#?}",
            relay.spec.name
        );
    }

    /// Spawn on `self.port` and wait until the status page answers.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let t0 = Instant::now();
        let out_path = self.dir.path().join("icecast.out");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .expect("open icecast.out");
        let mut cmd = Command::new(&self.icecast);
        cmd.arg("-c")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        let mut proc = Proc::spawn(format!("icecast2 {}", self.spec.name), &mut cmd)
            .map_err(|e| LaunchError::Other(format!("spawn {}: {e}", self.icecast.display())))?;
        let url = format!("{}/status-json.xsl", self.base_url());
        let mut last;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = proc.try_wait() {
                let text = format!(
                    "{status}; output: {}; error.log: {}",
                    procs::file_tail(&out_path, 2000),
                    procs::file_tail(&self.dir.path().join("log/error.log"), 2000)
                );
                use std::os::unix::process::ExitStatusExt;
                return Err(
                    if text.contains("listening sockets") || text.contains("listener socket") {
                        LaunchError::PortInUse(text)
                    } else if status.signal() == Some(11) {
                        LaunchError::Crashed(text)
                    } else {
                        LaunchError::Other(text)
                    },
                );
            }
            match net::http_get(&url, HTTP_TIMEOUT) {
                Ok(r) if r.status == 200 => break,
                Ok(r) => last = format!("HTTP {} {}", r.status, r.text()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::Other(format!(
                    "status page not answering after {START_TIMEOUT:?} (last: {last}); \
                     output: {}; error.log: {}",
                    procs::file_tail(&out_path, 2000),
                    procs::file_tail(&self.dir.path().join("log/error.log"), 2000)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ready_in = t0.elapsed();
        *self.lock() = Some(proc);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Proc>> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &RelaySpec {
        &self.spec
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://BIND:PORT` (BIND: 127.0.0.1 unless [`RelaySpec::bind`]).
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.spec.bind, self.port)
    }

    /// The port of its TLS socket (panics for a relay without TLS).
    pub fn tls_port(&self) -> u16 {
        self.tls_port
            .unwrap_or_else(|| panic!("relay {} serves no TLS", self.spec.name))
    }

    /// `https://HOST:TLS_PORT`: its TLS socket by a name its certificate
    /// covers (`host` must resolve to its address).
    pub fn https_url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.tls_port())
    }

    /// The address it listens on.
    pub fn address(&self) -> std::net::IpAddr {
        self.spec.bind.parse().expect("a relay binds an IP address")
    }

    /// `http://BIND:PORT/mount`
    pub fn url(&self, mount: &str) -> String {
        format!("{}{mount}", self.base_url())
    }

    pub fn hostname(&self) -> &str {
        &self.spec.hostname
    }

    /// (admin user, admin password)
    pub fn admin_credentials(&self) -> (&str, &str) {
        (&self.spec.admin_user, &self.spec.admin_password)
    }

    pub fn source_password(&self) -> &str {
        &self.spec.source_password
    }

    /// Its temp dir (config, web, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Time from exec to the status page answering, for the last start.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Proc::pid)
    }

    /// The process is alive (not exited, not a zombie).
    pub fn is_running(&self) -> bool {
        self.lock().as_mut().is_some_and(Proc::is_running)
    }

    /// Kill it (SIGKILL: a relay that dies), reaped. Its port is then closed.
    pub fn stop(&self) {
        if let Some(mut p) = self.lock().take() {
            p.kill();
        }
    }

    /// Graceful stop (SIGTERM; SIGKILL after 5 s).
    pub fn terminate(&self) {
        if let Some(mut p) = self.lock().take() {
            p.terminate(Duration::from_secs(5));
        }
    }

    /// SIGSTOP: the relay hangs; the kernel still accepts TCP connections
    /// but nothing answers (a poll timeout).
    pub fn freeze(&self) {
        if let Some(p) = self.lock().as_mut() {
            p.signal("STOP");
        }
    }

    /// SIGCONT after [`IcecastRelay::freeze`].
    pub fn thaw(&self) {
        if let Some(p) = self.lock().as_mut() {
            p.signal("CONT");
        }
    }

    /// Stop if running and start again on the same port (same URL); returns
    /// once the status page answers. Sources with `respawn` reconnect by
    /// themselves; wait for them with [`IcecastRelay::wait_for_mounts`].
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(LaunchError::PortInUse(_) | LaunchError::Crashed(_))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(
                    LaunchError::PortInUse(msg)
                    | LaunchError::Crashed(msg)
                    | LaunchError::Other(msg),
                ) => panic!(
                    "relay {} failed to restart on port {}: {msg}",
                    self.spec.name, self.port
                ),
            }
        }
    }

    /// GET a path on the relay.
    pub fn get(&self, path: &str) -> std::io::Result<HttpResponse> {
        net::http_get(&self.url(path), HTTP_TIMEOUT)
    }

    /// GET a path with the admin credentials.
    pub fn get_admin(&self, path: &str) -> std::io::Result<HttpResponse> {
        net::http_get_auth(
            &self.url(path),
            &self.spec.admin_user,
            &self.spec.admin_password,
            HTTP_TIMEOUT,
        )
    }

    /// `/status-json.xsl`, parsed.
    pub fn status_json(&self) -> Result<Value, String> {
        let r = self
            .get("/status-json.xsl")
            .map_err(|e| format!("GET /status-json.xsl: {e}"))?;
        if r.status != 200 {
            return Err(format!("/status-json.xsl: HTTP {}: {}", r.status, r.text()));
        }
        serde_json::from_slice(&r.body)
            .map_err(|e| format!("/status-json.xsl: bad JSON ({e}): {}", r.text()))
    }

    /// Mounts with a source, from status-json.
    pub fn mounts(&self) -> Result<Vec<MountStatus>, String> {
        Ok(mounts_from_status_json(&self.status_json()?))
    }

    /// Listeners on `mount` (None when the mount is not listed).
    pub fn listeners(&self, mount: &str) -> Result<Option<u64>, String> {
        Ok(self
            .mounts()?
            .into_iter()
            .find(|m| m.mount == mount)
            .map(|m| m.listeners))
    }

    /// `/floe-slots.xsl`, parsed (header and END count checked).
    pub fn slots(&self) -> Result<Vec<Slot>, String> {
        let r = self
            .get("/floe-slots.xsl")
            .map_err(|e| format!("GET /floe-slots.xsl: {e}"))?;
        if r.status != 200 {
            return Err(format!("/floe-slots.xsl: HTTP {}: {}", r.status, r.text()));
        }
        parse_slots(&r.text())
    }

    /// `/admin/stats` XML (basic auth).
    pub fn admin_stats(&self) -> Result<String, String> {
        let r = self
            .get_admin("/admin/stats")
            .map_err(|e| format!("GET /admin/stats: {e}"))?;
        if r.status != 200 {
            return Err(format!("/admin/stats: HTTP {}: {}", r.status, r.text()));
        }
        Ok(r.text())
    }

    /// Last 4 KiB of Icecast's error.log and console output.
    pub fn logs(&self) -> String {
        format!(
            "error.log: {}\nconsole: {}",
            procs::file_tail(&self.dir.path().join("log/error.log"), 4096),
            procs::file_tail(&self.dir.path().join("icecast.out"), 1024)
        )
    }

    fn describe(&self) -> String {
        format!(
            "relay {} (port {}, pid {:?}, running {})",
            self.spec.name,
            self.port,
            self.pid(),
            self.is_running()
        )
    }

    /// Poll status-json until every mount in `mounts` is listed; returns how
    /// long it took, or a message with the last status seen.
    pub fn try_wait_for_mounts(
        &self,
        mounts: &[&str],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        let mut last = String::new();
        let found = procs::poll(timeout, Duration::from_millis(50), || match self.mounts() {
            Ok(list) => {
                let missing: Vec<&str> = mounts
                    .iter()
                    .copied()
                    .filter(|want| !list.iter().any(|m| m.mount == *want))
                    .collect();
                if missing.is_empty() {
                    Some(())
                } else {
                    let seen: Vec<&str> = list.iter().map(|m| m.mount.as_str()).collect();
                    last = format!("missing {missing:?}, listed {seen:?}");
                    None
                }
            }
            Err(e) => {
                last = e;
                None
            }
        });
        match found {
            Some(()) => Ok(t0.elapsed()),
            None => Err(format!(
                "{}: mounts {mounts:?} not all listed after {timeout:?}; last status: {last}",
                self.describe()
            )),
        }
    }

    /// Like [`IcecastRelay::try_wait_for_mounts`], panicking on timeout.
    pub fn wait_for_mounts(&self, mounts: &[&str], timeout: Duration) -> Duration {
        self.try_wait_for_mounts(mounts, timeout)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Poll until `mount` is no longer listed (its source went away).
    pub fn wait_for_mount_gone(&self, mount: &str, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let mut last = String::new();
        let gone = procs::poll(timeout, Duration::from_millis(20), || {
            match self.listeners(mount) {
                Ok(None) => Some(()),
                Ok(Some(n)) => {
                    last = format!("still listed with {n} listeners");
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        if gone.is_none() {
            panic!(
                "{}: mount {mount} still there after {timeout:?}; last status: {last}",
                self.describe()
            );
        }
        t0.elapsed()
    }

    /// Poll status-json until `mount` has exactly `n` listeners; returns how
    /// long it took. Panics with the last count seen on timeout.
    pub fn wait_for_listeners(&self, mount: &str, n: u64, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let mut last = String::new();
        let ok = procs::poll(timeout, Duration::from_millis(20), || {
            match self.listeners(mount) {
                Ok(Some(count)) if count == n => Some(()),
                Ok(Some(count)) => {
                    last = format!("{count} listeners");
                    None
                }
                Ok(None) => {
                    last = "mount not listed".to_string();
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        if ok.is_none() {
            panic!(
                "{}: mount {mount} did not reach {n} listeners within {timeout:?}; last: {last}\n{}",
                self.describe(),
                self.logs()
            );
        }
        t0.elapsed()
    }
}

impl Drop for IcecastRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for IcecastRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IcecastRelay({} on {})", self.spec.name, self.base_url())
    }
}

/// Several relays, every fed mount with its own ffmpeg source (no
/// master/relay topology: each relay is fed directly).
pub struct Lab {
    // Dropped first: sources stop before their relays.
    sources: Vec<(usize, Source)>,
    pub relays: Vec<IcecastRelay>,
    /// Time from Lab::start to every relay listing every fed mount.
    pub ready_in: Duration,
}

/// Default time a Lab waits for its mounts.
pub const LAB_READY_TIMEOUT: Duration = Duration::from_secs(20);

impl Lab {
    /// Start every relay (in parallel), a source for every fed mount, and
    /// wait until every relay lists its fed mounts.
    pub fn start(specs: Vec<RelaySpec>) -> Lab {
        let t0 = Instant::now();
        let relays: Vec<IcecastRelay> = std::thread::scope(|s| {
            let handles: Vec<_> = specs
                .into_iter()
                .map(|spec| s.spawn(move || IcecastRelay::start(spec)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut lab = Lab {
            sources: Vec::new(),
            relays,
            ready_in: Duration::ZERO,
        };
        for i in 0..lab.relays.len() {
            let feeds: Vec<(String, Codec)> = lab.relays[i]
                .spec
                .mounts
                .iter()
                .filter_map(|m| m.feed.map(|c| (m.path.clone(), c)))
                .collect();
            for (mount, codec) in feeds {
                lab.add_source(i, &mount, SourceOpts::new(codec));
            }
        }
        lab.restart_crashed(LAB_READY_TIMEOUT);
        lab.wait_ready(LAB_READY_TIMEOUT);
        lab.ready_in = t0.elapsed();
        lab
    }

    /// Until every relay lists its fed mounts (or `timeout`), starts
    /// again, on its port, a relay that died meanwhile (at most three
    /// times in all): Icecast 2.4.4 now and then dies of SIGSEGV (a NULL
    /// string in libc) while it starts and its first sources connect and
    /// status requests come in, a few times in a hundred starts on a
    /// loaded 2-core machine. Its sources reconnect by themselves.
    fn restart_crashed(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut restarts = 0;
        while Instant::now() < deadline {
            let listed = self.relays.iter().enumerate().all(|(i, relay)| {
                let list = relay.mounts().unwrap_or_default();
                self.sources
                    .iter()
                    .filter(|(r, _)| *r == i)
                    .all(|(_, s)| list.iter().any(|m| m.mount == s.mount()))
            });
            if listed {
                return;
            }
            for relay in &mut self.relays {
                if restarts < 3 && !relay.is_running() {
                    eprintln!(
                        "relay {} died while starting (Icecast's startup crash), again: {}",
                        relay.name(),
                        relay.logs()
                    );
                    relay.restart();
                    restarts += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Feed `mount` on relay `i` with a new source.
    pub fn add_source(&mut self, i: usize, mount: &str, mut opts: SourceOpts) -> &Source {
        let relay = &self.relays[i];
        opts.name = format!("floe test {} {mount}", relay.name());
        let source = Source::start_at(
            &relay.spec.bind,
            relay.port(),
            relay.source_password(),
            mount,
            opts,
        );
        self.sources.push((i, source));
        &self.sources.last().expect("just pushed").1
    }

    /// The source feeding `mount` on relay `i`.
    pub fn source(&self, i: usize, mount: &str) -> Option<&Source> {
        self.sources
            .iter()
            .find(|(r, s)| *r == i && s.mount() == mount)
            .map(|(_, s)| s)
    }

    /// Disconnect the source of `mount` on relay `i` (the mount goes away).
    pub fn stop_source(&mut self, i: usize, mount: &str) {
        let pos = self
            .sources
            .iter()
            .position(|(r, s)| *r == i && s.mount() == mount)
            .unwrap_or_else(|| panic!("no source for {mount} on relay {i}"));
        self.sources.remove(pos);
    }

    pub fn relay(&self, i: usize) -> &IcecastRelay {
        &self.relays[i]
    }

    pub fn relay_mut(&mut self, i: usize) -> &mut IcecastRelay {
        &mut self.relays[i]
    }

    /// Wait until every relay lists every mount that has a source; panics
    /// with the relay, the mount, the last status and the source's log.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (i, relay) in self.relays.iter().enumerate() {
            let mounts: Vec<&str> = self
                .sources
                .iter()
                .filter(|(r, _)| *r == i)
                .map(|(_, s)| s.mount())
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = relay.try_wait_for_mounts(&mounts, left) {
                let logs: Vec<String> = self
                    .sources
                    .iter()
                    .filter(|(r, _)| *r == i)
                    .map(|(_, s)| {
                        format!(
                            "source {} (spawns {}, last exit {:?}): {}",
                            s.target(),
                            s.spawns(),
                            s.last_exit(),
                            s.log()
                        )
                    })
                    .collect();
                panic!("{e}\n{}\n{}", relay.logs(), logs.join("\n"));
            }
        }
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.relays.iter()).finish()
    }
}
