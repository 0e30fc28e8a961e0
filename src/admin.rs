//! The admin endpoint: drain and undrain relays at runtime, without a
//! reload.
//!
//! `POST /drain/<relay>` and `POST /undrain/<relay>` with
//! `Authorization: Bearer <token>`; `floe drain` is its client. Every
//! request is authenticated first (constant-time comparison with the
//! running config's `[admin]` token, so a reload can rotate it), before
//! anything about paths or relays is revealed. The endpoint exists only
//! when the config at start has a token, and listens on loopback unless
//! told otherwise.
//!
//! A runtime drain goes through [`Engine::set_drain`]: the next snapshot
//! (published before the answer is sent) excludes the relay from DNS and
//! HTTP alike. Nothing here is on the serving path.

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
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Most admin connections at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 16;

/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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
        for (l, addr) in self.listeners.into_iter().zip(self.addrs) {
            match tokio::net::TcpListener::from_std(l) {
                Ok(listener) => {
                    tracing::info!("admin listening on {addr}");
                    tokio::spawn(accept_loop(
                        listener,
                        engine.clone(),
                        limit.clone(),
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
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("admin accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let (engine, builder) = (engine.clone(), builder.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                std::future::ready(Ok::<_, std::convert::Infallible>(respond(&engine, &req)))
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

/// What to answer one admin request.
fn respond<B>(engine: &Engine, req: &Request<B>) -> Response<Full<Bytes>> {
    let token = engine.snapshots().load().config().admin.token.clone();
    let Some(token) = token else {
        return text(
            StatusCode::FORBIDDEN,
            "403 the admin endpoint is disabled: the running config has no [admin] token\n",
        );
    };
    if !authorized(req.headers().get(header::AUTHORIZATION), &token) {
        tracing::debug!(
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
    let (drain, relay) = if let Some(r) = path.strip_prefix("/drain/") {
        (true, r)
    } else if let Some(r) = path.strip_prefix("/undrain/") {
        (false, r)
    } else {
        return text(
            StatusCode::NOT_FOUND,
            "404 expected POST /drain/<relay> or POST /undrain/<relay>\n",
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
