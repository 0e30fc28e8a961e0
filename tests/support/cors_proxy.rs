//! nginx in front of an Icecast relay: TLS, and the CORS preflight that
//! Icecast 2.4.4 cannot answer (it fails to parse an `OPTIONS` request,
//! logs "HTTP request parsing failed" and closes the connection). Everything
//! else is passed to the relay's plain port unbuffered, with the relay's
//! own headers (its `Access-Control-Allow-Origin` and
//! `Access-Control-Expose-Headers` from `<http-headers>`).
//!
//! This is the relay side a web player that reads stream titles
//! (`fetch()` with `Icy-MetaData: 1`) needs; docs/operations.md shows the
//! same server block. nginx runs in the foreground as our child
//! (`daemon off; master_process off;`), killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::net::free_port;
use super::pki::Issued;
use super::procs::{self, Proc};

/// How long nginx may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running nginx answering preflights for, and proxying to, a relay.
pub struct CorsProxy {
    port: u16,
    proc: Proc,
    // Last: the process is gone before its dir is removed.
    dir: tempfile::TempDir,
}

/// The nginx config: one TLS server on `port` in front of `upstream`.
fn render(dir: &Path, port: u16, cert: &Issued, upstream: SocketAddr) -> String {
    let d = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 128; }}
http {{
    access_log {access_log};
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            # The preflight of a fetch() with Icy-MetaData: Icecast 2.4.4
            # cannot parse OPTIONS, so it is answered here.
            if ($request_method = OPTIONS) {{
                add_header Access-Control-Allow-Origin "*" always;
                add_header Access-Control-Allow-Methods "GET, HEAD" always;
                add_header Access-Control-Allow-Headers "Icy-MetaData, Range" always;
                add_header Access-Control-Max-Age "600" always;
                return 204;
            }}
            proxy_pass http://{upstream};
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_read_timeout 60s;
        }}
    }}
}}
"#,
        pid = d("nginx.pid"),
        error_log = d("error.log"),
        access_log = d("access.log"),
        tmp = d("tmp"),
        cert = cert.cert.display(),
        key = cert.key.display(),
    )
}

impl CorsProxy {
    /// Starts nginx with `cert` on a free loopback port in front of the
    /// plain HTTP relay at `upstream`; returns once it listens.
    pub fn start(cert: &Issued, upstream: SocketAddr) -> CorsProxy {
        let nginx = procs::require_tool("nginx");
        let dir = procs::temp_dir("floe-cors-proxy-");
        std::fs::create_dir(dir.path().join("tmp")).expect("nginx temp dir");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, render(dir.path(), port, cert, upstream))
                .expect("write nginx.conf");
            let mut cmd = Command::new(&nginx);
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut proc = Proc::spawn("nginx (CORS proxy)", &mut cmd)
                .unwrap_or_else(|e| panic!("spawn {}: {e}", nginx.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let up = procs::poll(START_TIMEOUT, Duration::from_millis(20), || {
                if !proc.is_running() {
                    return Some(false);
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| true)
            });
            if up == Some(true) {
                return CorsProxy { port, proc, dir };
            }
            proc.kill();
            // Another process took the port meanwhile: try another.
            failures.push(format!(
                "port {port}: {}",
                procs::file_tail(&dir.path().join("error.log"), 2000)
            ));
        }
        panic!("nginx (CORS proxy) did not start: {failures:#?}");
    }

    /// `https://HOST:PORT` (`host` must be a name of its certificate that
    /// resolves to loopback).
    pub fn https_url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    /// nginx's error and access logs (tails), for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "nginx error.log: {}\nnginx access.log: {}",
            procs::file_tail(&self.dir.path().join("error.log"), 2000),
            procs::file_tail(&self.dir.path().join("access.log"), 2000)
        )
    }

    /// Lines of its access log (one per request: method, path, status).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}
