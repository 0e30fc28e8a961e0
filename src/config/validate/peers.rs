//! `[peers]` and `[[peer]]`: the other instances of the NS set this one
//! exchanges demand with, checked here so the rest of validation only
//! passes them through.

use super::{Cx, parse_base_url, valid_name};
use crate::config::model::{
    AdminConfig, DEFAULT_PEER_INTERVAL, PeerConfig, PeersConfig, SelectConfig,
};
use crate::config::raw::{RawPeer, RawPeers};
use std::collections::HashMap;
use std::time::Duration;

/// Most `[[peer]]`s: the exchange fetches every peer every interval, and an
/// NS set has a handful of name servers.
pub const MAX_PEERS: usize = 32;

impl Cx<'_> {
    /// The peer exchange's settings; `None` when they are unusable (every
    /// problem reported). With peers, `[admin]` must have a token (the
    /// peers fetch with it) and `[select] share`, when not given, becomes
    /// 1 / (peers + 1): the static part kept for a peer not connected.
    pub(super) fn peers(
        &mut self,
        raw: RawPeers,
        list: Vec<RawPeer>,
        admin: Option<&AdminConfig>,
        select: &mut SelectConfig,
        share_given: bool,
    ) -> Option<PeersConfig> {
        let found = self.errors();
        let interval = match raw.interval {
            Some(i) => {
                let d = i.get_ref().0;
                if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
                    self.error(
                        Some(i.span()),
                        "[peers] interval is how often demand is published and fetched: from 100ms to 60s",
                    );
                }
                d
            }
            None => DEFAULT_PEER_INTERVAL,
        };
        let name = raw.name.as_ref().map(|n| n.get_ref().trim().to_string());
        if let Some(n) = &raw.name {
            let own = n.get_ref().trim();
            if !valid_name(own) {
                self.error(
                    Some(n.span()),
                    format!(
                        "[peers] name {own:?} must be non-empty letters, digits, '-', '_' or '.'"
                    ),
                );
            }
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut peers = Vec::new();
        if list.len() > MAX_PEERS {
            let span = list.get(MAX_PEERS).map(|p| p.name.span());
            self.error(
                span,
                format!("{} [[peer]]s: at most {MAX_PEERS}", list.len()),
            );
        }
        for p in &list {
            let pname = p.name.get_ref().trim().to_string();
            let span = p.name.span();
            if !valid_name(&pname) {
                self.error(
                    Some(span.clone()),
                    format!(
                        "[[peer]] name {pname:?} must be non-empty letters, digits, '-', '_' or '.'"
                    ),
                );
            }
            if name.as_deref() == Some(pname.as_str()) {
                self.error(
                    Some(span.clone()),
                    format!("[[peer]] {pname:?} has this instance's own [peers] name"),
                );
            }
            self.unique(&mut seen, &pname, &span, "peer");
            let url = p.url.get_ref().trim().trim_end_matches('/');
            match parse_base_url(url) {
                Ok(_) => {}
                Err(e) => self.error(
                    Some(p.url.span()),
                    format!("[[peer]] {pname:?} url: {e} (the peer's [admin] listener, e.g. \"http://10.0.0.2:8081\")"),
                ),
            }
            peers.push(PeerConfig {
                name: pname,
                url: url.to_string(),
            });
        }
        if !peers.is_empty() {
            if name.is_none() {
                self.error(
                    list.first().map(|p| p.name.span()),
                    "[[peer]] needs [peers] name: this instance's name as its peers know it",
                );
            }
            if admin.is_some_and(|a| a.token.is_none()) {
                self.error(
                    list.first().map(|p| p.name.span()),
                    "[[peer]] needs an [admin] token: the instances of one NS set share it, serve /peer on the admin listener and fetch each other's with it",
                );
            }
            if !share_given {
                select.share = 1.0 / (peers.len() + 1) as f64;
            }
        } else if let Some(n) = &raw.name {
            self.warning(
                Some(n.span()),
                "[peers] name without any [[peer]]: no exchange runs",
            );
        }
        (self.errors() == found).then(|| PeersConfig {
            name: name.unwrap_or_default(),
            interval,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    const BASE: &str = "[admin]\ntoken = \"s3cret-s3cret-s3cret\"\n[[relay]]\nname = \"r\"\nurl = \"http://r:8000\"\nstatus = { kind = \"xslt\" }\n[[stream]]\nname = \"s\"\nmounts = [\"/a\"]\n";

    fn check(extra: &str) -> (Option<crate::config::Config>, String) {
        let (c, d) = parse(Path::new("/t/floe.toml"), &format!("{BASE}{extra}"));
        (c, d.to_string())
    }

    #[test]
    fn peers_set_the_static_share_and_need_a_name() {
        let (c, d) = check(
            "[peers]\nname = \"ns1\"\ninterval = \"250ms\"\n[[peer]]\nname = \"ns2\"\nurl = \"http://10.0.0.2:8081/\"\n[[peer]]\nname = \"ns3\"\nurl = \"https://ns3:8081\"\n",
        );
        let c = c.unwrap_or_else(|| panic!("{d}"));
        assert_eq!(c.peers.name, "ns1");
        assert_eq!(c.peers.interval, std::time::Duration::from_millis(250));
        assert_eq!(c.peers.peers[0].url, "http://10.0.0.2:8081");
        assert!((c.select.share - 1.0 / 3.0).abs() < 1e-12);
        let (c, _) = check(
            "[select]\nshare = 0.5\n[peers]\nname = \"ns1\"\n[[peer]]\nname = \"ns2\"\nurl = \"http://a:1\"\n[[peer]]\nname = \"ns3\"\nurl = \"http://b:1\"\n",
        );
        assert_eq!(c.unwrap().select.share, 0.5, "a given share stays");
    }

    #[test]
    fn bad_peers_are_named_with_their_line() {
        for (extra, want) in [
            (
                "[[peer]]\nname = \"ns2\"\nurl = \"http://a:1\"\n",
                "needs [peers] name",
            ),
            (
                "[peers]\nname = \"ns1\"\n[[peer]]\nname = \"ns2\"\nurl = \"ftp://a\"\n",
                "must be an http:// or https:// URL",
            ),
            (
                "[peers]\nname = \"ns1\"\n[[peer]]\nname = \"ns2\"\nurl = \"http://a:1\"\n[[peer]]\nname = \"ns2\"\nurl = \"http://b:1\"\n",
                "duplicate peer name",
            ),
            (
                "[peers]\nname = \"ns1\"\n[[peer]]\nname = \"ns1\"\nurl = \"http://a:1\"\n",
                "own [peers] name",
            ),
            (
                "[peers]\nname = \"ns1\"\ninterval = \"10ms\"\n[[peer]]\nname = \"ns2\"\nurl = \"http://a:1\"\n",
                "from 100ms to 60s",
            ),
        ] {
            let (c, d) = check(extra);
            assert!(c.is_none(), "{extra}");
            assert!(d.contains(want), "{extra}: {d}");
            assert!(d.contains("/t/floe.toml:1"), "{d}");
        }
        let no_token = "[[relay]]\nname = \"r\"\nurl = \"http://r:8000\"\nstatus = { kind = \"xslt\" }\n[[stream]]\nname = \"s\"\nmounts = [\"/a\"]\n[peers]\nname = \"ns1\"\n[[peer]]\nname = \"ns2\"\nurl = \"http://a:1\"\n";
        let (c, d) = parse(Path::new("/t/floe.toml"), no_token);
        assert!(c.is_none());
        assert!(d.to_string().contains("needs an [admin] token"), "{d}");
    }
}
