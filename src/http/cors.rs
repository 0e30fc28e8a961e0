//! CORS for web players: the stream routes (`/<mount>` and its playlists)
//! usable from pages of other origins.
//!
//! A page that plays `https://floe/live.ogg` in an `<audio>` element needs
//! no CORS; a player that reads the stream with `fetch()` and sends
//! `Icy-MetaData: 1` (for the titles) makes the browser ask first with a
//! preflight `OPTIONS`, and then needs `Access-Control-Allow-Origin` on the
//! answer, the `302` included (the relay's own answer carries Icecast's
//! CORS headers). [`preflight`] answers the `OPTIONS`, never taking a
//! grant; [`allow`] adds the headers to an answer. `[http] cors_origins`
//! says which origins: `*` (the default, as Icecast sends) or a list.
//!
//! The request headers read here come from anyone: at most
//! [`MAX_REQUEST_HEADERS`] names of a bounded header are looked at, and
//! only names from a fixed list are ever allowed.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

/// Request headers a web player may send to the stream routes beyond the
/// CORS-safelisted ones: `Icy-MetaData` (ask for titles in the stream)
/// and `Range` (some players resume); lower case.
const ALLOWED_HEADERS: [&str; 6] = [
    "icy-metadata",
    "range",
    "accept",
    "accept-language",
    "content-language",
    "cache-control",
];

/// Most header names of one `Access-Control-Request-Headers` looked at; a
/// preflight asking for more is not allowed any.
pub const MAX_REQUEST_HEADERS: usize = 16;

/// How long a browser may cache a preflight answer (browsers cap it: 2 h
/// in Chromium, 24 h in Firefox).
const MAX_AGE: HeaderValue = HeaderValue::from_static("7200");
/// Methods of the stream routes.
const METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD");
/// Headers of floe's answers a script may read.
const EXPOSED: HeaderValue =
    HeaderValue::from_static("location, retry-after, x-floe-relay, x-floe-generation");
/// What preflight answers vary by when the allowed origin is not `*`.
const VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

/// The `Access-Control-Allow-Origin` value for a request with these
/// headers: `*` when every origin is allowed, the request's `Origin` when
/// it is listed, `None` otherwise (no CORS headers: the browser refuses).
fn allowed_origin(req: &HeaderMap, origins: &[Box<str>]) -> Option<HeaderValue> {
    if origins.iter().any(|o| &**o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = req.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(text))
        .then(|| origin.clone())
}

/// Adds the CORS headers to `resp`, an answer of a stream route, when the
/// request came from a page (it has an `Origin`) of an allowed origin.
#[inline]
pub fn allow<B>(resp: &mut Response<B>, req: &HeaderMap, origins: &[Box<str>]) {
    if origins.is_empty() || !req.contains_key(header::ORIGIN) {
        return;
    }
    let Some(origin) = allowed_origin(req, origins) else {
        return;
    };
    let h = resp.headers_mut();
    if origin != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
}

/// The answer to `OPTIONS` on a stream route: `204` with `Allow`, and for
/// a preflight (an allowed `Origin`, `Access-Control-Request-Method` GET or
/// HEAD, requested headers all in the allowed list) the CORS headers that
/// let the browser go on. Never a grant, never a relay.
pub fn preflight(req: &HeaderMap, origins: &[Box<str>]) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    if origins.is_empty() || !req.contains_key(header::ORIGIN) {
        return resp;
    }
    let Some(origin) = allowed_origin(req, origins) else {
        return resp;
    };
    let method_ok = req
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_some_and(|m| m == "GET" || m == "HEAD");
    if !method_ok {
        return resp;
    }
    let requested = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
    let headers_ok = requested.is_none_or(|v| requested_headers_allowed(v.as_bytes()));
    if !headers_ok {
        return resp;
    }
    if origin != "*" {
        h.insert(header::VARY, VARY);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, METHODS);
    if let Some(v) = requested {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    resp
}

/// Whether every name of an `Access-Control-Request-Headers` value is
/// allowed (at most [`MAX_REQUEST_HEADERS`] names; empty items skipped).
fn requested_headers_allowed(value: &[u8]) -> bool {
    let mut names = 0;
    for name in value.split(|&b| b == b',') {
        let name = name.trim_ascii();
        if name.is_empty() {
            continue;
        }
        names += 1;
        if names > MAX_REQUEST_HEADERS
            || !ALLOWED_HEADERS
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn list(origins: &[&str]) -> Vec<Box<str>> {
        origins.iter().map(|&o| o.into()).collect()
    }

    const PAGE: &str = "https://radio.example.org";

    #[test]
    fn a_preflight_for_icy_metadata_is_allowed_for_any_origin_by_default() {
        let req = headers(&[
            ("origin", PAGE),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "icy-metadata, Range"),
        ]);
        let resp = preflight(&req, &list(&["*"]));
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "icy-metadata, Range"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "7200");
        assert!(!h.contains_key(header::VARY));
    }

    #[test]
    fn a_listed_origin_is_echoed_and_others_get_no_cors_headers() {
        let origins = list(&[PAGE]);
        let ask = |origin: &str| {
            let req = headers(&[("origin", origin), ("access-control-request-method", "GET")]);
            preflight(&req, &origins)
        };
        let ok = ask("https://RADIO.example.org");
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://RADIO.example.org"
        );
        assert!(
            ok.headers()[header::VARY]
                .to_str()
                .unwrap()
                .contains("Origin")
        );
        let other = ask("https://evil.example");
        assert_eq!(other.status(), StatusCode::NO_CONTENT);
        assert!(
            !other
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        assert_eq!(other.headers()[header::ALLOW], "GET, HEAD, OPTIONS");
    }

    #[test]
    fn preflights_for_other_methods_or_headers_are_not_allowed() {
        let origins = list(&["*"]);
        let many = vec!["range"; MAX_REQUEST_HEADERS + 1].join(",");
        for (method, requested) in [
            ("POST", None),
            ("DELETE", None),
            ("GET", Some("authorization")),
            ("GET", Some("icy-metadata, x-evil")),
            ("GET", Some(many.as_str())),
        ] {
            let mut req = headers(&[("origin", PAGE), ("access-control-request-method", method)]);
            if let Some(r) = requested {
                req.insert(
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    HeaderValue::from_str(r).unwrap(),
                );
            }
            let resp = preflight(&req, &origins);
            assert!(
                !resp
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{method} {requested:?}"
            );
        }
        // Exactly the limit, with empty items: allowed.
        let at_limit = vec!["range"; MAX_REQUEST_HEADERS].join(", ,");
        assert!(requested_headers_allowed(at_limit.as_bytes()));
    }

    #[test]
    fn answers_get_cors_headers_only_for_pages_and_not_when_off() {
        let page = headers(&[("origin", PAGE)]);
        let mut resp = Response::new(());
        allow(&mut resp, &page, &list(&["*"]));
        assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            resp.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("x-floe-relay")
        );
        for (req, origins) in [
            (HeaderMap::new(), list(&["*"])),
            (page.clone(), Vec::new()),
            (page.clone(), list(&["https://other.example"])),
        ] {
            let mut resp = Response::new(());
            allow(&mut resp, &req, &origins);
            assert!(resp.headers().is_empty(), "{req:?} {origins:?}");
        }
        // Without CORS, OPTIONS still answers 204 with Allow.
        let resp = preflight(&page, &[]);
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(resp.headers().len(), 1);
    }
}
