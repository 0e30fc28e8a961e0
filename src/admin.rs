//! The admin endpoint: drain and undrain relays at runtime, without a
//! reload.
//!
//! `POST /drain/<relay>` and `POST /undrain/<relay>` with
//! `Authorization: Bearer <token>`; `floe drain` is its client. `GET /peer`
//! is what the other instances of the NS set fetch (the peer exchange,
//! [`crate::peers`]), behind the same token and limits. Every
//! request is authenticated first (constant-time comparison with the
//! running config's `[admin]` token, so a reload can rotate it), before
//! anything about paths or relays is revealed. The endpoint exists only
//! when the config at start has a token, and listens on loopback unless
//! told otherwise.
//!
//! Wrong tokens are limited: each client (IPv4 address or IPv6 /64) may
//! fail [`MAX_FAILURES`] times per [`FAILURE_WINDOW`], and everyone
//! together [`MAX_FAILURES_ALL`] times; past that every request from it
//! (from everyone) gets `429` without its token being looked at, until the
//! window slides on. With a token of at least 16 random characters (the
//! config refuses shorter ones) guessing is hopeless anyway; the limit
//! keeps a guesser from burning CPU and filling the log.
//!
//! A runtime drain goes through [`Engine::set_drain`]: the next snapshot
//! (published before the answer is sent) excludes the relay from DNS and
//! HTTP alike. Nothing here is on the serving path.

use crate::clients::{ClientBudgets, Prefix};
use crate::config::{AdminConfig, AdminToken};
use crate::poll::Engine;
use crate::shutdown::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Most admin connections at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 16;

/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Wrong tokens one client may present per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u64 = 10;
/// Wrong tokens all clients together may present per [`FAILURE_WINDOW`].
pub const MAX_FAILURES_ALL: u64 = 100;
/// The window the failures are counted over (sliding).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The count of failed attempts, per client and for everyone: fixed-size
/// tables (a guesser with many addresses cannot grow them).
struct Failures {
    per_client: ClientBudgets,
    all: ClientBudgets,
}

impl Failures {
    fn new() -> Failures {
        let now = Instant::now();
        Failures {
            per_client: ClientBudgets::new(4096, now),
            all: ClientBudgets::new(1, now),
        }
    }

    /// The client's prefix: an IPv4 address or an IPv6 /64.
    fn client(peer: IpAddr) -> Prefix {
        ClientBudgets::prefix(peer, 32, 64)
    }

    /// Spends one attempt of `client` (and of everyone) before its token is
    /// checked; false when either is past its limit (nothing spent then).
    fn try_spend(&self, client: Prefix, now: Instant) -> bool {
        if !self
            .per_client
            .try_take(client, MAX_FAILURES, FAILURE_WINDOW, now)
        {
            return false;
        }
        if !self
            .all
            .try_take(Self::everyone(), MAX_FAILURES_ALL, FAILURE_WINDOW, now)
        {
            self.per_client.give_back(client, FAILURE_WINDOW, now);
            return false;
        }
        true
    }

    /// Gives an attempt back: the token was right, it was no failure.
    fn refund(&self, client: Prefix, now: Instant) {
        self.per_client.give_back(client, FAILURE_WINDOW, now);
        self.all.give_back(Self::everyone(), FAILURE_WINDOW, now);
    }

    fn everyone() -> Prefix {
        ClientBudgets::prefix(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, 0)
    }
}

/// Bound admin sockets, ready to serve.
pub struct AdminServer {
    /// The addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    listeners: Vec<TcpListener>,
}

impl AdminServer {
    /// Binds every `[admin] listen` address, or nothing (`None`) when the
    /// config has no token: the endpoint is disabled.
    pub fn bind(config: &AdminConfig) -> io::Result<Option<AdminServer>> {
        if config.token.is_none() {
            return Ok(None);
        }
        let mut addrs = Vec::new();
        let mut listeners = Vec::new();
        for &addr in &config.listen {
            let l = TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("admin bind {addr}: {e}")))?;
            l.set_nonblocking(true)?;
            addrs.push(l.local_addr()?);
            listeners.push(l);
        }
        Ok(Some(AdminServer { addrs, listeners }))
    }

    /// Serves on the current tokio runtime until `shutdown`.
    pub fn spawn(self, engine: Engine, shutdown: Shutdown) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let failures = Arc::new(Failures::new());
        for (l, addr) in self.listeners.into_iter().zip(self.addrs) {
            match tokio::net::TcpListener::from_std(l) {
                Ok(listener) => {
                    tracing::info!("admin listening on {addr}");
                    tokio::spawn(accept_loop(
                        listener,
                        engine.clone(),
                        limit.clone(),
                        failures.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => tracing::error!("admin {addr}: {e}"),
            }
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    engine: Engine,
    limit: Arc<Semaphore>,
    failures: Arc<Failures>,
    shutdown: Shutdown,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("admin accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let (engine, builder, failures) = (engine.clone(), builder.clone(), failures.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let resp = respond(&engine, &failures, peer.ip(), &req);
                std::future::ready(Ok::<_, std::convert::Infallible>(resp))
            });
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("admin connection: {e}");
            }
            drop(permit);
        });
    }
}

/// Whether `header` is `Bearer <token>`. The token bytes are compared in
/// constant time (only their length can leak).
pub fn authorized(header: Option<&HeaderValue>, token: &AdminToken) -> bool {
    let Some((scheme, presented)) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
    else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110); the token is not.
    scheme.eq_ignore_ascii_case("bearer") && bool::from(presented.as_bytes().ct_eq(token.expose()))
}

/// What to answer one admin request from `peer`.
fn respond<B>(
    engine: &Engine,
    failures: &Failures,
    peer: IpAddr,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let token = engine.snapshots().load().config().admin.token.clone();
    let Some(token) = token else {
        return text(
            StatusCode::FORBIDDEN,
            "403 the admin endpoint is disabled: the running config has no [admin] token\n",
        );
    };
    let (client, now) = (Failures::client(peer), Instant::now());
    if !failures.try_spend(client, now) {
        tracing::debug!(%peer, "admin: too many wrong tokens; refused unchecked");
        let mut resp = text(
            StatusCode::TOO_MANY_REQUESTS,
            "429 too many requests with a wrong token; try again later\n",
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(FAILURE_WINDOW.as_secs()),
        );
        return resp;
    }
    if authorized(req.headers().get(header::AUTHORIZATION), &token) {
        failures.refund(client, now);
    } else {
        tracing::warn!(
            %peer,
            path = req.uri().path(),
            "admin: request without a valid token refused"
        );
        let mut resp = text(
            StatusCode::UNAUTHORIZED,
            "401 a valid Authorization: Bearer token is required\n",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"floe admin\""),
        );
        return resp;
    }
    let path = req.uri().path();
    if path == "/peer" {
        return peer_answer(engine, req.method());
    }
    let (drain, relay) = if let Some(r) = path.strip_prefix("/drain/") {
        (true, r)
    } else if let Some(r) = path.strip_prefix("/undrain/") {
        (false, r)
    } else {
        return text(
            StatusCode::NOT_FOUND,
            "404 expected POST /drain/<relay>, POST /undrain/<relay> or GET /peer\n",
        );
    };
    if req.method() != Method::POST {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "405 use POST\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    // set_drain publishes a snapshot with the change before returning.
    let found = engine
        .set_drain(relay, drain)
        .then(|| engine.snapshots().load_full());
    let Some((snap, r)) = found.and_then(|s| s.topology.relay_id(relay).map(|r| (s, r))) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("404 no relay named {relay:?}\n"),
        );
    };
    let view = &snap.relays[r];
    let config_drain = snap.topology.relays[r].drain;
    if drain {
        tracing::info!(
            relay,
            listeners = view.listeners,
            "relay drained at runtime: no new listeners"
        );
    } else if config_drain {
        tracing::info!(
            relay,
            "runtime drain lifted; the relay stays drained by the config"
        );
    } else {
        tracing::info!(
            relay,
            "runtime drain lifted: the relay takes new listeners again"
        );
    }
    let body = serde_json::json!({
        "relay": relay,
        "draining": view.drain,
        "runtime_drain": drain,
        "config_drain": config_drain,
        "listeners": view.listeners,
        "generation": snap.generation,
    });
    reply(StatusCode::OK, "application/json", format!("{body}\n"))
}

/// `GET /peer`: this instance's last published demand and which peers it
/// fetches (see [`crate::peers::answer`]); `404` without `[[peer]]`s.
fn peer_answer(engine: &Engine, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "405 use GET\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let Some(report) = engine.peer_report() else {
        return text(
            StatusCode::NOT_FOUND,
            "404 no peer exchange: the running config has no [[peer]]\n",
        );
    };
    let body = crate::peers::answer::render(&report);
    reply(StatusCode::OK, "application/json", body)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let content_type = HeaderValue::from_static(content_type);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    #[test]
    fn failures_are_limited_per_client_and_for_everyone() {
        let f = Failures::new();
        let now = Instant::now();
        let client = |i: u32| Failures::client(IpAddr::from(std::net::Ipv4Addr::from(i)));
        // Refunded attempts (right tokens) never lock anyone out.
        for _ in 0..1000 {
            assert!(f.try_spend(client(1), now));
            f.refund(client(1), now);
        }
        for _ in 0..MAX_FAILURES {
            assert!(f.try_spend(client(1), now));
        }
        assert!(!f.try_spend(client(1), now), "past the client's limit");
        // Everyone together: failures from as many addresses lock all out.
        // (A fresh table: an address whose hashed slot is the locked-out
        // client's would be refused by its own limit, about once in 45 runs.)
        let crowd = Failures::new();
        for i in 2..(MAX_FAILURES_ALL + 2) as u32 {
            assert!(crowd.try_spend(client(i), now), "client {i}");
        }
        assert!(!crowd.try_spend(client(5000), now), "past everyone's limit");
        // Two windows later the counts are gone.
        let later = now + 2 * FAILURE_WINDOW;
        assert!(f.try_spend(client(1), later));
        assert!(crowd.try_spend(client(5000), later));
        // IPv6: one /64 is one client.
        let v6 = |s: &str| Failures::client(s.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let (c, d) = config::parse(
            Path::new("/t/floe.toml"),
            "[admin]\ntoken = \"s3cret-s3cret-s3cret\"\n[[relay]]\nname = \"r\"\nurl = \"http://r:8000\"\nstatus = { kind = \"xslt\" }\n[[stream]]\nname = \"s\"\nmounts = [\"/a\"]\n",
        );
        let token = c.unwrap_or_else(|| panic!("{d}")).admin.token.unwrap();
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(authorized(Some(&h("Bearer s3cret-s3cret-s3cret")), &token));
        assert!(authorized(Some(&h("bearer s3cret-s3cret-s3cret")), &token));
        for bad in [
            "Bearer s3cret-s3cret-s3cre",
            "Bearer s3cret-s3cret-s3cretX",
            "Bearer S3CRET-S3CRET-S3CRET",
            "Basic s3cret-s3cret-s3cret",
            "s3cret-s3cret-s3cret",
            "Bearer ",
        ] {
            assert!(!authorized(Some(&h(bad)), &token), "{bad}");
        }
        assert!(!authorized(None, &token));
    }
}
