//! Web players in a real browser: headless Chromium (driven by
//! chromedriver) loads HTTPS pages from an origin of their own
//! (`player.test`), and plays and reads `https://stream.test/...` (floe's
//! TLS door) through floe's `302` to a real Icecast 2.4.4 relay serving TLS
//! with `<ssl-certificate>` (`relay.test`), fed by ffmpeg. Every
//! certificate comes from a test CA that Chromium trusts through an NSS
//! database, as a person's browser trusts a root: no certificate error is
//! ignored.
//!
//! - `<audio>` plays the Ogg Vorbis stream: playback advances past 2.5 s
//!   and the relay counts the listener.
//! - `fetch()` reads the MP3 stream through the 302 (a CORS request whose
//!   origin becomes `null` after the cross-origin redirect; Icecast's
//!   `Access-Control-Allow-Origin: *` admits it) and gets audio bytes.
//! - `fetch()` with `Icy-MetaData: 1` (what players that show the title
//!   send) passes floe's preflight and gets floe's 302, and then fails at
//!   the relay: Icecast 2.4.4 cannot parse an `OPTIONS` request ("HTTP
//!   request parsing failed" in its error.log) and closes the connection
//!   without an answer, so the browser's preflight to the relay fails
//!   (`net::ERR_EMPTY_RESPONSE`), through floe or straight to the relay
//!   alike. A web player can therefore not read `icy-metaint` from an
//!   Icecast 2.4.4 relay on another origin by itself; see
//!   docs/operations.md, "What web players need".
//! - With nginx in front of the relay answering its preflights (and the
//!   relay exposing its ICY headers), the same `fetch()` through floe gets
//!   the stream and `icy-metaint`.
//! - With no relay that has an `https_url` (and `tls_redirect_to_http =
//!   false`), floe answers `503` and the page's `<audio>` fails with an
//!   error event instead of being sent to a plain-HTTP stream the browser
//!   would block as mixed content. A page whose certificate is not from the
//!   test CA gets Chromium's `ERR_CERT_AUTHORITY_INVALID` page: the trust
//!   is real.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::browser::Browser;
use support::cors_proxy::CorsProxy;
use support::floe::FloeProcess;
use support::pages::{Page, PageServer};
use support::pki::{Issued, TestCa};
use support::prom;
use support::{IcecastRelay, Lab, RelaySpec, TestConfig, runtime, sim_relay};

const T: Duration = Duration::from_secs(30);
/// The page's origin, floe's HTTPS name and the relay's: three origins.
const PAGE_HOST: &str = "player.test";
const FLOE_HOST: &str = "stream.test";
const RELAY_HOST: &str = "relay.test";

/// The ICY headers a relay exposes to scripts for web players
/// (`Access-Control-Expose-Headers`).
const ICY_EXPOSED: &str = "icy-metaint, icy-name, icy-description, icy-genre, icy-br, icy-url";

/// The player page: an `<audio>` element that records its media events
/// (name, milliseconds since the page started playing, `currentTime`).
const PLAYER: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>floe web player</title></head>
<body>
<audio id="player" controls></audio>
<script>
window.floeEvents = [];
window.floeStart = performance.now();
const a = document.getElementById('player');
for (const e of ['loadstart', 'loadedmetadata', 'canplay', 'playing', 'waiting',
                 'stalled', 'error', 'abort', 'emptied', 'ended']) {
  a.addEventListener(e, () => floeEvents.push(
    e + '@' + Math.round(performance.now() - floeStart) + 'ms/' + a.currentTime.toFixed(2)));
}
</script>
</body></html>
"#;

/// Plays `arguments[0]` in the player page and waits until `currentTime`
/// passes `arguments[1]` seconds, the player reports an error, or
/// `arguments[2]` ms pass; returns what it saw. (Set from a script after
/// the page loaded: a `src` in the page would hold its load event, and
/// WebDriver's navigation, until the stream has started.)
const PLAY_AND_WAIT: &str = r#"
const [src, seconds, limit, done] = arguments;
const a = document.getElementById('player');
window.floeStart = performance.now();
a.src = src;
a.play().catch(e => floeEvents.push('play() rejected: ' + e.name + ': ' + e.message));
(function check() {
  const waited = performance.now() - floeStart;
  const seen = {
    currentTime: a.currentTime, currentSrc: a.currentSrc, paused: a.paused,
    readyState: a.readyState, networkState: a.networkState,
    error: a.error && { code: a.error.code, message: a.error.message },
    events: window.floeEvents, waitedMs: Math.round(waited),
  };
  if (a.currentTime > seconds || a.error || waited > limit) {
    done(seen);
  } else {
    setTimeout(check, 100);
  }
})();
"#;

/// The fetch page: `readStream(url, headers, bytes, limitMs)` reads up to
/// `bytes` of a stream with `fetch()` and tells what it got.
const FETCHER: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>floe fetch reader</title></head>
<body>
<script>
window.readStream = async (url, headers, want, limit) => {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), limit);
  const out = { url };
  try {
    const r = await fetch(url, { headers, signal: ctl.signal, cache: 'no-store' });
    out.status = r.status;
    out.redirected = r.redirected;
    out.finalUrl = r.url;
    out.contentType = r.headers.get('content-type');
    out.metaint = r.headers.get('icy-metaint');
    out.headers = [...r.headers.keys()];
    let bytes = 0;
    const reader = r.body.getReader();
    while (bytes < want) {
      const { done, value } = await reader.read();
      if (done) break;
      if (bytes === 0) out.firstBytes = Array.from(value.slice(0, 4));
      bytes += value.length;
    }
    out.bytes = bytes;
    reader.cancel().catch(() => {});
  } catch (e) {
    out.error = e.name + ': ' + e.message;
  }
  clearTimeout(timer);
  return out;
};
</script>
</body></html>
"#;

/// Runs `readStream` in the fetch page.
fn read_stream(browser: &Browser, url: &str, headers: Value, bytes: u64) -> Value {
    browser.run_async(
        "const [url, headers, want, limit, done] = arguments; \
         readStream(url, headers, want, limit).then(done);",
        vec![json!(url), headers, json!(bytes), json!(20_000)],
        Duration::from_secs(20),
    )
}

/// The pages' server and a browser trusting `ca`.
fn browser_and_pages(ca: &TestCa, page_cert: &Issued) -> (PageServer, Browser) {
    let pages = PageServer::start(
        page_cert,
        PAGE_HOST,
        vec![
            ("/player.html", Page::html(PLAYER)),
            ("/fetch.html", Page::html(FETCHER)),
        ],
    );
    let browser = Browser::start(ca.pem(), &[PAGE_HOST, FLOE_HOST, RELAY_HOST]);
    (pages, browser)
}

/// floe's `[[http.tls_certificate]]` table for `cert`.
fn cert_table(cert: &Issued) -> String {
    format!(
        "[[http.tls_certificate]]\ncert = {:?}\nkey = {:?}\n",
        cert.cert.display().to_string(),
        cert.key.display().to_string()
    )
}

/// floe with a TLS listener (`cert`) and one relay, `relay`, polled on
/// its plain port; listeners that came over TLS go to `https_url`.
fn floe_for(relay: &IcecastRelay, https_url: &str, cert: &Issued) -> FloeProcess {
    let config = TestConfig::new()
        .set("http", "tls_listen", "[\"127.0.0.1:0\"]")
        .set("http", "diagnostics_from", "[\"127.0.0.0/8\"]")
        .table(&format!(
            "[[relay]]\nname = \"{}\"\nurl = \"{}\"\nhttps_url = \"{https_url}\"\n\
             addresses = [\"127.0.0.1\"]\nstatus = {{ kind = \"xslt\" }}\n",
            relay.name(),
            relay.base_url()
        ))
        .render()
        + &cert_table(cert);
    let floe = FloeProcess::start(&config);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    floe
}

/// `floe_redirects_total` summed over the samples with these labels.
fn redirects(floe: &FloeProcess, labels: &[(&str, &str)]) -> f64 {
    let text = String::from_utf8_lossy(&floe.get("/metrics").body).into_owned();
    prom::samples(&text)
        .into_iter()
        .filter(|(name, l, _)| {
            name == "floe_redirects_total"
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
        .sum()
}

/// Waits until `floe_redirects_total{labels}` sums to `n` (`/metrics` is
/// rendered at most once a second, so a new count shows up to a second
/// late); panics with the last sum and `context()`.
fn wait_redirects(
    floe: &FloeProcess,
    labels: &[(&str, &str)],
    n: f64,
    context: impl Fn() -> String,
) {
    let mut last = 0.0;
    let reached = support::poll(Duration::from_secs(5), Duration::from_millis(100), || {
        last = redirects(floe, labels);
        (last == n).then_some(())
    });
    if reached.is_none() {
        panic!(
            "floe_redirects_total{labels:?} is {last}, expected {n}\n{}",
            context()
        );
    }
}

/// Lines of Icecast's error.log saying a request could not be parsed.
fn unparsed_requests(relay_dir: &Path) -> usize {
    std::fs::read_to_string(relay_dir.join("log/error.log"))
        .unwrap_or_default()
        .matches("HTTP request parsing failed")
        .count()
}

#[test]
fn an_https_page_plays_and_reads_the_stream_through_floe_and_icecast() {
    let dir = support::procs::temp_dir("floe-browser-pki-");
    let ca = TestCa::new(dir.path(), "floe test CA");
    let relay_cert = ca.issue("relay", &[RELAY_HOST]);
    let floe_cert = ca.issue("floe", &[FLOE_HOST]);
    let page_cert = ca.issue("page", &[PAGE_HOST]);

    let lab = Lab::start(vec![
        RelaySpec::new("r1")
            .mount("/live.ogg", None)
            .mount("/live.mp3", None)
            .tls(&relay_cert.combined),
    ]);
    let relay = lab.relay(0);
    // The relay's own TLS socket.
    let relay_https = relay.https_url(RELAY_HOST);
    let floe = floe_for(relay, &relay_https, &floe_cert);
    let floe_https = format!("https://{FLOE_HOST}:{}", floe.tls_http().port());

    let (pages, browser) = browser_and_pages(&ca, &page_cert);

    // 1. <audio> plays https://stream.test/live.ogg through floe's 302.
    let ogg = format!("{floe_https}/live.ogg");
    browser.goto(&pages.url("/player.html"));
    assert_eq!(
        pages.requests("/player.html"),
        1,
        "the page came from the page server"
    );
    // The source has just started, so the relay's burst holds little:
    // Chromium gets to `loadedmetadata` after ~13 s (straight from the
    // relay alike), against ~1 s once the source has run for 25 s.
    let seen = browser.run_async(
        PLAY_AND_WAIT,
        vec![json!(ogg), json!(2.5), json!(45_000)],
        Duration::from_secs(45),
    );
    eprintln!("<audio> through floe: {seen}");
    assert!(
        seen["error"].is_null() && seen["currentTime"].as_f64().unwrap_or(0.0) > 2.5,
        "<audio> did not play {ogg} past 2.5 s: {seen:#}\nfloe log:\n{}\nrelay: {}\n{}",
        floe.log_text(),
        relay.logs(),
        browser.logs()
    );
    assert_eq!(seen["currentSrc"], json!(ogg), "{seen}");
    // floe sent it (over TLS, so to the https_url: the relay has no other
    // way to get a TLS listener), once, and the relay counts it.
    let ogg_sent = [("mount", "/live.ogg"), ("outcome", "302")];
    wait_redirects(&floe, &ogg_sent, 1.0, || browser.logs());
    relay.wait_for_listeners("/live.ogg", 1, T);
    // Stop: the relay lets the listener go.
    browser.run(
        "const a = document.getElementById('player'); a.pause(); \
         a.removeAttribute('src'); a.load();",
        vec![],
    );
    relay.wait_for_listeners("/live.ogg", 0, T);

    // 2. fetch() reads the MP3 stream through the 302: a CORS request,
    //    no preflight (no custom header).
    browser.goto(&pages.url("/fetch.html"));
    let mp3 = format!("{floe_https}/live.mp3");
    let got = read_stream(&browser, &mp3, json!({}), 32 * 1024);
    eprintln!("fetch() through floe: {got}");
    assert!(
        got["error"].is_null() && got["status"] == 200,
        "fetch({mp3}) failed: {got:#}\n{}",
        browser.logs()
    );
    assert_eq!(got["redirected"], true, "{got}");
    assert_eq!(
        got["finalUrl"],
        json!(format!("{relay_https}/live.mp3")),
        "{got}"
    );
    assert_eq!(got["contentType"], "audio/mpeg", "{got}");
    assert!(got["bytes"].as_u64().unwrap_or(0) >= 32 * 1024, "{got}");
    // Only the CORS-safelisted response headers are readable: Icecast
    // exposes none of its own (no Access-Control-Expose-Headers).
    assert_eq!(got["metaint"], Value::Null, "{got}");
    let mp3_sent = [("mount", "/live.mp3"), ("outcome", "302")];
    wait_redirects(&floe, &mp3_sent, 1.0, || browser.logs());

    // 3. fetch() with Icy-MetaData: 1, as players that show the title do.
    //    floe answers the preflight and the GET; the relay, Icecast 2.4.4,
    //    cannot answer the preflight the browser then sends it.
    let icy = json!({ "Icy-MetaData": "1" });
    let unparsed_before = unparsed_requests(relay.dir());
    let got = read_stream(&browser, &mp3, icy.clone(), 32 * 1024);
    eprintln!("fetch() with Icy-MetaData through floe: {got}");
    // floe's preflight passed: the browser went on to floe's GET (302).
    wait_redirects(&floe, &mp3_sent, 2.0, || {
        format!("{got}\n{}", browser.logs())
    });
    let console = browser.console().join("\n");
    // What Icecast 2.4.4 does: if this starts passing, the relay learnt to
    // answer preflights (a newer Icecast): assert icy-metaint here instead.
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("TypeError")),
        "expected the relay's preflight to fail: {got:#}\n{console}"
    );
    assert!(
        console.contains(&format!("{relay_https}/live.mp3"))
            && console.contains("ERR_EMPTY_RESPONSE"),
        "the browser's log names the relay's empty answer:\n{console}"
    );
    let unparsed = unparsed_requests(relay.dir()) - unparsed_before;
    assert_eq!(
        unparsed,
        1,
        "Icecast logged one request it could not parse (the OPTIONS):\n{}",
        relay.logs()
    );
    // Straight to the relay, without floe: the same.
    let direct = read_stream(&browser, &format!("{relay_https}/live.mp3"), icy, 32 * 1024);
    eprintln!("fetch() with Icy-MetaData to the relay: {direct}");
    assert!(
        direct["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("TypeError")),
        "{direct:#}"
    );
    // No listener is left behind on the relay.
    relay.wait_for_listeners("/live.mp3", 0, T);
}

#[test]
fn fetch_with_icy_metadata_reads_icy_metaint_from_a_relay_that_answers_preflights() {
    let dir = support::procs::temp_dir("floe-browser-pki-");
    let ca = TestCa::new(dir.path(), "floe test CA");
    let relay_cert = ca.issue("relay", &[RELAY_HOST]);
    let floe_cert = ca.issue("floe", &[FLOE_HOST]);
    let page_cert = ca.issue("page", &[PAGE_HOST]);
    // The relay side a title-reading web player needs from Icecast 2.4.4:
    // its ICY headers exposed to scripts (<http-headers>), and its
    // preflights answered by nginx in front (which also serves the TLS).
    let lab = Lab::start(vec![
        RelaySpec::new("r1")
            .mount("/live.mp3", None)
            .header("Access-Control-Expose-Headers", ICY_EXPOSED),
    ]);
    let relay = lab.relay(0);
    let proxy = CorsProxy::start(
        &relay_cert,
        std::net::SocketAddr::new(relay.address(), relay.port()),
    );
    let relay_https = proxy.https_url(RELAY_HOST);
    let floe = floe_for(relay, &relay_https, &floe_cert);
    let mp3 = format!("https://{FLOE_HOST}:{}/live.mp3", floe.tls_http().port());

    let (pages, browser) = browser_and_pages(&ca, &page_cert);
    browser.goto(&pages.url("/fetch.html"));
    let got = read_stream(&browser, &mp3, json!({ "Icy-MetaData": "1" }), 64 * 1024);
    eprintln!("fetch() with Icy-MetaData through floe and nginx: {got}");
    assert!(
        got["error"].is_null() && got["status"] == 200,
        "fetch({mp3}) with Icy-MetaData failed: {got:#}\n{}\n{}\n{}",
        browser.logs(),
        proxy.logs(),
        relay.logs()
    );
    assert_eq!(got["redirected"], true, "{got}");
    assert_eq!(
        got["finalUrl"],
        json!(format!("{relay_https}/live.mp3")),
        "{got}"
    );
    assert_eq!(got["contentType"], "audio/mpeg", "{got}");
    // Icecast's interval of metadata blocks in an MP3 stream.
    assert_eq!(got["metaint"], "16000", "{got}");
    assert!(got["bytes"].as_u64().unwrap_or(0) >= 64 * 1024, "{got}");
    // floe answered its preflight and sent the GET on (one 302); nginx
    // answered the relay's preflight and passed the GET to Icecast.
    wait_redirects(
        &floe,
        &[("mount", "/live.mp3"), ("outcome", "302")],
        1.0,
        || browser.logs(),
    );
    let access = proxy.access_log();
    assert!(
        access.contains("\"OPTIONS /live.mp3 HTTP/1.1\" 204")
            && access.contains("\"GET /live.mp3 HTTP/1.1\" 200"),
        "nginx saw the preflight and the GET:\n{access}"
    );
    relay.wait_for_listeners("/live.mp3", 0, T);
}

#[test]
fn an_https_page_gets_no_plain_http_relay() {
    let dir = support::procs::temp_dir("floe-browser-pki-");
    let ca = TestCa::new(dir.path(), "floe test CA");
    let floe_cert = ca.issue("floe", &[FLOE_HOST]);
    let page_cert = ca.issue("page", &[PAGE_HOST]);
    let rt = runtime();
    let guard = rt.enter();
    // Up, with room, but no https_url.
    let relay = sim_relay("plain", None, None);
    let config = TestConfig::new()
        .set("http", "tls_listen", "[\"127.0.0.1:0\"]")
        .set("http", "tls_redirect_to_http", "false")
        .set("http", "diagnostics_from", "[\"127.0.0.0/8\"]")
        .relays(&[&relay])
        .render()
        + &cert_table(&floe_cert);
    let floe = FloeProcess::start(&config);
    drop(guard);
    floe.wait_healthy(T);
    floe.wait_relays_up(T);
    let ogg = format!("https://{FLOE_HOST}:{}/live.ogg", floe.tls_http().port());

    let (pages, browser) = browser_and_pages(&ca, &page_cert);
    browser.goto(&pages.url("/player.html"));
    let seen = browser.run_async(
        PLAY_AND_WAIT,
        vec![json!(ogg), json!(0.5), json!(20_000)],
        Duration::from_secs(20),
    );
    eprintln!("<audio> with no HTTPS relay: {seen}");
    assert!(
        !seen["error"].is_null(),
        "<audio> got no error: {seen:#}\n{}",
        browser.logs()
    );
    assert_eq!(seen["currentTime"], 0.0, "{seen}");
    assert!(
        seen["events"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("error@")))),
        "an error event: {seen}"
    );
    let console = browser.console().join("\n");
    assert!(
        console.contains(&format!(
            "{ogg} - Failed to load resource: the server responded with a status of 503"
        )),
        "the browser saw floe's 503:\n{console}"
    );
    // Chromium asked once, got floe's 503, and gave up.
    wait_redirects(
        &floe,
        &[("outcome", "503"), ("reason", "no-https")],
        1.0,
        || browser.logs(),
    );
    assert_eq!(
        redirects(&floe, &[("outcome", "302")]),
        0.0,
        "no listener was sent to the plain relay"
    );
    // A script on the page can read why (CORS on the 503).
    browser.goto(&pages.url("/fetch.html"));
    let got = read_stream(&browser, &ogg, json!({}), 1);
    assert_eq!(got["status"], 503, "{got:#}\n{}", browser.logs());

    // The browser verifies certificates: one not from the test CA (here
    // self-signed, for the right name) is refused, not ignored.
    let stranger = rcgen::generate_simple_self_signed(vec![PAGE_HOST.to_string()]).unwrap();
    let stranger = Issued::from_parts(
        dir.path(),
        "stranger",
        &stranger.cert,
        &stranger.signing_key,
    );
    let untrusted = PageServer::start(
        &stranger,
        PAGE_HOST,
        vec![("/player.html", Page::html(PLAYER))],
    );
    // Chromium 156 loads its error page (chromedriver reports no error).
    browser.goto(&untrusted.url("/player.html"));
    let shown = browser.run(
        "return [location.href, document.body ? document.body.innerText : ''];",
        vec![],
    );
    assert!(
        shown[0] == "chrome-error://chromewebdata/"
            && shown[1]
                .as_str()
                .is_some_and(|t| t.contains("ERR_CERT_AUTHORITY_INVALID")),
        "a certificate from outside the test CA was not refused: {shown}"
    );
    assert_eq!(untrusted.requests("/player.html"), 0);
}
