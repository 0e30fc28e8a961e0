//! The HTTPS door (`[http] tls_listen`) against the real binary: real
//! `curl --cacert` over HTTP/1.1 and HTTP/2 gets the 302; the SNI name
//! picks the certificate; a client that never finishes its handshake is
//! closed after `header_timeout`, garbage instead of a ClientHello is
//! closed, an idle HTTP/2 connection is closed after `header_timeout`;
//! `floe check` refuses an expired certificate and a key of another; a
//! certificate replaced on disk is served after a reload (SIGHUP or the
//! file watch), a broken one keeps the last good one and shows on
//! `/status` and `/metrics`; listeners over TLS go to relays' `https_url`
//! (drawn among the relays with one), playlists over TLS point at https; a
//! returning client resumes its session on any worker, after many other
//! clients and after a reload.
//!
//! Certificates are made in the test with `rcgen` (self-signed: each is its
//! own CA for `curl --cacert`).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::curl::curl_https;
use support::floe::FloeProcess;
use support::{TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(10);

/// A self-signed certificate for `names`, valid from `from` to `until`
/// (years), written as `<stem>.crt` and `<stem>.key` in `dir`.
fn certificate(
    dir: &Path,
    stem: &str,
    names: &[&str],
    from: i32,
    until: i32,
) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A valid certificate for `names` (2020 to 2100).
fn valid(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    certificate(dir, stem, names, 2020, 2100)
}

/// The `[[http.tls_certificate]]` tables of `certs`.
fn cert_tables(certs: &[&(PathBuf, PathBuf)]) -> String {
    certs
        .iter()
        .map(|(c, k)| {
            format!(
                "[[http.tls_certificate]]\ncert = {:?}\nkey = {:?}\n",
                c.display().to_string(),
                k.display().to_string()
            )
        })
        .collect()
}

/// What keeps the simulated relay running.
type Relay = (floe::demo::sim::SimRelay, tokio::runtime::Runtime);

/// The `https_url` line [`start`] gives its relay.
const HTTPS_URL: &str = "https_url = \"https://relay-1.example.org:8443\"";

/// floe with a TLS listener serving `certs`, one relay (with an
/// `https_url`), and `extra` `[http]` keys.
fn start(certs: &[&(PathBuf, PathBuf)], extra: &[(&'static str, &str)]) -> (FloeProcess, Relay) {
    start_with(certs, extra, HTTPS_URL)
}

/// [`start`] with `relay_lines` in the relay's table (e.g. its `https_url`).
fn start_with(
    certs: &[&(PathBuf, PathBuf)],
    extra: &[(&'static str, &str)],
    relay_lines: &str,
) -> (FloeProcess, Relay) {
    let rt = runtime();
    let guard = rt.enter();
    let relay = sim_relay("relay-1", Some(100), None);
    let mut config = TestConfig::new()
        .set("http", "tls_listen", "[\"127.0.0.1:0\"]")
        .set("http", "diagnostics_from", "[\"127.0.0.0/8\"]")
        .set("select", "grants_per_client", "1000")
        .relay(&relay, relay_lines);
    for (key, value) in extra {
        config = config.set("http", key, value);
    }
    let text = config.render() + &cert_tables(certs);
    let floe = FloeProcess::start(&text);
    drop(guard);
    floe.wait_healthy(T);
    floe.wait_status(T, "relay up", |s| s["relays"][0]["state"] == "up");
    (floe, (relay, rt))
}

#[test]
fn curl_gets_the_redirect_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let one = valid(dir.path(), "one", &["stream.example.org"]);
    let (floe, _relay) = start(&[&one], &[]);
    let addr = floe.tls_http();
    for (version, line) in [("--http1.1", "HTTP/1.1 302"), ("--http2", "HTTP/2 302")] {
        let (code, head, err) =
            curl_https(addr, "stream.example.org", &one.0, "/live.ogg", &[version]);
        assert_eq!(code, 0, "curl {version}: {err}");
        assert!(head.starts_with(line), "curl {version}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("\nlocation: https://relay-1.example.org:8443/live.ogg"),
            "curl {version}: {head}"
        );
    }
    // The plain door still sends to the relay's url.
    let plain = floe.get("/live.ogg");
    assert_eq!(plain.status, 302);
    assert!(plain.header("location").unwrap().starts_with("http://"));
    // A playlist fetched over TLS points back at the HTTPS address.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("stream.example.org:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(&one.0)
        .arg(format!(
            "https://stream.example.org:{}/live.ogg.m3u",
            addr.port()
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(&format!(
            "https://stream.example.org:{}/live.ogg",
            addr.port()
        )),
        "{body}"
    );
    // /explain names both URLs.
    let explain = String::from_utf8(floe.get("/explain/live.ogg").body).unwrap();
    assert!(
        explain.contains("over https: https://relay-1.example.org:8443"),
        "{explain}"
    );
}

#[test]
fn the_sni_name_picks_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let one = valid(dir.path(), "one", &["one.example.org"]);
    let two = valid(dir.path(), "two", &["two.example.org", "*.cdn.example.org"]);
    let (floe, _relay) = start(&[&one, &two], &[]);
    let addr = floe.tls_http();
    // Each name verifies only against its own certificate.
    for (name, right, wrong) in [
        ("one.example.org", &one.0, &two.0),
        ("two.example.org", &two.0, &one.0),
        ("edge.cdn.example.org", &two.0, &one.0),
    ] {
        let (code, head, err) = curl_https(addr, name, right, "/live.ogg", &[]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(head.contains(" 302"), "{name}: {head}");
        let (code, _, err) = curl_https(addr, name, wrong, "/live.ogg", &[]);
        assert_ne!(
            code, 0,
            "{name} verified against the wrong certificate: {err}"
        );
    }
    // Without SNI, the first certificate.
    let first = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&one.0)
        .output()
        .unwrap();
    let served = served_fingerprint(addr, None);
    assert_eq!(
        served,
        String::from_utf8_lossy(&first.stdout).trim(),
        "no SNI: the first certificate"
    );
}

/// The SHA-256 fingerprint line (`openssl x509 -fingerprint`) of the
/// certificate floe serves at `addr` for SNI `name` (`None`: no SNI).
fn served_fingerprint(addr: SocketAddr, name: Option<&str>) -> String {
    let mut s_client = Command::new("openssl");
    s_client
        .args(["s_client", "-connect"])
        .arg(addr.to_string());
    match name {
        Some(n) => s_client.args(["-servername", n]),
        None => s_client.arg("-noservername"),
    };
    let out = s_client
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is needed (tests/run installs it)");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let fp = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&fp.stdout).trim().to_string()
}

/// Reads until floe closes (or `T`): what came back and how long it took.
fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(T)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (out, start.elapsed())
}

#[test]
fn a_handshake_not_finished_in_header_timeout_is_closed_and_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let one = valid(dir.path(), "one", &["stream.example.org"]);
    let (floe, _relay) = start(&[&one], &[("header_timeout", "\"1s\"")]);
    let addr = floe.tls_http();
    // Both held from here.
    let start = Instant::now();
    // Silent after connecting.
    let mut silent = TcpStream::connect(addr).unwrap();
    // The start of a ClientHello (a TLS record header promising 512 bytes),
    // then nothing.
    let mut partial = TcpStream::connect(addr).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    for (what, s) in [
        ("silent", &mut silent),
        ("half a ClientHello", &mut partial),
    ] {
        until_closed(s);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(4),
            "{what}: closed {took:?} after connecting, header_timeout is 1s"
        );
    }
    // Plain HTTP on the TLS port: closed at once (at most an alert back).
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .write_all(b"GET /live.ogg HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (back, took) = until_closed(&mut plain);
    assert!(took < Duration::from_millis(800), "garbage held {took:?}");
    assert!(!back.starts_with(b"HTTP/"), "no HTTP answer without TLS");
    // And floe still serves.
    let (code, head, err) = curl_https(addr, "stream.example.org", &one.0, "/live.ogg", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(head.contains(" 302"), "{head}");
}

/// floe with a TLS listener serving `cert`, relay-1 with an `https_url`
/// (drained if `drain_https`) and relay-2 without one.
fn start_mixed(cert: &(PathBuf, PathBuf), drain_https: bool) -> (FloeProcess, Vec<Relay>) {
    let (rt1, rt2) = (runtime(), runtime());
    let one = {
        let _g = rt1.enter();
        sim_relay("relay-1", Some(100), None)
    };
    let two = {
        let _g = rt2.enter();
        sim_relay("relay-2", Some(100), None)
    };
    let drain = if drain_https { "\ndrain = true" } else { "" };
    let text = TestConfig::new()
        .set("http", "tls_listen", "[\"127.0.0.1:0\"]")
        .set("http", "diagnostics_from", "[\"127.0.0.0/8\"]")
        .set("select", "grants_per_client", "1000")
        .relay(&one, &format!("{HTTPS_URL}{drain}"))
        .relay(&two, "")
        .render()
        + &cert_tables(&[cert]);
    let floe = FloeProcess::start(&text);
    floe.wait_healthy(T);
    floe.wait_status(T, "relays polled", |s| {
        s["relays"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "up")
    });
    (floe, vec![(one, rt1), (two, rt2)])
}

/// The `Location` (or the status line and body) curl gets over TLS.
fn tls_get(addr: SocketAddr, ca: &Path, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "--resolve"])
        .arg(format!("stream.example.org:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://stream.example.org:{}{path}", addr.port()))
        .output()
        .expect("curl is needed (tests/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn listeners_over_tls_are_drawn_among_relays_with_an_https_url_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = valid(dir.path(), "one", &["stream.example.org"]);
    let (floe, _relays) = start_mixed(&cert, false);
    let addr = floe.tls_http();
    for _ in 0..20 {
        let answer = tls_get(addr, &cert.0, "/live.ogg");
        assert!(
            answer.contains("location: https://relay-1.example.org:8443/live.ogg"),
            "{answer}"
        );
    }
    let explain = String::from_utf8(floe.get("/explain/live.ogg").body).unwrap();
    assert!(
        explain.contains("over https: not drawn (no https_url"),
        "{explain}"
    );
    // Plain HTTP still reaches both.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(
            floe.get("/live.ogg")
                .header("x-floe-relay")
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn no_https_relay_with_room_is_a_503_unless_plain_http_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let cert = valid(dir.path(), "one", &["stream.example.org"]);
    // The HTTPS relay drained: relay-2 has room, but no https_url.
    let (floe, _relays) = start_mixed(&cert, true);
    let addr = floe.tls_http();
    let answer = tls_get(addr, &cert.0, "/live.ogg");
    assert!(answer.starts_with("HTTP/2 503"), "{answer}");
    assert!(answer.contains("no https_url"), "{answer}");
    let metrics = String::from_utf8(floe.get("/metrics").body).unwrap();
    assert!(metrics.contains("reason=\"no-https\""), "{metrics}");
    assert_eq!(floe.get("/live.ogg").status, 302, "plain HTTP still served");
    drop(floe);

    let (floe, _relay) = start_with(&[&cert], &[("tls_redirect_to_http", "true")], "");
    let addr = floe.tls_http();
    let (code, head, err) = curl_https(addr, "stream.example.org", &cert.0, "/live.ogg", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(head.starts_with("HTTP/2 302"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\nlocation: http://"),
        "{head}"
    );
}

/// `floe check`: the exit code and everything it printed.
fn check(config: &Path) -> (i32, String) {
    let (code, stdout, stderr) = support::floe::floe_check(config);
    (code, stdout + &stderr)
}

/// A config file in `dir` with a TLS listener and `certs`, for `floe check`.
fn check_config(dir: &Path, certs: &[&(PathBuf, PathBuf)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::copy(
        support::floe::example_zone(),
        dir.join("zones/stream.example.org.zone"),
    )
    .unwrap();
    let text = TestConfig::new()
        .set("http", "tls_listen", "[\"127.0.0.1:0\"]")
        .table(
            "[[relay]]\nname = \"r\"\nurl = \"http://127.0.0.1:8000\"\naddresses = [\"127.0.0.1\"]\nstatus = { kind = \"xslt\" }\n",
        )
        .render()
        + &cert_tables(certs);
    let path = dir.join("floe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn floe_check_refuses_expired_and_mismatched_certificates_and_warns_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = valid(d, "good", &["good.example.org"]);
    let (code, out) = check(&check_config(d, &[&good]));
    assert_eq!(code, 0, "{out}");

    let expired = certificate(d, "old", &["old.example.org"], 2019, 2020);
    let (code, out) = check(&check_config(d, &[&good, &expired]));
    assert_ne!(code, 0, "{out}");
    // The cert key of the second table: floe.toml:LINE:COL.
    assert!(
        out.contains("floe.toml:") && out.contains("old.crt (old.example.org) expired"),
        "{out}"
    );

    let mismatched = (good.0.clone(), expired.1.clone());
    let (code, out) = check(&check_config(d, &[&mismatched]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("old.key is not the private key of the certificate in"),
        "{out}"
    );

    let missing = (d.join("nope.crt"), d.join("nope.key"));
    let (code, out) = check(&check_config(d, &[&missing]));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("nope.crt"), "{out}");

    std::fs::write(d.join("junk.crt"), "not a certificate").unwrap();
    let junk = (d.join("junk.crt"), good.1.clone());
    let (code, out) = check(&check_config(d, &[&junk]));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("junk.crt: no PEM certificate"), "{out}");

    // Expiring within 14 days: a warning, not an error.
    let soon = {
        let mut params =
            rcgen::CertificateParams::new(vec!["soon.example.org".to_string()]).unwrap();
        let now = time_now();
        params.not_before = now - time::Duration::days(80);
        params.not_after = now + time::Duration::days(5);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (d.join("soon.crt"), d.join("soon.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let (code, out) = check(&check_config(d, &[&soon]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning") && out.contains("expires in"),
        "{out}"
    );

    // tls_listen without a certificate.
    let (code, out) = check(&check_config(d, &[]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("tls_listen needs at least one [[http.tls_certificate]]"),
        "{out}"
    );
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[test]
fn a_certificate_replaced_on_disk_is_served_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let first = valid(dir.path(), "site", &["stream.example.org"]);
    let before = std::fs::read(&first.0).unwrap();
    let (floe, _relay) = start(&[&first], &[]);
    let addr = floe.tls_http();
    let old = served_fingerprint(addr, Some("stream.example.org"));
    // A renewal: new certificate and key written over the old files.
    let renewed = valid(dir.path(), "site", &["stream.example.org"]);
    assert_ne!(std::fs::read(&renewed.0).unwrap(), before);
    floe.signal("HUP");
    let deadline = Instant::now() + T;
    loop {
        let now = served_fingerprint(addr, Some("stream.example.org"));
        if now != old {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, head, err) = curl_https(addr, "stream.example.org", &renewed.0, "/live.ogg", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(head.contains(" 302"), "{head}");
}

#[test]
fn a_renewed_certificate_is_served_without_a_signal_and_a_broken_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let first = valid(dir.path(), "site", &["stream.example.org"]);
    let (floe, _relay) = start(&[&first], &[]);
    let addr = floe.tls_http();
    let old = served_fingerprint(addr, Some("stream.example.org"));
    let metrics = String::from_utf8(floe.get("/metrics").body).unwrap();
    let file = first.0.display().to_string();
    let labels = [("name", "stream.example.org"), ("file", file.as_str())];
    let expiry = support::prom::value(&metrics, "floe_tls_cert_expiry_seconds", &labels);
    // 2100-01-01T00:00:00Z.
    assert_eq!(expiry, Some(4_102_444_800.0), "{metrics}");
    let status = floe.status();
    let cert = &status["tls_certificates"][0];
    assert_eq!(cert["names"][0], "stream.example.org", "{status}");
    assert!(cert["days_left"].as_i64().unwrap() > 365 * 70, "{status}");
    let page = String::from_utf8(floe.get("/status").body).unwrap();
    assert!(page.contains("TLS certificate"), "{page}");

    // Renewed in place: the file watch reloads it.
    let renewed = certificate(dir.path(), "site", &["stream.example.org"], 2021, 2099);
    let deadline = Instant::now() + T;
    let mut now = old.clone();
    while now == old {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(100));
        now = served_fingerprint(addr, Some("stream.example.org"));
    }
    let status = floe.wait_status(T, "the renewal reported", |s| {
        s["tls_certificates"][0]["not_after"]
            .as_str()
            .is_some_and(|t| t.starts_with("2099"))
    });
    assert!(status["reload"]["last_error"].is_null(), "{status}");

    // Broken (a key of another certificate): the renewed one stays, the
    // failure shows on /status and in /metrics.
    let other = valid(dir.path(), "other", &["stream.example.org"]);
    std::fs::copy(&other.1, &renewed.1).unwrap();
    let status = floe.wait_status(T, "the failed reload reported", |s| {
        !s["reload"]["last_error"].is_null()
    });
    let message = status["reload"]["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is not the private key of the certificate"),
        "{message}"
    );
    let metrics = String::from_utf8(floe.get("/metrics").body).unwrap();
    assert_eq!(
        support::prom::value(&metrics, "floe_reload_failed", &[]),
        Some(1.0)
    );
    assert_eq!(served_fingerprint(addr, Some("stream.example.org")), now);
    let (code, head, err) = curl_https(addr, "stream.example.org", &renewed.0, "/live.ogg", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(head.contains(" 302"), "{head}");
}

/// A TLS client (rustls, ALPN `h2`) trusting `ca`, connected to `addr` as
/// `name`.
fn h2_client(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = client_config(ca, b"h2");
    let conn = rustls::ClientConnection::new(config, name.to_string().try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap())
}

#[test]
fn an_idle_http2_connection_is_closed_after_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let one = valid(dir.path(), "one", &["stream.example.org"]);
    let (floe, _relay) = start(&[&one], &[("header_timeout", "\"1s\"")]);
    let mut tls = h2_client(floe.tls_http(), "stream.example.org", &one.0);
    // The preface, an empty SETTINGS, and GET /healthz on stream 1 (HPACK:
    // :method GET, :scheme https, :path and :authority as literals).
    let mut block = vec![0x82, 0x87, 0x44, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 1, b'x']);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let len = block.len();
    out.extend_from_slice(&[0, 0, len as u8, 1, 0x05, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    tls.write_all(&out).unwrap();
    tls.flush().unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    // Then nothing: floe answers, and closes once idle for 1 s (a GOAWAY;
    // this client answers no PING, so the close takes up to another 1 s),
    // not at max_connection_age (60 s).
    let start = Instant::now();
    tls.sock.set_read_timeout(Some(T)).unwrap();
    let mut back = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e} after {:?}", start.elapsed()),
        }
    }
    let took = start.elapsed();
    // A HEADERS frame (type 1) on stream 1 came back: the answer.
    let answered = back
        .windows(9)
        .any(|f| f[3] == 1 && f[5..9] == [0, 0, 0, 1]);
    assert!(answered, "no answer in {} bytes", back.len());
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "idle HTTP/2 connection closed after {took:?}; header_timeout is 1s"
    );
}

/// One `GET /healthz` (`Connection: close`; a 302 would take a grant of
/// the relay's 100 slots each) over a new connection to `addr` as `name`
/// with the rustls client `config` (its session store keeps the tickets
/// floe sends): whether floe resumed the session. The answer must be a 200.
fn resumed_get(
    addr: SocketAddr,
    name: &str,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> bool {
    let conn = rustls::ClientConnection::new(config.clone(), name.to_string().try_into().unwrap())
        .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("read: {e}"),
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

/// A rustls client config trusting `ca`, ALPN `http/1.1`, keeping the
/// session tickets it is given.
fn resuming_client(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    client_config(ca, b"http/1.1")
}

/// A rustls client config (ring) trusting only `ca`, offering ALPN `alpn`.
fn client_config(ca: &Path, alpn: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    std::sync::Arc::new(config)
}

#[test]
fn a_returning_client_resumes_on_any_worker_after_other_clients_and_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cert = valid(dir.path(), "site", &["stream.example.org"]);
    let (floe, _relay) = start(&[&cert], &[("workers", "4")]);
    let addr = floe.tls_http();
    let name = "stream.example.org";
    let returning = resuming_client(&cert.0);
    assert!(
        !resumed_get(addr, name, &returning),
        "the first handshake is a full one"
    );
    // Its next connections go to any of the 4 workers (SO_REUSEPORT spreads
    // them by address and port): every one resumes.
    for i in 0..12 {
        assert!(
            resumed_get(addr, name, &returning),
            "reconnection {i} not resumed"
        );
    }
    // 300 other clients in between (600 tickets: more than a 256-session
    // cache holds), then a reload (the listeners' rustls configs are
    // rebuilt): it still resumes.
    for _ in 0..300 {
        assert!(!resumed_get(addr, name, &resuming_client(&cert.0)));
    }
    let reloads = || {
        let metrics = String::from_utf8(floe.get("/metrics").body).unwrap();
        support::prom::value(&metrics, "floe_reloads_total", &[("result", "success")])
            .unwrap_or(0.0)
    };
    let before = reloads();
    floe.signal("HUP");
    let deadline = Instant::now() + T;
    while reloads() <= before {
        assert!(Instant::now() < deadline, "no reload after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..12 {
        assert!(
            resumed_get(addr, name, &returning),
            "reconnection {i} after 300 other clients and a reload not resumed"
        );
    }
}
