//! The HTTP side of a simulated relay: accepting connections, answering
//! requests the way Icecast 2.4.4 does, and the response bodies.

use super::mount::{ListenerGuard, Mount, Refusal, admit};
use super::tone::{self, SAMPLE_RATE, ToneBody};
use super::{Shared, pages};
use crate::shutdown::Shutdown;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper's minimum buffer is 8 KiB).
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The content type of every stream.
const STREAM_TYPE: &str = "audio/wav";

/// One open connection, counted against `max_clients`.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Rebinding the same port after set_down(true) must not wait for
    // TIME_WAIT connections.
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("SimRelay bind {addr}: {e}")))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: Arc<tokio::net::TcpListener>,
    life: Shutdown,
) {
    loop {
        let stream = tokio::select! {
            biased;
            _ = life.wait() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let open = shared.clients.fetch_add(1, Ordering::SeqCst) + 1;
        let client = ClientGuard(shared.clone());
        let over_limit = open > shared.max_clients;
        tokio::spawn(serve_connection(
            shared.clone(),
            stream,
            client,
            over_limit,
            life.clone(),
        ));
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    client: ClientGuard,
    over_limit: bool,
    life: Shutdown,
) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&shared, req, over_limit).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .title_case_headers(true)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = life.wait() => {}
    }
    drop(client);
}

/// Answers one request the way Icecast 2.4.4 would.
async fn respond(shared: &Shared, req: Request<Incoming>, over_limit: bool) -> Response<SimBody> {
    if over_limit || shared.server_full.load(Ordering::SeqCst) {
        shared.server_full_refusals.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::FORBIDDEN, "Icecast connection limit reached");
    }
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let path = req.uri().path();
    match path {
        "/floe-slots.xsl" => {
            shared.status_requests.fetch_add(1, Ordering::Relaxed);
            let body = shared.render(pages::floe_slots);
            return page("text/plain; charset=UTF-8", body);
        }
        "/status-json.xsl" => {
            shared.status_requests.fetch_add(1, Ordering::Relaxed);
            let body = shared.render(pages::status_json);
            return page("application/json; charset=UTF-8", body);
        }
        "/admin/stats" | "/admin/stats.xml" => {
            shared.status_requests.fetch_add(1, Ordering::Relaxed);
            let authorized = req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == shared.admin_auth.as_bytes());
            if !authorized {
                let mut resp = plain(StatusCode::UNAUTHORIZED, "You need to authenticate\r\n");
                resp.extensions_mut()
                    .insert(ReasonPhrase::from_static(b"Authentication Required"));
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Icecast2 Server\""),
                );
                return resp;
            }
            let clients = shared.clients.load(Ordering::Relaxed);
            let body = shared.render(|v| pages::admin_stats(v, clients));
            return page("text/xml", body);
        }
        _ => {}
    }
    let no_source = || {
        shared.not_found.fetch_add(1, Ordering::Relaxed);
        not_found("The file you requested could not be found")
    };
    let Some(mount) = shared.mount(path) else {
        return no_source();
    };
    if method == Method::HEAD {
        // Headers only; Icecast does not count a HEAD as a listener.
        return if mount.lock().present {
            stream_response(shared, mount, SimBody::Once(None, true))
        } else {
            no_source()
        };
    }
    match admit(shared.admission_delay, mount).await {
        Ok(guard) => {
            let tone = ToneBody::new(mount.tone.clone(), guard);
            stream_response(shared, mount, SimBody::Tone(Box::new(tone)))
        }
        Err(Refusal::Full) => plain(StatusCode::FORBIDDEN, "max listeners reached"),
        Err(Refusal::Busy) => not_found("Mount unavailable"),
        Err(Refusal::NoSource) => no_source(),
    }
}

/// Icecast's common response head: HTTP/1.0, `Connection: Close`, no caching.
fn icecast(status: StatusCode, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.version_mut() = Version::HTTP_10;
    for (name, value) in [
        (header::SERVER, "Icecast 2.4.4"),
        (header::CONNECTION, "Close"),
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache, no-store"),
        (header::EXPIRES, "Mon, 26 Jul 1997 05:00:00 GMT"),
        (header::PRAGMA, "no-cache"),
    ] {
        resp.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// A text error (Icecast sends these without `Content-Length`).
fn plain(status: StatusCode, body: &'static str) -> Response<SimBody> {
    icecast(
        status,
        "text/plain; charset=utf-8",
        SimBody::Once(Some(Bytes::from_static(body.as_bytes())), false),
    )
}

/// Icecast's HTML 404 with `what` as its message.
fn not_found(what: &str) -> Response<SimBody> {
    let html = format!(
        "<html><head><title>Error 404</title></head><body><b>404 - {what}</b></body></html>\r\n"
    );
    let mut resp = icecast(
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        SimBody::Once(Some(Bytes::from(html)), false),
    );
    resp.extensions_mut()
        .insert(ReasonPhrase::from_static(b"File Not Found"));
    resp
}

/// A status page (with `Content-Length`).
fn page(content_type: &'static str, body: String) -> Response<SimBody> {
    icecast(
        StatusCode::OK,
        content_type,
        SimBody::Once(Some(body.into()), true),
    )
}

/// The `200 OK` head of a stream, with Icecast's `icy-*` headers.
fn stream_response(shared: &Shared, mount: &Mount, body: SimBody) -> Response<SimBody> {
    let mut resp = icecast(StatusCode::OK, STREAM_TYPE, body);
    let h = resp.headers_mut();
    let kbps = tone::Tone::kbps();
    let info = format!("ice-samplerate={SAMPLE_RATE};ice-bitrate={kbps};ice-channels=1");
    let name = format!("floe demo {} {}", shared.name, mount.path);
    let description = format!("sine tone {} Hz", mount.tone.hz());
    for (k, v) in [
        ("icy-br", kbps.to_string()),
        ("ice-audio-info", info),
        ("icy-description", description),
        ("icy-genre", "demo".to_string()),
        ("icy-name", name),
        ("icy-pub", "0".to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

/// Every response body of a simulated relay.
enum SimBody {
    /// One buffer (taken when sent) and whether to announce its length
    /// (Icecast's errors are close-delimited).
    Once(Option<Bytes>, bool),
    /// An endless stream.
    Tone(Box<ToneBody<ListenerGuard>>),
}

impl hyper::body::Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Once(data, _) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SimBody::Tone(t) => t.poll_chunk(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Once(None, true))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Once(data, true) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            _ => SizeHint::default(),
        }
    }
}

/// Standard base64 with padding (for the basic-auth header).
pub(super) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
