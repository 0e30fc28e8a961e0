//! Loopback ports, a minimal HTTP/1.0 client, and long-lived stream
//! listeners (like `curl -o /dev/null URL` that keeps reading).

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ports handed out by this process, so that two tests running in parallel
/// never get the same number even if the OS offers it twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback TCP port chosen by the OS (bind 127.0.0.1:0, read the
/// port, release it). Another process can still take it before it is used:
/// whoever starts a server on it must retry with a new port on failure.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        // Also need the UDP port free for servers that use both (DNS).
        let udp_ok = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        drop(listener);
        if udp_ok && used.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found after 100 tries");
}

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    /// Header names as received; look up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Host, port and path+query of an `http://` URL.
pub fn split_url(url: &str) -> io::Result<(String, u16, String)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url}: only http:// is supported"),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok((host, port, path))
}

std::thread_local! {
    /// The address this thread's connections come from (`None`: the OS's
    /// choice, 127.0.0.1 on loopback).
    static SOURCE: std::cell::Cell<Option<std::net::IpAddr>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with every connection this thread makes coming from `ip` (any
/// of 127.0.0.0/8 on Linux): a client on another network, as far as the
/// server can tell.
pub fn from_address<T>(ip: std::net::IpAddr, f: impl FnOnce() -> T) -> T {
    let before = SOURCE.with(|s| s.replace(Some(ip)));
    let out = f();
    SOURCE.with(|s| s.set(before));
    out
}

/// Where the listeners of a burst come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// All from this process's usual address (one household, one NAT).
    One,
    /// Each from its own address ([`client_address`]).
    Each,
}

/// Loopback address number `i` of a network other than 127.0.0.0/24:
/// 127.1.x.y, a distinct client for each `i` below 65,000.
pub fn client_address(i: usize) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(
        127,
        1 + (i / 250 / 250) as u8,
        (i / 250 % 250) as u8,
        (i % 250 + 1) as u8,
    )
    .into()
}

fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
    let source = SOURCE.with(|s| s.get());
    for addr in addrs {
        let attempt = match source {
            None => TcpStream::connect_timeout(&addr, timeout),
            Some(ip) => tcp_from(ip, addr, None, timeout),
        };
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A TCP connection to `addr` from `ip` (any port), with a receive buffer
/// of `recv_buffer` bytes if given (a client that reads slowly fills a
/// small one soon).
pub fn tcp_from(
    ip: std::net::IpAddr,
    addr: SocketAddr,
    recv_buffer: Option<usize>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// `Authorization` header value for HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

fn write_request(
    stream: &mut TcpStream,
    method: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        if host.contains(':') {
            req.push_str(&format!("Host: [{host}]:{port}\r\n"));
        } else {
            req.push_str(&format!("Host: {host}:{port}\r\n"));
        }
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
    {
        req.push_str("User-Agent: floe-test-harness\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())
}

/// Read the status line and headers; `body` holds the bytes read past the
/// end of the head.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head over 64 KiB",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out reading response head ({} bytes so far)",
                    buf.len()
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the end of the response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        )
    })?;
    let reason = parts.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(HttpResponse {
        status,
        reason,
        headers,
        body: rest,
    })
}

fn dechunk(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// One HTTP/1.0 request; reads the whole body (up to 8 MiB) until the server
/// closes. For status pages and redirects, not for streams (use
/// [`StreamListener`]). A connection reset after the head (Icecast does this
/// on "connection limit reached") still returns what was received.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    let (host, port, path) = split_url(url)?;
    let mut stream = connect(&host, port, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    write_request(&mut stream, method, &host, port, &path, headers)?;
    let HttpResponse {
        status,
        reason,
        headers,
        mut body,
    } = read_head(&mut stream, deadline)?;
    let no_body = method == "HEAD" || status == 204 || status == 304 || status / 100 == 1;
    let length: Option<usize> = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let mut chunk = [0u8; 16384];
    while !no_body && length.is_none_or(|len| body.len() < len) {
        if body.len() > 8 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{url}: body over 8 MiB (a stream? use StreamListener)"),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{url}: timed out reading the body ({} bytes)", body.len()),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(len) = length {
        body.truncate(len);
    }
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked && let Some(plain) = dechunk(&body) {
        body = plain;
    }
    Ok(HttpResponse {
        status,
        reason,
        headers,
        body,
    })
}

/// GET, no redirects followed.
pub fn http_get(url: &str, timeout: Duration) -> io::Result<HttpResponse> {
    http_request("GET", url, &[], timeout)
}

/// GET with HTTP basic auth.
pub fn http_get_auth(
    url: &str,
    user: &str,
    password: &str,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let auth = basic_auth(user, password);
    http_request("GET", url, &[("Authorization", &auth)], timeout)
}

/// Why a [`StreamListener`] did not get a stream.
#[derive(Debug)]
pub enum ListenError {
    /// Connect/read failure or timeout.
    Io { url: String, error: io::Error },
    /// The server answered with a non-200 status (body up to 4 KiB).
    Status {
        url: String,
        status: u16,
        reason: String,
        body: String,
    },
    /// Too many redirects.
    Redirects { chain: Vec<String> },
}

impl ListenError {
    /// The HTTP status when the server answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ListenError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::Io { url, error } => write!(f, "{url}: {error}"),
            ListenError::Status {
                url,
                status,
                reason,
                body,
            } => write!(f, "{url}: HTTP {status} {reason}: {body:?}"),
            ListenError::Redirects { chain } => write!(f, "too many redirects: {chain:?}"),
        }
    }
}

impl std::error::Error for ListenError {}

/// A listener holding a stream open and reading (discarding) it on a
/// background thread, like `curl -o /dev/null URL`. Icecast counts it as a
/// listener once it got the response head. Disconnects on drop.
pub struct StreamListener {
    url: String,
    redirects: Vec<String>,
    status: u16,
    headers: Vec<(String, String)>,
    stream: TcpStream,
    bytes: Arc<AtomicU64>,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StreamListener {
    /// Connect to `url` (no redirects followed); `Ok` only on `200`.
    pub fn connect(url: &str, timeout: Duration) -> Result<StreamListener, ListenError> {
        Self::open(url, Vec::new(), timeout)
    }

    /// `n` listeners connecting to `url` at the same time (one thread
    /// each), like a burst of players, from one address or each from its
    /// own ([`client_address`]); results in connection order.
    pub fn connect_many(
        url: &str,
        n: usize,
        follow_redirects: bool,
        clients: Clients,
        timeout: Duration,
    ) -> Vec<Result<StreamListener, ListenError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    s.spawn(move || {
                        let connect = || {
                            if follow_redirects {
                                StreamListener::connect_following(url, timeout)
                            } else {
                                StreamListener::connect(url, timeout)
                            }
                        };
                        match clients {
                            Clients::One => connect(),
                            Clients::Each => from_address(client_address(i), connect),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// Connect, following up to 5 redirects (`301/302/303/307/308` with a
    /// `Location`), like a player does. [`StreamListener::redirects`] holds
    /// the URLs that redirected.
    pub fn connect_following(url: &str, timeout: Duration) -> Result<StreamListener, ListenError> {
        let mut chain = Vec::new();
        let mut current = url.to_string();
        for _ in 0..=5 {
            let (host, port, path) = split_url(&current).map_err(|error| ListenError::Io {
                url: current.clone(),
                error,
            })?;
            let deadline = Instant::now() + timeout;
            let io_err = |error| ListenError::Io {
                url: current.clone(),
                error,
            };
            let mut stream = connect(&host, port, timeout).map_err(io_err)?;
            write_request(&mut stream, "GET", &host, port, &path, &[]).map_err(io_err)?;
            let head = read_head(&mut stream, deadline).map_err(io_err)?;
            let location = head.header("location").map(str::to_string);
            match (head.status, location) {
                (301 | 302 | 303 | 307 | 308, Some(loc)) => {
                    let next = url::Url::parse(&current)
                        .and_then(|base| base.join(&loc))
                        .map_err(|e| ListenError::Io {
                            url: current.clone(),
                            error: io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("bad Location {loc:?}: {e}"),
                            ),
                        })?;
                    chain.push(current);
                    current = next.to_string();
                }
                // Not a redirect: this connection's answer is the one the
                // server gave this listener. Connecting again would make
                // the relay admit one listener twice (the first still
                // counted while the second arrives).
                _ => return Self::from_head(&current, chain, stream, head),
            }
        }
        chain.push(current);
        Err(ListenError::Redirects { chain })
    }

    fn open(
        url: &str,
        redirects: Vec<String>,
        timeout: Duration,
    ) -> Result<StreamListener, ListenError> {
        let deadline = Instant::now() + timeout;
        let io_err = |error| ListenError::Io {
            url: url.to_string(),
            error,
        };
        let (host, port, path) = split_url(url).map_err(io_err)?;
        let mut stream = connect(&host, port, timeout).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        write_request(&mut stream, "GET", &host, port, &path, &[]).map_err(io_err)?;
        let head = read_head(&mut stream, deadline).map_err(io_err)?;
        Self::from_head(url, redirects, stream, head)
    }

    /// The listener for a connection whose response head was read: `Ok`
    /// and reading on `200`, the error (with the short body) otherwise.
    fn from_head(
        url: &str,
        redirects: Vec<String>,
        stream: TcpStream,
        head: HttpResponse,
    ) -> Result<StreamListener, ListenError> {
        let mut stream = stream;
        let io_err = |error| ListenError::Io {
            url: url.to_string(),
            error,
        };
        let HttpResponse {
            status,
            reason,
            headers,
            body: rest,
        } = head;
        if status != 200 {
            // Error bodies are short and the server closes after them.
            let mut body = rest;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut chunk = [0u8; 4096];
            while body.len() < 4096 {
                match stream.read(&mut chunk) {
                    Ok(n) if n > 0 => body.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            return Err(ListenError::Status {
                url: url.to_string(),
                status,
                reason,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let bytes = Arc::new(AtomicU64::new(rest.len() as u64));
        let open = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = stream.try_clone().map_err(io_err)?;
        let thread = {
            let (bytes, open, stop) = (bytes.clone(), open.clone(), stop.clone());
            std::thread::spawn(move || {
                let _ = reader.set_read_timeout(Some(Duration::from_millis(100)));
                let mut buf = vec![0u8; 16384];
                while !stop.load(Ordering::Relaxed) {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => break,
                    }
                }
                open.store(false, Ordering::Relaxed);
            })
        };
        Ok(StreamListener {
            url: url.to_string(),
            redirects,
            status,
            headers,
            stream,
            bytes,
            open,
            stop,
            thread: Some(thread),
        })
    }

    /// The URL that answered 200 (after redirects).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// URLs that redirected, in order.
    pub fn redirects(&self) -> &[String] {
        &self.redirects
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// False once the server closed the stream or a read failed.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Disconnect now (same as drop).
    pub fn close(self) {}
}

impl Drop for StreamListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for StreamListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamListener({}, {} bytes)", self.url, self.bytes())
    }
}
