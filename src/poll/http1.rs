//! The status poll of an `http://` relay as one HTTP/1.1 exchange on a
//! connection kept open between polls: the request rendered once per
//! relay, the response head read with `httparse`, the body framed by
//! `Content-Length`, chunked coding (`httparse::parse_chunk_size`) or the
//! connection's end.
//!
//! Why not reqwest (or hyper's client) here: a status poll is one fixed GET
//! every few seconds per relay, and their general machinery cost more than
//! the poll. Measured with `tests/bench/poll_scale.sh` (1,000 relays, a poll
//! each 2 s): about 70 µs of CPU per poll in reqwest, hyper's dispatch and
//! the connection task it spawns, and 27 KiB of heap per relay that stay
//! allocated between polls (hyper's request channel, a 9 KiB block; its 8
//! KiB read and 8 KiB write buffers; the connection's task). Here a relay
//! between polls holds its socket and nothing else, and a poll is one
//! write and (usually) one read. `https://` relays are polled by reqwest
//! as before ([`super::fetch`]).
//!
//! [`Response::parse`] is pure (bytes in, framing out) and fuzzed
//! (`tests/fuzz/targets.rs`, `poll_response`).

use std::ops::Range;

/// Largest response head accepted (status line and headers).
pub const MAX_HEAD: usize = 64 << 10;

/// Most header lines in a response head.
const MAX_HEADERS: usize = 64;

/// What the bytes of a response received so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed.
    Partial,
    /// The whole response.
    Done(Response),
}

/// A complete response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub code: u16,
    /// The body (chunked coding removed).
    pub body: Vec<u8>,
    /// Whether the connection may carry the next request (HTTP/1.1 without
    /// `Connection: close`, and the body was framed by length or chunks).
    pub keep_alive: bool,
    /// Bytes of the buffer the response took (more after it: the
    /// connection is not reused).
    pub used: usize,
}

/// Why a response cannot be read. The messages say what hyper's say for
/// the same faults, as the poll's reasons did through reqwest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head does not parse, or is too large.
    #[error("invalid HTTP response: {0}")]
    Head(String),
    /// The body does not follow its framing (a bad chunk size, a
    /// `Content-Length` that is not a number).
    #[error("invalid HTTP body: {0}")]
    Body(String),
    /// The body is larger than the caller's limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The connection ended before the response did.
    #[error("connection closed before message completed")]
    Incomplete,
}

impl Response {
    /// Frames the response in `buf`, all the bytes received so far (`eof`:
    /// and the connection has ended), with a body of at most `max_body`
    /// bytes. Pure; never panics.
    pub fn parse(buf: &[u8], eof: bool, max_body: usize) -> Result<Progress, ResponseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let head_len = match head.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ResponseError::Head("message head is too large".into()));
            }
            Ok(httparse::Status::Partial) if eof => return Err(ResponseError::Incomplete),
            Ok(httparse::Status::Partial) => return Ok(Progress::Partial),
            Err(e) => return Err(ResponseError::Head(e.to_string())),
        };
        if head_len > MAX_HEAD {
            return Err(ResponseError::Head("message head is too large".into()));
        }
        let code = head.code.unwrap_or(0);
        if (100..200).contains(&code) {
            // A GET without `Expect` is never answered with 1xx.
            return Err(ResponseError::Head(format!("unexpected status {code}")));
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = head.version != Some(1);
        for h in head.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| ResponseError::Body("invalid content-length".into()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ResponseError::Body("conflicting content-length".into()));
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Only `chunked` (last) is a framing a relay sends.
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                if !chunked {
                    return Err(ResponseError::Body("unsupported transfer-encoding".into()));
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= h
                    .value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
        }
        let rest = &buf[head_len..];
        if code == 204 || code == 304 {
            return Ok(Progress::Done(Response {
                code,
                body: Vec::new(),
                keep_alive: !close,
                used: head_len,
            }));
        }
        if chunked {
            return match chunks(rest, max_body)? {
                Some((body, used)) => Ok(Progress::Done(Response {
                    code,
                    body,
                    keep_alive: !close,
                    used: head_len + used,
                })),
                None if eof => Err(ResponseError::Incomplete),
                None => Ok(Progress::Partial),
            };
        }
        match length {
            Some(n) if n > max_body as u64 => Err(ResponseError::TooLarge(max_body)),
            Some(n) if rest.len() as u64 >= n => Ok(Progress::Done(Response {
                code,
                body: rest[..n as usize].to_vec(),
                keep_alive: !close,
                used: head_len + n as usize,
            })),
            Some(_) if eof => Err(ResponseError::Incomplete),
            Some(_) => Ok(Progress::Partial),
            // No length: the body ends with the connection.
            None if rest.len() > max_body => Err(ResponseError::TooLarge(max_body)),
            None if eof => Ok(Progress::Done(Response {
                code,
                body: rest.to_vec(),
                keep_alive: false,
                used: buf.len(),
            })),
            None => Ok(Progress::Partial),
        }
    }
}

/// The status code of the response in `buf` when its head is complete,
/// and the body bytes received after it (for an answer whose body could
/// not be read whole).
pub fn head(buf: &[u8]) -> Option<(u16, &[u8])> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Some((head.code?, &buf[n..])),
        _ => None,
    }
}

/// The body of a chunked message in `buf` (after the head) and the bytes
/// it took, or `None` while incomplete.
fn chunks(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, ResponseError> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut total = 0usize;
    let mut pos = 0usize;
    loop {
        let (consumed, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ResponseError::Body("invalid chunk size line".into())),
        };
        pos += consumed;
        if size == 0 {
            break;
        }
        if size > (max_body - total) as u64 {
            return Err(ResponseError::TooLarge(max_body));
        }
        let size = size as usize;
        let end = pos + size;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ResponseError::Body("invalid chunk end".into()));
        }
        ranges.push(pos..end);
        total += size;
        pos = end + 2;
    }
    // Trailers (ignored), then the empty line.
    let trailer = &buf[pos..];
    let end = if trailer.starts_with(b"\r\n") {
        Some(2)
    } else {
        trailer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
    };
    let Some(end) = end else {
        if trailer.len() > MAX_HEAD {
            return Err(ResponseError::Body("trailers too large".into()));
        }
        return Ok(None);
    };
    let mut body = Vec::with_capacity(total);
    for r in ranges {
        body.extend_from_slice(&buf[r]);
    }
    Ok(Some((body, pos + end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8], eof: bool) -> Response {
        match Response::parse(buf, eof, 1000) {
            Ok(Progress::Done(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_frames_the_body() {
        let r = done(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello+next",
            false,
        );
        assert_eq!(
            (r.code, &r.body[..], r.keep_alive),
            (200, &b"hello"[..], true)
        );
        assert_eq!(
            Response::parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
                false,
                1000
            ),
            Ok(Progress::Partial)
        );
        assert_eq!(
            Response::parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
                true,
                1000
            ),
            Err(ResponseError::Incomplete)
        );
        assert_eq!(
            Response::parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
                false,
                1000
            ),
            Err(ResponseError::TooLarge(1000))
        );
    }

    #[test]
    fn http_1_0_and_connection_close_end_the_connection() {
        let r = done(
            b"HTTP/1.0 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
            false,
        );
        assert_eq!((r.code, r.keep_alive), (403, false));
        let r = done(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!r.keep_alive);
        // No length: the body is what came before the end.
        assert_eq!(
            Response::parse(b"HTTP/1.0 200 OK\r\n\r\nabc", false, 1000),
            Ok(Progress::Partial)
        );
        let r = done(b"HTTP/1.0 200 OK\r\n\r\nabc", true);
        assert_eq!((&r.body[..], r.keep_alive), (&b"abc"[..], false));
        assert_eq!(
            Response::parse(b"HTTP/1.0 200 OK\r\n\r\n", false, 2),
            Ok(Progress::Partial)
        );
        assert_eq!(
            Response::parse(b"HTTP/1.0 200 OK\r\n\r\nabc", false, 2),
            Err(ResponseError::TooLarge(2))
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = done(msg, false);
        assert_eq!((&r.body[..], r.keep_alive), (&b"abcde"[..], true));
        for cut in 0..msg.len() {
            assert_eq!(
                Response::parse(&msg[..cut], false, 1000),
                Ok(Progress::Partial),
                "cut at {cut}"
            );
        }
        let trailers =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(done(trailers, false).body, b"a");
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            Response::parse(bad, false, 1000),
            Err(ResponseError::Body(_))
        ));
        let big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
        assert_eq!(
            Response::parse(big, false, 1000),
            Err(ResponseError::TooLarge(1000))
        );
    }

    #[test]
    fn bad_heads_are_errors() {
        assert!(matches!(
            Response::parse(b"SSH-2.0-OpenSSH\r\n\r\n", false, 10),
            Err(ResponseError::Head(_))
        ));
        assert!(matches!(
            Response::parse(b"HTTP/1.1 100 Continue\r\n\r\n", false, 10),
            Err(ResponseError::Head(_))
        ));
        assert!(matches!(
            Response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, 10),
            Err(ResponseError::Body(_))
        ));
        let long = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert!(matches!(
            Response::parse(&long, false, 10),
            Err(ResponseError::Head(_))
        ));
        assert_eq!(
            Response::parse(b"HTTP/1.1 200", true, 10),
            Err(ResponseError::Incomplete)
        );
    }
}
