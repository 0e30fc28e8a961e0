//! One poll of one relay: an HTTP GET of its status page turned into a
//! [`PollOutcome`]. The only network I/O of the poller: `http://` relays
//! over a connection of their own ([`super::http1`] frames the answer),
//! `https://` ones through reqwest.

use super::http1::{self, Progress, Response, ResponseError};
use crate::config::StatusConfig;
use crate::health::{PollFailure, PollOutcome};
use hyper::StatusCode;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The User-Agent of every poll.
macro_rules! user_agent {
    () => {
        concat!(
            "floe/",
            env!("CARGO_PKG_VERSION"),
            " (Icecast load balancer)"
        )
    };
}

/// First read buffer of a poll (a 20-mount floe-slots answer is about 1
/// KiB); it grows for larger answers, and is freed after the poll.
const READ_BUFFER: usize = 4096;

/// Largest status body accepted; a relay with 20 mounts sends a few KiB.
const MAX_BODY: usize = 4 << 20;

/// Bodies up to this size are parsed on the poller's runtime (tens of
/// microseconds); larger ones on a blocking thread.
const PARSE_INLINE: usize = 64 << 10;

/// What Icecast says on every URL, status pages included, when its global
/// client limit is reached.
const SERVER_FULL_BODY: &str = "Icecast connection limit reached";

/// Where and how to poll one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTarget {
    /// Full status URL (relay url + status path).
    pub url: String,
    /// Status format and credentials.
    pub status: StatusConfig,
}

/// Builds the HTTP client shared by every relay poller: keep-alive
/// connections, a User-Agent naming floe, no redirects (a status page that
/// redirects is misconfigured), no proxy from the environment. On a host
/// without CA certificates (no `ca-certificates` package) it still builds,
/// with no trusted roots: `http://` relays are polled as usual and
/// `https://` ones fail with a TLS error, after one logged error here.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let builder = || {
        reqwest::Client::builder()
            .user_agent(user_agent!())
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    };
    builder().build().or_else(|e| {
        tracing::error!(
            "no CA certificates for https:// relays ({e}); polling them will fail: install ca-certificates"
        );
        builder().tls_certs_only(Vec::new()).build()
    })
}

/// How one relay is polled: `http://` relays over their own kept-alive
/// connection ([`super::http1`]), `https://` ones (and any URL that does
/// not parse) through the shared reqwest client.
pub(crate) struct Fetcher {
    target: PollTarget,
    way: Way,
}

enum Way {
    Plain(Plain),
    Client(reqwest::Client),
}

/// An `http://` relay: where to connect, the request rendered once, and
/// the connection kept between polls.
struct Plain {
    host: url::Host<String>,
    port: u16,
    request: Box<[u8]>,
    conn: Option<TcpStream>,
}

/// What a GET gave: the status code, the body read, and whether the body
/// was read whole (else why not).
type Answer = (u16, Vec<u8>, Result<(), PollFailure>);

impl Fetcher {
    /// The fetcher of `target`; `client` polls it when it is not a plain
    /// `http://` URL.
    pub fn new(target: PollTarget, client: reqwest::Client) -> Fetcher {
        let way = match Plain::new(&target) {
            Some(plain) => Way::Plain(plain),
            None => Way::Client(client),
        };
        Fetcher { target, way }
    }

    /// Polls the relay once, within `timeout`. Never fails: every problem
    /// becomes [`PollOutcome::Failed`] with a reason a person can act on.
    pub async fn poll(&mut self, timeout: Duration) -> PollOutcome {
        let answer = match &mut self.way {
            Way::Plain(plain) => {
                match tokio::time::timeout(timeout, plain.get()).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        // Mid-exchange: the connection's state is unknown.
                        plain.conn = None;
                        Err(PollFailure::Timeout(timeout))
                    }
                }
            }
            Way::Client(client) => {
                // The client enforces the timeout; this bound only guards
                // against a stuck body stream.
                match tokio::time::timeout(
                    timeout + Duration::from_millis(250),
                    get(client, &self.target, timeout),
                )
                .await
                {
                    Ok(answer) => answer,
                    Err(_) => Err(PollFailure::Timeout(timeout)),
                }
            }
        };
        match answer {
            Ok(answer) => outcome(&self.target, answer).await,
            Err(why) => PollOutcome::Failed(why),
        }
    }
}

impl Plain {
    /// The way to poll `target` when its URL is a plain `http://` one.
    fn new(target: &PollTarget) -> Option<Plain> {
        let url = url::Url::parse(&target.url).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host()?.to_owned();
        let port = url.port_or_known_default()?;
        let mut request = format!("GET {}", url.path());
        if let Some(q) = url.query() {
            request.push('?');
            request.push_str(q);
        }
        request.push_str(" HTTP/1.1\r\nhost: ");
        request.push_str(url.host_str()?);
        if let Some(p) = url.port() {
            request.push_str(&format!(":{p}"));
        }
        request.push_str(concat!(
            "\r\nuser-agent: ",
            user_agent!(),
            "\r\naccept: */*\r\n"
        ));
        if let Some(c) = &target.status.credentials {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.user,
                c.password()
            ));
            request.push_str(&format!("authorization: Basic {token}\r\n"));
        }
        // (The URL parser escapes control characters, base64 has none.)
        request.push_str("\r\n");
        Some(Plain {
            host,
            port,
            request: request.into_bytes().into(),
            conn: None,
        })
    }

    /// One GET on the kept connection (or a new one). A kept connection
    /// the relay closed while idle gives no byte back: the GET is sent
    /// again on a new one, once.
    async fn get(&mut self) -> Result<Answer, PollFailure> {
        if let Some(conn) = self.conn.take() {
            match exchange(conn, &self.request).await {
                Exchange::Stale => {}
                Exchange::Done(answer, conn) => {
                    self.conn = conn;
                    return answer;
                }
            }
        }
        let conn = self.connect().await?;
        match exchange(conn, &self.request).await {
            Exchange::Stale => Err(PollFailure::Request(ResponseError::Incomplete.to_string())),
            Exchange::Done(answer, conn) => {
                self.conn = conn;
                answer
            }
        }
    }

    /// A new connection to the relay (each of its addresses in turn).
    async fn connect(&self) -> Result<TcpStream, PollFailure> {
        let connect = |e: std::io::Error| PollFailure::Connect(e.to_string());
        let addrs: Vec<SocketAddr> = match &self.host {
            url::Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), self.port)],
            url::Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), self.port)],
            url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .map_err(connect)?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // One write per request: nothing for Nagle to gather.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || PollFailure::Connect("no address for the host".into()),
            connect,
        ))
    }
}

/// What one exchange on a connection gave.
enum Exchange {
    /// The connection ended (or broke) before a byte of the response: a
    /// kept connection the relay had closed.
    Stale,
    /// The answer, and the connection when it can carry the next request.
    Done(Result<Answer, PollFailure>, Option<TcpStream>),
}

/// Sends `request` on `conn` and reads the response.
async fn exchange(mut conn: TcpStream, request: &[u8]) -> Exchange {
    let failed = |e: &std::io::Error| PollFailure::Request(e.to_string());
    if let Err(e) = conn.write_all(request).await {
        return match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => Exchange::Stale,
            _ => Exchange::Done(Err(failed(&e)), None),
        };
    }
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        let (eof, error) = match conn.read_buf(&mut buf).await {
            Ok(0) => (true, None),
            Ok(_) => (false, None),
            Err(e) => (true, Some(e)),
        };
        if eof && buf.is_empty() {
            return match error {
                Some(e) if e.kind() != ErrorKind::ConnectionReset => {
                    Exchange::Done(Err(failed(&e)), None)
                }
                _ => Exchange::Stale,
            };
        }
        if let Some(e) = error {
            // Broken mid-response: what came of a 403 still counts.
            return Exchange::Done(broken(&buf, failed(&e)), None);
        }
        match Response::parse(&buf, eof, MAX_BODY) {
            Ok(Progress::Partial) => continue,
            Ok(Progress::Done(r)) => {
                let keep = (r.keep_alive && r.used == buf.len()).then_some(conn);
                return Exchange::Done(Ok((r.code, r.body, Ok(()))), keep);
            }
            Err(ResponseError::TooLarge(_)) => {
                return Exchange::Done(broken(&buf, too_large()), None);
            }
            Err(e) => {
                return Exchange::Done(broken(&buf, PollFailure::Request(e.to_string())), None);
            }
        }
    }
}

/// The answer of a response whose body could not be read whole (`why`): its
/// status code and the body so far when the head was complete, else `why`.
fn broken(buf: &[u8], why: PollFailure) -> Result<Answer, PollFailure> {
    match http1::head(buf) {
        Some((code, body)) => {
            let body = body[..body.len().min(MAX_BODY)].to_vec();
            Ok((code, body, Err(why)))
        }
        None => Err(why),
    }
}

/// The failure of a body over [`MAX_BODY`].
fn too_large() -> PollFailure {
    PollFailure::Body(format!("status body larger than {} MiB", MAX_BODY >> 20))
}

/// One GET of `target` through the reqwest `client`.
async fn get(
    client: &reqwest::Client,
    target: &PollTarget,
    timeout: Duration,
) -> Result<Answer, PollFailure> {
    let mut req = client.get(&target.url);
    if let Some(c) = &target.status.credentials {
        req = req.basic_auth(&c.user, Some(c.password()));
    }
    let mut resp = req.send().await.map_err(|e| describe(&e, timeout))?;
    let code = resp.status().as_u16();
    let mut body = Vec::new();
    let read = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY => break Err(too_large()),
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(describe(&e, timeout)),
        }
    };
    Ok((code, body, read))
}

/// The outcome of a GET of `target` that answered.
async fn outcome(target: &PollTarget, (code, body, read): Answer) -> PollOutcome {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::FORBIDDEN {
        // Icecast sends the refusal and may reset the connection at once, so
        // a 403 whose body could not be read whole is taken as full too.
        let says_full = String::from_utf8_lossy(&body).contains(SERVER_FULL_BODY);
        if says_full || read.is_err() {
            return PollOutcome::ServerFull;
        }
    }
    if let Err(why) = read {
        return PollOutcome::Failed(why);
    }
    if !code.is_success() {
        return PollOutcome::Failed(PollFailure::Http {
            code: code.as_u16(),
            status: code.to_string(),
            url: target.url.clone(),
        });
    }
    let kind = target.status.kind;
    // A large body is parsed off the runtime every poller shares, so one
    // relay's megabytes never delay the others' polls.
    let parsed = if body.len() > PARSE_INLINE {
        match tokio::task::spawn_blocking(move || kind.parse(&body)).await {
            Ok(parsed) => parsed,
            Err(e) => return PollOutcome::Failed(PollFailure::Body(format!("parser: {e}"))),
        }
    } else {
        kind.parse(&body)
    };
    match parsed {
        Ok(status) => PollOutcome::Status(status),
        Err(e) => PollOutcome::Failed(PollFailure::Body(e.to_string())),
    }
}

/// The failure of a client error: timeout, or a transport error with its
/// innermost cause (refused, reset...).
fn describe(e: &reqwest::Error, timeout: Duration) -> PollFailure {
    if e.is_timeout() {
        return PollFailure::Timeout(timeout);
    }
    let mut source = std::error::Error::source(e);
    let mut cause = String::new();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        PollFailure::Connect(cause)
    } else {
        PollFailure::Request(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icecast::RelayStatus;
    use tokio::net::TcpListener;

    const BODY: &str = "#floe-slots 1\n/live.ogg\t3\t100\t97\nEND\t1\n";

    /// The poll target of a relay at `url` polled with `status`.
    fn target_with(url: &str, status: &str) -> PollTarget {
        let toml = format!(
            "[[relay]]\nname = \"r\"\nurl = \"{url}\"\naddresses = [\"192.0.2.1\"]\n\
             status = {status}\n[[stream]]\nname = \"s\"\nmounts = [\"/live.ogg\"]\n"
        );
        let (config, diags) = crate::config::parse(std::path::Path::new("t.toml"), &toml);
        let rc = config.unwrap_or_else(|| panic!("{diags}")).relays[0].clone();
        PollTarget {
            url: format!("{}{}", rc.url, rc.status.path),
            status: rc.status,
        }
    }

    /// The poll target of a relay at `url` (floe's stylesheet).
    fn target(url: &str) -> PollTarget {
        target_with(url, r#"{ kind = "xslt" }"#)
    }

    #[test]
    fn the_request_is_rendered_once_with_host_agent_and_credentials() {
        let t = target_with(
            "http://relay.example.org:8000",
            r#"{ kind = "icecast-xml", user = "a", password = "b" }"#,
        );
        let Some(plain) = Plain::new(&t) else {
            panic!("http:// is polled over its own connection")
        };
        let request = String::from_utf8(plain.request.to_vec()).unwrap();
        assert_eq!(
            request,
            concat!(
                "GET /admin/stats HTTP/1.1\r\nhost: relay.example.org:8000\r\n",
                "user-agent: floe/",
                env!("CARGO_PKG_VERSION"),
                " (Icecast load balancer)\r\naccept: */*\r\n",
                // "a:b" in base64.
                "authorization: Basic YTpi\r\n\r\n"
            )
        );
        assert!(Plain::new(&target("https://relay.example.org")).is_none());
    }

    /// The reqwest client (for `https://` relays; these tests poll `http://`
    /// ones through their own connections).
    fn shared_client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        client(Duration::from_secs(1)).unwrap()
    }

    /// Reads one request head from `s`.
    async fn request(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read(&mut b).await.unwrap() == 0 {
                break;
            }
            head.push(b[0]);
        }
        String::from_utf8(head).unwrap()
    }

    #[tokio::test]
    async fn a_kept_connection_is_reused_and_one_closed_while_idle_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            // First connection: two requests, then closed while idle.
            let (mut s, _) = listener.accept().await.unwrap();
            for _ in 0..2 {
                heads.push(request(&mut s).await);
                s.write_all(answer.as_bytes()).await.unwrap();
            }
            drop(s);
            // Second connection: the third request.
            let (mut s, _) = listener.accept().await.unwrap();
            heads.push(request(&mut s).await);
            s.write_all(answer.as_bytes()).await.unwrap();
            heads
        });
        let client = shared_client();
        let mut fetcher = Fetcher::new(target(&format!("http://{addr}")), client);
        for _ in 0..3 {
            match fetcher.poll(Duration::from_secs(2)).await {
                PollOutcome::Status(RelayStatus { mounts }) => assert_eq!(mounts.len(), 1),
                other => panic!("{other:?}"),
            }
            // Let the server close the first connection after two.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let heads = server.await.unwrap();
        assert_eq!(heads.len(), 3);
        let first = &heads[0];
        assert!(
            first.starts_with("GET /floe-slots.xsl HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(first.contains(&format!("\r\nhost: {addr}\r\n")), "{first}");
    }

    #[tokio::test]
    async fn failures_say_what_happened() {
        // Nothing listens: refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = shared_client();
        let mut fetcher = Fetcher::new(target(&format!("http://{addr}")), client.clone());
        match fetcher.poll(Duration::from_secs(1)).await {
            PollOutcome::Failed(f @ PollFailure::Connect(_)) => {
                assert!(f.to_string().contains("refused"), "{f}")
            }
            other => panic!("{other:?}"),
        }
        // Accepts and says nothing: timeout.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut fetcher = Fetcher::new(target(&format!("http://{addr}")), client);
        assert_eq!(
            fetcher.poll(Duration::from_millis(200)).await,
            PollOutcome::Failed(PollFailure::Timeout(Duration::from_millis(200)))
        );
    }
}
