//! Playlists for players that want one: `/<mount>.m3u`, `.pls`, `.xspf`.
//!
//! Each points back at floe's own URL for the mount, never at a relay, so
//! the relay is chosen when the player actually connects (and the 302 then
//! points at the stream itself, which every player follows).

use hyper::Request;
use hyper::header;
use std::net::SocketAddr;

/// A playlist format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playlist {
    /// Bare-URL M3U, `audio/x-mpegurl` (the form xine also accepts).
    M3u,
    /// PLS v2, `audio/x-scpls`.
    Pls,
    /// XSPF, `application/xspf+xml`.
    Xspf,
}

impl Playlist {
    /// Splits `/live.ogg.m3u` into (`/live.ogg`, M3u).
    pub fn split(path: &str) -> Option<(&str, Playlist)> {
        [
            (".m3u", Playlist::M3u),
            (".pls", Playlist::Pls),
            (".xspf", Playlist::Xspf),
        ]
        .into_iter()
        .find_map(|(ext, kind)| path.strip_suffix(ext).map(|m| (m, kind)))
    }

    /// The Content-Type players expect.
    pub fn content_type(self) -> &'static str {
        match self {
            Playlist::M3u => "audio/x-mpegurl",
            Playlist::Pls => "audio/x-scpls",
            Playlist::Xspf => "application/xspf+xml",
        }
    }

    /// The playlist text for one stream URL.
    pub fn render(self, url: &str, title: &str) -> String {
        match self {
            Playlist::M3u => format!("{url}\n"),
            Playlist::Pls => {
                format!(
                    "[playlist]\nNumberOfEntries=1\nFile1={url}\nTitle1={title}\nLength1=-1\nVersion=2\n"
                )
            }
            Playlist::Xspf => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<playlist version=\"1\" xmlns=\"http://xspf.org/ns/0/\">\n  <trackList>\n    <track>\n      <location>{}</location>\n      <title>{}</title>\n    </track>\n  </trackList>\n</playlist>\n",
                xml_escape(url),
                xml_escape(title)
            ),
        }
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// floe's base URL for a playlist: the configured public URL when there is
/// one (never the request's Host then: a cache in front must not be
/// poisoned), else `http://` + the request's Host (only if it is a plain
/// host[:port]), else the local address the request arrived on.
pub fn base_url<B>(
    req: &Request<B>,
    public: Option<&url::Url>,
    local: Option<SocketAddr>,
    tls: bool,
) -> Option<String> {
    let scheme = if tls { "https" } else { "http" };
    // A configured public URL wins over the request's Host: a cache in
    // front of floe must not be poisoned by a forged Host header.
    if let Some(p) = public {
        return Some(p.as_str().trim_end_matches('/').to_string());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .filter(|h| is_plain_host(h));
    if let Some(h) = host {
        return Some(format!("{scheme}://{h}"));
    }
    local.map(|a| format!("{scheme}://{a}"))
}

/// A hostname or IP literal with an optional port: nothing that could
/// smuggle a path, credentials or markup into the playlist.
fn is_plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !h.starts_with(['.', '-', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_recognises_the_three_formats() {
        assert_eq!(
            Playlist::split("/live.ogg.m3u"),
            Some(("/live.ogg", Playlist::M3u))
        );
        assert_eq!(
            Playlist::split("/live.ogg.pls"),
            Some(("/live.ogg", Playlist::Pls))
        );
        assert_eq!(
            Playlist::split("/live.ogg.xspf"),
            Some(("/live.ogg", Playlist::Xspf))
        );
        assert_eq!(Playlist::split("/live.ogg"), None);
    }

    #[test]
    fn host_header_is_used_only_when_plain() {
        let req = |host: &str| {
            Request::builder()
                .uri("/x.m3u")
                .header("host", host)
                .body(())
                .unwrap()
        };
        assert_eq!(
            base_url(&req("stream.example.org:8080"), None, None, false).as_deref(),
            Some("http://stream.example.org:8080")
        );
        assert_eq!(
            base_url(&req("[::1]:8080"), None, None, true).as_deref(),
            Some("https://[::1]:8080")
        );
        let public = url::Url::parse("https://stream.example.org/").unwrap();
        assert_eq!(
            base_url(&req("evil/<x>"), Some(&public), None, false).as_deref(),
            Some("https://stream.example.org")
        );
        assert_eq!(
            base_url(&req("a@b"), None, "127.0.0.1:9".parse().ok(), false).as_deref(),
            Some("http://127.0.0.1:9")
        );
    }

    #[test]
    fn xspf_escapes_markup() {
        let x = Playlist::Xspf.render("http://h/a?x=1&y=2", "<live>");
        assert!(x.contains("<location>http://h/a?x=1&amp;y=2</location>"));
        assert!(x.contains("<title>&lt;live&gt;</title>"));
    }
}
