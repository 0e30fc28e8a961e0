//! The HTTP fast path: a plain `GET /<mount>` on HTTP/1.1 answered from
//! the bytes of one read, without hyper.
//!
//! A listener makes one connection, gets a `302` and leaves, so what floe
//! spends per connection is what counts; hyper's per-connection setup
//! (buffers, timers, a task, header maps) costs more than the answer. As
//! the DNS door does with hickory ([`crate::dns::fast`]), [`parse`] reads
//! only what it fully understands: one complete request head (httparse,
//! as hyper parses it) that is a `GET` on HTTP/1.1 with an origin-form
//! target of plain characters, no body, no bytes after the head, and no
//! header that changes what floe or hyper would answer (`Origin`: CORS;
//! `X-Forwarded-For`/`Forwarded`: the client; `Content-Length`,
//! `Transfer-Encoding`, `Expect`, `Upgrade`: a body or another protocol;
//! a `Connection` that is not `close` or `keep-alive`). Anything else —
//! `HEAD`, other methods, HTTP/1.0, odd characters, a partial head — goes
//! to hyper with the bytes already read replayed (`rewind.rs`).
//!
//! [`answer`] decides through the same function as hyper's path
//! (`routes::mount`: pick, client budget, grant, demand, metrics) and
//! [`render`] writes the response as hyper's HTTP/1 encoder does (status
//! line, the route's headers in order, `connection: close` when the
//! client asked, `content-length`, `date`), byte for byte (tested against
//! hyper). No I/O here: the connection side is in [`super`].

use super::Shared;
use super::routes::{self, OnQuiet};
use crate::snapshot::Snapshot;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::body::Body;
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most bytes of a request head the fast path reads (one read); a longer
/// head goes to hyper, whose limit is at least 8 KiB, so every head the
/// fast path answers is one hyper would have read too.
pub const MAX_HEAD: usize = 4096;

/// Most header lines of a fast request; more go to hyper (up to its 100).
pub const MAX_HEADERS: usize = 32;

/// Request headers that change the answer or the connection: a request
/// with one goes to hyper.
pub const HYPER_HEADERS: [&str; 8] = [
    "origin",
    "x-forwarded-for",
    "forwarded",
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
];

/// A request the fast path answers: `GET path[?query]` on HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastGet<'a> {
    /// The path (`/live.ogg`), as hyper's `Uri::path` gives it.
    pub path: &'a str,
    /// The query string after `?` (not empty), as `Uri::query` gives it.
    pub query: Option<&'a str>,
    /// The client asked to close the connection after the answer.
    pub close: bool,
}

/// `head` as a fast request, when it is exactly one complete request head
/// the fast path fully understands (see the module doc); `None` sends it
/// to hyper.
pub fn parse(head: &[u8]) -> Option<FastGet<'_>> {
    if head.len() > MAX_HEAD {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let target = req.path?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !path.starts_with('/') || path.starts_with("//") || !path.bytes().all(path_byte) {
        return None;
    }
    if query.is_some_and(|q| q.is_empty() || !q.bytes().all(|b| b == b'?' || path_byte(b))) {
        return None;
    }
    let mut close = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return None;
                }
            }
        } else if HYPER_HEADERS.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            return None;
        }
    }
    Some(FastGet { path, query, close })
}

/// Bytes a fast request's path may hold: unreserved, sub-delims, `:`, `@`,
/// `/` and `%` (RFC 3986 pchar), all of which hyper's URI parser takes as
/// they are.
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}

/// Writes the answer to `req` from `peer` into `out` (cleared first) when
/// its path is a configured mount, deciding as hyper's path does; `false`
/// (nothing decided, nothing counted) when it is not a mount, or when the
/// relays with room are quiet for a moment (hyper's path waits for them).
pub fn answer(
    snap: &Snapshot,
    shared: &Shared,
    req: &FastGet<'_>,
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    let Some(m) = snap.topology.mount_id(req.path) else {
        return false;
    };
    let decided = routes::guarded(|| {
        routes::mount(snap, shared, m, true, req.query, peer, false, OnQuiet::Wait)
    });
    let Ok(resp) = decided else {
        return false;
    };
    render(resp, req.close, out);
    true
}

/// Writes `resp` into `out` (cleared first) as hyper's HTTP/1.1 server
/// writes it for a `GET`: status line, the headers in order, then
/// `connection: close` (when `close`), `content-length` and `date`, a blank
/// line and the body.
pub fn render(resp: Response<Full<Bytes>>, close: bool, out: &mut Vec<u8>) {
    let (parts, body) = resp.into_parts();
    let body = full_bytes(body);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    let reason = parts.status.canonical_reason().unwrap_or("<none>");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "content-length: {}\r\ndate: ", body.len());
    with_date(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
}

/// The one data frame of a `Full` body (empty when there is none).
fn full_bytes(mut body: Full<Bytes>) -> Bytes {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// Length of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

thread_local! {
    /// This thread's `Date` value and the second it is for (as hyper
    /// caches its own: formatted once a second).
    static DATE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Runs `f` with the `Date` header value for now.
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                d.1.copy_from_slice(text.as_bytes());
                d.0 = second;
            }
        }
        f(&d.1)
    })
}

#[cfg(test)]
mod tests;
