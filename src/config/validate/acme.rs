//! `[acme]`: the CA, the account's contacts, the names and how they are
//! validated, where state is kept, and the renewal and retry timing;
//! once the zones are loaded, the default names and the DNS-01 names
//! checked against them.

use super::Cx;
use crate::config::model::{AcmeChallenge, AcmeConfig, Config, HttpConfig};
use crate::config::raw::RawAcme;
use crate::zones::ZoneSet;
use hickory_proto::rr::Name;
use std::str::FromStr;
use std::time::Duration;

/// `[acme] renew_after` when not given: two thirds of the lifetime (30
/// days before the end of a 90-day certificate).
pub const DEFAULT_RENEW_AFTER: f64 = 2.0 / 3.0;
/// `[acme] retry_min` when not given.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(60);
/// `[acme] retry_max` when not given.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(3600);

/// A host name fit for a certificate: lowercase, no trailing dot, labels
/// of letters, digits, `-` and `_`, no wildcard.
fn certificate_name(name: &str) -> Result<String, String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(format!(
            "{name:?}: wildcard names are not obtained (give each name)"
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && name.contains('.');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "{name:?} is not a host name (e.g. \"stream.example.org\")"
        ))
    }
}

impl Cx<'_> {
    /// The `[acme]` section (`http`: the `[http]` section, for the
    /// listeners it needs); `None` when it is unusable (every problem
    /// reported).
    pub(super) fn acme(&mut self, raw: RawAcme, http: Option<&HttpConfig>) -> Option<AcmeConfig> {
        let found = self.errors();
        let at = self.acme_span.clone();
        let directory = match raw.directory {
            None => {
                self.error(
                    at.clone(),
                    "[acme] directory is missing: the CA's directory URL (e.g. \"https://acme-v02.api.letsencrypt.org/directory\")",
                );
                None
            }
            Some(d) => {
                match url::Url::parse(d.get_ref()) {
                    Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
                    Ok(_) => {
                        self.error(
                        Some(d.span()),
                        format!("[acme] directory {:?} must be an https:// URL (ACME runs over HTTPS)", d.get_ref()),
                    );
                        None
                    }
                    Err(e) => {
                        self.error(
                            Some(d.span()),
                            format!("[acme] directory {:?} is not a URL ({e})", d.get_ref()),
                        );
                        None
                    }
                }
            }
        };
        let mut contact = Vec::new();
        for c in raw.contact.unwrap_or_default() {
            let v = c.get_ref().trim();
            match v.strip_prefix("mailto:") {
                Some(addr) if addr.contains('@') && !addr.contains(char::is_whitespace) => {
                    contact.push(v.to_string());
                }
                _ => self.error(
                    Some(c.span()),
                    format!("[acme] contact {v:?} must be a mailto: URL (e.g. \"mailto:ops@example.org\")"),
                ),
            }
        }
        let names_given = raw.names.is_some();
        let mut names = Vec::new();
        if let Some(list) = &raw.names {
            if list.is_empty() {
                self.error(
                    at.clone(),
                    "[acme] names is empty: give the names to obtain certificates for, or leave names out (the zone apexes)",
                );
            }
            for n in list {
                match certificate_name(n.get_ref()) {
                    Ok(name) if names.contains(&name) => self.error(
                        Some(n.span()),
                        format!("[acme] names: {name:?} is listed twice"),
                    ),
                    Ok(name) => {
                        self.acme_spans.insert(name.clone(), n.span());
                        names.push(name);
                    }
                    Err(e) => self.error(Some(n.span()), format!("[acme] names: {e}")),
                }
            }
        }
        let state_dir = match raw.state_dir {
            Some(d) => Some(self.base_dir().join(d.get_ref())),
            None => {
                self.error(
                    at.clone(),
                    "[acme] state_dir is missing: the directory for the account and certificates (e.g. \"/var/lib/floe/acme\")",
                );
                None
            }
        };
        let challenge = match raw
            .challenge
            .as_ref()
            .map(|c| (c.get_ref().as_str(), c.span()))
        {
            None | Some(("dns-01", _)) => AcmeChallenge::Dns01,
            Some(("http-01", _)) => AcmeChallenge::Http01,
            Some((other, span)) => {
                self.error(
                    Some(span),
                    format!("[acme] challenge {other:?} is not \"dns-01\" or \"http-01\""),
                );
                AcmeChallenge::Dns01
            }
        };
        let renew_after = self.checked(
            raw.renew_after,
            DEFAULT_RENEW_AFTER,
            |f| f > 0.0 && f < 1.0,
            "[acme] renew_after is a fraction of a certificate's lifetime, above 0 and below 1 (e.g. 0.667)",
        );
        let retry_min = raw
            .retry_min
            .as_ref()
            .map_or(DEFAULT_RETRY_MIN, |d| d.get_ref().0);
        let retry_max = raw
            .retry_max
            .as_ref()
            .map_or(DEFAULT_RETRY_MAX, |d| d.get_ref().0);
        if retry_min.is_zero() {
            let span = raw.retry_min.as_ref().map(|d| d.span());
            self.error(span, "[acme] retry_min must be above 0");
        }
        if retry_max < retry_min {
            let span = raw
                .retry_max
                .as_ref()
                .or(raw.retry_min.as_ref())
                .map(|d| d.span());
            self.error(
                span,
                format!(
                    "[acme] retry_max ({retry_max:?}) is shorter than retry_min ({retry_min:?})"
                ),
            );
        }
        let ca_file = raw.ca_file.and_then(|f| {
            let path = self.base_dir().join(f.get_ref());
            match crate::tls::load_roots(&path) {
                Ok(_) => Some(path),
                Err(e) => {
                    self.error(Some(f.span()), format!("[acme] ca_file: {e}"));
                    None
                }
            }
        });
        if let Some(http) = http {
            if http.tls_listen.is_empty() {
                self.warning(
                    at.clone(),
                    "[acme] obtains certificates, but [http] has no tls_listen to serve them on",
                );
            }
            if challenge == AcmeChallenge::Http01 && !http.listen.iter().any(|a| a.port() == 80) {
                self.warning(
                    at.clone(),
                    "[acme] challenge = \"http-01\": a CA validates on port 80, and no [http] listen address has port 80 (fine behind a port forward or a test CA)",
                );
            }
        }
        if self.errors() != found {
            return None;
        }
        Some(AcmeConfig {
            directory: directory?,
            contact,
            names,
            names_given,
            state_dir: state_dir?,
            challenge,
            renew_after,
            retry_min,
            retry_max,
            ca_file,
        })
    }

    /// With the zones loaded: the default `[acme] names` (the apex of
    /// every zone, and `[http] public_url`'s host) and, for DNS-01, every
    /// name inside a zone floe serves (else floe cannot answer its
    /// challenge: `http-01` can).
    pub(in crate::config) fn acme_names(&mut self, config: &mut Config, zones: &ZoneSet) {
        let public_host = config
            .http
            .public_url
            .as_ref()
            .and_then(|u| u.host_str())
            .and_then(|h| certificate_name(h).ok());
        let Some(acme) = config.acme.as_mut() else {
            return;
        };
        if !acme.names_given {
            let apexes = zones.zones().iter().map(|z| {
                z.origin
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase()
            });
            for name in apexes.chain(public_host) {
                if !acme.names.contains(&name) {
                    acme.names.push(name);
                }
            }
            if acme.names.is_empty() {
                self.error(
                    self.acme_span.clone(),
                    "[acme] has no names: no zone is loaded and [http] public_url is not set; give names",
                );
            }
        }
        if acme.challenge != AcmeChallenge::Dns01 {
            return;
        }
        for name in &acme.names {
            let inside = Name::from_str(&format!("{name}."))
                .ok()
                .and_then(|n| zones.find(&n))
                .is_some();
            if !inside {
                let at = self
                    .acme_spans
                    .get(name)
                    .cloned()
                    .or(self.acme_span.clone());
                self.error(
                    at,
                    format!(
                        "[acme] names: {name} is not inside any zone loaded from {}, so floe's DNS cannot answer its dns-01 challenge; set challenge = \"http-01\" or delegate the name to floe",
                        config.dns.zones.display()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::certificate_name;

    #[test]
    fn names_are_host_names() {
        assert_eq!(
            certificate_name("Stream.Example.org.").unwrap(),
            "stream.example.org"
        );
        assert!(certificate_name("*.example.org").is_err());
        assert!(certificate_name("localhost").is_err());
        assert!(certificate_name("a..b").is_err());
        assert!(certificate_name("-a.b").is_err());
        assert!(certificate_name("a b.org").is_err());
    }
}
