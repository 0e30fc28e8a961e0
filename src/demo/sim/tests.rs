//! The simulated relay against floe's own status parsers and the real
//! Icecast captures in `tests/fixtures/icecast/`, and its listener
//! accounting over real sockets.

use super::server::{MAX_HEAD_BYTES, base64};
use super::*;
use crate::icecast::{MaxListeners, icecast_json, icecast_xml, xslt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/icecast/");
const WAIT: Duration = Duration::from_secs(3);

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).expect("fixture readable")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}

/// A relay named `name` with `mounts` (path, limit) that admits at once.
fn sim(name: &str, mounts: &[(&str, Option<u32>)]) -> SimRelayBuilder {
    let b = SimRelay::builder(name).admission_delay(Duration::ZERO);
    mounts.iter().fold(b, |b, &(path, max)| b.mount(path, max))
}

fn up(builder: SimRelayBuilder) -> SimRelay {
    builder.start().expect("sim relay starts")
}

/// The lab's relay: both mounts limited to 5, admitted at once.
fn lab_relay() -> SimRelay {
    up(sim(
        "relay-2",
        &[("/live.ogg", Some(5)), ("/live.mp3", Some(5))],
    ))
}

/// A response as read off the socket: the head, and the stream for more.
struct Answer {
    head: String,
    body: Vec<u8>,
    stream: TcpStream,
}

impl Answer {
    fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Reads the rest of a close-delimited body.
    async fn rest(mut self) -> Vec<u8> {
        let _ = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut self.body)).await;
        self.body
    }

    /// Reads until at least `n` body bytes arrived.
    async fn read_at_least(&mut self, n: usize) {
        let mut buf = [0u8; 8192];
        while self.body.len() < n {
            match tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                    panic!("stream ended after {} bytes", self.body.len())
                }
                Ok(Ok(k)) => self.body.extend_from_slice(&buf[..k]),
            }
        }
    }
}

/// Sends one request and reads its head (and whatever body came with it).
async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sim-test\r\n{extra}\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let body = buf[end + 4..].to_vec();
            return Answer { head, body, stream };
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("head in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn get_body(addr: SocketAddr, path: &str) -> String {
    let a = request(addr, "GET", path, "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 200 OK", "{path}");
    String::from_utf8(a.rest().await).expect("UTF-8 page")
}

async fn slots(relay: &SimRelay) -> String {
    get_body(relay.addr(), "/floe-slots.xsl").await
}

async fn listen(relay: &SimRelay, mount: &str) -> Answer {
    let mut a = request(relay.addr(), "GET", mount, "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 200 OK", "{mount}");
    a.read_at_least(44).await;
    a
}

#[tokio::test]
async fn floe_slots_is_byte_for_byte_the_stylesheet_output() {
    let relay = up(sim(
        "relay-b",
        &[("/live.ogg", None), ("/live.mp3", Some(2))],
    ));
    assert_eq!(slots(&relay).await, fixture("floe-slots-unlimited.txt"));

    let lab = lab_relay();
    lab.add_fake_listeners("/live.ogg", 3);
    lab.add_fake_listeners("/live.mp3", 1);
    assert_eq!(slots(&lab).await, fixture("floe-slots-listeners.txt"));
    lab.add_fake_listeners("/live.ogg", 2);
    assert_eq!(slots(&lab).await, fixture("floe-slots-mount-full.txt"));
    lab.set_source("/live.mp3", false);
    assert_eq!(slots(&lab).await, fixture("floe-slots-one-mount.txt"));
    lab.set_source("/live.ogg", false);
    assert_eq!(slots(&lab).await, fixture("floe-slots-no-source.txt"));
}

#[tokio::test]
async fn floe_slots_parses_with_floes_parser() {
    let relay = lab_relay();
    relay.add_fake_listeners("/live.ogg", 4);
    let status = xslt::parse(slots(&relay).await.as_bytes()).expect("parses");
    let ogg = status.mount("/live.ogg").expect("ogg listed");
    assert_eq!(
        (ogg.listeners, ogg.max_listeners),
        (4, MaxListeners::Limited(5))
    );
    assert_eq!(status.mounts.len(), 2);
}

#[tokio::test]
async fn status_json_has_icecasts_shapes() {
    let relay = up(
        sim("relay-b", &[("/live.ogg", Some(5)), ("/live.mp3", None)])
            .hostname("relay-b.example.org"),
    );
    relay.add_fake_listeners("/live.mp3", 2);

    // Two mounts: an array, in path order, same keys as the real MP3 source.
    let body = get_body(relay.addr(), "/status-json.xsl").await;
    let doc = json(&body);
    let sources = doc["icestats"]["source"]
        .as_array()
        .expect("array with two mounts");
    let real = json(&fixture("status-json-unlimited-hostname.json"));
    let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&sources[0]), keys(&real["icestats"]["source"][0]));
    assert_eq!(keys(&doc["icestats"]), keys(&real["icestats"]));
    assert_eq!(
        sources[0]["listenurl"],
        format!(
            "http://relay-b.example.org:{}/live.mp3",
            relay.addr().port()
        )
    );
    assert!(!body.contains("max_listeners"), "2.4.4 hides max_listeners");
    let status = icecast_json::parse(body.as_bytes()).expect("floe parses it");
    let mp3 = status.mount("/live.mp3").expect("mp3");
    assert_eq!(
        (mp3.listeners, mp3.max_listeners),
        (2, MaxListeners::Unknown)
    );

    // One mount: an object.
    relay.set_source("/live.mp3", false);
    let body = get_body(relay.addr(), "/status-json.xsl").await;
    assert!(json(&body)["icestats"]["source"].is_object(), "{body}");
    assert_eq!(
        icecast_json::parse(body.as_bytes())
            .expect("parses")
            .mounts
            .len(),
        1
    );

    // None: no `source`, a `dummy` instead.
    relay.set_source("/live.ogg", false);
    let body = get_body(relay.addr(), "/status-json.xsl").await;
    let real = json(&fixture("status-json-no-source.json"));
    assert_eq!(keys(&json(&body)["icestats"]), keys(&real["icestats"]));
    assert!(
        icecast_json::parse(body.as_bytes())
            .expect("parses")
            .mounts
            .is_empty()
    );
}

#[tokio::test]
async fn admin_stats_needs_credentials_and_carries_limits() {
    let relay =
        up(sim("r", &[("/live.ogg", None), ("/live.mp3", Some(2))]).admin("admin", "secret"));
    let a = request(relay.addr(), "GET", "/admin/stats", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 401 Authentication Required");
    assert_eq!(
        a.header("WWW-Authenticate"),
        Some("Basic realm=\"Icecast2 Server\"")
    );
    let auth = format!("Authorization: Basic {}\r\n", base64(b"admin:secret"));
    let a = request(relay.addr(), "GET", "/admin/stats", &auth).await;
    assert_eq!(a.status_line(), "HTTP/1.0 200 OK");
    let status = icecast_xml::parse(&a.rest().await).expect("floe parses it");
    assert_eq!(
        status.mount("/live.ogg").map(|m| m.max_listeners),
        Some(MaxListeners::Unlimited)
    );
    assert_eq!(
        status.mount("/live.mp3").map(|m| m.max_listeners),
        Some(MaxListeners::Limited(2))
    );
}

#[test]
fn base64_matches_rfc_4648() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}

#[tokio::test]
async fn a_listener_counts_while_connected() {
    let relay = lab_relay();
    let a = listen(&relay, "/live.ogg").await;
    assert_eq!(a.header("Content-Type"), Some("audio/wav"));
    assert_eq!(&a.body[..4], b"RIFF");
    assert_eq!(relay.listeners("/live.ogg"), 1);
    assert!(slots(&relay).await.contains("/live.ogg\t1\t5\t4\n"));
    drop(a);
    assert!(
        relay.wait_for_listeners("/live.ogg", 0, WAIT).await,
        "uncounted when the connection closes"
    );
    let stats = relay.mount("/live.ogg").expect("mount");
    assert_eq!((stats.admitted, stats.peak), (1, 1));
}

#[tokio::test]
async fn head_is_not_a_listener() {
    let relay = lab_relay();
    let a = request(relay.addr(), "HEAD", "/live.mp3", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 200 OK");
    assert_eq!(relay.listeners("/live.mp3"), 0);
}

#[tokio::test]
async fn a_full_mount_answers_403_like_icecast() {
    let relay = up(sim("r", &[("/live.ogg", Some(1))]));
    let _first = listen(&relay, "/live.ogg").await;
    let a = request(relay.addr(), "GET", "/live.ogg", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 403 Forbidden");
    assert_eq!(a.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        a.header("Content-Length"),
        None,
        "Icecast's errors are close-delimited"
    );
    assert_eq!(a.rest().await, b"max listeners reached");
    assert_eq!(relay.counters().refused_full, 1);
    assert_eq!(relay.counters().overfill(), 1);
    assert_eq!(relay.listeners("/live.ogg"), 1);
}

#[tokio::test]
async fn fake_listeners_fill_a_mount() {
    let relay = lab_relay();
    assert!(relay.add_fake_listeners("/live.mp3", 5));
    assert_eq!(relay.listeners("/live.mp3"), 5);
    let a = request(relay.addr(), "GET", "/live.mp3", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 403 Forbidden");
    assert!(relay.set_fake_listeners("/live.mp3", 0));
    let _l = listen(&relay, "/live.mp3").await;
    assert_eq!(relay.listeners("/live.mp3"), 1);
    assert!(!relay.add_fake_listeners("/nope", 1));
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_404_mount_unavailable() {
    // 2 free slots, 4 listeners at once, admission takes 300 ms: like
    // Icecast, the two that arrive while the first two are admitted get 404.
    let relay = up(sim("r", &[("/live.ogg", Some(2))]).admission_delay(Duration::from_millis(300)));
    let get = || request(relay.addr(), "GET", "/live.ogg", "");
    let (a, b, c, d) = tokio::join!(get(), get(), get(), get());
    let mut ok = 0;
    let mut busy = 0;
    for a in [a, b, c, d] {
        match a.status_line() {
            "HTTP/1.0 200 OK" => ok += 1,
            "HTTP/1.0 404 File Not Found" => {
                assert!(
                    String::from_utf8_lossy(&a.rest().await).contains("404 - Mount unavailable")
                );
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, busy), (2, 2));
    assert_eq!(relay.counters().refused_busy, 2);
    assert_eq!(relay.listeners("/live.ogg"), 2);
}

#[tokio::test]
async fn cutting_the_source_drops_listeners_and_the_mount() {
    let relay = lab_relay();
    let a = listen(&relay, "/live.ogg").await;
    assert!(relay.set_source("/live.ogg", false));
    assert_eq!(relay.listeners("/live.ogg"), 0, "uncounted at once");
    // The stream ends (within one chunk).
    let body = a.rest().await;
    assert!(
        body.len() < 44 + 3 * super::tone::BYTES_PER_SECOND,
        "stream closed, {} bytes",
        body.len()
    );
    let page = slots(&relay).await;
    assert!(
        !page.contains("/live.ogg") && page.ends_with("END\t1\n"),
        "{page}"
    );
    let a = request(relay.addr(), "GET", "/live.ogg", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 404 File Not Found");
    assert!(String::from_utf8_lossy(&a.rest().await).contains("could not be found"));
    assert_eq!(
        relay.counters().overfill(),
        0,
        "a missing source is no overfill"
    );

    relay.set_source("/live.ogg", true);
    let _l = listen(&relay, "/live.ogg").await;
    assert_eq!(relay.listeners("/live.ogg"), 1);
}

#[tokio::test]
async fn a_down_relay_refuses_connections_and_comes_back_on_its_port() {
    let relay = lab_relay();
    let addr = relay.addr();
    let a = listen(&relay, "/live.mp3").await;
    relay.set_down(true).expect("down");
    assert!(relay.is_down());
    assert_eq!(relay.listeners("/live.mp3"), 0);
    // Refused at once, not when the accept task next runs.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "connections refused"
    );
    let _ = a.rest().await; // the listener's connection is dropped
    relay.set_down(false).expect("up");
    assert_eq!(relay.addr(), addr);
    let _l = listen(&relay, "/live.mp3").await;
    assert_eq!(relay.listeners("/live.mp3"), 1);
    relay.stop();
    assert!(relay.set_down(false).is_err(), "stopped for good");
}

#[tokio::test]
async fn a_full_server_refuses_even_status_pages() {
    let relay = lab_relay();
    relay.set_server_full(true);
    let a = request(relay.addr(), "GET", "/status-json.xsl", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 403 Forbidden");
    assert_eq!(a.rest().await, b"Icecast connection limit reached");
    relay.set_server_full(false);
    get_body(relay.addr(), "/status-json.xsl").await;

    let small = up(sim("s", &[("/live.ogg", None)]).max_clients(1));
    let _l = listen(&small, "/live.ogg").await;
    let a = request(small.addr(), "GET", "/floe-slots.xsl", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 403 Forbidden");
    assert_eq!(small.counters().server_full, 1);
}

#[tokio::test]
async fn unknown_paths_are_404_and_slow_heads_are_bounded() {
    let relay = lab_relay();
    let a = request(relay.addr(), "GET", "/nope", "").await;
    assert_eq!(a.status_line(), "HTTP/1.0 404 File Not Found");
    assert_eq!(relay.counters().not_found, 1);
    // A head larger than the limit is refused, not buffered.
    let big = format!("X-Big: {}\r\n", "a".repeat(MAX_HEAD_BYTES * 2));
    let mut s = TcpStream::connect(relay.addr()).await.expect("connect");
    let _ = s
        .write_all(format!("GET /floe-slots.xsl HTTP/1.1\r\n{big}\r\n").as_bytes())
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("closed in time");
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
}

#[tokio::test]
async fn down_and_up_again_at_once() {
    let relay = lab_relay();
    for _ in 0..20 {
        relay.set_down(true).expect("down");
        relay
            .set_down(false)
            .expect("the port is free again at once");
    }
    slots(&relay).await;
}
