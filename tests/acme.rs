//! `[acme]` against the real binary and a real ACME CA: Debian's `pebble`
//! (started here on OS-chosen ports, its own HTTPS certificate signed by a
//! test CA made here and given to floe as `ca_file`).
//!
//! - DNS-01 from nothing: floe obtains a certificate for its zone apex
//!   (the default name), pebble validating through floe's own DNS, and
//!   `curl --cacert <pebble's root>` gets the 302 to the relay's
//!   `https_url`; the state directory is owner-only.
//! - The challenge TXT record is served on UDP and TCP (real `dig`) while
//!   an order runs (pebble's resolver is a socket that never answers, so
//!   the order hangs in validation), and gone after it failed.
//! - HTTP-01: pebble fetches the token from floe's plain HTTP door; bad
//!   tokens are `404`.
//! - Renewal: pebble issues 12-second certificates; floe replaces its own
//!   before they end.
//! - A certificate kept in the state directory is served at once; one due
//!   for renewal while the CA is down keeps being served, the failure is
//!   retried and reported on `/status.json` and `/metrics`, and replaced
//!   once the CA is up.
//! - A directory that answers garbage, or more than 1 MiB, fails the
//!   order, not floe; bad
//!   `[acme]` keys are `file:line:col` diagnostics of `floe check`.
//!
//! PEBBLE_VA_NOSLEEP=1 (no random 0-15 s wait before each validation).
//! PEBBLE_WFE_NONCEREJECT is left at pebble's default (5 % of good nonces
//! refused as bad): instant-acme retries a badNonce answer, and floe
//! retries a failed order, so the tests also prove floe lives with a CA
//! that does this (as RFC 8555 allows).

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::floe::FloeProcess;
use support::{Proc, TestConfig, free_port, poll, require_tool, runtime, sim_relay};

const T: Duration = Duration::from_secs(60);

/// The relay's `https_url` (where a listener over TLS is sent).
const HTTPS_URL: &str = "https://relay-1.example.org:8443";

/// A test CA and the pebble HTTPS certificate it signed (for 127.0.0.1
/// and localhost), written in `dir`: (CA file, cert file, key file).
struct TestCa {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn test_ca(dir: &Path) -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "floe acme test CA");
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let t = TestCa {
        ca: dir.join("test-ca.pem"),
        cert: dir.join("pebble.crt"),
        key: dir.join("pebble.key"),
        issuer,
    };
    std::fs::write(&t.ca, issuer_pem(&t.issuer)).unwrap();
    std::fs::write(&t.cert, leaf.pem()).unwrap();
    std::fs::write(&t.key, key.serialize_pem()).unwrap();
    t
}

fn issuer_pem(i: &CertifiedIssuer<'static, KeyPair>) -> String {
    i.pem()
}

/// A running pebble.
struct Pebble {
    /// Killed on drop.
    _proc: Proc,
    /// Its management port (`/roots/0`).
    management: u16,
    ca: PathBuf,
    log: PathBuf,
}

impl Pebble {
    /// Starts pebble on `port` (ACME) and a free management port, with
    /// `http_port` for HTTP-01, validating DNS-01 through `dns`, issuing
    /// certificates valid for `validity` seconds (0: pebble's default).
    fn start(
        ca: &TestCa,
        dir: &Path,
        port: u16,
        http_port: u16,
        dns: SocketAddr,
        validity: u64,
    ) -> Pebble {
        let pebble = require_tool("pebble");
        let management = free_port();
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": ca.cert,
                "privateKey": ca.key,
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if validity > 0 {
            config["pebble"]["certificateValidityPeriod"] = validity.into();
        }
        let path = dir.join(format!("pebble-{port}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let log = dir.join(format!("pebble-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let proc = Proc::spawn(
            "pebble",
            Command::new(pebble)
                .arg("-config")
                .arg(&path)
                .arg("-dnsserver")
                .arg(dns.to_string())
                .env("PEBBLE_VA_NOSLEEP", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        )
        .expect("pebble runs");
        let p = Pebble {
            _proc: proc,
            management,
            ca: ca.ca.clone(),
            log,
        };
        poll(T, Duration::from_millis(50), || {
            p.get(port, "/dir")
                .filter(|b| b.contains("newOrder"))
                .map(|_| ())
        })
        .unwrap_or_else(|| panic!("pebble not ready; log:\n{}", p.log_text()));
        p
    }

    /// GET `path` on pebble's `port` (trusting the test CA): the body on 200.
    fn get(&self, port: u16, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "--cacert"])
            .arg(&self.ca)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// pebble's issuing root (new each time pebble starts), written to
    /// `path`.
    fn root(&self, path: &Path) -> PathBuf {
        let pem = self
            .get(self.management, "/roots/0")
            .expect("pebble's root");
        std::fs::write(path, pem).unwrap();
        path.to_path_buf()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The directory URL of a pebble on `port`.
fn directory(port: u16) -> String {
    format!("https://127.0.0.1:{port}/dir")
}

/// What keeps the simulated relay running.
type Relay = (floe::demo::sim::SimRelay, tokio::runtime::Runtime);

/// floe with one relay (with an `https_url`), a TLS listener, and
/// `[acme]` lines `acme` (TOML).
fn start_floe(acme: &str) -> (FloeProcess, Relay) {
    let rt = runtime();
    let guard = rt.enter();
    let relay = sim_relay("relay-1", Some(100), None);
    let config = TestConfig::new()
        .set("http", "tls_listen", "[\"127.0.0.1:0\"]")
        .set("http", "diagnostics_from", "[\"127.0.0.0/8\"]")
        .set("select", "grants_per_client", "1000")
        .lines("acme", acme)
        .relay(&relay, &format!("https_url = \"{HTTPS_URL}\""));
    let floe = FloeProcess::start(&config.render());
    drop(guard);
    floe.wait_healthy(T);
    floe.wait_status(T, "relay up", |s| s["relays"][0]["state"] == "up");
    (floe, (relay, rt))
}

/// The `[acme]` lines for a pebble on `port`.
fn acme_lines(port: u16, ca: &TestCa, state: &Path, extra: &str) -> String {
    format!(
        "directory = {:?}\ncontact = [\"mailto:ops@example.org\"]\nstate_dir = {:?}\nca_file = {:?}\nretry_min = \"1s\"\nretry_max = \"2s\"\n{extra}",
        directory(port),
        state.display().to_string(),
        ca.ca.display().to_string(),
    )
}

/// `/status.json`'s entry for ACME name `name`.
fn acme_name<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["acme"]["names"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Waits until ACME name `name` is `state` (and `f` holds of its entry).
fn wait_acme(floe: &FloeProcess, name: &str, state: &str, f: impl Fn(&Value) -> bool) -> Value {
    floe.wait_status(T, &format!("ACME {name} {state}"), |s| {
        let n = acme_name(s, name);
        n["state"] == state && f(n)
    })
}

/// `curl` over HTTPS to `name` at floe's TLS address trusting `ca`: exit
/// code, and the response head followed by curl's messages.
fn curl_https(floe: &FloeProcess, name: &str, ca: &Path, path: &str) -> (i32, String) {
    let (code, head, err) = support::curl::curl_https(floe.tls_http(), name, ca, path, &[]);
    (code, head + &err)
}

/// Asserts curl trusting `ca` gets the 302 to the relay's `https_url`.
fn assert_https_redirect(floe: &FloeProcess, name: &str, ca: &Path) {
    let (code, head) = curl_https(floe, name, ca, "/live.ogg");
    assert_eq!(
        code,
        0,
        "curl failed:\n{head}\nfloe log:\n{}",
        floe.log_text()
    );
    assert!(
        head.starts_with("HTTP/2 302") || head.starts_with("HTTP/1.1 302"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: {HTTPS_URL}/live.ogg")),
        "{head}"
    );
}

/// A metric's value in floe's `/metrics` (the line starting `series`).
fn metric(floe: &FloeProcess, series: &str) -> Option<f64> {
    let text = floe.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o777
}

/// `dig` at floe's DNS: the answer's short form, and the status line.
fn dig(floe: &FloeProcess, name: &str, rtype: &str, tcp: bool) -> (String, String) {
    let dns = floe.dns();
    let mut cmd = Command::new(require_tool("dig"));
    cmd.arg(format!("@{}", dns.ip()))
        .args([
            "-p",
            &dns.port().to_string(),
            "+norec",
            "+time=2",
            "+tries=1",
        ])
        .args([name, rtype]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find(|l| l.contains("status:"))
        .unwrap_or("")
        .to_string();
    let answer: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    (answer.join("\n"), status + "\n" + &text)
}

#[test]
fn dns01_from_no_certificate_to_https_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let state = dir.path().join("state/acme");
    let port = free_port();
    // No names: the zone apex floe serves.
    let (floe, _relay) = start_floe(&acme_lines(port, &ca, &state, ""));
    let pebble = Pebble::start(&ca, dir.path(), port, free_port(), floe.dns(), 0);
    let name = "stream.example.org";
    let s = wait_acme(&floe, name, "valid", |_| true);
    let entry = acme_name(&s, name);
    assert_eq!(entry["challenge"], "dns-01");
    assert!(
        entry["not_after"].is_string() && entry["next_attempt"].is_string(),
        "{entry}"
    );
    let root = pebble.root(&dir.path().join("pebble-root.pem"));
    assert_https_redirect(&floe, name, &root);
    // Owner-only state: the directory 0700, the account, chain and key 0600.
    assert_eq!(mode(&state), 0o700);
    for f in [
        "account.json",
        "stream.example.org.crt",
        "stream.example.org.key",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        metric(&floe, "floe_acme_orders_total{result=\"valid\"}"),
        Some(1.0)
    );
    let expiry = format!(
        "floe_tls_cert_expiry_seconds{{name=\"{name}\",file=\"{}\"}}",
        state.join("stream.example.org.crt").display()
    );
    assert!(
        metric(&floe, &expiry).is_some_and(|v| v > 0.0),
        "{}",
        floe.get("/metrics").text()
    );
    assert!(
        floe.get("/status")
            .text()
            .contains("ACME stream.example.org")
    );
    // The challenge is gone once the order is done.
    let (answer, full) = dig(&floe, "_acme-challenge.stream.example.org", "TXT", false);
    assert!(answer.is_empty() && full.contains("NXDOMAIN"), "{full}");
}

#[test]
fn dns01_challenge_is_answered_on_udp_and_tcp_while_the_order_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let port = free_port();
    // pebble's resolver: a socket that never answers, so validation hangs
    // (pebble's DNS timeout) with the challenge live in floe. pebble is up
    // before floe: the first order is the one watched.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _pebble = Pebble::start(
        &ca,
        dir.path(),
        port,
        free_port(),
        silent.local_addr().unwrap(),
        0,
    );
    let (floe, _relay) = start_floe(&acme_lines(
        port,
        &ca,
        &dir.path().join("state"),
        "names = [\"stream.example.org\"]\nretry_min = \"30s\"\nretry_max = \"30s\"",
    ));
    let owner = "_acme-challenge.stream.example.org";
    let (txt, udp) = poll(T, Duration::from_millis(50), || {
        let (answer, full) = dig(&floe, owner, "TXT", false);
        (!answer.is_empty()).then_some((answer, full))
    })
    .unwrap_or_else(|| panic!("no TXT at {owner}; floe log:\n{}", floe.log_text()));
    assert!(
        udp.contains("status: NOERROR") && udp.contains(" aa"),
        "{udp}"
    );
    // One record, TTL 1, a base64url SHA-256 digest (43 characters).
    let fields: Vec<&str> = txt.split_whitespace().collect();
    assert_eq!(
        fields[..4],
        [format!("{owner}.").as_str(), "1", "IN", "TXT"],
        "{txt}"
    );
    let value = fields[4].trim_matches('"');
    assert_eq!(value.len(), 43, "{txt}");
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let (tcp, full) = dig(&floe, owner, "TXT", true);
    assert_eq!(tcp, txt, "{full}");
    // Another type at the name: NODATA with the SOA, not NXDOMAIN.
    let (a, full) = dig(&floe, owner, "A", false);
    assert!(
        a.is_empty() && full.contains("status: NOERROR") && full.contains("SOA"),
        "{full}"
    );
    // The order fails (pebble cannot resolve): the record goes, the
    // failure shows.
    let s = wait_acme(&floe, "stream.example.org", "failed", |n| {
        n["last_error"].is_string()
    });
    assert_eq!(acme_name(&s, "stream.example.org")["failures"], 1);
    let (answer, full) = dig(&floe, owner, "TXT", true);
    assert!(answer.is_empty() && full.contains("NXDOMAIN"), "{full}");
    assert_eq!(
        metric(&floe, "floe_acme_orders_total{result=\"failed\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &floe,
            "floe_acme_name_state{name=\"stream.example.org\",state=\"failed\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn http01_through_the_plain_http_door() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let port = free_port();
    // The balanced name resolves (through floe's DNS) to relay-1's
    // address, 127.0.0.1, where floe's HTTP door listens too.
    let name = "live.stream.example.org";
    let (floe, _relay) = start_floe(&acme_lines(
        port,
        &ca,
        &dir.path().join("state"),
        &format!("names = [\"{name}\"]\nchallenge = \"http-01\""),
    ));
    // Bad tokens: 404, never a crash.
    for token in [
        "",
        "a/b",
        "..%2f..%2fetc",
        "a.b",
        &"x".repeat(129),
        "%00",
        "nosuchtoken",
    ] {
        let r = floe.get(&format!("/.well-known/acme-challenge/{token}"));
        assert_eq!(r.status, 404, "{token:?}");
    }
    let pebble = Pebble::start(&ca, dir.path(), port, floe.http.port(), floe.dns(), 0);
    let s = wait_acme(&floe, name, "valid", |_| true);
    assert_eq!(acme_name(&s, name)["challenge"], "http-01");
    let root = pebble.root(&dir.path().join("pebble-root.pem"));
    assert_https_redirect(&floe, name, &root);
    assert!(
        pebble
            .log_text()
            .contains("validate w/ HTTP: http://live.stream.example.org:"),
        "{}",
        pebble.log_text()
    );
}

#[test]
fn a_short_lived_certificate_is_renewed_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let port = free_port();
    let (floe, _relay) = start_floe(&acme_lines(
        port,
        &ca,
        &dir.path().join("state"),
        "names = [\"stream.example.org\"]\nrenew_after = 0.5",
    ));
    // 12-second certificates: renewed 6 s into each.
    let pebble = Pebble::start(&ca, dir.path(), port, free_port(), floe.dns(), 12);
    let name = "stream.example.org";
    let first = wait_acme(&floe, name, "valid", |_| true);
    let first_end = acme_name(&first, name)["not_after"].clone();
    let second = wait_acme(&floe, name, "valid", |n| n["not_after"] != first_end);
    assert!(
        acme_name(&second, name)["not_after"].as_str() > first_end.as_str(),
        "{second:#}"
    );
    assert!(metric(&floe, "floe_acme_orders_total{result=\"valid\"}").is_some_and(|n| n >= 2.0));
    let root = pebble.root(&dir.path().join("pebble-root.pem"));
    assert_https_redirect(&floe, name, &root);
}

/// A certificate for `name` signed by `ca`, valid from `from` to `until`
/// seconds from now, written where floe keeps `name`'s certificate.
fn keep_certificate(state: &Path, name: &str, ca: &TestCa, from: i64, until: i64) {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(until);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(state.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(state.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

#[test]
fn a_kept_certificate_is_served_at_once_without_an_order() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let state = dir.path().join("state");
    let name = "stream.example.org";
    // An hour long, ten minutes in: not due for renewal.
    keep_certificate(&state, name, &ca, -600, 3000);
    // No pebble at all: nothing is ordered.
    let (floe, _relay) = start_floe(&acme_lines(free_port(), &ca, &state, ""));
    let s = wait_acme(&floe, name, "valid", |_| true);
    assert!(acme_name(&s, name)["next_attempt"].is_string());
    assert_https_redirect(&floe, name, &ca.ca);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&floe, "floe_acme_orders_total{result=\"failed\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&floe, "floe_acme_orders_total{result=\"valid\"}"),
        Some(0.0)
    );
}

#[test]
fn a_ca_that_is_down_is_retried_while_the_old_certificate_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let state = dir.path().join("state");
    let name = "stream.example.org";
    // Fifty minutes into an hour: past two thirds, due for renewal.
    keep_certificate(&state, name, &ca, -3000, 600);
    let port = free_port();
    let (floe, _relay) = start_floe(&acme_lines(port, &ca, &state, ""));
    // The CA is down: the order fails, is retried, and reported; the kept
    // certificate is served meanwhile.
    let s = wait_acme(&floe, name, "failed", |n| n["failures"].as_u64() >= Some(2));
    let entry = acme_name(&s, name);
    assert!(
        entry["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{entry}"
    );
    assert!(
        entry["next_attempt"].is_string() && entry["not_after"].is_string(),
        "{entry}"
    );
    assert!(metric(&floe, "floe_acme_orders_total{result=\"failed\"}").is_some_and(|n| n >= 2.0));
    assert_eq!(
        metric(
            &floe,
            &format!("floe_acme_name_state{{name=\"{name}\",state=\"failed\"}}")
        ),
        Some(1.0)
    );
    assert_https_redirect(&floe, name, &ca.ca);
    assert!(
        floe.log_text().contains("ACME: order failed"),
        "{}",
        floe.log_text()
    );
    // The CA comes up: the next retry replaces the certificate.
    let pebble = Pebble::start(&ca, dir.path(), port, free_port(), floe.dns(), 0);
    wait_acme(&floe, name, "valid", |n| n["failures"] == 0);
    let root = pebble.root(&dir.path().join("pebble-root.pem"));
    assert_https_redirect(&floe, name, &root);
    let (code, head) = curl_https(&floe, name, &ca.ca, "/live.ogg");
    assert_ne!(code, 0, "the old certificate is still served:\n{head}");
}

#[test]
fn a_directory_that_answers_garbage_fails_the_order_not_floe() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    // An HTTPS server (openssl s_server -WWW, the test CA's certificate)
    // whose "directory" is not ACME.
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("dir"), "{\"newNonce\": 7, garbage").unwrap();
    // And one far larger than any ACME answer (floe reads at most 1 MiB).
    std::fs::write(www.join("big"), vec![b' '; 4 << 20]).unwrap();
    let port = free_port();
    let _server = Proc::spawn(
        "openssl s_server",
        Command::new(require_tool("openssl"))
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &port.to_string(),
                "-cert",
            ])
            .arg(&ca.cert)
            .arg("-key")
            .arg(&ca.key)
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    poll(T, Duration::from_millis(50), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("openssl s_server listens");
    let (floe, _relay) = start_floe(&acme_lines(port, &ca, &dir.path().join("state"), ""));
    let s = wait_acme(&floe, "stream.example.org", "failed", |n| {
        n["failures"].as_u64() >= Some(2)
    });
    let err = acme_name(&s, "stream.example.org")["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(err.contains("JSON") || err.contains("json"), "{err}");
    assert_eq!(floe.get("/healthz").status, 200);
    drop(floe);
    let lines = acme_lines(port, &ca, &dir.path().join("state2"), "")
        .replace(&directory(port), &format!("https://127.0.0.1:{port}/big"));
    let (floe, _relay2) = start_floe(&lines);
    let s = wait_acme(&floe, "stream.example.org", "failed", |_| true);
    let err = acme_name(&s, "stream.example.org")["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(err.contains("length limit exceeded"), "{err}");
    assert_eq!(floe.get("/healthz").status, 200);
}

#[test]
fn bad_acme_keys_are_diagnosed_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::copy(
        support::floe::example_zone(),
        zones.join("stream.example.org.zone"),
    )
    .unwrap();
    let base = "[dns]\nzones = \"zones\"\n[http]\ntls_listen = [\"127.0.0.1:0\"]\n[[relay]]\nname = \"r\"\nurl = \"http://r.example.org:8000\"\naddresses = [\"192.0.2.1\"]\nstatus = { kind = \"icecast-json\" }\nmax_listeners = 10\n[[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "directory = \"http://ca.example/dir\"\nstate_dir = \"s\"",
            "must be an https:// URL",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\ncontact = [\"ops@example.org\"]",
            "must be a mailto: URL",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nchallenge = \"tls-alpn-01\"",
            "is not \"dns-01\" or \"http-01\"",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nrenew_after = 1.5",
            "renew_after is a fraction",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nretry_min = \"1h\"\nretry_max = \"1m\"",
            "shorter than retry_min",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nca_file = \"missing.pem\"",
            "ca_file",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nnames = [\"radio.example.net\"]",
            "not inside any zone",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nnames = [\"*.stream.example.org\"]",
            "wildcard",
        ),
        (
            "directory = \"https://ca.example/dir\"",
            "state_dir is missing",
        ),
        (
            "directory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nsurprise = 1",
            "unknown field",
        ),
    ];
    for (acme, expected) in cases {
        let text = format!("{base}[acme]\n{acme}\n");
        let path = dir.path().join("floe.toml");
        std::fs::write(&path, &text).unwrap();
        let (code, out, err) = support::floe::floe_check(&path);
        let all = out + &err;
        assert_eq!(code, 1, "{acme}\n{all}");
        let line = all
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("no {expected:?} for\n{acme}\n{all}"));
        // file:line:col, the line inside [acme] (line 14 on).
        let at: Vec<&str> = line.splitn(4, ':').collect();
        assert!(at[0].ends_with("floe.toml"), "{line}");
        let n: usize = at[1].parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(n >= 14, "{line}");
        assert!(at[2].parse::<usize>().is_ok_and(|c| c >= 1), "{line}");
    }
    // A name outside the zones is fine with http-01; a good section passes.
    let ok = format!(
        "{base}[acme]\ndirectory = \"https://ca.example/dir\"\nstate_dir = \"s\"\nnames = [\"radio.example.net\"]\nchallenge = \"http-01\"\n"
    );
    let path = dir.path().join("floe.toml");
    std::fs::write(&path, ok).unwrap();
    let (code, out, err) = support::floe::floe_check(&path);
    assert_eq!(code, 0, "{out}{err}");
}
