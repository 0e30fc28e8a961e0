//! Real `curl` as a listener from a chosen loopback address
//! (`--interface`): one request without following redirects
//! ([`curl_once`]), or a listener that follows floe's 302 and stays
//! connected, streaming to `/dev/null` ([`CurlListener`]).
//!
//! A listener's answers are read from the headers curl dumps (`-D FILE`,
//! flushed by curl as each response head arrives), so a test sees where it
//! landed while it is still connected.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{self, Proc};

/// What one `curl` request without `-L` got.
#[derive(Debug, Clone)]
pub struct CurlAnswer {
    /// The HTTP status (0: no answer; `error` says why).
    pub status: u16,
    /// The `Location` of a redirect (curl's `%{redirect_url}`), empty if none.
    pub location: String,
    /// curl's stderr when it failed.
    pub error: String,
}

/// `curl --interface FROM URL` (GET, no redirect followed), body discarded.
pub fn curl_once(url: &str, from: IpAddr, timeout: Duration) -> CurlAnswer {
    let curl = procs::require_tool("curl");
    let out = Command::new(curl)
        .args(["-sS", "-o", "/dev/null", "--interface"])
        .arg(from.to_string())
        .args(["--max-time", &timeout.as_secs_f64().to_string()])
        .args(["-w", "%{http_code}\n%{redirect_url}\n"])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    CurlAnswer {
        status: lines.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        location: lines.next().unwrap_or_default().to_string(),
        error: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One response head as curl dumped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedHead {
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
}

/// Where a [`CurlListener`] ended up: the heads of every response, the
/// last one the relay's (or whoever stopped redirecting).
#[derive(Debug, Clone)]
pub struct Landing {
    pub heads: Vec<DumpedHead>,
    /// The URL of the last response (the first `Location` after floe).
    pub url: String,
    /// From curl's start to the first head seen (floe's 302), and to the
    /// last (the relay's answer): seen by polling the dump every 10 ms.
    pub first_head_in: Duration,
    pub landed_in: Duration,
}

impl Landing {
    /// The last response's status.
    pub fn status(&self) -> u16 {
        self.heads.last().map_or(0, |h| h.status)
    }

    /// Redirects followed.
    pub fn redirects(&self) -> usize {
        self.heads.iter().filter(|h| h.location.is_some()).count()
    }
}

/// Complete response heads in a `-D` dump (an incomplete last head, still
/// being written, is left out).
pub fn parse_dump(text: &str) -> Vec<DumpedHead> {
    let mut heads = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find("\r\n\r\n") {
        let block = &rest[..end];
        rest = &rest[end + 4..];
        let mut lines = block.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let location = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        });
        heads.push(DumpedHead { status, location });
    }
    heads
}

/// A real listener: `curl -L --interface FROM URL -o /dev/null`, connected
/// until dropped (killed and reaped).
pub struct CurlListener {
    proc: Proc,
    from: IpAddr,
    url: String,
    started: Instant,
    dump: PathBuf,
    _dir: tempfile::TempDir,
}

impl CurlListener {
    /// Starts curl; it follows up to 3 redirects and streams the body to
    /// `/dev/null` for as long as the server sends it.
    pub fn start(url: &str, from: IpAddr) -> CurlListener {
        let curl = procs::require_tool("curl");
        let dir = procs::temp_dir("floe-curl-");
        let dump = dir.path().join("heads");
        let log = std::fs::File::create(dir.path().join("stderr")).expect("curl stderr file");
        let mut cmd = Command::new(curl);
        cmd.args(["-sS", "-L", "--max-redirs", "3", "-o", "/dev/null"])
            .arg("--interface")
            .arg(from.to_string())
            .arg("-D")
            .arg(&dump)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let started = Instant::now();
        let proc = Proc::spawn(format!("curl from {from}"), &mut cmd).expect("spawn curl");
        CurlListener {
            proc,
            from,
            url: url.to_string(),
            started,
            dump,
            _dir: dir,
        }
    }

    /// The address it connects from.
    pub fn from(&self) -> IpAddr {
        self.from
    }

    /// Waits until a response that is not a redirect has arrived (or curl
    /// exited after its last): where it landed. `Err` with curl's stderr on
    /// timeout or when curl exited without one.
    pub fn landing(&mut self, timeout: Duration) -> Result<Landing, String> {
        let dump = self.dump.clone();
        let mut exited = None;
        let mut first_head_in = None;
        let started = self.started;
        let heads = procs::poll(timeout, Duration::from_millis(10), || {
            let heads = parse_dump(&std::fs::read_to_string(&dump).unwrap_or_default());
            if !heads.is_empty() && first_head_in.is_none() {
                first_head_in = Some(started.elapsed());
            }
            if heads.last().is_some_and(|h| h.location.is_none()) {
                return Some(heads);
            }
            if let Some(status) = self.proc.try_wait() {
                // Exited: what it dumped is all there is.
                exited = Some(status);
                let heads = parse_dump(&std::fs::read_to_string(&dump).unwrap_or_default());
                return Some(heads);
            }
            None
        });
        let landed_in = started.elapsed();
        let stderr = std::fs::read_to_string(self._dir.path().join("stderr")).unwrap_or_default();
        let Some(heads) = heads else {
            return Err(format!(
                "curl from {} to {}: no final answer within {timeout:?}; stderr: {stderr}",
                self.from, self.url
            ));
        };
        let url = heads
            .iter()
            .rev()
            .find_map(|h| h.location.clone())
            .unwrap_or_else(|| self.url.clone());
        match (heads.last(), exited) {
            (Some(h), _) if h.location.is_none() => Ok(Landing {
                heads,
                url,
                first_head_in: first_head_in.unwrap_or(landed_in),
                landed_in,
            }),
            (_, status) => Err(format!(
                "curl from {} to {} exited ({status:?}) after {heads:?}; stderr: {stderr}",
                self.from, self.url
            )),
        }
    }

    /// Still running (connected, or trying to).
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }
}

impl std::fmt::Debug for CurlListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CurlListener({} -> {})", self.from, self.url)
    }
}

/// `curl` over HTTPS to `name` (resolved to `addr`, e.g. floe's TLS address) trusting
/// `ca`: exit code, status line and headers, stderr.
pub fn curl_https(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
    path: &str,
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{name}:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(ca)
        .args(args)
        .arg(format!("https://{name}:{}{path}", addr.port()))
        .output()
        .expect("curl is needed (tests/run installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
