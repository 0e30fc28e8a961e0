//! What the HTTP front door answers: a pure function of the snapshot and
//! the request (plus the worker's RNG for the pick).
//!
//! - `GET|HEAD /<mount>`: `302` to a relay with room, or `503`.
//! - `/<mount>.m3u|.pls|.xspf`: a playlist pointing back at floe.
//! - `/healthz`, `/status` (HTML), `/status.json`, `/metrics`: floe's own
//!   state, counters and history.
//! - `/explain/<mount>`, `/explain?name=<dns name>`: candidates and
//!   exclusions for one mount, stream or balanced name (text, or JSON with
//!   `?format=json` or `Accept: application/json`).
//! - `GET /.well-known/acme-challenge/<token>`: the key authorization of
//!   a live ACME HTTP-01 challenge ([`crate::challenges`]), else `404`.
//! - `OPTIONS` on a stream route: `204`, with the CORS preflight answer
//!   for an allowed origin ([`super::cors`]); the stream routes' answers
//!   carry `Access-Control-Allow-Origin` for pages of allowed origins.
//! - anything else: `404`; other methods `405`.
//!
//! Every answer to a listener request is counted in [`Metrics`] through
//! handles resolved per topology (one atomic add, no lookup).
//!
//! Paths match configured mounts exactly; the `Location` is a pre-rendered
//! relay URL + mount (+ the request's query string), so floe can never be
//! made to redirect elsewhere.

use super::Shared;
use super::cors;
use super::pages::Page;
use super::playlist::{self, Playlist};
use crate::clients::{ClientBudgets, in_networks};
use crate::ids::RelayId;
use crate::metrics::{self, Metrics, Outcome};
use crate::report::{self, Observed, explain};
use crate::select::{self, Grant, NoCandidate};
use crate::shares::grid::quiet_limit;
use crate::snapshot::{DEFAULT_POOL, MountId, PoolId, Snapshot};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Response header carrying the snapshot generation a choice came from.
/// (`HeaderName` constants are checked at compile time; a `&str` name would
/// be parsed and validated on every response.)
pub const GENERATION_HEADER: HeaderName = HeaderName::from_static("x-floe-generation");
/// Response header naming the relay a redirect chose.
pub const RELAY_HEADER: HeaderName = HeaderName::from_static("x-floe-relay");

/// What a listener's `GET` of a mount does when the relays with room are
/// all quiet for a moment ([`crate::grants`]: with `[[peer]]`s, from a
/// poll's grant sample until its result is published).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnQuiet {
    /// Answers [`QuietNow`], with nothing counted and no grant taken: the
    /// caller waits for the quiet to end ([`crate::snapshot::Snapshots::quiet_end`])
    /// and asks again.
    Wait,
    /// Grants on a quiet relay (the listener has waited long enough).
    Take,
}

/// The relays with room are quiet: ask again when the quiet ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietNow;

/// Answers one request from `snap` to client `peer`, counting it in
/// `shared`'s metrics; [`QuietNow`] only for a mount's `GET` with
/// [`OnQuiet::Wait`].
pub fn respond<B>(
    snap: &Snapshot,
    shared: &Shared,
    req: &Request<B>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    on_quiet: OnQuiet,
) -> Result<Response<Full<Bytes>>, QuietNow> {
    let method = req.method();
    if let Some(m) = snap.topology.mount_id(req.uri().path())
        && (method == Method::GET || method == Method::HEAD)
    {
        let tls = req.extensions().get::<super::OverTls>().is_some();
        let get = method == Method::GET;
        let mut resp = mount(snap, shared, m, get, req.uri().query(), peer, tls, on_quiet)?;
        cors::allow(&mut resp, req.headers(), &snap.config().http.cors_origins);
        return Ok(resp);
    }
    Ok(respond_other(snap, shared, req, local, peer))
}

/// [`respond`], waiting out quiet relays: when the relays with room are
/// quiet, asks again each time a quiet period ends, and after
/// [`quiet_limit`] takes a quiet relay. Only a request that found quiet
/// room registers to be woken (a lock in the notifier); the others answer
/// on the first pass.
pub async fn respond_waiting<B>(
    shared: &Shared,
    req: &Request<B>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let ask = |on_quiet| {
        let snap = shared.snapshots.load();
        guarded(|| respond(&snap, shared, req, local, peer, on_quiet))
    };
    if let Ok(resp) = ask(OnQuiet::Wait) {
        return resp;
    }
    shared.metrics.held();
    let limit = {
        let poll = &shared.snapshots.load().topology.config.poll;
        quiet_limit(poll.settle, poll.timeout)
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Registered before asking again: an end in between wakes it.
        let quiet_end = shared.snapshots.quiet_end();
        let mut quiet_end = std::pin::pin!(quiet_end);
        quiet_end.as_mut().enable();
        if let Ok(resp) = ask(OnQuiet::Wait) {
            return resp;
        }
        if tokio::time::timeout_at(deadline, quiet_end).await.is_err() {
            return ask_answered(ask(OnQuiet::Take));
        }
    }
}

/// The answer of an [`OnQuiet::Take`] ask, which is never [`QuietNow`]
/// (a 500 if it were).
fn ask_answered(answer: Result<Response<Full<Bytes>>, QuietNow>) -> Response<Full<Bytes>> {
    answer.unwrap_or_else(|QuietNow| bug())
}

/// `500`: floe hit a bug answering the request.
fn bug() -> Response<Full<Bytes>> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 internal error: floe hit a bug answering this request\n",
    )
}

/// [`respond`] for everything but a mount's `GET` and `HEAD`.
fn respond_other<B>(
    snap: &Snapshot,
    shared: &Shared,
    req: &Request<B>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let metrics = &*shared.metrics;
    let observed = Observed {
        metrics,
        history: &shared.history,
    };
    let method = req.method();
    let path = req.uri().path();
    let topology = &snap.topology;
    let cors = &*snap.config().http.cors_origins;
    if method != Method::GET && method != Method::HEAD {
        let stream = is_stream_route(snap, path);
        if method == Method::OPTIONS && stream {
            return cors::preflight(req.headers(), cors);
        }
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed: use GET or HEAD\n",
        );
        let allow = if stream {
            "GET, HEAD, OPTIONS"
        } else {
            "GET, HEAD"
        };
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return resp;
    }
    match path {
        "/healthz" => {
            return if snap.first_round_done {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting: first poll round not done\n",
                )
            };
        }
        "/status.json" | "/status" | "/metrics" | "/explain"
            if !in_networks(&snap.config().http.diagnostics_from, peer.ip()) =>
        {
            return forbidden();
        }
        "/status.json" => {
            let body = shared.pages.get(Page::StatusJson, snap.generation, || {
                Bytes::from(report::status_json_with(snap, observed))
            });
            return with_generation(snap, typed(StatusCode::OK, "application/json", body));
        }
        "/status" => {
            let body = shared.pages.get(Page::Status, snap.generation, || {
                let report = report::status_report_with(snap, Some(observed));
                Bytes::from(super::status_page::render(&report))
            });
            return with_generation(
                snap,
                typed(StatusCode::OK, "text/html; charset=utf-8", body),
            );
        }
        "/metrics" => {
            let body = shared.pages.get(Page::Metrics, snap.generation, || {
                Bytes::from(metrics.render(&shared.snapshots.load_full()))
            });
            return typed(StatusCode::OK, metrics::CONTENT_TYPE, body);
        }
        "/explain" => return explain(snap, req, None),
        _ => {}
    }
    if let Some(token) = path.strip_prefix(ACME_CHALLENGE_PATH) {
        return acme_challenge(shared, token);
    }
    if let Some(rest) = path.strip_prefix("/explain/") {
        if !in_networks(&snap.config().http.diagnostics_from, peer.ip()) {
            return forbidden();
        }
        return explain(snap, req, Some(rest));
    }
    if let Some((mount_path, kind)) = Playlist::split(path)
        && let Some(m) = topology.mount_id(mount_path)
    {
        let tls = req.extensions().get::<super::OverTls>().is_some();
        let mut resp =
            match playlist::base_url(req, snap.config().http.public_url.as_ref(), local, tls) {
                Some(base) => {
                    let stream_url = format!("{base}{mount_path}");
                    let title = &topology.streams[topology.mounts[m].stream].name;
                    Response::builder()
                        .header(header::CONTENT_TYPE, kind.content_type())
                        .header(header::CACHE_CONTROL, "no-cache")
                        .body(Full::new(Bytes::from(kind.render(&stream_url, title))))
                        .expect("static headers are valid")
                }
                None => text(
                    StatusCode::BAD_REQUEST,
                    "400 bad request: no usable Host header for the playlist URL\n",
                ),
            };
        cors::allow(&mut resp, req.headers(), cors);
        return resp;
    }
    metrics.not_found();
    text(
        StatusCode::NOT_FOUND,
        "404 not found: no such stream mount\n",
    )
}

/// The answer to a `GET` (`get`) or `HEAD` of mount `m` with `query` from
/// `peer`, without CORS headers: the redirect or the `503`/`429`/`400`
/// that says why not, counted in `shared`'s metrics (a `GET` is demand for
/// the peer exchange, whatever its answer); [`QuietNow`], with nothing
/// counted, per `on_quiet`. [`respond`] and the fast path
/// ([`super::fast`]) both answer mounts through it.
#[allow(clippy::too_many_arguments)]
pub(super) fn mount(
    snap: &Snapshot,
    shared: &Shared,
    m: MountId,
    get: bool,
    query: Option<&str>,
    peer: SocketAddr,
    tls: bool,
    on_quiet: OnQuiet,
) -> Result<Response<Full<Bytes>>, QuietNow> {
    let client = get.then(|| Client {
        budgets: &shared.clients,
        addr: peer.ip(),
    });
    let pool = snap.topology.pool_of(peer.ip());
    let resp = redirect(snap, &shared.metrics, m, pool, query, client, tls, on_quiet)?;
    if get {
        snap.topology.demand.add(m);
    }
    Ok(resp)
}

/// Where the ACME CA fetches an HTTP-01 key authorization (RFC 8555
/// section 8.3), followed by the token.
pub const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// `GET /.well-known/acme-challenge/<token>`: the key authorization of a
/// live HTTP-01 challenge (`text/plain`), else `404`; a token that is not
/// 1 to 128 base64url characters is a `404` without a lookup.
fn acme_challenge(shared: &Shared, token: &str) -> Response<Full<Bytes>> {
    if crate::challenges::valid_token(token)
        && let Some(key_authorization) = shared.challenges.load().http(token)
    {
        return typed(
            StatusCode::OK,
            "text/plain",
            Bytes::copy_from_slice(key_authorization.as_bytes()),
        );
    }
    text(
        StatusCode::NOT_FOUND,
        "404 not found: no such ACME challenge\n",
    )
}

/// Whether `path` is a stream route: a configured mount or one of its
/// playlists.
fn is_stream_route(snap: &Snapshot, path: &str) -> bool {
    let topology = &snap.topology;
    topology.mount_id(path).is_some()
        || Playlist::split(path).is_some_and(|(mount, _)| topology.mount_id(mount).is_some())
}

/// `/explain/<what>` (a mount path without its leading `/`, a stream or a
/// DNS name) or `/explain?name=<what>` (DNS names first): the candidates
/// and exclusions from `snap`, as text or JSON.
fn explain<B>(snap: &Snapshot, req: &Request<B>, in_path: Option<&str>) -> Response<Full<Bytes>> {
    let mut name = None;
    let mut pool = None;
    let mut json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "name" => name = Some(v.into_owned()),
            "format" => json = v == "json",
            "client" => match v.parse::<IpAddr>() {
                Ok(addr) => pool = Some(snap.topology.pool_of(addr)),
                Err(_) => {
                    let body = format!("400 client={v:?} is not an IP address\n");
                    return text(StatusCode::BAD_REQUEST, body);
                }
            },
            "pool" => match snap.topology.pool_id(&v) {
                Some(p) => pool = Some(p),
                None => {
                    let body = format!("404 no pool named {v:?}\n");
                    return text(StatusCode::NOT_FOUND, body);
                }
            },
            _ => {}
        }
    }
    let (query, name_first) = match (in_path, name.as_deref()) {
        (Some(p), _) if !p.is_empty() => (p, false),
        (_, Some(n)) => (n, true),
        _ => {
            let mut help = String::from(
                "usage: GET /explain/<mount> (e.g. /explain/live.ogg) or /explain?name=<balanced DNS name>;\n\
                 add ?format=json for JSON, ?client=<address> or ?pool=<name> for a listener pool. Explainable now:\n",
            );
            for item in explain::explainable(snap) {
                help.push_str("  ");
                help.push_str(&item);
                help.push('\n');
            }
            return with_generation(snap, text(StatusCode::OK, help));
        }
    };
    let Some(target) = explain::resolve(snap, query, name_first) else {
        let body = format!(
            "404 nothing named {query:?} to explain; GET /explain lists what can be explained\n"
        );
        return with_generation(snap, text(StatusCode::NOT_FOUND, body));
    };
    let pool = pool.unwrap_or(DEFAULT_POOL);
    let e = explain::explain(snap, &target, pool, std::time::Instant::now());
    let resp = if json {
        typed(StatusCode::OK, "application/json", report::to_json(&e))
    } else {
        text(StatusCode::OK, e.to_text())
    };
    with_generation(snap, resp)
}

/// The listener a `GET` redirect grants a slot to, and the budgets it is
/// counted in.
struct Client<'a> {
    budgets: &'a ClientBudgets,
    addr: IpAddr,
}

/// The redirect for mount `m`, or a 503 that says why there is none. With
/// a `client` (a `GET`: a listener will follow) the redirect records a
/// grant, within the client's budget (a 429 past it); without one (`HEAD`)
/// it draws the same way and takes nothing.
#[allow(clippy::too_many_arguments)]
fn redirect(
    snap: &Snapshot,
    metrics: &Metrics,
    m: MountId,
    pool: PoolId,
    query: Option<&str>,
    client: Option<Client<'_>>,
    tls: bool,
    on_quiet: OnQuiet,
) -> Result<Response<Full<Bytes>>, QuietNow> {
    // Check the query string before picking: a refused request must not
    // hold a grant.
    if query.is_some_and(|q| !q.bytes().all(is_header_value_byte)) {
        metrics.refused(snap, m, Outcome::BadRequest);
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "400 bad request: query string not usable in a redirect\n",
        ));
    }
    let now = Instant::now();
    let select = &snap.config().select;
    let window = snap.config().poll.grant_window();
    let taken = match &client {
        Some(c) => {
            let prefix =
                ClientBudgets::prefix(c.addr, select.client_prefix_v4, select.client_prefix_v6);
            let budget = select::client_budget(snap, m, pool);
            if !c.budgets.try_take(prefix, budget, window, now) {
                metrics.refused(snap, m, Outcome::ClientBudget);
                return Ok(over_budget(snap, budget, window));
            }
            Some((c.budgets, prefix))
        }
        None => None,
    };
    let grant = match (&taken, on_quiet) {
        (None, _) => Grant::None,
        (Some(_), OnQuiet::Wait) => Grant::RecordUnlessQuiet,
        (Some(_), OnQuiet::Take) => Grant::Record,
    };
    // Over TLS, only relays with an https_url unless plain HTTP is allowed.
    let https_only = tls && !snap.config().http.tls_redirect_to_http;
    let picked = super::with_rng(|rng| {
        if https_only {
            let has_https = |r: RelayId| snap.topology.relays[r].https_locations.is_some();
            select::pick_where(snap, m, pool, grant, has_https, rng)
        } else {
            select::pick(snap, m, pool, grant, rng)
        }
    });
    if let (Err(_), Some((budgets, prefix))) = (&picked, taken) {
        budgets.give_back(prefix, window, now);
    }
    if picked == Err(NoCandidate::Quiet) {
        return Err(QuietNow);
    }
    // Relays with room, none with an https_url: say so.
    if https_only
        && picked.is_err()
        && super::with_rng(|rng| select::pick(snap, m, pool, Grant::None, rng)).is_ok()
    {
        metrics.refused(snap, m, Outcome::NoHttps);
        return Ok(no_https(snap));
    }
    Ok(match picked {
        Ok(pick) => {
            let relay = &snap.topology.relays[pick.relay];
            let target = match (tls, &relay.https_locations) {
                (true, Some(https)) => &https[m],
                _ => &relay.locations[m],
            };
            let location = match query {
                None => HeaderValue::from_maybe_shared(target.clone()),
                Some(q) => {
                    let mut v = Vec::with_capacity(target.len() + 1 + q.len());
                    v.extend_from_slice(target);
                    v.push(b'?');
                    v.extend_from_slice(q.as_bytes());
                    HeaderValue::from_maybe_shared(Bytes::from(v))
                }
            };
            let Ok(location) = location else {
                metrics.refused(snap, m, Outcome::BadRequest);
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    "400 bad request: query string not usable in a redirect\n",
                ));
            };
            metrics.redirected(snap, m, pool, pick);
            let mut resp = Response::new(Full::new(Bytes::from_static(b"302 Found\n")));
            *resp.status_mut() = StatusCode::FOUND;
            let h = resp.headers_mut();
            h.insert(header::LOCATION, location);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            if let Ok(name) = HeaderValue::from_maybe_shared(relay.name_bytes.clone()) {
                h.insert(RELAY_HEADER, name);
            }
            with_generation(snap, resp)
        }
        Err(why) => {
            metrics.refused(snap, m, why.into());
            let mount = &snap.topology.mounts[m].path;
            let body = match why {
                NoCandidate::Offline => {
                    format!("503 stream offline: no live relay has a source for {mount}\n")
                }
                NoCandidate::Full | NoCandidate::Quiet => format!(
                    "503 stream full: every relay carrying {mount} is full; try again later\n"
                ),
                NoCandidate::Starting => {
                    "503 starting: relays not polled yet; try again in a moment\n".to_string()
                }
            };
            let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, body);
            let retry = snap.config().http.retry_after.as_secs().max(1);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry));
            with_generation(snap, resp)
        }
    })
}

/// `503` for a request over TLS when relays have room but none of them an
/// `https_url`.
fn no_https(snap: &Snapshot) -> Response<Full<Bytes>> {
    let body = "503 no HTTPS relay: the relays with room have no https_url and [http] tls_redirect_to_http is false (a listener on an HTTPS page cannot play plain HTTP)\n";
    let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, body);
    let retry = snap.config().http.retry_after.as_secs().max(1);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    with_generation(snap, resp)
}

/// `429` for a client past its budget of `budget` grants per `window`.
fn over_budget(snap: &Snapshot, budget: u64, window: Duration) -> Response<Full<Bytes>> {
    let retry = window.as_secs().max(1);
    let body = format!(
        "429 too many new listeners from your network: at most {budget} every {retry} s; try again in {retry} s\n"
    );
    let mut resp = text(StatusCode::TOO_MANY_REQUESTS, body);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    with_generation(snap, resp)
}

/// `f()`'s response, or a `500` (logged) when it panics: a request that
/// hits a bug gets an answer, and the connection and the worker go on.
pub fn guarded<E>(
    f: impl FnOnce() -> Result<Response<Full<Bytes>>, E>,
) -> Result<Response<Full<Bytes>>, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|e| {
        let what = e.downcast_ref::<&str>().copied();
        let what = what.or(e.downcast_ref::<String>().map(String::as_str));
        tracing::error!(
            "HTTP: a request made floe panic ({}); answered 500",
            what.unwrap_or("?")
        );
        Ok(bug())
    })
}

/// `403` for a diagnostic page asked from outside `[http] diagnostics_from`.
fn forbidden() -> Response<Full<Bytes>> {
    text(
        StatusCode::FORBIDDEN,
        "403 forbidden: floe's diagnostic pages are served to [http] diagnostics_from only\n",
    )
}

/// Bytes a header value may hold (what `HeaderValue` accepts).
fn is_header_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

fn with_generation(snap: &Snapshot, mut resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    if let Ok(v) = HeaderValue::from_maybe_shared(snap.generation_text.clone()) {
        resp.headers_mut().insert(GENERATION_HEADER, v);
    }
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    typed(status, "text/plain; charset=utf-8", body)
}

fn typed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_panics_gets_a_500() {
        let resp = guarded::<()>(|| panic!("bug")).unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let ok = guarded::<()>(|| Ok(text(StatusCode::OK, "ok"))).unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
