//! One poll of one relay: an HTTP GET of its status page turned into a
//! [`PollOutcome`]. The only network I/O of the poller.

use crate::config::StatusConfig;
use crate::health::{PollFailure, PollOutcome};
use std::time::Duration;

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
            .user_agent(concat!(
                "floe/",
                env!("CARGO_PKG_VERSION"),
                " (Icecast load balancer)"
            ))
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

/// Polls `target` once. Never fails: every problem becomes
/// [`PollOutcome::Failed`] with a reason a person can act on.
pub async fn poll(client: &reqwest::Client, target: &PollTarget, timeout: Duration) -> PollOutcome {
    let mut req = client.get(&target.url);
    if let Some(c) = &target.status.credentials {
        req = req.basic_auth(&c.user, Some(c.password()));
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return PollOutcome::Failed(describe(&e, timeout)),
    };
    let code = resp.status();
    let mut body = Vec::new();
    let read = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY => {
                break Err(PollFailure::Body(format!(
                    "status body larger than {} MiB",
                    MAX_BODY >> 20
                )));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(describe(&e, timeout)),
        }
    };
    if code == reqwest::StatusCode::FORBIDDEN {
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
