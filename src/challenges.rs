//! The ACME challenges being answered now: `_acme-challenge.<name>` TXT
//! values (DNS-01) and HTTP-01 token -> key authorization.
//!
//! The ACME client (`acme`, a write side) adds a challenge before it tells
//! the CA to validate and removes it once the authorization is settled;
//! the DNS handler and the HTTP routes (the read side) answer from it. It
//! sits below both so neither side imports the other. Readers load one
//! immutable [`Table`] through an `ArcSwap` (no lock, no allocation);
//! writers copy the table and swap it (a few times per order).

use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Longest HTTP-01 token answered (RFC 8555 section 8.3 asks for at least
/// 128 bits of entropy: 22 base64url characters; CAs send 43). Longer
/// ones are not looked up.
pub const MAX_TOKEN: usize = 128;

/// The challenges live at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    /// `_acme-challenge.<name>` (lowercase, no trailing dot) -> its TXT
    /// values (one per authorization of that name in flight).
    txt: BTreeMap<String, Vec<String>>,
    /// HTTP-01 token -> key authorization.
    http: BTreeMap<String, String>,
}

impl Table {
    /// Whether no DNS-01 challenge is live (the DNS handler then skips the
    /// lookup and its name formatting).
    #[inline]
    pub fn no_txt(&self) -> bool {
        self.txt.is_empty()
    }

    /// The TXT values of `owner` (`_acme-challenge.<name>`, any case, with
    /// or without the trailing dot), if a challenge is live there.
    pub fn txt(&self, owner: &str) -> Option<&[String]> {
        let owner = owner.strip_suffix('.').unwrap_or(owner);
        if owner.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.txt.get(&owner.to_ascii_lowercase()).map(Vec::as_slice);
        }
        self.txt.get(owner).map(Vec::as_slice)
    }

    /// The key authorization of HTTP-01 token `token`, if one is live.
    pub fn http(&self, token: &str) -> Option<&str> {
        self.http.get(token).map(String::as_str)
    }
}

/// Whether `token` may be an HTTP-01 token: 1 to [`MAX_TOKEN`] base64url
/// characters (`A-Z a-z 0-9 - _`), so a path with anything else is a
/// `404` without a lookup.
pub fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The owner name of the DNS-01 record of `name`: `_acme-challenge.<name>`
/// (lowercase, no trailing dot).
pub fn dns_owner(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    format!("_acme-challenge.{}", name.to_ascii_lowercase())
}

/// The live challenges, shared by the ACME client and the doors.
#[derive(Debug, Default)]
pub struct Challenges {
    table: ArcSwap<Table>,
}

impl Challenges {
    /// No challenge live.
    pub fn new() -> Arc<Challenges> {
        Arc::new(Challenges::default())
    }

    /// The table as it is now (lock free).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Answers TXT `value` at `_acme-challenge.<name>` from now on.
    pub fn add_txt(&self, name: &str, value: &str) {
        let owner = dns_owner(name);
        self.table.rcu(|t| {
            let mut t = Table::clone(t);
            let values = t.txt.entry(owner.clone()).or_default();
            if !values.iter().any(|v| v == value) {
                values.push(value.to_string());
            }
            t
        });
    }

    /// Stops answering TXT `value` at `_acme-challenge.<name>` (the name
    /// is gone once it has no value left).
    pub fn remove_txt(&self, name: &str, value: &str) {
        let owner = dns_owner(name);
        self.table.rcu(|t| {
            let mut t = Table::clone(t);
            if let Some(values) = t.txt.get_mut(&owner) {
                values.retain(|v| v != value);
                if values.is_empty() {
                    t.txt.remove(&owner);
                }
            }
            t
        });
    }

    /// Answers `GET /.well-known/acme-challenge/<token>` with
    /// `key_authorization` from now on.
    pub fn add_http(&self, token: &str, key_authorization: &str) {
        self.table.rcu(|t| {
            let mut t = Table::clone(t);
            t.http
                .insert(token.to_string(), key_authorization.to_string());
            t
        });
    }

    /// Stops answering HTTP-01 token `token`.
    pub fn remove_http(&self, token: &str) {
        self.table.rcu(|t| {
            let mut t = Table::clone(t);
            t.http.remove(token);
            t
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_come_and_go_by_name() {
        let c = Challenges::new();
        assert!(c.load().no_txt());
        c.add_txt("Stream.Example.org.", "v1");
        c.add_txt("stream.example.org", "v2");
        c.add_txt("stream.example.org", "v2");
        let t = c.load();
        assert_eq!(
            t.txt("_ACME-challenge.stream.example.org.").unwrap(),
            ["v1", "v2"]
        );
        assert!(t.txt("_acme-challenge.other.example.org").is_none());
        c.remove_txt("stream.example.org", "v1");
        c.remove_txt("stream.example.org", "v2");
        assert!(c.load().no_txt());
    }

    #[test]
    fn http_tokens_come_and_go() {
        let c = Challenges::new();
        c.add_http("tok_en-1", "tok_en-1.thumb");
        assert_eq!(c.load().http("tok_en-1"), Some("tok_en-1.thumb"));
        c.remove_http("tok_en-1");
        assert_eq!(c.load().http("tok_en-1"), None);
    }

    #[test]
    fn tokens_are_base64url_and_bounded() {
        assert!(valid_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!valid_token(""));
        assert!(!valid_token("a/b"));
        assert!(!valid_token("..%2f"));
        assert!(!valid_token("a.b"));
        assert!(!valid_token(&"a".repeat(MAX_TOKEN + 1)));
        assert!(valid_token(&"a".repeat(MAX_TOKEN)));
    }
}
