use super::*;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn get(head: &str) -> Option<FastGet<'_>> {
    parse(head.as_bytes())
}

#[test]
fn a_plain_get_is_fast_with_its_query_and_connection() {
    let r =
        get("GET /live.ogg HTTP/1.1\r\nHost: x\r\nUser-Agent: VLC/3\r\nIcy-MetaData: 1\r\n\r\n")
            .expect("fast");
    assert_eq!(
        r,
        FastGet {
            path: "/live.ogg",
            query: None,
            close: false
        }
    );
    let r = get("GET /live.ogg?a=1&b=%20/x?y HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n")
        .expect("fast");
    assert_eq!(r.query, Some("a=1&b=%20/x?y"));
    assert!(r.close);
    assert!(
        !get("GET / HTTP/1.1\r\nconnection: keep-alive\r\n\r\n")
            .unwrap()
            .close
    );
}

#[test]
fn anything_not_fully_understood_goes_to_hyper() {
    for head in [
        "HEAD /live.ogg HTTP/1.1\r\n\r\n",
        "POST /live.ogg HTTP/1.1\r\n\r\n",
        "get /live.ogg HTTP/1.1\r\n\r\n",
        "GET /live.ogg HTTP/1.0\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\n",
        "GET /live.ogg HTTP/1.1\r\nHost: x\r\n",
        "GET /live.ogg HTTP/1.1\r\n\r\nGET /live.ogg HTTP/1.1\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\n\r\nx",
        "GET http://x/live.ogg HTTP/1.1\r\n\r\n",
        "GET //x/live.ogg HTTP/1.1\r\n\r\n",
        "GET * HTTP/1.1\r\n\r\n",
        "GET /live.ogg? HTTP/1.1\r\n\r\n",
        "GET /live.ogg#x HTTP/1.1\r\n\r\n",
        "GET /live\"ogg HTTP/1.1\r\n\r\n",
        "GET /live.ogg?{} HTTP/1.1\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nOrigin: https://a\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nForwarded: for=1.2.3.4\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nConnection: close, upgrade\r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nConnection: \r\n\r\n",
        "GET /live.ogg HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET /live.ogg HTTP/1.1\r\n\r\n",
        "",
    ] {
        assert_eq!(get(head), None, "{head:?}");
    }
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: y\r\n"))
        .collect();
    assert_eq!(get(&format!("GET /a HTTP/1.1\r\n{many}\r\n")), None);
    let long = "a".repeat(MAX_HEAD);
    assert_eq!(get(&format!("GET /{long} HTTP/1.1\r\n\r\n")), None);
}

#[test]
fn every_path_byte_is_one_hyper_takes_as_it_is() {
    let chars: String = (0u8..=255)
        .filter(|&b| path_byte(b))
        .map(char::from)
        .collect();
    let target = format!("/{chars}?{chars}?");
    let uri: hyper::Uri = target.parse().expect("hyper's URI parser takes it");
    assert_eq!(uri.path(), format!("/{chars}"));
    assert_eq!(uri.query(), Some(format!("{chars}?").as_str()));
    let head = format!("GET {target} HTTP/1.1\r\n\r\n");
    let r = get(&head).expect("fast");
    assert_eq!((r.path, r.query), (uri.path(), uri.query()));
}

/// The responses floe's routes give a mount: a redirect, a refusal with
/// `Retry-After`, one with a generation only.
fn responses() -> Vec<Response<Full<Bytes>>> {
    let redirect = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, "http://r1.example:8000/live.ogg?x=1")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(routes::RELAY_HEADER, "r1")
        .header(routes::GENERATION_HEADER, "42")
        .body(Full::new(Bytes::from_static(b"302 Found\n")))
        .unwrap();
    let full = Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::RETRY_AFTER, HeaderValue::from(5u64))
        .header(routes::GENERATION_HEADER, "42")
        .body(Full::new(Bytes::from("503 stream full\n")))
        .unwrap();
    let budget = Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .unwrap();
    vec![redirect, full, budget]
}

fn clone(r: &Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let mut c = Response::new(r.body().clone());
    *c.status_mut() = r.status();
    *c.headers_mut() = r.headers().clone();
    c
}

/// What hyper's HTTP/1 server writes for `resp` as the answer to `head`.
async fn hyper_writes(head: &'static str, resp: Response<Full<Bytes>>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(clone(&resp)))
    });
    let conn = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
    );
    let (mut r, mut w) = tokio::io::split(client);
    w.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    if head.contains("close") {
        r.read_to_end(&mut out).await.unwrap();
    } else {
        // Keep-alive: read until the whole body is there.
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some((h, b)) = text.split_once("\r\n\r\n") {
                let len: usize = h
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if b.len() >= len {
                    break;
                }
            }
        }
        drop(w);
    }
    conn.abort();
    out
}

/// `bytes` without the value of its `date` header (hyper and the fast
/// path may straddle a second).
fn without_date(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let start = text.find("\r\ndate: ").expect("a date header") + 8;
    assert_eq!(text[start..].find("\r\n"), Some(DATE_LEN), "{text}");
    format!("{}{}", &text[..start], &text[start + DATE_LEN..])
}

#[tokio::test]
async fn rendered_answers_are_what_hyper_writes() {
    for (head, close) in [
        ("GET /live.ogg HTTP/1.1\r\nHost: x\r\n\r\n", false),
        ("GET /live.ogg HTTP/1.1\r\nConnection: close\r\n\r\n", true),
    ] {
        assert_eq!(get(head).unwrap().close, close);
        for resp in responses() {
            let mut ours = Vec::new();
            render(clone(&resp), close, &mut ours);
            let theirs = hyper_writes(head, resp).await;
            assert_eq!(without_date(&ours), without_date(&theirs), "{head:?}");
        }
    }
}

#[test]
fn the_date_is_an_http_date_of_now() {
    let mut text = Vec::new();
    with_date(|d| text.extend_from_slice(d));
    let date = httpdate::parse_http_date(std::str::from_utf8(&text).unwrap()).unwrap();
    let age = SystemTime::now().duration_since(date).unwrap();
    assert!(age.as_secs() < 2, "{age:?}");
}
